//! The command line: its grammar ([`args`]), the dispatch of a verb to the agent and back
//! ([`run`]), the short tables printed for humans ([`print`]), the man pages and shell
//! completions written from the grammar itself ([`generate`]; `cutover.toml(5)` from the
//! config examples in `manconfig`, service names from the running agent in `complete`),
//! the fleet store as a client of etcd (`fleet`, `--etcd`), and which global flag each verb
//! takes ([`flags`]). Every client verb takes `--json` to print the agent's reply as is, and
//! prints every failure of its own (bad config, agent unreachable, bad usage) as a JSON
//! error object of the same shape ([`print::fail`]).

pub mod args;
mod civil;
mod complete;
pub mod flags;
#[cfg(feature = "etcd")]
pub mod fleet;
pub mod generate;
mod manconfig;
pub mod print;
pub mod run;
pub mod when;

pub use args::{Cli, EtcdArgs, HistoryArgs, MapVerb, TlsVerb, Verb};
pub use print::{fail, print_reply};

/// Exit codes, as documented in the README and the man page.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// The operation was refused or failed.
    pub const FAILED: i32 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: i32 = 2;
    /// `status`: the agent answered and reports a fault (`fault` in its reply: a check
    /// that keeps failing, such as the proxy unreachable). Not for `status --cluster`.
    pub const FAULT: i32 = 3;
    /// The config is invalid.
    pub const CONFIG: i32 = 64;
    /// The agent cannot be reached.
    pub const UNAVAILABLE: i32 = 69;
    /// Internal error (I/O on the local machine).
    pub const SOFTWARE: i32 = 70;
    /// `--remote`: the agent's role for this client's certificate does not allow the verb
    /// (authorisation).
    pub const DENIED: i32 = 77;
    /// `--remote`: a certificate was refused: the agent's (not valid for `--remote-name`,
    /// or not signed by `--tls-ca`) or this client's (authentication).
    pub const UNAUTHENTICATED: i32 = 80;

    /// The name of an exit code, as `--json` error objects carry it (`data.error`).
    pub fn name(code: i32) -> &'static str {
        match code {
            OK => "ok",
            FAILED => "failed",
            USAGE => "usage",
            FAULT => "fault",
            CONFIG => "config",
            UNAVAILABLE => "unavailable",
            DENIED => "denied",
            UNAUTHENTICATED => "unauthenticated",
            _ => "software",
        }
    }
}

/// What `--version` prints after the name: the package version, the git commit it was
/// built from and the build date (UTC), e.g. `0.9.0 (1d99567a8b2c 2026-12-07)`. The commit
/// is `unknown` when the source was not a git checkout and `CUTOVER_GIT_COMMIT` was not set;
/// the date is `SOURCE_DATE_EPOCH`'s when set (see agent/build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("CUTOVER_GIT_COMMIT"),
    " ",
    env!("CUTOVER_BUILD_DATE"),
    ")"
);

/// Default config path.
pub const DEFAULT_CONFIG: &str = "/etc/cutover/cutover.toml";
/// Default time to wait for the agent's answer, in seconds.
pub const DEFAULT_TIMEOUT_S: u64 = 120;
