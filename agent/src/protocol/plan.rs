//! The data of a dry run's reply: what a change would do, worked out up to validation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Colour, FileKind, ServiceChange};

/// What a request would do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The generation the state would have.
    pub generation: u64,
    /// The services it would change.
    pub services: Vec<ServiceChange>,
    /// The pre-switch gate's findings (they passed, or the plan would be an error).
    pub gates: Vec<GateReport>,
    /// Files that would change, with their map edits and how they would be applied.
    pub files: Vec<PlannedFile>,
    /// Whether the proxy's checker ran on the staged tree.
    pub validated_by_proxy: bool,
    /// Runtime server changes: `drain <backend>` / `undrain <backend>`.
    pub servers: Vec<String>,
}

/// One file in a plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedFile {
    /// The file's name in the config.
    pub name: String,
    /// Where it is written.
    pub path: PathBuf,
    /// How the proxy takes it.
    pub kind: FileKind,
    /// `runtime per key`, `runtime transaction`, `unchanged` or `reload`.
    pub mechanism: String,
    /// Map entries to add (at most the engine's per-plan limit).
    pub added: Vec<(String, String)>,
    /// Map entries to change, with their new value (at most the limit).
    pub changed: Vec<(String, String)>,
    /// Map keys to remove (at most the limit).
    pub removed: Vec<String>,
    /// All map edits.
    pub edits: usize,
    /// Lines only in the old text and only in the new one (config files).
    pub lines: LineChanges,
}

/// Lines that leave and lines that arrive, as counts and the first few of each.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LineChanges {
    /// Lines only in the old text.
    pub removed: usize,
    /// Lines only in the new text.
    pub added: usize,
    /// The first of the removed lines.
    pub first_removed: Vec<String>,
    /// The first of the added lines.
    pub first_added: Vec<String>,
}

/// What the pre-switch gate found, for the reply and the journal.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GateReport {
    /// The service checked.
    pub service: String,
    /// The colour traffic moves to.
    pub colour: Option<Colour>,
    /// That colour's backend.
    pub backend: Option<String>,
    /// Servers that count as up.
    pub up: Vec<String>,
    /// Servers probed over HTTP and found healthy.
    pub probed: Vec<String>,
    /// Set when the gate was skipped with `--force`.
    pub forced: bool,
    /// What the pre-warm saw, when the service has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prewarm: Option<PrewarmReport>,
}

/// What a pre-warm saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrewarmReport {
    /// Requests attempted: the configured count, including those the total time left no
    /// room to send.
    pub sent: u32,
    /// Requests that failed: not sent in time, no answer within the timeout, a connection
    /// or protocol error, or a status of 400 or above.
    pub failed: u32,
    /// Failures by kind (`500 on /api`, `no answer within 2000 ms`), with counts.
    pub failures: BTreeMap<String, u32>,
    /// Wall time, milliseconds.
    pub elapsed_ms: u64,
}

impl PrewarmReport {
    /// Failed requests as a share of those attempted, percent (0 to 100); 100 when none
    /// were attempted, so that an empty pre-warm never passes.
    pub fn failure_percent(&self) -> f64 {
        if self.sent == 0 {
            100.0
        } else {
            self.failed as f64 * 100.0 / self.sent as f64
        }
    }
}
