//! One definition, two encodings: the gRPC messages of `proto/cutover/v1/cutover.proto`
//! to and from the protocol's own [`Command`] and [`Reply`], the types the unix socket
//! carries as JSON lines. Nothing else converts between them: the server turns every
//! message into a [`Command`] here (then held to the same bounds, [`protocol::check`])
//! and every [`Reply`] into a message; the client does the reverse.

use std::collections::BTreeMap;

use super::pb;
use crate::protocol::{
    self, Canary, Colour, Command, Desired, MapView, Mutation, ReasonText, Reply, Request, Terms,
};

/// A message that names no valid command: a missing or unknown colour, a flag the verb
/// does not take, a value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad request: {0}")]
pub struct Invalid(pub String);

fn invalid(message: impl Into<String>) -> Invalid {
    Invalid(message.into())
}

fn colour(field: &str, value: i32) -> Result<Colour, Invalid> {
    match pb::Colour::try_from(value) {
        Ok(pb::Colour::Blue) => Ok(Colour::Blue),
        Ok(pb::Colour::Green) => Ok(Colour::Green),
        _ => Err(invalid(format!(
            "{field}: a colour (BLUE or GREEN) is required"
        ))),
    }
}

fn pb_colour(c: Colour) -> i32 {
    match c {
        Colour::Blue => pb::Colour::Blue as i32,
        Colour::Green => pb::Colour::Green as i32,
    }
}

fn percent(value: u32) -> Result<u8, Invalid> {
    u8::try_from(value).map_err(|_| invalid(format!("percent: {value} is outside 1..=99")))
}

/// A routing change message as the protocol's command, with its options.
pub fn change(change: pb::Change) -> Result<Command, Invalid> {
    use pb::change::Change as C;
    let (request, options) = match change.change.ok_or_else(|| invalid("change: empty"))? {
        C::Switch(r) => (
            Request::Switch {
                colour: colour("colour", r.colour)?,
                service: r.service,
            },
            r.options,
        ),
        C::Canary(r) => (
            Request::Canary {
                colour: colour("colour", r.colour)?,
                percent: percent(r.percent)?,
                service: r.service,
            },
            r.options,
        ),
        C::Promote(r) => (Request::Promote { service: r.service }, r.options),
        C::Abort(r) => (Request::Abort { service: r.service }, r.options),
        C::Rollback(r) => (Request::Rollback { service: r.service }, r.options),
        C::Drain(r) => (
            Request::Drain {
                colour: colour("colour", r.colour)?,
                service: r.service,
            },
            r.options,
        ),
        C::Undrain(r) => (
            Request::Undrain {
                colour: colour("colour", r.colour)?,
                service: r.service,
            },
            r.options,
        ),
        C::Apply(r) => (
            Request::Set {
                services: r
                    .services
                    .into_iter()
                    .map(|(name, d)| Ok((name, desired(d)?)))
                    .collect::<Result<_, Invalid>>()?,
            },
            r.options,
        ),
    };
    let o = options.unwrap_or_default();
    if o.force && !Request::takes_force(request.verb()) {
        return Err(invalid(format!("{} does not take force", request.verb())));
    }
    let reason = o
        .reason
        .map(|r| r.parse::<ReasonText>())
        .transpose()
        .map_err(|e| invalid(e.to_string()))?;
    let mutation = Command::Change(Mutation {
        request,
        force: o.force,
        dry_run: o.dry_run,
        local: o.local,
        terms: Terms {
            reason,
            if_generation: o.if_generation,
        },
    });
    checked(if o.cluster {
        Command::Cluster {
            command: Box::new(mutation),
        }
    } else {
        mutation
    })
}

fn desired(d: pb::Desired) -> Result<Desired, Invalid> {
    Ok(Desired {
        live: colour("live", d.live)?,
        canary: d
            .canary
            .map(|c| {
                Ok::<_, Invalid>(Canary {
                    colour: colour("canary.colour", c.colour)?,
                    percent: percent(c.percent)?,
                    // The remote API leaves the cohort to the agent.
                    seed: 0,
                })
            })
            .transpose()?,
        previous: d.previous.map(|p| colour("previous", p)).transpose()?,
        drained: d
            .drained
            .map(|d| {
                d.colours
                    .into_iter()
                    .map(|c| colour("drained", c))
                    .collect()
            })
            .transpose()?,
    })
}

fn pb_desired(d: &Desired) -> pb::Desired {
    pb::Desired {
        live: pb_colour(d.live),
        canary: d.canary.map(|c| pb::Canary {
            colour: pb_colour(c.colour),
            percent: c.percent.into(),
        }),
        previous: d.previous.map(pb_colour),
        drained: d.drained.as_ref().map(|set| pb::Drained {
            colours: set.iter().copied().map(pb_colour).collect(),
        }),
    }
}

/// `Status` as the protocol's command (`cluster`: one row per host).
pub fn status(r: pb::StatusRequest) -> Command {
    if r.cluster {
        Command::ClusterStatus
    } else {
        Command::Status
    }
}

/// `History` as the protocol's command, with its default limit and bounds.
pub fn history(r: pb::HistoryRequest) -> Result<Command, Invalid> {
    let mut json = serde_json::json!({ "cmd": "history" });
    if let Some(service) = r.service {
        json["service"] = service.into();
    }
    if let Some(limit) = r.limit {
        json["limit"] = limit.into();
    }
    for (field, value) in [("user", r.user), ("verb", r.verb)] {
        if let Some(value) = value {
            json[field] = value.into();
        }
    }
    for (field, value) in [("since_ms", r.since_ms), ("until_ms", r.until_ms)] {
        if let Some(value) = value {
            json[field] = value.into();
        }
    }
    let history: Command = serde_json::from_value(json).map_err(|e| invalid(e.to_string()))?;
    checked(if r.cluster {
        Command::Cluster {
            command: Box::new(history),
        }
    } else {
        history
    })
}

/// `MapShow` as the protocol's command.
pub fn map_show(r: pb::MapShowRequest) -> Result<Command, Invalid> {
    let view = match pb::MapView::try_from(r.view) {
        Ok(pb::MapView::Desired) => MapView::Desired,
        Ok(pb::MapView::Live) => MapView::Live,
        Ok(pb::MapView::Diff) => MapView::Diff,
        Err(_) => return Err(invalid(format!("view: {} is not a view", r.view))),
    };
    Ok(Command::MapShow { name: r.name, view })
}

fn checked(command: Command) -> Result<Command, Invalid> {
    protocol::check(&command).map_err(|e| invalid(e.to_string()))?;
    Ok(command)
}

/// A command as the gRPC call that carries it: the RPC and its message.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `Status`.
    Status(pb::StatusRequest),
    /// A routing verb's own RPC (`Switch`, `Canary`, ...); its dry run is the same with
    /// `options.dry_run` (equal to `Plan`).
    Change(pb::Change),
    /// `History`.
    History(pb::HistoryRequest),
    /// `MapShow`.
    MapShow(pb::MapShowRequest),
    /// `Metrics`.
    Metrics,
    /// `ReloadConfig`.
    ReloadConfig,
}

/// A command the remote API does not carry: the steps of a cluster change, which peers
/// send each other over the peer listener.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a call of the remote API")]
pub struct NotACall(pub &'static str);

/// The gRPC call of a command (the client's side of [`change`], [`status`], [`history`],
/// [`map_show`]).
pub fn call(command: &Command) -> Result<Call, NotACall> {
    let cluster = |inner: &Command| match call(inner)? {
        Call::Change(mut c) => {
            if let Some(o) = options_of(&mut c) {
                o.cluster = true;
            }
            Ok(Call::Change(c))
        }
        Call::History(h) => Ok(Call::History(pb::HistoryRequest { cluster: true, ..h })),
        _ => Err(NotACall("cluster")),
    };
    Ok(match command {
        Command::Status => Call::Status(pb::StatusRequest { cluster: false }),
        Command::ClusterStatus => Call::Status(pb::StatusRequest { cluster: true }),
        Command::Change(m) => Call::Change(pb_change(m)),
        Command::Cluster { command } => return cluster(command),
        Command::MapShow { name, view } => Call::MapShow(pb::MapShowRequest {
            name: name.clone(),
            view: match view {
                MapView::Desired => pb::MapView::Desired,
                MapView::Live => pb::MapView::Live,
                MapView::Diff => pb::MapView::Diff,
            } as i32,
        }),
        Command::History {
            service,
            limit,
            user,
            verb,
            since_ms,
            until_ms,
        } => Call::History(pb::HistoryRequest {
            service: service.clone(),
            limit: Some(u32::try_from(*limit).unwrap_or(u32::MAX)),
            cluster: false,
            user: user.clone(),
            verb: verb.clone(),
            since_ms: *since_ms,
            until_ms: *until_ms,
        }),
        Command::Metrics => Call::Metrics,
        Command::ReloadConfig => Call::ReloadConfig,
        other => return Err(NotACall(other.verb())),
    })
}

/// The options of a change message, created when absent; none for an empty one.
fn options_of(c: &mut pb::Change) -> Option<&mut pb::Options> {
    use pb::change::Change as C;
    let options = match c.change.as_mut()? {
        C::Switch(r) => &mut r.options,
        C::Canary(r) => &mut r.options,
        C::Promote(r) => &mut r.options,
        C::Abort(r) => &mut r.options,
        C::Rollback(r) => &mut r.options,
        C::Drain(r) => &mut r.options,
        C::Undrain(r) => &mut r.options,
        C::Apply(r) => &mut r.options,
    };
    Some(options.get_or_insert_with(Default::default))
}

/// `Plan`: the change as a dry run, whatever its options say.
pub fn plan(mut c: pb::Change) -> Result<Command, Invalid> {
    options_of(&mut c)
        .ok_or_else(|| invalid("change: empty"))?
        .dry_run = true;
    change(c)
}

fn pb_change(m: &Mutation) -> pb::Change {
    use pb::change::Change as C;
    let options = Some(pb::Options {
        force: m.force,
        dry_run: m.dry_run,
        local: m.local,
        cluster: false,
        reason: m.terms.reason.as_ref().map(|r| r.as_str().to_owned()),
        if_generation: m.terms.if_generation,
    });
    let change = match &m.request {
        Request::Switch { service, colour } => C::Switch(pb::SwitchRequest {
            service: service.clone(),
            colour: pb_colour(*colour),
            options,
        }),
        Request::Canary {
            service,
            colour,
            percent,
        } => C::Canary(pb::CanaryRequest {
            service: service.clone(),
            colour: pb_colour(*colour),
            percent: (*percent).into(),
            options,
        }),
        Request::Promote { service } => C::Promote(pb::PromoteRequest {
            service: service.clone(),
            options,
        }),
        Request::Abort { service } => C::Abort(pb::AbortRequest {
            service: service.clone(),
            options,
        }),
        Request::Rollback { service } => C::Rollback(pb::RollbackRequest {
            service: service.clone(),
            options,
        }),
        Request::Drain { service, colour } => C::Drain(pb::DrainRequest {
            service: service.clone(),
            colour: pb_colour(*colour),
            options,
        }),
        Request::Undrain { service, colour } => C::Undrain(pb::UndrainRequest {
            service: service.clone(),
            colour: pb_colour(*colour),
            options,
        }),
        Request::Set { services } => C::Apply(pb::ApplyRequest {
            services: services
                .iter()
                .map(|(name, d)| (name.clone(), pb_desired(d)))
                .collect(),
            options,
        }),
    };
    pb::Change {
        change: Some(change),
    }
}

/// The protocol's reply as the gRPC `Reply`.
pub fn reply(r: &Reply) -> pb::Reply {
    pb::Reply {
        status: match r.status {
            protocol::Status::Ok => pb::Status::Ok,
            protocol::Status::Error => pb::Status::Error,
            protocol::Status::Progress => pb::Status::Progress,
        } as i32,
        message: r.message.clone(),
        data: (!r.data.is_null()).then(|| value(&r.data)),
    }
}

/// The gRPC `Reply` as the protocol's reply.
pub fn from_reply(r: pb::Reply) -> Reply {
    let status = match pb::Status::try_from(r.status) {
        Ok(pb::Status::Ok) => protocol::Status::Ok,
        Ok(pb::Status::Progress) => protocol::Status::Progress,
        _ => protocol::Status::Error,
    };
    Reply {
        status,
        message: r.message,
        data: r.data.map_or(serde_json::Value::Null, json),
    }
}

/// A watch event as the gRPC `Event`.
pub fn event(e: &protocol::Event) -> pb::Event {
    pb::Event {
        generation: e.generation,
        data: Some(value(&serde_json::to_value(e).expect("event serializes"))),
    }
}

/// JSON as `google.protobuf.Value`.
pub fn value(v: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    use serde_json::Value as J;
    let kind = match v {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(*b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        J::String(s) => Kind::StringValue(s.clone()),
        J::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(value).collect(),
        }),
        J::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// `google.protobuf.Value` as JSON. Numbers are doubles there: a whole number comes back
/// as an integer, so the protocol's counters and generations read as they were written
/// (exactly up to 2^53).
pub fn json(v: prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    use serde_json::Value as J;
    match v.kind {
        None | Some(Kind::NullValue(_)) => J::Null,
        Some(Kind::BoolValue(b)) => J::Bool(b),
        Some(Kind::NumberValue(n)) => number(n),
        Some(Kind::StringValue(s)) => J::String(s),
        Some(Kind::ListValue(l)) => J::Array(l.values.into_iter().map(json).collect()),
        Some(Kind::StructValue(s)) => J::Object(
            s.fields
                .into_iter()
                .map(|(k, v)| (k, json(v)))
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect(),
        ),
    }
}

fn number(n: f64) -> serde_json::Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if n.fract() == 0.0 && n.abs() <= EXACT {
        if n >= 0.0 {
            return (n as u64).into();
        }
        return (n as i64).into();
    }
    serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

#[cfg(test)]
mod tests;
