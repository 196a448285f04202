//! Async client for the HAProxy admin (stats) socket: map entries, versioned map
//! replacement, server weight and state.
//!
//! Every command uses its own connection: write `<command>\n` (plus payload), half-close,
//! read the reply to EOF. Arguments are validated before anything is sent, because the CLI
//! splits on spaces and treats `;`, `\`, `#` and quotes specially.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::reply::{self, MapInfo, MapLine, ReplyError, ServerState};

/// Default for [`AdminClient::timeout`]: 5 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default for [`AdminClient::max_chunk_bytes`]: 8 KiB, half of HAProxy's default
/// `tune.bufsize` (16 KiB). A command plus its payload must fit in one buffer, otherwise
/// HAProxy silently drops it (empty reply); the other half is headroom for HAProxy's own use.
pub const MAX_CHUNK_BYTES: usize = 8 * 1024;

/// Largest reply [`AdminClient::command`] accepts, in bytes (64 MiB). Listings of big maps
/// go through [`AdminClient::show_map`], which streams and has no such limit.
pub const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// Longest line accepted while streaming `show map`, in bytes (64 KiB; HAProxy's lines are
/// bounded by `tune.bufsize`).
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Size of one socket read while streaming, in bytes.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A failed admin-socket operation. Every variant names the socket and the command (the
/// command line only, never a payload); HAProxy's own text is kept where it answered.
#[derive(Debug, Error)]
pub enum AdminError {
    /// An argument that the CLI would misread; nothing was sent.
    #[error("haproxy admin {}: `{command}`: invalid {what} {value:?}: {reason}", path.display())]
    InvalidArgument {
        path: PathBuf,
        command: String,
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    /// The socket could not be reached.
    #[error("haproxy admin {}: `{command}`: cannot connect: {source}", path.display())]
    Connect {
        path: PathBuf,
        command: String,
        source: io::Error,
    },
    /// Writing the command or reading the reply failed.
    #[error("haproxy admin {}: `{command}`: {source}", path.display())]
    Io {
        path: PathBuf,
        command: String,
        source: io::Error,
    },
    /// HAProxy stayed silent for longer than the client's timeout.
    #[error("haproxy admin {}: `{command}`: no progress within {timeout:?}", path.display())]
    Timeout {
        path: PathBuf,
        command: String,
        timeout: Duration,
    },
    /// HAProxy answered with an error text.
    #[error("haproxy admin {}: `{command}`: HAProxy refused it: {reply}", path.display())]
    Refused {
        path: PathBuf,
        command: String,
        reply: String,
    },
    /// A command with payload got zero bytes back or a reset: HAProxy dropped it, usually
    /// because command plus payload exceeded `tune.bufsize`.
    #[error(
        "haproxy admin {}: `{command}`: payload of {payload_bytes} bytes dropped by HAProxy \
         (empty reply or reset; command and payload must fit in tune.bufsize)",
        path.display()
    )]
    PayloadDropped {
        path: PathBuf,
        command: String,
        payload_bytes: usize,
    },
    /// A reply in a format this client does not understand.
    #[error("haproxy admin {}: `{command}`: {source}", path.display())]
    UnexpectedReply {
        path: PathBuf,
        command: String,
        source: ReplyError,
    },
    /// A reply larger than [`MAX_REPLY_BYTES`].
    #[error("haproxy admin {}: `{command}`: reply exceeds {limit} bytes", path.display())]
    ReplyTooLarge {
        path: PathBuf,
        command: String,
        limit: usize,
    },
    /// `show map` does not list the map (it must be named as in the configuration).
    #[error("haproxy admin {}: map {map} is not loaded (not listed by `show map`)", path.display())]
    MapNotFound { path: PathBuf, map: String },
    /// One map entry alone does not fit in a payload chunk; nothing was sent.
    #[error(
        "haproxy admin {}: replace map {map}: entry #{index} ({bytes} bytes with the command) \
         exceeds the chunk limit of {limit} bytes",
        path.display()
    )]
    EntryTooLong {
        path: PathBuf,
        map: String,
        index: usize,
        bytes: usize,
        limit: usize,
    },
    /// After filling a prepared version, HAProxy holds a different number of entries than
    /// were sent; the version was not committed.
    #[error(
        "haproxy admin {}: replace map {map}: version {version} holds {found} new entries, \
         {expected} were sent; not committed",
        path.display()
    )]
    EntryCountMismatch {
        path: PathBuf,
        map: String,
        version: u64,
        expected: u64,
        found: i128,
    },
}

/// Administrative state of a server, for `set server <b>/<s> state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerAdminState {
    /// Takes traffic.
    Ready,
    /// Keeps existing and persistent connections, gets no new ones.
    Drain,
    /// Takes no traffic at all.
    Maint,
}

impl ServerAdminState {
    /// The CLI word: `ready`, `drain` or `maint`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerAdminState::Ready => "ready",
            ServerAdminState::Drain => "drain",
            ServerAdminState::Maint => "maint",
        }
    }
}

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

/// Client for one HAProxy admin socket (`stats socket ... level admin`).
#[derive(Debug, Clone)]
pub struct AdminClient {
    path: PathBuf,
    timeout: Duration,
    max_chunk_bytes: usize,
}

impl AdminClient {
    /// A client for the socket at `path`, with [`DEFAULT_TIMEOUT`] and [`MAX_CHUNK_BYTES`].
    /// Nothing is connected until a command is sent.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        AdminClient {
            path: path.into(),
            timeout: DEFAULT_TIMEOUT,
            max_chunk_bytes: MAX_CHUNK_BYTES,
        }
    }

    /// Sets how long HAProxy may stay silent: the bound on connecting, on writing a command,
    /// and on each wait for more reply bytes. A long listing that keeps flowing is never cut.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the most bytes one payload command (command line plus payload) may take. Keep it
    /// at or below half of HAProxy's `tune.bufsize`; above `tune.bufsize`, HAProxy drops the
    /// payload and the call fails with [`AdminError::PayloadDropped`].
    pub fn with_max_chunk_bytes(mut self, bytes: usize) -> Self {
        self.max_chunk_bytes = bytes;
        self
    }

    /// The admin socket path.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// The silence bound (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The payload command size bound in bytes (default [`MAX_CHUNK_BYTES`]).
    pub fn max_chunk_bytes(&self) -> usize {
        self.max_chunk_bytes
    }

    /// Sends one raw command line (no trailing newline needed) and returns the whole reply.
    /// The command is not validated: callers building it from data should use the typed
    /// methods. Replies above [`MAX_REPLY_BYTES`] fail.
    pub async fn command(&self, command: &str) -> Result<String, AdminError> {
        let command = command.trim_end_matches('\n');
        let mut stream = self.open(command, &[command.as_bytes(), b"\n"]).await?;
        let bytes = read_to_end(&mut stream, self.timeout, MAX_REPLY_BYTES)
            .await
            .map_err(|e| self.exchange_error(command, e))?;
        Ok(into_string(bytes))
    }

    /// Sends a mutating command and expects HAProxy's success reply (exactly `"\n"`).
    pub async fn mutate(&self, command: &str) -> Result<(), AdminError> {
        let reply = self.command(command).await?;
        self.check_mutation(command, &reply)
    }

    /// All maps HAProxy has loaded (`show map`).
    pub async fn list_maps(&self) -> Result<Vec<MapInfo>, AdminError> {
        const COMMAND: &str = "show map";
        let reply = self.command(COMMAND).await?;
        reply::parse_map_list(&reply).map_err(|e| self.reply_error(COMMAND, e))
    }

    /// The `show map` line of the map loaded from `map` (the file name as written in the
    /// configuration).
    pub async fn map_info(&self, map: &str) -> Result<MapInfo, AdminError> {
        self.check_token("show map", "map", map)?;
        self.list_maps()
            .await?
            .into_iter()
            .find(|m| m.path == map)
            .ok_or_else(|| AdminError::MapNotFound {
                path: self.path.clone(),
                map: map.to_owned(),
            })
    }

    /// The live entries of `map`, in HAProxy's order, streamed from the socket.
    pub async fn show_map(&self, map: &str) -> Result<Vec<(String, String)>, AdminError> {
        self.show_map_version(map, None).await
    }

    /// The entries of one version of `map` (`show map @<ver> <map>`); `None` is the live one.
    pub async fn show_map_version(
        &self,
        map: &str,
        version: Option<u64>,
    ) -> Result<Vec<(String, String)>, AdminError> {
        let command = match version {
            Some(v) => format!("show map @{v} {map}"),
            None => format!("show map {map}"),
        };
        self.check_token(&command, "map", map)?;
        let mut stream = self.open(&command, &[command.as_bytes(), b"\n"]).await?;
        let mut entries = Vec::new();
        // Bytes read but not yet parsed: at most one partial line after each pass.
        let mut pending: Vec<u8> = Vec::with_capacity(2 * READ_CHUNK_BYTES);
        let mut buf = vec![0u8; READ_CHUNK_BYTES];
        loop {
            let n = tokio::time::timeout(self.timeout, stream.read(&mut buf))
                .await
                .map_err(|_| self.exchange_error(&command, Exchange::Timeout))?
                .map_err(|e| self.exchange_error(&command, Exchange::Io(e)))?;
            if n == 0 {
                let err = if entries.is_empty() && pending.is_empty() {
                    ReplyError::Empty
                } else {
                    ReplyError::Unexpected {
                        what: "show map (listing cut short)",
                        reply: reply::clip(&String::from_utf8_lossy(&pending)).to_owned(),
                    }
                };
                return Err(self.reply_error(&command, err));
            }
            pending.extend_from_slice(&buf[..n]);
            let mut consumed = 0;
            while let Some(pos) = pending[consumed..].iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&pending[consumed..consumed + pos]);
                match reply::parse_map_line(&line) {
                    Some(MapLine::Entry(k, v)) => entries.push((k.to_owned(), v.to_owned())),
                    Some(MapLine::End) => return Ok(entries),
                    None => {
                        // HAProxy's error text: keep what is left of it, bounded.
                        let mut text = String::from_utf8_lossy(&pending[consumed..]).into_owned();
                        let more =
                            read_to_end(&mut stream, self.timeout, reply::MAX_REPLY_IN_ERROR)
                                .await
                                .unwrap_or_default();
                        text.push_str(&String::from_utf8_lossy(&more));
                        return Err(self.reply_error(
                            &command,
                            ReplyError::Refused {
                                reply: reply::clip(text.trim()).to_owned(),
                            },
                        ));
                    }
                }
                consumed += pos + 1;
            }
            pending.drain(..consumed);
            if pending.len() > MAX_LINE_BYTES {
                return Err(self.exchange_error(&command, Exchange::TooLarge(MAX_LINE_BYTES)));
            }
        }
    }

    /// Backend names (`show backend`).
    pub async fn backends(&self) -> Result<Vec<String>, AdminError> {
        const COMMAND: &str = "show backend";
        let reply = self.command(COMMAND).await?;
        reply::parse_backends(&reply).map_err(|e| self.reply_error(COMMAND, e))
    }

    /// The servers of `backend` with their state and weights (`show servers state`).
    pub async fn servers_state(&self, backend: &str) -> Result<Vec<ServerState>, AdminError> {
        let command = format!("show servers state {backend}");
        self.check_name(&command, "backend", backend)?;
        let reply = self.command(&command).await?;
        reply::parse_servers_state(&reply).map_err(|e| self.reply_error(&command, e))
    }

    /// Cumulative requests, 5xx responses and average response time in milliseconds of
    /// `backend` (its `BACKEND` line of `show stat <backend> 2 -1`).
    pub async fn backend_stat(&self, backend: &str) -> Result<(u64, u64, u64), AdminError> {
        let command = format!("show stat {backend} 2 -1");
        self.check_name(&command, "backend", backend)?;
        let reply = self.command(&command).await?;
        reply::parse_backend_stat(&reply, backend).map_err(|e| self.reply_error(&command, e))
    }

    /// Changes the value of existing `key` in the live version of `map` (`set map`). HAProxy
    /// refuses a missing key (`entry not found.`). Linear in the map size on 2.6.
    pub async fn set_map(&self, map: &str, key: &str, value: &str) -> Result<(), AdminError> {
        let command = format!("set map {map} {key} {value}");
        self.check_entry(&command, map, key, value)?;
        self.mutate(&command).await
    }

    /// Adds `key value` to the live version of `map` (`add map`). An existing key gets a
    /// second entry; the first one keeps matching.
    pub async fn add_map(&self, map: &str, key: &str, value: &str) -> Result<(), AdminError> {
        let command = format!("add map {map} {key} {value}");
        self.check_entry(&command, map, key, value)?;
        self.mutate(&command).await
    }

    /// Deletes every entry of `key` from the live version of `map` (`del map`). HAProxy
    /// refuses a missing key (`Key not found.`).
    pub async fn del_map(&self, map: &str, key: &str) -> Result<(), AdminError> {
        let command = format!("del map {map} {key}");
        self.check_token(&command, "map", map)?;
        self.check_token(&command, "key", key)?;
        self.mutate(&command).await
    }

    /// Sets the weight of `backend/server` (`set weight`); HAProxy accepts 0..=256.
    pub async fn set_weight(
        &self,
        backend: &str,
        server: &str,
        weight: u32,
    ) -> Result<(), AdminError> {
        let command = format!("set weight {backend}/{server} {weight}");
        self.check_name(&command, "backend", backend)?;
        self.check_name(&command, "server", server)?;
        self.mutate(&command).await
    }

    /// Sets the administrative state of `backend/server` (`set server ... state`).
    pub async fn set_server_state(
        &self,
        backend: &str,
        server: &str,
        state: ServerAdminState,
    ) -> Result<(), AdminError> {
        let command = format!("set server {backend}/{server} state {}", state.as_str());
        self.check_name(&command, "backend", backend)?;
        self.check_name(&command, "server", server)?;
        self.mutate(&command).await
    }

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
        let dropped = || AdminError::PayloadDropped {
            path: self.path.clone(),
            command: head.to_owned(),
            payload_bytes: payload.len(),
        };
        let mut stream = match self.open(head, &[payload.as_bytes()]).await {
            Err(AdminError::Io { source, .. }) if is_reset(&source) => return Err(dropped()),
            other => other?,
        };
        let reply = match read_to_end(&mut stream, self.timeout, MAX_REPLY_BYTES).await {
            Ok(bytes) if bytes.is_empty() => return Err(dropped()),
            Ok(bytes) => into_string(bytes),
            Err(Exchange::Io(e)) if is_reset(&e) => return Err(dropped()),
            Err(e) => return Err(self.exchange_error(head, e)),
        };
        self.check_mutation(head, &reply)
    }

    /// Connects, writes `parts`, half-closes.
    async fn open(&self, command: &str, parts: &[&[u8]]) -> Result<UnixStream, AdminError> {
        open_oneshot(&self.path, parts, self.timeout)
            .await
            .map_err(|e| self.exchange_error(command, e))
    }

    fn check_mutation(&self, command: &str, reply: &str) -> Result<(), AdminError> {
        reply::check_mutation(reply).map_err(|e| self.reply_error(command, e))
    }

    fn reply_error(&self, command: &str, err: ReplyError) -> AdminError {
        match err {
            ReplyError::Refused { reply } => AdminError::Refused {
                path: self.path.clone(),
                command: command.to_owned(),
                reply,
            },
            other => AdminError::UnexpectedReply {
                path: self.path.clone(),
                command: command.to_owned(),
                source: other,
            },
        }
    }

    fn exchange_error(&self, command: &str, err: Exchange) -> AdminError {
        let (path, command) = (self.path.clone(), command.to_owned());
        match err {
            Exchange::Connect(source) => AdminError::Connect {
                path,
                command,
                source,
            },
            Exchange::Io(source) => AdminError::Io {
                path,
                command,
                source,
            },
            Exchange::Timeout => AdminError::Timeout {
                path,
                command,
                timeout: self.timeout,
            },
            Exchange::TooLarge(limit) => AdminError::ReplyTooLarge {
                path,
                command,
                limit,
            },
        }
    }

    fn check_token(
        &self,
        command: &str,
        what: &'static str,
        value: &str,
    ) -> Result<(), AdminError> {
        check_token(value).map_err(|reason| self.invalid(command, what, value, reason))
    }

    fn check_name(&self, command: &str, what: &'static str, value: &str) -> Result<(), AdminError> {
        check_name(value).map_err(|reason| self.invalid(command, what, value, reason))
    }

    fn check_entry(
        &self,
        command: &str,
        map: &str,
        key: &str,
        value: &str,
    ) -> Result<(), AdminError> {
        self.check_token(command, "map", map)?;
        self.check_token(command, "key", key)?;
        self.check_token(command, "value", value)
    }

    fn invalid(
        &self,
        command: &str,
        what: &'static str,
        value: &str,
        reason: &'static str,
    ) -> AdminError {
        AdminError::InvalidArgument {
            path: self.path.clone(),
            // The command line may embed the offending value; it is shown via `value`.
            command: command.split(' ').take(2).collect::<Vec<_>>().join(" "),
            what,
            value: reply::clip(value).to_owned(),
            reason,
        }
    }
}

/// What went wrong in one connect/write/read exchange, before it is given a context.
#[derive(Debug)]
pub(super) enum Exchange {
    Connect(io::Error),
    Io(io::Error),
    Timeout,
    TooLarge(usize),
}

/// Connects to `path`, writes `parts` and half-closes the write side, each step bounded by
/// `timeout`. Shared by the admin and master clients (both one-shot).
pub(super) async fn open_oneshot(
    path: &Path,
    parts: &[&[u8]],
    timeout: Duration,
) -> Result<UnixStream, Exchange> {
    let mut stream = tokio::time::timeout(timeout, UnixStream::connect(path))
        .await
        .map_err(|_| Exchange::Timeout)?
        .map_err(Exchange::Connect)?;
    let write = async {
        for part in parts {
            stream.write_all(part).await?;
        }
        stream.shutdown().await
    };
    tokio::time::timeout(timeout, write)
        .await
        .map_err(|_| Exchange::Timeout)?
        .map_err(Exchange::Io)?;
    Ok(stream)
}

/// Reads to EOF, each read bounded by `timeout`, the total by `limit` bytes.
pub(super) async fn read_to_end<R: AsyncRead + Unpin>(
    reader: &mut R,
    timeout: Duration,
    limit: usize,
) -> Result<Vec<u8>, Exchange> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::time::timeout(timeout, reader.read(&mut buf))
            .await
            .map_err(|_| Exchange::Timeout)?
            .map_err(Exchange::Io)?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > limit {
            return Err(Exchange::TooLarge(limit));
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Reply bytes as text; HAProxy's replies are ASCII, anything else is replaced, not refused.
pub(super) fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

pub(super) fn is_reset(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
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

/// Checks a map name, key or value: one CLI word that HAProxy takes literally.
fn check_token(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("is empty");
    }
    if value.len() > MAX_CHUNK_BYTES {
        return Err("is longer than 8 KiB");
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or a control character");
    }
    if value.contains([';', '\\', '#', '"', '\'']) {
        return Err("contains one of ; \\ # \" ' (interpreted by the HAProxy CLI)");
    }
    if value.contains("<<") {
        return Err("contains \"<<\" (the HAProxy CLI payload marker)");
    }
    if value.starts_with('@') {
        return Err("starts with '@' (a map version marker for the HAProxy CLI)");
    }
    Ok(())
}

/// Checks a backend or server name: HAProxy allows letters, digits and `-_.:`.
fn check_name(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("is empty");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err("may only contain letters, digits and - _ . :");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_the_cli_would_misread_are_refused() {
        for ok in [
            "a.example",
            "svc_a",
            "/etc/haproxy/routes.map",
            "x=1&y<2",
            "é",
        ] {
            assert_eq!(check_token(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "a b", "a\tb", "a\nb", "a;b", "a\\b", "a#b", "a\"b", "a'b", "a<<", "@1", "a\u{7f}",
        ] {
            assert!(check_token(bad).is_err(), "{bad:?}");
        }
        assert!(check_token(&"x".repeat(MAX_CHUNK_BYTES + 1)).is_err());
    }

    #[test]
    fn names_are_haproxy_identifiers() {
        assert_eq!(check_name("be_blue-1.a:b"), Ok(()));
        for bad in ["", "be/s1", "be blue", "be;x"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

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

    #[tokio::test]
    async fn invalid_arguments_are_refused_before_connecting() {
        let client = AdminClient::new("/nonexistent/admin.sock");
        let err = client.set_map("/m.map", "a;b", "v").await.unwrap_err();
        assert!(
            matches!(&err, AdminError::InvalidArgument { what: "key", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("/nonexistent/admin.sock"), "{err}");
        let entries = vec![("k".to_owned(), "v w".to_owned())];
        let err = client.replace_map("/m.map", &entries).await.unwrap_err();
        assert!(
            matches!(err, AdminError::InvalidArgument { what: "value", .. }),
            "{err}"
        );
        let long = vec![("k".to_owned(), "v".repeat(MAX_CHUNK_BYTES - 10))];
        let err = client.replace_map("/m.map", &long).await.unwrap_err();
        assert!(
            matches!(err, AdminError::EntryTooLong { index: 0, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn unreachable_socket_names_path_and_command() {
        let client = AdminClient::new("/nonexistent/admin.sock");
        let err = client.backends().await.unwrap_err();
        assert!(matches!(err, AdminError::Connect { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("/nonexistent/admin.sock") && text.contains("show backend"),
            "{text}"
        );
    }
}
