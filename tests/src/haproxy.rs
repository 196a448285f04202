//! `Haproxy`: a real HAProxy in master-worker mode, in its own temporary directory, for
//! integration tests.
//!
//! HAProxy runs as a child of the test process (`haproxy -W -S <dir>/master.sock -f
//! <dir>/haproxy.cfg -p <dir>/haproxy.pid`, no `-D`): the master stays in the foreground,
//! keeps its PID across reloads (it re-executes itself), and is stopped by PID and reaped
//! through [`ProxyProcess`].

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cutover::proxy::haproxy::admin::AdminClient;
use cutover::proxy::haproxy::master::MasterClient;
use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::process::{instance_dir, write_config, ProxyProcess, STOP_GRACE};

/// How long [`Haproxy::start`] waits for both sockets to answer: 10 seconds.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// `maxconn` of [`HaproxyPaths::global_section`]: 256, well within the fd limit of test
/// machines (each connection costs HAProxy two descriptors).
pub const TEST_MAXCONN: u32 = 256;

/// Backend of the blue color in [`minimal_config`].
pub const BLUE_BACKEND: &str = "be_blue";
/// Backend of the green color in [`minimal_config`].
pub const GREEN_BACKEND: &str = "be_green";
/// The one server name in each backend of [`minimal_config`].
pub const SERVER: &str = "s1";

/// Files and addresses of one HAProxy instance, all inside its temporary directory.
#[derive(Debug, Clone)]
pub struct HaproxyPaths {
    /// The temporary directory (deleted when the [`Haproxy`] is dropped).
    pub dir: PathBuf,
    /// `haproxy.cfg`: written from the caller's text before start.
    pub config: PathBuf,
    /// `admin.sock`: the admin stats socket the config must declare (see
    /// [`HaproxyPaths::global_section`]).
    pub admin_socket: PathBuf,
    /// `master.sock`: the master CLI (`-S`).
    pub master_socket: PathBuf,
    /// `haproxy.pid`: written by HAProxy (`-p`).
    pub pid_file: PathBuf,
    /// `haproxy.log`: stdout and stderr of HAProxy.
    pub log_file: PathBuf,
    /// A free loopback address reserved for the main frontend; configs bind it.
    pub frontend: SocketAddr,
}

impl HaproxyPaths {
    fn new(dir: &Path) -> HaproxyPaths {
        HaproxyPaths {
            dir: dir.to_owned(),
            config: dir.join("haproxy.cfg"),
            admin_socket: dir.join("admin.sock"),
            master_socket: dir.join("master.sock"),
            pid_file: dir.join("haproxy.pid"),
            log_file: dir.join("haproxy.log"),
            frontend: crate::ports::free_addr(),
        }
    }

    /// A `global` section every test config should start with: `maxconn` [`TEST_MAXCONN`]
    /// and the admin socket (`stats socket <dir>/admin.sock mode 600 level admin`).
    pub fn global_section(&self) -> String {
        format!(
            "global\n    maxconn {TEST_MAXCONN}\n    stats socket {} mode 600 level admin\n    stats timeout 30s\n",
            self.admin_socket.display()
        )
    }

    /// `<dir>/<name>`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes a map file `<dir>/<name>` (one `key value` per line) and returns its path.
    pub fn write_map(&self, name: &str, entries: &[(&str, &str)]) -> PathBuf {
        let path = self.file(name);
        let text: String = entries.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

/// The two maps of [`minimal_config`], as named inside the instance directory.
pub const ROUTES_MAP: &str = "routes.map";
/// Second map of [`minimal_config`]: host -> tag, returned in the `X-Tag` response header.
pub const TAGS_MAP: &str = "tags.map";

/// A minimal config: frontend on `paths.frontend`, backends [`BLUE_BACKEND`] (server
/// [`SERVER`] at `blue`) and [`GREEN_BACKEND`] (server [`SERVER`] at `green`), and two maps
/// written next to it: [`ROUTES_MAP`] (host -> backend; unknown hosts go to blue; starts
/// with `blue.example` and `green.example`) and [`TAGS_MAP`] (host -> tag, sent back in
/// `X-Tag`, default `none`; starts empty).
pub fn minimal_config(paths: &HaproxyPaths, blue: SocketAddr, green: SocketAddr) -> String {
    let routes = paths.write_map(
        ROUTES_MAP,
        &[
            ("blue.example", BLUE_BACKEND),
            ("green.example", GREEN_BACKEND),
        ],
    );
    let tags = paths.write_map(TAGS_MAP, &[]);
    format!(
        "{global}\
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout http-keep-alive 10s

frontend fe
    bind {frontend}
    http-request set-var(txn.host) req.hdr(host),field(1,:),lower
    use_backend %[var(txn.host),map({routes},{BLUE_BACKEND})]
    http-response set-header X-Tag %[var(txn.host),map({tags},none)]

backend {BLUE_BACKEND}
    server {SERVER} {blue}

backend {GREEN_BACKEND}
    server {SERVER} {green}
",
        global = paths.global_section(),
        frontend = paths.frontend,
        routes = routes.display(),
        tags = tags.display(),
    )
}

/// A running HAProxy master with its workers. Stops on drop.
pub struct Haproxy {
    binary: PathBuf,
    paths: HaproxyPaths,
    process: ProxyProcess,
    // Last field: dropped after the process is stopped.
    _dir: TempDir,
}

impl Haproxy {
    /// Starts `binary` with the config returned by `config` (given the instance paths), and
    /// waits up to [`STARTUP_TIMEOUT`] until the admin socket and the master CLI both
    /// answer. Panics with HAProxy's output when it does not come up.
    pub fn start(binary: &Path, config: impl FnOnce(&HaproxyPaths) -> String) -> Haproxy {
        Haproxy::try_start(binary, config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Haproxy::start`] with [`minimal_config`].
    pub fn start_minimal(binary: &Path, blue: SocketAddr, green: SocketAddr) -> Haproxy {
        Haproxy::start(binary, |paths| minimal_config(paths, blue, green))
    }

    /// Like [`Haproxy::start`], but returns a description (with HAProxy's output) instead of
    /// panicking, e.g. for tests of configs HAProxy must refuse.
    pub fn try_start(
        binary: &Path,
        config: impl FnOnce(&HaproxyPaths) -> String,
    ) -> Result<Haproxy, String> {
        let dir = instance_dir("haproxy")?;
        let paths = HaproxyPaths::new(dir.path());
        write_config("haproxy", &paths.config, &config(&paths))?;
        let process = spawn(binary, &paths)?;
        let haproxy = Haproxy {
            binary: binary.to_owned(),
            paths,
            process,
            _dir: dir,
        };
        haproxy.wait_ready()?;
        Ok(haproxy)
    }

    /// Kills HAProxy at once, master and workers (SIGKILL to the group, as in a crash), and
    /// reaps it. The files stay; [`Haproxy::restart`] starts it again from them.
    pub fn kill(&mut self) {
        self.process
            .kill()
            .unwrap_or_else(|e| panic!("haproxy: kill {}: {e}", self.master_pid()));
    }

    /// Starts HAProxy again in the same directory from the files as they are now (killing
    /// the running one first, if any), and waits until both sockets answer. The new master
    /// has a new PID.
    pub fn restart(&mut self) {
        self.kill();
        self.process = spawn(&self.binary, &self.paths).unwrap_or_else(|e| panic!("{e}"));
        self.wait_ready().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) master and workers: a frozen HAProxy accepts
    /// connections into its backlog and answers nothing.
    pub fn freeze(&self, frozen: bool) {
        let signal = if frozen {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        self.process
            .signal_group(signal)
            .unwrap_or_else(|e| panic!("haproxy: {signal} to the group: {e}"));
    }

    fn wait_ready(&self) -> Result<(), String> {
        let what = format!(
            "answer on {} and {}",
            self.paths.admin_socket.display(),
            self.paths.master_socket.display()
        );
        self.process
            .wait_ready(STARTUP_TIMEOUT, Duration::from_millis(20), &what, || {
                self.sockets_answer()
            })?;
        let pid_file = std::fs::read_to_string(&self.paths.pid_file).unwrap_or_default();
        if pid_file.trim() != self.master_pid().to_string() {
            return Err(format!(
                "haproxy pid file says {:?}, the master is {}",
                pid_file.trim(),
                self.master_pid()
            ));
        }
        Ok(())
    }

    /// True when the admin socket answers `show info` and the master lists a worker.
    fn sockets_answer(&self) -> bool {
        let admin = unix_command(
            &self.paths.admin_socket,
            "show info",
            Duration::from_secs(1),
        );
        let master = unix_command(
            &self.paths.master_socket,
            "show proc",
            Duration::from_secs(1),
        );
        matches!((admin, master), (Ok(a), Ok(m)) if a.contains("Pid:") && m.contains("worker"))
    }

    /// The instance's files and frontend address.
    pub fn paths(&self) -> &HaproxyPaths {
        &self.paths
    }

    /// The address of the main frontend (`paths().frontend`).
    pub fn frontend(&self) -> SocketAddr {
        self.paths.frontend
    }

    /// The HAProxy binary that was started.
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

    /// Sends a signal to the master, e.g. `SIGUSR2` for a reload nobody asked cutover for.
    pub fn signal(&self, signal: Signal) {
        self.process
            .signal(signal)
            .unwrap_or_else(|e| panic!("haproxy: signal {signal} to {}: {e}", self.master_pid()));
    }

    /// Everything HAProxy printed so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Replaces the config file (read by the next reload); HAProxy is not told.
    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.paths.config, text)
            .unwrap_or_else(|e| panic!("write {}: {e}", self.paths.config.display()));
    }

    /// The current config text.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.paths.config).unwrap_or_default()
    }

    /// A cutover admin-socket client for this instance.
    pub fn admin(&self) -> AdminClient {
        AdminClient::new(&self.paths.admin_socket)
    }

    /// A cutover master-CLI client for this instance.
    pub fn master(&self) -> MasterClient {
        MasterClient::new(&self.paths.master_socket)
    }

    /// One admin-socket command through a plain blocking socket (independent of the client
    /// under test); panics on I/O errors.
    pub fn admin_command(&self, command: &str) -> String {
        unix_command(&self.paths.admin_socket, command, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("admin socket `{command}`: {e}"))
    }

    /// The entries HAProxy serves from the map loaded from `path`, read with a plain
    /// `show map` on the admin socket (independent of the agent); `Err` with the reason
    /// when the socket does not answer or HAProxy refuses.
    pub fn runtime_map(&self, path: &Path) -> Result<BTreeMap<String, String>, String> {
        let reply = unix_command(
            &self.paths.admin_socket,
            &format!("show map {}", path.display()),
            Duration::from_secs(5),
        )
        .map_err(|e| e.to_string())?;
        let entries =
            cutover::proxy::haproxy::reply::parse_map_entries(&reply).map_err(|e| e.to_string())?;
        let mut map = BTreeMap::new();
        for (k, v) in entries {
            map.entry(k).or_insert(v);
        }
        Ok(map)
    }

    /// One master-CLI command through a plain blocking socket; panics on I/O errors.
    pub fn master_command(&self, command: &str) -> String {
        unix_command(&self.paths.master_socket, command, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("master socket `{command}`: {e}"))
    }

    /// Stops HAProxy (SIGTERM, SIGKILL after [`STOP_GRACE`]) and reaps it. Dropping does the
    /// same; this form reports an abnormal exit.
    pub fn stop(mut self) {
        let status = self
            .process
            .stop(STOP_GRACE)
            .unwrap_or_else(|e| panic!("haproxy: wait for pid {}: {e}", self.master_pid()));
        // HAProxy's master exits 0 on SIGTERM, or 128+15 once its workers were terminated.
        if !status.success() && status.code() != Some(143) {
            eprintln!(
                "haproxy exited with {status}; output:\n{}",
                self.process.log()
            );
        }
    }
}

/// `haproxy -W -S <master.sock> -f <haproxy.cfg> -p <haproxy.pid>` in the instance directory.
fn spawn(binary: &Path, paths: &HaproxyPaths) -> Result<ProxyProcess, String> {
    let mut command = Command::new(binary);
    command
        .arg("-W")
        .arg("-S")
        .arg(&paths.master_socket)
        .arg("-f")
        .arg(&paths.config)
        .arg("-p")
        .arg(&paths.pid_file)
        .current_dir(&paths.dir);
    ProxyProcess::spawn("haproxy", command, &paths.log_file)
        .map_err(|e| format!("haproxy: spawn {}: {e}", binary.display()))
}

/// Sends `command` on a unix socket (write, half-close, read to EOF), blocking, each step
/// bounded by `timeout`.
pub fn unix_command(socket: &Path, command: &str, timeout: Duration) -> io::Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(format!("{command}\n").as_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}
