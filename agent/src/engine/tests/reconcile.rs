//! The reconcile tick: drift in the running proxy or on disk, foreign reloads, faults and
//! leftover drains are noticed and repaired, and journaled once.

use super::*;
use crate::store::HistoryFilter;

#[tokio::test]
async fn drift_in_the_running_proxy_is_repaired() {
    let mut f = fixture().await;
    let path = f.maps.join("services.map");
    f.proxy
        .state()
        .maps
        .get_mut(&path)
        .unwrap()
        .insert("web".into(), "web_green".into());
    let fixes = f.engine.reconcile("test").await.unwrap();
    assert_eq!(fixes.len(), 1, "{fixes:?}");
    assert_eq!(f.live_services()["web"], "web_blue");
    // Nothing left to repair.
    assert!(f.engine.reconcile("test").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_file_edited_on_disk_is_rewritten_and_applied() {
    let mut f = fixture().await;
    std::fs::write(f.maps.join("services.map"), "api api_blue\nweb web_green\n").unwrap();
    let fixes = f.engine.reconcile("test").await.unwrap();
    assert!(fixes[0].contains("services"), "{fixes:?}");
    assert!(f.services_file().contains("web web_blue"));
}

#[tokio::test]
async fn a_foreign_reload_is_noticed_by_the_tick() {
    let mut f = fixture().await;
    f.engine.tick().await; // learns the epoch
    f.proxy.reload(0).await.unwrap();
    f.proxy.state().calls.clear();
    f.engine.tick().await;
    // The reload loaded the files, which equal the desired state: nothing to update.
    assert!(f.proxy.state().calls.is_empty());
    assert_eq!(f.engine.snapshot().await.last_error, None);
}

fn journal_of(f: &Fixture, cmd: &str) -> Vec<JournalEntry> {
    f.engine
        .history(&HistoryFilter::default(), 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.request["op"] == cmd)
        .collect()
}

#[tokio::test]
async fn a_fault_is_shown_journaled_once_and_cleared_by_itself() {
    let mut f = fixture().await;
    f.engine.tick().await;
    // A blip shorter than the grace is no fault.
    f.proxy.state().unreachable = Some("re-executing".into());
    f.engine.tick().await;
    assert!(f.engine.snapshot().await.fault.is_none());
    f.proxy.state().unreachable = None;
    f.engine.tick().await;
    assert!(journal_of(&f, "reconcile").is_empty());
    f.engine.fault_grace = Duration::ZERO;
    f.proxy.state().unreachable = Some("connection refused".into());
    for _ in 0..3 {
        f.engine.tick().await;
    }
    let snap = f.engine.snapshot().await;
    let fault = snap.fault.expect("fault shown");
    assert_eq!(fault.step, Step::Proxy);
    assert!(fault.message.contains("connection refused"), "{fault:?}");
    assert!(snap.last_error.unwrap().contains("proxy unreachable"));
    let journal = journal_of(&f, "reconcile");
    assert_eq!(journal.len(), 1, "journaled once: {journal:?}");
    assert_eq!(journal[0].result, Outcome::Error);
    assert!(matches!(
        journal[0].requester,
        Requester::Agent(Reason::Upkeep { .. })
    ));

    // While it was away, its runtime map drifted (e.g. restarted from other files): the
    // first tick that reaches it repairs everything and journals the recovery.
    f.proxy.state().unreachable = None;
    let services = f.maps.join("services.map");
    f.proxy
        .state()
        .maps
        .get_mut(&services)
        .unwrap()
        .insert("web".into(), "web_green".into());
    let fixes = f.engine.tick().await;
    assert_eq!(fixes.len(), 1, "{fixes:?}");
    assert_eq!(f.live_services()["web"], "web_blue");
    let snap = f.engine.snapshot().await;
    assert!(snap.fault.is_none());
    assert!(snap.last_error.is_none());
    let journal = journal_of(&f, "reconcile");
    assert_eq!(journal.len(), 3, "{journal:?}");
    assert!(
        journal[1].message.contains("repaired map services"),
        "{journal:?}"
    );
    assert!(
        journal[2].message.starts_with("recovered after"),
        "{journal:?}"
    );
}

#[tokio::test]
async fn a_proxy_serving_another_generation_than_its_files_is_reloaded() {
    let mut f = fixture_with(true).await;
    let gen = f.engine.state().generation;
    f.engine.reconcile("test").await.unwrap();
    // The fixture's reload applied generation 0; the files are of the state's.
    assert_eq!(f.reload_calls(), ["reload"]);
    assert_eq!(f.proxy.state().served_generation, Some(gen));
    f.proxy.state().calls.clear();
    assert!(f.engine.reconcile("test").await.unwrap().is_empty());
    assert!(f.reload_calls().is_empty(), "nothing more to do");
}

#[tokio::test]
async fn a_drain_left_by_an_interrupted_change_is_lifted_by_the_reconcile() {
    let mut f = fixture().await;
    // A switch killed after it drained the servers of what is live again in the saved
    // state: nobody asked for that drain, and with both colours drained nothing answers.
    for server in f.proxy.state().servers.get_mut("web_blue").unwrap() {
        server.drain = true;
    }
    f.engine.reconcile("start").await.unwrap();
    assert!(f.proxy.state().servers["web_blue"].iter().all(|s| !s.drain));
    assert!(f
        .proxy
        .state()
        .calls
        .contains(&"set_drain web_blue false".to_owned()));
}
