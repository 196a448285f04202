//! The answer and the flip against the floor, as ratios measured in one run: the floor is
//! a raw `set map` on HAProxy's admin socket (what no tool on top can beat), the answer is
//! the command returning, confirmed; "first new colour" is the slower of the two probes
//! (new connection, kept-alive).

use std::fmt::Write;

use crate::doc::Results;
use crate::report::f;
use crate::series::{percentile, Summary};
use crate::suite::Kind;

const CLI: &str = "cutover (CLI)";
const SOCKET: &str = "cutover (socket)";
const RAW: &str = "raw `set map`";

/// The `q` percentile of the first response in the new colour, the slower probe.
fn flip(s: &Summary, q: f64) -> Option<f64> {
    Some(percentile(&s.first_new, q)?.max(percentile(&s.first_keepalive, q)?))
}

/// The `q` percentile of the command's answer.
fn answer(s: &Summary, q: f64) -> Option<f64> {
    percentile(&s.command, q)
}

/// `a / b` as `1.93x`.
fn times(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "**met**",
        Some(false) => "**missed**",
        None => "-",
    }
}

/// The table of ratios against the floor, for HAProxy and the Nginx Lua runtime.
pub fn floor(r: &Results, t: &mut String) {
    let raw = r.series(Kind::Haproxy, RAW);
    let socket = r.series(Kind::Haproxy, SOCKET);
    let cli = r.series(Kind::Haproxy, CLI);
    let (Some(raw), Some(socket)) = (raw, socket) else {
        return;
    };
    let _ = writeln!(
        t,
        "### Against the floor: the answer and the flip\n\n| target | measured | |\n| --- | --- | --- |"
    );
    let raw50 = flip(raw, 50.0);
    let (sock_answer, sock_flip) = (answer(socket, 50.0), flip(socket, 50.0));
    let _ = writeln!(
        t,
        "| HAProxy socket answer p50 <= 2x its first new colour p50 | {} ms against {} ms: {} | {} |",
        f(sock_answer),
        f(sock_flip),
        times(sock_answer, sock_flip),
        verdict(sock_answer.zip(sock_flip).map(|(a, b)| a <= 2.0 * b))
    );
    if let Some(cli) = cli {
        let cli_answer = answer(cli, 50.0);
        let _ = writeln!(
            t,
            "| HAProxy CLI answer p50 <= socket answer p50 + 1.5 ms | {} ms against {} ms + 1.5 | {} |",
            f(cli_answer),
            f(sock_answer),
            verdict(cli_answer.zip(sock_answer).map(|(c, s)| c <= s + 1.5))
        );
    }
    let sock99 = flip(socket, 99.0);
    let _ = writeln!(
        t,
        "| HAProxy socket first new colour p50 <= 2.5x raw `set map` p50, p99 <= 3 ms | p50 {} ms against {} ms: {}; p99 {} ms | {} |",
        f(sock_flip),
        f(raw50),
        times(sock_flip, raw50),
        f(sock99),
        verdict(
            sock_flip
                .zip(raw50)
                .zip(sock99)
                .map(|((s, r), p99)| s <= 2.5 * r && p99 <= 3.0)
        )
    );
    if let Some(cli) = cli {
        let cli_flip = flip(cli, 50.0);
        let _ = writeln!(
            t,
            "| HAProxy CLI first new colour p50 <= 4x raw `set map` p50 | {} ms against {} ms: {} | {} |",
            f(cli_flip),
            f(raw50),
            times(cli_flip, raw50),
            verdict(cli_flip.zip(raw50).map(|(c, r)| c <= 4.0 * r))
        );
    }
    if let Some(lua) = r.series(Kind::NginxLua, SOCKET) {
        let lua_flip = flip(lua, 50.0);
        let _ = writeln!(
            t,
            "| Nginx Lua socket first new colour p50 <= 3x HAProxy raw `set map` p50 | {} ms against {} ms: {} | {} |",
            f(lua_flip),
            f(raw50),
            times(lua_flip, raw50),
            verdict(lua_flip.zip(raw50).map(|(l, r)| l <= 3.0 * r))
        );
    }
    t.push('\n');
}
