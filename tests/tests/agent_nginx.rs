//! The agent end to end against real Nginx 1.22: switches seen by real requests, a
//! template Nginx refuses, a reload that passes `nginx -t` but fails in the master, a
//! 100k-route service, a burst of switches coalesced into few reloads, and drift repair.
//! What both proxies do alike is written once in [`cutover_tests::scenarios::agent`].
// Test code: an `unwrap()` that fails is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use cutover_tests::agent::{text, Setup, SetupOptions};
use cutover_tests::scenarios::agent as scenario;

const HOST: &str = "www.example.test";

fn setup(options: SetupOptions) -> Option<Setup> {
    let nginx = cutover_tests::require_proxy("nginx")?;
    let mut s = Setup::new_nginx(&nginx, options);
    s.start_agent();
    Some(s)
}

/// Options whose template override dir holds the shipped nginx.conf with `extra` inside
/// the main `server` block while web is green; the directory lives as long as the guard.
fn green_only(extra: &str) -> (SetupOptions, tempfile::TempDir) {
    scenario::green_only(
        "nginx/nginx.conf",
        "        listen {{ vars.listen }};\n",
        &format!("        {extra}"),
    )
}

#[test]
fn switch_and_rollback_change_what_requests_get() {
    let Some(s) = setup(SetupOptions::default()) else {
        return;
    };
    let out = s.cli(&["check"]);
    assert!(out.status.success(), "{}", text(&out));

    // The answer comes once no worker of the previous config accepts: every new
    // connection from now on is green.
    let reply = scenario::switch_to_green(&s, HOST);
    let reload = &reply["data"]["reload"];
    let serving = reload["serving_ms"].as_f64().expect("serving time");
    let stopped = reload["old_stopped_ms"].as_f64().expect("old workers time");
    assert!(serving > 0.0 && stopped > 0.0, "{reload}");
    assert!(reply["data"]["validated_by_proxy"].as_bool().unwrap());
    let message = reply["message"].as_str().unwrap();
    assert!(
        message.contains("previous workers stopped accepting after"),
        "{message}"
    );
    let previous: Vec<u64> = reload["previous_workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert!(!previous.is_empty());
    let workers = s.nginx().workers();
    assert!(workers.iter().all(|w| !previous.contains(&u64::from(*w))));

    // The colour that lost its traffic is drained: its servers are down in the config.
    let conf = std::fs::read_to_string(s.file("nginx.conf")).unwrap();
    assert!(
        conf.contains(&format!("server {} down;", s.blue.addr())),
        "{conf}"
    );
    assert!(
        conf.contains(&format!("server {};", s.green.addr())),
        "{conf}"
    );

    scenario::roll_back_to_blue(&s, HOST);
    let conf = std::fs::read_to_string(s.file("nginx.conf")).unwrap();
    assert!(
        conf.contains(&format!("server {};", s.blue.addr())),
        "{conf}"
    );

    let (status, _) = scenario::status_and_history_after_rollback(&s);
    let epoch = &status["data"]["proxy"]["epoch"];
    assert_eq!(
        epoch["generation"], status["data"]["generation"],
        "{status}"
    );
    assert_eq!(epoch["master_pid"], s.nginx().master_pid());
    let human = s.cli(&["status"]);
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("nginx reachable (serving generation"),
        "{}",
        text(&human)
    );

    // Nginx cannot show a map it serves; the desired one is there.
    let (code, live) = s.cli_json(&["map", "show", "services", "--live"]);
    assert_eq!(code, 1, "{live}");
    assert!(
        live["message"]
            .as_str()
            .unwrap()
            .contains("not supported by nginx"),
        "{live}"
    );
    let (code, desired) = s.cli_json(&["map", "show", "services"]);
    assert_eq!(code, 0, "{desired}");
    assert_eq!(desired["data"]["entries"]["web"], "web_blue");

    scenario::switching_to_the_live_colour_changes_nothing(&s);
}

#[test]
fn a_template_that_breaks_nginx_is_refused_with_its_words_and_nothing_changes() {
    let (options, _guard) = green_only("bogus_directive on;");
    let Some(s) = setup(options) else { return };
    let workers = s.nginx().workers();
    scenario::a_template_the_proxy_refuses_changes_nothing(
        &s,
        HOST,
        &["[emerg] unknown directive \"bogus_directive\""],
    );
    assert_eq!(s.nginx().workers(), workers, "nginx was reloaded");
    assert_eq!(s.nginx().reloads_logged(), 0);
}

#[test]
fn bad_requests_are_refused_clearly_and_change_nothing() {
    let Some(s) = setup(SetupOptions::default()) else {
        return;
    };
    scenario::bad_requests_are_refused_clearly_and_change_nothing(&s, HOST);
}

#[test]
fn bad_config_is_refused_by_check_with_exit_64() {
    let Some(s) = setup(SetupOptions::default()) else {
        return;
    };
    scenario::bad_configs_are_refused_by_check_with_exit_64(&s, HOST);
}

#[test]
fn a_reload_the_master_refuses_is_reported_and_rolled_back() {
    // A port that is taken: `nginx -t` tolerates that, the master does not.
    let taken = cutover_tests::ports::bind_free();
    let port = taken.local_addr().unwrap().port();
    let (options, _guard) = green_only(&format!("listen 127.0.0.1:{port};"));
    let Some(s) = setup(options) else { return };
    let files = scenario::live_files(&s);
    let gen = s.generation();

    let (code, reply) = s.cli_json(&["switch", "web", "green"]);
    assert_eq!(code, 1, "{reply}");
    assert_eq!(reply["data"]["step"], "apply", "{reply}");
    let msg = reply["message"].as_str().unwrap();
    assert!(msg.contains("nginx refused the new config"), "{msg}");
    assert!(
        msg.contains(&format!(
            "[emerg] bind() to 127.0.0.1:{port} failed (98: Address already in use)"
        )),
        "{msg}"
    );
    assert_eq!(
        scenario::live_files(&s),
        files,
        "the previous files are back"
    );
    assert_eq!(s.generation(), gen);
    assert_eq!(s.get(HOST), (200, "blue".into()));
    let (_, status) = s.cli_json(&["status"]);
    assert_eq!(
        status["data"]["proxy"]["epoch"]["generation"], gen,
        "{status}"
    );

    // Once the port is free, the same switch goes through.
    drop(taken);
    let out = s.cli(&["switch", "web", "green"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.get(HOST), (200, "green".into()));
}

#[test]
fn checker_warnings_reach_the_caller() {
    // Three routes cannot share one 64-byte bucket: Nginx warns, and still loads the map.
    let Some(s) = setup(SetupOptions {
        routes: vec![
            "www.example.test".into(),
            "example.test".into(),
            "api.example.test".into(),
        ],
        vars_extra: ", map_hash_max_size = 1, map_hash_bucket_size = 64".into(),
        ..SetupOptions::default()
    }) else {
        return;
    };
    let (code, reply) = s.cli_json(&["switch", "web", "green"]);
    assert_eq!(code, 0, "{reply}");
    let warnings = reply["data"]["warnings"].as_array().expect("warnings");
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("could not build optimal map_hash")),
        "{reply}"
    );
    let out = s.cli(&["switch", "web", "blue"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("warning: [warn] could not build optimal map_hash"),
        "{}",
        text(&out)
    );
    assert_eq!(s.get("api.example.test"), (200, "blue".into()));
}

#[test]
fn a_100k_route_service_switches_without_hash_warnings() {
    let Some(s) = setup(SetupOptions {
        routes_in_file: true,
        ..SetupOptions::default()
    }) else {
        return;
    };
    let reply = scenario::a_100k_route_service_switches(&s, HOST, |s| {
        assert!(
            !s.agent().log().contains("could not build"),
            "{}",
            s.agent().log()
        );
        let map = std::fs::read_to_string(s.routes_map()).unwrap();
        assert_eq!(
            map.lines().filter(|l| l.ends_with(" web;")).count(),
            100_001
        );
    });
    assert!(reply["data"].get("warnings").is_none(), "{reply}");
    assert!(!s.nginx().error_log().contains("could not build"));
}

/// Sends one request line on a new connection and keeps it open for the answer.
fn send(socket: &std::path::Path, line: &str) -> UnixStream {
    let mut c = UnixStream::connect(socket).expect("connect agent socket");
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    c.write_all(format!("{line}\n").as_bytes()).unwrap();
    c
}

#[test]
fn a_burst_of_switches_is_coalesced_into_few_reloads() {
    let Some(s) = setup(SetupOptions::default()) else {
        return;
    };
    let gen = s.generation();
    let before = s.nginx().reloads_logged();
    let (_, status) = s.cli_json(&["status"]);
    assert_eq!(status["data"]["services"][0]["live"], "blue");
    // 20 switches, 2 ms apart, alternating from the live colour (blue) to green. The
    // first that changes something starts a reload (over 100 ms); the others queue behind
    // it.
    let colours: Vec<&str> = (0..20)
        .map(|i| if i % 2 == 1 { "green" } else { "blue" })
        .collect();
    let conns: Vec<UnixStream> = colours
        .iter()
        .map(|c| {
            let line = format!(r#"{{"cmd":"switch","service":"web","colour":"{c}"}}"#);
            let conn = send(&s.agent().socket, &line);
            std::thread::sleep(Duration::from_millis(2));
            conn
        })
        .collect();
    let replies: Vec<serde_json::Value> = conns
        .into_iter()
        .map(|c| {
            let mut line = String::new();
            BufReader::new(c).read_line(&mut line).unwrap();
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
        })
        .collect();
    for r in &replies {
        assert_eq!(r["status"], "ok", "{r}");
    }
    let reloads = s.nginx().reloads_logged() - before;
    eprintln!("{reloads} reloads for 20 switches");
    assert!(
        (1..=4).contains(&reloads),
        "{reloads} reloads for 20 switches"
    );
    let most = replies
        .iter()
        .map(|r| r["data"]["batched"].as_u64().unwrap_or(1))
        .max()
        .unwrap();
    assert!(most >= 10, "largest batch {most}");

    // Every request has its journal line, in the order the agent applied them. That is
    // the order it read them in, not always the order they were sent: each connection's
    // handshake (peer credentials, the user database) runs on its own, so two requests on
    // separate connections 2 ms apart may swap on a loaded machine. The generations and the
    // end state follow the journal's order: each request asking for another colour than
    // the live one makes a generation, one asking for the live colour changes nothing.
    let (_, history) = s.cli_json(&["history", "--limit", "20"]);
    let entries = history["data"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 20, "{history}");
    let mut applied: Vec<&str> = Vec::new();
    let (mut live, mut expected) = ("blue", gen);
    for e in entries {
        assert_eq!(e["result"], "ok", "{e}");
        assert_eq!(e["request"]["op"], "switch", "{e}");
        let colour = e["request"]["colour"].as_str().unwrap();
        if colour != live {
            (live, expected) = (colour, expected + 1);
        }
        assert_eq!(e["generation"], expected, "{history}");
        applied.push(colour);
    }
    applied.sort_unstable();
    let mut sent = colours.clone();
    sent.sort_unstable();
    assert_eq!(applied, sent, "each request applied once");
    eprintln!(
        "{} of 20 switches changed the live colour in the order applied",
        expected - gen
    );
    // It ends in the state the last one applied asked for, seen by requests and by status.
    assert_eq!(s.generation(), expected);
    assert_eq!(s.get(HOST), (200, live.into()));
    let (_, status) = s.cli_json(&["status"]);
    assert_eq!(status["data"]["services"][0]["live"], live);
}

#[test]
fn drift_made_by_hand_is_repaired() {
    let Some(s) = setup(SetupOptions::default()) else {
        return;
    };
    // Someone edits the map and reloads Nginx behind the agent's back.
    std::fs::write(s.services_map(), "web web_green;\n").unwrap();
    assert!(s.nginx().reload(Duration::from_secs(5)));
    assert!(
        s.agent().wait_for_log("repaired", Duration::from_secs(10)),
        "{}",
        s.agent().log()
    );
    assert!(s.wait_for_body(HOST, "blue", Duration::from_secs(5)));
    assert!(std::fs::read_to_string(s.services_map())
        .unwrap()
        .contains("web web_blue;"));
}

#[test]
fn a_config_without_the_upstreams_a_map_names_is_refused_by_check_and_sighup() {
    let Some(s) = setup(SetupOptions::default()) else {
        return;
    };
    // Green live, then the shipped nginx.conf defining only the blue upstreams, while the
    // services map names web_green.
    assert!(s.cli(&["switch", "web", "green"]).status.success());
    let shipped =
        std::fs::read_to_string(cutover_tests::workspace_root().join("templates/nginx/nginx.conf"))
            .unwrap();
    let from = "{% for colour, c in service.colours %}\n    upstream";
    assert!(shipped.contains(from), "the upstreams loop moved");
    let t = shipped.replacen(
        from,
        "{% for colour, c in service.colours %}{% if colour == \"blue\" %}\n    upstream",
        1,
    );
    let end = t.rfind("{% endfor %}{% endfor %}").unwrap();
    let blue_only = format!("{}{{% endif %}}{}", &t[..end], &t[end..]);
    let overrides = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(overrides.path().join("nginx")).unwrap();
    std::fs::write(overrides.path().join("nginx/nginx.conf"), blue_only).unwrap();
    let good = std::fs::read_to_string(&s.config).unwrap();
    let bad = good.replacen(
        "[templates]\n",
        &format!(
            "[templates]\noverride_dir = {:?}\n",
            overrides.path().display().to_string()
        ),
        1,
    );
    let want =
        "map services: key \"web\" names backend \"web_green\", which the checked nginx config";
    let copy = s.dir().join("bad.toml");
    std::fs::write(&copy, &bad).unwrap();
    let out = cutover_tests::agent::cutover(&copy, &["check"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains(want), "{}", text(&out));

    let before = std::fs::read(s.file("nginx.conf")).unwrap();
    std::fs::write(&s.config, &bad).unwrap();
    let out = s.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(want), "{}", text(&out));
    assert_eq!(std::fs::read(s.file("nginx.conf")).unwrap(), before);
    std::fs::write(&s.config, &good).unwrap();
    assert!(s.cli(&["switch", "web", "blue"]).status.success());
    assert_eq!(s.get(HOST), (200, "blue".into()));
}

/// `proxy.epoch.reloads` counts the master's reloads, the agent's and another's, as the
/// master's own log counts the `SIGHUP`s it received.
#[test]
fn status_counts_the_reloads_of_nginx() {
    let Some(s) = setup(SetupOptions::default()) else {
        return;
    };
    let reloads = || {
        let (code, status) = s.cli_json(&["status"]);
        assert_eq!(code, 0, "{status}");
        status["data"]["proxy"]["epoch"]["reloads"]
            .as_u64()
            .unwrap()
    };
    let at_start = reloads();
    assert_eq!(at_start as usize, s.nginx().reloads_logged());
    scenario::switch_to_green(&s, HOST);
    scenario::roll_back_to_blue(&s, HOST);
    assert_eq!(
        reloads(),
        at_start + 2,
        "the switch and the rollback reloaded"
    );
    assert_eq!(reloads() as usize, s.nginx().reloads_logged());
    // A reload by someone else counts once the agent has seen the new workers.
    assert!(s.nginx().reload(Duration::from_secs(10)));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while reloads() != at_start + 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(reloads(), at_start + 3);
    assert_eq!(reloads() as usize, s.nginx().reloads_logged());
}
