//! The flip comparison, per proxy: one proxy (its whole config and maps rendered by
//! cutover), two origins and the agent; the same switches made through cutover, then, with
//! the agent stopped and its drains undone, by the scripted method and by the proxy's own
//! floor (a raw `set map` for HAProxy, a bare `SIGHUP` for Nginx). Nginx's Lua runtime
//! mode runs as a third proxy kind with cutover's methods only: its reload-mode
//! counterpart and the scripted reloads are those of the Nginx kind in the same run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cutover_tests::agent::{Setup, SetupOptions};
use tokio::runtime::Handle;

use crate::load::LoadSpec;
use crate::method::{
    CutoverCli, CutoverSocket, HaproxyReload, HaproxySetMap, Method, NginxHup, NginxReload,
};
use crate::procstat::{self, ProcSample};
use crate::series::{self, Bench, SeriesSpec, Summary};

/// The host every request asks for: a route of service `web`.
pub const HOST: &str = "www.example.test";

/// The agent's reconcile interval in the benchmark: the shipped default.
pub const RECONCILE_MS: u64 = cutover::config::DEFAULT_RECONCILE_INTERVAL_MS;

/// How long the agent idles before its idle memory is read.
pub const IDLE: Duration = Duration::from_secs(3);

/// The proxies the benchmark drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Haproxy,
    Nginx,
    /// Nginx with `[proxy] runtime = "lua"`: switches written into the shared dict.
    NginxLua,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Haproxy => "HAProxy",
            Kind::Nginx => "Nginx",
            Kind::NginxLua => "Nginx (Lua runtime)",
        }
    }

    fn program(self) -> &'static str {
        match self {
            Kind::Haproxy => "haproxy",
            Kind::Nginx | Kind::NginxLua => "nginx",
        }
    }

    /// The proxy's executable, `None` when it is not installed.
    pub fn binary(self) -> Option<PathBuf> {
        cutover_tests::proxy_binary(self.program())
    }

    /// Origins and the proxy, started from what `cutover render` wrote.
    pub fn setup(self, binary: &Path, options: SetupOptions) -> Setup {
        match self {
            Kind::Haproxy => Setup::new(binary, options),
            Kind::Nginx => Setup::new_nginx(binary, options),
            Kind::NginxLua => Setup::new_nginx(
                binary,
                SetupOptions {
                    nginx_runtime: Some("lua".into()),
                    ..options
                },
            ),
        }
    }

    /// The pause between switches: above the agent's default minimum gap between two
    /// reloads (Nginx), so that every switch is measured alone.
    pub fn gap(self) -> Duration {
        match self {
            Kind::Haproxy | Kind::NginxLua => Duration::from_millis(100),
            Kind::Nginx => {
                Duration::from_millis(cutover::config::DEFAULT_NGINX_MIN_RELOAD_GAP_MS + 100)
            }
        }
    }

    /// The scripted method and the floor, for `setup` (with the agent stopped).
    pub fn baselines(self, setup: &Setup, binary: &Path) -> Vec<Box<dyn Method>> {
        match self {
            Kind::Haproxy => vec![
                Box::new(HaproxyReload::for_setup(setup, binary)),
                Box::new(HaproxySetMap {
                    admin_socket: setup.haproxy().paths().admin_socket.clone(),
                    services_map: setup.services_map(),
                }),
            ],
            Kind::Nginx => vec![
                Box::new(NginxReload::for_setup(setup, binary)),
                Box::new(NginxHup::for_setup(setup)),
            ],
            // A reload keeps the dict: rewriting the map and reloading moves nothing here.
            Kind::NginxLua => vec![],
        }
    }

    /// The proxy's own checker on the live config, as the scripts run it.
    pub fn check_args(self, setup: &Setup) -> Vec<std::ffi::OsString> {
        match self {
            Kind::Haproxy => {
                let cfg = setup.haproxy().paths().config.clone();
                vec!["-c".into(), "-q".into(), "-f".into(), cfg.into()]
            }
            Kind::Nginx | Kind::NginxLua => {
                let p = setup.nginx().paths();
                let mut args: Vec<std::ffi::OsString> = vec!["-t".into(), "-q".into()];
                args.extend(NginxReload::instance_args(p));
                args
            }
        }
    }
}

/// Options of the benchmark setup with `routes` as the routes of `web`.
pub fn options(routes: Vec<String>) -> SetupOptions {
    SetupOptions {
        routes,
        routes_in_file: true,
        reconcile_interval_ms: RECONCILE_MS,
        ..SetupOptions::default()
    }
}

/// Series through `setup`'s proxy, asking for [`HOST`].
pub fn bench<'a>(rt: &'a Handle, kind: Kind, setup: &Setup, load: &'a LoadSpec) -> Bench<'a> {
    Bench {
        rt,
        addr: setup.frontend(),
        host: HOST,
        load,
        proxy: kind.label(),
    }
}

/// What the flip comparison of one proxy measured.
pub struct Flips {
    pub kind: Kind,
    pub series: Vec<Summary>,
    /// The agent after idling [`IDLE`] from start, before any switch.
    pub idle: Option<ProcSample>,
}

/// Runs every method's series on one setup of `kind` with two routes.
pub fn flips(rt: &Handle, kind: Kind, load: &LoadSpec, spec: &SeriesSpec) -> Option<Flips> {
    let binary = kind.binary()?;
    Some(flips_on(
        rt,
        kind,
        &binary,
        kind.label(),
        load,
        spec,
        |_| vec![],
    ))
}

/// The flip comparison of `kind` with the proxy run from `binary`, labelled `proxy` in the
/// tables: cutover's CLI and socket with the agent running, then, with the agent stopped,
/// the baselines and the methods `extra` makes for the setup.
pub fn flips_on(
    rt: &Handle,
    kind: Kind,
    binary: &Path,
    proxy: &str,
    load: &LoadSpec,
    spec: &SeriesSpec,
    extra: impl Fn(&Setup) -> Vec<Box<dyn Method>>,
) -> Flips {
    let spec = SeriesSpec {
        gap: kind.gap(),
        ..spec.clone()
    };
    let mut setup = kind.setup(binary, options(vec![HOST.into(), "example.test".into()]));
    setup.start_agent();
    std::thread::sleep(IDLE);
    let pid = setup.agent().pid();
    let idle = procstat::sample(pid);
    let mut out = Vec::new();
    let bench = Bench {
        proxy,
        ..bench(rt, kind, &setup, load)
    };
    let mut cli = CutoverCli::for_setup(&setup);
    let mut socket = CutoverSocket {
        socket: setup.agent().socket.clone(),
    };
    for method in [&mut cli as &mut dyn Method, &mut socket] {
        eprintln!("{proxy}: {} x {}", method.label(), spec.switches);
        out.push(bench.run(&spec, method, Some(pid)).summary());
    }
    undrain_all(&setup);
    setup.stop_agent();
    let mut others = kind.baselines(&setup, binary);
    others.extend(extra(&setup));
    for mut method in others {
        eprintln!("{proxy}: {} x {}", method.label(), spec.switches);
        out.push(bench.run(&spec, method.as_mut(), None).summary());
    }
    Flips {
        kind,
        series: out,
        idle,
    }
}

/// The idle memory of an agent run from `binary` on a fresh two-route HAProxy setup.
pub fn idle_rss(binary: &Path) -> Option<ProcSample> {
    let haproxy = Kind::Haproxy.binary()?;
    let mut setup = Setup::new(&haproxy, options(vec![HOST.into(), "example.test".into()]));
    setup.start_agent_with(binary, cutover_tests::agent::AGENT_START);
    std::thread::sleep(IDLE);
    let sample = procstat::sample(setup.agent().pid());
    setup.stop_agent();
    sample
}

/// Takes both colours out of drain through the agent (the default policy drains the colour
/// that lost its traffic; HAProxy keeps that as runtime state, Nginx as `down` servers in
/// the rendered config), so the methods that run without the agent start from no drains.
pub fn undrain_all(setup: &Setup) {
    for colour in ["blue", "green"] {
        // The live colour is never drained: its undrain is refused, which is fine.
        let _ = setup.cli(&["undrain", "web", colour]);
    }
}

/// Median wall time of `runs` runs of `program args`, ms.
pub fn time_command(program: &Path, args: &[std::ffi::OsString], runs: usize) -> Option<f64> {
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
