//! Running a helper program of the proxy (its config checker): an argument vector, never a
//! shell, with a time limit.

use std::path::Path;
use std::time::{Duration, Instant};

use super::ProxyError;

/// What a checker or other helper program printed, and how it ended.
#[derive(Debug)]
pub struct ProgramOutput {
    /// How the program exited.
    pub status: std::process::ExitStatus,
    /// Its standard output, decoded as UTF-8 (invalid bytes replaced).
    pub stdout: String,
    /// Its standard error, decoded as UTF-8 (invalid bytes replaced).
    pub stderr: String,
    /// Wall-clock time from start to exit.
    pub elapsed: Duration,
}

/// Runs `program` with `args` (an argument vector, never through a shell), stdin closed,
/// and collects its output. It is killed if it runs longer than `timeout`; that, like a
/// failure to start it, is an error that names the program.
pub async fn run_program(
    program: &Path,
    args: &[&std::ffi::OsStr],
    timeout: Duration,
) -> Result<ProgramOutput, ProxyError> {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let output = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| ProxyError::CheckTimedOut {
            program: program.to_owned(),
            timeout,
        })?
        .map_err(|source| ProxyError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    Ok(ProgramOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    })
}
