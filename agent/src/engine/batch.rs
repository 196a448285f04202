//! Applying requests: each queued request admitted in order (its state change, the drain
//! policy, its own pre-switch gate), then one transition for all of them, drains and
//! post-switch watches after it, and one journal line per request. A single request is a
//! batch of one.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use super::safety::drains_kept;
use super::{ms, Applied, ApplyError, Engine, GateReport, Step};
use crate::metrics::RollbackReason;
use crate::proxy::Proxy;
use crate::requester::{Reason, Requester};
use crate::state::{Change, Request, State};
use crate::store::{now_ms, JournalEntry, Outcome};

/// One change waiting for the engine (see [`Engine::apply_batch`]).
#[derive(Debug, Clone)]
pub struct Queued {
    pub request: Request,
    pub requester: Requester,
    /// Skip the pre-switch gate (journaled).
    pub force: bool,
}

impl<P: Proxy> Engine<P> {
    /// Applies one routing request end to end and journals it. `force` skips the
    /// pre-switch gate (and is journaled).
    pub async fn apply(
        &mut self,
        req: &Request,
        requester: &Requester,
        force: bool,
    ) -> Result<Applied, ApplyError> {
        self.apply_as(req, requester, force, None).await
    }

    /// [`Engine::apply`] with a note for the journal (why the agent itself asked).
    pub(super) async fn apply_as(
        &mut self,
        req: &Request,
        requester: &Requester,
        force: bool,
        note: Option<&str>,
    ) -> Result<Applied, ApplyError> {
        let one = [Queued {
            request: req.clone(),
            requester: requester.clone(),
            force,
        }];
        self.apply_batch_as(&one, note)
            .await
            .pop()
            .expect("one result per request")
    }

    /// Applies queued requests with one transition. Each request is admitted in order on
    /// the state the previous ones left: its state change, the drain policy, its own
    /// pre-switch gate; one that is refused there gets its error and the others go on. The
    /// resulting state is then carried to the files and the proxy once (one validation, one
    /// reload where the proxy needs one) and persisted, and every request is journaled on
    /// its own line with its own generation. If that transition fails, every request that
    /// changed something gets its error. Returns one result per request, in order.
    pub async fn apply_batch(&mut self, batch: &[Queued]) -> Vec<Result<Applied, ApplyError>> {
        self.apply_batch_as(batch, None).await
    }

    async fn apply_batch_as(
        &mut self,
        batch: &[Queued],
        note: Option<&str>,
    ) -> Vec<Result<Applied, ApplyError>> {
        let started = Instant::now();
        let mut next = self.state.clone();
        let mut admitted = Vec::with_capacity(batch.len());
        let t = Instant::now();
        for q in batch {
            admitted.push(match self.admit(&next, q).await {
                Ok((state, change, gates)) => {
                    if !change.is_empty() {
                        next = state;
                    }
                    Ok((change, gates))
                }
                Err(e) => Err(e),
            });
        }
        let changing = admitted
            .iter()
            .filter(|a| a.as_ref().is_ok_and(|(c, _)| !c.is_empty()))
            .count();
        let gate_ms = ms(t);
        let shared = if changing == 0 {
            None
        } else {
            let carried = self.carry(next, batch, &admitted).await;
            Some(carried.map(|mut applied| {
                applied.timings_ms.insert("gate", gate_ms);
                applied
            }))
        };
        let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut results = Vec::with_capacity(batch.len());
        for (q, outcome) in batch.iter().zip(admitted) {
            let result = match (outcome, &shared) {
                (Err(e), _) => Err(e),
                (Ok((change, _)), _) if change.is_empty() => Ok(Applied::nothing(change)),
                (Ok((change, gates)), Some(Ok(applied))) => Ok(Applied {
                    change,
                    gates,
                    batched: changing,
                    ..applied.clone()
                }),
                (Ok(_), Some(Err(e))) => Err(e.clone()),
                (Ok(_), None) => unreachable!("a changing request makes a transition"),
            };
            self.journal(q, &result, note, elapsed_ms);
            self.count_apply(&q.request, &q.requester, &result, elapsed_ms / 1e3);
            results.push(result);
        }
        results
    }

    /// Admits one request on top of `base`: the state change (or the state's refusal), the
    /// drain policy, and the pre-switch gate of the colours it moves traffic towards.
    async fn admit(
        &self,
        base: &State,
        q: &Queued,
    ) -> Result<(State, Change, Vec<GateReport>), ApplyError> {
        // Nginx carries the canary share in its main config (`split_clients`), which every
        // change re-renders; a runtime proxy needs a map of shares.
        if matches!(q.request, Request::Canary { .. })
            && self.proxy.has_runtime_maps()
            && !self.has_percent_map()
        {
            return Err(ApplyError::new(
                Step::Request,
                "a canary needs a map of canary shares (a [[files]] entry with values = \
                 \"percent\", such as template haproxy/canary.map)",
            ));
        }
        let (next, change) = base
            .apply(&q.request)
            .map_err(|e| ApplyError::new(Step::Request, e))?;
        if change.is_empty() {
            return Ok((next, change, vec![]));
        }
        let next = self.with_drain_policy(base, next);
        let gates = self.gate(base, &next, q.force).await?;
        Ok((next, change, gates))
    }

    /// Carries the state the admitted requests of `batch` lead to: one transition, the
    /// drains, and the post-switch watch of every service whose live colour moved, unless
    /// the last request that moved it was a rollback.
    async fn carry(
        &mut self,
        next: State,
        batch: &[Queued],
        admitted: &[Result<(Change, Vec<GateReport>), ApplyError>],
    ) -> Result<Applied, ApplyError> {
        let change = Change {
            generation: next.generation,
            services: crate::state::diff(&self.state, &next),
        };
        let prev = self.state.clone();
        // Colours that take traffic again leave drain before the traffic moves: a backend
        // whose servers are all drained answers 503. New drains come after the move.
        let t = Instant::now();
        let undrained = drains_kept(&prev, &next);
        self.sync_drains(Some(&prev), &undrained).await?;
        let undrain_ms = ms(t);
        let mut applied = match self.commit_state(next, change).await {
            Ok(applied) => applied,
            Err(e) => {
                if let Err(redrain) = self.sync_drains(Some(&undrained), &prev).await {
                    tracing::warn!("after a refused change: {redrain}");
                }
                return Err(e);
            }
        };
        let t = Instant::now();
        if let Err(e) = self.sync_drains(Some(&undrained), &self.state).await {
            tracing::warn!("{e}");
            applied.warnings.push(e.to_string());
        }
        applied.timings_ms.insert("undrain", undrain_ms);
        applied.timings_ms.insert("drain", ms(t));
        let mut moved_by_rollback: BTreeMap<String, bool> = BTreeMap::new();
        for (q, a) in batch.iter().zip(admitted) {
            let Ok((change, _)) = a else { continue };
            for c in change.services.iter().filter(|c| c.live_moved()) {
                moved_by_rollback.insert(c.service.clone(), q.request.is_rollback());
            }
        }
        let watch: Vec<String> = applied
            .change
            .services
            .iter()
            .filter(|c| c.live_moved() && moved_by_rollback.get(&c.service) == Some(&false))
            .map(|c| c.service.clone())
            .collect();
        for service in watch {
            self.start_watch(&service).await;
        }
        Ok(applied)
    }

    fn journal(
        &self,
        q: &Queued,
        result: &Result<Applied, ApplyError>,
        note: Option<&str>,
        elapsed_ms: f64,
    ) {
        let request = serde_json::to_value(&q.request).expect("request serializes");
        let force = q.force;
        let entry = match result {
            Ok(a) => JournalEntry {
                generation: a.change.generation,
                time_ms: now_ms(),
                requester: q.requester.clone(),
                request,
                result: Outcome::Ok,
                message: match note {
                    Some(n) => format!("{}; {n}", a.summary()),
                    None => a.summary(),
                },
                data: json!({ "services": a.change.services, "files": a.files,
                              "gates": a.gates, "forced": force, "warnings": a.warnings,
                              "batched": a.batched, "elapsed_ms": elapsed_ms }),
            },
            Err(e) => JournalEntry {
                generation: self.state.generation,
                time_ms: now_ms(),
                requester: q.requester.clone(),
                request,
                result: Outcome::Error,
                message: e.to_string(),
                data: json!({ "step": e.step, "forced": force, "elapsed_ms": elapsed_ms }),
            },
        };
        if let Err(e) = self.store.append(&entry) {
            tracing::error!(error = %e, "cannot write the journal");
        }
        match result {
            Ok(a) => tracing::info!(generation = a.change.generation, "{}", a.summary()),
            Err(e) => tracing::warn!(step = %e.step, "change refused: {}", e.message),
        }
    }

    /// Counts a finished routing request. Only configured services become label values,
    /// so a client cannot create series by naming services.
    fn count_apply(
        &self,
        req: &Request,
        requester: &Requester,
        result: &Result<Applied, ApplyError>,
        seconds: f64,
    ) {
        let step = result.as_ref().err().map(|e| e.step.to_string());
        let changed = match result {
            Ok(a) => Ok(!a.change.is_empty()),
            Err(_) => Err(step.as_deref().unwrap_or_default()),
        };
        self.metrics.apply(changed, seconds);
        let configured = |s: &str| self.config.services.contains_key(s);
        match (req, result) {
            (Request::Rollback { .. }, Ok(a)) if !a.change.is_empty() => {
                self.metrics.rollback(match requester {
                    Requester::Agent(Reason::Watch) => RollbackReason::Watch,
                    _ => RollbackReason::Requested,
                });
            }
            (Request::Rollback { .. }, _) => {}
            (_, Ok(a)) => {
                for c in a.change.services.iter().filter(|c| c.live_moved()) {
                    self.metrics.switch(&c.service, Ok(true));
                }
                if let Request::Switch { service, .. } = req {
                    if a.change.is_empty() && configured(service) {
                        self.metrics.switch(service, Ok(false));
                    }
                }
            }
            (Request::Switch { service, .. } | Request::Promote { service }, Err(_))
                if configured(service) =>
            {
                self.metrics.switch(service, Err(()));
            }
            (_, Err(_)) => {}
        }
    }
}
