//! Desired routing state: per service the live colour and the previous one, and a
//! generation that moves with every applied change. Pure data, no I/O.
//!
//! Every mutation goes through [`State::apply`], which returns the new state and the
//! [`Change`] it made, or an error and leaves `self` as it was. In debug builds every new
//! state is swept for invariants.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

// The routing vocabulary lives in the protocol; re-exported for the modules that meet it
// here, with the state.
pub use crate::protocol::{Canary, Colour, Desired, Request};

/// Version of the persisted state format. Readers accept every version up to this one;
/// fields are only ever added (with defaults), never renamed.
pub const STATE_FORMAT: u32 = 1;

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

    /// Makes `colour` live: the old live colour becomes the previous one, a canary ends,
    /// and the new live colour leaves drain. Switching to the live colour changes nothing.
    fn make_live(&mut self, colour: Colour) {
        if self.live == colour {
            return;
        }
        self.previous = Some(self.live);
        self.live = colour;
        self.canary = None;
        self.drained.remove(&colour);
    }

    /// The canary share in percent (0 without a canary).
    pub fn canary_percent(&self) -> u8 {
        self.canary.map_or(0, |c| c.percent)
    }
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

/// What one service went through in a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceChange {
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
    #[error("service {0:?} has no previous colour to roll back to")]
    NothingToRollBack(String),
    #[error("{colour} is already live for service {service:?}; a canary goes to the other colour")]
    CanaryOnLive { service: String, colour: Colour },
    #[error("canary share {0}% is outside 1..=99 (use promote for 100, abort for 0)")]
    CanaryPercent(u8),
    #[error("service {0:?} has no canary in progress")]
    NoCanary(String),
    #[error("{colour} is live for service {service:?}; draining it would stop its traffic")]
    DrainLive { service: String, colour: Colour },
}

impl State {
    /// The routing of every service (live colour and canary), as a declaration.
    pub fn routing(&self) -> BTreeMap<String, Desired> {
        self.services
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    Desired {
                        live: s.live,
                        canary: s.canary,
                    },
                )
            })
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

    /// Applies `req`, returning the new state and what changed. `self` is never modified;
    /// a request that changes nothing (switching to the live colour) returns an empty change
    /// and the same generation.
    pub fn apply(&self, req: &Request) -> Result<(State, Change), StateError> {
        let (service, current) = match req {
            Request::Set { services } => return self.apply_set(services),
            Request::Switch { service, .. }
            | Request::Rollback { service }
            | Request::Canary { service, .. }
            | Request::Promote { service }
            | Request::Abort { service }
            | Request::Drain { service, .. }
            | Request::Undrain { service, .. } => (service, self.service(service)?.clone()),
        };
        let mut s = current.clone();
        match req {
            Request::Switch { colour, .. } => s.make_live(*colour),
            Request::Rollback { service } => {
                let prev = current
                    .previous
                    .ok_or_else(|| StateError::NothingToRollBack(service.clone()))?;
                s.make_live(prev);
            }
            Request::Canary {
                service,
                colour,
                percent,
            } => {
                if *colour == current.live {
                    return Err(StateError::CanaryOnLive {
                        service: service.clone(),
                        colour: *colour,
                    });
                }
                if !(1..=99).contains(percent) {
                    return Err(StateError::CanaryPercent(*percent));
                }
                s.canary = Some(Canary {
                    colour: *colour,
                    percent: *percent,
                });
                s.drained.remove(colour);
            }
            Request::Promote { service } => {
                let canary = current
                    .canary
                    .ok_or_else(|| StateError::NoCanary(service.clone()))?;
                s.make_live(canary.colour);
            }
            Request::Abort { service } => {
                if current.canary.is_none() {
                    return Err(StateError::NoCanary(service.clone()));
                }
                s.canary = None;
            }
            Request::Drain { service, colour } => {
                if *colour == current.live || current.canary.is_some_and(|c| c.colour == *colour) {
                    return Err(StateError::DrainLive {
                        service: service.clone(),
                        colour: *colour,
                    });
                }
                s.drained.insert(*colour);
            }
            Request::Undrain { colour, .. } => {
                s.drained.remove(colour);
            }
            Request::Set { .. } => unreachable!("handled above"),
        }
        let mut next = self.clone();
        if s == current {
            return Ok((
                next,
                Change {
                    generation: self.generation,
                    services: vec![],
                },
            ));
        }
        next.services.insert(service.clone(), s);
        next.generation += 1;
        next.debug_check();
        let change = Change {
            generation: next.generation,
            services: diff(self, &next),
        };
        Ok((next, change))
    }

    /// Applies a declared state of several services as one change (one generation).
    fn apply_set(
        &self,
        services: &BTreeMap<String, Desired>,
    ) -> Result<(State, Change), StateError> {
        let mut next = self.clone();
        for (name, d) in services {
            let mut s = self.service(name)?.clone();
            s.make_live(d.live);
            if let Some(c) = d.canary {
                if c.colour == d.live {
                    return Err(StateError::CanaryOnLive {
                        service: name.clone(),
                        colour: c.colour,
                    });
                }
                if !(1..=99).contains(&c.percent) {
                    return Err(StateError::CanaryPercent(c.percent));
                }
                s.drained.remove(&c.colour);
            }
            s.canary = d.canary;
            next.services.insert(name.clone(), s);
        }
        let services = diff(self, &next);
        if services.is_empty() {
            return Ok((
                self.clone(),
                Change {
                    generation: self.generation,
                    services,
                },
            ));
        }
        next.generation += 1;
        next.debug_check();
        Ok((
            next.clone(),
            Change {
                generation: next.generation,
                services,
            },
        ))
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
                assert_ne!(s.previous, Some(s.live), "{name}: previous equals live");
                if let Some(c) = s.canary {
                    assert_ne!(c.colour, s.live, "{name}: canary on the live colour");
                    assert!((1..=99).contains(&c.percent), "{name}: canary share");
                }
                assert!(!s.drained.contains(&s.live), "{name}: live colour drained");
            }
            assert!(self.format <= STATE_FORMAT, "unknown state format");
        }
    }
}

/// The per-service differences between two states, in service-name order.
pub fn diff(old: &State, new: &State) -> Vec<ServiceChange> {
    let names: BTreeSet<&String> = old.services.keys().chain(new.services.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let (o, n) = (old.services.get(name), new.services.get(name));
            (o != n).then(|| ServiceChange {
                service: name.clone(),
                from: o.cloned(),
                to: n.cloned(),
            })
        })
        .collect()
}

/// Applies a diff produced by [`diff`] to `state`.
pub fn apply_diff(state: &State, changes: &[ServiceChange]) -> State {
    let mut next = state.clone();
    for c in changes {
        match &c.to {
            None => {
                next.services.remove(&c.service);
            }
            Some(to) => {
                next.services.insert(c.service.clone(), to.clone());
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
        assert_eq!(c1.services.len(), 1);
        assert_eq!(c1.services[0].service, "api");
        assert!(c1.services[0].live_moved());
        assert_eq!(c1.services[0].to.as_ref().unwrap().live, Colour::Green);
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

    /// Property: applying diff(a, b) to a gives b, over every pair of states built from a
    /// small universe of services (absent, or live blue/green with or without a canary or
    /// a drained colour).
    #[test]
    fn diff_then_apply_gives_target() {
        let variants: Vec<Option<ServiceState>> = {
            let mut v = vec![None];
            for live in Colour::ALL {
                let base = ServiceState::live_on(live);
                v.push(Some(base.clone()));
                v.push(Some(ServiceState {
                    canary: Some(Canary {
                        colour: live.other(),
                        percent: 10,
                    }),
                    ..base.clone()
                }));
                v.push(Some(ServiceState {
                    drained: [live.other()].into(),
                    previous: Some(live.other()),
                    ..base
                }));
            }
            v
        };
        let names = ["a", "b"];
        let mut states = Vec::new();
        for i in 0..variants.len() {
            for j in 0..variants.len() {
                let mut s = State::default();
                for (name, k) in names.iter().zip([i, j]) {
                    if let Some(v) = &variants[k] {
                        s.services.insert((*name).into(), v.clone());
                    }
                }
                states.push(s);
            }
        }
        for a in &states {
            for b in &states {
                let d = diff(a, b);
                assert_eq!(apply_diff(a, &d).services, b.services);
                assert_eq!(d.is_empty(), a.services == b.services);
            }
        }
    }

    #[test]
    fn canary_promote_and_abort() {
        let s = two();
        let canary = |pct| Request::Canary {
            service: "api".into(),
            colour: Colour::Green,
            percent: pct,
        };
        assert_eq!(
            s.apply(&canary(0)).unwrap_err(),
            StateError::CanaryPercent(0)
        );
        assert_eq!(
            s.apply(&canary(100)).unwrap_err(),
            StateError::CanaryPercent(100)
        );
        assert!(matches!(
            s.apply(&Request::Canary {
                service: "api".into(),
                colour: Colour::Blue,
                percent: 10
            }),
            Err(StateError::CanaryOnLive { .. })
        ));
        let (s1, c) = s.apply(&canary(10)).unwrap();
        assert!(!c.services[0].live_moved());
        assert_eq!(s1.services["api"].canary_percent(), 10);
        let (s2, _) = s1.apply(&canary(50)).unwrap();
        assert_eq!(s2.services["api"].canary_percent(), 50);
        let (aborted, _) = s2
            .apply(&Request::Abort {
                service: "api".into(),
            })
            .unwrap();
        assert_eq!(aborted.services["api"], ServiceState::live_on(Colour::Blue));
        let (promoted, c) = s2
            .apply(&Request::Promote {
                service: "api".into(),
            })
            .unwrap();
        assert!(c.services[0].live_moved());
        let api = &promoted.services["api"];
        assert_eq!(
            (api.live, api.previous, api.canary),
            (Colour::Green, Some(Colour::Blue), None)
        );
        assert_eq!(
            promoted
                .apply(&Request::Promote {
                    service: "api".into()
                })
                .unwrap_err(),
            StateError::NoCanary("api".into())
        );
    }

    #[test]
    fn set_changes_several_services_in_one_generation() {
        let s = two();
        let services: BTreeMap<String, Desired> = [
            (
                "api".to_owned(),
                Desired {
                    live: Colour::Green,
                    canary: None,
                },
            ),
            (
                "web".to_owned(),
                Desired {
                    live: Colour::Green,
                    canary: Some(Canary {
                        colour: Colour::Blue,
                        percent: 20,
                    }),
                },
            ),
        ]
        .into();
        let (n, c) = s
            .apply(&Request::Set {
                services: services.clone(),
            })
            .unwrap();
        assert_eq!(n.generation, s.generation + 1);
        assert_eq!(c.services.len(), 2);
        assert_eq!(n.services["api"].previous, Some(Colour::Blue));
        assert_eq!(n.services["web"].canary_percent(), 20);
        assert_eq!(
            traffic_targets(&s, &n),
            vec![
                ("api".to_owned(), Colour::Green),
                ("web".to_owned(), Colour::Blue)
            ]
        );
        // The same declaration again changes nothing.
        let (_, again) = n.apply(&Request::Set { services }).unwrap();
        assert!(again.is_empty());
        let bad: BTreeMap<String, Desired> = [(
            "nope".to_owned(),
            Desired {
                live: Colour::Blue,
                canary: None,
            },
        )]
        .into();
        assert!(s.apply(&Request::Set { services: bad }).is_err());
    }

    #[test]
    fn drain_never_the_live_colour() {
        let s = two();
        let drain = |colour| Request::Drain {
            service: "api".into(),
            colour,
        };
        assert!(matches!(
            s.apply(&drain(Colour::Blue)),
            Err(StateError::DrainLive { .. })
        ));
        let (s1, _) = s.apply(&drain(Colour::Green)).unwrap();
        assert!(s1.services["api"].drained.contains(&Colour::Green));
        // Switching to a drained colour takes it out of drain.
        let (s2, _) = s1
            .apply(&Request::Switch {
                service: "api".into(),
                colour: Colour::Green,
            })
            .unwrap();
        assert!(s2.services["api"].drained.is_empty());
        let (s3, _) = s2.apply(&drain(Colour::Blue)).unwrap();
        let (s4, _) = s3
            .apply(&Request::Undrain {
                service: "api".into(),
                colour: Colour::Blue,
            })
            .unwrap();
        assert!(s4.services["api"].drained.is_empty());
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
