//! `cutover generate`: the man pages and shell completions, written from the command-line
//! definition itself so they never disagree with the binary. The packages ship this output.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use clap_complete::Shell;

/// Sections of `cutover(1)` that clap does not know about.
const MAN_EXTRA: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
The operation succeeded.
.TP
\fB1\fR
The operation was refused or failed; nothing changed.
.TP
\fB2\fR
The command line is wrong.
.TP
\fB3\fR
\fBstatus\fR: the agent answered and reports a fault.
.TP
\fB64\fR
The config is invalid (\fBcutover check\fR lists every problem).
.TP
\fB69\fR
The agent cannot be reached.
.TP
\fB70\fR
Internal error on the local machine.
.TP
\fB77\fR, \fB80\fR
With \fB\-\-remote\fR: the client's role does not allow the verb; a certificate was refused.
.PP
With \fB\-\-json\fR every failure is also a JSON object on stdout:
\fB{"status":"error","message":...,"data":{"exit":\fICODE\fB,"error":\fINAME\fB}}\fR.
.SH ENVIRONMENT
.TP
\fBCUTOVER_CONFIG\fR, \fBCUTOVER_SOCKET\fR, \fBCUTOVER_LOG_FORMAT\fR
Defaults of \fB\-\-config\fR, \fB\-\-socket\fR and \fB\-\-log\-format\fR.
.TP
\fBCUTOVER_LOG\fR
Log filter: \fBinfo\fR (default), \fBdebug\fR, \fBwarn\fR, or per module as in
\fBcutover::engine=debug\fR.
.TP
\fBJOURNAL_STREAM\fR
Set by systemd when stderr is the journal: text logs then carry no timestamps or colours, and
each line starts with its syslog priority.
.TP
\fBNOTIFY_SOCKET\fR, \fBWATCHDOG_USEC\fR
Set by systemd for \fBType=notify\fR: the agent reports readiness, reloads and shutdown, and
pings the watchdog from its engine loop.
.SH SIGNALS
.TP
\fBSIGHUP\fR
Read the config again; a config that does not load, render, validate and apply is refused and
the old one stays in force.
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop gracefully: stop accepting, answer what is queued, remove the socket.
.SH FILES
.TP
\fI/etc/cutover/cutover.toml\fR
The agent's config: \fBcutover.toml\fR(5).
.TP
\fI/usr/share/cutover/templates/\fR
The shipped templates; \fBtemplates.override_dir\fR overrides them by relative path.
.TP
\fI/var/lib/cutover/\fR
The routing state (the checkpoint \fIstate.json\fR and the changes since it, one line each, in
\fIstate.log\fR) and the journal of every change (\fIhistory.jsonl\fR).
.TP
\fI/run/cutover/cutover.sock\fR
The control socket.
.TP
\fI/etc/haproxy/maps/\fR
The managed route and service maps.
.SH METRICS
With \fB[metrics] listen = "127.0.0.1:9713"\fR the agent serves the OpenMetrics text format on
\fBhttp://127.0.0.1:9713/metrics\fR; \fBcutover metrics\fR prints the same over the control
socket. Families: \fBcutover_switches_total\fR, \fBcutover_rollbacks_total\fR,
\fBcutover_applies_total\fR, \fBcutover_apply_failures_total\fR,
\fBcutover_apply_duration_seconds\fR, \fBcutover_proxy_reloads_total\fR,
\fBcutover_config_reloads_total\fR, \fBcutover_drift_repairs_total\fR,
\fBcutover_live_colour\fR, \fBcutover_canary_percent\fR, \fBcutover_generation\fR, \fBcutover_proxy_up\fR,
\fBcutover_peers\fR, \fBcutover_peers_in_agreement\fR, \fBcutover_build_info\fR.
.SH "SEE ALSO"
\fBcutover.toml\fR(5), \fBhaproxy\fR(1), \fBnginx\fR(8), \fBsystemd.service\fR(5), \fBjournalctl\fR(1)
"#;

/// What `cutover generate` writes.
#[derive(Debug, Subcommand)]
pub enum What {
    /// The man page cutover(1) on stdout, or every page (one per subcommand, and the
    /// config's cutover.toml(5)) into --dir.
    Man {
        /// Write cutover.1, cutover-VERB.1 and cutover.toml.5 into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The completion script for SHELL on stdout.
    #[allow(missing_docs)] // clap would print a doc comment as the argument's help
    Completions { shell: Shell },
}

/// Runs `cutover generate`: needs no config.
pub fn run(what: &What) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match what {
        What::Man { dir: None } => man_page(&mut out)?,
        What::Man { dir: Some(dir) } => {
            man_pages(dir)?;
        }
        What::Completions { shell } => completions(*shell, &mut out)?,
    }
    out.flush()
}

/// The command as the man pages and completions see it.
fn command() -> clap::Command {
    let mut cmd = super::flags::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Writes `cutover(1)`.
pub fn man_page(out: &mut dyn Write) -> io::Result<()> {
    let man = clap_mangen::Man::new(command()).manual("cutover manual");
    man.render(out)?;
    out.write_all(MAN_EXTRA.as_bytes())
}

/// Writes `cutover.1`, a page per subcommand (`cutover-switch.1`, `cutover-map-show.1`,
/// ...) and the config's `cutover.toml.5` into `dir`; returns the files written.
pub fn man_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let main = dir.join("cutover.1");
    let mut file = std::fs::File::create(&main)?;
    man_page(&mut file)?;
    file.flush()?;
    written.push(main);
    let config = dir.join("cutover.toml.5");
    let mut file = std::fs::File::create(&config)?;
    super::manconfig::page(&mut file)?;
    file.flush()?;
    written.push(config);
    let mut pending: Vec<clap::Command> = command().get_subcommands().cloned().collect();
    while let Some(sub) = pending.pop() {
        if sub.is_hide_set() {
            continue;
        }
        pending.extend(sub.get_subcommands().cloned());
        let man = clap_mangen::Man::new(sub).manual("cutover manual");
        written.push(man.generate_to(dir)?);
    }
    written.sort();
    Ok(written)
}

/// Writes the completion script for `shell`, which completes service names too (from the
/// running agent, see [`super::complete`]).
pub fn completions(shell: Shell, out: &mut dyn Write) -> io::Result<()> {
    // Rendered into memory first: clap_complete panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    let mut cmd = super::flags::command();
    clap_complete::generate(shell, &mut cmd, "cutover", &mut script);
    let script = String::from_utf8(script).map_err(io::Error::other)?;
    out.write_all(super::complete::with_service_names(shell, &cmd, script).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_documents_verbs_and_exit_codes() {
        let mut out = Vec::new();
        man_page(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for needle in [
            ".TH cutover 1",
            "cutover\\-switch(1)",
            "cutover\\-metrics(1)",
            "\\-\\-log\\-format",
            ".SH \"EXIT STATUS\"",
            "/etc/cutover/cutover.toml",
        ] {
            assert!(text.contains(needle), "{needle} missing in:\n{text}");
        }
    }

    #[test]
    fn a_page_per_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let pages = man_pages(dir.path()).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for name in [
            "cutover.1",
            "cutover-agent.1",
            "cutover-switch.1",
            "cutover-map.1",
            "cutover-map-show.1",
            "cutover-generate-completions.1",
            "cutover.toml.5",
        ] {
            assert!(names.contains(&name.to_owned()), "{name} not in {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
    }

    #[test]
    fn completions_know_the_verbs() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            completions(shell, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            for verb in ["switch", "rollback", "metrics", "generate"] {
                assert!(text.contains(verb), "{shell}: {verb} missing");
            }
            assert!(
                text.contains("services 2>/dev/null"),
                "{shell}: no service names"
            );
        }
    }
}
