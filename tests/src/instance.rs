//! [`Instance`]: the lifecycle of one real proxy in a test, the same for HAProxy and Nginx.
//! It makes a temporary directory, writes the config the caller returns, spawns the master
//! as a [`ProxyProcess`] (a child of the test process, in its own process group), waits
//! until it is ready or fails with its logs, and stops it by PID (on [`Instance::stop`] or
//! on drop) before the directory goes.
//!
//! What differs between the proxies is their [`ProxyKind`]: the files of an instance, the
//! command line, what "ready" means, and which exit statuses are a clean stop. The
//! harnesses [`crate::Haproxy`] and [`crate::Nginx`] are instances of their kind, with the
//! helpers only one proxy has.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::process::{instance_dir, write_config, ProxyProcess, STOP_GRACE};

/// What one proxy needs to be run by an [`Instance`].
pub trait ProxyKind {
    /// The proxy's name (`haproxy`, `nginx`): names its directory and labels messages.
    const NAME: &'static str;
    /// How long a start waits for the proxy to be ready.
    const STARTUP_TIMEOUT: Duration;
    /// How often readiness is checked during a start.
    const READY_EVERY: Duration;
    /// The files and addresses of one instance, all inside its temporary directory.
    type Paths;

    /// The paths of an instance in `dir` (a free frontend address is reserved here).
    fn paths(dir: &Path) -> Self::Paths;
    /// The instance directory.
    fn dir(paths: &Self::Paths) -> &Path;
    /// The main config file, written before the start.
    fn config(paths: &Self::Paths) -> &Path;
    /// The file collecting the master's stdout and stderr.
    fn output(paths: &Self::Paths) -> &Path;
    /// The main frontend address.
    fn frontend(paths: &Self::Paths) -> SocketAddr;
    /// The command line that runs the master in the foreground.
    fn command(binary: &Path, paths: &Self::Paths) -> Command;
    /// What readiness waits for, for the failure message.
    fn awaited(paths: &Self::Paths) -> String;
    /// True once the proxy with master `master_pid` serves.
    fn ready(paths: &Self::Paths, master_pid: u32) -> bool;
    /// A last check once ready (HAProxy: the pid file names the master).
    fn check_started(_paths: &Self::Paths, _master_pid: u32) -> Result<(), String> {
        Ok(())
    }
    /// The proxy's own log beside its output, appended to a failed start's message
    /// (Nginx: its error log); empty by default.
    fn more_logs(_paths: &Self::Paths) -> String {
        String::new()
    }
    /// Whether the master's exit status after SIGTERM is a clean stop.
    fn clean_exit(status: ExitStatus) -> bool {
        status.success()
    }
}

/// A running proxy of kind `K`, master and workers. Stops on drop.
pub struct Instance<K: ProxyKind> {
    binary: PathBuf,
    paths: K::Paths,
    process: ProxyProcess,
    // Last field: dropped after the process is stopped.
    _dir: TempDir,
}

impl<K: ProxyKind> Instance<K> {
    /// Starts `binary` with the config returned by `config` (given the instance paths), and
    /// waits up to [`ProxyKind::STARTUP_TIMEOUT`] until it is ready. Panics with the
    /// proxy's output when it does not come up.
    pub fn start(binary: &Path, config: impl FnOnce(&K::Paths) -> String) -> Self {
        Self::try_start(binary, config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Instance::start`], but returns a description (with the proxy's output)
    /// instead of panicking, e.g. for tests of configs the proxy must refuse.
    pub fn try_start(
        binary: &Path,
        config: impl FnOnce(&K::Paths) -> String,
    ) -> Result<Self, String> {
        let dir = instance_dir(K::NAME)?;
        let paths = K::paths(dir.path());
        write_config(K::NAME, K::config(&paths), &config(&paths))?;
        let process = spawn::<K>(binary, &paths)?;
        let instance = Instance {
            binary: binary.to_owned(),
            paths,
            process,
            _dir: dir,
        };
        instance.wait_ready()?;
        Ok(instance)
    }

    fn wait_ready(&self) -> Result<(), String> {
        let what = K::awaited(&self.paths);
        let master = self.master_pid();
        self.process
            .wait_ready(K::STARTUP_TIMEOUT, K::READY_EVERY, &what, || {
                K::ready(&self.paths, master)
            })
            .map_err(|e| format!("{e}{}", K::more_logs(&self.paths)))?;
        K::check_started(&self.paths, master)
    }

    /// Kills the proxy at once, master and workers (SIGKILL to the group, as in a crash),
    /// and reaps it. The files stay; [`Instance::restart`] starts it again from them.
    pub fn kill(&mut self) {
        self.process
            .kill()
            .unwrap_or_else(|e| panic!("{}: kill {}: {e}", K::NAME, self.master_pid()));
    }

    /// Starts the proxy again in the same directory from the files as they are now
    /// (killing the running one first, if any), and waits until it is ready. The new
    /// master has a new PID.
    pub fn restart(&mut self) {
        self.kill();
        self.process = spawn::<K>(&self.binary, &self.paths).unwrap_or_else(|e| panic!("{e}"));
        self.wait_ready().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) master and workers: a frozen proxy accepts
    /// connections into its backlog and answers nothing.
    pub fn freeze(&self, frozen: bool) {
        let signal = if frozen {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        self.process
            .signal_group(signal)
            .unwrap_or_else(|e| panic!("{}: {signal} to the group: {e}", K::NAME));
    }

    /// The instance's files and frontend address.
    pub fn paths(&self) -> &K::Paths {
        &self.paths
    }

    /// The address of the main frontend.
    pub fn frontend(&self) -> SocketAddr {
        K::frontend(&self.paths)
    }

    /// The binary that was started.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// PID of the master process (constant across reloads).
    pub fn master_pid(&self) -> u32 {
        self.process.pid()
    }

    /// True while the master runs.
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// Sends a signal to the master, e.g. a reload nobody asked cutover for (`SIGUSR2` for
    /// HAProxy, `SIGHUP` for Nginx).
    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal).unwrap_or_else(|e| {
            panic!("{}: signal {signal} to {}: {e}", K::NAME, self.master_pid())
        });
    }

    /// Everything the master printed on stdout/stderr so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Stops the proxy (SIGTERM, SIGKILL after [`STOP_GRACE`]) and reaps it. Dropping does
    /// the same; this form reports an abnormal exit, with the proxy's output.
    pub fn stop(mut self) {
        let status = self
            .process
            .stop(STOP_GRACE)
            .unwrap_or_else(|e| panic!("{}: wait for pid {}: {e}", K::NAME, self.master_pid()));
        if !K::clean_exit(status) {
            eprintln!(
                "{} exited with {status}; output:\n{}",
                K::NAME,
                self.process.log()
            );
        }
    }
}

/// Spawns the master of an instance at `paths`.
fn spawn<K: ProxyKind>(binary: &Path, paths: &K::Paths) -> Result<ProxyProcess, String> {
    let mut command = K::command(binary, paths);
    command.current_dir(K::dir(paths));
    ProxyProcess::spawn(K::NAME, command, K::output(paths))
        .map_err(|e| format!("{}: spawn {}: {e}", K::NAME, binary.display()))
}
