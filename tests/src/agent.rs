//! A whole cutover setup on loopback: two origin servers (blue, green), a cutover config
//! whose shipped templates render the complete HAProxy config and both maps, HAProxy
//! started from what `cutover render` wrote, and the `cutover agent` as a real process.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{cutover_binary, workspace_root, Backend, Haproxy, HaproxyPaths};

/// Time the agent gets to open its socket.
pub const AGENT_START: Duration = Duration::from_secs(15);

/// Options of a [`Setup`].
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// Routes of service `web` (host names).
    pub routes: Vec<String>,
    /// Write the routes into a file and use `routes_file` instead of inline routes.
    pub routes_in_file: bool,
    /// Extra TOML appended to the `[templates]` table (e.g. `override_dir = "..."`).
    pub templates_extra: String,
    /// `agent.reconcile_interval_ms`.
    pub reconcile_interval_ms: u64,
    /// Extra TOML for service `web`: keys first, then sub-tables such as
    /// `[services.gate]` (e.g. `"preview_hosts = [\"p.test\"]\n[services.watch]\n..."`).
    pub service_extra: String,
    /// Extra `[[services]]` tables after `web`; `{blue}` and `{green}` stand for the
    /// addresses of the setup's two origins.
    pub extra_services: String,
    /// Extra keys of the `[agent]` table.
    pub agent_extra: String,
    /// Extra TOML appended at the end of the config (e.g. a `[metrics]` table).
    pub config_extra: String,
}

impl Default for SetupOptions {
    fn default() -> Self {
        SetupOptions {
            routes: vec!["www.example.test".into(), "example.test".into()],
            routes_in_file: false,
            templates_extra: String::new(),
            reconcile_interval_ms: 200,
            service_extra: String::new(),
            extra_services: String::new(),
            agent_extra: String::new(),
            config_extra: String::new(),
        }
    }
}

/// Origins, HAProxy and (once started) the agent.
pub struct Setup {
    pub blue: Backend,
    pub green: Backend,
    pub haproxy: Haproxy,
    /// The cutover config file (inside the HAProxy instance directory).
    pub config: PathBuf,
    pub options: SetupOptions,
    agent: Option<Agent>,
}

/// A running `cutover agent`.
pub struct Agent {
    child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Setup {
    /// Starts origins and HAProxy (from files written by `cutover render`); the agent is
    /// started by [`Setup::start_agent`].
    pub fn new(haproxy_bin: &Path, options: SetupOptions) -> Setup {
        let blue = Backend::start("blue");
        let green = Backend::start("green");
        let (b, g) = (blue.addr(), green.addr());
        let opts = options.clone();
        let mut config = PathBuf::new();
        let haproxy = Haproxy::start(haproxy_bin, |paths| {
            config = write_config(paths, haproxy_bin, &opts, b, g);
            let out = cutover(&config, &["render"]);
            assert!(out.status.success(), "cutover render: {}", text(&out));
            std::fs::read_to_string(&paths.config).expect("render wrote haproxy.cfg")
        });
        Setup {
            blue,
            green,
            haproxy,
            config,
            options,
            agent: None,
        }
    }

    /// Finds HAProxy (skip-or-fail as [`crate::require_proxy`] says), starts the setup and
    /// its agent; `None` when HAProxy is missing and not required.
    pub fn started(options: SetupOptions) -> Option<Setup> {
        let haproxy = crate::require_proxy("haproxy")?;
        let mut s = Setup::new(&haproxy, options);
        s.start_agent();
        Some(s)
    }

    pub fn dir(&self) -> &Path {
        &self.haproxy.paths().dir
    }

    /// Path of a file in the instance directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    pub fn services_map(&self) -> PathBuf {
        self.file("maps/services.map")
    }

    pub fn routes_map(&self) -> PathBuf {
        self.file("maps/routes.map")
    }

    /// Starts the agent and waits until its socket answers.
    pub fn start_agent(&mut self) -> &Agent {
        self.start_agent_with_env(&[])
    }

    /// Starts the agent with extra environment variables (its log goes to `agent.log` in
    /// the instance directory, appended to if the file exists) and waits until its socket
    /// answers.
    pub fn start_agent_with_env(&mut self, env: &[(&str, &str)]) -> &Agent {
        self.start_agent_from(&cutover_binary(), env, AGENT_START)
    }

    /// Starts the agent from `binary` (e.g. another build profile) and waits up to `within`
    /// until its socket answers (it opens once the start-up reconcile is done, which reads
    /// every map back from HAProxy).
    pub fn start_agent_with(&mut self, binary: &Path, within: Duration) -> &Agent {
        self.start_agent_from(binary, &[], within)
    }

    fn start_agent_from(
        &mut self,
        binary: &Path,
        env: &[(&str, &str)],
        within: Duration,
    ) -> &Agent {
        assert!(self.agent.is_none(), "agent already running");
        let log = self.file("agent.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("agent log");
        let child = Command::new(binary)
            .args([
                "--config".as_ref(),
                self.config.as_os_str(),
                "agent".as_ref(),
            ])
            .env("CUTOVER_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log fd"))
            .stderr(log_file)
            .spawn()
            .expect("spawn cutover agent");
        let socket = self.file("cutover.sock");
        let started = Instant::now();
        while UnixStream::connect(&socket).is_err() {
            assert!(
                started.elapsed() < within,
                "agent socket did not answer within {within:?}; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.agent = Some(Agent { child, socket, log });
        self.agent.as_ref().expect("just set")
    }

    pub fn agent(&self) -> &Agent {
        self.agent.as_ref().expect("agent started")
    }

    /// Stops the agent with SIGTERM and waits for it; returns its exit status code.
    pub fn stop_agent(&mut self) -> Option<i32> {
        let mut agent = self.agent.take()?;
        agent.signal(Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = agent.child.try_wait().expect("wait agent") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = agent.child.kill();
                let _ = agent.child.wait();
                panic!("agent did not stop within 10 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the CLI with this setup's config.
    pub fn cli(&self, args: &[&str]) -> Output {
        cutover(&self.config, args)
    }

    /// Runs the CLI with `--json` and returns the parsed reply (panics on non-JSON).
    pub fn cli_json(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        let v = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("cutover {args:?}: not JSON ({e}): {}", text(&out)));
        (out.status.code().unwrap_or(-1), v)
    }

    /// The value of one metric series (`name{labels}`, labels as the agent writes them) from
    /// `cutover metrics`; `None` when the agent does not have it.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let out = self.cli(&["metrics"]);
        assert!(out.status.success(), "cutover metrics: {}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// GET `/` with `Host: host` on a new connection through HAProxy: `(status, body)`.
    pub fn get(&self, host: &str) -> (u16, String) {
        let addr = self.haproxy.frontend();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(crate::get(addr, host))
            .expect("GET through haproxy")
    }

    /// Polls until `GET host` answers `body`, at most `within`.
    pub fn wait_for_body(&self, host: &str, body: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.get(host).1 == body {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Rewrites the cutover config and sends SIGHUP to the agent.
    pub fn reconfigure(&self, edit: impl FnOnce(String) -> String) {
        self.reconfigure_offline(edit);
        self.agent().signal(Signal::SIGHUP);
    }

    /// Rewrites the cutover config without telling the agent.
    pub fn reconfigure_offline(&self, edit: impl FnOnce(String) -> String) {
        let old = std::fs::read_to_string(&self.config).expect("read config");
        std::fs::write(&self.config, edit(old)).expect("write config");
    }

    /// The HAProxy master's reload counter, read from `show proc` (retried while the master
    /// re-executes itself).
    pub fn reloads(&self) -> u64 {
        let mut last = String::new();
        for _ in 0..100 {
            match crate::haproxy::unix_command(
                &self.haproxy.paths().master_socket,
                "show proc",
                Duration::from_secs(5),
            ) {
                Ok(reply) => match cutover::proxy::haproxy::reply::parse_show_proc(&reply) {
                    Ok(table) => return table.reloads,
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cannot read show proc: {last}");
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.child.kill();
            let _ = a.child.wait();
        }
    }
}

impl Agent {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), signal);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the agent's log contains `needle`, at most `within`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    /// Sends raw bytes as one request on a new connection and returns the first reply
    /// line ("" when the agent closed without answering).
    pub fn raw(&self, bytes: &[u8]) -> String {
        let mut s = UnixStream::connect(&self.socket).expect("connect agent socket");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        // A refused oversized request may be cut off while we still write: that is fine.
        let _ = s.write_all(bytes);
        let mut line = String::new();
        let _ = BufReader::new(s).read_line(&mut line);
        line
    }
}

/// Runs `cutover --config <config> args...`.
pub fn cutover(config: &Path, args: &[&str]) -> Output {
    Command::new(cutover_binary())
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run cutover")
}

/// stdout and stderr of a finished command, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write_config(
    paths: &HaproxyPaths,
    haproxy_bin: &Path,
    o: &SetupOptions,
    blue: std::net::SocketAddr,
    green: std::net::SocketAddr,
) -> PathBuf {
    let dir = &paths.dir;
    std::fs::create_dir_all(dir.join("maps")).expect("maps dir");
    let routes = if o.routes_in_file {
        let file = dir.join("web.routes");
        std::fs::write(&file, o.routes.join("\n") + "\n").expect("routes file");
        format!("routes_file = {:?}", file.display().to_string())
    } else {
        format!("routes = {:?}", o.routes)
    };
    let text = format!(
        r#"[agent]
socket = "{dir}/cutover.sock"
state_dir = "{dir}/state"
reconcile_interval_ms = {interval}
{agent_extra}

[proxy]
kind = "haproxy"
binary = "{bin}"
config = "{cfg}"
admin_socket = "{admin}"
master_socket = "{master}"

[templates]
dir = "{templates}"
vars = {{ listen = "{listen}", maxconn = 256 }}
{extra}

[[files]]
name = "routes"
template = "haproxy/routes.map"
path = "{dir}/maps/routes.map"
kind = "map"
uses_state = false
values = "services"

[[files]]
name = "services"
template = "haproxy/services.map"
path = "{dir}/maps/services.map"
kind = "map"
values = "backends"

[[files]]
name = "idle"
template = "haproxy/idle.map"
path = "{dir}/maps/idle.map"
kind = "map"
values = "backends"

[[files]]
name = "canary"
template = "haproxy/canary.map"
path = "{dir}/maps/canary.map"
kind = "map"
values = "percent"

[[files]]
name = "preview"
template = "haproxy/preview.map"
path = "{dir}/maps/preview.map"
kind = "map"
uses_state = false
values = "services"

[[files]]
name = "haproxy"
template = "haproxy/haproxy.cfg"
path = "{cfg}"
kind = "config"

[[services]]
name = "web"
{routes}
blue = {{ backend = "web_blue", servers = [{{ name = "b1", address = "{blue}" }}] }}
green = {{ backend = "web_green", servers = [{{ name = "g1", address = "{green}" }}] }}
{service_extra}
{extra_services}
{config_extra}
"#,
        dir = dir.display(),
        interval = o.reconcile_interval_ms,
        bin = haproxy_bin.display(),
        cfg = paths.config.display(),
        admin = paths.admin_socket.display(),
        master = paths.master_socket.display(),
        templates = workspace_root().join("templates").display(),
        listen = paths.frontend,
        extra = o.templates_extra,
        service_extra = o.service_extra,
        extra_services = o
            .extra_services
            .replace("{blue}", &blue.to_string())
            .replace("{green}", &green.to_string()),
        agent_extra = o.agent_extra,
        config_extra = o.config_extra,
    );
    let path = dir.join("cutover.toml");
    std::fs::write(&path, text).expect("write cutover.toml");
    path
}
