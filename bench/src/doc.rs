//! The results document: headline ratios against the scripted method, the targets with
//! the measured figures, the tables; and the `dist` build whose size it reports.

use std::fmt::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::load::LoadSpec;
use crate::procstat::ProcSample;
use crate::report::{self, f};
use crate::scale::Point;
use crate::series::{percentile, Summary};
use crate::{haproxy::Flips, Plan};

/// Markers around the generated section of docs/BENCHMARKS.md.
pub const BEGIN: &str = "<!-- results:begin (written by cutover-bench --full --write-docs) -->";
pub const END: &str = "<!-- results:end -->";

/// The `dist` build of the cutover binary.
pub struct Dist {
    pub binary: PathBuf,
    pub bytes: u64,
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
        })
    }
}

/// `cargo build --profile dist -p cutover`, from the workspace root.
pub fn build_dist() -> anyhow::Result<Dist> {
    eprintln!("building the dist profile (fat LTO; takes a while)");
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
        .arg("--message-format=json")
        .current_dir(cutover_tests::workspace_root())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("run cargo build --profile dist")?;
    if !out.status.success() {
        bail!(
            "cargo build --profile dist -p cutover failed: {}",
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
    pub flips: Flips,
    pub points: Vec<Point>,
    pub dist: Option<Dist>,
    pub dist_idle: Option<ProcSample>,
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn yes(met: bool) -> &'static str {
    if met {
        "**met**"
    } else {
        "**missed**"
    }
}

/// One figure of a series.
type Figure = fn(&Summary) -> Option<f64>;

/// `p50 / p99` of the slower of the two probes.
fn worst(s: &Summary, q: f64) -> Option<f64> {
    let a = percentile(&s.first_new, q)?;
    let b = percentile(&s.first_keepalive, q)?;
    Some(a.max(b))
}

fn ratio(scripted: Option<f64>, cutover: Option<f64>) -> String {
    match (scripted, cutover) {
        (Some(s), Some(c)) if c > 0.0 => format!("{:.0}x", s / c),
        _ => "-".into(),
    }
}

impl Results {
    fn series(&self, method: &str) -> Option<&Summary> {
        self.flips.series.iter().find(|s| s.method == method)
    }

    pub fn markdown(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "## Results: {} run\n\n- Machine: {}\n- Load average before / after the run: {} / {} (2 cores: above ~1 the measurements share the CPU with other work)\n- fsync of a small file where the maps and state live (ext4), p50 / p99, before / after the run: {} / {}\n- Run time: {:.0} s. Load during every series: {} kept-alive connections at {:.0} req/s in all, plus {:.0} new connections/s (one request each); requests time out after {:?}.\n",
            self.plan.name,
            self.machine,
            self.load_before,
            self.load_after,
            self.fsync_before,
            self.fsync_after,
            self.elapsed.as_secs_f64(),
            self.load.keepalive_conns,
            self.load.keepalive_rate,
            self.load.new_conn_rate,
            self.load.timeout,
        );
        self.headline(&mut t);
        self.targets(&mut t);
        let _ = writeln!(
            t,
            "### Flips, two routes\n\nMilliseconds from issuing the command. \"Old colour last served\": the last response in the old colour to a request sent after the command was issued. Failed: every request of the load and the probes that did not get a 2xx from a colour.\n\n{}\n{}",
            report::flip_table(&self.flips.series),
            report::details(&self.flips.series)
        );
        if !self.points.is_empty() {
            let series: Vec<Summary> = self
                .points
                .iter()
                .flat_map(|p| {
                    [&p.cutover, &p.scripted].map(|s| Summary {
                        method: format!("{} routes, {}", p.routes, s.method),
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
        t
    }

    fn headline(&self, t: &mut String) {
        let (Some(c), Some(s)) = (
            self.series("cutover (CLI)"),
            self.series("map rewrite + reload"),
        ) else {
            return;
        };
        let sock = self.series("cutover (socket)");
        let _ = writeln!(
            t,
            "### Headline: HAProxy, cutover against rewrite + reload\n\n| figure | cutover (CLI) | cutover (socket) | map rewrite + reload | reload / cutover (CLI) |\n| --- | ---: | ---: | ---: | ---: |"
        );
        let rows: [(&str, Figure); 5] = [
            ("first new colour, new connection, p50 (ms)", |s| {
                percentile(&s.first_new, 50.0)
            }),
            ("first new colour, kept-alive connection, p50 (ms)", |s| {
                percentile(&s.first_keepalive, 50.0)
            }),
            ("first new colour, slower probe, p99 (ms)", |s| {
                worst(s, 99.0)
            }),
            ("old colour last served, p50 (ms)", |s| {
                percentile(&s.old_gone, 50.0)
            }),
            ("failed requests per 100 switches", |s| {
                Some(s.failed as f64 * 100.0 / s.switches.max(1) as f64)
            }),
        ];
        for (name, get) in rows {
            let _ = writeln!(
                t,
                "| {name} | {} | {} | {} | {} |",
                f(get(c)),
                f(sock.and_then(get)),
                f(get(s)),
                ratio(get(s), get(c))
            );
        }
        t.push('\n');
    }

    fn targets(&self, t: &mut String) {
        let _ = writeln!(
            t,
            "### Targets\n\n| target | measured | |\n| --- | --- | --- |"
        );
        for (label, method) in [("CLI", "cutover (CLI)"), ("socket", "cutover (socket)")] {
            if let Some(s) = self.series(method) {
                let (p50, p99) = (worst(s, 50.0), worst(s, 99.0));
                let _ = writeln!(
                    t,
                    "| HAProxy flip p50 <= 2 ms, p99 <= 5 ms ({label}) | p50 {} ms, p99 {} ms (slower probe; {} switches) | {} |",
                    f(p50),
                    f(p99),
                    s.switches,
                    yes(p50.is_some_and(|v| v <= 2.0) && p99.is_some_and(|v| v <= 5.0))
                );
            }
        }
        if let Some(p) = self.points.iter().find(|p| p.routes == 1_000_000) {
            let (p50, p99) = (worst(&p.cutover, 50.0), worst(&p.cutover, 99.0));
            let _ = writeln!(
                t,
                "| at 1M routes within 1.5x: p50 <= 3 ms, p99 <= 7.5 ms (CLI) | p50 {} ms, p99 {} ms ({} switches) | {} |",
                f(p50),
                f(p99),
                p.cutover.switches,
                yes(p50.is_some_and(|v| v <= 3.0) && p99.is_some_and(|v| v <= 7.5))
            );
        }
        let cut: Vec<&Summary> = self
            .flips
            .series
            .iter()
            .filter(|s| s.proxy == "HAProxy" && s.method.starts_with("cutover"))
            .chain(self.points.iter().map(|p| &p.cutover))
            .collect();
        let (n, failed): (usize, u64) = cut
            .iter()
            .fold((0, 0), |(n, f), s| (n + s.switches, f + s.failed));
        let _ = writeln!(
            t,
            "| 0 failed requests over >= 300 HAProxy flips | {failed} failed over {n} flips through cutover | {} |",
            yes(n >= 300 && failed == 0)
        );
        let _ = writeln!(
            t,
            "| Nginx switch confirmed within plain HUP + 10 ms | not measured: Nginx support is not on this branch yet | - |"
        );
        let idle = self.flips.idle.map(|s| s.rss_kib);
        let dist_idle = self.dist_idle.map(|s| s.rss_kib);
        let judged = dist_idle.or(idle);
        let _ = writeln!(
            t,
            "| agent idle RSS <= 6 MB (5,859 KiB) | release build {}, dist build {} | {} |",
            idle.map_or("-".into(), mib),
            dist_idle.map_or("not measured".into(), mib),
            judged.map_or("-", |k| yes(k * 1024 <= 6_000_000))
        );
        let _ = writeln!(
            t,
            "| `dist` binary <= 4 MB (4,000,000 bytes) | {} | {} |\n",
            self.dist
                .as_ref()
                .map_or("not built in this run".into(), |d| format!(
                    "{} bytes ({:.2} MiB)",
                    d.bytes,
                    d.bytes as f64 / 1024.0 / 1024.0
                )),
            self.dist
                .as_ref()
                .map_or("-", |d| yes(d.bytes <= 4_000_000))
        );
    }
}

fn scale_table(points: &[Point]) -> String {
    let mut t = String::from(
        "| routes | agent start | agent idle RSS | agent peak RSS | `haproxy -c` | cutover flip, new conn p50 / p99 | kept-alive p50 / p99 | rewrite + reload flip, new conn p50 / p99 | route-map rewrite, cutover: new route served / confirmed | route-map rewrite + reload: new route served | failed (cutover flips / reload flips / rewrites) |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for p in points {
        let q = |v: &[f64]| format!("{} / {}", f(percentile(v, 50.0)), f(percentile(v, 99.0)));
        let _ = writeln!(
            t,
            "| {} | {} ms | {} | {} | {} ms | {} | {} | {} | {} / {} ms | {} ms | {} / {} / {} + {} |",
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

/// Replaces the generated section of docs/BENCHMARKS.md with `text`.
pub fn write_docs(text: &str) -> anyhow::Result<PathBuf> {
    let path = cutover_tests::workspace_root().join("docs/BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let (Some(b), Some(e)) = (old.find(BEGIN), old.find(END)) else {
        bail!("{} has no {BEGIN} ... {END} section", path.display());
    };
    let new = format!("{}{BEGIN}\n\n{}\n{}", &old[..b], text.trim_end(), &old[e..]);
    std::fs::write(&path, new)?;
    Ok(path)
}
