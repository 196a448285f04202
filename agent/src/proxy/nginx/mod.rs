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
//!
//! With the Lua runtime mode ([`lua`], `[proxy] runtime = "lua"`, or `"auto"` where it
//! works) the routing maps live in a shared dict that the agent writes without a reload:
//! [`Proxy::has_runtime_maps`] is true, maps are read and updated through the control
//! endpoint, and a reload (structural changes only) is confirmed by new workers and
//! followed by loading the files into the dict with the new generation.

pub mod accesslog;
pub mod checker;
pub mod errorlog;
pub mod lua;
pub mod procs;
mod reload;
mod reloads;
pub mod status;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::{
    read_each, update_each, BackendStats, CheckReport, Epoch, MapEdit, MapMechanism, MapUpdate,
    MapsFailed, Proxy, ProxyError, ReloadGap, ReloadReport,
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
    /// Boxed: `AnyProxy` holds an Nginx or a much smaller HAProxy.
    settings: Box<NginxSettings>,
    reload_timeout: Duration,
    command_timeout: Duration,
    gap: ReloadGap,
    /// Held for the whole of a reload: never two at once, whoever asks.
    reloading: tokio::sync::Mutex<()>,
    /// Counters from the access log and the listener feeding them, once started (only
    /// when a service has a post-switch watch).
    access: OnceLock<Box<(Arc<accesslog::AccessStats>, accesslog::Listener)>>,
    /// The Lua runtime's dict, when that mode is in use (boxed: most Nginx setups reload).
    lua: Option<Box<lua::Runtime>>,
    /// In the Lua mode, the upstreams of the main config as last read, with the file's
    /// length and modification time: a switch needs no `nginx -T` while it is unchanged.
    backends_seen: std::sync::Mutex<Option<(u64, std::time::SystemTime, BTreeSet<String>)>>,
    /// Reloads of the running master, which Nginx does not count itself.
    reloads: reloads::ReloadCount,
}

impl Nginx {
    /// From a validated config of kind `nginx`.
    pub fn new(proxy: &config::Proxy) -> Nginx {
        let settings = proxy.nginx.as_ref().expect("validated: nginx settings");
        let lua = settings
            .lua
            .then(|| Box::new(lua::Runtime::new(settings, proxy.command_timeout)));
        Nginx {
            lua,
            backends_seen: std::sync::Mutex::new(None),
            binary: proxy.binary.clone(),
            config: proxy.config.clone(),
            settings: Box::new(settings.clone()),
            reload_timeout: proxy.reload_timeout,
            command_timeout: proxy.command_timeout,
            gap: ReloadGap::new(proxy.min_reload_gap),
            reloading: tokio::sync::Mutex::new(()),
            access: OnceLock::new(),
            reloads: reloads::ReloadCount::default(),
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

impl Nginx {
    /// A reload in the Lua runtime mode: confirmed by new workers alone (the generation
    /// endpoint answers the dict's generation, which the reload keeps), then the files
    /// (which may carry news the dict lacks) are loaded into the dict with `generation`, and
    /// the endpoint must answer it.
    async fn reload_lua(
        &self,
        lua: &lua::Runtime,
        generation: u64,
    ) -> Result<ReloadReport, ProxyError> {
        let started = std::time::Instant::now();
        let report = self.signal_and_confirm(None).await?;
        let edits = lua.load_files(generation).await?;
        let served = status::generation(&self.settings.status, reload::PROBE_TIMEOUT)
            .await
            .map_err(|e| ProxyError::ReloadUnconfirmed {
                source: Box::new(e),
            })?;
        if served != generation {
            return Err(ProxyError::ReloadUnconfirmed {
                source: format!(
                    "the dict was loaded with generation {generation}, but the status endpoint \
                     answers {served}"
                )
                .into(),
            });
        }
        tracing::debug!(
            edits,
            "after the reload, the files were loaded into the Lua dict"
        );
        Ok(ReloadReport {
            elapsed: started.elapsed(),
            ..report
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
        self.lua.is_some()
    }

    fn map_mechanism(&self, edits: usize) -> MapMechanism {
        match edits {
            0 => MapMechanism::Unchanged,
            _ => MapMechanism::PerKey,
        }
    }

    async fn read_map(&self, path: &Path) -> Result<MapEntries, ProxyError> {
        if let Some(lua) = &self.lua {
            return lua.read_map(path).await;
        }
        Err(ProxyError::Unsupported {
            what: "reading a map back from the running proxy (it has no runtime API; \
                   `cutover status` shows the generation it serves)",
            proxy: "nginx",
        })
    }

    /// With the Lua runtime, every listing in one round trip.
    async fn read_maps(&self, paths: &[&Path]) -> Result<Vec<MapEntries>, ProxyError> {
        match &self.lua {
            Some(lua) => lua.read_maps(paths).await,
            None => read_each(self, paths).await,
        }
    }

    /// With the Lua runtime, every map in one round trip when each fits one request.
    async fn update_maps(
        &self,
        edits: &[MapEdit<'_>],
        generation: u64,
    ) -> Result<Vec<MapUpdate>, MapsFailed> {
        if let Some(lua) = &self.lua {
            if let Some(done) = lua.update_maps(edits, generation).await {
                return done;
            }
        }
        update_each(self, edits, generation).await
    }

    /// The upstreams the config on disk defines (read with `nginx -T`); the engine keeps
    /// the files equal to what the master loaded.
    /// In the Lua mode the answer is kept while the main config's length and modification
    /// time stay the same (upstreams are defined there), so a switch costs no `nginx -T`.
    async fn backends(&self) -> Result<BTreeSet<String>, ProxyError> {
        let stamp = std::fs::metadata(&self.config)
            .ok()
            .and_then(|m| Some((m.len(), m.modified().ok()?)))
            .filter(|_| self.lua.is_some());
        if let Some((len, modified)) = stamp {
            let seen = self.backends_seen.lock().expect("not poisoned");
            if let Some((l, m, b)) = seen.as_ref() {
                if (*l, *m) == (len, modified) {
                    return Ok(b.clone());
                }
            }
        }
        let report = self.check(&self.config).await?;
        let backends = report.backends.unwrap_or_default();
        if let Some((len, modified)) = stamp {
            *self.backends_seen.lock().expect("not poisoned") =
                Some((len, modified, backends.clone()));
        }
        Ok(backends)
    }

    async fn update_map(
        &self,
        path: &Path,
        from: &MapEntries,
        to: &MapEntries,
    ) -> Result<MapUpdate, ProxyError> {
        if let Some(lua) = &self.lua {
            return lua.update_map(path, from, to, None).await;
        }
        Err(ProxyError::Unsupported {
            what: "changing a map without a reload",
            proxy: "nginx",
        })
    }

    /// With the Lua runtime, the generation goes with the map's last request.
    async fn update_last_map(
        &self,
        path: &Path,
        from: &MapEntries,
        to: &MapEntries,
        generation: u64,
    ) -> Result<MapUpdate, ProxyError> {
        match &self.lua {
            Some(lua) => lua.update_map(path, from, to, Some(generation)).await,
            None => self.update_map(path, from, to).await,
        }
    }

    async fn reload(&self, generation: u64) -> Result<ReloadReport, ProxyError> {
        let _one = self.reloading.lock().await;
        let gap_wait = self.gap.wait().await;
        let result = match &self.lua {
            None => self.signal_and_confirm(Some(generation)).await,
            Some(lua) => self.reload_lua(lua, generation).await,
        };
        self.gap.ended();
        if let (Ok(report), Ok(master)) = (&result, self.master()) {
            self.reloads.reloaded(
                master,
                &report.workers.iter().copied().collect(),
                &report.previous_workers.iter().copied().collect(),
            );
        }
        result.map(|report| ReloadReport { gap_wait, ..report })
    }

    async fn epoch(&self) -> Result<Epoch, ProxyError> {
        let master = self.master()?;
        let children = procs::snapshot(master).map_err(|e| ProxyError::Unreachable {
            source: Box::new(e),
        })?;
        let (generation, seeded_ms) = match &self.lua {
            Some(lua) => {
                let head = lua.head().await?;
                (Some(head.generation), Some(head.seeded_ms))
            }
            None => {
                let timeout = self.command_timeout.min(EPOCH_STATUS_TIMEOUT);
                let generation = status::generation(&self.settings.status, timeout)
                    .await
                    .ok();
                (generation, None)
            }
        };
        let reloads = self.reloads.observe(master, &children.workers);
        Ok(Epoch {
            master_pid: master,
            reloads,
            workers: children.workers.into_iter().collect(),
            generation,
            seeded_ms,
        })
    }

    /// The Lua dict keeps the generation: recorded there once the maps match the files.
    async fn mark_generation(&self, generation: u64) -> Result<bool, ProxyError> {
        match &self.lua {
            Some(lua) => lua.set_generation(generation).await.map(|_| true),
            None => Ok(false),
        }
    }

    fn reload_wait(&self) -> Duration {
        self.gap.remaining()
    }

    /// Nothing to do at runtime: in the reload mode, which colours are drained is part of the state the config
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
