//! Validation: raw structs -> [`Config`], every problem collected with where it is. This file
//! holds the validator, its shared checks (paths, durations, template values) and the walk
//! over the sections; each section's checks live in a file of their own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::RawConfig;
use super::*;

/// Turns raw structs into validated ones, collecting every problem instead of stopping at
/// the first; relative paths are taken from `base` (the config file's directory).
pub(super) struct Validator<'a> {
    pub(super) base: &'a Path,
    pub(super) problems: Vec<String>,
}

impl Validator<'_> {
    fn problem(&mut self, p: String) {
        self.problems.push(p);
    }

    fn abs(&mut self, what: &str, p: PathBuf) -> PathBuf {
        if p.as_os_str().is_empty() {
            self.problem(format!("{what}: empty path"));
        }
        if let Some(c) = p.to_string_lossy().chars().find(|c| c.is_control()) {
            self.problem(format!(
                "{what}: {:?} contains the control character {c:?}",
                p.display().to_string()
            ));
        }
        if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        }
    }

    fn duration(&mut self, what: &str, ms: Option<u64>, default: u64) -> Duration {
        let ms = ms.unwrap_or(default);
        if ms == 0 || ms > 3_600_000 {
            self.problem(format!("{what}: {ms} ms is outside 1..=3600000"));
        }
        Duration::from_millis(ms)
    }

    pub(super) fn config(&mut self, path: &Path, raw: RawConfig) -> Config {
        let agent = self.agent(raw.agent);
        let mut proxy = self.proxy(raw.proxy);
        let templates = Templates {
            dir: raw
                .templates
                .dir
                .map(|d| self.abs("templates.dir", d))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_TEMPLATE_DIR)),
            override_dir: raw
                .templates
                .override_dir
                .map(|d| self.abs("templates.override_dir", d)),
            vars: raw.templates.vars,
        };
        self.vars(
            "templates.vars",
            &toml::Value::Table(templates.vars.clone()),
        );
        let routes_may_be_empty = raw.services.iter().all(|s| s.allow_empty_routes);
        let files = self.files(raw.files, &proxy, routes_may_be_empty);
        self.lua_maps(&mut proxy, &files);
        let services = self.services(raw.services, proxy.kind);
        let (cluster, fleet) = match raw.cluster {
            None => (None, None),
            Some(c) if c.store == super::raw::ClusterStore::Etcd => (None, Some(self.fleet(c))),
            Some(c) => (Some(self.cluster(c)), None),
        };
        if fleet.is_some() && agent.desired_state.is_some() {
            self.problem(
                "agent.desired_state: a host of a fleet (store = \"etcd\") takes its desired \
                 state from etcd; a desired-state file would make it diverge"
                    .into(),
            );
        }
        let remote = raw.remote.map(|r| self.remote(r, cluster.as_ref()));
        let mut agent = agent;
        agent.access.remote = crate::access::Remote {
            clients: remote
                .iter()
                .flat_map(|r| r.clients.iter().cloned())
                .collect(),
            peers: cluster
                .iter()
                .flat_map(|c| c.peers.iter().map(|p| p.name.clone()))
                .collect(),
        };
        let metrics = super::metrics::validate(raw.metrics, &mut self.problems);
        let hooks = super::hooks::validate(raw.hooks, self.base, &mut self.problems);
        Config {
            source: path.to_owned(),
            agent,
            proxy,
            templates,
            files,
            services,
            cluster,
            fleet,
            remote,
            metrics,
            hooks,
        }
    }

    /// Template values are pasted into line-oriented files: a control character (a newline
    /// above all) would start a line of its own in the proxy config.
    fn vars(&mut self, at: &str, v: &toml::Value) {
        match v {
            toml::Value::String(s) => {
                if let Some(c) = s.chars().find(|c| c.is_control() && *c != '\t') {
                    self.problem(format!(
                        "{at}: contains the control character {c:?}; template values are single-line"
                    ));
                }
            }
            toml::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    self.vars(&format!("{at}[{i}]"), v);
                }
            }
            toml::Value::Table(t) => {
                for (k, v) in t {
                    self.vars(&format!("{at}.{k}"), v);
                }
            }
            _ => {}
        }
    }
}

mod agent;
mod cluster;
mod files;
mod fleet;
mod remote;
mod services;
