//! The agent end to end against real HAProxy 2.6 (master-worker): switches seen by real
//! requests, runtime state across reloads, refusals that change nothing, a 100k-route map,
//! and drift repair.

use std::time::Duration;

use cutover_tests::agent::{text, Setup, SetupOptions};
use cutover_tests::require_proxy;
use nix::sys::signal::Signal;

const HOST: &str = "www.example.test";

/// Bytes of every file HAProxy reads, to prove a refusal changed nothing.
fn live_files(s: &Setup) -> Vec<(String, Vec<u8>)> {
    s.read_files(&["haproxy.cfg", "maps/routes.map", "maps/services.map"])
}

#[test]
fn switch_and_rollback_change_what_requests_get() {
    let Some(s) = Setup::started(SetupOptions::default()) else {
        return;
    };
    assert_eq!(s.get(HOST), (200, "blue".into()));

    let out = s.cli(&["switch", "web", "green"]);
    assert!(out.status.success(), "{}", text(&out));
    // The reply comes after the confirm step: the very next request is green.
    assert_eq!(s.get(HOST), (200, "green".into()));
    assert_eq!(s.get("example.test"), (200, "green".into()));
    assert_eq!(
        std::fs::read_to_string(s.services_map())
            .unwrap()
            .lines()
            .rfind(|l| !l.is_empty()),
        Some("web web_green"),
        "the file equals the runtime"
    );

    let (code, reply) = s.cli_json(&["rollback", "web"]);
    assert_eq!(code, 0, "{reply}");
    assert_eq!(reply["data"]["files"][0]["mechanism"], "per_key");
    assert_eq!(s.get(HOST), (200, "blue".into()));

    let (_, status) = s.cli_json(&["status"]);
    let web = &status["data"]["services"][0];
    assert_eq!(
        (web["live"].as_str(), web["previous"].as_str()),
        (Some("blue"), Some("green"))
    );

    let (_, history) = s.cli_json(&["history", "web"]);
    // Requests over the socket; the agent journals its own work (`via: agent`) too.
    let entries: Vec<_> = history["data"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["requester"]["via"] == "socket")
        .collect();
    assert_eq!(entries.len(), 2, "{history}");
    assert_eq!(entries[0]["request"]["op"], "switch");
    assert_eq!(entries[1]["request"]["op"], "rollback");
    assert_eq!(
        entries[0]["requester"]["uid"],
        nix::unistd::getuid().as_raw()
    );
    assert!(entries[0]["requester"]["pid"].as_u64().is_some());

    // Switching to the live colour changes nothing.
    let before = s.generation();
    let out = s.cli(&["switch", "web", "blue"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.generation(), before);
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
    let overrides = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(overrides.path().join("haproxy")).unwrap();
    let shipped = std::fs::read_to_string(
        cutover_tests::workspace_root().join("templates/haproxy/haproxy.cfg"),
    )
    .unwrap();
    // Valid while web is blue, invalid for HAProxy once web is green.
    let broken = shipped.replace(
        "frontend cutover_in",
        "frontend cutover_in\n{% if services.web.live == \"green\" %}    bogus_keyword on\n{% endif %}",
    );
    std::fs::write(overrides.path().join("haproxy/haproxy.cfg"), broken).unwrap();
    let options = SetupOptions {
        templates_extra: format!(
            "override_dir = {:?}",
            overrides.path().display().to_string()
        ),
        ..SetupOptions::default()
    };
    let Some(s) = Setup::started(options) else {
        return;
    };
    let files = live_files(&s);
    let gen = s.generation();

    let (code, reply) = s.cli_json(&["switch", "web", "green"]);
    assert_eq!(code, 1, "{reply}");
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["data"]["step"], "validate");
    let msg = reply["message"].as_str().unwrap();
    assert!(
        msg.contains("[ALERT]") && msg.contains("bogus_keyword"),
        "{msg}"
    );

    assert_eq!(live_files(&s), files, "live files changed");
    assert_eq!(s.generation(), gen);
    assert_eq!(s.get(HOST), (200, "blue".into()));
    let (_, history) = s.cli_json(&["history"]);
    let last = history["data"]["entries"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["result"], "error");
    // No staged file is left beside the live ones.
    let leftovers: Vec<_> = std::fs::read_dir(s.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("cutover-staged"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn bad_requests_are_refused_clearly_and_change_nothing() {
    let Some(s) = Setup::started(SetupOptions::default()) else {
        return;
    };
    let files = live_files(&s);
    let gen = s.generation();
    let agent = s.agent();

    let cases: &[(&[u8], &str)] = &[
        (
            b"{\"cmd\":\"switch\",\"service\":\"nope\",\"colour\":\"green\"}\n",
            "unknown service \\\"nope\\\"",
        ),
        (
            b"{\"cmd\":\"switch\",\"service\":\"web\",\"colour\":\"red\"}\n",
            "unknown variant `red`",
        ),
        (
            b"{\"cmd\":\"switch\",\"service\":\"we b\",\"colour\":\"green\"}\n",
            "unknown service",
        ),
        (
            b"{\"cmd\":\"switch\",\"service\":\"web#x\",\"colour\":\"green\"}\n",
            "unknown service",
        ),
        (
            b"{\"cmd\":\"switch\",\"service\":\"web\\nx\",\"colour\":\"green\"}\n",
            "unknown service",
        ),
        (
            b"{\"cmd\":\"switch\",\"service\":\"web\"\n",
            "not valid JSON",
        ),
        (b"not json at all\n", "not valid JSON"),
        (
            b"{\"cmd\":\"switch\",\"service\":\"web\",\"colour\":\"green\",\"forse\":1}\n",
            "unknown field `forse`",
        ),
        (
            b"{\"cmd\":\"switch\",\"service\":\"web\",\"colour\":\"green\",\"force\":1}\n",
            "expected a boolean",
        ),
        (
            b"{\"cmd\":\"rollback\",\"service\":\"web\"}\n",
            "no previous colour",
        ),
        (
            b"{\"cmd\":\"map_show\",\"name\":\"../../etc/passwd\"}\n",
            "unknown map",
        ),
        (b"\xff\xfe{}\n", "not UTF-8"),
    ];
    for (bytes, want) in cases {
        let reply = agent.raw(bytes);
        assert!(
            reply.contains("\"status\":\"error\""),
            "{:?}: {reply}",
            String::from_utf8_lossy(bytes)
        );
        assert!(
            reply.contains(want),
            "{:?}: want {want:?} in {reply}",
            String::from_utf8_lossy(bytes)
        );
    }
    // A line over the limit (64 KiB by default) is refused without being buffered whole.
    let mut huge = b"{\"cmd\":\"status\",\"pad\":\"".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 1024 * 1024));
    huge.extend(b"\"}\n");
    let reply = agent.raw(&huge);
    assert!(reply.contains("longer than 65536 bytes"), "{reply}");

    // The CLI refuses what clap can see, with the usage exit code.
    let out = s.cli(&["switch", "web", "purple"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    assert_eq!(live_files(&s), files);
    assert_eq!(s.generation(), gen);
    assert_eq!(s.get(HOST), (200, "blue".into()));
    // The agent still serves.
    assert!(s.cli(&["switch", "web", "green"]).status.success());
}

#[test]
fn bad_config_is_refused_by_check_with_exit_64() {
    let Some(s) = Setup::started(SetupOptions::default()) else {
        return;
    };
    let good = std::fs::read_to_string(&s.config).unwrap();
    let out = s.cli(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    for (edit, want) in [
        (
            good.replace("\"www.example.test\"", "\"www example.test\""),
            "contains a space",
        ),
        (
            good.replace("\"www.example.test\"", "\"www#example.test\""),
            "contains '#'",
        ),
        (
            good.replace("[agent]", "[agent]\nbogus = 1"),
            "unknown field `bogus`",
        ),
        (
            good.replace("backend = \"web_green\"", "backend = \"web_blue\""),
            "also the backend",
        ),
    ] {
        std::fs::write(&s.config, &edit).unwrap();
        let out = s.cli(&["check"]);
        assert_eq!(out.status.code(), Some(64), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(want),
            "{want}: {}",
            text(&out)
        );
    }
    // SIGHUP with a bad config keeps the old one in force.
    std::fs::write(&s.config, good.replace("[agent]", "[agent]\nbogus = 1")).unwrap();
    s.agent().signal(Signal::SIGHUP);
    assert!(s
        .agent()
        .wait_for_log("new config refused", Duration::from_secs(10)));
    let socket = s.agent().socket.display().to_string();
    let out = s.cli(&["--socket", &socket, "switch", "web", "green"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.get(HOST), (200, "green".into()));
}

#[test]
fn a_100k_route_map_goes_through_a_transaction_and_reads_back_equal() {
    let Some(s) = Setup::started(SetupOptions {
        routes_in_file: true,
        ..SetupOptions::default()
    }) else {
        return;
    };
    s.load_generated_routes(HOST, 100_000);
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
    assert_eq!(s.get("h99999.example.test"), (200, "blue".into()));
    assert!(s.cli(&["switch", "web", "green"]).status.success());
    assert_eq!(s.get("h12345.example.test"), (200, "green".into()));
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
