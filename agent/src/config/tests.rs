//! Tests of loading and validating configs.

use std::time::Duration;

use super::*;
use crate::protocol::FileKind;

const GOOD: &str = r#"
[agent]
socket = "/tmp/c.sock"
state_dir = "/tmp/state"

[proxy]
kind = "haproxy"
admin_socket = "/tmp/admin.sock"
master_socket = "/tmp/master.sock"
map_dir = "/tmp/maps"

[[services]]
name = "web"
routes = ["www.example.com", "example.com"]
blue = { backend = "web_blue" }
green = { backend = "web_green" }
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(Path::new("/etc/cutover/cutover.toml"), text)
}

#[test]
fn good_config_with_defaults() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.agent.socket_mode, DEFAULT_SOCKET_MODE);
    assert_eq!(c.services["web"].routes.len(), 2);
    assert_eq!(c.services["web"].initial, Colour::Blue);
    assert_eq!(c.files.len(), 2);
    assert_eq!(
        c.file("routes").unwrap().path,
        Path::new("/tmp/maps/routes.map")
    );
    assert!(!c.file("routes").unwrap().uses_state);
}

#[test]
fn unknown_field_is_refused() {
    let e = load(&GOOD.replace("[agent]", "[agent]\nsokcet = 1")).unwrap_err();
    assert!(e.to_string().contains("unknown field `sokcet`"), "{e}");
}

#[test]
fn every_problem_is_listed() {
    let bad = GOOD
        .replace("\"www.example.com\"", "\"www example.com\"")
        .replace("web_green", "web_blue")
        .replace("/tmp/admin.sock", "")
        .replace("name = \"web\"", "name = \"web/x\"");
    let e = load(&bad).unwrap_err().to_string();
    assert!(
        e.contains("route \"www example.com\" contains a space"),
        "{e}"
    );
    assert!(e.contains("is also the backend of"), "{e}");
    assert!(e.contains("proxy.admin_socket: empty path"), "{e}");
    assert!(e.contains("services[0] (web/x).name"), "{e}");
}

#[test]
fn empty_routes_refused_unless_allowed() {
    let bad = GOOD.replace("[\"www.example.com\", \"example.com\"]", "[]");
    assert!(load(&bad).unwrap_err().to_string().contains("no routes"));
    let ok = bad.replace("routes = []", "routes = []\nallow_empty_routes = true");
    assert!(load(&ok).is_ok());
}

#[test]
fn shared_route_refused() {
    let two = format!(
        "{GOOD}\n[[services]]\nname = \"api\"\nroutes = [\"example.com\"]\nblue = {{ backend = \"a_b\" }}\ngreen = {{ backend = \"a_g\" }}\n"
    );
    let e = load(&two).unwrap_err().to_string();
    assert!(e.contains("also a route of service \"web\""), "{e}");
}

#[test]
fn routes_file_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("routes.txt");
    std::fs::write(&f, "# hosts\na.example\n\nb#x\n").unwrap();
    let text = GOOD.replace(
        "routes = [\"www.example.com\", \"example.com\"]",
        &format!("routes_file = {:?}", f.display().to_string()),
    );
    let e = load(&text).unwrap_err().to_string();
    assert!(e.contains("routes.txt:4: route \"b#x\""), "{e}");
}

const NGINX: &str = r#"
[proxy]
kind = "nginx"

[[services]]
name = "web"
routes = ["www.example.com"]
blue = { backend = "web_blue" }
green = { backend = "web_green" }
"#;

#[test]
fn nginx_defaults() {
    let c = load(NGINX).unwrap();
    assert_eq!(c.proxy.binary, Path::new(DEFAULT_NGINX_BINARY));
    assert_eq!(c.proxy.config, Path::new(DEFAULT_NGINX_CONFIG));
    assert_eq!(
        c.proxy.min_reload_gap,
        Duration::from_millis(DEFAULT_NGINX_MIN_RELOAD_GAP_MS)
    );
    let n = c.proxy.nginx.as_ref().unwrap();
    assert_eq!(n.pid_file, Path::new(DEFAULT_NGINX_PID_FILE));
    assert_eq!(n.error_log, Path::new(DEFAULT_NGINX_ERROR_LOG));
    assert_eq!(n.status.to_string(), DEFAULT_NGINX_STATUS);
    assert_eq!(n.prefix, None);
    // The main config is rendered too: every nginx change reloads it.
    let main = c.file("nginx").unwrap();
    assert_eq!(
        (main.path.as_path(), main.kind),
        (c.proxy.config.as_path(), FileKind::Config)
    );
    assert_eq!(c.file("services").unwrap().template, "nginx/services.map");
    assert!(load(GOOD).unwrap().proxy.nginx.is_none());
    assert_eq!(load(GOOD).unwrap().proxy.min_reload_gap, Duration::ZERO);
}

#[test]
fn nginx_runtime_modes() {
    let c = load(NGINX).unwrap();
    let n = c.proxy.nginx.as_ref().unwrap();
    assert_eq!((n.runtime, n.lua), (NginxRuntime::Reload, false));
    assert!(c.file("idle").is_none() && c.file("canary").is_none());
    assert_eq!(n.lua_control, Path::new(DEFAULT_NGINX_LUA_CONTROL));
    assert_eq!(n.module_dir, Path::new(DEFAULT_NGINX_MODULE_DIR));

    // "lua" is in use at once; "auto" waits for the probe. Both get the two maps the lookup
    // reads, and tell the Nginx settings where all four are.
    for (runtime, lua) in [("lua", true), ("auto", false)] {
        let c = load(&NGINX.replace(
            "kind = \"nginx\"",
            &format!("kind = \"nginx\"\nruntime = \"{runtime}\""),
        ))
        .unwrap();
        let n = c.proxy.nginx.as_ref().unwrap();
        assert_eq!(n.lua, lua, "{runtime}");
        assert_eq!(c.file("canary").unwrap().values, ValueCheck::Percent);
        assert_eq!(c.file("idle").unwrap().template, "nginx/idle.map");
        assert_eq!(
            n.lua_maps.keys().map(String::as_str).collect::<Vec<_>>(),
            ["canary", "idle", "routes", "services"]
        );
    }

    // Listed [[files]] must name the maps the lookup reads.
    let e = load(&format!(
        "{}\n[[files]]\nname = \"nginx\"\ntemplate = \"nginx/nginx.conf\"\npath = \"/etc/nginx/nginx.conf\"\nkind = \"config\"\n",
        NGINX.replace("kind = \"nginx\"", "kind = \"nginx\"\nruntime = \"lua\"")
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("needs a map named \"idle\""), "{e}");

    // Only for nginx, and only the three words.
    let e = load(&GOOD.replace(
        "kind = \"haproxy\"",
        "kind = \"haproxy\"\nruntime = \"lua\"",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("proxy.runtime: only for kind = \"nginx\""),
        "{e}"
    );
    assert!(
        load(&NGINX.replace("kind = \"nginx\"", "kind = \"nginx\"\nruntime = \"fast\"")).is_err()
    );
}

#[test]
fn keys_of_the_other_proxy_are_refused() {
    let e = load(&NGINX.replace(
        "kind = \"nginx\"",
        "kind = \"nginx\"\nadmin_socket = \"/tmp/a.sock\"",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("proxy.admin_socket: only for kind = \"haproxy\""),
        "{e}"
    );
    let e = load(&GOOD.replace("map_dir", "pid_file = \"/run/x.pid\"\nmap_dir"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("proxy.pid_file: only for kind = \"nginx\""),
        "{e}"
    );
}

#[test]
fn nginx_status_is_local_only() {
    for (status, ok) in [
        ("127.0.0.1:8099", true),
        ("[::1]:8099", true),
        ("unix:/run/cutover/s.sock", true),
        ("0.0.0.0:8099", false),
        ("10.1.2.3:8099", false),
        ("unix:relative.sock", false),
        ("localhost", false),
    ] {
        let text = NGINX.replace(
            "kind = \"nginx\"",
            &format!("kind = \"nginx\"\nstatus = {status:?}"),
        );
        assert_eq!(load(&text).is_ok(), ok, "{status}");
    }
}

#[test]
fn nginx_routes_that_a_map_block_reads_differently_are_refused() {
    let text = NGINX.replace(
        "[\"www.example.com\"]",
        "[\"www.example.com\", \"default\", \"~^x\"]",
    );
    let e = load(&text).unwrap_err().to_string();
    assert!(
        e.contains("services[0] (web).routes[1]: route \"default\""),
        "{e}"
    );
    assert!(
        e.contains("routes[2]: route \"~^x\" starts with '~'"),
        "{e}"
    );
    // The same routes are plain keys for HAProxy.
    assert!(load(&GOOD.replace("\"example.com\"]", "\"default\"]")).is_ok());
}

#[test]
fn nginx_takes_previews_watches_and_sticky_canaries() {
    let extra = "green = { backend = \"web_green\" }\npreview_hosts = [\"p.example.com\"]\ncanary_sticky = { cookie = \"web_bucket\" }\n[services.watch]\nwindow_ms = 1000";
    let config = load(&NGINX.replace("green = { backend = \"web_green\" }", extra)).unwrap();
    assert_eq!(
        config.proxy.nginx.unwrap().access_log_socket,
        Path::new(DEFAULT_NGINX_ACCESS_LOG_SOCKET)
    );
    // Nginx reads the cookie as a variable, whose name cannot hold a '-'.
    let dash = NGINX.replace(
        "green = { backend = \"web_green\" }",
        "green = { backend = \"web_green\" }\ncanary_sticky = { cookie = \"web-bucket\" }",
    );
    let e = load(&dash).unwrap_err().to_string();
    assert!(
        e.contains("(web).canary_sticky: cookie \"web-bucket\": with kind = \"nginx\""),
        "{e}"
    );
    assert!(load(&GOOD.replace(
        "[[services]]\nname = \"web\"",
        "[[services]]\nname = \"web\"\ncanary_sticky = { cookie = \"web-bucket\" }"
    ))
    .is_ok());
}

#[test]
fn nginx_files_must_render_the_main_config() {
    let text = format!(
        "{NGINX}\n[[files]]\nname = \"services\"\ntemplate = \"nginx/services.map\"\npath = \"/etc/nginx/cutover/services.map\"\nkind = \"map\"\n"
    );
    let e = load(&text).unwrap_err().to_string();
    assert!(e.contains("must be rendered by cutover"), "{e}");
    let gap = NGINX.replace(
        "kind = \"nginx\"",
        "kind = \"nginx\"\nmin_reload_gap_ms = 60001",
    );
    assert!(load(&gap)
        .unwrap_err()
        .to_string()
        .contains("min_reload_gap_ms"));
}

#[test]
fn shipped_examples_are_valid() {
    for name in ["cutover.toml", "cutover-nginx.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        if let Err(e) = Config::from_toml(&path, &text) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn template_outside_dir_refused() {
    let text = format!(
        "{GOOD}\n[[files]]\nname = \"x\"\ntemplate = \"../../etc/passwd\"\npath = \"/tmp/maps/x.map\"\nkind = \"map\"\n"
    );
    let e = load(&text).unwrap_err().to_string();
    assert!(e.contains("must be a relative path inside"), "{e}");
}

#[test]
fn only_regular_files_are_read_and_never_without_bound() {
    let text = GOOD.replace(
        "routes = [\"www.example.com\", \"example.com\"]",
        "routes_file = \"/dev/zero\"",
    );
    let e = load(&text).unwrap_err().to_string();
    assert!(e.contains("/dev/zero: not a regular file"), "{e}");
}

#[test]
fn control_characters_in_paths_and_template_values_are_refused() {
    let text = GOOD
        .replace("/tmp/state", "/tmp/st\\nate")
        .replace("[proxy]", "[templates]\nvars = { listen = \"127.0.0.1:80\\n    stats socket /tmp/x level admin\", n = [\"a\\u0000\"] }\n[proxy]");
    let e = load(&text).unwrap_err().to_string();
    assert!(
        e.contains("agent.state_dir: \"/tmp/st\\nate\" contains the control character '\\n'"),
        "{e}"
    );
    assert!(
        e.contains("templates.vars.listen: contains the control character '\\n'"),
        "{e}"
    );
    assert!(
        e.contains("templates.vars.n[0]: contains the control character '\\0'"),
        "{e}"
    );
}

#[test]
fn empty_maps_need_explicit_permission() {
    let c = load(GOOD).unwrap();
    let empty = crate::mapfile::MapEntries::new();
    let e = c
        .file("routes")
        .unwrap()
        .check_entries(&empty)
        .unwrap_err()
        .to_string();
    assert!(e.contains("map routes renders no entries"), "{e}");
    assert!(c.file("services").unwrap().check_entries(&empty).is_err());
    let allowed = load(&GOOD.replace(
        "routes = [\"www.example.com\", \"example.com\"]",
        "routes = []\nallow_empty_routes = true",
    ))
    .unwrap();
    assert!(allowed
        .file("routes")
        .unwrap()
        .check_entries(&empty)
        .is_ok());
    assert!(allowed
        .file("services")
        .unwrap()
        .check_entries(&empty)
        .is_err());
}

#[test]
fn access_lists() {
    let c = load(&GOOD.replace(
        "[agent]",
        "[agent]\nallow_uids = [1000]\nread_gids = [50]\nsocket_group = \"cutover\"",
    ))
    .unwrap();
    assert!(c.agent.access.allow_uids.contains(&1000));
    assert!(c.agent.access.read_gids.contains(&50));
    let e = load(&GOOD.replace("[agent]", "[agent]\nread_uids = [7]")).unwrap_err();
    assert!(
        e.to_string().contains("set allow_uids or allow_gids too"),
        "{e}"
    );
    let e = load(&GOOD.replace("[agent]", "[agent]\nallow_uids = [-1]")).unwrap_err();
    assert!(e.to_string().contains("allow_uids"), "{e}");
    let e = load(&GOOD.replace("[agent]", "[agent]\nsocket_group = \"a b\"")).unwrap_err();
    assert!(e.to_string().contains("agent.socket_group"), "{e}");
}

#[test]
fn access_lists_take_names_resolved_when_the_config_is_read() {
    // root is uid 0 and group 0 wherever this runs.
    let c = load(&GOOD.replace(
        "[agent]",
        "[agent]\nallow_uids = [\"root\", 1000]\nallow_gids = [\"root\"]\nread_uids = [\"root\"]",
    ))
    .unwrap();
    assert_eq!(c.agent.access.allow_uids, [0, 1000].into());
    assert_eq!(c.agent.access.allow_gids, [0].into());
    assert_eq!(c.agent.access.read_uids, [0].into());
    let e = load(&GOOD.replace("[agent]", "[agent]\nallow_gids = [\"no-such-group-here\"]"))
        .unwrap_err();
    assert!(
        e.to_string().contains(
            "agent.allow_gids: no group named \"no-such-group-here\" in the user database"
        ),
        "{e}"
    );
    let e = load(&GOOD.replace("[agent]", "[agent]\nallow_uids = [\"a b\"]")).unwrap_err();
    assert!(
        e.to_string()
            .contains("a number (0..=4294967295) or a user or group name"),
        "{e}"
    );
}

#[test]
fn status_addresses_and_empty_maps_are_refused_in_the_same_words() {
    let e = |s: &str| StatusAddress::parse(s).unwrap_err().to_string();
    assert_eq!(
        e("unix:run/s.sock"),
        "\"unix:run/s.sock\": a unix socket path must be absolute"
    );
    assert_eq!(
        e("nowhere"),
        "\"nowhere\" is neither ip:port nor unix:/path"
    );
    assert_eq!(
        e("10.0.0.1:8099"),
        "\"10.0.0.1:8099\" is not a loopback address; the status listener must not be \
         reachable from other hosts"
    );
    let empty = EmptyMapError {
        file: "routes".into(),
    };
    assert_eq!(
        empty.to_string(),
        "map routes renders no entries; an empty map looks valid and routes nothing (set \
         allow_empty = true on this [[files]] entry if that is intended)"
    );
}

#[test]
fn a_fleet_store_in_etcd_is_validated() {
    let fleet = "\n[cluster]\nstore = \"etcd\"\nnode = \"lb1\"\nexpect_hosts = [\"lb1\", \"lb2\"]\n\
                 [cluster.etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/cutover/a\"\n";
    let c = load(&format!("{GOOD}{fleet}")).unwrap();
    assert!(c.cluster.is_none());
    let f = c.fleet.unwrap();
    assert_eq!(f.node, "lb1");
    assert_eq!(
        f.etcd.lease_ttl,
        Duration::from_secs(fleet::DEFAULT_LEASE_TTL_S)
    );
    assert_eq!(f.expect_hosts, ["lb1", "lb2"]);

    let bad = |edit: &str, expected: &str| {
        let e = load(&format!(
            "{GOOD}{}",
            fleet.replace("store = \"etcd\"", edit)
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains(expected), "{edit}: {e}");
    };
    bad(
        "store = \"etcd\"\nlisten = \"127.0.0.1:7443\"",
        "cluster.listen: belongs to store = \"peers\"",
    );
    bad("store = \"zookeeper\"", "unknown variant `zookeeper`");
    let endpoints = |e: &str| fleet.replace("[\"http://127.0.0.1:2379\"]", e);
    for (text, expected) in [
        (endpoints("[]"), "endpoints: 0 given"),
        (endpoints("[\"127.0.0.1:2379\"]"), "is not http://host:port"),
        (endpoints("[\"https://etcd:2379\"]"), "needs ca"),
        (fleet.replace("/cutover/a", "/cutover/a/"), "prefix"),
        (fleet.replace("/cutover/a", "cutover"), "prefix"),
        (
            format!("{fleet}lease_ttl_s = 1\n"),
            "lease_ttl_s: 1 is outside 2..=300",
        ),
        (
            format!("{fleet}user = \"u\"\n"),
            "user and password_file go together",
        ),
    ] {
        let e = load(&format!("{GOOD}{text}")).unwrap_err().to_string();
        assert!(e.contains(expected), "{text}: {e}");
    }
    // A desired-state file and a fleet store would both declare the desired state.
    let both = format!(
        "{}{fleet}",
        GOOD.replace("[agent]", "[agent]\ndesired_state = \"/tmp/desired.toml\"")
    );
    let e = load(&both).unwrap_err().to_string();
    assert!(e.contains("agent.desired_state: a host of a fleet"), "{e}");
    // Static peers keep their required fields.
    let peers = "\n[cluster]\nnode = \"lb1\"\n";
    let e = load(&format!("{GOOD}{peers}")).unwrap_err().to_string();
    assert!(e.contains("cluster.ca: missing"), "{e}");
}

#[test]
fn remote_api_roles_and_bounds() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["ca.pem", "lb1.pem", "lb1.key"] {
        std::fs::write(dir.path().join(f), "").unwrap();
    }
    let d = dir.path().display();
    let remote = |extra: &str| {
        format!(
            "{GOOD}\n[remote]\nlisten = \"127.0.0.1:7444\"\nca = \"{d}/ca.pem\"\n\
             cert = \"{d}/lb1.pem\"\nkey = \"{d}/lb1.key\"\n{extra}"
        )
    };
    let c = load(&remote(
        "[[remote.clients]]\nidentity = \"dns:ci\"\nrole = \"operate\"\n\
         [[remote.clients]]\nidentity = \"uri:spiffe://example/ci\"\nrole = \"admin\"\n",
    ))
    .unwrap();
    let r = c.remote.as_ref().unwrap();
    assert_eq!(
        r.max_streams_per_client,
        remote::DEFAULT_MAX_STREAMS_PER_CLIENT
    );
    assert_eq!(r.max_message_bytes, remote::DEFAULT_MAX_MESSAGE_BYTES);
    use crate::access::Role;
    use crate::requester::Identity;
    assert_eq!(
        c.agent.access.remote.clients,
        [
            (Identity::Dns("ci".into()), Role::Operate),
            (Identity::Uri("spiffe://example/ci".into()), Role::Admin),
        ]
        .into()
    );
    let e = load(&remote(
        "max_streams_per_client = 0\n[[remote.clients]]\nidentity = \"ci\"\nrole = \"read\"\n\
         [[remote.clients]]\nidentity = \"dns:a\"\nrole = \"read\"\n\
         [[remote.clients]]\nidentity = \"dns:a\"\nrole = \"admin\"\n",
    ))
    .unwrap_err()
    .to_string();
    for p in [
        "remote.max_streams_per_client: 0 is outside 1..=1024",
        "remote.clients[0].identity: \"ci\" is not dns:<name> or uri:<uri>",
        "remote.clients[2].identity: \"dns:a\" is listed twice",
    ] {
        assert!(e.contains(p), "{p}: {e}");
    }
    let e = load(&remote(
        "[[remote.clients]]\nidentity = \"dns:a\"\nrole = \"root\"\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown variant `root`"), "{e}");
    // Without [cluster], the certificates must be named.
    let e = load(&format!("{GOOD}\n[remote]\nlisten = \"127.0.0.1:7444\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("remote.ca: missing (and no [cluster] to take it from)"),
        "{e}"
    );
}
