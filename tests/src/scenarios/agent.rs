//! The agent end to end, the same on both proxies: a switch and its rollback seen by real
//! requests, `status` and `history` after them, a template the proxy refuses, bad requests
//! and bad configs refused without a change, a service with 100,000 routes. Each proxy's test file runs these and adds
//! what only its proxy shows (HAProxy's runtime mechanism, Nginx's reload timings, ...).

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::agent::{text, Setup, SetupOptions};

/// The service every scenario switches.
pub const SERVICE: &str = "web";
/// The second route of `web` in the default [`SetupOptions`].
pub const OTHER_ROUTE: &str = "example.test";

/// Bytes of the main config and the two maps the proxy reads, to prove that a refusal
/// changed nothing.
pub fn live_files(s: &Setup) -> Vec<(String, Vec<u8>)> {
    s.read_files(&s.proxy_files())
}

/// Names of staged files (`*cutover-staged*`) left in the instance directory or its maps.
pub fn staged_leftovers(s: &Setup) -> Vec<String> {
    let mut out = Vec::new();
    for dir in [s.dir().to_owned(), s.file("maps")] {
        for e in std::fs::read_dir(dir).expect("read dir") {
            let name = e
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            if name.contains("cutover-staged") {
                out.push(name);
            }
        }
    }
    out
}

/// Options whose template override directory holds the shipped `template` (e.g.
/// `nginx/nginx.conf`) with `line` inserted right after `after` while web is green; the
/// directory lives as long as the guard.
pub fn green_only(template: &str, after: &str, line: &str) -> (SetupOptions, tempfile::TempDir) {
    let overrides = tempfile::tempdir().expect("temp dir");
    let target = overrides.path().join(template);
    std::fs::create_dir_all(target.parent().expect("template in a directory"))
        .expect("override dir");
    let shipped = std::fs::read_to_string(crate::workspace_root().join("templates").join(template))
        .expect("shipped template");
    assert!(shipped.contains(after), "{template} has no {after:?}");
    let broken = shipped.replace(
        after,
        &format!("{after}{{% if services.web.live == \"green\" %}}{line}\n{{% endif %}}"),
    );
    std::fs::write(target, broken).expect("write override");
    let options = SetupOptions {
        templates_extra: format!(
            "override_dir = {:?}",
            overrides.path().display().to_string()
        ),
        ..SetupOptions::default()
    };
    (options, overrides)
}

/// From blue, switches `web` to green: the reply is ok, and from then on every new
/// connection for `host` (twenty of them) and for the other route gets green. Returns the
/// reply.
pub fn switch_to_green(s: &Setup, host: &str) -> Value {
    assert_eq!(s.get(host), (200, "blue".into()));
    let (code, reply) = s.cli_json(&["switch", SERVICE, "green"]);
    assert_eq!(code, 0, "{reply}");
    // The reply comes after the confirm step: the very next request is green.
    for _ in 0..20 {
        assert_eq!(s.get(host), (200, "green".into()));
    }
    assert_eq!(s.get(OTHER_ROUTE), (200, "green".into()));
    reply
}

/// Rolls `web` back: the reply is ok and `host` gets blue again. Returns the reply.
pub fn roll_back_to_blue(s: &Setup, host: &str) -> Value {
    let (code, reply) = s.cli_json(&["rollback", SERVICE]);
    assert_eq!(code, 0, "{reply}");
    assert_eq!(s.get(host), (200, "blue".into()));
    reply
}

/// After [`switch_to_green`] and [`roll_back_to_blue`]: `status` says blue is live and green
/// previous, and the history holds exactly those two requests over the socket (the agent's
/// own work, `via: agent`, is journaled too). Returns the status and those two entries.
pub fn status_and_history_after_rollback(s: &Setup) -> (Value, Vec<Value>) {
    let (_, status) = s.cli_json(&["status"]);
    let web = &status["data"]["services"][0];
    assert_eq!(
        (web["live"].as_str(), web["previous"].as_str()),
        (Some("blue"), Some("green"))
    );
    let (_, history) = s.cli_json(&["history", SERVICE]);
    let entries: Vec<Value> = history["data"]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["requester"]["via"] == "socket")
        .cloned()
        .collect();
    assert_eq!(entries.len(), 2, "{history}");
    assert_eq!(entries[0]["request"]["op"], "switch");
    assert_eq!(entries[1]["request"]["op"], "rollback");
    (status, entries)
}

/// Switching `web` to its live colour (blue) succeeds and changes nothing.
pub fn switching_to_the_live_colour_changes_nothing(s: &Setup) {
    let before = s.generation();
    let out = s.cli(&["switch", SERVICE, "blue"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        s.generation(),
        before,
        "switching to the live colour changes nothing"
    );
}

/// With a template that breaks the proxy once web is green (see [`green_only`]), the switch
/// is refused at the validate step with a message holding every one of `words` (the
/// proxy's own), and nothing changed: the files the proxy reads, the generation, what
/// `host` gets; the refusal is journaled and no staged file is left.
pub fn a_template_the_proxy_refuses_changes_nothing(s: &Setup, host: &str, words: &[&str]) {
    let files = live_files(s);
    let gen = s.generation();

    let (code, reply) = s.cli_json(&["switch", SERVICE, "green"]);
    assert_eq!(code, 1, "{reply}");
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["data"]["step"], "validate");
    let msg = reply["message"].as_str().expect("message");
    for word in words {
        assert!(msg.contains(word), "{word:?} not in {msg}");
    }

    assert_eq!(live_files(s), files, "live files changed");
    assert_eq!(s.generation(), gen);
    assert_eq!(s.get(host), (200, "blue".into()));
    let (_, history) = s.cli_json(&["history"]);
    let last = history["data"]["entries"]
        .as_array()
        .expect("entries")
        .last()
        .expect("an entry")
        .clone();
    assert_eq!(last["result"], "error");
    assert!(staged_leftovers(s).is_empty(), "{:?}", staged_leftovers(s));
}

/// Malformed, unknown or oversized requests on the agent socket and arguments clap
/// refuses each get a clear error, and none changes anything; the agent still serves.
pub fn bad_requests_are_refused_clearly_and_change_nothing(s: &Setup, host: &str) {
    let files = live_files(s);
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
    let out = s.cli(&["switch", SERVICE, "purple"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    assert_eq!(live_files(s), files);
    assert_eq!(s.generation(), gen);
    assert_eq!(s.get(host), (200, "blue".into()));
    // The agent still serves.
    assert!(s.cli(&["switch", SERVICE, "green"]).status.success());
}

/// `cutover check` passes on the setup's config and refuses each broken edit of it with
/// exit code 64 and the reason; a SIGHUP with a broken config keeps the old one in force,
/// and the agent still switches.
pub fn bad_configs_are_refused_by_check_with_exit_64(s: &Setup, host: &str) {
    let good = std::fs::read_to_string(&s.config).expect("read config");
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
        std::fs::write(&s.config, &edit).expect("write config");
        let out = s.cli(&["check"]);
        assert_eq!(out.status.code(), Some(64), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(want),
            "{want}: {}",
            text(&out)
        );
    }
    // SIGHUP with a bad config keeps the old one in force.
    std::fs::write(&s.config, good.replace("[agent]", "[agent]\nbogus = 1")).expect("write config");
    s.agent().signal(Signal::SIGHUP);
    assert!(s
        .agent()
        .wait_for_log("new config refused", Duration::from_secs(10)));
    let socket = s.agent().socket.display().to_string();
    let out = s.cli(&["--socket", &socket, "switch", SERVICE, "green"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.get(host), (200, "green".into()));
}

/// Routes generated for `web` by [`a_100k_route_service_switches`], besides its first one.
pub const GENERATED_ROUTES: usize = 100_000;

/// With the routes of `web` in a file (`routes_in_file`), makes them `host` plus
/// [`GENERATED_ROUTES`] generated ones and waits until the agent applied them; `loaded` then
/// checks what the proxy made of them. The last generated route answers blue, the switch to
/// green succeeds, and a generated route and `host` answer green. Returns the switch's
/// reply.
pub fn a_100k_route_service_switches(s: &Setup, host: &str, loaded: impl FnOnce(&Setup)) -> Value {
    s.load_generated_routes(host, GENERATED_ROUTES);
    loaded(s);
    let last = format!("h{}.example.test", GENERATED_ROUTES - 1);
    assert_eq!(s.get(&last), (200, "blue".into()));

    let (code, reply) = s.cli_json(&["switch", SERVICE, "green"]);
    assert_eq!(code, 0, "{reply}");
    assert_eq!(s.get("h12345.example.test"), (200, "green".into()));
    assert_eq!(s.get(host), (200, "green".into()));
    reply
}
