//! Every command the remote API carries survives the trip through its gRPC message, and
//! replies survive theirs.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

/// One command of every verb the remote API carries, with its flags and variants.
pub(crate) fn every_call() -> Vec<Command> {
    let web = || "web".to_owned();
    let change =
        |request: Request, force: bool, dry_run: bool| Command::change(request, force, dry_run);
    let apply = Request::Set {
        services: BTreeMap::from([
            (web(), Desired::routing(Colour::Green, None)),
            (
                "api".to_owned(),
                Desired {
                    live: Colour::Blue,
                    canary: Some(Canary {
                        colour: Colour::Green,
                        percent: 10,
                        seed: 0,
                    }),
                    previous: Some(Colour::Green),
                    drained: Some(BTreeSet::from([Colour::Green])),
                },
            ),
        ]),
    };
    vec![
        Command::Status,
        Command::ClusterStatus,
        change(
            Request::Switch {
                service: web(),
                colour: Colour::Green,
            },
            true,
            false,
        ),
        change(
            Request::Canary {
                service: web(),
                colour: Colour::Blue,
                percent: 25,
            },
            false,
            true,
        ),
        change(Request::Promote { service: web() }, false, false),
        change(Request::Abort { service: web() }, false, false),
        change(Request::Rollback { service: web() }, true, false),
        change(
            Request::Drain {
                service: web(),
                colour: Colour::Blue,
            },
            false,
            false,
        ),
        change(
            Request::Undrain {
                service: web(),
                colour: Colour::Blue,
            },
            false,
            true,
        ),
        change(apply, false, false),
        Command::Change(Mutation {
            request: Request::Switch {
                service: web(),
                colour: Colour::Blue,
            },
            force: false,
            dry_run: false,
            local: true,
            terms: Terms::default(),
        }),
        Command::Change(Mutation {
            request: Request::Rollback { service: web() },
            force: true,
            dry_run: false,
            local: false,
            terms: Terms {
                reason: Some("CHG-42 roll back 2.3".parse().unwrap()),
                if_generation: Some(41),
            },
        }),
        Command::History {
            service: None,
            limit: 9,
            user: Some("uri:spiffe://example/ci".into()),
            verb: Some("switch".into()),
            since_ms: Some(1),
            until_ms: Some(2),
        },
        Command::Cluster {
            command: Box::new(change(
                Request::Switch {
                    service: web(),
                    colour: Colour::Blue,
                },
                false,
                false,
            )),
        },
        Command::history(Some(web()), 7),
        Command::history(None, 50),
        Command::Cluster {
            command: Box::new(Command::history(None, 3)),
        },
        Command::MapShow {
            name: "routes".into(),
            view: MapView::Diff,
        },
        Command::MapShow {
            name: "routes".into(),
            view: MapView::Live,
        },
        Command::Metrics,
        Command::ReloadConfig,
    ]
}

/// The server's side of a call: the message back to the protocol's command.
pub(crate) fn served(call: Call) -> Result<Command, Invalid> {
    match call {
        Call::Status(r) => Ok(status(r)),
        Call::Change(c) => change(c),
        Call::History(r) => history(r),
        Call::MapShow(r) => map_show(r),
        Call::Metrics => Ok(Command::Metrics),
        Call::ReloadConfig => Ok(Command::ReloadConfig),
    }
}

#[test]
fn every_command_survives_its_message() {
    let commands = every_call();
    for command in &commands {
        let call = call(command).unwrap();
        assert_eq!(&served(call).unwrap(), command);
    }
    // Every verb of the protocol is carried, but the steps peers send each other.
    let carried: BTreeSet<&str> = commands
        .iter()
        .map(|c| match c {
            Command::Cluster { .. } => "cluster",
            c => c.verb(),
        })
        .collect();
    for verb in protocol::VERBS {
        let peer_only = ["report", "prepare", "ready", "commit", "abort_txn"].contains(verb);
        assert_eq!(carried.contains(verb), !peer_only, "{verb}");
    }
    // Plan is the dry run of the change it carries.
    let Call::Change(switch) = call(&commands[2]).unwrap() else {
        panic!("a switch is a change");
    };
    let Command::Change(m) = plan(switch).unwrap() else {
        panic!("a plan is a change");
    };
    assert!(m.dry_run && m.force);
    let prepare = Command::Ready { txn: "t".into() };
    assert_eq!(call(&prepare), Err(NotACall("ready")));
}

#[test]
fn messages_are_held_to_the_protocols_bounds() {
    let no_colour = pb::Change {
        change: Some(pb::change::Change::Switch(pb::SwitchRequest {
            service: "web".into(),
            colour: 0,
            options: None,
        })),
    };
    assert!(change(no_colour).unwrap_err().0.contains("colour"));
    let forced_abort = pb::Change {
        change: Some(pb::change::Change::Abort(pb::AbortRequest {
            service: "web".into(),
            options: Some(pb::Options {
                force: true,
                ..Default::default()
            }),
        })),
    };
    assert_eq!(
        change(forced_abort).unwrap_err().0,
        "abort does not take force"
    );
    let big = pb::HistoryRequest {
        service: None,
        limit: Some(1_000_000),
        ..Default::default()
    };
    assert!(history(big).unwrap_err().0.contains("above"));
    let bad_reason = pb::Change {
        change: Some(pb::change::Change::Promote(pb::PromoteRequest {
            service: "web".into(),
            options: Some(pb::Options {
                reason: Some("two\nlines".into()),
                ..Default::default()
            }),
        })),
    };
    assert!(change(bad_reason)
        .unwrap_err()
        .0
        .contains("control character"));
    let percent = pb::Change {
        change: Some(pb::change::Change::Canary(pb::CanaryRequest {
            service: "web".into(),
            colour: pb::Colour::Green as i32,
            percent: 300,
            options: None,
        })),
    };
    assert!(change(percent).is_err());
    assert_eq!(
        history(pb::HistoryRequest::default()).unwrap(),
        Command::history(None, 50)
    );
}

#[test]
fn replies_survive_their_message() {
    let data = serde_json::json!({
        "generation": 42,
        "negative": -3,
        "ratio": 0.25,
        "nested": {"list": [1, "two", null, true], "empty": {}},
    });
    for r in [
        Reply::ok("switched", data.clone()),
        Reply::error("refused", serde_json::json!({"step": "gate"})),
        Reply::ok("nothing to change", serde_json::Value::Null),
    ] {
        assert_eq!(from_reply(reply(&r)), r);
    }
}
