//! Switches and rollbacks that succeed: the calls they make to the proxy, in order, and the
//! drains around a flip; an unknown backend and a plan change nothing.

use super::*;
use crate::store::HistoryFilter;

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
    let history = f.engine.history(&HistoryFilter::default(), 10).unwrap();
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
    assert_eq!(
        f.engine.history(&HistoryFilter::default(), 1).unwrap()[0].result,
        Outcome::Error
    );
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

#[tokio::test]
async fn a_plan_changes_nothing_and_names_the_mechanism() {
    let f = fixture().await;
    let journal_before = std::fs::read(f.engine.store.journal_path()).unwrap_or_default();
    let files_before = f.services_file();
    let plan = f
        .engine
        .plan(&switch("web", Colour::Green), false, None)
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
        .plan(&switch("web", Colour::Green), false, None)
        .await
        .unwrap_err();
    assert_eq!(e.step, Step::Gate);
}
