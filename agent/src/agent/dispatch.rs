//! The agent's side of a request, whatever transport brought it (the control socket, the
//! peer listener, this agent's own cluster coordinator): [`Agent::authorize`] runs the access
//! check once, then [`Agent::dispatch`] routes the authorized request by what it asks
//! ([`Route`]): a local change to the engine's batch, a dry run to the engine's plan, a
//! read-only query to the engine, a cluster change to a coordinator task, a step of a
//! cluster change to the node. A coordinator hands its outcome back to the engine task
//! ([`Coordinated`]), which journals a cluster change that changed nothing before it answers.
//!
//! Changes are coalesced here, where they are serialized ([`Agent::receive`]): when a local
//! change (a switch, rollback, canary... that is not a dry run) comes up, the task first
//! lets the proxy's minimum reload gap pass (for a proxy that reloads on every change),
//! then takes every change queued behind it, and applies them all with one transition (one
//! reload) before answering each. Changes that arrive while a reload runs wait in the queue
//! and go into the next one. One task means never two reloads at once.

use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::reply;
use crate::access;
use crate::control::Envelope;
use crate::engine::{ApplyError, Engine, ErrorKind, Queued};
use crate::peers::coordinator::Coordinator;
use crate::peers::{self, Node};
use crate::protocol::Step;
use crate::protocol::{Command, Mutation, Reply, Request, Status};
use crate::proxy::Proxy;
use crate::requester::Requester;
use crate::store::HistoryFilter;

/// Most requests taken from the queue for one transition.
pub const MAX_BATCH: usize = 256;

/// The engine task's state: the engine, this node of a cluster (if configured), and the
/// task's own queue for the coordinators of cluster changes.
pub struct Agent<P: Proxy> {
    /// The engine; only this task touches it.
    pub engine: Engine<P>,
    /// This node of the cluster, when `[cluster]` lists peers.
    pub node: Option<Node>,
    /// The fleet store, when `[cluster] store = "etcd"`.
    pub fleet: Option<super::FleetLink>,
    /// The engine task's queue; `None` once the agent stops, when cluster requests are no
    /// longer served.
    pub local: Option<mpsc::Sender<Envelope>>,
    /// The engine task's queue of finished cluster changes this node coordinated; `None`
    /// once the agent stops.
    pub coordinated: Option<mpsc::Sender<Coordinated>>,
    /// The agent's config file, read again by `reload_config`.
    pub config_path: std::path::PathBuf,
    /// Whether connections look up the peers' groups (a new config may turn it on).
    pub groups: crate::control::GroupLookup,
}

/// A cluster change this node coordinated (not a dry run), finished: the engine task
/// journals it when it changed nothing (refused at prepare, aborted at ready), then answers
/// it ([`Agent::finish`]). A committed change is journaled by every host as it applies it.
#[derive(Debug)]
pub struct Coordinated {
    /// The change.
    pub request: Request,
    /// Who asked for it.
    pub requester: Requester,
    /// Why, as they said.
    pub reason: Option<crate::protocol::ReasonText>,
    /// The coordinator's answer.
    pub answer: Reply,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Reply>,
}

/// What an authorized request asks for, decided from its command alone.
#[derive(Debug)]
pub enum Route {
    /// A routing change to carry out now: batched with the changes queued behind it.
    Change(Mutation),
    /// A routing change to plan only (`--dry-run`).
    Plan(Mutation),
    /// A read-only query (`status`, `map_show`, `history`, `metrics`).
    Query(Command),
    /// Read the config file again and put it in force (`reload_config`).
    ReloadConfig,
    /// A change across the cluster (`cluster <verb>`; `None`: a verb that changes nothing).
    Cluster(Option<Mutation>),
    /// The cluster's view (`cluster_status`).
    ClusterStatus,
    /// The fleet's committed changes (`cluster history`).
    ClusterHistory {
        /// Only those of this service.
        service: Option<String>,
        /// Most entries.
        limit: usize,
    },
    /// A step of a cluster change (`report`, `prepare`, `ready`, `commit`, `abort_txn`),
    /// from the peer named (or, `None`, from this node's own coordinator).
    PeerVerb {
        /// The step.
        command: Command,
        /// The certificate name of the peer that sent it.
        peer: Option<String>,
    },
}

impl Route {
    /// Where `command` goes.
    pub fn of(command: Command) -> Route {
        match command {
            Command::Cluster { command } => match *command {
                Command::History { service, limit, .. } => Route::ClusterHistory { service, limit },
                command => Route::Cluster(command.mutation()),
            },
            Command::ClusterStatus => Route::ClusterStatus,
            Command::ReloadConfig => Route::ReloadConfig,
            command if command.is_peer_only() => Route::PeerVerb {
                command,
                peer: None,
            },
            command => match command.mutation() {
                Some(m) if m.dry_run => Route::Plan(m),
                Some(m) => Route::Change(m),
                None => Route::Query(command),
            },
        }
    }
}

/// A request that passed the access check.
#[derive(Debug)]
pub struct Authorized {
    /// What it asks.
    pub route: Route,
    /// Who asked.
    pub requester: Requester,
    /// Where its reply goes.
    pub reply: oneshot::Sender<Reply>,
}

/// A change on its way into a batch, and where its reply goes.
type Change = (Queued, oneshot::Sender<Reply>);

/// An authorized request sorted for batching.
enum Sorted {
    /// A change to carry out now.
    Change(Change),
    /// Anything else.
    Other(Authorized),
}

impl Authorized {
    /// The change to carry out now, or the request back when it is something else.
    fn sort(self) -> Sorted {
        match self.route {
            Route::Change(m) => Sorted::Change((Queued::of(m, self.requester), self.reply)),
            route => Sorted::Other(Authorized { route, ..self }),
        }
    }
}

impl<P: Proxy> Agent<P> {
    /// Takes `first` off the queue: authorizes it and, when it is a local change, gathers every
    /// change queued behind it into one transition (see the module doc). Other requests
    /// taken from the queue meanwhile are dispatched after the batch, in order.
    pub async fn receive(&mut self, first: Envelope, queue: &mut mpsc::Receiver<Envelope>) {
        let Some(first) = self.authorize(first) else {
            return;
        };
        let first = match first.sort() {
            Sorted::Change(change) => change,
            Sorted::Other(other) => return self.dispatch(other).await,
        };
        if !self.engine.proxy().has_runtime_maps() {
            // Bounded by the configured gap (at most a minute).
            tokio::time::sleep(self.engine.proxy().reload_wait()).await;
        }
        let mut changes = vec![first];
        let mut others = Vec::new();
        while changes.len() + others.len() < MAX_BATCH {
            let Ok(env) = queue.try_recv() else {
                break;
            };
            match self.authorize(env).map(Authorized::sort) {
                Some(Sorted::Change(change)) => changes.push(change),
                Some(Sorted::Other(other)) => others.push(other),
                None => {}
            }
        }
        self.apply(changes).await;
        for other in others {
            self.dispatch(other).await;
        }
    }

    /// The access check, once for every request: the allowlists of [`access::Policy`]
    /// (a refusal is journaled with who asked and answered), and for a step of a cluster
    /// change, that a peer or this node's coordinator sent it. `None` when refused.
    pub fn authorize(&self, env: Envelope) -> Option<Authorized> {
        let Envelope {
            command,
            requester,
            reply,
        } = env;
        let agent_uid = nix::unistd::geteuid().as_raw();
        let policy = &self.engine.config().agent.access;
        if let Err(denied) = policy.check(&requester, &command, agent_uid) {
            let _ = reply.send(self.refused(&command, &requester, denied));
            return None;
        }
        let mut route = Route::of(command);
        if let (Some(fleet), Route::Change(m) | Route::Plan(m)) = (&self.fleet, &route) {
            if !m.local {
                let _ = reply.send(fleet.not_local());
                return None;
            }
        }
        let serving_cluster = self.node.is_some() && self.local.is_some();
        if let (Route::PeerVerb { peer, .. }, true) = (&mut route, serving_cluster) {
            let listed = |name: &str| {
                self.node
                    .as_ref()
                    .is_some_and(|n| n.config.peers.iter().any(|p| p.name == name))
            };
            let refusal = match access::cluster_step_sender(&requester) {
                Ok(Some(name)) if !listed(name) => Some(format!(
                    "{name} is not a peer of this node: only the peers listed in [cluster] \
                     may send {}",
                    route_verb(&route)
                )),
                Ok(sender) => {
                    *peer = sender.map(str::to_owned);
                    None
                }
                Err(e) => Some(e.to_string()),
            };
            if let Some(message) = refusal {
                let _ = reply.send(Reply::error(message, serde_json::Value::Null));
                return None;
            }
        }
        Some(Authorized {
            route,
            requester,
            reply,
        })
    }

    /// Journals and answers a request the access check refused.
    fn refused(&self, command: &Command, requester: &Requester, denied: access::Denied) -> Reply {
        tracing::warn!("refused: {denied}");
        // Journaled like the requests the engine journals: `op` names the verb.
        let mut request = serde_json::to_value(command).expect("command serializes");
        if let Some(obj) = request.as_object_mut() {
            if let Some(verb) = obj.remove("cmd") {
                obj.insert("op".into(), verb);
            }
        }
        let change = match command {
            Command::Cluster { command } => command.mutation(),
            command => command.mutation(),
        };
        let reason = change.and_then(|m| m.terms.reason);
        self.engine.journal_refusal(
            request,
            requester,
            command.verb(),
            reason.as_ref(),
            Step::Access,
            denied.to_string(),
        );
        reply::failed(ApplyError::caused(Step::Access, ErrorKind::Denied, denied))
    }

    /// Routes one authorized request and answers it. Once the agent stops, cluster requests
    /// are no longer served (a coordinator started now could not finish).
    pub async fn dispatch(&mut self, authorized: Authorized) {
        let Authorized {
            route,
            requester,
            reply,
        } = authorized;
        let stopping = self.local.is_none();
        let answer = match route {
            Route::Change(m) => return self.apply(vec![(Queued::of(m, requester), reply)]).await,
            Route::Plan(m) => reply::plan(
                self.engine
                    .plan(&m.request, m.force, m.terms.if_generation)
                    .await,
            ),
            Route::Query(command) => self.query(command).await,
            Route::ReloadConfig => {
                tracing::info!("reload requested by {requester}");
                let verdict =
                    super::reload::reload_config(&mut self.engine, &self.config_path, &self.groups)
                        .await;
                match verdict {
                    Ok(summary) => Reply::ok(
                        format!("new config in force: {summary}"),
                        serde_json::Value::Null,
                    ),
                    Err(refusal) => Reply::error(
                        format!(
                            "new config refused, the old one stays in force: {}",
                            refusal.message
                        ),
                        serde_json::to_value(&refusal).expect("refusal serializes"),
                    ),
                }
            }
            Route::Cluster(_)
            | Route::ClusterStatus
            | Route::ClusterHistory { .. }
            | Route::PeerVerb { .. }
                if stopping =>
            {
                reply::not_served()
            }
            Route::Cluster(Some(m)) if self.fleet.is_some() => {
                if let Some(f) = &self.fleet {
                    f.propose(m, requester, reply);
                }
                return;
            }
            Route::ClusterStatus if self.fleet.is_some() => {
                if let Some(f) = &self.fleet {
                    f.status(reply);
                }
                return;
            }
            Route::ClusterHistory { service, limit } => match &self.fleet {
                Some(f) => return f.history(service, limit, reply),
                None => Reply::error(
                    "history --cluster reads the fleet store: this agent has no \
                     [cluster] store = \"etcd\""
                        .to_owned(),
                    serde_json::Value::Null,
                ),
            },
            Route::Cluster(change) => match (self.coordinator(), change) {
                (Some((coordinator, finished)), Some(m)) => {
                    tokio::spawn(async move {
                        let answer = coordinator.run(&m, requester.clone()).await;
                        // A dry run is journaled nowhere, as on one host.
                        if m.dry_run {
                            let _ = reply.send(answer);
                            return;
                        }
                        let done = Coordinated {
                            request: m.request,
                            requester,
                            reason: m.terms.reason,
                            answer,
                            reply,
                        };
                        // Once the engine task is gone, nobody journals: answer directly.
                        if let Err(mpsc::error::SendError(done)) = finished.send(done).await {
                            let _ = done.reply.send(done.answer);
                        }
                    });
                    return;
                }
                _ => reply::no_cluster(),
            },
            Route::ClusterStatus => match &self.node {
                Some(n) => Reply::ok(
                    format!("{} hosts", n.config.peers.len() + 1),
                    n.status(&self.engine),
                ),
                None => reply::no_cluster(),
            },
            Route::PeerVerb { command, peer } => match self.node.as_mut() {
                Some(n) => {
                    peers::handle_peer_command(n, &mut self.engine, command, peer.as_deref()).await
                }
                None => reply::no_cluster(),
            },
        };
        let _ = reply.send(answer);
    }

    /// Applies changes with one transition and answers each.
    async fn apply(&mut self, changes: Vec<Change>) {
        let (batch, replies): (Vec<Queued>, Vec<_>) = changes.into_iter().unzip();
        if batch.len() > 1 {
            tracing::info!("{} queued changes go into one transition", batch.len());
        }
        let results = self.engine.apply_batch(&batch).await;
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(reply::change(result));
        }
    }

    /// Answers a read-only query.
    async fn query(&self, command: Command) -> Reply {
        match command {
            Command::Status => {
                let mut snapshot = self.engine.snapshot().await;
                snapshot.fleet = self.fleet.as_ref().map(|f| f.health().borrow().clone());
                reply::status(&snapshot)
            }
            Command::MapShow { name, view } => match self.engine.map_show(&name, view).await {
                Ok(shown) => Reply::ok(
                    format!("map {name}"),
                    serde_json::to_value(shown).expect("map serializes"),
                ),
                Err(e) => reply::failed(e),
            },
            Command::History {
                service,
                limit,
                user,
                verb,
                since_ms,
                until_ms,
            } => {
                let filter = HistoryFilter {
                    service,
                    user,
                    verb,
                    since_ms,
                    until_ms,
                };
                match self.engine.history(&filter, limit) {
                    Ok(entries) => Reply::ok(
                        format!("{} entries", entries.len()),
                        json!({ "entries": entries }),
                    ),
                    Err(e) => reply::failed(e),
                }
            }
            Command::Metrics => reply::metrics(self.engine.metrics()),
            _ => reply::not_served(),
        }
    }

    /// Journals a cluster change this node coordinated that changed nothing anywhere, with
    /// who asked, the phase it ended in and every host's answer; then answers it.
    pub fn finish(&self, done: Coordinated) {
        let Coordinated {
            request,
            requester,
            reason,
            answer,
            reply,
        } = done;
        if answer.status == Status::Error {
            self.engine.journal_cluster(
                &request,
                &requester,
                reason.as_ref(),
                &answer.message,
                &answer.data,
            );
        }
        let _ = reply.send(answer);
    }

    /// A coordinator for a cluster change, and where it hands its outcome, while this node
    /// of a cluster serves.
    fn coordinator(&self) -> Option<(Coordinator, mpsc::Sender<Coordinated>)> {
        let node = self.node.as_ref()?;
        let (local, finished) = (self.local.clone()?, self.coordinated.clone()?);
        let c = &node.config;
        let coordinator = Coordinator {
            node: c.node.clone(),
            peers: c.peers.clone(),
            client: node.client.clone(),
            timeout: c.timeout,
            hold_before_decision: c.hold_before_decision,
            local,
            coordinating: node.coordinating.clone(),
        };
        Some((coordinator, finished))
    }
}

/// The verb of a peer step, for messages.
fn route_verb(route: &Route) -> &'static str {
    match route {
        Route::PeerVerb { command, .. } => command.verb(),
        _ => "this command",
    }
}
