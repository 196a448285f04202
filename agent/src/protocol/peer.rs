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
    /// The cluster change the node holds prepared, if any (absent in the reports of agents
    /// older than this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<PreparedChange>,
}

/// A cluster change a node prepared for a coordinator and holds until commit, abort or
/// lapse. Both times are on the holder's clock, like the report's `time_ms`, so a receiver
/// compares them with that and not with its own clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedChange {
    /// The cluster change's id.
    pub txn: String,
    /// The node that coordinates it.
    pub coordinator: String,
    /// Unix time it was prepared, milliseconds.
    pub since_ms: u64,
    /// Unix time it lapses unless committed or aborted first, milliseconds.
    pub expires_ms: u64,
}

/// A stable digest of a routing declaration (FNV-1a 64 over its canonical JSON): equal
/// routings have equal digests on every host and every version.
pub fn digest(routing: &BTreeMap<String, Desired>) -> String {
    let text = serde_json::to_string(routing).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
