//! Safe switches against real HAProxy: the pre-switch gate, the post-switch watch that
//! rolls back by itself, canary shares, drain, and preview routes.

use std::time::{Duration, Instant};

use cutover_tests::agent::{text, Setup, SetupOptions};
use cutover_tests::{scenarios, KeepAliveClient};

const HOST: &str = "www.example.test";

fn setup(service_extra: &str) -> Option<Setup> {
    Setup::started(SetupOptions {
        service_extra: service_extra.into(),
        ..SetupOptions::default()
    })
}

fn last_history(s: &Setup) -> serde_json::Value {
    let (_, h) = s.cli_json(&["history", "--limit", "1"]);
    h["data"]["entries"][0].clone()
}

#[test]
fn an_unhealthy_target_is_refused_unless_forced() {
    let Some(s) = setup("[services.gate]\nhealth_path = \"/health\"\ntimeout_ms = 1000\n") else {
        return;
    };
    scenarios::refused_by_the_health_gate(&s, HOST);

    // HAProxy's own view counts too: a server in maintenance is not ready.
    s.green.set_failing(false);
    let admin = s
        .haproxy()
        .admin_command("set server web_green/g1 state maint");
    assert_eq!(admin, "\n");
    let (code, reply) = s.cli_json(&["switch", "web", "green"]);
    assert_eq!(code, 1, "{reply}");
    assert!(
        reply["message"].as_str().unwrap().contains("g1 (127.0.0.1"),
        "{reply}"
    );
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("in maintenance"),
        "{reply}"
    );
    s.haproxy()
        .admin_command("set server web_green/g1 state ready");

    // --force moves traffic anyway, and the journal says so.
    s.green.set_failing(true);
    let out = s.cli(&["switch", "web", "green", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    let entry = last_history(&s);
    assert_eq!(entry["data"]["forced"], true, "{entry}");
    assert_eq!(entry["data"]["gates"][0]["forced"], true, "{entry}");
    assert_eq!(s.get(HOST).1, "green");
}

#[test]
fn a_failing_new_colour_is_rolled_back_by_the_watch() {
    let watch = "[services.watch]\nwindow_ms = 20000\ninterval_ms = 100\nconsecutive = 2\nmax_error_percent = 5.0\n";
    let Some(s) = setup(watch) else { return };
    let took = scenarios::rolled_back_by_the_watch(&s, HOST);
    eprintln!(
        "first failing request -> rollback served: {:.0} ms",
        took.as_secs_f64() * 1e3
    );
}

#[test]
fn a_dead_new_colour_is_rolled_back_without_any_traffic() {
    // The new colour's only server goes into maintenance right after the switch: its
    // backend is DOWN, no request completes, and `no_traffic = "pass"` must not pass it.
    let watch = "[services.watch]\nwindow_ms = 30000\ninterval_ms = 100\nconsecutive = 2\nno_traffic = \"pass\"\n";
    let Some(s) = setup(watch) else { return };
    scenarios::switch_onto_a_dead_green(&s);
    let mut status = serde_json::Value::Null;
    for _ in 0..300 {
        status = s.cli_json(&["status"]).1;
        if status["data"]["services"][0]["phase"]["phase"] != "watching" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let web = &status["data"]["services"][0];
    assert_eq!(web["phase"]["phase"], "rolled_back", "{status}");
    assert_eq!(web["live"], "blue", "{status}");
    let reason = web["phase"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("no server of the backend is up"),
        "{reason}"
    );
    assert_eq!(s.get(HOST), (200, "blue".to_owned()));
}

#[test]
fn a_new_colour_answering_only_503_is_rolled_back_between_quiet_samples() {
    // Every answer of the new colour is an error, with samples in between that see no
    // request at all: the quiet samples must not reset the run of bad ones.
    let watch = "[services.watch]\nwindow_ms = 30000\ninterval_ms = 100\nconsecutive = 3\nmin_requests = 5\nno_traffic = \"pass\"\n";
    let Some(s) = setup(watch) else { return };
    assert_eq!(s.cli_json(&["switch", "web", "green"]).0, 0);
    s.green.set_failing(true);
    let mut status = serde_json::Value::Null;
    for _ in 0..200 {
        // A burst of failing requests, then a pause longer than two samples.
        for _ in 0..8 {
            let _ = s.get(HOST);
        }
        std::thread::sleep(Duration::from_millis(300));
        status = s.cli_json(&["status"]).1;
        if status["data"]["services"][0]["phase"]["phase"] != "watching" {
            break;
        }
    }
    let web = &status["data"]["services"][0];
    assert_eq!(web["phase"]["phase"], "rolled_back", "{status}");
    assert_eq!(s.get(HOST), (200, "blue".to_owned()));
}

#[test]
fn the_watch_passes_a_healthy_colour() {
    // `fail`: a sample without traffic fails the watch, so it passes only on the answers
    // it saw, and every one of them must come from the new colour.
    let watch = "[services.watch]\nwindow_ms = 600\ninterval_ms = 100\nno_traffic = \"fail\"\n";
    let Some(s) = setup(watch) else { return };
    assert!(s.cli(&["switch", "web", "green"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for _ in 0..5 {
            assert_eq!(s.get(HOST), (200, "green".to_owned()));
        }
        let (_, status) = s.cli_json(&["status"]);
        assert_ne!(
            status["data"]["services"][0]["phase"]["phase"], "rolled_back",
            "{status}"
        );
        if status["data"]["services"][0]["phase"]["phase"] == "passed" {
            break;
        }
        assert!(Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.get(HOST).1, "green");
}

#[test]
fn a_canary_of_10_percent_gets_about_10_percent() {
    let Some(s) = setup("") else { return };
    let out = s.cli(&["canary", "web", "green", "10"]);
    assert!(out.status.success(), "{}", text(&out));
    let green = scenarios::answered_by(&s, HOST, "green", 2000);
    eprintln!("canary 10%: {green} of 2000 requests reached green");
    assert!(
        (100..=300).contains(&green),
        "{green} of 2000 is not 10% ± 5"
    );
    let (_, status) = s.cli_json(&["status"]);
    assert_eq!(status["data"]["services"][0]["canary"]["percent"], 10);
    assert_eq!(
        s.metric("cutover_canary_percent{service=\"web\"}"),
        Some(10.0)
    );

    // A canary on the live colour, or outside 1..=99, is refused.
    assert_eq!(
        s.cli(&["canary", "web", "blue", "10"]).status.code(),
        Some(1)
    );
    assert_eq!(
        s.cli(&["canary", "web", "green", "100"]).status.code(),
        Some(2)
    );

    let out = s.cli(&["promote", "web"]);
    assert!(out.status.success(), "{}", text(&out));
    let ok = "cutover_switches_total{service=\"web\",result=\"ok\"}";
    assert_eq!(s.metric(ok), Some(1.0), "a promotion moves the live colour");
    assert_eq!(
        s.metric("cutover_canary_percent{service=\"web\"}"),
        Some(0.0)
    );
    for _ in 0..50 {
        assert_eq!(s.get(HOST).1, "green");
    }
    // Abort ends a canary and leaves all traffic on the live colour: first the canary
    // takes its share, then none.
    assert!(s.cli(&["canary", "web", "blue", "50"]).status.success());
    let blue = scenarios::answered_by(&s, HOST, "blue", 200);
    assert!(blue >= 50, "a 50% canary got {blue} of 200");
    assert!(s.cli(&["abort", "web"]).status.success());
    for _ in 0..50 {
        assert_eq!(s.get(HOST).1, "green");
    }
}

#[test]
fn drain_keeps_established_connections_working() {
    let Some(s) = setup("") else { return };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut client = rt
        .block_on(KeepAliveClient::connect(s.haproxy().frontend()))
        .unwrap();
    assert_eq!(rt.block_on(client.get(HOST)).unwrap(), (200, "blue".into()));

    // The switch drains blue (the default policy); the established connection goes on.
    assert!(s.cli(&["switch", "web", "green"]).status.success());
    let state = s.haproxy().admin_command("show servers state web_blue");
    let row = state.lines().find(|l| l.contains(" b1 ")).expect("b1 row");
    let admin: u8 = row.split_whitespace().nth(6).unwrap().parse().unwrap();
    assert_eq!(admin & 0x08, 0x08, "b1 is not in drain: {row}");
    for _ in 0..20 {
        assert_eq!(
            rt.block_on(client.get(HOST)).unwrap(),
            (200, "green".into())
        );
    }
    assert!(client.is_open());

    let (_, status) = s.cli_json(&["status"]);
    assert_eq!(status["data"]["services"][0]["drained"][0], "blue");
    assert!(s.cli(&["undrain", "web", "blue"]).status.success());
    let state = s.haproxy().admin_command("show servers state web_blue");
    let row = state.lines().find(|l| l.contains(" b1 ")).unwrap();
    assert_eq!(row.split_whitespace().nth(6), Some("0"), "{row}");
    // The live colour is never drained.
    assert_eq!(s.cli(&["drain", "web", "green"]).status.code(), Some(1));
}

#[test]
fn drains_survive_a_reload() {
    let Some(s) = setup("") else { return };
    assert!(s.cli(&["switch", "web", "green"]).status.success());
    s.haproxy().signal(nix::sys::signal::Signal::SIGUSR2);
    let drained =
        cutover_tests::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            let state = cutover_tests::haproxy::unix_command(
                &s.haproxy().paths().admin_socket,
                "show servers state web_blue",
                Duration::from_secs(2),
            )
            .unwrap_or_default();
            s.agent().log().contains("proxy reloaded")
                && state
                    .lines()
                    .find(|l| l.contains(" b1 "))
                    .and_then(|r| r.split_whitespace().nth(6)?.parse::<u8>().ok())
                    .is_some_and(|a| a & 0x08 != 0)
        });
    assert!(
        drained,
        "drain not re-applied after the reload:\n{}",
        s.agent().log()
    );
}

#[test]
fn preview_routes_reach_the_idle_colour() {
    // Without the drain policy: a drained colour takes no new connections, previews too.
    let Some(s) = setup("preview_hosts = [\"preview.example.test\"]\ndrain_after_switch = false\n")
    else {
        return;
    };
    assert_eq!(s.get(HOST).1, "blue");
    assert_eq!(s.get("preview.example.test").1, "green");
    // Any request carrying the preview header reaches the idle colour too.
    let mut conn = std::net::TcpStream::connect(s.haproxy().frontend()).unwrap();
    std::io::Write::write_all(
        &mut conn,
        format!(
            "GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Cutover-Preview: 1\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut conn, &mut reply).unwrap();
    assert!(reply.ends_with("green"), "{reply}");
    assert!(s
        .cli(&["switch", "web", "green", "--force"])
        .status
        .success());
    assert_eq!(s.get("preview.example.test").1, "blue");
    assert_eq!(s.get(HOST).1, "green");
    // Draining the idle colour closes the preview too.
    assert!(s.cli(&["drain", "web", "blue"]).status.success());
    assert_eq!(s.get("preview.example.test").0, 503);
}

#[test]
fn a_watch_rollback_onto_a_failing_colour_happens_once_and_stays() {
    let watch = "[services.watch]\nwindow_ms = 20000\ninterval_ms = 100\nconsecutive = 2\nmax_error_percent = 5.0\n";
    let Some(s) = setup(watch) else { return };
    assert!(s.cli(&["switch", "web", "green"]).status.success());
    for _ in 0..20 {
        assert_eq!(s.get(HOST), (200, "green".into()));
    }
    // Both colours fail: the watch still returns to the colour the operator left (its
    // rollback skips the gate), once, and no watch then flips back to green.
    s.blue.set_failing(true);
    s.green.set_failing(true);
    let live = |s: &Setup| {
        let (_, st) = s.cli_json(&["status"]);
        st["data"]["services"][0].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while live(&s)["live"] != "blue" {
        assert!(Instant::now() < deadline, "no rollback: {}", live(&s));
        for _ in 0..5 {
            let _ = s.get(HOST);
        }
    }
    assert_eq!(live(&s)["phase"]["phase"], "rolled_back", "{}", live(&s));
    // Traffic keeps failing on blue for a while; the routing does not move again.
    for _ in 0..100 {
        assert!(s.get(HOST).0 >= 500);
    }
    assert_eq!(live(&s)["live"], "blue");
    assert_eq!(
        s.metric("cutover_rollbacks_total{reason=\"watch\"}"),
        Some(1.0)
    );
    let (_, history) = s.cli_json(&["history", "web"]);
    let rollbacks = history["data"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["requester"]["via"] == "watch" && e["request"]["op"] == "rollback")
        .count();
    assert_eq!(rollbacks, 1, "{history}");
}
