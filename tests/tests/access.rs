//! Access control on the control socket, for real: the CLI run as other uids and gids
//! (`setpriv`, and a system user whose group membership comes from the user database)
//! against a running agent. The socket is 0660 with the configured group; uids and gids in
//! `allow_*` may switch, those in `read_*` may only read, anyone else in the socket's group
//! is refused by name, and anyone outside it cannot connect. Every refusal and every
//! mutation is in the journal with the uid and pid. SIGHUP changes the lists.
// Test code: an `unwrap()` that fails is a failed test.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use cutover_tests::agent::{text, Setup, SetupOptions};
use cutover_tests::host::{can_switch_user, ensure_group, ensure_user, run_as, Identity};
use cutover_tests::{cutover_binary, require_proxy, skip_or_fail};
use serde_json::{json, Value};

/// The socket's group: who may connect at all.
const SOCKET_GROUP: &str = "cutover-test-ops";
/// A group whose members (by the user database) may switch.
const SWITCH_GROUP: &str = "cutover-test-rw";
/// A system user in [`SWITCH_GROUP`] by the user database only.
const MEMBER: &str = "cutover-test-member";

const MUTATOR_UID: u32 = 40_001;
const READER_UID: u32 = 40_002;
const STRANGER_UID: u32 = 40_003;
const OUTSIDER_UID: u32 = 40_004;
const MUTATOR_GID: u32 = 40_010;
const READER_GID: u32 = 40_011;

/// Runs the CLI as `who`; returns the exit code and the JSON reply (or stderr).
fn cli_as(socket: &Path, who: &Identity, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--socket", socket.to_str().unwrap(), "--json"];
    all.extend_from_slice(args);
    let out = run_as(who, &cutover_binary(), &all);
    let code = out.status.code().unwrap_or(-1);
    let reply = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| json!({ "stderr": String::from_utf8_lossy(&out.stderr) }));
    (code, reply)
}

fn id(uid: u32, gid: u32, groups: &[u32]) -> Identity {
    Identity {
        uid,
        gid,
        groups: groups.to_vec(),
    }
}

#[test]
fn the_socket_lets_each_peer_do_what_its_uid_and_groups_allow() {
    let haproxy = require_proxy!("haproxy");
    if let Err(why) = can_switch_user() {
        return skip_or_fail("running the CLI as other users", &why);
    }
    let groups = ensure_group(SOCKET_GROUP).and_then(|ops| Ok((ops, ensure_group(SWITCH_GROUP)?)));
    let (ops, rw) = match groups {
        Ok(g) => g,
        Err(why) => return skip_or_fail("creating system groups", &why),
    };
    let (member_uid, member_gid) = match ensure_user(MEMBER, &[SWITCH_GROUP]) {
        Ok(u) => u,
        Err(why) => return skip_or_fail("creating a system user", &why),
    };

    let mut s = Setup::new(&haproxy, SetupOptions::default());
    // Others may pass through the instance directory to the socket, no further.
    std::fs::set_permissions(s.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let lists = format!(
        "[agent]\nsocket_group = \"{SOCKET_GROUP}\"\nallow_uids = [{MUTATOR_UID}]\n\
         allow_gids = [{MUTATOR_GID}, {rw}]\nread_uids = [{READER_UID}]\nread_gids = [{READER_GID}]\n"
    );
    s.reconfigure_offline(|c| c.replacen("[agent]\n", &lists, 1));
    s.start_agent();
    let socket = s.agent().socket.clone();
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660, "socket mode");
    assert_eq!(meta.gid(), ops, "socket group");

    let mutator = id(MUTATOR_UID, MUTATOR_UID, &[ops]);
    let mutator_by_gid = id(40_005, MUTATOR_GID, &[ops]);
    let member = id(member_uid, member_gid, &[ops]);
    let reader = id(READER_UID, READER_UID, &[ops]);
    let reader_by_gid = id(40_006, READER_GID, &[ops]);
    let stranger = id(STRANGER_UID, STRANGER_UID, &[ops]);
    let outsider = id(OUTSIDER_UID, OUTSIDER_UID, &[]);

    let mut refused = 0;
    let mut expect_refusal = |who: &Identity, args: &[&str]| {
        let (code, reply) = cli_as(&socket, who, args);
        assert_eq!(code, 1, "uid {} {args:?}: {reply}", who.uid);
        assert_eq!(reply["data"]["step"], "access", "{reply}");
        let msg = reply["message"].as_str().unwrap();
        assert!(
            msg.contains(&format!("uid {} (gid {}, pid ", who.uid, who.gid)),
            "{msg}"
        );
        refused += 1;
    };

    // Mutations: by uid, by primary gid, by a group of the user database.
    for (who, colour) in [
        (&mutator, "green"),
        (&mutator_by_gid, "blue"),
        (&member, "green"),
    ] {
        let (code, reply) = cli_as(&socket, who, &["switch", "web", colour]);
        assert_eq!(code, 0, "uid {}: {reply}", who.uid);
    }
    assert_eq!(s.get("www.example.test"), (200, "green".into()));
    // Readers read, and may not switch.
    for who in [&reader, &reader_by_gid] {
        for args in [
            &["status"][..],
            &["map", "show", "services", "--live"],
            &["history"],
        ] {
            let (code, reply) = cli_as(&socket, who, args);
            assert_eq!(code, 0, "uid {} {args:?}: {reply}", who.uid);
        }
        expect_refusal(who, &["switch", "web", "blue"]);
        expect_refusal(who, &["rollback", "web"]);
    }
    // In the socket's group but on no list: nothing.
    expect_refusal(&stranger, &["status"]);
    expect_refusal(&stranger, &["switch", "web", "blue"]);
    // Outside the socket's group: cannot even connect.
    let (code, reply) = cli_as(&socket, &outsider, &["status"]);
    assert_eq!(code, 69, "{reply}");
    // With --json the failure is an error object on stdout.
    assert_eq!(reply["data"]["error"], "unavailable", "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{reply}"
    );
    assert_eq!(
        s.get("www.example.test"),
        (200, "green".into()),
        "nothing moved"
    );

    // The journal names who asked, for refusals and mutations alike.
    let (code, history) = s.cli_json(&["history", "--limit", "100"]);
    assert_eq!(code, 0, "{history}");
    let entries = history["data"]["entries"].as_array().unwrap();
    let by = |uid: u32, result: &str| {
        entries
            .iter()
            .filter(|e| e["requester"]["uid"] == uid && e["result"] == result)
            .inspect(|e| assert!(e["requester"]["pid"].as_u64().is_some_and(|p| p > 0), "{e}"))
            .count()
    };
    assert_eq!(by(MUTATOR_UID, "ok"), 1);
    assert_eq!(by(40_005, "ok"), 1);
    assert_eq!(by(member_uid, "ok"), 1);
    assert_eq!(by(READER_UID, "error"), 2);
    assert_eq!(by(40_006, "error"), 2);
    assert_eq!(by(STRANGER_UID, "error"), 2);
    assert!(entries
        .iter()
        .filter(|e| e["data"]["step"] == "access")
        .all(|e| e["message"].as_str().unwrap().contains("may not")));

    // SIGHUP: the reader loses its right to read.
    s.reconfigure(|c| c.replace(&format!("read_uids = [{READER_UID}]"), "read_uids = []"));
    assert!(
        s.agent()
            .wait_for_log("new config in force", Duration::from_secs(10)),
        "{}",
        s.agent().log()
    );
    expect_refusal(&reader, &["status"]);
    let (code, _) = cli_as(&socket, &reader_by_gid, &["status"]);
    assert_eq!(code, 0);
    // Root may always.
    let out = s.cli(&["switch", "web", "blue"]);
    assert!(out.status.success(), "{}", text(&out));
    eprintln!(
        "access: {refused} requests refused by uid/gid, 1 connection refused by the socket mode"
    );
}

/// Opens `n` connections to `socket` as whoever runs it, reports on its first output line
/// how many were refused at once (`held=H refused=R <first refusal>`), and keeps the rest
/// open until its standard input closes.
const HOLD_CONNECTIONS: &str = r#"
import socket, sys
path, n = sys.argv[1], int(sys.argv[2])
held, refusals = [], []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.settimeout(0.5)
    try:
        line = s.recv(4096)
    except socket.timeout:
        line = None
    if line is None:
        held.append(s)
    else:
        refusals.append(line.decode().strip())
print("held=%d refused=%d %s" % (len(held), len(refusals), refusals[0] if refusals else ""), flush=True)
sys.stdin.read()
"#;

#[test]
fn one_user_holding_idle_connections_cannot_lock_root_out() {
    let haproxy = require_proxy!("haproxy");
    if let Err(why) = can_switch_user() {
        return skip_or_fail("running the CLI as other users", &why);
    }
    let ops = match ensure_group(SOCKET_GROUP) {
        Ok(g) => g,
        Err(why) => return skip_or_fail("creating system groups", &why),
    };
    let mut s = Setup::new(&haproxy, SetupOptions::default());
    std::fs::set_permissions(s.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let lists = format!(
        "[agent]\nsocket_group = \"{SOCKET_GROUP}\"\nmax_connections = 8\nmax_connections_per_uid = 3\n\
         reserved_connections = 2\nallow_uids = [{MUTATOR_UID}]\nread_uids = [{READER_UID}]\n"
    );
    s.reconfigure_offline(|c| c.replacen("[agent]\n", &lists, 1));
    s.start_agent();
    let socket = s.agent().socket.clone();

    // A user refused everything opens 20 connections and keeps them idle.
    let mut holder = std::process::Command::new("setpriv")
        .arg(format!("--reuid={STRANGER_UID}"))
        .arg(format!("--regid={STRANGER_UID}"))
        .arg(format!("--groups={ops}"))
        .args(["--", "/usr/bin/python3", "-c", HOLD_CONNECTIONS])
        .arg(&socket)
        .arg("20")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(first.starts_with("held=3 refused=17 "), "{first}");
    assert!(
        first.contains(&format!(
            "too many control connections from uid {STRANGER_UID} (at most 3 per user)"
        )),
        "{first}"
    );

    // Another user still gets in, and root always does.
    let reader = id(READER_UID, READER_UID, &[ops]);
    for _ in 0..3 {
        let (code, reply) = cli_as(&socket, &reader, &["status"]);
        assert_eq!(code, 0, "{reply}");
        let out = s.cli(&["status"]);
        assert!(out.status.success(), "{}", text(&out));
    }

    // Root filling every slot itself gets the agent's refusal from the CLI, not a pipe error.
    let mut own = Vec::new();
    while own.len() < 8 {
        own.push(std::os::unix::net::UnixStream::connect(&socket).unwrap());
    }
    let out = s.cli(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("too many control connections"),
        "{}",
        text(&out)
    );
    drop(own);
    drop(holder.stdin.take());
    let _ = holder.wait();
}
