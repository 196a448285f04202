//! The `[[services]]` section: a service's routes, its two colours, their backends and
//! servers, and the gates of a switch.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{GateConfig, HealthChecks, PrewarmConfig, WatchConfig};
use crate::protocol::Colour;

/// Most routes over all services.
pub const MAX_ROUTES: usize = 5_000_000;
/// Most `[[services]]` in one config (as many as one `apply` may name).
pub const MAX_SERVICES: usize = crate::protocol::MAX_SERVICES;

/// One service (a `[[services]]` entry): the routes that reach it, its two colours and the
/// gates of a switch.
#[derive(Debug, Clone)]
pub struct Service {
    /// Unique name the control commands use: 1 to 64 ASCII letters, digits, `_`, `.` or
    /// `-`.
    pub name: String,
    /// Route keys (e.g. host names) that reach this service.
    pub routes: Vec<String>,
    /// Colour live when the service is first seen.
    pub initial: Colour,
    /// Proxy backend of each colour.
    pub colours: BTreeMap<Colour, ColourSpec>,
    /// Host names that always reach the colour that is not live (preview).
    pub preview_hosts: Vec<String>,
    /// Drain the old colour's servers after a switch, promote or rollback. Default true.
    pub drain_after_switch: bool,
    /// Pre-switch gate (always on; `[services.gate]` tunes it).
    pub gate: GateConfig,
    /// Post-switch watch; none when `[services.watch]` is absent.
    pub watch: Option<WatchConfig>,
    /// How a client keeps its canary decision; random per request when unset.
    pub canary_sticky: Option<Sticky>,
    /// Requests sent to the target colour before traffic moves to it; none when unset.
    pub prewarm: Option<PrewarmConfig>,
    /// The proxy's own checks of the servers (`[services.health]`), resolved for the
    /// configured proxy; none when the table is absent (servers are not checked).
    pub health: Option<HealthChecks>,
    /// How long a drained colour keeps its sessions before its servers go to maintenance
    /// (`drain_timeout_ms`, HAProxy only); they go as soon as the sessions reach 0. `None`:
    /// a drain never ends by itself.
    pub drain_timeout: Option<std::time::Duration>,
}

/// What keeps a client on the colour the canary gave it. Each client gets a bucket 0..99
/// (from a cookie the proxy sets, or a hash of a header or of its address) and goes to the
/// canary when its bucket is below the canary share: its colour holds while the share
/// holds, and a canary client stays on the canary as the share grows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum Sticky {
    /// A cookie with this name carries the bucket.
    Cookie(String),
    /// A hash of this request header is the bucket.
    Header(String),
    /// A hash of the client address is the bucket.
    Source(bool),
}

/// One colour of a service (`blue = { ... }`, `green = { ... }`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ColourSpec {
    /// Proxy backend (HAProxy) that serves this colour.
    pub backend: String,
    /// Servers of the backend, for templates that render the full config.
    pub servers: Vec<Server>,
}

/// One server of a colour's backend, as templates that render the full config need it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Server name in the backend: 1 to 64 ASCII letters, digits, `_`, `.` or `-`.
    pub name: String,
    /// `host:port`.
    pub address: String,
}
