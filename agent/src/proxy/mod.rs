//! The proxies cutover drives: one trait, [`Proxy`], with one implementation per proxy and
//! an in-memory [`fake::FakeProxy`] for unit tests of the layers above.
//!
//! The engine calls the trait in the order of one change: `check` a staged tree, then
//! (after the files are committed) `update_map` for runtime changes or `reload` for
//! structural ones, then `read_map` to confirm. `epoch` lets the engine notice reloads made
//! behind its back.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::gates::watch::BackendStats;
use crate::gates::ServerHealth;
use crate::mapfile::MapEntries;

pub mod fake;
pub mod haproxy;

/// A failure of the proxy, with the proxy's own words.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("config check failed:\n{output}")]
    CheckFailed { output: String },
    #[error("cannot run {program}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("runtime API: {0}")]
    Runtime(String),
    #[error("reload failed: {0}")]
    ReloadFailed(String),
    #[error("{what} is not supported by {proxy}")]
    Unsupported {
        what: &'static str,
        proxy: &'static str,
    },
}

/// Result of a successful config check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Warnings the checker printed (the check still passed).
    pub warnings: Vec<String>,
    /// Wall time of the check.
    #[serde(with = "millis")]
    pub elapsed: Duration,
}

/// How a map reached its new content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MapMechanism {
    /// Nothing to do.
    Unchanged,
    /// One runtime command per changed key.
    PerKey,
    /// A versioned transaction: prepare, fill, commit.
    Transaction,
}

#[derive(Debug, Clone, Serialize)]
pub struct MapUpdate {
    pub mechanism: MapMechanism,
    /// Keys added, changed or removed.
    pub edits: usize,
    #[serde(with = "millis")]
    pub elapsed: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// Worker processes serving after the reload.
    pub workers: Vec<u32>,
    #[serde(with = "millis")]
    pub elapsed: Duration,
}

/// Identity of the proxy's running configuration: it changes with every reload, ours or
/// anybody else's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Epoch {
    /// PID of the proxy's master process (a restart changes it).
    pub master_pid: u32,
    /// Reloads the master has counted.
    pub reloads: u64,
}

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

    /// Brings the running map loaded from `path` from `from` to `to` without a reload.
    fn update_map(
        &self,
        path: &Path,
        from: &MapEntries,
        to: &MapEntries,
    ) -> impl Future<Output = Result<MapUpdate, ProxyError>> + Send;

    /// Reloads the proxy from the files on disk and confirms it took them. `generation` is
    /// the state generation those files were rendered for; a proxy that can read it back
    /// from what it serves (Nginx's status endpoint) confirms with it.
    fn reload(
        &self,
        generation: u64,
    ) -> impl Future<Output = Result<ReloadReport, ProxyError>> + Send;

    /// The current epoch, to notice reloads made by others.
    fn epoch(&self) -> impl Future<Output = Result<Epoch, ProxyError>> + Send;

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

/// Serializes a `Duration` as fractional milliseconds.
pub mod millis {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
    }
}
