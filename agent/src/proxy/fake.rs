//! An in-memory proxy for unit tests of the layers above the [`Proxy`] trait: maps are
//! loaded from the files on `reload`, like a real proxy, and failures can be injected.
//! Integration tests always use the real proxies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{CheckReport, Epoch, MapMechanism, MapUpdate, Proxy, ProxyError, ReloadReport};
use crate::mapfile::{MapDiff, MapEntries, MapSyntax};
use crate::protocol::HealthState;
use crate::proxy::{BackendStats, ServerHealth, ServerSample};

/// What the fake serves and which failures it injects.
#[derive(Debug, Default)]
pub struct FakeState {
    /// The map entries served, by the path of the file they were loaded from: replaced
    /// from the files on `reload`, changed in place by `update_map`.
    pub maps: BTreeMap<PathBuf, MapEntries>,
    /// The backends `backends` reports.
    pub backends: BTreeSet<String>,
    /// Reloads that succeeded; `epoch` reports it as the reload count.
    pub reloads: u64,
    /// Calls made, in order (`check`, `update_map <path>`, `reload`).
    pub calls: Vec<String>,
    /// The text of every main config handed to `check`, in order.
    pub checked: Vec<String>,
    /// Makes every `check` fail with this checker output.
    pub fail_check: Option<String>,
    /// Makes every `update_map` fail as unreachable, with this message; nothing changes.
    pub fail_update: Option<String>,
    /// Makes every `reload` fail as refused, with this message; nothing is loaded.
    pub fail_reload: Option<String>,
    /// Makes `epoch` and `read_map` fail: the proxy is unreachable.
    pub unreachable: Option<String>,
    /// Warnings every check reports.
    pub check_warnings: Vec<String>,
    /// Generation the last reload was asked to apply (what `epoch` says is served).
    pub served_generation: Option<u64>,
    /// Servers by backend.
    pub servers: BTreeMap<String, Vec<ServerHealth>>,
    /// Counters by backend.
    pub stats: BTreeMap<String, BackendStats>,
    /// Sessions open on each backend (what `backend_stats` reports).
    pub sessions: BTreeMap<String, u64>,
    /// Makes `server_table` fail as unreachable, with this message.
    pub fail_table: Option<String>,
}

/// The in-memory proxy. Clones share one [`FakeState`], so a test keeps a clone to inject
/// failures and read the calls while the code under test owns another.
#[derive(Debug, Clone)]
pub struct FakeProxy {
    /// What it serves and injects; locked by [`FakeProxy::state`].
    pub inner: Arc<Mutex<FakeState>>,
    /// Map files loaded on `reload`.
    pub map_files: Vec<PathBuf>,
    /// Whether maps change at runtime (like HAProxy) or only by reload (like Nginx).
    pub runtime_maps: bool,
    /// How the map files it loads are written.
    pub syntax: MapSyntax,
}

impl FakeProxy {
    /// A fake with the given backends, each with one healthy server `s1`.
    pub fn new(map_files: Vec<PathBuf>, backends: &[&str]) -> FakeProxy {
        let f = FakeProxy {
            inner: Arc::default(),
            map_files,
            runtime_maps: true,
            syntax: MapSyntax::Haproxy,
        };
        {
            let mut s = f.state();
            s.backends = backends.iter().map(|b| b.to_string()).collect();
            for (i, b) in backends.iter().enumerate() {
                s.servers.insert(
                    b.to_string(),
                    vec![ServerHealth {
                        name: "s1".into(),
                        address: format!("127.0.0.1:{}", 1 + i),
                        up: true,
                        maint: false,
                        drain: false,
                    }],
                );
            }
        }
        f
    }

    /// Locks the shared state, to read it or set failures. Panics if a holder of the lock
    /// panicked (a failed test).
    pub fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.inner.lock().expect("fake proxy lock")
    }

    /// Sets one flag of every server of `backend` to `on`, recording `<call> <backend>
    /// <on>`; like the real proxy, nothing is done (or recorded) when every server already
    /// has it.
    fn set_flag(
        &self,
        call: &str,
        backend: &str,
        on: bool,
        flag: fn(&mut ServerHealth) -> &mut bool,
    ) {
        let mut s = self.state();
        let servers = s
            .servers
            .get_mut(backend)
            .map(Vec::as_mut_slice)
            .unwrap_or_default();
        if servers.iter_mut().all(|server| *flag(server) == on) {
            return;
        }
        for server in servers.iter_mut() {
            *flag(server) = on;
        }
        s.calls.push(format!("{call} {backend} {on}"));
    }

    fn load_files(&self) -> Result<(), ProxyError> {
        let mut maps = BTreeMap::new();
        for p in &self.map_files {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let entries = self
                .syntax
                .parse(&text)
                .map_err(|e| ProxyError::ReloadRefused {
                    source: Box::new(e),
                })?;
            maps.insert(p.clone(), entries);
        }
        self.state().maps = maps;
        Ok(())
    }
}

impl Proxy for FakeProxy {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn check(&self, config: &Path) -> Result<CheckReport, ProxyError> {
        let mut s = self.state();
        s.calls.push("check".into());
        s.checked
            .push(std::fs::read_to_string(config).unwrap_or_default());
        match &s.fail_check {
            Some(out) => Err(ProxyError::CheckFailed {
                output: out.clone(),
            }),
            None => Ok(CheckReport {
                warnings: s.check_warnings.clone(),
                ..CheckReport::default()
            }),
        }
    }

    fn has_runtime_maps(&self) -> bool {
        self.runtime_maps
    }

    fn map_mechanism(&self, edits: usize) -> MapMechanism {
        if edits == 0 {
            MapMechanism::Unchanged
        } else {
            MapMechanism::PerKey
        }
    }

    async fn read_map(&self, path: &Path) -> Result<MapEntries, ProxyError> {
        if let Some(e) = &self.state().unreachable {
            return Err(ProxyError::Unreachable {
                source: e.clone().into(),
            });
        }
        self.state()
            .maps
            .get(path)
            .cloned()
            .ok_or_else(|| ProxyError::MapNotLoaded {
                source: format!("unknown map {}", path.display()).into(),
            })
    }

    async fn backends(&self) -> Result<BTreeSet<String>, ProxyError> {
        Ok(self.state().backends.clone())
    }

    async fn update_map(
        &self,
        path: &Path,
        from: &MapEntries,
        to: &MapEntries,
    ) -> Result<MapUpdate, ProxyError> {
        let mut s = self.state();
        s.calls.push(format!("update_map {}", path.display()));
        if let Some(e) = &s.fail_update {
            return Err(ProxyError::Unreachable {
                source: e.clone().into(),
            });
        }
        let edits = MapDiff::between(from, to).len();
        s.maps.insert(path.to_owned(), to.clone());
        Ok(MapUpdate {
            mechanism: MapMechanism::PerKey,
            edits,
            elapsed: Duration::ZERO,
        })
    }

    async fn reload(&self, generation: u64) -> Result<ReloadReport, ProxyError> {
        {
            let mut s = self.state();
            s.calls.push("reload".into());
            if let Some(e) = &s.fail_reload {
                return Err(ProxyError::ReloadRefused {
                    source: e.clone().into(),
                });
            }
            s.reloads += 1;
            s.served_generation = Some(generation);
            // Like a real proxy, a reload forgets runtime server states.
            for server in s.servers.values_mut().flatten() {
                server.drain = false;
            }
        }
        self.load_files()?;
        Ok(ReloadReport {
            workers: vec![1],
            ..ReloadReport::default()
        })
    }

    async fn epoch(&self) -> Result<Epoch, ProxyError> {
        if let Some(e) = &self.state().unreachable {
            return Err(ProxyError::Unreachable {
                source: e.clone().into(),
            });
        }
        let s = self.state();
        Ok(Epoch {
            master_pid: 1,
            reloads: s.reloads,
            workers: vec![],
            // Only a reload-only proxy (like Nginx) serves its generation.
            generation: s.served_generation.filter(|_| !self.runtime_maps),
            seeded_ms: None,
        })
    }

    async fn servers(&self, backend: &str) -> Result<Vec<ServerHealth>, ProxyError> {
        self.state().servers.get(backend).cloned().ok_or_else(|| {
            let reply = format!("no backend {backend}");
            ProxyError::Refused {
                source: reply.clone().into(),
                reply,
            }
        })
    }

    async fn set_drain(&self, backend: &str, drain: bool) -> Result<(), ProxyError> {
        self.set_flag("set_drain", backend, drain, |s| &mut s.drain);
        Ok(())
    }

    async fn server_table(&self) -> Result<Vec<ServerSample>, ProxyError> {
        let mut s = self.state();
        s.calls.push("server_table".into());
        if let Some(e) = &s.fail_table {
            return Err(ProxyError::Unreachable {
                source: e.clone().into(),
            });
        }
        let mut out = Vec::new();
        for (backend, servers) in &s.servers {
            for server in servers {
                let state = match (server.maint, server.drain, server.up) {
                    (true, _, _) => HealthState::Maint,
                    (_, true, _) => HealthState::Drain,
                    (_, _, true) => HealthState::Up,
                    _ => HealthState::Down,
                };
                out.push(ServerSample {
                    backend: backend.clone(),
                    server: server.name.clone(),
                    state,
                });
            }
        }
        Ok(out)
    }

    async fn set_maint(&self, backend: &str, maint: bool) -> Result<(), ProxyError> {
        self.set_flag("set_maint", backend, maint, |s| &mut s.maint);
        Ok(())
    }

    async fn backend_stats(&self, backend: &str) -> Result<BackendStats, ProxyError> {
        let s = self.state();
        Ok(BackendStats {
            sessions: s.sessions.get(backend).copied().unwrap_or(0),
            ..s.stats.get(backend).copied().unwrap_or_default()
        })
    }
}
