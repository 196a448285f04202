//! `Haproxy`: a real HAProxy in master-worker mode, in its own temporary directory, for
//! integration tests.
//!
//! HAProxy runs as a child of the test process (`haproxy -W -S <dir>/master.sock -f
//! <dir>/haproxy.cfg -p <dir>/haproxy.pid`, no `-D`): the master stays in the foreground,
//! keeps its PID across reloads (it re-executes itself), and is started, waited for and
//! stopped by PID like every proxy, as an [`Instance`] of [`HaproxyKind`].

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use cutover::proxy::haproxy::admin::AdminClient;
use cutover::proxy::haproxy::master::MasterClient;

use crate::instance::{Instance, ProxyKind};

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

/// HAProxy as an [`Instance`] runs it.
pub struct HaproxyKind;

impl ProxyKind for HaproxyKind {
    const NAME: &'static str = "haproxy";
    const STARTUP_TIMEOUT: Duration = STARTUP_TIMEOUT;
    const READY_EVERY: Duration = Duration::from_millis(20);
    type Paths = HaproxyPaths;

    fn paths(dir: &Path) -> HaproxyPaths {
        HaproxyPaths::new(dir)
    }

    fn dir(paths: &HaproxyPaths) -> &Path {
        &paths.dir
    }

    fn config(paths: &HaproxyPaths) -> &Path {
        &paths.config
    }

    fn output(paths: &HaproxyPaths) -> &Path {
        &paths.log_file
    }

    fn frontend(paths: &HaproxyPaths) -> SocketAddr {
        paths.frontend
    }

    /// `haproxy -W -S <master.sock> -f <haproxy.cfg> -p <haproxy.pid>`.
    fn command(binary: &Path, paths: &HaproxyPaths) -> Command {
        let mut command = Command::new(binary);
        command
            .arg("-W")
            .arg("-S")
            .arg(&paths.master_socket)
            .arg("-f")
            .arg(&paths.config)
            .arg("-p")
            .arg(&paths.pid_file);
        command
    }

    fn awaited(paths: &HaproxyPaths) -> String {
        format!(
            "answer on {} and {}",
            paths.admin_socket.display(),
            paths.master_socket.display()
        )
    }

    /// True when the admin socket answers `show info` and the master lists a worker.
    fn ready(paths: &HaproxyPaths, _master_pid: u32) -> bool {
        let admin = unix_command(&paths.admin_socket, "show info", Duration::from_secs(1));
        let master = unix_command(&paths.master_socket, "show proc", Duration::from_secs(1));
        matches!((admin, master), (Ok(a), Ok(m)) if a.contains("Pid:") && m.contains("worker"))
    }

    fn check_started(paths: &HaproxyPaths, master_pid: u32) -> Result<(), String> {
        let pid_file = std::fs::read_to_string(&paths.pid_file).unwrap_or_default();
        if pid_file.trim() != master_pid.to_string() {
            return Err(format!(
                "haproxy pid file says {:?}, the master is {master_pid}",
                pid_file.trim(),
            ));
        }
        Ok(())
    }

    /// HAProxy's master exits 0 on SIGTERM, or 128+15 once its workers were terminated.
    fn clean_exit(status: ExitStatus) -> bool {
        status.success() || status.code() == Some(143)
    }
}

/// A running HAProxy master with its workers. Stops on drop.
pub type Haproxy = Instance<HaproxyKind>;

/// What only HAProxy has: its sockets, and its config file rewritten in place.
impl Instance<HaproxyKind> {
    /// [`Haproxy::start`] with [`minimal_config`].
    pub fn start_minimal(binary: &Path, blue: SocketAddr, green: SocketAddr) -> Haproxy {
        Haproxy::start(binary, |paths| minimal_config(paths, blue, green))
    }

    /// Replaces the config file (read by the next reload); HAProxy is not told.
    pub fn write_config(&self, text: &str) {
        let config = &self.paths().config;
        std::fs::write(config, text).unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
    }

    /// The current config text.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.paths().config).unwrap_or_default()
    }

    /// A cutover admin-socket client for this instance.
    pub fn admin(&self) -> AdminClient {
        AdminClient::new(&self.paths().admin_socket)
    }

    /// A cutover master-CLI client for this instance.
    pub fn master(&self) -> MasterClient {
        MasterClient::new(&self.paths().master_socket)
    }

    /// One admin-socket command through a plain blocking socket (independent of the client
    /// under test); panics on I/O errors.
    pub fn admin_command(&self, command: &str) -> String {
        unix_command(&self.paths().admin_socket, command, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("admin socket `{command}`: {e}"))
    }

    /// The entries HAProxy serves from the map loaded from `path`, read with a plain
    /// `show map` on the admin socket (independent of the agent); `Err` with the reason
    /// when the socket does not answer or HAProxy refuses.
    pub fn runtime_map(&self, path: &Path) -> Result<BTreeMap<String, String>, String> {
        let reply = unix_command(
            &self.paths().admin_socket,
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
        unix_command(&self.paths().master_socket, command, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("master socket `{command}`: {e}"))
    }
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
