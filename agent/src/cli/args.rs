//! The command-line grammar: global options, verbs and their arguments, and how a client
//! verb becomes a protocol command.
// clap prints doc comments as help text: the grammar's items are documented by the help
// they print, and items without help stay undocumented (a doc comment on a subcommand enum
// would even become its parent's about text).
#![allow(missing_docs)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::{DEFAULT_CONFIG, DEFAULT_TIMEOUT_S};
use crate::logging::LogFormat;
use crate::protocol::{Command, MapView, ReasonText, Request};

#[derive(Debug, Parser)]
#[command(
    name = "cutover",
    version = super::VERSION,
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
    /// Talk to the agent's remote API at HOST:PORT (its `[remote] listen`: gRPC over mutual
    /// TLS) instead of the local socket; needs --tls-ca, --tls-cert and --tls-key.
    #[arg(long, global = true, env = "CUTOVER_REMOTE", value_name = "HOST:PORT")]
    pub remote: Option<String>,
    /// The name the remote agent's certificate carries (a DNS name, e.g. its node name
    /// `lb1`); the certificate is checked against it. Default: HOST, which fails for an IP
    /// address unless the certificate names that address.
    #[arg(long, global = true, env = "CUTOVER_REMOTE_NAME", value_name = "NAME")]
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
    /// With a mutating verb on a host of a fleet (`store = "etcd"`): change this host
    /// alone; it shows as diverged until the next fleet change.
    #[arg(long, global = true, conflicts_with = "cluster")]
    pub local: bool,
    /// With a mutating verb: why (a ticket, a sentence), journaled on every host the change
    /// reaches; at most 256 bytes of printable text.
    #[arg(long, global = true, value_name = "TEXT")]
    pub reason: Option<ReasonText>,
    /// With a mutating verb: refuse the change unless the state is still at generation N
    /// (as `status` shows it; the cluster generation with --cluster, the fleet generation
    /// on a fleet), so two pipelines cannot overwrite each other.
    #[arg(long, global = true, value_name = "N")]
    pub if_generation: Option<u64>,
    /// The fleet store, for driving a fleet without a local agent.
    #[command(flatten)]
    pub etcd: EtcdArgs,
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
    /// Whether `--config` (or `CUTOVER_CONFIG`) named the config, rather than the default
    /// path standing in (set by [`super::flags::parse`]).
    #[arg(skip)]
    pub config_given: bool,
}

/// `--etcd` and its companions: the command line as a client of the fleet store. Their ids
/// start with `etcd` so that no verb's own argument (`tls issue`'s NAME) shares one: clap
/// merges the values of a global flag and a verb's argument of the same id.
#[derive(Debug, Clone, Args)]
pub struct EtcdArgs {
    /// Talk to the fleet in etcd instead of an agent: its client URLs, comma-separated
    /// (`http://host:2379`, `https://...`). Routing verbs change every live host, `status`
    /// and `history` read the fleet.
    #[arg(
        id = "etcd",
        long = "etcd",
        global = true,
        env = "CUTOVER_ETCD",
        value_name = "URLS",
        value_delimiter = ','
    )]
    pub endpoints: Vec<String>,
    /// The site's key prefix in etcd, as the agents' `[cluster.etcd] prefix`.
    #[arg(
        id = "etcd_prefix",
        long = "etcd-prefix",
        global = true,
        env = "CUTOVER_ETCD_PREFIX",
        default_value = "/cutover"
    )]
    pub prefix: String,
    /// CA that signs etcd's server certificates (with https:// endpoints).
    #[arg(
        id = "etcd_ca",
        long = "etcd-ca",
        global = true,
        env = "CUTOVER_ETCD_CA"
    )]
    pub ca: Option<PathBuf>,
    /// Client certificate for etcd.
    #[arg(
        id = "etcd_cert",
        long = "etcd-cert",
        global = true,
        env = "CUTOVER_ETCD_CERT",
        requires = "etcd_ca"
    )]
    pub cert: Option<PathBuf>,
    /// Key of the client certificate for etcd.
    #[arg(
        id = "etcd_key",
        long = "etcd-key",
        global = true,
        env = "CUTOVER_ETCD_KEY",
        requires = "etcd_cert"
    )]
    pub key: Option<PathBuf>,
    /// etcd user.
    #[arg(
        id = "etcd_user",
        long = "etcd-user",
        global = true,
        env = "CUTOVER_ETCD_USER",
        requires = "etcd_password_file"
    )]
    pub user: Option<String>,
    /// File whose first line is the etcd user's password.
    #[arg(
        id = "etcd_password_file",
        long = "etcd-password-file",
        global = true,
        env = "CUTOVER_ETCD_PASSWORD_FILE"
    )]
    pub password_file: Option<PathBuf>,
    /// Who proposes, as the fleet's log records it (default: cli-<hostname>).
    #[arg(
        id = "etcd_name",
        long = "etcd-name",
        global = true,
        env = "CUTOVER_ETCD_NAME"
    )]
    pub name: Option<String>,
    /// Milliseconds every live host has to vote on a change.
    #[arg(long = "vote-ms", global = true, default_value_t = crate::config::fleet::DEFAULT_VOTE_TIMEOUT_MS)]
    pub vote_ms: u64,
    /// Milliseconds a change waits for every live host to confirm it; hosts that lag are
    /// named and the exit code is 1.
    #[arg(long = "wait-ms", global = true, default_value_t = crate::config::fleet::DEFAULT_WAIT_MS)]
    pub wait_ms: u64,
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
    /// The names of the services the running agent routes, one per line (what the shell
    /// completions offer after a routing verb). Prints nothing, exit 69, when no agent
    /// answers.
    Services,
    /// The routing verbs (`switch`, `rollback`, `canary`, `promote`, `abort`, `drain`,
    /// `undrain`), as the protocol's [`Request`] declares them.
    #[command(flatten)]
    Change(Change),
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
    /// Make the running agent read its config file again and wait for its verdict: exit 0
    /// once the new config is in force, 1 when it is refused (the old one stays in force).
    /// What `systemctl reload cutover` runs.
    Reload,
    /// Man pages and shell completions, written from this binary's own definition.
    Generate {
        #[command(subcommand)]
        what: super::generate::What,
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
        /// The CA's name (default: "cutover CA" and a fingerprint of its key, unique to it,
        /// so a client of another CA is told "unknown CA").
        #[arg(long)]
        name: Option<String>,
    },
    /// Issue NAME.pem and NAME.key in OUT (default: the CA's directory), signed by the CA in
    /// CA_DIR, for a node or a client called NAME.
    Issue {
        ca_dir: PathBuf,
        name: String,
        #[arg(long)]
        out: Option<PathBuf>,
        /// A SAN URI to add (e.g. a SPIFFE ID), besides the DNS name NAME; may be repeated.
        /// `[[remote.clients]] identity = "uri:..."` names a client by it.
        #[arg(long = "uri", value_name = "URI")]
        uris: Vec<String>,
        /// The CA's name (default: read from CA_DIR/ca.pem).
        #[arg(long)]
        ca_name: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only entries about this service.
    pub service: Option<String>,
    /// At most this many entries.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Only entries asked for by this user name or uid (or certificate identity
    /// `dns:<name>` / `uri:<uri>`, or peer), also through a cluster change.
    #[arg(long)]
    pub user: Option<String>,
    /// Only entries of this verb (switch, rollback, canary, ..., watch, reconcile).
    #[arg(long)]
    pub verb: Option<String>,
    /// Only entries at or after this time: RFC 3339 (2026-03-01T12:00:00Z) or an age
    /// (90s, 15m, 1h, 7d).
    #[arg(long, value_parser = super::when::parse_ms)]
    pub since: Option<u64>,
    /// Only entries before this time: RFC 3339 or an age, as --since.
    #[arg(long, value_parser = super::when::parse_ms)]
    pub until: Option<u64>,
}

impl Verb {
    /// The protocol command of a client verb.
    pub fn command(&self, dry_run: bool) -> Result<Option<Command>, crate::desired::DesiredError> {
        Ok(Some(match self {
            Verb::Agent
            | Verb::Check
            | Verb::Render
            | Verb::Services
            | Verb::Tls { .. }
            | Verb::Generate { .. } => return Ok(None),
            Verb::Metrics => Command::Metrics,
            Verb::Reload => Command::ReloadConfig,
            Verb::Status => Command::Status,
            Verb::Change(c) => Command::change(c.request.clone(), c.force, dry_run),
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
                user: a.user.clone(),
                verb: a.verb.clone(),
                since_ms: a.since,
                until_ms: a.until,
            },
            Verb::Apply { file, force } => Command::change(
                Request::Set {
                    services: crate::desired::load(file)?,
                },
                *force,
                dry_run,
            ),
        }))
    }
}

/// A routing verb on the command line: the protocol's [`Request`], and `--force` for the
/// verbs that [take it](Request::takes_force).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What to change.
    pub request: Request,
    /// Skip the pre-switch gate.
    pub force: bool,
}

/// The id of `--force` among a subcommand's arguments.
const FORCE: &str = "force";

/// `--force`, as every verb that takes it shows it.
fn force_arg() -> clap::Arg {
    clap::Arg::new(FORCE)
        .long(FORCE)
        .action(clap::ArgAction::SetTrue)
        .help("Skip the pre-switch gate (recorded in the journal)")
}

impl clap::FromArgMatches for Change {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let request = Request::from_arg_matches(matches)?;
        let force = matches
            .subcommand()
            .and_then(|(_, sub)| sub.try_get_one::<bool>(FORCE).ok().flatten().copied())
            .unwrap_or(false);
        Ok(Change { request, force })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Change::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Subcommand for Change {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        with_force(cmd, Request::augment_subcommands)
    }

    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        with_force(cmd, Request::augment_subcommands_for_update)
    }

    fn has_subcommand(name: &str) -> bool {
        Request::has_subcommand(name)
    }
}

/// Adds the routing verbs to `cmd`, in their order, with `--force` on those that take it.
/// They are built on a scratch command first, so the parent keeps its own about text.
fn with_force(
    mut cmd: clap::Command,
    augment: fn(clap::Command) -> clap::Command,
) -> clap::Command {
    let verbs = augment(clap::Command::new("routing verbs"));
    for sub in verbs.get_subcommands() {
        // Listed where the parent puts them, not in the scratch command's order.
        let sub = sub.clone().display_order(None);
        cmd = cmd.subcommand(if Request::takes_force(sub.get_name()) {
            sub.arg(force_arg())
        } else {
            sub
        });
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Colour;

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["cutover", "switch", "web", "green", "--json"]).unwrap();
        assert!(c.json);
        assert_eq!(
            c.verb.command(c.dry_run).unwrap(),
            Some(Command::change(
                Request::Switch {
                    service: "web".into(),
                    colour: Colour::Green,
                },
                false,
                false
            ))
        );
        assert!(Cli::try_parse_from(["cutover", "switch", "web", "red"]).is_err());
    }

    /// `--reason` and `--if-generation` parse as the protocol's terms (bounded by it), and
    /// `history` takes its filters, times as Unix milliseconds.
    #[test]
    fn terms_and_history_filters_parse() {
        let c = Cli::try_parse_from([
            "cutover",
            "rollback",
            "web",
            "--reason",
            "CHG-42 bad release",
            "--if-generation",
            "41",
        ])
        .unwrap();
        assert_eq!(
            c.reason.as_ref().map(|r| r.as_str()),
            Some("CHG-42 bad release")
        );
        assert_eq!(c.if_generation, Some(41));
        let long = "x".repeat(257);
        let e = Cli::try_parse_from(["cutover", "rollback", "web", "--reason", &long]).unwrap_err();
        assert!(e.to_string().contains("more than 256"), "{e}");
        assert!(
            Cli::try_parse_from(["cutover", "rollback", "web", "--if-generation", "-1"]).is_err()
        );
        let c = Cli::try_parse_from([
            "cutover",
            "history",
            "web",
            "--user",
            "alice",
            "--verb",
            "rollback",
            "--since",
            "2026-03-01T12:00:00Z",
            "--until",
            "2026-03-01T13:00:00+01:00",
        ])
        .unwrap();
        assert_eq!(
            c.verb.command(false).unwrap(),
            Some(Command::History {
                service: Some("web".into()),
                limit: 20,
                user: Some("alice".into()),
                verb: Some("rollback".into()),
                since_ms: Some(1_772_366_400_000),
                until_ms: Some(1_772_366_400_000),
            })
        );
        let e = Cli::try_parse_from(["cutover", "history", "--since", "last week"]).unwrap_err();
        assert!(e.to_string().contains("RFC 3339"), "{e}");
    }

    /// The routing verbs are the protocol's `Request`, with `--force` on the verbs that
    /// take it and nowhere else.
    #[test]
    fn routing_verbs_come_from_the_request() {
        let parse =
            |args: &str| Cli::try_parse_from(std::iter::once("cutover").chain(args.split(' ')));
        let command = |args: &str| {
            let c = parse(args).unwrap();
            c.verb.command(c.dry_run).unwrap().unwrap()
        };
        assert_eq!(
            command("canary web green 10 --force --dry-run"),
            Command::change(
                Request::Canary {
                    service: "web".into(),
                    colour: Colour::Green,
                    percent: 10
                },
                true,
                true
            )
        );
        assert_eq!(
            command("undrain web blue"),
            Command::change(
                Request::Undrain {
                    service: "web".into(),
                    colour: Colour::Blue
                },
                false,
                false
            )
        );
        for args in [
            "switch web green",
            "rollback web",
            "canary web blue 5",
            "promote web",
        ] {
            let m = command(&format!("{args} --force")).mutation().unwrap();
            assert!(m.force, "{args}");
        }
        for args in ["abort web", "drain web blue", "undrain web blue"] {
            assert!(parse(&format!("{args} --force")).is_err(), "{args}");
        }
        assert!(parse("canary web green 100").is_err());
        assert!(
            parse("set web").is_err(),
            "apply -f is the command line's set"
        );
    }
}
