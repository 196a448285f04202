//! The `[agent]` section: the control socket, its limits, the state directory and the
//! reconcile interval, with their defaults.

use std::path::PathBuf;
use std::time::Duration;

/// Default control socket.
pub const DEFAULT_SOCKET: &str = "/run/cutover/cutover.sock";
/// Default directory of state and history.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cutover";
/// Default mode of the control socket: owner and group may read and write.
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;
/// Default cap on concurrent control connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Default cap on the control connections one uid may hold (administrators excepted).
pub const DEFAULT_MAX_CONNECTIONS_PER_UID: usize = 8;
/// Default number of control connections kept for root and the admins
/// (`allow_uids`/`allow_gids`, primary group).
pub const DEFAULT_RESERVED_CONNECTIONS: usize = 4;
/// Default longest request line on the control socket, in bytes.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
/// Default time a control client has to send a request line, in milliseconds.
pub const DEFAULT_READ_TIMEOUT_MS: u64 = 10_000;
/// Default time a desired-state file must stay unchanged before it is applied, ms.
pub const DEFAULT_DESIRED_DEBOUNCE_MS: u64 = 500;
/// Default interval of the drift and foreign-reload check, in milliseconds.
pub const DEFAULT_RECONCILE_INTERVAL_MS: u64 = 1_000;

/// Default size at which the history journal rotates, bytes (16 MiB).
pub const DEFAULT_JOURNAL_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Default number of rotated journal files kept (`history.jsonl.1` ...).
pub const DEFAULT_JOURNAL_FILES: u32 = 4;
/// Default age past which a rotated journal file is removed, days.
pub const DEFAULT_JOURNAL_MAX_AGE_DAYS: u64 = 365;

/// How far the history journal may grow: it rotates when a line would take it past
/// `max_bytes`, keeps `files` rotated files, and removes those older than `max_age`; at
/// most `max_bytes * (files + 1)` bytes on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalLimits {
    /// Size at which the journal rotates, bytes. Default [`DEFAULT_JOURNAL_MAX_BYTES`].
    pub max_bytes: u64,
    /// Rotated files kept. Default [`DEFAULT_JOURNAL_FILES`].
    pub files: u32,
    /// Age past which a rotated file (by its last write) is removed. Default
    /// [`DEFAULT_JOURNAL_MAX_AGE_DAYS`] days.
    pub max_age: Duration,
}

impl Default for JournalLimits {
    fn default() -> JournalLimits {
        JournalLimits {
            max_bytes: DEFAULT_JOURNAL_MAX_BYTES,
            files: DEFAULT_JOURNAL_FILES,
            max_age: Duration::from_secs(DEFAULT_JOURNAL_MAX_AGE_DAYS * 86_400),
        }
    }
}

/// The agent's own settings (`[agent]`): its control socket and the limits on it, where
/// it keeps state, the desired-state file it follows, and who may ask for what.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Control socket path. Default [`DEFAULT_SOCKET`].
    pub socket: PathBuf,
    /// Control socket mode. Default [`DEFAULT_SOCKET_MODE`].
    pub socket_mode: u32,
    /// Group owning the control socket; default: the agent's own group.
    pub socket_group: Option<String>,
    /// Directory of the state file and history journal. Default [`DEFAULT_STATE_DIR`].
    pub state_dir: PathBuf,
    /// Cap on concurrent control connections. Default [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Cap on the control connections of one uid; uid 0, the agent's own uid and the
    /// admins (`allow_uids`, primary group in `allow_gids`) have none. Default
    /// [`DEFAULT_MAX_CONNECTIONS_PER_UID`].
    pub max_connections_per_uid: usize,
    /// Control connections only uid 0, the agent's own uid and the admins may take (the
    /// last ones of `max_connections`). Default [`DEFAULT_RESERVED_CONNECTIONS`].
    pub reserved_connections: usize,
    /// Longest request line, bytes. Default [`DEFAULT_MAX_LINE`].
    pub max_line: usize,
    /// Time to receive one request line. Default [`DEFAULT_READ_TIMEOUT_MS`] ms.
    pub read_timeout: Duration,
    /// Interval of the drift / foreign-reload check. Default
    /// [`DEFAULT_RECONCILE_INTERVAL_MS`] ms.
    pub reconcile_interval: Duration,
    /// A desired-state file to reconcile whenever it changes (see `desired`); none by
    /// default.
    pub desired_state: Option<PathBuf>,
    /// How long the desired-state file must stay unchanged before it is applied. Default
    /// [`DEFAULT_DESIRED_DEBOUNCE_MS`] ms.
    pub desired_debounce: Duration,
    /// How far the history journal may grow (`journal_max_bytes`, `journal_files`,
    /// `journal_max_age_days`).
    pub journal: JournalLimits,
    /// Who may run which commands (`allow_uids`, `allow_gids`, `read_uids`, `read_gids`;
    /// numbers or names in the file, resolved to numbers when it is validated; all empty by
    /// default: whoever can open the socket). See [`crate::access`].
    pub access: crate::access::Policy,
}
