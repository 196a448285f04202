//! The fleet part: hosts that follow their desired routing state in etcd (one member), each
//! with its own HAProxy and agent, switched from the command line alone
//! (`cutover --etcd ... switch web <colour>`), at several sizes; beside it, in the same run,
//! what such a switch is made of and compared with: etcd's own put and transaction latency
//! (an in-process client), the CLI's process start, a single host switched on its socket,
//! and the static-peers cluster (mutual TLS, `switch --cluster` on lb1). Also the idle cost
//! of an agent with its watch open.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cutover_tests::agent::Setup;
use cutover_tests::etcd::{EtcdBinaries, EtcdCluster};
use cutover_tests::fleet::{Fleet, Timings};
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use tokio::runtime::Handle;

use crate::client::Colour;
use crate::method::{CutoverSocket, Method, SERVICE};
use crate::procstat::{self, ProcSample};
use crate::suite::{options, HOST};

/// The pause between two switches of a series, not part of any figure: the hosts drain the
/// colour that lost its traffic meanwhile.
pub const GAP: Duration = Duration::from_millis(200);
/// A series stops after this long, measured or not.
const SERIES_LIMIT: Duration = Duration::from_secs(180);
/// How long the hosts may take to serve blue after start.
const SETTLE: Duration = Duration::from_secs(30);
/// Key prefix of etcd's own put and transaction samples, outside the fleet's.
const SAMPLE_PREFIX: &str = "/cutover-bench/sample";

/// What the fleet part measures.
#[derive(Debug, Clone)]
pub struct FleetPlan {
    /// Fleet sizes (hosts), each switched through etcd from the command line alone.
    pub sizes: Vec<usize>,
    /// Static-peers cluster sizes, each switched with `--cluster` on lb1.
    pub peer_sizes: Vec<usize>,
    /// Switches per size (colours alternate); also the single-host switches and the CLI
    /// start samples.
    pub flips: usize,
    /// etcd puts, and as many transactions, timed with the in-process client.
    pub puts: usize,
    /// The size whose p99 is checked against the target and whose agents are read idle.
    pub target_hosts: usize,
    /// How long the idle agents' CPU time is read over.
    pub idle: Duration,
}

impl FleetPlan {
    /// 3, 10 and 30 hosts, static peers at 3 and 10, 20 switches each.
    pub fn full() -> FleetPlan {
        FleetPlan {
            sizes: vec![3, 10, 30],
            peer_sizes: vec![3, 10],
            flips: 20,
            puts: 100,
            target_hosts: 10,
            idle: Duration::from_secs(10),
        }
    }

    /// Three hosts, five switches, no static peers: about half a minute.
    pub fn short() -> FleetPlan {
        FleetPlan {
            sizes: vec![3],
            peer_sizes: vec![],
            flips: 5,
            puts: 20,
            target_hosts: 3,
            idle: Duration::from_secs(3),
        }
    }
}

/// One series of cluster switches.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Hosts switched.
    pub hosts: usize,
    /// Milliseconds from the command to its answer, per switch that succeeded.
    pub ms: Vec<f64>,
    /// Switches tried.
    pub tried: usize,
    /// What went wrong: refused switches, hosts not serving the new colour at the answer.
    pub errors: Vec<String>,
    /// From the first process started to every host serving, ms (not a switch figure).
    pub start_ms: f64,
    /// CPU time of all the agents over the series, per switch tried, ms: on loopback the
    /// hosts share this machine's cores, which a real fleet does not.
    pub agent_cpu_ms: Option<f64>,
}

/// An agent read before and after idling.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    /// CPU time over the wall time, percent of one core.
    pub cpu_percent: f64,
    /// Resident set size at the end, KiB.
    pub rss_kib: u64,
}

/// Everything the fleet part measured.
#[derive(Debug, Clone, Default)]
pub struct FleetResults {
    pub plan: Option<FleetPlan>,
    /// Why something was not measured (etcd or HAProxy missing, a start that failed).
    pub skipped: Vec<String>,
    /// Fleet switches, one series per size.
    pub fleet: Vec<Series>,
    /// Static-peers switches, one series per size.
    pub peers: Vec<Series>,
    /// Single-host switches on the agent's socket, ms.
    pub single: Vec<f64>,
    /// etcd puts of a small record, ms.
    pub put: Vec<f64>,
    /// etcd transactions shaped like the commit (compare a revision, put two keys), ms.
    pub txn: Vec<f64>,
    /// `cutover --version`: the CLI's process start and exit, ms.
    pub cli_start: Vec<f64>,
    /// `cutover --etcd ... status` on the target fleet: start, connect, read, ms.
    pub cli_status: Vec<f64>,
    /// The target fleet's agents after idling, lb1 first.
    pub idle: Vec<Idle>,
}

/// Runs the fleet part; what cannot run is named in `skipped`.
pub fn run(rt: &Handle, plan: &FleetPlan) -> FleetResults {
    let mut r = FleetResults {
        plan: Some(plan.clone()),
        ..FleetResults::default()
    };
    let Some(haproxy) = cutover_tests::proxy_binary("haproxy") else {
        r.skipped.push("HAProxy is not installed".into());
        return r;
    };
    eprintln!("fleet: single host, socket x {}", plan.flips);
    r.single = single_host(&haproxy, plan.flips);
    r.cli_start = (0..plan.flips)
        .filter_map(|_| timed(&mut version_command()))
        .collect();
    match cutover_tests::etcd::require_etcd() {
        None => r.skipped.push("etcd or etcdctl is not installed".into()),
        Some(bins) => {
            for &n in &plan.sizes {
                let target = n == plan.target_hosts;
                let series = fleet_size(rt, &haproxy, &bins, n, plan, target, &mut r);
                r.fleet.push(series);
            }
        }
    }
    for &n in &plan.peer_sizes {
        eprintln!("static peers: {n} hosts, switch --cluster x {}", plan.flips);
        r.peers.push(peers(n, plan.flips));
    }
    r
}

/// One fleet of `n` hosts: its switches, and for the target size etcd's own latency, the
/// CLI's status read and the idle agents, all while this fleet runs.
fn fleet_size(
    rt: &Handle,
    haproxy: &Path,
    bins: &EtcdBinaries,
    n: usize,
    plan: &FleetPlan,
    target: bool,
    r: &mut FleetResults,
) -> Series {
    eprintln!("fleet: {n} hosts, starting etcd and the hosts");
    let started = Instant::now();
    let fleet = Fleet::start_with(
        haproxy,
        EtcdCluster::single(bins),
        n,
        Timings::shipped(),
        options(vec![HOST.into(), "example.test".into()]),
    );
    let mut s = Series {
        hosts: n,
        ..Series::default()
    };
    if !fleet.wait_all("blue", SETTLE) {
        s.errors
            .push(format!("not every host served blue: {:?}", fleet.bodies()));
        return s;
    }
    s.start_ms = ms(started.elapsed());
    if target {
        eprintln!("fleet: {n} hosts, etcd put and txn x {}", plan.puts);
        match rt.block_on(etcd_latency(&fleet.etcd.endpoints(), plan.puts)) {
            Ok((put, txn)) => (r.put, r.txn) = (put, txn),
            Err(e) => r.skipped.push(format!("etcd put/txn: {e}")),
        }
    }
    eprintln!("fleet: {n} hosts, switch x {}", plan.flips);
    let endpoints = fleet.etcd.endpoints_csv();
    let before = agents_cpu(&fleet.hosts);
    flips(&mut s, plan.flips, |colour| {
        let args = ["--json", "switch", SERVICE, colour.as_str()];
        let started = Instant::now();
        let out = fleet.command(&endpoints, &args).output();
        let elapsed = started.elapsed();
        let out = out.map_err(|e| format!("run cutover --etcd: {e}"))?;
        check_reply(&out)?;
        every_host(&fleet.bodies(), colour)?;
        Ok(elapsed)
    });
    s.agent_cpu_ms = cpu_per_switch(before, agents_cpu(&fleet.hosts), s.tried);
    if std::env::var_os(TRACE).is_some() {
        print_history(&fleet.hosts[0].config);
    }
    if target {
        r.cli_status = (0..plan.flips)
            .filter_map(|_| timed(&mut fleet.command(&endpoints, &["--json", "status"])))
            .collect();
        eprintln!("fleet: {n} hosts, idle agents for {:?}", plan.idle);
        r.idle = idle(&fleet.hosts, plan.idle);
    }
    s
}

/// Set in the environment, the last changes of the first host are printed after each series
/// (their per-step timings show where a switch's time goes).
const TRACE: &str = "CUTOVER_BENCH_TRACE";

/// Prints the last entries of the journal of the agent configured by `config`.
fn print_history(config: &Path) {
    let out = Command::new(cutover_tests::cutover_binary())
        .arg("--config")
        .arg(config)
        .args(["--json", "history", "--limit", "3"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) => eprintln!("{}", String::from_utf8_lossy(&out.stdout)),
        Err(e) => eprintln!("history: {e}"),
    }
}

/// A static-peers cluster of `n` hosts, switched with `--cluster` on lb1.
fn peers(n: usize, switches: usize) -> Series {
    let mut s = Series {
        hosts: n,
        ..Series::default()
    };
    let started = Instant::now();
    let Some(c) = cutover_tests::cluster::cluster_of(&vec![""; n]) else {
        s.errors.push("HAProxy is not installed".into());
        return s;
    };
    let blue = cutover_tests::wait_until(SETTLE, Duration::from_millis(50), || {
        c.bodies().iter().all(|b| b == "blue")
    });
    if !blue {
        s.errors
            .push(format!("not every host served blue: {:?}", c.bodies()));
        return s;
    }
    s.start_ms = ms(started.elapsed());
    let binary = cutover_tests::cutover_binary();
    let lb1 = c.hosts[0].config.clone();
    let before = agents_cpu(&c.hosts);
    flips(&mut s, switches, |colour| {
        let mut cmd = Command::new(&binary);
        cmd.arg("--config")
            .arg(&lb1)
            .args(["--json", "switch", SERVICE, colour.as_str(), "--cluster"])
            .stdin(Stdio::null());
        let started = Instant::now();
        let out = cmd.output();
        let elapsed = started.elapsed();
        let out = out.map_err(|e| format!("run cutover: {e}"))?;
        check_reply(&out)?;
        every_host(&c.bodies(), colour)?;
        Ok(elapsed)
    });
    s.agent_cpu_ms = cpu_per_switch(before, agents_cpu(&c.hosts), s.tried);
    s
}

/// CPU time of every host's agent together; `None` when one cannot be read.
fn agents_cpu(hosts: &[Setup]) -> Option<Duration> {
    hosts
        .iter()
        .map(|h| procstat::sample(h.agent().pid()).map(|s| s.cpu))
        .sum()
}

/// `after - before` per switch, ms.
fn cpu_per_switch(before: Option<Duration>, after: Option<Duration>, n: usize) -> Option<f64> {
    let (before, after) = (before?, after?);
    (n > 0).then(|| ms(after.saturating_sub(before)) / n as f64)
}

/// Switches `web` back and forth through `switch` (green first), `n` times or until
/// [`SERIES_LIMIT`], recording each time or error in `s`.
fn flips(s: &mut Series, n: usize, mut switch: impl FnMut(Colour) -> Result<Duration, String>) {
    let started = Instant::now();
    let mut colour = Colour::Green;
    for i in 0..n {
        if started.elapsed() > SERIES_LIMIT {
            s.errors.push(format!(
                "stopped after {i} switches: {SERIES_LIMIT:?} passed"
            ));
            break;
        }
        s.tried += 1;
        match switch(colour) {
            Ok(d) => s.ms.push(ms(d)),
            Err(e) => s.errors.push(e),
        }
        colour = colour.other();
        std::thread::sleep(GAP);
    }
}

/// One agent without a cluster, switched on its socket `n` times; the times of the
/// switches that answered `ok` and were served.
fn single_host(haproxy: &Path, n: usize) -> Vec<f64> {
    let mut setup = Setup::new(haproxy, options(vec![HOST.into(), "example.test".into()]));
    setup.start_agent();
    let mut socket = CutoverSocket {
        socket: setup.agent().socket.clone(),
    };
    let mut s = Series::default();
    flips(&mut s, n, |colour| {
        let started = Instant::now();
        socket.issue(colour)?;
        let elapsed = started.elapsed();
        every_host(&[setup.get(HOST).1], colour)?;
        Ok(elapsed)
    });
    for e in &s.errors {
        eprintln!("single host: {e}");
    }
    setup.stop_agent();
    s.ms
}

/// `n` puts of a small record, then `n` transactions that compare the revision of a key and
/// put two (the shape of a fleet commit), one at a time, over one connection.
async fn etcd_latency(
    endpoints: &[String],
    n: usize,
) -> Result<(Vec<f64>, Vec<f64>), etcd_client::Error> {
    let mut client = Client::connect(endpoints, None).await?;
    let value = r#"{"live":"green","previous":"blue"}"#;
    let generation = format!("{SAMPLE_PREFIX}/generation");
    let service = format!("{SAMPLE_PREFIX}/services/web");
    let mut put = Vec::with_capacity(n);
    let mut revision = 0;
    for i in 0..n {
        let started = Instant::now();
        let reply = client
            .put(format!("{SAMPLE_PREFIX}/put/{i}"), value, None)
            .await?;
        put.push(ms(started.elapsed()));
        revision = reply.header().map_or(revision, |h| h.revision());
    }
    client.put(generation.as_str(), "0", None).await?;
    revision += 1;
    let mut txn = Vec::with_capacity(n);
    for i in 0..n {
        let t = Txn::new()
            .when([Compare::mod_revision(
                generation.as_str(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([
                TxnOp::put(generation.as_str(), format!("{}", i + 1), None),
                TxnOp::put(service.as_str(), value, None),
            ]);
        let started = Instant::now();
        let reply = client.txn(t).await?;
        txn.push(ms(started.elapsed()));
        if !reply.succeeded() {
            // The compare failed: read the revision again (not timed).
            let got = client.get(generation.as_str(), None).await?;
            revision = got.kvs().first().map_or(revision, |kv| kv.mod_revision());
            continue;
        }
        revision = reply.header().map_or(revision, |h| h.revision());
    }
    client
        .delete(
            SAMPLE_PREFIX,
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await?;
    Ok((put, txn))
}

/// Every host's agent, read before and after `idle`.
fn idle(hosts: &[Setup], idle: Duration) -> Vec<Idle> {
    let pids: Vec<u32> = hosts.iter().map(|h| h.agent().pid()).collect();
    let before: Vec<Option<ProcSample>> = pids.iter().map(|p| procstat::sample(*p)).collect();
    let started = Instant::now();
    std::thread::sleep(idle);
    let wall = started.elapsed().as_secs_f64();
    pids.iter()
        .zip(before)
        .filter_map(|(pid, before)| {
            let (before, after) = (before?, procstat::sample(*pid)?);
            Some(Idle {
                cpu_percent: (after.cpu - before.cpu).as_secs_f64() / wall * 100.0,
                rss_kib: after.rss_kib,
            })
        })
        .collect()
}

/// `cutover --version`, the harness's build.
fn version_command() -> Command {
    let mut c = Command::new(cutover_tests::cutover_binary());
    c.arg("--version").stdin(Stdio::null());
    c
}

/// Wall time of `cmd` to its exit, ms; `None` when it failed.
fn timed(cmd: &mut Command) -> Option<f64> {
    let started = Instant::now();
    let out = cmd.output().ok()?;
    let elapsed = started.elapsed();
    out.status.success().then(|| ms(elapsed))
}

/// `Ok` when the command's JSON reply is `ok` and names no host that missed the change.
fn check_reply(out: &std::process::Output) -> Result<(), String> {
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim()).map_err(|e| {
        format!(
            "reply not JSON ({e}): {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if !out.status.success() || v["status"] != "ok" {
        return Err(format!("switch refused ({}): {}", out.status, v["message"]));
    }
    match v["data"]["missed"].as_array() {
        Some(m) if !m.is_empty() => Err(format!("hosts missed the change: {m:?}")),
        _ => Ok(()),
    }
}

/// `Ok` when every body is `colour`.
fn every_host(bodies: &[String], colour: Colour) -> Result<(), String> {
    if bodies.iter().all(|b| b == colour.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "answered before every host served {}: {bodies:?}",
            colour.as_str()
        ))
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
