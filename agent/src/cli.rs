//! The command line: verbs, the client side of the control protocol, and the short tables
//! printed for humans. Every client verb takes `--json` to print the agent's reply as is.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::logging::LogFormat;
use crate::protocol::{self, Command, MapView, Reply, Status};
use crate::state::Colour;

/// Exit codes, as documented in the README and the man page.
pub mod exit {
    pub const OK: i32 = 0;
    /// The operation was refused or failed.
    pub const FAILED: i32 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: i32 = 2;
    /// The config is invalid.
    pub const CONFIG: i32 = 64;
    /// The agent cannot be reached.
    pub const UNAVAILABLE: i32 = 69;
    /// Internal error (I/O on the local machine).
    pub const SOFTWARE: i32 = 70;
}

/// Default config path.
pub const DEFAULT_CONFIG: &str = "/etc/cutover/cutover.toml";
/// Default time to wait for the agent's answer, in seconds.
pub const DEFAULT_TIMEOUT_S: u64 = 120;
/// Longest reply line read from the agent, in bytes.
pub const MAX_REPLY: usize = 256 * 1024 * 1024;

#[derive(Debug, Parser)]
#[command(
    name = "cutover",
    version,
    about = "Blue-green and canary traffic switches for HAProxy and Nginx hosts"
)]
pub struct Cli {
    /// Agent config file.
    #[arg(long, global = true, env = "CUTOVER_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Control socket (default: the config's agent.socket).
    #[arg(long, global = true, env = "CUTOVER_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Print the agent's reply as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// With a mutating verb: validate, run the gates and show the plan; change nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// With a mutating verb: make the change on every host of the cluster, all or nothing.
    /// With `status`: one row per host.
    #[arg(long, global = true)]
    pub cluster: bool,
    /// Talk to the agent at HOST:PORT (its peer listener) over mutual TLS instead of the
    /// local socket; needs --tls-ca, --tls-cert and --tls-key.
    #[arg(long, global = true, env = "CUTOVER_REMOTE", value_name = "HOST:PORT")]
    pub remote: Option<String>,
    /// The remote agent's node name, as its certificate carries it (default: HOST).
    #[arg(long, global = true, env = "CUTOVER_REMOTE_NAME")]
    pub remote_name: Option<String>,
    /// CA that signs the remote agent's certificate.
    #[arg(long, global = true, env = "CUTOVER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate presented to the remote agent.
    #[arg(long, global = true, env = "CUTOVER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Key of the client certificate.
    #[arg(long, global = true, env = "CUTOVER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Seconds to wait for the agent's answer.
    #[arg(long, global = true, default_value_t = DEFAULT_TIMEOUT_S)]
    pub timeout: u64,
    /// Log format on stderr: text (without timestamps under the systemd journal), or json
    /// (one object per line, for log shippers).
    #[arg(
        long,
        global = true,
        env = "CUTOVER_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Run the agent.
    Agent,
    /// Validate the config: render every template into a staging directory and run the
    /// proxy's checker on it. Changes nothing.
    Check,
    /// Render, validate and write the managed files from the saved state, without
    /// contacting the proxy (before the proxy's first start).
    Render,
    /// Show services, their live colours and the proxy.
    Status,
    /// Make COLOUR the live colour of SERVICE (after the pre-switch gate).
    Switch {
        service: String,
        colour: Colour,
        /// Skip the pre-switch gate (recorded in the journal).
        #[arg(long)]
        force: bool,
    },
    /// Make the previous colour of SERVICE live again.
    Rollback {
        service: String,
        /// Skip the pre-switch gate (recorded in the journal).
        #[arg(long)]
        force: bool,
    },
    /// Send PERCENT (1-99) of SERVICE's traffic to COLOUR, the colour that is not live.
    Canary {
        service: String,
        colour: Colour,
        #[arg(value_parser = clap::value_parser!(u8).range(1..=99))]
        percent: u8,
        /// Skip the pre-switch gate (recorded in the journal).
        #[arg(long)]
        force: bool,
    },
    /// Make the canary colour of SERVICE live.
    Promote {
        service: String,
        /// Skip the pre-switch gate (recorded in the journal).
        #[arg(long)]
        force: bool,
    },
    /// End the canary of SERVICE; all traffic stays on the live colour.
    Abort { service: String },
    /// Drain the servers of COLOUR (no new connections; established ones finish).
    Drain { service: String, colour: Colour },
    /// Take the servers of COLOUR out of drain.
    Undrain { service: String, colour: Colour },
    /// Set the live colour (and canary) of the services a desired-state file names, in one
    /// change.
    Apply {
        /// The desired-state TOML file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Skip the pre-switch gate (recorded in the journal).
        #[arg(long)]
        force: bool,
    },
    /// Maps.
    Map {
        #[command(subcommand)]
        verb: MapVerb,
    },
    /// The newest journal entries.
    History(HistoryArgs),
    /// Certificates for peers and remote clients.
    Tls {
        #[command(subcommand)]
        verb: TlsVerb,
    },
    /// The agent's metrics in the OpenMetrics text format, as its HTTP endpoint serves them.
    Metrics,
    /// Man pages and shell completions, written from this binary's own definition.
    Generate {
        #[command(subcommand)]
        what: crate::generate::What,
    },
}

#[derive(Debug, Subcommand)]
pub enum MapVerb {
    /// Entries of a managed map (desired by default).
    Show {
        name: String,
        /// What the running proxy serves.
        #[arg(long, conflicts_with_all = ["desired", "diff"])]
        live: bool,
        /// What the desired state renders (the default).
        #[arg(long, conflicts_with = "diff")]
        desired: bool,
        /// Per-key difference from live to desired.
        #[arg(long)]
        diff: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TlsVerb {
    /// Create a CA (ca.pem, ca.key) in DIR.
    Ca {
        dir: PathBuf,
        /// The CA's name.
        #[arg(long, default_value = DEFAULT_CA_NAME)]
        name: String,
    },
    /// Issue NAME.pem and NAME.key in OUT (default: the CA's directory), signed by the CA in
    /// CA_DIR, for a node or a client called NAME.
    Issue {
        ca_dir: PathBuf,
        name: String,
        #[arg(long)]
        out: Option<PathBuf>,
        /// The CA's name, as given to `tls ca`.
        #[arg(long, default_value = DEFAULT_CA_NAME)]
        ca_name: String,
    },
}

/// Name of a CA made by `cutover tls ca`.
pub const DEFAULT_CA_NAME: &str = "cutover CA";

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only entries about this service.
    pub service: Option<String>,
    /// At most this many entries.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

impl Verb {
    /// The protocol command of a client verb.
    pub fn command(&self, dry_run: bool) -> Result<Option<Command>, String> {
        Ok(Some(match self {
            Verb::Agent | Verb::Check | Verb::Render | Verb::Tls { .. } | Verb::Generate { .. } => {
                return Ok(None)
            }
            Verb::Metrics => Command::Metrics,
            Verb::Status => Command::Status,
            Verb::Switch {
                service,
                colour,
                force,
            } => Command::Switch {
                service: service.clone(),
                colour: *colour,
                force: *force,
                dry_run,
            },
            Verb::Rollback { service, force } => Command::Rollback {
                service: service.clone(),
                force: *force,
                dry_run,
            },
            Verb::Canary {
                service,
                colour,
                percent,
                force,
            } => Command::Canary {
                service: service.clone(),
                colour: *colour,
                percent: *percent,
                force: *force,
                dry_run,
            },
            Verb::Promote { service, force } => Command::Promote {
                service: service.clone(),
                force: *force,
                dry_run,
            },
            Verb::Abort { service } => Command::Abort {
                service: service.clone(),
                dry_run,
            },
            Verb::Drain { service, colour } => Command::Drain {
                service: service.clone(),
                colour: *colour,
                dry_run,
            },
            Verb::Undrain { service, colour } => Command::Undrain {
                service: service.clone(),
                colour: *colour,
                dry_run,
            },
            Verb::Map {
                verb: MapVerb::Show {
                    name, live, diff, ..
                },
            } => Command::MapShow {
                name: name.clone(),
                view: if *live {
                    MapView::Live
                } else if *diff {
                    MapView::Diff
                } else {
                    MapView::Desired
                },
            },
            Verb::History(a) => Command::History {
                service: a.service.clone(),
                limit: a.limit,
            },
            Verb::Apply { file, force } => Command::Apply {
                services: crate::desired::load(file)?,
                force: *force,
                dry_run,
            },
        }))
    }
}

impl clap::ValueEnum for Colour {
    fn value_variants<'a>() -> &'a [Self] {
        &Colour::ALL
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// The agent could not be reached, or broke off.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the agent at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to the agent at {path}: {reason}")]
    Talk { path: PathBuf, reason: String },
}

/// Sends one command over the unix socket and returns the final reply (progress replies
/// go to `on_progress`).
pub async fn request(
    socket: &Path,
    command: &Command,
    timeout: Duration,
    on_progress: impl FnMut(&Reply),
) -> Result<Reply, ClientError> {
    let stream = tokio::time::timeout(Duration::from_secs(5), UnixStream::connect(socket))
        .await
        .map_err(|_| ClientError::Connect {
            path: socket.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
        })?
        .map_err(|source| ClientError::Connect {
            path: socket.to_owned(),
            source,
        })?;
    exchange(
        stream,
        &socket.display().to_string(),
        command,
        timeout,
        on_progress,
    )
    .await
}

/// Sends one command on an open stream (unix socket or TLS) and reads replies until the
/// final one. `peer` names the other end in errors.
pub async fn exchange<S>(
    stream: S,
    peer: &str,
    command: &Command,
    timeout: Duration,
    mut on_progress: impl FnMut(&Reply),
) -> Result<Reply, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let talk = |reason: String| ClientError::Talk {
        path: PathBuf::from(peer),
        reason,
    };
    let (read, mut write) = tokio::io::split(stream);
    let mut line = protocol::encode(command);
    line.push('\n');
    let mut reader = BufReader::new(read);
    let work = async {
        write
            .write_all(line.as_bytes())
            .await
            .map_err(|e| talk(e.to_string()))?;
        write.flush().await.map_err(|e| talk(e.to_string()))?;
        loop {
            let mut buf = String::new();
            let n = (&mut reader)
                .take(MAX_REPLY as u64)
                .read_line(&mut buf)
                .await
                .map_err(|e| talk(e.to_string()))?;
            if n == 0 {
                return Err(talk("the agent closed the connection".into()));
            }
            let reply: Reply =
                serde_json::from_str(&buf).map_err(|e| talk(format!("unreadable reply: {e}")))?;
            if reply.status == Status::Progress {
                on_progress(&reply);
                continue;
            }
            return Ok(reply);
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| talk(format!("no answer within {} s", timeout.as_secs())))?
}

/// Prints a reply for humans (or as JSON) and returns the exit code.
pub fn print_reply(verb: &Verb, reply: &Reply, json: bool) -> i32 {
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
    let text = match verb {
        _ if reply.data.get("files").is_some() && reply.message.starts_with("dry run") => {
            plan_text(&reply.message, &reply.data)
        }
        _ if reply.data.get("hosts").is_some() && reply.data.get("services").is_some() => {
            cluster_table(&reply.data)
        }
        _ if reply.data.get("txn").is_some() => cluster_result(&reply.message, &reply.data),
        Verb::Status => status_table(&reply.data),
        Verb::Map { .. } => map_lines(&reply.data),
        Verb::History(_) => history_table(&reply.data),
        Verb::Metrics => reply.data["text"].as_str().unwrap_or_default().to_owned(),
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

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["cutover", "switch", "web", "green", "--json"]).unwrap();
        assert!(c.json);
        assert_eq!(
            c.verb.command(c.dry_run).unwrap(),
            Some(Command::Switch {
                service: "web".into(),
                colour: Colour::Green,
                force: false,
                dry_run: false
            })
        );
        assert!(Cli::try_parse_from(["cutover", "switch", "web", "red"]).is_err());
    }
}
