//! `Nginx`: a real Nginx (master and workers) in its own temporary directory, for
//! integration tests.
//!
//! Nginx runs as a child of the test process: `nginx -p <dir> -e <dir>/error.log -c
//! <dir>/nginx.conf -g 'daemon off; master_process on;'`. The master stays in the
//! foreground, keeps its PID across reloads (`SIGHUP` starts new workers under it), writes
//! its PID to `<dir>/nginx.pid` (configs must say `pid` there, see
//! [`NginxPaths::main_section`]), and is stopped by PID and reaped through
//! [`ProxyProcess`]. Configs must not set `daemon` or `master_process` (given with `-g`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cutover::proxy::nginx::procs;
use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::process::{instance_dir, write_config, ProxyProcess, STOP_GRACE};

/// How long [`Nginx::start`] waits for the pid file and a worker: 10 seconds.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Workers of test configs: 2.
pub const TEST_WORKERS: u32 = 2;
/// `worker_connections` of test configs: 512, well within the fd limit of test machines.
pub const TEST_WORKER_CONNECTIONS: u32 = 512;

/// Group of the workers of a test Nginx: without a `user` directive, a master started by
/// root runs them as `nobody:nogroup` (Debian); otherwise as the user who started it.
pub fn worker_group() -> Option<&'static str> {
    nix::unistd::geteuid().is_root().then_some("nogroup")
}

/// Files and addresses of one Nginx instance, all inside its temporary directory.
#[derive(Debug, Clone)]
pub struct NginxPaths {
    /// The temporary directory, also Nginx's prefix (`-p`) and temp path directory.
    pub dir: PathBuf,
    /// `nginx.conf`: written from the caller's text before start.
    pub config: PathBuf,
    /// `nginx.pid`: written by the master (`pid`).
    pub pid_file: PathBuf,
    /// `error.log`: the master's and workers' log (`-e` and `error_log`).
    pub error_log: PathBuf,
    /// `nginx.out`: stdout and stderr of the master.
    pub output: PathBuf,
    /// `status.sock`: where configs may put a status listener.
    pub status_socket: PathBuf,
    /// A free loopback address reserved for the main listener; configs bind it.
    pub frontend: SocketAddr,
}

impl NginxPaths {
    fn new(dir: &Path) -> NginxPaths {
        NginxPaths {
            dir: dir.to_owned(),
            config: dir.join("nginx.conf"),
            pid_file: dir.join("nginx.pid"),
            error_log: dir.join("error.log"),
            output: dir.join("nginx.out"),
            status_socket: dir.join("status.sock"),
            frontend: crate::ports::free_addr(),
        }
    }

    /// `<dir>/<name>`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The main-context lines every hand-written test config should start with:
    /// [`TEST_WORKERS`] workers, the pid file, the error log at `notice` (so reloads are
    /// logged), and an `events` block with [`TEST_WORKER_CONNECTIONS`].
    pub fn main_section(&self) -> String {
        format!(
            "worker_processes {TEST_WORKERS};\npid {};\nerror_log {} notice;\n\
             events {{ worker_connections {TEST_WORKER_CONNECTIONS}; }}\n",
            self.pid_file.display(),
            self.error_log.display()
        )
    }
}

/// A minimal config: the main listener on `paths.frontend` sends host `green.example` to
/// `green` and everything else to `blue`, through a map in `<dir>/routes.map`.
pub fn minimal_config(paths: &NginxPaths, blue: SocketAddr, green: SocketAddr) -> String {
    std::fs::write(paths.file("routes.map"), "green.example green;\n").expect("write routes.map");
    format!(
        "{main}\
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    map $host $colour {{ default blue; include {dir}/routes.map; }}
    upstream blue {{ server {blue}; }}
    upstream green {{ server {green}; }}
    server {{
        listen {frontend};
        location / {{ proxy_pass http://$colour; }}
    }}
}}
",
        main = paths.main_section(),
        dir = paths.dir.display(),
        frontend = paths.frontend,
    )
}

/// A running Nginx master with its workers. Stops on drop.
pub struct Nginx {
    binary: PathBuf,
    paths: NginxPaths,
    process: ProxyProcess,
    // Last field: dropped after the process is stopped.
    _dir: TempDir,
}

impl Nginx {
    /// Starts `binary` with the config returned by `config` (given the instance paths) and
    /// waits up to [`STARTUP_TIMEOUT`] for the pid file to name the master and a worker to
    /// run. Panics with Nginx's output when it does not come up.
    pub fn start(binary: &Path, config: impl FnOnce(&NginxPaths) -> String) -> Nginx {
        Nginx::try_start(binary, config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Nginx::start`] with [`minimal_config`].
    pub fn start_minimal(binary: &Path, blue: SocketAddr, green: SocketAddr) -> Nginx {
        Nginx::start(binary, |paths| minimal_config(paths, blue, green))
    }

    /// Like [`Nginx::start`], but returns a description (with Nginx's output) instead of
    /// panicking.
    pub fn try_start(
        binary: &Path,
        config: impl FnOnce(&NginxPaths) -> String,
    ) -> Result<Nginx, String> {
        let dir = instance_dir("nginx")?;
        let paths = NginxPaths::new(dir.path());
        write_config("nginx", &paths.config, &config(&paths))?;
        let mut command = Command::new(binary);
        command
            .arg("-p")
            .arg(&paths.dir)
            .arg("-e")
            .arg(&paths.error_log)
            .arg("-c")
            .arg(&paths.config)
            .args(["-g", "daemon off; master_process on;"])
            .current_dir(&paths.dir);
        let process = ProxyProcess::spawn("nginx", command, &paths.output)
            .map_err(|e| format!("nginx: spawn {}: {e}", binary.display()))?;
        let nginx = Nginx {
            binary: binary.to_owned(),
            paths,
            process,
            _dir: dir,
        };
        nginx.wait_ready()?;
        Ok(nginx)
    }

    fn wait_ready(&self) -> Result<(), String> {
        let what = format!("write {} and start a worker", self.paths.pid_file.display());
        self.process
            .wait_ready(STARTUP_TIMEOUT, Duration::from_millis(10), &what, || {
                procs::master(&self.paths.pid_file).ok() == Some(self.master_pid())
                    && !self.workers().is_empty()
            })
            .map_err(|e| format!("{e}\nerror log:\n{}", self.error_log()))
    }

    /// The instance's files and frontend address.
    pub fn paths(&self) -> &NginxPaths {
        &self.paths
    }

    /// The address of the main listener (`paths().frontend`).
    pub fn frontend(&self) -> SocketAddr {
        self.paths.frontend
    }

    /// The Nginx binary that was started.
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

    /// Workers that accept connections (not those of a previous config finishing).
    pub fn workers(&self) -> Vec<u32> {
        procs::snapshot(self.master_pid())
            .map(|c| c.workers.into_iter().collect())
            .unwrap_or_default()
    }

    /// Sends a signal to the master, e.g. `SIGHUP` for a reload nobody asked cutover for.
    pub fn signal(&self, signal: Signal) {
        self.process
            .signal(signal)
            .unwrap_or_else(|e| panic!("nginx: signal {signal} to {}: {e}", self.master_pid()));
    }

    /// Sends `SIGHUP` and waits (up to `within`) until the accepting workers are all new;
    /// returns whether they were. A reload the master refuses keeps the old ones.
    pub fn reload(&self, within: Duration) -> bool {
        let before = self.workers();
        self.signal(Signal::SIGHUP);
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let now = self.workers();
            if !now.is_empty() && now.iter().all(|p| !before.contains(p)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    /// Everything the master printed on stdout/stderr so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(&self.paths.error_log).unwrap_or_default()
    }

    /// Reloads the master has logged receiving (`SIGHUP`, whether or not it took).
    pub fn reloads_logged(&self) -> usize {
        self.error_log()
            .lines()
            .filter(|l| l.contains("signal 1 (SIGHUP) received"))
            .count()
    }

    /// Stops Nginx (SIGTERM, SIGKILL after [`STOP_GRACE`]) and reaps it. Dropping does the
    /// same; this form reports an abnormal exit.
    pub fn stop(mut self) {
        let status = self
            .process
            .stop(STOP_GRACE)
            .unwrap_or_else(|e| panic!("nginx: wait for pid {}: {e}", self.master_pid()));
        if !status.success() {
            eprintln!(
                "nginx exited with {status}; output:\n{}",
                self.process.log()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backend;

    fn get(addr: SocketAddr, host: &str) -> (u16, String) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(crate::get(addr, host))
            .unwrap()
    }

    #[test]
    fn starts_routes_reloads_and_stops() {
        let Some(binary) = crate::require_proxy("nginx") else {
            return;
        };
        let (blue, green) = (Backend::start("blue"), Backend::start("green"));
        let nginx = Nginx::start_minimal(&binary, blue.addr(), green.addr());
        assert_eq!(get(nginx.frontend(), "x.example"), (200, "blue".into()));
        assert_eq!(
            get(nginx.frontend(), "green.example"),
            (200, "green".into())
        );
        let master = nginx.master_pid();
        std::fs::write(nginx.paths().file("routes.map"), "x.example green;\n").unwrap();
        assert!(
            nginx.reload(Duration::from_secs(5)),
            "{}",
            nginx.error_log()
        );
        assert_eq!(nginx.master_pid(), master);
        assert!(crate::wait_until(
            Duration::from_secs(5),
            Duration::from_millis(10),
            || get(nginx.frontend(), "x.example").1 == "green"
        ));
        assert_eq!(nginx.reloads_logged(), 1);
        nginx.stop();
    }
}
