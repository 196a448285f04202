//! The remote API's part: one agent on HAProxy serving its unix socket and its remote API
//! (`[remote]`, gRPC over mutual TLS) on loopback, switched through each in the same run,
//! the methods taking turns so that they share the machine's conditions: the unix socket
//! (a connection per switch, as the command line opens one), gRPC with a connection and
//! TLS handshake per switch (the command line's `--remote`), gRPC on one kept connection
//! (a pipeline's own client), and the command line as a process over each transport. Each
//! figure is the time from issuing the switch to its answer; after each answer the proxy
//! must serve the new colour.

use std::fmt::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cutover::protocol::{Colour, Command as Verb, Request, Status};
use cutover_tests::agent::{Setup, SetupOptions};
use tokio::runtime::Handle;

use crate::report::f;
use crate::series::percentile;
use crate::suite::{options, HOST};

/// The pause between two switches, not part of any figure.
const GAP: Duration = Duration::from_millis(100);
/// Longest a switch may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(60);

/// One way to switch, and what it measured.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub method: &'static str,
    /// Milliseconds from issuing the switch to its answer, per switch that was served.
    pub ms: Vec<f64>,
    pub tried: usize,
    pub errors: Vec<String>,
}

/// Everything the part measured.
#[derive(Debug, Clone, Default)]
pub struct RemoteResults {
    /// Switches per method; `None` when the part did not run.
    pub switches: Option<usize>,
    pub skipped: Vec<String>,
    pub series: Vec<Series>,
}

const METHODS: [&str; 5] = [
    "unix socket, in process (a connection per switch)",
    "gRPC, in process (a connection and TLS handshake per switch)",
    "gRPC, in process (one kept connection)",
    "command line, unix socket (`cutover switch`)",
    "command line, gRPC (`cutover --remote ... switch`)",
];

/// Runs the part: `n` switches per method.
pub fn run(rt: &Handle, n: usize) -> RemoteResults {
    let mut r = RemoteResults {
        switches: Some(n),
        ..RemoteResults::default()
    };
    let Some(haproxy) = cutover_tests::proxy_binary("haproxy") else {
        r.skipped.push("HAProxy is not installed".into());
        return r;
    };
    let certs = tempfile::tempdir().expect("temporary directory");
    if let Err(e) = certificates(certs.path()) {
        r.skipped.push(e);
        return r;
    }
    let port = cutover_tests::free_port();
    let c = certs.path().display();
    let mut setup = Setup::new(
        &haproxy,
        SetupOptions {
            config_extra: format!(
                "[remote]\nlisten = \"127.0.0.1:{port}\"\nca = \"{c}/ca.pem\"\ncert = \"{c}/lb1.pem\"\n\
                 key = \"{c}/lb1.key\"\n[[remote.clients]]\nidentity = \"dns:ci\"\nrole = \"operate\"\n"
            ),
            ..options(vec![HOST.into(), "example.test".into()])
        },
    );
    setup.start_agent();
    let socket = setup.agent().socket.clone();
    let address = format!("127.0.0.1:{port}");
    let files = cutover::config::TlsFiles {
        ca: certs.path().join("ca.pem"),
        cert: certs.path().join("ci.pem"),
        key: certs.path().join("ci.key"),
    };
    let tls = match cutover::peers::tls::client_config_h2(&files) {
        Ok(t) => t,
        Err(e) => {
            r.skipped.push(e.to_string());
            return r;
        }
    };
    let mut kept = match rt.block_on(cutover::grpc::client::connect(
        &tls, "lb1", &address, TIMEOUT,
    )) {
        Ok(k) => k,
        Err(e) => {
            r.skipped
                .push(format!("the remote API does not answer: {e}"));
            return r;
        }
    };
    r.series = METHODS
        .iter()
        .map(|m| Series {
            method: m,
            ..Series::default()
        })
        .collect();
    let cli = |args: &[&str]| {
        let mut cmd = Command::new(cutover_tests::cutover_binary());
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped());
        cmd
    };
    let remote_args = |colour: Colour| {
        let (ca, cert, key) = (
            files.ca.display().to_string(),
            files.cert.display().to_string(),
            files.key.display().to_string(),
        );
        [
            "--remote",
            &address,
            "--remote-name",
            "lb1",
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--json",
            "switch",
            "web",
            colour.as_str(),
        ]
        .map(String::from)
    };
    let mut colour = Colour::Green;
    eprintln!(
        "remote API: {n} switches per method, {} methods",
        METHODS.len()
    );
    for _ in 0..n {
        for (i, series) in r.series.iter_mut().enumerate() {
            let command = Verb::change(
                Request::Switch {
                    service: "web".into(),
                    colour,
                },
                false,
                false,
            );
            let started = Instant::now();
            let answered: Result<(), String> = match i {
                0 => rt
                    .block_on(cutover::client::unix(&socket, &command, TIMEOUT, |_| {}))
                    .map_err(|e| e.to_string())
                    .and_then(ok),
                1 => rt
                    .block_on(async {
                        let mut c =
                            cutover::grpc::client::connect(&tls, "lb1", &address, TIMEOUT).await?;
                        cutover::grpc::client::call(&mut c, "lb1", &command, TIMEOUT).await
                    })
                    .map_err(|e| e.to_string())
                    .and_then(ok),
                2 => rt
                    .block_on(cutover::grpc::client::call(
                        &mut kept, "lb1", &command, TIMEOUT,
                    ))
                    .map_err(|e| e.to_string())
                    .and_then(ok),
                3 => process(cli(&[
                    "--socket",
                    &socket.display().to_string(),
                    "--json",
                    "switch",
                    "web",
                    colour.as_str(),
                ])),
                _ => process(cli(&remote_args(colour)
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>())),
            };
            let elapsed = started.elapsed();
            series.tried += 1;
            let served = answered.and_then(|()| {
                let body = setup.get(HOST).1;
                if body == colour.as_str() {
                    Ok(())
                } else {
                    Err(format!("answered before the proxy served {colour}: {body}"))
                }
            });
            match served {
                Ok(()) => series.ms.push(elapsed.as_secs_f64() * 1e3),
                Err(e) => series.errors.push(e),
            }
            colour = colour.other();
            std::thread::sleep(GAP);
        }
    }
    for s in &r.series {
        for e in &s.errors {
            eprintln!("remote API, {}: {e}", s.method);
        }
    }
    setup.stop_agent();
    r
}

fn ok(reply: cutover::protocol::Reply) -> Result<(), String> {
    if reply.status == Status::Ok {
        Ok(())
    } else {
        Err(format!("switch refused: {}", reply.message))
    }
}

fn process(mut cmd: Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// A CA, the agent's certificate `lb1` and the client's `ci`, made by `cutover tls`.
fn certificates(dir: &Path) -> Result<(), String> {
    let d = dir.display().to_string();
    for args in [
        vec!["ca", &d],
        vec!["issue", &d, "lb1"],
        vec!["issue", &d, "ci"],
    ] {
        let out = Command::new(cutover_tests::cutover_binary())
            .arg("tls")
            .args(&args)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("cutover tls {args:?}: {}", out.status));
        }
    }
    Ok(())
}

/// The part's section, `###` headings, with the `dist` binary's size with and without
/// the remote API when it was built; empty when the part did not run.
pub fn markdown(r: &RemoteResults, dist: Option<&crate::doc::Dist>) -> String {
    let Some(n) = r.switches else {
        return String::new();
    };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "### Remote API: a switch's answer, gRPC against the unix socket\n\nOne agent on HAProxy (runtime map flips) serving its unix socket and `[remote]` (gRPC over mutual TLS, TLS 1.3, ECDSA P-256 certificates from `cutover tls`) on loopback; {n} switches per method, the methods taking turns (so they share the machine's conditions), colours alternating, {} ms between switches. Time from issuing the switch to its answer; after each answer HAProxy must serve the new colour (else the switch counts as failed).\n",
        GAP.as_millis()
    );
    for s in &r.skipped {
        let _ = writeln!(t, "- not measured: {s}");
    }
    let _ = writeln!(
        t,
        "| method | switches ok / tried | answer p50 / p99 / max (ms) |\n| --- | ---: | ---: |"
    );
    for s in &r.series {
        let max = s.ms.iter().copied().reduce(f64::max);
        let _ = writeln!(
            t,
            "| {} | {} / {} | {} / {} / {} |",
            s.method,
            s.ms.len(),
            s.tried,
            f(percentile(&s.ms, 50.0)),
            f(percentile(&s.ms, 99.0)),
            f(max),
        );
    }
    if let Some(d) = dist {
        use crate::fleet_report::grouped;
        let _ = writeln!(
            t,
            "\n- `dist` binary: {} bytes with the default features (`etcd`, `grpc`), {} without the remote API (`--no-default-features --features etcd`){}.",
            grouped(d.bytes),
            d.no_grpc_bytes.map_or("not built".into(), grouped),
            d.no_grpc_bytes.map_or(String::new(), |b| format!(
                ": the remote API adds {} bytes ({:.0}%)",
                grouped(d.bytes.saturating_sub(b)),
                (d.bytes as f64 / b as f64 - 1.0) * 100.0
            )),
        );
    }
    t
}
