//! The Nginx runtime mode (`[proxy] runtime = "lua"`): the routing maps live in a
//! `lua_shared_dict` that every worker reads per request (`templates/nginx/runtime.lua.conf`)
//! and that the agent writes through the control endpoint on a unix socket ([`client`]),
//! so a switch, a canary share or a rollback reaches every worker at once without a reload.
//!
//! The files stay the source of truth: the engine writes them before it writes the dict,
//! Nginx seeds an empty dict from them when it starts (a reload that keeps the dict's size
//! keeps what the agent wrote), and after a reload the agent loads them into the dict
//! ([`Runtime::load_files`]). The dict holds the generation the agent last wrote and when it
//! was seeded ([`client::Head`]): a changed seed time or a generation 0 tells the agent that
//! Nginx restarted and the dict came from the files, which the reconcile then compares.
//!
//! Writes use `safe_set`: a full dict answers 507 ([`ProxyError::Full`]) and evicts nothing.
//! Loads larger than [`MAX_LINES`] go in several requests. Whether the module works on this
//! host is [`detect`]'s question.

pub mod client;
pub mod detect;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::NginxSettings;
use crate::mapfile::{MapEntries, MapSyntax};
use crate::proxy::{MapEdit, MapMechanism, MapUpdate, MapsFailed, ProxyError};
use client::{parse_body, Control, ControlError, Head, Request};

/// Most lines one control request carries (the endpoint refuses more): 50 000.
pub const MAX_LINES: usize = 50_000;
/// Largest map file read back from disk after a reload, in bytes: 256 MiB.
const MAX_MAP_FILE: u64 = 256 << 20;

/// Why a map could not be handed to the dict; the source of a [`ProxyError`].
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The map is not one the Lua lookup reads.
    #[error("{} is not a map the Nginx Lua runtime holds (it holds {known})", path.display())]
    UnknownMap {
        /// The map file asked for.
        path: PathBuf,
        /// The maps it holds.
        known: String,
    },
    /// The dict answered other values than were written.
    #[error("map {map}: the dict holds {got:?} for {key:?} after {want:?} was written")]
    ReadBack {
        /// The map.
        map: String,
        /// The key.
        key: String,
        /// The value sent.
        want: String,
        /// What the endpoint answered, if anything.
        got: Option<String>,
    },
    /// A map file could not be read or parsed after a reload.
    #[error("map file {}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The dict of one Nginx, through its control endpoint.
#[derive(Debug)]
pub struct Runtime {
    control: Control,
    /// Map file -> its name in the dict.
    maps: BTreeMap<PathBuf, String>,
}

impl Runtime {
    /// For the settings of a config whose runtime mode is Lua; `timeout` bounds one request.
    pub fn new(settings: &NginxSettings, timeout: Duration) -> Runtime {
        Runtime {
            control: Control::new(&settings.lua_control, timeout),
            maps: settings
                .lua_maps
                .iter()
                .map(|(name, path)| (path.clone(), name.clone()))
                .collect(),
        }
    }

    fn name(&self, path: &Path) -> Result<&str, ProxyError> {
        self.maps
            .get(path)
            .map(String::as_str)
            .ok_or_else(|| ProxyError::InvalidArgument {
                source: Box::new(RuntimeError::UnknownMap {
                    path: path.to_owned(),
                    known: self.maps.values().cloned().collect::<Vec<_>>().join(", "),
                }),
            })
    }

    /// The dict's generation and seed time.
    pub async fn head(&self) -> Result<Head, ProxyError> {
        Ok(self.control.head().await?)
    }

    /// The entries of the map loaded from `path`, as the dict holds them.
    pub async fn read_map(&self, path: &Path) -> Result<MapEntries, ProxyError> {
        let name = self.name(path)?;
        Ok(self.control.dump(name).await?.1)
    }

    /// The entries of each map of `paths`, as the dict holds them, read in one round trip.
    pub async fn read_maps(&self, paths: &[&Path]) -> Result<Vec<MapEntries>, ProxyError> {
        let names = paths
            .iter()
            .map(|p| self.name(p))
            .collect::<Result<Vec<_>, _>>()?;
        let dumps = self.control.dumps(&names).await?;
        Ok(dumps.into_iter().map(|(_, entries)| entries).collect())
    }

    /// Carries every map of `edits` in one round trip, `generation` recorded with the last
    /// request, every value set read back; `None` when a map needs more than one request
    /// ([`MAX_LINES`]), for the caller to go map by map.
    pub async fn update_maps(
        &self,
        edits: &[MapEdit<'_>],
        generation: u64,
    ) -> Option<Result<Vec<MapUpdate>, MapsFailed>> {
        let started = Instant::now();
        let mut names = Vec::with_capacity(edits.len());
        let mut lines = Vec::with_capacity(edits.len());
        for (i, e) in edits.iter().enumerate() {
            match self.name(e.path) {
                Ok(name) => names.push(name),
                Err(err) => return Some(Err((i, err))),
            }
            lines.push(edit_lines(e.from, e.to));
        }
        if lines.iter().any(|l| l.len() > MAX_LINES) {
            return None;
        }
        // The maps with edits, each in one request; the generation goes with the last one,
        // or alone when the last map has nothing to change.
        let mut requests = Vec::new();
        let mut owners = Vec::new();
        for (i, (name, l)) in names.iter().zip(&lines).enumerate() {
            let last = i + 1 == edits.len();
            if l.is_empty() && !last {
                continue;
            }
            let path = match (last, l.is_empty()) {
                (true, true) => format!("/cutover/generation?generation={generation}"),
                (true, false) => format!("/cutover/map/{name}?generation={generation}"),
                (false, _) => format!("/cutover/map/{name}"),
            };
            requests.push(Request {
                method: "POST",
                path,
                body: l.iter().map(|l| format!("{l}\n")).collect(),
            });
            owners.push(i);
        }
        let failed_at = |i: usize| owners.get(i).copied().unwrap_or(0);
        let replies = match self.control.requests(&requests).await {
            Ok(replies) => replies,
            Err(e) => {
                // A refusal names its request; anything else is the first map's.
                let i = match &e {
                    ControlError::Refused { what, .. } => requests
                        .iter()
                        .position(|r| &r.what() == what)
                        .map_or(0, failed_at),
                    _ => 0,
                };
                return Some(Err((i, e.into())));
            }
        };
        for (r, (request, reply)) in requests.iter().zip(&replies).enumerate() {
            let i = failed_at(r);
            if lines[i].is_empty() {
                continue;
            }
            let back = match parse_body(&reply.body) {
                Ok((_, back)) => back,
                Err(why) => {
                    let err = ControlError::BadReply {
                        socket: self.control.socket().to_owned(),
                        what: request.what(),
                        why,
                    };
                    return Some(Err((i, err.into())));
                }
            };
            if let Err(e) = read_back(names[i], &lines[i], &back) {
                return Some(Err((i, e)));
            }
        }
        Some(Ok(lines
            .iter()
            .map(|l| MapUpdate {
                mechanism: if l.is_empty() {
                    MapMechanism::Unchanged
                } else {
                    MapMechanism::PerKey
                },
                edits: l.len(),
                elapsed: started.elapsed(),
            })
            .collect()))
    }

    /// Brings the map of `path` from `from` to `to` in requests of at most [`MAX_LINES`]
    /// lines, recording `generation` with the last; every value set is read back.
    pub async fn update_map(
        &self,
        path: &Path,
        from: &MapEntries,
        to: &MapEntries,
        generation: Option<u64>,
    ) -> Result<MapUpdate, ProxyError> {
        let started = Instant::now();
        let name = self.name(path)?.to_owned();
        let lines = edit_lines(from, to);
        let edits = lines.len();
        let chunks: Vec<&[String]> = lines.chunks(MAX_LINES).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let body: String = chunk.iter().map(|l| format!("{l}\n")).collect();
            let (_, back) = self
                .control
                .update(&name, &body, generation.filter(|_| last))
                .await?;
            read_back(&name, chunk, &back)?;
        }
        if chunks.is_empty() {
            if let Some(g) = generation {
                self.control.set_generation(g).await?;
            }
        }
        Ok(MapUpdate {
            mechanism: if edits == 0 {
                MapMechanism::Unchanged
            } else {
                MapMechanism::PerKey
            },
            edits,
            elapsed: started.elapsed(),
        })
    }

    /// Records `generation` as the one the dict serves.
    pub async fn set_generation(&self, generation: u64) -> Result<Head, ProxyError> {
        Ok(self.control.set_generation(generation).await?)
    }

    /// Makes every map of the dict equal to its file on disk and records `generation`:
    /// after a reload, which keeps the dict (its size unchanged) but not the files' news.
    /// Returns the number of edits.
    pub async fn load_files(&self, generation: u64) -> Result<usize, ProxyError> {
        let mut edits = 0;
        for (path, name) in &self.maps {
            let desired = read_map_file(path)?;
            let (_, live) = self.control.dump(name).await?;
            edits += self
                .update_map(path, &live, &desired, None)
                .await
                .map(|u| u.edits)?;
        }
        self.control.set_generation(generation).await?;
        Ok(edits)
    }
}

/// Checks that the dict answered, for every `set` of `lines` on `map`, the value set.
fn read_back(map: &str, lines: &[String], back: &MapEntries) -> Result<(), ProxyError> {
    for line in lines {
        let mut words = line.split(' ');
        if let (Some("set"), Some(k), Some(v)) = (words.next(), words.next(), words.next()) {
            if back.get(k).map(String::as_str) != Some(v) {
                return Err(ProxyError::UnexpectedReply {
                    source: Box::new(RuntimeError::ReadBack {
                        map: map.to_owned(),
                        key: k.to_owned(),
                        want: v.to_owned(),
                        got: back.get(k).cloned(),
                    }),
                });
            }
        }
    }
    Ok(())
}

/// `set <key> <value>` for every entry of `to` that `from` lacks or holds otherwise, then
/// `del <key>` for every key only `from` has.
pub fn edit_lines(from: &MapEntries, to: &MapEntries) -> Vec<String> {
    let mut lines: Vec<String> = to
        .iter()
        .filter(|(k, v)| from.get(*k) != Some(*v))
        .map(|(k, v)| format!("set {k} {v}"))
        .collect();
    lines.extend(
        from.keys()
            .filter(|k| !to.contains_key(*k))
            .map(|k| format!("del {k}")),
    );
    lines
}

fn read_map_file(path: &Path) -> Result<MapEntries, ProxyError> {
    let err = |reason: String| ProxyError::InvalidArgument {
        source: Box::new(RuntimeError::File {
            path: path.to_owned(),
            reason,
        }),
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > MAX_MAP_FILE {
        return Err(err(format!("larger than {MAX_MAP_FILE} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    MapSyntax::Nginx
        .parse(&text)
        .map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_set_what_differs_and_delete_what_is_gone() {
        let from: MapEntries = [("a", "1"), ("b", "2"), ("c", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let to: MapEntries = [("a", "1"), ("b", "20"), ("d", "4")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(edit_lines(&from, &to), ["set b 20", "set d 4", "del c"]);
        assert!(edit_lines(&to, &to).is_empty());
    }
}
