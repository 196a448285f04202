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
        let mut listings = self.listings(vec![command]).await?;
        Ok(listings.pop().unwrap_or_default())
    }

    /// The live entries of each of `maps`, in order, all asked in one exchange.
    pub async fn show_maps(&self, maps: &[&str]) -> Result<Vec<Vec<(String, String)>>, AdminError> {
        let mut commands = Vec::with_capacity(maps.len());
        for map in maps {
            commands.push(format!("show map {map}"));
            self.check_token(commands.last().expect("pushed"), "map", map)?;
        }
        self.listings(commands).await
    }

    /// Sends the `show map` `commands` in one exchange and parses their listings.
    async fn listings(
        &self,
        commands: Vec<String>,
    ) -> Result<Vec<Vec<(String, String)>>, AdminError> {
        let Some(label) = commands.first() else {
            return Ok(vec![]);
        };
        let request: String = commands.iter().map(|c| format!("{c}\n")).collect();
        match self
            .on_session(label, request.as_bytes(), Reading::Maps(&commands))
            .await?
        {
            Read::Maps(listings) => Ok(listings),
            Read::Replies(_) => unreachable!("listings were asked for"),
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
        let changed = vec![(key.to_owned(), value.to_owned())];
        self.edit_map(
            map,
            &MapDiff {
                changed,
                ..MapDiff::default()
            },
        )
        .await
    }

    /// Adds `key value` to the live version of `map` (`add map`). An existing key gets a
    /// second entry; the first one keeps matching.
    pub async fn add_map(&self, map: &str, key: &str, value: &str) -> Result<(), AdminError> {
        let added = vec![(key.to_owned(), value.to_owned())];
        self.edit_map(
            map,
            &MapDiff {
                added,
                ..MapDiff::default()
            },
        )
        .await
    }

    /// Deletes every entry of `key` from the live version of `map` (`del map`). HAProxy
    /// refuses a missing key (`Key not found.`).
    pub async fn del_map(&self, map: &str, key: &str) -> Result<(), AdminError> {
        let removed = vec![key.to_owned()];
        self.edit_map(
            map,
            &MapDiff {
                removed,
                ..MapDiff::default()
            },
        )
        .await
    }

    /// Carries each `(map, diff)` of `edits` to the live version of its map with one command
    /// per key (`set map` for a changed key, `add map` for a new one, `del map` for a
    /// removed one), all of them sent in one exchange. Every argument is checked before
    /// anything is sent. The error names the position in `edits` of the map whose command
    /// HAProxy refused first (the commands after it were carried out).
    pub async fn edit_maps(&self, edits: &[(&str, &MapDiff)]) -> Result<(), (usize, AdminError)> {
        let mut commands = Vec::new();
        // The position in `edits` each command belongs to.
        let mut owners = Vec::new();
        for (i, (map, diff)) in edits.iter().enumerate() {
            self.edit_commands(map, diff, &mut commands)
                .map_err(|e| (i, e))?;
            owners.resize(commands.len(), i);
        }
        if commands.is_empty() {
            return Ok(());
        }
        let replies = self.exchange(&commands).await.map_err(|e| (0, e))?;
        for ((command, reply), &i) in commands.iter().zip(&replies).zip(&owners) {
            self.check_mutation(command, reply).map_err(|e| (i, e))?;
        }
        Ok(())
    }

    /// [`AdminClient::edit_maps`] of one map.
    pub async fn edit_map(&self, map: &str, diff: &MapDiff) -> Result<(), AdminError> {
        self.edit_maps(&[(map, diff)]).await.map_err(|(_, e)| e)
    }

    /// Appends the per-key commands of `diff` on `map` to `commands`, each checked.
    fn edit_commands(
        &self,
        map: &str,
        diff: &MapDiff,
        commands: &mut Vec<String>,
    ) -> Result<(), AdminError> {
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
        Ok(())
    }
}
