//! What cutover adapts to in the running HAProxy: its version (read from `show info` or
//! `show proc`) and the `tune.bufsize` of its config, and the choices that depend on them.
//!
//! | version | what differs |
//! |---|---|
//! | 2.6 | `set map` scans the map; `reload` answers nothing; oversized payload: empty reply |
//! | 2.7+ | `reload` answers `Success=1/0` with the startup log |
//! | 3.0+ | `set map` is indexed; oversized payload: "The command is too big for the buffer size" |
//! | 3.1+ | a new worker is listed by `show proc` before its admin socket answers |
//! | 3.2.0 | an oversized payload crashes the worker (upstream fix ebb801d7c; taken to be in 3.2.1+) |

use std::fmt;
use std::sync::Mutex;

/// HAProxy's default `tune.bufsize`, in bytes (16 KiB).
pub const DEFAULT_BUFSIZE: usize = 16 * 1024;

/// Largest map diff applied key by key on HAProxy 2.6, where `set map` / `del map` scan the
/// map (k edits cost k scans); larger diffs go through a transaction.
pub const PER_KEY_MAX_EDITS: usize = 16;

/// Largest map diff applied key by key on HAProxy 3.0+, where `set map` is indexed (about
/// 0.05 ms per key at 200k entries, against 7-10 ms on 2.6): 256 edits take a few ms plus
/// one connection each, still far below a full replace of a large map.
pub const PER_KEY_MAX_EDITS_INDEXED: usize = 256;

/// A version of HAProxy, e.g. `3.2.26-1` (Debian's suffix kept in `text`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxyVersion {
    /// Major, minor and patch numbers; patch 0 for a development version (`3.2-dev13`).
    pub numbers: (u32, u32, u32),
    /// A development or release-candidate build (`-dev`, `-rc`).
    pub development: bool,
    /// The version as HAProxy prints it.
    pub text: String,
}

impl HaproxyVersion {
    /// Parses HAProxy's version text (`2.6.12-1+deb12u4`, `3.2.0`, `3.2-dev13`); `None`
    /// when it starts with no `major.minor`.
    pub fn parse(text: &str) -> Option<HaproxyVersion> {
        let text = text.trim();
        let end = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let mut numbers = text[..end].split('.').filter(|n| !n.is_empty());
        let major = numbers.next()?.parse().ok()?;
        let minor = numbers.next()?.parse().ok()?;
        let patch = numbers.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let rest = &text[end..];
        Some(HaproxyVersion {
            numbers: (major, minor, patch),
            development: rest.starts_with("-dev") || rest.starts_with("-rc"),
            text: text.to_owned(),
        })
    }

    fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.numbers.0, self.numbers.1) >= (major, minor)
    }

    /// `set map` / `del map` find the key through an index (3.0+) rather than a scan.
    pub fn indexes_map_keys(&self) -> bool {
        self.at_least(3, 0)
    }

    /// An oversized CLI payload crashes the worker instead of being refused: 3.2.0 and
    /// the 3.2 development builds, which lack upstream fix ebb801d7c. Later 3.2 releases
    /// (3.2.1 on) are taken to have it; a build that backports it to 3.2.0 is still warned
    /// about, which is the safe side.
    pub fn crashes_on_oversized_payload(&self) -> bool {
        (self.numbers.0, self.numbers.1) == (3, 2) && self.numbers.2 == 0
    }

    /// The largest map diff worth applying key by key on this version.
    pub fn per_key_max_edits(&self) -> usize {
        if self.indexes_map_keys() {
            PER_KEY_MAX_EDITS_INDEXED
        } else {
            PER_KEY_MAX_EDITS
        }
    }
}

impl fmt::Display for HaproxyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The warning `cutover check` and the status print for a version whose worker crashes on
/// an oversized payload; `None` for any other version.
pub fn version_warning(version: &HaproxyVersion) -> Option<String> {
    version.crashes_on_oversized_payload().then(|| {
        format!(
            "HAProxy {version} lacks upstream fix ebb801d7c: a CLI payload larger than \
             tune.bufsize crashes its worker; cutover keeps map payloads to half of \
             tune.bufsize, but upgrade to 3.2.1 or later"
        )
    })
}

/// The `tune.bufsize` set in a config's `global` section, in bytes; `None` when the config
/// does not set it (HAProxy then uses [`DEFAULT_BUFSIZE`]).
pub fn tune_bufsize(config: &str) -> Option<usize> {
    let mut in_global = false;
    let mut found = None;
    for line in config.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_ascii_whitespace();
        let Some(first) = words.next() else { continue };
        if !line.starts_with(char::is_whitespace) {
            in_global = first == "global";
            continue;
        }
        if in_global && first == "tune.bufsize" {
            found = words.next().and_then(|n| n.parse().ok());
        }
    }
    found
}

/// Bytes one payload command may take with a buffer of `bufsize` bytes: half of it, the
/// other half left to HAProxy (the command line is parsed in the same buffer).
pub fn chunk_bytes(bufsize: usize) -> usize {
    bufsize / 2
}

/// The version of the running HAProxy as last seen; changes when HAProxy is upgraded and
/// reloaded or restarted, so it is refreshed on every reload and epoch read.
#[derive(Debug, Default)]
pub struct Running {
    version: Mutex<Option<HaproxyVersion>>,
}

impl Running {
    /// The version last seen, if any.
    pub fn version(&self) -> Option<HaproxyVersion> {
        self.version.lock().expect("not poisoned").clone()
    }

    /// Remembers the version just read (ignored when it cannot be parsed).
    pub fn saw(&self, text: &str) {
        if let Some(v) = HaproxyVersion::parse(text) {
            *self.version.lock().expect("not poisoned") = Some(v);
        }
    }

    /// The largest map diff applied key by key: by version, and the 2.6 bound while the
    /// version is unknown.
    pub fn per_key_max_edits(&self) -> usize {
        self.version()
            .map_or(PER_KEY_MAX_EDITS, |v| v.per_key_max_edits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_what_they_decide() {
        let debian12 = HaproxyVersion::parse("2.6.12-1+deb12u4").unwrap();
        assert_eq!(debian12.numbers, (2, 6, 12));
        assert!(!debian12.indexes_map_keys());
        assert_eq!(debian12.per_key_max_edits(), PER_KEY_MAX_EDITS);
        let trixie = HaproxyVersion::parse("3.0.11-1+deb13u4").unwrap();
        assert!(trixie.indexes_map_keys() && !trixie.crashes_on_oversized_payload());
        assert_eq!(trixie.per_key_max_edits(), PER_KEY_MAX_EDITS_INDEXED);
        let sid = HaproxyVersion::parse("3.2.26-1").unwrap();
        assert!(!sid.crashes_on_oversized_payload());
        assert_eq!(version_warning(&sid), None);
        for crashing in ["3.2.0", "3.2.0-1", "3.2-dev13", "3.2.0-rc1"] {
            let v = HaproxyVersion::parse(crashing).unwrap();
            assert!(v.crashes_on_oversized_payload(), "{crashing}");
            assert!(version_warning(&v).unwrap().contains(crashing));
        }
        assert!(HaproxyVersion::parse("3.2-dev13").unwrap().development);
        assert_eq!(HaproxyVersion::parse("unknown"), None);
        assert_eq!(HaproxyVersion::parse(""), None);
    }

    #[test]
    fn bufsize_of_the_global_section() {
        let cfg = "global\n    tune.bufsize 32768 # bigger\n    maxconn 10\n\
                   defaults\n    tune.bufsize 1\nfrontend fe\n    bind :80\n";
        assert_eq!(tune_bufsize(cfg), Some(32768));
        assert_eq!(tune_bufsize("global\n    maxconn 10\n"), None);
        assert_eq!(tune_bufsize("frontend x\n    tune.bufsize 99\n"), None);
        assert_eq!(chunk_bytes(DEFAULT_BUFSIZE), 8 * 1024);
    }

    #[test]
    fn running_version_is_remembered() {
        let running = Running::default();
        assert_eq!(running.per_key_max_edits(), PER_KEY_MAX_EDITS);
        running.saw("garbage");
        assert_eq!(running.version(), None);
        running.saw("3.0.11-1+deb13u4");
        assert_eq!(running.per_key_max_edits(), PER_KEY_MAX_EDITS_INDEXED);
    }
}
