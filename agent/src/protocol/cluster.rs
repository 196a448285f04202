//! The data of cluster replies: `status --cluster` (one row per host with the change it
//! holds prepared, and per service whether the hosts agree) and the outcome of a cluster
//! change per host.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What `cluster_status` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// This node first, then its peers in config order.
    pub hosts: Vec<HostRow>,
    /// Per service of this node, what every reachable host routes and whether they agree.
    pub services: BTreeMap<String, ServiceAgreement>,
}

/// One host in `cluster_status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HostRow {
    /// A host that has reported (this node always has).
    Seen {
        /// The host's node name.
        node: String,
        /// Whether its last report is fresh.
        reachable: bool,
        /// Age of its last report, milliseconds.
        age_ms: u64,
        /// Its state generation.
        generation: u64,
        /// The highest cluster generation it applied.
        cluster_generation: u64,
        /// Digest of its routing.
        digest: String,
        /// Whether it reaches its proxy.
        proxy_reachable: bool,
        /// Its last error, if any.
        last_error: Option<String>,
        /// The cluster change it holds prepared, if any (absent from older agents).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        held: Option<HeldChange>,
    },
    /// A peer that has not reported since this node started.
    Unseen {
        /// The peer's node name.
        node: String,
        /// Always false.
        reachable: bool,
        /// Always null.
        age_ms: Option<u64>,
    },
}

/// A cluster change a host holds prepared, as `cluster_status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldChange {
    /// The cluster change's id.
    pub txn: String,
    /// The node that coordinates it.
    pub coordinator: String,
    /// How long the host has held it, milliseconds.
    pub age_ms: u64,
    /// How long until it lapses unless committed or aborted first, milliseconds.
    pub expires_in_ms: u64,
}

/// One service in `cluster_status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAgreement {
    /// Whether every reachable host routes the service the same way.
    pub agree: bool,
    /// Per host: `green`, `blue+canary green 10%`, or `-` where the host lacks it.
    pub hosts: BTreeMap<String, String>,
}

/// The outcome of a cluster change (`cluster`), in whichever phase it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterOutcome {
    /// The cluster change's id.
    pub txn: String,
    /// `prepare` (refused, or a dry run), `ready` (lost before commit) or `commit`.
    pub phase: String,
    /// The committed cluster generation (phase `commit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_generation: Option<u64>,
    /// Per host, its answer in the last phase.
    pub hosts: BTreeMap<String, HostOutcome>,
    /// Hosts that missed the commit and converge to it when they report again (phase
    /// `commit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<Vec<String>>,
}

/// One host's answer in a phase of a cluster change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostOutcome {
    /// Whether the host did what the phase asked.
    pub ok: bool,
    /// Its reply's data, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// Why not, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
