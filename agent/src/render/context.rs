//! Building the context a template sees: the parts that depend on the config only, built
//! once per config, and the parts of one render (the state, the files' paths).

use std::collections::BTreeMap;
use std::path::PathBuf;

use tera::{Context, Value};

use super::nginx_hash;
use crate::config::{Config, FileSpec};
use crate::protocol::Colour;
use crate::state::State;

/// The parts of a service's context that depend on the config only; the arrays are shared,
/// so a large route list is converted once per config, not once per render.
struct BaseService {
    routes: Value,
    preview_hosts: Value,
    sticky: Value,
    watch: bool,
    /// The proxy's checks of the servers (`service.health`), null without.
    health: Value,
    colours: Value,
    backends: BTreeMap<Colour, String>,
}

/// The parts of the context that depend on the config only.
pub(super) struct ConfigContext {
    /// Config-only parts of each service, by name.
    base_services: BTreeMap<String, BaseService>,
    proxy: Value,
    /// Nginx-only values (`None` for other kinds).
    nginx: Option<Value>,
    vars: Value,
}

impl ConfigContext {
    /// Builds the config part of the context.
    pub(super) fn new(config: &Config) -> ConfigContext {
        let base_services = config
            .services
            .iter()
            .map(|(name, s)| {
                let colours: BTreeMap<_, _> = s
                    .colours
                    .iter()
                    .map(|(c, spec)| (c.as_str(), spec))
                    .collect();
                let base = BaseService {
                    routes: Value::from_serializable(&s.routes),
                    preview_hosts: Value::from_serializable(&s.preview_hosts),
                    sticky: Value::from_serializable(&s.canary_sticky),
                    watch: s.watch.is_some(),
                    health: Value::from_serializable(&s.health),
                    colours: Value::from_serializable(&colours),
                    backends: s
                        .colours
                        .iter()
                        .map(|(c, spec)| (*c, spec.backend.clone()))
                        .collect(),
                };
                (name.clone(), base)
            })
            .collect();
        let nginx_settings = config.proxy.nginx.as_ref();
        let proxy = Value::from_serializable(&serde_json::json!({
            "kind": config.proxy.kind.to_string(),
            "config": config.proxy.config,
            "map_dir": config.proxy.map_dir,
            "admin_socket": config.proxy.admin_socket,
            "master_socket": config.proxy.master_socket,
            "pid_file": nginx_settings.map(|n| &n.pid_file),
            "error_log": nginx_settings.map(|n| &n.error_log),
            "status": nginx_settings.map(|n| n.status.to_string()),
            "access_log_socket": nginx_settings.map(|n| &n.access_log_socket),
            "prefix": nginx_settings.and_then(|n| n.prefix.as_ref()),
        }));
        let nginx = nginx_settings.map(|n| {
            let keys = config
                .services
                .values()
                .map(|s| s.routes.len())
                .sum::<usize>()
                .max(config.services.len());
            let longest = config
                .services
                .values()
                .flat_map(|s| s.routes.iter().map(String::len).chain([s.name.len()]))
                .max()
                .unwrap_or(1);
            let mut v = serde_json::to_value(nginx_hash::map_hash_sizes(keys, longest))
                .expect("serializes");
            v["runtime"] = serde_json::json!(if n.lua { "lua" } else { "reload" });
            // The small maps with the generation, and the routes, in a dict each.
            v["lua_dict_size"] =
                serde_json::json!(nginx_hash::lua_dict_size(3 * config.services.len() + 2));
            v["lua_routes_dict_size"] = serde_json::json!(nginx_hash::lua_dict_size(keys + 1));
            v["lua_control"] = serde_json::json!(n.lua_control);
            v["lua_modules"] = serde_json::json!([
                n.module_dir.join(crate::config::NDK_MODULE),
                n.module_dir.join(crate::config::LUA_MODULE),
            ]);
            Value::from_serializable(&v)
        });
        ConfigContext {
            base_services,
            proxy,
            nginx,
            vars: Value::from_serializable(&config.templates.vars),
        }
    }

    /// The context of one render of `file`: the state only when the file uses it.
    pub(super) fn context(
        &self,
        file: &FileSpec,
        state: &State,
        paths: &BTreeMap<String, PathBuf>,
    ) -> Context {
        let mut ctx = Context::new();
        let mut services: BTreeMap<String, Value> = BTreeMap::new();
        for (name, base) in &self.base_services {
            let mut v: BTreeMap<String, Value> = BTreeMap::new();
            v.insert("name".into(), Value::from(name.as_str()));
            v.insert("routes".into(), base.routes.clone());
            v.insert("colours".into(), base.colours.clone());
            v.insert("preview_hosts".into(), base.preview_hosts.clone());
            v.insert("canary_sticky".into(), base.sticky.clone());
            v.insert("watch".into(), Value::from(base.watch));
            v.insert("health".into(), base.health.clone());
            if file.uses_state {
                if let Some(s) = state.services.get(name) {
                    let backend =
                        |c: Colour| Value::from(base.backends.get(&c).map(String::as_str));
                    let drained: Vec<&str> = s.drained.iter().map(|c| c.as_str()).collect();
                    v.insert("live".into(), Value::from(s.live.as_str()));
                    v.insert(
                        "previous".into(),
                        Value::from(s.previous.map(|p| p.as_str())),
                    );
                    v.insert("backend".into(), backend(s.live));
                    v.insert("idle".into(), Value::from(s.live.other().as_str()));
                    v.insert("idle_backend".into(), backend(s.live.other()));
                    v.insert("canary_percent".into(), Value::from(s.canary_percent()));
                    let seed = s.canary.map_or(0, |c| c.seed);
                    v.insert("canary_seed".into(), Value::from(seed));
                    v.insert("drained".into(), Value::from_serializable(&drained));
                }
            }
            services.insert(name.clone(), Value::from(v));
        }
        ctx.insert_value("services", Value::from(services));
        let files: BTreeMap<_, _> = paths
            .iter()
            .map(|(n, p)| (n.as_str(), serde_json::json!({ "path": p })))
            .collect();
        ctx.insert("files", &files);
        ctx.insert_value("proxy", self.proxy.clone());
        if let Some(nginx) = &self.nginx {
            ctx.insert_value("nginx", nginx.clone());
        }
        ctx.insert_value("vars", self.vars.clone());
        if file.uses_state {
            ctx.insert("generation", &state.generation);
        }
        ctx
    }
}
