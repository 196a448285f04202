//! The post-switch watch: after an operator's change moves a service's live colour, the new
//! colour's error rate and latency are sampled for a window, and the watch rolls the
//! service back by itself (through the same admission and write path as any change) when
//! the samples say so. The watch's phase per service is shown in `status`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::change::Queued;
use super::Engine;
use crate::gates::watch::{Verdict, Watch};
use crate::protocol::{Colour, Request};
use crate::protocol::{Phase, WatchPhase};
use crate::proxy::Proxy;
use crate::requester::{Reason, Requester};
use crate::store::{now_ms, Outcome};

/// A watch in progress.
pub(super) struct ActiveWatch {
    watch: Watch,
    backend: String,
    colour: Colour,
    ends: Instant,
    next: Instant,
    generation: u64,
}

impl<P: Proxy> Engine<P> {
    /// Starts the post-switch watch of `service` when it has one and its live colour just
    /// moved by an operator's request (not by the watch's own rollback).
    pub(super) async fn start_watch(&mut self, service: &str) {
        let Some(cfg) = self.config.services[service].watch.clone() else {
            return;
        };
        let colour = self.state.services[service].live;
        let backend = self.config.services[service].colours[&colour]
            .backend
            .clone();
        let start = match self.proxy.backend_stats(&backend).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(service, "cannot start the post-switch watch: {e}");
                return;
            }
        };
        let now = Instant::now();
        let (window, interval) = (cfg.window(), cfg.interval());
        self.watches.insert(
            service.to_owned(),
            ActiveWatch {
                watch: Watch::new(cfg, start),
                backend,
                colour,
                ends: now + window,
                next: now + interval,
                generation: self.state.generation,
            },
        );
        self.set_phase(service, WatchPhase::Watching, None);
    }

    /// When the next watch sample is due, if any watch runs.
    pub fn next_watch_due(&self) -> Option<Instant> {
        self.watches.values().map(|w| w.next).min()
    }

    /// Takes every due watch sample; rolls back a service whose watch says so.
    pub async fn run_watches(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .watches
            .iter()
            .filter(|(_, w)| w.next <= now)
            .map(|(s, _)| s.clone())
            .collect();
        for service in due {
            let verdict = {
                let w = self.watches.get_mut(&service).expect("due watch");
                // A change made since the watch began ends it: it watched another state.
                let live = self.state.services.get(&service).map(|s| s.live);
                if live != Some(w.colour) {
                    self.watches.remove(&service);
                    self.phases.remove(&service);
                    continue;
                }
                match self.proxy.backend_stats(&w.backend).await {
                    Ok(stats) => {
                        let over = Instant::now() >= w.ends;
                        w.next += w.watch.config().interval();
                        w.watch.sample(stats, over)
                    }
                    Err(e) => {
                        tracing::warn!(service, "watch sample failed: {e}");
                        w.next += w.watch.config().interval();
                        continue;
                    }
                }
            };
            match verdict {
                Verdict::Watching => {}
                Verdict::Passed => {
                    self.end_watch(&service, WatchPhase::Passed, Outcome::Passed, None)
                }
                Verdict::Held => self.end_watch(
                    &service,
                    WatchPhase::Held,
                    Outcome::Held,
                    Some("the watch window saw no traffic; promote or roll back by hand".into()),
                ),
                Verdict::RollBack { reason } => self.watch_rollback(&service, reason).await,
            }
        }
    }

    fn end_watch(
        &mut self,
        service: &str,
        phase: WatchPhase,
        result: Outcome,
        reason: Option<String>,
    ) {
        let w = self
            .watches
            .remove(service)
            .expect("ending a running watch");
        self.set_phase(service, phase, reason.clone());
        self.journal_watch(
            service,
            w.generation,
            result,
            reason.as_deref().unwrap_or(result.as_str()),
        );
    }

    async fn watch_rollback(&mut self, service: &str, reason: String) {
        let w = self
            .watches
            .remove(service)
            .expect("ending a running watch");
        let started = Instant::now();
        let req = Request::Rollback {
            service: service.to_owned(),
        };
        let who = Requester::Agent(Reason::Watch);
        let message = format!(
            "post-switch watch of {} ({}): {reason}",
            w.colour, w.backend
        );
        match self
            .apply_as(Queued::new(req, who, true), Some(&message))
            .await
        {
            Ok(_) => {
                tracing::warn!(service, "rolled back: {message}");
                self.set_phase(service, WatchPhase::RolledBack, Some(reason.clone()));
                self.journal_watch(
                    service,
                    w.generation,
                    Outcome::RolledBack,
                    &format!(
                        "{message}; rollback took {:.1} ms",
                        started.elapsed().as_secs_f64() * 1e3
                    ),
                );
            }
            Err(e) => {
                tracing::error!(service, "automatic rollback failed: {e}");
                self.set_phase(
                    service,
                    WatchPhase::RollbackFailed,
                    Some(format!("{reason}; rollback: {e}")),
                );
                self.journal_watch(
                    service,
                    w.generation,
                    Outcome::RollbackFailed,
                    &e.to_string(),
                );
            }
        }
    }

    fn set_phase(&mut self, service: &str, phase: WatchPhase, reason: Option<String>) {
        self.phases.insert(
            service.to_owned(),
            Phase {
                phase,
                reason,
                since_ms: now_ms(),
            },
        );
    }

    /// Phases by service, for `status`.
    pub fn phases(&self) -> &BTreeMap<String, Phase> {
        &self.phases
    }
}

/// How long until `due`, for a select loop (zero when past).
pub fn until(due: Instant) -> Duration {
    due.saturating_duration_since(Instant::now())
}
