//! The results document: headline ratios against the scripted method, the targets with
//! the measured figures, the tables; and the `dist` build whose size it reports.

use std::fmt::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::fleet::FleetResults;
use crate::load::LoadSpec;
use crate::procstat::ProcSample;
use crate::report::{self, f};
use crate::scale::Point;
use crate::series::{percentile, Summary};
use crate::suite::{Flips, Kind};
use crate::Plan;

/// Markers around the generated section of docs/BENCHMARKS.md.
pub const BEGIN: &str = "<!-- results:begin (written by cutover-bench --full --write-docs) -->";
pub const END: &str = "<!-- results:end -->";
/// Markers around the generated fleet section of docs/BENCHMARKS.md.
pub const FLEET_BEGIN: &str =
    "<!-- fleet:begin (written by cutover-bench --fleet|--full --write-docs) -->";
pub const FLEET_END: &str = "<!-- fleet:end -->";
/// Markers around the generated remote API section of docs/BENCHMARKS.md.
pub const REMOTE_BEGIN: &str =
    "<!-- remote:begin (written by cutover-bench --remote|--full --write-docs) -->";
pub const REMOTE_END: &str = "<!-- remote:end -->";

/// The `dist` build of the cutover binary.
pub struct Dist {
    pub binary: PathBuf,
    pub bytes: u64,
    /// Size of the same build without the default features (`--no-default-features`: no
    /// fleet store, no remote API), when built.
    pub no_etcd_bytes: Option<u64>,
    /// Size of the same build with the `etcd` feature alone (no remote API), when built.
    pub no_grpc_bytes: Option<u64>,
}

impl Dist {
    /// A binary built before.
    pub fn at(path: &std::path::Path) -> anyhow::Result<Dist> {
        let bytes = std::fs::metadata(path)
            .with_context(|| path.display().to_string())?
            .len();
        Ok(Dist {
            binary: path.to_owned(),
            bytes,
            no_etcd_bytes: None,
            no_grpc_bytes: None,
        })
    }
}

/// `cargo build --profile dist -p cutover`, from the workspace root; first the same
/// without the default features and with `etcd` alone, whose sizes are kept (each build
/// replaces the binary).
pub fn build_dist() -> anyhow::Result<Dist> {
    let no_etcd = cargo_dist(&["--no-default-features"])?;
    let no_grpc = cargo_dist(&["--no-default-features", "--features", "etcd"])?;
    let mut dist = cargo_dist(&[])?;
    dist.no_etcd_bytes = Some(no_etcd.bytes);
    dist.no_grpc_bytes = Some(no_grpc.bytes);
    Ok(dist)
}

/// One `cargo build --profile dist -p cutover` with `extra` arguments.
fn cargo_dist(extra: &[&str]) -> anyhow::Result<Dist> {
    eprintln!("building the dist profile {extra:?} (fat LTO; takes a while)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--profile",
            "dist",
            "-p",
            "cutover",
            "--bin",
            "cutover",
        ])
        .args(extra)
        .arg("--message-format=json")
        .current_dir(cutover_tests::workspace_root())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("run cargo build --profile dist")?;
    if !out.status.success() {
        bail!(
            "cargo build --profile dist -p cutover {extra:?} failed: {}",
            out.status
        );
    }
    let binary = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "cutover")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo printed no cutover executable")?;
    Dist::at(&binary)
}

/// Everything one run measured.
pub struct Results {
    pub plan: Plan,
    pub load: LoadSpec,
    pub machine: String,
    pub load_before: String,
    pub load_after: String,
    /// fsync latency of a small file before and after the run.
    pub fsync_before: String,
    pub fsync_after: String,
    pub elapsed: Duration,
    /// The flip comparison of each proxy that is installed.
    pub flips: Vec<Flips>,
    pub points: Vec<Point>,
    pub dist: Option<Dist>,
    pub dist_idle: Option<ProcSample>,
    /// The fleet part (empty when it did not run).
    pub fleet: FleetResults,
    /// The remote API's part (empty when it did not run).
    pub remote: crate::remote::RemoteResults,
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl Results {
    /// Every series of the flip comparison, all proxies.
    pub fn all_series(&self) -> Vec<Summary> {
        self.flips.iter().flat_map(|f| f.series.clone()).collect()
    }

    /// The series of `method` on `proxy`.
    pub fn series(&self, proxy: Kind, method: &str) -> Option<&Summary> {
        self.flips
            .iter()
            .flat_map(|f| &f.series)
            .find(|s| s.proxy == proxy.label() && s.method == method)
    }

    /// The whole report: the run, the flip comparison and scale series when they ran, the
    /// fleet part and the remote API's part when they ran.
    pub fn markdown(&self) -> String {
        let (results, fleet, remote) = self.sections();
        let parts: Vec<String> = [results, fleet, remote].into_iter().flatten().collect();
        if parts.is_empty() {
            return self.header("Results", true);
        }
        parts.join("\n")
    }

    /// The results section, the fleet section and the remote API section of
    /// docs/BENCHMARKS.md, each `None` when its part did not run; each opens with the run's
    /// header.
    pub fn sections(&self) -> (Option<String>, Option<String>, Option<String>) {
        let results = (!self.flips.is_empty() || !self.points.is_empty()).then(|| {
            let mut t = self.header("Results", true);
            self.body(&mut t);
            t
        });
        let fleet = self.fleet.plan.is_some().then(|| {
            format!(
                "{}{}",
                self.header("Fleet results", false),
                crate::fleet_report::markdown(&self.fleet, self.dist.as_ref())
            )
        });
        let remote = self.remote.switches.is_some().then(|| {
            format!(
                "{}{}",
                self.header("Remote API results", false),
                crate::remote::markdown(&self.remote, self.dist.as_ref())
            )
        });
        (results, fleet, remote)
    }

    /// `## <title>: <plan> run` and the run's conditions; `load`: the load generator's, which
    /// runs during the flip and scale series only.
    fn header(&self, title: &str, load: bool) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "## {title}: {} run\n\n- Code: {}\n- Machine: {}\n- Load average before / after the run: {} / {} (2 cores: above ~1 the measurements share the CPU with other work)\n- fsync of a small file where the maps and state live (ext4), p50 / p99, before / after the run: {} / {}\n- Run time (after the builds): {:.0} s.",
            self.plan.name,
            report::commit(),
            self.machine,
            self.load_before,
            self.load_after,
            self.fsync_before,
            self.fsync_after,
            self.elapsed.as_secs_f64(),
        );
        if load {
            let _ = writeln!(
                t,
                " Load during every series: {} kept-alive connections at {:.0} req/s in all, plus {:.0} new connections/s (one request each); requests time out after {:?}.",
                self.load.keepalive_conns,
                self.load.keepalive_rate,
                self.load.new_conn_rate,
                self.load.timeout,
            );
        }
        t.push('\n');
        t
    }

    /// The flip comparison and the scale series.
    fn body(&self, t: &mut String) {
        for kind in [Kind::Haproxy, Kind::Nginx] {
            crate::targets::headline(self, kind, t);
        }
        crate::targets::nginx_lua(self, t);
        crate::targets::targets(self, t);
        crate::floor::floor(self, t);
        let _ = writeln!(
            t,
            "### Flips, two routes\n\nMilliseconds from issuing the command. \"Old colour last served\": the last response in the old colour to a request sent after the command was issued. Failed: every request of the load and the probes that did not get a 2xx from a colour.\n\n{}\n{}",
            report::flip_table(&self.all_series()),
            report::details(&self.all_series())
        );
        if !self.points.is_empty() {
            let series: Vec<Summary> = self
                .points
                .iter()
                .flat_map(|p| {
                    [&p.cutover, &p.scripted].map(|s| Summary {
                        method: format!("{} routes, {}", p.routes, s.method),
                        proxy: p.kind.label().into(),
                        ..s.clone()
                    })
                })
                .collect();
            let _ = writeln!(
                t,
                "### Scale\n\n{}\n{}",
                scale_table(&self.points),
                report::details(&series)
            );
        }
    }
}

fn scale_table(points: &[Point]) -> String {
    let mut t = String::from(
        "| proxy | routes | agent start | agent idle RSS | agent peak RSS | `haproxy -c` / `nginx -t` | cutover flip, new conn p50 / p99 | kept-alive p50 / p99 | rewrite + reload flip, new conn p50 / p99 | route-map rewrite, cutover: new route served / confirmed | route-map rewrite + reload: new route served | failed (cutover flips / reload flips / rewrites) |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for p in points {
        let q = |v: &[f64]| format!("{} / {}", f(percentile(v, 50.0)), f(percentile(v, 99.0)));
        let _ = writeln!(
            t,
            "| {} | {} | {} ms | {} | {} | {} ms | {} | {} | {} | {} / {} ms | {} ms | {} / {} / {} + {} |",
            p.kind.label(),
            p.routes,
            f(Some(p.agent_start_ms)),
            p.idle.map_or("-".into(), |s| mib(s.rss_kib)),
            p.agent_after.map_or("-".into(), |s| mib(s.hwm_kib)),
            f(p.check_ms),
            q(&p.cutover.first_new),
            q(&p.cutover.first_keepalive),
            q(&p.scripted.first_new),
            f(p.rewrite_cutover.first_served_ms),
            f(p.rewrite_cutover.done_ms),
            f(p.rewrite_scripted.first_served_ms),
            p.cutover.failed,
            p.scripted.failed,
            p.rewrite_cutover.failed,
            p.rewrite_scripted.failed,
        );
    }
    t
}

/// Replaces the generated sections of docs/BENCHMARKS.md: the results section with
/// `results`, the fleet section with `fleet` and the remote API section with `remote`,
/// each when given.
pub fn write_docs(
    results: Option<&str>,
    fleet: Option<&str>,
    remote: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let mut path = docs_path();
    for (text, begin, end) in [
        (results, BEGIN, END),
        (fleet, FLEET_BEGIN, FLEET_END),
        (remote, REMOTE_BEGIN, REMOTE_END),
    ] {
        let Some(text) = text else { continue };
        path = write_section(text, begin, end)?;
    }
    Ok(path)
}

fn docs_path() -> PathBuf {
    cutover_tests::workspace_root().join("docs/BENCHMARKS.md")
}

/// Replaces what lies between `begin` and `end` in docs/BENCHMARKS.md with `text`.
pub fn write_section(text: &str, begin: &str, end: &str) -> anyhow::Result<PathBuf> {
    let path = docs_path();
    let doc = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let (Some(b), Some(e)) = (doc.find(begin), doc.find(end)) else {
        bail!("{} has no {begin} ... {end} section", path.display());
    };
    let doc = format!("{}{begin}\n\n{}\n{}", &doc[..b], text.trim_end(), &doc[e..]);
    std::fs::write(&path, doc)?;
    Ok(path)
}
