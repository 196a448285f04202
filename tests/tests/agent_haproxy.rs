//! The agent end to end against real HAProxy 2.6 (master-worker): switches seen by real
//! requests, runtime state across reloads, refusals that change nothing, a 100k-route map,
//! and drift repair. What both proxies do alike is written once in
//! [`cutover_tests::scenarios::agent`].

use std::time::Duration;

use cutover_tests::agent::{text, Setup, SetupOptions};
use cutover_tests::require_proxy;
use cutover_tests::scenarios::agent as scenario;
use nix::sys::signal::Signal;

const HOST: &str = "www.example.test";

#[test]
fn switch_and_rollback_change_what_requests_get() {
    let Some(s) = Setup::started(SetupOptions::default()) else {
        return;
    };
    scenario::switch_to_green(&s, HOST);
    assert_eq!(
        std::fs::read_to_string(s.services_map())
            .unwrap()
            .lines()
            .rfind(|l| !l.is_empty()),
        Some("web web_green"),
        "the file equals the runtime"
    );

    let reply = scenario::roll_back_to_blue(&s, HOST);
    assert_eq!(reply["data"]["files"][0]["mechanism"], "per_key");

    let (status, entries) = scenario::status_and_history_after_rollback(&s);
    // The status names the running version, as HAProxy's own banner does.
    let version = status["data"]["proxy"]["version"]
        .as_str()
        .unwrap_or_default();
    let banner = std::process::Command::new(cutover_tests::proxy_binary("haproxy").unwrap())
        .arg("-v")
        .output()
        .unwrap();
    assert!(
        !version.is_empty() && String::from_utf8_lossy(&banner.stdout).contains(version),
        "status version {version:?}"
    );
    assert_eq!(status["data"]["proxy"]["warnings"], serde_json::Value::Null);
    assert_eq!(
        entries[0]["requester"]["uid"],
        nix::unistd::getuid().as_raw()
    );
    assert!(entries[0]["requester"]["pid"].as_u64().is_some());

    scenario::switching_to_the_live_colour_changes_nothing(&s);
}

#[test]
fn runtime_state_survives_our_reload_and_a_foreign_one() {
    let Some(s) = Setup::started(SetupOptions::default()) else {
        return;
    };
    assert!(s.cli(&["switch", "web", "green"]).status.success());

    // A reload made behind the agent's back: HAProxy reads the maps from disk again.
    let reloads_before = s.reloads();
    s.haproxy().signal(Signal::SIGUSR2);
    assert!(
        cutover_tests::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            s.reloads() > reloads_before
        }),
        "USR2 reload not seen"
    );
    assert!(s.wait_for_body(HOST, "green", Duration::from_secs(5)));
    // The tick sees either a new epoch ("proxy reloaded") or, when it asks while the
    // master re-executes itself, the master unreachable and then back ("proxy
    // reachable"); both end in a check against the desired state.
    assert!(
        s.agent().wait_for_log(
            "checking it against the desired state",
            Duration::from_secs(5)
        ),
        "agent did not notice the foreign reload:\n{}",
        s.agent().log()
    );
    assert_eq!(s.get(HOST), (200, "green".into()));

    // Our own reload: a config change that changes haproxy.cfg (structural).
    let cfg_before = std::fs::read_to_string(s.file("haproxy.cfg")).unwrap();
    let reloads_before = s.reloads();
    s.reconfigure(|c| c.replace("maxconn = 256", "maxconn = 200"));
    assert!(
        s.agent()
            .wait_for_log("new config in force", Duration::from_secs(20)),
        "{}",
        s.agent().log()
    );
    let cfg_after = std::fs::read_to_string(s.file("haproxy.cfg")).unwrap();
    assert_ne!(cfg_before, cfg_after);
    assert!(cfg_after.contains("maxconn 200"));
    assert!(s.reloads() > reloads_before);
    assert_eq!(s.get(HOST), (200, "green".into()));
    let out = s.cli(&["switch", "web", "blue"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.get(HOST), (200, "blue".into()));
}

#[test]
fn a_template_that_breaks_haproxy_is_refused_and_nothing_changes() {
    // Valid while web is blue, invalid for HAProxy once web is green.
    let (options, _guard) = scenario::green_only(
        "haproxy/haproxy.cfg",
        "frontend cutover_in\n",
        "    bogus_keyword on",
    );
    let Some(s) = Setup::started(options) else {
        return;
    };
    scenario::a_template_the_proxy_refuses_changes_nothing(&s, HOST, &["[ALERT]", "bogus_keyword"]);
}

#[test]
fn bad_requests_are_refused_clearly_and_change_nothing() {
    let Some(s) = Setup::started(SetupOptions::default()) else {
        return;
    };
    scenario::bad_requests_are_refused_clearly_and_change_nothing(&s, HOST);
}

#[test]
fn bad_config_is_refused_by_check_with_exit_64() {
    let Some(s) = Setup::started(SetupOptions::default()) else {
        return;
    };
    scenario::bad_configs_are_refused_by_check_with_exit_64(&s, HOST);
}

#[test]
fn a_100k_route_map_goes_through_a_transaction_and_reads_back_equal() {
    let Some(s) = Setup::started(SetupOptions {
        routes_in_file: true,
        ..SetupOptions::default()
    }) else {
        return;
    };
    scenario::a_100k_route_service_switches(&s, HOST, |s| {
        assert!(
            s.agent().log().contains("runtime transaction"),
            "{}",
            s.agent().log()
        );
        let (code, diff) = s.cli_json(&["map", "show", "routes", "--diff"]);
        assert_eq!(code, 0, "{diff}");
        assert_eq!(diff["data"]["added"].as_array().unwrap().len(), 0);
        assert_eq!(diff["data"]["changed"].as_array().unwrap().len(), 0);
        assert_eq!(diff["data"]["removed"].as_array().unwrap().len(), 0);
        let (_, live) = s.cli_json(&["map", "show", "routes", "--live"]);
        assert_eq!(live["data"]["entries"].as_object().unwrap().len(), 100_001);
    });
}

#[test]
fn drift_made_by_hand_is_repaired_at_restart_and_while_running() {
    let haproxy = require_proxy!("haproxy");
    let mut s = Setup::new(
        &haproxy,
        SetupOptions {
            // Slow ticks, so the restart (not the tick) is what repairs the first drift.
            reconcile_interval_ms: 600_000,
            ..SetupOptions::default()
        },
    );
    s.start_agent();
    assert_eq!(s.stop_agent(), Some(0));
    let map = s.services_map().display().to_string();
    assert_eq!(
        s.haproxy()
            .admin_command(&format!("set map {map} web web_green")),
        "\n"
    );
    assert_eq!(s.get(HOST), (200, "green".into()), "hand-made drift");
    s.start_agent();
    assert!(
        s.agent().wait_for_log("repaired", Duration::from_secs(10)),
        "{}",
        s.agent().log()
    );
    assert_eq!(s.get(HOST), (200, "blue".into()));
    assert_eq!(s.stop_agent(), Some(0));

    // With the periodic check on, drift in a small map is repaired while running.
    s.reconfigure_offline(|c| {
        c.replace(
            "reconcile_interval_ms = 600000",
            "reconcile_interval_ms = 100",
        )
    });
    s.start_agent();
    assert_eq!(
        s.haproxy()
            .admin_command(&format!("set map {map} web web_green")),
        "\n"
    );
    assert!(
        s.wait_for_body(HOST, "blue", Duration::from_secs(5)),
        "tick did not repair"
    );
}
