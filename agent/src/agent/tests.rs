//! The engine task's side of requests over the in-memory proxy: where each kind goes, and
//! that each is authorized once and answered by its route.

use crate::store::HistoryFilter;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::dispatch::{Agent, Route};
use crate::config::Config;
use crate::control::Envelope;
use crate::engine::Engine;
use crate::protocol::Colour;
use crate::protocol::{Reply, Status};
use crate::proxy::fake::FakeProxy;
use crate::proxy::Proxy;
use crate::requester::Requester;
use crate::store::{Outcome, Store};

#[cfg(feature = "grpc")]
mod remote;

/// A uid the access lists let change routing.
const OPERATOR: u32 = 40_001;
/// A uid they do not know.
const STRANGER: u32 = 40_003;

/// An agent over the in-memory proxy, with allowlists, and its queue.
async fn agent(dir: &std::path::Path) -> (Agent<FakeProxy>, mpsc::Receiver<Envelope>) {
    agent_with(dir, "").await
}

/// [`agent`] with `extra` appended to its config.
pub(super) async fn agent_with(
    dir: &std::path::Path,
    extra: &str,
) -> (Agent<FakeProxy>, mpsc::Receiver<Envelope>) {
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
{extra}
"#,
        d = dir.display()
    );
    let config = Arc::new(Config::from_toml(&dir.join("cutover.toml"), &text).unwrap());
    let maps = dir.join("maps");
    std::fs::create_dir_all(&maps).unwrap();
    // The share map is served only where `extra` configures it (a canary needs it).
    let mut map_files = vec![maps.join("routes.map"), maps.join("services.map")];
    if extra.contains("canary.map") {
        map_files.push(maps.join("canary.map"));
    }
    let mut proxy = FakeProxy::new(
        map_files,
        &["web_blue", "web_green", "api_blue", "api_green"],
    );
    proxy.syntax = config.proxy.kind.map_syntax();
    let store = Store::open(&config.agent.state_dir).unwrap();
    let config_path = config.source.clone();
    let mut engine = Engine::new(config, proxy.clone(), store).unwrap();
    engine.write_files().await.unwrap();
    proxy.reload(0).await.unwrap();
    let (tx, rx) = mpsc::channel(8);
    let agent = Agent {
        engine,
        node: None,
        fleet: None,
        local: Some(tx),
        coordinated: None,
        config_path,
        groups: crate::control::GroupLookup::default(),
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
    let refused = agent
        .engine
        .history(&HistoryFilter::default(), 1)
        .unwrap()
        .remove(0);
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
        Route::ReloadConfig => "reload config".into(),
        Route::ClusterHistory { service, limit } => format!("cluster history {service:?} {limit}"),
        Route::PeerVerb { command, peer } => format!("peer {} {peer:?}", command.verb()),
    };
    let switch = crate::protocol::Request::Switch {
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
        (r#"{"cmd":"reload_config"}"#, "reload config".into()),
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
