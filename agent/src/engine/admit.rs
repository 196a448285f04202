//! Admission: the one place that decides whether a request becomes a change, for every way
//! a change enters (a socket verb, a dry run, a cluster prepare, `apply -f` and the
//! desired-state file, the post-switch watch's rollback). It decides whether the state is
//! still at the generation the requester expected (`if_generation`), the state change (or
//! the state's refusal), whether the config can carry it (a canary needs a map of canary
//! shares on a proxy with runtime maps), the drain policy, and the pre-switch gate of every
//! colour the change moves traffic towards. It reads the proxy for the gate and changes
//! nothing.

use super::error::{ApplyError, ErrorKind};
use super::Engine;
use crate::config::ValueCheck;
use crate::gates::preswitch;
use crate::protocol::GateReport;
use crate::protocol::Step;
use crate::protocol::{Change, Request, StaleGeneration};
use crate::proxy::Proxy;
use crate::state::{diff, traffic_targets, State};

/// A request the engine accepts, on top of a given state.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The state after the request, with the drain policy applied.
    pub next: State,
    /// What the request changes; empty when it changes nothing (switching to the live
    /// colour), and then `next` is the state it was admitted on.
    pub change: Change,
    /// What the gate found, per colour traffic moves towards.
    pub gates: Vec<GateReport>,
}

impl<P: Proxy> Engine<P> {
    /// Admits `request` on top of `base`: that `base` is at `if_generation` when one is
    /// given, the state change, whether the config can carry it, the drain policy, and
    /// (unless `force`) the pre-switch gate. An `Err` names the step and the cause that
    /// refuse it; the same request is refused the same way whether it is planned or
    /// carried out.
    pub(super) async fn admit(
        &self,
        base: &State,
        request: &Request,
        force: bool,
        if_generation: Option<u64>,
    ) -> Result<Admitted, ApplyError> {
        StaleGeneration::check("state", if_generation, base.generation)
            .map_err(|e| ApplyError::caused(Step::Request, ErrorKind::Stale, e))?;
        if matches!(request, Request::Canary { .. }) {
            self.can_carry_canary()?;
        }
        let (next, change) = base
            .apply(request)
            .map_err(|e| ApplyError::caused(Step::Request, ErrorKind::Refused, e))?;
        // A declared state (`apply`, the desired-state file) may start a canary too.
        let new_canary = next.services.iter().any(|(name, s)| {
            s.canary.is_some() && base.services.get(name).map(|b| b.canary) != Some(s.canary)
        });
        if new_canary {
            self.can_carry_canary()?;
        }
        if change.is_empty() {
            return Ok(Admitted {
                next,
                change,
                gates: vec![],
            });
        }
        let next = self.with_drain_policy(base, next);
        // The change as it is carried out, the colours the policy drains included.
        let change = Change {
            generation: change.generation,
            services: diff(base, &next),
        };
        let mut gates = Vec::new();
        for (service, colour) in traffic_targets(base, &next) {
            let config = &self.config.services[&service];
            let rested = self.drain_ended(&service, colour);
            let report = preswitch::check(&self.proxy, &service, config, colour, rested, force)
                .await
                .map_err(|e| ApplyError::caused(Step::Gate, ErrorKind::NotReady, e))?;
            gates.push(report);
        }
        Ok(Admitted {
            next,
            change,
            gates,
        })
    }

    /// Whether the config can carry a canary at all. Nginx carries the canary share in its
    /// main config (`split_clients`), which every change re-renders; a proxy with runtime
    /// maps needs a map of shares.
    fn can_carry_canary(&self) -> Result<(), ApplyError> {
        let has_share_map = self
            .config
            .files
            .iter()
            .any(|f| f.values == ValueCheck::Percent);
        if self.proxy.has_runtime_maps() && !has_share_map {
            return Err(ApplyError::new(
                Step::Request,
                ErrorKind::NoShareMap,
                "a canary needs a map of canary shares (a [[files]] entry with values = \
                 \"percent\", such as template haproxy/canary.map)",
            ));
        }
        Ok(())
    }

    /// Adds the drain policy to a state that follows `base`: a service whose live colour
    /// moved drains the colour that lost its traffic when its config says so.
    fn with_drain_policy(&self, base: &State, mut next: State) -> State {
        for (name, s) in next.services.iter_mut() {
            let Some(old) = base.services.get(name) else {
                continue;
            };
            if old.live != s.live && self.config.services[name].drain_after_switch {
                s.drained.insert(old.live);
            }
        }
        next
    }
}
