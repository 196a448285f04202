//! Replacing a whole map atomically with a versioned transaction: `prepare map`, the
//! entries in `add map @<ver>` payload chunks that each fit HAProxy's buffer, a check of the
//! entry count, `commit map`; a version that fails before the commit is cleared, never
//! committed.

use std::time::{Duration, Instant};

use super::{AdminClient, AdminError, MAX_REPLY_BYTES};
use crate::proxy::haproxy::oneshot::{into_string, is_reset, read_to_end, Exchange};
use crate::proxy::haproxy::reply;

/// What [`AdminClient::replace_map`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaceStats {
    /// The map version that was committed and is now live.
    pub version: u64,
    /// Entries written.
    pub entries: usize,
    /// Payload commands sent (one connection each).
    pub chunks: usize,
    /// Bytes sent in those commands, command lines included.
    pub bytes: usize,
    /// Wall time from `prepare map` to the end of `commit map`.
    pub elapsed: Duration,
}

impl AdminClient {
    /// Creates a new, invisible version of `map` (`prepare map`) and returns its number.
    pub async fn prepare_map(&self, map: &str) -> Result<u64, AdminError> {
        let command = format!("prepare map {map}");
        self.check_token(&command, "map", map)?;
        let reply = self.command(&command).await?;
        reply::parse_prepared_version(&reply).map_err(|e| self.reply_error(&command, e))
    }

    /// Makes `version` of `map` live atomically and drops all older versions (`commit map`).
    pub async fn commit_map(&self, map: &str, version: u64) -> Result<(), AdminError> {
        let command = format!("commit map @{version} {map}");
        self.check_token(&command, "map", map)?;
        self.mutate(&command).await
    }

    /// Removes all entries of `version` of `map` (`clear map @<ver>`); `None` clears the
    /// LIVE map.
    pub async fn clear_map(&self, map: &str, version: Option<u64>) -> Result<(), AdminError> {
        let command = match version {
            Some(v) => format!("clear map @{v} {map}"),
            None => format!("clear map {map}"),
        };
        self.check_token(&command, "map", map)?;
        self.mutate(&command).await
    }

    /// Adds `entries` to `map` (at `version`, or the live version for `None`) with ONE
    /// payload command (`add map [@<ver>] <map> <<`). The command and payload must fit in
    /// HAProxy's `tune.bufsize`; this method does not split them (see
    /// [`AdminClient::replace_map`], which does). Returns the bytes sent.
    pub async fn add_map_payload(
        &self,
        map: &str,
        version: Option<u64>,
        entries: &[(String, String)],
    ) -> Result<usize, AdminError> {
        let head = payload_head(map, version);
        self.check_token(&head, "map", map)?;
        for (key, value) in entries {
            self.check_token(&head, "key", key)?;
            self.check_token(&head, "value", value)?;
        }
        let mut payload = String::with_capacity(
            head.len()
                + 2
                + entries
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 2)
                    .sum::<usize>(),
        );
        fill_payload(&mut payload, &head, entries);
        self.send_payload(&head, &payload).await?;
        Ok(payload.len())
    }

    /// Replaces the whole content of `map` atomically: `prepare map`, then the entries in
    /// payload chunks of at most [`AdminClient::max_chunk_bytes`] bytes (each reply must be
    /// exactly `"\n"`), then a check that the prepared version holds exactly
    /// `entries.len()` new entries, then `commit map`. On any failure before the commit the
    /// prepared version is cleared and never committed: the live map stays as it was.
    ///
    /// All entries are validated before anything is sent. Duplicate keys are kept (the first
    /// one matches). An empty `entries` empties the map. One writer per map is assumed.
    pub async fn replace_map(
        &self,
        map: &str,
        entries: &[(String, String)],
    ) -> Result<ReplaceStats, AdminError> {
        let started = Instant::now();
        let head_max = payload_head(map, Some(u64::MAX));
        self.check_token(&head_max, "map", map)?;
        // Fixed bytes of a chunk: the command line, its "\n" and the final empty line.
        let overhead = head_max.len() + 2;
        for (index, (key, value)) in entries.iter().enumerate() {
            self.check_token(&head_max, "key", key)?;
            self.check_token(&head_max, "value", value)?;
            let bytes = overhead + entry_len(key, value);
            if bytes > self.max_chunk_bytes {
                return Err(AdminError::EntryTooLong {
                    path: self.path.clone(),
                    map: map.to_owned(),
                    index,
                    bytes,
                    limit: self.max_chunk_bytes,
                });
            }
        }

        let version = self.prepare_map(map).await?;
        match self.fill_version(map, version, entries, overhead).await {
            Ok((chunks, bytes)) => {
                self.commit_map(map, version).await?;
                Ok(ReplaceStats {
                    version,
                    entries: entries.len(),
                    chunks,
                    bytes,
                    elapsed: started.elapsed(),
                })
            }
            Err(err) => {
                self.abandon_version(map, version).await;
                Err(err)
            }
        }
    }

    /// Fills prepared `version` of `map` and checks the entry count; returns chunks and bytes.
    async fn fill_version(
        &self,
        map: &str,
        version: u64,
        entries: &[(String, String)],
        overhead: usize,
    ) -> Result<(usize, usize), AdminError> {
        let before = self.map_info(map).await?;
        let head = payload_head(map, Some(version));
        let mut payload = String::with_capacity(self.max_chunk_bytes);
        let (mut chunks, mut bytes, mut start) = (0, 0, 0);
        while start < entries.len() {
            // Greedy: as many entries as fit under the limit (each one alone fits, see above).
            let mut end = start;
            let mut size = overhead;
            while end < entries.len() {
                let len = entry_len(&entries[end].0, &entries[end].1);
                if size + len > self.max_chunk_bytes {
                    break;
                }
                size += len;
                end += 1;
            }
            payload.clear();
            fill_payload(&mut payload, &head, &entries[start..end]);
            self.send_payload(&head, &payload).await?;
            chunks += 1;
            bytes += payload.len();
            start = end;
        }
        let after = self.map_info(map).await?;
        let found = i128::from(after.entry_cnt) - i128::from(before.entry_cnt);
        let expected = entries.len() as u64;
        if found != i128::from(expected) {
            return Err(AdminError::EntryCountMismatch {
                path: self.path.clone(),
                map: map.to_owned(),
                version,
                expected,
                found,
            });
        }
        Ok((chunks, bytes))
    }

    /// Frees a prepared version that will not be committed. Best effort: the version is
    /// invisible anyway and the next commit drops it.
    async fn abandon_version(&self, map: &str, version: u64) {
        match self.map_info(map).await {
            Ok(info) if info.curr_ver != version => {
                if let Err(err) = self.clear_map(map, Some(version)).await {
                    tracing::warn!(%err, map, version, "could not clear abandoned map version");
                }
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, map, version, "could not check abandoned map version"),
        }
    }

    /// Sends one payload command whose reply must be exactly `"\n"`.
    async fn send_payload(&self, head: &str, payload: &str) -> Result<(), AdminError> {
        let dropped = |reply: Option<&str>| AdminError::PayloadDropped {
            path: self.path.clone(),
            command: head.to_owned(),
            payload_bytes: payload.len(),
            reply: reply.map(|r| reply::clip(r.trim()).to_owned()),
        };
        let mut stream = match self.open(head, &[payload.as_bytes()]).await {
            Err(AdminError::Io { source, .. }) if is_reset(&source) => return Err(dropped(None)),
            other => other?,
        };
        let reply = match read_to_end(&mut stream, self.timeout, MAX_REPLY_BYTES).await {
            Ok(bytes) if bytes.is_empty() => return Err(dropped(None)),
            Ok(bytes) => into_string(bytes),
            Err(Exchange::Io(e)) if is_reset(&e) => return Err(dropped(None)),
            Err(e) => return Err(self.exchange_error(head, e)),
        };
        if reply::is_too_big(&reply) {
            return Err(dropped(Some(&reply)));
        }
        self.check_mutation(head, &reply)
    }
}

/// The command line of a payload `add map`.
fn payload_head(map: &str, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("add map @{v} {map} <<"),
        None => format!("add map {map} <<"),
    }
}

/// Bytes of one payload line: `key value\n`.
fn entry_len(key: &str, value: &str) -> usize {
    key.len() + value.len() + 2
}

/// Writes `head\n`, one `key value\n` line per entry, and the empty line ending the payload.
fn fill_payload(out: &mut String, head: &str, entries: &[(String, String)]) {
    out.push_str(head);
    out.push('\n');
    for (key, value) in entries {
        out.push_str(key);
        out.push(' ');
        out.push_str(value);
        out.push('\n');
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_layout() {
        let mut out = String::new();
        let entries = vec![
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ];
        fill_payload(&mut out, &payload_head("/m.map", Some(3)), &entries);
        assert_eq!(out, "add map @3 /m.map <<\na 1\nb 2\n\n");
        assert_eq!(
            out.len(),
            payload_head("/m.map", Some(3)).len()
                + 2
                + entries.iter().map(|(k, v)| entry_len(k, v)).sum::<usize>()
        );
        assert_eq!(payload_head("/m.map", None), "add map /m.map <<");
    }
}
