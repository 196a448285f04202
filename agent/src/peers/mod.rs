//! Peers: the cutover agents on the other proxy hosts. This module owns what a node knows
//! of them (their last reports), the participant side of a cluster change (prepare, ready,
//! commit, abort), the release of changes a peer still holds for this node's coordinator
//! when it no longer coordinates them, and convergence: a node that missed a cluster
//! commit adopts the routing of the highest cluster generation it hears of. See
//! `docs/CLUSTER.md` for the exact semantics and their limits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{ClusterConfig, PeerSpec};
use crate::engine::{ApplyError, Engine, ErrorKind, Queued};
use crate::protocol::Step;
use crate::protocol::{Desired, Request, StaleGeneration, Terms};
use crate::proxy::Proxy;
use crate::requester::{Reason, Requester};

use crate::protocol::peer::digest;
use crate::protocol::{ClusterStatus, HeldChange, HostRow, ServiceAgreement};
use crate::protocol::{PeerReport, PreparedChange};
use crate::store::now_ms;
use coordinator::Coordinating;

pub mod coordinator;
pub mod server;
#[cfg(test)]
mod tests;
pub mod tls;

/// A change this node prepared for a coordinator and holds until commit or abort.
#[derive(Debug, Clone)]
struct Prepared {
    /// The change, as the coordinator sent it.
    change: ToPrepare,
    /// When it was prepared.
    since: Instant,
    /// The same, Unix time in milliseconds (for the report).
    since_ms: u64,
    expires: Instant,
}

impl Prepared {
    /// Whether it is still held (it has not lapsed).
    fn live(&self) -> bool {
        self.expires > Instant::now()
    }
}

/// A cluster change to prepare: the fields of a `prepare`.
#[derive(Debug, Clone)]
pub struct ToPrepare {
    /// The cluster change's id.
    pub txn: String,
    /// The change.
    pub request: Request,
    /// Skip the pre-switch gate.
    pub force: bool,
    /// The node that coordinates it.
    pub coordinator: String,
    /// Why, and the cluster generation it expects.
    pub terms: Terms,
    /// Who asked the coordinator.
    pub asked_by: Option<Requester>,
}

/// What this node knows of the cluster.
pub struct Node {
    /// `[cluster]`.
    pub config: ClusterConfig,
    /// The TLS client configuration for the peers.
    pub client: Arc<rustls::ClientConfig>,
    prepared: Option<Prepared>,
    /// Last report of each peer, and when it came.
    seen: BTreeMap<String, (PeerReport, Instant)>,
    /// The cluster change this node's coordinator runs now, if any.
    pub coordinating: Coordinating,
    /// Per peer, the last change of this node's coordinator it was told to drop, and when.
    released: BTreeMap<String, (String, Instant)>,
}

impl Node {
    /// This node, knowing nothing of its peers yet.
    pub fn new(config: ClusterConfig) -> Result<Node, tls::TlsError> {
        let client = tls::client_config(&config.tls)?;
        Ok(Node {
            config,
            client,
            prepared: None,
            seen: BTreeMap::new(),
            coordinating: Coordinating::default(),
            released: BTreeMap::new(),
        })
    }

    /// This node's report.
    pub fn report<P: Proxy>(&self, engine: &Engine<P>) -> PeerReport {
        PeerReport {
            held: self.held().map(|p| PreparedChange {
                txn: p.change.txn.clone(),
                coordinator: p.change.coordinator.clone(),
                since_ms: p.since_ms,
                expires_ms: p.since_ms + self.config.prepare_ttl.as_millis() as u64,
            }),
            ..engine.report(&self.config.node)
        }
    }

    /// The change this node holds prepared, unless it lapsed.
    fn held(&self) -> Option<&Prepared> {
        self.prepared.as_ref().filter(|p| p.live())
    }

    /// Prepares `change.request` for `change.coordinator`: checks the cluster generation
    /// against `if_generation`, plans it (state, render, validation, gates) and holds it
    /// with its reason and who asked. One prepared change at a time: another coordinator's
    /// is refused while it lasts; one of the same coordinator is dropped (and replaced,
    /// when this one plans), since a coordinator runs one change at a time and so has ended
    /// (or, restarted, forgotten) the one held here.
    pub async fn prepare<P: Proxy>(
        &mut self,
        engine: &Engine<P>,
        change: ToPrepare,
    ) -> Result<serde_json::Value, ApplyError> {
        let (txn, coordinator) = (change.txn.as_str(), change.coordinator.as_str());
        if let Some(p) = self.held().filter(|p| p.change.txn != txn) {
            let p = &p.change;
            if p.coordinator != coordinator {
                return Err(ApplyError::new(
                    Step::Request,
                    ErrorKind::Cluster,
                    format!(
                        "{} holds cluster change {} of {}; try again",
                        self.config.node, p.txn, p.coordinator
                    ),
                ));
            }
            tracing::info!(
                "{coordinator} coordinates {txn}: dropping its earlier cluster change {}",
                p.txn
            );
            self.prepared = None;
        }
        let cluster_generation = engine.state().cluster_generation;
        StaleGeneration::check(
            "cluster generation",
            change.terms.if_generation,
            cluster_generation,
        )
        .map_err(|e| ApplyError::caused(Step::Request, ErrorKind::Stale, e))?;
        let plan = engine.plan(&change.request, change.force, None).await?;
        let now = Instant::now();
        self.prepared = Some(Prepared {
            change,
            since: now,
            since_ms: now_ms(),
            expires: now + self.config.prepare_ttl,
        });
        Ok(serde_json::json!({
            "node": self.config.node,
            "cluster_generation": engine.state().cluster_generation,
            "plan": plan,
        }))
    }

    /// Whether `txn` is still prepared here.
    pub fn ready(&self, txn: &str) -> Result<(), ApplyError> {
        match self.held() {
            Some(p) if p.change.txn == txn => Ok(()),
            _ => Err(ApplyError::new(
                Step::Request,
                ErrorKind::Cluster,
                format!("{} holds no prepared change {txn}", self.config.node),
            )),
        }
    }

    /// Drops the prepared change `txn`, if it is the one held.
    pub fn abort(&mut self, txn: &str) {
        if self.prepared.as_ref().is_some_and(|p| p.change.txn == txn) {
            self.prepared = None;
        }
    }

    /// Applies the prepared change `txn` and marks the state with `cluster_generation`.
    pub async fn commit<P: Proxy>(
        &mut self,
        engine: &mut Engine<P>,
        txn: &str,
        cluster_generation: u64,
    ) -> Result<crate::engine::Applied, ApplyError> {
        self.ready(txn)?;
        let p = self.prepared.take().expect("ready").change;
        if !self.config.hold_before_commit.is_zero() {
            tokio::time::sleep(self.config.hold_before_commit).await;
        }
        let who = Requester::Agent(Reason::ClusterCommit {
            coordinator: p.coordinator.clone(),
        });
        let queued = Queued {
            terms: p.terms.reason_only(),
            asked_by: p.asked_by,
            ..Queued::new(p.request, who, p.force)
        };
        let applied = engine.apply_queued(queued).await?;
        engine.mark_cluster(cluster_generation).await?;
        Ok(applied)
    }

    /// Takes a peer's report; when it carries a higher cluster generation (or the same one
    /// with a different routing and a smaller digest: the deterministic tie-break), adopts
    /// its cluster routing. Returns what was adopted. A peer that holds a change of this
    /// node's coordinator that it no longer runs is told to drop it ([`Node::release`]).
    pub async fn receive<P: Proxy>(
        &mut self,
        engine: &mut Engine<P>,
        report: PeerReport,
    ) -> Option<String> {
        self.release(&report);
        let from = report.node.clone();
        let mine = engine.state();
        let (my_gen, my_digest) = (mine.cluster_generation, digest(&mine.cluster_routing));
        let newer = report.cluster_generation > my_gen
            || (report.cluster_generation == my_gen
                && report.cluster_generation > 0
                && report.cluster_digest != my_digest
                && report.cluster_digest < my_digest);
        let adopt = newer.then(|| (report.cluster_generation, report.cluster_routing.clone()));
        self.seen.insert(from.clone(), (report, Instant::now()));
        let (generation, routing) = adopt?;
        let services: BTreeMap<String, Desired> = routing
            .into_iter()
            .filter(|(name, _)| engine.state().services.contains_key(name))
            .collect();
        let who = Requester::Agent(Reason::Converge { from: from.clone() });
        let result = if services.is_empty() {
            Ok(())
        } else {
            engine
                .apply(&Request::Set { services }, &who, true)
                .await
                .map(|_| ())
        };
        match result.and(engine.mark_cluster(generation).await) {
            Ok(()) => Some(format!(
                "adopted cluster generation {generation} from {from}"
            )),
            Err(e) => {
                tracing::warn!("cannot converge to cluster generation {generation} of {from}: {e}");
                None
            }
        }
    }

    /// Tells the peer that sent `report` to drop the change it holds for this node's
    /// coordinator when this node does not coordinate it now: the change ended, or this
    /// agent restarted since and cannot commit it any more. Sound because a change is
    /// prepared only while its coordinator runs it, so a report cannot show one that has
    /// not started yet. Once per change and peer and peer timeout; in a task of its own.
    fn release(&mut self, report: &PeerReport) {
        let Some(held) = &report.held else {
            return;
        };
        let told = self
            .released
            .get(&report.node)
            .is_some_and(|(txn, at)| *txn == held.txn && at.elapsed() < self.config.timeout);
        if held.coordinator != self.config.node || self.coordinating.is(&held.txn) || told {
            return;
        }
        let Some(peer) = self.config.peers.iter().find(|p| p.name == report.node) else {
            return;
        };
        self.released
            .insert(report.node.clone(), (held.txn.clone(), Instant::now()));
        coordinator::release(
            peer.clone(),
            self.client.clone(),
            held.txn.clone(),
            self.config.timeout,
        );
    }

    /// Peers whose last report is fresh and shows the same routing as `mine`.
    pub fn agreeing(&self, mine: &PeerReport) -> usize {
        let stale_after = self.config.report_interval * 3;
        self.seen
            .values()
            .filter(|(r, at)| at.elapsed() < stale_after && r.digest == mine.digest)
            .count()
    }

    /// One row per host, this node first: reachability, generations, and per service
    /// whether every reachable host agrees.
    pub fn status<P: Proxy>(&self, engine: &Engine<P>) -> serde_json::Value {
        let me = self.report(engine);
        let stale_after = self.config.report_interval * 3;
        let mut rows = vec![HostRow::Seen {
            node: me.node.clone(),
            reachable: true,
            age_ms: 0,
            generation: me.generation,
            cluster_generation: me.cluster_generation,
            digest: me.digest.clone(),
            proxy_reachable: me.proxy_reachable,
            last_error: me.last_error.clone(),
            held: self.held().map(|p| HeldChange {
                txn: p.change.txn.clone(),
                coordinator: p.change.coordinator.clone(),
                age_ms: p.since.elapsed().as_millis() as u64,
                expires_in_ms: p
                    .expires
                    .saturating_duration_since(Instant::now())
                    .as_millis() as u64,
            }),
        }];
        let mut routings = vec![(me.node.clone(), me.services.clone())];
        for peer in &self.config.peers {
            match self.seen.get(&peer.name) {
                Some((r, at)) => {
                    let age = at.elapsed();
                    rows.push(HostRow::Seen {
                        node: peer.name.clone(),
                        reachable: age < stale_after,
                        age_ms: age.as_millis() as u64,
                        generation: r.generation,
                        cluster_generation: r.cluster_generation,
                        digest: r.digest.clone(),
                        proxy_reachable: r.proxy_reachable,
                        last_error: r.last_error.clone(),
                        held: held_by(r, age),
                    });
                    if age < stale_after {
                        routings.push((peer.name.clone(), r.services.clone()));
                    }
                }
                None => rows.push(HostRow::Unseen {
                    node: peer.name.clone(),
                    reachable: false,
                    age_ms: None,
                }),
            }
        }
        let mut services = BTreeMap::new();
        for name in me.services.keys() {
            let views: BTreeMap<String, String> = routings
                .iter()
                .map(|(node, r)| {
                    let v = r.get(name).map_or("-".into(), |d| match d.canary {
                        Some(c) => format!("{}+canary {} {}%", d.live, c.colour, c.percent),
                        None => d.live.to_string(),
                    });
                    (node.clone(), v)
                })
                .collect();
            let first = views.values().next().cloned().unwrap_or_default();
            let agree = views.values().all(|v| *v == first);
            services.insert(
                name.clone(),
                ServiceAgreement {
                    agree,
                    hosts: views,
                },
            );
        }
        let status = ClusterStatus {
            hosts: rows,
            services,
        };
        serde_json::to_value(status).expect("cluster status serializes")
    }
}

/// The change a peer's report says it holds, aged by `age`, the time since the report came;
/// none when it has lapsed since. The report's times are on the peer's clock, so only
/// their differences are used.
fn held_by(report: &PeerReport, age: std::time::Duration) -> Option<HeldChange> {
    let held = report.held.as_ref()?;
    let age_ms = age.as_millis() as u64;
    let expires_in_ms = held
        .expires_ms
        .saturating_sub(report.time_ms)
        .checked_sub(age_ms)
        .filter(|left| *left > 0)?;
    Some(HeldChange {
        txn: held.txn.clone(),
        coordinator: held.coordinator.clone(),
        age_ms: report.time_ms.saturating_sub(held.since_ms) + age_ms,
        expires_in_ms,
    })
}

/// Answers a command only peers send (`report`, `prepare`, `ready`, `commit`, `abort_txn`),
/// authorized by [`crate::access::cluster_step_sender`]: from the peer named by its
/// certificate, or (`None`) from this node's own coordinator.
pub async fn handle_peer_command<P: Proxy>(
    node: &mut Node,
    engine: &mut Engine<P>,
    command: crate::protocol::Command,
    peer: Option<&str>,
) -> crate::protocol::Reply {
    use crate::protocol::{Command, Reply};
    let failed = |e: ApplyError| Reply::error(e.to_string(), serde_json::json!({ "step": e.step }));
    match command {
        Command::Report { report } => {
            if peer != Some(report.node.as_str()) {
                return Reply::error(
                    format!(
                        "a report for {:?} must come with that node's certificate (came from {:?})",
                        report.node,
                        peer.unwrap_or("this node")
                    ),
                    serde_json::Value::Null,
                );
            }
            match node.receive(engine, *report).await {
                Some(adopted) => Reply::ok(adopted, serde_json::Value::Null),
                None => Reply::ok("noted", serde_json::Value::Null),
            }
        }
        Command::Prepare { coordinator, .. }
            if coordinator != peer.unwrap_or(node.config.node.as_str()) =>
        {
            Reply::error(
                format!(
                    "a prepare for coordinator {coordinator:?} must come with that node's \
                     certificate (came from {:?})",
                    peer.unwrap_or("this node")
                ),
                serde_json::Value::Null,
            )
        }
        Command::Prepare {
            txn,
            request,
            force,
            coordinator,
            terms,
            asked_by,
        } => match node
            .prepare(
                engine,
                ToPrepare {
                    txn: txn.clone(),
                    request,
                    force,
                    coordinator,
                    terms,
                    asked_by,
                },
            )
            .await
        {
            Ok(data) => Reply::ok(format!("{} prepared {txn}", node.config.node), data),
            Err(e) => failed(e),
        },
        Command::Ready { txn } => match node.ready(&txn) {
            Ok(()) => Reply::ok("ready", serde_json::Value::Null),
            Err(e) => failed(e),
        },
        Command::Commit {
            txn,
            cluster_generation,
        } => match node.commit(engine, &txn, cluster_generation).await {
            Ok(a) => Reply::ok(a.summary(), serde_json::to_value(&a).expect("serializes")),
            Err(e) => failed(e),
        },
        Command::AbortTxn { txn } => {
            node.abort(&txn);
            Reply::ok("aborted", serde_json::Value::Null)
        }
        other => Reply::error(
            format!("{} is not a step of a cluster change", other.verb()),
            serde_json::Value::Null,
        ),
    }
}
