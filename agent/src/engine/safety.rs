//! Safety around a change: the pre-switch gate, draining the colour that lost its traffic,
//! and the post-switch watch that rolls back by itself.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use super::{ApplyError, Engine, Step};
use crate::gates::watch::{Verdict, Watch};
use crate::gates::{check_servers, probe};
use crate::proxy::{Proxy, ProxyError};
use crate::requester::{Reason, Requester};
use crate::state::{traffic_targets, Colour, Request, State};
use crate::store::{now_ms, JournalEntry, Outcome};

/// What the gate found, for the reply and the journal.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GateReport {
    pub service: String,
    /// The colour traffic moves to, and its backend.
    pub colour: Option<Colour>,
    pub backend: Option<String>,
    /// Servers that count as up.
    pub up: Vec<String>,
    /// Servers probed over HTTP and found healthy.
    pub probed: Vec<String>,
    /// Set when the gate was skipped with `--force`.
    pub forced: bool,
    /// What the pre-warm saw, when the service has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prewarm: Option<crate::gates::prewarm::PrewarmReport>,
}

/// A watch in progress.
pub(super) struct ActiveWatch {
    watch: Watch,
    backend: String,
    colour: Colour,
    ends: Instant,
    next: Instant,
    generation: u64,
}

/// Where the post-switch watch of a service stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchPhase {
    /// The watch runs.
    Watching,
    /// The new colour stayed healthy through the window.
    Passed,
    /// The window saw no traffic; the change is held for a person to decide.
    Held,
    /// The watch rolled the change back.
    RolledBack,
    /// The watch wanted a rollback and it failed.
    RollbackFailed,
}

/// The safety phase of one service, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// `watching`, `passed`, `held`, `rolled_back`, `rollback_failed`.
    pub phase: WatchPhase,
    /// Why (the rollback reason, or what is held).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Unix time of the phase's start, milliseconds.
    pub since_ms: u64,
}

/// `prev` with only the drains `next` keeps: the state of the servers between a change's
/// undrains (made before traffic moves) and its new drains (made after).
pub(super) fn drains_kept(prev: &State, next: &State) -> State {
    let mut mid = prev.clone();
    for (name, s) in mid.services.iter_mut() {
        if let Some(n) = next.services.get(name) {
            s.drained.retain(|c| n.drained.contains(c));
        }
    }
    mid
}

impl<P: Proxy> Engine<P> {
    /// The pre-switch gate for every colour the change from `base` to `next` moves
    /// traffic towards (see [`traffic_targets`]).
    pub(super) async fn gate(
        &self,
        base: &State,
        next: &State,
        force: bool,
    ) -> Result<Vec<GateReport>, ApplyError> {
        let mut reports = Vec::new();
        for (service, colour) in traffic_targets(base, next) {
            reports.push(self.gate_one(&service, colour, force).await?);
        }
        Ok(reports)
    }

    /// The gate for one colour of one service: enough servers up in the proxy, and the
    /// health probe answered when one is configured.
    async fn gate_one(
        &self,
        name: &str,
        colour: Colour,
        force: bool,
    ) -> Result<GateReport, ApplyError> {
        let service = &self.config.services[name];
        let backend = service.colours[&colour].backend.clone();
        let mut report = GateReport {
            service: name.to_owned(),
            colour: Some(colour),
            backend: Some(backend.clone()),
            forced: force,
            ..GateReport::default()
        };
        if force {
            return Ok(report);
        }
        let gate = &service.gate;
        let fail = |why: String| {
            ApplyError::new(
                Step::Gate,
                format!("{colour} of {name} is not ready: {why} (--force skips the gate)"),
            )
        };
        let servers = match self.proxy.servers(&backend).await {
            Ok(servers) => {
                report.up = check_servers(&backend, &servers, gate).map_err(fail)?;
                servers
            }
            Err(ProxyError::Unsupported { .. }) => Vec::new(),
            Err(e) => return Err(fail(format!("reading server states: {e}"))),
        };
        // Probes and pre-warm go to the configured servers, or those the proxy reports.
        let configured = &service.colours[&colour].servers;
        let targets: Vec<(String, String)> = if configured.is_empty() {
            servers
                .iter()
                .filter(|s| !s.maint)
                .map(|s| (s.name.clone(), s.address.clone()))
                .collect()
        } else {
            configured
                .iter()
                .map(|s| (s.name.clone(), s.address.clone()))
                .collect()
        };
        if let Some(path) = &gate.health_path {
            report.probed = self.probe_all(&targets, path, gate).await.map_err(fail)?;
        }
        if let Some(prewarm) = &service.prewarm {
            let addresses: Vec<String> = targets.iter().map(|(_, a)| a.clone()).collect();
            if addresses.is_empty() {
                return Err(fail(format!("no servers of {backend} to pre-warm")));
            }
            let r = crate::gates::prewarm::run(prewarm, &addresses).await;
            if r.failure_percent() > prewarm.max_failure_percent {
                let kinds: Vec<String> = r
                    .failures
                    .iter()
                    .map(|(k, n)| format!("{n}x {k}"))
                    .collect();
                return Err(fail(format!(
                    "pre-warm: {} of {} requests failed ({:.1}%, at most {}% allowed): {}",
                    r.failed,
                    r.sent,
                    r.failure_percent(),
                    prewarm.max_failure_percent,
                    kinds.join(", ")
                )));
            }
            report.prewarm = Some(r);
        }
        Ok(report)
    }

    /// Probes every target; the names of the healthy ones, or why too few are.
    async fn probe_all(
        &self,
        targets: &[(String, String)],
        path: &str,
        gate: &crate::gates::GateConfig,
    ) -> Result<Vec<String>, String> {
        if targets.is_empty() {
            return Err("no servers to probe".into());
        }
        let probes = targets.iter().map(|(name, addr)| async move {
            let result = probe::probe(addr, path, gate.expect_status, gate.probe_timeout()).await;
            (name.clone(), addr.clone(), result)
        });
        let results = futures_util::future::join_all(probes).await;
        let failed: Vec<String> = results
            .iter()
            .filter_map(|(name, addr, r)| {
                r.as_ref()
                    .err()
                    .map(|e| format!("{name} (http://{addr}{path}): {e}"))
            })
            .collect();
        let healthy = results.len() - failed.len();
        if healthy < gate.min_up
            || (healthy as f64 * 100.0 / results.len() as f64) < gate.min_up_percent
        {
            return Err(format!(
                "{healthy} of {} servers pass the health probe: {}",
                results.len(),
                failed.join("; ")
            ));
        }
        Ok(results
            .into_iter()
            .filter(|(_, _, r)| r.is_ok())
            .map(|(n, _, _)| n)
            .collect())
    }

    /// Adds the drain policy to a state that follows `base`: a service whose live colour
    /// moved drains the colour that lost its traffic when its config says so.
    pub(super) fn with_drain_policy(&self, base: &State, mut next: State) -> State {
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

    /// Brings the proxy's server admin states to the drains of `next`, from those of
    /// `prev` (`None`: re-assert every drain and every undrain, as after a reload or an
    /// interrupted change). Draining is runtime state on every proxy that supports it.
    pub(super) async fn sync_drains(
        &self,
        prev: Option<&State>,
        next: &State,
    ) -> Result<(), ApplyError> {
        for (name, s) in &next.services {
            let Some(service) = self.config.services.get(name) else {
                continue;
            };
            for colour in Colour::ALL {
                let want = s.drained.contains(&colour);
                let had = prev
                    .and_then(|p| p.services.get(name))
                    .map(|p| p.drained.contains(&colour));
                // Without a previous state (a reconcile) what the proxy holds is unknown: a
                // drain left by an interrupted change must be lifted too, so every colour is
                // set, which the proxy does only for servers in the other state.
                if had == Some(want) {
                    continue;
                }
                let backend = &service.colours[&colour].backend;
                match self.proxy.set_drain(backend, want).await {
                    Ok(()) => {}
                    Err(ProxyError::Unsupported { .. }) if !want || prev.is_none() => {}
                    Err(e) => {
                        return Err(ApplyError::new(
                            Step::Apply,
                            format!(
                                "{} servers of {backend}: {e}",
                                if want { "draining" } else { "undraining" }
                            ),
                        ))
                    }
                }
            }
        }
        Ok(())
    }

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
        match self.apply_as(&req, &who, true, Some(&message)).await {
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

    fn journal_watch(&self, service: &str, generation: u64, result: Outcome, message: &str) {
        let entry = JournalEntry {
            generation,
            time_ms: now_ms(),
            requester: Requester::Agent(Reason::Watch),
            request: json!({ "op": "watch", "service": service }),
            result,
            message: message.into(),
            data: serde_json::Value::Null,
        };
        if let Err(e) = self.store.append(&entry) {
            tracing::error!(error = %e, "cannot write the journal");
        }
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
