//! Three agents on three HAProxy instances, talking mutual TLS on loopback: cluster
//! switches, all or nothing, catching up after a missed commit, refusing foreign
//! certificates, reporting divergence, a hung peer, a coordinator restarted while its
//! peers hold its change, and the journal of refused changes.

use std::path::Path;
use std::time::{Duration, Instant};

use cutover_tests::agent::{cutover, text};
use cutover_tests::cluster::{certificates, cluster, Cluster, HOST, PEER_TIMEOUT};
use nix::sys::signal::Signal;

#[test]
fn a_cluster_switch_changes_every_host() {
    let Some(c) = cluster(["", "", ""]) else {
        return;
    };
    assert_eq!(c.bodies(), ["blue", "blue", "blue"]);
    let (code, reply) = c.hosts[0].cli_json(&["switch", "web", "green", "--cluster"]);
    assert_eq!(code, 0, "{reply}");
    assert_eq!(reply["data"]["phase"], "commit", "{reply}");
    assert_eq!(
        reply["data"]["missed"].as_array().unwrap().len(),
        0,
        "{reply}"
    );
    assert_eq!(
        c.bodies(),
        ["green", "green", "green"],
        "every host serves green when the reply comes"
    );
    // The cluster view agrees everywhere, with one cluster generation.
    let agreed =
        cutover_tests::wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            let (_, s) = c.hosts[2].cli_json(&["status", "--cluster"]);
            s["data"]["services"]["web"]["agree"] == true
                && s["data"]["hosts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|h| h["cluster_generation"] == 1)
        });
    assert!(agreed);
    let metrics =
        cutover_tests::wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            let out = c.hosts[0].cli(&["metrics"]);
            let text = String::from_utf8_lossy(&out.stdout);
            text.contains("cutover_peers 2") && text.contains("cutover_peers_in_agreement 2")
        });
    assert!(
        metrics,
        "peer gauges: {}",
        text(&c.hosts[0].cli(&["metrics"]))
    );
    // A dry run prepares everywhere and changes nothing.
    let (code, reply) = c.hosts[1].cli_json(&["rollback", "web", "--cluster", "--dry-run"]);
    assert_eq!(code, 0, "{reply}");
    assert_eq!(c.bodies(), ["green", "green", "green"]);
    // One host that would refuse (its gate: blue in maintenance) refuses the whole change.
    assert_eq!(
        c.hosts[2]
            .haproxy()
            .admin_command("set server web_blue/b1 state maint"),
        "\n"
    );
    let (code, reply) = c.hosts[0].cli_json(&["rollback", "web", "--cluster"]);
    assert_eq!(code, 1, "{reply}");
    let msg = reply["message"].as_str().unwrap();
    assert!(
        msg.contains("nothing changed anywhere") && msg.contains("lb3: gate"),
        "{msg}"
    );
    assert_eq!(c.bodies(), ["green", "green", "green"]);
}

/// Who asked for a cluster change, and why, reaches the journal of every host (the
/// coordinator's own included), and a cluster change on a stale cluster generation is
/// refused everywhere.
#[test]
fn every_host_journals_who_asked_for_a_cluster_change_and_why() {
    let Some(c) = cluster(["", "", ""]) else {
        return;
    };
    let me = cutover_tests::current_user();
    let (code, reply) = c.hosts[0].cli_json(&[
        "switch",
        "web",
        "green",
        "--cluster",
        "--reason",
        "CHG-3 cluster release",
        "--if-generation",
        "0",
    ]);
    assert_eq!(code, 0, "{reply}");
    assert_eq!(c.bodies(), ["green", "green", "green"]);
    // Another pipeline that read cluster generation 0 is refused on every host.
    let (code, reply) =
        c.hosts[1].cli_json(&["rollback", "web", "--cluster", "--if-generation", "0"]);
    assert_eq!(code, 1, "{reply}");
    let msg = reply["message"].as_str().unwrap();
    assert!(
        msg.contains("nothing changed anywhere")
            && msg.contains("the cluster generation is at generation 1, not 0"),
        "{msg}"
    );
    assert_eq!(c.bodies(), ["green", "green", "green"]);
    for (i, host) in c.hosts.iter().enumerate() {
        let (code, reply) = host.cli_json(&["history", "--user", &me, "--verb", "switch"]);
        assert_eq!(code, 0, "lb{}: {reply}", i + 1);
        let entries = reply["data"]["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "lb{}: {entries:?}", i + 1);
        let e = &entries[0];
        assert_eq!(e["result"], "ok", "lb{}: {e}", i + 1);
        assert_eq!(e["requester"]["via"], "cluster:lb1", "lb{}: {e}", i + 1);
        assert_eq!(e["asked_by"]["user"], me.as_str(), "lb{}: {e}", i + 1);
        assert_eq!(e["asked_by"]["via"], "socket", "lb{}: {e}", i + 1);
        assert!(e["asked_by"]["uid"].is_u64(), "lb{}: {e}", i + 1);
        assert_eq!(e["reason"], "CHG-3 cluster release", "lb{}: {e}", i + 1);
    }
    // The refusal is journaled by the coordinator that ran it, with who asked.
    let (_, reply) = c.hosts[1].cli_json(&["history", "--user", &me, "--verb", "rollback"]);
    let entries = reply["data"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["result"], "error");
    assert_eq!(entries[0]["requester"]["user"], me.as_str());
}

#[test]
fn a_host_killed_between_prepare_and_commit_aborts_everywhere() {
    let Some(mut c) = cluster(["hold_before_decision_ms = 1500", "", ""]) else {
        return;
    };
    let config = c.hosts[0].config.clone();
    let started = Instant::now();
    let switch = std::thread::spawn(move || {
        cutover(&config, &["--json", "switch", "web", "green", "--cluster"])
    });
    // Every host holds the prepared change: the coordinator is in its pause before the
    // decision.
    let all_hold =
        cutover_tests::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            let (_, v) = c.hosts[0].cli_json(&["status", "--cluster"]);
            v["data"]["hosts"]
                .as_array()
                .is_some_and(|rows| rows.len() == 3 && rows.iter().all(|r| !r["held"].is_null()))
        });
    assert!(all_hold, "not every host held the change");
    c.hosts[2].agent().signal(Signal::SIGKILL);
    let out = switch.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("aborted before commit"),
        "{reply}"
    );
    eprintln!("abort took {:?}", started.elapsed());
    // The coordinator journals the aborted change with the phase and lb3's reason.
    let (_, h) = c.hosts[0].cli_json(&["history", "--limit", "1"]);
    let entry = &h["data"]["entries"][0];
    assert_eq!(entry["result"], "error", "{h}");
    assert_eq!(entry["data"]["cluster"]["phase"], "ready", "{h}");
    assert_eq!(entry["data"]["cluster"]["hosts"]["lb3"]["ok"], false, "{h}");
    assert_eq!(c.hosts[0].get(HOST).1, "blue");
    assert_eq!(c.hosts[1].get(HOST).1, "blue");
    assert_eq!(c.hosts[2].get(HOST).1, "blue");
    let _ = c.hosts[2].stop_agent();
    c.hosts[2].start_agent();
    assert_eq!(c.bodies(), ["blue", "blue", "blue"]);
}

#[test]
fn a_host_down_during_the_commit_catches_up_after_restart() {
    let Some(mut c) = cluster(["", "", "hold_before_commit_ms = 2000"]) else {
        return;
    };
    let config = c.hosts[0].config.clone();
    let switch = std::thread::spawn(move || {
        cutover(&config, &["--json", "switch", "web", "green", "--cluster"])
    });
    assert!(c.hosts[0].wait_for_body(HOST, "green", Duration::from_secs(5)));
    c.hosts[2].agent().signal(Signal::SIGKILL);
    let out = switch.join().unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        reply["data"]["missed"],
        serde_json::json!(["lb3"]),
        "{reply}"
    );
    assert_eq!(c.hosts[2].get(HOST).1, "blue", "lb3 missed the commit");
    let _ = c.hosts[2].stop_agent();
    c.hosts[2].start_agent();
    assert!(
        c.hosts[2].wait_for_body(HOST, "green", Duration::from_secs(10)),
        "lb3 did not catch up:\n{}",
        c.hosts[2].agent().log()
    );
    let (_, s) = c.hosts[2].cli_json(&["status"]);
    assert_eq!(s["data"]["services"][0]["live"], "green");
}

#[test]
fn a_certificate_from_another_ca_is_refused_and_a_remote_trigger_works() {
    // lb1 serves the remote API, where `ci` may operate.
    let api = cutover_tests::free_port();
    let remote_api = format!(
        "[remote]\nlisten = \"127.0.0.1:{api}\"\n[[remote.clients]]\nidentity = \"dns:ci\"\n\
         role = \"operate\"\n"
    );
    let Some(c) = cluster([&remote_api, "", ""]) else {
        return;
    };
    let other = tempfile::tempdir().unwrap();
    certificates(other.path());
    let remote = format!("127.0.0.1:{}", c.ports[0]);
    let tls = |dir: &Path, client: &str| {
        vec![
            "--remote".to_owned(),
            format!("127.0.0.1:{api}"),
            "--remote-name".into(),
            "lb1".into(),
            "--tls-ca".into(),
            format!("{}/ca.pem", c.certs.display()),
            "--tls-cert".into(),
            format!("{}/{client}.pem", dir.display()),
            "--tls-key".into(),
            format!("{}/{client}.key", dir.display()),
        ]
    };
    let run = |args: Vec<String>| {
        std::process::Command::new(cutover_tests::cutover_binary())
            .args(args)
            .output()
            .unwrap()
    };
    // A client certificate signed by another CA is refused: an authentication failure.
    let mut args = tls(other.path(), "ci");
    args.push("status".into());
    let out = run(args);
    assert_eq!(out.status.code(), Some(80), "{}", text(&out));
    // A CA-signed client with the operate role drives a cluster switch remotely.
    let mut args = tls(&c.certs, "ci");
    args.extend(["switch", "web", "green", "--cluster"].map(String::from));
    let out = run(args);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(c.bodies(), ["green", "green", "green"]);
    // The hosts journal the cluster commit by its coordinator.
    let (_, h) = c.hosts[0].cli_json(&["history", "--limit", "1"]);
    assert_eq!(
        h["data"]["entries"][0]["requester"]["via"], "cluster:lb1",
        "{h}"
    );
    // A step of a cluster change is refused from a client that is not a listed peer, even
    // with a CA-signed certificate, on the peer listener: a prepare, and a commit of it,
    // from `ci` (whose role is operate; a step needs the peer's).
    let files = cutover::config::TlsFiles {
        ca: c.certs.join("ca.pem"),
        cert: c.certs.join("ci.pem"),
        key: c.certs.join("ci.key"),
    };
    let config = cutover::peers::tls::client_config(&files).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let request = cutover::protocol::Request::Switch {
        service: "web".into(),
        colour: cutover::protocol::Colour::Blue,
    };
    for (command, verb) in [
        (
            cutover::protocol::Command::Prepare {
                txn: "ci-1".into(),
                request,
                force: true,
                coordinator: "ci".into(),
                terms: Default::default(),
                asked_by: None,
            },
            "prepare",
        ),
        (
            cutover::protocol::Command::Commit {
                txn: "ci-1".into(),
                cluster_generation: 99,
            },
            "commit",
        ),
    ] {
        let reply = runtime
            .block_on(cutover::client::tls(
                &config,
                "lb1",
                &remote,
                &command,
                Duration::from_secs(5),
            ))
            .unwrap();
        assert_eq!(reply.status, cutover::protocol::Status::Error, "{reply:?}");
        assert!(
            reply
                .message
                .contains(&format!("peer ci may not {verb}: dns:ci has role operate")),
            "{reply:?}"
        );
    }
    assert_eq!(c.bodies(), ["green", "green", "green"], "nothing changed");
}

#[test]
fn status_cluster_reports_divergence_while_it_lasts() {
    let Some(c) = cluster(["", "", ""]) else {
        return;
    };
    assert!(
        c.hosts[1].cli(&["switch", "web", "green"]).status.success(),
        "a local switch on lb2"
    );
    let diverged =
        cutover_tests::wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            let (_, s) = c.hosts[0].cli_json(&["status", "--cluster"]);
            s["data"]["services"]["web"]["agree"] == false
                && s["data"]["services"]["web"]["hosts"]["lb2"] == "green"
        });
    assert!(diverged, "lb1 does not see lb2's divergence");
    let out = c.hosts[0].cli(&["status", "--cluster"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("DIVERGED"),
        "{}",
        text(&out)
    );
    assert!(c.hosts[0]
        .cli(&["switch", "web", "green", "--cluster"])
        .status
        .success());
    let agreed =
        cutover_tests::wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            let (_, s) = c.hosts[0].cli_json(&["status", "--cluster"]);
            s["data"]["services"]["web"]["agree"] == true
        });
    assert!(agreed);
}

/// Every host's row of `status --cluster` on `host`: node and the change it holds.
fn held(c: &Cluster, host: usize) -> Vec<(String, serde_json::Value)> {
    let (_, s) = c.hosts[host].cli_json(&["status", "--cluster"]);
    s["data"]["hosts"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|h| {
            (
                h["node"].as_str().unwrap_or("").to_owned(),
                h["held"].clone(),
            )
        })
        .collect()
}

#[test]
fn a_hung_peer_refuses_the_change_after_one_timeout_naming_the_stalled_phase() {
    let Some(c) = cluster(["", "", ""]) else {
        return;
    };
    // A frozen agent: the kernel still accepts its connections, nothing answers.
    c.hosts[2].agent().signal(Signal::SIGSTOP);
    let started = Instant::now();
    let (code, reply) = c.hosts[0].cli_json(&["switch", "web", "green", "--cluster"]);
    let took = started.elapsed();
    c.hosts[2].agent().signal(Signal::SIGCONT);
    eprintln!("refusal with a hung peer took {took:?}");
    assert_eq!(code, 1, "{reply}");
    let msg = reply["message"].as_str().unwrap();
    assert!(
        msg.contains("nothing changed anywhere") && msg.contains("lb3: "),
        "{msg}"
    );
    assert!(msg.contains("TLS handshake timed out"), "{msg}");
    assert!(
        took < PEER_TIMEOUT * 3 / 2,
        "the refusal took {took:?}, the peer timeout is {PEER_TIMEOUT:?}"
    );
    assert_eq!(c.bodies(), ["blue", "blue", "blue"]);
    // The coordinator journals the refusal: who asked, the phase, every host's answer.
    let (_, h) = c.hosts[0].cli_json(&["history", "--limit", "1"]);
    let entry = &h["data"]["entries"][0];
    assert_eq!(entry["result"], "error", "{h}");
    assert_eq!(entry["request"]["op"], "switch", "{h}");
    assert_eq!(entry["requester"]["via"], "socket", "{h}");
    assert_eq!(entry["data"]["cluster"]["phase"], "prepare", "{h}");
    assert_eq!(entry["data"]["cluster"]["hosts"]["lb2"]["ok"], true, "{h}");
    let lb3 = entry["data"]["cluster"]["hosts"]["lb3"]["error"].as_str();
    assert!(
        lb3.is_some_and(|e| e.contains("TLS handshake timed out")),
        "{h}"
    );
    let out = c.hosts[0].cli(&["history", "--limit", "1"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cluster change refused"),
        "{}",
        text(&out)
    );
    // Thawed, the peer holds nothing, and the same change goes through.
    let (code, reply) = c.hosts[0].cli_json(&["switch", "web", "green", "--cluster"]);
    assert_eq!(code, 0, "{reply}");
    assert_eq!(c.bodies(), ["green", "green", "green"]);
}

/// Starts `args` with `--cluster` on host `i` (whose decision is held), waits until every
/// host holds its change as host `watcher` sees it, and returns the change's txn and the
/// running command.
fn hold_everywhere(
    c: &Cluster,
    i: usize,
    watcher: usize,
    args: &[&str],
) -> (String, std::thread::JoinHandle<std::process::Output>) {
    let config = c.hosts[i].config.clone();
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.insert(0, "--json".into());
    args.push("--cluster".into());
    let run = std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cutover(&config, &args)
    });
    let coordinator = format!("lb{}", i + 1);
    let all_hold =
        cutover_tests::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            let rows = held(c, watcher);
            rows.len() == 3
                && rows
                    .iter()
                    .all(|(_, h)| h["coordinator"] == coordinator.as_str())
        });
    assert!(all_hold, "{:?}", held(c, watcher));
    let rows = held(c, watcher);
    let txn = rows[0].1["txn"].as_str().expect("a txn").to_owned();
    assert!(
        rows.iter().all(|(_, h)| h["txn"] == txn.as_str()),
        "{rows:?}"
    );
    (txn, run)
}

/// Waits until no host holds a change as host `watcher` sees it, at most 5 s.
fn nothing_held(c: &Cluster, watcher: usize) -> bool {
    cutover_tests::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let rows = held(c, watcher);
        rows.len() == 3 && rows.iter().all(|(_, h)| h.is_null())
    })
}

#[test]
fn a_coordinator_restarted_after_prepare_releases_what_its_peers_hold() {
    let hold = "hold_before_decision_ms = 60000";
    let Some(mut c) = cluster([hold, hold, ""]) else {
        return;
    };
    // Every host holds lb1's change, and lb2's cluster view shows it for each of them.
    let (txn, switch) = hold_everywhere(&c, 0, 1, &["switch", "web", "green"]);
    let rows = held(&c, 1);
    assert!(
        rows[0].1["expires_in_ms"].as_u64().unwrap() > 20_000,
        "{rows:?}"
    );
    let out = c.hosts[1].cli(&["status", "--cluster"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        table.contains("HELD") && table.matches(&format!("{txn} of lb1")).count() == 3,
        "{table}"
    );
    // The coordinator dies before its decision; the peers go on holding its change.
    c.hosts[0].kill_agent();
    let _ = switch.join().unwrap();
    assert_eq!(c.bodies(), ["blue", "blue", "blue"]);
    assert!(held(&c, 2)
        .iter()
        .any(|(n, h)| n == "lb3" && h["txn"] == txn.as_str()));
    // Restarted (without the fault injection), lb1 coordinates a new change at once,
    // well before the held one would lapse.
    c.hosts[0].reconfigure_offline(|t| t.replace(hold, ""));
    c.hosts[0].start_agent();
    let started = Instant::now();
    let (code, reply) = c.hosts[0].cli_json(&["switch", "web", "green", "--cluster"]);
    let took = started.elapsed();
    eprintln!("a new change after the coordinator restarted took {took:?}");
    assert_eq!(code, 0, "{reply}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(c.bodies(), ["green", "green", "green"]);
    assert!(nothing_held(&c, 2), "{:?}", held(&c, 2));

    // lb2 dies holding its change too; restarted, it coordinates nothing, yet its peers'
    // reports show they hold its change: it releases them, and lb3 coordinates at once.
    let (txn, rollback) = hold_everywhere(&c, 1, 2, &["rollback", "web"]);
    c.hosts[1].kill_agent();
    let _ = rollback.join().unwrap();
    c.hosts[1].reconfigure_offline(|t| t.replace(hold, ""));
    c.hosts[1].start_agent();
    assert!(nothing_held(&c, 2), "{:?}", held(&c, 2));
    assert!(
        c.hosts[1]
            .agent()
            .log()
            .contains(&format!("released cluster change {txn}")),
        "{}",
        c.hosts[1].agent().log()
    );
    let (code, reply) = c.hosts[2].cli_json(&["rollback", "web", "--cluster"]);
    assert_eq!(code, 0, "{reply}");
    assert_eq!(c.bodies(), ["blue", "blue", "blue"]);
}
