//! The participant side over the in-memory proxy: one held change at a time, a newer
//! change of the same coordinator replacing its older one, a prepare only from its
//! coordinator, and the held change in the report and the cluster status.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::engine::tests as engine_tests;
use crate::protocol::{Colour, Command, Reply, Status};
use crate::proxy::fake::FakeProxy;

/// Node `lb1` of a three-node cluster over the in-memory proxy, and its engine.
async fn node(dir: &Path) -> (Node, Engine<FakeProxy>) {
    tls::make_ca(dir, Some("test CA")).unwrap();
    for name in ["lb1", "lb2", "lb3"] {
        tls::issue(dir, None, name, dir).unwrap();
    }
    let cluster = format!(
        r#"
[cluster]
node = "lb1"
listen = "127.0.0.1:1"
ca = "{d}/ca.pem"
cert = "{d}/lb1.pem"
key = "{d}/lb1.key"
[[cluster.peers]]
name = "lb2"
address = "127.0.0.1:2"
[[cluster.peers]]
name = "lb3"
address = "127.0.0.1:3"
"#,
        d = dir.display()
    );
    let config = Arc::new(engine_tests::config(dir, &cluster));
    let maps = dir.join("maps");
    std::fs::create_dir_all(&maps).unwrap();
    let map_files = vec![maps.join("routes.map"), maps.join("services.map")];
    let (engine, _) = engine_tests::start(config.clone(), map_files, false).await;
    let node = Node::new(config.cluster.clone().unwrap()).unwrap();
    (node, engine)
}

fn prepare(txn: &str, coordinator: &str) -> Command {
    Command::Prepare {
        txn: txn.into(),
        request: Request::Switch {
            service: "web".into(),
            colour: Colour::Green,
        },
        force: false,
        coordinator: coordinator.into(),
        terms: Terms::default(),
        asked_by: None,
    }
}

/// The txn of the change `node` holds, as its report and its status row say.
fn held(node: &Node, engine: &Engine<FakeProxy>) -> Option<String> {
    let report = node.report(engine).held.map(|h| h.txn);
    let status: ClusterStatus = serde_json::from_value(node.status(engine)).unwrap();
    let row = match &status.hosts[0] {
        HostRow::Seen { held, .. } => held.as_ref().map(|h| h.txn.clone()),
        HostRow::Unseen { .. } => None,
    };
    assert_eq!(report, row);
    report
}

#[tokio::test]
async fn one_change_held_at_a_time_and_a_newer_one_of_its_coordinator_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, mut engine) = node(dir.path()).await;
    let mut step = async |command: Command, peer: Option<&str>| -> Reply {
        handle_peer_command(&mut node, &mut engine, command, peer).await
    };
    let r = step(prepare("lb2-1-0", "lb2"), Some("lb2")).await;
    assert_eq!(r.status, Status::Ok, "{}", r.message);
    // Another coordinator is refused while the change is held.
    let r = step(prepare("lb3-1-0", "lb3"), Some("lb3")).await;
    assert_eq!(r.status, Status::Error);
    assert!(
        r.message.contains("holds cluster change lb2-1-0 of lb2"),
        "{}",
        r.message
    );
    // A prepare names its sender as coordinator.
    let r = step(prepare("lb3-1-1", "lb3"), Some("lb2")).await;
    assert_eq!(r.status, Status::Error);
    assert!(r.message.contains("certificate"), "{}", r.message);
    let r = step(prepare("lb2-1-2", "lb2"), None).await;
    assert_eq!(r.status, Status::Error, "this node's coordinator is lb1");
    // The same coordinator's next change replaces the one it no longer runs.
    let r = step(prepare("lb2-2-0", "lb2"), Some("lb2")).await;
    assert_eq!(r.status, Status::Ok, "{}", r.message);
    let ready = |txn: &str| Command::Ready { txn: txn.into() };
    assert_eq!(
        step(ready("lb2-1-0"), Some("lb2")).await.status,
        Status::Error
    );
    assert_eq!(step(ready("lb2-2-0"), Some("lb2")).await.status, Status::Ok);
    assert_eq!(held(&node, &engine).as_deref(), Some("lb2-2-0"));
    let status: ClusterStatus = serde_json::from_value(node.status(&engine)).unwrap();
    let HostRow::Seen { held: Some(h), .. } = &status.hosts[0] else {
        panic!("{status:?}");
    };
    assert_eq!(h.coordinator, "lb2");
    assert!(
        h.expires_in_ms > 29_000 && h.expires_in_ms <= 30_000,
        "{h:?}"
    );
    // Aborted, nothing is held.
    let abort = Command::AbortTxn {
        txn: "lb2-2-0".into(),
    };
    let r = handle_peer_command(&mut node, &mut engine, abort, Some("lb2")).await;
    assert_eq!(r.status, Status::Ok);
    assert_eq!(held(&node, &engine), None);
}

/// A peer's report of a held change is shown aged by the time since the report came, and
/// not at all once it has lapsed.
#[test]
fn a_peers_held_change_ages_from_its_report() {
    let report = |held| PeerReport {
        node: "lb2".into(),
        time_ms: 10_000,
        generation: 1,
        cluster_generation: 0,
        digest: String::new(),
        cluster_digest: String::new(),
        services: BTreeMap::new(),
        cluster_routing: BTreeMap::new(),
        proxy_reachable: true,
        last_error: None,
        held,
    };
    let change = PreparedChange {
        txn: "lb1-1-0".into(),
        coordinator: "lb1".into(),
        since_ms: 9_000,
        expires_ms: 39_000,
    };
    let ms = std::time::Duration::from_millis;
    let h = held_by(&report(Some(change.clone())), ms(500)).unwrap();
    assert_eq!((h.age_ms, h.expires_in_ms), (1_500, 28_500));
    assert_eq!(held_by(&report(Some(change)), ms(29_000)), None);
    assert_eq!(held_by(&report(None), ms(0)), None);
}

/// A prepare carries the change's terms and who asked the coordinator: a cluster generation
/// other than `if_generation` refuses it, and the commit journals the asker and the reason
/// (the requester being the coordinator that carried it here).
#[tokio::test]
async fn a_prepare_checks_the_cluster_generation_and_the_commit_journals_who_asked() {
    use crate::store::HistoryFilter;
    let dir = tempfile::tempdir().unwrap();
    let (mut node, mut engine) = node(dir.path()).await;
    let alice = crate::requester::alice();
    let asked = |txn: &str, if_generation: u64| match prepare(txn, "lb2") {
        Command::Prepare {
            txn,
            request,
            force,
            coordinator,
            ..
        } => Command::Prepare {
            txn,
            request,
            force,
            coordinator,
            terms: Terms {
                reason: Some("CHG-9".parse().unwrap()),
                if_generation: Some(if_generation),
            },
            asked_by: Some(alice.clone()),
        },
        _ => unreachable!(),
    };
    let now = engine.state().cluster_generation;
    let r = handle_peer_command(
        &mut node,
        &mut engine,
        asked("lb2-1-0", now + 3),
        Some("lb2"),
    )
    .await;
    assert_eq!(r.status, Status::Error);
    assert!(
        r.message.contains(&format!(
            "the cluster generation is at generation {now}, not {}",
            now + 3
        )),
        "{}",
        r.message
    );
    assert_eq!(
        held(&node, &engine),
        None,
        "a refused prepare holds nothing"
    );
    let r = handle_peer_command(&mut node, &mut engine, asked("lb2-1-1", now), Some("lb2")).await;
    assert_eq!(r.status, Status::Ok, "{}", r.message);
    let commit = Command::Commit {
        txn: "lb2-1-1".into(),
        cluster_generation: now + 1,
    };
    let r = handle_peer_command(&mut node, &mut engine, commit, Some("lb2")).await;
    assert_eq!(r.status, Status::Ok, "{}", r.message);
    let last = engine
        .history(&HistoryFilter::default(), 1)
        .unwrap()
        .remove(0);
    assert_eq!(
        last.requester,
        Requester::Agent(Reason::ClusterCommit {
            coordinator: "lb2".into()
        })
    );
    assert_eq!(last.asked_by, Some(alice));
    assert_eq!(last.reason.as_ref().map(|r| r.as_str()), Some("CHG-9"));
    assert_eq!(last.verb(), "switch");
}
