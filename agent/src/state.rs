//! Desired routing state: per service the live colour and the previous one, and a
//! generation that moves with every applied change. Pure data, no I/O.
//!
//! Every mutation goes through [`State::apply`], which returns the new state and the
//! [`Change`] it made, or an error and leaves `self` as it was. In debug builds every new
//! state is swept for invariants.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Version of the persisted state format. Readers accept every version up to this one;
/// fields are only ever added (with defaults), never renamed.
pub const STATE_FORMAT: u32 = 1;

/// One of the two release colours of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Blue,
    Green,
}

impl Colour {
    pub const ALL: [Colour; 2] = [Colour::Blue, Colour::Green];

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

impl std::str::FromStr for Colour {
    type Err = StateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "blue" => Ok(Colour::Blue),
            "green" => Ok(Colour::Green),
            other => Err(StateError::UnknownColour(other.to_owned())),
        }
    }
}

/// Routing decision of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceState {
    /// The colour that receives the service's traffic.
    pub live: Colour,
    /// The colour that was live before the last switch; what `rollback` returns to.
    #[serde(default)]
    pub previous: Option<Colour>,
}

/// The whole desired state of one agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format of this document; see [`STATE_FORMAT`].
    #[serde(default = "default_format")]
    pub format: u32,
    /// Counts applied changes; never goes back.
    pub generation: u64,
    pub services: BTreeMap<String, ServiceState>,
}

fn default_format() -> u32 {
    STATE_FORMAT
}

/// A request to change the routing state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Make `colour` the live colour of `service`.
    Switch { service: String, colour: Colour },
    /// Make the previous colour of `service` live again.
    Rollback { service: String },
}

/// What one service went through in a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceChange {
    pub service: String,
    /// Live colour before; `None` for a service that did not exist.
    pub from: Option<Colour>,
    /// Live colour after; `None` for a service that was removed.
    pub to: Option<Colour>,
}

/// The effect of one applied request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Generation of the state after the change (equal to before when nothing changed).
    pub generation: u64,
    pub services: Vec<ServiceChange>,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("unknown service {0:?}")]
    UnknownService(String),
    #[error("unknown colour {0:?} (expected blue or green)")]
    UnknownColour(String),
    #[error("service {0:?} has no previous colour to roll back to")]
    NothingToRollBack(String),
}

impl State {
    /// A state where every named service starts live on its given colour.
    pub fn new<'a>(services: impl IntoIterator<Item = (&'a str, Colour)>) -> State {
        State {
            format: STATE_FORMAT,
            generation: 0,
            services: services
                .into_iter()
                .map(|(name, live)| {
                    (
                        name.to_owned(),
                        ServiceState {
                            live,
                            previous: None,
                        },
                    )
                })
                .collect(),
        }
    }

    /// Applies `req`, returning the new state and what changed. `self` is never modified;
    /// a request that changes nothing (switching to the live colour) returns an empty change
    /// and the same generation.
    pub fn apply(&self, req: &Request) -> Result<(State, Change), StateError> {
        let mut next = self.clone();
        let (service, target) = match req {
            Request::Switch { service, colour } => (service, *colour),
            Request::Rollback { service } => {
                let current = self.service(service)?;
                let prev = current
                    .previous
                    .ok_or_else(|| StateError::NothingToRollBack(service.clone()))?;
                (service, prev)
            }
        };
        let current = self.service(service)?;
        if current.live == target {
            return Ok((
                next,
                Change {
                    generation: self.generation,
                    services: vec![],
                },
            ));
        }
        let entry = next.services.get_mut(service).expect("checked above");
        entry.previous = Some(entry.live);
        entry.live = target;
        next.generation += 1;
        next.debug_check();
        let change = Change {
            generation: next.generation,
            services: diff(self, &next),
        };
        Ok((next, change))
    }

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
            next.services.entry(name.clone()).or_insert(ServiceState {
                live: *colour,
                previous: None,
            });
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
                assert_ne!(s.previous, Some(s.live), "{name}: previous equals live");
            }
            assert!(self.format <= STATE_FORMAT, "unknown state format");
        }
    }
}

/// The per-service differences between two states, in service-name order.
pub fn diff(old: &State, new: &State) -> Vec<ServiceChange> {
    let mut out = Vec::new();
    for (name, o) in &old.services {
        match new.services.get(name) {
            Some(n) if n.live == o.live => {}
            n => out.push(ServiceChange {
                service: name.clone(),
                from: Some(o.live),
                to: n.map(|n| n.live),
            }),
        }
    }
    for (name, n) in &new.services {
        if !old.services.contains_key(name) {
            out.push(ServiceChange {
                service: name.clone(),
                from: None,
                to: Some(n.live),
            });
        }
    }
    out.sort_by(|a, b| a.service.cmp(&b.service));
    out
}

/// Applies a diff produced by [`diff`] to `state` (live colours only).
pub fn apply_diff(state: &State, changes: &[ServiceChange]) -> State {
    let mut next = state.clone();
    for c in changes {
        match c.to {
            None => {
                next.services.remove(&c.service);
            }
            Some(to) => {
                let e = next
                    .services
                    .entry(c.service.clone())
                    .or_insert(ServiceState {
                        live: to,
                        previous: None,
                    });
                e.live = to;
            }
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> State {
        State::new([("api", Colour::Blue), ("web", Colour::Green)])
    }

    #[test]
    fn switch_and_rollback() {
        let s = two();
        let (s1, c1) = s
            .apply(&Request::Switch {
                service: "api".into(),
                colour: Colour::Green,
            })
            .unwrap();
        assert_eq!(c1.generation, 1);
        assert_eq!(
            c1.services,
            vec![ServiceChange {
                service: "api".into(),
                from: Some(Colour::Blue),
                to: Some(Colour::Green)
            }]
        );
        assert_eq!(s1.services["api"].previous, Some(Colour::Blue));
        let (s2, c2) = s1
            .apply(&Request::Rollback {
                service: "api".into(),
            })
            .unwrap();
        assert_eq!(s2.services["api"].live, Colour::Blue);
        assert_eq!(s2.services["api"].previous, Some(Colour::Green));
        assert_eq!(c2.generation, 2);
    }

    #[test]
    fn errors_change_nothing() {
        let s = two();
        let before = s.clone();
        assert_eq!(
            s.apply(&Request::Switch {
                service: "nope".into(),
                colour: Colour::Green
            })
            .unwrap_err(),
            StateError::UnknownService("nope".into())
        );
        assert_eq!(
            s.apply(&Request::Rollback {
                service: "api".into()
            })
            .unwrap_err(),
            StateError::NothingToRollBack("api".into())
        );
        assert_eq!(s, before);
    }

    #[test]
    fn switch_to_live_colour_is_a_noop() {
        let s = two();
        let (s1, c) = s
            .apply(&Request::Switch {
                service: "web".into(),
                colour: Colour::Green,
            })
            .unwrap();
        assert!(c.is_empty());
        assert_eq!(s1, s);
    }

    #[test]
    fn align_adds_and_removes() {
        let s = two();
        let conf: BTreeMap<_, _> = [
            ("api".to_owned(), Colour::Green),
            ("db".into(), Colour::Blue),
        ]
        .into_iter()
        .collect();
        let (n, c) = s.align_services(&conf);
        assert_eq!(n.services["api"].live, Colour::Blue, "existing kept");
        assert!(n.services.contains_key("db"));
        assert!(!n.services.contains_key("web"));
        assert_eq!(c.services.len(), 2);
        assert_eq!(n.generation, 1);
    }

    /// Property: applying diff(a, b) to a gives b's live colours, over every pair of
    /// states built from a small universe of services.
    #[test]
    fn diff_then_apply_gives_target() {
        let names = ["a", "b", "c"];
        let mut states = Vec::new();
        // Each service absent, blue or green: 3^3 states.
        for code in 0..27u32 {
            let mut s = State::default();
            let mut c = code;
            for n in names {
                match c % 3 {
                    1 => {
                        s.services.insert(
                            n.into(),
                            ServiceState {
                                live: Colour::Blue,
                                previous: None,
                            },
                        );
                    }
                    2 => {
                        s.services.insert(
                            n.into(),
                            ServiceState {
                                live: Colour::Green,
                                previous: None,
                            },
                        );
                    }
                    _ => {}
                }
                c /= 3;
            }
            states.push(s);
        }
        let lives = |s: &State| -> BTreeMap<String, Colour> {
            s.services
                .iter()
                .map(|(k, v)| (k.clone(), v.live))
                .collect()
        };
        for a in &states {
            for b in &states {
                let d = diff(a, b);
                assert_eq!(lives(&apply_diff(a, &d)), lives(b));
                assert_eq!(d.is_empty(), lives(a) == lives(b));
            }
        }
    }

    #[test]
    fn parses_state_written_by_format_1() {
        let old = r#"{"generation":7,"services":{"web":{"live":"green","previous":"blue"}}}"#;
        let s: State = serde_json::from_str(old).unwrap();
        assert_eq!(s.generation, 7);
        assert_eq!(s.format, 1);
        assert_eq!(s.services["web"].previous, Some(Colour::Blue));
    }
}
