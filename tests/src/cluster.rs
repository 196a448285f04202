//! Hosts on loopback (three for the tests, any number for the benchmark), each with
//! origins, HAProxy and an agent, peered over mutual TLS with certificates from a fresh CA:
//! the setup of the cluster tests and measurements.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::agent::{Setup, SetupOptions};

/// The host name every setup routes to service `web`.
pub const HOST: &str = "www.example.test";
/// The time each peer has to answer (`timeout_ms` of every host).
pub const PEER_TIMEOUT: Duration = Duration::from_millis(3000);

/// A CA and certificates for lb1..lb3 and a client `ci`, in `dir`.
pub fn certificates(dir: &Path) {
    certificates_for(dir, 3);
}

/// A CA and certificates for lb1..lb`n` and a client `ci`, in `dir`.
pub fn certificates_for(dir: &Path, n: usize) {
    let bin = crate::cutover_binary();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&bin)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    let d = dir.to_str().unwrap();
    run(&["tls", "ca", d]);
    let names = (1..=n).map(|i| format!("lb{i}")).chain(["ci".to_owned()]);
    for name in names {
        run(&["tls", "issue", d, &name]);
    }
}

/// Agents on their own HAProxy instances, peers of each other over mutual TLS.
pub struct Cluster {
    /// The hosts lb1..lbN, in order.
    pub hosts: Vec<Setup>,
    /// Peer listener port of each host.
    pub ports: Vec<u16>,
    /// Directory of the CA and the certificates of lb1..lbN and `ci`.
    pub certs: PathBuf,
    _dir: tempfile::TempDir,
}

/// Three hosts lb1..lb3; `holds` adds `[cluster]` lines per host (fault injection). `None`
/// when HAProxy is missing (and not required).
pub fn cluster(holds: [&str; 3]) -> Option<Cluster> {
    cluster_of(&holds)
}

/// One host per entry of `holds` (lb1..lbN, each peer of every other); each entry adds
/// `[cluster]` lines to its host. `None` when HAProxy is missing (and not required).
pub fn cluster_of(holds: &[&str]) -> Option<Cluster> {
    let haproxy = crate::require_proxy("haproxy")?;
    let n = holds.len();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().to_owned();
    certificates_for(&certs, n);
    let ports: Vec<u16> = (0..n).map(|_| crate::free_port()).collect();
    let hosts = (0..n)
        .map(|i| {
            let peers: String = (0..n)
                .filter(|j| *j != i)
                .map(|j| {
                    format!(
                        "[[cluster.peers]]\nname = \"lb{}\"\naddress = \"127.0.0.1:{}\"\n",
                        j + 1,
                        ports[j]
                    )
                })
                .collect();
            let c = certs.display();
            let tail = format!(
                "[cluster]\nnode = \"lb{n}\"\nlisten = \"127.0.0.1:{port}\"\nca = \"{c}/ca.pem\"\n\
                 cert = \"{c}/lb{n}.pem\"\nkey = \"{c}/lb{n}.key\"\nreport_interval_ms = 200\n\
                 timeout_ms = {timeout}\n{hold}\n{peers}",
                n = i + 1,
                timeout = PEER_TIMEOUT.as_millis(),
                port = ports[i],
                hold = holds[i],
            );
            let mut s = Setup::new(
                &haproxy,
                SetupOptions {
                    config_extra: tail,
                    ..SetupOptions::default()
                },
            );
            s.start_agent();
            s
        })
        .collect();
    let c = Cluster {
        hosts,
        ports,
        certs,
        _dir: dir,
    };
    c.wait_formed();
    Some(c)
}

impl Cluster {
    /// Waits until every host hears every other one, at most 10 s and 1 s per host: then
    /// every peer listener is bound (the reports came in on it), which an agent's control
    /// socket answering does not promise yet.
    pub fn wait_formed(&self) {
        let n = self.hosts.len();
        let all_reachable = |h: &Setup| {
            let out = h.cli(&["--json", "status", "--cluster"]);
            let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            s["data"]["hosts"]
                .as_array()
                .is_some_and(|rows| rows.len() == n && rows.iter().all(|r| r["reachable"] == true))
        };
        let within = Duration::from_secs(10 + n as u64);
        let formed = crate::wait_until(within, Duration::from_millis(50), || {
            self.hosts.iter().all(all_reachable)
        });
        assert!(
            formed,
            "the {n} hosts do not hear each other within {within:?}"
        );
    }

    /// What each host answers for [`HOST`].
    pub fn bodies(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.get(HOST).1).collect()
    }
}
