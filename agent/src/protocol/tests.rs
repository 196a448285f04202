use super::*;

#[test]
fn round_trip() {
    for cmd in [
        Command::Status,
        Command::change(
            Request::Switch {
                service: "web".into(),
                colour: Colour::Green,
            },
            true,
            true,
        ),
        Command::change(
            Request::Rollback {
                service: "web".into(),
            },
            false,
            false,
        ),
        Command::change(
            Request::Canary {
                service: "web".into(),
                colour: Colour::Blue,
                percent: 10,
            },
            false,
            false,
        ),
        Command::change(
            Request::Promote {
                service: "web".into(),
            },
            false,
            false,
        ),
        Command::change(
            Request::Abort {
                service: "web".into(),
            },
            false,
            true,
        ),
        Command::change(
            Request::Drain {
                service: "web".into(),
                colour: Colour::Blue,
            },
            false,
            false,
        ),
        Command::change(
            Request::Undrain {
                service: "web".into(),
                colour: Colour::Blue,
            },
            false,
            false,
        ),
        Command::MapShow {
            name: "routes".into(),
            view: MapView::Diff,
        },
        Command::history(None, 5),
        Command::Metrics,
    ] {
        assert_eq!(decode(&encode(&cmd)).unwrap(), cmd);
        let tag = serde_json::to_value(&cmd).unwrap()["cmd"].clone();
        assert_eq!(tag, cmd.verb());
    }
}

/// A payload written by a version-1 client without `v` and without optional fields.
#[test]
fn parses_v1_payloads() {
    assert_eq!(decode(r#"{"cmd":"status"}"#).unwrap(), Command::Status);
    // Written before `force` existed.
    assert_eq!(
        decode(r#"{"v":1,"cmd":"switch","service":"web","colour":"green"}"#).unwrap(),
        Command::change(
            Request::Switch {
                service: "web".into(),
                colour: Colour::Green
            },
            false,
            false
        )
    );
    assert_eq!(
        decode(r#"{"cmd":"map_show","name":"services"}"#).unwrap(),
        Command::MapShow {
            name: "services".into(),
            view: MapView::Desired
        }
    );
    assert_eq!(
        decode(r#"{"v":1,"cmd":"history"}"#).unwrap(),
        Command::history(None, 50)
    );
}

/// Every request an older client sends still parses to what it meant after later
/// additions (`force`, `dry_run`, `metrics`).
#[test]
fn older_payloads_parse_after_additions() {
    let old = [
        (r#"{"v":1,"cmd":"status"}"#, Command::Status),
        (
            r#"{"v":1,"cmd":"switch","service":"web","colour":"green"}"#,
            Command::change(
                Request::Switch {
                    service: "web".into(),
                    colour: Colour::Green,
                },
                false,
                false,
            ),
        ),
        (
            r#"{"cmd":"rollback","service":"web"}"#,
            Command::change(
                Request::Rollback {
                    service: "web".into(),
                },
                false,
                false,
            ),
        ),
        (
            r#"{"v":1,"cmd":"map_show","name":"routes","view":"diff"}"#,
            Command::MapShow {
                name: "routes".into(),
                view: MapView::Diff,
            },
        ),
        (
            r#"{"cmd":"history","service":"web","limit":3}"#,
            Command::history(Some("web".into()), 3),
        ),
    ];
    for (line, cmd) in old {
        assert_eq!(decode(line).unwrap(), cmd, "{line}");
    }
    assert_eq!(decode(r#"{"cmd":"metrics"}"#).unwrap(), Command::Metrics);
    assert_eq!(encode(&Command::Metrics), r#"{"cmd":"metrics","v":1}"#);
}

#[test]
fn refusals_are_clear() {
    let e = |l: &str| decode(l).unwrap_err().to_string();
    assert!(e("{\"cmd\":").contains("not valid JSON"));
    assert_eq!(e("[1]"), "request must be a JSON object");
    assert!(e(r#"{"cmd":"switch","service":"web","colour":"red"}"#)
        .contains("unknown variant `red`, expected `blue` or `green`"));
    assert!(
        e(r#"{"cmd":"switch","service":"web","colour":"blue","forse":true}"#)
            .contains("unknown field `forse`")
    );
    assert!(
        e(r#"{"cmd":"canary","service":"web","colour":"blue","percent":300}"#)
            .contains("invalid value")
    );
    assert!(e(r#"{"cmd":"reboot"}"#).contains("unknown variant `reboot`"));
    assert!(e(r#"{"cmd":"status","verbose":true}"#).contains("unknown field `verbose`"));
    assert!(
        e(r#"{"cmd":"switch","service":"web","colour":"blue","service":"api"}"#)
            .contains("names a field twice: duplicate field `service`")
    );
    assert!(e(r#"{"cmd":"status","x":{"a":1,"a":2}}"#).contains("duplicate field `a`"));
    assert!(e(r#"{"cmd":"history","force":1}"#).contains("unknown field `force`"));
    assert!(e(r#"{"cmd":"switch","service":5,"colour":"blue"}"#).contains("invalid type"));
    assert!(e(r#"{"v":2,"cmd":"status"}"#).contains("newer than this agent speaks"));
    assert_eq!(
        e(r#"{"cmd":"status","x":[[[[[[[[[[1]]]]]]]]]]}"#),
        DecodeError::TooDeep.to_string()
    );
    assert!(e(&format!("{}1{}", "[".repeat(200), "]".repeat(200))).contains("recursion"));
    assert!(e(r#"{"cmd":"history","limit":99999999}"#).contains("above"));
}

#[test]
fn reply_shape() {
    let r = Reply::ok("done", serde_json::Value::Null).to_line();
    assert_eq!(r, r#"{"status":"ok","message":"done"}"#);
}

/// The routing verbs share one variant: `force` is a field only of the verbs that move
/// traffic onto a colour, and the request's own tag (`op`) is not a field of the command.
#[test]
fn routing_verbs_keep_their_fields() {
    let e = |l: &str| decode(l).unwrap_err().to_string();
    for line in [
        r#"{"cmd":"abort","service":"web","force":true}"#,
        r#"{"cmd":"drain","service":"web","colour":"blue","force":false}"#,
        r#"{"cmd":"undrain","service":"web","colour":"blue","force":true}"#,
    ] {
        assert!(
            e(line).contains("unknown field `force`"),
            "{line}: {}",
            e(line)
        );
    }
    assert!(
        e(r#"{"cmd":"switch","op":"rollback","service":"web","colour":"blue"}"#)
            .contains("unknown field `op`")
    );
    assert!(e(r#"{"cmd":"switch","service":"web"}"#).contains("missing field `colour`"));
    assert!(e(r#"{"service":"web"}"#).contains("missing field `cmd`"));
    assert!(e(r#"{"cmd":"abort","service":"web","dry_run":"yes"}"#).contains("invalid type"));
    assert_eq!(
        decode(r#"{"cmd":"promote","service":"web","force":true,"dry_run":true}"#).unwrap(),
        Command::change(
            Request::Promote {
                service: "web".into()
            },
            true,
            true
        )
    );
    let set = decode(r#"{"cmd":"apply","services":{"web":{"live":"green"}},"force":true}"#)
        .unwrap()
        .mutation()
        .unwrap();
    assert!(set.force && !set.dry_run);
    assert_eq!(set.request.verb(), "apply");
}

/// Every variant of [`Request`] has its wire verb, and every wire verb of a routing change
/// is a command verb.
#[test]
fn request_verbs_are_command_verbs() {
    for verb in Request::VERBS {
        assert!(VERBS.contains(&verb), "{verb}");
        assert_eq!(
            Request::op_of(verb) == "set",
            verb == "apply",
            "{verb} names its request"
        );
    }
}

/// An unknown colour is refused when the request is decoded, before the engine: the dry run
/// and the real change get the same refusal, for every verb that names a colour.
#[test]
fn an_unknown_colour_is_refused_alike_with_and_without_dry_run() {
    let lines = [
        r#""cmd":"switch","service":"web","colour":"red""#,
        r#""cmd":"canary","service":"web","colour":"red","percent":10"#,
        r#""cmd":"drain","service":"web","colour":"red""#,
        r#""cmd":"undrain","service":"web","colour":"red""#,
        r#""cmd":"apply","services":{"web":{"live":"red"}}"#,
    ];
    for fields in lines {
        let verdict = |dry_run: bool| {
            decode(&format!("{{{fields},\"dry_run\":{dry_run}}}"))
                .unwrap_err()
                .to_string()
        };
        let (planned, real) = (verdict(true), verdict(false));
        assert_eq!(planned, real, "{fields}");
        assert!(real.contains("unknown variant `red`"), "{fields}: {real}");
    }
}
