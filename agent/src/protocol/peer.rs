//! What agents tell each other about themselves.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Desired;

/// What a node tells its peers about itself (the `report` command).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReport {
    /// The node's name, as its certificate carries it.
    pub node: String,
    /// Unix time of the report, milliseconds.
    pub time_ms: u64,
    /// The node's state generation.
    pub generation: u64,
    /// The highest cluster generation the node applied.
    pub cluster_generation: u64,
    /// Digest of the current routing (live colours and canaries).
    pub digest: String,
    /// Digest of the routing as of the last cluster commit.
    pub cluster_digest: String,
    /// Current routing, by service.
    pub services: BTreeMap<String, Desired>,
    /// Routing as of the last cluster commit.
    pub cluster_routing: BTreeMap<String, Desired>,
    /// Whether the node reaches its proxy.
    pub proxy_reachable: bool,
    /// The node's last error, if any.
    pub last_error: Option<String>,
}
