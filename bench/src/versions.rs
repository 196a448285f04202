//! The HAProxy flips and reloads once per HAProxy version: the same setup and load run
//! against each binary given (this host's HAProxy, and the wrappers of scripts/chroot.sh
//! that run another Debian release's), and one table with a column per version.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::runtime::Handle;

use crate::load::LoadSpec;
use crate::method::{CutoverReload, Method};
use crate::report::f;
use crate::series::{percentile, SeriesSpec, Summary};
use crate::suite::{self, Kind};

/// Markers around the generated section of docs/BENCHMARKS.md.
pub const BEGIN: &str =
    "<!-- versions:begin (written by cutover-bench --versions --write-docs) -->";
pub const END: &str = "<!-- versions:end -->";

/// The series of each version, in the order of the rows.
const CLI: &str = "cutover (CLI)";
const SOCKET: &str = "cutover (socket)";
const SET_MAP: &str = "raw `set map`";
const RELOAD: &str = "map rewrite + reload";
const CUTOVER_RELOAD: &str = "map rewrite + cutover's reload";

/// One HAProxy version's flip comparison.
pub struct Version {
    /// `2.6.12` style, from `haproxy -v`.
    pub version: String,
    /// The first line of `haproxy -v`.
    pub banner: String,
    pub binary: PathBuf,
    pub series: Vec<Summary>,
}

/// The first line of `binary -v` and the version it names (`HAProxy version 3.0.11-1 ...`
/// gives `3.0.11`); `None` when the binary does not run.
pub fn version_of(binary: &Path) -> Option<(String, String)> {
    let out = std::process::Command::new(binary).arg("-v").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let banner = text.lines().next()?.trim().to_owned();
    let version = banner
        .split_ascii_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)?
        .split(['-', '+', '~'])
        .next()?
        .to_owned();
    Some((banner, version))
}

/// Runs the flip comparison (cutover's CLI and socket, raw `set map`, map rewrite + reload,
/// map rewrite + cutover's reload) on each HAProxy of `binaries`, one after the other.
pub fn run(rt: &Handle, binaries: &[PathBuf], load: &LoadSpec, spec: &SeriesSpec) -> Vec<Version> {
    binaries
        .iter()
        .filter_map(|binary| {
            let Some((banner, version)) = version_of(binary) else {
                eprintln!("{}: does not run, left out", binary.display());
                return None;
            };
            let proxy = format!("HAProxy {version}");
            eprintln!("== {banner} ({})", binary.display());
            let flips = suite::flips_on(rt, Kind::Haproxy, binary, &proxy, load, spec, |s| {
                vec![Box::new(CutoverReload::for_setup(rt, s, binary)) as Box<dyn Method>]
            });
            Some(Version {
                version,
                banner,
                binary: binary.clone(),
                series: flips.series,
            })
        })
        .collect()
}

/// Conditions of the run, for the section's header.
pub struct Conditions {
    pub code: String,
    pub host: String,
    pub load_before: String,
    pub load_after: String,
    pub elapsed: Duration,
    pub load: LoadSpec,
    pub switches: usize,
}

/// The section: the run's conditions, one table with a column per version, the failures.
pub fn markdown(versions: &[Version], c: &Conditions) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "## Results: HAProxy versions run\n\n- Code: {}\n- Machine: {}\n- Load average before / after the run: {} / {} (2 cores: above ~1 the measurements share the CPU with other work)\n- Run time (after the builds): {:.0} s; {} switches per method and version, under {} kept-alive connections at {:.0} req/s in all plus {:.0} new connections/s.",
        c.code,
        c.host,
        c.load_before,
        c.load_after,
        c.elapsed.as_secs_f64(),
        c.switches,
        c.load.keepalive_conns,
        c.load.keepalive_rate,
        c.load.new_conn_rate,
    );
    for v in versions {
        let _ = writeln!(t, "- {}: `{}`", v.banner, v.binary.display());
    }
    let _ = writeln!(
        t,
        "\nMilliseconds from issuing the command. First new colour: the slower of the two probes (new connection, kept-alive connection). Failed: requests of the load and the probes without a 2xx from a colour, over the whole series. Reload time: `map rewrite + cutover's reload` answers once the reload is confirmed and the new worker answers on the admin socket.\n"
    );
    t.push_str(&table(versions));
    t.push('\n');
    let all: Vec<Summary> = versions.iter().flat_map(|v| v.series.clone()).collect();
    t.push_str(&crate::report::details(&all));
    t
}

/// Per switch, the slower of the two probes; the new-connection probe alone when a probe
/// missed a switch (the two lists then no longer pair up; the cell says how many missed).
fn slower_probe(s: &Summary) -> Vec<f64> {
    if s.missed_new + s.missed_keepalive > 0 {
        return s.first_new.clone();
    }
    s.first_new
        .iter()
        .zip(&s.first_keepalive)
        .map(|(a, b)| a.max(*b))
        .collect()
}

/// Rows: per method, the command's answer, the first new colour and the failed requests;
/// the reload time of cutover's reload. Columns: the versions.
fn table(versions: &[Version]) -> String {
    let mut t = String::from("| method | figure |");
    let mut rule = String::from("| --- | --- |");
    for v in versions {
        let _ = write!(t, " HAProxy {} |", v.version);
        rule.push_str(" ---: |");
    }
    let _ = writeln!(t, "\n{rule}");
    type Cell = fn(&Summary) -> String;
    let answered: Cell = |s| f(percentile(&s.command, 50.0));
    let first_new: Cell = |s| {
        let v = slower_probe(s);
        let missed = s.missed_new.max(s.missed_keepalive);
        let cell = format!("{} / {}", f(percentile(&v, 50.0)), f(percentile(&v, 99.0)));
        if missed > 0 {
            format!("{cell} ({missed} never)")
        } else {
            cell
        }
    };
    let failed: Cell = |s| format!("{} / {}", s.failed, s.requests);
    let reload: Cell = |s| {
        format!(
            "{} / {}",
            f(percentile(&s.command, 50.0)),
            f(percentile(&s.command, 99.0))
        )
    };
    let rows: [(&str, &str, Cell); 15] = [
        (SET_MAP, "command answered p50", answered),
        (SET_MAP, "first new colour p50 / p99", first_new),
        (SET_MAP, "failed / requests", failed),
        (SOCKET, "command answered p50", answered),
        (SOCKET, "first new colour p50 / p99", first_new),
        (SOCKET, "failed / requests", failed),
        (CLI, "command answered p50", answered),
        (CLI, "first new colour p50 / p99", first_new),
        (CLI, "failed / requests", failed),
        (RELOAD, "command answered p50 (check + USR2)", answered),
        (RELOAD, "first new colour p50 / p99", first_new),
        (RELOAD, "failed / requests", failed),
        (CUTOVER_RELOAD, "reload time p50 / p99 (confirmed)", reload),
        (CUTOVER_RELOAD, "first new colour p50 / p99", first_new),
        (CUTOVER_RELOAD, "failed / requests", failed),
    ];
    for (method, figure, cell) in rows {
        let _ = write!(t, "| {method} | {figure} |");
        for v in versions {
            let s = v.series.iter().find(|s| s.method == method);
            let _ = write!(t, " {} |", s.map_or("-".into(), cell));
        }
        t.push('\n');
    }
    let _ = write!(t, "| all | switches per method |");
    for v in versions {
        let n = v.series.iter().map(|s| s.switches).min().unwrap_or(0);
        let _ = write!(t, " {n} |");
    }
    t.push('\n');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_column_per_version() {
        let s = |method: &str| Summary {
            method: method.into(),
            switches: 2,
            command: vec![1.0, 3.0],
            first_new: vec![2.0, 4.0],
            first_keepalive: vec![5.0, 1.0],
            requests: 10,
            failed: 1,
            ..Summary::default()
        };
        let version = |v: &str| Version {
            version: v.into(),
            banner: format!("HAProxy version {v}"),
            binary: PathBuf::from("/usr/sbin/haproxy"),
            series: [CLI, SOCKET, SET_MAP, RELOAD, CUTOVER_RELOAD]
                .map(s)
                .to_vec(),
        };
        let t = table(&[version("2.6.12"), version("3.2.9")]);
        assert!(
            t.starts_with("| method | figure | HAProxy 2.6.12 | HAProxy 3.2.9 |\n"),
            "{t}"
        );
        assert!(
            t.contains(
                "| raw `set map` | first new colour p50 / p99 | 5.00 / 5.00 | 5.00 / 5.00 |"
            ),
            "{t}"
        );
        assert!(t.contains("| map rewrite + cutover's reload | reload time p50 / p99 (confirmed) | 3.00 / 3.00 |"), "{t}");
        assert_eq!(t.lines().count(), 2 + 15 + 1, "{t}");
    }

    #[test]
    fn version_from_the_banner() {
        let Some(haproxy) = Kind::Haproxy.binary() else {
            return;
        };
        let (banner, version) = version_of(&haproxy).expect("haproxy -v runs");
        assert!(banner.contains(&version), "{banner} / {version}");
        assert!(
            version.split('.').all(|n| n.parse::<u32>().is_ok()),
            "{version}"
        );
    }
}
