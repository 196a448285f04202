//! Validation of `[cluster]` with `store = "etcd"` and its `[cluster.etcd]` table.

use std::collections::BTreeSet;
use std::time::Duration;

use super::Validator;
use crate::config::fleet::*;
use crate::config::raw::{RawCluster, RawEtcd};
use crate::mapfile::check_name;

impl Validator<'_> {
    pub(super) fn fleet(&mut self, raw: RawCluster) -> FleetConfig {
        if let Err(e) = check_name(&raw.node) {
            self.problem(format!("cluster.node: {e}"));
        }
        let peers_only = [
            ("listen", raw.listen.is_some()),
            ("ca", raw.ca.is_some()),
            ("cert", raw.cert.is_some()),
            ("key", raw.key.is_some()),
            ("peers", !raw.peers.is_empty()),
            ("report_interval_ms", raw.report_interval_ms.is_some()),
            ("prepare_ttl_ms", raw.prepare_ttl_ms.is_some()),
        ];
        for (field, set) in peers_only {
            if set {
                self.problem(format!(
                    "cluster.{field}: belongs to store = \"peers\"; with store = \"etcd\" \
                     the hosts meet in etcd ([cluster.etcd])"
                ));
            }
        }
        let mut seen = BTreeSet::new();
        for h in &raw.expect_hosts {
            if let Err(e) = check_name(h) {
                self.problem(format!("cluster.expect_hosts: {e}"));
            }
            if !seen.insert(h) {
                self.problem(format!("cluster.expect_hosts: {h:?} listed twice"));
            }
        }
        let etcd = match raw.etcd {
            Some(e) => self.etcd(e),
            None => {
                self.problem("cluster.etcd: store = \"etcd\" needs a [cluster.etcd] table".into());
                EtcdConfig::new(vec![], String::new())
            }
        };
        FleetConfig {
            node: raw.node,
            expect_hosts: raw.expect_hosts,
            etcd,
        }
    }

    fn etcd(&mut self, raw: RawEtcd) -> EtcdConfig {
        let tls = match (raw.ca, raw.cert, raw.key) {
            (None, None, None) => None,
            (Some(ca), cert, key) => {
                let ca = self.readable("cluster.etcd.ca", ca);
                let identity = match (cert, key) {
                    (Some(c), Some(k)) => Some((
                        self.readable("cluster.etcd.cert", c),
                        self.readable("cluster.etcd.key", k),
                    )),
                    (None, None) => None,
                    _ => {
                        self.problem("cluster.etcd: cert and key go together".into());
                        None
                    }
                };
                Some(EtcdTls { ca, identity })
            }
            (None, _, _) => {
                self.problem("cluster.etcd: a client cert and key need ca".into());
                None
            }
        };
        let auth = match (raw.user, raw.password_file) {
            (None, None) => None,
            (Some(user), Some(file)) => Some(EtcdAuth {
                user,
                password_file: self.readable("cluster.etcd.password_file", file),
            }),
            _ => {
                self.problem("cluster.etcd: user and password_file go together".into());
                None
            }
        };
        let ttl = raw.lease_ttl_s.unwrap_or(DEFAULT_LEASE_TTL_S);
        if !(2..=300).contains(&ttl) {
            self.problem(format!(
                "cluster.etcd.lease_ttl_s: {ttl} is outside 2..=300"
            ));
        }
        let config = EtcdConfig {
            endpoints: raw.endpoints,
            prefix: raw.prefix,
            tls,
            auth,
            dial_timeout: self.duration(
                "cluster.etcd.dial_timeout_ms",
                raw.dial_timeout_ms,
                DEFAULT_DIAL_TIMEOUT_MS,
            ),
            request_timeout: self.duration(
                "cluster.etcd.request_timeout_ms",
                raw.request_timeout_ms,
                DEFAULT_REQUEST_TIMEOUT_MS,
            ),
            lease_ttl: Duration::from_secs(ttl),
            vote_timeout: self.duration(
                "cluster.etcd.vote_timeout_ms",
                raw.vote_timeout_ms,
                DEFAULT_VOTE_TIMEOUT_MS,
            ),
            wait: self.duration("cluster.etcd.wait_ms", raw.wait_ms, DEFAULT_WAIT_MS),
            check_interval: self.duration(
                "cluster.etcd.check_interval_ms",
                raw.check_interval_ms,
                DEFAULT_CHECK_INTERVAL_MS,
            ),
        };
        for p in config.problems() {
            self.problem(format!("cluster.etcd.{p}"));
        }
        config
    }

    fn readable(&mut self, what: &str, p: std::path::PathBuf) -> std::path::PathBuf {
        let p = self.abs(what, p);
        if !p.is_file() {
            self.problem(format!("{what}: {} is not a readable file", p.display()));
        }
        p
    }
}
