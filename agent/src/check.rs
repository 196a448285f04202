//! `cutover check`: validates a config without side effects. It renders every template
//! into a temporary staging directory (from the saved state when there is one, else from
//! each service's initial colour), checks every rendered map, and runs the proxy's own
//! checker on the staged main config (or, when cutover does not render the main config,
//! on the live one). Nothing live is written and the running proxy is not contacted: for
//! HAProxy, the version warnings (3.2.0 crashing on an oversized CLI payload) come from
//! the installed binary (`haproxy -v`), which the next reload runs. With
//! a fleet store, it reads the site's prefix once, to prove etcd answers and accepts the
//! credentials. The trust roots of every `https` hook are loaded.
//!
//! The staged main config sits at the top of the staging directory under its own name,
//! beside a symbolic link to every other entry of the live config's directory, so that
//! relative includes (Nginx resolves them against the main config's directory) find what
//! they find live. The other managed files go into `.cutover/` below it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::config::{Config, ValueCheck};
use crate::protocol::FileKind;
use crate::proxy::{AnyProxy, CheckReport, Proxy};
use crate::render::Renderer;
use crate::state::State;
use crate::store::Store;

/// What a passing check saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckOutcome {
    /// Services the config defines.
    pub services: usize,
    /// Route keys over all services (inline and from route files).
    pub routes: usize,
    /// Rendered files: name and size in bytes.
    pub files: BTreeMap<String, usize>,
    /// The config the proxy checker ran on.
    pub checked: PathBuf,
    /// Warnings the proxy's checker printed; the check passed regardless.
    pub warnings: Vec<String>,
    /// Nginx: which mode is in use (reload or the Lua runtime) and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nginx_runtime: Option<crate::proxy::nginx::lua::detect::Detection>,
}

/// Every problem found, each with where it is.
pub async fn run(config: &mut Config) -> Result<CheckOutcome, Vec<String>> {
    let mut problems = Vec::new();
    // Which Nginx mode is in use decides what the main config renders; the probe runs a
    // throw-away Nginx on a temporary prefix, never the live one.
    let nginx_runtime = crate::proxy::nginx::lua::detect::resolve(config, false)
        .await
        .map_err(|e| vec![e])?;
    let config = &*config;
    let renderer = Renderer::new(config).map_err(|e| vec![e.to_string()])?;
    let state = saved_state(config).unwrap_or_default();
    let (state, _) = state.align_services(&config.initial_colours());
    let staging = tempfile::Builder::new()
        .prefix("cutover-check-")
        .tempdir()
        .map_err(|e| vec![format!("cannot create a staging directory: {e}")])?;
    let paths = staging_paths(config, staging.path()).map_err(|e| vec![e.to_string()])?;
    let backends: BTreeSet<&str> = config
        .services
        .values()
        .flat_map(|s| s.colours.values().map(|c| c.backend.as_str()))
        .collect();
    let mut files = BTreeMap::new();
    // The maps whose values name backends, checked against the staged config below.
    let mut backend_maps = Vec::new();
    for f in &config.files {
        let text = match renderer.render(f, &state, &paths) {
            Ok(t) => t,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        if f.kind == FileKind::Map {
            match config
                .proxy
                .kind
                .map_syntax()
                .parse(&text)
                .map_err(|e| e.to_string())
                .and_then(|entries| {
                    f.check_entries(&entries).map_err(|e| e.to_string())?;
                    Ok(entries)
                }) {
                Err(e) => problems.push(format!("file {} (template {}): {e}", f.name, f.template)),
                Ok(entries) => {
                    if f.values == ValueCheck::Backends {
                        backend_maps.push((f.name.clone(), entries.clone()));
                    }
                    for (k, v) in &entries {
                        let bad = match f.values {
                            ValueCheck::Any => false,
                            ValueCheck::Services => !config.services.contains_key(v),
                            ValueCheck::Backends => !backends.contains(v.as_str()),
                            ValueCheck::Percent => !crate::engine::is_percent(v),
                        };
                        if bad {
                            problems.push(format!(
                                "file {}: key {k:?} names {v:?}, which is not a configured {}",
                                f.name,
                                if f.values == ValueCheck::Services {
                                    "service"
                                } else {
                                    "backend"
                                }
                            ));
                        }
                    }
                }
            }
        }
        if f.path == config.proxy.config && config.proxy.nginx.as_ref().is_some_and(|n| n.lua) {
            for p in crate::proxy::nginx::lua::detect::lint(&text) {
                problems.push(format!("file {} (template {}): {p}", f.name, f.template));
            }
        }
        if let Err(e) = std::fs::write(&paths[&f.name], &text) {
            problems.push(format!("staging {}: {e}", f.name));
        }
        files.insert(f.name.clone(), text.len());
    }
    if let Some(problem) = fleet_store(config).await {
        problems.push(problem);
    }
    problems.extend(crate::hooks::trust_problems(&config.hooks));
    if !problems.is_empty() {
        return Err(problems);
    }
    let checked = config
        .files
        .iter()
        .find(|f| f.path == config.proxy.config)
        .map_or_else(|| config.proxy.config.clone(), |f| paths[&f.name].clone());
    let report = AnyProxy::new(&config.proxy).check(&checked).await;
    let version_warnings = match config.proxy.kind {
        crate::config::ProxyKind::Haproxy => {
            crate::proxy::haproxy::binary_warnings(&config.proxy.binary).await
        }
        crate::config::ProxyKind::Nginx => Vec::new(),
    };
    // Every backend a map names must be defined by the config the checker just passed
    // (what a reload of it would serve), not merely configured in cutover.toml.
    if let Ok(CheckReport {
        backends: Some(defined),
        ..
    }) = &report
    {
        let whose = format!(
            "the checked {} config {}",
            config.proxy.kind,
            checked.display()
        );
        let problems: Vec<String> = backend_maps
            .iter()
            .filter_map(|(name, entries)| {
                crate::engine::check_backends(name, entries, defined, &whose)
                    .err()
                    .map(|e| e.message())
            })
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
    }
    match report {
        Ok(mut r) => Ok(CheckOutcome {
            services: config.services.len(),
            routes: config.services.values().map(|s| s.routes.len()).sum(),
            files,
            checked,
            warnings: {
                r.warnings.extend(version_warnings);
                r.warnings
            },
            nginx_runtime,
        }),
        Err(e) => Err(vec![format!(
            "{} check of {}: {e}",
            config.proxy.kind,
            checked.display()
        )]),
    }
}

/// With `[cluster] store = "etcd"`: whether etcd answers a read of the site's prefix with
/// these endpoints and credentials; the one problem, if not.
async fn fleet_store(config: &Config) -> Option<String> {
    let fleet = config.fleet.as_ref()?;
    #[cfg(feature = "etcd")]
    {
        crate::fleet::etcd::probe(&fleet.etcd)
            .await
            .err()
            .map(|e| format!("cluster.etcd: {e}"))
    }
    #[cfg(not(feature = "etcd"))]
    {
        let _ = fleet;
        Some("cluster: store = \"etcd\" needs a cutover built with the etcd feature".into())
    }
}

/// Why the staging directory could not be laid out.
#[derive(Debug, thiserror::Error)]
enum StagingError {
    /// Creating the directory of the managed files failed.
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Linking an entry of the live config's directory failed.
    #[error("cannot link {}: {source}", path.display())]
    Link {
        /// The link that was to be made.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where each managed file is staged in `staging`, after linking the other entries of the
/// live config's directory there.
fn staging_paths(
    config: &Config,
    staging: &Path,
) -> Result<BTreeMap<String, PathBuf>, StagingError> {
    let main_name = config.proxy.config.file_name().unwrap_or_default();
    let files = staging.join(".cutover");
    std::fs::create_dir(&files).map_err(|source| StagingError::CreateDir {
        path: files.clone(),
        source,
    })?;
    if let Some(live_dir) = config.proxy.config.parent() {
        if let Ok(entries) = std::fs::read_dir(live_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if name == main_name || name == ".cutover" {
                    continue;
                }
                let link = staging.join(&name);
                std::os::unix::fs::symlink(entry.path(), &link)
                    .map_err(|source| StagingError::Link { path: link, source })?;
            }
        }
    }
    Ok(config
        .files
        .iter()
        .map(|f| {
            let path = if f.path == config.proxy.config {
                staging.join(main_name)
            } else {
                files.join(&f.name)
            };
            (f.name.clone(), path)
        })
        .collect())
}

/// The saved state, read without creating anything.
fn saved_state(config: &Config) -> Option<State> {
    if !config.agent.state_dir.is_dir() {
        return None;
    }
    Store::open(&config.agent.state_dir)
        .ok()?
        .load()
        .ok()?
        .state
}
