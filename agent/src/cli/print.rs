//! What a client verb prints: the agent's reply as JSON, or short tables for humans. The
//! reply's data is read as the type the sent command answers with (the protocol's reply
//! types), never told apart by its message. The `status` tables live in [`status`].

use std::io::Write as _;

use serde::Deserialize;

use super::exit;
use crate::protocol::{
    Command, FleetChange, MapShown, MetricsText, Plan, Reply, ServiceState, Status,
};
use crate::requester::Requester;
use crate::store::JournalEntry;

mod status;

use status::{cluster_result, cluster_table, status_table};

/// Prints a failure of the command line itself (bad config, agent unreachable, bad usage)
/// and returns `code`: `error: MESSAGE` on stderr, or with `--json` an error object on
/// stdout, shaped as the agent's own error replies: `{"status": "error", "message": ...,
/// "data": {"exit": CODE, "error": NAME}}` ([`exit::name`]).
pub fn fail(json: bool, code: i32, message: impl std::fmt::Display) -> i32 {
    if json {
        let data = serde_json::json!({ "exit": code, "error": exit::name(code) });
        let reply = Reply::error(message.to_string(), data);
        let _ = writeln!(std::io::stdout().lock(), "{}", reply.to_line());
    } else {
        eprintln!("error: {message}");
    }
    code
}

/// The exit code of a reply to `sent`: [`exit::FAULT`] for a `status` whose agent reports a
/// fault.
fn exit_code(sent: &Command, reply: &Reply) -> i32 {
    if reply.status != Status::Ok {
        return exit::FAILED;
    }
    let faulty =
        matches!(sent, Command::Status) && reply.data.get("fault").is_some_and(|f| !f.is_null());
    if faulty {
        exit::FAULT
    } else {
        exit::OK
    }
}

/// Prints the reply to the command `sent` for humans (or as JSON) and returns the exit
/// code.
pub fn print_reply(sent: &Command, reply: &Reply, json: bool) -> i32 {
    let code = exit_code(sent, reply);
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{}", reply.to_line());
        return code;
    }
    if reply.status == Status::Error {
        let _ = out.flush();
        eprintln!("error: {}", reply.message);
        return code;
    }
    let text = match human(sent, reply) {
        Ok(text) => text,
        Err(e) => {
            let _ = out.flush();
            let message = format!("the agent's reply to {} is unreadable: {e}", sent.verb());
            return fail(false, exit::FAILED, message);
        }
    };
    let _ = out.write_all(text.as_bytes());
    code
}

/// The text for humans of a successful reply to `sent`.
fn human(sent: &Command, reply: &Reply) -> Result<String, serde_json::Error> {
    Ok(match sent {
        Command::Cluster { command } if matches!(**command, Command::History { .. }) => {
            fleet_history_table(&reply.data_as::<FleetHistory>()?.fleet)
        }
        Command::Cluster { .. } => cluster_result(&reply.message, &reply.data_as()?),
        Command::ClusterStatus => {
            format!("{}\n{}", reply.message, cluster_table(&reply.data_as()?))
        }
        Command::Change(m) if m.dry_run => plan_text(&reply.message, &reply.data_as()?),
        Command::Status => status_table(&reply.data_as()?),
        Command::MapShow { .. } => map_lines(&reply.data_as()?),
        Command::History { .. } => history_table(&reply.data_as::<History>()?.entries),
        Command::Metrics => reply.data_as::<MetricsText>()?.text,
        _ => format!("{}\n", reply.message),
    })
}

/// The data of a `history` reply.
#[derive(Debug, Deserialize)]
struct History {
    entries: Vec<JournalEntry>,
}

/// A value, or `-` for none.
fn or_dash<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// Left-aligned columns, two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let last = cells.len() - 1;
        for (i, c) in cells.iter().enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// One side of a planned service change: the live colour and the canary.
fn routing(s: Option<&ServiceState>) -> String {
    let Some(s) = s else {
        return "-".into();
    };
    let mut t = s.live.to_string();
    if let Some(c) = s.canary {
        t.push_str(&format!("+canary {} {}%", c.colour, c.percent));
    }
    t
}

/// A plan for humans: what changes, the gate, and per file the edits and the mechanism.
fn plan_text(message: &str, d: &Plan) -> String {
    let mut out = format!("{message}\n");
    for c in &d.services {
        out.push_str(&format!(
            "  service {}: {} -> {}\n",
            c.service,
            routing(c.from.as_ref()),
            routing(c.to.as_ref())
        ));
    }
    for g in &d.gates {
        if g.forced {
            out.push_str("  gate: skipped (--force)\n");
        } else if let Some(backend) = &g.backend {
            // A proxy that cannot show server states (Nginx) lists none up.
            let mut seen = Vec::new();
            if !g.up.is_empty() {
                seen.push(format!("up: {}", g.up.join(", ")));
            }
            if !g.probed.is_empty() {
                seen.push(format!("probed: {}", g.probed.join(", ")));
            }
            out.push_str(&format!("  gate: passed for {backend}"));
            if !seen.is_empty() {
                out.push_str(&format!(" ({})", seen.join("; ")));
            }
            out.push('\n');
        }
    }
    for f in &d.files {
        out.push_str(&format!(
            "  file {} ({}): {}, {} edits\n",
            f.name,
            f.path.display(),
            f.mechanism,
            f.edits
        ));
        for (k, v) in &f.added {
            out.push_str(&format!("    + {k} {v}\n"));
        }
        for (k, v) in &f.changed {
            out.push_str(&format!("    ~ {k} {v}\n"));
        }
        for k in &f.removed {
            out.push_str(&format!("    - {k}\n"));
        }
        if f.kind == crate::protocol::FileKind::Config {
            for l in &f.lines.first_removed {
                out.push_str(&format!("    -| {l}\n"));
            }
            for l in &f.lines.first_added {
                out.push_str(&format!("    +| {l}\n"));
            }
        }
    }
    for srv in &d.servers {
        out.push_str(&format!("  servers: {srv}\n"));
    }
    if d.validated_by_proxy {
        out.push_str("  validated with the proxy's own checker on a staged copy\n");
    }
    out
}

fn map_lines(d: &MapShown) -> String {
    let mut out = String::new();
    match d {
        MapShown::Entries { entries } => {
            for (k, v) in entries {
                out.push_str(&format!("{k} {v}\n"));
            }
        }
        MapShown::Diff {
            added,
            changed,
            removed,
        } => {
            for (k, v) in added {
                out.push_str(&format!("+ {k} {v}\n"));
            }
            for (k, v) in changed {
                out.push_str(&format!("~ {k} {v}\n"));
            }
            for k in removed {
                out.push_str(&format!("- {k}\n"));
            }
            if out.is_empty() {
                out.push_str("no difference\n");
            }
        }
    }
    out
}

/// Who asked, in a history row: `socket uid=1000 pid=4242`.
fn who(r: &Requester) -> String {
    let (uid, pid) = r.uid_pid();
    let user = r
        .names()
        .user
        .map(|u| format!(" user={u}"))
        .unwrap_or_default();
    format!(
        "{}{user} uid={} pid={}",
        r.via(),
        or_dash(uid),
        or_dash(pid)
    )
}

/// The data of a `history --cluster` reply.
#[derive(Debug, Deserialize)]
struct FleetHistory {
    fleet: Vec<FleetChange>,
}

/// The fleet's committed changes, newest first.
fn fleet_history_table(changes: &[FleetChange]) -> String {
    let rows: Vec<Vec<String>> = changes
        .iter()
        .map(|c| {
            vec![
                format_time(c.at_ms),
                c.generation.to_string(),
                c.by.clone(),
                c.services.join(","),
                serde_json::to_string(&c.request).unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &["TIME (UTC)", "FLEET GEN", "BY", "SERVICES", "REQUEST"],
        &rows,
    )
}

fn history_table(entries: &[JournalEntry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let by = match &e.asked_by {
                Some(asker) => format!("{} for {}", who(&e.requester), who(asker)),
                None => who(&e.requester),
            };
            let what = match &e.reason {
                Some(reason) => format!("{} (reason: {reason})", e.message),
                None => e.message.clone(),
            };
            vec![
                format_time(e.time_ms),
                e.generation.to_string(),
                e.verb().to_owned(),
                e.result.to_string(),
                by,
                what,
            ]
        })
        .collect();
    table(
        &["TIME (UTC)", "GEN", "VERB", "RESULT", "BY", "WHAT"],
        &rows,
    )
}

/// `YYYY-MM-DD HH:MM:SS.mmm` in UTC from Unix milliseconds.
pub fn format_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = super::civil::from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00.000");
        // Checked against Python's datetime.fromtimestamp(.., timezone.utc).
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00.000");
        assert_eq!(format_time(1_795_430_096_789), "2026-11-23 10:34:56.789");
    }

    #[test]
    fn table_aligns() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }

    /// The printer reads each reply by the type the sent command answers with.
    #[test]
    fn replies_print_by_their_type() {
        let reply = |data: &str| Reply::ok("msg", serde_json::from_str(data).unwrap());
        let status = human(
            &Command::Status,
            &reply(
                r#"{"generation":3,"proxy":{"kind":"haproxy","reachable":true,"epoch":{"master_pid":1,"reloads":4}},
                "services":[{"name":"web","live":"green","previous":null,"backend":"web_green","routes":2,
                "canary":null,"drained":["blue"],"phase":null}],"files":[],"last_error":null,"fault":null,"recovered":[]}"#,
            ),
        )
        .unwrap();
        assert!(status.starts_with("generation 3  proxy haproxy reachable (reloads 4)\n"));
        assert!(
            status.contains("web      green  -         web_green  -       blue     2       -"),
            "{status}"
        );
        assert!(!status.contains("SESSIONS"), "{status}");
        let polled = human(
            &Command::Status,
            &reply(
                r#"{"generation":3,"proxy":{"kind":"haproxy","reachable":true,"epoch":null},
                "services":[{"name":"web","live":"green","previous":"blue","backend":"web_green","routes":2,
                "canary":null,"drained":["blue"],"phase":null,
                "health":{"polled_ms":1,"blue":{"up":0,"down":0,"drain":0,"maint":2,"unknown":0,"sessions":0},
                "green":{"up":0,"down":2,"drain":0,"maint":0,"unknown":0,"sessions":0}},
                "drains":[{"colour":"blue","phase":"maintenance","since_ms":0,"reason":"its sessions reached 0"}]}],
                "files":[],"last_error":null,"recovered":[],
                "fault":{"step":"health","message":"web: live colour green (web_green) has no server up (2 down)","since_ms":0}}"#,
            ),
        )
        .unwrap();
        assert!(
            polled.contains("web      blue    2 maint  0         maintenance since "),
            "{polled}"
        );
        assert!(polled.contains("(its sessions reached 0)"), "{polled}");
        assert!(
            polled.contains("web      green   2 down   0         -"),
            "{polled}"
        );
        assert!(
            polled.contains("(health): web: live colour green (web_green) has no server up"),
            "{polled}"
        );
        let diff = Command::MapShow {
            name: "routes".into(),
            view: crate::protocol::MapView::Diff,
        };
        let none = r#"{"added":[],"changed":[],"removed":[]}"#;
        assert_eq!(human(&diff, &reply(none)).unwrap(), "no difference\n");
        let plan = Command::change(
            crate::protocol::Request::Rollback {
                service: "web".into(),
            },
            false,
            true,
        );
        let text = human(
            &plan,
            &reply(r#"{"generation":4,"services":[],"gates":[{"service":"web","colour":"blue","backend":"web_blue",
                "up":["b1"],"probed":[],"forced":false}],"files":[],"validated_by_proxy":true,"servers":[]}"#),
        )
        .unwrap();
        assert_eq!(
            text,
            "msg\n  gate: passed for web_blue (up: b1)\n  validated with the proxy's own checker on a staged copy\n"
        );
        // A change carried out prints its summary; an unreadable reply is an error.
        let switch = Command::change(
            crate::protocol::Request::Rollback {
                service: "web".into(),
            },
            false,
            false,
        );
        assert_eq!(human(&switch, &reply("{}")).unwrap(), "msg\n");
        // A cluster status shows the change each host holds prepared.
        let cluster = human(
            &Command::ClusterStatus,
            &reply(
                r#"{"hosts":[{"node":"lb1","reachable":true,"age_ms":0,"generation":3,
                "cluster_generation":1,"digest":"d","proxy_reachable":true,"last_error":null,
                "held":{"txn":"lb2-9-0","coordinator":"lb2","age_ms":2100,"expires_in_ms":27900}},
                {"node":"lb2","reachable":true,"age_ms":120,"generation":3,"cluster_generation":1,
                "digest":"d","proxy_reachable":true,"last_error":null},
                {"node":"lb3","reachable":false,"age_ms":null}],"services":{}}"#,
            ),
        )
        .unwrap();
        assert!(cluster.starts_with("msg\n"), "{cluster}");
        assert!(
            cluster.contains("lb2-9-0 of lb2, 2.1 s, lapses in 27.9 s"),
            "{cluster}"
        );
        assert!(
            cluster.lines().nth(3).unwrap().contains("  ok     -  "),
            "{cluster}"
        );
        assert!(human(&Command::Status, &reply("{}")).is_err());
    }
}
