//! One attempt of a command hook: the program run in a process group of its own, with the
//! event's JSON on its standard input and `CUTOVER_*` variables as its whole environment
//! (besides a fixed `PATH`), killed with its group once the hook's timeout passes. Its
//! output is read to the end but only the first [`MAX_OUTPUT`] bytes are kept, for the log.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// Bytes of a command's output (standard output and error together) kept for the log.
pub const MAX_OUTPUT: usize = 2_048;

/// `PATH` of a command hook.
pub const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The program could not be started.
    #[error("starting {0}: {1}")]
    Spawn(String, std::io::Error),
    /// It ran longer than the hook's timeout and was killed.
    #[error("{0} still running after {1:?}: killed")]
    Timeout(String, Duration),
    /// It exited with a failure.
    #[error("{0} {1}: {2}")]
    Failed(String, std::process::ExitStatus, String),
    /// Waiting for it failed.
    #[error("waiting for {0}: {1}")]
    Wait(String, std::io::Error),
}

/// Runs `argv` with `input` on standard input and `env`, for at most `timeout`.
pub async fn run(
    argv: &[String],
    env: &[(&str, String)],
    input: &[u8],
    timeout: Duration,
) -> Result<(), RunError> {
    let program = argv[0].clone();
    let mut child = Command::new(&program)
        .args(&argv[1..])
        .env_clear()
        .env("PATH", HOOK_PATH)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RunError::Spawn(program.clone(), e))?;
    let group = child.id().map(|id| Pid::from_raw(id as i32));
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let work = async {
        let feed = async {
            if let Some(mut s) = stdin.take() {
                // A program that does not read its input is not an error.
                let _ = s.write_all(input).await;
            }
        };
        let (_, out, err, status) =
            tokio::join!(feed, bounded(stdout), bounded(stderr), child.wait());
        (out, err, status)
    };
    let outcome = tokio::time::timeout(timeout, work).await;
    let (out, err, status) = match outcome {
        Ok(done) => done,
        Err(_) => {
            if let Some(g) = group {
                let _ = killpg(g, Signal::SIGKILL);
            }
            let _ = child.wait().await;
            return Err(RunError::Timeout(program, timeout));
        }
    };
    let status = status.map_err(|e| RunError::Wait(program.clone(), e))?;
    if status.success() {
        return Ok(());
    }
    let mut output = err;
    output.extend_from_slice(&out);
    output.truncate(MAX_OUTPUT);
    Err(RunError::Failed(
        program,
        status,
        String::from_utf8_lossy(&output).trim().to_owned(),
    ))
}

/// Everything `reader` gives until its end, keeping the first [`MAX_OUTPUT`] bytes.
async fn bounded(reader: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut reader) = reader else {
        return kept;
    };
    let mut buf = [0u8; 4096];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = MAX_OUTPUT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    kept
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn the_event_is_on_stdin_and_in_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "cat > {0}; echo \"$CUTOVER_EVENT $CUTOVER_SERVICE ${{HOME:-nohome}}\" >> {0}",
            out.display()
        );
        let env = [
            ("CUTOVER_EVENT", "switch".to_owned()),
            ("CUTOVER_SERVICE", "web".to_owned()),
        ];
        run(
            &sh(&script),
            &env,
            b"{\"event\":\"switch\"}\n",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "{\"event\":\"switch\"}\nswitch web nohome\n"
        );
    }

    #[tokio::test]
    async fn a_failure_says_its_status_and_bounded_output() {
        let e = run(
            &sh("yes error | head -c 100000 >&2; exit 3"),
            &[],
            b"",
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        match &e {
            RunError::Failed(_, status, output) => {
                assert_eq!(status.code(), Some(3));
                assert!(
                    output.len() <= MAX_OUTPUT && output.starts_with("error"),
                    "{e}"
                );
            }
            other => panic!("{other}"),
        }
        let e = run(
            &["/nonexistent/hook".to_owned()],
            &[],
            b"",
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, RunError::Spawn(..)), "{e}");
    }

    #[tokio::test]
    async fn a_hanging_command_and_its_children_are_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let started = Instant::now();
        let e = run(&sh(&script), &[], b"", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(e, RunError::Timeout(..)), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild got SIGKILL with its group: gone, or a zombie until it is reaped.
        let running = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| !r.trim_start().starts_with('Z'))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while running() {
            assert!(Instant::now() < deadline, "sleep {pid} survived its hook");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
