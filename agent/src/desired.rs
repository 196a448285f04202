//! Declarative desired state: a TOML file that sets the live colour (and canary) of any
//! number of services, applied as one change by `cutover apply -f FILE`, or watched by the
//! agent (`agent.desired_state`) and reconciled whenever it changes.
//!
//! ```toml
//! [services.web]
//! live = "green"
//! [services.api]
//! live = "blue"
//! canary = { colour = "green", percent = 10 }
//! ```
//! Services not named keep their state. The watcher applies a new content only once it has
//! stayed the same for the debounce time, so a checkout being written is never half-read; a
//! file that does not parse or validate is refused, reported, and the last good state
//! stays live.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::protocol::{Desired, MAX_SERVICES};

/// Largest desired-state file read, in bytes.
pub const MAX_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    services: BTreeMap<String, Desired>,
}

/// Why a declaration was refused; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is above [`MAX_BYTES`].
    #[error("{}: {bytes} bytes, more than {MAX_BYTES}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// The file is not UTF-8.
    #[error("{}: not UTF-8", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// The TOML does not parse into a declaration (syntax, unknown field, bad colour).
    #[error("{}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser found.
        source: toml::de::Error,
    },
    /// The file names no service.
    #[error("{}: declares no services", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The file names more than [`MAX_SERVICES`] services.
    #[error("{}: {count} services, more than {MAX_SERVICES}", path.display())]
    TooMany {
        /// The file.
        path: PathBuf,
        /// How many it names.
        count: usize,
    },
}

/// Parses a declaration; the error names the file and what is wrong.
pub fn parse(path: &Path, text: &str) -> Result<BTreeMap<String, Desired>, DesiredError> {
    let file: File = toml::from_str(text).map_err(|source| DesiredError::Parse {
        path: path.to_owned(),
        source,
    })?;
    if file.services.is_empty() {
        return Err(DesiredError::Empty {
            path: path.to_owned(),
        });
    }
    if file.services.len() > MAX_SERVICES {
        return Err(DesiredError::TooMany {
            path: path.to_owned(),
            count: file.services.len(),
        });
    }
    Ok(file.services)
}

/// Reads and parses a declaration file, bounded in size.
pub fn load(path: &Path) -> Result<BTreeMap<String, Desired>, DesiredError> {
    let read = |source| DesiredError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    if meta.len() > MAX_BYTES {
        return Err(DesiredError::TooLarge {
            path: path.to_owned(),
            bytes: meta.len(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    parse(path, &text)
}

/// Watches a declaration file by polling; see the module doc.
#[derive(Debug)]
pub struct Watcher {
    path: PathBuf,
    debounce: Duration,
    /// Hash of the content last seen, and since when it has not changed.
    seen: Option<(u64, Instant)>,
    /// Hash of the content last handed out (applied or refused).
    handled: Option<u64>,
    /// Why the current content was refused.
    pub error: Option<String>,
}

impl Watcher {
    /// A watcher of `path` that hands out a content once it has been stable for `debounce`.
    pub fn new(path: PathBuf, debounce: Duration) -> Watcher {
        Watcher {
            path,
            debounce,
            seen: None,
            handled: None,
            error: None,
        }
    }

    /// The watched file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Call on every tick. Returns a declaration to apply when the file has new content
    /// that has been stable for the debounce time; a parse error is kept in `error`.
    pub fn poll(&mut self) -> Option<BTreeMap<String, Desired>> {
        let text = match std::fs::read(&self.path) {
            Ok(bytes) if bytes.len() as u64 <= MAX_BYTES => bytes,
            Ok(_) => {
                self.error = Some(format!(
                    "{}: larger than {MAX_BYTES} bytes",
                    self.path.display()
                ));
                return None;
            }
            Err(e) => {
                self.error = Some(format!("{}: {e}", self.path.display()));
                return None;
            }
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        let hash = h.finish();
        let now = Instant::now();
        match self.seen {
            Some((seen, since)) if seen == hash => {
                if self.handled == Some(hash) || now.duration_since(since) < self.debounce {
                    return None;
                }
            }
            _ => {
                self.seen = Some((hash, now));
                if !self.debounce.is_zero() {
                    return None;
                }
            }
        }
        self.handled = Some(hash);
        let parsed = std::str::from_utf8(&text)
            .map_err(|_| DesiredError::NotUtf8 {
                path: self.path.clone(),
            })
            .and_then(|t| parse(&self.path, t));
        match parsed {
            Ok(d) => {
                self.error = None;
                Some(d)
            }
            Err(e) => {
                self.error = Some(e.to_string());
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Colour;

    #[test]
    fn parses_and_refuses() {
        let p = Path::new("desired.toml");
        let d = parse(p, "[services.web]\nlive = \"green\"\n").unwrap();
        assert_eq!(d["web"].live, Colour::Green);
        assert!(parse(p, "[services.web]\nlive = \"red\"\n")
            .unwrap_err()
            .to_string()
            .contains("red"));
        assert!(parse(p, "[services.web]\nlive = \"blue\"\nlvie = 1\n")
            .unwrap_err()
            .to_string()
            .contains("unknown field"));
        assert!(parse(p, "services = {}\n")
            .unwrap_err()
            .to_string()
            .contains("no services"));
    }

    #[test]
    fn watcher_debounces_and_reports() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desired.toml");
        let mut w = Watcher::new(path.clone(), Duration::from_millis(50));
        assert!(w.poll().is_none());
        assert!(w.error.is_some(), "missing file is reported");
        std::fs::write(&path, "[services.web]\nlive = \"green\"\n").unwrap();
        assert!(w.poll().is_none(), "not stable yet");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(w.poll().unwrap()["web"].live, Colour::Green);
        assert!(w.poll().is_none(), "handled once");
        std::fs::write(&path, "[services.web]\nlive = 1\n").unwrap();
        w.poll();
        std::thread::sleep(Duration::from_millis(60));
        assert!(w.poll().is_none());
        assert!(
            w.error.as_deref().unwrap().contains("line 2"),
            "{:?}",
            w.error
        );
    }
}
