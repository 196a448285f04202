//! Request lines in and out: [`decode`] checks a line (JSON, depth, duplicate keys,
//! version, unknown fields, bounds) before it becomes a [`Command`]; [`encode`] writes one.

use serde::Deserialize;

use super::{Command, Mutation, Request, MAX_DEPTH, MAX_HISTORY, MAX_SERVICES, PROTOCOL_VERSION};

/// Why a request line was refused before it reached the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON (or nested past serde_json's own limit).
    #[error("request is not valid JSON: {0}")]
    Json(String),
    /// Not an object.
    #[error("request must be a JSON object")]
    NotAnObject,
    /// Deeper than [`MAX_DEPTH`].
    #[error("request nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// `v` is not a positive integer.
    #[error("\"v\" must be a positive integer")]
    BadVersion,
    /// `v` is above [`PROTOCOL_VERSION`].
    #[error("protocol version {0} is newer than this agent speaks ({PROTOCOL_VERSION})")]
    TooNew(u64),
    /// Not a command: unknown verb or field, a value of the wrong type or range.
    #[error("bad request: {0}")]
    Command(String),
    /// A `history` limit above [`MAX_HISTORY`].
    #[error("history limit {0} is above {MAX_HISTORY}")]
    HistoryLimit(usize),
    /// An object names a key twice.
    #[error("request names a field twice: {0}")]
    Duplicate(String),
}

/// Decodes one request line.
pub fn decode(line: &str) -> Result<Command, DecodeError> {
    let mut value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
        // serde_json's own recursion limit (128) answers "recursion limit exceeded".
        DecodeError::Json(e.to_string())
    })?;
    if depth(&value) > MAX_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    // A JSON object keeps the last of two equal keys; other parsers keep the first. A
    // request that means different things to different readers is refused.
    serde_json::from_str::<NoDuplicateKeys>(line)
        .map_err(|e| DecodeError::Duplicate(e.to_string()))?;
    let obj = value.as_object_mut().ok_or(DecodeError::NotAnObject)?;
    if let Some(v) = obj.remove("v") {
        let v = v
            .as_u64()
            .filter(|v| *v >= 1)
            .ok_or(DecodeError::BadVersion)?;
        if v > u64::from(PROTOCOL_VERSION) {
            return Err(DecodeError::TooNew(v));
        }
    }
    let cmd: Command =
        serde_json::from_value(value.clone()).map_err(|e| DecodeError::Command(e.to_string()))?;
    // serde ignores extra fields next to the tag of a variant without fields (`status`):
    // every known field of a command serializes, so anything else is unknown.
    let known = serde_json::to_value(&cmd).expect("command serializes");
    if let (Some(given), Some(known)) = (value.as_object(), known.as_object()) {
        if let Some(extra) = given.keys().find(|k| !known.contains_key(*k)) {
            return Err(DecodeError::Command(format!(
                "unknown field `{extra}` for `{}`",
                cmd.verb()
            )));
        }
    }
    check(&cmd)?;
    Ok(cmd)
}

/// The bounds every command is held to, whatever encoding brought it (a JSON line here,
/// a gRPC message in `grpc::convert`): history limits and filters, `cluster`'s inner command, the
/// number of services one `apply` names.
pub fn check(cmd: &Command) -> Result<(), DecodeError> {
    if let Command::History {
        limit, user, verb, ..
    } = cmd
    {
        if *limit > MAX_HISTORY {
            return Err(DecodeError::HistoryLimit(*limit));
        }
        for (field, value, max) in [("user", user, 256), ("verb", verb, 64)] {
            if value.as_ref().is_some_and(|v| v.len() > max) {
                return Err(DecodeError::Command(format!(
                    "history {field} is longer than {max} bytes"
                )));
            }
        }
    }
    if let Command::Cluster { command } = cmd {
        if !command.is_mutation() && !matches!(**command, Command::History { .. }) {
            return Err(DecodeError::Command(
                "cluster takes a command that changes routing, or history".into(),
            ));
        }
        if let Command::History {
            limit,
            ref user,
            ref verb,
            since_ms,
            until_ms,
            ..
        } = **command
        {
            if limit > MAX_HISTORY {
                return Err(DecodeError::HistoryLimit(limit));
            }
            if user.is_some() || verb.is_some() || since_ms.is_some() || until_ms.is_some() {
                return Err(DecodeError::Command(
                    "the fleet's history (cluster) filters by service only, not by user, \
                     verb or time"
                        .into(),
                ));
            }
        }
    }
    if let Command::Change(Mutation {
        request: Request::Set { services },
        ..
    }) = cmd
    {
        if services.len() > MAX_SERVICES {
            return Err(DecodeError::Command(format!(
                "apply names {} services, more than {MAX_SERVICES}",
                services.len(),
            )));
        }
    }
    Ok(())
}

/// Encodes a request as one line, with the protocol version.
pub fn encode(cmd: &Command) -> String {
    let mut v = serde_json::to_value(cmd).expect("command serializes");
    v.as_object_mut()
        .expect("command is an object")
        .insert("v".into(), PROTOCOL_VERSION.into());
    v.to_string()
}

/// Parses any JSON and fails on an object with a key twice.
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(self)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = std::collections::BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<NoDuplicateKeys>()?;
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("duplicate field `{key}`")));
            }
        }
        Ok(self)
    }
}

fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
