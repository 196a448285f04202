//! `ProxyProcess`: a proxy master run as a child of the test process, stopped by PID and
//! reaped; [`crate::instance::Instance`] runs every proxy (HAProxy in master-worker mode,
//! Nginx with `daemon off;`: both masters stay in the foreground) through it.
//!
//! The child gets its own process group, so that the proxy's workers can be killed with it
//! if the master has to be killed hard, and so that a Ctrl-C on the test run does not reach
//! it before the harness stops it.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How long a master gets to exit after SIGTERM before SIGKILL goes to its whole process
/// group: 5 seconds.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running proxy master process. Dropping it stops it (SIGTERM, then SIGKILL after
/// [`STOP_GRACE`]) and reaps it.
#[derive(Debug)]
pub struct ProxyProcess {
    name: String,
    child: Child,
    log_file: PathBuf,
    status: Option<ExitStatus>,
}

impl ProxyProcess {
    /// Spawns `command` with stdin closed and stdout and stderr appended to `log_file`, in a
    /// new process group. `name` labels messages (e.g. `"haproxy"`).
    pub fn spawn(name: &str, mut command: Command, log_file: &Path) -> io::Result<ProxyProcess> {
        let log = File::options().create(true).append(true).open(log_file)?;
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let child = command.spawn()?;
        Ok(ProxyProcess {
            name: name.to_owned(),
            child,
            log_file: log_file.to_owned(),
            status: None,
        })
    }

    /// PID of the master (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `None` while the master runs; once it has exited, how (e.g. `Exited(.., 1)`). The
    /// exited master is NOT reaped here, so its PID (and process group id) cannot be reused
    /// before [`ProxyProcess::stop`] has cleaned up the group.
    pub fn exited(&self) -> Option<String> {
        if let Some(status) = self.status {
            return Some(format!("{status}"));
        }
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(self.nix_pid()), flags) {
            Ok(WaitStatus::StillAlive) => None,
            Ok(status) => Some(format!("{status:?}")),
            Err(err) => Some(format!("waitid failed: {err}")),
        }
    }

    /// True while the master runs.
    pub fn is_running(&self) -> bool {
        self.exited().is_none()
    }

    /// Waits up to `timeout` until `ready` returns true (checked every `every`). Fails with
    /// `"<name> exited during startup (...)"` when the master exits first, or `"<name> did
    /// not <what> within ..."`, each followed by the process's output.
    pub fn wait_ready(
        &self,
        timeout: Duration,
        every: Duration,
        what: &str,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let mut exited = None;
        let became_ready = wait_until(timeout, every, || {
            exited = self.exited();
            exited.is_some() || ready()
        });
        if let Some(how) = exited {
            return Err(format!(
                "{} exited during startup ({how}); output:\n{}",
                self.name,
                self.log()
            ));
        }
        if !became_ready {
            return Err(format!(
                "{} did not {what} within {timeout:?}; output:\n{}",
                self.name,
                self.log()
            ));
        }
        Ok(())
    }

    /// Sends `signal` to the master only (e.g. SIGUSR2 for an HAProxy reload, SIGHUP for
    /// Nginx). Fails with ESRCH once it has been reaped.
    pub fn signal(&self, signal: Signal) -> nix::Result<()> {
        if self.status.is_some() {
            return Err(nix::errno::Errno::ESRCH);
        }
        signal::kill(self.nix_pid(), signal)
    }

    /// Sends `signal` to the whole process group: the master and its workers (e.g.
    /// SIGSTOP / SIGCONT to freeze and thaw a proxy).
    pub fn signal_group(&self, signal: Signal) -> nix::Result<()> {
        if self.status.is_some() {
            return Err(nix::errno::Errno::ESRCH);
        }
        signal::killpg(self.nix_pid(), signal)
    }

    /// Kills the whole process group at once (SIGKILL, no grace: a crash) and reaps the
    /// master. Idempotent.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let _ = signal::killpg(self.nix_pid(), Signal::SIGKILL);
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(status)
    }

    /// Everything the process wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// The file collecting stdout/stderr.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// Stops the master: SIGTERM, wait up to `grace`, then SIGKILL to its process group.
    /// Remaining members of the group (workers) are killed too, then the master is reaped
    /// and its exit status returned. Idempotent.
    pub fn stop(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        if self.is_running() {
            let _ = signal::kill(self.nix_pid(), Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while self.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.is_running() {
                eprintln!(
                    "{}: pid {} ignored SIGTERM for {grace:?}, killing its process group",
                    self.name,
                    self.pid()
                );
            }
        }
        // The master is alive or an unreaped zombie: the group id is still ours.
        let _ = signal::killpg(self.nix_pid(), Signal::SIGKILL);
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(status)
    }

    fn nix_pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Err(err) = self.stop(STOP_GRACE) {
            eprintln!("{}: stopping pid {} failed: {err}", self.name, self.pid());
        }
    }
}

/// A new instance directory `/tmp/cutover-<name>-XXXXXX` for proxy `name`.
pub fn instance_dir(name: &str) -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix(&format!("cutover-{name}-"))
        .tempdir()
        .map_err(|e| format!("{name}: create temp dir: {e}"))
}

/// Writes the config of proxy `name` before it starts.
pub fn write_config(name: &str, path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{name}: write {}: {e}", path.display()))
}

/// Checks `condition` every `every` (blocking the thread) until it returns true or `timeout`
/// passes; returns whether it became true. It is checked at least once.
pub fn wait_until(timeout: Duration, every: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn(script: &str, dir: &Path) -> ProxyProcess {
        let mut command = Command::new("sh");
        command.args(["-c", script]).current_dir(dir);
        ProxyProcess::spawn("sh", command, &dir.join("log")).unwrap()
    }

    #[test]
    fn stop_terminates_and_reaps() {
        let dir = tempfile::tempdir().unwrap();
        let mut process = spawn("echo started; exec sleep 30", dir.path());
        assert!(wait_until(
            Duration::from_secs(5),
            Duration::from_millis(10),
            || { process.log().contains("started") }
        ));
        assert!(process.is_running());
        let status = process.stop(STOP_GRACE).unwrap();
        assert!(!status.success());
        assert!(!process.is_running());
        assert_eq!(
            process.signal(Signal::SIGTERM),
            Err(nix::errno::Errno::ESRCH)
        );
    }

    #[test]
    fn stop_kills_a_group_that_ignores_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        // The shell ignores SIGTERM and has a child in its group, like a master and worker.
        let mut process = spawn("trap '' TERM; sleep 30 & echo $! > child; wait", dir.path());
        let child_file = dir.path().join("child");
        assert!(wait_until(
            Duration::from_secs(5),
            Duration::from_millis(10),
            || { std::fs::read_to_string(&child_file).is_ok_and(|s| s.ends_with('\n')) }
        ));
        let child: i32 = std::fs::read_to_string(&child_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let started = Instant::now();
        process.stop(Duration::from_millis(300)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        // The group member is gone too (killed; reaped by init or still a zombie of it).
        assert!(wait_until(
            Duration::from_secs(5),
            Duration::from_millis(10),
            || {
                std::fs::read_to_string(format!("/proc/{child}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true)
            }
        ));
    }
}
