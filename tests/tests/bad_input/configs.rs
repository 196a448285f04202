//! Bad configs, for `cutover check` and for the running agent on SIGHUP.

use std::path::Path;
use std::time::{Duration, Instant};

use cutover_tests::agent::{text, Setup, SetupOptions};
use cutover_tests::require_proxy;
use nix::sys::signal::Signal;

use super::{live_files, HOST};

/// A config case: the edit of the good config text, and what the refusal must say.
type Edit = Box<dyn Fn(&str) -> Vec<u8>>;

fn replace(from: &'static str, to: String) -> Edit {
    Box::new(move |good: &str| {
        assert!(good.contains(from), "{from:?} not in the config");
        good.replacen(from, &to, 1).into_bytes()
    })
}

const ROUTES: &str = r#"routes = ["www.example.test", "example.test"]"#;

fn route(r: &str) -> Edit {
    replace(ROUTES, format!("routes = [\"www.example.test\", {r}]"))
}

fn service_name(n: &str) -> Edit {
    replace("name = \"web\"", format!("name = {n}"))
}

fn routes_file(path: &Path) -> Edit {
    replace(
        ROUTES,
        format!("routes_file = {:?}", path.display().to_string()),
    )
}

/// A config whose `[templates]` use `dir` as the override directory.
fn overrides(dir: &Path) -> Edit {
    replace(
        "[templates]\n",
        format!(
            "[templates]\noverride_dir = {:?}\n",
            dir.display().to_string()
        ),
    )
}

/// An override directory holding `haproxy/<name>` with `text`.
fn template_dir(root: &Path, case: &str, name: &str, text: &str) -> std::path::PathBuf {
    let dir = root.join(case);
    std::fs::create_dir_all(dir.join("haproxy")).unwrap();
    std::fs::write(dir.join("haproxy").join(name), text).unwrap();
    dir
}

/// The shipped `haproxy.cfg` template defining only the blue backends, while the idle map
/// still names the green ones.
fn blue_backends_only(shipped: &str) -> String {
    let from = "{% for colour, c in service.colours %}\nbackend";
    assert!(shipped.contains(from), "the backends loop moved");
    let t = shipped.replacen(
        from,
        "{% for colour, c in service.colours %}{% if colour == \"blue\" %}\nbackend",
        1,
    );
    let end = t
        .rfind("{% endfor %}{% endfor %}")
        .expect("end of the backends loop");
    format!("{}{{% endif %}}{}", &t[..end], &t[end..])
}

fn refusals_logged(s: &Setup) -> usize {
    s.agent().log().matches("new config refused").count()
}

#[test]
fn bad_configs_are_refused_by_check_and_by_the_running_agent() {
    let haproxy = require_proxy!("haproxy");
    let mut s = Setup::new(&haproxy, SetupOptions::default());
    s.start_agent();
    let good = std::fs::read_to_string(&s.config).unwrap();
    let before = live_files(&s);
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path();
    let bad_routes = root.join("bad.routes");
    std::fs::write(&bad_routes, "ok.example\nbad host.example\n").unwrap();
    let empty_routes = root.join("empty.routes");
    std::fs::write(&empty_routes, "# no routes yet\n\n").unwrap();
    let shipped_cfg = std::fs::read_to_string(
        cutover_tests::workspace_root().join("templates/haproxy/haproxy.cfg"),
    )
    .unwrap();
    let blue_only = template_dir(
        root,
        "blueonly",
        "haproxy.cfg",
        &blue_backends_only(&shipped_cfg),
    );
    let breaks_haproxy = template_dir(
        root,
        "breaks",
        "haproxy.cfg",
        &shipped_cfg.replace(
            "frontend cutover_in",
            "frontend cutover_in\n    bogus_keyword on",
        ),
    );
    let include_outside = template_dir(
        root,
        "include",
        "services.map",
        "{% include \"../../../../../etc/passwd\" %}",
    );
    let symlinked = root.join("symlink");
    std::fs::create_dir_all(symlinked.join("haproxy")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", symlinked.join("haproxy/secret.map")).unwrap();
    let maps_dir = s.dir().join("maps").display().to_string();
    let x_file = move |t: &str| {
        format!("\n[[files]]\nname = \"x\"\ntemplate = {t:?}\npath = \"{maps_dir}/x.map\"\nkind = \"map\"\n")
    };
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "space in a route",
            route("\"a b.example\""),
            "route \"a b.example\" contains a space",
        ),
        ("tab in a route", route("\"a\\tb\""), "contains a tab"),
        (
            "newline in a route",
            route("\"a\\nb\""),
            "contains a newline",
        ),
        (
            "NUL in a route",
            route("\"a\\u0000b\""),
            "contains a NUL byte",
        ),
        ("# in a route", route("\"a#b\""), "contains '#'"),
        ("; in a route", route("\"a;b\""), "contains ';'"),
        ("quote in a route", route("\"a'b\""), "contains '\\''"),
        ("empty route", route("\"\""), "is empty"),
        (
            "2000-byte route",
            route(&format!("\"{}\"", "r".repeat(2000))),
            "is 2000 bytes long (at most 1024)",
        ),
        ("non-ASCII route", route("\"caf\u{e9}.example\""), "U+00E9"),
        (
            "space in a service name",
            service_name("\"my web\""),
            "\"my web\" contains ' '",
        ),
        (
            "newline in a service name",
            service_name("\"web\\n\""),
            "contains '\\n'",
        ),
        (
            "NUL in a service name",
            service_name("\"web\\u0000\""),
            "contains '\\0'",
        ),
        (
            "# in a service name",
            service_name("\"web#1\""),
            "contains '#'",
        ),
        (
            "empty service name",
            service_name("\"\""),
            "must be 1 to 64 characters",
        ),
        (
            "service name a number",
            service_name("5"),
            "invalid type: integer `5`",
        ),
        (
            "space in a backend",
            replace("backend = \"web_green\"", "backend = \"web green\"".into()),
            "\"web green\" contains ' '",
        ),
        (
            "# in a backend",
            replace("backend = \"web_green\"", "backend = \"web#green\"".into()),
            "contains '#'",
        ),
        (
            "NUL in a backend",
            replace("backend = \"web_green\"", "backend = \"web\\u0000\"".into()),
            "contains '\\0'",
        ),
        (
            "newline in a server name",
            replace("name = \"g1\"", "name = \"g\\n1\"".into()),
            "servers[0].name",
        ),
        (
            "bad server address",
            replace(
                "address = \"127.0.0.1",
                "address = \"not an address\\n#".into(),
            ),
            "is not host:port",
        ),
        (
            "an Nginx check with HAProxy",
            replace(ROUTES, format!("{ROUTES}\nhealth = {{ max_fails = 2 }}")),
            "health.max_fails: applies to kind = \"nginx\" only",
        ),
        (
            "a check path with a space",
            replace(
                ROUTES,
                format!("{ROUTES}\nhealth = {{ http_path = \"/a b\" }}"),
            ),
            "health.http_path: \"/a b\" must start with '/'",
        ),
        (
            "drain timeout beyond a week",
            replace(ROUTES, format!("{ROUTES}\ndrain_timeout_ms = 604800001\n")),
            "drain_timeout_ms: 604800001 is outside 0..=604800000",
        ),
        (
            "same backend twice",
            replace("backend = \"web_green\"", "backend = \"web_blue\"".into()),
            "is also the backend of web.blue",
        ),
        (
            "service twice",
            Box::new(|g: &str| {
                let svc = &g[g.find("[[services]]").unwrap()..];
                format!("{g}\n{svc}").into_bytes()
            }),
            "service defined twice",
        ),
        (
            "empty route list",
            replace(ROUTES, "routes = []".into()),
            "no routes; an empty route map looks valid",
        ),
        (
            "empty routes file",
            routes_file(&empty_routes),
            "no routes; an empty route map looks valid",
        ),
        (
            "device as routes file",
            routes_file(Path::new("/dev/null")),
            "/dev/null: not a regular file",
        ),
        (
            "missing routes file",
            routes_file(&root.join("nope.routes")),
            "No such file or directory",
        ),
        (
            "endless routes file",
            routes_file(Path::new("/dev/zero")),
            "/dev/zero: not a regular file",
        ),
        (
            "bad line in a routes file",
            routes_file(&bad_routes),
            "bad.routes:2: route \"bad host.example\" contains a space",
        ),
        (
            "unknown top-level table",
            Box::new(|g: &str| format!("{g}\n[extra]\nx = 1\n").into_bytes()),
            "unknown field `extra`",
        ),
        (
            "unknown agent field",
            replace("[agent]\n", "[agent]\nsokcet = \"/tmp/x\"\n".into()),
            "unknown field `sokcet`",
        ),
        (
            "unknown service field",
            replace("name = \"web\"", "name = \"web\"\nweight = 3".into()),
            "unknown field `weight`",
        ),
        (
            "interval a string",
            replace(
                "reconcile_interval_ms = 200",
                "reconcile_interval_ms = \"fast\"".into(),
            ),
            "invalid type: string \"fast\"",
        ),
        (
            "routes a string",
            replace(ROUTES, "routes = \"www.example.test\"".into()),
            "invalid type: string \"www.example.test\", expected a sequence",
        ),
        (
            "negative socket mode",
            replace("[agent]\n", "[agent]\nsocket_mode = -1\n".into()),
            "invalid value: integer `-1`",
        ),
        (
            "socket open to others",
            replace("[agent]\n", "[agent]\nsocket_mode = 0o666\n".into()),
            "0o666 must not give access to others",
        ),
        (
            "socket group with a space",
            replace("[agent]\n", "[agent]\nsocket_group = \"a b\"\n".into()),
            "agent.socket_group",
        ),
        (
            "uid a name the user database does not know",
            replace(
                "[agent]\n",
                "[agent]\nallow_uids = [\"no-such-user-here\"]\n".into(),
            ),
            "agent.allow_uids: no user named \"no-such-user-here\" in the user database",
        ),
        (
            "uid neither a number nor a name",
            replace("[agent]\n", "[agent]\nallow_uids = [true]\n".into()),
            "a number (0..=4294967295) or a user or group name",
        ),
        (
            "readers without writers",
            replace("[agent]\n", "[agent]\nread_uids = [1000]\n".into()),
            "set allow_uids or allow_gids too",
        ),
        (
            "tiny max_line",
            replace("[agent]\n", "[agent]\nmax_line = 10\n".into()),
            "agent.max_line: 10 is outside",
        ),
        (
            "unknown proxy kind",
            replace("kind = \"haproxy\"", "kind = \"squid\"".into()),
            "unknown variant `squid`",
        ),
        (
            "newline in a path",
            replace("state_dir = \"", "state_dir = \"/tmp/a\\n".into()),
            "contains the control character '\\n'",
        ),
        (
            "newline in a template value",
            replace(
                "vars = {",
                "vars = { evil = \"x\\n    stats socket /tmp/s level admin\",".into(),
            ),
            "templates.vars.evil: contains the control character '\\n'",
        ),
        (
            "TOML syntax error",
            replace("[agent]\n", "[agent\n".into()),
            "TOML parse error",
        ),
        (
            "not UTF-8",
            Box::new(|g: &str| {
                let mut b = g.as_bytes().to_vec();
                b.extend(b"\n# \xff\xfe\n");
                b
            }),
            "not UTF-8 (invalid byte at offset",
        ),
        (
            "10 MB line",
            Box::new(|g: &str| format!("{g}\n{}\n", "x".repeat(10 * 1024 * 1024)).into_bytes()),
            "TOML parse error",
        ),
        (
            "deeply nested value",
            replace(
                "vars = {",
                format!("deep = {}1{}\nvars = {{", "[".repeat(500), "]".repeat(500)),
            ),
            "TOML parse error",
        ),
        (
            "template outside the directory",
            {
                let x = x_file.clone();
                Box::new(move |g: &str| format!("{g}{}", x("../../../etc/passwd")).into_bytes())
            },
            "must be a relative path inside the template directory",
        ),
        (
            "absolute template",
            {
                let x = x_file.clone();
                Box::new(move |g: &str| format!("{g}{}", x("/etc/passwd")).into_bytes())
            },
            "must be a relative path inside the template directory",
        ),
        (
            "include outside the directory",
            overrides(&include_outside),
            "../../../../../etc/passwd",
        ),
        (
            "template symlinked outside",
            {
                let (o, x) = (overrides(&symlinked), x_file.clone());
                Box::new(move |g: &str| {
                    let g = String::from_utf8(o(g)).unwrap();
                    format!("{g}{}", x("haproxy/secret.map")).into_bytes()
                })
            },
            "template \"haproxy/secret.map\" for file \"x\" is in neither template directory",
        ),
        (
            "template syntax error",
            overrides(&template_dir(root, "syntax", "services.map", "{% if %}")),
            "template",
        ),
        (
            "undefined template variable",
            overrides(&template_dir(
                root,
                "undefined",
                "services.map",
                "{{ nope }}",
            )),
            "nope",
        ),
        (
            "template renders a bad map",
            overrides(&template_dir(
                root,
                "badmap",
                "services.map",
                "web web blue\n",
            )),
            "more than one value for key \"web\"",
        ),
        (
            "template renders an empty map",
            overrides(&template_dir(root, "empty", "services.map", "# nothing\n")),
            "map services renders no entries",
        ),
        (
            "map naming no backend",
            overrides(&template_dir(
                root,
                "nobackend",
                "services.map",
                "web web_purple\n",
            )),
            "web_purple",
        ),
        (
            "more services than the limit",
            Box::new(|g: &str| {
                let mut t = g.to_owned();
                for i in 0..10_000 {
                    t.push_str(&format!(
                        "\n[[services]]\nname = \"s{i}\"\nroutes = [\"s{i}.example.test\"]\n\
                         blue = {{ backend = \"s{i}_blue\" }}\ngreen = {{ backend = \"s{i}_green\" }}\n"
                    ));
                }
                t.into_bytes()
            }),
            "services: 10001 [[services]], more than the limit of 10000",
        ),
        (
            "more files than the limit",
            Box::new(|g: &str| {
                let mut t = g.to_owned();
                for i in 0..64 {
                    t.push_str(&format!(
                        "\n[[files]]\nname = \"extra{i}\"\ntemplate = \"haproxy/routes.map\"\n\
                         path = \"/tmp/extra{i}.map\"\nkind = \"map\"\n"
                    ));
                }
                t.into_bytes()
            }),
            "more than the limit of 64",
        ),
        (
            "haproxy.cfg without the backends a map names",
            overrides(&blue_only),
            "map idle: key \"web\" names backend \"web_green\", which the checked haproxy config",
        ),
        (
            "config HAProxy refuses",
            overrides(&breaks_haproxy),
            "bogus_keyword",
        ),
    ];
    let bad = s.dir().join("bad.toml");
    let mut refused_by_check = 0;
    let mut refused_by_agent = 0;
    for (name, edit, want) in &cases {
        let bytes = edit(&good);
        // `cutover check` on a copy: exit 64, the problem named.
        std::fs::write(&bad, &bytes).unwrap();
        let out = cutover_tests::agent::cutover(&bad, &["check"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(64) && stderr.contains(want),
            "{name}: want exit 64 naming {want:?}; {}",
            text(&out)
        );
        refused_by_check += 1;
        // The running agent, given it on SIGHUP, keeps the old config in force.
        let seen = refusals_logged(&s);
        std::fs::write(&s.config, &bytes).unwrap();
        s.agent().signal(Signal::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(20);
        while refusals_logged(&s) == seen {
            assert!(
                Instant::now() < deadline && s.agent_running(),
                "{name}: the agent did not refuse it:\n{}",
                s.agent().log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        refused_by_agent += 1;
        std::fs::write(&s.config, &good).unwrap();
    }
    assert_eq!(live_files(&s), before, "live files changed");
    assert_eq!(s.get(HOST), (200, "blue".into()));
    assert!(
        s.cli(&["switch", "web", "green"]).status.success(),
        "still serving"
    );
    eprintln!(
        "bad-input battery: {refused_by_check} configs refused by check, {refused_by_agent} by the running agent"
    );
    assert!(refused_by_check >= 50);
}

#[test]
fn backends_are_checked_against_the_config_about_to_be_served() {
    let haproxy = require_proxy!("haproxy");
    let mut s = Setup::new(&haproxy, SetupOptions::default());
    s.start_agent();
    let good = std::fs::read_to_string(&s.config).unwrap();

    // A service added with its backends and its map entries goes through one validated
    // reload on SIGHUP, though the running HAProxy does not have its backends yet.
    let api = good
        .replace("name = \"web\"", "name = \"api\"")
        .replace("web_blue", "api_blue")
        .replace("web_green", "api_green")
        .replace(
            "\"www.example.test\", \"example.test\"",
            "\"api.example.test\"",
        );
    let service = &api[api.find("[[services]]").unwrap()..];
    s.reconfigure(|c| format!("{c}\n{service}"));
    assert!(
        s.agent()
            .wait_for_log("new config in force", Duration::from_secs(20)),
        "{}",
        s.agent().log()
    );
    assert_eq!(s.get("api.example.test"), (200, "blue".into()));
    assert_eq!(s.get(HOST), (200, "blue".into()));

    // A template that drops the green backends while the idle map names them: refused at
    // start, naming the map, the key and the missing backend; nothing installed.
    s.stop_agent();
    let before = live_files(&s);
    let shipped = std::fs::read_to_string(
        cutover_tests::workspace_root().join("templates/haproxy/haproxy.cfg"),
    )
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let dir = template_dir(
        scratch.path(),
        "blueonly",
        "haproxy.cfg",
        &blue_backends_only(&shipped),
    );
    s.reconfigure_offline(|c| String::from_utf8(overrides(&dir)(&c)).unwrap());
    let out = cutover_tests::agent::cutover(&s.config, &["check"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    s.start_agent();
    let want = "map idle: key \"api\" names backend \"api_green\", which the checked haproxy config does not define";
    assert!(
        s.agent().wait_for_log(want, Duration::from_secs(20)),
        "{}",
        s.agent().log()
    );
    let mut after = live_files(&s);
    // The agent's own config is the one file meant to differ.
    after.retain(|(name, _)| name != "cutover.toml");
    let mut expected = before.clone();
    expected.retain(|(name, _)| name != "cutover.toml");
    assert_eq!(after, expected, "nothing installed");
    assert_eq!(s.get(HOST), (200, "blue".into()));
    assert_eq!(s.get("api.example.test"), (200, "blue".into()));
}

/// The CLI's JSON reply to `args`, sent on the agent's socket (the config file may not
/// parse).
fn on_socket(s: &Setup, args: &[&str]) -> (i32, serde_json::Value) {
    let socket = s.agent().socket.display().to_string();
    let mut all = vec!["--socket", &socket];
    all.extend_from_slice(args);
    s.cli_json(&all)
}

/// The config error `status` shows, if any.
fn config_error(s: &Setup) -> serde_json::Value {
    on_socket(s, &["status"]).1["data"]["config_error"].clone()
}

/// The refused config reloads the agent counted.
fn refusals_counted(s: &Setup) -> Option<f64> {
    let (_, m) = on_socket(s, &["metrics"]);
    m["data"]["text"].as_str()?.lines().find_map(|l| {
        l.strip_prefix("cutover_config_reloads_total{result=\"refused\"} ")?
            .parse()
            .ok()
    })
}

#[test]
fn a_refused_config_reload_is_shown_journaled_counted_and_fails_cutover_reload() {
    let haproxy = require_proxy!("haproxy");
    let mut s = Setup::new(&haproxy, SetupOptions::default());
    s.start_agent();
    let good = std::fs::read_to_string(&s.config).unwrap();
    let scratch = tempfile::tempdir().unwrap();

    // TOML syntax error on a known line: `cutover reload` waits for the verdict, exits 1
    // with the agent's reason; status names the file and line.
    let line = good.lines().position(|l| l == "[agent]").unwrap() as u64 + 1;
    std::fs::write(&s.config, good.replacen("[agent]\n", "[agent\n", 1)).unwrap();
    let out = s.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("new config refused"), "{}", text(&out));
    assert!(text(&out).contains("TOML parse error"), "{}", text(&out));
    let e = config_error(&s);
    assert_eq!(e["file"], s.config.display().to_string(), "{e}");
    assert_eq!(e["line"], line, "{e}");
    assert!(e["time_ms"].as_u64().unwrap() > 0, "{e}");
    assert_eq!(refusals_counted(&s), Some(1.0));
    let (_, history) = on_socket(&s, &["history", "--limit", "1"]);
    let last = &history["data"]["entries"][0];
    assert_eq!(last["result"], "error", "{last}");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("TOML parse error"),
        "{last}"
    );
    assert_eq!(last["data"]["line"], line, "{last}");

    // Unknown key, and a template syntax error: the file at fault is named.
    std::fs::write(
        &s.config,
        good.replacen("[agent]\n", "[agent]\nbogus = 1\n", 1),
    )
    .unwrap();
    assert_eq!(s.cli(&["reload"]).status.code(), Some(1));
    assert!(
        config_error(&s)["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `bogus`"),
        "{}",
        config_error(&s)
    );
    let broken = template_dir(scratch.path(), "syntax", "services.map", "{% if %}");
    std::fs::write(&s.config, overrides(&broken)(&good)).unwrap();
    let out = s.cli_json(&["reload"]);
    assert_eq!(out.0, 1, "{}", out.1);
    let e = config_error(&s);
    assert_eq!(e["file"], "haproxy/services.map", "{e}");
    assert_eq!(e["line"], 1, "{e}");
    assert_eq!(refusals_counted(&s), Some(3.0));
    // By SIGHUP too.
    s.agent().signal(Signal::SIGHUP);
    assert!(cutover_tests::wait_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || refusals_counted(&s) == Some(4.0)
    ));

    // The good config is put in force: the error is gone.
    std::fs::write(&s.config, &good).unwrap();
    let out = s.cli(&["reload"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(config_error(&s).is_null());

    // A change that needs nothing from the proxy goes through while the proxy is down.
    s.haproxy_mut().kill();
    std::fs::write(
        &s.config,
        good.replacen("[agent]\n", "[agent]\nread_timeout_ms = 9000\n", 1),
    )
    .unwrap();
    let out = s.cli(&["reload"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(config_error(&s).is_null());
}
