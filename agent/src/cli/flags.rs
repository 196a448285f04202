//! Which global flag each verb uses. The flags are global so that they may stand before or
//! after the verb; a verb's help lists only the ones it uses, and a flag given on the command
//! line to a verb that does not use it is refused (exit 2) instead of being ignored.

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Subcommand};

use super::args::Change;
use super::Cli;

/// What a verb does, as far as the global flags go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `agent`: the config and the log format.
    Agent,
    /// `check`, `render`: the config, and (`check`) `--json`.
    Config { json: bool },
    /// `tls`, `generate`: work on local files only.
    Local,
    /// `status`, `history`: ask an agent, a cluster or the fleet.
    Read,
    /// `map`, `metrics`, `reload`, `services`: ask one agent.
    Query,
    /// The routing verbs and `apply`.
    Change,
}

/// The kind of the top-level verb `name`; `None` for a verb this table does not know.
fn kind(name: &str) -> Option<Kind> {
    Some(match name {
        "agent" => Kind::Agent,
        "check" => Kind::Config { json: true },
        "render" => Kind::Config { json: false },
        "tls" | "generate" => Kind::Local,
        "status" | "history" => Kind::Read,
        "map" | "metrics" | "reload" | "services" => Kind::Query,
        "apply" => Kind::Change,
        name if Change::has_subcommand(name) => Kind::Change,
        _ => return None,
    })
}

/// Whether a verb of `kind` uses the global flag whose id is `id`; `None` for a flag this
/// table does not know (shown and accepted everywhere).
fn uses(kind: Kind, id: &str) -> Option<bool> {
    let asks_an_agent = matches!(kind, Kind::Read | Kind::Query | Kind::Change);
    Some(match id {
        "log_format" => true,
        "config" => kind != Kind::Local,
        "json" => asks_an_agent || kind == Kind::Config { json: true },
        "socket" | "timeout" | "remote" | "remote_name" | "tls_ca" | "tls_cert" | "tls_key" => {
            asks_an_agent
        }
        // --cluster and the fleet store's flags.
        "cluster" | "etcd" | "etcd_prefix" | "etcd_ca" | "etcd_cert" | "etcd_key" | "etcd_user"
        | "etcd_password_file" | "etcd_name" => matches!(kind, Kind::Read | Kind::Change),
        "dry_run" | "local" | "vote_ms" | "wait_ms" | "reason" | "if_generation" => {
            kind == Kind::Change
        }
        _ => return None,
    })
}

/// The command line's grammar: [`Cli`], with each verb's copy of the global flags it does
/// not use hidden from its help (and its man page and completions).
pub fn command() -> clap::Command {
    let cmd = Cli::command();
    let globals: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    cmd.mut_subcommands(|mut verb| {
        let Some(kind) = kind(verb.get_name()) else {
            return verb;
        };
        for flag in &globals {
            if uses(kind, flag.get_id().as_str()) == Some(false) {
                // clap copies a global flag into a subcommand only where the subcommand
                // lacks one of that id: this hidden copy takes its place.
                verb = verb.arg(flag.clone().hide(true));
            }
        }
        verb
    })
}

/// Parses the process's arguments: [`Cli`], with [`Cli::config_given`] set, or clap's
/// error (help and `--version` included) for the caller to print.
pub fn parse() -> Result<Cli, clap::Error> {
    parse_from(std::env::args_os())
}

/// [`parse`] of `args` (the program name first).
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut cmd = command();
    let matches = cmd.try_get_matches_from_mut(args)?;
    refuse_unused(&mut cmd, &matches)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    cli.config_given = matches!(
        matches.value_source("config"),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    Ok(cli)
}

/// Refuses a global flag given on the command line to a verb that does not use it.
fn refuse_unused(cmd: &mut clap::Command, matches: &ArgMatches) -> Result<(), clap::Error> {
    let Some((name, _)) = matches.subcommand() else {
        return Ok(());
    };
    let Some(kind) = kind(name) else {
        return Ok(());
    };
    let unused = cmd.get_arguments().find(|flag| {
        let id = flag.get_id().as_str();
        flag.is_global_set()
            && matches.value_source(id) == Some(ValueSource::CommandLine)
            && uses(kind, id) == Some(false)
    });
    if let Some(flag) = unused {
        let long = flag.get_long().unwrap_or(flag.get_id().as_str()).to_owned();
        let message = format!(
            "--{long} does not go with `{name}` (`cutover {name} --help` lists the flags it takes)"
        );
        return Err(cmd.error(clap::error::ErrorKind::ArgumentConflict, message));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every verb and every global flag is in the tables above, so a new one is placed
    /// knowingly.
    #[test]
    fn every_verb_and_global_flag_is_classified() {
        let cmd = command();
        cmd.clone().debug_assert();
        for verb in cmd.get_subcommands() {
            let kind = kind(verb.get_name())
                .unwrap_or_else(|| panic!("verb {} is not in flags::kind", verb.get_name()));
            for flag in Cli::command().get_arguments().filter(|a| a.is_global_set()) {
                assert!(
                    uses(kind, flag.get_id().as_str()).is_some(),
                    "global flag {} is not in flags::uses",
                    flag.get_id()
                );
            }
        }
    }

    /// clap merges the values of a global flag and a verb's argument of the same id (a
    /// positional NAME would become `--etcd-name`, and be refused as a flag the verb does
    /// not take): no verb's argument shares an id with a global flag.
    #[test]
    fn no_verb_argument_shares_an_id_with_a_global_flag() {
        let cmd = Cli::command();
        let globals: Vec<&str> = cmd
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| a.get_id().as_str())
            .collect();
        let mut pending: Vec<&clap::Command> = cmd.get_subcommands().collect();
        while let Some(verb) = pending.pop() {
            for arg in verb.get_arguments() {
                let id = arg.get_id().as_str();
                assert!(
                    !globals.contains(&id),
                    "{}: argument id {id}",
                    verb.get_name()
                );
            }
            pending.extend(verb.get_subcommands());
        }
    }

    fn help(verb: &[&str]) -> String {
        let mut cmd = command();
        cmd.build();
        let mut sub = &mut cmd;
        for v in verb {
            sub = sub.find_subcommand_mut(v).unwrap();
        }
        sub.render_help().to_string()
    }

    #[test]
    fn a_verbs_help_lists_the_flags_it_uses() {
        let status = help(&["status"]);
        for flag in ["--json", "--socket", "--cluster", "--etcd ", "--remote "] {
            assert!(status.contains(flag), "{flag} missing in:\n{status}");
        }
        for flag in ["--dry-run", "--local", "--vote-ms", "--wait-ms"] {
            assert!(!status.contains(flag), "{flag} shown in:\n{status}");
        }
        let switch = help(&["switch"]);
        for flag in ["--dry-run", "--force", "--local", "--cluster", "--wait-ms"] {
            assert!(switch.contains(flag), "{flag} missing in:\n{switch}");
        }
        let metrics = help(&["metrics"]);
        for flag in ["--cluster", "--dry-run", "--etcd "] {
            assert!(!metrics.contains(flag), "{flag} shown in:\n{metrics}");
        }
        let generate = help(&["generate", "man"]);
        for flag in ["--json", "--socket", "--config", "--remote ", "--timeout"] {
            assert!(!generate.contains(flag), "{flag} shown in:\n{generate}");
        }
        assert!(generate.contains("--log-format"), "{generate}");
        let agent = help(&["agent"]);
        assert!(
            agent.contains("--config") && !agent.contains("--json"),
            "{agent}"
        );
    }

    #[test]
    fn a_flag_the_verb_does_not_use_is_refused() {
        let parse = |args: &str| parse_from(std::iter::once("cutover").chain(args.split(' ')));
        for (args, flag) in [
            ("status --dry-run", "--dry-run does not go with `status`"),
            ("--dry-run status", "--dry-run does not go with `status`"),
            (
                "map show services --cluster",
                "--cluster does not go with `map`",
            ),
            ("tls ca /tmp/x --json", "--json does not go with `tls`"),
            ("agent --socket /tmp/s", "--socket does not go with `agent`"),
            (
                "map show services --etcd-name x",
                "--etcd-name does not go with `map`",
            ),
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args}");
            assert!(e.to_string().contains(flag), "{args}: {e}");
        }
        let c = parse("switch web green --dry-run --json").unwrap();
        assert!(c.dry_run && c.json && !c.config_given);
        let c = parse("--config /etc/x.toml status").unwrap();
        assert!(c.config_given);
        // Verbs whose own arguments are called name, with no fleet flag given.
        for args in [
            "map show services",
            "tls issue /tmp/ca lb1",
            "tls ca /tmp/ca --name x",
        ] {
            let c = parse(args).unwrap_or_else(|e| panic!("{args}: {e}"));
            assert_eq!(c.etcd.name, None, "{args}");
        }
    }
}
