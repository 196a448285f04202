//! What a proxy reports about its backends, for the gates above it: the health of each
//! server (the gate before a switch), a backend's cumulative counters (the watch after
//! it), and every server's state and sessions in one read (the periodic health poll).

use serde::Serialize;

use crate::protocol::HealthState;

/// One server in the proxy's table of every server (the periodic health poll).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSample {
    /// Its backend (HAProxy) or upstream.
    pub backend: String,
    /// Its name in the backend.
    pub server: String,
    /// How the proxy sees it.
    pub state: HealthState,
}

/// One server as the proxy reports it, for the gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerHealth {
    /// Its name in the proxy's backend or upstream.
    pub name: String,
    /// `host:port` the proxy sends traffic to.
    pub address: String,
    /// Whether the proxy considers it up (health checks passing, or unchecked).
    pub up: bool,
    /// In maintenance (takes no traffic at all).
    pub maint: bool,
    /// Draining (takes no new connections).
    pub drain: bool,
}

/// Cumulative counters of one backend, as the proxy reports them, and whether any of its
/// servers can take traffic now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BackendStats {
    /// HTTP requests answered by the backend, since the proxy started.
    pub requests: u64,
    /// Of those, responses with a 5xx status (the proxy's own 503 and 504 included).
    pub errors_5xx: u64,
    /// Requests that failed without a server's answer, since the proxy started: connection
    /// errors and broken responses (HAProxy's `econ` + `eresp`); 0 where not reported.
    pub failed: u64,
    /// Average response time over the recent requests, milliseconds.
    pub avg_response_ms: u64,
    /// No server of the backend is up (HAProxy's backend status `DOWN`); `false` where the
    /// proxy does not report it.
    pub down: bool,
    /// Sessions open on the backend now (HAProxy's `scur`); 0 where not reported.
    pub sessions: u64,
}
