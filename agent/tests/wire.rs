//! The wire format of every verb, pinned: the line a client sends for each request, the
//! `op` JSON the journal and the peer `prepare` message carry, and a sample reply per verb
//! read back into the type the command line's printer reads it as. A change to any of these
//! strings breaks clients, peers or journals of other versions.
// Test code: an `unwrap()` that fails is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use cutover::engine::{Applied, FileOutcome};
use cutover::protocol::{
    decode, encode, Canary, Change, ClusterOutcome, ClusterStatus, Colour, ColourHealth, Command,
    Desired, DesiredStatus, Epoch, Fault, FileKind, FileStatus, GateReport, HeldChange,
    HostOutcome, HostRow, LineChanges, MapShown, MapView, MetricsText, Mutation, PeerReport, Phase,
    Plan, PlannedFile, PreparedChange, ProxyStatus, Reply, Request, ServiceAgreement,
    ServiceChange, ServiceHealth, ServiceState, ServiceStatus, Snapshot, Step, Terms, WatchPhase,
};
use cutover::proxy::{MapMechanism, ReloadReport};
use cutover::requester::{Names, Requester};
use serde::de::DeserializeOwned;
use serde::Serialize;

fn web() -> String {
    "web".into()
}

fn routing() -> BTreeMap<String, Desired> {
    [(
        web(),
        Desired::routing(
            Colour::Green,
            Some(Canary {
                colour: Colour::Blue,
                percent: 10,
                seed: 0,
            }),
        ),
    )]
    .into()
}

/// The request line of every verb (keys sorted: the encoder writes a JSON object).
#[test]
fn request_lines() {
    let change = |request, force, dry_run| Command::change(request, force, dry_run);
    let cases: Vec<(Command, &str)> = vec![
        (Command::Status, r#"{"cmd":"status","v":1}"#),
        (
            change(
                Request::Switch {
                    service: web(),
                    colour: Colour::Green,
                },
                false,
                false,
            ),
            r#"{"cmd":"switch","colour":"green","dry_run":false,"force":false,"service":"web","v":1}"#,
        ),
        (
            change(Request::Rollback { service: web() }, true, false),
            r#"{"cmd":"rollback","dry_run":false,"force":true,"service":"web","v":1}"#,
        ),
        (
            change(
                Request::Canary {
                    service: web(),
                    colour: Colour::Blue,
                    percent: 10,
                },
                false,
                true,
            ),
            r#"{"cmd":"canary","colour":"blue","dry_run":true,"force":false,"percent":10,"service":"web","v":1}"#,
        ),
        (
            change(Request::Promote { service: web() }, false, false),
            r#"{"cmd":"promote","dry_run":false,"force":false,"service":"web","v":1}"#,
        ),
        (
            change(Request::Abort { service: web() }, false, false),
            r#"{"cmd":"abort","dry_run":false,"service":"web","v":1}"#,
        ),
        (
            change(
                Request::Drain {
                    service: web(),
                    colour: Colour::Blue,
                },
                false,
                true,
            ),
            r#"{"cmd":"drain","colour":"blue","dry_run":true,"service":"web","v":1}"#,
        ),
        (
            change(
                Request::Undrain {
                    service: web(),
                    colour: Colour::Blue,
                },
                false,
                false,
            ),
            r#"{"cmd":"undrain","colour":"blue","dry_run":false,"service":"web","v":1}"#,
        ),
        (
            change(
                Request::Set {
                    services: routing(),
                },
                false,
                false,
            ),
            r#"{"cmd":"apply","dry_run":false,"force":false,"services":{"web":{"canary":{"colour":"blue","percent":10},"live":"green"}},"v":1}"#,
        ),
        (
            Command::Change(Mutation {
                request: Request::Rollback { service: web() },
                force: false,
                dry_run: false,
                local: false,
                terms: Terms {
                    reason: Some("CHG-42 bad release".parse().unwrap()),
                    if_generation: Some(41),
                },
            }),
            r#"{"cmd":"rollback","dry_run":false,"force":false,"if_generation":41,"reason":"CHG-42 bad release","service":"web","v":1}"#,
        ),
        (
            Command::Cluster {
                command: Box::new(change(Request::Rollback { service: web() }, false, true)),
            },
            r#"{"cmd":"cluster","command":{"cmd":"rollback","dry_run":true,"force":false,"service":"web"},"v":1}"#,
        ),
        (Command::ClusterStatus, r#"{"cmd":"cluster_status","v":1}"#),
        (
            Command::Report {
                report: Box::new(PeerReport {
                    node: "a".into(),
                    time_ms: 5,
                    generation: 3,
                    cluster_generation: 2,
                    digest: "d1".into(),
                    cluster_digest: "d0".into(),
                    services: routing(),
                    cluster_routing: BTreeMap::new(),
                    proxy_reachable: true,
                    last_error: None,
                    // A report as agents sent it before they said what they hold.
                    held: None,
                }),
            },
            r#"{"cmd":"report","report":{"cluster_digest":"d0","cluster_generation":2,"cluster_routing":{},"digest":"d1","generation":3,"last_error":null,"node":"a","proxy_reachable":true,"services":{"web":{"canary":{"colour":"blue","percent":10},"live":"green"}},"time_ms":5},"v":1}"#,
        ),
        (
            Command::Prepare {
                txn: "a-1-0".into(),
                request: Request::Switch {
                    service: web(),
                    colour: Colour::Green,
                },
                force: false,
                coordinator: "a".into(),
                terms: Terms::default(),
                asked_by: None,
            },
            r#"{"cmd":"prepare","coordinator":"a","force":false,"request":{"colour":"green","op":"switch","service":"web"},"txn":"a-1-0","v":1}"#,
        ),
        (
            Command::Prepare {
                txn: "a-1-1".into(),
                request: Request::Rollback { service: web() },
                force: false,
                coordinator: "a".into(),
                terms: Terms {
                    reason: Some("CHG-42".parse().unwrap()),
                    if_generation: Some(7),
                },
                asked_by: Some(Requester::Local {
                    uid: Some(1000),
                    gid: Some(1000),
                    pid: Some(42),
                    groups: vec![],
                    names: Names {
                        user: Some("alice".into()),
                        group: Some("ops".into()),
                    },
                }),
            },
            r#"{"asked_by":{"gid":1000,"group":"ops","pid":42,"uid":1000,"user":"alice","via":"socket"},"cmd":"prepare","coordinator":"a","force":false,"request":{"op":"rollback","service":"web"},"terms":{"if_generation":7,"reason":"CHG-42"},"txn":"a-1-1","v":1}"#,
        ),
        (
            Command::Ready {
                txn: "a-1-0".into(),
            },
            r#"{"cmd":"ready","txn":"a-1-0","v":1}"#,
        ),
        (
            Command::Commit {
                txn: "a-1-0".into(),
                cluster_generation: 4,
            },
            r#"{"cluster_generation":4,"cmd":"commit","txn":"a-1-0","v":1}"#,
        ),
        (
            Command::AbortTxn {
                txn: "a-1-0".into(),
            },
            r#"{"cmd":"abort_txn","txn":"a-1-0","v":1}"#,
        ),
        (
            Command::MapShow {
                name: "routes".into(),
                view: MapView::Live,
            },
            r#"{"cmd":"map_show","name":"routes","v":1,"view":"live"}"#,
        ),
        (
            Command::history(Some(web()), 20),
            r#"{"cmd":"history","limit":20,"service":"web","v":1}"#,
        ),
        (
            Command::History {
                service: None,
                limit: 5,
                user: Some("alice".into()),
                verb: Some("rollback".into()),
                since_ms: Some(1_000),
                until_ms: Some(2_000),
            },
            r#"{"cmd":"history","limit":5,"service":null,"since_ms":1000,"until_ms":2000,"user":"alice","v":1,"verb":"rollback"}"#,
        ),
        (Command::Metrics, r#"{"cmd":"metrics","v":1}"#),
        (Command::ReloadConfig, r#"{"cmd":"reload_config","v":1}"#),
    ];
    let mut verbs: Vec<&str> = cases.iter().map(|(c, _)| c.verb()).collect();
    verbs.sort_unstable();
    // With its optional fields or without: some verbs are pinned twice.
    verbs.dedup();
    let mut all = cutover::protocol::VERBS.to_vec();
    all.sort_unstable();
    assert_eq!(verbs, all, "every verb is pinned");
    for (cmd, line) in cases {
        assert_eq!(encode(&cmd), line);
        assert_eq!(decode(line).unwrap(), cmd, "{line}");
    }
}

/// The request as the journal and the peer `prepare` message carry it (field order as
/// written).
#[test]
fn journal_request_json() {
    let cases = [
        (
            Request::Switch {
                service: web(),
                colour: Colour::Green,
            },
            r#"{"op":"switch","service":"web","colour":"green"}"#,
        ),
        (
            Request::Rollback { service: web() },
            r#"{"op":"rollback","service":"web"}"#,
        ),
        (
            Request::Canary {
                service: web(),
                colour: Colour::Blue,
                percent: 10,
            },
            r#"{"op":"canary","service":"web","colour":"blue","percent":10}"#,
        ),
        (
            Request::Promote { service: web() },
            r#"{"op":"promote","service":"web"}"#,
        ),
        (
            Request::Abort { service: web() },
            r#"{"op":"abort","service":"web"}"#,
        ),
        (
            Request::Drain {
                service: web(),
                colour: Colour::Blue,
            },
            r#"{"op":"drain","service":"web","colour":"blue"}"#,
        ),
        (
            Request::Undrain {
                service: web(),
                colour: Colour::Blue,
            },
            r#"{"op":"undrain","service":"web","colour":"blue"}"#,
        ),
        (
            Request::Set {
                services: [(web(), Desired::routing(Colour::Green, None))].into(),
            },
            r#"{"op":"set","services":{"web":{"live":"green","canary":null}}}"#,
        ),
    ];
    for (request, json) in cases {
        assert_eq!(serde_json::to_string(&request).unwrap(), json);
        assert_eq!(serde_json::from_str::<Request>(json).unwrap(), request);
    }
}

/// `reply` as its line, and its data read back as `T` and written again gives the same
/// line.
fn pin<T: Serialize + DeserializeOwned>(reply: &Reply, line: &str) -> T {
    assert_eq!(reply.to_line(), line);
    let parsed: Reply = serde_json::from_str(line).unwrap();
    let data: T = parsed.data_as().unwrap();
    let again = Reply {
        data: serde_json::to_value(&data).unwrap(),
        ..parsed
    };
    assert_eq!(again.to_line(), line);
    data
}

fn ok<T: Serialize>(message: &str, data: &T) -> Reply {
    Reply::ok(message, serde_json::to_value(data).unwrap())
}

#[test]
fn status_reply() {
    let snap = Snapshot {
        generation: 7,
        proxy: ProxyStatus {
            kind: "haproxy".into(),
            reachable: true,
            epoch: Some(Epoch {
                master_pid: 100,
                reloads: 2,
                workers: vec![],
                generation: None,
                seeded_ms: None,
            }),
            version: Some("3.2.0".into()),
            warnings: vec!["HAProxy 3.2.0 lacks upstream fix ebb801d7c".into()],
        },
        services: vec![ServiceStatus {
            name: web(),
            live: "green".into(),
            previous: Some("blue".into()),
            backend: "web_green".into(),
            routes: 1,
            canary: Some(Canary {
                colour: Colour::Blue,
                percent: 10,
                seed: 1840213577,
            }),
            drained: vec![],
            phase: Some(Phase {
                phase: WatchPhase::Watching,
                reason: None,
                since_ms: 9,
            }),
            health: Some(ServiceHealth {
                polled_ms: 10,
                known: true,
                blue: ColourHealth {
                    up: 2,
                    sessions: Some(1),
                    ..ColourHealth::default()
                },
                green: ColourHealth {
                    up: 1,
                    down: 1,
                    sessions: Some(5),
                    ..ColourHealth::default()
                },
            }),
            drains: vec![],
        }],
        files: vec![FileStatus {
            name: "routes".into(),
            path: "/etc/haproxy/maps/routes.map".into(),
            kind: FileKind::Map,
        }],
        last_error: None,
        fault: Some(Fault {
            step: Step::Proxy,
            message: "unreachable".into(),
            since_ms: 8,
            confirmed: true,
        }),
        recovered: vec![],
        desired_state: Some(DesiredStatus {
            path: "/etc/cutover/desired.toml".into(),
            error: None,
        }),
        fleet: None,
        config_error: None,
        last_drift: None,
    };
    let back: Snapshot = pin(
        &ok("generation 7, 1 service(s), haproxy reachable", &snap),
        r#"{"status":"ok","message":"generation 7, 1 service(s), haproxy reachable","data":{"desired_state":{"error":null,"path":"/etc/cutover/desired.toml"},"fault":{"message":"unreachable","since_ms":8,"step":"proxy"},"files":[{"kind":"map","name":"routes","path":"/etc/haproxy/maps/routes.map"}],"generation":7,"last_error":null,"proxy":{"epoch":{"master_pid":100,"reloads":2},"kind":"haproxy","reachable":true,"version":"3.2.0","warnings":["HAProxy 3.2.0 lacks upstream fix ebb801d7c"]},"recovered":[],"services":[{"backend":"web_green","canary":{"colour":"blue","percent":10,"seed":1840213577},"drained":[],"health":{"blue":{"down":0,"drain":0,"maint":0,"sessions":1,"unknown":0,"up":2},"green":{"down":1,"drain":0,"maint":0,"sessions":5,"unknown":0,"up":1},"known":true,"polled_ms":10},"live":"green","name":"web","phase":{"phase":"watching","since_ms":9},"previous":"blue","routes":1}]}}"#,
    );
    assert_eq!(back.services[0].canary, snap.services[0].canary);
}

/// The reply of a change carried out (every routing verb): the engine's `Applied`.
#[test]
fn change_reply() {
    let before = ServiceState::live_on(Colour::Blue);
    let after = ServiceState {
        live: Colour::Green,
        previous: Some(Colour::Blue),
        ..ServiceState::live_on(Colour::Green)
    };
    let applied = Applied {
        change: Change {
            generation: 2,
            services: vec![ServiceChange {
                service: web(),
                from: Some(before),
                to: Some(after),
            }],
        },
        files: vec![FileOutcome {
            name: "routes".into(),
            path: PathBuf::from("/m/routes.map"),
            kind: FileKind::Map,
            mechanism: Some(MapMechanism::PerKey),
            edits: 1,
        }],
        validated_by_proxy: true,
        reload: Some(ReloadReport {
            workers: vec![7],
            elapsed: Duration::from_millis(12),
            ..ReloadReport::default()
        }),
        batched: 1,
        timings_ms: [("apply", 1.5)].into(),
        gates: vec![],
        warnings: vec![],
    };
    assert_eq!(
        ok(&applied.summary(), &applied).to_line(),
        r#"{"status":"ok","message":"generation 2: web blue -> green; routes (1 edits, runtime per key)","data":{"batched":1,"change":{"generation":2,"services":[{"from":{"canary":null,"drained":[],"live":"blue","previous":null},"service":"web","to":{"canary":null,"drained":[],"live":"green","previous":"blue"}}]},"files":[{"edits":1,"kind":"map","mechanism":"per_key","name":"routes","path":"/m/routes.map"}],"reload":{"elapsed":12.0,"gap_wait_ms":0.0,"workers":[7]},"timings_ms":{"apply":1.5},"validated_by_proxy":true}}"#
    );
    let refused = Reply::error(
        "request: unknown service \"nope\"",
        serde_json::json!({ "step": Step::Request }),
    );
    assert_eq!(
        refused.to_line(),
        r#"{"status":"error","message":"request: unknown service \"nope\"","data":{"step":"request"}}"#
    );
}

/// The reply of a dry run (every routing verb with `dry_run`).
#[test]
fn plan_reply() {
    let plan = Plan {
        generation: 3,
        services: vec![],
        gates: vec![GateReport {
            service: web(),
            colour: Some(Colour::Green),
            backend: Some("web_green".into()),
            up: vec!["g1".into()],
            ..GateReport::default()
        }],
        files: vec![PlannedFile {
            name: "routes".into(),
            path: PathBuf::from("/m/routes.map"),
            kind: FileKind::Map,
            mechanism: "runtime per key".into(),
            added: vec![],
            changed: vec![("example.com/".into(), "web_green".into())],
            removed: vec![],
            edits: 1,
            lines: LineChanges::default(),
        }],
        validated_by_proxy: true,
        servers: vec![],
    };
    pin::<Plan>(
        &ok("dry run: generation 3 would apply; nothing changed", &plan),
        r#"{"status":"ok","message":"dry run: generation 3 would apply; nothing changed","data":{"files":[{"added":[],"changed":[["example.com/","web_green"]],"edits":1,"kind":"map","lines":{"added":0,"first_added":[],"first_removed":[],"removed":0},"mechanism":"runtime per key","name":"routes","path":"/m/routes.map","removed":[]}],"gates":[{"backend":"web_green","colour":"green","forced":false,"probed":[],"service":"web","up":["g1"]}],"generation":3,"servers":[],"services":[],"validated_by_proxy":true}}"#,
    );
}

#[test]
fn cluster_replies() {
    let status = ClusterStatus {
        hosts: vec![
            HostRow::Seen {
                node: "a".into(),
                reachable: true,
                age_ms: 0,
                generation: 3,
                cluster_generation: 2,
                digest: "d1".into(),
                proxy_reachable: true,
                last_error: None,
                held: Some(HeldChange {
                    txn: "b-1-0".into(),
                    coordinator: "b".into(),
                    age_ms: 1200,
                    expires_in_ms: 28800,
                }),
            },
            HostRow::Unseen {
                node: "b".into(),
                reachable: false,
                age_ms: None,
            },
        ],
        services: [(
            web(),
            ServiceAgreement {
                agree: true,
                hosts: [("a".into(), "green".into())].into(),
            },
        )]
        .into(),
    };
    let back: ClusterStatus = pin(
        &ok("2 hosts", &status),
        r#"{"status":"ok","message":"2 hosts","data":{"hosts":[{"age_ms":0,"cluster_generation":2,"digest":"d1","generation":3,"held":{"age_ms":1200,"coordinator":"b","expires_in_ms":28800,"txn":"b-1-0"},"last_error":null,"node":"a","proxy_reachable":true,"reachable":true},{"age_ms":null,"node":"b","reachable":false}],"services":{"web":{"agree":true,"hosts":{"a":"green"}}}}}"#,
    );
    assert_eq!(back, status);
    // A row from an agent older than `held` reads as holding nothing.
    let old: HostRow = serde_json::from_str(
        r#"{"age_ms":0,"cluster_generation":2,"digest":"d1","generation":3,"last_error":null,"node":"a","proxy_reachable":true,"reachable":true}"#,
    )
    .unwrap();
    assert!(matches!(old, HostRow::Seen { held: None, .. }), "{old:?}");
    // A report says which change its node holds, with times on its own clock.
    let held = PreparedChange {
        txn: "b-1-0".into(),
        coordinator: "b".into(),
        since_ms: 1000,
        expires_ms: 31000,
    };
    let line = serde_json::to_string(&held).unwrap();
    assert_eq!(
        line,
        r#"{"txn":"b-1-0","coordinator":"b","since_ms":1000,"expires_ms":31000}"#
    );
    assert_eq!(serde_json::from_str::<PreparedChange>(&line).unwrap(), held);
    let outcome = ClusterOutcome {
        txn: "a-1-0".into(),
        phase: "commit".into(),
        cluster_generation: Some(4),
        hosts: [
            (
                "a".into(),
                HostOutcome {
                    ok: true,
                    data: Some(serde_json::json!({ "generation": 3 })),
                    error: None,
                },
            ),
            (
                "b".into(),
                HostOutcome {
                    ok: false,
                    data: None,
                    error: Some("no answer".into()),
                },
            ),
        ]
        .into(),
        missed: Some(vec!["b".into()]),
    };
    let back: ClusterOutcome = pin(
        &ok("cluster generation 4 committed", &outcome),
        r#"{"status":"ok","message":"cluster generation 4 committed","data":{"cluster_generation":4,"hosts":{"a":{"data":{"generation":3},"ok":true},"b":{"error":"no answer","ok":false}},"missed":["b"],"phase":"commit","txn":"a-1-0"}}"#,
    );
    assert_eq!(back, outcome);
}

#[test]
fn map_history_and_metrics_replies() {
    let entries = MapShown::Entries {
        entries: [("example.com/".into(), "web_green".into())].into(),
    };
    let back: MapShown = pin(
        &ok("map routes", &entries),
        r#"{"status":"ok","message":"map routes","data":{"entries":{"example.com/":"web_green"}}}"#,
    );
    assert_eq!(back, entries);
    let diff = MapShown::Diff {
        added: vec![],
        changed: vec![("example.com/".into(), "web_blue".into())],
        removed: vec!["old.example.com/".into()],
    };
    let back: MapShown = pin(
        &ok("map routes", &diff),
        r#"{"status":"ok","message":"map routes","data":{"added":[],"changed":[["example.com/","web_blue"]],"removed":["old.example.com/"]}}"#,
    );
    assert_eq!(back, diff);
    let line = r#"{"status":"ok","message":"1 entries","data":{"entries":[{"data":null,"generation":1,"message":"generation 1: web blue -> green","request":{"colour":"green","op":"switch","service":"web"},"requester":{"gid":1000,"pid":42,"uid":1000,"via":"socket"},"result":"ok","time_ms":5}]}}"#;
    let reply: Reply = serde_json::from_str(line).unwrap();
    let entry: cutover::store::JournalEntry =
        serde_json::from_value(reply.data["entries"][0].clone()).unwrap();
    assert_eq!(entry.generation, 1);
    assert_eq!(reply.to_line(), line);
    let metrics = MetricsText {
        content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8".into(),
        text: "# EOF\n".into(),
    };
    let back: MetricsText = pin(
        &ok("metrics", &metrics),
        r##"{"status":"ok","message":"metrics","data":{"content_type":"application/openmetrics-text; version=1.0.0; charset=utf-8","text":"# EOF\n"}}"##,
    );
    assert_eq!(back, metrics);
}
