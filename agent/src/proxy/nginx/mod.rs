//! Nginx (open source, 1.22): the [`Nginx`] implementation of the [`Proxy`] trait.
//!
//! Nginx has no runtime API, so every change is a reload of the whole config: the engine
//! validates a staged copy of the tree with `nginx -T` ([`checker`]), commits the files,
//! then calls [`Proxy::reload`], which sends `SIGHUP` to the master named by the pid file
//! and confirms the reload with evidence (`reload`): new workers under the master, the
//! generation endpoint of the rendered config answering the new generation ([`status`]),
//! and every worker of the previous config no longer accepting connections ([`procs`]).
//! A reload the master refuses shows as no new worker and `[emerg]` lines in its error log
//! ([`errorlog`]); the caller gets those lines and the engine restores the previous files.
//!
//! Drains, canaries (`split_clients`) and previews are rendered into the config, so
//! [`Proxy::set_drain`] has nothing left to do. Server states cannot be read from
//! open-source Nginx, so the pre-switch gate relies on its HTTP probes; backend counters
//! for the post-switch watch come from the access-log lines of watched services, which the
//! shipped template sends to a socket of the agent ([`accesslog`]).
//!
//! Maps cannot be read back from a running Nginx: [`Proxy::read_map`] answers
//! [`ProxyError::Unsupported`] (so `cutover map show --live` says so) and the generation
//! endpoint is what proves which rendered tree Nginx serves (`cutover status` shows it).
//! The map hash sizes the templates set are the renderer's ([`crate::render::nginx_hash`]).

pub mod accesslog;
pub mod checker;
pub mod errorlog;
pub mod procs;
mod reload;
pub mod status;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::{
    BackendStats, CheckReport, Epoch, MapUpdate, Proxy, ProxyError, ReloadGap, ReloadReport,
};
use crate::config::{self, NginxSettings};
use crate::mapfile::MapEntries;

/// Longest the generation endpoint may take to answer when the epoch is read.
pub const EPOCH_STATUS_TIMEOUT: Duration = Duration::from_secs(1);

/// The Nginx of this host.
#[derive(Debug)]
pub struct Nginx {
    binary: PathBuf,
    config: PathBuf,
    settings: NginxSettings,
    reload_timeout: Duration,
    command_timeout: Duration,
    gap: ReloadGap,
    /// Held for the whole of a reload: never two at once, whoever asks.
    reloading: tokio::sync::Mutex<()>,
    /// Counters from the access log and the listener feeding them, once started (only
    /// when a service has a post-switch watch).
    access: OnceLock<Box<(Arc<accesslog::AccessStats>, accesslog::Listener)>>,
}

impl Nginx {
    /// From a validated config of kind `nginx`.
    pub fn new(proxy: &config::Proxy) -> Nginx {
        Nginx {
            binary: proxy.binary.clone(),
            config: proxy.config.clone(),
            settings: proxy.nginx.clone().expect("validated: nginx settings"),
            reload_timeout: proxy.reload_timeout,
            command_timeout: proxy.command_timeout,
            gap: ReloadGap::new(proxy.min_reload_gap),
            reloading: tokio::sync::Mutex::new(()),
            access: OnceLock::new(),
        }
    }

    /// Where the master, its log and its status listener are.
    pub fn settings(&self) -> &NginxSettings {
        &self.settings
    }

    /// PID of the running master, checked to be an Nginx master.
    pub fn master(&self) -> Result<u32, ProxyError> {
        procs::master(&self.settings.pid_file).map_err(|e| ProxyError::Unreachable {
            source: Box::new(e),
        })
    }
}

impl Proxy for Nginx {
    fn name(&self) -> &'static str {
        "nginx"
    }

    async fn check(&self, config: &Path) -> Result<CheckReport, ProxyError> {
        checker::run(&self.binary, self.settings.prefix.as_deref(), config).await
    }

    fn has_runtime_maps(&self) -> bool {
        false
    }

    async fn read_map(&self, _path: &Path) -> Result<MapEntries, ProxyError> {
        Err(ProxyError::Unsupported {
            what: "reading a map back from the running proxy (it has no runtime API; \
                   `cutover status` shows the generation it serves)",
            proxy: "nginx",
        })
    }

    /// The upstreams the config on disk defines (read with `nginx -T`); the engine keeps
    /// the files equal to what the master loaded.
    async fn backends(&self) -> Result<BTreeSet<String>, ProxyError> {
        let report = self.check(&self.config).await?;
        Ok(report.backends.unwrap_or_default())
    }

    async fn update_map(
        &self,
        _path: &Path,
        _from: &MapEntries,
        _to: &MapEntries,
    ) -> Result<MapUpdate, ProxyError> {
        Err(ProxyError::Unsupported {
            what: "changing a map without a reload",
            proxy: "nginx",
        })
    }

    async fn reload(&self, generation: u64) -> Result<ReloadReport, ProxyError> {
        let _one = self.reloading.lock().await;
        let gap_wait = self.gap.wait().await;
        let result = self.signal_and_confirm(generation).await;
        self.gap.ended();
        result.map(|report| ReloadReport { gap_wait, ..report })
    }

    async fn epoch(&self) -> Result<Epoch, ProxyError> {
        let master = self.master()?;
        let children = procs::snapshot(master).map_err(|e| ProxyError::Unreachable {
            source: Box::new(e),
        })?;
        let timeout = self.command_timeout.min(EPOCH_STATUS_TIMEOUT);
        let generation = status::generation(&self.settings.status, timeout)
            .await
            .ok();
        Ok(Epoch {
            master_pid: master,
            reloads: 0,
            workers: children.workers.into_iter().collect(),
            generation,
        })
    }

    fn reload_wait(&self) -> Duration {
        self.gap.remaining()
    }

    /// Nothing to do at runtime: which colours are drained is part of the state the config
    /// is rendered from (the shipped nginx.conf marks their servers `down`), so the reload
    /// that carried the change has applied it.
    async fn set_drain(&self, _backend: &str, _drain: bool) -> Result<(), ProxyError> {
        Ok(())
    }

    /// Binds the access-log socket when a service has a post-switch watch.
    fn start(&self, config: &config::Config) -> Result<(), ProxyError> {
        if self.access.get().is_some() || config.services.values().all(|s| s.watch.is_none()) {
            return Ok(());
        }
        let upstreams = config
            .services
            .values()
            .flat_map(|s| s.colours.values().map(|c| c.backend.clone()));
        let stats = Arc::new(accesslog::AccessStats::new(upstreams));
        let path = &self.settings.access_log_socket;
        let group = self.settings.access_log_group.as_deref();
        let listener = accesslog::Listener::bind(path, group, stats.clone()).map_err(|source| {
            ProxyError::Listener {
                path: path.clone(),
                source,
            }
        })?;
        tracing::info!(socket = %path.display(), "reading nginx access-log lines for the watch");
        let _ = self.access.set(Box::new((stats, listener)));
        Ok(())
    }

    /// From the access-log lines received since the agent started.
    async fn backend_stats(&self, backend: &str) -> Result<BackendStats, ProxyError> {
        match self.access.get() {
            Some(feed) => Ok(feed.0.stats(backend)),
            None => Err(ProxyError::Unsupported {
                what: "reading backend counters without a service that has a watch (the \
                       access-log socket is bound only then)",
                proxy: "nginx",
            }),
        }
    }
}
