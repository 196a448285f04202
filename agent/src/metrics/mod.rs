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
//! | `cutover_store_up` | gauge | 1 while the fleet store (etcd) answers, 0 while it does not; absent without one |
//! | `cutover_fleet_generation` | gauge | the fleet generation this host applied (0 without a fleet store) |
//! | `cutover_servers` | gauge | `service`, `colour`, `state` (up, down, drain, maint, unknown): servers as the proxy last reported them |
//! | `cutover_hook_runs_total` | counter | `hook`, `result` (ok, failed): deliveries to each `[[hooks]]` entry |
//! | `cutover_hook_dropped_total` | counter | `hook`: events dropped because the hook's queue was full |
//! | `cutover_build_info` | info | `version` |

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

mod hooks;
pub mod http;
mod record;
mod registry;
mod servers;

/// Content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the apply-duration buckets, in seconds: 1 ms doubling to about 33 s.
fn duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 16)
}

/// Outcome labels of switches and applies.
const RESULTS: [&str; 3] = ["ok", "unchanged", "failed"];
/// Steps a change can fail at, as [`crate::protocol::Step`] names them.
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
struct StoreLabel {
    store: String,
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
    store_up: Family<StoreLabel, Gauge>,
    fleet_generation: Gauge,
    servers: servers::ServerGauges,
    hooks: hooks::HookFamilies,
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
    use crate::protocol::Colour;
    use crate::state::State;

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
            "# TYPE cutover_fleet_generation gauge",
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
