//! The remote API for real: an agent on HAProxy serving `[remote]` (gRPC over mutual TLS)
//! on loopback, driven by the command line's `--remote` as a deploy pipeline would: the
//! server named by `--remote-name`, roles per client certificate (by DNS name and by SAN
//! URI), refusals with their own exit codes and messages (80: a certificate refused, 77: a
//! role that does not allow the verb, 69: no agent), and every remote change journaled
//! with the client's identity.
// Test code: an `unwrap()` that fails is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Output;

use cutover_tests::agent::{text, Setup, SetupOptions};
use cutover_tests::cluster::HOST;
use cutover_tests::{cutover_binary, free_port};

/// `cutover tls ...` with these arguments, which must succeed.
fn tls(args: &[&str]) -> Output {
    let out = std::process::Command::new(cutover_binary())
        .arg("tls")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "tls {args:?}: {}", text(&out));
    out
}

/// The CA in `dir` with `lb1` (the agent), `ci` (operate), `viewer` (read), `nobody` (no
/// role), `deploy` (admin by its SAN URI); a second CA in `dir/other` with a `ci` of its
/// own.
fn certificates(dir: &Path) {
    let d = dir.to_str().unwrap();
    let made = tls(&["ca", d]);
    let other = dir.join("other");
    let o = other.to_str().unwrap();
    let made_other = tls(&["ca", o]);
    // Two CAs made with the defaults have different names.
    assert_ne!(made.stdout, made_other.stdout);
    for name in ["lb1", "ci", "viewer", "nobody"] {
        tls(&["issue", d, name]);
    }
    tls(&[
        "issue",
        d,
        "deploy",
        "--uri",
        "spiffe://example.test/deploy",
    ]);
    tls(&["issue", o, "ci"]);
}

fn remote_config(certs: &Path, port: u16) -> String {
    let c = certs.display();
    let clients: String = [
        ("dns:ci", "operate"),
        ("dns:viewer", "read"),
        ("uri:spiffe://example.test/deploy", "admin"),
    ]
    .iter()
    .map(|(identity, role)| {
        format!("[[remote.clients]]\nidentity = \"{identity}\"\nrole = \"{role}\"\n")
    })
    .collect();
    format!(
        "[remote]\nlisten = \"127.0.0.1:{port}\"\nca = \"{c}/ca.pem\"\n\
         cert = \"{c}/lb1.pem\"\nkey = \"{c}/lb1.key\"\n{clients}"
    )
}

/// Runs `cutover --remote 127.0.0.1:PORT ...` as `client` of the CA in `ca_dir`, with the
/// client's files from `client_dir`; `name` is `--remote-name`, if any.
fn remote(
    port: u16,
    ca_dir: &Path,
    client_dir: &Path,
    client: &str,
    name: Option<&str>,
    args: &[&str],
) -> Output {
    let mut cmd = std::process::Command::new(cutover_binary());
    cmd.arg("--remote")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--tls-ca")
        .arg(ca_dir.join("ca.pem"))
        .arg("--tls-cert")
        .arg(client_dir.join(format!("{client}.pem")))
        .arg("--tls-key")
        .arg(client_dir.join(format!("{client}.key")))
        .arg("--timeout")
        .arg("30");
    if let Some(n) = name {
        cmd.arg("--remote-name").arg(n);
    }
    cmd.args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_pipeline_drives_the_agent_over_grpc_with_the_role_of_its_certificate() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let port = free_port();
    let Some(s) = Setup::started(SetupOptions {
        config_extra: remote_config(certs.path(), port),
        ..SetupOptions::default()
    }) else {
        return;
    };
    let c = certs.path();
    let lb1 = Some("lb1");
    // The server named by its address: its certificate does not carry it.
    let out = remote(port, c, c, "ci", None, &["status"]);
    assert_eq!(out.status.code(), Some(80), "{}", text(&out));
    assert!(stderr(&out).contains("--remote-name"), "{}", text(&out));
    // Named as its certificate names it, a reader reads.
    let out = remote(port, c, c, "viewer", lb1, &["--json", "status"]);
    assert!(out.status.success(), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["data"]["services"][0]["live"], "blue", "{status}");
    // ... and may not switch: 77, naming the identity and the role needed.
    let out = remote(port, c, c, "viewer", lb1, &["switch", "web", "green"]);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    assert!(
        stderr(&out).contains("dns:viewer has role read and switch needs role operate"),
        "{}",
        text(&out)
    );
    // A valid certificate without a role: 77 too.
    let out = remote(port, c, c, "nobody", lb1, &["status"]);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    assert!(
        stderr(&out).contains("dns:nobody has no role"),
        "{}",
        text(&out)
    );
    // A certificate of another CA: 80, the agent refused it.
    let other = c.join("other");
    let out = remote(port, c, &other, "ci", lb1, &["status"]);
    assert_eq!(out.status.code(), Some(80), "{}", text(&out));
    assert!(
        stderr(&out).contains("refused this client's certificate"),
        "{}",
        text(&out)
    );
    // An operator switches; the proxy serves it when the answer comes.
    let out = remote(port, c, c, "ci", lb1, &["switch", "web", "green"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.get(HOST).1, "green");
    // ... and may not apply a declaration (admin); the URI identity may.
    let desired = certs.path().join("desired.toml");
    std::fs::write(&desired, "[services.web]\nlive = \"blue\"\n").unwrap();
    let apply = ["apply", "-f", desired.to_str().unwrap()];
    let out = remote(port, c, c, "ci", lb1, &apply);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    let out = remote(port, c, c, "deploy", lb1, &apply);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.get(HOST).1, "blue");
    // Every remote change is in the journal with the client's identity, refusals too.
    let (_, h) = s.cli_json(&["history", "--limit", "5"]);
    let vias: Vec<&str> = h["data"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["requester"]["via"].as_str().unwrap())
        .collect();
    assert!(
        vias.contains(&"grpc:dns:ci")
            && vias.contains(&"grpc:dns:deploy uri:spiffe://example.test/deploy"),
        "{h}"
    );
    // A dry run over the remote API changes nothing.
    let out = remote(
        port,
        c,
        c,
        "ci",
        lb1,
        &["switch", "web", "green", "--dry-run"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.get(HOST).1, "blue");
    // No agent at the address: 69.
    let out = remote(free_port(), c, c, "ci", lb1, &["status"]);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
}
