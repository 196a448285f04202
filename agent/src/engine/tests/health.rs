//! The periodic health poll over the in-memory proxy: counts per colour in `status` and
//! the metrics, a live colour with no server up as a fault, and drains that end in
//! maintenance (by sessions or by timeout) and leave it before traffic returns.

use std::time::Duration;

use super::*;
use crate::protocol::{DrainPhase, HealthState, Step};
use crate::store::HistoryFilter;

/// An engine whose service `web` has `drain_timeout_ms` = `drain_timeout`.
async fn fixture_draining(drain_timeout: Duration) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("maps")).unwrap();
    let mut config = config(dir.path(), "");
    config.services.get_mut("web").unwrap().drain_timeout = Some(drain_timeout);
    reached(Fixture::started(dir, Arc::new(config), false).await).await
}

/// `f` after a first tick, which finds the proxy reachable (the poll asks only then); no
/// calls recorded.
async fn reached(mut f: Fixture) -> Fixture {
    f.engine.tick().await;
    assert!(f.engine.reachable());
    f.proxy.state().calls.clear();
    f
}

fn who() -> Requester {
    Requester::agent()
}

impl Fixture {
    /// `web` as `status` shows it.
    async fn web(&self) -> crate::protocol::ServiceStatus {
        let snap = self.engine.snapshot().await;
        snap.services.into_iter().find(|s| s.name == "web").unwrap()
    }
}

#[tokio::test]
async fn the_poll_counts_each_colour_for_status_and_metrics() {
    let mut f = reached(fixture().await).await;
    assert!(
        f.web().await.health.is_none(),
        "nothing before the first poll"
    );
    {
        let mut s = f.proxy.state();
        s.servers.get_mut("web_green").unwrap()[0].up = false;
        s.sessions.insert("web_blue".into(), 4);
    }
    f.engine.poll_servers().await;
    assert_eq!(f.proxy.state().calls, ["server_table"], "one read per poll");
    let h = f.web().await.health.unwrap();
    // Sessions are read only while a colour drains towards maintenance.
    assert_eq!((h.known, h.blue.up, h.blue.sessions), (true, 1, None));
    assert_eq!((h.green.up, h.green.down), (0, 1));
    let text = f.engine.metrics().render();
    for line in [
        "cutover_servers{service=\"web\",colour=\"blue\",state=\"up\"} 1",
        "cutover_servers{service=\"web\",colour=\"green\",state=\"down\"} 1",
        "cutover_servers{service=\"api\",colour=\"green\",state=\"up\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
    // The idle colour down is no fault.
    assert!(f.engine.snapshot().await.fault.is_none());
}

#[tokio::test]
async fn a_live_colour_with_no_server_up_is_a_fault_until_one_is_up() {
    let mut f = reached(fixture().await).await;
    f.proxy.state().servers.get_mut("web_blue").unwrap()[0].up = false;
    f.engine.poll_servers().await;
    let fault = f.engine.snapshot().await.fault.expect("a fault");
    assert_eq!(fault.step, Step::Health);
    assert_eq!(
        fault.message,
        "web: live colour blue (web_blue) has no server up (1 down)"
    );
    // Still down on the next poll: the same fault, since the same time, journaled once.
    f.engine.poll_servers().await;
    assert_eq!(
        f.engine.snapshot().await.fault.unwrap().since_ms,
        fault.since_ms
    );
    f.proxy.state().servers.get_mut("web_blue").unwrap()[0].up = true;
    f.engine.poll_servers().await;
    assert!(f.engine.snapshot().await.fault.is_none());
    let ops: Vec<String> = f
        .engine
        .history(&HistoryFilter::default(), 100)
        .unwrap()
        .iter()
        .filter(|e| e.request["op"] == "health")
        .map(|e| e.message.clone())
        .collect();
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert!(ops[1].contains("up again"), "{ops:?}");
}

#[tokio::test]
async fn an_unreadable_table_is_unknown_and_no_fault() {
    let mut f = reached(fixture().await).await;
    f.proxy.state().fail_table = Some("socket gone".into());
    f.proxy.state().servers.get_mut("web_blue").unwrap()[0].up = false;
    f.engine.poll_servers().await;
    let h = f.web().await.health.unwrap();
    assert!(!h.known && h.blue.total() == 0, "{h:?}");
    assert!(f.engine.snapshot().await.fault.is_none());
}

#[tokio::test]
async fn an_unreachable_proxy_is_not_polled() {
    let mut f = reached(fixture().await).await;
    f.proxy.state().unreachable = Some("gone".into());
    f.engine.tick().await;
    f.proxy.state().calls.clear();
    f.engine.poll_servers().await;
    assert!(
        f.proxy.state().calls.is_empty(),
        "{:?}",
        f.proxy.state().calls
    );
    assert!(!f.web().await.health.unwrap().known);
}

#[test]
fn without_a_table_the_configured_servers_are_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), "");
    config
        .services
        .get_mut("web")
        .unwrap()
        .colours
        .get_mut(&Colour::Blue)
        .unwrap()
        .servers = vec![crate::config::Server {
        name: "b1".into(),
        address: "127.0.0.1:1".into(),
    }];
    let h = super::super::health::tally(&config, None, 7);
    assert_eq!(h["web"].blue.count(HealthState::Unknown), 1);
    assert_eq!((h["web"].known, h["web"].polled_ms), (false, 7));
    assert_eq!(h["web"].blue.summary(), "unknown (1 servers)");
}

#[tokio::test]
async fn a_drain_ends_in_maintenance_when_its_sessions_reach_zero() {
    let mut f = fixture_draining(Duration::from_secs(600)).await;
    f.proxy.state().sessions.insert("web_blue".into(), 3);
    f.engine
        .apply(&switch("web", Colour::Green), &who(), false)
        .await
        .unwrap();
    f.engine.poll_servers().await;
    let web = f.web().await;
    assert_eq!(web.health.unwrap().blue.sessions, Some(3));
    let drains = web.drains;
    assert_eq!(drains.len(), 1);
    assert_eq!(drains[0].phase, DrainPhase::Draining);
    assert_eq!(drains[0].deadline_ms, Some(drains[0].since_ms + 600_000));
    assert!(!f.proxy.state().servers["web_blue"][0].maint);

    f.proxy.state().sessions.insert("web_blue".into(), 0);
    f.engine.poll_servers().await;
    assert!(f.proxy.state().servers["web_blue"][0].maint);
    let drains = f.web().await.drains;
    assert_eq!(drains[0].phase, DrainPhase::Maintenance);
    assert_eq!(drains[0].reason.as_deref(), Some("its sessions reached 0"));
    assert_eq!(f.web().await.health.unwrap().blue.maint, 1);

    // A reload forgets maintenance: the next poll puts it back.
    f.proxy.state().servers.get_mut("web_blue").unwrap()[0].maint = false;
    f.proxy.state().calls.clear();
    f.engine.poll_servers().await;
    assert_eq!(
        f.proxy.state().calls,
        ["server_table", "set_maint web_blue true"]
    );

    // A rollback passes the gate (HAProxy does not check servers in maintenance) and takes
    // blue out of maintenance before the traffic moves.
    f.proxy.state().calls.clear();
    f.engine
        .apply(
            &Request::Rollback {
                service: "web".into(),
            },
            &who(),
            false,
        )
        .await
        .unwrap();
    let calls = f.proxy.state().calls.clone();
    let out = calls.iter().position(|c| c == "set_maint web_blue false");
    let moved = calls.iter().position(|c| c.starts_with("update_map"));
    assert!(out.is_some() && out < moved, "{calls:?}");
    assert!(!f.proxy.state().servers["web_blue"][0].maint);
    f.engine.poll_servers().await;
    assert!(f
        .web()
        .await
        .drains
        .iter()
        .all(|d| d.colour == Colour::Green));
}

#[tokio::test]
async fn a_drain_ends_in_maintenance_when_its_timeout_passes() {
    let mut f = fixture_draining(Duration::ZERO).await;
    f.proxy.state().sessions.insert("web_blue".into(), 2);
    f.engine
        .apply(&switch("web", Colour::Green), &who(), false)
        .await
        .unwrap();
    f.engine.poll_servers().await;
    assert!(f.proxy.state().servers["web_blue"][0].maint);
    let d = &f.web().await.drains[0];
    assert_eq!(
        d.reason.as_deref(),
        Some("drain_timeout_ms (0) passed with 2 session(s) left")
    );
    let journal = f.engine.history(&HistoryFilter::default(), 100).unwrap();
    assert!(
        journal.iter().any(|e| e.request["op"] == "drain"),
        "{journal:?}"
    );
}

#[tokio::test]
async fn without_drain_timeout_a_drain_never_ends() {
    let mut f = reached(fixture().await).await;
    f.engine
        .apply(&switch("web", Colour::Green), &who(), false)
        .await
        .unwrap();
    f.engine.poll_servers().await;
    assert!(f.web().await.drains.is_empty());
    let blue = &f.proxy.state().servers["web_blue"][0];
    assert!(blue.drain && !blue.maint);
}
