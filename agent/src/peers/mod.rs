//! Peers: the cutover agents on the other proxy hosts. This module owns what a node knows
//! of them (their last reports), the participant side of a cluster change (prepare, ready,
//! commit, abort), and convergence: a node that missed a cluster commit adopts the routing
//! of the highest cluster generation it hears of. See `docs/CLUSTER.md` for the exact
//! semantics and their limits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{ClusterConfig, PeerSpec};
use crate::engine::{ApplyError, Engine, ErrorKind};
use crate::protocol::Step;
use crate::protocol::{Desired, Request};
use crate::proxy::Proxy;
use crate::requester::{Reason, Requester};

use crate::protocol::peer::digest;
use crate::protocol::PeerReport;
use crate::protocol::{ClusterStatus, HostRow, ServiceAgreement};

pub mod coordinator;
pub mod server;
pub mod tls;

/// A change this node prepared for a coordinator and holds until commit or abort.
#[derive(Debug, Clone)]
struct Prepared {
    txn: String,
    request: Request,
    force: bool,
    coordinator: String,
    expires: Instant,
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
        })
    }

    /// This node's report.
    pub fn report<P: Proxy>(&self, engine: &Engine<P>) -> PeerReport {
        engine.report(&self.config.node)
    }

    /// Prepares `request` for `coordinator`: plans it (state, render, validation, gates)
    /// and holds it. One prepared change at a time; a lapsed one is dropped.
    pub async fn prepare<P: Proxy>(
        &mut self,
        engine: &Engine<P>,
        txn: &str,
        request: &Request,
        force: bool,
        coordinator: &str,
    ) -> Result<serde_json::Value, ApplyError> {
        if let Some(p) = &self.prepared {
            if p.txn != txn && p.expires > Instant::now() {
                return Err(ApplyError::new(
                    Step::Request,
                    ErrorKind::Cluster,
                    format!(
                        "{} holds cluster change {} of {}; try again",
                        self.config.node, p.txn, p.coordinator
                    ),
                ));
            }
        }
        let plan = engine.plan(request, force).await?;
        self.prepared = Some(Prepared {
            txn: txn.to_owned(),
            request: request.clone(),
            force,
            coordinator: coordinator.to_owned(),
            expires: Instant::now() + self.config.prepare_ttl,
        });
        Ok(serde_json::json!({
            "node": self.config.node,
            "cluster_generation": engine.state().cluster_generation,
            "plan": plan,
        }))
    }

    /// Whether `txn` is still prepared here.
    pub fn ready(&self, txn: &str) -> Result<(), ApplyError> {
        match &self.prepared {
            Some(p) if p.txn == txn && p.expires > Instant::now() => Ok(()),
            _ => Err(ApplyError::new(
                Step::Request,
                ErrorKind::Cluster,
                format!("{} holds no prepared change {txn}", self.config.node),
            )),
        }
    }

    /// Drops the prepared change `txn`, if it is the one held.
    pub fn abort(&mut self, txn: &str) {
        if self.prepared.as_ref().is_some_and(|p| p.txn == txn) {
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
        let p = self.prepared.take().expect("ready");
        if !self.config.hold_before_commit.is_zero() {
            tokio::time::sleep(self.config.hold_before_commit).await;
        }
        let who = Requester::Agent(Reason::ClusterCommit {
            coordinator: p.coordinator.clone(),
        });
        let applied = engine.apply(&p.request, &who, p.force).await?;
        engine.mark_cluster(cluster_generation).await?;
        Ok(applied)
    }

    /// Takes a peer's report; when it carries a higher cluster generation (or the same one
    /// with a different routing and a smaller digest: the deterministic tie-break), adopts
    /// its cluster routing. Returns what was adopted.
    pub async fn receive<P: Proxy>(
        &mut self,
        engine: &mut Engine<P>,
        report: PeerReport,
    ) -> Option<String> {
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
        Command::Prepare {
            txn,
            request,
            force,
            coordinator,
        } => match node
            .prepare(engine, &txn, &request, force, &coordinator)
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
