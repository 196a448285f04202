//! The `[cluster]` table: this node, its peers, the TLS files of the peer link and the
//! timings of the cluster protocol, with their documented defaults. The peers module runs
//! the protocol.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default interval between state reports to every peer, milliseconds.
pub const DEFAULT_REPORT_INTERVAL_MS: u64 = 5_000;
/// Default time a peer has to answer, milliseconds.
pub const DEFAULT_PEER_TIMEOUT_MS: u64 = 5_000;
/// Default time a prepared change is held before it lapses, milliseconds.
pub const DEFAULT_PREPARE_TTL_MS: u64 = 30_000;

/// `[cluster]`: this node and its peers.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's name; its certificate carries it (CN and DNS name).
    pub node: String,
    /// Where the peer listener binds (mutual TLS).
    pub listen: SocketAddr,
    /// CA, certificate and key of the peer link (`ca`, `cert`, `key`).
    pub tls: TlsFiles,
    /// The other nodes (`[[cluster.peers]]`); none by default.
    pub peers: Vec<PeerSpec>,
    /// Between state reports to every peer. Default [`DEFAULT_REPORT_INTERVAL_MS`].
    pub report_interval: Duration,
    /// Time a peer has to answer. Default [`DEFAULT_PEER_TIMEOUT_MS`].
    pub timeout: Duration,
    /// Time a prepared change is held before it lapses. Default [`DEFAULT_PREPARE_TTL_MS`].
    pub prepare_ttl: Duration,
    /// Fault injection for tests: pause between "all prepared" and the commit decision.
    pub hold_before_decision: Duration,
    /// Fault injection for tests: pause before a participant applies a commit.
    pub hold_before_commit: Duration,
}

/// One peer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSpec {
    /// Its node name (checked against its certificate).
    pub name: String,
    /// `host:port` of its peer listener.
    pub address: String,
}

/// Where a node's TLS material is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate(s) that sign every peer and client.
    pub ca: PathBuf,
    /// This node's certificate chain.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}
