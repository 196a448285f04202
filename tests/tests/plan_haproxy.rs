//! Plans, declarative state, sticky canaries and pre-warm against real HAProxy.
// Test code: an `unwrap()` that fails is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cutover_tests::agent::{text, Setup, SetupOptions};

const HOST: &str = "www.example.test";

/// Every file HAProxy reads, the journal, and what HAProxy serves from each map.
fn snapshot(s: &Setup) -> (Vec<Vec<u8>>, Vec<u8>, Vec<String>) {
    let files = [
        "haproxy.cfg",
        "maps/routes.map",
        "maps/services.map",
        "maps/idle.map",
        "maps/canary.map",
    ]
    .iter()
    .map(|f| std::fs::read(s.file(f)).unwrap())
    .collect();
    let journal = std::fs::read(s.file("state/history.jsonl")).unwrap_or_default();
    let runtime = ["services", "idle", "canary"]
        .iter()
        .map(|m| {
            s.haproxy()
                .admin_command(&format!(
                    "show map {}",
                    s.file(&format!("maps/{m}.map")).display()
                ))
                .lines()
                .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest).to_owned())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    (files, journal, runtime)
}

#[test]
fn a_dry_run_changes_nothing_and_shows_the_plan() {
    let Some(s) = Setup::started(SetupOptions::default()) else {
        return;
    };
    let before = snapshot(&s);
    let out = s.cli(&["switch", "web", "green", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains("dry run: generation"), "{plan}");
    assert!(plan.contains("service web: blue -> green"), "{plan}");
    assert!(plan.contains("file services"), "{plan}");
    assert!(plan.contains("runtime per key"), "{plan}");
    assert!(plan.contains("~ web web_green"), "{plan}");
    assert!(plan.contains("servers: drain web_blue"), "{plan}");
    assert!(plan.contains("gate: passed for web_green"), "{plan}");
    for (verb, shows) in [
        (
            vec!["canary", "web", "green", "20", "--dry-run"],
            "+canary green 20%",
        ),
        (
            vec!["drain", "web", "green", "--dry-run"],
            "servers: drain web_green",
        ),
    ] {
        let out = s.cli(&verb);
        assert!(out.status.success(), "{verb:?}: {}", text(&out));
        let plan = String::from_utf8_lossy(&out.stdout);
        assert!(plan.contains("dry run: generation"), "{verb:?}: {plan}");
        assert!(plan.contains(shows), "{verb:?}: {plan}");
    }
    assert_eq!(snapshot(&s), before, "a dry run changed something");
    assert_eq!(s.get(HOST).1, "blue");
    // A dry run that would be refused says where.
    let (code, reply) = s.cli_json(&["rollback", "web", "--dry-run"]);
    assert_eq!(code, 1);
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("would be refused at request"),
        "{reply}"
    );
    // --dry-run goes only with verbs that change routing.
    assert_eq!(s.cli(&["status", "--dry-run"]).status.code(), Some(2));
}

/// `web` plus `api` and `shop`, all served by the setup's two origins.
fn setup_three() -> Option<Setup> {
    let mut extra = String::new();
    for name in ["api", "shop"] {
        extra.push_str(&format!(
            "[[services]]\nname = \"{name}\"\nroutes = [\"{name}.example.test\"]\n\
             blue = {{ backend = \"{name}_blue\", servers = [{{ name = \"b1\", address = \"{{blue}}\" }}] }}\n\
             green = {{ backend = \"{name}_green\", servers = [{{ name = \"g1\", address = \"{{green}}\" }}] }}\n"
        ));
    }
    Setup::started(SetupOptions {
        extra_services: extra,
        ..SetupOptions::default()
    })
}

#[test]
fn apply_sets_three_services_in_one_generation() {
    let Some(s) = setup_three() else { return };
    let (_, status) = s.cli_json(&["status"]);
    let gen = status["data"]["generation"].as_u64().unwrap();
    let desired = s.file("desired.toml");
    std::fs::write(
        &desired,
        "[services.web]\nlive = \"green\"\n[services.api]\nlive = \"green\"\n\
         [services.shop]\nlive = \"blue\"\ncanary = { colour = \"green\", percent = 50 }\n",
    )
    .unwrap();
    let path = desired.display().to_string();
    let out = s.cli(&["apply", "-f", &path, "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.get(HOST).1, "blue", "dry run");
    let (code, reply) = s.cli_json(&["apply", "-f", &path]);
    assert_eq!(code, 0, "{reply}");
    assert_eq!(
        reply["data"]["change"]["generation"].as_u64(),
        Some(gen + 1)
    );
    assert_eq!(
        reply["data"]["change"]["services"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert!(reply["data"]["reload"].is_null(), "no reload: {reply}");
    assert_eq!(s.get(HOST).1, "green");
    assert_eq!(s.get("api.example.test").1, "green");
    let (_, status) = s.cli_json(&["status"]);
    let shop = status["data"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "shop")
        .unwrap()
        .clone();
    assert_eq!(shop["canary"]["percent"], 50, "{shop}");
    // An unknown service refuses the whole declaration.
    std::fs::write(
        &desired,
        "[services.web]\nlive = \"blue\"\n[services.nope]\nlive = \"blue\"\n",
    )
    .unwrap();
    let (code, reply) = s.cli_json(&["apply", "-f", &path]);
    assert_eq!(code, 1, "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("unknown service \"nope\""),
        "{reply}"
    );
    assert_eq!(s.get(HOST).1, "green");
}

#[test]
fn a_watched_desired_state_file_is_reconciled_and_a_broken_one_reported() {
    let haproxy = match cutover_tests::require_proxy("haproxy") {
        Some(h) => h,
        None => return,
    };
    let dir = tempfile::tempdir().unwrap();
    let desired = dir.path().join("desired.toml");
    std::fs::write(&desired, "[services.web]\nlive = \"blue\"\n").unwrap();
    let mut s = Setup::new(
        &haproxy,
        SetupOptions {
            agent_extra: format!(
                "desired_state = {:?}\ndesired_debounce_ms = 100",
                desired.display().to_string()
            ),
            ..SetupOptions::default()
        },
    );
    s.start_agent();
    std::fs::write(&desired, "[services.web]\nlive = \"green\"\n").unwrap();
    assert!(
        s.wait_for_body(HOST, "green", Duration::from_secs(10)),
        "{}",
        s.agent().log()
    );
    std::fs::write(&desired, "[services.web]\nlive = \"purple\"\n").unwrap();
    let reported =
        cutover_tests::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            let (_, status) = s.cli_json(&["status"]);
            status["data"]["desired_state"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("purple"))
        });
    assert!(reported, "broken desired state not reported");
    assert_eq!(s.get(HOST).1, "green", "the last good state stays live");
    let (_, history) = s.cli_json(&["history"]);
    let last = history["data"]["entries"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["requester"]["via"], "desired-file", "{last}");
}

#[test]
fn a_sticky_canary_keeps_each_client_on_its_colour() {
    let Some(s) = Setup::started(SetupOptions {
        service_extra: "canary_sticky = { cookie = \"cutover_web\" }\n".into(),
        ..SetupOptions::default()
    }) else {
        return;
    };
    let green = cutover_tests::scenarios::sticky_canary_clients(&s, HOST);
    eprintln!("sticky canary: {green} of 200 clients on green after 30% then 60%");
    assert!((80..=160).contains(&green), "{green}");
}

#[test]
fn a_failing_prewarm_blocks_the_switch() {
    let Some(s) = Setup::started(SetupOptions {
        service_extra:
            "[services.prewarm]\npaths = [\"/\", \"/warm\"]\nrequests = 20\nconcurrency = 4\n"
                .into(),
        ..SetupOptions::default()
    }) else {
        return;
    };
    s.green.set_failing(true);
    let before = s.green.requests();
    let (code, reply) = s.cli_json(&["switch", "web", "green"]);
    assert_eq!(code, 1, "{reply}");
    let msg = reply["message"].as_str().unwrap();
    assert!(msg.contains("pre-warm: 20 of 20 requests failed"), "{msg}");
    assert!(msg.contains("500 on /warm"), "{msg}");
    assert_eq!(
        s.green.requests() - before,
        20,
        "the pre-warm reached green"
    );
    assert_eq!(s.get(HOST).1, "blue");
    s.green.set_failing(false);
    let (code, reply) = s.cli_json(&["switch", "web", "green"]);
    assert_eq!(code, 0, "{reply}");
    assert_eq!(reply["data"]["gates"][0]["prewarm"]["sent"], 20);
    assert_eq!(s.get(HOST).1, "green");
}

/// For every verb, the dry run plans the services and the file edits the real call then
/// makes.
#[test]
fn every_dry_run_plans_what_its_real_call_does() {
    let Some(s) = Setup::started(SetupOptions::default()) else {
        return;
    };
    let edits = |files: &serde_json::Value| -> Vec<(String, u64)> {
        files
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["edits"].as_u64().unwrap_or(0) > 0)
            .map(|f| {
                (
                    f["name"].as_str().unwrap().to_owned(),
                    f["edits"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    for verb in [
        &["switch", "web", "green"][..],
        &["canary", "web", "blue", "20"],
        &["canary", "web", "blue", "40"],
        &["abort", "web"],
        &["drain", "web", "blue"],
        &["undrain", "web", "blue"],
        &["rollback", "web"],
        &["canary", "web", "green", "10"],
        &["promote", "web"],
    ] {
        let mut dry = verb.to_vec();
        dry.push("--dry-run");
        let (code, plan) = s.cli_json(&dry);
        assert_eq!(code, 0, "{verb:?} --dry-run: {plan}");
        let (code, done) = s.cli_json(verb);
        assert_eq!(code, 0, "{verb:?}: {done}");
        assert_eq!(
            plan["data"]["services"], done["data"]["change"]["services"],
            "{verb:?}: planned {plan}\ndone {done}"
        );
        assert_eq!(
            edits(&plan["data"]["files"]),
            edits(&done["data"]["files"]),
            "{verb:?}: planned {plan}\ndone {done}"
        );
        assert!(
            !plan["data"]["services"].as_array().unwrap().is_empty(),
            "{verb:?} plans no change: {plan}"
        );
    }
}

/// The keys (of 400 distinct `X-User` values) that reach `colour`, asserting that every
/// key gets the same answer twice.
fn cohort(s: &Setup, colour: &str) -> std::collections::BTreeSet<usize> {
    let mut cohort = std::collections::BTreeSet::new();
    for key in 0..400usize {
        let user = format!("user-{key}");
        let first = cutover_tests::scenarios::get_with(s, HOST, &[("X-User", &user)]).body;
        let again = cutover_tests::scenarios::get_with(s, HOST, &[("X-User", &user)]).body;
        assert_eq!(first, again, "{user} changed colour within one rollout");
        if first == colour {
            cohort.insert(key);
        }
    }
    cohort
}

#[test]
fn each_rollout_tries_its_release_on_another_cohort_and_each_stays_sticky() {
    let Some(s) = Setup::started(SetupOptions {
        service_extra: "canary_sticky = { header = \"X-User\" }\n".into(),
        ..SetupOptions::default()
    }) else {
        return;
    };
    let seed = |s: &Setup| {
        let (code, status) = s.cli_json(&["status"]);
        assert_eq!(code, 0, "{status}");
        status["data"]["services"][0]["canary"]["seed"]
            .as_u64()
            .unwrap()
    };
    // Rollout 1: green at 20%, then 40%: the same seed, the 20% cohort inside the 40% one.
    assert!(s.cli(&["canary", "web", "green", "20"]).status.success());
    let seed1 = seed(&s);
    let first = cohort(&s, "green");
    assert!((40..=120).contains(&first.len()), "{}", first.len());
    assert!(s.cli(&["canary", "web", "green", "40"]).status.success());
    assert_eq!(seed(&s), seed1);
    let grown = cohort(&s, "green");
    assert!(first.is_subset(&grown), "a canary client left the canary");
    let human = text(&s.cli(&["status"]));
    assert!(
        human.contains(&format!("green 40% seed {seed1}")),
        "{human}"
    );
    // Promoted; blue drained; rollout 2 of the next release goes to blue at 20%.
    assert!(s.cli(&["promote", "web"]).status.success());
    assert!(s.cli(&["drain", "web", "blue"]).status.success());
    let (code, reply) = s.cli_json(&["canary", "web", "blue", "20"]);
    assert_eq!(code, 0, "{reply}");
    let message = reply["message"].as_str().unwrap();
    assert!(
        message.contains("note: blue of web was drained; the canary takes it out of drain"),
        "{message}"
    );
    let seed2 = seed(&s);
    assert_ne!(seed2, seed1);
    let second = cohort(&s, "blue");
    assert!((40..=120).contains(&second.len()), "{}", second.len());
    // Unsalted, the second cohort would be exactly the first; salted, they overlap about
    // as two independent 20% draws do (a fifth of a cohort).
    let shared = first.intersection(&second).count();
    eprintln!(
        "cohorts: {} then {} of 400 keys, {shared} in both",
        first.len(),
        second.len()
    );
    assert!(shared * 2 < first.len().min(second.len()), "{shared}");
}
