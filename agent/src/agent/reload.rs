//! A config reload (SIGHUP, or the `reload_config` request that `systemctl reload` sends):
//! the config read again and put in force, or refused with the old one kept. A refusal is
//! logged, journaled, counted (`cutover_config_reloads_total{result="refused"}`) and shown in
//! `status` (`config_error`: why, when, which file and line) until a config is put in force.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use crate::config::Config;
use crate::control::GroupLookup;
use crate::engine::{ApplyError, Engine};
use crate::protocol::ConfigRefusal;
use crate::proxy::Proxy;
use crate::render::RenderError;
use crate::store::{now_ms, Outcome};

/// The status line for the service manager after a reload.
pub fn notice(verdict: &Result<String, ConfigRefusal>) -> &'static str {
    match verdict {
        Ok(_) => "serving; config reloaded",
        Err(_) => "serving; new config refused, the old one is in force",
    }
}

/// Reads the config again; the summary of what changed, or why it was refused.
pub async fn reload_config<P: Proxy>(
    engine: &mut Engine<P>,
    path: &Path,
    groups: &GroupLookup,
) -> Result<String, ConfigRefusal> {
    tracing::info!(config = %path.display(), "reading the config again");
    let verdict = replace_config(engine, path, groups).await;
    engine.metrics().config_reload(verdict.is_ok());
    match &verdict {
        Ok(_) => engine.set_config_error(None),
        Err(refusal) => engine.set_config_error(Some(refusal.clone())),
    }
    verdict
}

/// Why a config was refused, before or by the engine.
enum Refused {
    /// Before the engine saw it (unreadable, invalid, a change that needs a restart): not
    /// journaled yet.
    Early(ConfigRefusal),
    /// By the engine, which journaled it.
    Engine(ConfigRefusal),
}

/// Puts the config at `path` in force, or says why it is refused.
async fn replace_config<P: Proxy>(
    engine: &mut Engine<P>,
    path: &Path,
    groups: &GroupLookup,
) -> Result<String, ConfigRefusal> {
    match try_replace(engine, path, groups).await {
        Ok(summary) => Ok(summary),
        Err(Refused::Engine(r)) => {
            tracing::error!(
                "new config refused, the old one stays in force: {}",
                r.message
            );
            Err(r)
        }
        Err(Refused::Early(r)) => {
            tracing::error!(
                "new config refused, the old one stays in force: {}",
                r.message
            );
            engine.journal_agent(
                "config",
                Outcome::Error,
                format!(
                    "new config refused, the old one stays in force: {}",
                    r.message
                ),
                json!({ "step": "config", "file": r.file, "line": r.line }),
            );
            Err(r)
        }
    }
}

async fn try_replace<P: Proxy>(
    engine: &mut Engine<P>,
    path: &Path,
    groups: &GroupLookup,
) -> Result<String, Refused> {
    let early = |message: String, line: Option<u64>| {
        Refused::Early(ConfigRefusal {
            message,
            time_ms: now_ms(),
            file: path.display().to_string(),
            line,
        })
    };
    let mut config = Config::load(path).map_err(|e| early(e.to_string(), e.line()))?;
    let old = engine.config();
    if config.agent.socket != old.agent.socket
        || config.agent.state_dir != old.agent.state_dir
        || config.proxy.kind != old.proxy.kind
        || config.metrics != old.metrics
        || config.fleet != old.fleet
        || config.remote.as_ref().map(|r| r.listener()) != old.remote.as_ref().map(|r| r.listener())
    {
        return Err(early(
            "agent.socket, agent.state_dir, proxy.kind, [metrics], the fleet store ([cluster] \
             with store = \"etcd\") and [remote] (but for its clients) change only with a \
             restart"
                .into(),
            None,
        ));
    }
    // The Nginx mode was decided at start, with the proxy built for it.
    if let (Some(new), Some(old)) = (config.proxy.nginx.as_mut(), old.proxy.nginx.as_ref()) {
        if new.runtime != old.runtime || new.lua_control != old.lua_control {
            return Err(early(
                "proxy.runtime and proxy.lua_control change only with a restart".into(),
                None,
            ));
        }
        new.lua = old.lua;
    }
    let (mode, group) = (config.agent.socket_mode, config.agent.socket_group.clone());
    match engine.replace_config(Arc::new(config)).await {
        Ok(a) => {
            let summary = a.summary();
            tracing::info!("new config in force: {summary}");
            groups.set(engine.config().agent.access.needs_groups());
            let socket = &engine.config().agent.socket;
            if let Err(e) = crate::fsio::set_mode_group(socket, mode, group.as_deref()) {
                tracing::error!(socket = %socket.display(), "cannot apply socket_mode/socket_group: {e}");
            }
            Ok(summary)
        }
        Err(e) => {
            let (file, line) = locate(&e, path);
            Err(Refused::Engine(ConfigRefusal {
                message: e.to_string(),
                time_ms: now_ms(),
                file,
                line,
            }))
        }
    }
}

/// The file (and line, when its error says) an engine refusal points at: the template that
/// failed to load or render, else the config file.
fn locate(e: &ApplyError, config: &Path) -> (String, Option<u64>) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<RenderError>() {
            return (r.template(), r.line());
        }
        source = s.source();
    }
    (config.display().to_string(), None)
}
