//! The one path of a change, read top to bottom as the flow of DESIGN.md:
//!
//! 1. admit every request ([`admit`](super::admit)): state change, drain policy, gate;
//! 2. plan the files ([`files`](super::files), [`validate`](super::validate)): render,
//!    stage, validate; nothing live is written;
//! 3. undrain the colours that take traffic again ([`drains`](super::drains));
//! 4. commit, apply, confirm, settle ([`transition`](super::transition));
//! 5. persist the state (one line in the store's state log, the one fsync an answer waits
//!    for; the rest is made durable after the answer, see [`flush`](super::flush));
//! 6. drain the colours that lost their traffic, start the post-switch watches
//!    ([`watch`](super::watch));
//! 7. journal and count every request ([`record`](super::record)), and answer.
//!
//! A dry run ([`Engine::plan`]) is the same path stopped after step 2. Several queued
//! requests are one batch: each is admitted on the state the previous ones left, steps 2
//! to 6 run once for the state they lead to, and each is journaled on its own line.

use std::collections::BTreeMap;
use std::time::Instant;

use super::admit::Admitted;
use super::drains::drains_kept;
use super::error::{ApplyError, ErrorKind};
use super::files::Prepared;
use super::transition::Applied;
use super::{ms, Engine};
use crate::metrics::RollbackReason;
use crate::protocol::Plan;
use crate::protocol::Step;
use crate::protocol::{Change, Mutation, Request, Terms};
use crate::proxy::Proxy;
use crate::requester::Requester;
use crate::state::State;

/// One change waiting for the engine (see [`Engine::apply_batch`]).
#[derive(Debug, Clone)]
pub struct Queued {
    /// What to change.
    pub request: Request,
    /// Who asked, for the journal and the metrics.
    pub requester: Requester,
    /// Skip the pre-switch gate (journaled).
    pub force: bool,
    /// Why (journaled), and the generation the state must be at (checked at admission).
    pub terms: Terms,
    /// Who asked for a change that came through a cluster (journaled).
    pub asked_by: Option<Requester>,
    /// The verb asked for, where `request` says less (journaled).
    pub verb: Option<String>,
}

impl Queued {
    /// `request` asked by `requester`, without terms.
    pub fn new(request: Request, requester: Requester, force: bool) -> Queued {
        Queued {
            request,
            requester,
            force,
            terms: Terms::default(),
            asked_by: None,
            verb: None,
        }
    }

    /// A routing change of the wire, asked by `requester`.
    pub fn of(m: Mutation, requester: Requester) -> Queued {
        Queued {
            terms: m.terms,
            ..Queued::new(m.request, requester, m.force)
        }
    }
}

/// The admission of each request of a batch, in order.
pub(super) type Admissions = Vec<Result<Admitted, ApplyError>>;

impl<P: Proxy> Engine<P> {
    /// What `request` would do, worked out by the same admission and file planning as a
    /// real change, stopped before anything is written. An `Err` names the step and the
    /// cause that would refuse it.
    pub async fn plan(
        &self,
        request: &Request,
        force: bool,
        if_generation: Option<u64>,
    ) -> Result<Plan, ApplyError> {
        self.plan_from(&self.state, request, force, if_generation)
            .await
            .map(|(plan, _)| plan)
    }

    /// [`Engine::plan`] on top of `base` instead of the applied state (the fleet store's
    /// records, for a vote), with the state the request leads to.
    pub async fn plan_from(
        &self,
        base: &State,
        request: &Request,
        force: bool,
        if_generation: Option<u64>,
    ) -> Result<(Plan, State), ApplyError> {
        let admitted = self.admit(base, request, force, if_generation).await?;
        let next = admitted.next.clone();
        if admitted.change.is_empty() {
            return Ok((self.describe(admitted, None), next));
        }
        let config = self.config.clone();
        let prepared = self.prepare(&config, &admitted.next).await?;
        Ok((self.describe(admitted, Some(prepared)), next))
    }

    /// Applies one routing request end to end and journals it. `force` skips the
    /// pre-switch gate (and is journaled).
    pub async fn apply(
        &mut self,
        request: &Request,
        requester: &Requester,
        force: bool,
    ) -> Result<Applied, ApplyError> {
        let one = Queued::new(request.clone(), requester.clone(), force);
        self.apply_as(one, None).await
    }

    /// [`Engine::apply`] of a change with its terms and who asked for it.
    pub async fn apply_queued(&mut self, queued: Queued) -> Result<Applied, ApplyError> {
        self.apply_as(queued, None).await
    }

    /// [`Engine::apply_queued`] with a note for the journal (why the agent itself asked).
    pub(super) async fn apply_as(
        &mut self,
        queued: Queued,
        note: Option<&str>,
    ) -> Result<Applied, ApplyError> {
        let one = [queued];
        let mut results = self.apply_batch_as(&one, note).await;
        match results.pop() {
            Some(result) => result,
            None => unreachable!("one result per request"),
        }
    }

    /// Applies queued requests with one transition (see the module doc). A request refused
    /// at admission gets its error and the others go on; if the transition fails, every
    /// request that changed something gets its error. Returns one result per request, in
    /// order.
    pub async fn apply_batch(&mut self, batch: &[Queued]) -> Vec<Result<Applied, ApplyError>> {
        self.apply_batch_as(batch, None).await
    }

    async fn apply_batch_as(
        &mut self,
        batch: &[Queued],
        note: Option<&str>,
    ) -> Vec<Result<Applied, ApplyError>> {
        let started = Instant::now();
        let t = Instant::now();
        let (next, admitted) = self.admit_batch(batch).await;
        let gate_ms = ms(t);
        let carried = match next {
            None => None,
            Some(next) => {
                let watch = services_to_watch(batch, &admitted);
                let carried = self.carry(next, &watch).await;
                Some(carried.map(|mut applied| {
                    applied.timings_ms.insert("gate", gate_ms);
                    applied
                }))
            }
        };
        self.record_batch(batch, admitted, carried.as_ref(), note, started)
    }

    /// Step 1 for a batch: admits each request on the state the previous ones left. The
    /// state they lead to is `Some` when at least one of them changes something.
    async fn admit_batch(&self, batch: &[Queued]) -> (Option<State>, Admissions) {
        let mut next: Option<State> = None;
        let mut admitted = Vec::with_capacity(batch.len());
        for q in batch {
            let base = next.as_ref().unwrap_or(&self.state);
            let result = self
                .admit(base, &q.request, q.force, q.terms.if_generation)
                .await;
            if let Ok(a) = &result {
                if !a.change.is_empty() {
                    next = Some(a.next.clone());
                }
            }
            admitted.push(result);
        }
        (next, admitted)
    }

    /// Steps 2 to 6: carries the admitted state `next` to the files, the proxy and the
    /// store, with the drains around it, and starts the post-switch watch of the services
    /// in `watch`. On error, files, proxy, drains and state are as before.
    async fn carry(&mut self, next: State, watch: &[String]) -> Result<Applied, ApplyError> {
        let config = self.config.clone();
        let prepared = match self.prepare(&config, &next).await {
            Ok(prepared) => prepared,
            Err(e) => return Err(self.failed(e)),
        };
        let prev = self.state.clone();
        let t = Instant::now();
        let undrained = drains_kept(&prev, &next);
        self.sync_drains(Some(&prev), &undrained)
            .await
            .map_err(|e| self.failed(e))?;
        let undrain_ms = ms(t);
        let change = Change {
            generation: next.generation,
            services: crate::state::diff(&prev, &next),
        };
        let mut applied = match self.commit(prepared, next, change).await {
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
        let moved: Vec<String> = applied
            .change
            .services
            .iter()
            .filter(|c| c.live_moved() && watch.contains(&c.service))
            .map(|c| c.service.clone())
            .collect();
        for service in moved {
            self.start_watch(&service).await;
        }
        Ok(applied)
    }

    /// Steps 4 and 5: carries planned files to the proxy, then persists `next`; when the
    /// state cannot be saved, the proxy and the files are brought back to the current
    /// state.
    pub(super) async fn commit(
        &mut self,
        prepared: Prepared<'_>,
        next: State,
        change: Change,
    ) -> Result<Applied, ApplyError> {
        let mut applied = match self.transition(prepared, next.generation).await {
            Ok(applied) => applied,
            Err(e) => return Err(self.failed(e)),
        };
        let t = Instant::now();
        if let Err(e) = self.store.commit(&next) {
            let err = ApplyError::caused(Step::Persist, ErrorKind::Io, e);
            let current = self.state.clone();
            self.metrics.rollback(RollbackReason::PersistFailed);
            if let Err(undo) = self.carry_files(&current).await {
                tracing::error!(error = %undo, "cannot undo a change whose state could not be saved");
            }
            return Err(self.failed(err));
        }
        applied.timings_ms.insert("persist", ms(t));
        self.state = next;
        self.change_error = None;
        self.metrics.state(&self.state);
        applied.change = change;
        Ok(applied)
    }

    /// Steps 2 and 4 without a request: brings the files and the proxy to what `state`
    /// renders (undoing a change, repairing drift). The state itself is not saved.
    pub(super) async fn carry_files(&mut self, state: &State) -> Result<Applied, ApplyError> {
        let config = self.config.clone();
        let prepared = self.prepare(&config, state).await?;
        self.transition(prepared, state.generation).await
    }

    /// Remembers the error of a change that failed, for `status`.
    pub(super) fn failed(&mut self, e: ApplyError) -> ApplyError {
        self.change_error = Some(e.to_string());
        e
    }
}

/// The services whose post-switch watch starts after a batch: those whose live colour an
/// admitted request moved, unless the last request that moved it was a rollback.
fn services_to_watch(batch: &[Queued], admitted: &Admissions) -> Vec<String> {
    let mut by_rollback: BTreeMap<&str, bool> = BTreeMap::new();
    for (q, a) in batch.iter().zip(admitted) {
        let Ok(a) = a else { continue };
        for c in a.change.services.iter().filter(|c| c.live_moved()) {
            by_rollback.insert(&c.service, q.request.is_rollback());
        }
    }
    by_rollback
        .into_iter()
        .filter(|(_, rollback)| !rollback)
        .map(|(service, _)| service.to_owned())
        .collect()
}
