//! What a routing change does to a service: its routing decision before and after.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Canary, Colour};

/// Routing decision of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceState {
    /// The colour that receives the service's traffic.
    pub live: Colour,
    /// The colour that was live before the last switch; what `rollback` returns to.
    #[serde(default)]
    pub previous: Option<Colour>,
    /// A canary in progress: a share of the traffic goes to the other colour.
    #[serde(default)]
    pub canary: Option<Canary>,
    /// Colours whose servers are drained (no new connections; established ones finish).
    #[serde(default)]
    pub drained: BTreeSet<Colour>,
    /// Canary rollouts started for the service (a canary from 0 on a colour); the seed of
    /// each is drawn from it, so every host holding the same record draws the same one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rollouts: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl fmt::Display for ServiceState {
    /// `green`, `blue+canary green 10%`, `green, blue drained`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.live)?;
        if let Some(c) = self.canary {
            write!(f, "+canary {} {}%", c.colour, c.percent)?;
        }
        for d in &self.drained {
            write!(f, ", {d} drained")?;
        }
        Ok(())
    }
}

impl ServiceState {
    /// A service live on `live`, with no history, canary or drain.
    pub fn live_on(live: Colour) -> ServiceState {
        ServiceState {
            live,
            previous: None,
            canary: None,
            drained: BTreeSet::new(),
            rollouts: 0,
        }
    }

    /// The canary share in percent (0 without a canary).
    pub fn canary_percent(&self) -> u8 {
        self.canary.map_or(0, |c| c.percent)
    }

    /// Whether the decision holds together: the previous colour is not the live one, a
    /// canary goes to the other colour with a share of 1 to 99%, and no colour that takes
    /// traffic is drained. Every state cutover makes holds these; a record read from
    /// elsewhere (the fleet store) is checked with them.
    pub fn check(&self) -> Result<(), Broken> {
        if self.previous == Some(self.live) {
            return Err(Broken::PreviousIsLive(self.live));
        }
        if let Some(c) = self.canary {
            if c.colour == self.live || !(1..=99).contains(&c.percent) {
                return Err(Broken::Canary {
                    canary: c,
                    live: self.live,
                });
            }
            if self.drained.contains(&c.colour) {
                return Err(Broken::Drained(c.colour, "canary"));
            }
        }
        if self.drained.contains(&self.live) {
            return Err(Broken::Drained(self.live, "live"));
        }
        Ok(())
    }
}

/// A rule of [`ServiceState::check`] that a decision breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    /// The previous colour is the live one.
    #[error("{0} is both live and previous")]
    PreviousIsLive(Colour),
    /// A canary on the live colour, or with a share outside 1 to 99%.
    #[error("canary {} {}% on live {live}", canary.colour, canary.percent)]
    Canary {
        /// The canary.
        canary: Canary,
        /// The live colour.
        live: Colour,
    },
    /// A colour that takes traffic (`live` or `canary`) is drained.
    #[error("{1} colour {0} is drained")]
    Drained(Colour, &'static str),
}

/// What one service went through in a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceChange {
    /// The service.
    pub service: String,
    /// State before; `None` for a service that did not exist.
    pub from: Option<ServiceState>,
    /// State after; `None` for a service that was removed.
    pub to: Option<ServiceState>,
}

impl ServiceChange {
    /// Whether the live colour moved.
    pub fn live_moved(&self) -> bool {
        self.from.as_ref().map(|s| s.live) != self.to.as_ref().map(|s| s.live)
    }

    /// The colour a canary took out of drain: drained before, the canary's colour after.
    pub fn canary_undrained(&self) -> Option<Colour> {
        let canary = self.to.as_ref()?.canary?.colour;
        self.from
            .as_ref()
            .is_some_and(|s| s.drained.contains(&canary))
            .then_some(canary)
    }
}

/// The effect of one applied request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Generation of the state after the change (equal to before when nothing changed).
    pub generation: u64,
    /// The services that changed, in name order.
    pub services: Vec<ServiceChange>,
}

impl Change {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}
