//! A fleet on loopback: real etcd (one member or three) and N hosts, each with its origins,
//! its own HAProxy and an agent with `[cluster] store = "etcd"`: the setup of the fleet
//! tests and of the fleet benchmark.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::agent::{text, Setup, SetupOptions};
use crate::etcd::{EtcdBinaries, EtcdCluster};

/// The host name every setup routes to service `web`.
pub const HOST: &str = crate::cluster::HOST;
/// The key prefix of the test site.
pub const PREFIX: &str = "/cutover/test";

/// Timings of a test fleet: short leases and checks, so that faults show in seconds.
#[derive(Debug, Clone)]
pub struct Timings {
    /// `lease_ttl_s`.
    pub lease_ttl_s: u64,
    /// `vote_timeout_ms`.
    pub vote_ms: u64,
    /// `wait_ms`.
    pub wait_ms: u64,
    /// `check_interval_ms`.
    pub check_ms: u64,
    /// `expect_hosts`.
    pub expect_hosts: Vec<String>,
}

impl Timings {
    /// The shipped defaults of `[cluster.etcd]`: what a fleet in production idles with.
    pub fn shipped() -> Timings {
        use cutover::config::fleet as d;
        Timings {
            lease_ttl_s: d::DEFAULT_LEASE_TTL_S,
            vote_ms: d::DEFAULT_VOTE_TIMEOUT_MS,
            wait_ms: d::DEFAULT_WAIT_MS,
            check_ms: d::DEFAULT_CHECK_INTERVAL_MS,
            expect_hosts: vec![],
        }
    }
}

impl Default for Timings {
    fn default() -> Timings {
        Timings {
            lease_ttl_s: 2,
            vote_ms: 10_000,
            wait_ms: 15_000,
            check_ms: 1_000,
            expect_hosts: vec![],
        }
    }
}

/// etcd and the hosts lb1..lbN of one site.
pub struct Fleet {
    /// The etcd members.
    pub etcd: EtcdCluster,
    /// The hosts, in order (lb1 first).
    pub hosts: Vec<Setup>,
    /// The timings every host was given.
    pub timings: Timings,
}

impl Fleet {
    /// `n` hosts on HAProxy `haproxy`, following `etcd`; every agent started and live in
    /// etcd before this returns.
    pub fn start(
        haproxy: &std::path::Path,
        etcd: EtcdCluster,
        n: usize,
        timings: Timings,
    ) -> Fleet {
        Fleet::start_with(haproxy, etcd, n, timings, SetupOptions::default())
    }

    /// [`Fleet::start`] with every host built from `options` (the `[cluster]` tables are
    /// appended to its `config_extra`).
    pub fn start_with(
        haproxy: &std::path::Path,
        etcd: EtcdCluster,
        n: usize,
        timings: Timings,
        options: SetupOptions,
    ) -> Fleet {
        let endpoints = etcd
            .endpoints()
            .iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let hosts = (1..=n)
            .map(|i| {
                let tail = format!(
                    "[cluster]\nstore = \"etcd\"\nnode = \"lb{i}\"\nexpect_hosts = {:?}\n\n[cluster.etcd]\n\
                     endpoints = [{endpoints}]\nprefix = \"{PREFIX}\"\nlease_ttl_s = {}\n\
                     vote_timeout_ms = {}\nwait_ms = {}\ncheck_interval_ms = {}\n\
                     request_timeout_ms = 2000\ndial_timeout_ms = 1000\n",
                    timings.expect_hosts,
                    timings.lease_ttl_s,
                    timings.vote_ms,
                    timings.wait_ms,
                    timings.check_ms
                );
                let mut s = Setup::new(
                    haproxy,
                    SetupOptions {
                        config_extra: format!("{}\n{tail}", options.config_extra),
                        ..options.clone()
                    },
                );
                s.start_agent();
                s
            })
            .collect();
        let fleet = Fleet {
            etcd,
            hosts,
            timings,
        };
        assert!(
            fleet.wait_live(n, Duration::from_secs(20)),
            "not every host went live in etcd: {:?}\n{}",
            fleet.etcd.get_prefix(&format!("{PREFIX}/hosts/")),
            fleet.logs()
        );
        fleet
    }

    /// A fleet of `n` hosts on a single etcd member, or `None` when HAProxy or etcd is
    /// missing (and not required).
    pub fn single(n: usize) -> Option<Fleet> {
        let haproxy = crate::require_proxy("haproxy")?;
        let bins = crate::require_etcd()?;
        Some(Fleet::start(
            &haproxy,
            EtcdCluster::single(&bins),
            n,
            Timings::default(),
        ))
    }

    /// A fleet of `n` hosts on a three-member etcd cluster.
    pub fn three(n: usize) -> Option<Fleet> {
        let haproxy = crate::require_proxy("haproxy")?;
        let bins: EtcdBinaries = crate::require_etcd()?;
        Some(Fleet::start(
            &haproxy,
            EtcdCluster::three(&bins),
            n,
            Timings::default(),
        ))
    }

    /// Runs `cutover --etcd <endpoints> --etcd-prefix <prefix> args...`: the command line
    /// alone, no agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with(&self.etcd.endpoints_csv(), args)
    }

    /// [`Fleet::cli`] with the endpoints given.
    pub fn cli_with(&self, endpoints: &str, args: &[&str]) -> Output {
        self.command(endpoints, args)
            .output()
            .expect("run cutover --etcd")
    }

    /// The command [`Fleet::cli`] runs, to spawn it.
    pub fn command(&self, endpoints: &str, args: &[&str]) -> Command {
        let mut c = Command::new(crate::cutover_binary());
        c.args([
            "--etcd",
            endpoints,
            "--etcd-prefix",
            PREFIX,
            "--etcd-name",
            "ci",
        ])
        .args(["--config", "/nonexistent/cutover.toml"])
        .args(args)
        .stdin(Stdio::null());
        c
    }

    /// Starts [`Fleet::command`] with its output captured, to wait for it later.
    pub fn spawn(&self, endpoints: &str, args: &[&str]) -> std::process::Child {
        self.command(endpoints, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cutover --etcd")
    }

    /// [`Fleet::cli`] with `--json`: exit code and reply.
    pub fn cli_json(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        let v = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("cutover --etcd {args:?}: not JSON ({e}): {}", text(&out)));
        (out.status.code().unwrap_or(-1), v)
    }

    /// What each host answers for [`HOST`].
    pub fn bodies(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.get(HOST).1).collect()
    }

    /// Waits until every host answers `body` for [`HOST`].
    pub fn wait_all(&self, body: &str, within: Duration) -> bool {
        crate::wait_until(within, Duration::from_millis(50), || {
            self.bodies().iter().all(|b| b == body)
        })
    }

    /// Waits until `n` host records are live in etcd.
    pub fn wait_live(&self, n: usize, within: Duration) -> bool {
        crate::wait_until(within, Duration::from_millis(100), || {
            self.etcd.get_prefix(&format!("{PREFIX}/hosts/")).len() == n
        })
    }

    /// The fleet generation stored in etcd (0 before the first change).
    pub fn generation(&self) -> u64 {
        self.etcd
            .get(&format!("{PREFIX}/generation"))
            .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
            .and_then(|v| v["generation"].as_u64())
            .unwrap_or(0)
    }

    /// The `fleet` section of host `i`'s status.
    pub fn health(&self, i: usize) -> serde_json::Value {
        let (code, v) = self.hosts[i].cli_json(&["status"]);
        // 3: the agent answered and reports a fault.
        assert!(code == 0 || code == 3, "status of lb{}: {v}", i + 1);
        v["data"]["fleet"].clone()
    }

    /// Every agent's log, for messages.
    pub fn logs(&self) -> String {
        self.hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let log = std::fs::read_to_string(&h.agent().log).unwrap_or_default();
                format!("--- lb{} agent log:\n{log}\n", i + 1)
            })
            .collect()
    }

    /// Where host `i` keeps its state.
    pub fn dir(&self, i: usize) -> PathBuf {
        self.hosts[i].dir().to_owned()
    }
}
