//! [`AnyProxy`]: the proxy a config names, one type for the layers above whatever its
//! kind; every call goes to the implementation it holds.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use super::{
    haproxy, nginx, BackendStats, CheckReport, Epoch, MapEdit, MapMechanism, MapUpdate, MapsFailed,
    Proxy, ProxyError, ReloadReport, ServerHealth, ServerSample,
};
use crate::config::{self, ProxyKind};
use crate::mapfile::MapEntries;

/// The proxy a config names: one type for the layers above, whatever the kind.
#[derive(Debug)]
pub enum AnyProxy {
    /// `[proxy] kind = "haproxy"`: driven through its admin socket and master CLI.
    Haproxy(haproxy::Haproxy),
    /// `[proxy] kind = "nginx"`: driven by signals to its master and its status endpoint.
    Nginx(nginx::Nginx),
}

impl AnyProxy {
    /// The proxy of a validated config (no I/O: nothing is contacted yet).
    pub fn new(proxy: &config::Proxy) -> AnyProxy {
        match proxy.kind {
            ProxyKind::Haproxy => AnyProxy::Haproxy(haproxy::Haproxy::new(proxy)),
            ProxyKind::Nginx => AnyProxy::Nginx(nginx::Nginx::new(proxy)),
        }
    }
}

/// Calls the same method on whichever proxy `self` holds.
macro_rules! delegate {
    ($self:ident, $p:ident => $call:expr) => {
        match $self {
            AnyProxy::Haproxy($p) => $call,
            AnyProxy::Nginx($p) => $call,
        }
    };
}

impl Proxy for AnyProxy {
    fn name(&self) -> &'static str {
        delegate!(self, p => p.name())
    }

    async fn check(&self, config: &Path) -> Result<CheckReport, ProxyError> {
        delegate!(self, p => p.check(config).await)
    }

    fn has_runtime_maps(&self) -> bool {
        delegate!(self, p => p.has_runtime_maps())
    }

    fn config_backends(&self, config: &Path) -> Option<BTreeSet<String>> {
        delegate!(self, p => p.config_backends(config))
    }

    fn map_mechanism(&self, edits: usize) -> MapMechanism {
        delegate!(self, p => p.map_mechanism(edits))
    }

    async fn read_map(&self, path: &Path) -> Result<MapEntries, ProxyError> {
        delegate!(self, p => p.read_map(path).await)
    }

    async fn backends(&self) -> Result<BTreeSet<String>, ProxyError> {
        delegate!(self, p => p.backends().await)
    }

    async fn update_map(
        &self,
        path: &Path,
        from: &MapEntries,
        to: &MapEntries,
    ) -> Result<MapUpdate, ProxyError> {
        delegate!(self, p => p.update_map(path, from, to).await)
    }

    async fn update_last_map(
        &self,
        path: &Path,
        from: &MapEntries,
        to: &MapEntries,
        generation: u64,
    ) -> Result<MapUpdate, ProxyError> {
        delegate!(self, p => p.update_last_map(path, from, to, generation).await)
    }

    async fn read_maps(&self, paths: &[&Path]) -> Result<Vec<MapEntries>, ProxyError> {
        delegate!(self, p => p.read_maps(paths).await)
    }

    async fn update_maps(
        &self,
        edits: &[MapEdit<'_>],
        generation: u64,
    ) -> Result<Vec<MapUpdate>, MapsFailed> {
        delegate!(self, p => p.update_maps(edits, generation).await)
    }

    async fn reload(&self, generation: u64) -> Result<ReloadReport, ProxyError> {
        delegate!(self, p => p.reload(generation).await)
    }

    async fn mark_generation(&self, generation: u64) -> Result<bool, ProxyError> {
        delegate!(self, p => p.mark_generation(generation).await)
    }

    async fn epoch(&self) -> Result<Epoch, ProxyError> {
        delegate!(self, p => p.epoch().await)
    }

    fn version_report(&self) -> (Option<String>, Vec<String>) {
        delegate!(self, p => p.version_report())
    }

    async fn last_reload_failure(&self) -> Option<String> {
        delegate!(self, p => p.last_reload_failure().await)
    }

    fn reload_wait(&self) -> Duration {
        delegate!(self, p => p.reload_wait())
    }

    async fn servers(&self, backend: &str) -> Result<Vec<ServerHealth>, ProxyError> {
        delegate!(self, p => p.servers(backend).await)
    }

    async fn set_drain(&self, backend: &str, drain: bool) -> Result<(), ProxyError> {
        delegate!(self, p => p.set_drain(backend, drain).await)
    }

    async fn server_table(&self) -> Result<Vec<ServerSample>, ProxyError> {
        delegate!(self, p => p.server_table().await)
    }

    async fn set_maint(&self, backend: &str, maint: bool) -> Result<(), ProxyError> {
        delegate!(self, p => p.set_maint(backend, maint).await)
    }

    fn start(&self, config: &config::Config) -> Result<(), ProxyError> {
        delegate!(self, p => p.start(config))
    }

    async fn backend_stats(&self, backend: &str) -> Result<BackendStats, ProxyError> {
        delegate!(self, p => p.backend_stats(backend).await)
    }
}
