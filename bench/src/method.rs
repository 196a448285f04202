//! The ways a switch is made: through cutover (the CLI as an operator types it, or one JSON
//! line on the agent's socket as a deploy tool would send it), the scripted method teams use
//! today (rewrite the map file, then what `systemctl reload` runs), and a raw runtime-API
//! `set map` as the floor.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cutover_tests::haproxy::unix_command;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::client::Colour;

/// The service every switch moves, and its key in the services map.
pub const SERVICE: &str = "web";

/// What a method reports about one switch beyond the timings the bench takes itself.
#[derive(Debug, Default, Clone)]
pub struct Issued {
    /// The agent's own milliseconds per step (`gate`, `render`, `validate`, ...).
    pub agent_ms: BTreeMap<String, f64>,
}

/// One way to switch `web` to a colour.
pub trait Method {
    /// Label in the tables.
    fn label(&self) -> String;
    /// Makes `to` live; returns once the command (or script) has returned.
    fn issue(&mut self, to: Colour) -> Result<Issued, String>;
    /// Waits until the proxy is ready for the next switch (e.g. previous workers gone).
    /// Not part of any measured figure.
    fn settle(&mut self) {}
    /// Has the proxy read its files again the way this method does (the scripted methods:
    /// the reload of the script, without the map edit).
    fn reload(&mut self) -> Result<(), String> {
        Err(format!("{} does not reload", self.label()))
    }
}

/// `cutover --json switch web <colour>` as a process.
pub struct CutoverCli {
    pub binary: PathBuf,
    pub config: PathBuf,
}

impl CutoverCli {
    /// The CLI of the harness's build, with `setup`'s config.
    pub fn for_setup(setup: &cutover_tests::agent::Setup) -> CutoverCli {
        CutoverCli {
            binary: cutover_tests::cutover_binary(),
            config: setup.config.clone(),
        }
    }
}

impl Method for CutoverCli {
    fn label(&self) -> String {
        "cutover (CLI)".into()
    }

    fn issue(&mut self, to: Colour) -> Result<Issued, String> {
        let out = Command::new(&self.binary)
            .arg("--config")
            .arg(&self.config)
            .args(["--json", "switch", SERVICE, to.as_str()])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run {}: {e}", self.binary.display()))?;
        let reply = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "cutover switch exited {}: {reply}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        parse_reply(&reply)
    }
}

/// One `switch` request line on the agent's unix socket.
pub struct CutoverSocket {
    pub socket: PathBuf,
}

impl Method for CutoverSocket {
    fn label(&self) -> String {
        "cutover (socket)".into()
    }

    fn issue(&mut self, to: Colour) -> Result<Issued, String> {
        let request = serde_json::json!({
            "v": 1, "cmd": "switch", "service": SERVICE, "colour": to.as_str()
        });
        let mut stream = UnixStream::connect(&self.socket)
            .map_err(|e| format!("connect {}: {e}", self.socket.display()))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(format!("{request}\n").as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let mut reader = BufReader::new(stream);
        for _ in 0..1000 {
            let mut line = String::new();
            if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("the agent closed the connection".into());
            }
            if !line.contains("\"status\":\"progress\"") {
                return parse_reply(&line);
            }
        }
        Err("no final reply".into())
    }
}

/// The agent's reply: `ok` with `data.timings_ms`, or the error.
fn parse_reply(line: &str) -> Result<Issued, String> {
    let v: serde_json::Value =
        serde_json::from_str(line.trim()).map_err(|e| format!("reply {line:?}: {e}"))?;
    if v["status"] != "ok" {
        return Err(format!("switch refused: {}", v["message"]));
    }
    let agent_ms = v["data"]["timings_ms"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    Ok(Issued { agent_ms })
}

/// Rewrites the `web` line of a map file the way `sed -i` does (temp file, rename).
pub fn rewrite_map_line(map: &Path, key: &str, value: &str) -> Result<(), String> {
    let old = std::fs::read_to_string(map).map_err(|e| format!("{}: {e}", map.display()))?;
    let mut found = false;
    let mut new = String::with_capacity(old.len());
    for line in old.lines() {
        if line.split_ascii_whitespace().next() == Some(key) {
            new.push_str(&format!("{key} {value}\n"));
            found = true;
        } else {
            new.push_str(line);
            new.push('\n');
        }
    }
    if !found {
        new.push_str(&format!("{key} {value}\n"));
    }
    let tmp = map.with_extension("sed-tmp");
    std::fs::write(&tmp, new).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, map).map_err(|e| format!("{}: {e}", map.display()))
}

/// The backend (HAProxy) or upstream (Nginx) of a colour in the benchmark setup.
pub fn backend(to: Colour) -> String {
    format!("{SERVICE}_{}", to.as_str())
}

/// Rewrite the services map, then Debian's `systemctl reload haproxy`: `haproxy -c` on the
/// config, then SIGUSR2 to the master (master-worker mode). Confirmed by nothing but the
/// next request.
pub struct HaproxyReload {
    pub binary: PathBuf,
    pub config: PathBuf,
    pub master_pid: u32,
    pub master_socket: PathBuf,
    pub services_map: PathBuf,
}

impl Method for HaproxyReload {
    fn label(&self) -> String {
        "map rewrite + reload".into()
    }

    fn issue(&mut self, to: Colour) -> Result<Issued, String> {
        rewrite_map_line(&self.services_map, SERVICE, &backend(to))?;
        self.check_and_signal()?;
        Ok(Issued::default())
    }

    fn settle(&mut self) {
        wait_for_old_workers(&self.master_socket, Duration::from_secs(60));
    }

    fn reload(&mut self) -> Result<(), String> {
        self.check_and_signal()
    }
}

impl HaproxyReload {
    /// The script for the HAProxy of `setup`, checking with `binary`.
    pub fn for_setup(setup: &cutover_tests::agent::Setup, binary: &Path) -> HaproxyReload {
        let paths = setup.haproxy().paths();
        HaproxyReload {
            binary: binary.to_owned(),
            config: paths.config.clone(),
            master_pid: setup.haproxy().master_pid(),
            master_socket: paths.master_socket.clone(),
            services_map: setup.services_map(),
        }
    }

    /// What `systemctl reload haproxy` runs on Debian 12: the check, then SIGUSR2.
    pub fn check_and_signal(&self) -> Result<(), String> {
        let check = Command::new(&self.binary)
            .args(["-Ws", "-c", "-q", "-f"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("haproxy -c: {e}"))?;
        if !check.status.success() {
            return Err(format!(
                "haproxy -c: {}",
                String::from_utf8_lossy(&check.stderr)
            ));
        }
        kill(Pid::from_raw(self.master_pid as i32), Signal::SIGUSR2)
            .map_err(|e| format!("kill -USR2: {e}"))
    }
}

/// Waits (bounded) until the master lists a worker and no old workers, so reloads do not
/// pile up processes.
pub fn wait_for_old_workers(master_socket: &Path, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(reply) = unix_command(master_socket, "show proc", Duration::from_secs(5)) {
            if let Ok(t) = cutover::proxy::haproxy::reply::parse_show_proc(&reply) {
                if t.old_workers.is_empty() && !t.workers.is_empty() {
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Rewrite the services map, then `set map` on the admin socket by hand: the runtime API
/// without any of cutover's checks, confirmation or journal.
pub struct HaproxySetMap {
    pub admin_socket: PathBuf,
    pub services_map: PathBuf,
}

impl Method for HaproxySetMap {
    fn label(&self) -> String {
        "raw `set map`".into()
    }

    fn issue(&mut self, to: Colour) -> Result<Issued, String> {
        let backend = backend(to);
        rewrite_map_line(&self.services_map, SERVICE, &backend)?;
        let command = format!(
            "set map {} {SERVICE} {backend}",
            self.services_map.display()
        );
        let reply = unix_command(&self.admin_socket, &command, Duration::from_secs(5))
            .map_err(|e| format!("{command}: {e}"))?;
        if !reply.trim().is_empty() {
            return Err(format!("{command}: {reply}"));
        }
        Ok(Issued::default())
    }
}

/// Waits (bounded) until every child of the Nginx master is a worker that accepts: the
/// workers of previous configs have finished.
pub fn wait_for_nginx_workers(master: u32, within: Duration) {
    use cutover::proxy::nginx::procs;
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(c) = procs::snapshot(master) {
            if !c.workers.is_empty() && c.all == c.workers {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Rewrite the services map, then what `systemctl reload nginx` runs on Debian 12:
/// `nginx -g 'daemon on; master_process on;' -s reload`, which reads the config for the pid
/// file and sends `SIGHUP` to the master (the unit runs no `nginx -t` on reload).
/// Confirmed by nothing but the next request.
pub struct NginxReload {
    pub binary: PathBuf,
    /// `-p <dir> -e <error log> -c <config>` of the instance.
    pub instance: Vec<std::ffi::OsString>,
    pub master_pid: u32,
    pub services_map: PathBuf,
}

impl NginxReload {
    /// The arguments that name the harness's Nginx instance.
    pub fn instance_args(p: &cutover_tests::nginx::NginxPaths) -> Vec<std::ffi::OsString> {
        vec![
            "-p".into(),
            p.dir.clone().into(),
            "-e".into(),
            p.error_log.clone().into(),
            "-c".into(),
            p.config.clone().into(),
        ]
    }

    pub fn for_setup(setup: &cutover_tests::agent::Setup, binary: &Path) -> NginxReload {
        NginxReload {
            binary: binary.to_owned(),
            instance: NginxReload::instance_args(setup.nginx().paths()),
            master_pid: setup.nginx().master_pid(),
            services_map: setup.services_map(),
        }
    }

    /// `nginx ... -s reload`.
    pub fn signal(&self) -> Result<(), String> {
        let out = Command::new(&self.binary)
            .args(&self.instance)
            .args(["-g", "daemon on; master_process on;", "-s", "reload"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("nginx -s reload: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "nginx -s reload: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }
}

impl Method for NginxReload {
    fn label(&self) -> String {
        "map rewrite + reload".into()
    }

    fn issue(&mut self, to: Colour) -> Result<Issued, String> {
        rewrite_map_line(&self.services_map, SERVICE, &format!("{};", backend(to)))?;
        self.signal()?;
        Ok(Issued::default())
    }

    fn settle(&mut self) {
        wait_for_nginx_workers(self.master_pid, Duration::from_secs(30));
    }

    fn reload(&mut self) -> Result<(), String> {
        self.signal()
    }
}

/// Rewrite the services map, then a bare `kill -HUP <master>`: the floor of every Nginx
/// change, with no config read by the signalling side.
pub struct NginxHup {
    pub master_pid: u32,
    pub services_map: PathBuf,
}

impl NginxHup {
    pub fn for_setup(setup: &cutover_tests::agent::Setup) -> NginxHup {
        NginxHup {
            master_pid: setup.nginx().master_pid(),
            services_map: setup.services_map(),
        }
    }
}

impl Method for NginxHup {
    fn label(&self) -> String {
        "plain HUP".into()
    }

    fn issue(&mut self, to: Colour) -> Result<Issued, String> {
        rewrite_map_line(&self.services_map, SERVICE, &format!("{};", backend(to)))?;
        kill(Pid::from_raw(self.master_pid as i32), Signal::SIGHUP)
            .map_err(|e| format!("kill -HUP: {e}"))?;
        Ok(Issued::default())
    }

    fn settle(&mut self) {
        wait_for_nginx_workers(self.master_pid, Duration::from_secs(30));
    }
}

/// Rewrite the services map, then cutover's own reload (what the agent runs for a change
/// HAProxy only takes at reload): `reload` on the master CLI, confirmed by the process
/// table and, on HAProxy 2.7+, by the command's `Success=1` answer, and done once the new
/// worker answers on the admin socket. Its command time is the time of a confirmed reload.
pub struct CutoverReload {
    pub rt: tokio::runtime::Handle,
    pub proxy: cutover::proxy::haproxy::Haproxy,
    pub master_socket: PathBuf,
    pub services_map: PathBuf,
}

impl CutoverReload {
    /// The agent's HAProxy client for the HAProxy of `setup`, run from `binary`, with the
    /// shipped timeouts and minimum gap between reloads (none for HAProxy).
    pub fn for_setup(
        rt: &tokio::runtime::Handle,
        setup: &cutover_tests::agent::Setup,
        binary: &Path,
    ) -> CutoverReload {
        let paths = setup.haproxy().paths();
        let proxy = cutover::proxy::haproxy::Haproxy::new(&cutover::config::Proxy {
            kind: cutover::config::ProxyKind::Haproxy,
            binary: binary.to_owned(),
            config: paths.config.clone(),
            admin_socket: Some(paths.admin_socket.clone()),
            master_socket: Some(paths.master_socket.clone()),
            nginx: None,
            map_dir: paths.dir.clone(),
            reload_timeout: Duration::from_millis(cutover::config::DEFAULT_RELOAD_TIMEOUT_MS),
            command_timeout: Duration::from_millis(cutover::config::DEFAULT_COMMAND_TIMEOUT_MS),
            min_reload_gap: Duration::from_millis(
                cutover::config::DEFAULT_HAPROXY_MIN_RELOAD_GAP_MS,
            ),
        });
        CutoverReload {
            rt: rt.clone(),
            proxy,
            master_socket: paths.master_socket.clone(),
            services_map: setup.services_map(),
        }
    }
}

impl Method for CutoverReload {
    fn label(&self) -> String {
        "map rewrite + cutover's reload".into()
    }

    fn issue(&mut self, to: Colour) -> Result<Issued, String> {
        use cutover::proxy::Proxy as _;
        rewrite_map_line(&self.services_map, SERVICE, &backend(to))?;
        self.rt
            .block_on(self.proxy.reload(0))
            .map_err(|e| format!("reload: {e:#}"))?;
        Ok(Issued::default())
    }

    fn settle(&mut self) {
        wait_for_old_workers(&self.master_socket, Duration::from_secs(60));
    }
}
