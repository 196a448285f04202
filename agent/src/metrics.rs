//! The agent's metrics: one registry and its metric families, updated by the engine and the
//! agent where things happen, and rendered in the OpenMetrics text format for Prometheus
//! (over HTTP by [`http`], and by the control command `metrics`).
//!
//! Every series a dashboard or an alert needs exists from the start (at 0), so `rate()` and
//! `absent()` work before the first switch. Label values come from fixed lists or from the
//! configured service names; nothing a client sends becomes a label.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `cutover_switches_total` | counter | `service`, `result` (ok, unchanged, failed) |
//! | `cutover_rollbacks_total` | counter | `reason` ([`RollbackReason`]) |
//! | `cutover_applies_total` | counter | `result` (ok, unchanged, failed) |
//! | `cutover_apply_failures_total` | counter | `step` (the step that refused the change) |
//! | `cutover_apply_duration_seconds` | histogram | |
//! | `cutover_proxy_reloads_total` | counter | `result` (ok, failed) |
//! | `cutover_config_reloads_total` | counter | `result` (ok, refused) |
//! | `cutover_drift_repairs_total` | counter | |
//! | `cutover_live_colour` | gauge | `service`, `colour`: 1 for the live colour, else 0 |
//! | `cutover_canary_percent` | gauge | `service`: share sent to the canary colour (0: none) |
//! | `cutover_generation` | gauge | |
//! | `cutover_proxy_up` | gauge | 1 when the proxy answered the last check |
//! | `cutover_peers` | gauge | peer agents configured in `[cluster]` (0 without) |
//! | `cutover_peers_in_agreement` | gauge | peers whose last fresh report shows the same routing as this agent |
//! | `cutover_build_info` | info | `version` |

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::state::{Colour, State};

pub mod http;

/// Content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the apply-duration buckets, in seconds: 1 ms doubling to about 33 s.
fn duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 16)
}

/// Outcome labels of switches and applies.
const RESULTS: [&str; 3] = ["ok", "unchanged", "failed"];
/// Steps a change can fail at, as [`crate::engine::Step`] names them.
const STEPS: [&str; 9] = [
    "request", "gate", "render", "validate", "commit", "apply", "confirm", "persist", "proxy",
];

/// Why the proxy was brought back to an earlier routing state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackReason {
    /// `cutover rollback`: somebody asked for the previous colour.
    Requested,
    /// The post-switch watch saw the new colour fail and returned to the previous one.
    Watch,
    /// The proxy refused or failed to apply a change; what it served before was put back.
    ApplyFailed,
    /// A change read back different from what was applied; it was undone.
    ConfirmFailed,
    /// A change was applied but its state could not be saved; it was undone.
    PersistFailed,
}

impl RollbackReason {
    /// Every reason, so that each `cutover_rollbacks_total` series exists from the start
    /// at 0.
    pub const ALL: [RollbackReason; 5] = [
        RollbackReason::Requested,
        RollbackReason::Watch,
        RollbackReason::ApplyFailed,
        RollbackReason::ConfirmFailed,
        RollbackReason::PersistFailed,
    ];

    /// The `reason` label value: `requested`, `watch`, `apply_failed`, `confirm_failed`
    /// or `persist_failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RollbackReason::Requested => "requested",
            RollbackReason::Watch => "watch",
            RollbackReason::ApplyFailed => "apply_failed",
            RollbackReason::ConfirmFailed => "confirm_failed",
            RollbackReason::PersistFailed => "persist_failed",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceResult {
    service: String,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    step: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceColour {
    service: String,
    colour: &'static str,
}

/// The registry and its families. Cheap to clone: clones share the same values.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    switches: Family<ServiceResult, Counter>,
    rollbacks: Family<ReasonLabel, Counter>,
    applies: Family<ResultLabel, Counter>,
    apply_failures: Family<StepLabel, Counter>,
    apply_duration: Histogram,
    proxy_reloads: Family<ResultLabel, Counter>,
    config_reloads: Family<ResultLabel, Counter>,
    drift_repairs: Counter,
    live_colour: Family<ServiceColour, Gauge>,
    canary_percent: Family<ServiceLabel, Gauge>,
    generation: Gauge,
    proxy_up: Gauge,
    peers: Gauge<i64>,
    peers_agreeing: Gauge<i64>,
    /// Services whose series exist, to drop the series of a service removed from the config.
    services: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every family registered and the fixed series at 0.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("cutover");
        let switches = Family::<ServiceResult, Counter>::default();
        let rollbacks = Family::<ReasonLabel, Counter>::default();
        let applies = Family::<ResultLabel, Counter>::default();
        let apply_failures = Family::<StepLabel, Counter>::default();
        let apply_duration = Histogram::new(duration_buckets());
        let proxy_reloads = Family::<ResultLabel, Counter>::default();
        let config_reloads = Family::<ResultLabel, Counter>::default();
        let drift_repairs = Counter::default();
        let live_colour = Family::<ServiceColour, Gauge>::default();
        let canary_percent = Family::<ServiceLabel, Gauge>::default();
        let generation = Gauge::default();
        let proxy_up = Gauge::default();
        let peers = Gauge::<i64>::default();
        let peers_agreeing = Gauge::<i64>::default();

        registry.register(
            "switches",
            "Live-colour changes by service and result (ok: the live colour changed; unchanged: it was already live)",
            switches.clone(),
        );
        registry.register(
            "rollbacks",
            "Returns to an earlier routing state, by reason (requested, the post-switch watch, or the undo of a failed change)",
            rollbacks.clone(),
        );
        registry.register(
            "applies",
            "Routing changes (every request that may change routing) by result",
            applies.clone(),
        );
        registry.register(
            "apply_failures",
            "Routing changes refused, by the step that refused them",
            apply_failures.clone(),
        );
        registry.register_with_unit(
            "apply_duration",
            "Time from a routing request to its answer, whatever the result",
            Unit::Seconds,
            apply_duration.clone(),
        );
        registry.register(
            "proxy_reloads",
            "Proxy reloads made by the agent, by result",
            proxy_reloads.clone(),
        );
        registry.register(
            "config_reloads",
            "Agent config reloads (SIGHUP), by result (refused: the old config stays in force)",
            config_reloads.clone(),
        );
        registry.register(
            "drift_repairs",
            "Differences between the desired state and the files or the running proxy, repaired",
            drift_repairs.clone(),
        );
        registry.register(
            "live_colour",
            "1 for the live colour of each service, 0 for the other",
            live_colour.clone(),
        );
        registry.register(
            "canary_percent",
            "Share of each service's requests sent to its canary colour, percent (0: no canary)",
            canary_percent.clone(),
        );
        registry.register(
            "generation",
            "Generation of the applied routing state",
            generation.clone(),
        );
        registry.register(
            "proxy_up",
            "1 when the proxy answered the agent's last check, else 0",
            proxy_up.clone(),
        );
        registry.register(
            "peers",
            "Peer agents on other proxy hosts, as configured in [cluster]",
            peers.clone(),
        );
        registry.register(
            "peers_in_agreement",
            "Peer agents whose last fresh report shows the same routing (live colours and canaries) as this agent",
            peers_agreeing.clone(),
        );
        registry.register(
            "build",
            "The running cutover build",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );

        for result in RESULTS {
            let _ = applies.get_or_create(&ResultLabel { result });
        }
        for step in STEPS {
            let _ = apply_failures.get_or_create(&StepLabel { step });
        }
        for reason in RollbackReason::ALL {
            let _ = rollbacks.get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            });
        }
        for result in ["ok", "failed"] {
            let _ = proxy_reloads.get_or_create(&ResultLabel { result });
        }
        for result in ["ok", "refused"] {
            let _ = config_reloads.get_or_create(&ResultLabel { result });
        }
        Metrics {
            inner: Arc::new(Inner {
                registry,
                switches,
                rollbacks,
                applies,
                apply_failures,
                apply_duration,
                proxy_reloads,
                config_reloads,
                drift_repairs,
                live_colour,
                canary_percent,
                generation,
                proxy_up,
                peers,
                peers_agreeing,
                services: Mutex::new(BTreeSet::new()),
            }),
        }
    }

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
        self.inner
            .proxy_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// The agent read its config again (SIGHUP): counts it in
    /// `cutover_config_reloads_total` as `ok`, or `refused` when the old config stays.
    pub fn config_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "refused" };
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

    /// Whether the proxy answered the agent's last check: sets `cutover_proxy_up` to 1 or
    /// 0.
    pub fn proxy_up(&self, up: bool) {
        self.inner.proxy_up.set(i64::from(up));
    }

    /// Sets the live-colour gauges and the generation from the applied state, creates the
    /// series of new services and drops those of services that are gone.
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
        }
        for (name, s) in &state.services {
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

    /// The OpenMetrics text exposition of every family ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn every_family_is_rendered_from_the_start() {
        let m = Metrics::new();
        m.state(&State::new([("web", Colour::Blue)]));
        let text = m.render();
        for family in [
            "# TYPE cutover_switches counter",
            "# TYPE cutover_rollbacks counter",
            "# TYPE cutover_applies counter",
            "# TYPE cutover_apply_failures counter",
            "# TYPE cutover_apply_duration_seconds histogram",
            "# UNIT cutover_apply_duration_seconds seconds",
            "# TYPE cutover_proxy_reloads counter",
            "# TYPE cutover_config_reloads counter",
            "# TYPE cutover_drift_repairs counter",
            "# TYPE cutover_live_colour gauge",
            "# TYPE cutover_canary_percent gauge",
            "# TYPE cutover_generation gauge",
            "# TYPE cutover_proxy_up gauge",
            "# TYPE cutover_peers gauge",
            "# TYPE cutover_peers_in_agreement gauge",
            "# TYPE cutover_build info",
        ] {
            assert!(text.contains(family), "{family} missing in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("cutover_rollbacks_total{reason=\"apply_failed\"} 0"));
        assert!(text.contains("cutover_applies_total{result=\"failed\"} 0"));
        assert!(text.contains("cutover_proxy_reloads_total{result=\"ok\"} 0"));
        assert!(text.contains("cutover_peers 0"));
        assert!(text.contains("cutover_switches_total{service=\"web\",result=\"failed\"} 0"));
        assert!(text.contains(&format!(
            "cutover_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn events_move_their_series() {
        let m = Metrics::new();
        let mut state = State::new([("web", Colour::Blue), ("api", Colour::Green)]);
        state.generation = 7;
        m.state(&state);
        m.switch("web", Ok(true));
        m.switch("web", Ok(false));
        m.switch("web", Err(()));
        m.rollback(RollbackReason::Requested);
        m.apply(Ok(true), 0.003);
        m.apply(Err("validate"), 0.5);
        m.proxy_reload(true);
        m.config_reload(false);
        m.drift_repaired(2);
        m.proxy_up(true);
        let text = m.render();
        for expected in [
            "cutover_switches_total{service=\"web\",result=\"ok\"} 1",
            "cutover_switches_total{service=\"web\",result=\"unchanged\"} 1",
            "cutover_switches_total{service=\"web\",result=\"failed\"} 1",
            "cutover_switches_total{service=\"api\",result=\"ok\"} 0",
            "cutover_rollbacks_total{reason=\"requested\"} 1",
            "cutover_applies_total{result=\"ok\"} 1",
            "cutover_applies_total{result=\"failed\"} 1",
            "cutover_apply_failures_total{step=\"validate\"} 1",
            "cutover_apply_duration_seconds_count 2",
            "cutover_apply_duration_seconds_bucket{le=\"0.004\"} 1",
            "cutover_proxy_reloads_total{result=\"ok\"} 1",
            "cutover_config_reloads_total{result=\"refused\"} 1",
            "cutover_drift_repairs_total 2",
            "cutover_live_colour{service=\"web\",colour=\"blue\"} 1",
            "cutover_live_colour{service=\"web\",colour=\"green\"} 0",
            "cutover_live_colour{service=\"api\",colour=\"green\"} 1",
            "cutover_canary_percent{service=\"api\"} 0",
            "cutover_generation 7",
            "cutover_proxy_up 1",
        ] {
            assert!(text.contains(expected), "{expected} missing in:\n{text}");
        }
    }

    #[test]
    fn a_removed_service_loses_its_series() {
        let m = Metrics::new();
        m.state(&State::new([("web", Colour::Blue), ("api", Colour::Blue)]));
        m.state(&State::new([("web", Colour::Green)]));
        let text = m.render();
        assert!(
            line(&text, "cutover_live_colour{service=\"api\"").is_none(),
            "{text}"
        );
        assert!(
            line(&text, "cutover_switches_total{service=\"api\"").is_none(),
            "{text}"
        );
        assert!(
            line(&text, "cutover_canary_percent{service=\"api\"").is_none(),
            "{text}"
        );
        assert_eq!(
            line(
                &text,
                "cutover_live_colour{service=\"web\",colour=\"green\"}"
            ),
            Some("cutover_live_colour{service=\"web\",colour=\"green\"} 1")
        );
    }
}
