//! Which hook event a journal line is, and the JSON a hook receives for it. The journal is
//! where the engine records everything it did, was asked or refused, so the hooks see what
//! `history` shows, one event per line at most.

use serde::Serialize;

use crate::config::EventKind;
use crate::protocol::{Colour, ServiceChange};
use crate::requester::{Reason, Requester};
use crate::store::{JournalEntry, Outcome};

/// One event as a hook receives it (the JSON body, the command's standard input).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    /// What happened (serialized as [`EventKind::as_str`]).
    pub event: EventKind,
    /// The service, when the event concerns one.
    pub service: Option<String>,
    /// Its live colour before, when the event concerns one service.
    pub from: Option<Colour>,
    /// Its live colour after.
    pub to: Option<Colour>,
    /// The state generation after the change (the current one for a refusal or a fault).
    pub generation: u64,
    /// Unix time of the journal line, milliseconds.
    pub time_ms: u64,
    /// This host's name.
    pub host: String,
    /// Who asked, as the journal records it (`{"uid", "user", "gid", "group", "pid",
    /// "via"}`): for a change that came through a cluster, the agent that carried it here.
    pub who: Requester,
    /// Who asked for a change that came through a cluster (on every host it reached).
    pub asked_by: Option<Requester>,
    /// Why, as the requester said (`--reason`).
    pub reason: Option<String>,
    /// The journal's verb (`switch`, `rollback`, `apply`, ...) or the agent's own work
    /// (`reconcile`, `config`, `watch`).
    pub op: String,
    /// The journal's summary: what changed, or the error.
    pub message: String,
    /// Every service the change moved, with its routing before and after.
    pub services: Vec<ServiceChange>,
    /// The step that refused a change or failed a check, when one did.
    pub step: Option<String>,
}

/// The event `entry` is, if it is one a hook can receive; `host` is this host's name.
pub fn notice(entry: &JournalEntry, host: &str) -> Option<Notice> {
    // A refusal's request and message are cut to the bounds the journal keeps.
    let capped;
    let entry = match entry.result {
        Outcome::Error => {
            capped = crate::store::bounds::capped(entry.clone());
            &capped
        }
        _ => entry,
    };
    let op = entry.verb();
    let services: Vec<ServiceChange> = entry
        .data
        .get("services")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let kind = kind(op, entry, &services)?;
    let service = entry
        .request
        .get("service")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .or_else(|| match services.as_slice() {
            [one] => Some(one.service.clone()),
            _ => None,
        });
    let moved = service
        .as_ref()
        .and_then(|s| services.iter().find(|c| &c.service == s));
    Some(Notice {
        event: kind,
        from: moved.and_then(|c| c.from.as_ref()).map(|s| s.live),
        to: moved.and_then(|c| c.to.as_ref()).map(|s| s.live),
        service,
        generation: entry.generation,
        time_ms: entry.time_ms,
        host: host.to_owned(),
        who: entry.requester.clone(),
        asked_by: entry.asked_by.clone(),
        reason: entry.reason.as_ref().map(|r| r.as_str().to_owned()),
        op: op.to_owned(),
        message: entry.message.clone(),
        services,
        step: entry
            .data
            .get("step")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    })
}

/// The event of a journal line with `op`, and the changes it carries.
fn kind(op: &str, entry: &JournalEntry, services: &[ServiceChange]) -> Option<EventKind> {
    let by_watch = matches!(entry.requester, Requester::Agent(Reason::Watch));
    let has = |key: &str| entry.data.get(key).is_some_and(|v| !v.is_null());
    Some(match (op, entry.result) {
        ("watch", Outcome::Passed) => EventKind::WatchPassed,
        ("watch", Outcome::Held) => EventKind::WatchHeld,
        // The rollback the watch made is journaled as its own request, with the colours.
        ("watch", _) | ("recover" | "render", _) => return None,
        ("reconcile", Outcome::Error) => EventKind::Fault,
        ("reconcile", Outcome::Ok) if has("fault") => EventKind::Recovered,
        ("reconcile", Outcome::Ok) if has("fixes") => EventKind::DriftRepaired,
        ("reconcile", _) => return None,
        ("config", Outcome::Ok) => EventKind::ConfigReloaded,
        ("config", Outcome::Error) => EventKind::ConfigRefused,
        ("config", _) => return None,
        ("rollback", Outcome::Error) if by_watch => EventKind::RollbackFailed,
        (_, Outcome::Error) => EventKind::Refused,
        (_, Outcome::Ok) if services.is_empty() => return None,
        ("rollback", Outcome::Ok) if by_watch => EventKind::AutoRollback,
        ("rollback", Outcome::Ok) => EventKind::Rollback,
        ("switch" | "promote", Outcome::Ok) => EventKind::Switch,
        ("canary" | "abort", Outcome::Ok) => EventKind::Canary,
        ("drain" | "undrain", Outcome::Ok) => EventKind::Drain,
        ("set" | "apply", Outcome::Ok) => {
            let canary = |c: &ServiceChange| {
                c.from.as_ref().and_then(|s| s.canary) != c.to.as_ref().and_then(|s| s.canary)
            };
            if services.iter().any(ServiceChange::live_moved) {
                EventKind::Switch
            } else if services.iter().any(canary) {
                EventKind::Canary
            } else {
                EventKind::Drain
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::protocol::ServiceState;

    fn entry(request: Value, requester: Requester, result: Outcome, data: Value) -> JournalEntry {
        JournalEntry {
            generation: 8,
            time_ms: 1_700_000_000_000,
            requester,
            request,
            result,
            message: "m".into(),
            data,
            verb: None,
            reason: None,
            asked_by: None,
        }
    }

    fn flip(service: &str, from: Colour, to: Colour) -> Value {
        let mut after = ServiceState::live_on(to);
        after.previous = Some(from);
        json!([ServiceChange {
            service: service.into(),
            from: Some(ServiceState::live_on(from)),
            to: Some(after),
        }])
    }

    fn event(e: &JournalEntry) -> Option<&'static str> {
        notice(e, "lb1").map(|n| n.event.as_str())
    }

    #[test]
    fn a_switch_carries_its_service_colours_and_who() {
        let who = Requester::local(Some(1000), Some(100), Some(42));
        let e = entry(
            json!({"op": "switch", "service": "web", "colour": "green"}),
            who.clone(),
            Outcome::Ok,
            json!({"services": flip("web", Colour::Blue, Colour::Green), "files": []}),
        );
        let n = notice(&e, "lb1").unwrap();
        assert_eq!(
            (
                n.event.as_str(),
                n.service.as_deref(),
                n.from,
                n.to,
                n.generation
            ),
            (
                "switch",
                Some("web"),
                Some(Colour::Blue),
                Some(Colour::Green),
                8
            )
        );
        assert_eq!(
            (n.host.as_str(), &n.who, n.op.as_str()),
            ("lb1", &who, "switch")
        );
        let body = serde_json::to_value(&n).unwrap();
        assert_eq!(
            body["who"],
            json!({"uid": 1000, "gid": 100, "pid": 42, "via": "socket"})
        );
        assert_eq!(body["from"], "blue");
        assert_eq!(body["services"][0]["to"]["live"], "green");
    }

    /// One journal line per row: its `op` (`cmd:` for a request journaled by its wire
    /// verb), who, its result, its data, and the event it is (`-`: none).
    const LINES: &str = "
        rollback    watch  ok           moved       auto_rollback
        rollback    watch  error        step        rollback_failed
        rollback    user   ok           moved       rollback
        promote     user   ok           moved       switch
        switch      user   ok           nothing     -
        canary      user   ok           canary      canary
        set         user   ok           canary      canary
        set         user   ok           moved       switch
        drain       user   ok           drained     drain
        switch      user   error        step        refused
        apply       user   error        step        refused
        watch       watch  passed       null        watch_passed
        watch       watch  held         null        watch_held
        watch       watch  rolled_back  null        -
        reconcile   agent  error        step        fault
        reconcile   agent  ok           fault       recovered
        reconcile   agent  ok           fixes       drift_repaired
        config      agent  ok           nothing     config_reloaded
        config      agent  error        step        config_refused
        recover     agent  recovered    null        -
        render      agent  ok           null        -
        cmd:switch  user   ok           moved       -";

    #[test]
    fn each_journal_line_is_its_event() {
        let services = |s: Value| json!({ "services": s });
        let state = |live: &str, canary: Value, drained: Value| json!({"live": live, "canary": canary, "drained": drained});
        let web = |from: Value, to: Value| json!([{"service": "web", "from": from, "to": to}]);
        for row in LINES.lines().filter(|l| !l.trim().is_empty()) {
            let [op, who, result, data, expected] = row.split_whitespace().collect::<Vec<_>>()[..]
            else {
                panic!("{row}");
            };
            let request = match op.strip_prefix("cmd:") {
                Some(verb) => json!({ "cmd": verb }),
                None => json!({ "op": op, "service": "web" }),
            };
            let who = match who {
                "watch" => Requester::Agent(Reason::Watch),
                "agent" => Requester::agent(),
                _ => Requester::local(Some(0), Some(0), Some(1)),
            };
            let result: Outcome = serde_json::from_value(json!(result)).unwrap();
            let none = Value::Null;
            let data = match data {
                "moved" => services(flip("web", Colour::Green, Colour::Blue)),
                "nothing" => services(json!([])),
                "canary" => services(web(
                    state("blue", none.clone(), json!([])),
                    state("blue", json!({"colour": "green", "percent": 10}), json!([])),
                )),
                "drained" => services(web(
                    state("blue", none.clone(), json!([])),
                    state("blue", none, json!(["green"])),
                )),
                "step" => json!({"step": "validate"}),
                "fault" => json!({"why": "tick", "fault": {}}),
                "fixes" => json!({"why": "tick", "fixes": ["x"]}),
                _ => Value::Null,
            };
            let e = entry(request, who, result, data);
            let expected = Some(expected).filter(|e| *e != "-");
            assert_eq!(event(&e), expected, "{row}");
        }
    }

    #[test]
    fn a_fault_names_its_step_and_no_service() {
        let e = entry(
            json!({"op": "reconcile"}),
            Requester::agent(),
            Outcome::Error,
            json!({"step": "confirm"}),
        );
        let n = notice(&e, "h").unwrap();
        assert_eq!(n.event, EventKind::Fault);
        assert_eq!(serde_json::to_value(&n).unwrap()["event"], "fault");
        assert_eq!(n.step.as_deref(), Some("confirm"));
        assert_eq!((n.service, n.from, n.to), (None, None, None));
    }

    #[test]
    fn a_refusal_is_cut_to_the_journals_bounds() {
        let mut e = entry(
            json!({"op": "switch", "service": "web", "colour": "green"}),
            Requester::local(Some(0), Some(0), Some(1)),
            Outcome::Error,
            json!({"step": "validate"}),
        );
        e.message = "x".repeat(100_000);
        let n = notice(&e, "h").unwrap();
        assert!(n.message.len() < 1_024, "{}", n.message.len());
        assert_eq!(n.service.as_deref(), Some("web"));
    }
}
