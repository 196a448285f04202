//! Reading maps (the list, one map's entries, streamed) and editing one key of the live
//! version at a time.

use super::session::Session;
use super::{AdminClient, AdminError, Read, Reading};
use crate::mapfile::MapDiff;
use crate::proxy::haproxy::reply::{self, MapInfo, MapLine, ReplyError};

/// Longest line accepted while streaming `show map`, in bytes (64 KiB; HAProxy's lines are
/// bounded by `tune.bufsize`).
const MAX_LINE_BYTES: usize = 64 * 1024;

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
    /// The listing is parsed as it arrives, on the persistent connection.
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
        let request = format!("{command}\n");
        match self
            .on_session(&command, request.as_bytes(), Reading::Map(&command))
            .await?
        {
            Read::Map(entries) => Ok(entries),
            Read::Replies(_) => unreachable!("a listing was asked for"),
        }
    }

    /// Parses the reply of `command` (a `show map`) from `session` as it arrives.
    pub(super) async fn read_map_listing(
        &self,
        session: &mut Session,
        command: &str,
    ) -> Result<Vec<(String, String)>, AdminError> {
        let failed = |e| self.exchange_error(command, e);
        let mut entries = Vec::new();
        while let Some(line) = session
            .line(self.timeout, MAX_LINE_BYTES)
            .await
            .map_err(failed)?
        {
            let text = String::from_utf8_lossy(session.bytes(line));
            match reply::parse_map_line(&text) {
                Some(MapLine::Entry(k, v)) => entries.push((k.to_owned(), v.to_owned())),
                Some(MapLine::End) => {}
                None => {
                    // HAProxy's error text: keep what is left of it, bounded.
                    let mut text = text.into_owned();
                    while let Some(line) = session
                        .line(self.timeout, MAX_LINE_BYTES)
                        .await
                        .map_err(failed)?
                    {
                        if text.len() < reply::MAX_REPLY_IN_ERROR {
                            text.push('\n');
                            text.push_str(&String::from_utf8_lossy(session.bytes(line)));
                        }
                    }
                    let reply = reply::clip(text.trim()).to_owned();
                    return Err(self.reply_error(command, ReplyError::Refused { reply }));
                }
            }
        }
        Ok(entries)
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

    /// Carries `diff` to the live version of `map` with one command per key (`set map` for
    /// a changed key, `add map` for a new one, `del map` for a removed one), all sent in one
    /// exchange. Every argument is checked before anything is sent; the first command
    /// HAProxy refused is the error (the ones after it were carried out).
    pub async fn edit_map(&self, map: &str, diff: &MapDiff) -> Result<(), AdminError> {
        let mut commands = Vec::with_capacity(diff.len());
        for (k, v) in &diff.changed {
            commands.push(format!("set map {map} {k} {v}"));
            self.check_entry(commands.last().expect("pushed"), map, k, v)?;
        }
        for (k, v) in &diff.added {
            commands.push(format!("add map {map} {k} {v}"));
            self.check_entry(commands.last().expect("pushed"), map, k, v)?;
        }
        for k in &diff.removed {
            commands.push(format!("del map {map} {k}"));
            let command = commands.last().expect("pushed");
            self.check_token(command, "map", map)?;
            self.check_token(command, "key", k)?;
        }
        if commands.is_empty() {
            return Ok(());
        }
        let replies = self.exchange(&commands).await?;
        for (command, reply) in commands.iter().zip(&replies) {
            self.check_mutation(command, reply)?;
        }
        Ok(())
    }
}
