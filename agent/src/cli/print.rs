//! What a client verb prints: the agent's reply as JSON, or short tables for humans.

use std::io::Write as _;

use serde_json::Value;

use super::exit;
use crate::protocol::{Command, Reply, Status};

/// Prints the reply to the command `sent` for humans (or as JSON) and returns the exit
/// code.
pub fn print_reply(sent: &Command, reply: &Reply, json: bool) -> i32 {
    let code = if reply.status == Status::Ok {
        exit::OK
    } else {
        exit::FAILED
    };
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
    let text = match sent {
        Command::Cluster { .. } => cluster_result(&reply.message, &reply.data),
        Command::ClusterStatus => cluster_table(&reply.data),
        c if c.mutation().is_some_and(|m| m.dry_run) => plan_text(&reply.message, &reply.data),
        Command::Status => status_table(&reply.data),
        Command::MapShow { .. } => map_lines(&reply.data),
        Command::History { .. } => history_table(&reply.data),
        Command::Metrics => reply.data["text"].as_str().unwrap_or_default().to_owned(),
        _ => format!("{}\n", reply.message),
    };
    let _ = out.write_all(text.as_bytes());
    code
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
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

fn status_table(d: &Value) -> String {
    let rows: Vec<Vec<String>> = d["services"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s_| {
                    let canary = match &s_["canary"] {
                        Value::Object(c) => format!(
                            "{} {}%",
                            c.get("colour").map(s).unwrap_or_default(),
                            c.get("percent").map(s).unwrap_or_default()
                        ),
                        _ => "-".into(),
                    };
                    let drained = s_["drained"]
                        .as_array()
                        .filter(|a| !a.is_empty())
                        .map_or("-".into(), |a| {
                            a.iter().map(s).collect::<Vec<_>>().join(",")
                        });
                    let phase = match &s_["phase"] {
                        Value::Object(p) => {
                            let name = p.get("phase").map(s).unwrap_or_default();
                            match p.get("reason").and_then(Value::as_str) {
                                Some(r) => format!("{name}: {r}"),
                                None => name,
                            }
                        }
                        _ => "-".into(),
                    };
                    vec![
                        s(&s_["name"]),
                        s(&s_["live"]),
                        s(&s_["previous"]),
                        s(&s_["backend"]),
                        canary,
                        drained,
                        s(&s_["routes"]),
                        phase,
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let proxy = &d["proxy"];
    let mut out = format!(
        "generation {}  proxy {} {}\n",
        s(&d["generation"]),
        s(&proxy["kind"]),
        if proxy["reachable"] == Value::Bool(true) {
            let epoch = &proxy["epoch"];
            match epoch["workers"].as_array() {
                // A proxy without a reload counter: what it serves and who serves it.
                Some(workers) => format!(
                    "reachable (serving generation {}, workers {})",
                    s(&epoch["generation"]),
                    workers.iter().map(s).collect::<Vec<_>>().join(",")
                ),
                None => format!("reachable (reloads {})", s(&epoch["reloads"])),
            }
        } else {
            "UNREACHABLE".into()
        }
    );
    out.push_str(&table(
        &[
            "SERVICE", "LIVE", "PREVIOUS", "BACKEND", "CANARY", "DRAINED", "ROUTES", "PHASE",
        ],
        &rows,
    ));
    if let Some(e) = d["last_error"].as_str() {
        out.push_str(&format!("last error: {e}\n"));
    }
    if d["fault"].is_object() {
        let f = &d["fault"];
        out.push_str(&format!(
            "FAULT since {} ({}): {}\n",
            format_time(f["since_ms"].as_u64().unwrap_or(0)),
            s(&f["step"]),
            s(&f["message"])
        ));
    }
    for r in d["recovered"].as_array().into_iter().flatten() {
        out.push_str(&format!("recovered at start: {}\n", s(r)));
    }
    out
}

/// `status --cluster`: one row per host, then one per service with agreement.
fn cluster_table(d: &Value) -> String {
    let rows: Vec<Vec<String>> = d["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            vec![
                s(&h["node"]),
                if h["reachable"] == Value::Bool(true) {
                    "yes".into()
                } else {
                    "NO".into()
                },
                s(&h["age_ms"]),
                s(&h["generation"]),
                s(&h["cluster_generation"]),
                match &h["proxy_reachable"] {
                    Value::Bool(true) => "ok".into(),
                    Value::Bool(false) => "UNREACHABLE".into(),
                    _ => "-".into(),
                },
                s(&h["last_error"]),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "HOST",
            "REACHABLE",
            "AGE_MS",
            "GEN",
            "CLUSTER_GEN",
            "PROXY",
            "LAST ERROR",
        ],
        &rows,
    );
    let rows: Vec<Vec<String>> = d["services"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, v)| {
            let hosts = v["hosts"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(h, c)| format!("{h}={}", s(c)))
                .collect::<Vec<_>>()
                .join(" ");
            let agree = if v["agree"] == Value::Bool(true) {
                "agree"
            } else {
                "DIVERGED"
            };
            vec![name.clone(), agree.into(), hosts]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(&["SERVICE", "STATE", "HOSTS"], &rows));
    out
}

/// The per-host outcome of a cluster change.
fn cluster_result(message: &str, d: &Value) -> String {
    let mut out = format!("{message}\n");
    for (host, r) in d["hosts"].as_object().into_iter().flatten() {
        let what = if r["ok"] == Value::Bool(true) {
            "ok".to_owned()
        } else {
            format!("FAILED: {}", s(&r["error"]))
        };
        out.push_str(&format!("  {host}: {what}\n"));
    }
    out
}

/// A plan for humans: what changes, the gate, and per file the edits and the mechanism.
fn plan_text(message: &str, d: &Value) -> String {
    let mut out = format!("{message}\n");
    for c in d["services"].as_array().into_iter().flatten() {
        let side = |v: &Value| match v {
            Value::Object(o) => {
                let mut t = s(o.get("live").unwrap_or(&Value::Null));
                if let Some(Value::Object(c)) = o.get("canary") {
                    t.push_str(&format!(
                        "+canary {} {}%",
                        s(c.get("colour").unwrap_or(&Value::Null)),
                        s(c.get("percent").unwrap_or(&Value::Null))
                    ));
                }
                t
            }
            _ => "-".into(),
        };
        out.push_str(&format!(
            "  service {}: {} -> {}\n",
            s(&c["service"]),
            side(&c["from"]),
            side(&c["to"])
        ));
    }
    for g in d["gates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
    {
        if g.get("forced") == Some(&Value::Bool(true)) {
            out.push_str("  gate: skipped (--force)\n");
        } else if let Some(backend) = g.get("backend").and_then(Value::as_str) {
            let names = |k: &str| {
                g.get(k)
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            };
            // A proxy that cannot show server states (Nginx) lists none up.
            let mut seen = Vec::new();
            if !names("up").is_empty() {
                seen.push(format!("up: {}", names("up")));
            }
            if !names("probed").is_empty() {
                seen.push(format!("probed: {}", names("probed")));
            }
            out.push_str(&format!("  gate: passed for {backend}"));
            if !seen.is_empty() {
                out.push_str(&format!(" ({})", seen.join("; ")));
            }
            out.push('\n');
        }
    }
    for f in d["files"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  file {} ({}): {}, {} edits\n",
            s(&f["name"]),
            s(&f["path"]),
            s(&f["mechanism"]),
            s(&f["edits"])
        ));
        for p in f["added"].as_array().into_iter().flatten() {
            out.push_str(&format!("    + {} {}\n", s(&p[0]), s(&p[1])));
        }
        for p in f["changed"].as_array().into_iter().flatten() {
            out.push_str(&format!("    ~ {} {}\n", s(&p[0]), s(&p[1])));
        }
        for k in f["removed"].as_array().into_iter().flatten() {
            out.push_str(&format!("    - {}\n", s(k)));
        }
        let lines = &f["lines"];
        if f["kind"] == "config" {
            for l in lines["first_removed"].as_array().into_iter().flatten() {
                out.push_str(&format!("    -| {}\n", s(l)));
            }
            for l in lines["first_added"].as_array().into_iter().flatten() {
                out.push_str(&format!("    +| {}\n", s(l)));
            }
        }
    }
    for srv in d["servers"].as_array().into_iter().flatten() {
        out.push_str(&format!("  servers: {}\n", s(srv)));
    }
    if d["validated_by_proxy"] == Value::Bool(true) {
        out.push_str("  validated with the proxy's own checker on a staged copy\n");
    }
    out
}

fn map_lines(d: &Value) -> String {
    let mut out = String::new();
    if let Some(entries) = d["entries"].as_object() {
        for (k, v) in entries {
            out.push_str(&format!("{k} {}\n", s(v)));
        }
        return out;
    }
    let pairs = |key: &str, sign: char, out: &mut String| {
        for p in d[key].as_array().into_iter().flatten() {
            out.push_str(&format!("{sign} {} {}\n", s(&p[0]), s(&p[1])));
        }
    };
    pairs("added", '+', &mut out);
    pairs("changed", '~', &mut out);
    for k in d["removed"].as_array().into_iter().flatten() {
        out.push_str(&format!("- {}\n", s(k)));
    }
    if out.is_empty() {
        out.push_str("no difference\n");
    }
    out
}

fn history_table(d: &Value) -> String {
    let rows: Vec<Vec<String>> = d["entries"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let who = &e["requester"];
                    vec![
                        format_time(e["time_ms"].as_u64().unwrap_or(0)),
                        s(&e["generation"]),
                        s(&e["result"]),
                        format!(
                            "{} uid={} pid={}",
                            s(&who["via"]),
                            s(&who["uid"]),
                            s(&who["pid"])
                        ),
                        s(&e["message"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(&["TIME (UTC)", "GEN", "RESULT", "BY", "WHAT"], &rows)
}

/// `YYYY-MM-DD HH:MM:SS.mmm` in UTC from Unix milliseconds.
pub fn format_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
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
}
