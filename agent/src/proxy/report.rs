//! What a proxy reports back: a passed check, a map update, a confirmed reload, and the
//! epoch that identifies its running configuration; durations serialize as milliseconds.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

/// Result of a successful config check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Warnings the checker printed (the check still passed).
    pub warnings: Vec<String>,
    /// Wall time of the check.
    #[serde(with = "millis")]
    pub elapsed: Duration,
    /// Backends the checked config defines, when the checker can tell (Nginx's `-T` dump
    /// lists its upstreams); `None` when it cannot (HAProxy).
    #[serde(skip)]
    pub backends: Option<BTreeSet<String>>,
}

/// How a map reached its new content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MapMechanism {
    /// Nothing to do.
    Unchanged,
    /// One runtime command per changed key.
    PerKey,
    /// A versioned transaction: prepare, fill, commit.
    Transaction,
}

/// What one runtime map update did.
#[derive(Debug, Clone, Serialize)]
pub struct MapUpdate {
    /// How the keys were sent: per key, or in one versioned transaction.
    pub mechanism: MapMechanism,
    /// Keys added, changed or removed.
    pub edits: usize,
    /// Wall time the update took; serialized as milliseconds.
    #[serde(with = "millis")]
    pub elapsed: Duration,
}

/// One map of a change carried at runtime: where it was loaded from, what the proxy serves
/// now and what it must serve.
#[derive(Debug, Clone, Copy)]
pub struct MapEdit<'a> {
    /// The map's file, as the proxy loaded it.
    pub path: &'a std::path::Path,
    /// What the running proxy serves from it.
    pub from: &'a crate::mapfile::MapEntries,
    /// What it must serve.
    pub to: &'a crate::mapfile::MapEntries,
}

/// A failed [`Proxy::update_maps`](super::Proxy::update_maps): the position of the map it
/// failed on, and why.
pub type MapsFailed = (usize, super::ProxyError);

/// What one confirmed reload did. Times are measured from the moment the reload was asked
/// for (the master CLI command, or the signal).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadReport {
    /// Worker processes serving after the reload.
    pub workers: Vec<u32>,
    /// Until the reload was confirmed.
    #[serde(with = "millis")]
    pub elapsed: Duration,
    /// Workers that served before the reload and were told to finish (Nginx).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_workers: Vec<u32>,
    /// Until the new config first answered a new connection (Nginx: its generation
    /// endpoint answered the new generation).
    #[serde(
        rename = "serving_ms",
        with = "millis_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub serving: Option<Duration>,
    /// Until no worker of the previous config accepted connections any more: from then on
    /// every new connection gets the new config (Nginx).
    #[serde(
        rename = "old_stopped_ms",
        with = "millis_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub old_stopped: Option<Duration>,
    /// Spent waiting for the minimum gap since the previous reload, before the reload.
    #[serde(rename = "gap_wait_ms", with = "millis")]
    pub gap_wait: Duration,
}

/// Serializes a `Duration` as fractional milliseconds.
pub mod millis {
    use serde::Serializer;
    use std::time::Duration;

    /// Writes `d` as a float of milliseconds, rounded to the microsecond (`1.5` for
    /// 1500 µs); for `#[serde(with = "millis")]`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
    }
}

/// Serializes an optional `Duration` as fractional milliseconds (or null).
pub mod millis_opt {
    use serde::Serializer;
    use std::time::Duration;

    /// Writes `Some(d)` as [`millis::serialize`](super::millis::serialize) does and `None`
    /// as null; for `#[serde(with = "millis_opt")]`.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::millis::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}
