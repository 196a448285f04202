//! Reading maps (the list, one map's entries, streamed) and editing one key of the live
//! version at a time.

use tokio::io::AsyncReadExt;

use super::{AdminClient, AdminError};
use crate::proxy::haproxy::oneshot::{read_to_end, Exchange};
use crate::proxy::haproxy::reply::{self, MapInfo, MapLine, ReplyError};

/// Longest line accepted while streaming `show map`, in bytes (64 KiB; HAProxy's lines are
/// bounded by `tune.bufsize`).
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Size of one socket read while streaming, in bytes.
const READ_CHUNK_BYTES: usize = 64 * 1024;

impl AdminClient {
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
}
