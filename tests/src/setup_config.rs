//! The cutover config of a [`Setup`](crate::agent::Setup): one template for both proxies,
//! with what differs (the `[proxy]` keys, template vars, the kind's own maps) filled in.

use std::path::{Path, PathBuf};

use crate::agent::SetupOptions;
use crate::nginx::NginxPaths;
use crate::{workspace_root, HaproxyPaths};

/// The `routes` or `routes_file` line of service `web` (writing the file when asked).
fn routes_line(dir: &Path, o: &SetupOptions) -> String {
    if o.routes_in_file {
        let file = dir.join("web.routes");
        std::fs::write(&file, o.routes.join("\n") + "\n").expect("routes file");
        format!("routes_file = {:?}", file.display().to_string())
    } else {
        format!("routes = {:?}", o.routes)
    }
}

/// What differs between the cutover configs of the two proxies.
struct ProxyPart<'a> {
    /// Template directory and main file name: `haproxy`/`haproxy.cfg`, `nginx`/`nginx.conf`.
    kind: &'a str,
    main_name: &'a str,
    /// The main proxy config.
    main: &'a Path,
    /// Lines of `[proxy]` after `kind`, `binary` and `config`.
    proxy_lines: String,
    /// Entries of `vars` after `listen`, each starting with a comma.
    vars: String,
    /// `[[files]]` of the kind's own maps, besides routes, services and the main config.
    files: String,
    listen: std::net::SocketAddr,
}

/// Writes `<dir>/cutover.toml`: agent, proxy, templates, the two maps and the main config
/// rendered from the kind's shipped templates, and service `web` with one server per colour.
fn write_setup_config(
    dir: &Path,
    binary: &Path,
    part: ProxyPart<'_>,
    o: &SetupOptions,
    blue: std::net::SocketAddr,
    green: std::net::SocketAddr,
) -> PathBuf {
    std::fs::create_dir_all(dir.join("maps")).expect("maps dir");
    let routes = routes_line(dir, o);
    let text = format!(
        r#"[agent]
socket = "{dir}/cutover.sock"
state_dir = "{dir}/state"
reconcile_interval_ms = {interval}
{agent_extra}

[proxy]
kind = "{kind}"
binary = "{bin}"
config = "{cfg}"
{proxy_lines}
{proxy_extra}

[templates]
dir = "{templates}"
vars = {{ listen = "{listen}"{vars} {vars_extra} }}
{extra}

[[files]]
name = "routes"
template = "{kind}/routes.map"
path = "{dir}/maps/routes.map"
kind = "map"
uses_state = false
values = "services"

[[files]]
name = "services"
template = "{kind}/services.map"
path = "{dir}/maps/services.map"
kind = "map"
values = "backends"

{kind_files}[[files]]
name = "{kind}"
template = "{kind}/{main_name}"
path = "{cfg}"
kind = "config"

[[services]]
name = "web"
{routes}
blue = {{ backend = "web_blue", servers = [{{ name = "b1", address = "{blue}" }}] }}
green = {{ backend = "web_green", servers = [{{ name = "g1", address = "{green}" }}] }}
{service_extra}
{extra_services}
{config_extra}
"#,
        dir = dir.display(),
        interval = o.reconcile_interval_ms,
        kind = part.kind,
        main_name = part.main_name,
        kind_files = part.files,
        bin = binary.display(),
        cfg = part.main.display(),
        proxy_lines = part.proxy_lines,
        proxy_extra = o.proxy_extra,
        templates = workspace_root().join("templates").display(),
        listen = part.listen,
        vars = part.vars,
        vars_extra = o.vars_extra,
        extra = o.templates_extra,
        service_extra = o.service_extra,
        extra_services = o
            .extra_services
            .replace("{blue}", &blue.to_string())
            .replace("{green}", &green.to_string()),
        agent_extra = o.agent_extra,
        config_extra = o.config_extra,
    );
    let path = dir.join("cutover.toml");
    std::fs::write(&path, text).expect("write cutover.toml");
    path
}

/// The idle colour (preview and canary requests) and the canary shares, which the shipped
/// haproxy.cfg and the Nginx Lua lookup read besides routes and services. `{kind}` stands
/// for the template directory, `{dir}` for the instance directory.
const RUNTIME_FILES: &str = r#"[[files]]
name = "idle"
template = "{kind}/idle.map"
path = "{dir}/maps/idle.map"
kind = "map"
values = "backends"

[[files]]
name = "canary"
template = "{kind}/canary.map"
path = "{dir}/maps/canary.map"
kind = "map"
values = "percent"

"#;

/// The preview hosts, which the shipped haproxy.cfg reads from a map as well.
const HAPROXY_PREVIEW_FILE: &str = r#"[[files]]
name = "preview"
template = "haproxy/preview.map"
path = "{dir}/maps/preview.map"
kind = "map"
uses_state = false
values = "services"
# No preview hosts is normal: an empty preview map is intended.
allow_empty = true

"#;

pub(crate) fn write_config(
    paths: &HaproxyPaths,
    haproxy_bin: &Path,
    o: &SetupOptions,
    blue: std::net::SocketAddr,
    green: std::net::SocketAddr,
) -> PathBuf {
    let part = ProxyPart {
        kind: "haproxy",
        main_name: "haproxy.cfg",
        main: &paths.config,
        proxy_lines: format!(
            "admin_socket = \"{}\"\nmaster_socket = \"{}\"",
            paths.admin_socket.display(),
            paths.master_socket.display()
        ),
        vars: ", maxconn = 256".into(),
        files: (RUNTIME_FILES.replace("{kind}", "haproxy") + HAPROXY_PREVIEW_FILE)
            .replace("{dir}", &paths.dir.display().to_string()),
        listen: paths.frontend,
    };
    write_setup_config(&paths.dir, haproxy_bin, part, o, blue, green)
}

pub(crate) fn write_nginx_config(
    paths: &NginxPaths,
    nginx_bin: &Path,
    o: &SetupOptions,
    blue: std::net::SocketAddr,
    green: std::net::SocketAddr,
) -> PathBuf {
    let dir = paths.dir.display();
    let part = ProxyPart {
        kind: "nginx",
        main_name: "nginx.conf",
        main: &paths.config,
        proxy_lines: format!(
            "pid_file = \"{}\"\nerror_log = \"{}\"\nstatus = \"unix:{}\"\nprefix = \"{dir}\"\naccess_log_socket = \"{dir}/access.sock\"{}",
            paths.pid_file.display(),
            paths.error_log.display(),
            paths.status_socket.display(),
            crate::nginx::worker_group()
                .map(|g| format!("\naccess_log_group = \"{g}\""))
                .unwrap_or_default(),
        ) + &o
            .nginx_runtime
            .as_ref()
            .map(|r| format!("\nruntime = \"{r}\"\nlua_control = \"{dir}/lua/control.sock\""))
            .unwrap_or_default(),
        vars: format!(
            ", worker_processes = {}, worker_connections = {}, worker_shutdown_timeout = \"5s\", temp_dir = \"{dir}\"",
            crate::nginx::TEST_WORKERS,
            crate::nginx::TEST_WORKER_CONNECTIONS
        ),
        files: match o.nginx_runtime {
            Some(_) => RUNTIME_FILES
                .replace("{kind}", "nginx")
                .replace("{dir}", &dir.to_string()),
            None => String::new(),
        },
        listen: paths.frontend,
    };
    write_setup_config(&paths.dir, nginx_bin, part, o, blue, green)
}
