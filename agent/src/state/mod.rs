//! Desired routing state: per service the live colour and the previous one, and a
//! generation that moves with every applied change. Pure data, no I/O.
//!
//! Every mutation goes through [`State::apply`], which returns the new state and the
//! [`Change`] it made, or an error and leaves `self` as it was. In debug builds every new
//! state is swept for invariants.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

// The routing vocabulary lives in the protocol; re-exported for the modules that meet it
// here, with the state.
use crate::protocol::{Canary, Change, Colour, Desired, Request, ServiceChange, ServiceState};

/// Version of the persisted state format. Readers accept every version up to this one;
/// fields are only ever added (with defaults), never renamed.
pub const STATE_FORMAT: u32 = 1;

/// The whole desired state of one agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format of this document; see [`STATE_FORMAT`].
    #[serde(default = "default_format")]
    pub format: u32,
    /// Counts applied changes; never goes back.
    pub generation: u64,
    /// Every service, by name.
    pub services: BTreeMap<String, ServiceState>,
    /// Counts changes committed across the cluster; the highest wins when hosts converge.
    #[serde(default)]
    pub cluster_generation: u64,
    /// The routing the last cluster commit set: what a host that missed it adopts.
    #[serde(default)]
    pub cluster_routing: BTreeMap<String, Desired>,
}

fn default_format() -> u32 {
    STATE_FORMAT
}

/// The colours a change moves traffic towards, by service: the new live colour where it
/// moved, and the canary colour where a canary starts or grows. These are what the
/// pre-switch gate checks.
pub fn traffic_targets(old: &State, new: &State) -> Vec<(String, Colour)> {
    let mut out = Vec::new();
    for (name, n) in &new.services {
        let o = old.services.get(name);
        if o.map(|o| o.live) != Some(n.live) {
            out.push((name.clone(), n.live));
        }
        if let Some(c) = n.canary {
            let before = o.and_then(|o| o.canary).filter(|oc| oc.colour == c.colour);
            if before.is_none_or(|b| b.percent < c.percent) {
                out.push((name.clone(), c.colour));
            }
        }
    }
    out
}

/// Why a request cannot apply to the state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The request names a service the state does not have.
    #[error("unknown service {0:?}")]
    UnknownService(String),
    /// `rollback` on a service that never switched.
    #[error("service {0:?} has no previous colour to roll back to")]
    NothingToRollBack(String),
    /// A canary on the live colour.
    #[error("{colour} is already live for service {service:?}; a canary goes to the other colour")]
    CanaryOnLive {
        /// The service.
        service: String,
        /// Its live colour.
        colour: Colour,
    },
    /// A canary share of 0 or 100 and more.
    #[error("canary share {0}% is outside 1..=99 (use promote for 100, abort for 0)")]
    CanaryPercent(u8),
    /// `promote` or `abort` without a canary.
    #[error("service {0:?} has no canary in progress")]
    NoCanary(String),
    /// A declared previous colour equal to the live one.
    #[error("service {service:?} cannot have {colour} both live and previous")]
    PreviousIsLive {
        /// The service.
        service: String,
        /// The colour declared twice.
        colour: Colour,
    },
    /// Draining the live (or canary) colour.
    #[error("{colour} is live for service {service:?}; draining it would stop its traffic")]
    DrainLive {
        /// The service.
        service: String,
        /// The colour that takes traffic.
        colour: Colour,
    },
}

impl State {
    /// The routing of every service (live colour and canary), as a declaration.
    pub fn routing(&self) -> BTreeMap<String, Desired> {
        self.services
            .iter()
            .map(|(n, s)| (n.clone(), Desired::routing(s.live, s.canary)))
            .collect()
    }

    /// A state where every named service starts live on its given colour.
    pub fn new<'a>(services: impl IntoIterator<Item = (&'a str, Colour)>) -> State {
        State {
            format: STATE_FORMAT,
            generation: 0,
            services: services
                .into_iter()
                .map(|(name, live)| (name.to_owned(), ServiceState::live_on(live)))
                .collect(),
            ..State::default()
        }
    }

    /// The service `name`, or [`StateError::UnknownService`].
    pub fn service(&self, name: &str) -> Result<&ServiceState, StateError> {
        self.services
            .get(name)
            .ok_or_else(|| StateError::UnknownService(name.to_owned()))
    }

    /// Makes the set of services equal to `configured`: adds the missing ones live on their
    /// given colour and drops those no longer configured. Returns the change (generation
    /// moves when anything did).
    pub fn align_services(&self, configured: &BTreeMap<String, Colour>) -> (State, Change) {
        let mut next = self.clone();
        next.services
            .retain(|name, _| configured.contains_key(name));
        for (name, colour) in configured {
            next.services
                .entry(name.clone())
                .or_insert_with(|| ServiceState::live_on(*colour));
        }
        let services = diff(self, &next);
        if !services.is_empty() {
            next.generation += 1;
        }
        next.debug_check();
        let change = Change {
            generation: next.generation,
            services,
        };
        (next, change)
    }

    /// Checks the invariants; a violation is a bug, so this panics (debug builds only).
    pub fn debug_check(&self) {
        if cfg!(debug_assertions) {
            for (name, s) in &self.services {
                assert!(!name.is_empty(), "empty service name");
                if let Err(broken) = s.check() {
                    panic!("{name}: {broken}");
                }
            }
            assert!(self.format <= STATE_FORMAT, "unknown state format");
        }
    }
}

mod apply;
mod diff;

pub use diff::{apply_diff, diff};

#[cfg(test)]
mod tests;
