//! cutover-bench: measures cutover against the scripted method (rewrite the map, reload)
//! on loopback with real proxies, two origins and a load generator of its own.
//!
//! `cargo run --release -p cutover-bench -- --short` (under a minute) or `-- --full`
//! (the run behind docs/BENCHMARKS.md; `--write-docs` puts its tables there), `-- --fleet`
//! (the fleet part of the full run alone: etcd, 3/10/30 hosts), `-- --remote` (the remote
//! API against the unix socket, in the same run), or `-- --versions --haproxy PATH ...` (the
//! HAProxy flips and reloads once per HAProxy binary: this host's and each one given).
//! Results also go to `target/bench/<short|full|fleet|remote|versions>.md`.
#![forbid(unsafe_code)]

mod client;
mod doc;
mod fleet;
mod fleet_report;
mod floor;
mod load;
mod method;
mod probe;
mod procstat;
mod remote;
mod report;
mod scale;
mod series;
mod suite;
mod targets;
mod versions;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::fleet::FleetPlan;
use crate::load::LoadSpec;
use crate::scale::ScaleFlips;
use crate::series::SeriesSpec;
use crate::suite::Kind;

/// What one run does.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `short`, `full` or `fleet`: names the results file and the report.
    pub name: &'static str,
    /// Run the flip comparison and the scale series (all but the fleet part).
    pub flips_part: bool,
    /// Switches per method in the flip comparison: HAProxy, Nginx (every Nginx switch is
    /// a reload, several times slower).
    pub flips: (usize, usize),
    /// Route counts of the scale series, with the switches per method at each: HAProxy,
    /// Nginx.
    pub scale: Vec<(usize, ScaleFlips, ScaleFlips)>,
    /// Build the `dist` profile and measure its size and idle memory.
    pub dist: bool,
    /// Measure this `dist` binary instead of building one.
    pub dist_binary: Option<PathBuf>,
    /// Replace the results section of docs/BENCHMARKS.md.
    pub write_docs: bool,
    /// Only Nginx, in both modes (`--nginx-only`): the Lua runtime against reloads.
    pub nginx_only: bool,
    /// The fleet part, when it runs.
    pub fleet: Option<FleetPlan>,
    /// The remote API's part, when it runs: switches per method.
    pub remote: Option<usize>,
    /// Only the HAProxy flip comparison, once per HAProxy binary: this host's, then these
    /// (`--haproxy PATH`, e.g. the chroot wrappers of scripts/chroot.sh).
    pub versions: Option<Vec<PathBuf>>,
}

impl Plan {
    fn short() -> Plan {
        let flips = |cutover, scripted| ScaleFlips { cutover, scripted };
        Plan {
            name: "short",
            flips_part: true,
            flips: (10, 6),
            scale: vec![(1_000, flips(5, 3), flips(5, 3))],
            dist: false,
            dist_binary: None,
            write_docs: false,
            nginx_only: false,
            fleet: Some(FleetPlan::short()),
            remote: Some(10),
            versions: None,
        }
    }

    fn full() -> Plan {
        let flips = |cutover, scripted| ScaleFlips { cutover, scripted };
        Plan {
            name: "full",
            flips_part: true,
            flips: (300, 100),
            scale: vec![
                (1_000, flips(100, 20), flips(30, 10)),
                (100_000, flips(50, 10), flips(20, 5)),
                (1_000_000, flips(30, 5), flips(10, 5)),
            ],
            dist: true,
            dist_binary: None,
            write_docs: false,
            nginx_only: false,
            fleet: Some(FleetPlan::full()),
            remote: Some(100),
            versions: None,
        }
    }

    /// The fleet part of the full run alone, with the `dist` sizes.
    fn fleet() -> Plan {
        Plan {
            name: "fleet",
            flips_part: false,
            scale: vec![],
            remote: None,
            ..Plan::full()
        }
    }

    /// The remote API's part of the full run alone: a switch's answer over gRPC and over
    /// the unix socket, in the same run.
    fn remote() -> Plan {
        Plan {
            name: "remote",
            flips_part: false,
            scale: vec![],
            dist: false,
            fleet: None,
            ..Plan::full()
        }
    }

    /// The HAProxy flips and reloads per version: 20 switches per method and version, a
    /// few minutes for three versions.
    fn versions() -> Plan {
        Plan {
            name: "versions",
            flips_part: false,
            flips: (20, 0),
            scale: vec![],
            dist: false,
            fleet: None,
            remote: None,
            versions: Some(vec![]),
            ..Plan::full()
        }
    }
}

const USAGE: &str =
    "usage: cutover-bench --short | --full | --fleet | --remote | --versions [--haproxy PATH]...\n\
     [--flips N] [--scale N,N...] [--no-scale] [--no-fleet] [--fleet-flips N]\n\
     [--fleet-sizes N,N...] [--peer-sizes N,N...] [--no-remote] [--remote-flips N] [--no-dist]\n\
     [--dist-binary PATH] [--write-docs] [--nginx-only]";

fn parse_args() -> anyhow::Result<Plan> {
    let (mut plan, mut flips) = (None, None);
    let (mut no_scale, mut no_dist, mut write_docs) = (false, false, false);
    let mut nginx_only = false;
    let (mut no_fleet, mut fleet_flips) = (false, None);
    let (mut fleet_sizes, mut peer_sizes) = (None, None);
    let (mut no_remote, mut remote_flips) = (false, None);
    let mut scale: Option<Vec<usize>> = None;
    let mut dist_binary = None;
    let mut haproxies = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--short" => plan = Some(Plan::short()),
            "--full" => plan = Some(Plan::full()),
            "--fleet" => plan = Some(Plan::fleet()),
            "--remote" => plan = Some(Plan::remote()),
            "--versions" => plan = Some(Plan::versions()),
            "--haproxy" => haproxies.push(PathBuf::from(
                args.next().context("--haproxy takes a path")?,
            )),
            "--no-fleet" => no_fleet = true,
            "--no-remote" => no_remote = true,
            "--remote-flips" => {
                let n = args.next().and_then(|n| n.parse::<usize>().ok());
                remote_flips = Some(n.context("--remote-flips takes a number")?);
            }
            "--fleet-flips" => {
                let n = args.next().and_then(|n| n.parse::<usize>().ok());
                fleet_flips = Some(n.context("--fleet-flips takes a number")?);
            }
            "--fleet-sizes" => fleet_sizes = Some(sizes(args.next(), "--fleet-sizes")?),
            "--peer-sizes" => peer_sizes = Some(sizes(args.next(), "--peer-sizes")?),
            "--flips" => {
                let n = args.next().and_then(|n| n.parse::<usize>().ok());
                flips = Some(n.context("--flips takes a number")?);
            }
            "--no-scale" => no_scale = true,
            "--scale" => {
                let list = args
                    .next()
                    .context("--scale takes route counts, e.g. 1000,1000000")?;
                let sizes: Result<Vec<usize>, _> = list.split(',').map(str::parse).collect();
                scale = Some(sizes.context("--scale takes route counts, e.g. 1000,1000000")?);
            }
            "--no-dist" => no_dist = true,
            "--dist-binary" => {
                dist_binary = Some(PathBuf::from(
                    args.next().context("--dist-binary takes a path")?,
                ))
            }
            "--write-docs" => write_docs = true,
            "--nginx-only" => nginx_only = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let mut plan: Plan = plan.context(USAGE)?;
    plan.flips = flips.map_or(plan.flips, |n| (n, n));
    if let Some(sizes) = scale {
        // Switches per size as the plan has them for the nearest size it knows.
        let known = plan.scale.clone();
        plan.scale = sizes
            .into_iter()
            .map(|n| {
                let nearest = known.iter().min_by_key(|(k, _, _)| k.abs_diff(n));
                let few = ScaleFlips {
                    cutover: 10,
                    scripted: 3,
                };
                nearest.map_or((n, few, few), |(_, h, g)| (n, *h, *g))
            })
            .collect();
    }
    if no_scale {
        plan.scale.clear();
    }
    plan.dist &= !no_dist;
    if no_fleet {
        plan.fleet = None;
    }
    if let Some(fleet) = plan.fleet.as_mut() {
        fleet.flips = fleet_flips.unwrap_or(fleet.flips);
        fleet.sizes = fleet_sizes.unwrap_or(fleet.sizes.clone());
        fleet.peer_sizes = peer_sizes.unwrap_or(fleet.peer_sizes.clone());
        if !fleet.sizes.contains(&fleet.target_hosts) {
            fleet.target_hosts = fleet.sizes.iter().copied().max().unwrap_or(0);
        }
    }
    if no_remote {
        plan.remote = None;
    }
    if let Some(n) = remote_flips {
        plan.remote = plan.remote.map(|_| n);
    }
    plan.dist_binary = dist_binary;
    plan.write_docs = write_docs;
    plan.nginx_only = nginx_only;
    match plan.versions.as_mut() {
        Some(versions) => versions.extend(haproxies),
        None if !haproxies.is_empty() => bail!("--haproxy goes with --versions\n{USAGE}"),
        None => {}
    }
    Ok(plan)
}

/// A comma-separated list of host counts given to `flag` (an empty list is allowed).
fn sizes(list: Option<String>, flag: &str) -> anyhow::Result<Vec<usize>> {
    let list = list.with_context(|| format!("{flag} takes host counts, e.g. 3,10"))?;
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{flag} takes host counts, e.g. 3,10"))
}

fn main() -> anyhow::Result<()> {
    let plan = parse_args()?;
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build measures a debug agent; use cargo run --release");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let load_before = report::load_average();
    let fsync_before = report::fsync_latency(50);
    eprintln!("cutover-bench {}: building the agent", plan.name);
    let _ = cutover_tests::cutover_binary();
    let dist = match &plan.dist_binary {
        Some(path) => Some(doc::Dist::at(path)?),
        None => plan.dist.then(doc::build_dist).transpose()?,
    };
    // The run's time counts from here: the builds are not part of it.
    let started = Instant::now();
    let load = LoadSpec::default();
    let spec = SeriesSpec {
        switches: plan.flips.0,
        // Per proxy: see Kind::gap.
        gap: Duration::ZERO,
        probe_wait: Duration::from_secs(30),
        warmup: Duration::from_millis(500),
    };
    if let Some(extra) = &plan.versions {
        return run_versions(
            &plan,
            extra,
            rt.handle(),
            &load,
            &spec,
            load_before,
            started,
        );
    }
    let kinds: &[Kind] = if plan.nginx_only {
        &[Kind::Nginx, Kind::NginxLua]
    } else {
        &[Kind::Haproxy, Kind::Nginx, Kind::NginxLua]
    };
    for kind in kinds.iter().filter(|k| k.binary().is_none()) {
        eprintln!("{} is not installed: its half is left out", kind.label());
    }
    let parts: &[Kind] = if plan.flips_part { kinds } else { &[] };
    let flips: Vec<suite::Flips> = parts
        .iter()
        .filter_map(|kind| {
            let switches = match kind {
                // The Lua runtime switches without a reload: as many as HAProxy.
                Kind::Haproxy | Kind::NginxLua => plan.flips.0,
                Kind::Nginx => plan.flips.1,
            };
            let spec = SeriesSpec {
                switches,
                ..spec.clone()
            };
            suite::flips(rt.handle(), *kind, &load, &spec)
        })
        .collect();
    let dist_idle = dist
        .as_ref()
        .filter(|_| plan.flips_part)
        .and_then(|d| suite::idle_rss(&d.binary));
    // The scale series run for the proxies whose flips ran, the Lua runtime aside.
    let scaled: Vec<Kind> = [Kind::Haproxy, Kind::Nginx]
        .into_iter()
        .filter(|k| parts.contains(k))
        .collect();
    let points: Vec<scale::Point> = scaled
        .iter()
        .filter(|k| kinds.contains(k))
        .flat_map(|kind| {
            plan.scale.iter().map(move |(n, h, g)| match kind {
                Kind::Nginx => (*kind, *n, *g),
                _ => (*kind, *n, *h),
            })
        })
        .filter_map(|(kind, n, f)| scale::point(rt.handle(), kind, n, &load, &spec, f))
        .collect();
    let fleet = plan
        .fleet
        .as_ref()
        .map(|f| fleet::run(rt.handle(), f))
        .unwrap_or_default();
    let remote = plan
        .remote
        .map(|n| remote::run(rt.handle(), n))
        .unwrap_or_default();
    let results = doc::Results {
        plan: plan.clone(),
        load: load.clone(),
        machine: report::machine(),
        load_before,
        load_after: report::load_average(),
        fsync_before,
        fsync_after: report::fsync_latency(50),
        elapsed: started.elapsed(),
        flips,
        points,
        dist,
        dist_idle,
        fleet,
        remote,
    };
    let text = results.markdown();
    print_and_keep(plan.name, &text)?;
    if plan.write_docs {
        let (main, fleet, remote) = results.sections();
        let docs = doc::write_docs(main.as_deref(), fleet.as_deref(), remote.as_deref())?;
        eprintln!("generated sections of {} replaced", docs.display());
    }
    Ok(())
}

/// The `--versions` run: this host's HAProxy, then each one given, and the section of
/// docs/BENCHMARKS.md with a column per version.
fn run_versions(
    plan: &Plan,
    extra: &[PathBuf],
    rt: &tokio::runtime::Handle,
    load: &LoadSpec,
    spec: &SeriesSpec,
    load_before: String,
    started: Instant,
) -> anyhow::Result<()> {
    let binaries: Vec<PathBuf> = suite::Kind::Haproxy
        .binary()
        .into_iter()
        .chain(extra.iter().cloned())
        .collect();
    let measured = versions::run(rt, &binaries, load, spec);
    if measured.is_empty() {
        bail!("no HAProxy ran: install haproxy or give --haproxy PATH");
    }
    let conditions = versions::Conditions {
        code: report::commit(),
        host: report::host(),
        load_before,
        load_after: report::load_average(),
        elapsed: started.elapsed(),
        load: load.clone(),
        switches: spec.switches,
    };
    let text = versions::markdown(&measured, &conditions);
    print_and_keep(plan.name, &text)?;
    if plan.write_docs {
        let docs = doc::write_section(&text, versions::BEGIN, versions::END)?;
        eprintln!("generated versions section of {} replaced", docs.display());
    }
    Ok(())
}

/// Prints the results and writes them to `target/bench/<name>.md`.
fn print_and_keep(name: &str, text: &str) -> anyhow::Result<()> {
    println!("{text}");
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/bench")
        .join(format!("{name}.md"));
    std::fs::create_dir_all(out.parent().expect("has a parent"))?;
    std::fs::write(&out, text).with_context(|| format!("write {}", out.display()))?;
    eprintln!("results written to {}", out.display());
    Ok(())
}
