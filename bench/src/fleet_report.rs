//! The fleet part's section of the results: cluster switches per mode and size, what a
//! fleet switch is made of, the target at the target size, idle agents and binary sizes.

use std::fmt::Write;

use crate::doc::{mib, Dist};
use crate::fleet::{FleetResults, Series};
use crate::report::f;
use crate::series::percentile;

/// A fleet switch at the target size may take this many times a single-host switch plus
/// one etcd transaction (p99 each).
pub const TARGET_FACTOR: f64 = 3.0;

fn p(v: &[f64], q: f64) -> Option<f64> {
    percentile(v, q)
}

fn max(v: &[f64]) -> Option<f64> {
    v.iter().copied().reduce(f64::max)
}

/// The fleet section, `###` headings; empty when the fleet part did not run.
pub fn markdown(r: &FleetResults, dist: Option<&Dist>) -> String {
    let Some(plan) = &r.plan else {
        return String::new();
    };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "### Fleet: cluster switches\n\nOne etcd member and N hosts on loopback, each with its origins, its own HAProxy and an agent with `[cluster] store = \"etcd\"` and the shipped `[cluster.etcd]` timings; a switch is `cutover --etcd URL --etcd-prefix P --etcd-name ci --json switch web <colour>` run as a process (the command line alone, no agent), timed from the spawn to its exit: it answers once every live host has voted, the change is committed and every host reported the new generation applied. After each answer every host's HAProxy is asked for `{}`; a host not serving the new colour counts as a failed switch. Static peers: `cutover --config lb1 --json switch web <colour> --cluster`, same checks. Colours alternate; {} ms between switches.\n",
        crate::suite::HOST,
        crate::fleet::GAP.as_millis(),
    );
    for s in &r.skipped {
        let _ = writeln!(t, "- not measured: {s}");
    }
    let _ = writeln!(
        t,
        "| mode | hosts | switches ok / tried | command to answer p50 / p99 / max (ms) | CPU of all agents per switch (ms) | hosts started and serving (s) |\n| --- | ---: | ---: | ---: | ---: | ---: |"
    );
    let row = |t: &mut String, mode: &str, s: &Series| {
        let _ = writeln!(
            t,
            "| {mode} | {} | {} / {} | {} / {} / {} | {} | {:.1} |",
            s.hosts,
            s.ms.len(),
            s.tried,
            f(p(&s.ms, 50.0)),
            f(p(&s.ms, 99.0)),
            f(max(&s.ms)),
            f(s.agent_cpu_ms),
            s.start_ms / 1e3,
        );
    };
    for s in &r.fleet {
        row(&mut t, "fleet (etcd), CLI alone", s);
    }
    for s in &r.peers {
        row(&mut t, "static peers (mTLS), CLI on lb1", s);
    }
    let _ = writeln!(
        t,
        "\nThe parts, same run (etcd samples while the {n}-host fleet ran, one request at a time over one connection of an in-process client; keys outside the fleet's prefix):\n\n| figure | samples | p50 (ms) | p99 (ms) |\n| --- | ---: | ---: | ---: |",
        n = plan.target_hosts
    );
    let parts: [(&str, &[f64]); 5] = [
        ("etcd put (small record)", &r.put),
        (
            "etcd transaction: compare one revision, put two keys (a commit's shape)",
            &r.txn,
        ),
        (
            "single host, no cluster: switch on the agent's socket",
            &r.single,
        ),
        (
            "CLI process start and exit (`cutover --version`)",
            &r.cli_start,
        ),
        (
            "CLI alone: `cutover --etcd ... status` (start, connect, read the fleet)",
            &r.cli_status,
        ),
    ];
    for (label, v) in parts {
        let _ = writeln!(
            t,
            "| {label} | {} | {} | {} |",
            v.len(),
            f(p(v, 50.0)),
            f(p(v, 99.0))
        );
    }
    target(r, plan.target_hosts, &mut t);
    idle(r, plan.target_hosts, &mut t);
    if let Some(d) = dist {
        let _ = writeln!(
            t,
            "- `dist` binary: {} bytes with the `etcd` feature alone, {} with neither it nor the remote API (`--no-default-features`){}.",
            d.no_grpc_bytes.map_or("not built".into(), grouped),
            d.no_etcd_bytes.map_or("not built".into(), grouped),
            d.no_etcd_bytes.zip(d.no_grpc_bytes).map_or(String::new(), |(b, e)| format!(
                ": the fleet store adds {} bytes ({:.0}%)",
                grouped(e.saturating_sub(b)),
                (e as f64 / b as f64 - 1.0) * 100.0
            )),
        );
    }
    let errors: Vec<String> = r
        .fleet
        .iter()
        .map(|s| ("fleet", s))
        .chain(r.peers.iter().map(|s| ("static peers", s)))
        .flat_map(|(mode, s)| {
            s.errors
                .iter()
                .map(move |e| format!("{mode}, {} hosts: {e}", s.hosts))
        })
        .collect();
    for e in errors {
        let _ = writeln!(t, "- failed: {e}");
    }
    t
}

/// `1234567` as `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let groups: Vec<&str> = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|g| std::str::from_utf8(g).unwrap_or("?"))
        .collect();
    groups.join(",")
}

/// The target line: fleet p99 at `n` hosts against single-host p99 + transaction p99.
fn target(r: &FleetResults, n: usize, t: &mut String) {
    let fleet = r
        .fleet
        .iter()
        .find(|s| s.hosts == n)
        .and_then(|s| p(&s.ms, 99.0));
    let (single, txn) = (p(&r.single, 99.0), p(&r.txn, 99.0));
    let line = match (fleet, single, txn) {
        (Some(fl), Some(si), Some(tx)) => {
            let ratio = fl / (si + tx);
            format!(
                "{n}-host fleet switch p99 {} ms against single-host switch p99 {} ms + etcd transaction p99 {} ms = {} ms: **{ratio:.2}x** (target at most {TARGET_FACTOR:.0}x: **{}**). Without the CLI's own start (p50 {} ms), which the socket switch does not pay: {:.2}x.",
                f(Some(fl)),
                f(Some(si)),
                f(Some(tx)),
                f(Some(si + tx)),
                if ratio <= TARGET_FACTOR { "met" } else { "missed" },
                f(p(&r.cli_start, 50.0)),
                (fl - p(&r.cli_start, 50.0).unwrap_or(0.0)) / (si + tx),
            )
        }
        _ => format!("{n}-host fleet switch against single-host + etcd transaction: not measured"),
    };
    let _ = writeln!(t, "\n- Target: {line}");
}

/// The idle line: the target fleet's agents, watch open.
fn idle(r: &FleetResults, n: usize, t: &mut String) {
    let (Some(first), false) = (r.idle.first(), r.idle.is_empty()) else {
        return;
    };
    let cpu: Vec<f64> = r.idle.iter().map(|i| i.cpu_percent).collect();
    let rss = r.idle.iter().map(|i| i.rss_kib).max().unwrap_or(0);
    let mean = cpu.iter().sum::<f64>() / cpu.len() as f64;
    let secs = r.plan.as_ref().map_or(0, |p| p.idle.as_secs());
    let _ = writeln!(
        t,
        "- Idle agent in fleet mode (release build, watch open, shipped lease and check timings), {n}-host fleet after its switches, read over {secs} s from `/proc/<pid>/stat` (10 ms ticks): lb1 {:.2}% of a core, RSS {}; all {} agents: CPU mean {mean:.2}%, max {:.2}%, RSS max {}.",
        first.cpu_percent,
        mib(first.rss_kib),
        r.idle.len(),
        max(&cpu).unwrap_or(0.0),
        mib(rss),
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_thousands() {
        assert_eq!(super::grouped(5_812_976), "5,812,976");
        assert_eq!(super::grouped(976), "976");
        assert_eq!(super::grouped(1_000), "1,000");
    }
}
