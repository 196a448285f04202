//! The records of the fleet store: the JSON of every key cutover writes under a site's
//! prefix in etcd (docs/CLUSTER.md lists the keys). Only cutover writes them; every reader
//! bounds and checks what it reads, since anyone with write access to etcd could have put
//! something else there.
//!
//! | key                                 | record               | lease          |
//! |-------------------------------------|----------------------|----------------|
//! | `<prefix>/generation`               | [`FleetChange`]      | none           |
//! | `<prefix>/services/<service>`       | [`ServiceState`]     | none           |
//! | `<prefix>/log/<generation, 20 digits>` | [`FleetChange`]   | none           |
//! | `<prefix>/proposals/<id>`           | [`Proposal`]         | the proposer's |
//! | `<prefix>/votes/<id>/<host>`        | [`Vote`]             | the voter's    |
//! | `<prefix>/hosts/<host>`             | [`PeerReport`](super::PeerReport) | the host's |

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ReasonText, Request, ServiceState, Step};

/// Largest record cutover reads from etcd, bytes; a larger value is refused unread.
pub const MAX_RECORD_BYTES: usize = 4 * 1024 * 1024;

/// A committed change of the fleet: `<prefix>/generation` holds the latest, and
/// `<prefix>/log/<generation>` each one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetChange {
    /// Counts committed fleet changes; the first is 1.
    pub generation: u64,
    /// The proposal's id.
    pub id: String,
    /// Who proposed it: a host's node name or a client's `--etcd-name`.
    pub by: String,
    /// Unix time of the commit, milliseconds (the proposer's clock).
    pub at_ms: u64,
    /// What was asked.
    pub request: Request,
    /// Whether the pre-switch gate was skipped.
    #[serde(default)]
    pub force: bool,
    /// The hosts that voted for it.
    pub voters: Vec<String>,
    /// The services whose records it wrote.
    pub services: Vec<String>,
    /// Why, as the requester said (`--reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonText>,
    /// Who asked the proposer for the change (a local user, a remote client...); every
    /// host journals it when it applies the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_by: Option<crate::requester::Requester>,
}

/// A change proposed to the fleet and not yet committed: every live host votes on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// Unique id: proposer, time and a counter.
    pub id: String,
    /// Who proposes it.
    pub by: String,
    /// Unix time of the proposal, milliseconds.
    pub at_ms: u64,
    /// What is asked.
    pub request: Request,
    /// Skip the pre-switch gate.
    #[serde(default)]
    pub force: bool,
    /// The fleet generation the proposal builds on.
    pub base_generation: u64,
    /// The services' records at that generation: every host works the request out from
    /// these, whatever it serves itself.
    pub base: BTreeMap<String, ServiceState>,
}

/// One host's vote on a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vote {
    /// The voting host.
    pub node: String,
    /// Whether everything up to the apply (state, render, the proxy's checker, the gate)
    /// passed on this host.
    pub ok: bool,
    /// Why not, and at which step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The step that refused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<Step>,
    /// The services this host serves.
    pub serves: Vec<String>,
    /// The records the change leads to, for the services it changes on this host.
    pub services: BTreeMap<String, ServiceState>,
    /// One line on what the change does here (files, runtime or reload).
    #[serde(default)]
    pub summary: String,
}

/// How a host fares with the fleet store, in `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetHealth {
    /// The site's key prefix.
    pub prefix: String,
    /// Whether etcd answers and this host's record is live; false means degraded: the
    /// proxy keeps serving what it serves, and the agent retries with backoff.
    pub up: bool,
    /// The fleet generation this host applied last.
    pub applied_generation: u64,
    /// etcd's revision of the last read of the fleet's records.
    pub revision: i64,
    /// The last error with the store (unreachable, a refused record, an apply that
    /// failed), cleared when the store answers again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Full re-reads after the watch fell behind a compaction.
    pub resyncs: u64,
    /// Times the periodic check found a generation this host had missed, and applied it.
    pub repairs: u64,
}
