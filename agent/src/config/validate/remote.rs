//! Validation of the `[remote]` section: the listener, its certificates (the cluster's by
//! default), the clients' identities and roles, and the bounds.

use std::collections::BTreeSet;

use super::Validator;
use crate::config::remote::*;
use crate::config::{ClusterConfig, TlsFiles};

impl Validator<'_> {
    pub(super) fn remote(
        &mut self,
        raw: RawRemote,
        cluster: Option<&ClusterConfig>,
    ) -> RemoteConfig {
        if !cfg!(feature = "grpc") {
            self.problem(
                "remote: this cutover was built without the remote API (feature grpc)".into(),
            );
        }
        let listen = raw.listen.parse().unwrap_or_else(|_| {
            self.problem(format!("remote.listen: {:?} is not ip:port", raw.listen));
            std::net::SocketAddr::from(([127, 0, 0, 1], 0))
        });
        if cluster.is_some_and(|c| c.listen == listen) {
            self.problem(format!(
                "remote.listen: {listen} is the peer listener's address; give the remote API \
                 an address of its own"
            ));
        }
        let mut file = |what: &str, own: Option<std::path::PathBuf>, of_cluster| match own
            .map(|p| self.abs(&format!("remote.{what}"), p))
            .or(of_cluster)
        {
            Some(p) => {
                if !p.is_file() {
                    self.problem(format!(
                        "remote.{what}: {} is not a readable file",
                        p.display()
                    ));
                }
                p
            }
            None => {
                self.problem(format!(
                    "remote.{what}: missing (and no [cluster] to take it from)"
                ));
                std::path::PathBuf::new()
            }
        };
        let tls = TlsFiles {
            ca: file("ca", raw.ca, cluster.map(|c| c.tls.ca.clone())),
            cert: file("cert", raw.cert, cluster.map(|c| c.tls.cert.clone())),
            key: file("key", raw.key, cluster.map(|c| c.tls.key.clone())),
        };
        if raw.clients.len() > MAX_CLIENTS {
            self.problem(format!("remote.clients: more than {MAX_CLIENTS} entries"));
        }
        let mut seen = BTreeSet::new();
        let mut clients = Vec::new();
        for (i, c) in raw.clients.into_iter().enumerate() {
            match c.identity.parse() {
                Ok(identity) if !seen.insert(c.identity.clone()) => {
                    let _: crate::requester::Identity = identity;
                    self.problem(format!(
                        "remote.clients[{i}].identity: {:?} is listed twice",
                        c.identity
                    ));
                }
                Ok(identity) => clients.push((identity, c.role)),
                Err(e) => self.problem(format!("remote.clients[{i}].identity: {e}")),
            }
        }
        let mut bounded = |what: &str, v: Option<usize>, default: usize, max: usize| {
            let v = v.unwrap_or(default);
            if !(1..=max).contains(&v) {
                self.problem(format!("remote.{what}: {v} is outside 1..={max}"));
            }
            v
        };
        let max_streams_per_client = bounded(
            "max_streams_per_client",
            raw.max_streams_per_client,
            DEFAULT_MAX_STREAMS_PER_CLIENT,
            1024,
        );
        let max_connections = bounded(
            "max_connections",
            raw.max_connections,
            DEFAULT_REMOTE_MAX_CONNECTIONS,
            4096,
        );
        let max_message_bytes = bounded(
            "max_message_bytes",
            raw.max_message_bytes,
            DEFAULT_MAX_MESSAGE_BYTES,
            64 * 1024 * 1024,
        );
        RemoteConfig {
            listen,
            tls,
            clients,
            max_streams_per_client,
            max_connections,
            max_message_bytes,
            call_timeout: self.duration(
                "remote.call_timeout_ms",
                raw.call_timeout_ms,
                DEFAULT_CALL_TIMEOUT_MS,
            ),
            handshake_timeout: self.duration(
                "remote.handshake_timeout_ms",
                raw.handshake_timeout_ms,
                DEFAULT_HANDSHAKE_TIMEOUT_MS,
            ),
        }
    }
}
