//! Three agents on three HAProxy instances, talking mutual TLS on loopback: cluster
//! switches, all or nothing, catching up after a missed commit, refusing foreign
//! certificates, and reporting divergence.

use std::path::Path;
use std::time::{Duration, Instant};

use cutover_tests::agent::{cutover, text};
use cutover_tests::cluster::{certificates, cluster, HOST};
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
    std::thread::sleep(Duration::from_millis(500));
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
    let Some(c) = cluster(["", "", ""]) else {
        return;
    };
    let other = tempfile::tempdir().unwrap();
    certificates(other.path());
    let remote = format!("127.0.0.1:{}", c.ports[0]);
    let tls = |dir: &Path, client: &str| {
        vec![
            "--remote".to_owned(),
            remote.clone(),
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
    // A client certificate signed by another CA fails the handshake.
    let mut args = tls(other.path(), "ci");
    args.push("status".into());
    let out = run(args);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
    // A CA-signed client drives a cluster switch remotely.
    let mut args = tls(&c.certs, "ci");
    args.extend(["switch", "web", "green", "--cluster"].map(String::from));
    let out = run(args);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(c.bodies(), ["green", "green", "green"]);
    // The remote requester is in the journal by its certificate's name.
    let (_, h) = c.hosts[0].cli_json(&["history", "--limit", "1"]);
    assert_eq!(
        h["data"]["entries"][0]["requester"]["via"], "cluster:lb1",
        "{h}"
    );
    // A peer-only command from a plain client is refused.
    let mut args = tls(&c.certs, "ci");
    args.push("status".into());
    assert!(run(args).status.success());
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
