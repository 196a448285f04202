//! HAProxy: runtime API over the admin socket, reloads through the master CLI, and the
//! [`Haproxy`] implementation of the [`Proxy`] trait on top of them.
//!
//! How a map change reaches HAProxy: a diff of at most [`PER_KEY_MAX_EDITS`] keys (2.6;
//! [`PER_KEY_MAX_EDITS_INDEXED`] on 3.0+) is sent as one `set map` / `add map` / `del map`
//! per key; a larger one as a versioned transaction (`prepare map`, `add map @ver` payloads
//! of at most half the config's `tune.bufsize`, `commit map`). Each per-key command is
//! atomic for its key, and a colour flip is a single key of the services map, so it lands
//! in one command. HAProxy 2.6 finds the key of `set map`/`del map` by scanning the map, so
//! k per-key edits cost k scans, while a transaction costs one full write of the map;
//! beyond a handful of edits the transaction is cheaper on large maps, and it is the only
//! way to make many edits visible at the same instant. 3.0+ indexes the keys, so the bound
//! is higher there; what differs by version is in `running`.
//!
//! A reload is confirmed twice: by the master (its `Success=` answer on 2.7+ and the
//! process table) and by the admin socket answering from a new worker, since 3.1+ lists
//! the new worker before it serves its sockets.
//!
//! The clients: [`admin`] (the admin socket) and [`master`] (the master CLI), both over
//! the one-shot exchange of `oneshot`, reading replies with [`reply`]; `errors` says which
//! [`ProxyError`] kind each of their failures is.
pub mod admin;
mod errors;
pub mod master;
mod oneshot;
pub mod reply;
pub mod running;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::admin::{AdminClient, ServerAdminState};
use self::errors::{map_name, master_error, reload_error, WorkerNotServing};
use self::master::MasterClient;
use self::running::{chunk_bytes, tune_bufsize, Running, DEFAULT_BUFSIZE};
pub use self::running::{HaproxyVersion, PER_KEY_MAX_EDITS, PER_KEY_MAX_EDITS_INDEXED};
use super::{
    run_program, update_each, CheckReport, Epoch, MapEdit, MapMechanism, MapUpdate, MapsFailed,
    Proxy, ProxyError, ReloadGap, ReloadReport,
};
use crate::config;
use crate::mapfile::{MapDiff, MapEntries};
use crate::proxy::{BackendStats, ServerHealth, ServerSample};

/// First pause between two `show info` polls while a new worker is awaited on the admin
/// socket (10 ms); it doubles up to 200 ms.
const SERVE_POLL_START: Duration = Duration::from_millis(10);
/// Longest a `haproxy -c` may run.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// The HAProxy of this host.
#[derive(Debug, Clone)]
pub struct Haproxy {
    binary: PathBuf,
    config: PathBuf,
    admin: AdminClient,
    master: MasterClient,
    reload_timeout: Duration,
    gap: Arc<ReloadGap>,
    running: Arc<Running>,
}

impl Haproxy {
    /// The HAProxy of a validated `[proxy]` section (no I/O yet). Panics if the admin or
    /// master socket is missing, which validation refuses for `kind = "haproxy"`.
    pub fn new(proxy: &config::Proxy) -> Haproxy {
        let admin = proxy.admin_socket.clone().expect("validated: admin socket");
        let master = proxy
            .master_socket
            .clone()
            .expect("validated: master socket");
        Haproxy {
            binary: proxy.binary.clone(),
            config: proxy.config.clone(),
            admin: AdminClient::new(admin).with_timeout(proxy.command_timeout),
            master: MasterClient::new(master).with_timeout(proxy.command_timeout),
            reload_timeout: proxy.reload_timeout,
            gap: Arc::new(ReloadGap::new(proxy.min_reload_gap)),
            running: Arc::new(Running::default()),
        }
    }

    /// The version of the running HAProxy: the one last seen, else read from `show info`.
    pub async fn version(&self) -> Result<HaproxyVersion, ProxyError> {
        if let Some(v) = self.running.version() {
            return Ok(v);
        }
        let info = self.admin.info().await?;
        self.running.saw(&info.version);
        self.running
            .version()
            .ok_or_else(|| ProxyError::UnexpectedReply {
                source: format!("show info: version {:?} not understood", info.version).into(),
            })
    }

    /// Bytes one map payload may take: half the `tune.bufsize` of the config on disk (which
    /// is what HAProxy serves once a change is applied), half of the default when unset.
    async fn chunk_bytes(&self) -> usize {
        let text = tokio::fs::read_to_string(&self.config)
            .await
            .unwrap_or_default();
        chunk_bytes(tune_bufsize(&text).unwrap_or(DEFAULT_BUFSIZE))
    }

    /// Waits until the admin socket answers from one of `workers`, at most until
    /// `deadline`; remembers the version it reports.
    async fn await_serving(&self, workers: &[u32], deadline: Instant) -> Result<(), ProxyError> {
        let started = Instant::now();
        let mut pause = SERVE_POLL_START;
        loop {
            let last = match self.admin.info().await {
                Ok(info) if workers.contains(&info.pid) => {
                    self.running.saw(&info.version);
                    return Ok(());
                }
                Ok(info) => format!("answered by worker {}", info.pid),
                Err(err) => err.to_string(),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ProxyError::ReloadUnconfirmed {
                    source: Box::new(WorkerNotServing {
                        workers: workers.to_vec(),
                        waited: started.elapsed(),
                        last,
                    }),
                });
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Learns the running version, which bounds the per-key edits; unknown, 2.6's bound
    /// is used.
    async fn learn_version(&self) {
        if self.running.version().is_none() {
            if let Err(err) = self.version().await {
                tracing::debug!(%err, "HAProxy version unknown");
            }
        }
    }

    /// The admin-socket client, with the configured command timeout.
    pub fn admin(&self) -> &AdminClient {
        &self.admin
    }

    /// The master-CLI client, with the configured command timeout.
    pub fn master(&self) -> &MasterClient {
        &self.master
    }
}

/// The version of the HAProxy binary at `program` (`haproxy -v`): the one the next reload
/// or restart runs. `None` when it cannot be run or its banner is not understood.
pub async fn binary_version(program: &Path) -> Option<HaproxyVersion> {
    let out = run_program(program, &["-v".as_ref()], CHECK_TIMEOUT)
        .await
        .ok()?;
    let banner = out.stdout.lines().next()?;
    HaproxyVersion::parse(banner.strip_prefix("HAProxy version ")?.split(' ').next()?)
}

/// The warnings about the HAProxy binary at `program` (see [`running::version_warning`]).
pub async fn binary_warnings(program: &Path) -> Vec<String> {
    binary_version(program)
        .await
        .and_then(|v| running::version_warning(&v))
        .into_iter()
        .collect()
}

/// Runs HAProxy's checker (or another by argument vector) and sorts its output into
/// warnings or a failure in the checker's own words.
pub async fn run_check(
    program: &Path,
    args: &[&std::ffi::OsStr],
    timeout: Duration,
) -> Result<CheckReport, ProxyError> {
    let out = run_program(program, args, timeout).await?;
    let text = format!("{}{}", out.stdout, out.stderr);
    if !out.status.success() {
        // The checker's own words, less its banner (version and executable notices).
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("[NOTICE]") && !l.trim().is_empty())
            .collect();
        let output = if lines.is_empty() {
            format!("{} exited with {}", program.display(), out.status)
        } else {
            lines.join("\n")
        };
        return Err(ProxyError::CheckFailed { output });
    }
    Ok(CheckReport {
        warnings: text
            .lines()
            .filter(|l| l.contains("[WARNING]") || l.contains("[warn]"))
            .map(str::to_owned)
            .collect(),
        elapsed: out.elapsed,
        backends: None,
    })
}

impl Proxy for Haproxy {
    fn name(&self) -> &'static str {
        "haproxy"
    }

    async fn check(&self, config: &Path) -> Result<CheckReport, ProxyError> {
        let mut report = run_check(
            &self.binary,
            &["-c".as_ref(), "-f".as_ref(), config.as_os_str()],
            CHECK_TIMEOUT,
        )
        .await?;
        // The backends the checked file defines: what a reload of it will serve. A config
        // spread over a directory is not read here (the running HAProxy's list is used).
        report.backends = self.config_backends(config);
        Ok(report)
    }

    fn has_runtime_maps(&self) -> bool {
        true
    }

    fn config_backends(&self, config: &Path) -> Option<BTreeSet<String>> {
        read_bounded(config).map(|text| config_backends(&text))
    }

    fn map_mechanism(&self, edits: usize) -> MapMechanism {
        match edits {
            0 => MapMechanism::Unchanged,
            n if n <= self.running.per_key_max_edits() => MapMechanism::PerKey,
            _ => MapMechanism::Transaction,
        }
    }

    async fn read_map(&self, path: &Path) -> Result<MapEntries, ProxyError> {
        Ok(served(self.admin.show_map(map_name(path)?).await?))
    }

    /// All listings in one exchange.
    async fn read_maps(&self, paths: &[&Path]) -> Result<Vec<MapEntries>, ProxyError> {
        let names = paths
            .iter()
            .map(|p| map_name(p))
            .collect::<Result<Vec<_>, _>>()?;
        let listings = self.admin.show_maps(&names).await?;
        Ok(listings.into_iter().map(served).collect())
    }

    async fn backends(&self) -> Result<BTreeSet<String>, ProxyError> {
        Ok(self.admin.backends().await?.into_iter().collect())
    }

    async fn update_map(
        &self,
        path: &Path,
        from: &MapEntries,
        to: &MapEntries,
    ) -> Result<MapUpdate, ProxyError> {
        let started = Instant::now();
        let map = map_name(path)?;
        let diff = MapDiff::between(from, to);
        self.learn_version().await;
        let mechanism = self.map_mechanism(diff.len());
        if mechanism == MapMechanism::PerKey {
            self.admin.edit_map(map, &diff).await?;
        } else if mechanism == MapMechanism::Transaction {
            let entries: Vec<(String, String)> =
                to.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let admin = self
                .admin
                .clone()
                .with_max_chunk_bytes(self.chunk_bytes().await);
            admin.replace_map(map, &entries).await?;
        }
        Ok(MapUpdate {
            mechanism,
            edits: diff.len(),
            elapsed: started.elapsed(),
        })
    }

    /// When every map goes per key, all their commands in one exchange; otherwise one map
    /// after the other.
    async fn update_maps(
        &self,
        edits: &[MapEdit<'_>],
        generation: u64,
    ) -> Result<Vec<MapUpdate>, MapsFailed> {
        let started = Instant::now();
        self.learn_version().await;
        let diffs: Vec<MapDiff> = edits
            .iter()
            .map(|e| MapDiff::between(e.from, e.to))
            .collect();
        let mechanisms: Vec<MapMechanism> =
            diffs.iter().map(|d| self.map_mechanism(d.len())).collect();
        if mechanisms.contains(&MapMechanism::Transaction) {
            return update_each(self, edits, generation).await;
        }
        let mut batch = Vec::with_capacity(edits.len());
        for (i, (e, diff)) in edits.iter().zip(&diffs).enumerate() {
            batch.push((map_name(e.path).map_err(|err| (i, err))?, diff));
        }
        self.admin
            .edit_maps(&batch)
            .await
            .map_err(|(i, e)| (i, e.into()))?;
        Ok(diffs
            .iter()
            .zip(mechanisms)
            .map(|(d, mechanism)| MapUpdate {
                mechanism,
                edits: d.len(),
                elapsed: started.elapsed(),
            })
            .collect())
    }

    async fn reload(&self, _generation: u64) -> Result<ReloadReport, ProxyError> {
        let gap_wait = self.gap.wait().await;
        let deadline = Instant::now() + self.reload_timeout;
        // The kept connection would hold on to the old worker; the serving probe below and
        // the next exchange reach the new one.
        self.admin.disconnect().await;
        let outcome = match self.master.reload(self.reload_timeout).await {
            Ok(outcome) => self
                .await_serving(&outcome.new_worker_pids, deadline)
                .await
                .map(|()| outcome),
            Err(err) => Err(reload_error(err)),
        };
        self.gap.ended();
        let outcome = outcome?;
        Ok(ReloadReport {
            workers: outcome.new_worker_pids,
            elapsed: outcome.elapsed,
            gap_wait,
            ..ReloadReport::default()
        })
    }

    async fn epoch(&self) -> Result<Epoch, ProxyError> {
        let table = self.master.show_proc().await.map_err(master_error)?;
        if let Some(worker) = table.current_workers().first() {
            self.running.saw(&worker.version);
        }
        let e = table.epoch();
        Ok(Epoch {
            master_pid: e.master_pid,
            reloads: e.reloads,
            workers: vec![],
            generation: None,
            seeded_ms: None,
        })
    }

    fn version_report(&self) -> (Option<String>, Vec<String>) {
        match self.running.version() {
            Some(v) => (
                Some(v.text.clone()),
                running::version_warning(&v).into_iter().collect(),
            ),
            None => (None, Vec::new()),
        }
    }

    /// `[failed: N]` in `show proc` says the latest reload failed; `show startup-logs`
    /// (2.7+) says why: its ALERT and WARNING lines.
    async fn last_reload_failure(&self) -> Option<String> {
        let table = self.master.show_proc().await.ok()?;
        if table.failed == 0 {
            return None;
        }
        let logs = self.master.startup_logs().await.ok().flatten();
        let alerts: Vec<&str> = logs
            .as_deref()
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("[ALERT]") || l.contains("[WARNING]"))
            .collect();
        Some(if alerts.is_empty() {
            format!("{} failed reload(s) of HAProxy", table.failed)
        } else {
            alerts.join("\n")
        })
    }

    fn reload_wait(&self) -> Duration {
        self.gap.remaining()
    }

    async fn servers(&self, backend: &str) -> Result<Vec<ServerHealth>, ProxyError> {
        let rows = self.admin.servers_state(backend).await?;
        Ok(rows
            .into_iter()
            .map(|r| ServerHealth {
                address: match r.port {
                    Some(port) => format!("{}:{port}", r.addr),
                    None => r.addr.clone(),
                },
                up: r.op_state == 2,
                maint: r.is_maint(),
                drain: r.is_drain(),
                name: r.server,
            })
            .collect())
    }

    async fn set_drain(&self, backend: &str, drain: bool) -> Result<(), ProxyError> {
        let state = if drain {
            ServerAdminState::Drain
        } else {
            ServerAdminState::Ready
        };
        for row in self.admin.servers_state(backend).await? {
            // Leave servers an operator put in maintenance alone.
            if row.is_maint() || row.is_drain() == drain {
                continue;
            }
            self.admin
                .set_server_state(backend, &row.server, state)
                .await?;
        }
        Ok(())
    }

    async fn server_table(&self) -> Result<Vec<ServerSample>, ProxyError> {
        let rows = self.admin.all_servers_state().await?;
        Ok(rows
            .into_iter()
            .map(|r| ServerSample {
                state: r.health(),
                backend: r.backend,
                server: r.server,
            })
            .collect())
    }

    async fn set_maint(&self, backend: &str, maint: bool) -> Result<(), ProxyError> {
        let state = if maint {
            ServerAdminState::Maint
        } else {
            ServerAdminState::Ready
        };
        for row in self.admin.servers_state(backend).await? {
            if row.is_maint() == maint {
                continue;
            }
            self.admin
                .set_server_state(backend, &row.server, state)
                .await?;
        }
        Ok(())
    }

    async fn backend_stats(&self, backend: &str) -> Result<BackendStats, ProxyError> {
        Ok(self.admin.backend_stat(backend).await?)
    }
}

/// Largest config file read for its backends, bytes.
const MAX_CONFIG_BYTES: u64 = 64 * 1024 * 1024;

/// The text of a regular file no larger than [`MAX_CONFIG_BYTES`].
fn read_bounded(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_CONFIG_BYTES {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// The names of the `backend` and `listen` sections of an HAProxy config: the proxies a
/// map may send traffic to.
pub fn config_backends(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("backend" | "listen"), Some(name)) => Some(name.to_owned()),
                _ => None,
            }
        })
        .collect()
}

/// The entries a listing serves: HAProxy matches the first of duplicate keys, so that one
/// is kept.
fn served(listing: Vec<(String, String)>) -> MapEntries {
    let mut out = MapEntries::new();
    for (k, v) in listing {
        out.entry(k).or_insert(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backends_a_config_defines_are_its_backend_and_listen_sections() {
        let cfg = "global\n  maxconn 100\n# backend commented\nfrontend fe\n  use_backend x\n\
                   backend web_blue\n  server b1 127.0.0.1:1\nbackend web_green from d\n\
                   listen stats\n  bind :1\n";
        let names: Vec<String> = config_backends(cfg).into_iter().collect();
        assert_eq!(names, ["stats", "web_blue", "web_green"]);
    }

    /// `haproxy -v` of a 3.2.0 build gives the warning; later ones and unknown programs none.
    #[tokio::test]
    async fn version_of_the_installed_binary() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fake = |name: &str, banner: &str| {
            let path = dir.path().join(name);
            std::fs::write(
                &path,
                format!("#!/bin/sh\necho '{banner}'\necho 'Status: x'\n"),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let old = fake(
            "h320",
            "HAProxy version 3.2.0-1 2025/05/28 - https://haproxy.org/",
        );
        assert_eq!(binary_version(&old).await.unwrap().numbers, (3, 2, 0));
        let warnings = binary_warnings(&old).await;
        assert!(
            warnings.len() == 1 && warnings[0].contains("ebb801d7c"),
            "{warnings:?}"
        );
        let new = fake(
            "h3226",
            "HAProxy version 3.2.26-1 2026/10/14 - https://haproxy.org/",
        );
        assert!(binary_warnings(&new).await.is_empty());
        assert_eq!(binary_version(Path::new("/bin/true")).await, None);
    }

    /// External programs get an argument vector: shell syntax in a path is just bytes of
    /// a file name.
    #[tokio::test]
    async fn arguments_reach_the_program_verbatim_never_through_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let marker = "cutover-shell-injection-marker";
        let name = format!("a b;touch {marker};$(touch {marker})`touch {marker}`'\"|&.cfg");
        let evil = dir.path().join(name);
        std::fs::write(&evil, "global\n").unwrap();
        let cat = Path::new("/bin/cat");
        run_check(cat, &[evil.as_os_str()], Duration::from_secs(5))
            .await
            .expect("cat read the file of that exact name");
        assert!(
            !Path::new(marker).exists(),
            "a shell ran the embedded command"
        );
        let missing = dir.path().join("$(touch x).cfg");
        let e = run_check(cat, &[missing.as_os_str()], Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("$(touch x).cfg"), "{e}");
    }
}
