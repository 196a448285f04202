//! The command line: its grammar ([`args`]), the dispatch of a verb to the agent and back
//! ([`run`]), the short tables printed for humans ([`print`]), the man pages and shell
//! completions written from the grammar itself ([`generate`]; `cutover.toml(5)` from the
//! config examples in `manconfig`, service names from the running agent in `complete`),
//! and the fleet store as a client of etcd (`fleet`, `--etcd`). Every client verb takes
//! `--json` to print the agent's reply as is.

pub mod args;
mod complete;
#[cfg(feature = "etcd")]
pub mod fleet;
pub mod generate;
mod manconfig;
pub mod print;
pub mod run;

pub use args::{Cli, EtcdArgs, HistoryArgs, MapVerb, TlsVerb, Verb};
pub use print::print_reply;

/// Exit codes, as documented in the README and the man page.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// The operation was refused or failed.
    pub const FAILED: i32 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: i32 = 2;
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
}

/// Default config path.
pub const DEFAULT_CONFIG: &str = "/etc/cutover/cutover.toml";
/// Default time to wait for the agent's answer, in seconds.
pub const DEFAULT_TIMEOUT_S: u64 = 120;
