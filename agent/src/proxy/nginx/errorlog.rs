//! Nginx's error log and checker messages: parsing a line into level, process and message,
//! and reading what a log file gained since an offset.
//!
//! A log line is `YYYY/MM/DD HH:MM:SS [level] PID#TID: message`; before a log file is
//! open, Nginx writes `nginx: [level] message` to stderr. A reload that the master refuses
//! leaves only this trace: `[emerg]` lines logged by the master's PID, and no new worker.

use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Most bytes read from the log in one call; the rest is read by the next call.
pub const MAX_READ: u64 = 1024 * 1024;

/// Nginx's log levels, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `[debug]`: tracing, written only by a debug build of Nginx.
    Debug,
    /// `[info]`: routine events, e.g. a client closing its connection.
    Info,
    /// `[notice]`: process events: signals received, workers started and exited.
    Notice,
    /// `[warn]`: a problem Nginx works around; the checker still passes the config.
    Warn,
    /// `[error]`: an error of one request or connection, e.g. an upstream refused it.
    Error,
    /// `[crit]`: a serious failure, e.g. a file that cannot be opened (fatal for a config).
    Crit,
    /// `[alert]`: a failure of a process itself, e.g. a worker that died (fatal for a config).
    Alert,
    /// `[emerg]`: the config cannot be used (syntax, unknown directive, bind failure).
    Emerg,
}

impl Level {
    /// The level named by the word between the brackets (`warn`, `emerg`, ...); `None` for
    /// any other word.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "debug" => Level::Debug,
            "info" => Level::Info,
            "notice" => Level::Notice,
            "warn" => Level::Warn,
            "error" => Level::Error,
            "crit" => Level::Crit,
            "alert" => Level::Alert,
            "emerg" => Level::Emerg,
            _ => return None,
        })
    }

    /// The word Nginx writes between the brackets.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Notice => "notice",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Crit => "crit",
            Level::Alert => "alert",
            Level::Emerg => "emerg",
        }
    }

    /// `crit`, `alert` and `emerg`: a config with such a message is not used.
    pub fn is_fatal(self) -> bool {
        self >= Level::Crit
    }
}

/// One parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Severity, from the bracketed word.
    pub level: Level,
    /// Process that logged it (absent in the `nginx: [level] ...` form).
    pub pid: Option<u32>,
    /// The text after the level (and after `PID#TID: `), without the line end.
    pub message: String,
}

/// As Nginx's own checker prints it: `[level] message`.
impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.level.as_str(), self.message)
    }
}

/// Parses one log or stderr line; `None` for lines of another shape (e.g. `nginx: the
/// configuration file ... syntax is ok`).
pub fn parse_line(line: &str) -> Option<LogLine> {
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    let level = Level::parse(&line[open + 1..close])?;
    let prefix = line[..open].trim();
    let rest = line[close + 1..].trim_start();
    if prefix == "nginx:" {
        return Some(LogLine {
            level,
            pid: None,
            message: rest.to_owned(),
        });
    }
    // `YYYY/MM/DD HH:MM:SS`
    let stamp = prefix.as_bytes();
    if stamp.len() != 19 || stamp[4] != b'/' || stamp[13] != b':' {
        return None;
    }
    let (ids, message) = rest.split_once(": ")?;
    let pid = ids.split_once('#')?.0.parse().ok()?;
    Some(LogLine {
        level,
        pid: Some(pid),
        message: message.to_owned(),
    })
}

/// Messages in `text` at `level` or above, of process `pid` when given, in order, with
/// consecutive repeats (Nginx retries a busy bind five times) shown once.
pub fn messages(text: &str, level: Level, pid: Option<u32>) -> Vec<LogLine> {
    let mut out: Vec<LogLine> = Vec::new();
    for line in text.lines().filter_map(parse_line) {
        if line.level < level || (pid.is_some() && line.pid != pid) {
            continue;
        }
        if out.last().is_some_and(|l| l.message == line.message) {
            continue;
        }
        out.push(line);
    }
    out
}

/// Reads what a log file gains after the point where it was opened.
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    offset: u64,
}

impl Tail {
    /// Starts at the current end of `path` (or at 0 when it does not exist yet).
    pub fn at_end(path: &Path) -> Tail {
        let offset = std::fs::metadata(path).map_or(0, |m| m.len());
        Tail {
            path: path.to_owned(),
            offset,
        }
    }

    /// Text added since the last call (at most [`MAX_READ`] bytes). A file that became
    /// shorter was rotated or truncated: it is read from its start.
    pub fn read_new(&mut self) -> std::io::Result<String> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if len < self.offset {
            self.offset = 0;
        }
        if len == self.offset {
            return Ok(String::new());
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        file.take(MAX_READ).read_to_end(&mut buf)?;
        // Keep a partial last line for the next call.
        let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        buf.truncate(complete);
        self.offset += complete as u64;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_and_stderr_lines() {
        let l = parse_line(
            "2026/11/23 16:23:38 [emerg] 29158#29158: bind() to 127.0.0.1:18182 failed (98: Address already in use)",
        )
        .unwrap();
        assert_eq!(l.level, Level::Emerg);
        assert_eq!(l.pid, Some(29158));
        assert_eq!(
            l.to_string(),
            "[emerg] bind() to 127.0.0.1:18182 failed (98: Address already in use)"
        );
        let s = parse_line("nginx: [warn] could not build optimal map_hash, you should increase either map_hash_max_size: 8").unwrap();
        assert_eq!((s.level, s.pid), (Level::Warn, None));
        assert!(s.message.starts_with("could not build optimal map_hash"));
        let c = parse_line("2026/11/23 16:23:38 [error] 7#7: *12 connect() failed (111: Connection refused) while connecting to upstream").unwrap();
        assert_eq!(
            c.message,
            "*12 connect() failed (111: Connection refused) while connecting to upstream"
        );
        assert_eq!(
            parse_line("nginx: the configuration file /x syntax is ok"),
            None
        );
        assert_eq!(parse_line("# [emerg] in a comment"), None);
        assert_eq!(parse_line("2026/11/23 16:23:38 [bogus] 1#1: x"), None);
    }

    #[test]
    fn fatal_levels() {
        assert!(Level::Emerg.is_fatal() && Level::Alert.is_fatal() && Level::Crit.is_fatal());
        assert!(!Level::Error.is_fatal() && !Level::Warn.is_fatal());
    }

    #[test]
    fn messages_of_one_process_without_repeats() {
        let text = "\
2026/11/23 16:23:38 [notice] 5#5: signal 1 (SIGHUP) received from 9, reconfiguring
2026/11/23 16:23:38 [emerg] 5#5: bind() to 127.0.0.1:1 failed (98: Address already in use)
2026/11/23 16:23:38 [notice] 5#5: try again to bind() after 500ms
2026/11/23 16:23:38 [emerg] 5#5: bind() to 127.0.0.1:1 failed (98: Address already in use)
2026/11/23 16:23:38 [crit] 6#6: a worker's trouble
2026/11/23 16:23:38 [emerg] 5#5: still could not bind()
";
        let m: Vec<String> = messages(text, Level::Crit, Some(5))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            m,
            [
                "[emerg] bind() to 127.0.0.1:1 failed (98: Address already in use)",
                "[emerg] still could not bind()"
            ]
        );
        assert_eq!(messages(text, Level::Crit, None).len(), 3);
    }

    #[test]
    fn tail_reads_only_new_complete_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("error.log");
        let mut tail = Tail::at_end(&path);
        assert_eq!(tail.read_new().unwrap(), "");
        std::fs::write(&path, "old line\n").unwrap();
        let mut tail2 = Tail::at_end(&path);
        assert_eq!(tail.read_new().unwrap(), "old line\n");
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"new line\npart").unwrap();
        assert_eq!(tail2.read_new().unwrap(), "new line\n");
        f.write_all(b"ial\n").unwrap();
        assert_eq!(tail2.read_new().unwrap(), "partial\n");
        // Truncated (rotated): read from the start.
        std::fs::write(&path, "x\n").unwrap();
        assert_eq!(tail2.read_new().unwrap(), "x\n");
    }
}
