//! [`Etcdctl`]: the `etcdctl` 3.4 binary run synchronously against a list of endpoints,
//! with its JSON output (`-w json`) parsed: keys and values, revisions, compaction, and
//! each member's view of the leader.
//!
//! Every call is bounded by etcdctl's own `--dial-timeout` and `--command-timeout`, and
//! fails with etcdctl's stderr. etcdctl 3.4 defaults to the v2 API: `ETCDCTL_API=3` is set
//! on every call, and other `ETCDCTL_*` variables of the test environment are removed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// `--dial-timeout` of every call: 1 second (etcdctl's default is 2 s).
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(1);

/// `--command-timeout` of every call: 3 seconds (etcdctl's default is 5 s). A put while the
/// cluster has no leader waits this long for one before it fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// One member's answer to `endpoint status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberStatus {
    /// The member's raft ID.
    pub id: u64,
    /// The raft ID of the leader it follows; 0 when it knows of none.
    pub leader: u64,
    /// The store revision the member has applied.
    pub revision: i64,
}

/// The `etcdctl` binary and the endpoints (client URLs) it talks to.
#[derive(Debug, Clone)]
pub struct Etcdctl {
    binary: PathBuf,
    endpoints: Vec<String>,
}

impl Etcdctl {
    /// etcdctl at `binary`, talking to `endpoints` (e.g. `http://127.0.0.1:2379`).
    pub fn new(binary: &Path, endpoints: Vec<String>) -> Etcdctl {
        Etcdctl {
            binary: binary.to_owned(),
            endpoints,
        }
    }

    /// The endpoints of every call.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Runs `etcdctl <global options> <args>`; its stdout, or an error naming the command
    /// with etcdctl's stderr.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let output = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run {}: {e}", self.binary.display()))?;
        if !output.status.success() {
            return Err(format!(
                "etcdctl {} against {} failed ({}): {}",
                args.join(" "),
                self.endpoints.join(","),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `put key value` (a value may start with `-` or hold newlines).
    pub fn put(&self, key: &str, value: &str) -> Result<(), String> {
        self.run(&["put", "--", key, value]).map(drop)
    }

    /// The value of `key`, `None` when it does not exist (a linearizable read).
    pub fn get(&self, key: &str) -> Result<Option<String>, String> {
        let reply = self.json(&["get", "-w", "json", "--", key])?;
        Ok(pairs(&reply)?.into_iter().next().map(|(_, value)| value))
    }

    /// Every key starting with `prefix` and its value, in key order.
    pub fn get_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, String> {
        let reply = self.json(&["get", "-w", "json", "--prefix", "--", prefix])?;
        pairs(&reply)
    }

    /// The current revision of the store (from the header of a linearizable read).
    pub fn revision(&self) -> Result<i64, String> {
        let reply = self.json(&["get", "-w", "json", "--keys-only", "--limit=1", "--", "/"])?;
        reply["header"]["revision"]
            .as_i64()
            .ok_or_else(|| format!("no header.revision in {reply}"))
    }

    /// `compact <revision> --physical`: removes every version older than `revision` and
    /// returns once the backend has dropped them.
    pub fn compact(&self, revision: i64) -> Result<(), String> {
        self.run(&["compact", &revision.to_string(), "--physical"])
            .map(drop)
    }

    /// The revision the store was last compacted to; 0 when nothing has been compacted
    /// away (a compaction to revision 1 removes nothing, and also reads as 0).
    ///
    /// etcd 3.4 reports it nowhere but in a cancelled watch: a watch of every key from
    /// revision 1 is cancelled at once with `CompactRevision` when revision 1 is gone, and
    /// otherwise replays the history at once (events from revision 2).
    pub fn compact_revision(&self) -> Result<i64, String> {
        if self.revision()? <= 1 {
            return Ok(0);
        }
        // No `--` here: in `etcdctl watch` it starts a command to run on each event.
        let args = ["watch", "-w", "json", "--rev=1", "--prefix", ""];
        let line = self.first_line(&args)?;
        let reply: Value =
            serde_json::from_str(&line).map_err(|e| format!("watch printed {line:?}: {e}"))?;
        let compacted = reply["CompactRevision"].as_i64().unwrap_or(0);
        Ok(if reply["Canceled"] == true {
            compacted
        } else {
            0
        })
    }

    /// Each endpoint's `endpoint status`, keyed by endpoint URL. Fails when any endpoint
    /// does not answer.
    pub fn statuses(&self) -> Result<Vec<(String, MemberStatus)>, String> {
        let reply = self.json(&["endpoint", "status", "-w", "json"])?;
        let entries = reply
            .as_array()
            .ok_or_else(|| format!("endpoint status printed {reply}"))?;
        entries
            .iter()
            .map(|entry| {
                let status = &entry["Status"];
                let member = MemberStatus {
                    id: status["header"]["member_id"].as_u64().unwrap_or(0),
                    leader: status["leader"].as_u64().unwrap_or(0),
                    revision: status["header"]["revision"].as_i64().unwrap_or(0),
                };
                let endpoint = entry["Endpoint"].as_str().unwrap_or_default().to_owned();
                Ok((endpoint, member))
            })
            .collect()
    }

    fn json(&self, args: &[&str]) -> Result<Value, String> {
        let out = self.run(args)?;
        serde_json::from_str(out.trim())
            .map_err(|e| format!("etcdctl {} printed {out:?}: {e}", args.join(" ")))
    }

    /// The first line a long-running command (a watch) prints, waiting at most
    /// [`COMMAND_TIMEOUT`]; the command is killed afterwards.
    fn first_line(&self, args: &[&str]) -> Result<String, String> {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("run {}: {e}", self.binary.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(read.map(|_| line));
        });
        let received = receiver.recv_timeout(COMMAND_TIMEOUT);
        let _ = child.kill();
        let _ = child.wait();
        match received {
            Ok(Ok(line)) if !line.trim().is_empty() => Ok(line),
            Ok(Ok(_)) => Err(format!("etcdctl {} printed nothing", args.join(" "))),
            Ok(Err(e)) => Err(format!("read etcdctl {}: {e}", args.join(" "))),
            Err(_) => Err(format!(
                "etcdctl {} printed nothing within {COMMAND_TIMEOUT:?}",
                args.join(" ")
            )),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCDCTL_") {
                command.env_remove(name);
            }
        }
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints.join(",")))
            .arg(format!("--dial-timeout={}ms", DIAL_TIMEOUT.as_millis()))
            .arg(format!(
                "--command-timeout={}ms",
                COMMAND_TIMEOUT.as_millis()
            ))
            .args(args);
        command
    }
}

/// The keys and values of a `get -w json` reply (base64 in etcd's JSON), decoded.
fn pairs(reply: &Value) -> Result<Vec<(String, String)>, String> {
    let Some(kvs) = reply["kvs"].as_array() else {
        // No `kvs` at all when nothing matched.
        return Ok(Vec::new());
    };
    kvs.iter()
        .map(|kv| Ok((base64_text(&kv["key"])?, base64_text(&kv["value"])?)))
        .collect()
}

/// A base64 JSON string decoded as (lossy) UTF-8; absent means empty, as etcd omits an
/// empty value.
fn base64_text(field: &Value) -> Result<String, String> {
    let encoded = field.as_str().unwrap_or_default();
    let bytes = decode_base64(encoded).ok_or_else(|| format!("bad base64 {encoded:?}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Standard base64 with padding (what Go's encoding/json writes for `[]byte`). `None` on
/// any other character. Small enough not to need a dependency.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let text = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut bits = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            bits |= sextet(*c)? << (18 - 6 * i);
        }
        out.extend_from_slice(&bits.to_be_bytes()[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn base64_decodes_go_json_bytes() {
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64("L2EvYg==").unwrap(), b"/a/b");
        assert_eq!(decode_base64("bDEKbDI=").unwrap(), b"l1\nl2");
        assert_eq!(decode_base64("LXYgeA==").unwrap(), b"-v x");
        assert_eq!(decode_base64("+/8A").unwrap(), [0xfb, 0xff, 0x00]);
        assert_eq!(decode_base64("a*=="), None);
        assert_eq!(decode_base64("YQ==Y"), None);
    }

    #[test]
    fn get_replies_parse_into_pairs() {
        let reply = json!({
            "header": {"revision": 4},
            "kvs": [
                {"key": "L2EvYg==", "value": "bDEKbDI=", "mod_revision": 4},
                {"key": "L2EvYw==", "mod_revision": 3}
            ],
            "count": 2
        });
        assert_eq!(
            pairs(&reply).unwrap(),
            [
                ("/a/b".to_owned(), "l1\nl2".to_owned()),
                ("/a/c".to_owned(), String::new())
            ]
        );
        assert_eq!(pairs(&json!({"header": {"revision": 4}})).unwrap(), []);
    }
}
