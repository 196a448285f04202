//! Shared harness of cutover's integration tests: real proxies started on free loopback
//! ports in temporary directories, tiny origin servers, HTTP clients, and the `cutover`
//! binary.
//!
//! Conventions every test follows:
//! - A test that needs a proxy starts with `let haproxy = require_proxy!("haproxy");`: it
//!   skips (returns) when the proxy is missing, and fails instead when
//!   `CUTOVER_REQUIRE_PROXIES=1` (CI sets it).
//! - Everything a test starts stops when dropped ([`Backend`], [`Haproxy`], [`Nginx`]), so
//!   a failing assertion leaves no process behind.
//! - Ports come from [`free_port`] only, so concurrent tests in one process never share one.
//!
//! Layout: [`proxies`] (finding binaries), [`ports`], [`process`] (a proxy master run as a
//! child, stopped by PID), [`instance`] (one lifecycle for every proxy: start, wait until
//! ready, logs on failure, stop), [`haproxy`] and [`nginx`] (what differs per proxy, and
//! what only one of them has), [`backend`], [`http`], [`agent`] (a whole cutover setup with
//! the agent running as a process, over either proxy), [`scenarios`] (what the tests of both
//! proxies run alike) and [`host`] (host-level faults and measures: a small tmpfs, running
//! as another user, a process's fds and memory). [`etcd`] runs real etcd members and
//! clusters the same way (`require_etcd!()` skips or fails like `require_proxy!`), and
//! [`fleet`] a site of hosts following it.
// The harness runs only inside tests: an `unwrap()` that fails is a failed test.
#![allow(clippy::unwrap_used)]

pub mod agent;
pub mod backend;
pub mod cluster;
pub mod etcd;
pub mod fleet;
pub mod haproxy;
pub mod host;
pub mod http;
pub mod instance;
pub mod nginx;
pub mod ports;
pub mod process;
pub mod proxies;
pub mod scenarios;
mod setup_config;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub use backend::Backend;
pub use etcd::{require_etcd, Etcd, EtcdBinaries, EtcdCluster};
pub use haproxy::{Haproxy, HaproxyPaths};
pub use http::{get, KeepAliveClient, Response};
pub use instance::{Instance, ProxyKind};
pub use nginx::{Nginx, NginxPaths};
pub use ports::{free_addr, free_port};
pub use process::{wait_until, ProxyProcess};
pub use proxies::{
    proxy_binary, require_proxies, require_proxy, skip_or_fail, REQUIRE_PROXIES_ENV,
};

/// The name of the user running the tests: what the agent journals for their requests.
pub fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .expect("the user database answers")
        .expect("the test user has a name")
        .name
}

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
}

/// Path of the `cutover` executable, built once per test process with
/// `cargo build -p cutover --bin cutover --message-format=json` from the workspace root
/// (`$CARGO` if set, as it is under `cargo test`, else `cargo`), with `--release` when
/// this harness itself is an optimized build (e.g. a measuring example run with
/// `--release`). The path is taken from the `compiler-artifact` message of that build.
/// Panics with cargo's output if the build fails. `CUTOVER_BINARY=<path>` uses that
/// executable instead (another build, or an installed package), e.g. to compare two builds
/// with the benchmark.
pub fn cutover_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| match std::env::var_os("CUTOVER_BINARY") {
            Some(path) => PathBuf::from(path),
            None => build_cutover(),
        })
        .clone()
}

fn build_cutover() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args([
            "build",
            "-p",
            "cutover",
            "--bin",
            "cutover",
            "--message-format=json",
        ])
        // The binary is built in the profile the tests were built in, so a release
        // measuring program measures a release agent.
        .args(if cfg!(debug_assertions) {
            &[][..]
        } else {
            &["--release"][..]
        })
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cargo:?} build: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        panic!(
            "cargo build of the cutover binary failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            // Compiler messages are JSON on stdout: show their rendered form.
            stdout
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|m| m["message"]["rendered"].as_str().map(str::to_owned))
                .collect::<String>()
        );
    }
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "cutover")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "bin"))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo build printed no executable for the cutover binary"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn cutover_binary_is_built_once() {
        let first = super::cutover_binary();
        assert!(first.is_file(), "{}", first.display());
        assert_eq!(first.file_name().and_then(|n| n.to_str()), Some("cutover"));
        assert_eq!(super::cutover_binary(), first);
    }
}
