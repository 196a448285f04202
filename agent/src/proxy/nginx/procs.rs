//! The Nginx processes as /proc shows them: the master named by the pid file, its children,
//! and what each child is doing, read from the process title Nginx sets
//! (`nginx: worker process`, `nginx: worker process is shutting down`, ...).
//!
//! A worker whose title says it is shutting down has already closed its listening sockets
//! (Nginx sets the title and closes them in the same step, before it returns to its event
//! loop), so it accepts no new connection; only workers titled `nginx: worker process`
//! accept.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

/// Largest pid file read, in bytes.
const MAX_PID_FILE: u64 = 64;

/// What one Nginx process is, from its title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The master (`nginx: master process ...`): reads the config, starts the workers.
    Master,
    /// A worker that accepts connections.
    Worker,
    /// A worker of a previous config that no longer accepts, finishing its connections.
    ShuttingDown,
    /// Cache manager or loader, or anything else.
    Other(String),
}

/// The title of a process from its `/proc/<pid>/cmdline` bytes: Nginx writes its title
/// over the argument area and pads it with NULs.
pub fn parse_title(cmdline: &[u8]) -> String {
    let text = String::from_utf8_lossy(cmdline);
    text.split('\0')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_owned()
}

/// The role a title names.
pub fn role_of(title: &str) -> Role {
    match title {
        t if t.starts_with("nginx: master process") => Role::Master,
        "nginx: worker process" => Role::Worker,
        "nginx: worker process is shutting down" => Role::ShuttingDown,
        other => Role::Other(other.to_owned()),
    }
}

/// Pid-file text that is not one process id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a process id")]
pub struct NotAPid {
    /// The text, trimmed.
    pub text: String,
}

/// Why the pid file does not name a running Nginx master.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// The pid file cannot be read (missing: Nginx is not running).
    #[error("pid file {}: {source}", path.display())]
    Read {
        /// The configured pid file.
        path: PathBuf,
        /// Why it could not be read.
        source: io::Error,
    },
    /// The pid file is larger than any pid.
    #[error("pid file {} is {len} bytes, not a pid", path.display())]
    TooLarge {
        /// The configured pid file.
        path: PathBuf,
        /// Its size, in bytes (the limit is 64).
        len: u64,
    },
    /// The pid file does not hold a process id.
    #[error("pid file {}: {source}", path.display())]
    NotAPid {
        /// The configured pid file.
        path: PathBuf,
        /// The text it holds instead.
        source: NotAPid,
    },
    /// No process has the pid the file names.
    #[error("pid file {} names pid {pid}, which is not running", path.display())]
    NotRunning {
        /// The configured pid file.
        path: PathBuf,
        /// The pid it names.
        pid: u32,
    },
    /// The process the pid file names is not an Nginx master (`title` is its title).
    #[error("pid file {} names pid {pid}, which is not an nginx master ({title:?})", path.display())]
    NotAMaster {
        /// The configured pid file.
        path: PathBuf,
        /// The pid it names.
        pid: u32,
        /// That process's title, from `/proc/<pid>/cmdline`.
        title: String,
    },
}

/// The PID in pid-file text (one decimal number, surrounding whitespace allowed).
pub fn parse_pid(text: &str) -> Result<u32, NotAPid> {
    let t = text.trim();
    match t.parse::<u32>() {
        Ok(pid) if pid > 1 => Ok(pid),
        _ => Err(NotAPid { text: t.to_owned() }),
    }
}

/// PIDs in a `/proc/<pid>/task/<tid>/children` file (space-separated).
pub fn parse_children(text: &str) -> Vec<u32> {
    text.split_ascii_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The parent PID in a `/proc/<pid>/stat` line. The command name (in parentheses) may
/// itself contain spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

/// The title of process `pid`, `None` once it is gone.
pub fn title(pid: u32) -> Option<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|b| parse_title(&b))
        .filter(|t| !t.is_empty())
}

/// The role of process `pid`, `None` once it is gone.
pub fn role(pid: u32) -> Option<Role> {
    title(pid).map(|t| role_of(&t))
}

/// The master named by `pid_file`, checked to be a running Nginx master.
pub fn master(pid_file: &Path) -> Result<u32, PidFileError> {
    let path = || pid_file.to_owned();
    let read = |source| PidFileError::Read {
        path: path(),
        source,
    };
    let meta = std::fs::metadata(pid_file).map_err(read)?;
    if meta.len() > MAX_PID_FILE {
        return Err(PidFileError::TooLarge {
            path: path(),
            len: meta.len(),
        });
    }
    let text = std::fs::read_to_string(pid_file).map_err(read)?;
    let pid = parse_pid(&text).map_err(|source| PidFileError::NotAPid {
        path: path(),
        source,
    })?;
    match title(pid) {
        None => Err(PidFileError::NotRunning { path: path(), pid }),
        Some(t) if role_of(&t) == Role::Master => Ok(pid),
        Some(title) => Err(PidFileError::NotAMaster {
            path: path(),
            pid,
            title,
        }),
    }
}

/// The children of `pid`: from `/proc/<pid>/task/*/children` where the kernel has it,
/// else by scanning every process's parent.
pub fn children(pid: u32) -> io::Result<BTreeSet<u32>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))?;
    let mut out = BTreeSet::new();
    let mut supported = true;
    for task in tasks {
        let task = task?;
        match std::fs::read_to_string(task.path().join("children")) {
            Ok(text) => out.extend(parse_children(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                supported = false;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    if supported {
        return Ok(out);
    }
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) {
            if parse_stat_ppid(&stat) == Some(pid) {
                out.insert(child);
            }
        }
    }
    Ok(out)
}

/// The children of a master, by role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Children {
    /// Every child, whatever it does.
    pub all: BTreeSet<u32>,
    /// Workers that accept connections.
    pub workers: BTreeSet<u32>,
}

/// The children of a master could not be read (it is gone, or /proc refuses).
#[derive(Debug, thiserror::Error)]
#[error("nginx master {master}: {source}")]
pub struct ChildrenError {
    /// The master's pid.
    pub master: u32,
    /// The error reading `/proc` for its children.
    pub source: io::Error,
}

/// The children of `master` and which of them accept connections.
pub fn snapshot(master: u32) -> Result<Children, ChildrenError> {
    let all = children(master).map_err(|source| ChildrenError { master, source })?;
    let workers = all
        .iter()
        .copied()
        .filter(|p| role(*p) == Some(Role::Worker))
        .collect();
    Ok(Children { all, workers })
}

/// True while `pid` exists (a zombie counts: its parent has not reaped it yet).
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_and_roles() {
        let padded = b"nginx: worker process\0\0\0\0\0\0";
        assert_eq!(parse_title(padded), "nginx: worker process");
        assert_eq!(role_of(&parse_title(padded)), Role::Worker);
        assert_eq!(
            role_of("nginx: worker process is shutting down"),
            Role::ShuttingDown
        );
        let master = b"nginx: master process /usr/sbin/nginx -c /x/nginx.conf -g daemon off;\0";
        assert_eq!(role_of(&parse_title(master)), Role::Master);
        // Arguments of an ordinary process are joined with spaces.
        assert_eq!(parse_title(b"sleep\x0030\x00"), "sleep 30");
        assert!(matches!(
            role_of("nginx: cache manager process"),
            Role::Other(_)
        ));
    }

    #[test]
    fn pids_children_and_parents() {
        assert_eq!(parse_pid("1234\n"), Ok(1234));
        assert!(parse_pid("").is_err());
        assert!(parse_pid("12ab").is_err());
        assert!(parse_pid("1").is_err());
        assert_eq!(parse_children("29166 29167 \n"), vec![29166, 29167]);
        assert_eq!(parse_children(""), Vec::<u32>::new());
        let stat = "29166 (nginx) S 29158 29158 29158 0 -1 4194624 171 0 0 0";
        assert_eq!(parse_stat_ppid(stat), Some(29158));
        let odd = "77 (a) b) (c) R 42 77 77 0";
        assert_eq!(parse_stat_ppid(odd), Some(42));
        assert_eq!(parse_stat_ppid("garbage"), None);
    }

    #[test]
    fn own_process_is_found_as_a_child_of_its_parent() {
        let me = std::process::id();
        let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
        let parent = parse_stat_ppid(&stat).unwrap();
        assert!(children(parent).unwrap().contains(&me));
        assert!(alive(me));
        assert!(title(me).is_some());
    }

    #[test]
    fn pid_file_must_name_a_master() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nginx.pid");
        assert!(master(&file).unwrap_err().to_string().contains("nginx.pid"));
        std::fs::write(&file, format!("{}\n", std::process::id())).unwrap();
        let e = master(&file).unwrap_err();
        assert!(e.to_string().contains("not an nginx master"), "{e}");
    }
}
