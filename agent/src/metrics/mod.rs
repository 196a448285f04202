//! The agent's metrics: one registry and its metric families, updated by the engine and the
//! agent where things happen, and rendered in the OpenMetrics text format for Prometheus
//! (over HTTP by [`http`], and by the control command `metrics`).
//!
//! Every series a dashboard or an alert needs exists from the start (at 0), so `rate()` and
//! `absent()` work before the first switch. Label values come from fixed lists or from the
//! configured service names; nothing a client sends becomes a label.
//!
//! docs/METRICS.md lists every family with its type, labels and meaning; a test of the
//! running agent compares that list with what the endpoint serves. The classic Prometheus
//! text format is converted from the OpenMetrics encoding ([`classic`]); the process
//! metrics are read from `/proc/self` at each scrape ([`process`]).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub mod classic;
mod hooks;
pub mod http;
mod process;
mod record;
mod registry;
mod servers;

/// Content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A text exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 ([`CONTENT_TYPE`]): the default.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4 ([`classic::CONTENT_TYPE`]), for scrapers
    /// that ask for it.
    Classic,
}

impl Format {
    /// The format a request's `Accept` header values ask for ([`classic::prefers_classic`]).
    pub fn from_accept<'a>(accept: impl IntoIterator<Item = &'a str>) -> Format {
        if classic::prefers_classic(accept) {
            Format::Classic
        } else {
            Format::OpenMetrics
        }
    }

    /// The `Content-Type` of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => CONTENT_TYPE,
            Format::Classic => classic::CONTENT_TYPE,
        }
    }
}

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
struct ServicePhase {
    service: String,
    phase: &'static str,
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
    fault: Gauge,
    watch_phase: Family<ServicePhase, Gauge>,
    last_switch: Family<ServiceLabel, Gauge>,
    last_proxy_reload: Gauge,
    last_config_reload: Gauge,
    desired_state_error: Gauge,
    /// Services whose series exist, to drop the series of a service removed from the config.
    services: Mutex<BTreeSet<String>>,
    /// Services with `cutover_watch_phase` series, to drop them when the watch ends.
    watched: Mutex<BTreeSet<String>>,
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

    /// The exposition of every family in `format`.
    pub fn render_as(&self, format: Format) -> String {
        match format {
            Format::OpenMetrics => self.render(),
            Format::Classic => classic::from_openmetrics(&self.render()),
        }
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
            "# TYPE cutover_fault gauge",
            "# TYPE cutover_last_switch_timestamp_seconds gauge",
            "# TYPE cutover_last_proxy_reload_timestamp_seconds gauge",
            "# TYPE cutover_last_config_reload_timestamp_seconds gauge",
            "# TYPE cutover_desired_state_error gauge",
            "# TYPE cutover_build info",
            "# TYPE process_cpu_seconds counter",
            "# TYPE process_resident_memory_bytes gauge",
            "# TYPE process_open_fds gauge",
        ] {
            assert!(text.contains(family), "{family} missing in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("cutover_rollbacks_total{reason=\"apply_failed\"} 0"));
        assert!(text.contains("cutover_applies_total{result=\"failed\"} 0"));
        assert!(text.contains("cutover_proxy_reloads_total{result=\"ok\"} 0"));
        assert!(text.contains("cutover_peers 0"));
        assert!(text.contains("cutover_switches_total{service=\"web\",result=\"failed\"} 0"));
        assert!(text.contains("cutover_last_switch_timestamp_seconds{service=\"web\"} 0"));
        assert!(text.contains("cutover_fault 0"));
        assert!(text.contains(&format!(
            "cutover_build_info{{version=\"{}\",commit=\"{}\",build_date=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            env!("CUTOVER_GIT_COMMIT"),
            env!("CUTOVER_BUILD_DATE"),
        )));
    }

    /// The classic text carries the same samples as the OpenMetrics text, under classic
    /// metadata.
    #[test]
    fn the_classic_text_has_the_samples_of_the_openmetrics_text() {
        let m = Metrics::new();
        m.state(&State::new([("web", Colour::Blue)]));
        let om = m.render_as(Format::OpenMetrics);
        let classic = m.render_as(Format::Classic);
        let samples = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with("process_"))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(samples(&om), samples(&classic));
        assert!(
            !classic.contains("# EOF") && !classic.contains("# UNIT"),
            "{classic}"
        );
        for line in [
            "# TYPE cutover_switches_total counter",
            "# TYPE cutover_build_info gauge",
            "# TYPE cutover_apply_duration_seconds histogram",
            "# TYPE process_cpu_seconds_total counter",
        ] {
            assert!(classic.contains(line), "{line} missing in:\n{classic}");
        }
    }

    #[test]
    fn health_gauges_follow_the_engine() {
        use crate::protocol::{Phase, WatchPhase};
        let m = Metrics::new();
        let mut state = State::new([("web", Colour::Blue), ("api", Colour::Green)]);
        m.state(&state);
        let phase = |phase| Phase {
            phase,
            reason: None,
            since_ms: 0,
        };
        let phases = [("web".to_owned(), phase(WatchPhase::Held))].into();
        m.health(true, true, &phases);
        let text = m.render();
        for expected in [
            "cutover_fault 1",
            "cutover_desired_state_error 1",
            "cutover_watch_phase{service=\"web\",phase=\"held\"} 1",
            "cutover_watch_phase{service=\"web\",phase=\"watching\"} 0",
        ] {
            assert!(text.contains(expected), "{expected} missing in:\n{text}");
        }
        assert!(!text.contains("phase{service=\"api\""), "{text}");
        m.health(false, false, &Default::default());
        let text = m.render();
        assert!(text.contains("cutover_fault 0") && text.contains("cutover_desired_state_error 0"));
        assert!(!text.contains("cutover_watch_phase{"), "{text}");

        state.services.get_mut("web").unwrap().live = Colour::Green;
        m.state(&state);
        m.proxy_reload(true);
        let text = m.render();
        let value = |prefix: &str| -> i64 {
            let l = line(&text, prefix).unwrap_or_else(|| panic!("{prefix} in {text}"));
            l.rsplit(' ').next().unwrap().parse().unwrap()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        for moved in [
            "cutover_last_switch_timestamp_seconds{service=\"web\"}",
            "cutover_last_proxy_reload_timestamp_seconds ",
        ] {
            assert!((now - value(moved)).abs() <= 2, "{moved}: {text}");
        }
        assert_eq!(
            value("cutover_last_switch_timestamp_seconds{service=\"api\"}"),
            0
        );
        assert_eq!(value("cutover_last_config_reload_timestamp_seconds "), 0);
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
