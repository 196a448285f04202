//! The agent's side of the fleet store, a task of its own that talks to the engine task
//! through [`Call`]s:
//!
//! 1. connect, read the fleet's records and serve them (a host that was down catches up
//!    before it reports itself live);
//! 2. put this host's record under its lease (membership is the set of live leases);
//! 3. watch the prefix (one watch, with progress notifications so a quiet prefix on a
//!    shared etcd does not fall behind): a new generation is read whole and served, a new
//!    proposal is voted on, this host's record is rewritten whenever what it serves moves;
//! 4. every `check_interval`, read the records again and serve a generation the watch
//!    missed (counted as a repair);
//! 5. a watch cancelled by a compaction is answered by a full re-read; etcd unreachable or
//!    the lease lost ends the session: the proxy keeps serving, the status says degraded,
//!    and a new session starts after a backoff.
//!
//! Records that are not what cutover writes (garbage, a colour that does not exist, rules
//! broken) are refused whole: nothing is applied, the error shows in status and the
//! journal.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
    WatchStream,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::etcd::{
    connect, etcd_error, parse, read_desired, to_json, Desired, FleetError, Key, Keys,
};
use super::host::{Call, Origin};
use super::lease::Lease;
use crate::config::FleetConfig;
use crate::metrics::Metrics;
use crate::protocol::{FleetHealth, PeerReport, Proposal};

/// First wait before a new session, after one failed.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between sessions.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A session that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(10);

/// The fleet task of one agent.
pub struct Follower {
    /// `[cluster]` with `store = "etcd"`.
    pub config: FleetConfig,
    /// The engine task.
    pub calls: mpsc::Sender<Call>,
    /// This host's report, published by the engine task after every change.
    pub reports: watch::Receiver<Option<PeerReport>>,
    /// Where the task says how it fares, for `status`.
    pub health: watch::Sender<FleetHealth>,
    /// `cutover_store_up` and `cutover_fleet_generation`.
    pub metrics: Metrics,
}

/// Why a session ended.
enum End {
    /// The engine task stopped: the agent is stopping.
    Stopping,
    /// The store failed; a new session follows.
    Failed(FleetError),
}

impl From<FleetError> for End {
    fn from(e: FleetError) -> End {
        End::Failed(e)
    }
}

impl Follower {
    /// Runs sessions until the agent stops.
    pub async fn run(self) {
        let mut backoff = MIN_BACKOFF;
        // Hosts start on different members, and move to the next one when a session fails.
        let mut endpoint = self.config.node.bytes().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        loop {
            let started = Instant::now();
            match self.session(&mut endpoint).await {
                End::Stopping => return,
                End::Failed(e) => {
                    tracing::warn!("fleet store: {e}; retrying in {} ms", backoff.as_millis());
                    self.update(|h| {
                        h.up = false;
                        h.error = Some(e.to_string());
                    });
                }
            }
            if started.elapsed() > STABLE {
                backoff = MIN_BACKOFF;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn update(&self, change: impl FnOnce(&mut FleetHealth)) {
        self.health.send_modify(change);
        let h = self.health.borrow();
        self.metrics.fleet(h.up, h.applied_generation);
    }

    /// One connection's life: catch up, go live, follow. `endpoint` is where it starts
    /// looking for a member that answers; a session that fails leaves it at the next one.
    async fn session(&self, endpoint: &mut usize) -> End {
        let etcd = &self.config.etcd;
        let keys = Keys::new(&etcd.prefix);
        let mut client = match connect(etcd, *endpoint).await {
            Ok((c, used)) => {
                *endpoint = used + 1;
                c
            }
            Err(e) => return e.into(),
        };
        let revision = match self.catch_up(&mut client, &keys, false).await {
            Ok(r) => r,
            Err(end) => return end,
        };
        let mut lease = match Lease::grant(&client, etcd).await {
            Ok(l) => l,
            Err(e) => return e.into(),
        };
        let mut reports = self.reports.clone();
        let current = reports.borrow_and_update().clone();
        if let Err(e) = self.put_report(&mut client, &keys, lease.id, current).await {
            return e.into();
        }
        self.update(|h| {
            h.up = true;
            h.error = None;
        });
        tracing::info!(node = %self.config.node, prefix = %etcd.prefix, "fleet store: live");
        let end = self
            .follow(&mut client, &keys, &mut lease, &mut reports, revision)
            .await;
        if matches!(end, End::Stopping) {
            lease.revoke().await;
        }
        end
    }

    /// Reads the fleet's records and serves them. Returns the revision read. Records that
    /// are refused leave the proxy serving what it serves (the session goes on).
    async fn catch_up(&self, client: &mut Client, keys: &Keys, check: bool) -> Result<i64, End> {
        let desired = match read_desired(client, &self.config.etcd, keys).await {
            Ok(d) => d,
            Err(e @ FleetError::BadRecord { .. }) => {
                self.refuse(e.to_string());
                return Ok(0);
            }
            Err(e) => return Err(e.into()),
        };
        let revision = desired.revision;
        self.serve(desired, check).await?;
        Ok(revision)
    }

    /// Hands the records to the engine task and notes what it did.
    async fn serve(&self, desired: Desired, check: bool) -> Result<(), End> {
        let generation = desired.generation();
        let origin = Origin::of(desired.last.as_ref().map(|(c, _)| c));
        let (reply, answer) = oneshot::channel();
        let call = Call::Apply {
            generation,
            origin,
            services: desired.services,
            reply,
        };
        if self.calls.send(call).await.is_err() {
            return Err(End::Stopping);
        }
        let result = answer.await.map_err(|_| End::Stopping)?;
        let revision = desired.revision;
        match result {
            Ok(changed) => self.update(|h| {
                h.applied_generation = generation;
                h.revision = revision;
                h.error = None;
                if changed && check {
                    h.repairs += 1;
                    tracing::warn!("fleet store: the check found generation {generation} unapplied; applied it");
                }
            }),
            Err(e) => {
                tracing::warn!("fleet store: cannot serve generation {generation}: {e}");
                self.update(|h| {
                    h.revision = revision;
                    h.error = Some(format!("generation {generation}: {e}"));
                });
            }
        }
        Ok(())
    }

    /// Notes records refused: status, log, and the journal (once per distinct error).
    fn refuse(&self, error: String) {
        let first = self.health.borrow().error.as_deref() != Some(error.as_str());
        if first {
            tracing::error!("fleet store: {error}; nothing applied");
            let _ = self.calls.try_send(Call::Refused {
                message: format!("{error}; nothing applied"),
            });
        }
        self.update(|h| h.error = Some(error));
    }

    async fn put_report(
        &self,
        client: &mut Client,
        keys: &Keys,
        lease: i64,
        report: Option<PeerReport>,
    ) -> Result<(), FleetError> {
        let Some(report) = report else { return Ok(()) };
        let record = to_json(&report);
        client
            .put(
                keys.host(&self.config.node),
                record,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .map_err(etcd_error(&self.config.etcd))?;
        Ok(())
    }

    async fn watch(
        &self,
        client: &mut Client,
        keys: &Keys,
        revision: i64,
    ) -> Result<WatchStream, FleetError> {
        let mut options = WatchOptions::new().with_prefix().with_progress_notify();
        if revision > 0 {
            options = options.with_start_revision(revision + 1);
        }
        client
            .watch(keys.root(), Some(options))
            .await
            .map_err(etcd_error(&self.config.etcd))
    }

    /// Follows the prefix until the store fails or the agent stops.
    async fn follow(
        &self,
        client: &mut Client,
        keys: &Keys,
        lease: &mut Lease,
        reports: &mut watch::Receiver<Option<PeerReport>>,
        revision: i64,
    ) -> End {
        let etcd = &self.config.etcd;
        let mut stream = match self.watch(client, keys, revision).await {
            Ok(s) => s,
            Err(e) => return e.into(),
        };
        // Proposals made before this session's watch (while this host was away, or its
        // last session failed before it voted) are still waiting for its vote.
        if let Err(end) = self.vote_pending(client, keys, lease.id).await {
            return end;
        }
        let mut check = tokio::time::interval(etcd.check_interval);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.tick().await;
        loop {
            tokio::select! {
                _ = lease.lost() => return FleetError::LeaseLost(self.config.node.clone()).into(),
                changed = reports.changed() => {
                    if changed.is_err() {
                        return End::Stopping;
                    }
                    let report = reports.borrow_and_update().clone();
                    if let Err(e) = self.put_report(client, keys, lease.id, report).await {
                        return e.into();
                    }
                }
                _ = check.tick() => {
                    if let Err(end) = self.catch_up(client, keys, true).await {
                        return end;
                    }
                    // A quiet prefix on a busy etcd: ask where the watch stands.
                    if let Err(e) = stream.request_progress().await {
                        return FleetError::WatchEnded(e.to_string()).into();
                    }
                }
                message = stream.message() => {
                    let response = match message {
                        Ok(Some(r)) => r,
                        Ok(None) => return FleetError::WatchEnded("etcd closed the watch".into()).into(),
                        Err(e) => return etcd_error(etcd)(e).into(),
                    };
                    if response.canceled() {
                        let compacted = response.compact_revision();
                        if compacted == 0 {
                            let why = response.cancel_reason().to_owned();
                            return FleetError::WatchEnded(format!("cancelled by etcd: {why}")).into();
                        }
                        tracing::warn!("fleet store: the watch fell behind compaction at revision {compacted}; reading everything again");
                        self.update(|h| h.resyncs += 1);
                        let revision = match self.catch_up(client, keys, false).await {
                            Ok(r) => r,
                            Err(end) => return end,
                        };
                        stream = match self.watch(client, keys, revision).await {
                            Ok(s) => s,
                            Err(e) => return e.into(),
                        };
                        continue;
                    }
                    let mut dirty = false;
                    for event in response.events() {
                        let Some(kv) = event.kv() else { continue };
                        let put = event.event_type() == EventType::Put;
                        match keys.classify(kv.key()) {
                            Key::Generation | Key::Service(_) => dirty = true,
                            Key::Proposal(id) if !put => {
                                // The proposal expired with its proposer: drop the vote.
                                let _ = client.delete(keys.vote(&id, &self.config.node), None).await;
                            }
                            Key::Proposal(_) => {
                                match parse::<Proposal>(kv.key(), kv.value()) {
                                    Ok(p) => {
                                        if let Err(end) = self.vote(client, keys, lease.id, p).await {
                                            return end;
                                        }
                                    }
                                    Err(e) => self.refuse(e.to_string()),
                                }
                            }
                            Key::Other => tracing::debug!(
                                "fleet store: ignoring {}, not a key of cutover's",
                                String::from_utf8_lossy(kv.key())
                            ),
                            _ => {}
                        }
                    }
                    if dirty {
                        if let Err(end) = self.catch_up(client, keys, false).await {
                            return end;
                        }
                    }
                }
            }
        }
    }

    /// Votes on every proposal stored now.
    async fn vote_pending(&self, client: &mut Client, keys: &Keys, lease: i64) -> Result<(), End> {
        let options = GetOptions::new()
            .with_prefix()
            .with_limit(super::etcd::MAX_RECORDS);
        let response = client
            .get(keys.proposals(), Some(options))
            .await
            .map_err(|e| End::Failed(etcd_error(&self.config.etcd)(e)))?;
        for kv in response.kvs() {
            match parse::<Proposal>(kv.key(), kv.value()) {
                Ok(p) => self.vote(client, keys, lease, p).await?,
                Err(e) => self.refuse(e.to_string()),
            }
        }
        Ok(())
    }

    /// Votes on `proposal` through the engine task and puts the vote under this host's
    /// lease.
    async fn vote(
        &self,
        client: &mut Client,
        keys: &Keys,
        lease: i64,
        proposal: Proposal,
    ) -> Result<(), End> {
        let id = proposal.id.clone();
        let (reply, answer) = oneshot::channel();
        let call = Call::Vote {
            proposal: Box::new(proposal),
            reply,
        };
        if self.calls.send(call).await.is_err() {
            return Err(End::Stopping);
        }
        let vote = answer.await.map_err(|_| End::Stopping)?;
        let record = to_json(&vote);
        // Only while the proposal exists: its proposer deletes the proposal, then the
        // votes, so no vote outlives a decided proposal.
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                keys.proposal(&id),
                CompareOp::Greater,
                0,
            )])
            .and_then(vec![TxnOp::put(
                keys.vote(&id, &self.config.node),
                record,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        client
            .txn(txn)
            .await
            .map_err(|e| End::Failed(etcd_error(&self.config.etcd)(e)))?;
        Ok(())
    }
}
