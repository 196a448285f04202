//! The Nginx runtime mode end to end against real Nginx 1.22 with Debian's Lua module: a
//! switch, a rollback, a preview and a canary (plain and sticky) that reach every worker
//! without a reload; a reload that keeps the runtime values; a restart that re-seeds the
//! dict from the files, which the agent notices; a dict that is full; garbage on the
//! control socket, and the control handler reached over TCP; a bulk load of more lines than
//! one control request takes; and the module missing, where `auto` falls back to reloads
//! and says so.
// Test code: an `unwrap()` that fails is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cutover_tests::agent::{text, Setup, SetupOptions};
use cutover_tests::scenarios::{self, agent as scenario};

const HOST: &str = "www.example.test";
const PREVIEW_HOST: &str = "preview.example.test";

fn lua(options: SetupOptions) -> Option<Setup> {
    let nginx = cutover_tests::require_proxy("nginx")?;
    if !Path::new("/usr/lib/nginx/modules/ngx_http_lua_module.so").is_file() {
        cutover_tests::skip_or_fail(
            "nginx lua runtime",
            "libnginx-mod-http-lua is not installed",
        );
        return None;
    }
    let mut s = Setup::new_nginx(
        &nginx,
        SetupOptions {
            nginx_runtime: Some("lua".into()),
            ..options
        },
    );
    s.start_agent();
    Some(s)
}

fn control(s: &Setup) -> PathBuf {
    s.dir().join("lua/control.sock")
}

/// One HTTP/1.0 request to the control socket: status and body.
fn ask(socket: &Path, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut c = UnixStream::connect(socket).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(body).unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

/// `generation` and `seeded` of the dict.
fn head(s: &Setup) -> (u64, u64) {
    let (status, body) = ask(&control(s), "GET", "/cutover/runtime", b"");
    assert_eq!(status, 200, "{body}");
    let field = |name: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {body:?}"))
    };
    (field("generation"), field("seeded"))
}

#[test]
fn switch_preview_and_rollback_reach_every_worker_without_a_reload() {
    let Some(s) = lua(SetupOptions {
        service_extra: format!("preview_hosts = [\"{PREVIEW_HOST}\"]\n"),
        ..SetupOptions::default()
    }) else {
        return;
    };
    let out = s.cli(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("nginx runtime: lua (configured \"lua\")"),
        "{said}"
    );
    assert!(said.contains("libnginx-mod-http-lua"), "{said}");

    // The control socket's directory is private; the socket itself is Nginx's 0666.
    let mode = std::fs::metadata(s.dir().join("lua"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);

    let workers = s.nginx().workers();
    let reloads = s.nginx().reloads_logged();
    let reply = scenario::switch_to_green(&s, HOST);
    assert!(reply["data"]["reload"].is_null(), "{reply}");
    let files = reply["data"]["files"].as_array().unwrap();
    assert!(files.iter().all(|f| f["mechanism"] == "per_key"), "{reply}");
    // Same workers, no reload: every worker reads the one dict.
    assert_eq!(s.nginx().workers(), workers);
    assert_eq!(s.nginx().reloads_logged(), reloads);
    for _ in 0..20 {
        assert_eq!(s.get(HOST), (200, "green".into()));
    }
    // The files stay the source of truth.
    assert!(std::fs::read_to_string(s.services_map())
        .unwrap()
        .contains("web web_green;"));
    let conf = std::fs::read_to_string(s.file("nginx.conf")).unwrap();
    assert!(conf.contains("load_module /"), "{conf}");
    assert!(
        !conf.contains(" down;"),
        "no drained servers in the lua config"
    );

    // Preview: the preview host and the preview header reach the idle colour.
    assert_eq!(s.get(PREVIEW_HOST), (200, "blue".into()));
    let r = scenarios::get_with(&s, HOST, &[("X-Cutover-Preview", "1")]);
    assert_eq!(r.body, "blue");

    // The dict, read back: the new values and the generation.
    let (code, live) = s.cli_json(&["map", "show", "services", "--live"]);
    assert_eq!(code, 0, "{live}");
    assert_eq!(live["data"]["entries"]["web"], "web_green", "{live}");
    let gen = s.generation();
    assert_eq!(head(&s).0, gen);
    let (_, status) = s.cli_json(&["status"]);
    assert_eq!(
        status["data"]["proxy"]["epoch"]["generation"], gen,
        "{status}"
    );
    assert!(status["data"]["proxy"]["epoch"]["seeded_ms"]
        .as_u64()
        .is_some());

    scenario::roll_back_to_blue(&s, HOST);
    assert_eq!(s.nginx().workers(), workers);
    assert_eq!(s.get(PREVIEW_HOST), (200, "green".into()));
    assert_eq!(head(&s).0, s.generation());
    scenario::switching_to_the_live_colour_changes_nothing(&s);
}

#[test]
fn canaries_plain_and_sticky_are_decided_per_request() {
    let Some(s) = lua(SetupOptions {
        service_extra: "canary_sticky = { cookie = \"cutover_web\" }\n".into(),
        ..SetupOptions::default()
    }) else {
        return;
    };
    let workers = s.nginx().workers();
    let green = scenarios::sticky_canary_clients(&s, HOST);
    eprintln!("lua sticky canary: {green} of 200 clients on green after 30% then 60%");
    assert!((80..=160).contains(&green), "{green}");
    assert_eq!(s.nginx().workers(), workers, "no reload for a canary");
    let (_, status) = s.cli_json(&["status"]);
    let seed = &status["data"]["services"][0]["canary"]["seed"];
    let (_, live) = s.cli_json(&["map", "show", "canary", "--live"]);
    assert_eq!(
        live["data"]["entries"]["web"],
        format!("60:{seed}"),
        "the share and the rollout's seed: {live}"
    );

    // Aborting the canary sends everyone back to the live colour.
    let out = s.cli(&["abort", "web"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(scenarios::answered_by(&s, HOST, "blue", 30), 30);
}

#[test]
fn a_plain_canary_splits_new_requests() {
    let Some(s) = lua(SetupOptions::default()) else {
        return;
    };
    let out = s.cli(&["canary", "web", "green", "50"]);
    assert!(out.status.success(), "{}", text(&out));
    let green = scenarios::answered_by(&s, HOST, "green", 200);
    assert!((50..=150).contains(&green), "{green} of 200 on the canary");
}

#[test]
fn a_reload_keeps_the_runtime_values_and_a_restart_reseeds_from_the_files() {
    let Some(mut s) = lua(SetupOptions::default()) else {
        return;
    };
    scenario::switch_to_green(&s, HOST);
    let gen = s.generation();
    let (g, seeded) = head(&s);
    assert_eq!(g, gen);

    // A reload by hand keeps the dict (same size): same values, same generation and seed.
    assert!(s.nginx().reload(Duration::from_secs(5)));
    assert_eq!(head(&s), (gen, seeded));
    assert_eq!(s.get(HOST), (200, "green".into()));

    // A restart seeds the dict from the files (generation 0, a new seed time); the agent
    // notices and records its generation, and the values are those of the files.
    // (A killed Nginx leaves its unix sockets behind; it would not bind them again.)
    std::thread::sleep(Duration::from_millis(5));
    s.nginx_mut().kill();
    for socket in ["status.sock", "lua/control.sock"] {
        let _ = std::fs::remove_file(s.dir().join(socket));
    }
    s.nginx_mut().restart();
    let (g, reseeded) = head(&s);
    assert!(g == 0 || g == gen, "{g}");
    assert_ne!(reseeded, seeded);
    assert_eq!(s.get(HOST), (200, "green".into()));
    assert!(
        s.agent()
            .wait_for_log("proxy restarted", Duration::from_secs(10)),
        "{}",
        s.agent().log()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while head(&s).0 != gen && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(head(&s).0, gen, "{}", s.agent().log());

    // A value changed behind the agent's back is repaired from the files.
    let (code, body) = ask(
        &control(&s),
        "POST",
        "/cutover/map/services",
        b"set web web_blue\n",
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(s.get(HOST), (200, "blue".into()));
    assert!(
        s.agent().wait_for_log("repaired", Duration::from_secs(10)),
        "{}",
        s.agent().log()
    );
    assert!(s.wait_for_body(HOST, "green", Duration::from_secs(5)));
}

#[test]
fn a_full_dict_is_an_error_and_evicts_nothing() {
    let Some(s) = lua(SetupOptions::default()) else {
        return;
    };
    // The 1 MiB dict of two routes holds a few thousand entries, not 40 000.
    let lines: String = (0..40_000)
        .map(|i| format!("set h{i}.example.test web\n"))
        .collect();
    let (code, body) = ask(
        &control(&s),
        "POST",
        "/cutover/map/routes",
        lines.as_bytes(),
    );
    assert_eq!(code, 507, "{body}");
    assert!(body.contains("nothing was evicted"), "{body}");
    // What was there is still served.
    assert_eq!(s.get(HOST), (200, "blue".into()));
    assert_eq!(s.get("example.test"), (200, "blue".into()));
    let out = s.cli(&["switch", "web", "green"]);
    // The dict may be too full for even this change: then it is refused, never half-done.
    if out.status.success() {
        assert_eq!(s.get(HOST), (200, "green".into()));
    } else {
        let said = text(&out);
        assert!(said.contains("507") || said.contains("full"), "{said}");
        assert_eq!(s.get(HOST), (200, "blue".into()));
    }
}

#[test]
fn garbage_on_the_control_socket_is_refused_and_changes_nothing() {
    let Some(s) = lua(SetupOptions::default()) else {
        return;
    };
    let socket = control(&s);
    for (method, path, body, want) in [
        (
            "POST",
            "/cutover/map/services",
            &b"set web not_an_upstream\n"[..],
            400,
        ),
        ("POST", "/cutover/map/services", b"rm -rf /\n", 400),
        (
            "POST",
            "/cutover/map/routes",
            b"set evil.test no_such_service\n",
            400,
        ),
        ("POST", "/cutover/map/canary", b"set web 250\n", 400),
        ("POST", "/cutover/map/nosuchmap", b"set a b\n", 404),
        ("GET", "/etc/passwd", b"", 404),
        ("DELETE", "/cutover/map/services", b"", 405),
        ("POST", "/cutover/generation?generation=abc", b"", 400),
        ("POST", "/cutover/map/services?generation=1;2", b"", 400),
    ] {
        let (code, reply) = ask(&socket, method, path, body);
        assert_eq!(code, want, "{method} {path}: {reply}");
    }
    // Not HTTP at all, and a line longer than nginx accepts.
    let mut c = UnixStream::connect(&socket).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"\x00\x01\x02 garbage\r\n\r\n").unwrap();
    let mut reply = String::new();
    let _ = c.read_to_string(&mut reply);
    assert!(reply.is_empty() || reply.contains("400"), "{reply}");
    let long = format!("GET /{} HTTP/1.0\r\n\r\n", "a".repeat(100_000));
    let mut c = UnixStream::connect(&socket).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = c.write_all(long.as_bytes());
    let mut reply = String::new();
    let _ = c.read_to_string(&mut reply);
    assert!(!reply.contains(" 200 "), "{reply}");

    // Nothing changed, and the agent still switches.
    let (_, live) = s.cli_json(&["map", "show", "services", "--live"]);
    assert_eq!(live["data"]["entries"]["web"], "web_blue", "{live}");
    assert_eq!(s.get(HOST), (200, "blue".into()));
    scenario::switch_to_green(&s, HOST);
}

#[test]
fn the_control_endpoint_refuses_a_request_that_did_not_come_in_on_its_unix_socket() {
    // A config that (by mistake) also serves the control handler on the traffic listener:
    // the handler itself refuses, whatever the config routes to it.
    let shipped =
        std::fs::read_to_string(cutover_tests::workspace_root().join("templates/nginx/nginx.conf"))
            .unwrap();
    let traffic = "        location / {\n{%- if lua %}";
    assert!(
        shipped.contains(traffic),
        "the traffic server's location moved"
    );
    let exposed = shipped.replacen(
        traffic,
        &format!(
            "        location /cutover/ {{\n            content_by_lua_block {{ cutover_runtime.control() }}\n        }}\n{traffic}"
        ),
        1,
    );
    let overrides = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(overrides.path().join("nginx")).unwrap();
    std::fs::write(overrides.path().join("nginx/nginx.conf"), exposed).unwrap();
    let Some(s) = lua(SetupOptions {
        templates_extra: format!(
            "override_dir = {:?}\n",
            overrides.path().display().to_string()
        ),
        ..SetupOptions::default()
    }) else {
        return;
    };
    for (method, path, body) in [
        ("GET", "/cutover/runtime", ""),
        ("GET", "/cutover/map/services", ""),
        ("POST", "/cutover/map/services", "set web web_green\n"),
        ("POST", "/cutover/generation?generation=999", ""),
    ] {
        let mut c = std::net::TcpStream::connect(s.frontend()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            c,
            "{method} {path} HTTP/1.0\r\nHost: {HOST}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        assert!(
            reply.starts_with("HTTP/1.1 403"),
            "{method} {path}: {reply}"
        );
        assert!(
            reply.contains("answers only on its unix socket"),
            "{method} {path}: {reply}"
        );
    }
    // Nothing changed: the dict, its generation and what is served.
    assert_eq!(head(&s).0, s.generation());
    assert_eq!(s.get(HOST), (200, "blue".into()));
    let (_, live) = s.cli_json(&["map", "show", "services", "--live"]);
    assert_eq!(live["data"]["entries"]["web"], "web_blue", "{live}");
    // The unix socket still answers, and the agent still switches.
    assert_eq!(ask(&control(&s), "GET", "/cutover/runtime", b"").0, 200);
    scenario::switch_to_green(&s, HOST);
}

/// The lines of a map as the dict holds them (after the head and its blank line).
fn dict_entries(s: &Setup, map: &str) -> Vec<String> {
    let (code, body) = ask(&control(s), "GET", &format!("/cutover/map/{map}"), b"");
    assert_eq!(code, 200, "{body}");
    let (_, entries) = body
        .split_once("\n\n")
        .unwrap_or_else(|| panic!("{body:?}"));
    entries.lines().map(str::to_owned).collect()
}

#[test]
fn a_bulk_load_goes_in_chunks_the_endpoint_accepts() {
    const ROUTES: usize = 60_000;
    let Some(s) = lua(SetupOptions {
        routes_in_file: true,
        ..SetupOptions::default()
    }) else {
        return;
    };
    s.load_generated_routes(HOST, ROUTES);
    let last = format!("h{}.example.test", ROUTES - 1);
    assert!(s.wait_for_body(&last, "blue", Duration::from_secs(10)));
    let loaded = dict_entries(&s, "routes");
    assert!(loaded.len() > ROUTES, "{} routes in the dict", loaded.len());

    // One request of more lines than the endpoint takes is refused whole.
    let too_many: String = (0..50_001)
        .map(|i| format!("del h{i}.example.test\n"))
        .collect();
    let (code, body) = ask(
        &control(&s),
        "POST",
        "/cutover/map/routes",
        too_many.as_bytes(),
    );
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("in chunks"), "{body}");
    assert_eq!(dict_entries(&s, "routes"), loaded);

    // Empty the routes behind the agent's back, in requests the endpoint takes: after the
    // next reload the agent repairs the dict from the file, in more than one request.
    for chunk in loaded.chunks(40_000) {
        let dels: String = chunk
            .iter()
            .filter_map(|line| line.split(' ').next())
            .map(|k| format!("del {k}\n"))
            .collect();
        let (code, body) = ask(&control(&s), "POST", "/cutover/map/routes", dels.as_bytes());
        assert_eq!(code, 200, "{body}");
    }
    assert!(dict_entries(&s, "routes").is_empty());
    // A reload by hand keeps the (now empty) dict: the agent compares it with the file.
    assert!(s.nginx().reload(Duration::from_secs(5)));
    assert!(
        s.agent()
            .wait_for_log("map routes: the running proxy had", Duration::from_secs(30)),
        "{}",
        s.agent().log()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while dict_entries(&s, "routes").len() != loaded.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut repaired = dict_entries(&s, "routes");
    let mut want = loaded.clone();
    repaired.sort_unstable();
    want.sort_unstable();
    assert!(
        repaired == want,
        "{} of {} routes after the repair; {}",
        repaired.len(),
        want.len(),
        s.agent().log()
    );
    assert_eq!(s.get(&last), (200, "blue".into()));
    assert_eq!(s.get("h0.example.test"), (200, "blue".into()));
    let out = s.cli(&["switch", "web", "green"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.get(HOST), (200, "green".into()));
    assert_eq!(s.get(&last), (200, "green".into()));
}

#[test]
fn without_the_module_auto_falls_back_to_reloads_and_lua_is_refused() {
    let Some(nginx) = cutover_tests::require_proxy("nginx") else {
        return;
    };
    let empty = tempfile::tempdir().unwrap();
    let mut s = Setup::new_nginx(
        &nginx,
        SetupOptions {
            nginx_runtime: Some("auto".into()),
            proxy_extra: format!("module_dir = \"{}\"", empty.path().display()),
            ..SetupOptions::default()
        },
    );
    s.start_agent();
    let out = s.cli(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("nginx runtime: reload (configured \"auto\")")
            && said.contains("_module.so is missing"),
        "{said}"
    );
    assert!(
        s.agent().log().contains("nginx runtime: reload"),
        "{}",
        s.agent().log()
    );
    let conf = std::fs::read_to_string(s.file("nginx.conf")).unwrap();
    assert!(!conf.contains("load_module"), "{conf}");
    // Changes are reloads, as without the runtime mode.
    let reply = scenario::switch_to_green(&s, HOST);
    assert!(
        reply["data"]["reload"]["serving_ms"].as_f64().is_some(),
        "{reply}"
    );

    // `runtime = "lua"` without the module is a config problem.
    let text_now = std::fs::read_to_string(&s.config).unwrap();
    let lua_config = s.dir().join("cutover-lua.toml");
    std::fs::write(
        &lua_config,
        text_now.replace("runtime = \"auto\"", "runtime = \"lua\""),
    )
    .unwrap();
    let out = cutover_tests::agent::cutover(&lua_config, &["check"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("proxy.runtime = \"lua\"") && said.contains("libnginx-mod-http-lua"),
        "{said}"
    );
}

#[test]
fn a_structural_change_still_reloads_and_leaves_the_dict_equal_to_the_files() {
    let Some(s) = lua(SetupOptions::default()) else {
        return;
    };
    scenario::switch_to_green(&s, HOST);
    let gen = s.generation();
    let (_, seeded) = head(&s);
    let workers = s.nginx().workers();

    // A new service brings new upstreams: the config changes, so Nginx reloads; the dict
    // (same size) keeps web's runtime value and gets api's entries from the files.
    s.reconfigure(|c| {
        c + "\n[[services]]\nname = \"api\"\nroutes = [\"api.example.test\"]\n\
             initial = \"green\"\n"
            + &format!(
                "blue = {{ backend = \"api_blue\", servers = [{{ name = \"b1\", address = \"{}\" }}] }}\n\
                 green = {{ backend = \"api_green\", servers = [{{ name = \"g1\", address = \"{}\" }}] }}\n",
                s.blue.addr(),
                s.green.addr()
            )
    });
    assert!(
        s.agent()
            .wait_for_log("new config in force", Duration::from_secs(30)),
        "{}",
        s.agent().log()
    );
    assert!(s.wait_for_body("api.example.test", "green", Duration::from_secs(10)));
    assert_ne!(
        s.nginx().workers(),
        workers,
        "the new upstreams needed a reload"
    );
    assert_eq!(s.get(HOST), (200, "green".into()));
    let (g, seeded_after) = head(&s);
    assert!(g > gen, "{g} after {gen}");
    assert_eq!(seeded_after, seeded, "the reload kept the dict");
    let (_, live) = s.cli_json(&["map", "show", "routes", "--live"]);
    assert_eq!(live["data"]["entries"]["api.example.test"], "api", "{live}");

    // And the new service switches at runtime like the others.
    let workers = s.nginx().workers();
    let out = s.cli(&["switch", "api", "blue"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(s.get("api.example.test"), (200, "blue".into()));
    assert_eq!(s.nginx().workers(), workers);
}
