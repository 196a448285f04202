//! The health of each colour's servers as the proxy reports them (the agent's periodic
//! poll), and where the drain of a colour stands: the parts of `status` they fill.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Colour;

/// How the proxy sees one server: the `state` label of `cutover_servers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Takes traffic: checks pass, or it is not checked.
    Up,
    /// Its checks fail (HAProxy `DOWN`).
    Down,
    /// Keeps its sessions, takes no new ones.
    Drain,
    /// In maintenance: takes no traffic at all and is not checked.
    Maint,
    /// The proxy cannot say (open-source Nginx has no runtime view of its servers).
    Unknown,
}

impl HealthState {
    /// Every state, in label order.
    pub const ALL: [HealthState; 5] = [
        HealthState::Up,
        HealthState::Down,
        HealthState::Drain,
        HealthState::Maint,
        HealthState::Unknown,
    ];

    /// The state as status and metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Up => "up",
            HealthState::Down => "down",
            HealthState::Drain => "drain",
            HealthState::Maint => "maint",
            HealthState::Unknown => "unknown",
        }
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The servers of one colour as the last poll saw them, in `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColourHealth {
    /// Servers up (checks passing, or unchecked).
    pub up: u32,
    /// Servers down (checks failing).
    pub down: u32,
    /// Servers draining.
    pub drain: u32,
    /// Servers in maintenance.
    pub maint: u32,
    /// Servers whose state the proxy cannot report (Nginx: every configured server).
    pub unknown: u32,
    /// Sessions open on its servers now (HAProxy's `scur`), read while the colour drains
    /// towards maintenance (`drain_timeout_ms`); `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<u64>,
}

impl ColourHealth {
    /// The count of servers in `state`.
    pub fn count(&self, state: HealthState) -> u32 {
        match state {
            HealthState::Up => self.up,
            HealthState::Down => self.down,
            HealthState::Drain => self.drain,
            HealthState::Maint => self.maint,
            HealthState::Unknown => self.unknown,
        }
    }

    /// Adds one server in `state`.
    pub fn add(&mut self, state: HealthState) {
        let n = match state {
            HealthState::Up => &mut self.up,
            HealthState::Down => &mut self.down,
            HealthState::Drain => &mut self.drain,
            HealthState::Maint => &mut self.maint,
            HealthState::Unknown => &mut self.unknown,
        };
        *n += 1;
    }

    /// Every server counted.
    pub fn total(&self) -> u32 {
        HealthState::ALL.iter().map(|s| self.count(*s)).sum()
    }

    /// `2 up, 1 down` (the states with servers), `no servers`, or `unknown (2 servers)`.
    pub fn summary(&self) -> String {
        if self.unknown > 0 && self.total() == self.unknown {
            return format!("unknown ({} servers)", self.unknown);
        }
        let parts: Vec<String> = HealthState::ALL
            .iter()
            .filter(|s| self.count(**s) > 0)
            .map(|s| format!("{} {s}", self.count(*s)))
            .collect();
        if parts.is_empty() {
            "no servers".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The servers of both colours of one service, in `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceHealth {
    /// When the proxy was last polled, Unix milliseconds.
    pub polled_ms: u64,
    /// Whether the proxy reported the servers (false: the counts are `unknown`).
    #[serde(default)]
    pub known: bool,
    /// Blue's servers.
    pub blue: ColourHealth,
    /// Green's servers.
    pub green: ColourHealth,
}

impl ServiceHealth {
    /// The servers of `colour`.
    pub fn colour(&self, colour: Colour) -> &ColourHealth {
        match colour {
            Colour::Blue => &self.blue,
            Colour::Green => &self.green,
        }
    }

    /// The servers of `colour`, to fill in.
    pub fn colour_mut(&mut self, colour: Colour) -> &mut ColourHealth {
        match colour {
            Colour::Blue => &mut self.blue,
            Colour::Green => &mut self.green,
        }
    }
}

/// Where a drained colour stands, for a service with `drain_timeout_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DrainPhase {
    /// Its sessions finish; it takes no new ones.
    Draining,
    /// Its drain ended: its servers are in maintenance.
    Maintenance,
}

/// The drain of one colour, in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainStatus {
    /// The drained colour.
    pub colour: Colour,
    /// Draining, or in maintenance.
    pub phase: DrainPhase,
    /// When the phase began, Unix milliseconds.
    pub since_ms: u64,
    /// While draining: when it goes to maintenance at the latest, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// In maintenance: why the drain ended (its sessions reached 0, or the timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_summaries() {
        let mut h = ColourHealth::default();
        assert_eq!(h.summary(), "no servers");
        h.add(HealthState::Up);
        h.add(HealthState::Up);
        h.add(HealthState::Down);
        h.sessions = Some(4);
        assert_eq!(h.total(), 3);
        assert_eq!(h.summary(), "2 up, 1 down");
        let nginx = ColourHealth {
            unknown: 2,
            ..ColourHealth::default()
        };
        assert_eq!(nginx.summary(), "unknown (2 servers)");
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"up": 2, "down": 1, "drain": 0, "maint": 0, "unknown": 0, "sessions": 4})
        );
    }
}
