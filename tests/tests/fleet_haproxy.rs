//! The fleet store against real etcd and real HAProxy: five hosts follow one site's
//! records; changes come from the command line alone (`--etcd`) or from an agent
//! (`--cluster`); faults (a dead proposer, garbage in etcd, etcd down under traffic, a
//! compaction past a host's revision, a local divergence) change nothing that should not
//! change, and the hosts recover by themselves.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use cutover_tests::agent::text;
use cutover_tests::fleet::{Fleet, HOST, PREFIX};
use nix::sys::signal::Signal;

const SETTLE: Duration = Duration::from_secs(15);

#[test]
fn a_fleet_switch_canary_promote_and_rollback_reach_every_host() {
    let Some(fleet) = Fleet::single(5) else {
        return;
    };
    assert!(fleet.wait_all("blue", SETTLE), "{:?}", fleet.bodies());

    // The command line alone, no agent: every live host confirms before the answer.
    let (code, v) = fleet.cli_json(&["switch", "web", "green"]);
    assert_eq!(code, 0, "{v}\n{}", fleet.logs());
    assert_eq!(v["data"]["phase"], "commit");
    assert_eq!(v["data"]["cluster_generation"], 1);
    assert_eq!(v["data"]["hosts"].as_object().unwrap().len(), 5);
    assert_eq!(v["data"]["missed"], serde_json::json!([]));
    assert_eq!(
        fleet.bodies(),
        vec!["green"; 5],
        "answered before every host served it"
    );
    assert_eq!(fleet.generation(), 1);

    // From an agent, with --cluster.
    let out = fleet.hosts[2].cli(&["canary", "web", "blue", "20", "--cluster"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = fleet.hosts[0].cli(&["promote", "web", "--cluster"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fleet.bodies(), vec!["blue"; 5]);
    let out = fleet.cli(&["rollback", "web"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fleet.bodies(), vec!["green"; 5]);
    assert_eq!(fleet.generation(), 4);

    // The fleet's view, from etcd: five live hosts at generation 4, all agreeing.
    let (code, v) = fleet.cli_json(&["status"]);
    assert_eq!(code, 0, "{v}");
    let hosts = v["data"]["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 5);
    assert!(hosts.iter().all(|h| h["cluster_generation"] == 4), "{v}");
    assert_eq!(v["data"]["services"]["web"]["agree"], true, "{v}");
    // The log of committed changes, newest first.
    let (code, v) = fleet.hosts[4].cli_json(&["history", "--cluster"]);
    assert_eq!(code, 0, "{v}");
    let log = v["data"]["fleet"].as_array().unwrap();
    let verbs: Vec<&str> = log
        .iter()
        .map(|c| c["request"]["op"].as_str().unwrap())
        .collect();
    assert_eq!(verbs, ["rollback", "promote", "canary", "switch"]);
    assert_eq!(log[0]["by"], "ci");
    assert_eq!(log[1]["by"], "lb1");
    // Each host journaled what it applied and why.
    let (_, v) = fleet.hosts[3].cli_json(&["history"]);
    let vias: Vec<String> = v["data"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["requester"]["via"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(vias.iter().any(|v| v == "fleet:ci"), "{vias:?}");
    assert_eq!(
        fleet.hosts[1].metric("cutover_store_up{store=\"etcd\"}"),
        Some(1.0)
    );
    assert_eq!(fleet.hosts[1].metric("cutover_fleet_generation"), Some(4.0));
}

/// Who asked the proposing agent, the verb and the reason reach the journal of every host,
/// and a change on a stale fleet generation is refused before any vote.
#[test]
fn every_host_journals_who_asked_for_a_fleet_change_and_why() {
    let Some(fleet) = Fleet::single(3) else {
        return;
    };
    assert!(fleet.wait_all("blue", SETTLE), "{:?}", fleet.bodies());
    let me = cutover_tests::current_user();
    let out = fleet.hosts[0].cli(&[
        "switch",
        "web",
        "green",
        "--cluster",
        "--reason",
        "CHG-7 fleet release",
        "--if-generation",
        "0",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fleet.bodies(), vec!["green"; 3]);
    // A pipeline that read generation 0 is refused, from the command line alone too.
    let (code, v) = fleet.cli_json(&["rollback", "web", "--if-generation", "0"]);
    assert_eq!(code, 1, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("the fleet generation is at generation 1, not 0"),
        "{v}"
    );
    let out = fleet.hosts[2].cli(&["rollback", "web", "--cluster", "--reason", "CHG-8 back"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fleet.bodies(), vec!["blue"; 3]);
    assert_eq!(fleet.generation(), 2);
    for (i, host) in fleet.hosts.iter().enumerate() {
        for (verb, reason) in [
            ("switch", "CHG-7 fleet release"),
            ("rollback", "CHG-8 back"),
        ] {
            let (code, v) = host.cli_json(&["history", "--user", &me, "--verb", verb]);
            assert_eq!(code, 0, "host {i}: {v}");
            let entries = v["data"]["entries"].as_array().unwrap();
            assert_eq!(entries.len(), 1, "host {i} {verb}: {entries:?}");
            let e = &entries[0];
            assert_eq!(e["result"], "ok", "host {i}: {e}");
            assert_eq!(e["request"]["op"], "set", "host {i}: carried as records");
            assert!(
                e["requester"]["via"]
                    .as_str()
                    .unwrap()
                    .starts_with("fleet:"),
                "host {i}: {e}"
            );
            assert_eq!(e["asked_by"]["user"], me.as_str(), "host {i}: {e}");
            assert_eq!(e["reason"], reason, "host {i}: {e}");
        }
    }
}

#[test]
fn refusals_change_nothing_anywhere() {
    let Some(fleet) = Fleet::single(3) else {
        return;
    };
    // A change the state refuses on every host.
    let (code, v) = fleet.cli_json(&["rollback", "web"]);
    assert_ne!(code, 0, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("no previous colour"),
        "{v}"
    );
    // A service no host serves.
    let (code, v) = fleet.cli_json(&["switch", "nope", "green"]);
    assert_ne!(code, 0, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("no live host serves nope"),
        "{v}"
    );
    // A dry run: every host votes, nothing is committed.
    let (code, v) = fleet.cli_json(&["switch", "web", "green", "--dry-run"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["data"]["phase"], "prepare");
    assert_eq!(fleet.generation(), 0);
    assert_eq!(fleet.bodies(), vec!["blue"; 3]);
    // A local change without --local or --cluster is refused on a fleet host.
    let out = fleet.hosts[0].cli(&["switch", "web", "green"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--local"), "{}", text(&out));
    // Nothing was left behind in etcd: no proposal, no vote.
    assert!(fleet
        .etcd
        .get_prefix(&format!("{PREFIX}/proposals/"))
        .is_empty());
    assert!(fleet
        .etcd
        .get_prefix(&format!("{PREFIX}/votes/"))
        .is_empty());
}

#[test]
fn a_proposer_killed_after_its_proposal_changes_nothing() {
    let Some(fleet) = Fleet::single(3) else {
        return;
    };
    // lb3 cannot vote while it is stopped, so the proposer waits on it.
    fleet.hosts[2].agent().signal(Signal::SIGSTOP);
    let mut proposer = fleet
        .command(
            &fleet.etcd.endpoints_csv(),
            &["switch", "web", "green", "--vote-ms", "30000"],
        )
        .spawn()
        .unwrap();
    let proposals = format!("{PREFIX}/proposals/");
    assert!(cutover_tests::wait_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || !fleet.etcd.get_prefix(&proposals).is_empty()
    ));
    proposer.kill().unwrap();
    proposer.wait().unwrap();
    fleet.hosts[2].agent().signal(Signal::SIGCONT);
    // The proposal expires with the proposer's lease; nothing was committed anywhere.
    assert!(cutover_tests::wait_until(
        Duration::from_secs(25),
        Duration::from_millis(50),
        || fleet.etcd.get_prefix(&proposals).is_empty()
    ));
    assert_eq!(fleet.generation(), 0);
    assert_eq!(fleet.bodies(), vec!["blue"; 3]);
    // And the next change goes through at once.
    assert!(fleet.wait_live(3, SETTLE));
    let out = fleet.cli(&["switch", "web", "green"]);
    assert!(out.status.success(), "{}\n{}", text(&out), fleet.logs());
    assert_eq!(fleet.bodies(), vec!["green"; 3]);
}

#[test]
fn garbage_in_etcd_is_refused_and_nothing_is_applied() {
    let Some(fleet) = Fleet::single(2) else {
        return;
    };
    let key = format!("{PREFIX}/services/web");
    for garbage in [
        r#"{"live":"purple"}"#,
        "not json",
        r#"{"live":"green","previous":"green"}"#,
    ] {
        fleet.etcd.put(&key, garbage);
        assert!(
            cutover_tests::wait_until(SETTLE, Duration::from_millis(50), || {
                fleet.health(0)["error"]
                    .as_str()
                    .is_some_and(|e| e.contains(&key))
            }),
            "{garbage}: {}",
            fleet.health(0)
        );
        assert_eq!(fleet.bodies(), vec!["blue"; 2], "{garbage}");
        // A change proposed meanwhile is refused, naming the record.
        let (code, v) = fleet.cli_json(&["switch", "web", "green"]);
        assert_ne!(code, 0);
        assert!(v["message"].as_str().unwrap().contains(&key), "{v}");
    }
    let (_, v) = fleet.hosts[1].cli_json(&["history"]);
    let refused = v["data"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["request"]["op"] == "fleet" && e["result"] == "error")
        .count();
    assert!(refused >= 1, "no refusal journaled: {v}");
    // A correct record is served.
    fleet
        .etcd
        .put(&key, r#"{"live":"green","previous":"blue"}"#);
    assert!(fleet.wait_all("green", SETTLE), "{:?}", fleet.bodies());
    assert!(fleet.health(0)["error"].is_null(), "{}", fleet.health(0));
}

#[test]
fn etcd_down_under_traffic_fails_no_request_and_the_hosts_recover() {
    let Some(mut fleet) = Fleet::single(3) else {
        return;
    };
    let out = fleet.cli(&["switch", "web", "green"]);
    assert!(out.status.success(), "{}", text(&out));
    fleet.etcd.stop_all();
    // Degraded, not down: every proxy keeps serving what it serves.
    assert!(cutover_tests::wait_until(
        SETTLE,
        Duration::from_millis(100),
        || { (0..3).all(|i| fleet.health(i)["up"] == false) }
    ));
    assert_eq!(
        fleet.hosts[0].metric("cutover_store_up{store=\"etcd\"}"),
        Some(0.0)
    );
    // Thirty seconds of traffic through every proxy while etcd is gone.
    let started = Instant::now();
    let (mut sent, mut failed) = (0, 0);
    while started.elapsed() < Duration::from_secs(30) && sent < 30_000 {
        for h in &fleet.hosts {
            let (status, body) = h.get(HOST);
            sent += 1;
            if status != 200 || body != "green" {
                failed += 1;
            }
        }
    }
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed while etcd was down"
    );
    fleet.etcd.start_all();
    // They come back by themselves, and follow again.
    assert!(
        cutover_tests::wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            (0..3).all(|i| fleet.health(i)["up"] == true)
        }),
        "{}",
        fleet.logs()
    );
    let out = fleet.cli(&["switch", "web", "blue"]);
    assert!(out.status.success(), "{}\n{}", text(&out), fleet.logs());
    assert_eq!(fleet.bodies(), vec!["blue"; 3]);
}

#[test]
fn a_host_behind_a_compaction_and_a_local_divergence_catch_up() {
    let Some(fleet) = Fleet::single(3) else {
        return;
    };
    // lb3 stops long enough for its lease to lapse; the others go on without it.
    fleet.hosts[2].agent().signal(Signal::SIGSTOP);
    assert!(fleet.wait_live(2, SETTLE));
    for colour in ["green", "blue", "green"] {
        let out = fleet.cli(&["switch", "web", colour]);
        assert!(out.status.success(), "{}", text(&out));
    }
    fleet.etcd.compact_to_current();
    fleet.hosts[2].agent().signal(Signal::SIGCONT);
    assert!(
        fleet.wait_all("green", SETTLE),
        "{:?}\n{}",
        fleet.bodies(),
        fleet.logs()
    );
    assert!(fleet.wait_live(3, SETTLE));
    assert!(
        cutover_tests::wait_until(SETTLE, Duration::from_millis(100), || {
            fleet.health(2)["applied_generation"] == 3
        }),
        "{}",
        fleet.health(2)
    );

    // A change on one host alone shows as diverged until the next fleet change.
    let out = fleet.hosts[1].cli(&["switch", "web", "blue", "--local"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fleet.hosts[1].get(HOST).1, "blue");
    assert!(cutover_tests::wait_until(
        SETTLE,
        Duration::from_millis(100),
        || {
            let (_, v) = fleet.cli_json(&["status"]);
            v["data"]["services"]["web"]["agree"] == false
        }
    ));
    // The periodic check does not undo it...
    std::thread::sleep(Duration::from_millis(2 * fleet.timings.check_ms));
    assert_eq!(fleet.hosts[1].get(HOST).1, "blue");
    // ...the next fleet change does.
    let out = fleet.cli(&["canary", "web", "blue", "10"]);
    assert!(out.status.success(), "{}", text(&out));
    let (_, v) = fleet.cli_json(&["status"]);
    assert_eq!(v["data"]["services"]["web"]["agree"], true, "{v}");
}

#[test]
fn two_concurrent_changes_never_both_win() {
    let Some(fleet) = Fleet::single(3) else {
        return;
    };
    let endpoints = fleet.etcd.endpoints_csv();
    let a = fleet.spawn(&endpoints, &["switch", "web", "green"]);
    let b = fleet.spawn(&endpoints, &["canary", "web", "green", "30"]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let won = [&a, &b].iter().filter(|o| o.status.success()).count();
    assert!(won >= 1, "{}\n{}", text(&a), text(&b));
    if won == 1 {
        // The loser read the record before the winner's commit (its commit compares the
        // revision it read) or after it (then the hosts refuse it against the new state).
        let lost = if a.status.success() { &b } else { &a };
        let said = text(lost);
        assert!(
            said.contains("changed meanwhile")
                || said.contains("fleet change refused, nothing changed anywhere"),
            "{said}"
        );
        assert_eq!(fleet.generation(), 1);
    } else {
        // Both can win only one after the other, on different generations.
        assert_eq!(fleet.generation(), 2);
    }
    let (_, v) = fleet.cli_json(&["status"]);
    assert_eq!(v["data"]["services"]["web"]["agree"], true, "{v}");
}

/// The colour etcd's record of `web` makes live.
fn recorded_live(fleet: &Fleet) -> String {
    let record = fleet
        .etcd
        .get(&format!("{PREFIX}/services/web"))
        .unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&record)
        .map(|v| v["live"].as_str().unwrap_or("blue").to_owned())
        .unwrap_or_else(|_| "blue".into())
}

#[test]
fn killing_the_etcd_leader_during_a_switch_never_half_applies_it() {
    let Some(mut fleet) = Fleet::three(5) else {
        return;
    };
    let endpoints = fleet.etcd.endpoints_csv();
    for colour in ["green", "blue"] {
        let switch = fleet.spawn(&endpoints, &["switch", "web", colour]);
        let leader = fleet.etcd.leader();
        fleet.etcd.kill(leader);
        let out = switch.wait_with_output().unwrap();
        // Committed or refused, never half applied: every host serves what etcd records.
        let wanted = recorded_live(&fleet);
        assert!(
            fleet.wait_all(&wanted, Duration::from_secs(30)),
            "switch to {colour}: {}\netcd says {wanted}, hosts serve {:?}\n{}",
            text(&out),
            fleet.bodies(),
            fleet.logs()
        );
        if out.status.success() {
            assert_eq!(wanted, colour);
        }
        fleet.etcd.restart(leader);
    }
    // The fleet takes changes again once etcd has its quorum and every host follows it.
    assert!(
        fleet.wait_live(5, Duration::from_secs(30)),
        "{}",
        fleet.logs()
    );
    assert!(
        cutover_tests::wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
            (0..5).all(|i| fleet.health(i)["up"] == true)
        }),
        "{}",
        fleet.logs()
    );
    let out = fleet.cli(&["switch", "web", "green"]);
    assert!(out.status.success(), "{}\n{}", text(&out), fleet.logs());
    assert_eq!(fleet.bodies(), vec!["green"; 5]);
}

#[test]
fn an_agent_killed_mid_change_converges_when_it_restarts() {
    let Some(mut fleet) = Fleet::single(3) else {
        return;
    };
    let switch = fleet.spawn(&fleet.etcd.endpoints_csv(), &["switch", "web", "green"]);
    let proposals = format!("{PREFIX}/proposals/");
    assert!(cutover_tests::wait_until(
        Duration::from_secs(10),
        Duration::from_millis(5),
        || !fleet.etcd.get_prefix(&proposals).is_empty() || fleet.generation() > 0
    ));
    fleet.hosts[1].kill_agent();
    let out = switch.wait_with_output().unwrap();
    fleet.hosts[1].start_agent();
    // Whether the change committed before the kill or not, lb2 ends up serving what etcd
    // records, like every other host.
    let wanted = recorded_live(&fleet);
    assert!(
        fleet.wait_all(&wanted, SETTLE),
        "{}\netcd says {wanted}, hosts serve {:?}\n{}",
        text(&out),
        fleet.bodies(),
        fleet.logs()
    );
    assert!(fleet.wait_live(3, SETTLE));
    let out = fleet.cli(&["switch", "web", "blue"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fleet.bodies(), vec!["blue"; 3]);
}

#[test]
fn check_and_the_command_line_say_when_etcd_refuses_the_credentials() {
    let Some(haproxy) = cutover_tests::require_proxy("haproxy") else {
        return;
    };
    let Some(bins) = cutover_tests::require_etcd() else {
        return;
    };
    let etcd = cutover_tests::EtcdCluster::single(&bins);
    let ctl = etcd.etcdctl();
    for args in [
        &["user", "add", "root:rootpw", "--interactive=false"][..],
        &["auth", "enable"],
    ] {
        ctl.run(args).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let (right, wrong) = (dir.path().join("right"), dir.path().join("wrong"));
    std::fs::write(&right, "rootpw\n").unwrap();
    std::fs::write(&wrong, "nope\n").unwrap();
    let setup = |password: &std::path::Path| {
        cutover_tests::agent::Setup::new(
            &haproxy,
            cutover_tests::agent::SetupOptions {
                config_extra: format!(
                    "[cluster]\nstore = \"etcd\"\nnode = \"lb1\"\n[cluster.etcd]\n\
                     endpoints = [{:?}]\nprefix = \"{PREFIX}\"\nuser = \"root\"\n\
                     password_file = {:?}\n",
                    etcd.endpoints()[0],
                    password.display().to_string()
                ),
                ..Default::default()
            },
        )
    };
    let good = setup(&right);
    let out = good.cli(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    let bad = setup(&wrong);
    let out = bad.cli(&["check"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("credentials refused"), "{}", text(&out));
    // The command line alone, the same.
    let cli = |password: &std::path::Path| {
        std::process::Command::new(cutover_tests::cutover_binary())
            .args(["--etcd", &etcd.endpoints_csv(), "--etcd-prefix", PREFIX])
            .args(["--etcd-user", "root", "--etcd-password-file"])
            .arg(password)
            .arg("status")
            .output()
            .unwrap()
    };
    let out = cli(&right);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("0 live host(s)"), "{}", text(&out));
    let out = cli(&wrong);
    assert!(!out.status.success());
    assert!(text(&out).contains("credentials refused"), "{}", text(&out));
}
