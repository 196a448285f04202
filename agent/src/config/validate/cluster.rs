//! Validation of the `[cluster]` section: the node, its peers and their TLS files.

use std::collections::BTreeSet;
use std::time::Duration;

use super::Validator;
use crate::config::raw::RawCluster;
use crate::config::*;
use crate::mapfile::check_name;

impl Validator<'_> {
    pub(super) fn cluster(&mut self, raw: RawCluster) -> ClusterConfig {
        use crate::config::cluster::{
            DEFAULT_PEER_TIMEOUT_MS, DEFAULT_PREPARE_TTL_MS, DEFAULT_REPORT_INTERVAL_MS,
        };
        if let Err(e) = check_name(&raw.node) {
            self.problem(format!("cluster.node: {e}"));
        }
        for (field, set) in [
            ("expect_hosts", !raw.expect_hosts.is_empty()),
            ("etcd", raw.etcd.is_some()),
        ] {
            if set {
                self.problem(format!(
                    "cluster.{field}: belongs to store = \"etcd\" (this cluster lists its peers)"
                ));
            }
        }
        let mut required = |field: &str, value: Option<std::path::PathBuf>| {
            value.unwrap_or_else(|| {
                self.problem(format!("cluster.{field}: missing (store = \"peers\")"));
                std::path::PathBuf::new()
            })
        };
        let (ca, cert, key) = (
            required("ca", raw.ca),
            required("cert", raw.cert),
            required("key", raw.key),
        );
        let listen_text = raw.listen.unwrap_or_default();
        let listen = listen_text.parse().unwrap_or_else(|_| {
            self.problem(format!("cluster.listen: {listen_text:?} is not ip:port"));
            std::net::SocketAddr::from(([127, 0, 0, 1], 0))
        });
        let mut names = BTreeSet::from([raw.node.clone()]);
        for (i, p) in raw.peers.iter().enumerate() {
            let at = format!("cluster.peers[{i}] ({})", p.name);
            if let Err(e) = check_name(&p.name) {
                self.problem(format!("{at}.name: {e}"));
            }
            if !names.insert(p.name.clone()) {
                self.problem(format!("{at}.name: used twice (or the name of this node)"));
            }
            let port_ok = p
                .address
                .rsplit_once(':')
                .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok_and(|n| n > 0));
            if !port_ok {
                self.problem(format!("{at}.address: {:?} is not host:port", p.address));
            }
        }
        let tls = TlsFiles {
            ca: self.abs("cluster.ca", ca),
            cert: self.abs("cluster.cert", cert),
            key: self.abs("cluster.key", key),
        };
        for (what, p) in [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)] {
            if !p.is_file() {
                self.problem(format!(
                    "cluster.{what}: {} is not a readable file",
                    p.display()
                ));
            }
        }
        let hold = |ms: u64| Duration::from_millis(ms.min(600_000));
        ClusterConfig {
            node: raw.node,
            listen,
            tls,
            peers: raw.peers,
            report_interval: self.duration(
                "cluster.report_interval_ms",
                raw.report_interval_ms,
                DEFAULT_REPORT_INTERVAL_MS,
            ),
            timeout: self.duration(
                "cluster.timeout_ms",
                raw.timeout_ms,
                DEFAULT_PEER_TIMEOUT_MS,
            ),
            prepare_ttl: self.duration(
                "cluster.prepare_ttl_ms",
                raw.prepare_ttl_ms,
                DEFAULT_PREPARE_TTL_MS,
            ),
            hold_before_decision: hold(raw.hold_before_decision_ms),
            hold_before_commit: hold(raw.hold_before_commit_ms),
        }
    }
}
