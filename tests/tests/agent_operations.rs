//! The agent as operators run it, against real HAProxy: the metrics endpoint and `cutover
//! metrics` after a switch, the systemd notifications (readiness, watchdog, reload, stop)
//! on a notification socket, and the log formats (JSON, and text under the journal).

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use cutover_tests::agent::{json_output, text, Setup, SetupOptions};
use cutover_tests::{free_port, require_proxy};
use nix::sys::signal::Signal;

const HOST: &str = "www.example.test";

/// `GET /metrics` on the agent's endpoint: status, content type and body.
fn scrape(s: &Setup, port: u16) -> (u16, String, String) {
    let r = s.scrape(port, &[]);
    let content_type = r.header("content-type").unwrap_or_default().to_owned();
    (r.status, content_type, r.body)
}

/// The value of the series whose line starts with `series ` (exact labels).
fn value(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn families(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn metrics_move_with_a_switch_over_http_and_the_socket() {
    let haproxy = require_proxy!("haproxy");
    let port = free_port();
    let mut s = Setup::new(&haproxy, SetupOptions::serving_metrics(port));
    s.start_agent();
    let ok = "cutover_switches_total{service=\"web\",result=\"ok\"}";
    let green = "cutover_live_colour{service=\"web\",colour=\"green\"}";
    let blue = "cutover_live_colour{service=\"web\",colour=\"blue\"}";

    let (status, content_type, before) = scrape(&s, port);
    assert_eq!(status, 200, "{before}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert_eq!(value(&before, ok), Some(0.0), "{before}");
    assert_eq!(value(&before, blue), Some(1.0), "{before}");
    assert_eq!(value(&before, green), Some(0.0), "{before}");

    let out = s.cli(&["switch", "web", "green"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.get(HOST), (200, "green".into()));

    let after = scrape(&s, port).2;
    assert_eq!(value(&after, ok), Some(1.0), "{after}");
    assert_eq!(value(&after, green), Some(1.0), "{after}");
    assert_eq!(value(&after, blue), Some(0.0), "{after}");
    assert_eq!(
        value(&after, "cutover_applies_total{result=\"ok\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&after, "cutover_apply_duration_seconds_count"),
        Some(1.0)
    );
    assert_eq!(value(&after, "cutover_proxy_up"), Some(1.0), "{after}");
    assert_eq!(value(&after, "cutover_peers"), Some(0.0), "{after}");

    // The same families and values over the control socket.
    let out = s.cli(&["metrics"]);
    assert!(out.status.success(), "{}", text(&out));
    let over_socket = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(families(&over_socket), families(&after));
    assert!(families(&after).len() >= 14, "{after}");
    for series in [ok, green, blue] {
        assert_eq!(
            value(&over_socket, series),
            value(&after, series),
            "{series}"
        );
    }
    let (code, reply) = s.cli_json(&["metrics"]);
    assert_eq!(code, 0, "{reply}");
    assert!(reply["data"]["content_type"]
        .as_str()
        .is_some_and(|t| t.starts_with("application/openmetrics-text")));

    let out = s.cli(&["rollback", "web"]);
    assert!(out.status.success(), "{}", text(&out));
    let rolled_back = scrape(&s, port).2;
    assert_eq!(
        value(
            &rolled_back,
            "cutover_rollbacks_total{reason=\"requested\"}"
        ),
        Some(1.0),
        "{rolled_back}"
    );
    assert_eq!(value(&rolled_back, blue), Some(1.0));
}

/// Datagrams received on a notification socket until one contains `needle`.
fn wait_for(socket: &UnixDatagram, needle: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = message.contains(needle);
            seen.push(message);
            if done {
                return seen;
            }
        }
    }
    panic!("no notification with {needle:?} within {within:?}; got {seen:?}");
}

#[test]
fn systemd_notifications_ready_watchdog_reload_and_stop() {
    let haproxy = require_proxy!("haproxy");
    let mut s = Setup::new(&haproxy, SetupOptions::default());
    let path = s.file("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind notification socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let path = path.display().to_string();
    // A 400 ms watchdog: the agent pings every 200 ms.
    s.start_agent_with_env(&[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "400000")]);

    let first = wait_for(&socket, "READY=1", Duration::from_secs(10));
    assert!(
        first.last().unwrap().contains("STATUS=serving"),
        "{first:?}"
    );
    let pings = wait_for(&socket, "WATCHDOG=1", Duration::from_secs(2));
    assert_eq!(pings, vec!["WATCHDOG=1\n".to_owned()]);
    wait_for(&socket, "WATCHDOG=1", Duration::from_secs(2));

    s.agent().signal(Signal::SIGHUP);
    let reload = wait_for(&socket, "RELOADING=1", Duration::from_secs(5));
    assert!(
        reload.last().unwrap().contains("MONOTONIC_USEC="),
        "{reload:?}"
    );
    let ready = wait_for(&socket, "READY=1", Duration::from_secs(10));
    assert!(
        ready.last().unwrap().contains("config reloaded"),
        "{ready:?}"
    );

    // A config that does not load is refused; the agent says so and stays ready.
    s.reconfigure(|c| c.replace("[[services]]", "[[services]]\nbogus = 1"));
    let refused = wait_for(&socket, "READY=1", Duration::from_secs(10));
    assert!(refused.last().unwrap().contains("refused"), "{refused:?}");

    assert_eq!(s.stop_agent(), Some(0));
    wait_for(&socket, "STOPPING=1", Duration::from_secs(2));
}

#[test]
fn json_logs_are_one_object_per_line() {
    let haproxy = require_proxy!("haproxy");
    let mut s = Setup::new(&haproxy, SetupOptions::default());
    s.start_agent_with_env(&[("CUTOVER_LOG_FORMAT", "json")]);
    let out = s.cli(&["switch", "web", "green"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = s.cli(&["switch", "nosuch", "green"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(s.stop_agent(), Some(0));
    let log = std::fs::read_to_string(s.file("agent.log")).expect("agent log");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(lines.iter().all(|l| l["timestamp"].is_string()), "{log}");
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["message"].as_str() == Some("listening")),
        "{log}"
    );
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("web blue -> green"))),
        "{log}"
    );
    // The change event carries its facts as fields, not in its sentence alone.
    let change = lines
        .iter()
        .find(|l| l["verb"] == "switch")
        .unwrap_or_else(|| panic!("no change event with fields in:\n{log}"));
    assert_eq!(change["service"], "web", "{change}");
    assert_eq!(change["from"], "blue", "{change}");
    // The switch drains the old colour.
    assert_eq!(change["to"], "green, blue drained", "{change}");
    assert!(
        change["generation"].as_u64().is_some_and(|g| g >= 1),
        "{change}"
    );
    let uid = format!("uid {}", nix::unistd::getuid().as_raw());
    assert!(
        change["user"].as_str().is_some_and(|u| u.contains(&uid)),
        "{change}"
    );
    let refused = lines
        .iter()
        .find(|l| l["verb"] == "switch" && l["level"] == "WARN")
        .unwrap_or_else(|| panic!("no refused change event in:\n{log}"));
    assert_eq!(refused["service"], "nosuch", "{refused}");
    assert_eq!(refused["step"], "request", "{refused}");
}

#[test]
fn text_logs_under_the_journal_carry_priorities_and_no_timestamps() {
    let haproxy = require_proxy!("haproxy");
    let mut s = Setup::new(&haproxy, SetupOptions::default());
    // systemd sets JOURNAL_STREAM to the device and inode of the stream it gives the
    // service as stderr; here that stream is the log file.
    let log = s.file("agent.log");
    std::fs::write(&log, "").expect("create log");
    let meta = std::fs::metadata(&log).expect("log metadata");
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    s.start_agent_with_env(&[("JOURNAL_STREAM", &stream)]);
    let out = s.cli(&["switch", "nosuch", "green"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(s.stop_agent(), Some(0));
    let text = std::fs::read_to_string(&log).expect("agent log");
    assert!(!text.is_empty());
    for line in text.lines() {
        let priority = line.get(..3).unwrap_or_default();
        assert!(["<3>", "<4>", "<6>", "<7>"].contains(&priority), "{line:?}");
        assert!(
            !line[3..].trim_start().starts_with("20"),
            "timestamp: {line:?}"
        );
        assert!(!line.contains('\u{1b}'), "ANSI: {line:?}");
    }
    assert!(text.contains("<6>") && text.contains("listening"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("<4>") && l.contains("change refused")),
        "{text}"
    );
}

#[test]
fn a_sighup_that_needs_a_restart_is_refused_counted_and_changes_nothing() {
    let Some(mut s) = Setup::started(SetupOptions::default()) else {
        return;
    };
    let refused = "cutover_config_reloads_total{result=\"refused\"}";
    let ok = "cutover_config_reloads_total{result=\"ok\"}";
    assert_eq!(s.metric(refused), Some(0.0));
    let state_dir = s.file("state").display().to_string();
    let original = std::fs::read_to_string(&s.config).unwrap();
    s.reconfigure(|c| c.replace(&state_dir, &format!("{state_dir}-elsewhere")));
    assert!(
        s.agent()
            .wait_for_log("change only with a restart", Duration::from_secs(10)),
        "{}",
        s.agent().log()
    );
    assert!(cutover_tests::wait_until(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || s.metric(refused) == Some(1.0)
    ));
    // The old config stays in force: same state, and changes still work.
    assert!(s.cli(&["switch", "web", "green"]).status.success());
    assert!(s.file("state/state.json").exists());
    assert!(!std::path::Path::new(&format!("{state_dir}-elsewhere")).exists());
    // The config as it was loads again.
    s.reconfigure(|_| original);
    assert!(cutover_tests::wait_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || s.metric(ok) == Some(1.0)
    ));
    assert_eq!(s.get("www.example.test").1, "green");
    assert_eq!(s.stop_agent(), Some(0));
}

#[test]
fn scripts_get_a_json_error_for_every_failure_and_a_fault_exit_code() {
    let haproxy = require_proxy!("haproxy");
    let port = free_port();
    let mut s = Setup::new(
        &haproxy,
        SetupOptions {
            reconcile_interval_ms: 100,
            ..SetupOptions::serving_metrics(port)
        },
    );
    s.start_agent();
    assert_eq!(s.cli_json(&["status"]).0, 0);

    // Refused by the agent: its reply, exit 1.
    let (code, v) = s.cli_json(&["switch", "nosuch", "green"]);
    assert_eq!((code, &v["status"]), (1, &"error".into()), "{v}");
    // A config that does not exist: no fall-back to the default socket.
    let missing = s.file("nosuch.toml");
    let (code, v) = json_output(&cutover_tests::agent::cutover(
        &missing,
        &["--json", "status"],
    ));
    assert_eq!(code, 64, "{v}");
    assert_eq!(
        v["data"],
        serde_json::json!({"exit": 64, "error": "config"})
    );
    assert!(
        v["message"].as_str().unwrap().contains("does not exist"),
        "{v}"
    );
    // The agent unreachable.
    let gone = s.file("gone.sock").display().to_string();
    let (code, v) = json_output(&s.cli(&["--socket", &gone, "--json", "status"]));
    assert_eq!(code, 69, "{v}");
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["data"]["error"], "unavailable", "{v}");
    // Bad usage, found by clap or by the verb.
    for args in [&["--json", "status", "--dry-run"][..], &["--json", "swich"]] {
        let (code, v) = json_output(&s.cli(args));
        assert_eq!(
            (code, &v["data"]["error"]),
            (2, &"usage".into()),
            "{args:?}: {v}"
        );
    }
    let out = s.cli(&["status", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(out.stdout.is_empty() && text(&out).contains("--dry-run does not go with `status`"));

    // A fault: `status` answers and exits 3, with and without --json; the gauge says so.
    assert_eq!(value(&scrape(&s, port).2, "cutover_fault"), Some(0.0));
    s.haproxy_mut().kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let (code, v) = s.cli_json(&["status"]);
        if code == 3 {
            break v;
        }
        assert_eq!(code, 0, "{v}");
        assert!(Instant::now() < deadline, "no fault reported: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(v["data"]["fault"]["step"], "proxy", "{v}");
    let out = s.cli(&["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(value(&scrape(&s, port).2, "cutover_fault"), Some(1.0));
}

/// The bash completion, as `cutover generate completions bash` writes it, offers the
/// running agent's services as the SERVICE of a routing verb (with `--config` passed on
/// from the line), and nothing once no agent answers.
#[test]
fn bash_completes_service_names_from_the_running_agent() {
    let Some(mut s) = Setup::started(SetupOptions::default()) else {
        return;
    };
    if std::process::Command::new("bash")
        .arg("--version")
        .output()
        .is_err()
    {
        return;
    }
    // `generate` works on local files only: no --config.
    let out = std::process::Command::new(cutover_tests::cutover_binary())
        .args(["generate", "completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let script = s.file("cutover.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let bin = s.file("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(cutover_tests::cutover_binary(), bin.join("cutover")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let config = s.config.display().to_string();
    let complete = |words: &[&str]| -> String {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(
                r#"source "$0"
                COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
                _cutover_with_services cutover "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
                printf '%s\n' "${COMPREPLY[@]}""#,
            )
            .arg(&script)
            .args(words)
            .env("PATH", &path)
            .env_remove("CUTOVER_CONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    for verb in ["switch", "rollback", "canary", "drain"] {
        assert_eq!(
            complete(&["cutover", "--config", &config, verb, ""]),
            "web\n",
            "{verb}"
        );
    }
    assert_eq!(
        complete(&["cutover", "--config", &config, "switch", "w"]),
        "web\n"
    );
    assert_eq!(
        complete(&["cutover", "--config", &config, "switch", "x"]),
        "\n"
    );
    // After the service, the grammar's own completion (the colours), not the names.
    let colours = complete(&["cutover", "--config", &config, "switch", "web", ""]);
    assert!(
        colours.contains("green") && !colours.contains("web"),
        "{colours}"
    );
    // A verb without a service, and no agent: no names, nothing printed.
    assert!(!complete(&["cutover", "--config", &config, "status", ""]).contains("web"));
    s.stop_agent();
    assert_eq!(
        complete(&["cutover", "--config", &config, "switch", ""]),
        "\n"
    );
    let out = s.cli(&["services"]);
    assert_eq!(out.status.code(), Some(69));
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        text(&out)
    );
}
