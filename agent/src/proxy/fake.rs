//! An in-memory proxy for unit tests of the layers above the [`Proxy`] trait: maps are
//! loaded from the files on `reload`, like a real proxy, and failures can be injected.
//! Integration tests always use the real proxies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{CheckReport, Epoch, MapMechanism, MapUpdate, Proxy, ProxyError, ReloadReport};
use crate::gates::watch::BackendStats;
use crate::gates::ServerHealth;
use crate::mapfile::{self, MapDiff, MapEntries};

/// What the fake serves and which failures it injects.
#[derive(Debug, Default)]
pub struct FakeState {
    pub maps: BTreeMap<PathBuf, MapEntries>,
    pub backends: BTreeSet<String>,
    pub reloads: u64,
    /// Calls made, in order (`check`, `update_map <path>`, `reload`).
    pub calls: Vec<String>,
    pub fail_check: Option<String>,
    pub fail_update: Option<String>,
    pub fail_reload: Option<String>,
    /// Makes `epoch` and `read_map` fail: the proxy is unreachable.
    pub unreachable: Option<String>,
    /// Servers by backend.
    pub servers: BTreeMap<String, Vec<ServerHealth>>,
    /// Counters by backend.
    pub stats: BTreeMap<String, BackendStats>,
}

#[derive(Debug, Clone, Default)]
pub struct FakeProxy {
    pub inner: Arc<Mutex<FakeState>>,
    /// Map files loaded on `reload`.
    pub map_files: Vec<PathBuf>,
}

impl FakeProxy {
    /// A fake with the given backends, each with one healthy server `s1`.
    pub fn new(map_files: Vec<PathBuf>, backends: &[&str]) -> FakeProxy {
        let f = FakeProxy {
            inner: Arc::default(),
            map_files,
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

    pub fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.inner.lock().expect("fake proxy lock")
    }

    fn load_files(&self) -> Result<(), ProxyError> {
        let mut maps = BTreeMap::new();
        for p in &self.map_files {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let entries =
                mapfile::parse(&text).map_err(|e| ProxyError::ReloadFailed(e.to_string()))?;
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

    async fn check(&self, _config: &Path) -> Result<CheckReport, ProxyError> {
        let mut s = self.state();
        s.calls.push("check".into());
        match &s.fail_check {
            Some(out) => Err(ProxyError::CheckFailed {
                output: out.clone(),
            }),
            None => Ok(CheckReport::default()),
        }
    }

    fn has_runtime_maps(&self) -> bool {
        true
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
            return Err(ProxyError::Runtime(e.clone()));
        }
        self.state()
            .maps
            .get(path)
            .cloned()
            .ok_or_else(|| ProxyError::Runtime(format!("unknown map {}", path.display())))
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
            return Err(ProxyError::Runtime(e.clone()));
        }
        let edits = MapDiff::between(from, to).len();
        s.maps.insert(path.to_owned(), to.clone());
        Ok(MapUpdate {
            mechanism: MapMechanism::PerKey,
            edits,
            elapsed: Duration::ZERO,
        })
    }

    async fn reload(&self, _generation: u64) -> Result<ReloadReport, ProxyError> {
        {
            let mut s = self.state();
            s.calls.push("reload".into());
            if let Some(e) = &s.fail_reload {
                return Err(ProxyError::ReloadFailed(e.clone()));
            }
            s.reloads += 1;
            // Like a real proxy, a reload forgets runtime server states.
            for server in s.servers.values_mut().flatten() {
                server.drain = false;
            }
        }
        self.load_files()?;
        Ok(ReloadReport {
            workers: vec![1],
            elapsed: Duration::ZERO,
        })
    }

    async fn epoch(&self) -> Result<Epoch, ProxyError> {
        if let Some(e) = &self.state().unreachable {
            return Err(ProxyError::Runtime(e.clone()));
        }
        Ok(Epoch {
            master_pid: 1,
            reloads: self.state().reloads,
        })
    }

    async fn servers(&self, backend: &str) -> Result<Vec<ServerHealth>, ProxyError> {
        self.state()
            .servers
            .get(backend)
            .cloned()
            .ok_or_else(|| ProxyError::Runtime(format!("no backend {backend}")))
    }

    async fn set_drain(&self, backend: &str, drain: bool) -> Result<(), ProxyError> {
        let mut s = self.state();
        s.calls.push(format!("set_drain {backend} {drain}"));
        for server in s.servers.get_mut(backend).into_iter().flatten() {
            server.drain = drain;
        }
        Ok(())
    }

    async fn backend_stats(&self, backend: &str) -> Result<BackendStats, ProxyError> {
        Ok(self.state().stats.get(backend).copied().unwrap_or_default())
    }
}
