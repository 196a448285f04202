//! A whole cutover setup on loopback: two origin servers (blue, green), a cutover config
//! whose shipped templates render the complete proxy config and both maps, the proxy
//! (HAProxy or Nginx) started from what `cutover render` wrote, and the `cutover agent` as
//! a real process. The same [`Setup`] drives either proxy; what only one of them has is
//! reached through [`Setup::haproxy`] or [`Setup::nginx`].
//!
//! The agent process (start, wait, stop, kill, talk to its socket) is in `process`; what
//! proves that HAProxy's runtime, the files and the saved state agree is in `consistency`.

mod consistency;
mod process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::instance::{Instance, ProxyKind};
use crate::nginx::Nginx;
use crate::setup_config::{write_config, write_nginx_config};
use crate::{cutover_binary, Backend, Haproxy};

pub use self::process::{Agent, AGENT_START};

/// Options of a [`Setup`].
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// Routes of service `web` (host names).
    pub routes: Vec<String>,
    /// Write the routes into a file and use `routes_file` instead of inline routes.
    pub routes_in_file: bool,
    /// Extra TOML appended to the `[templates]` table (e.g. `override_dir = "..."`).
    pub templates_extra: String,
    /// Extra entries of the `[templates] vars` inline table, each starting with a comma
    /// (e.g. `, map_hash_max_size = 1`).
    pub vars_extra: String,
    /// Extra TOML appended to the `[proxy]` table (e.g. `min_reload_gap_ms = 0`).
    pub proxy_extra: String,
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
    /// Nginx only: `[proxy] runtime` (`"lua"`, `"auto"`), with the control socket in
    /// `<dir>/lua/` and the idle and canary maps the Lua lookup reads; `None`: the default
    /// (reload).
    pub nginx_runtime: Option<String>,
}

impl SetupOptions {
    /// The default options with the agent's metrics endpoint on `127.0.0.1:port`.
    pub fn serving_metrics(port: u16) -> SetupOptions {
        SetupOptions {
            config_extra: format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
            ..SetupOptions::default()
        }
    }
}

/// The exit code of a CLI run with `--json` and the one JSON object it printed on stdout
/// (panics when stdout is not that).
pub fn json_output(out: &Output) -> (i32, serde_json::Value) {
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", text(out)));
    (out.status.code().unwrap_or(-1), v)
}

impl Default for SetupOptions {
    fn default() -> Self {
        SetupOptions {
            routes: vec!["www.example.test".into(), "example.test".into()],
            routes_in_file: false,
            templates_extra: String::new(),
            vars_extra: String::new(),
            proxy_extra: String::new(),
            reconcile_interval_ms: 200,
            service_extra: String::new(),
            extra_services: String::new(),
            agent_extra: String::new(),
            config_extra: String::new(),
            nginx_runtime: None,
        }
    }
}

/// The proxy of a [`Setup`].
pub enum SetupProxy {
    /// A HAProxy in master-worker mode with its admin and master sockets.
    Haproxy(Haproxy),
    /// An Nginx master with its workers.
    Nginx(Nginx),
}

/// Origins, the proxy and (once started) the agent.
pub struct Setup {
    /// The origin behind the blue backends (answers `blue`).
    pub blue: Backend,
    /// The origin behind the green backends (answers `green`).
    pub green: Backend,
    /// The proxy in front of them.
    pub proxy: SetupProxy,
    /// The cutover config file (inside the proxy's instance directory).
    pub config: PathBuf,
    /// What the setup was built with.
    pub options: SetupOptions,
    agent: Option<Agent>,
}

impl Setup {
    /// Starts origins and HAProxy (from files written by `cutover render`); the agent is
    /// started by [`Setup::start_agent`].
    pub fn new(haproxy_bin: &Path, options: SetupOptions) -> Setup {
        Setup::with_proxy(haproxy_bin, options, write_config, SetupProxy::Haproxy)
    }

    /// Like [`Setup::new`] with Nginx: the shipped `nginx/` templates render its whole
    /// config, with the generation endpoint on `<dir>/status.sock`.
    pub fn new_nginx(nginx_bin: &Path, options: SetupOptions) -> Setup {
        Setup::with_proxy(nginx_bin, options, write_nginx_config, SetupProxy::Nginx)
    }

    /// Starts the origins, writes the cutover config for a proxy of kind `K` with `write`
    /// (given the instance paths, the binary, the options and the origins' addresses), and
    /// starts the proxy from the main config `cutover render` wrote.
    fn with_proxy<K: ProxyKind>(
        binary: &Path,
        options: SetupOptions,
        write: fn(&K::Paths, &Path, &SetupOptions, SocketAddr, SocketAddr) -> PathBuf,
        wrap: fn(Instance<K>) -> SetupProxy,
    ) -> Setup {
        let blue = Backend::start("blue");
        let green = Backend::start("green");
        let (b, g) = (blue.addr(), green.addr());
        let mut config = PathBuf::new();
        let proxy = Instance::<K>::start(binary, |paths| {
            config = write(paths, binary, &options, b, g);
            render(&config, K::config(paths))
        });
        Setup {
            blue,
            green,
            proxy: wrap(proxy),
            config,
            options,
            agent: None,
        }
    }

    /// Finds HAProxy (skip-or-fail as [`crate::require_proxy`] says), starts the setup and
    /// its agent; `None` when HAProxy is missing and not required.
    pub fn started(options: SetupOptions) -> Option<Setup> {
        Setup::started_on("haproxy", options)
    }

    /// Like [`Setup::started`] over `proxy` (`"haproxy"` or `"nginx"`).
    pub fn started_on(proxy: &str, options: SetupOptions) -> Option<Setup> {
        let binary = crate::require_proxy(proxy)?;
        let mut s = match proxy {
            "haproxy" => Setup::new(&binary, options),
            "nginx" => Setup::new_nginx(&binary, options),
            other => panic!("no setup for proxy {other:?}"),
        };
        s.start_agent();
        Some(s)
    }

    /// The state generation `cutover status` reports.
    pub fn generation(&self) -> u64 {
        let (code, v) = self.cli_json(&["status"]);
        // 3: the agent answered and reports a fault.
        assert!(code == 0 || code == 3, "{v}");
        v["data"]["generation"].as_u64().expect("generation")
    }

    /// Bytes of files of the instance directory (relative names), e.g. to prove that a
    /// refused change left every file the proxy reads as it was.
    pub fn read_files(&self, names: &[&str]) -> Vec<(String, Vec<u8>)> {
        names
            .iter()
            .map(|f| {
                (
                    f.to_string(),
                    std::fs::read(self.file(f)).expect("read file"),
                )
            })
            .collect()
    }

    /// The main config and the two maps the proxy of this setup reads (relative names).
    pub fn proxy_files(&self) -> [&'static str; 3] {
        let main = match &self.proxy {
            SetupProxy::Haproxy(_) => "haproxy.cfg",
            SetupProxy::Nginx(_) => "nginx.conf",
        };
        [main, "maps/routes.map", "maps/services.map"]
    }

    /// The HAProxy of a setup made by [`Setup::new`].
    pub fn haproxy(&self) -> &Haproxy {
        match &self.proxy {
            SetupProxy::Haproxy(h) => h,
            SetupProxy::Nginx(_) => panic!("this setup runs nginx"),
        }
    }

    /// The HAProxy of this setup, to kill, restart or freeze; panics for Nginx.
    pub fn haproxy_mut(&mut self) -> &mut Haproxy {
        match &mut self.proxy {
            SetupProxy::Haproxy(h) => h,
            SetupProxy::Nginx(_) => panic!("this setup runs nginx"),
        }
    }

    /// The Nginx of this setup, to kill or restart; panics for HAProxy.
    pub fn nginx_mut(&mut self) -> &mut Nginx {
        match &mut self.proxy {
            SetupProxy::Nginx(n) => n,
            SetupProxy::Haproxy(_) => panic!("this setup runs haproxy"),
        }
    }

    /// The Nginx of a setup made by [`Setup::new_nginx`].
    pub fn nginx(&self) -> &Nginx {
        match &self.proxy {
            SetupProxy::Nginx(n) => n,
            SetupProxy::Haproxy(_) => panic!("this setup runs haproxy"),
        }
    }

    /// The proxy's main listener.
    pub fn frontend(&self) -> std::net::SocketAddr {
        match &self.proxy {
            SetupProxy::Haproxy(h) => h.frontend(),
            SetupProxy::Nginx(n) => n.frontend(),
        }
    }

    /// The proxy's instance directory (the cutover config, maps and agent files are there).
    pub fn dir(&self) -> &Path {
        match &self.proxy {
            SetupProxy::Haproxy(h) => &h.paths().dir,
            SetupProxy::Nginx(n) => &n.paths().dir,
        }
    }

    /// Path of a file in the instance directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// The services map the agent manages.
    pub fn services_map(&self) -> PathBuf {
        self.file("maps/services.map")
    }

    /// The routes map the agent manages.
    pub fn routes_map(&self) -> PathBuf {
        self.file("maps/routes.map")
    }

    /// Runs the CLI with this setup's config.
    pub fn cli(&self, args: &[&str]) -> Output {
        cutover(&self.config, args)
    }

    /// Runs the CLI with `--json` and returns the parsed reply (panics on non-JSON).
    pub fn cli_json(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        json_output(&self.cli(&all))
    }

    /// `GET /metrics` on the agent's metrics endpoint at `127.0.0.1:port` (see
    /// [`SetupOptions::serving_metrics`]) with these request headers.
    pub fn scrape(&self, port: u16, headers: &[(&str, &str)]) -> crate::http::Response {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let addr = format!("127.0.0.1:{port}").parse().expect("address");
        rt.block_on(crate::http::request_with(
            addr,
            "GET",
            "localhost",
            "/metrics",
            headers,
        ))
        .expect("GET /metrics")
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

    /// GET `/` with `Host: host` on a new connection through the proxy: `(status, body)`.
    pub fn get(&self, host: &str) -> (u16, String) {
        let addr = self.frontend();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(crate::get(addr, host))
            .expect("GET through the proxy")
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

    /// Makes the routes of service `web` (a setup with `routes_in_file`) `first` plus `n`
    /// generated ones, `h0.example.test` to `h<n-1>.example.test`, and waits (up to 60 s)
    /// until the agent has applied them after a SIGHUP.
    pub fn load_generated_routes(&self, first: &str, n: usize) {
        let routes: String = (0..n).map(|i| format!("h{i}.example.test\n")).collect();
        std::fs::write(self.file("web.routes"), format!("{first}\n{routes}"))
            .expect("write routes file");
        self.agent().signal(Signal::SIGHUP);
        assert!(
            self.agent()
                .wait_for_log("new config in force", Duration::from_secs(60)),
            "{}",
            self.agent().log()
        );
    }

    /// Rewrites the cutover config without telling the agent.
    pub fn reconfigure_offline(&self, edit: impl FnOnce(String) -> String) {
        let old = std::fs::read_to_string(&self.config).expect("read config");
        std::fs::write(&self.config, edit(old)).expect("write config");
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

/// Runs `cutover render` with `config` and returns the main proxy config it wrote.
fn render(config: &Path, main: &Path) -> String {
    let out = cutover(config, &["render"]);
    assert!(out.status.success(), "cutover render: {}", text(&out));
    std::fs::read_to_string(main).expect("render wrote the main config")
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
