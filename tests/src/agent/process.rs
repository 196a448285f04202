//! The `cutover agent` of a [`Setup`] as a real process: started from the setup's config,
//! waited for until its socket answers, stopped with SIGTERM or killed, and spoken to over
//! its socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::Setup;
use crate::cutover_binary;

/// Time the agent gets to open its socket.
pub const AGENT_START: Duration = Duration::from_secs(15);

/// A running `cutover agent`.
pub struct Agent {
    child: Child,
    /// Its control socket.
    pub socket: PathBuf,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
}

impl Setup {
    /// Starts the agent and waits until its socket answers.
    pub fn start_agent(&mut self) -> &Agent {
        self.start_agent_with_env(&[])
    }

    /// Starts the agent with extra environment variables (its log goes to `agent.log` in
    /// the instance directory, appended to if the file exists) and waits until its socket
    /// answers.
    pub fn start_agent_with_env(&mut self, env: &[(&str, &str)]) -> &Agent {
        self.spawn_agent_from(&cutover_binary(), env);
        self.wait_agent_ready_within(AGENT_START)
    }

    /// Starts the agent from `binary` (e.g. another build profile) and waits up to `within`
    /// until its socket answers (it opens once the start-up reconcile is done, which reads
    /// every map back from HAProxy).
    pub fn start_agent_with(&mut self, binary: &Path, within: Duration) -> &Agent {
        self.spawn_agent_from(binary, &[]);
        self.wait_agent_ready_within(within)
    }

    /// Starts the agent process without waiting for it.
    pub fn spawn_agent(&mut self) {
        self.spawn_agent_from(&cutover_binary(), &[]);
    }

    fn spawn_agent_from(&mut self, binary: &Path, env: &[(&str, &str)]) {
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
        self.agent = Some(Agent { child, socket, log });
    }

    /// Waits until the spawned agent's socket answers (a stale socket file left by a killed
    /// agent refuses connections until the new one has bound it).
    pub fn wait_agent_ready(&mut self) -> &Agent {
        self.wait_agent_ready_within(AGENT_START)
    }

    fn wait_agent_ready_within(&mut self, within: Duration) -> &Agent {
        let started = Instant::now();
        let agent = self.agent.as_mut().expect("agent spawned");
        while UnixStream::connect(&agent.socket).is_err() {
            let exited = agent.child.try_wait().ok().flatten();
            assert!(
                exited.is_none() && started.elapsed() < within,
                "agent socket did not answer within {within:?} (exited: {exited:?}); log:\n{}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        self.agent.as_ref().expect("just set")
    }

    /// The running agent; panics when it was not started.
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

    /// Kills the agent with SIGKILL (a crash: no cleanup at all) and reaps it.
    pub fn kill_agent(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.signal(Signal::SIGKILL);
            let _ = agent.child.wait();
        }
    }

    /// Whether the agent process is still running (it has not exited).
    pub fn agent_running(&mut self) -> bool {
        self.agent
            .as_mut()
            .is_some_and(|a| a.child.try_wait().ok().flatten().is_none())
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
    /// PID of the agent process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the agent (errors ignored: it may have exited).
    pub fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), signal);
    }

    /// Everything the agent logged so far.
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

    /// Sends one JSON request line on a new connection and returns the parsed reply.
    pub fn request(&self, request: &serde_json::Value) -> serde_json::Value {
        let line = self.raw(format!("{request}\n").as_bytes());
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("reply to {request} is not JSON ({e}): {line:?}"))
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
