//! The `[[hooks]]` tables: what the agent tells the outside world when something happens
//! (a switch, a canary step, an automatic rollback, a fault, a drift repair, a refused
//! config), and how: an HTTP `POST` of the event as JSON (`url`), or a command run with the
//! event on its standard input (`command`). Validation reads each `secret_file` (so a
//! missing or empty secret is refused by `cutover check`) and nothing else.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod url;

pub use url::HookUrl;

/// Default time one attempt of a hook may take, milliseconds.
pub const DEFAULT_HOOK_TIMEOUT_MS: u64 = 5_000;
/// Longest `timeout_ms` accepted, milliseconds (five minutes).
pub const MAX_HOOK_TIMEOUT_MS: u64 = 300_000;
/// Default number of retries after a failed attempt.
pub const DEFAULT_HOOK_RETRIES: u32 = 2;
/// Most retries accepted.
pub const MAX_HOOK_RETRIES: u32 = 10;
/// Default wait before the first retry, milliseconds; it doubles for each further one.
pub const DEFAULT_HOOK_BACKOFF_MS: u64 = 500;
/// Longest wait between two attempts, milliseconds (one minute): `backoff_ms` is capped
/// there and doubling stops there.
pub const MAX_HOOK_BACKOFF_MS: u64 = 60_000;
/// Most `[[hooks]]` tables.
pub const MAX_HOOKS: usize = 32;
/// Longest `url`, bytes.
pub const MAX_URL_LEN: usize = 2_048;
/// Most words of a `command`, and the longest word, bytes.
pub const MAX_COMMAND_WORDS: usize = 64;
/// Longest word of a `command`, bytes.
pub const MAX_COMMAND_WORD_LEN: usize = 4_096;
/// Largest `secret_file`, bytes.
pub const MAX_SECRET_BYTES: u64 = 4_096;

/// What happened, as a hook's `events` names it. The names are the `event` field of the
/// JSON a hook receives and the value of `CUTOVER_EVENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// A service's live colour moved (`switch`, `promote`, `apply`).
    Switch,
    /// A canary started, changed its share or ended (`canary`, `abort`, or `apply` changing
    /// only canaries).
    Canary,
    /// A colour was drained or taken out of drain.
    Drain,
    /// Somebody asked for the previous colour (`rollback`).
    Rollback,
    /// The post-switch watch saw the new colour fail and went back to the previous one.
    AutoRollback,
    /// The post-switch watch wanted a rollback and the rollback failed.
    RollbackFailed,
    /// The post-switch watch saw the new colour healthy.
    WatchPassed,
    /// The post-switch watch saw no traffic and holds the change for a person to decide.
    WatchHeld,
    /// A routing request was refused (any step: access, gate, validation, the proxy).
    Refused,
    /// The agent's check of the proxy has failed for longer than the grace period.
    Fault,
    /// A fault ended: files and proxy match the desired state again.
    Recovered,
    /// The agent repaired a difference between the desired state and the files or the proxy.
    DriftRepaired,
    /// A new config was put in force (SIGHUP or `reload-config`).
    ConfigReloaded,
    /// A new config was refused; the old one stays in force.
    ConfigRefused,
}

impl EventKind {
    /// Every event, in the order the docs list them.
    pub const ALL: [EventKind; 14] = [
        EventKind::Switch,
        EventKind::Canary,
        EventKind::Drain,
        EventKind::Rollback,
        EventKind::AutoRollback,
        EventKind::RollbackFailed,
        EventKind::WatchPassed,
        EventKind::WatchHeld,
        EventKind::Refused,
        EventKind::Fault,
        EventKind::Recovered,
        EventKind::DriftRepaired,
        EventKind::ConfigReloaded,
        EventKind::ConfigRefused,
    ];

    /// The event's name: `switch`, `canary`, `drain`, `rollback`, `auto_rollback`,
    /// `rollback_failed`, `watch_passed`, `watch_held`, `refused`, `fault`, `recovered`,
    /// `drift_repaired`, `config_reloaded`, `config_refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Switch => "switch",
            EventKind::Canary => "canary",
            EventKind::Drain => "drain",
            EventKind::Rollback => "rollback",
            EventKind::AutoRollback => "auto_rollback",
            EventKind::RollbackFailed => "rollback_failed",
            EventKind::WatchPassed => "watch_passed",
            EventKind::WatchHeld => "watch_held",
            EventKind::Refused => "refused",
            EventKind::Fault => "fault",
            EventKind::Recovered => "recovered",
            EventKind::DriftRepaired => "drift_repaired",
            EventKind::ConfigReloaded => "config_reloaded",
            EventKind::ConfigRefused => "config_refused",
        }
    }

    /// The event named `name`, if there is one.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

impl serde::Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The key of a webhook's signature, read from `secret_file`. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// How a hook delivers an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookAction {
    /// `POST` the event's JSON to `url`.
    Http {
        /// Where.
        url: HookUrl,
        /// Key of the `X-Cutover-Signature: sha256=<hex>` header (HMAC-SHA256 of the body);
        /// none: no signature.
        secret: Option<Secret>,
        /// PEM file of the certificate authorities an `https` receiver is verified with.
        /// Default: the system's bundle.
        ca_file: Option<PathBuf>,
    },
    /// Run `argv` (the program, an absolute path, then its arguments) with the event's JSON
    /// on standard input and `CUTOVER_*` variables in its environment.
    Command {
        /// The program and its arguments.
        argv: Vec<String>,
    },
}

/// One validated `[[hooks]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookConfig {
    /// The hook's name: the `hook` label of its metrics and the name in its log lines.
    pub name: String,
    /// The events it receives, in the order given, without repeats.
    pub events: Vec<EventKind>,
    /// What it does with one.
    pub action: HookAction,
    /// How long one attempt may take (connect, send and the answer's status line; or the
    /// command's whole run). Default [`DEFAULT_HOOK_TIMEOUT_MS`].
    pub timeout: Duration,
    /// Attempts after the first that failed. Default [`DEFAULT_HOOK_RETRIES`].
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one, at most
    /// [`MAX_HOOK_BACKOFF_MS`]. Default [`DEFAULT_HOOK_BACKOFF_MS`].
    pub backoff: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHook {
    name: String,
    events: Vec<String>,
    url: Option<String>,
    secret_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    command: Option<Vec<String>>,
    timeout_ms: Option<u64>,
    retries: Option<u32>,
    backoff_ms: Option<u64>,
}

/// Validates the tables, adding every problem found to `problems`; relative paths are
/// taken from `base` (the config file's directory).
pub(super) fn validate(
    raw: Vec<RawHook>,
    base: &Path,
    problems: &mut Vec<String>,
) -> Vec<HookConfig> {
    if raw.len() > MAX_HOOKS {
        problems.push(format!("hooks: {} tables, at most {MAX_HOOKS}", raw.len()));
        return vec![];
    }
    let mut hooks: Vec<HookConfig> = Vec::with_capacity(raw.len());
    let mut names = std::collections::BTreeSet::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("hooks[{i}] ({})", r.name);
        let before = problems.len();
        let mut problem = |p: String| problems.push(format!("{at}.{p}"));
        if r.name.is_empty()
            || r.name.len() > 64
            || !r
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            problem("name: 1 to 64 letters, digits, '-', '_' or '.'".into());
        }
        if !names.insert(r.name.clone()) {
            problem("name: another hook has this name".into());
        }
        let mut events = Vec::new();
        if r.events.is_empty() {
            problem("events: empty; name at least one event".into());
        }
        for name in &r.events {
            match EventKind::parse(name) {
                Some(e) if !events.contains(&e) => events.push(e),
                Some(_) => {}
                None => problem(format!(
                    "events: {name:?} is not an event; the events are {}",
                    EventKind::ALL.map(EventKind::as_str).join(", ")
                )),
            }
        }
        let abs = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let action = match (r.url, r.command) {
            (Some(url), None) => {
                let url = HookUrl::parse(&url)
                    .map_err(|e| problem(format!("url: {url:?} {e}")))
                    .ok();
                let secret = r.secret_file.map(abs).and_then(|p| {
                    read_secret(&p)
                        .map_err(|e| problem(format!("secret_file: {}: {e}", p.display())))
                        .ok()
                });
                let ca_file = r.ca_file.map(abs);
                if let (Some(ca), Some(u)) = (&ca_file, &url) {
                    if !u.tls {
                        problem(format!(
                            "ca_file: {} is given for an http:// url; it verifies https only",
                            ca.display()
                        ));
                    }
                }
                url.map(|url| HookAction::Http {
                    url,
                    secret,
                    ca_file,
                })
            }
            (None, Some(argv)) => {
                if r.secret_file.is_some() || r.ca_file.is_some() {
                    problem("secret_file and ca_file belong to a url hook, not a command".into());
                }
                match check_command(&argv) {
                    Ok(()) => Some(HookAction::Command { argv }),
                    Err(e) => {
                        problem(format!("command: {e}"));
                        None
                    }
                }
            }
            (Some(_), Some(_)) => {
                problem("url, command: give one of them, not both".into());
                None
            }
            (None, None) => {
                problem("url, command: give one of them (where the event goes)".into());
                None
            }
        };
        let timeout_ms = r.timeout_ms.unwrap_or(DEFAULT_HOOK_TIMEOUT_MS);
        if !(1..=MAX_HOOK_TIMEOUT_MS).contains(&timeout_ms) {
            problem(format!(
                "timeout_ms: {timeout_ms} is not 1 to {MAX_HOOK_TIMEOUT_MS}"
            ));
        }
        let retries = r.retries.unwrap_or(DEFAULT_HOOK_RETRIES);
        if retries > MAX_HOOK_RETRIES {
            problem(format!(
                "retries: {retries} is more than {MAX_HOOK_RETRIES}"
            ));
        }
        let backoff_ms = r.backoff_ms.unwrap_or(DEFAULT_HOOK_BACKOFF_MS);
        if backoff_ms > MAX_HOOK_BACKOFF_MS {
            problem(format!(
                "backoff_ms: {backoff_ms} is more than {MAX_HOOK_BACKOFF_MS}"
            ));
        }
        if let (Some(action), true) = (action, problems.len() == before) {
            hooks.push(HookConfig {
                name: r.name,
                events,
                action,
                timeout: Duration::from_millis(timeout_ms),
                retries,
                backoff: Duration::from_millis(backoff_ms),
            });
        }
    }
    hooks
}

/// A command's words: an absolute program, bounded words without NUL.
fn check_command(argv: &[String]) -> Result<(), String> {
    let Some(program) = argv.first() else {
        return Err("empty; give the program (an absolute path) and its arguments".into());
    };
    if argv.len() > MAX_COMMAND_WORDS {
        return Err(format!("{} words, at most {MAX_COMMAND_WORDS}", argv.len()));
    }
    if let Some(w) = argv.iter().find(|w| w.len() > MAX_COMMAND_WORD_LEN) {
        return Err(format!(
            "a word of {} bytes, at most {MAX_COMMAND_WORD_LEN}",
            w.len()
        ));
    }
    if argv.iter().any(|w| w.contains('\0')) {
        return Err("a word contains a NUL byte".into());
    }
    if !Path::new(program).is_absolute() {
        return Err(format!(
            "{program:?} is not an absolute path (no search of PATH is made)"
        ));
    }
    Ok(())
}

/// The key in `path`: a regular file of 1 to [`MAX_SECRET_BYTES`] bytes, without a final
/// newline.
fn read_secret(path: &Path) -> Result<Secret, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_SECRET_BYTES {
        return Err(format!("{} bytes, at most {MAX_SECRET_BYTES}", meta.len()));
    }
    let mut key = std::fs::read(path).map_err(|e| e.to_string())?;
    while key.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
        key.pop();
    }
    if key.is_empty() {
        return Err("empty".into());
    }
    Ok(Secret(key))
}

#[cfg(test)]
mod tests;
