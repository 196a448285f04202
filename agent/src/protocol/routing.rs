//! The routing vocabulary: colours, canaries, declared states, and [`Request`], the one
//! definition of the verbs that change routing. The wire command, the journal, the peer
//! `prepare` message and the command line's grammar are all built from it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::ServiceState;

/// Most services one declaration (`apply`, a desired-state file) may name.
pub const MAX_SERVICES: usize = 10_000;

/// One of the two release colours of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    /// `blue`.
    Blue,
    /// `green`.
    Green,
}

impl Colour {
    /// Both colours, in order.
    pub const ALL: [Colour; 2] = [Colour::Blue, Colour::Green];

    /// The colour's name on the wire and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Colour::Blue => "blue",
            Colour::Green => "green",
        }
    }

    /// The colour that is not `self`.
    pub fn other(self) -> Colour {
        match self {
            Colour::Blue => Colour::Green,
            Colour::Green => Colour::Blue,
        }
    }
}

impl fmt::Display for Colour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a colour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown colour {0:?} (expected blue or green)")]
pub struct UnknownColour(pub String);

impl std::str::FromStr for Colour {
    type Err = UnknownColour;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "blue" => Ok(Colour::Blue),
            "green" => Ok(Colour::Green),
            other => Err(UnknownColour(other.to_owned())),
        }
    }
}

impl clap::ValueEnum for Colour {
    fn value_variants<'a>() -> &'a [Self] {
        &Colour::ALL
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// A canary: `percent` of the service's requests go to `colour`, the rest to the live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// Always the colour that is not live.
    pub colour: Colour,
    /// Share of requests sent to the canary, 1..=99 percent.
    pub percent: u8,
    /// Salt of the sticky bucket: chosen when a rollout starts (a canary from 0) and kept
    /// while its share changes, so a client keeps its colour within one rollout and each
    /// rollout draws another cohort. 0: unsalted (a canary started before seeds existed,
    /// or a declared canary that leaves the choice to the agent).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seed: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The declared state of one service in a [`Request::Set`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Desired {
    /// The colour that receives the traffic.
    pub live: Colour,
    /// A canary on the other colour; none means no canary.
    #[serde(default)]
    pub canary: Option<Canary>,
    /// The colour `rollback` returns to; absent: what the switch leaves (the old live
    /// colour when live moves, else unchanged). The fleet store declares it so every host
    /// rolls back alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Colour>,
    /// The drained colours, exactly; absent: unchanged (apart from a colour that takes
    /// traffic, which leaves drain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained: Option<BTreeSet<Colour>>,
}

impl Desired {
    /// Live colour and canary, the rest left to the switch.
    pub fn routing(live: Colour, canary: Option<Canary>) -> Desired {
        Desired {
            live,
            canary,
            previous: None,
            drained: None,
        }
    }

    /// Exactly `state`: live colour, canary, previous colour and drains.
    pub fn exactly(state: &ServiceState) -> Desired {
        Desired {
            live: state.live,
            canary: state.canary,
            previous: state.previous,
            drained: Some(state.drained.clone()),
        }
    }
}

/// A request to change the routing state: the routing verbs, declared once.
///
/// Its JSON (`{"op": "switch", "service": ..., "colour": ...}`) is what the journal and the
/// peer `prepare` message carry; the wire command names the same verb in `cmd` (see
/// [`crate::protocol::Command::Change`]). Its clap derive is the command line's grammar of
/// these verbs (the doc comments are their help); `Set` is `apply -f FILE` there.
// The fields go undocumented: clap would print a field's doc comment as the help of its
// positional argument, and the variant's doc (the verb's help) already names them.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Subcommand)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Make COLOUR the live colour of SERVICE (after the pre-switch gate).
    Switch { service: String, colour: Colour },
    /// Make the previous colour of SERVICE live again.
    Rollback { service: String },
    /// Send PERCENT (1-99) of SERVICE's traffic to COLOUR, the colour that is not live.
    Canary {
        service: String,
        colour: Colour,
        #[arg(value_parser = clap::value_parser!(u8).range(1..=99))]
        percent: u8,
    },
    /// Make the canary colour of SERVICE live.
    Promote { service: String },
    /// End the canary of SERVICE; all traffic stays on the live colour.
    Abort { service: String },
    /// Drain the servers of COLOUR (no new connections; established ones finish).
    Drain { service: String, colour: Colour },
    /// Take the servers of COLOUR out of drain.
    Undrain { service: String, colour: Colour },
    /// Set the live colour (and canary) of any number of services in one change (`apply`).
    #[command(skip)]
    Set { services: BTreeMap<String, Desired> },
}

impl Request {
    /// The wire verbs of the requests (`cmd`), one per variant, in declaration order.
    pub const VERBS: [&'static str; 8] = [
        "switch", "rollback", "canary", "promote", "abort", "drain", "undrain", "apply",
    ];

    /// The one service a verb names; none for [`Request::Set`], which declares several.
    pub fn service(&self) -> Option<&str> {
        match self {
            Request::Switch { service, .. }
            | Request::Rollback { service }
            | Request::Canary { service, .. }
            | Request::Promote { service }
            | Request::Abort { service }
            | Request::Drain { service, .. }
            | Request::Undrain { service, .. } => Some(service),
            Request::Set { .. } => None,
        }
    }

    /// The request's verb as the wire command names it (`apply` for [`Request::Set`]).
    pub fn verb(&self) -> &'static str {
        match self {
            Request::Switch { .. } => "switch",
            Request::Rollback { .. } => "rollback",
            Request::Canary { .. } => "canary",
            Request::Promote { .. } => "promote",
            Request::Abort { .. } => "abort",
            Request::Drain { .. } => "drain",
            Request::Undrain { .. } => "undrain",
            Request::Set { .. } => "apply",
        }
    }

    /// The `op` of the request's JSON for a wire verb.
    pub(crate) fn op_of(verb: &str) -> &str {
        match verb {
            "apply" => "set",
            other => other,
        }
    }

    /// Whether the verb takes `force` (skip the pre-switch gate): the verbs that move
    /// traffic onto a colour. The others refuse the field.
    pub fn takes_force(verb: &str) -> bool {
        matches!(verb, "switch" | "rollback" | "canary" | "promote" | "apply")
    }

    /// Whether the request returns to an earlier state (no post-switch watch follows).
    pub fn is_rollback(&self) -> bool {
        matches!(self, Request::Rollback { .. })
    }
}
