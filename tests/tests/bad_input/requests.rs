//! Bad request lines on the control socket of a running agent.

use cutover_tests::agent::{Setup, SetupOptions};

use super::{live_files, HOST};

fn setup() -> Option<Setup> {
    let haproxy = cutover_tests::require_proxy("haproxy")?;
    let mut s = Setup::new(&haproxy, SetupOptions::default());
    s.start_agent();
    Some(s)
}

/// `{"cmd":"switch","service":<service>,"colour":<colour>}` with raw JSON values.
fn switch(service: &str, colour: &str) -> Vec<u8> {
    format!("{{\"cmd\":\"switch\",\"service\":{service},\"colour\":{colour}}}\n").into_bytes()
}

fn line(s: &str) -> Vec<u8> {
    format!("{s}\n").into_bytes()
}

#[test]
fn bad_requests_on_the_socket_are_refused_and_change_nothing() {
    let Some(s) = setup() else { return };
    let before = live_files(&s);
    let long_name = format!("\"{}\"", "w".repeat(60_000));
    let mut huge = b"{\"cmd\":\"status\",\"pad\":\"".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
    huge.extend(b"\"}\n");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "unknown service",
            switch("\"nope\"", "\"green\""),
            "unknown service \\\"nope\\\"",
        ),
        (
            "space in service",
            switch("\"we b\"", "\"green\""),
            "unknown service \\\"we b\\\"",
        ),
        (
            "tab in service",
            switch("\"web\\t\"", "\"green\""),
            "unknown service \\\"web\\\\t\\\"",
        ),
        (
            "newline in service",
            switch("\"web\\nx\"", "\"green\""),
            "unknown service \\\"web\\\\nx\\\"",
        ),
        (
            "NUL in service",
            switch("\"web\\u0000\"", "\"green\""),
            "unknown service \\\"web\\\\0\\\"",
        ),
        (
            "# in service",
            switch("\"web#x\"", "\"green\""),
            "unknown service \\\"web#x\\\"",
        ),
        (
            "empty service",
            switch("\"\"", "\"green\""),
            "unknown service \\\"\\\"",
        ),
        (
            "60 KB service",
            switch(&long_name, "\"green\""),
            "unknown service",
        ),
        (
            "unknown colour",
            switch("\"web\"", "\"red\""),
            "unknown variant `red`, expected `blue` or `green`",
        ),
        (
            "empty colour",
            switch("\"web\"", "\"\""),
            "unknown variant ``",
        ),
        (
            "colour case",
            switch("\"web\"", "\"Blue\""),
            "unknown variant `Blue`",
        ),
        (
            "NUL in colour",
            switch("\"web\"", "\"blue\\u0000\""),
            "unknown variant `blue\\u0000`",
        ),
        (
            "space in colour",
            switch("\"web\"", "\"gr een\""),
            "unknown variant `gr een`",
        ),
        (
            "colour is a number",
            switch("\"web\"", "1"),
            "invalid type: integer `1`",
        ),
        (
            "service is a number",
            switch("5", "\"green\""),
            "invalid type: integer `5`, expected a string",
        ),
        (
            "service is null",
            switch("null", "\"green\""),
            "invalid type: null, expected a string",
        ),
        (
            "service is an array",
            switch("[\"web\"]", "\"green\""),
            "invalid type: sequence, expected a string",
        ),
        (
            "colour is null",
            switch("\"web\"", "null"),
            "invalid type: null",
        ),
        (
            "missing colour",
            line(r#"{"cmd":"switch","service":"web"}"#),
            "missing field `colour`",
        ),
        (
            "missing service",
            line(r#"{"cmd":"switch","colour":"green"}"#),
            "missing field `service`",
        ),
        (
            "unknown field",
            line(r#"{"cmd":"switch","service":"web","colour":"green","override":true}"#),
            "unknown field `override`",
        ),
        (
            "flag of the wrong type",
            line(r#"{"cmd":"switch","service":"web","colour":"green","force":"yes"}"#),
            "invalid type: string \\\"yes\\\", expected a boolean",
        ),
        (
            "unknown field on status",
            line(r#"{"cmd":"status","verbose":1}"#),
            "unknown field `verbose`",
        ),
        (
            "duplicate field",
            line(r#"{"cmd":"switch","service":"web","service":"api","colour":"green"}"#),
            "duplicate field `service`",
        ),
        (
            "unknown verb",
            line(r#"{"cmd":"reboot"}"#),
            "unknown variant `reboot`",
        ),
        (
            "verb with a space",
            line(r#"{"cmd":"sta tus"}"#),
            "unknown variant `sta tus`",
        ),
        (
            "no verb",
            line(r#"{"service":"web"}"#),
            "missing field `cmd`",
        ),
        (
            "verb is a number",
            line(r#"{"cmd":1}"#),
            "invalid type: integer `1`",
        ),
        (
            "rollback without previous",
            line(r#"{"cmd":"rollback","service":"web"}"#),
            "no previous colour",
        ),
        (
            "rollback unknown service",
            line(r#"{"cmd":"rollback","service":"api"}"#),
            "unknown service \\\"api\\\"",
        ),
        (
            "map outside",
            line(r#"{"cmd":"map_show","name":"../../etc/passwd"}"#),
            "unknown map \\\"../../etc/passwd\\\"",
        ),
        (
            "map with NUL",
            line(r#"{"cmd":"map_show","name":"services\u0000"}"#),
            "unknown map",
        ),
        (
            "map that is a config",
            line(r#"{"cmd":"map_show","name":"haproxy"}"#),
            "unknown map \\\"haproxy\\\"",
        ),
        (
            "unknown view",
            line(r#"{"cmd":"map_show","name":"services","view":"sideways"}"#),
            "unknown variant `sideways`",
        ),
        (
            "history limit too high",
            line(r#"{"cmd":"history","limit":99999999}"#),
            "history limit 99999999 is above 10000",
        ),
        (
            "history limit negative",
            line(r#"{"cmd":"history","limit":-1}"#),
            "invalid value: integer `-1`",
        ),
        (
            "history limit a string",
            line(r#"{"cmd":"history","limit":"10"}"#),
            "invalid type: string \\\"10\\\"",
        ),
        (
            "history of an impossible name",
            line(r#"{"cmd":"history","service":"we b"}"#),
            "unknown service \\\"we b\\\"",
        ),
        (
            "newer protocol",
            line(r#"{"v":2,"cmd":"status"}"#),
            "protocol version 2 is newer than this agent speaks (1)",
        ),
        (
            "version zero",
            line(r#"{"v":0,"cmd":"status"}"#),
            "\\\"v\\\" must be a positive integer",
        ),
        (
            "version a string",
            line(r#"{"v":"1","cmd":"status"}"#),
            "\\\"v\\\" must be a positive integer",
        ),
        (
            "version negative",
            line(r#"{"v":-1,"cmd":"status"}"#),
            "\\\"v\\\" must be a positive integer",
        ),
        (
            "version out of range",
            line(r#"{"v":1e400,"cmd":"status"}"#),
            "not valid JSON",
        ),
        ("not JSON", line("hello"), "not valid JSON"),
        (
            "truncated JSON",
            line(r#"{"cmd":"switch","service":"web""#),
            "not valid JSON",
        ),
        (
            "trailing garbage",
            line(r#"{"cmd":"status"} x"#),
            "trailing characters",
        ),
        (
            "two objects on a line",
            line(r#"{"cmd":"status"}{"cmd":"status"}"#),
            "trailing characters",
        ),
        (
            "byte order mark",
            "\u{feff}{\"cmd\":\"status\"}\n".as_bytes().to_vec(),
            "not valid JSON",
        ),
        (
            "bad escape",
            line(r#"{"cmd":"switch","service":"w\x","colour":"green"}"#),
            "not valid JSON",
        ),
        (
            "lone surrogate",
            line(r#"{"cmd":"switch","service":"\ud800","colour":"green"}"#),
            "not valid JSON",
        ),
        ("an array", line("[1]"), "request must be a JSON object"),
        (
            "a string",
            line("\"status\""),
            "request must be a JSON object",
        ),
        ("null", line("null"), "request must be a JSON object"),
        (
            "nested 10 deep",
            line(r#"{"cmd":"status","x":[[[[[[[[[[1]]]]]]]]]]}"#),
            "nests deeper than 8 levels",
        ),
        (
            "nested 200 deep",
            line(&format!("{}1{}", "[".repeat(200), "]".repeat(200))),
            "recursion limit exceeded",
        ),
        (
            "nested 30000 deep",
            line(&format!("{}1{}", "[".repeat(30_000), "]".repeat(30_000))),
            "recursion limit exceeded",
        ),
        (
            "non-UTF-8 line",
            b"\xff\xfe{}\n".to_vec(),
            "request line is not UTF-8",
        ),
        (
            "non-UTF-8 in a value",
            b"{\"cmd\":\"switch\",\"service\":\"w\xc3\x28\",\"colour\":\"green\"}\n".to_vec(),
            "request line is not UTF-8",
        ),
        ("10 MB line", huge, "request line longer than 65536 bytes"),
    ];
    let mut refused = 0;
    for (name, bytes, want) in &cases {
        let reply = s.agent().raw(bytes);
        assert!(
            reply.contains("\"status\":\"error\"") && reply.contains(want),
            "{name}: want an error containing {want:?}, got {reply:?}"
        );
        refused += 1;
    }
    assert_eq!(live_files(&s), before, "live files changed");
    assert_eq!(s.get(HOST), (200, "blue".into()));
    assert!(
        s.cli(&["switch", "web", "green"]).status.success(),
        "still serving"
    );
    eprintln!("bad-input battery: {refused} socket requests refused");
    assert!(refused >= 50);
}

/// The journal and its rotated files, newest first, as text.
fn journal_files(s: &Setup) -> Vec<String> {
    ["", ".1", ".2", ".3"]
        .iter()
        .filter_map(|suffix| {
            std::fs::read_to_string(s.file(&format!("state/history.jsonl{suffix}"))).ok()
        })
        .collect()
}

#[test]
fn a_flood_of_refused_requests_keeps_the_journal_bounded_and_readable() {
    let haproxy = match cutover_tests::require_proxy("haproxy") {
        Some(h) => h,
        None => return,
    };
    let mut s = Setup::new(&haproxy, SetupOptions::default());
    s.reconfigure_offline(|c| {
        c.replacen(
            "[agent]\n",
            "[agent]\njournal_max_bytes = 65536\njournal_files = 2\n",
            1,
        )
    });
    s.start_agent();
    // 300 refused requests, each with its own 60 KB service name.
    const DISTINCT: usize = 300;
    for i in 0..DISTINCT {
        let name = format!("\"{i}{}\"", "w".repeat(60_000));
        let reply = s.agent().raw(&switch(&name, "\"green\""));
        assert!(reply.contains("unknown service"), "{reply}");
    }
    let newest = journal_files(&s)[0].lines().last().unwrap().len();
    // The same refusal 300 times: counted, not written each time.
    let same = format!("\"{}\"", "v".repeat(60_000));
    for _ in 0..300 {
        let reply = s.agent().raw(&switch(&same, "\"green\""));
        assert!(reply.contains("unknown service"), "{reply}");
    }
    assert!(s.cli(&["switch", "web", "green"]).status.success());
    let files = journal_files(&s);
    let total: usize = files.iter().map(String::len).sum();
    let lines: usize = files.iter().map(|f| f.lines().count()).sum();
    eprintln!(
        "journal: a refusal with a 60 KB name writes a {newest}-byte line; after {DISTINCT} \
         distinct and 300 identical ones the journal and its {} rotated file(s) hold {total} \
         bytes in {lines} lines (bound {})",
        files.len() - 1,
        65536 * 3
    );
    assert!(newest < 2048, "{newest} bytes");
    assert!(total <= 65536 * 3, "{total} bytes on disk");
    assert_eq!(files.len(), 3, "rotated twice at least");

    // `history` reads on into the rotated files, and sums up the repeats.
    let (code, history) = s.cli_json(&["history", "--limit", "10000"]);
    assert_eq!(code, 0, "{history}");
    let entries = history["data"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), lines);
    assert!(entries.len() > files[0].lines().count());
    let summary = entries
        .iter()
        .find(|e| e["data"]["repeats"].as_u64().is_some())
        .unwrap_or_else(|| panic!("no summary of the repeats: {history}"));
    assert_eq!(summary["data"]["repeats"], 299, "{summary}");
    assert_eq!(summary["data"]["truncated"], true, "{summary}");
    assert_eq!(entries.last().unwrap()["result"], "ok");
}
