//! The engine's metrics: the series that switches, rollbacks, failures and undos move.

use super::*;

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
