//! The bad-input battery, against a running agent and real HAProxy 2.6: request lines sent
//! raw on the control socket, and configs given to `cutover check` and to the running agent
//! (SIGHUP). Whitespace, newlines, NUL and `#` in names, keys and values; unknown services,
//! colours, maps, fields and verbs; wrong types; a 10 MB line; deep nesting; non-UTF-8;
//! empty route lists and maps; template errors and templates reaching outside the template
//! directory. Every case must be refused with an error that names the problem, and the
//! live files (HAProxy's config and maps, the state, the agent config) must be
//! byte-identical afterwards, with the agent still serving.
//!
//! `requests.rs` holds the socket cases, `configs.rs` the config cases.
// Test code: an `unwrap()` that fails is a failed test.
#![allow(clippy::unwrap_used)]

use cutover_tests::agent::Setup;

mod configs;
mod requests;

/// The Host header of the requests these tests send through the proxy.
pub const HOST: &str = "www.example.test";

/// Bytes of every file that must not change, and the saved state (checkpoint and log, as
/// the agent loads it).
pub fn live_files(s: &Setup) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = [
        "haproxy.cfg",
        "maps/routes.map",
        "maps/services.map",
        "cutover.toml",
    ]
    .iter()
    .map(|f| (f.to_string(), std::fs::read(s.file(f)).unwrap()))
    .collect();
    let state = s.saved_state().unwrap();
    files.push(("state".into(), serde_json::to_vec(&state).unwrap()));
    files
}
