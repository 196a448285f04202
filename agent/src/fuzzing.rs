//! Entry points of the fuzz targets (`fuzz/`, run with `scripts/fuzz.sh`), kept in the
//! crate so the regression tests (`agent/tests/fuzz_regressions.rs`) replay every input
//! through exactly the code the fuzzer ran. Each takes arbitrary bytes, must never panic,
//! and asserts the round-trip or consistency property of its parser.

use std::path::Path;

use crate::config::{is_clean_relative, Config};
use crate::mapfile::{self, MapEntries, MapSyntax};
use crate::protocol;
use crate::proxy::haproxy::reply::{self, MapLine};

/// `protocol::decode`: a request that decodes encodes back to the same command, whose tag
/// is its verb.
pub fn protocol_decode(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cmd) = protocol::decode(line) {
        let again = protocol::decode(&protocol::encode(&cmd))
            .unwrap_or_else(|e| panic!("{cmd:?} encodes to a line it refuses: {e}"));
        assert_eq!(again, cmd);
        let tag = serde_json::to_value(&cmd).expect("command serializes")["cmd"].clone();
        assert_eq!(tag, cmd.verb());
    }
}

/// `Config::from_toml`: a config that validates holds only what validation promises.
pub fn config_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Relative paths resolve below a directory that does not exist.
    let Ok(config) = Config::from_toml(Path::new("/nonexistent-cutover-fuzz/cutover.toml"), text)
    else {
        return;
    };
    assert!(!config.services.is_empty());
    for f in &config.files {
        assert!(is_clean_relative(&f.template), "{:?}", f.template);
        assert!(mapfile::check_name(&f.name).is_ok(), "{:?}", f.name);
    }
    for s in config.services.values() {
        assert!(mapfile::check_name(&s.name).is_ok(), "{:?}", s.name);
        for r in &s.routes {
            assert!(mapfile::check_token(r).is_ok(), "{r:?}");
        }
        for c in s.colours.values() {
            assert!(mapfile::check_name(&c.backend).is_ok(), "{:?}", c.backend);
        }
    }
    assert_eq!(config.agent.socket_mode & 0o007, 0);
    assert!(config.agent.access.problems().is_empty());
}

/// Every parser of HAProxy's replies: no panic on any text, `clip` cuts on a character
/// boundary, and a whole `show map` listing parses as its lines do one by one.
pub fn haproxy_reply(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    let clipped = reply::clip(text);
    assert!(text.starts_with(clipped) && clipped.len() <= reply::MAX_REPLY_IN_ERROR);
    let _ = reply::check_mutation(text);
    let _ = reply::parse_prepared_version(text);
    let _ = reply::parse_map_list(text);
    let _ = reply::parse_backends(text);
    let _ = reply::parse_servers_state(text);
    let _ = reply::parse_reload_verdict(text);
    if let Ok(table) = reply::parse_show_proc(text) {
        let _ = table.epoch();
        assert!(table.newest_workers().all(|w| w.reloads == 0));
    }
    if let Ok(entries) = reply::parse_map_entries(text) {
        let mut by_line = Vec::new();
        for line in text.lines() {
            match reply::parse_map_line(line) {
                Some(MapLine::Entry(k, v)) => by_line.push((k.to_owned(), v.to_owned())),
                Some(MapLine::End) => break,
                None => panic!("parse_map_entries accepted a line parse_map_line refuses"),
            }
        }
        assert_eq!(entries, by_line);
    }
}

/// `MapSyntax::parse` (HAProxy and Nginx): parsed entries are valid keys and values and
/// survive `to_text` and back.
pub fn map_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for syntax in [MapSyntax::Haproxy, MapSyntax::Nginx] {
        let Ok(entries) = syntax.parse(text) else {
            continue;
        };
        for (k, v) in &entries {
            assert!(syntax.check_key(k).is_ok() && syntax.check_value(v).is_ok());
        }
        let again: MapEntries = syntax
            .parse(&syntax.to_text(&entries))
            .unwrap_or_else(|e| panic!("to_text wrote a {syntax:?} map parse refuses: {e}"));
        assert_eq!(again, entries);
        assert!(mapfile::MapDiff::between(&entries, &again).is_empty());
    }
}

/// One fuzz target: what it takes bytes into.
pub type Target = fn(&[u8]);

/// The targets by name, for tools that replay inputs.
/// `proxy::nginx::accesslog`: a message that parses names a non-empty upstream, a status
/// in 100..=599 and a finite, non-negative time, and counting any message never panics.
pub fn access_log(data: &[u8]) {
    use crate::proxy::nginx::accesslog::{parse, AccessStats};
    if let Some(line) = parse(data) {
        assert!(!line.upstream.is_empty() && !line.upstream.contains(' '));
        assert!((100..=599).contains(&line.status));
        assert!(line.response_ms.is_finite() && line.response_ms >= 0.0);
        let stats = AccessStats::new([line.upstream.to_string()]);
        stats.record(data);
        assert_eq!(stats.stats(line.upstream).requests, 1);
    }
}

/// Every target, by its name: the name of its file under `fuzz/fuzz_targets/` and of its
/// directories of seeds (`fuzz/seeds/<name>`) and regression inputs
/// (`agent/tests/fuzz-regressions/<name>`), which the regression test replays.
pub const TARGETS: &[(&str, Target)] = &[
    ("protocol_decode", protocol_decode),
    ("config_parse", config_parse),
    ("haproxy_reply", haproxy_reply),
    ("map_parse", map_parse),
    ("access_log", access_log),
];
