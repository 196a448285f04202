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
        /// `3 bad samples in a row; last: 5xx rate 12.0% (6 of 50) above 5%`.
        reason: String,
    },
}

/// The watch of one switch.
#[derive(Debug, Clone)]
pub struct Watch {
    config: WatchConfig,
    last: BackendStats,
    /// Bad samples in a row.
    streak: u32,
    samples: u32,
    traffic_samples: u32,
    /// Why the latest bad sample was bad.
    last_bad: Option<String>,
}

impl Watch {
    /// Starts a watch from the counters at the moment of the switch.
    pub fn new(config: WatchConfig, start: BackendStats) -> Watch {
        Watch {
            config,
            last: start,
            streak: 0,
            samples: 0,
            traffic_samples: 0,
            last_bad: None,
        }
    }

    /// The `[services.watch]` table this watch applies.
    pub fn config(&self) -> &WatchConfig {
        &self.config
    }

    /// Takes one sample; `window_over` says whether the window has ended with it.
    pub fn sample(&mut self, now: BackendStats, window_over: bool) -> Verdict {
        // Counters that went back (a proxy restart) restart the baseline.
        let requests = now.requests.saturating_sub(self.last.requests);
        let errors = now.errors_5xx.saturating_sub(self.last.errors_5xx);
        let restarted = now.requests < self.last.requests;
        self.last = now;
        self.samples += 1;
        let bad = if restarted {
            None
        } else if requests < self.config.min_requests {
            match self.config.no_traffic {
                NoTraffic::Fail => Some(format!(
                    "no traffic ({requests} requests, fewer than {})",
                    self.config.min_requests
                )),
                NoTraffic::Pass | NoTraffic::Hold => None,
            }
        } else {
            self.traffic_samples += 1;
            let rate = errors as f64 * 100.0 / requests as f64;
            if rate > self.config.max_error_percent {
                Some(format!(
                    "5xx rate {rate:.1}% ({errors} of {requests}) above {}%",
                    self.config.max_error_percent
                ))
            } else {
                match self.config.max_latency_ms {
                    Some(max) if now.avg_response_ms > max => Some(format!(
                        "average response time {} ms above {max} ms",
                        now.avg_response_ms
                    )),
                    _ => None,
                }
            }
        };
        match bad {
            Some(why) => {
                self.streak += 1;
                self.last_bad = Some(why);
            }
            None => self.streak = 0,
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
            if self.traffic_samples == 0 && self.config.no_traffic == NoTraffic::Hold {
                return Verdict::Held;
            }
            return Verdict::Passed;
        }
        Verdict::Watching
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

    fn stats(requests: u64, errors_5xx: u64, avg: u64) -> BackendStats {
        BackendStats {
            requests,
            errors_5xx,
            avg_response_ms: avg,
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
        match w.sample(stats(1500, 200, 5), false) {
            Verdict::RollBack { reason } => {
                assert!(reason.contains("5xx rate 100.0% (100 of 100)"), "{reason}")
            }
            v => panic!("{v:?}"),
        }
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
}
