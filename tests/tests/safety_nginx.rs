//! Safe switches against real Nginx: the pre-switch gate (HTTP probes), the post-switch watch
//! fed by access-log lines that rolls back by itself, canary shares through `split_clients`,
//! sticky canaries, drain, and preview routes. Every change here is a confirmed reload.
// Test code: an `unwrap()` that fails is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cutover_tests::agent::{text, Setup, SetupOptions};
use cutover_tests::scenarios;

const HOST: &str = "www.example.test";

fn setup(service_extra: &str) -> Option<Setup> {
    Setup::started_on(
        "nginx",
        SetupOptions {
            service_extra: service_extra.into(),
            ..SetupOptions::default()
        },
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn get_with(s: &Setup, headers: &[(&str, &str)]) -> cutover_tests::Response {
    scenarios::get_with(s, HOST, headers)
}

#[test]
fn an_unhealthy_target_is_refused_unless_forced() {
    let Some(s) = setup("[services.gate]\nhealth_path = \"/health\"\ntimeout_ms = 1000\n") else {
        return;
    };
    let config = std::fs::read(s.file("nginx.conf")).unwrap();
    scenarios::refused_by_the_health_gate(&s, HOST);
    assert_eq!(std::fs::read(s.file("nginx.conf")).unwrap(), config);

    let out = s.cli(&["switch", "web", "green", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    let (_, h) = s.cli_json(&["history", "--limit", "1"]);
    assert_eq!(h["data"]["entries"][0]["data"]["forced"], true, "{h}");
    assert_eq!(s.get(HOST).0, 500, "forced onto the failing colour");
}

#[test]
fn a_failing_new_colour_is_rolled_back_by_the_watch() {
    let watch = "[services.watch]\nwindow_ms = 20000\ninterval_ms = 100\nconsecutive = 2\nmax_error_percent = 5.0\n";
    let Some(s) = setup(watch) else { return };
    let took = scenarios::rolled_back_by_the_watch(&s, HOST);
    eprintln!(
        "nginx: first failing request -> rollback served: {:.0} ms",
        took.as_secs_f64() * 1e3
    );
}

#[test]
fn no_traffic_holds_for_an_operator_when_configured() {
    let watch = "[services.watch]\nwindow_ms = 500\ninterval_ms = 100\nno_traffic = \"hold\"\n";
    let Some(s) = setup(watch) else { return };
    assert!(s.cli(&["switch", "web", "green"]).status.success());
    let held =
        cutover_tests::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            let (_, status) = s.cli_json(&["status"]);
            status["data"]["services"][0]["phase"]["phase"] == "held"
        });
    assert!(held, "{}", s.agent().log());
    assert_eq!(s.get(HOST).1, "green");
}

#[test]
fn a_canary_of_10_percent_gets_about_10_percent() {
    let Some(s) = setup("") else { return };
    let out = s.cli(&["canary", "web", "green", "10"]);
    assert!(out.status.success(), "{}", text(&out));
    let conf = std::fs::read_to_string(s.file("nginx.conf")).unwrap();
    assert!(conf.contains("10% 1;"), "{conf}");
    let green = scenarios::answered_by(&s, HOST, "green", 2000);
    eprintln!("nginx canary 10%: {green} of 2000 requests reached green");
    assert!(
        (100..=300).contains(&green),
        "{green} of 2000 is not 10% ± 5"
    );
    let (_, status) = s.cli_json(&["status"]);
    assert_eq!(status["data"]["services"][0]["canary"]["percent"], 10);

    let out = s.cli(&["promote", "web"]);
    assert!(out.status.success(), "{}", text(&out));
    for _ in 0..50 {
        assert_eq!(s.get(HOST).1, "green");
    }
    // Abort ends a canary that was taking its share.
    assert!(s.cli(&["canary", "web", "blue", "50"]).status.success());
    let blue = scenarios::answered_by(&s, HOST, "blue", 200);
    assert!(blue >= 50, "a 50% canary got {blue} of 200");
    assert!(s.cli(&["abort", "web"]).status.success());
    for _ in 0..50 {
        assert_eq!(s.get(HOST).1, "green");
    }
    assert!(!std::fs::read_to_string(s.file("nginx.conf"))
        .unwrap()
        .contains("split_clients \""));
}

#[test]
fn a_sticky_canary_keeps_each_client_on_its_colour() {
    let Some(s) = setup("canary_sticky = { cookie = \"cutover_web\" }\n") else {
        return;
    };
    let green = scenarios::sticky_canary_clients(&s, HOST);
    eprintln!("nginx sticky canary: {green} of 200 clients on green after 30% then 60%");
    assert!((80..=160).contains(&green), "{green}");
}

#[test]
fn a_header_keyed_canary_follows_the_header() {
    let Some(s) = setup("canary_sticky = { header = \"X-User\" }\n") else {
        return;
    };
    assert!(s.cli(&["canary", "web", "green", "50"]).status.success());
    let mut green = 0;
    for user in 0..40 {
        let id = format!("user-{user}");
        let first = get_with(&s, &[("X-User", &id)]).body;
        for _ in 0..3 {
            assert_eq!(get_with(&s, &[("X-User", &id)]).body, first, "{id}");
        }
        green += usize::from(first == "green");
    }
    assert!(
        (5..=35).contains(&green),
        "{green} of 40 users on the canary"
    );
}

#[test]
fn drain_lets_requests_in_flight_finish() {
    let Some(s) = setup("") else { return };
    // A slow request to blue is in flight while the switch drains blue: Nginx's previous
    // workers finish it; new requests go to green only.
    let addr = s.frontend();
    let seen = s.blue.requests();
    let slow = std::thread::spawn(move || {
        runtime().block_on(cutover_tests::http::request(
            addr,
            "GET",
            HOST,
            "/slow/1500",
        ))
    });
    // The slow request is at blue before the switch.
    assert!(cutover_tests::wait_until(
        Duration::from_secs(5),
        Duration::from_millis(5),
        || s.blue.requests() > seen
    ));
    let out = s.cli(&["switch", "web", "green"]);
    assert!(out.status.success(), "{}", text(&out));
    let conf = std::fs::read_to_string(s.file("nginx.conf")).unwrap();
    assert!(
        conf.contains(&format!("server {} down;", s.blue.addr())),
        "{conf}"
    );
    let done = slow
        .join()
        .unwrap()
        .expect("the request in flight finished");
    assert_eq!((done.status, done.body.as_str()), (200, "blue"));
    for _ in 0..20 {
        assert_eq!(s.get(HOST).1, "green");
    }
    let (_, status) = s.cli_json(&["status"]);
    assert_eq!(status["data"]["services"][0]["drained"][0], "blue");
    assert!(s.cli(&["undrain", "web", "blue"]).status.success());
    let conf = std::fs::read_to_string(s.file("nginx.conf")).unwrap();
    assert!(!conf.contains(" down;"), "{conf}");
    assert_eq!(s.cli(&["drain", "web", "green"]).status.code(), Some(1));
}

#[test]
fn preview_routes_reach_the_idle_colour() {
    let Some(s) = setup("preview_hosts = [\"preview.example.test\"]\ndrain_after_switch = false\n")
    else {
        return;
    };
    assert_eq!(s.get(HOST).1, "blue");
    assert_eq!(s.get("preview.example.test").1, "green");
    assert_eq!(get_with(&s, &[("X-Cutover-Preview", "1")]).body, "green");
    assert!(s
        .cli(&["switch", "web", "green", "--force"])
        .status
        .success());
    assert_eq!(s.get("preview.example.test").1, "blue");
    assert_eq!(get_with(&s, &[("X-Cutover-Preview", "1")]).body, "blue");
    assert_eq!(s.get(HOST).1, "green");
    // Draining the idle colour closes the preview too.
    assert!(s.cli(&["drain", "web", "blue"]).status.success());
    assert_eq!(s.get("preview.example.test").0, 502);
}
