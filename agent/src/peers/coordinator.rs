//! The coordinator of a cluster change, and the loop that reports this node's state to its
//! peers. Both run as tasks of their own: the engine task goes on serving (its own peers'
//! prepares included) while they wait on the network. This node takes part in its own
//! cluster change like any peer, through the engine channel instead of TLS. A node
//! coordinates one cluster change at a time ([`Coordinating`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use super::{PeerReport, PeerSpec};
use crate::client::ClientError;
use crate::control::Envelope;
use crate::protocol::Mutation;
use crate::protocol::{ClusterOutcome, Command, HostOutcome, Reply, Status};
use crate::requester::{Reason, Requester};
use crate::store::now_ms;

/// What a coordinator needs.
#[derive(Clone)]
pub struct Coordinator {
    /// This node's name.
    pub node: String,
    /// The other hosts of the cluster.
    pub peers: Vec<PeerSpec>,
    /// The TLS client configuration for the peers.
    pub client: Arc<rustls::ClientConfig>,
    /// Time each peer has to answer each phase.
    pub timeout: Duration,
    /// Fault injection for tests: pause between "all prepared" and the commit decision.
    pub hold_before_decision: Duration,
    /// The local engine.
    pub local: mpsc::Sender<Envelope>,
    /// The cluster change this node coordinates now; shared with every coordinator.
    pub coordinating: Coordinating,
}

/// The cluster change this node coordinates now, if any. A node coordinates one at a
/// time, so a newer change from a coordinator proves its older ones finished or died with
/// the process that ran them: a participant may drop them (see `docs/CLUSTER.md`).
#[derive(Debug, Clone, Default)]
pub struct Coordinating(Arc<Mutex<Option<String>>>);

impl Coordinating {
    /// Marks `txn` as the change this node coordinates until the returned guard drops;
    /// the change already under way when there is one.
    fn begin(&self, txn: &str) -> Result<Running, String> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(other) = slot.as_ref() {
            return Err(other.clone());
        }
        *slot = Some(txn.to_owned());
        Ok(Running(self.clone()))
    }

    /// Whether this node coordinates `txn` now.
    pub fn is(&self, txn: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_deref()
            == Some(txn)
    }
}

/// Clears [`Coordinating`] when a coordinator's run ends, however it ends.
struct Running(Coordinating);

impl Drop for Running {
    fn drop(&mut self) {
        *self.0 .0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// Why a participant did not take a phase.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// This node's engine task is stopping.
    #[error("the local engine is stopping")]
    Stopping,
    /// This node's engine task dropped the request unanswered.
    #[error("the local engine dropped the request")]
    Dropped,
    /// The peer could not be reached, or did not answer in time.
    #[error(transparent)]
    Unreachable(ClientError),
    /// The participant answered with an error: its message.
    #[error("{0}")]
    Answered(String),
}

/// One participant's answer to one phase.
type Outcome = Result<Value, Refusal>;

impl Coordinator {
    /// Sends `command` to one participant (this node or a peer).
    async fn send(&self, host: &str, command: Command) -> Outcome {
        let reply = if host == self.node {
            let (tx, rx) = oneshot::channel();
            let env = Envelope {
                command,
                requester: Requester::Agent(Reason::Coordinator),
                reply: tx,
            };
            if self.local.send(env).await.is_err() {
                return Err(Refusal::Stopping);
            }
            rx.await.map_err(|_| Refusal::Dropped)?
        } else {
            let peer = self
                .peers
                .iter()
                .find(|p| p.name == host)
                .expect("known peer");
            crate::client::tls(
                &self.client,
                &peer.name,
                &peer.address,
                &command,
                self.timeout,
            )
            .await
            .map_err(Refusal::Unreachable)?
        };
        match reply.status {
            Status::Ok => Ok(reply.data),
            _ => Err(Refusal::Answered(reply.message)),
        }
    }

    fn hosts(&self) -> Vec<String> {
        std::iter::once(self.node.clone())
            .chain(self.peers.iter().map(|p| p.name.clone()))
            .collect()
    }

    /// Sends a command built per host to every host at once.
    async fn phase(
        &self,
        hosts: &[String],
        make: impl Fn() -> Command,
    ) -> BTreeMap<String, Outcome> {
        let sends = hosts.iter().map(|h| {
            let command = make();
            async move { (h.clone(), self.send(h, command).await) }
        });
        futures_util::future::join_all(sends)
            .await
            .into_iter()
            .collect()
    }

    /// Drops `txn` on the hosts that may hold it after `last`, the outcome of the last
    /// phase. A host that answered the phase holds the change and is alive: its abort is
    /// awaited (so a retry after the reply finds nothing held there). A host that did not
    /// answer in time is not waited on again: its abort goes out in a task of its own,
    /// bounded by the peer timeout. A host that refused holds nothing of `txn`.
    async fn abort(&self, txn: &str, last: &BTreeMap<String, Outcome>) {
        let mut answered = Vec::new();
        let mut silent = Vec::new();
        for (host, outcome) in last {
            match outcome {
                Ok(_) => answered.push(host.clone()),
                Err(Refusal::Answered(_)) => {}
                Err(_) => silent.push(host.clone()),
            }
        }
        let drop_txn = Command::AbortTxn {
            txn: txn.to_owned(),
        };
        if !silent.is_empty() {
            let (me, command) = (self.clone(), drop_txn.clone());
            tokio::spawn(async move {
                let aborts = me.phase(&silent, || command.clone());
                let _ = tokio::time::timeout(me.timeout, aborts).await;
            });
        }
        let _ = self.phase(&answered, || drop_txn.clone()).await;
    }

    /// Runs one cluster change: prepare everywhere, commit everywhere only when every host
    /// prepared (and still holds it), abort everywhere otherwise. Refused at once while
    /// this node coordinates another one. Every host's prepare carries the change's terms
    /// (its cluster generation is checked against `if_generation` there) and `asked_by`,
    /// which each host journals when it commits.
    pub async fn run(self, change: &Mutation, asked_by: Requester) -> Reply {
        let (request, force, dry_run) = (&change.request, change.force, change.dry_run);
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let txn = format!(
            "{}-{}-{}",
            self.node,
            now_ms(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let _running = match self.coordinating.begin(&txn) {
            Ok(running) => running,
            Err(other) => {
                let why = format!(
                    "{} coordinates cluster change {other}; try again",
                    self.node
                );
                let hosts = BTreeMap::from([(self.node.clone(), Err(Refusal::Answered(why)))]);
                return Reply::error(
                    format!(
                        "cluster change refused, nothing changed anywhere: {}",
                        refusals(&hosts).join("; ")
                    ),
                    outcome(ClusterOutcome {
                        txn,
                        phase: "prepare".into(),
                        cluster_generation: None,
                        hosts: show(&hosts),
                        missed: None,
                    }),
                );
            }
        };
        let hosts = self.hosts();
        let prepared = self
            .phase(&hosts, || Command::Prepare {
                txn: txn.clone(),
                request: request.clone(),
                force,
                coordinator: self.node.clone(),
                terms: change.terms.clone(),
                asked_by: Some(asked_by.clone()),
            })
            .await;
        let refused = refusals(&prepared);
        if !refused.is_empty() || dry_run {
            self.abort(&txn, &prepared).await;
            let data = outcome(ClusterOutcome {
                txn: txn.clone(),
                phase: "prepare".into(),
                cluster_generation: None,
                hosts: show(&prepared),
                missed: None,
            });
            return if refused.is_empty() {
                Reply::ok(
                    format!(
                        "dry run: all {} hosts prepared; nothing changed",
                        hosts.len()
                    ),
                    data,
                )
            } else {
                Reply::error(
                    format!(
                        "cluster change refused, nothing changed anywhere: {}",
                        refused.join("; ")
                    ),
                    data,
                )
            };
        }
        if !self.hold_before_decision.is_zero() {
            tokio::time::sleep(self.hold_before_decision).await;
        }
        // The decision: every host must still hold the prepared change.
        let ready = self
            .phase(&hosts, || Command::Ready { txn: txn.clone() })
            .await;
        let lost = refusals(&ready);
        if !lost.is_empty() {
            self.abort(&txn, &ready).await;
            return Reply::error(
                format!(
                    "cluster change aborted before commit, nothing changed anywhere: {}",
                    lost.join("; ")
                ),
                outcome(ClusterOutcome {
                    txn: txn.clone(),
                    phase: "ready".into(),
                    cluster_generation: None,
                    hosts: show(&ready),
                    missed: None,
                }),
            );
        }
        let generation = prepared
            .values()
            .filter_map(|o| o.as_ref().ok())
            .filter_map(|d| d["cluster_generation"].as_u64())
            .max()
            .unwrap_or(0)
            + 1;
        let committed = self
            .phase(&hosts, || Command::Commit {
                txn: txn.clone(),
                cluster_generation: generation,
            })
            .await;
        let missed: Vec<String> = committed
            .iter()
            .filter(|(_, o)| o.is_err())
            .map(|(h, _)| h.clone())
            .collect();
        let data = outcome(ClusterOutcome {
            txn: txn.clone(),
            phase: "commit".into(),
            cluster_generation: Some(generation),
            hosts: show(&committed),
            missed: Some(missed.clone()),
        });
        if missed.is_empty() {
            Reply::ok(
                format!(
                    "cluster generation {generation} committed on all {} hosts",
                    hosts.len()
                ),
                data,
            )
        } else {
            Reply::ok(
                format!(
                    "cluster generation {generation} committed; {} missed the commit and \
                     converge to it when they report again",
                    missed.join(", ")
                ),
                data,
            )
        }
    }
}

/// `host: why` for each host that did not take a phase.
fn refusals(outcomes: &BTreeMap<String, Outcome>) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|(h, o)| o.as_ref().err().map(|e| format!("{h}: {e}")))
        .collect()
}

/// The reply data of a cluster change.
fn outcome(o: ClusterOutcome) -> Value {
    serde_json::to_value(o).expect("cluster outcome serializes")
}

/// Each host's answer, for the reply.
fn show(outcomes: &BTreeMap<String, Outcome>) -> BTreeMap<String, HostOutcome> {
    outcomes
        .iter()
        .map(|(h, o)| {
            let outcome = match o {
                Ok(d) => HostOutcome {
                    ok: true,
                    data: Some(d.clone()),
                    error: None,
                },
                Err(e) => HostOutcome {
                    ok: false,
                    data: None,
                    error: Some(e.to_string()),
                },
            };
            (h.clone(), outcome)
        })
        .collect()
}

/// Tells `peer` to drop `txn`, a change this node coordinated and coordinates no more (it
/// ended, or this agent restarted since), in a task of its own bounded by `timeout`.
pub fn release(peer: PeerSpec, client: Arc<rustls::ClientConfig>, txn: String, timeout: Duration) {
    tokio::spawn(async move {
        let command = Command::AbortTxn { txn: txn.clone() };
        match crate::client::tls(&client, &peer.name, &peer.address, &command, timeout).await {
            Ok(_) => tracing::info!(peer = %peer.name, "released cluster change {txn} it held"),
            Err(e) => tracing::debug!(peer = %peer.name, "cannot release {txn}: {e}"),
        }
    });
}

/// Sends this node's report to every peer after every change and every `interval`, until
/// `reports` closes. Each peer has a loop of its own, so a peer that does not answer
/// delays only its own reports.
pub async fn report_loop(
    peers: Vec<PeerSpec>,
    client: Arc<rustls::ClientConfig>,
    timeout: Duration,
    interval: Duration,
    reports: watch::Receiver<Option<PeerReport>>,
) {
    let loops = peers
        .into_iter()
        .map(|p| report_to(p, client.clone(), timeout, interval, reports.clone()));
    futures_util::future::join_all(loops).await;
}

/// Sends this node's report to `peer` after every change and every `interval`, until
/// `reports` closes.
async fn report_to(
    peer: PeerSpec,
    client: Arc<rustls::ClientConfig>,
    timeout: Duration,
    interval: Duration,
    mut reports: watch::Receiver<Option<PeerReport>>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = reports.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
        let Some(report) = reports.borrow_and_update().clone() else {
            continue;
        };
        let command = Command::Report {
            report: Box::new(report),
        };
        if let Err(e) =
            crate::client::tls(&client, &peer.name, &peer.address, &command, timeout).await
        {
            tracing::debug!(peer = %peer.name, "report not delivered: {e}");
        }
    }
}
