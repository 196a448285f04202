//! `cutover check`: validates a config without side effects. It renders every template
//! into a temporary staging directory (from the saved state when there is one, else from
//! each service's initial colour), checks every rendered map, and runs the proxy's own
//! checker on the staged main config (or, when cutover does not render the main config,
//! on the live one). Nothing live is written and the running proxy is not contacted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::config::{Config, FileKind, ProxyKind, ValueCheck};
use crate::mapfile;
use crate::proxy::haproxy::Haproxy;
use crate::proxy::Proxy;
use crate::render::Renderer;
use crate::state::State;
use crate::store::Store;

/// What a passing check saw.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckOutcome {
    pub services: usize,
    pub routes: usize,
    /// Rendered files: name and size in bytes.
    pub files: BTreeMap<String, usize>,
    /// The config the proxy checker ran on.
    pub checked: PathBuf,
    pub warnings: Vec<String>,
}

/// Every problem found, each with where it is.
pub async fn run(config: &Config) -> Result<CheckOutcome, Vec<String>> {
    let mut problems = Vec::new();
    let renderer = Renderer::new(config).map_err(|e| vec![e.to_string()])?;
    let state = saved_state(config).unwrap_or_default();
    let (state, _) = state.align_services(&config.initial_colours());
    let staging = tempfile::Builder::new()
        .prefix("cutover-check-")
        .tempdir()
        .map_err(|e| vec![format!("cannot create a staging directory: {e}")])?;
    let paths: BTreeMap<String, PathBuf> = config
        .files
        .iter()
        .map(|f| (f.name.clone(), staging.path().join(&f.name)))
        .collect();
    let backends: BTreeSet<&str> = config
        .services
        .values()
        .flat_map(|s| s.colours.values().map(|c| c.backend.as_str()))
        .collect();
    let mut files = BTreeMap::new();
    for f in &config.files {
        let text = match renderer.render(f, &state, &paths) {
            Ok(t) => t,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        if f.kind == FileKind::Map {
            match mapfile::parse(&text)
                .map_err(|e| e.to_string())
                .and_then(|entries| {
                    f.check_entries(&entries)?;
                    Ok(entries)
                }) {
                Err(e) => problems.push(format!("file {} (template {}): {e}", f.name, f.template)),
                Ok(entries) => {
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
        if let Err(e) = std::fs::write(&paths[&f.name], &text) {
            problems.push(format!("staging {}: {e}", f.name));
        }
        files.insert(f.name.clone(), text.len());
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let checked = config
        .files
        .iter()
        .find(|f| f.path == config.proxy.config)
        .map_or_else(|| config.proxy.config.clone(), |f| paths[&f.name].clone());
    let report = match config.proxy.kind {
        ProxyKind::Haproxy => Haproxy::new(&config.proxy).check(&checked).await,
    };
    match report {
        Ok(r) => Ok(CheckOutcome {
            services: config.services.len(),
            routes: config.services.values().map(|s| s.routes.len()).sum(),
            files,
            checked,
            warnings: r.warnings,
        }),
        Err(e) => Err(vec![format!(
            "{} check of {}: {e}",
            config.proxy.kind,
            checked.display()
        )]),
    }
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
