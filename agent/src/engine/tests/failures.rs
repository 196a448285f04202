//! Changes that fail part-way (at the runtime update, the commit, after the runtime took
//! them, at a power loss): files, proxy and state are left or restored as they were.

use super::*;
use crate::store::HistoryFilter;

#[tokio::test]
async fn a_failed_runtime_update_leaves_the_file_alone() {
    let mut f = fixture().await;
    f.proxy.state().fail_update = Some("socket gone".into());
    let before = f.services_file();
    let path = f.maps.join("services.map");
    let inode = || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
    let inode_before = inode();
    let e = f
        .engine
        .apply(&switch("web", Colour::Green), &Requester::default(), false)
        .await
        .unwrap_err();
    assert_eq!(e.step, Step::Apply);
    assert!(e.message().contains("socket gone"));
    assert_eq!(f.services_file(), before);
    // The staged file was never renamed into place, and nothing is left of it.
    assert_eq!(inode(), inode_before);
    let leftovers = f.names_in_maps(".tmp");
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(f.engine.state().services["web"].live, Colour::Blue);
    assert_eq!(f.live_services()["web"], "web_blue");
    // The agent keeps working once the fault is gone.
    f.proxy.state().fail_update = None;
    f.engine
        .apply(&switch("web", Colour::Green), &Requester::default(), false)
        .await
        .unwrap();
    assert_eq!(f.live_services()["web"], "web_green");
}

/// Switches `api` to green, which must fail at commit and leave its file, what the proxy
/// serves and the state as they were; returns the error.
async fn switch_refused_at_commit(f: &mut Fixture) -> ApplyError {
    let before = f.services_file();
    let gen = f.engine.state().generation;
    let e = f
        .engine
        .apply(&switch("api", Colour::Green), &Requester::default(), false)
        .await
        .unwrap_err();
    assert_eq!(e.step, Step::Commit, "{e}");
    assert_eq!(f.services_file(), before);
    assert_eq!(f.live_services()["api"], "api_blue");
    assert_eq!(f.engine.state().generation, gen);
    e
}

#[tokio::test]
async fn a_failed_commit_changes_nothing() {
    let mut f = fixture().await;
    // Every temporary name the write could take is a directory: staging fails, for root
    // too, before anything reaches the proxy.
    for attempt in 0..16 {
        let name = format!(".cutover-services.map.{}.{attempt}.tmp", std::process::id());
        std::fs::create_dir_all(f.maps.join(name).join("x")).unwrap();
    }
    let e = switch_refused_at_commit(&mut f).await;
    assert!(e.to_string().contains("temporary"), "{e}");
    assert!(
        f.proxy.state().calls.is_empty(),
        "nothing reached the proxy"
    );
}

#[tokio::test]
async fn a_commit_that_fails_after_the_runtime_took_it_is_undone() {
    let mut f = fixture().await;
    // The map is a symlink, so its previous version is kept by a copy, and a non-empty
    // directory is where that copy must go: the change reaches the runtime, then keeping
    // the previous version fails (for root too).
    let map = f.maps.join("services.map");
    let real = f.maps.join("real-services.map");
    std::fs::rename(&map, &real).unwrap();
    std::os::unix::fs::symlink(&real, &map).unwrap();
    let blocker = f.maps.join("services.map.prev");
    std::fs::create_dir_all(blocker.join("x")).unwrap();
    switch_refused_at_commit(&mut f).await;
    let leftovers = f.names_in_maps(".tmp");
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn a_failed_apply_makes_the_next_tick_compare_everything() {
    let mut f = fixture().await;
    f.engine.tick().await;
    assert!(f.engine.epoch.is_some());
    f.proxy.state().fail_update = Some("admin socket gone".into());
    f.engine
        .apply(&switch("web", Colour::Green), &Requester::default(), false)
        .await
        .unwrap_err();
    assert!(f.engine.epoch.is_none(), "runtime content is uncertain");
    f.proxy.state().fail_update = None;
    f.proxy.state().calls.clear();
    f.engine.tick().await;
    assert!(f.engine.epoch.is_some());
    let snap = f.engine.snapshot().await;
    assert!(snap.fault.is_none());
    // The failed switch stays the last error until a change succeeds.
    assert!(snap.last_error.unwrap().contains("admin socket gone"));
    f.engine
        .apply(&switch("web", Colour::Green), &Requester::default(), false)
        .await
        .unwrap();
    assert!(f.engine.snapshot().await.last_error.is_none());
}

#[tokio::test]
async fn a_restart_after_a_power_loss_recovers_and_says_so() {
    let f = fixture().await;
    let mut engine = f.engine;
    let who = Requester::default();
    engine
        .apply(&switch("web", Colour::Green), &who, false)
        .await
        .unwrap();
    engine
        .apply(&switch("api", Colour::Green), &who, false)
        .await
        .unwrap();
    let last = engine.state().generation;
    let config = engine.config().clone();
    drop(engine);
    // The newest state file is cut short; a write of the services map left its temp file.
    let store = Store::open(&config.agent.state_dir).unwrap();
    std::fs::write(store.state_path(), "{\"format\":1,").unwrap();
    std::fs::write(f.maps.join(".cutover-services.map.77.0.tmp"), "web web_bl").unwrap();
    let mut engine = Engine::new(config, f.proxy.clone(), store).unwrap();
    let snap = engine.snapshot().await;
    assert_eq!(snap.recovered.len(), 2, "{:?}", snap.recovered);
    assert!(snap
        .recovered
        .iter()
        .any(|n| n.contains("fell back to its previous version")));
    assert!(snap
        .recovered
        .iter()
        .any(|n| n.contains("temporary or staged file")));
    // Both changes are in the state log, which outlives the checkpoint: web green, api
    // green; a generation above every journaled one.
    assert_eq!(engine.state().services["web"].live, Colour::Green);
    assert_eq!(engine.state().services["api"].live, Colour::Green);
    assert_eq!(engine.state().generation, last + 1);
    engine.reconcile("start").await.unwrap();
    assert_eq!(
        f.proxy.state().maps[&f.maps.join("services.map")]["api"],
        "api_green"
    );
    let notes = engine.history(&HistoryFilter::default(), 100).unwrap();
    assert_eq!(
        notes
            .iter()
            .filter(|e| e.result == Outcome::Recovered)
            .count(),
        2
    );
    assert!(!f.maps.join(".cutover-services.map.77.0.tmp").exists());
}
