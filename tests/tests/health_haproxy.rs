//! Server health and the end of drains against real HAProxy 2.6 (and Nginx's passive
//! checks): the checks `[services.health]` renders, each colour's servers in `status` and
//! `cutover_servers` as HAProxy's checks see them, a live colour with no server up as a
//! fault, and a drain with `drain_timeout_ms` ending in maintenance.

use std::time::Duration;

use cutover_tests::agent::{text, Setup, SetupOptions};
use cutover_tests::wait_until;
use nix::sys::signal::Signal;

const HOST: &str = "www.example.test";

/// `web` as `cutover --json status` shows it.
fn web(s: &Setup) -> serde_json::Value {
    let (code, v) = s.cli_json(&["status"]);
    assert_eq!(code, 0, "{v}");
    web_of(&v["data"]).clone()
}

/// Polls `status` until `pred` holds for it, at most `within`.
fn wait_status(s: &Setup, within: Duration, pred: impl Fn(&serde_json::Value) -> bool) -> bool {
    wait_until(within, Duration::from_millis(50), || {
        let (_, v) = s.cli_json(&["status"]);
        pred(&v["data"])
    })
}

fn web_of(data: &serde_json::Value) -> &serde_json::Value {
    data["services"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "web"))
        .unwrap_or(&serde_json::Value::Null)
}

#[test]
fn checks_show_each_colours_servers_and_a_dead_live_colour_is_a_fault() {
    let Some(s) = Setup::started(SetupOptions {
        service_extra: "[services.health]\ninter_ms = 100\nrise = 1\nfall = 1\nhttp_path = \"/\"\n"
            .into(),
        ..SetupOptions::default()
    }) else {
        return;
    };
    let cfg = std::fs::read_to_string(s.file("haproxy.cfg")).unwrap();
    assert!(cfg.contains("    option httpchk GET /\n"), "{cfg}");
    assert!(cfg.contains("    http-check expect status 200\n"), "{cfg}");
    assert!(cfg.contains(" check inter 100 rise 1 fall 1\n"), "{cfg}");

    assert!(
        wait_status(&s, Duration::from_secs(10), |d| {
            let h = &web_of(d)["health"];
            h["blue"]["up"] == 1 && h["green"]["up"] == 1
        }),
        "both colours up: {}",
        web(&s)
    );
    assert_eq!(
        s.metric("cutover_servers{service=\"web\",colour=\"blue\",state=\"up\"}"),
        Some(1.0)
    );

    // Blue, the live colour, answers 500 to everything, its check included: HAProxy takes
    // its server down, and status says so as a fault.
    s.blue.set_failing(true);
    assert!(
        wait_status(&s, Duration::from_secs(10), |d| d["fault"]["step"]
            == "health"),
        "no fault: {}",
        web(&s)
    );
    let (_, v) = s.cli_json(&["status"]);
    assert_eq!(
        v["data"]["fault"]["message"],
        "web: live colour blue (web_blue) has no server up (1 down)"
    );
    assert_eq!(web_of(&v["data"])["health"]["blue"]["down"], 1);
    assert_eq!(
        s.metric("cutover_servers{service=\"web\",colour=\"blue\",state=\"down\"}"),
        Some(1.0)
    );
    let human = text(&s.cli(&["status"]));
    assert!(human.contains("FAULT since"), "{human}");
    assert!(human.contains("web      blue    1 down"), "{human}");
    let history = text(&s.cli(&["history"]));
    assert!(history.contains("has no server up"), "{history}");

    s.blue.set_failing(false);
    assert!(
        wait_status(&s, Duration::from_secs(10), |d| d["fault"].is_null()),
        "the fault stays: {}",
        web(&s)
    );
}

#[test]
fn a_drain_ends_in_maintenance_and_a_rollback_takes_it_out() {
    let Some(s) = Setup::started(SetupOptions {
        service_extra: "drain_timeout_ms = 600000\n".into(),
        ..SetupOptions::default()
    }) else {
        return;
    };
    let out = s.cli(&["switch", "web", "green"]);
    assert!(out.status.success(), "{}", text(&out));
    // No request is in flight on blue: its sessions are 0, so the drain ends at once.
    assert!(
        wait_status(&s, Duration::from_secs(10), |d| {
            web_of(d)["drains"][0]["phase"] == "maintenance"
        }),
        "drain not ended: {}",
        web(&s)
    );
    let w = web(&s);
    assert_eq!(w["drains"][0]["colour"], "blue");
    assert_eq!(w["drains"][0]["reason"], "its sessions reached 0");
    let state = s.haproxy().admin_command("show servers state web_blue");
    let row = state
        .lines()
        .rfind(|l| l.contains(" web_blue "))
        .unwrap_or_else(|| panic!("{state}"));
    let admin: u8 = row.split_whitespace().nth(6).unwrap().parse().unwrap();
    assert_eq!(
        admin & 0x01,
        0x01,
        "blue not in forced maintenance: {state}"
    );
    assert!(text(&s.cli(&["history"])).contains("drain of blue (web_blue) ended"));

    // A reload forgets runtime states: the agent puts the ended drain back.
    let reloads = s.reloads();
    s.haproxy().signal(Signal::SIGUSR2);
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || s.reloads() > reloads
    ));
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            s.haproxy()
                .admin_command("show stat -1 4 -1")
                .lines()
                .any(|l| l.starts_with("web_blue,") && l.contains(",MAINT,"))
        }),
        "maintenance not restored after the reload"
    );

    // The gate lets the rollback through (HAProxy does not check servers in maintenance),
    // and blue leaves maintenance before traffic returns to it.
    let out = s.cli(&["rollback", "web"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.get(HOST), (200, "blue".into()));
    assert!(
        wait_status(&s, Duration::from_secs(10), |d| {
            let w = web_of(d);
            w["health"]["blue"]["up"] == 1 && w["drains"][0]["colour"] == "green"
        }),
        "{}",
        web(&s)
    );
}

#[test]
fn nginx_takes_passive_checks_and_reports_its_servers_as_unknown() {
    let Some(s) = Setup::started_on(
        "nginx",
        SetupOptions {
            service_extra: "[services.health]\nmax_fails = 2\nfail_timeout_s = 5\n".into(),
            ..SetupOptions::default()
        },
    ) else {
        return;
    };
    let conf = std::fs::read_to_string(s.file("nginx.conf")).unwrap();
    assert!(conf.contains(" max_fails=2 fail_timeout=5s;"), "{conf}");
    assert_eq!(s.get(HOST), (200, "blue".into()));
    assert!(
        wait_status(&s, Duration::from_secs(10), |d| !web_of(d)["health"]
            .is_null()),
        "{}",
        web(&s)
    );
    let h = &web(&s)["health"];
    assert_eq!(
        (&h["blue"]["unknown"], &h["blue"]["up"]),
        (&1.into(), &0.into())
    );
    assert!(h["blue"]["sessions"].is_null(), "{h}");
    assert_eq!(
        s.metric("cutover_servers{service=\"web\",colour=\"green\",state=\"unknown\"}"),
        Some(1.0)
    );
    // Nothing is known, so nothing is a fault, even with blue failing.
    s.blue.set_failing(true);
    std::thread::sleep(Duration::from_millis(600));
    let (_, v) = s.cli_json(&["status"]);
    assert!(v["data"]["fault"].is_null(), "{v}");
    assert!(text(&s.cli(&["status"])).contains("unknown (1 servers)"));
}
