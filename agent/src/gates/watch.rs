//! The post-switch watch as pure logic: fed cumulative counters of the new colour's
//! backend, it decides after each sample whether to go on, pass, hold or roll back.

use serde::Serialize;

use crate::config::{NoTraffic, WatchConfig};
use crate::proxy::BackendStats;

/// Where a watch stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Verdict {
    /// Keep sampling.
    Watching,
    /// The window ended with no trigger.
    Passed,
    /// The window saw no traffic at all and `no_traffic = "hold"`: an operator decides.
    Held,
    /// Roll back, for this reason.
    RollBack {
        /// How many bad samples came in a row and why the last one was bad, e.g.
        /// `3 bad samples in a row; last: error rate 12.0% (6 of 50) above 5%`.
        reason: String,
    },
}

/// The watch of one switch.
///
/// A sample is bad when the backend is down (no server up), when its errors (5xx answers
/// plus requests that failed without an answer) pass `max_error_percent` of its requests,
/// or when its average response time passes `max_latency_ms`. A sample with fewer than
/// `min_requests` requests is "no traffic": with `no_traffic = "fail"` it is bad, otherwise
/// it neither extends nor resets a streak of bad samples (a dead colour whose answers come
/// in slowly alternates bad samples with empty ones). When the window ends, the whole
/// window is judged once more: an error rate above `max_error_percent` over all of it, or
/// more bad samples than good ones, rolls back (a flapping colour never makes a streak).
#[derive(Debug, Clone)]
pub struct Watch {
    config: WatchConfig,
    /// Counters at the start of the window (moved on when the proxy restarts).
    first: BackendStats,
    last: BackendStats,
    /// Bad samples in a row, not counting samples without traffic in between.
    streak: u32,
    samples: u32,
    traffic_samples: u32,
    bad_samples: u32,
    /// Why the latest bad sample was bad.
    last_bad: Option<String>,
}

/// What one sample says.
enum Judged {
    Good,
    Bad(String),
    /// Too few requests to say anything (and `no_traffic` is not `fail`).
    Empty,
}

impl Watch {
    /// Starts a watch from the counters at the moment of the switch.
    pub fn new(config: WatchConfig, start: BackendStats) -> Watch {
        Watch {
            config,
            first: start,
            last: start,
            streak: 0,
            samples: 0,
            traffic_samples: 0,
            bad_samples: 0,
            last_bad: None,
        }
    }

    /// The `[services.watch]` table this watch applies.
    pub fn config(&self) -> &WatchConfig {
        &self.config
    }

    /// Errors (5xx answers and failed requests) and requests between two readings; the
    /// requests are at least the errors (a failed request may not count as answered).
    fn delta(from: &BackendStats, to: &BackendStats) -> (u64, u64) {
        let errors =
            to.errors_5xx.saturating_sub(from.errors_5xx) + to.failed.saturating_sub(from.failed);
        let requests = to.requests.saturating_sub(from.requests).max(errors);
        (requests, errors)
    }

    /// The error rate of `errors` in `requests` when it passes the limit.
    fn too_many_errors(&self, requests: u64, errors: u64) -> Option<String> {
        let rate = errors as f64 * 100.0 / requests.max(1) as f64;
        (rate > self.config.max_error_percent).then(|| {
            format!(
                "error rate {rate:.1}% ({errors} of {requests}) above {}%",
                self.config.max_error_percent
            )
        })
    }

    fn judge(&self, now: &BackendStats, requests: u64, errors: u64) -> Judged {
        if now.down {
            return Judged::Bad("no server of the backend is up".into());
        }
        if requests < self.config.min_requests {
            return match self.config.no_traffic {
                NoTraffic::Fail => Judged::Bad(format!(
                    "no traffic ({requests} requests, fewer than {})",
                    self.config.min_requests
                )),
                NoTraffic::Pass | NoTraffic::Hold => Judged::Empty,
            };
        }
        if let Some(why) = self.too_many_errors(requests, errors) {
            return Judged::Bad(why);
        }
        match self.config.max_latency_ms {
            Some(max) if now.avg_response_ms > max => Judged::Bad(format!(
                "average response time {} ms above {max} ms",
                now.avg_response_ms
            )),
            _ => Judged::Good,
        }
    }

    /// Takes one sample; `window_over` says whether the window has ended with it.
    pub fn sample(&mut self, now: BackendStats, window_over: bool) -> Verdict {
        // Counters that went back (a proxy restart) restart the baseline.
        let restarted = now.requests < self.last.requests;
        let (requests, errors) = Self::delta(&self.last, &now);
        if restarted {
            self.first = now;
        }
        self.samples += 1;
        let judged = if restarted {
            Judged::Empty
        } else {
            self.judge(&now, requests, errors)
        };
        self.last = now;
        if requests >= self.config.min_requests {
            self.traffic_samples += 1;
        }
        match judged {
            Judged::Bad(why) => {
                self.streak += 1;
                self.bad_samples += 1;
                self.last_bad = Some(why);
            }
            Judged::Good => self.streak = 0,
            Judged::Empty => {}
        }
        if self.streak >= self.config.consecutive {
            return Verdict::RollBack {
                reason: format!(
                    "{} bad samples in a row; last: {}",
                    self.streak,
                    self.last_bad.as_deref().unwrap_or("?")
                ),
            };
        }
        if window_over {
            return self.at_window_end();
        }
        Verdict::Watching
    }

    /// The verdict on the whole window, once it has ended without a streak.
    fn at_window_end(&self) -> Verdict {
        let (requests, errors) = Self::delta(&self.first, &self.last);
        if requests >= self.config.min_requests {
            if let Some(why) = self.too_many_errors(requests, errors) {
                return Verdict::RollBack {
                    reason: format!("over the whole window: {why}"),
                };
            }
        }
        let good = self.samples - self.bad_samples;
        if self.bad_samples > 0 && self.bad_samples * 2 > self.traffic_samples.max(good) {
            return Verdict::RollBack {
                reason: format!(
                    "{} of {} samples bad over the window; last: {}",
                    self.bad_samples,
                    self.samples,
                    self.last_bad.as_deref().unwrap_or("?")
                ),
            };
        }
        if self.traffic_samples == 0 && self.config.no_traffic == NoTraffic::Hold {
            return Verdict::Held;
        }
        Verdict::Passed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(no_traffic: NoTraffic) -> WatchConfig {
        WatchConfig {
            window_ms: 10_000,
            interval_ms: 100,
            max_error_percent: 5.0,
            max_latency_ms: Some(500),
            consecutive: 2,
            min_requests: 10,
            no_traffic,
        }
    }

    /// The reason of a rollback verdict; panics on any other.
    fn rollback_reason(verdict: Verdict) -> String {
        match verdict {
            Verdict::RollBack { reason } => reason,
            v => panic!("{v:?}"),
        }
    }

    fn stats(requests: u64, errors_5xx: u64, avg: u64) -> BackendStats {
        BackendStats {
            requests,
            errors_5xx,
            avg_response_ms: avg,
            ..BackendStats::default()
        }
    }

    #[test]
    fn errors_in_a_row_roll_back() {
        let mut w = Watch::new(config(NoTraffic::Pass), stats(1000, 10, 5));
        assert_eq!(w.sample(stats(1100, 11, 5), false), Verdict::Watching);
        assert_eq!(w.sample(stats(1200, 60, 5), false), Verdict::Watching);
        // A good sample resets the streak.
        assert_eq!(w.sample(stats(1300, 60, 5), false), Verdict::Watching);
        assert_eq!(w.sample(stats(1400, 100, 5), false), Verdict::Watching);
        let reason = rollback_reason(w.sample(stats(1500, 200, 5), false));
        assert!(
            reason.contains("error rate 100.0% (100 of 100)"),
            "{reason}"
        );
    }

    #[test]
    fn slow_responses_roll_back() {
        let mut w = Watch::new(config(NoTraffic::Pass), stats(0, 0, 0));
        w.sample(stats(100, 0, 900), false);
        assert!(matches!(
            w.sample(stats(200, 0, 900), false),
            Verdict::RollBack { .. }
        ));
    }

    #[test]
    fn no_traffic_outcomes() {
        let idle = |nt, over| {
            let mut w = Watch::new(config(nt), stats(5, 0, 0));
            w.sample(stats(5, 0, 0), false);
            w.sample(stats(6, 0, 0), over)
        };
        assert_eq!(idle(NoTraffic::Pass, true), Verdict::Passed);
        assert_eq!(idle(NoTraffic::Hold, true), Verdict::Held);
        assert!(matches!(
            idle(NoTraffic::Fail, false),
            Verdict::RollBack { .. }
        ));
    }

    #[test]
    fn a_proxy_restart_resets_the_baseline() {
        let mut w = Watch::new(config(NoTraffic::Fail), stats(1000, 0, 0));
        assert_eq!(w.sample(stats(3, 3, 0), false), Verdict::Watching);
        assert_eq!(w.sample(stats(103, 3, 0), true), Verdict::Passed);
    }

    #[test]
    fn a_dead_colour_answering_slowly_rolls_back() {
        // Every answer is a 503 that takes longer than a sample: samples alternate between
        // all-errors and none at all; the empty ones must not reset the streak.
        let mut w = Watch::new(config(NoTraffic::Pass), stats(0, 0, 0));
        assert_eq!(w.sample(stats(20, 20, 3000), false), Verdict::Watching);
        assert_eq!(w.sample(stats(20, 20, 3000), false), Verdict::Watching);
        let reason = rollback_reason(w.sample(stats(40, 40, 3000), false));
        assert!(reason.starts_with("2 bad"), "{reason}");
    }

    #[test]
    fn a_down_backend_is_bad_without_traffic() {
        let down = |requests| BackendStats {
            requests,
            down: true,
            ..BackendStats::default()
        };
        let mut w = Watch::new(config(NoTraffic::Pass), stats(0, 0, 0));
        assert_eq!(w.sample(down(0), false), Verdict::Watching);
        let reason = rollback_reason(w.sample(down(1), false));
        assert!(
            reason.contains("no server of the backend is up"),
            "{reason}"
        );
    }

    #[test]
    fn failed_requests_count_as_errors() {
        // Connection errors and broken responses that never became answers.
        let failing = |requests, failed| BackendStats {
            requests,
            failed,
            ..BackendStats::default()
        };
        let mut w = Watch::new(config(NoTraffic::Pass), failing(0, 0));
        w.sample(failing(0, 30), false);
        assert!(matches!(
            w.sample(failing(0, 60), false),
            Verdict::RollBack { .. }
        ));
    }

    #[test]
    fn a_flapping_colour_rolls_back_at_the_window_end() {
        // Good and bad samples alternate: never two bad in a row, but half the window's
        // requests fail.
        let mut w = Watch::new(config(NoTraffic::Pass), stats(0, 0, 0));
        let mut verdict = Verdict::Watching;
        for i in 1..=6u64 {
            let errors = i.div_ceil(2) * 100;
            verdict = w.sample(stats(i * 100, errors, 5), i == 6);
        }
        let reason = rollback_reason(verdict);
        assert!(reason.starts_with("over the whole window"), "{reason}");
    }

    #[test]
    fn a_slow_colour_with_gaps_rolls_back() {
        let mut w = Watch::new(config(NoTraffic::Pass), stats(0, 0, 0));
        assert_eq!(w.sample(stats(50, 0, 900), false), Verdict::Watching);
        assert_eq!(w.sample(stats(51, 0, 900), false), Verdict::Watching);
        assert!(matches!(
            w.sample(stats(100, 0, 900), false),
            Verdict::RollBack { .. }
        ));
    }

    #[test]
    fn a_healthy_colour_with_quiet_samples_passes() {
        let mut w = Watch::new(config(NoTraffic::Pass), stats(0, 0, 0));
        assert_eq!(w.sample(stats(100, 1, 5), false), Verdict::Watching);
        assert_eq!(w.sample(stats(101, 1, 5), false), Verdict::Watching);
        assert_eq!(w.sample(stats(200, 2, 5), true), Verdict::Passed);
    }
}
