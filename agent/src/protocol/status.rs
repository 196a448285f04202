//! The data of a `status` reply: the agent's generation, its proxy, and per service and
//! file what it serves; and the step names errors carry.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Canary;

/// The step of a change that failed (`data.step` of an error reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The peer may not run the command (the access policy refused it).
    Access,
    /// The request itself: an unknown service, a refused state change.
    Request,
    /// The pre-switch gate.
    Gate,
    /// Rendering the templates.
    Render,
    /// Our checks and the proxy's checker on the staged files.
    Validate,
    /// Writing the files into place.
    Commit,
    /// The runtime update or the reload.
    Apply,
    /// Reading the live state back.
    Confirm,
    /// The state file and the journal.
    Persist,
    /// Reaching the proxy.
    Proxy,
    /// The servers of a live colour, as the proxy reports them (none up).
    Health,
}

impl Step {
    /// The step's name as the wire and the journal carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Access => "access",
            Step::Request => "request",
            Step::Gate => "gate",
            Step::Render => "render",
            Step::Validate => "validate",
            Step::Commit => "commit",
            Step::Apply => "apply",
            Step::Confirm => "confirm",
            Step::Persist => "persist",
            Step::Proxy => "proxy",
            Step::Health => "health",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// The state generation.
    pub generation: u64,
    /// The proxy and whether it answers.
    pub proxy: ProxyStatus,
    /// Every service, in name order.
    pub services: Vec<ServiceStatus>,
    /// Every managed file, in config order.
    pub files: Vec<FileStatus>,
    /// What is wrong now: the fault's error while there is one, else the error of the last
    /// change if it failed (cleared by the next change that succeeds).
    pub last_error: Option<String>,
    /// A condition that keeps the files or the proxy from matching the desired state (the
    /// proxy unreachable, a reconcile failing), while it lasts.
    pub fault: Option<Fault>,
    /// What the agent repaired when it started (an unusable state file, a torn journal,
    /// leftovers of interrupted writes), in its own words.
    pub recovered: Vec<String>,
    /// The watched desired-state file and why its content was refused, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state: Option<DesiredStatus>,
    /// The fleet store this host follows, and how it fares (`[cluster] store = "etcd"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<super::FleetHealth>,
    /// Why the last config reload (SIGHUP or `reload_config`) was refused, while the config
    /// before it stays in force; cleared by the next reload put in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_error: Option<ConfigRefusal>,
    /// The latest drift found and repaired (files changed on disk, runtime maps or server
    /// states changed behind the agent's back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drift: Option<DriftStatus>,
}

/// Drift the agent found and repaired, in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftStatus {
    /// What differed and what was done, one clause per repair.
    pub message: String,
    /// When, Unix time in milliseconds.
    pub time_ms: u64,
}

/// A refused config reload, in `status` and in the reply to `reload_config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRefusal {
    /// Why, in the agent's words.
    pub message: String,
    /// When, Unix time in milliseconds.
    pub time_ms: u64,
    /// The file at fault: the agent's config, or a template.
    pub file: String,
    /// The line in that file, 1-based, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

/// The watched desired-state file, in `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DesiredStatus {
    /// The file.
    pub path: String,
    /// Why its current content was refused.
    pub error: Option<String>,
}

/// A fault the periodic check keeps seeing; cleared by the first reconcile that succeeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fault {
    /// The step that fails: `proxy` when the proxy cannot be reached.
    pub step: Step,
    /// The latest error.
    pub message: String,
    /// When it was first seen, Unix milliseconds.
    pub since_ms: u64,
    /// Whether it has lasted the engine's grace time: only then is it shown and journaled
    /// (a shorter failure is a blip, such as HAProxy's master re-executing itself for a
    /// reload). Not on the wire.
    #[serde(skip)]
    pub confirmed: bool,
}

/// The proxy, in `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyStatus {
    /// `haproxy`, `nginx` or `fake`.
    pub kind: String,
    /// Whether it answered.
    pub reachable: bool,
    /// What it runs, when it answered.
    pub epoch: Option<Epoch>,
    /// Its version as it reported it (HAProxy), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// What is known to be wrong with that version (e.g. HAProxy 3.2.0 crashing on an
    /// oversized CLI payload); empty when nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Identity of the proxy's running configuration: it changes with every reload, ours or
/// anybody else's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    /// PID of the proxy's master process (a restart changes it).
    pub master_pid: u32,
    /// Reloads of the running master: as HAProxy's master counts them; for Nginx, which
    /// does not count them, the times the agent saw its workers replaced as a whole (every
    /// reload the agent made, and others' seen between two reconciles).
    pub reloads: u64,
    /// PIDs of the workers accepting connections, sorted (Nginx: a reload replaces them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<u32>,
    /// The state generation the running config says it was rendered for, where the proxy
    /// can tell (Nginx's generation endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// When the proxy's runtime table was seeded from the files, in ms since the epoch
    /// (Nginx's Lua runtime: a restart, or a reload that resized it, re-seeds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeded_ms: Option<u64>,
}

/// One service, in `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The service's name.
    pub name: String,
    /// The live colour.
    pub live: String,
    /// The colour `rollback` returns to.
    pub previous: Option<String>,
    /// The live colour's backend (HAProxy) or upstream (Nginx).
    pub backend: String,
    /// Routes of the service.
    pub routes: usize,
    /// Canary colour and share, when one runs.
    pub canary: Option<Canary>,
    /// Colours whose servers are drained.
    pub drained: Vec<String>,
    /// The safety phase (watch, rollback), when there is one.
    pub phase: Option<Phase>,
    /// The servers of each colour as the proxy last reported them; absent before the
    /// first poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<super::ServiceHealth>,
    /// The drains of a service with `drain_timeout_ms`: draining, or ended in maintenance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drains: Vec<super::DrainStatus>,
}

/// Where the post-switch watch of a service stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchPhase {
    /// The watch runs.
    Watching,
    /// The new colour stayed healthy through the window.
    Passed,
    /// The window saw no traffic; the change is held for a person to decide.
    Held,
    /// The watch rolled the change back.
    RolledBack,
    /// The watch wanted a rollback and it failed.
    RollbackFailed,
}

impl WatchPhase {
    /// Every phase, in the order of a watch.
    pub const ALL: [WatchPhase; 5] = [
        WatchPhase::Watching,
        WatchPhase::Passed,
        WatchPhase::Held,
        WatchPhase::RolledBack,
        WatchPhase::RollbackFailed,
    ];

    /// The phase as `status` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchPhase::Watching => "watching",
            WatchPhase::Passed => "passed",
            WatchPhase::Held => "held",
            WatchPhase::RolledBack => "rolled_back",
            WatchPhase::RollbackFailed => "rollback_failed",
        }
    }
}

impl fmt::Display for WatchPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The safety phase of one service, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    /// Where the watch stands.
    pub phase: WatchPhase,
    /// Why (the rollback reason, or what is held).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Unix time of the phase's start, milliseconds.
    pub since_ms: u64,
}

/// One managed file, in `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileStatus {
    /// The file's name in the config.
    pub name: String,
    /// Where it is written.
    pub path: String,
    /// How the proxy takes it.
    pub kind: FileKind,
}

/// How the proxy takes a rendered file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A map: applied through the runtime API where the proxy has one.
    Map,
    /// Part of the proxy config: a change needs a validated reload.
    Config,
}
