//! Safe switches: the pre-switch gate (the target colour must be healthy before traffic
//! moves to it) and the post-switch watch (sample the new colour's error rate and latency
//! for a window, roll back when it misbehaves). This module owns the agent's own HTTP
//! health probes, the pre-warm and the watch's decision logic; the engine calls them. Their
//! configuration is the config's ([`crate::config::gates`]), and what they read of the
//! proxy is what it reports of its backends ([`ServerHealth`],
//! [`BackendStats`](crate::proxy::BackendStats)).

use crate::config::GateConfig;
use crate::proxy::ServerHealth;

pub mod preswitch;
pub mod prewarm;
pub mod probe;
pub mod watch;

/// Too few servers of a backend are up for the gate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{up} of {total} servers of {backend} are up (need at least {min_up} and {min_up_percent}%){}{}",
    if .bad.is_empty() { "" } else { ": " },
    .bad.join(", ")
)]
pub struct TooFewUp {
    /// The backend checked.
    pub backend: String,
    /// Servers up and not in maintenance.
    pub up: usize,
    /// Servers the proxy lists for the backend.
    pub total: usize,
    /// The gate's minimum count.
    pub min_up: usize,
    /// The gate's minimum share, percent.
    pub min_up_percent: f64,
    /// `name (address): DOWN | in maintenance` for each server that does not count.
    pub bad: Vec<String>,
}

/// Checks the proxy's view of the target colour's servers against the gate. `Ok` names
/// the servers that count; `Err` says which failed and why.
pub fn check_servers(
    backend: &str,
    servers: &[ServerHealth],
    gate: &GateConfig,
) -> Result<Vec<String>, TooFewUp> {
    let usable: Vec<&ServerHealth> = servers.iter().filter(|s| s.up && !s.maint).collect();
    let share = if servers.is_empty() {
        0.0
    } else {
        usable.len() as f64 * 100.0 / servers.len() as f64
    };
    if usable.len() >= gate.min_up && share >= gate.min_up_percent {
        return Ok(usable.iter().map(|s| s.name.clone()).collect());
    }
    let bad: Vec<String> = servers
        .iter()
        .filter(|s| !s.up || s.maint)
        .map(|s| {
            format!(
                "{} ({}): {}",
                s.name,
                s.address,
                if s.maint { "in maintenance" } else { "DOWN" }
            )
        })
        .collect();
    Err(TooFewUp {
        backend: backend.to_owned(),
        up: usable.len(),
        total: servers.len(),
        min_up: gate.min_up,
        min_up_percent: gate.min_up_percent,
        bad,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str, up: bool, maint: bool) -> ServerHealth {
        ServerHealth {
            name: name.into(),
            address: "127.0.0.1:1".into(),
            up,
            maint,
            drain: false,
        }
    }

    #[test]
    fn gate_counts_up_servers() {
        let g = GateConfig::default();
        assert!(check_servers("b", &[server("a", true, false)], &g).is_ok());
        let e = check_servers(
            "b",
            &[server("a", false, false), server("c", true, true)],
            &g,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("0 of 2 servers of b are up"), "{e}");
        assert!(e.contains("a (127.0.0.1:1): DOWN"), "{e}");
        assert!(e.contains("c (127.0.0.1:1): in maintenance"), "{e}");
        assert!(check_servers("b", &[], &g).is_err());
        let half = GateConfig {
            min_up_percent: 60.0,
            ..GateConfig::default()
        };
        assert!(check_servers(
            "b",
            &[server("a", true, false), server("c", false, false)],
            &half
        )
        .is_err());
    }
}
