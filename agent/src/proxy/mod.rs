//! The proxies cutover drives: one trait, [`Proxy`], with one implementation per proxy and
//! an in-memory [`fake::FakeProxy`] for unit tests of the layers above.
//!
//! The engine calls the trait in the order of one change: `check` a staged tree, then
//! (after the files are committed) `update_map` for runtime changes or `reload` for
//! structural ones, then `read_map` to confirm. `epoch` lets the engine notice reloads made
//! behind its back. [`AnyProxy`] is the proxy a config names, so the layers above are
//! written once for every kind. Helpers shared by the implementations live here too:
//! running a checker ([`run_program`]) and the minimum gap between reloads ([`ReloadGap`]).

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{self, ProxyKind};
use crate::gates::watch::BackendStats;
use crate::gates::ServerHealth;
use crate::mapfile::MapEntries;

pub mod fake;
pub mod haproxy;
pub mod nginx;

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
    /// Backends the checked config defines, when the checker can tell (Nginx's `-T` dump
    /// lists its upstreams); `None` when it cannot (HAProxy).
    #[serde(skip)]
    pub backends: Option<BTreeSet<String>>,
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

/// What one confirmed reload did. Times are measured from the moment the reload was asked
/// for (the master CLI command, or the signal).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadReport {
    /// Worker processes serving after the reload.
    pub workers: Vec<u32>,
    /// Until the reload was confirmed.
    #[serde(with = "millis")]
    pub elapsed: Duration,
    /// Workers that served before the reload and were told to finish (Nginx).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_workers: Vec<u32>,
    /// Until the new config first answered a new connection (Nginx: its generation
    /// endpoint answered the new generation).
    #[serde(
        rename = "serving_ms",
        with = "millis_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub serving: Option<Duration>,
    /// Until no worker of the previous config accepted connections any more: from then on
    /// every new connection gets the new config (Nginx).
    #[serde(
        rename = "old_stopped_ms",
        with = "millis_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub old_stopped: Option<Duration>,
    /// Spent waiting for the minimum gap since the previous reload, before the reload.
    #[serde(rename = "gap_wait_ms", with = "millis")]
    pub gap_wait: Duration,
}

pub use crate::protocol::Epoch;

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

/// Serializes a `Duration` as fractional milliseconds.
pub mod millis {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
    }
}

/// Serializes an optional `Duration` as fractional milliseconds (or null).
pub mod millis_opt {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::millis::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}

/// What a checker or other helper program printed, and how it ended.
#[derive(Debug)]
pub struct ProgramOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `program` with `args` (an argument vector, never through a shell), stdin closed,
/// and collects its output. It is killed if it runs longer than `timeout`; that, like a
/// failure to start it, is an error that names the program.
pub async fn run_program(
    program: &Path,
    args: &[&std::ffi::OsStr],
    timeout: Duration,
) -> Result<ProgramOutput, ProxyError> {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let output = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| ProxyError::CheckFailed {
            output: format!("{} did not finish within {timeout:?}", program.display()),
        })?
        .map_err(|e| ProxyError::Spawn {
            program: program.display().to_string(),
            reason: e.to_string(),
        })?;
    Ok(ProgramOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    })
}

/// The minimum gap between the end of one reload and the start of the next. Each proxy
/// implementation owns one and waits on it before every reload, so the gap holds whoever
/// asks (a change, an undo, a reconcile).
#[derive(Debug)]
pub struct ReloadGap {
    min: Duration,
    last_end: Mutex<Option<Instant>>,
}

impl ReloadGap {
    pub fn new(min: Duration) -> ReloadGap {
        ReloadGap {
            min,
            last_end: Mutex::new(None),
        }
    }

    /// Time left before a reload may start (zero when it may start now).
    pub fn remaining(&self) -> Duration {
        let last = *self.last_end.lock().expect("reload gap lock");
        match last {
            Some(end) => self.min.saturating_sub(end.elapsed()),
            None => Duration::ZERO,
        }
    }

    /// Sleeps until a reload may start; returns the time waited.
    pub async fn wait(&self) -> Duration {
        let wait = self.remaining();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }

    /// Records that a reload (confirmed or not) ended now.
    pub fn ended(&self) {
        *self.last_end.lock().expect("reload gap lock") = Some(Instant::now());
    }
}

/// The proxy a config names: one type for the layers above, whatever the kind.
#[derive(Debug)]
pub enum AnyProxy {
    Haproxy(haproxy::Haproxy),
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

    async fn reload(&self, generation: u64) -> Result<ReloadReport, ProxyError> {
        delegate!(self, p => p.reload(generation).await)
    }

    async fn epoch(&self) -> Result<Epoch, ProxyError> {
        delegate!(self, p => p.epoch().await)
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

    fn start(&self, config: &config::Config) -> Result<(), ProxyError> {
        delegate!(self, p => p.start(config))
    }

    async fn backend_stats(&self, backend: &str) -> Result<BackendStats, ProxyError> {
        delegate!(self, p => p.backend_stats(backend).await)
    }
}
