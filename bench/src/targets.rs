//! The headline (cutover against the scripted method, per proxy) and the targets of the
//! issue, each with the measured figure and whether it was met.

use std::fmt::Write;

use crate::doc::{mib, Results};
use crate::report::f;
use crate::series::{percentile, Summary};
use crate::suite::Kind;

/// One figure of a series.
type Figure = fn(&Summary) -> Option<f64>;

fn yes(met: bool) -> &'static str {
    if met {
        "**met**"
    } else {
        "**missed**"
    }
}

/// The `q` percentile of the slower of the two probes.
fn worst(s: &Summary, q: f64) -> Option<f64> {
    let a = percentile(&s.first_new, q)?;
    let b = percentile(&s.first_keepalive, q)?;
    Some(a.max(b))
}

fn ratio(scripted: Option<f64>, cutover: Option<f64>) -> String {
    match (scripted, cutover) {
        (Some(s), Some(c)) if c > 0.0 && s >= c => format!("{:.0}x", s / c),
        (Some(s), Some(c)) if c > 0.0 => format!("{:.2}x", s / c),
        _ => "-".into(),
    }
}

const CLI: &str = "cutover (CLI)";
const SOCKET: &str = "cutover (socket)";
const SCRIPTED: &str = "map rewrite + reload";

/// The headline table of `kind`: cutover against the scripted method.
pub fn headline(r: &Results, kind: Kind, t: &mut String) {
    let (Some(c), Some(s)) = (r.series(kind, CLI), r.series(kind, SCRIPTED)) else {
        return;
    };
    let sock = r.series(kind, SOCKET);
    let _ = writeln!(
        t,
        "### Headline: {}, cutover against map rewrite + reload\n\n| figure | cutover (CLI) | cutover (socket) | map rewrite + reload | rewrite + reload / cutover (CLI) |\n| --- | ---: | ---: | ---: | ---: |",
        kind.label()
    );
    let rows: [(&str, Figure); 6] = [
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
        ("command returns (confirmed, for cutover), p50 (ms)", |s| {
            percentile(&s.command, 50.0)
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

/// Switches whose last old-colour response came after the command returned.
/// Switches where a request sent after the command returned got the old colour.
fn old_after_answer(s: &Summary) -> usize {
    s.old_after_answer
}

/// Switches where an old-colour response completed after the command returned (to a
/// request in flight when the switch landed, or sent after the answer).
fn old_done_after_answer(s: &Summary) -> usize {
    s.old_gone
        .iter()
        .zip(&s.command)
        .filter(|(old, answer)| old > answer)
        .count()
}

/// Nginx's Lua runtime against its reload mode, in the same run: the answer, the first new
/// colour, failed requests and old-colour responses after the answer, with the targets
/// (0 failed and 0 old colour after the answer over 300 switches, socket answer p50 <= 2 ms).
pub fn nginx_lua(r: &Results, t: &mut String) {
    let lua_cli = r.series(Kind::NginxLua, CLI);
    let lua_socket = r.series(Kind::NginxLua, SOCKET);
    if lua_cli.is_none() && lua_socket.is_none() {
        return;
    }
    let reload = r.series(Kind::Nginx, SOCKET).or(r.series(Kind::Nginx, CLI));
    let _ = writeln!(
        t,
        "### Nginx: Lua runtime against reload

| figure | Lua runtime (CLI) | Lua runtime (socket) | reload mode (socket) |
| --- | ---: | ---: | ---: |"
    );
    let rows: [(&str, Figure); 8] = [
        ("answer (confirmed), p50 (ms)", |s| {
            percentile(&s.command, 50.0)
        }),
        ("answer (confirmed), p99 (ms)", |s| {
            percentile(&s.command, 99.0)
        }),
        ("first new colour, slower probe, p50 (ms)", |s| {
            worst(s, 50.0)
        }),
        ("first new colour, slower probe, p99 (ms)", |s| {
            worst(s, 99.0)
        }),
        ("failed requests", |s| Some(s.failed as f64)),
        (
            "switches where a request sent after the answer got the old colour",
            |s| Some(old_after_answer(s) as f64),
        ),
        (
            "switches with an old-colour response completed after the answer (in flight)",
            |s| Some(old_done_after_answer(s) as f64),
        ),
        ("switches", |s| Some(s.switches as f64)),
    ];
    for (name, get) in rows {
        let _ = writeln!(
            t,
            "| {name} | {} | {} | {} |",
            f(lua_cli.and_then(get)),
            f(lua_socket.and_then(get)),
            f(reload.and_then(get)),
        );
    }
    let _ = writeln!(
        t,
        "
| Lua runtime target | measured | |
| --- | --- | --- |"
    );
    let lua: Vec<&Summary> = lua_cli.into_iter().chain(lua_socket).collect();
    let n: usize = lua.iter().map(|s| s.switches).sum();
    let failed: u64 = lua.iter().map(|s| s.failed).sum();
    let old: usize = lua.iter().map(|s| old_after_answer(s)).sum();
    let enough = |ok: bool| {
        if n < 300 {
            "too few switches to tell"
        } else {
            yes(ok)
        }
    };
    let _ = writeln!(
        t,
        "| 0 failed requests over >= 300 switches | {failed} over {n} | {} |",
        enough(failed == 0),
    );
    let _ = writeln!(
        t,
        "| 0 old-colour responses to requests sent after the answer over >= 300 switches | {old} switches over {n} | {} |",
        enough(old == 0),
    );
    if let Some(s) = lua_socket {
        let p50 = percentile(&s.command, 50.0);
        let _ = writeln!(
            t,
            "| socket answer p50 <= 2 ms | {} ms | {} |",
            f(p50),
            yes(p50.is_some_and(|v| v <= 2.0))
        );
    }
    t.push('\n');
}

/// The targets table.
pub fn targets(r: &Results, t: &mut String) {
    let _ = writeln!(
        t,
        "### Targets\n\n| target | measured | |\n| --- | --- | --- |"
    );
    for (label, method) in [("CLI", CLI), ("socket", SOCKET)] {
        if let Some(s) = r.series(Kind::Haproxy, method) {
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
    let million = |kind: Kind| {
        r.points
            .iter()
            .find(|p| p.kind == kind && p.routes == 1_000_000)
    };
    if let Some(p) = million(Kind::Haproxy) {
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
    let cutover_flips: Vec<&Summary> = r
        .flips
        .iter()
        .flat_map(|f| &f.series)
        .filter(|s| s.proxy == Kind::Haproxy.label() && s.method.starts_with("cutover"))
        .chain(
            r.points
                .iter()
                .filter(|p| p.kind == Kind::Haproxy)
                .map(|p| &p.cutover),
        )
        .collect();
    let (n, failed) = cutover_flips
        .iter()
        .fold((0, 0), |(n, f), s| (n + s.switches, f + s.failed));
    let _ = writeln!(
        t,
        "| 0 failed requests over >= 300 HAProxy flips | {failed} failed over {n} flips through cutover | {} |",
        match (failed, n) {
            (0, n) if n < 300 => "too few flips to tell (the full run makes 780)",
            _ => yes(n >= 300 && failed == 0),
        }
    );
    nginx_target(r, t);
    let idle = r
        .flips
        .iter()
        .find(|f| f.kind == Kind::Haproxy)
        .and_then(|f| f.idle)
        .map(|s| s.rss_kib);
    let dist_idle = r.dist_idle.map(|s| s.rss_kib);
    let _ = writeln!(
        t,
        "| agent idle RSS <= 6 MB (5,859 KiB) | dist build {}, release build {} | {} |",
        dist_idle.map_or("not measured".into(), mib),
        idle.map_or("-".into(), mib),
        dist_idle
            .or(idle)
            .map_or("-", |k| yes(k * 1024 <= 6_000_000))
    );
    let _ = writeln!(
        t,
        "| `dist` binary <= 4 MB (4,000,000 bytes) | {} | {} |\n",
        r.dist
            .as_ref()
            .map_or("not built in this run".into(), |d| format!(
                "{} bytes ({:.2} MiB)",
                d.bytes,
                d.bytes as f64 / 1024.0 / 1024.0
            )),
        r.dist.as_ref().map_or("-", |d| yes(d.bytes <= 4_000_000))
    );
}

/// Nginx: the switch confirmed (the command returned) within the time a plain `SIGHUP`
/// takes to move both probes, plus 10 ms.
fn nginx_target(r: &Results, t: &mut String) {
    let Some(hup) = r.series(Kind::Nginx, "plain HUP") else {
        let _ = writeln!(
            t,
            "| Nginx switch confirmed within plain HUP + 10 ms | not measured: Nginx is not installed | - |"
        );
        return;
    };
    let bound = worst(hup, 50.0).map(|v| v + 10.0);
    for (label, method) in [("CLI", CLI), ("socket", SOCKET)] {
        let Some(s) = r.series(Kind::Nginx, method) else {
            continue;
        };
        let confirmed = percentile(&s.command, 50.0);
        let _ = writeln!(
            t,
            "| Nginx switch confirmed within plain HUP + 10 ms ({label}) | confirmed p50 {} ms; plain HUP moves both probes in p50 {} ms (new conn {}, kept-alive {}), bound {} ms | {} |",
            f(confirmed),
            f(worst(hup, 50.0)),
            f(percentile(&hup.first_new, 50.0)),
            f(percentile(&hup.first_keepalive, 50.0)),
            f(bound),
            match (confirmed, bound) {
                (Some(c), Some(b)) => yes(c <= b),
                _ => "-",
            }
        );
    }
}
