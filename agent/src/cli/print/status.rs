//! `status` and `status --cluster` for humans: this host's services, files, proxy and
//! server health, and the cluster's hosts and agreement.

use super::{format_time, or_dash, table};
use crate::protocol::{ClusterOutcome, ClusterStatus, HeldChange, HostRow, Snapshot};

/// The servers of each colour as the proxy last reported them, and where its drain stands;
/// nothing before the first poll.
fn servers_table(d: &Snapshot) -> String {
    let mut rows = Vec::new();
    for s in &d.services {
        let Some(h) = &s.health else { continue };
        for colour in crate::protocol::Colour::ALL {
            let c = h.colour(colour);
            let drain = match s.drains.iter().find(|x| x.colour == colour) {
                None => "-".to_owned(),
                Some(x) => match (&x.reason, x.deadline_ms) {
                    (Some(r), _) => {
                        format!("{} since {} ({r})", "maintenance", format_time(x.since_ms))
                    }
                    (None, Some(by)) => format!("draining, maintenance by {}", format_time(by)),
                    (None, None) => "draining".to_owned(),
                },
            };
            rows.push(vec![
                s.name.clone(),
                colour.to_string(),
                c.summary(),
                or_dash(c.sessions),
                drain,
            ]);
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    table(
        &["SERVICE", "COLOUR", "SERVERS", "SESSIONS", "DRAIN"],
        &rows,
    )
}

pub(super) fn status_table(d: &Snapshot) -> String {
    let rows: Vec<Vec<String>> = d
        .services
        .iter()
        .map(|s| {
            let canary = or_dash(s.canary.map(|c| match c.seed {
                0 => format!("{} {}%", c.colour, c.percent),
                seed => format!("{} {}% seed {seed}", c.colour, c.percent),
            }));
            let drained = if s.drained.is_empty() {
                "-".into()
            } else {
                s.drained.join(",")
            };
            let phase = or_dash(s.phase.as_ref().map(|p| match &p.reason {
                Some(r) => format!("{}: {r}", p.phase),
                None => p.phase.to_string(),
            }));
            vec![
                s.name.clone(),
                s.live.clone(),
                or_dash(s.previous.as_ref()),
                s.backend.clone(),
                canary,
                drained,
                s.routes.to_string(),
                phase,
            ]
        })
        .collect();
    let proxy = &d.proxy;
    let reachability = match (&proxy.epoch, proxy.reachable) {
        (_, false) => "UNREACHABLE".into(),
        // A proxy without a reload counter: what it serves and who serves it.
        (Some(epoch), true) if !epoch.workers.is_empty() => format!(
            "reachable (serving generation {}, workers {})",
            or_dash(epoch.generation),
            epoch
                .workers
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
        (epoch, true) => format!(
            "reachable (reloads {})",
            or_dash(epoch.as_ref().map(|e| e.reloads))
        ),
    };
    let version = proxy
        .version
        .as_ref()
        .map(|v| format!(" {v}"))
        .unwrap_or_default();
    let mut out = format!(
        "generation {}  proxy {}{version} {reachability}\n",
        d.generation, proxy.kind
    );
    for warning in &proxy.warnings {
        out.push_str(&format!("WARNING: {warning}\n"));
    }
    out.push_str(&table(
        &[
            "SERVICE", "LIVE", "PREVIOUS", "BACKEND", "CANARY", "DRAINED", "ROUTES", "PHASE",
        ],
        &rows,
    ));
    out.push_str(&servers_table(d));
    if let Some(e) = &d.last_error {
        out.push_str(&format!("last error: {e}\n"));
    }
    if let Some(f) = &d.fault {
        out.push_str(&format!(
            "FAULT since {} ({}): {}\n",
            format_time(f.since_ms),
            f.step,
            f.message
        ));
    }
    for r in &d.recovered {
        out.push_str(&format!("recovered at start: {r}\n"));
    }
    if let Some(c) = &d.config_error {
        let line = c.line.map(|l| format!(" line {l}")).unwrap_or_default();
        out.push_str(&format!(
            "CONFIG REFUSED at {} ({}{line}); the previous config is in force: {}\n",
            format_time(c.time_ms),
            c.file,
            c.message
        ));
    }
    if let Some(f) = &d.fleet {
        let state = if f.up { "up" } else { "DEGRADED" };
        out.push_str(&format!(
            "fleet {}: {state}, applied generation {} (etcd revision {}), {} resync(s), {} repair(s)\n",
            f.prefix, f.applied_generation, f.revision, f.resyncs, f.repairs
        ));
        if let Some(e) = &f.error {
            out.push_str(&format!("fleet error: {e}\n"));
        }
    }
    out
}

/// A held cluster change in a host row: `lb1-1796659893183-0 of lb1, 2.1 s, lapses in 27.9 s`.
fn held(h: Option<&HeldChange>) -> String {
    let seconds = |ms: u64| format!("{:.1} s", ms as f64 / 1e3);
    or_dash(h.map(|h| {
        format!(
            "{} of {}, {}, lapses in {}",
            h.txn,
            h.coordinator,
            seconds(h.age_ms),
            seconds(h.expires_in_ms)
        )
    }))
}

/// `status --cluster`: one row per host (with the change it holds prepared), then one per
/// service with agreement.
pub(super) fn cluster_table(d: &ClusterStatus) -> String {
    let rows: Vec<Vec<String>> = d
        .hosts
        .iter()
        .map(|h| match h {
            HostRow::Seen {
                node,
                reachable,
                age_ms,
                generation,
                cluster_generation,
                proxy_reachable,
                last_error,
                held: holds,
                ..
            } => vec![
                node.clone(),
                if *reachable { "yes" } else { "NO" }.into(),
                age_ms.to_string(),
                generation.to_string(),
                cluster_generation.to_string(),
                if *proxy_reachable {
                    "ok"
                } else {
                    "UNREACHABLE"
                }
                .into(),
                held(holds.as_ref()),
                or_dash(last_error.as_ref()),
            ],
            HostRow::Unseen {
                node,
                reachable,
                age_ms,
            } => vec![
                node.clone(),
                if *reachable { "yes" } else { "NO" }.into(),
                or_dash(*age_ms),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ],
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
            "HELD",
            "LAST ERROR",
        ],
        &rows,
    );
    let rows: Vec<Vec<String>> = d
        .services
        .iter()
        .map(|(name, v)| {
            let hosts = v
                .hosts
                .iter()
                .map(|(h, c)| format!("{h}={c}"))
                .collect::<Vec<_>>()
                .join(" ");
            let agree = if v.agree { "agree" } else { "DIVERGED" };
            vec![name.clone(), agree.into(), hosts]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(&["SERVICE", "STATE", "HOSTS"], &rows));
    out
}

/// The per-host outcome of a cluster change.
pub(super) fn cluster_result(message: &str, d: &ClusterOutcome) -> String {
    let mut out = format!("{message}\n");
    for (host, r) in &d.hosts {
        let what = if r.ok {
            "ok".to_owned()
        } else {
            format!("FAILED: {}", or_dash(r.error.as_ref()))
        };
        out.push_str(&format!("  {host}: {what}\n"));
    }
    out
}
