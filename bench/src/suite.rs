//! The HAProxy half: one HAProxy (master-worker, config and maps rendered by cutover), two
//! origins and the agent; the same switches made through cutover, then with the agent
//! stopped by the scripted method and by a raw `set map`.

use std::path::Path;
use std::time::Duration;

use cutover_tests::agent::{Setup, SetupOptions};
use tokio::runtime::Handle;

use crate::load::LoadSpec;
use crate::method::{CutoverCli, CutoverSocket, HaproxyReload, HaproxySetMap, Method};
use crate::procstat::{self, ProcSample};
use crate::series::{self, Bench, SeriesSpec, Summary};

/// The host every request asks for: a route of service `web`.
pub const HOST: &str = "www.example.test";

/// The agent's reconcile interval in the benchmark: the shipped default.
pub const RECONCILE_MS: u64 = cutover::config::DEFAULT_RECONCILE_INTERVAL_MS;

/// How long the agent idles before its idle memory is read.
pub const IDLE: Duration = Duration::from_secs(3);

/// Options of the benchmark setup with `routes` as the routes of `web`.
pub fn options(routes: Vec<String>) -> SetupOptions {
    SetupOptions {
        routes,
        routes_in_file: true,
        reconcile_interval_ms: RECONCILE_MS,
        ..SetupOptions::default()
    }
}

/// What the HAProxy flip comparison measured.
pub struct Flips {
    pub series: Vec<Summary>,
    /// The agent after idling [`IDLE`] from start, before any switch.
    pub idle: Option<ProcSample>,
}

/// Series through `setup`'s HAProxy, asking for [`HOST`].
pub fn bench<'a>(rt: &'a Handle, setup: &Setup, load: &'a LoadSpec) -> Bench<'a> {
    Bench {
        rt,
        addr: setup.frontend(),
        host: HOST,
        load,
        proxy: "HAProxy",
    }
}

/// Runs every method's series on one setup with two routes.
pub fn flips(rt: &Handle, load: &LoadSpec, spec: &SeriesSpec) -> Flips {
    let binary = cutover_tests::proxy_binary("haproxy").expect("haproxy is installed");
    let mut setup = Setup::new(&binary, options(vec![HOST.into(), "example.test".into()]));
    setup.start_agent();
    std::thread::sleep(IDLE);
    let pid = setup.agent().pid();
    let idle = procstat::sample(pid);
    let mut out = Vec::new();
    let bench = bench(rt, &setup, load);
    let mut cli = CutoverCli::for_setup(&setup);
    let mut socket = CutoverSocket {
        socket: setup.agent().socket.clone(),
    };
    for method in [&mut cli as &mut dyn Method, &mut socket] {
        eprintln!("haproxy: {} x {}", method.label(), spec.switches);
        out.push(bench.run(spec, method, Some(pid)).summary());
    }
    setup.stop_agent();
    undrain_all(&setup);
    let mut reload = HaproxyReload::for_setup(&setup, &binary);
    let mut set_map = HaproxySetMap {
        admin_socket: setup.haproxy().paths().admin_socket.clone(),
        services_map: setup.services_map(),
    };
    for method in [&mut reload as &mut dyn Method, &mut set_map] {
        eprintln!("haproxy: {} x {}", method.label(), spec.switches);
        out.push(bench.run(spec, method, None).summary());
    }
    Flips { series: out, idle }
}

/// The idle memory of an agent run from `binary` on a fresh two-route setup.
pub fn idle_rss(binary: &Path) -> Option<ProcSample> {
    let haproxy = cutover_tests::proxy_binary("haproxy")?;
    let mut setup = Setup::new(&haproxy, options(vec![HOST.into(), "example.test".into()]));
    setup.start_agent_with(binary, cutover_tests::agent::AGENT_START);
    std::thread::sleep(IDLE);
    let sample = procstat::sample(setup.agent().pid());
    setup.stop_agent();
    sample
}

/// Puts every server back to `ready`: the agent drains the colour that lost its traffic,
/// and that runtime state outlives the agent.
pub fn undrain_all(setup: &Setup) {
    for server in ["web_blue/b1", "web_green/g1"] {
        setup
            .haproxy()
            .admin_command(&format!("set server {server} state ready"));
    }
}

/// Median wall time of `runs` runs of `program args`, ms.
pub fn time_command(program: &Path, args: &[&std::ffi::OsStr], runs: usize) -> Option<f64> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = std::time::Instant::now();
        let status = std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        if !status.success() {
            return None;
        }
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    series::percentile(&times, 50.0)
}
