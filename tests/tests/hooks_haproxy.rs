//! Hooks against real HAProxy: a switch fires a signed webhook to a receiver on loopback and
//! a command hook with the event on stdin and in its environment; a receiver that never
//! answers does not delay the switch's answer; a hook that cannot deliver is counted as
//! failed; a config reload replaces the hooks.
// An `unwrap()` that fails is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cutover_tests::agent::{text, Setup, SetupOptions};
use cutover_tests::ports::bind_free;
use cutover_tests::{free_addr, require_proxy, scenarios};

const SECRET: &str = "hook-secret";

/// One request a receiver took: its head (lower-cased header names) and body.
struct Received {
    head: String,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads one HTTP request (head and `Content-Length` body) from `s`.
fn read_request(s: &mut TcpStream) -> Received {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("read a request");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("a Content-Length");
            if body.len() >= len || n == 0 {
                return Received {
                    head: head.to_owned(),
                    body: body.to_owned(),
                };
            }
        }
        assert!(n > 0, "the request ended early: {text}");
    }
}

/// A receiver on loopback: every request is handed to the channel; answered 200 when
/// `answer`, else held open unanswered.
fn receiver(answer: bool) -> (SocketAddr, mpsc::Receiver<Received>) {
    let listener: TcpListener = bind_free();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = vec![];
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            let r = read_request(&mut s);
            if tx.send(r).is_err() {
                return;
            }
            if answer {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            } else {
                held.push(s);
            }
        }
    });
    (addr, rx)
}

/// Polls `condition` every 20 ms for at most 10 s.
fn within(condition: impl FnMut() -> bool) -> bool {
    cutover_tests::wait_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        condition,
    )
}

fn hooks_config(
    dir: &std::path::Path,
    chat: SocketAddr,
    hang: SocketAddr,
    closed: SocketAddr,
) -> String {
    std::fs::write(dir.join("hook.secret"), format!("{SECRET}\n")).unwrap();
    let script = format!(
        "cat > {0}/event.json.tmp; env | grep ^CUTOVER_ | sort > {0}/event.env; mv {0}/event.json.tmp {0}/event.json",
        dir.display()
    );
    format!(
        r#"
[[hooks]]
name = "chat"
events = ["switch", "rollback"]
url = "http://{chat}/cutover"
secret_file = "hook.secret"

[[hooks]]
name = "hang"
events = ["switch"]
url = "http://{hang}/"
timeout_ms = 60000
retries = 0

[[hooks]]
name = "closed"
events = ["switch"]
url = "http://{closed}/"
timeout_ms = 1000
retries = 1
backoff_ms = 10

[[hooks]]
name = "script"
events = ["switch"]
command = ["/bin/sh", "-c", {script:?}]
"#
    )
}

#[test]
fn a_switch_fires_its_hooks_and_a_hanging_hook_delays_nothing() {
    let haproxy = require_proxy!("haproxy");
    let (chat, chat_rx) = receiver(true);
    let (hang, hang_rx) = receiver(false);
    // Nothing listens there.
    let closed = free_addr();
    let mut s = Setup::new(&haproxy, SetupOptions::default());
    let dir = s.dir().to_owned();
    s.reconfigure_offline(|c| c + &hooks_config(&dir, chat, hang, closed));
    let out = s.cli(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    s.start_agent();

    let started = Instant::now();
    let out = s.cli(&["switch", "web", "green"]);
    let took = started.elapsed();
    eprintln!("switch answered in {took:?} with a hook that never answers");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.get("www.example.test"), (200, "green".into()));

    // The hanging receiver got the event and has not answered it, yet the switch was
    // answered: its delivery is still under way.
    let held = hang_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the hanging receiver got the switch");
    assert!(held.body.contains("\"event\":\"switch\""), "{}", held.body);
    assert!(took < Duration::from_secs(10), "the switch took {took:?}");
    assert_eq!(
        s.metric("cutover_hook_runs_total{hook=\"hang\",result=\"ok\"}"),
        Some(0.0)
    );
    assert_eq!(
        s.metric("cutover_hook_runs_total{hook=\"hang\",result=\"failed\"}"),
        Some(0.0)
    );

    // The webhook: the event's JSON, signed with the secret.
    let r = chat_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the chat receiver got the switch");
    assert!(
        r.head.starts_with("POST /cutover HTTP/1.1\r\n"),
        "{}",
        r.head
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-cutover-event"), Some("switch"));
    let expected = cutover::hooks::http::signature(SECRET.as_bytes(), r.body.as_bytes());
    assert_eq!(
        r.header("x-cutover-signature"),
        Some(expected.as_str()),
        "{}",
        r.head
    );
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("a JSON body");
    assert_eq!(v["event"], "switch", "{v}");
    assert_eq!(v["service"], "web", "{v}");
    assert_eq!(
        (v["from"].as_str(), v["to"].as_str()),
        (Some("blue"), Some("green")),
        "{v}"
    );
    assert_eq!(v["generation"].as_u64(), Some(s.generation()), "{v}");
    assert_eq!(v["op"], "switch", "{v}");
    assert_eq!(v["who"]["via"], "socket", "{v}");
    assert_eq!(
        v["who"]["uid"].as_u64(),
        Some(u64::from(nix::unistd::getuid().as_raw())),
        "{v}"
    );
    assert!(v["host"].as_str().is_some_and(|h| !h.is_empty()), "{v}");
    assert!(
        v["time_ms"].as_u64().is_some_and(|t| t > 1_600_000_000_000),
        "{v}"
    );

    // The command: the same JSON on stdin, the event in its environment.
    let event_file = dir.join("event.json");
    assert!(within(|| event_file.exists()), "the command hook never ran");
    let stdin: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&event_file).unwrap()).unwrap();
    assert_eq!(stdin, v);
    let env = std::fs::read_to_string(dir.join("event.env")).unwrap();
    for line in [
        "CUTOVER_EVENT=switch",
        "CUTOVER_SERVICE=web",
        "CUTOVER_FROM=blue",
        "CUTOVER_TO=green",
        "CUTOVER_HOOK=script",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} not in:\n{env}");
    }

    // The hook nothing listens for failed twice (one retry) and is counted once.
    let failed = "cutover_hook_runs_total{hook=\"closed\",result=\"failed\"}";
    assert!(
        within(|| s.metric(failed) == Some(1.0)),
        "{:?}",
        s.metric(failed)
    );
    assert!(
        s.agent()
            .wait_for_log("hook failed", Duration::from_secs(5)),
        "{}",
        s.agent().log()
    );
    let ok = |hook: &str| {
        s.metric(&format!(
            "cutover_hook_runs_total{{hook=\"{hook}\",result=\"ok\"}}"
        ))
    };
    assert!(within(
        || ok("chat") == Some(1.0) && ok("script") == Some(1.0)
    ));

    // A rollback reaches only the hook that names it; a canary none.
    let out = s.cli(&["rollback", "web"]);
    assert!(out.status.success(), "{}", text(&out));
    let r = chat_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the rollback");
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        (v["event"].as_str(), v["to"].as_str()),
        (Some("rollback"), Some("blue")),
        "{v}"
    );
    let out = s.cli(&["canary", "web", "green", "10"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        chat_rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "a canary reached chat"
    );
    assert!(
        hang_rx.try_recv().is_err(),
        "a rollback reached the hanging hook"
    );

    // A reload that drops the hooks but chat stops the others and their series.
    s.reconfigure(|c| {
        let cut = c
            .find("\n[[hooks]]\nname = \"hang\"")
            .expect("the hang hook");
        c[..cut].to_owned() + "\n"
    });
    assert!(
        s.agent()
            .wait_for_log("hooks replaced", Duration::from_secs(10)),
        "{}",
        s.agent().log()
    );
    assert_eq!(s.metric(failed), None);
    // chat, kept, has delivered the switch and the rollback.
    assert!(within(|| ok("chat") == Some(2.0)), "{:?}", ok("chat"));
}

#[test]
fn check_names_a_bad_hook_and_changes_nothing() {
    let haproxy = require_proxy!("haproxy");
    let s = Setup::new(&haproxy, SetupOptions::default());
    s.reconfigure_offline(|c| {
        c + "\n[[hooks]]\nname = \"chat\"\nevents = [\"switched\"]\nurl = \"http://127.0.0.1:1/\"\nsecret_file = \"missing.secret\"\n"
    });
    let out = s.cli(&["check"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(
            "hooks[0] (chat).events: \"switched\" is not an event; the events are switch,"
        ),
        "{said}"
    );
    assert!(said.contains("hooks[0] (chat).secret_file: "), "{said}");
    assert!(said.contains("missing.secret"), "{said}");
}

#[test]
fn the_watchs_rollback_fires_auto_rollback_with_the_colours() {
    let haproxy = require_proxy!("haproxy");
    let watch = "[services.watch]\nwindow_ms = 30000\ninterval_ms = 100\nconsecutive = 2\nno_traffic = \"pass\"\n";
    let mut s = Setup::new(
        &haproxy,
        SetupOptions {
            service_extra: watch.into(),
            ..SetupOptions::default()
        },
    );
    let events = s.dir().join("events.jsonl");
    let script = format!("cat >> {0}; echo >> {0}", events.display());
    s.reconfigure_offline(|c| {
        c + &format!(
            "\n[[hooks]]\nname = \"log\"\nevents = [\"auto_rollback\", \"rollback\"]\ncommand = [\"/bin/sh\", \"-c\", {script:?}]\n"
        )
    });
    s.start_agent();
    // Green's only server goes into maintenance: the watch rolls back to blue.
    scenarios::switch_onto_a_dead_green(&s);
    let lines = || std::fs::read_to_string(&events).unwrap_or_default();
    assert!(
        within(|| !lines().trim().is_empty()),
        "no event; {}",
        s.agent().log()
    );
    let all: Vec<serde_json::Value> = lines()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(all.len(), 1, "{all:?}");
    let v = &all[0];
    assert_eq!(v["event"], "auto_rollback", "{v}");
    assert_eq!(
        (v["from"].as_str(), v["to"].as_str()),
        (Some("green"), Some("blue")),
        "{v}"
    );
    assert_eq!(v["who"]["via"], "watch", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("post-switch watch"),
        "{v}"
    );
    assert_eq!(s.get("www.example.test"), (200, "blue".to_owned()));
    let ok = "cutover_hook_runs_total{hook=\"log\",result=\"ok\"}";
    assert!(within(|| s.metric(ok) == Some(1.0)), "{:?}", s.metric(ok));
}
