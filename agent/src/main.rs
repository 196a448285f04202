//! `cutover`: the agent and its command line. Errors are printed with their whole chain and
//! mapped to the fixed exit codes of [`cutover::cli::exit`].

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;

use cutover::cli::{self, exit, Cli, Verb};
use cutover::config::Config;

/// Threads for blocking calls.
const MAX_BLOCKING_THREADS: usize = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cutover::logging::init(cli.log_format);
    // One thread runs everything; the few blocking calls (user database lookups for the
    // access check) get a small pool, so a burst of connections cannot start many threads.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(exit::SOFTWARE as u8);
        }
    };
    let code = runtime.block_on(run(cli));
    ExitCode::from(code as u8)
}

fn load_config(cli: &Cli) -> Result<Config, i32> {
    Config::load(&cli.config).map_err(|e| {
        eprintln!("error: {e}");
        exit::CONFIG
    })
}

async fn run(cli: Cli) -> i32 {
    match &cli.verb {
        Verb::Agent => {
            let config = match load_config(&cli) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match cutover::agent::run(&cli.config, config)
                .await
                .context("agent stopped")
            {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    exit::SOFTWARE
                }
            }
        }
        Verb::Check => {
            let config = match load_config(&cli) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match cutover::check::run(&config).await {
                Ok(outcome) => {
                    if cli.json {
                        println!("{}", serde_json::to_string(&outcome).expect("serializes"));
                    } else {
                        for w in &outcome.warnings {
                            println!("warning: {w}");
                        }
                        println!(
                            "{}: ok ({} services, {} routes, {} files rendered, {} checked)",
                            cli.config.display(),
                            outcome.services,
                            outcome.routes,
                            outcome.files.len(),
                            outcome.checked.display()
                        );
                    }
                    exit::OK
                }
                Err(problems) => {
                    eprintln!(
                        "error: {}: {} problem(s):",
                        cli.config.display(),
                        problems.len()
                    );
                    for p in problems {
                        eprintln!("  - {p}");
                    }
                    exit::CONFIG
                }
            }
        }
        Verb::Generate { what } => match cutover::generate::run(what) {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("error: generate: {e}");
                exit::SOFTWARE
            }
        },
        Verb::Render => {
            let config = match load_config(&cli) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match render_files(config).await {
                Ok(written) => {
                    for w in written {
                        println!("wrote {w}");
                    }
                    exit::OK
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    exit::FAILED
                }
            }
        }
        Verb::Tls { verb } => match tls_verb(verb) {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("error: {e}");
                exit::FAILED
            }
        },
        verb => {
            let command = match verb.command(cli.dry_run) {
                Ok(c) => c.expect("client verb"),
                Err(e) => {
                    eprintln!("error: {e}");
                    return exit::FAILED;
                }
            };
            if cli.dry_run && !command.is_mutation() {
                eprintln!("error: --dry-run goes with a verb that changes routing");
                return exit::USAGE;
            }
            let command = match (cli.cluster, &command) {
                (false, _) => command,
                (true, cutover::protocol::Command::Status) => {
                    cutover::protocol::Command::ClusterStatus
                }
                (true, c) if c.is_mutation() => cutover::protocol::Command::Cluster {
                    command: Box::new(command),
                },
                (true, _) => {
                    eprintln!("error: --cluster goes with status or a verb that changes routing");
                    return exit::USAGE;
                }
            };
            if let Some(remote) = &cli.remote {
                return remote_request(&cli, remote, &command, verb).await;
            }
            let socket = match &cli.socket {
                Some(s) => s.clone(),
                None => match cutover::config::socket_of(&cli.config) {
                    Ok(socket) => socket,
                    Err(_) if !cli.config.exists() => cutover::config::DEFAULT_SOCKET.into(),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return exit::CONFIG;
                    }
                },
            };
            let reply = cli::request(&socket, &command, Duration::from_secs(cli.timeout), |p| {
                if !cli.json {
                    eprintln!("{}", p.message);
                }
            })
            .await;
            match reply {
                Ok(reply) => cli::print_reply(verb, &reply, cli.json),
                Err(e) => {
                    eprintln!("error: {e}");
                    exit::UNAVAILABLE
                }
            }
        }
    }
}

fn tls_verb(verb: &cli::TlsVerb) -> anyhow::Result<()> {
    use cutover::peers::tls;
    match verb {
        cli::TlsVerb::Ca { dir, name } => {
            tls::make_ca(dir, name)?;
            println!("wrote {0}/ca.pem and {0}/ca.key", dir.display());
        }
        cli::TlsVerb::Issue {
            ca_dir,
            name,
            out,
            ca_name,
        } => {
            let out = out.as_deref().unwrap_or(ca_dir);
            tls::issue(ca_dir, ca_name, name, out)?;
            println!("wrote {0}/{name}.pem and {0}/{name}.key", out.display());
        }
    }
    Ok(())
}

/// Sends a command to a remote agent over mutual TLS.
async fn remote_request(
    cli: &Cli,
    remote: &str,
    command: &cutover::protocol::Command,
    verb: &Verb,
) -> i32 {
    let (Some(ca), Some(cert), Some(key)) = (&cli.tls_ca, &cli.tls_cert, &cli.tls_key) else {
        eprintln!("error: --remote needs --tls-ca, --tls-cert and --tls-key");
        return exit::USAGE;
    };
    let files = cutover::config::TlsFiles {
        ca: ca.clone(),
        cert: cert.clone(),
        key: key.clone(),
    };
    let config = match cutover::peers::tls::client_config(&files) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::CONFIG;
        }
    };
    let name = cli.remote_name.clone().unwrap_or_else(|| {
        remote
            .rsplit_once(':')
            .map_or(remote, |(h, _)| h)
            .to_owned()
    });
    let timeout = Duration::from_secs(cli.timeout);
    match cutover::peers::client::request(&config, &name, remote, command, timeout).await {
        Ok(reply) => cli::print_reply(verb, &reply, cli.json),
        Err(e) => {
            eprintln!("error: {e}");
            exit::UNAVAILABLE
        }
    }
}

async fn render_files(config: Config) -> anyhow::Result<Vec<String>> {
    let store = cutover::store::Store::open(&config.agent.state_dir)?;
    // Refused while an agent runs: it owns the files.
    let _lock = store.lock()?;
    let config = std::sync::Arc::new(config);
    let proxy = cutover::proxy::AnyProxy::new(&config.proxy);
    let mut engine = cutover::engine::Engine::new(config, proxy, store)?;
    Ok(engine.write_files().await?)
}
