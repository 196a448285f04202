//! Real etcd 3.4 for tests: [`EtcdCluster`] runs one or three [`Etcd`] members on free
//! loopback ports, each in its own temporary directory, as children of the test process
//! stopped by PID; [`ctl::Etcdctl`] reads and writes through the `etcdctl` binary.
//!
//! A test that needs etcd starts with `let etcd = require_etcd!();` (skipped when etcd or
//! etcdctl is missing, failed instead under `CUTOVER_REQUIRE_PROXIES=1`), then e.g.
//! `let cluster = EtcdCluster::three(&etcd);`. Dropping the cluster stops every member.
//!
//! Raft timing is shortened ([`HEARTBEAT_MS`], [`ELECTION_MS`]) so that losing a leader
//! costs well under a second, and pre-vote is on so that a member coming back does not
//! depose a healthy leader.

pub mod ctl;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::process::{instance_dir, wait_until, ProxyProcess};
use crate::proxies::require_proxy;
use ctl::Etcdctl;

/// Raft heartbeat interval of every member, in milliseconds (etcd's default is 100).
pub const HEARTBEAT_MS: u32 = 30;

/// Raft election timeout of every member, in milliseconds (etcd's default is 1000): a
/// follower that hears nothing from the leader for 300 to 600 ms starts an election.
pub const ELECTION_MS: u32 = 300;

/// How long a start waits for every member to be healthy: 20 seconds.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long [`EtcdCluster::leader`] waits for the running members to agree on one: 10 s.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a member stopped on purpose gets after SIGTERM before SIGKILL: 10 seconds.
/// etcd 3.4 takes about a second to exit even when idle, and a leader first hands over
/// its leadership, which may wait up to 5 s + 2 × [`ELECTION_MS`].
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long each member gets after SIGTERM when the cluster is dropped: 2 seconds. Its
/// data is thrown away, so a member slower than that is killed.
pub const DROP_GRACE: Duration = Duration::from_secs(2);

/// How long a leader may take to notice that its stopped followers are gone: 1 second.
const PEERS_GONE_WITHIN: Duration = Duration::from_secs(1);

/// How often readiness and agreement are checked.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Bound on each step of one `/health` or `/metrics` request.
const HTTP_TIMEOUT: Duration = Duration::from_millis(500);

/// Largest reply read from `/health` or `/metrics` (about 100 KiB in etcd 3.4).
const MAX_REPLY_BYTES: u64 = 1024 * 1024;

/// The `etcd` and `etcdctl` executables.
#[derive(Debug, Clone)]
pub struct EtcdBinaries {
    /// The server (Debian: /usr/bin/etcd, package etcd-server).
    pub etcd: PathBuf,
    /// The client (Debian: /usr/bin/etcdctl, package etcd-client).
    pub etcdctl: PathBuf,
}

/// The etcd binaries a test needs. When one is missing, prints a skip notice and returns
/// `None`, or panics when `CUTOVER_REQUIRE_PROXIES=1`, like
/// [`require_proxy`].
pub fn require_etcd() -> Option<EtcdBinaries> {
    let etcd = require_proxy("etcd")?;
    let etcdctl = require_proxy("etcdctl")?;
    Some(EtcdBinaries { etcd, etcdctl })
}

/// Evaluates to the [`EtcdBinaries`], or returns from the enclosing function (skipping the
/// test) when etcd or etcdctl is missing; panics instead under `CUTOVER_REQUIRE_PROXIES=1`.
///
/// ```ignore
/// let etcd = cutover_tests::require_etcd!();
/// let cluster = cutover_tests::etcd::EtcdCluster::single(&etcd);
/// ```
#[macro_export]
macro_rules! require_etcd {
    () => {
        match $crate::etcd::require_etcd() {
            Some(binaries) => binaries,
            None => return,
        }
    };
}

/// How a member's process is started: the first time, or again from its data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClusterState {
    New,
    Existing,
}

/// One etcd member: its process, ports and files. Owned by an [`EtcdCluster`].
#[derive(Debug)]
pub struct Etcd {
    process: ProxyProcess,
    // Dropped after the process: the directory goes once the member has stopped.
    spec: MemberSpec,
}

/// What stays the same across a member's starts: name, ports, cluster and directory.
#[derive(Debug)]
struct MemberSpec {
    name: String,
    binary: PathBuf,
    client_port: u16,
    peer_port: u16,
    /// `name=peer URL` of every member, the same for all.
    initial_cluster: String,
    token: String,
    dir: TempDir,
}

impl Etcd {
    /// The member's name (`etcd-0`, `etcd-1`, ...).
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The client URL, `http://127.0.0.1:<port>`.
    pub fn client_url(&self) -> String {
        self.spec.client_url()
    }

    /// The peer URL, `http://127.0.0.1:<port>`.
    pub fn peer_url(&self) -> String {
        self.spec.peer_url()
    }

    /// The client address.
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.spec.client_port))
    }

    /// The data directory (kept across [`EtcdCluster::restart`]).
    pub fn data_dir(&self) -> PathBuf {
        self.spec.data_dir()
    }

    /// The file collecting the member's stdout and stderr, appended to by every start.
    pub fn log_file(&self) -> PathBuf {
        self.spec.log_file()
    }

    /// Everything the member printed so far, over all its starts.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// PID of the current (or last) process.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// True while the process runs.
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// True when `GET /health` answers `"health":"true"`: the member has a leader and
    /// served a linearizable read.
    pub fn is_healthy(&self) -> bool {
        http_get(self.client_addr(), "/health")
            .is_ok_and(|body| body.contains(r#""health":"true""#))
    }

    /// True when the member's metrics say it leads (`etcd_server_is_leader 1`); false
    /// when it follows or does not answer.
    pub fn is_leader(&self) -> bool {
        http_get(self.client_addr(), "/metrics")
            .is_ok_and(|body| body.lines().any(|l| l == "etcd_server_is_leader 1"))
    }

    /// Starts the process of a new member (not waiting for it).
    fn start(spec: MemberSpec) -> Result<Etcd, String> {
        let process = spec.spawn(ClusterState::New)?;
        Ok(Etcd { process, spec })
    }

    /// Starts the process again from the data directory (killing the running one first).
    fn respawn(&mut self) -> Result<(), String> {
        self.kill();
        self.process = self.spec.spawn(ClusterState::Existing)?;
        Ok(())
    }

    /// Waits up to [`STARTUP_TIMEOUT`] until the member is healthy; fails with its log.
    fn wait_healthy(&self) -> Result<(), String> {
        let what = format!("become healthy on {}/health", self.client_url());
        self.process
            .wait_ready(STARTUP_TIMEOUT, POLL_EVERY, &what, || self.is_healthy())
    }

    fn kill(&mut self) {
        self.process
            .kill()
            .unwrap_or_else(|e| panic!("{}: kill {}: {e}", self.name(), self.pid()));
    }

    /// How many peers the member's raft transport counts as active now
    /// (`etcd_network_active_peers`); `None` when it does not answer.
    fn active_peers(&self) -> Option<usize> {
        let metrics = http_get(self.client_addr(), "/metrics").ok()?;
        let active = metrics
            .lines()
            .filter(|l| l.starts_with("etcd_network_active_peers{") && l.ends_with(" 1"))
            .count();
        Some(active)
    }

    fn stop(&mut self, grace: Duration) {
        self.process
            .stop(grace)
            .unwrap_or_else(|e| panic!("{}: stop {}: {e}", self.name(), self.pid()));
    }

    /// Sends SIGTERM without waiting, so that several members stop at once.
    fn terminate(&self) {
        let _ = self.process.signal(Signal::SIGTERM);
    }
}

impl MemberSpec {
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Runs etcd for this member, output appended to its log file.
    fn spawn(&self, state: ClusterState) -> Result<ProxyProcess, String> {
        let mut command = Command::new(&self.binary);
        // etcd reads any ETCD_<FLAG> variable as a flag: the test environment must not.
        // ETCD_UNSUPPORTED_ARCH is no flag; arm64 hosts need it to run etcd at all.
        for (name, _) in std::env::vars_os() {
            let name_text = name.to_string_lossy();
            if name_text.starts_with("ETCD_") && name_text != "ETCD_UNSUPPORTED_ARCH" {
                command.env_remove(name);
            }
        }
        let (client, peer) = (self.client_url(), self.peer_url());
        let state = match state {
            ClusterState::New => "new",
            // With a data directory etcd restarts from its WAL and ignores the
            // initial-cluster flags; `existing` says so.
            ClusterState::Existing => "existing",
        };
        command
            .arg(format!("--name={}", self.name))
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}", self.initial_cluster))
            .arg(format!("--initial-cluster-state={state}"))
            .arg(format!("--initial-cluster-token={}", self.token))
            .arg(format!("--heartbeat-interval={HEARTBEAT_MS}"))
            .arg(format!("--election-timeout={ELECTION_MS}"))
            .arg("--pre-vote")
            .current_dir(self.dir.path());
        ProxyProcess::spawn(&self.name, command, &self.log_file())
            .map_err(|e| format!("{}: spawn {}: {e}", self.name, self.binary.display()))
    }
}

/// One or three etcd members forming one cluster. Dropping it stops every member by PID
/// (SIGTERM, SIGKILL after [`DROP_GRACE`]) and removes their directories.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Etcd>,
    etcdctl: PathBuf,
}

impl EtcdCluster {
    /// A one-member cluster, healthy. Panics with the member's log when it does not come up.
    pub fn single(binaries: &EtcdBinaries) -> EtcdCluster {
        EtcdCluster::start(binaries, 1)
    }

    /// A three-member cluster, every member healthy (so a leader is elected). Panics with
    /// the log of a member that does not come up.
    pub fn three(binaries: &EtcdBinaries) -> EtcdCluster {
        EtcdCluster::start(binaries, 3)
    }

    /// A cluster of `size` members, every member healthy; panics otherwise.
    pub fn start(binaries: &EtcdBinaries, size: usize) -> EtcdCluster {
        EtcdCluster::try_start(binaries, size).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`EtcdCluster::start`], returning the failure (with the member's log).
    pub fn try_start(binaries: &EtcdBinaries, size: usize) -> Result<EtcdCluster, String> {
        let ports: Vec<(u16, u16)> = (0..size)
            .map(|_| (crate::free_port(), crate::free_port()))
            .collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("{}=http://127.0.0.1:{peer}", member_name(i)))
            .collect::<Vec<_>>()
            .join(",");
        let token = cluster_token();
        let mut cluster = EtcdCluster {
            members: Vec::with_capacity(size),
            etcdctl: binaries.etcdctl.clone(),
        };
        // Every member is started before any is waited for: none is healthy before a
        // quorum runs.
        for (i, (client_port, peer_port)) in ports.into_iter().enumerate() {
            let name = member_name(i);
            let spec = MemberSpec {
                dir: instance_dir(&name)?,
                name,
                binary: binaries.etcd.clone(),
                client_port,
                peer_port,
                initial_cluster: initial_cluster.clone(),
                token: token.clone(),
            };
            cluster.members.push(Etcd::start(spec)?);
        }
        for member in &cluster.members {
            member.wait_healthy()?;
        }
        Ok(cluster)
    }

    /// The members, in order.
    pub fn members(&self) -> &[Etcd] {
        &self.members
    }

    /// Member `i`.
    pub fn member(&self, i: usize) -> &Etcd {
        &self.members[i]
    }

    /// The client URLs of every member, running or not, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Etcd::client_url).collect()
    }

    /// [`EtcdCluster::endpoints`] joined by commas, as `--endpoints` takes them.
    pub fn endpoints_csv(&self) -> String {
        self.endpoints().join(",")
    }

    /// etcdctl against the members that run now. etcdctl 3.4 given a stopped member's
    /// endpoint may pick it and fail instead of trying the next one.
    pub fn etcdctl(&self) -> Etcdctl {
        let running = self
            .running()
            .map(|i| self.members[i].client_url())
            .collect();
        Etcdctl::new(&self.etcdctl, running)
    }

    /// etcdctl against member `i` only.
    pub fn etcdctl_for(&self, i: usize) -> Etcdctl {
        Etcdctl::new(&self.etcdctl, vec![self.members[i].client_url()])
    }

    /// Index of the leader, once every running member names the same running one. Waits
    /// up to [`LEADER_TIMEOUT`]; panics with the members' logs when they do not agree.
    pub fn leader(&self) -> usize {
        let mut answer = Err(String::from("not asked"));
        wait_until(LEADER_TIMEOUT, POLL_EVERY, || {
            answer = self.try_leader();
            answer.is_ok()
        });
        answer.unwrap_or_else(|e| {
            panic!(
                "no agreed etcd leader within {LEADER_TIMEOUT:?}: {e}\n{}",
                self.logs()
            )
        })
    }

    /// The leader as the running members see it now: fails while one of them does not
    /// answer, knows of no leader, or names another than the others.
    pub fn try_leader(&self) -> Result<usize, String> {
        let statuses = self.etcdctl().statuses()?;
        let ids: Vec<(usize, ctl::MemberStatus)> = statuses
            .into_iter()
            .map(|(endpoint, status)| {
                let index = self.members.iter().position(|m| m.client_url() == endpoint);
                index
                    .map(|i| (i, status))
                    .ok_or_else(|| format!("status of unknown endpoint {endpoint}"))
            })
            .collect::<Result<_, _>>()?;
        let leader = ids.first().map(|(_, s)| s.leader).unwrap_or(0);
        if leader == 0 || ids.iter().any(|(_, s)| s.leader != leader) {
            return Err(format!("members disagree on the leader: {ids:?}"));
        }
        ids.iter()
            .find(|(_, s)| s.id == leader)
            .map(|(i, _)| *i)
            .ok_or_else(|| format!("leader {leader:x} is not a running member: {ids:?}"))
    }

    /// Kills member `i` at once (SIGKILL by PID, as in a crash) and reaps it. Its data
    /// directory stays for [`EtcdCluster::restart`].
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Stops member `i` (SIGTERM, SIGKILL after [`STOP_GRACE`]); a leader hands over first.
    pub fn stop(&mut self, i: usize) {
        self.members[i].stop(STOP_GRACE);
    }

    /// Starts member `i` again from its data directory on the same ports (killing it first
    /// if it runs), and waits until it is healthy; panics with its log otherwise. It needs
    /// a quorum of running members to be healthy.
    pub fn restart(&mut self, i: usize) {
        let member = &mut self.members[i];
        member
            .respawn()
            .and_then(|()| member.wait_healthy())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stops every running member (SIGTERM, SIGKILL after [`STOP_GRACE`]): an outage of
    /// the whole cluster. The followers stop first, then the leader, so that the leader
    /// has nobody to hand its leadership over to and exits at once.
    pub fn stop_all(&mut self) {
        for (member, stopped) in self.stop_in_order(STOP_GRACE) {
            stopped.unwrap_or_else(|e| panic!("{member}: stop: {e}"));
        }
    }

    /// Starts every stopped member from its data directory and waits until all are
    /// healthy; panics with a member's log otherwise.
    pub fn start_all(&mut self) {
        for member in self.members.iter_mut().filter(|m| !m.is_running()) {
            member.respawn().unwrap_or_else(|e| panic!("{e}"));
        }
        for member in &self.members {
            member.wait_healthy().unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// `put key value` through the running members; panics on failure.
    pub fn put(&self, key: &str, value: &str) {
        self.try_put(key, value)
            .unwrap_or_else(|e| panic!("etcd put {key:?}: {e}"));
    }

    /// `put key value` through the running members, once (no retry).
    pub fn try_put(&self, key: &str, value: &str) -> Result<(), String> {
        self.etcdctl().put(key, value)
    }

    /// The value of `key`, `None` when absent; panics when etcd does not answer.
    pub fn get(&self, key: &str) -> Option<String> {
        self.etcdctl()
            .get(key)
            .unwrap_or_else(|e| panic!("etcd get {key:?}: {e}"))
    }

    /// Every key under `prefix` with its value, in key order; panics when etcd does not
    /// answer.
    pub fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.etcdctl()
            .get_prefix(prefix)
            .unwrap_or_else(|e| panic!("etcd get --prefix {prefix:?}: {e}"))
    }

    /// The current store revision; panics when etcd does not answer.
    pub fn revision(&self) -> i64 {
        self.etcdctl()
            .revision()
            .unwrap_or_else(|e| panic!("etcd revision: {e}"))
    }

    /// Compacts the keyspace to the current revision (only the latest version of each key
    /// stays) and returns that revision. Compacting again with no write in between is
    /// accepted. Panics when etcd refuses.
    pub fn compact_to_current(&self) -> i64 {
        let etcdctl = self.etcdctl();
        let revision = etcdctl
            .revision()
            .unwrap_or_else(|e| panic!("etcd revision: {e}"));
        match etcdctl.compact(revision) {
            Ok(()) => revision,
            // Already compacted to this very revision: nothing newer exists.
            Err(e) if e.contains("required revision has been compacted") => revision,
            Err(e) => panic!("etcd compact {revision}: {e}"),
        }
    }

    /// The revision the keyspace was last compacted to, 0 when none; panics when etcd does
    /// not answer.
    pub fn compact_revision(&self) -> i64 {
        self.etcdctl()
            .compact_revision()
            .unwrap_or_else(|e| panic!("etcd compact revision: {e}"))
    }

    /// Every member's log, headed by its name, for failure messages.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("--- {} (pid {}):\n{}", m.name(), m.pid(), m.log()))
            .collect()
    }

    /// Stops every running member, followers first and together, then the leader once it
    /// has noticed they are gone. A leader that gets SIGTERM hands its leadership to the
    /// peer it has been connected to longest; if that peer is stopping too, the handover
    /// hangs for etcd's request timeout (5 s + 2 × [`ELECTION_MS`]). A leader with no
    /// active peer left skips it and exits at once. Each member gets `grace` after its
    /// SIGTERM. Returns each member's name and how it ended.
    fn stop_in_order(&mut self, grace: Duration) -> Vec<(String, io::Result<ExitStatus>)> {
        let (leaders, followers): (Vec<usize>, Vec<usize>) =
            self.running().partition(|i| self.members[*i].is_leader());
        for &i in &followers {
            self.members[i].terminate();
        }
        let mut stopped: Vec<_> = followers
            .into_iter()
            .map(|i| self.stop_now(i, grace))
            .collect();
        for i in leaders {
            let leader = &self.members[i];
            wait_until(PEERS_GONE_WITHIN, POLL_EVERY, || {
                leader.active_peers().is_none_or(|active| active == 0)
            });
            stopped.push(self.stop_now(i, grace));
        }
        stopped
    }

    fn stop_now(&mut self, i: usize, grace: Duration) -> (String, io::Result<ExitStatus>) {
        let member = &mut self.members[i];
        (member.name().to_owned(), member.process.stop(grace))
    }

    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.members.len()).filter(|i| self.members[*i].is_running())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for (member, stopped) in self.stop_in_order(DROP_GRACE) {
            if let Err(err) = stopped {
                eprintln!("{member}: stopping failed: {err}");
            }
        }
    }
}

fn member_name(index: usize) -> String {
    format!("etcd-{index}")
}

/// A token no other cluster started on this host shares: `cutover-<pid>-<n>`.
fn cluster_token() -> String {
    static CLUSTERS: AtomicU32 = AtomicU32::new(0);
    let n = CLUSTERS.fetch_add(1, Ordering::Relaxed);
    format!("cutover-{}-{n}", std::process::id())
}

/// The reply (head and body) to `GET <path>` on `addr`, each step bounded by
/// [`HTTP_TIMEOUT`], at most [`MAX_REPLY_BYTES`].
fn http_get(addr: SocketAddr, path: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    // HTTP/1.0: the server closes the connection after the reply.
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut reply = String::new();
    stream.take(MAX_REPLY_BYTES).read_to_string(&mut reply)?;
    Ok(reply)
}
