//! Markdown tables of the results, and the machine they came from.

use std::fmt::Write;

use crate::series::{percentile, Summary};

/// `12.3` style milliseconds, `-` when missing.
pub fn f(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn p(values: &[f64], q: f64) -> Option<f64> {
    percentile(values, q)
}

fn pair(values: &[f64], missed: usize) -> String {
    let s = format!("{} / {}", f(p(values, 50.0)), f(p(values, 99.0)));
    if missed > 0 {
        format!("{s} ({missed} never)")
    } else {
        s
    }
}

/// The flip comparison: one row per proxy and method.
pub fn flip_table(rows: &[Summary]) -> String {
    let mut t = String::from(
        "| proxy | method | switches | command returns p50 | first new colour, new conn p50 / p99 | first new colour, kept-alive p50 / p99 | old colour last served p50 / p99 / max | failed / requests | agent CPU per switch |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for s in rows {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {}{} | {} / {} / {} | {} / {} | {} |",
            s.proxy,
            s.method,
            s.switches,
            f(p(&s.command, 50.0)),
            pair(&s.first_new, s.missed_new),
            pair(&s.first_keepalive, s.missed_keepalive),
            if s.keepalive_reconnects > 0 {
                format!(" ({} reconnected)", s.keepalive_reconnects)
            } else {
                String::new()
            },
            f(p(&s.old_gone, 50.0)),
            f(p(&s.old_gone, 99.0)),
            f(s.old_gone.iter().copied().reduce(f64::max)),
            s.failed,
            s.requests,
            s.agent_cpu_ms_per_switch
                .map_or("-".into(), |c| format!("{c:.2} ms")),
        );
    }
    t
}

/// The agent's steps in the order a change takes them.
const STEPS: [&str; 10] = [
    "gate", "undrain", "render", "validate", "commit", "apply", "confirm", "settle", "persist",
    "drain",
];

/// Failures by kind, the agent's steps and any command errors, per series.
pub fn details(rows: &[Summary]) -> String {
    let mut t = String::new();
    for s in rows {
        let mut notes = Vec::new();
        if !s.failures.is_empty() {
            let kinds: Vec<String> = s
                .failures
                .iter()
                .map(|(k, n)| format!("{n}x {k}"))
                .collect();
            notes.push(format!("failed: {}", kinds.join(", ")));
        }
        if !s.agent_steps.is_empty() {
            let rank = |k: &str| STEPS.iter().position(|s| *s == k).unwrap_or(STEPS.len());
            let mut steps: Vec<(&String, &f64)> = s.agent_steps.iter().collect();
            steps.sort_by_key(|(k, _)| rank(k));
            let steps: Vec<String> = steps
                .into_iter()
                .map(|(k, v)| format!("{k} {v:.2}"))
                .collect();
            notes.push(format!("agent steps, mean ms: {}", steps.join(", ")));
        }
        if let Some(a) = s.agent_after {
            notes.push(format!(
                "agent after: RSS {:.1} MiB, peak {:.1} MiB",
                a.rss_kib as f64 / 1024.0,
                a.hwm_kib as f64 / 1024.0
            ));
        }
        if s.skipped > 0 {
            notes.push(format!(
                "{} new-connection requests not sent (in-flight cap)",
                s.skipped
            ));
        }
        if !s.errors.is_empty() {
            notes.push(format!("command errors: {}", s.errors.join(" | ")));
        }
        if !notes.is_empty() {
            let _ = writeln!(t, "- {} / {}: {}", s.proxy, s.method, notes.join("; "));
        }
    }
    t
}

/// The commit the run was built from, `+ changes` when the tree differs from it.
pub fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(cutover_tests::workspace_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(sha) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            format!("{sha}{}", if dirty { " + changes" } else { "" })
        }
        None => "unknown (not a git checkout)".into(),
    }
}

/// The machine: CPU, cores, memory, kernel, proxy versions, load average.
pub fn machine() -> String {
    let version = |bin: &str, arg: &str| -> String {
        cutover_tests::proxy_binary(bin)
            .and_then(|b| std::process::Command::new(b).arg(arg).output().ok())
            .map(|o| {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                text.lines().next().unwrap_or("").trim().to_owned()
            })
            .unwrap_or_else(|| format!("{bin}: not installed"))
    };
    format!(
        "{}; {}; {}; load average {}",
        host(),
        version("haproxy", "-v"),
        version("nginx", "-v"),
        load_average()
    )
}

/// The host alone: CPU, cores, memory, kernel.
pub fn host() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or("?".into(), |k| {
            format!("{:.0} GiB", k as f64 / 1024.0 / 1024.0)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, {mem} RAM, Linux {}", kernel.trim())
}

/// Latency of fsync on a small file in the temporary directory (where the setups keep
/// their maps and state): `p50 / p99` in ms over `n` writes, a few ms apart.
pub fn fsync_latency(n: usize) -> String {
    use std::io::Write;
    let Ok(dir) = tempfile::Builder::new()
        .prefix("cutover-bench-fsync-")
        .tempdir()
    else {
        return "-".into();
    };
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let path = dir.path().join(format!("f{i}"));
        let Ok(mut file) = std::fs::File::create(&path) else {
            return "-".into();
        };
        let _ = file.write_all(b"web web_green\n");
        let started = std::time::Instant::now();
        if file.sync_all().is_err() {
            return "-".into();
        }
        times.push(started.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    format!(
        "{} / {} ms",
        f(percentile(&times, 50.0)),
        f(percentile(&times, 99.0))
    )
}

/// `/proc/loadavg`'s first three fields.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_ascii_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
