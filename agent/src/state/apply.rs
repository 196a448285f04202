//! [`State::apply`]: one request in, the new state and its [`Change`] out, or an error and
//! no change.

use std::collections::BTreeMap;

use super::{diff, Canary, Change, Colour, Desired, Request, ServiceState, State, StateError};

impl State {
    /// Applies `req`, returning the new state and what changed. `self` is never modified;
    /// a request that changes nothing (switching to the live colour) returns an empty change
    /// and the same generation.
    pub fn apply(&self, req: &Request) -> Result<(State, Change), StateError> {
        let service = match (req, req.service()) {
            (Request::Set { services }, _) => return self.apply_set(services),
            (_, Some(service)) => service.to_owned(),
            (_, None) => unreachable!("every verb but set names one service"),
        };
        let current = self.service(&service)?.clone();
        let mut s = current.clone();
        match req {
            Request::Switch { colour, .. } => make_live(&mut s, *colour),
            Request::Rollback { service } => {
                let prev = current
                    .previous
                    .ok_or_else(|| StateError::NothingToRollBack(service.clone()))?;
                make_live(&mut s, prev);
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
                    seed: rollout_seed(&mut s, service, *colour, 0),
                });
                s.drained.remove(colour);
            }
            Request::Promote { service } => {
                let canary = current
                    .canary
                    .ok_or_else(|| StateError::NoCanary(service.clone()))?;
                make_live(&mut s, canary.colour);
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
            make_live(&mut s, d.live);
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
            s.canary = d.canary.map(|c| Canary {
                seed: rollout_seed(&mut s, name, c.colour, c.seed),
                ..c
            });
            if let Some(previous) = d.previous {
                if previous == d.live {
                    return Err(StateError::PreviousIsLive {
                        service: name.clone(),
                        colour: previous,
                    });
                }
                s.previous = Some(previous);
            }
            if let Some(drained) = &d.drained {
                let serving = std::iter::once(d.live).chain(d.canary.map(|c| c.colour));
                if let Some(colour) = serving.into_iter().find(|c| drained.contains(c)) {
                    return Err(StateError::DrainLive {
                        service: name.clone(),
                        colour,
                    });
                }
                s.drained = drained.clone();
            }
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
}

/// Makes `colour` live: the old live colour becomes the previous one, a canary ends,
/// and the new live colour leaves drain. Switching to the live colour changes nothing.
fn make_live(s: &mut ServiceState, colour: Colour) {
    if s.live == colour {
        return;
    }
    s.previous = Some(s.live);
    s.live = colour;
    s.canary = None;
    s.drained.remove(&colour);
}

/// The salt of the sticky bucket of a canary of `service` on `colour`, given the state `s`
/// before it: the running canary's when it goes on to the same colour (one rollout keeps
/// its cohort while the share changes), else a new rollout starts (counted in
/// `s.rollouts`) and draws its seed from the service and that count: pure (no I/O, the same
/// on every replay), and the same on every host that holds the same record of the service,
/// so a fleet's hosts agree on it. A `declared` seed (not 0) is taken as it is. A new seed
/// is never 0.
pub(crate) fn rollout_seed(
    s: &mut ServiceState,
    service: &str,
    colour: Colour,
    declared: u32,
) -> u32 {
    let running = s.canary.filter(|c| c.colour == colour);
    if running.is_none() {
        s.rollouts += 1;
    }
    match (declared, running) {
        (0, Some(c)) => {
            // 0 for a canary started before seeds existed: it stays unsalted to its end.
            c.seed
        }
        (0, None) => {
            // FNV-1a over the name and the rollout count, folded to 32 bits.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in service.bytes().chain(s.rollouts.to_le_bytes()) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            ((h ^ (h >> 32)) as u32).max(1)
        }
        (declared, _) => declared,
    }
}
