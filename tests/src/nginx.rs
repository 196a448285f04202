//! `Nginx`: a real Nginx (master and workers) in its own temporary directory, for
//! integration tests.
//!
//! Nginx runs as a child of the test process: `nginx -p <dir> -e <dir>/error.log -c
//! <dir>/nginx.conf -g 'daemon off; master_process on;'`. The master stays in the
//! foreground, keeps its PID across reloads (`SIGHUP` starts new workers under it), writes
//! its PID to `<dir>/nginx.pid` (configs must say `pid` there, see
//! [`NginxPaths::main_section`]), and is started, waited for and stopped by PID like every
//! proxy, as an [`Instance`] of [`NginxKind`]. Configs must not set `daemon` or
//! `master_process` (given with `-g`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cutover::proxy::nginx::procs;
use nix::sys::signal::Signal;

use crate::instance::{Instance, ProxyKind};

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

/// Nginx as an [`Instance`] runs it.
pub struct NginxKind;

impl ProxyKind for NginxKind {
    const NAME: &'static str = "nginx";
    const STARTUP_TIMEOUT: Duration = STARTUP_TIMEOUT;
    const READY_EVERY: Duration = Duration::from_millis(10);
    type Paths = NginxPaths;

    fn paths(dir: &Path) -> NginxPaths {
        NginxPaths::new(dir)
    }

    fn dir(paths: &NginxPaths) -> &Path {
        &paths.dir
    }

    fn config(paths: &NginxPaths) -> &Path {
        &paths.config
    }

    fn output(paths: &NginxPaths) -> &Path {
        &paths.output
    }

    fn frontend(paths: &NginxPaths) -> SocketAddr {
        paths.frontend
    }

    /// `nginx -p <dir> -e <dir>/error.log -c <dir>/nginx.conf -g 'daemon off;
    /// master_process on;'`.
    fn command(binary: &Path, paths: &NginxPaths) -> Command {
        let mut command = Command::new(binary);
        command
            .arg("-p")
            .arg(&paths.dir)
            .arg("-e")
            .arg(&paths.error_log)
            .arg("-c")
            .arg(&paths.config)
            .args(["-g", "daemon off; master_process on;"]);
        command
    }

    fn awaited(paths: &NginxPaths) -> String {
        format!("write {} and start a worker", paths.pid_file.display())
    }

    /// True when the pid file names the master and a worker accepts.
    fn ready(paths: &NginxPaths, master_pid: u32) -> bool {
        procs::master(&paths.pid_file).ok() == Some(master_pid) && !workers(master_pid).is_empty()
    }

    fn more_logs(paths: &NginxPaths) -> String {
        format!("\nerror log:\n{}", error_log(paths))
    }
}

/// A running Nginx master with its workers. Stops on drop.
pub type Nginx = Instance<NginxKind>;

/// What only Nginx has: workers that a reload replaces, and its error log.
impl Instance<NginxKind> {
    /// [`Nginx::start`] with [`minimal_config`].
    pub fn start_minimal(binary: &Path, blue: SocketAddr, green: SocketAddr) -> Nginx {
        Nginx::start(binary, |paths| minimal_config(paths, blue, green))
    }

    /// Workers that accept connections (not those of a previous config finishing).
    pub fn workers(&self) -> Vec<u32> {
        workers(self.master_pid())
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

    /// The error log so far.
    pub fn error_log(&self) -> String {
        error_log(self.paths())
    }

    /// Reloads the master has logged receiving (`SIGHUP`, whether or not it took).
    pub fn reloads_logged(&self) -> usize {
        self.error_log()
            .lines()
            .filter(|l| l.contains("signal 1 (SIGHUP) received"))
            .count()
    }
}

/// The accepting workers of `master`.
fn workers(master: u32) -> Vec<u32> {
    procs::snapshot(master)
        .map(|c| c.workers.into_iter().collect())
        .unwrap_or_default()
}

fn error_log(paths: &NginxPaths) -> String {
    std::fs::read_to_string(&paths.error_log).unwrap_or_default()
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
