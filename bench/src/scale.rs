//! The scale series: the same setup with 1k, 100k and 1M routes, per proxy. At each size:
//! the agent's start and memory, the proxy's checker (`haproxy -c`, `nginx -t`), flips
//! through cutover and by the scripted method, and a rewrite of the whole route map (every
//! key renamed) through cutover and by the script.

use std::time::{Duration, Instant};

use cutover_tests::agent::Setup;
use nix::sys::signal::Signal;
use tokio::runtime::Handle;

use crate::client::{self, Outcome};
use crate::load::{Load, LoadSpec, Recorder};
use crate::method::{CutoverCli, Method};
use crate::procstat::{self, ProcSample};
use crate::series::{SeriesSpec, Summary};
use crate::suite::{bench, options, time_command, undrain_all, Kind, HOST, IDLE};

/// How long a route-map rewrite may take before it counts as not done.
const REWRITE_LIMIT: Duration = Duration::from_secs(300);
/// How long the agent may take to start (it reads every map back from HAProxy).
const AGENT_START: Duration = Duration::from_secs(300);

/// Switches per method at one size.
#[derive(Debug, Clone, Copy)]
pub struct ScaleFlips {
    pub cutover: usize,
    pub scripted: usize,
}

/// One rewrite of the whole route map.
#[derive(Debug, Clone, Default)]
pub struct Rewrite {
    /// From the command to the first response on a route that only the new map has.
    pub first_served_ms: Option<f64>,
    /// From the command to the agent's "new config in force" (confirmed and persisted).
    pub done_ms: Option<f64>,
    /// Failed requests of the load meanwhile.
    pub failed: u64,
}

/// Everything measured at one size.
pub struct Point {
    pub kind: Kind,
    pub routes: usize,
    pub agent_start_ms: f64,
    pub idle: Option<ProcSample>,
    pub check_ms: Option<f64>,
    pub cutover: Summary,
    pub scripted: Summary,
    pub rewrite_cutover: Rewrite,
    pub rewrite_scripted: Rewrite,
    /// The agent after the rewrite (its peak memory includes the rewrite).
    pub agent_after: Option<ProcSample>,
}

/// Route keys of a map of `n` routes, generation `gen`: the benchmark host and n-1 others.
fn routes(n: usize, gen: u32) -> Vec<String> {
    let mut r = Vec::with_capacity(n);
    r.push(HOST.to_owned());
    r.extend((1..n).map(|i| format!("r{i}.g{gen}.example.test")));
    r
}

/// Measures one size of one proxy; `None` when the proxy is not installed.
pub fn point(
    rt: &Handle,
    kind: Kind,
    n: usize,
    load: &LoadSpec,
    spec: &SeriesSpec,
    flips: ScaleFlips,
) -> Option<Point> {
    let binary = kind.binary()?;
    let label = format!("{} {n}", kind.label());
    eprintln!("{label}: rendering and starting the proxy");
    let mut setup = kind.setup(&binary, options(routes(n, 1)));
    let started = Instant::now();
    setup.start_agent_with(&cutover_tests::cutover_binary(), AGENT_START);
    let agent_start_ms = started.elapsed().as_secs_f64() * 1e3;
    std::thread::sleep(IDLE);
    let pid = setup.agent().pid();
    let idle = procstat::sample(pid);
    let check_ms = time_command(&binary, &kind.check_args(&setup), 3);
    let bench = bench(rt, kind, &setup, load);
    let spec_n = |k: usize| SeriesSpec {
        switches: k,
        gap: kind.gap(),
        ..spec.clone()
    };
    let mut cli = CutoverCli::for_setup(&setup);
    eprintln!("{label}: {} x {}", cli.label(), flips.cutover);
    let cutover = bench
        .run(&spec_n(flips.cutover), &mut cli, Some(pid))
        .summary();

    eprintln!("{label}: route map rewrite through cutover");
    let routes_file = setup.file("web.routes");
    let rewrite_cutover = rewrite(rt, &setup, load, "cutover.example.test", || {
        let mut r = routes(n - 1, 2);
        r.push("cutover.example.test".into());
        std::fs::write(&routes_file, r.join("\n") + "\n").expect("write routes file");
        let before = setup.agent().log().matches(CONFIG_IN_FORCE).count();
        setup.agent().signal(Signal::SIGHUP);
        Some(before)
    });
    let agent_after = procstat::sample(pid);
    undrain_all(&setup);
    setup.stop_agent();

    let mut reload = kind.baselines(&setup, &binary).remove(0);
    eprintln!("{label}: {} x {}", reload.label(), flips.scripted);
    let scripted = bench
        .run(&spec_n(flips.scripted), reload.as_mut(), None)
        .summary();

    eprintln!("{label}: route map rewrite + reload");
    let routes_map = setup.routes_map();
    let end = match kind {
        Kind::Haproxy => "",
        Kind::Nginx | Kind::NginxLua => ";",
    };
    let rewrite_scripted = rewrite(rt, &setup, load, "script.example.test", || {
        let mut r = routes(n - 1, 3);
        r.push("script.example.test".into());
        let text: String = r.iter().map(|k| format!("{k} web{end}\n")).collect();
        std::fs::write(&routes_map, text).expect("write routes map");
        reload.reload().expect("reload after the rewrite");
        None
    });
    reload.settle();
    Some(Point {
        kind,
        routes: n,
        agent_start_ms,
        idle,
        check_ms,
        cutover,
        scripted,
        rewrite_cutover,
        rewrite_scripted,
        agent_after,
    })
}

/// What the agent logs once a new config (here: new routes) is applied and persisted.
const CONFIG_IN_FORCE: &str = "new config in force";

/// Runs `act` under load and measures until `marker` is served and, when `act` returns the
/// count of the agent's "new config in force" lines before it acted, until there is one
/// more.
fn rewrite(
    rt: &Handle,
    setup: &Setup,
    load: &LoadSpec,
    marker: &str,
    act: impl FnOnce() -> Option<usize>,
) -> Rewrite {
    let addr = setup.frontend();
    let rec = Recorder::new();
    let running = Load::start(rt, addr, HOST, load, &rec);
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let logged_before = act();
    let request = client::request_bytes(marker, false);
    let mut first_served_ms = None;
    while t0.elapsed() < REWRITE_LIMIT {
        let outcome = rt.block_on(client::one_shot(addr, &request, Duration::from_secs(2)));
        if matches!(outcome, Outcome::Ok(_)) {
            first_served_ms = Some(t0.elapsed().as_secs_f64() * 1e3);
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let done_ms = logged_before.and_then(|before| agent_done(setup, before, t0));
    std::thread::sleep(Duration::from_millis(500));
    running.stop(rt);
    let records = rec.take();
    Rewrite {
        first_served_ms,
        done_ms,
        failed: records.iter().filter(|r| r.outcome.is_failure()).count() as u64,
    }
}

/// Waits for one more "new config in force" in the agent's log than `before`; `None` when
/// it does not come.
fn agent_done(setup: &Setup, before: usize, t0: Instant) -> Option<f64> {
    let log_path = setup.file("agent.log");
    while t0.elapsed() < REWRITE_LIMIT {
        let log = std::fs::read_to_string(&log_path).ok()?;
        if log.matches(CONFIG_IN_FORCE).count() > before {
            return Some(t0.elapsed().as_secs_f64() * 1e3);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}
