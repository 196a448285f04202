//! `cutover`: the agent and its command line. Errors are printed with their whole chain and
//! mapped to the fixed exit codes of [`cutover::cli::exit`].

use std::process::ExitCode;

use anyhow::Context as _;

use cutover::cli::{self, exit, fail, Cli, Verb};
use cutover::config::Config;

/// Threads for blocking calls.
const MAX_BLOCKING_THREADS: usize = 2;

fn main() -> ExitCode {
    let cli = match cli::flags::parse() {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(usage_error(e) as u8),
    };
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
            let code = fail(
                cli.json,
                exit::SOFTWARE,
                format!("cannot start the runtime: {e}"),
            );
            return ExitCode::from(code as u8);
        }
    };
    let code = runtime.block_on(run(cli));
    ExitCode::from(code as u8)
}

/// Prints clap's refusal of the command line (or the help or version asked for) and
/// returns the exit code; with `--json` among the arguments a refusal is a JSON error
/// object on stdout.
fn usage_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    let json = std::env::args_os().any(|a| a == "--json");
    let asked = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    if !json || asked {
        let _ = e.print();
        return e.exit_code();
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    fail(true, e.exit_code(), first.trim_start_matches("error: "))
}

fn load_config(cli: &Cli) -> Result<Config, i32> {
    Config::load(&cli.config).map_err(|e| fail(cli.json, exit::CONFIG, e))
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
            let mut config = match load_config(&cli) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match cutover::check::run(&mut config).await {
                Ok(outcome) => {
                    if cli.json {
                        println!("{}", serde_json::to_string(&outcome).expect("serializes"));
                    } else {
                        for w in &outcome.warnings {
                            println!("warning: {w}");
                        }
                        if let Some(d) = &outcome.nginx_runtime {
                            println!("{}", d.summary());
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
                Err(problems) if cli.json => {
                    let problems: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
                    let message = format!(
                        "{}: {} problem(s): {}",
                        cli.config.display(),
                        problems.len(),
                        problems.join("; ")
                    );
                    fail(true, exit::CONFIG, message)
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
        Verb::Generate { what } => match cli::generate::run(what) {
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
        Verb::Tls { verb } => match cli::run::tls(verb) {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("error: {e}");
                exit::FAILED
            }
        },
        Verb::Services => cli::run::service_names(&cli).await,
        verb => cli::run::client(&cli, verb).await,
    }
}

async fn render_files(mut config: Config) -> anyhow::Result<Vec<String>> {
    // The files are rendered for the Nginx mode in use.
    cutover::proxy::nginx::lua::detect::resolve(&mut config, true)
        .await
        .map_err(anyhow::Error::msg)?;
    let store = cutover::store::Store::open(&config.agent.state_dir)?;
    // Refused while an agent runs: it owns the files.
    let _lock = store.lock()?;
    let config = std::sync::Arc::new(config);
    let proxy = cutover::proxy::AnyProxy::new(&config.proxy);
    let mut engine = cutover::engine::Engine::new(config, proxy, store)?;
    Ok(engine.write_files().await?)
}
