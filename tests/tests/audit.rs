//! The audit trail and optimistic concurrency against real HAProxy, through the command
//! line: `--reason` and `--if-generation` on routing verbs, the journal naming the user,
//! the verb and the reason, and `history` filtered by user, verb and time.

use cutover_tests::agent::{text, Setup, SetupOptions};
use cutover_tests::require_proxy;
use serde_json::Value;

const HOST: &str = "www.example.test";

fn me() -> String {
    cutover_tests::current_user()
}

/// The entries of `history --json` with `args`.
fn history(s: &Setup, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["history", "--limit", "100"];
    all.extend_from_slice(args);
    let (code, reply) = s.cli_json(&all);
    assert_eq!(code, 0, "{reply}");
    reply["data"]["entries"]
        .as_array()
        .expect("history answers entries")
        .clone()
}

#[test]
fn reason_and_if_generation_through_the_cli_and_history_filters() {
    let haproxy = require_proxy!("haproxy");
    let mut s = Setup::new(&haproxy, SetupOptions::default());
    s.start_agent();
    let generation = s.generation();
    let at = generation.to_string();

    let (code, reply) = s.cli_json(&[
        "switch",
        "web",
        "green",
        "--reason",
        "CHG-1 release 2.3",
        "--if-generation",
        &at,
    ]);
    assert_eq!(code, 0, "{reply}");
    assert_eq!(s.get(HOST), (200, "green".into()));

    // A second pipeline that read the same generation is refused and changes nothing.
    let (code, reply) = s.cli_json(&["rollback", "web", "--if-generation", &at]);
    assert_eq!(code, 1, "{reply}");
    let msg = reply["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!(
            "the state is at generation {}, not {generation} (if_generation)",
            generation + 1
        )),
        "{msg}"
    );
    assert_eq!(s.get(HOST), (200, "green".into()));
    // Its dry run says the same.
    let (code, reply) = s.cli_json(&["rollback", "web", "--dry-run", "--if-generation", &at]);
    assert_eq!(code, 1, "{reply}");
    assert!(reply["message"].as_str().unwrap().contains("if_generation"));

    // Bad reasons: refused by the command line, and by the agent when sent by hand.
    let out = s.cli(&["promote", "web", "--reason", &"x".repeat(257)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("more than 256"), "{}", text(&out));
    let out = s.cli(&["status", "--reason", "why"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let reply = s.agent().request(&serde_json::json!({
        "v": 1, "cmd": "rollback", "service": "web", "reason": "two\nlines"
    }));
    assert_eq!(reply["status"], "error", "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("control character"),
        "{reply}"
    );
    assert_eq!(s.get(HOST), (200, "green".into()));

    let next = (generation + 1).to_string();
    let out = s.cli(&[
        "rollback",
        "web",
        "--reason",
        "CHG-2 bad release",
        "--if-generation",
        &next,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.get(HOST), (200, "blue".into()));

    // The journal: verb, reason and the user's name, filtered in the agent.
    let rollbacks = history(&s, &["--verb", "rollback"]);
    let results: Vec<&str> = rollbacks
        .iter()
        .map(|e| e["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["error", "ok"], "{rollbacks:?}");
    assert_eq!(rollbacks[1]["reason"], "CHG-2 bad release");
    assert_eq!(rollbacks[0]["data"]["if_generation"], generation);
    let switches = history(&s, &["--user", &me(), "--verb", "switch"]);
    assert_eq!(switches.len(), 1, "{switches:?}");
    let switch = &switches[0];
    assert_eq!(switch["verb"], "switch");
    assert_eq!(switch["reason"], "CHG-1 release 2.3");
    assert_eq!(switch["requester"]["user"], me().as_str());
    assert_eq!(switch["requester"]["via"], "socket");
    assert!(switch["requester"]["group"].is_string(), "{switch}");
    assert!(history(&s, &["--user", "no-such-user", "--verb", "switch"]).is_empty());
    assert_eq!(
        history(&s, &["web", "--since", "1h", "--verb", "switch"]).len(),
        1
    );
    assert!(history(&s, &["--since", "2999-01-01T00:00:00Z"]).is_empty());
    assert!(history(&s, &["--until", "1970-01-02T00:00:00Z"]).is_empty());
    let out = s.cli(&["history", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // The table shows the verb and the reason.
    let out = s.cli(&["history", "web", "--verb", "rollback"]);
    let table = text(&out);
    assert!(out.status.success(), "{table}");
    assert!(table.contains("VERB"), "{table}");
    assert!(table.contains("(reason: CHG-2 bad release)"), "{table}");
    assert!(table.contains(&format!("user={}", me())), "{table}");
}
