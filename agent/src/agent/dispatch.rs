//! The agent's side of a request, whatever transport brought it (the control socket, the
//! peer listener, this agent's own cluster coordinator): [`Agent::authorize`] runs the access
//! check once, then [`Agent::dispatch`] routes the authorized request by what it asks
//! ([`Route`]): a local change to the engine's batch, a dry run to the engine's plan, a
//! read-only query to the engine, a cluster change to a coordinator task, a step of a
//! cluster change to the node.
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
use crate::engine::{ApplyError, Engine, Queued, Step};
use crate::peers::coordinator::Coordinator;
use crate::peers::{self, Node};
use crate::protocol::{Command, Mutation, Reply};
use crate::proxy::Proxy;
use crate::requester::Requester;

/// Most requests taken from the queue for one transition.
pub const MAX_BATCH: usize = 256;

/// The engine task's state: the engine, this node of a cluster (if configured), and the
/// task's own queue for the coordinators of cluster changes.
pub struct Agent<P: Proxy> {
    /// The engine; only this task touches it.
    pub engine: Engine<P>,
    /// This node of the cluster, when `[cluster]` is configured.
    pub node: Option<Node>,
    /// The engine task's queue; `None` once the agent stops, when cluster requests are no
    /// longer served.
    pub local: Option<mpsc::Sender<Envelope>>,
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
    /// A change across the cluster (`cluster <verb>`; `None`: a verb that changes nothing).
    Cluster(Option<Mutation>),
    /// The cluster's view (`cluster_status`).
    ClusterStatus,
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
            Command::Cluster { command } => Route::Cluster(command.mutation()),
            Command::ClusterStatus => Route::ClusterStatus,
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
            Route::Change(m) => {
                let queued = Queued {
                    request: m.request,
                    requester: self.requester,
                    force: m.force,
                };
                Sorted::Change((queued, self.reply))
            }
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
        let serving_cluster = self.node.is_some() && self.local.is_some();
        if let (Route::PeerVerb { peer, .. }, true) = (&mut route, serving_cluster) {
            match access::cluster_step_sender(&requester) {
                Ok(sender) => *peer = sender.map(str::to_owned),
                Err(e) => {
                    let _ = reply.send(Reply::error(e.to_string(), serde_json::Value::Null));
                    return None;
                }
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
        self.engine
            .journal_refusal(request, requester, Step::Access, denied.to_string());
        reply::failed(ApplyError::new(Step::Access, denied))
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
            Route::Change(m) => {
                let queued = Queued {
                    request: m.request,
                    requester,
                    force: m.force,
                };
                return self.apply(vec![(queued, reply)]).await;
            }
            Route::Plan(m) => reply::plan(self.engine.plan(&m.request, m.force).await),
            Route::Query(command) => self.query(command).await,
            Route::Cluster(_) | Route::ClusterStatus | Route::PeerVerb { .. } if stopping => {
                reply::not_served()
            }
            Route::Cluster(change) => match (self.coordinator(), change) {
                (Some(coordinator), Some(m)) => {
                    tokio::spawn(async move {
                        let answer = coordinator.run(m.request, m.force, m.dry_run).await;
                        let _ = reply.send(answer);
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
            Command::Status => reply::status(&self.engine.snapshot().await),
            Command::MapShow { name, view } => match self.engine.map_show(&name, view).await {
                Ok(data) => Reply::ok(format!("map {name}"), data),
                Err(e) => reply::failed(e),
            },
            Command::History { service, limit } => {
                match self.engine.history(service.as_deref(), limit) {
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

    /// A coordinator for a cluster change, while this node of a cluster serves.
    fn coordinator(&self) -> Option<Coordinator> {
        let (node, local) = (self.node.as_ref()?, self.local.clone()?);
        let c = &node.config;
        Some(Coordinator {
            node: c.node.clone(),
            peers: c.peers.clone(),
            client: node.client.clone(),
            timeout: c.timeout,
            hold_before_decision: c.hold_before_decision,
            local,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::protocol::Status;
    use crate::proxy::fake::FakeProxy;
    use crate::state::Colour;
    use crate::store::{Outcome, Store};
    use std::sync::Arc;

    /// A uid the access lists let change routing.
    const OPERATOR: u32 = 40_001;
    /// A uid they do not know.
    const STRANGER: u32 = 40_003;

    /// An agent over the in-memory proxy, with allowlists, and its queue.
    async fn agent(dir: &std::path::Path) -> (Agent<FakeProxy>, mpsc::Receiver<Envelope>) {
        let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/../templates");
        let text = format!(
            r#"
[agent]
state_dir = "{d}/state"
allow_uids = [{OPERATOR}]
[proxy]
kind = "haproxy"
admin_socket = "{d}/admin.sock"
master_socket = "{d}/master.sock"
config = "{d}/haproxy.cfg"
map_dir = "{d}/maps"
[templates]
dir = "{templates}"
[[services]]
name = "web"
routes = ["a.example"]
blue = {{ backend = "web_blue" }}
green = {{ backend = "web_green" }}
[[services]]
name = "api"
routes = ["api.example"]
blue = {{ backend = "api_blue" }}
green = {{ backend = "api_green" }}
"#,
            d = dir.display()
        );
        let config = Arc::new(Config::from_toml(&dir.join("cutover.toml"), &text).unwrap());
        let maps = dir.join("maps");
        std::fs::create_dir_all(&maps).unwrap();
        let mut proxy = FakeProxy::new(
            vec![maps.join("routes.map"), maps.join("services.map")],
            &["web_blue", "web_green", "api_blue", "api_green"],
        );
        proxy.syntax = config.proxy.kind.map_syntax();
        let store = Store::open(&config.agent.state_dir).unwrap();
        let mut engine = Engine::new(config, proxy.clone(), store).unwrap();
        engine.write_files().await.unwrap();
        proxy.reload(0).await.unwrap();
        let (tx, rx) = mpsc::channel(8);
        let agent = Agent {
            engine,
            node: None,
            local: Some(tx),
        };
        (agent, rx)
    }

    fn envelope(uid: u32, line: &str) -> (Envelope, oneshot::Receiver<Reply>) {
        let (tx, rx) = oneshot::channel();
        let env = Envelope {
            command: serde_json::from_str(line).unwrap(),
            requester: Requester::local(Some(uid), Some(uid), Some(4242)),
            reply: tx,
        };
        (env, rx)
    }

    const SWITCH_WEB: &str = r#"{"cmd":"switch","service":"web","colour":"green"}"#;
    const SWITCH_API: &str = r#"{"cmd":"switch","service":"api","colour":"green"}"#;

    #[tokio::test]
    async fn each_request_is_authorized_once_and_answered_by_its_route() {
        let dir = tempfile::tempdir().unwrap();
        let (mut agent, mut queue) = agent(dir.path()).await;
        let live = |a: &Agent<FakeProxy>, s: &str| a.engine.state().services[s].live;

        // A stranger is refused before anything runs, and the refusal is journaled.
        let (env, reply) = envelope(STRANGER, SWITCH_WEB);
        agent.receive(env, &mut queue).await;
        let reply = reply.await.unwrap();
        assert_eq!(reply.status, Status::Error);
        assert_eq!(reply.data["step"], "access", "{reply:?}");
        let refused = agent.engine.history(None, 1).unwrap().remove(0);
        assert_eq!(refused.result, Outcome::Error);
        assert_eq!(
            refused.requester,
            Requester::local(Some(STRANGER), Some(STRANGER), Some(4242))
        );
        assert_eq!(live(&agent, "web"), Colour::Blue);

        // A dry run plans and changes nothing.
        let (env, reply) = envelope(
            OPERATOR,
            r#"{"cmd":"switch","service":"web","colour":"green","dry_run":true}"#,
        );
        agent.receive(env, &mut queue).await;
        let reply = reply.await.unwrap();
        assert!(
            reply.message.starts_with("dry run: generation"),
            "{reply:?}"
        );
        assert_eq!(live(&agent, "web"), Colour::Blue);

        // Changes queued behind the first go into its transition; a query behind them is
        // answered after it.
        let (first, first_reply) = envelope(OPERATOR, SWITCH_WEB);
        let (second, second_reply) = envelope(OPERATOR, SWITCH_API);
        let (status, status_reply) = envelope(OPERATOR, r#"{"cmd":"status"}"#);
        let local = agent.local.clone().unwrap();
        local.send(second).await.unwrap();
        local.send(status).await.unwrap();
        agent.receive(first, &mut queue).await;
        for reply in [first_reply, second_reply] {
            let reply = reply.await.unwrap();
            assert_eq!(reply.status, Status::Ok, "{reply:?}");
            assert_eq!(reply.data["batched"], 2, "{reply:?}");
        }
        let status = status_reply.await.unwrap();
        assert_eq!(status.status, Status::Ok);
        assert_eq!(status.data["services"][0]["live"], "green", "{status:?}");
        assert_eq!(live(&agent, "api"), Colour::Green);

        // Without [cluster], cluster requests and peer steps are answered as such.
        for line in [
            r#"{"cmd":"cluster_status"}"#,
            r#"{"cmd":"ready","txn":"t"}"#,
        ] {
            let (env, reply) = envelope(OPERATOR, line);
            agent.receive(env, &mut queue).await;
            let reply = reply.await.unwrap();
            assert_eq!(reply.message, "this agent has no [cluster] configured");
        }

        // Stopping: what is still queued is answered, cluster requests no more.
        agent.local = None;
        let (env, reply) = envelope(OPERATOR, r#"{"cmd":"cluster_status"}"#);
        let authorized = agent.authorize(env).unwrap();
        agent.dispatch(authorized).await;
        let reply = reply.await.unwrap();
        assert_eq!(reply.message, "this command is not served here");
        let (env, reply) = envelope(OPERATOR, r#"{"cmd":"rollback","service":"web"}"#);
        let authorized = agent.authorize(env).unwrap();
        agent.dispatch(authorized).await;
        assert_eq!(reply.await.unwrap().status, Status::Ok);
        assert_eq!(live(&agent, "web"), Colour::Blue);
    }

    fn route(line: &str) -> Route {
        Route::of(serde_json::from_str(line).expect("a request"))
    }

    #[test]
    fn every_kind_of_request_has_its_route() {
        let kind = |r: &Route| match r {
            Route::Change(m) => format!("change {:?}", m.request),
            Route::Plan(m) => format!("plan {:?}", m.request),
            Route::Query(c) => format!("query {}", c.verb()),
            Route::Cluster(m) => format!("cluster {:?}", m.as_ref().map(|m| m.dry_run)),
            Route::ClusterStatus => "cluster status".into(),
            Route::PeerVerb { command, peer } => format!("peer {} {peer:?}", command.verb()),
        };
        let switch = crate::state::Request::Switch {
            service: "web".into(),
            colour: Colour::Green,
        };
        for (line, expected) in [
            (
                r#"{"cmd":"switch","service":"web","colour":"green"}"#,
                format!("change {switch:?}"),
            ),
            (
                r#"{"cmd":"switch","service":"web","colour":"green","dry_run":true}"#,
                format!("plan {switch:?}"),
            ),
            (r#"{"cmd":"status"}"#, "query status".into()),
            (r#"{"cmd":"history"}"#, "query history".into()),
            (
                r#"{"cmd":"map_show","name":"services"}"#,
                "query map_show".into(),
            ),
            (r#"{"cmd":"metrics"}"#, "query metrics".into()),
            (
                r#"{"cmd":"cluster","command":{"cmd":"switch","service":"web","colour":"green","dry_run":true}}"#,
                "cluster Some(true)".into(),
            ),
            (
                r#"{"cmd":"cluster","command":{"cmd":"status"}}"#,
                "cluster None".into(),
            ),
            (r#"{"cmd":"cluster_status"}"#, "cluster status".into()),
            (r#"{"cmd":"ready","txn":"t"}"#, "peer ready None".into()),
            (
                r#"{"cmd":"commit","txn":"t","cluster_generation":2}"#,
                "peer commit None".into(),
            ),
        ] {
            assert_eq!(kind(&route(line)), expected, "{line}");
        }
    }
}
