//! The engine over the in-memory proxy: the order of steps, and that every failure leaves
//! files, proxy and state as they were.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::config::Config;
use crate::mapfile::MapEntries;
use crate::proxy::fake::FakeProxy;
use crate::state::Colour;
use crate::store::JournalEntry;

struct Fixture {
    _dir: tempfile::TempDir,
    maps: PathBuf,
    engine: Engine<FakeProxy>,
    proxy: FakeProxy,
}

fn config(dir: &Path, extra_files: &str) -> Config {
    let proxy = format!(
        "kind = \"haproxy\"\nadmin_socket = \"{d}/admin.sock\"\nmaster_socket = \"{d}/master.sock\"\nconfig = \"{d}/haproxy.cfg\"",
        d = dir.display()
    );
    config_with(dir, &proxy, extra_files)
}

/// A config of kind nginx: its default files are the main config and both maps.
fn nginx_config(dir: &Path) -> Config {
    let proxy = format!(
        "kind = \"nginx\"\nconfig = \"{d}/nginx.conf\"\npid_file = \"{d}/nginx.pid\"\nerror_log = \"{d}/error.log\"\nstatus = \"unix:{d}/status.sock\"",
        d = dir.display()
    );
    config_with(dir, &proxy, "vars = { listen = \"127.0.0.1:1\" }")
}

fn config_with(dir: &Path, proxy: &str, extra_files: &str) -> Config {
    let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/../templates");
    let text = format!(
        r#"
[agent]
state_dir = "{d}/state"
[proxy]
{proxy}
map_dir = "{d}/maps"
[templates]
dir = "{templates}"
{extra_files}
[[services]]
name = "web"
routes = ["a.example", "b.example"]
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
    Config::from_toml(&dir.join("cutover.toml"), &text).unwrap()
}

async fn fixture() -> Fixture {
    fixture_with(false).await
}

/// With `reload_only`, the config is of kind nginx and the fake has no runtime maps (like
/// Nginx): every change is checked on a staged tree and reloaded.
async fn fixture_with(reload_only: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let maps = dir.path().join("maps");
    std::fs::create_dir_all(&maps).unwrap();
    let config = Arc::new(if reload_only {
        nginx_config(dir.path())
    } else {
        config(dir.path(), "")
    });
    let mut proxy = FakeProxy::new(
        vec![maps.join("routes.map"), maps.join("services.map")],
        &["web_blue", "web_green", "api_blue", "api_green"],
    );
    proxy.runtime_maps = !reload_only;
    proxy.syntax = config.proxy.kind.map_syntax();
    let store = Store::open(&config.agent.state_dir).unwrap();
    let mut engine = Engine::new(config, proxy.clone(), store).unwrap();
    engine.write_files().await.unwrap();
    proxy.reload(0).await.unwrap();
    proxy.state().calls.clear();
    Fixture {
        _dir: dir,
        maps,
        engine,
        proxy,
    }
}

fn switch(service: &str, colour: Colour) -> Request {
    Request::Switch {
        service: service.into(),
        colour,
    }
}

impl Fixture {
    /// Names in the map directory that contain `part` (e.g. `.tmp`: what an interrupted or
    /// undone write would leave behind).
    fn names_in_maps(&self, part: &str) -> Vec<String> {
        std::fs::read_dir(&self.maps)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(part))
            .collect()
    }

    /// Calls to the proxy other than drains.
    fn reload_calls(&self) -> Vec<String> {
        let calls = self.proxy.state().calls.clone();
        calls
            .into_iter()
            .filter(|c| !c.starts_with("set_drain"))
            .collect()
    }

    fn services_file(&self) -> String {
        std::fs::read_to_string(self.maps.join("services.map")).unwrap()
    }

    fn live_services(&self) -> MapEntries {
        self.proxy.state().maps[&self.maps.join("services.map")].clone()
    }
}

#[tokio::test]
async fn a_flip_is_one_runtime_update_without_a_proxy_check() {
    let mut f = fixture().await;
    let a = f
        .engine
        .apply(&switch("web", Colour::Green), &Requester::default(), false)
        .await
        .unwrap();
    assert_eq!(a.change.generation, f.engine.state().generation);
    assert!(!a.validated_by_proxy);
    assert_eq!(a.files.len(), 1);
    assert_eq!(a.files[0].name, "services");
    assert_eq!(f.live_services()["web"], "web_green");
    assert!(f.services_file().contains("web web_green"));
    // One runtime map update, then the old colour is drained (the default policy).
    let calls = f.proxy.state().calls.clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[0].starts_with("update_map"));
    assert_eq!(calls[1], "set_drain web_blue true");
    let history = f.engine.history(None, 10).unwrap();
    assert_eq!(history.last().unwrap().result, Outcome::Ok);
}

/// A fixture where `web` was switched to green, so blue is drained; no calls recorded.
async fn fixture_with_blue_drained() -> Fixture {
    let mut f = fixture().await;
    f.engine
        .apply(&switch("web", Colour::Green), &Requester::default(), false)
        .await
        .unwrap();
    assert!(f.proxy.state().servers["web_blue"][0].drain);
    f.proxy.state().calls.clear();
    f
}

#[tokio::test]
async fn a_drained_colour_leaves_drain_before_traffic_moves_to_it() {
    let mut f = fixture_with_blue_drained().await;
    // Back to blue: undrain, flip, then drain green.
    f.engine
        .apply(&switch("web", Colour::Blue), &Requester::default(), false)
        .await
        .unwrap();
    let calls = f.proxy.state().calls.clone();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[0], "set_drain web_blue false");
    assert!(calls[1].starts_with("update_map"), "{calls:?}");
    assert_eq!(calls[2], "set_drain web_green true");
}

#[tokio::test]
async fn a_refused_change_drains_again_what_it_undrained() {
    let mut f = fixture_with_blue_drained().await;
    f.proxy.state().fail_update = Some("socket gone".into());
    let e = f
        .engine
        .apply(&switch("web", Colour::Blue), &Requester::default(), false)
        .await
        .unwrap_err();
    assert_eq!(e.step, Step::Apply);
    let calls = f.proxy.state().calls.clone();
    assert_eq!(
        calls.first().map(String::as_str),
        Some("set_drain web_blue false")
    );
    assert_eq!(
        calls.last().map(String::as_str),
        Some("set_drain web_blue true")
    );
    assert!(f.proxy.state().servers["web_blue"][0].drain);
}

#[tokio::test]
async fn an_unknown_backend_is_refused_before_anything_is_written() {
    let mut f = fixture().await;
    f.proxy.state().backends.remove("web_green");
    let before = f.services_file();
    let gen = f.engine.state().generation;
    let e = f
        .engine
        .apply(&switch("web", Colour::Green), &Requester::default(), false)
        .await
        .unwrap_err();
    assert_eq!(e.step, Step::Validate);
    assert!(e.message().contains("web_green"), "{e}");
    assert_eq!(f.services_file(), before);
    assert_eq!(f.engine.state().generation, gen);
    assert_eq!(f.live_services()["web"], "web_blue");
    assert!(f.proxy.state().calls.is_empty());
    assert_eq!(f.engine.history(None, 1).unwrap()[0].result, Outcome::Error);
}

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
    // A non-empty directory where the previous version must go: the change reaches the
    // runtime and its file, then keeping the previous version fails (for root too).
    let blocker = f.maps.join("services.map.prev");
    std::fs::create_dir_all(blocker.join("x")).unwrap();
    switch_refused_at_commit(&mut f).await;
    let leftovers = f.names_in_maps(".tmp");
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

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

#[tokio::test]
async fn rollback_returns_to_the_previous_colour() {
    let mut f = fixture().await;
    let who = Requester::default();
    f.engine
        .apply(&switch("web", Colour::Green), &who, false)
        .await
        .unwrap();
    f.engine
        .apply(
            &Request::Rollback {
                service: "web".into(),
            },
            &who,
            false,
        )
        .await
        .unwrap();
    assert_eq!(f.live_services()["web"], "web_blue");
    let snap = f.engine.snapshot().await;
    let web = snap.services.iter().find(|s| s.name == "web").unwrap();
    assert_eq!(web.previous.as_deref(), Some("green"));
}

fn journal_of(f: &Fixture, cmd: &str) -> Vec<JournalEntry> {
    f.engine
        .history(None, 1000)
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
    // The previous version: web green, api blue; a generation above every journaled one.
    assert_eq!(engine.state().services["web"].live, Colour::Green);
    assert_eq!(engine.state().services["api"].live, Colour::Blue);
    assert_eq!(engine.state().generation, last + 1);
    engine.reconcile("start").await.unwrap();
    assert_eq!(
        f.proxy.state().maps[&f.maps.join("services.map")]["api"],
        "api_blue"
    );
    let notes = engine.history(None, 100).unwrap();
    assert_eq!(
        notes
            .iter()
            .filter(|e| e.result == Outcome::Recovered)
            .count(),
        2
    );
    assert!(!f.maps.join(".cutover-services.map.77.0.tmp").exists());
}

#[tokio::test]
async fn a_proxy_without_runtime_maps_checks_and_reloads_every_change() {
    let mut f = fixture_with(true).await;
    f.proxy.state().check_warnings = vec!["[warn] could not build optimal map_hash".into()];
    let a = f
        .engine
        .apply(&switch("web", Colour::Green), &Requester::default(), false)
        .await
        .unwrap();
    assert_eq!(f.reload_calls(), ["check", "reload"]);
    assert!(a.validated_by_proxy);
    assert!(a.reload.is_some());
    assert_eq!(a.warnings, ["[warn] could not build optimal map_hash"]);
    assert!(a
        .summary()
        .contains("\nwarning: [warn] could not build optimal map_hash"));
    assert_eq!(f.live_services()["web"], "web_green");
}

#[tokio::test]
async fn the_check_stages_only_what_changes() {
    let mut f = fixture_with(true).await;
    f.engine
        .apply(&switch("web", Colour::Green), &Requester::default(), false)
        .await
        .unwrap();
    let checked = f.proxy.state().checked.last().cloned().unwrap();
    // The services map changes and is staged; the routes map does not and is read live.
    let staged_services = f.maps.join(".services.map.cutover-staged");
    let live_routes = f.maps.join("routes.map");
    assert!(
        checked.contains(&staged_services.display().to_string()),
        "{checked}"
    );
    assert!(
        checked.contains(&format!("{};", live_routes.display())),
        "{checked}"
    );
    let leftovers = f.names_in_maps("cutover-staged");
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn queued_requests_share_one_transition() {
    let mut f = fixture_with(true).await;
    let gen = f.engine.state().generation;
    let who = Requester::default();
    let batch: Vec<Queued> = [
        switch("web", Colour::Green),
        switch("nope", Colour::Green),
        Request::Rollback {
            service: "web".into(),
        },
        switch("api", Colour::Green),
        switch("api", Colour::Green),
    ]
    .into_iter()
    .map(|request| Queued {
        request,
        requester: who.clone(),
        force: false,
    })
    .collect();
    let results = f.engine.apply_batch(&batch).await;
    assert_eq!(f.reload_calls(), ["check", "reload"], "one reload");
    let gens: Vec<Option<u64>> = results
        .iter()
        .map(|r| r.as_ref().ok().map(|a| a.change.generation))
        .collect();
    assert_eq!(
        gens,
        [
            Some(gen + 1),
            None,
            Some(gen + 2),
            Some(gen + 3),
            Some(gen + 3)
        ]
    );
    assert_eq!(results[1].as_ref().unwrap_err().step, Step::Request);
    assert_eq!(results[0].as_ref().unwrap().batched, 3);
    assert!(results[4].as_ref().unwrap().change.is_empty());
    let state = f.engine.state();
    assert_eq!(state.generation, gen + 3);
    assert_eq!(state.services["web"].live, Colour::Blue);
    assert_eq!(state.services["web"].previous, Some(Colour::Green));
    assert_eq!(state.services["api"].live, Colour::Green);
    assert_eq!(f.live_services()["api"], "api_green");
    let results: Vec<Outcome> = f
        .engine
        .history(None, 5)
        .unwrap()
        .into_iter()
        .map(|e| e.result)
        .collect();
    let (ok, error) = (Outcome::Ok, Outcome::Error);
    assert_eq!(results, [ok, error, ok, ok, ok]);
}

#[tokio::test]
async fn a_refused_reload_fails_the_whole_batch_and_restores_the_files() {
    let mut f = fixture_with(true).await;
    f.proxy.state().fail_reload = Some("[emerg] bind() failed".into());
    let before = f.services_file();
    let gen = f.engine.state().generation;
    let who = Requester::default();
    let results = f
        .engine
        .apply_batch(&[
            Queued {
                request: switch("web", Colour::Green),
                requester: who.clone(),
                force: false,
            },
            Queued {
                request: switch("api", Colour::Green),
                requester: who.clone(),
                force: false,
            },
        ])
        .await;
    for r in &results {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.step, Step::Apply);
        assert!(e.message().contains("[emerg] bind() failed"), "{e}");
    }
    assert_eq!(f.services_file(), before);
    assert_eq!(f.engine.state().generation, gen);
    // The change's reload, then the reload of the restored files.
    assert_eq!(f.reload_calls(), ["check", "reload", "reload"]);
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
async fn a_plan_changes_nothing_and_names_the_mechanism() {
    let f = fixture().await;
    let journal_before = std::fs::read(f.engine.store.journal_path()).unwrap_or_default();
    let files_before = f.services_file();
    let plan = f
        .engine
        .plan(&switch("web", Colour::Green), false)
        .await
        .unwrap();
    assert_eq!(plan.generation, f.engine.state().generation + 1);
    assert_eq!(plan.services.len(), 1);
    let services = plan.files.iter().find(|p| p.name == "services").unwrap();
    assert_eq!(services.mechanism, "runtime per key");
    assert_eq!(
        services.changed,
        vec![("web".to_owned(), "web_green".to_owned())]
    );
    assert_eq!(plan.servers, vec!["drain web_blue".to_owned()]);
    assert_eq!(f.services_file(), files_before);
    assert_eq!(f.live_services()["web"], "web_blue");
    assert!(
        f.proxy.state().calls.is_empty(),
        "{:?}",
        f.proxy.state().calls
    );
    assert_eq!(
        std::fs::read(f.engine.store.journal_path()).unwrap_or_default(),
        journal_before
    );
    // A plan that the gate would refuse is an error naming the gate.
    f.proxy.state().servers.get_mut("web_green").unwrap()[0].up = false;
    let e = f
        .engine
        .plan(&switch("web", Colour::Green), false)
        .await
        .unwrap_err();
    assert_eq!(e.step, Step::Gate);
}

/// The line of a metric series in the engine's exposition.
fn series(f: &Fixture, prefix: &str) -> String {
    let text = f.engine.metrics().render();
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("{prefix} missing in:\n{text}"))
        .to_owned()
}

#[tokio::test]
async fn metrics_follow_switches_and_rollbacks() {
    let mut f = fixture().await;
    let who = Requester::default();
    let live = "cutover_live_colour{service=\"web\",colour=\"green\"}";
    assert!(series(&f, live).ends_with(" 0"));
    f.engine
        .apply(&switch("web", Colour::Green), &who, false)
        .await
        .unwrap();
    f.engine
        .apply(&switch("web", Colour::Green), &who, false)
        .await
        .unwrap();
    assert!(series(&f, live).ends_with(" 1"));
    assert!(series(&f, "cutover_switches_total{service=\"web\",result=\"ok\"}").ends_with(" 1"));
    assert!(series(
        &f,
        "cutover_switches_total{service=\"web\",result=\"unchanged\"}"
    )
    .ends_with(" 1"));
    assert!(series(&f, "cutover_applies_total{result=\"ok\"}").ends_with(" 1"));
    assert!(series(&f, "cutover_apply_duration_seconds_count").ends_with(" 2"));
    let rollback = Request::Rollback {
        service: "web".into(),
    };
    f.engine.apply(&rollback, &who, false).await.unwrap();
    assert!(series(&f, live).ends_with(" 0"));
    assert!(series(&f, "cutover_rollbacks_total{reason=\"requested\"}").ends_with(" 1"));
    let generation = f.engine.state().generation;
    assert_eq!(
        series(&f, "cutover_generation "),
        format!("cutover_generation {generation}")
    );
}

#[tokio::test]
async fn metrics_count_failures_and_undos_without_client_labels() {
    let mut f = fixture().await;
    let who = Requester::default();
    f.proxy.state().fail_update = Some("socket gone".into());
    f.engine
        .apply(&switch("web", Colour::Green), &who, false)
        .await
        .unwrap_err();
    assert!(series(&f, "cutover_rollbacks_total{reason=\"apply_failed\"}").ends_with(" 1"));
    assert!(series(&f, "cutover_apply_failures_total{step=\"apply\"}").ends_with(" 1"));
    assert!(series(
        &f,
        "cutover_switches_total{service=\"web\",result=\"failed\"}"
    )
    .ends_with(" 1"));
    // An unknown service is counted as a refused apply, not as a new series.
    f.engine
        .apply(&switch("nope", Colour::Green), &who, false)
        .await
        .unwrap_err();
    assert!(series(&f, "cutover_apply_failures_total{step=\"request\"}").ends_with(" 1"));
    assert!(!f.engine.metrics().render().contains("nope"));
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

mod admission;
