//! Rendering: Tera templates + config + state -> the text of each managed file.
//!
//! Templates are loaded from the shipped directory, then from the override directory, where
//! a file with the same relative path replaces the shipped one. Only regular files are
//! loaded (symbolic links are skipped), so a template can reach nothing outside the two
//! directories: Tera itself has no function that reads files, and `include` / `extends`
//! only name templates loaded here. Rendering is strict: an undefined variable is an error.
//!
//! What a template sees (all names are stable; fields are only added):
//! - `services`: map of name -> `{ name, routes: [key...], preview_hosts: [host...],
//!   colours: { blue: { backend, servers: [{ name, address }] }, green: {...} },
//!   canary_sticky: none, or { cookie: NAME } / { header: NAME } / { source: true },
//!   watch: whether it has a post-switch watch }`, and, for
//!   files that use the state, also `live` (colour), `previous` (colour or none), `backend`
//!   (backend of the live colour), `idle` and `idle_backend` (the other colour),
//!   `canary_percent` (0 to 99; the share sent to the idle colour), `canary_seed` (the
//!   salt of the canary's sticky bucket, chosen per rollout; 0 without one) and `drained`
//!   (colours);
//! - `generation` (files that use the state only): the state generation being rendered;
//! - `files`: map of file name -> `{ path }`, the paths the rendered tree will have;
//! - `proxy`: `{ kind, config, map_dir, admin_socket, master_socket, pid_file, error_log,
//!   status, access_log_socket, prefix }` (the parts another kind does not have are none);
//! - `nginx` (kind `nginx` only): `{ map_hash_max_size, map_hash_bucket_size }`, sized for
//!   the configured routes and service names (see [`nginx_hash`]);
//! - `vars`: the free values of `[templates.vars]` in the agent config.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tera::Tera;

use crate::config::{Config, FileSpec};
use crate::state::State;
use context::ConfigContext;

mod context;
mod load;
pub mod nginx_hash;

pub use load::{MAX_TEMPLATES, MAX_TEMPLATE_BYTES};

/// Why templates could not be loaded or a file could not be rendered. Every variant names
/// the directory or template; Tera's errors are flattened into `reason` with their causes.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A template directory could not be walked, or holds too many or too large files
    /// ([`MAX_TEMPLATES`], [`MAX_TEMPLATE_BYTES`]).
    #[error("cannot load templates from {dir}: {reason}")]
    Load {
        /// The template directory (shipped or override).
        dir: PathBuf,
        /// What went wrong, with the entry concerned.
        reason: String,
    },
    /// A template could not be read, or Tera refused its syntax.
    #[error("template {template}: {reason}")]
    Parse {
        /// The template's file path, or `(templates)` when Tera refused the set as a whole.
        template: String,
        /// The read error, or Tera's error chain.
        reason: String,
    },
    /// A `[[files]]` entry names a template that neither directory has.
    #[error("template {template:?} for file {file:?} is in neither template directory")]
    Missing {
        /// The template path, relative to the template directories.
        template: String,
        /// The name of the `[[files]]` entry that asks for it.
        file: String,
    },
    /// Rendering failed, e.g. on an undefined variable.
    #[error("rendering {template} for file {file:?}: {reason}")]
    Render {
        /// The template path, relative to the template directories.
        template: String,
        /// The name of the `[[files]]` entry being rendered.
        file: String,
        /// Tera's error chain.
        reason: String,
    },
}

impl RenderError {
    /// Tera's message, for the variants that carry one.
    fn reason(&self) -> Option<&str> {
        match self {
            RenderError::Parse { reason, .. } | RenderError::Render { reason, .. } => Some(reason),
            RenderError::Load { .. } | RenderError::Missing { .. } => None,
        }
    }

    /// Where Tera's message points: `--> <template>:<line>:<column>`.
    fn pointer(&self) -> Option<(&str, u64)> {
        let reason = self.reason()?;
        let at = reason.find("--> ")? + 4;
        let rest = reason[at..].lines().next()?;
        let mut parts = rest.rsplitn(3, ':');
        let (_column, line, file) = (parts.next()?, parts.next()?, parts.next()?);
        Some((file, line.parse().ok()?))
    }

    /// The template (or template directory) at fault.
    pub fn template(&self) -> String {
        if let Some((file, _)) = self.pointer() {
            return file.to_owned();
        }
        match self {
            RenderError::Load { dir, .. } => dir.display().to_string(),
            RenderError::Parse { template, .. }
            | RenderError::Missing { template, .. }
            | RenderError::Render { template, .. } => template.clone(),
        }
    }

    /// The line of the template at fault, 1-based, when Tera's message gives it.
    pub fn line(&self) -> Option<u64> {
        self.pointer().map(|(_, line)| line)
    }
}

/// Loaded templates plus the parts of the context that depend on the config only.
pub struct Renderer {
    tera: Tera,
    config_context: ConfigContext,
}

impl Renderer {
    /// Loads the templates the config names, and builds the config part of the context.
    pub fn new(config: &Config) -> Result<Renderer, RenderError> {
        Ok(Renderer {
            tera: load::templates(config)?,
            config_context: ConfigContext::new(config),
        })
    }

    /// Renders `file`. `paths` gives the path of every managed file as the rendered tree
    /// will have it (live paths, or staged ones for validation). The state is visible only
    /// when the file uses it.
    pub fn render(
        &self,
        file: &FileSpec,
        state: &State,
        paths: &BTreeMap<String, PathBuf>,
    ) -> Result<String, RenderError> {
        let ctx = self.config_context.context(file, state, paths);
        self.tera
            .render(&file.template, &ctx)
            .map_err(|e| RenderError::Render {
                template: file.template.clone(),
                file: file.name.clone(),
                reason: error_chain(&e),
            })
    }
}

/// Live paths of every managed file, by name.
pub fn live_paths(config: &Config) -> BTreeMap<String, PathBuf> {
    config
        .files
        .iter()
        .map(|f| (f.name.clone(), f.path.clone()))
        .collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::protocol::{Colour, Request};
    use std::fs;
    use std::path::Path;

    /// A config using the shipped templates, including the full HAProxy config.
    /// The two services of the shipped-template configs: `api` (blue live, a sticky canary
    /// cookie, one server per colour) and `web` (green live, two routes, a preview host).
    const SERVICES: &str = r#"[[services]]
name = "api"
routes = ["api.example.com"]
canary_sticky = { cookie = "api_bucket" }
blue = { backend = "api_blue", servers = [{ name = "b1", address = "10.0.0.1:80" }] }
green = { backend = "api_green", servers = [{ name = "g1", address = "10.0.0.2:80" }] }
[[services]]
name = "web"
routes = ["example.com", "www.example.com"]
preview_hosts = ["preview.example.com"]
initial = "green"
blue = { backend = "web_blue" }
green = { backend = "web_green" }
"#;

    pub(crate) fn shipped(extra: &str) -> Config {
        let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/../templates");
        let text = format!(
            r#"
[proxy]
kind = "haproxy"
config = "/etc/haproxy/haproxy.cfg"
admin_socket = "/run/haproxy/admin.sock"
master_socket = "/run/haproxy/master.sock"
[templates]
dir = "{templates}"
vars = {{ listen = "127.0.0.1:8080" }}
[[files]]
name = "routes"
template = "haproxy/routes.map"
path = "/etc/haproxy/maps/routes.map"
kind = "map"
uses_state = false
values = "services"
[[files]]
name = "services"
template = "haproxy/services.map"
path = "/etc/haproxy/maps/services.map"
kind = "map"
values = "backends"
[[files]]
name = "idle"
template = "haproxy/idle.map"
path = "/etc/haproxy/maps/idle.map"
kind = "map"
values = "backends"
[[files]]
name = "canary"
template = "haproxy/canary.map"
path = "/etc/haproxy/maps/canary.map"
kind = "map"
values = "percent"
[[files]]
name = "preview"
template = "haproxy/preview.map"
path = "/etc/haproxy/maps/preview.map"
kind = "map"
uses_state = false
values = "services"
allow_empty = true
[[files]]
name = "haproxy"
template = "haproxy/haproxy.cfg"
path = "/etc/haproxy/haproxy.cfg"
kind = "config"
{SERVICES}{extra}
"#
        );
        Config::from_toml(Path::new("/etc/cutover/cutover.toml"), &text).unwrap()
    }

    fn render_all(config: &Config, state: &State) -> BTreeMap<String, String> {
        let r = Renderer::new(config).unwrap();
        let paths = live_paths(config);
        config
            .files
            .iter()
            .map(|f| (f.name.clone(), r.render(f, state, &paths).unwrap()))
            .collect()
    }

    fn snapshot(name: &str, text: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots")
            .join(name);
        if std::env::var_os("CUTOVER_BLESS").is_some() {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
        }
        let want = fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "missing snapshot {}; run with CUTOVER_BLESS=1",
                path.display()
            )
        });
        assert_eq!(
            text, want,
            "snapshot {name} differs; run with CUTOVER_BLESS=1 to accept"
        );
    }

    #[test]
    fn shipped_templates_render() {
        let config = shipped("");
        let state = State::new([("api", Colour::Blue), ("web", Colour::Green)]);
        let out = render_all(&config, &state);
        snapshot("routes.map", &out["routes"]);
        snapshot("services.map", &out["services"]);
        snapshot("haproxy.cfg", &out["haproxy"]);
        let (flipped, _) = state
            .apply(&Request::Switch {
                service: "api".into(),
                colour: Colour::Green,
            })
            .unwrap();
        let out2 = render_all(&config, &flipped);
        assert_eq!(out2["routes"], out["routes"]);
        assert_eq!(out2["haproxy"], out["haproxy"]);
        snapshot("services-flipped.map", &out2["services"]);
    }

    /// `[services.health]` puts HAProxy's checks on every server line of the service, and
    /// an HTTP check on its backends when it has a path; other services stay unchecked.
    #[test]
    fn health_checks_reach_the_haproxy_server_lines() {
        let config = shipped(
            r#"[[services]]
name = "checked"
routes = ["checked.example.com"]
blue = { backend = "checked_blue", servers = [{ name = "c1", address = "10.0.0.3:80" }] }
green = { backend = "checked_green", servers = [{ name = "c2", address = "10.0.0.4:80" }] }
drain_timeout_ms = 30000
[services.health]
http_path = "/healthz"
rise = 3
"#,
        );
        let state = State::new([
            ("api", Colour::Blue),
            ("web", Colour::Green),
            ("checked", Colour::Blue),
        ]);
        let cfg = &render_all(&config, &state)["haproxy"];
        let backend = |name: &str| -> String {
            let start = cfg.find(&format!("backend {name}\n")).unwrap();
            cfg[start..].split("\n\n").next().unwrap().to_owned()
        };
        assert_eq!(
            backend("checked_blue"),
            "backend checked_blue\n    option httpchk GET /healthz\n    http-check expect status 200\n    server c1 10.0.0.3:80 check inter 2000 rise 3 fall 3"
        );
        assert!(backend("checked_green")
            .ends_with("server c2 10.0.0.4:80 check inter 2000 rise 3 fall 3"));
        assert_eq!(
            backend("api_blue"),
            "backend api_blue\n    server b1 10.0.0.1:80"
        );
    }

    /// Nginx's passive checks on every server line of a service with `[services.health]`.
    #[test]
    fn passive_checks_reach_the_nginx_server_lines() {
        let mut config = shipped_nginx();
        config.services.get_mut("api").unwrap().health = Some(crate::config::HealthChecks::Nginx {
            max_fails: 2,
            fail_timeout_s: 5,
        });
        let state = State::new([("api", Colour::Blue), ("web", Colour::Green)]);
        let out = render_all(&config, &state);
        let conf = out
            .values()
            .find(|t| t.contains("upstream api_blue"))
            .unwrap();
        assert!(
            conf.contains("        server 10.0.0.1:80 max_fails=2 fail_timeout=5s;\n"),
            "{conf}"
        );
        assert!(
            conf.contains("        server 10.0.0.2:80 max_fails=2 fail_timeout=5s;\n"),
            "{conf}"
        );
    }

    /// A config of kind nginx using the shipped templates (the default files).
    fn shipped_nginx() -> Config {
        shipped_nginx_with("")
    }

    /// [`shipped_nginx`] with `proxy_extra` lines in `[proxy]`.
    fn shipped_nginx_with(proxy_extra: &str) -> Config {
        let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/../templates");
        let text = format!(
            r#"
[proxy]
kind = "nginx"
status = "127.0.0.1:8099"
{proxy_extra}
[templates]
dir = "{templates}"
vars = {{ listen = "127.0.0.1:8080", worker_processes = 2 }}
{SERVICES}[services.watch]
window_ms = 10000
"#
        );
        Config::from_toml(Path::new("/etc/cutover/cutover.toml"), &text).unwrap()
    }

    /// `state` with a 10% canary of api on green.
    fn canary_of_api(state: &State) -> State {
        state
            .apply(&Request::Canary {
                service: "api".into(),
                colour: Colour::Green,
                percent: 10,
            })
            .unwrap()
            .0
    }

    #[test]
    fn the_nginx_lua_runtime_renders_a_config_that_no_routing_change_touches() {
        let config = shipped_nginx_with("runtime = \"lua\"");
        let names: Vec<&str> = config.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["routes", "services", "idle", "canary", "nginx"]);
        let state = State::new([("api", Colour::Blue), ("web", Colour::Green)]);
        let out = render_all(&config, &state);
        snapshot("nginx/nginx-lua.conf", &out["nginx"]);
        snapshot("nginx/idle.map", &out["idle"]);
        snapshot("nginx/canary.map", &out["canary"]);
        assert!(crate::proxy::nginx::lua::detect::lint(&out["nginx"]).is_empty());
        // A canary and a drain change the maps, never the config.
        let mut next = canary_of_api(&state);
        next.services
            .get_mut("web")
            .unwrap()
            .drained
            .insert(Colour::Blue);
        let out2 = render_all(&config, &next);
        assert_eq!(out2["nginx"], out["nginx"]);
        assert_ne!(out2["canary"], out["canary"]);
    }

    #[test]
    fn shipped_nginx_templates_render() {
        let config = shipped_nginx();
        let state = State::new([("api", Colour::Blue), ("web", Colour::Green)]);
        let out = render_all(&config, &state);
        snapshot("nginx/routes.map", &out["routes"]);
        snapshot("nginx/services.map", &out["services"]);
        snapshot("nginx/nginx.conf", &out["nginx"]);
        let syntax = config.proxy.kind.map_syntax();
        assert_eq!(syntax.parse(&out["routes"]).unwrap().len(), 3);
        assert_eq!(syntax.parse(&out["services"]).unwrap()["web"], "web_green");
        let (flipped, _) = state
            .apply(&Request::Switch {
                service: "api".into(),
                colour: Colour::Green,
            })
            .unwrap();
        let out2 = render_all(&config, &flipped);
        assert_eq!(out2["routes"], out["routes"]);
        assert_eq!(syntax.parse(&out2["services"]).unwrap()["api"], "api_green");
        // A drained colour's servers are down.
        assert!(out2["nginx"].contains("server 10.0.0.1:80;"));
        let mut drained = flipped.clone();
        drained
            .services
            .get_mut("api")
            .unwrap()
            .drained
            .insert(Colour::Blue);
        let out3 = render_all(&config, &drained);
        assert!(
            out3["nginx"].contains("server 10.0.0.1:80 down;"),
            "{}",
            out3["nginx"]
        );
        assert!(out3["nginx"].contains("server 10.0.0.2:80;"));
        // The config carries the generation its status endpoint answers.
        assert!(out2["nginx"].contains(&format!("return 200 \"{}\\n\";", flipped.generation)));
        // A canary is a split_clients block keyed on the service's sticky cookie.
        let canary = canary_of_api(&state);
        let out4 = render_all(&config, &canary);
        snapshot("nginx/nginx-canary.conf", &out4["nginx"]);
        assert!(
            out4["nginx"].contains(&format!(
                "split_clients \"${{cutover_key_1}}{}\" $cutover_canary_1 {{\n        10% 1;",
                canary.services["api"].canary.unwrap().seed
            )),
            "{}",
            out4["nginx"]
        );
        assert!(!out["nginx"].contains("split_clients \""));
    }

    #[test]
    fn undefined_variable_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("haproxy")).unwrap();
        fs::write(dir.path().join("haproxy/services.map"), "{{ nope }}\n").unwrap();
        let mut config = shipped("");
        config.templates.override_dir = Some(dir.path().to_owned());
        let r = Renderer::new(&config).unwrap();
        let f = config.file("services").unwrap();
        let e = r
            .render(f, &State::default(), &live_paths(&config))
            .unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn config_only_file_cannot_see_state() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("haproxy")).unwrap();
        fs::write(dir.path().join("haproxy/routes.map"), "{{ generation }}\n").unwrap();
        let mut config = shipped("");
        config.templates.override_dir = Some(dir.path().to_owned());
        let r = Renderer::new(&config).unwrap();
        let f = config.file("routes").unwrap();
        assert!(r
            .render(f, &State::default(), &live_paths(&config))
            .is_err());
    }

    #[test]
    fn symlinks_are_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("haproxy")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("haproxy/passwd")).unwrap();
        let mut config = shipped("");
        config.templates.override_dir = Some(dir.path().to_owned());
        let r = Renderer::new(&config).unwrap();
        assert!(!r.tera.contains_template("haproxy/passwd"));
    }
}
