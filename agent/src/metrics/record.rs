//! The recorders: where the engine and the agent report what happened, each moving its series.

use std::collections::BTreeMap;

use super::*;
use crate::protocol::{Colour, Phase, WatchPhase};
use crate::state::State;

/// Now, Unix seconds.
fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Metrics {
    /// A switch request for `service` finished: `Ok(changed)` or failed.
    pub fn switch(&self, service: &str, outcome: Result<bool, ()>) {
        let result = match outcome {
            Ok(true) => "ok",
            Ok(false) => "unchanged",
            Err(()) => "failed",
        };
        self.inner
            .switches
            .get_or_create(&ServiceResult {
                service: service.to_owned(),
                result,
            })
            .inc();
    }

    /// A return to an earlier routing state happened, for `reason`: counts it in
    /// `cutover_rollbacks_total`.
    pub fn rollback(&self, reason: RollbackReason) {
        self.inner
            .rollbacks
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// A routing change finished after `seconds`: `Ok(changed)`, or the name of the step
    /// that refused it.
    pub fn apply(&self, outcome: Result<bool, &str>, seconds: f64) {
        let result = match outcome {
            Ok(true) => "ok",
            Ok(false) => "unchanged",
            Err(step) => {
                let step = STEPS
                    .iter()
                    .find(|s| **s == step)
                    .copied()
                    .unwrap_or("proxy");
                self.inner
                    .apply_failures
                    .get_or_create(&StepLabel { step })
                    .inc();
                "failed"
            }
        };
        self.inner
            .applies
            .get_or_create(&ResultLabel { result })
            .inc();
        self.inner.apply_duration.observe(seconds);
    }

    /// The agent reloaded the proxy: counts it in `cutover_proxy_reloads_total` as `ok`
    /// (confirmed) or `failed`.
    pub fn proxy_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        if ok {
            self.inner.last_proxy_reload.set(now_s());
        }
        self.inner
            .proxy_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// The agent read its config again (SIGHUP): counts it in
    /// `cutover_config_reloads_total` as `ok`, or `refused` when the old config stays.
    pub fn config_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "refused" };
        if ok {
            self.inner.last_config_reload.set(now_s());
        }
        self.inner
            .config_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// `repairs` differences between the desired state and the files or the running proxy
    /// were repaired: adds them to `cutover_drift_repairs_total`.
    pub fn drift_repaired(&self, repairs: usize) {
        self.inner.drift_repairs.inc_by(repairs as u64);
    }

    /// Peers configured, and how many of them agree with this agent's routing.
    pub fn peers(&self, configured: usize, agreeing: usize) {
        self.inner.peers.set(configured as i64);
        self.inner.peers_agreeing.set(agreeing as i64);
    }

    /// Whether the fleet store answers, and the fleet generation this host applied.
    pub fn fleet(&self, store_up: bool, applied_generation: u64) {
        self.inner
            .store_up
            .get_or_create(&StoreLabel {
                store: "etcd".into(),
            })
            .set(i64::from(store_up));
        self.inner.fleet_generation.set(applied_generation as i64);
    }

    /// Whether the proxy answered the agent's last check: sets `cutover_proxy_up` to 1 or
    /// 0.
    pub fn proxy_up(&self, up: bool) {
        self.inner.proxy_up.set(i64::from(up));
    }

    /// The engine's health as `status` shows it: whether a fault is reported, whether the
    /// desired-state file's content is refused, and the watch phase of each service that
    /// has one (the series of a service whose watch ended are dropped).
    pub fn health(&self, fault: bool, desired_state_error: bool, phases: &BTreeMap<String, Phase>) {
        let i = &self.inner;
        i.fault.set(i64::from(fault));
        i.desired_state_error.set(i64::from(desired_state_error));
        let mut watched = i.watched.lock().unwrap_or_else(|e| e.into_inner());
        for gone in watched.iter().filter(|s| !phases.contains_key(*s)) {
            for phase in WatchPhase::ALL {
                i.watch_phase.remove(&ServicePhase {
                    service: gone.clone(),
                    phase: phase.as_str(),
                });
            }
        }
        for (service, p) in phases {
            for phase in WatchPhase::ALL {
                i.watch_phase
                    .get_or_create(&ServicePhase {
                        service: service.clone(),
                        phase: phase.as_str(),
                    })
                    .set(i64::from(p.phase == phase));
            }
        }
        *watched = phases.keys().cloned().collect();
    }

    /// Sets the live-colour gauges and the generation from the applied state, creates the
    /// series of new services and drops those of services that are gone. A service known
    /// before whose live colour moved gets its `cutover_last_switch_timestamp_seconds`.
    pub fn state(&self, state: &State) {
        let i = &self.inner;
        i.generation
            .set(i64::try_from(state.generation).unwrap_or(i64::MAX));
        let mut known = i.services.lock().unwrap_or_else(|e| e.into_inner());
        let now: BTreeSet<String> = state.services.keys().cloned().collect();
        for gone in known.difference(&now) {
            for colour in Colour::ALL {
                i.live_colour.remove(&ServiceColour {
                    service: gone.clone(),
                    colour: colour.as_str(),
                });
            }
            for result in RESULTS {
                i.switches.remove(&ServiceResult {
                    service: gone.clone(),
                    result,
                });
            }
            i.canary_percent.remove(&ServiceLabel {
                service: gone.clone(),
            });
            i.last_switch.remove(&ServiceLabel {
                service: gone.clone(),
            });
        }
        let now_s = now_s();
        for (name, s) in &state.services {
            let label = ServiceLabel {
                service: name.clone(),
            };
            let live = i.live_colour.get_or_create(&ServiceColour {
                service: name.clone(),
                colour: s.live.as_str(),
            });
            let last_switch = i.last_switch.get_or_create(&label);
            if known.contains(name) && live.get() == 0 {
                last_switch.set(now_s);
            }
            drop((live, last_switch));
            for colour in Colour::ALL {
                i.live_colour
                    .get_or_create(&ServiceColour {
                        service: name.clone(),
                        colour: colour.as_str(),
                    })
                    .set(i64::from(s.live == colour));
            }
            i.canary_percent
                .get_or_create(&ServiceLabel {
                    service: name.clone(),
                })
                .set(s.canary.map_or(0, |c| i64::from(c.percent)));
            for result in RESULTS {
                let _ = i.switches.get_or_create(&ServiceResult {
                    service: name.clone(),
                    result,
                });
            }
        }
        *known = now;
    }
}
