//! Proxies without runtime maps and queued requests: what is staged and checked, and that a
//! batch shares one transition and fails or succeeds as a whole.

use super::*;
use crate::store::HistoryFilter;

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
    .map(|request| Queued::new(request, who.clone(), false))
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
        .history(&HistoryFilter::default(), 5)
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
            Queued::new(switch("web", Colour::Green), who.clone(), false),
            Queued::new(switch("api", Colour::Green), who.clone(), false),
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
