//! What a change leaves behind besides the files: one journal line per request (applied or
//! refused, with who asked, the verb, the reason they gave, and for a change that came
//! through a cluster whoever asked for it there), the journal lines of what the agent did by itself, and
//! the metrics of every finished request.

use std::time::Instant;

use serde_json::json;

use super::change::{Admissions, Queued};
use super::error::ApplyError;
use super::transition::Applied;
use super::Engine;
use crate::metrics::RollbackReason;
use crate::protocol::{ReasonText, Request, ServiceState, Step};
use crate::proxy::Proxy;
use crate::requester::{Reason, Requester};
use crate::store::{JournalEntry, Outcome};

/// Most services logged one line each for one change (an `apply` of many services logs
/// the rest as a count).
const MAX_LOGGED_SERVICES: usize = 64;

impl<P: Proxy> Engine<P> {
    /// Step 7 for a batch: the result of each request (its admission's refusal, an empty
    /// change, or the carried change's outcome), journaled and counted. `carried` is the
    /// outcome of the batch's one transition, when a request changed something.
    pub(super) fn record_batch(
        &self,
        batch: &[Queued],
        admitted: Admissions,
        carried: Option<&Result<Applied, ApplyError>>,
        note: Option<&str>,
        started: Instant,
    ) -> Vec<Result<Applied, ApplyError>> {
        let changing = admitted
            .iter()
            .filter(|a| a.as_ref().is_ok_and(|a| !a.change.is_empty()))
            .count();
        let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut results = Vec::with_capacity(batch.len());
        for (q, outcome) in batch.iter().zip(admitted) {
            let result = match (outcome, carried) {
                (Err(e), _) => Err(e),
                (Ok(a), _) if a.change.is_empty() => Ok(Applied::nothing(a.change)),
                (Ok(a), Some(Ok(applied))) => Ok(Applied {
                    change: a.change,
                    gates: a.gates,
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

    fn journal(
        &self,
        q: &Queued,
        result: &Result<Applied, ApplyError>,
        note: Option<&str>,
        elapsed_ms: f64,
    ) {
        let request = serde_json::to_value(&q.request).expect("request serializes");
        let force = q.force;
        let if_generation = q.terms.if_generation;
        let (generation, outcome, message, data) = match result {
            Ok(a) => (
                a.change.generation,
                Outcome::Ok,
                match note {
                    Some(n) => format!("{}; {n}", a.summary()),
                    None => a.summary(),
                },
                json!({ "services": a.change.services, "files": a.files,
                        "gates": a.gates, "forced": force, "warnings": a.warnings,
                        "batched": a.batched, "elapsed_ms": elapsed_ms }),
            ),
            Err(e) => (
                self.state.generation,
                Outcome::Error,
                e.to_string(),
                json!({ "step": e.step, "forced": force, "elapsed_ms": elapsed_ms }),
            ),
        };
        let mut data = data;
        if let (Some(expected), Some(obj)) = (if_generation, data.as_object_mut()) {
            obj.insert("if_generation".into(), expected.into());
        }
        let entry = JournalEntry {
            verb: Some(q.verb.as_deref().unwrap_or(q.request.verb()).to_owned()),
            reason: q.terms.reason.clone(),
            asked_by: q.asked_by.clone(),
            ..JournalEntry::new(
                generation,
                q.requester.clone(),
                request,
                outcome,
                message,
                data,
            )
        };
        self.append(&entry);
        self.log_change(q, entry.verb(), result);
    }

    /// Logs a finished change with structured fields: one line per service whose routing
    /// changed (`service`, `verb`, `from`, `to`, `user`, `reason`, `generation`; at most
    /// [`MAX_LOGGED_SERVICES`], then one line saying how many more), or one line for a
    /// request that changed nothing or was refused (`step` says where).
    fn log_change(&self, q: &Queued, verb: &str, result: &Result<Applied, ApplyError>) {
        let user = q.asked_by.as_ref().unwrap_or(&q.requester).to_string();
        let reason = q.terms.reason.as_ref().map(|r| r.as_str());
        let service = q.request.service().unwrap_or("-");
        let state = |s: &Option<ServiceState>| s.as_ref().map_or("-".into(), ToString::to_string);
        match result {
            Ok(a) if !a.change.is_empty() => {
                let generation = a.change.generation;
                let services = &a.change.services;
                for c in services.iter().take(MAX_LOGGED_SERVICES) {
                    tracing::info!(
                        service = %c.service,
                        verb,
                        from = %state(&c.from),
                        to = %state(&c.to),
                        user = %user,
                        reason,
                        generation,
                        "{}",
                        a.summary()
                    );
                }
                if let Some(more) = services
                    .len()
                    .checked_sub(MAX_LOGGED_SERVICES)
                    .filter(|n| *n > 0)
                {
                    tracing::info!(verb, user = %user, generation, "and {more} more services changed");
                }
            }
            Ok(a) => tracing::info!(
                service,
                verb,
                user = %user,
                reason,
                generation = a.change.generation,
                "{}",
                a.summary()
            ),
            Err(e) => tracing::warn!(
                service,
                verb,
                user = %user,
                reason,
                generation = self.state.generation,
                step = %e.step,
                "change refused: {}",
                e.message()
            ),
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
    /// Journals a request refused before it reached the engine (the access check), with
    /// who sent it.
    pub fn journal_refusal(
        &self,
        request: serde_json::Value,
        requester: &Requester,
        verb: &str,
        reason: Option<&ReasonText>,
        step: Step,
        message: String,
    ) {
        let entry = JournalEntry {
            verb: Some(verb.to_owned()),
            reason: reason.cloned(),
            ..JournalEntry::new(
                self.state.generation,
                requester.clone(),
                request,
                Outcome::Error,
                message,
                json!({ "step": step }),
            )
        };
        self.append(&entry);
    }

    /// Journals a cluster change this node coordinated that changed nothing anywhere
    /// (refused at prepare, aborted at ready), with who asked: `message` names the phase
    /// and every host's reason, `outcome` is the coordinator's reply data (the txn, the
    /// phase, each host's answer).
    pub fn journal_cluster(
        &self,
        request: &Request,
        requester: &Requester,
        reason: Option<&ReasonText>,
        message: &str,
        outcome: &serde_json::Value,
    ) {
        let entry = JournalEntry {
            verb: Some(request.verb().to_owned()),
            reason: reason.cloned(),
            ..JournalEntry::new(
                self.state.generation,
                requester.clone(),
                serde_json::to_value(request).expect("request serializes"),
                Outcome::Error,
                message.to_owned(),
                json!({ "cluster": outcome }),
            )
        };
        self.append(&entry);
        tracing::warn!("{message}");
    }

    /// Journals something the agent did or saw by itself ([`Reason::Upkeep`]), with the request
    /// `{"op": op}` (`recover`, `reconcile`).
    pub(crate) fn journal_agent(
        &self,
        op: &str,
        result: Outcome,
        message: String,
        data: serde_json::Value,
    ) {
        let entry = JournalEntry::new(
            self.state.generation,
            Requester::agent(),
            json!({ "op": op }),
            result,
            message,
            data,
        );
        self.append(&entry);
    }

    pub(super) fn journal_watch(
        &self,
        service: &str,
        generation: u64,
        result: Outcome,
        message: &str,
    ) {
        let entry = JournalEntry::new(
            generation,
            Requester::Agent(Reason::Watch),
            json!({ "op": "watch", "service": service }),
            result,
            message.into(),
            serde_json::Value::Null,
        );
        self.append(&entry);
    }

    /// Appends one line to the journal; a failure is logged (the change it records has
    /// happened, or was refused, either way).
    fn append(&self, entry: &JournalEntry) {
        let written = match self.store.append(entry) {
            Ok(written) => {
                self.unflushed.journal();
                written
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot write the journal");
                true
            }
        };
        // A refusal the journal only counts, repeating the one before, is no new event.
        if let (true, Some(tap)) = (written, &self.tap) {
            tap(entry);
        }
    }

    /// Has `tap` told of every journal line written from now on (the hooks), a refusal
    /// repeating the one before aside; `None` stops it.
    pub fn set_journal_tap(&mut self, tap: Option<super::JournalTap>) {
        self.tap = tap;
    }
}
