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
        }
    }

    /// The canary share in percent (0 without a canary).
    pub fn canary_percent(&self) -> u8 {
        self.canary.map_or(0, |c| c.percent)
    }
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
