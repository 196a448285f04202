//! The proxies cutover drives: one trait, [`Proxy`], with one implementation per proxy and
//! an in-memory `fake::FakeProxy` for the unit tests of the layers above (tests only).
//!
//! The engine calls the trait in the order of one change: `check` a staged tree, then
//! (after the files are committed) `update_map` for runtime changes or `reload` for
//! structural ones, then `read_map` to confirm. `epoch` lets the engine notice reloads made
//! behind its back. [`AnyProxy`] is the proxy a config names, so the layers above are
//! written once for every kind. Each file holds one idea: the trait here, what the proxies
//! report (`report`), how they fail ([`ProxyError`], `error`), [`AnyProxy`] (`any`), and
//! the helpers shared by the implementations: running a checker ([`run_program`],
//! `program`) and the minimum gap between reloads ([`ReloadGap`], `gap`).

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use crate::config;
use crate::mapfile::MapEntries;

mod any;
mod error;
// The fake stands in for a proxy in the unit tests of the layers above; it is not shipped.
#[cfg(any(test, feature = "fake"))]
pub mod fake;
mod gap;
pub mod haproxy;
mod health;
pub mod nginx;
mod program;
mod report;

use crate::protocol::Epoch;
pub use any::AnyProxy;
pub use error::{Cause, ProxyError};
pub use gap::ReloadGap;
pub use health::{BackendStats, ServerHealth, ServerSample};
pub use program::{run_program, ProgramOutput};
pub use report::{
    millis, millis_opt, CheckReport, MapEdit, MapMechanism, MapUpdate, MapsFailed, ReloadReport,
};

/// One proxy on this host.
pub trait Proxy: Send + Sync + 'static {
    /// Short name: `haproxy`, `nginx`, `fake`.
    fn name(&self) -> &'static str;

    /// Runs the proxy's own checker on the main config at `config` (a staged copy).
    fn check(&self, config: &Path) -> impl Future<Output = Result<CheckReport, ProxyError>> + Send;

    /// Whether maps can change without a reload.
    fn has_runtime_maps(&self) -> bool;

    /// How a map diff of `edits` keys would be applied at runtime.
    fn map_mechanism(&self, edits: usize) -> MapMechanism {
        if edits == 0 {
            MapMechanism::Unchanged
        } else {
            MapMechanism::Transaction
        }
    }

    /// The entries the running proxy serves from the map loaded from `path`.
    fn read_map(&self, path: &Path) -> impl Future<Output = Result<MapEntries, ProxyError>> + Send;

    /// Backends the running proxy knows.
    fn backends(&self) -> impl Future<Output = Result<BTreeSet<String>, ProxyError>> + Send;

    /// Backends the config file at `config` defines, read from the file alone (no proxy
    /// needed): what a reload of it would serve; `None` when the proxy cannot tell this
    /// way (Nginx needs its checker to resolve includes).
    fn config_backends(&self, _config: &Path) -> Option<BTreeSet<String>> {
        None
    }

    /// Brings the running map loaded from `path` from `from` to `to` without a reload.
    fn update_map(
        &self,
        path: &Path,
        from: &MapEntries,
        to: &MapEntries,
    ) -> impl Future<Output = Result<MapUpdate, ProxyError>> + Send;

    /// [`Proxy::update_map`] for the last map of a change, which also records `generation`
    /// as [`Proxy::mark_generation`] does, in the same request where the proxy can (Nginx's
    /// Lua dict). The default updates, then marks.
    fn update_last_map(
        &self,
        path: &Path,
        from: &MapEntries,
        to: &MapEntries,
        generation: u64,
    ) -> impl Future<Output = Result<MapUpdate, ProxyError>> + Send {
        async move {
            let update = self.update_map(path, from, to).await?;
            self.mark_generation(generation).await?;
            Ok(update)
        }
    }

    /// The entries the running proxy serves from each map of `paths`, in order: in one
    /// round trip where the proxy can (HAProxy's admin socket, Nginx's Lua endpoint). The
    /// default is [`read_each`].
    fn read_maps(
        &self,
        paths: &[&Path],
    ) -> impl Future<Output = Result<Vec<MapEntries>, ProxyError>> + Send {
        read_each(self, paths)
    }

    /// Carries every map of a change (`edits`, in order) to the running proxy, the last one
    /// recording `generation` as [`Proxy::update_last_map`] does: in one round trip where
    /// the proxy can (HAProxy when every map goes per key, Nginx's Lua endpoint when each map
    /// fits one request). The default is
    /// [`update_each`].
    fn update_maps(
        &self,
        edits: &[MapEdit<'_>],
        generation: u64,
    ) -> impl Future<Output = Result<Vec<MapUpdate>, MapsFailed>> + Send {
        update_each(self, edits, generation)
    }

    /// Reloads the proxy from the files on disk and confirms it took them. `generation` is
    /// the state generation those files were rendered for; a proxy that can read it back
    /// from what it serves (Nginx's status endpoint) confirms with it.
    fn reload(
        &self,
        generation: u64,
    ) -> impl Future<Output = Result<ReloadReport, ProxyError>> + Send;

    /// Records `generation` as the one the running proxy serves, when the proxy keeps it at
    /// runtime (Nginx's Lua dict) and its maps were made equal to the files of that
    /// generation; `false` when the proxy cannot (a reload is what records it).
    fn mark_generation(
        &self,
        _generation: u64,
    ) -> impl Future<Output = Result<bool, ProxyError>> + Send {
        async { Ok(false) }
    }

    /// The current epoch, to notice reloads made by others.
    fn epoch(&self) -> impl Future<Output = Result<Epoch, ProxyError>> + Send;

    /// The version of the running proxy as last seen (by [`Proxy::epoch`] or a reload), and
    /// what is known to be wrong with it; `(None, [])` when unknown or not tracked.
    fn version_report(&self) -> (Option<String>, Vec<String>) {
        (None, Vec::new())
    }

    /// Why the latest reload failed, when it did (whoever asked for it), in the proxy's own
    /// words; `None` when it did not fail or the proxy cannot tell.
    fn last_reload_failure(&self) -> impl Future<Output = Option<String>> + Send {
        async { None }
    }

    /// How long a reload asked for now would first wait for the minimum gap since the
    /// previous one (zero by default). The agent waits this long before it takes the
    /// queued changes, so the changes that arrive meanwhile go into the same reload.
    fn reload_wait(&self) -> Duration {
        Duration::ZERO
    }

    /// The servers of `backend` as the running proxy sees them (for the pre-switch gate).
    fn servers(
        &self,
        _backend: &str,
    ) -> impl Future<Output = Result<Vec<ServerHealth>, ProxyError>> + Send {
        let proxy = self.name();
        async move {
            Err(ProxyError::Unsupported {
                what: "reading server states",
                proxy,
            })
        }
    }

    /// Puts every server of `backend` in drain (`true`) or back to ready (`false`), at
    /// runtime.
    fn set_drain(
        &self,
        _backend: &str,
        _drain: bool,
    ) -> impl Future<Output = Result<(), ProxyError>> + Send {
        let proxy = self.name();
        async move {
            Err(ProxyError::Unsupported {
                what: "draining servers",
                proxy,
            })
        }
    }

    /// Every server of every backend with its state, in one read (the periodic health
    /// poll: one command, whatever the number of services).
    fn server_table(&self) -> impl Future<Output = Result<Vec<ServerSample>, ProxyError>> + Send {
        let proxy = self.name();
        async move {
            Err(ProxyError::Unsupported {
                what: "reading server states",
                proxy,
            })
        }
    }

    /// Puts every server of `backend` in maintenance (`true`: the end of a drain), or
    /// every server in maintenance back to ready (`false`), at runtime.
    fn set_maint(
        &self,
        _backend: &str,
        _maint: bool,
    ) -> impl Future<Output = Result<(), ProxyError>> + Send {
        let proxy = self.name();
        async move {
            Err(ProxyError::Unsupported {
                what: "putting servers in maintenance",
                proxy,
            })
        }
    }

    /// Starts what the proxy needs beside the agent for as long as the agent runs (Nginx:
    /// the listener for the access-log lines of watched services). Called once, inside the
    /// runtime, after the agent holds its lock; nothing by default.
    fn start(&self, _config: &config::Config) -> Result<(), ProxyError> {
        Ok(())
    }

    /// Cumulative request counters of `backend` (for the post-switch watch).
    fn backend_stats(
        &self,
        _backend: &str,
    ) -> impl Future<Output = Result<BackendStats, ProxyError>> + Send {
        let proxy = self.name();
        async move {
            Err(ProxyError::Unsupported {
                what: "reading backend counters",
                proxy,
            })
        }
    }
}

/// [`Proxy::read_maps`] one map after the other.
pub async fn read_each<P: Proxy + ?Sized>(
    proxy: &P,
    paths: &[&Path],
) -> Result<Vec<MapEntries>, ProxyError> {
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        out.push(proxy.read_map(path).await?);
    }
    Ok(out)
}

/// [`Proxy::update_maps`] one map after the other: [`Proxy::update_map`] for each but the
/// last, [`Proxy::update_last_map`] for the last.
pub async fn update_each<P: Proxy + ?Sized>(
    proxy: &P,
    edits: &[MapEdit<'_>],
    generation: u64,
) -> Result<Vec<MapUpdate>, MapsFailed> {
    let mut out = Vec::with_capacity(edits.len());
    for (i, e) in edits.iter().enumerate() {
        let update = match i + 1 == edits.len() {
            true => {
                proxy
                    .update_last_map(e.path, e.from, e.to, generation)
                    .await
            }
            false => proxy.update_map(e.path, e.from, e.to).await,
        };
        out.push(update.map_err(|err| (i, err))?);
    }
    Ok(out)
}
