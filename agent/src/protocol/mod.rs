//! The control protocol: JSON lines over the unix socket and the peer listener, shared by
//! the agent, the CLI and peer agents. Every request and reply type is declared here once.
//!
//! A request is one JSON object on one line: `{"v": 1, "cmd": "<verb>", ...arguments}`.
//! Every reply is one JSON object on one line: `{"status": "ok" | "progress" | "error",
//! "message": "<for humans>", "data": <optional, per verb>}`; `progress` replies may
//! precede the final `ok` or `error`.
//!
//! How the schema may evolve: fields are only added, always with a default, and never
//! renamed or given a new meaning; a verb that changes meaning gets a new name. `v` is the
//! highest version the client speaks; the agent refuses a request newer than
//! [`PROTOCOL_VERSION`] and serves every older one. A missing `v` means 1.
//!
//! The module is the vocabulary the agent, the command line and the peers share:
//! [`routing`] (colours and the routing verbs, [`Request`]), [`change`] (what a change does
//! to a service), [`command`] (the wire [`Command`]), [`decode`] (request lines in and
//! out), [`reply`] (replies), [`health`] (the servers' health and the drains, in
//! `status`), [`status`] and [`plan`] (the data of `status` and dry-run
//! replies), [`cluster`] (the data of cluster replies), [`event`] (the remote API's watch
//! events), [`peer`] (what agents tell each other) and
//! [`fleet`] (the records of the fleet store in etcd), [`audit`] (a change's reason and
//! expected generation). It imports no other module of the crate but `requester` (who
//! asked for a cluster change travels with it).

pub mod audit;
pub mod change;
pub mod cluster;
pub mod command;
pub mod decode;
pub mod event;
pub mod fleet;
pub mod health;
pub mod peer;
pub mod plan;
pub mod reply;
pub mod routing;
pub mod status;

pub use audit::{BadReason, ReasonText, StaleGeneration, Terms, MAX_REASON_BYTES};
pub use change::{Broken, Change, ServiceChange, ServiceState};
pub use cluster::{
    ClusterOutcome, ClusterStatus, HeldChange, HostOutcome, HostRow, ServiceAgreement,
};
pub use command::{Command, MapView, Mutation, VERBS};
pub use decode::{check, decode, encode, DecodeError};
pub use event::Event;
pub use fleet::{FleetChange, FleetHealth, Proposal, Vote};
pub use health::{ColourHealth, DrainPhase, DrainStatus, HealthState, ServiceHealth};
pub use peer::{PeerReport, PreparedChange};
pub use plan::{GateReport, LineChanges, Plan, PlannedFile, PrewarmReport};
pub use reply::{MapShown, MetricsText, Reply, Status};
pub use routing::{Canary, Colour, Desired, Request, UnknownColour, MAX_SERVICES};
pub use status::{
    ConfigRefusal, DesiredStatus, DriftStatus, Epoch, Fault, FileKind, FileStatus, Phase,
    ProxyStatus, ServiceStatus, Snapshot, Step, WatchPhase,
};

/// Highest protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Most entries a `history` request may ask for.
pub const MAX_HISTORY: usize = 10_000;
/// Deepest JSON nesting accepted in a request.
pub const MAX_DEPTH: usize = 8;

#[cfg(test)]
mod tests;
