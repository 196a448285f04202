//! The `[services.gate]`, `[services.watch]` and `[services.prewarm]` tables of a service:
//! what the gate before a switch, the watch after it and the pre-warm require, with their
//! documented defaults and bounds. The gates module runs them.

use std::time::Duration;

use serde::Deserialize;

/// Default least number of servers of the target colour that must be UP.
pub const DEFAULT_MIN_UP: usize = 1;
/// Default time of one health probe, milliseconds.
pub const DEFAULT_PROBE_TIMEOUT_MS: u64 = 2_000;
/// Default status a health probe expects.
pub const DEFAULT_EXPECT_STATUS: u16 = 200;
/// Default watch sampling interval, milliseconds.
pub const DEFAULT_WATCH_INTERVAL_MS: u64 = 1_000;
/// Default bad samples in a row that trigger a rollback.
pub const DEFAULT_CONSECUTIVE: u32 = 3;
/// Default highest acceptable share of 5xx responses in a sample, percent.
pub const DEFAULT_MAX_ERROR_PERCENT: f64 = 5.0;
/// Default fewest requests for a sample to count as traffic.
pub const DEFAULT_MIN_REQUESTS: u64 = 1;

/// Pre-switch gate of one service (`[services.gate]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// At least this many servers of the target colour must be UP and not in
    /// maintenance. Default [`DEFAULT_MIN_UP`].
    #[serde(default = "default_min_up")]
    pub min_up: usize,
    /// And at least this share of them, percent (0 to 100). Default 0.
    #[serde(default)]
    pub min_up_percent: f64,
    /// Path the agent GETs on every server of the target colour; no probes when unset.
    pub health_path: Option<String>,
    /// Status the probe expects. Default [`DEFAULT_EXPECT_STATUS`].
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
    /// Time of one probe, milliseconds. Default [`DEFAULT_PROBE_TIMEOUT_MS`].
    #[serde(default = "default_probe_timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            min_up: DEFAULT_MIN_UP,
            min_up_percent: 0.0,
            health_path: None,
            expect_status: DEFAULT_EXPECT_STATUS,
            timeout_ms: DEFAULT_PROBE_TIMEOUT_MS,
        }
    }
}

impl GateConfig {
    /// [`timeout_ms`](Self::timeout_ms) as a duration: how long one health probe may take.
    pub fn probe_timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Problems with this table, each prefixed with `at`.
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut p = Vec::new();
        if !(0.0..=100.0).contains(&self.min_up_percent) {
            p.push(format!(
                "{at}.min_up_percent: {} is outside 0..=100",
                self.min_up_percent
            ));
        }
        if let Some(path) = &self.health_path {
            if !path.starts_with('/')
                || path.len() > 1024
                || path.chars().any(|c| !c.is_ascii_graphic())
            {
                p.push(format!(
                    "{at}.health_path: {path:?} must start with '/' and be printable ASCII without spaces"
                ));
            }
        }
        if !(100..=599).contains(&self.expect_status) {
            p.push(format!(
                "{at}.expect_status: {} is not an HTTP status",
                self.expect_status
            ));
        }
        if !(1..=60_000).contains(&self.timeout_ms) {
            p.push(format!(
                "{at}.timeout_ms: {} is outside 1..=60000",
                self.timeout_ms
            ));
        }
        p
    }
}

/// What a sample without traffic means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoTraffic {
    /// Counts as a good sample.
    Pass,
    /// Counts as a bad sample.
    Fail,
    /// A window that saw no traffic at all ends `held`: no rollback, and `status` asks an
    /// operator to decide.
    Hold,
}

/// Post-switch watch of one service (`[services.watch]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// Length of the watch after a switch or promote, milliseconds.
    pub window_ms: u64,
    /// Time between samples, milliseconds. Default [`DEFAULT_WATCH_INTERVAL_MS`].
    #[serde(default = "default_watch_interval_ms")]
    pub interval_ms: u64,
    /// Highest share of 5xx responses in a sample, percent. Default
    /// [`DEFAULT_MAX_ERROR_PERCENT`].
    #[serde(default = "default_max_error_percent")]
    pub max_error_percent: f64,
    /// Highest average response time, milliseconds; unchecked when unset.
    pub max_latency_ms: Option<u64>,
    /// Bad samples in a row that trigger the rollback. Default [`DEFAULT_CONSECUTIVE`].
    #[serde(default = "default_consecutive")]
    pub consecutive: u32,
    /// Fewest requests for a sample to count as traffic. Default [`DEFAULT_MIN_REQUESTS`].
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// What a sample without traffic means. Default `pass`.
    #[serde(default = "default_no_traffic")]
    pub no_traffic: NoTraffic,
}

impl WatchConfig {
    /// [`window_ms`](Self::window_ms) as a duration: how long the watch lasts.
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    /// [`interval_ms`](Self::interval_ms) as a duration: the time between two samples.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// Problems with this table, each prefixed with `at`.
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut p = Vec::new();
        if !(1..=86_400_000).contains(&self.window_ms) {
            p.push(format!(
                "{at}.window_ms: {} is outside 1..=86400000",
                self.window_ms
            ));
        }
        if !(10..=3_600_000).contains(&self.interval_ms) {
            p.push(format!(
                "{at}.interval_ms: {} is outside 10..=3600000",
                self.interval_ms
            ));
        }
        if !(0.0..=100.0).contains(&self.max_error_percent) {
            p.push(format!(
                "{at}.max_error_percent: {} is outside 0..=100",
                self.max_error_percent
            ));
        }
        if !(1..=1000).contains(&self.consecutive) {
            p.push(format!(
                "{at}.consecutive: {} is outside 1..=1000",
                self.consecutive
            ));
        }
        p
    }
}

fn default_min_up() -> usize {
    DEFAULT_MIN_UP
}
fn default_expect_status() -> u16 {
    DEFAULT_EXPECT_STATUS
}
fn default_probe_timeout_ms() -> u64 {
    DEFAULT_PROBE_TIMEOUT_MS
}
fn default_watch_interval_ms() -> u64 {
    DEFAULT_WATCH_INTERVAL_MS
}
fn default_max_error_percent() -> f64 {
    DEFAULT_MAX_ERROR_PERCENT
}
fn default_consecutive() -> u32 {
    DEFAULT_CONSECUTIVE
}
fn default_min_requests() -> u64 {
    DEFAULT_MIN_REQUESTS
}
fn default_no_traffic() -> NoTraffic {
    NoTraffic::Pass
}

/// Most requests one pre-warm may send.
pub const MAX_REQUESTS: u32 = 100_000;
/// Most requests in flight at once.
pub const MAX_CONCURRENCY: usize = 64;

/// `[services.prewarm]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrewarmConfig {
    /// Paths requested, in turn. Default `["/"]`.
    #[serde(default = "default_paths")]
    pub paths: Vec<String>,
    /// Requests in all, spread over the colour's servers. Default 100.
    #[serde(default = "default_requests")]
    pub requests: u32,
    /// Requests in flight at once. Default 4.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Time of one request, milliseconds. Default 2000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Time of the whole pre-warm, milliseconds; requests not sent by then count as failed.
    /// Default 30000.
    #[serde(default = "default_total_ms")]
    pub total_ms: u64,
    /// Highest share of failed requests (status >= 400, or no answer), percent. Default 0.
    #[serde(default)]
    pub max_failure_percent: f64,
}

fn default_paths() -> Vec<String> {
    vec!["/".into()]
}
fn default_requests() -> u32 {
    100
}
fn default_concurrency() -> usize {
    4
}
fn default_timeout_ms() -> u64 {
    2_000
}
fn default_total_ms() -> u64 {
    30_000
}

impl PrewarmConfig {
    /// Problems with this table, each prefixed with `at`.
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut p = Vec::new();
        if self.paths.is_empty() || self.paths.len() > 100 {
            p.push(format!("{at}.paths: 1 to 100 paths"));
        }
        for path in &self.paths {
            if !path.starts_with('/')
                || path.len() > 1024
                || !path.chars().all(|c| c.is_ascii_graphic())
            {
                p.push(format!(
                    "{at}.paths: {path:?} must start with '/' and be printable ASCII"
                ));
            }
        }
        if !(1..=MAX_REQUESTS).contains(&self.requests) {
            p.push(format!(
                "{at}.requests: {} is outside 1..={MAX_REQUESTS}",
                self.requests
            ));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            p.push(format!(
                "{at}.concurrency: {} is outside 1..={MAX_CONCURRENCY}",
                self.concurrency
            ));
        }
        if !(1..=60_000).contains(&self.timeout_ms) {
            p.push(format!(
                "{at}.timeout_ms: {} is outside 1..=60000",
                self.timeout_ms
            ));
        }
        if !(1..=600_000).contains(&self.total_ms) {
            p.push(format!(
                "{at}.total_ms: {} is outside 1..=600000",
                self.total_ms
            ));
        }
        if !(0.0..=100.0).contains(&self.max_failure_percent) {
            p.push(format!("{at}.max_failure_percent: outside 0..=100"));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_problems_are_named() {
        let g = GateConfig {
            health_path: Some("health".into()),
            expect_status: 42,
            ..GateConfig::default()
        };
        let p = g.problems("services[0].gate");
        assert_eq!(p.len(), 2, "{p:?}");
        let w: WatchConfig = toml::from_str("window_ms = 0\nconsecutive = 0").unwrap();
        assert_eq!(w.problems("w").len(), 2);
        assert!(toml::from_str::<WatchConfig>("window_ms = 1\nbogus = 1").is_err());
    }

    #[test]
    fn bounds_are_checked() {
        let c: PrewarmConfig =
            toml::from_str("requests = 0\nconcurrency = 1000\npaths = [\"x\"]").unwrap();
        assert_eq!(c.problems("p").len(), 3);
        let ok: PrewarmConfig = toml::from_str("").unwrap();
        assert!(ok.problems("p").is_empty());
        assert_eq!((ok.requests, ok.concurrency), (100, 4));
    }
}
