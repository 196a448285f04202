//! SIGHUP: the config read again and put in force, or refused with the old one kept.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::control::GroupLookup;
use crate::engine::Engine;
use crate::proxy::Proxy;

/// Reads the config again (SIGHUP); returns the status line for the service manager.
pub async fn reload_config<P: Proxy>(
    engine: &mut Engine<P>,
    path: &Path,
    groups: &GroupLookup,
) -> &'static str {
    tracing::info!(config = %path.display(), "SIGHUP: reading the config again");
    let accepted = replace_config(engine, path, groups).await;
    engine.metrics().config_reload(accepted);
    if accepted {
        "serving; config reloaded"
    } else {
        "serving; new config refused, the old one is in force"
    }
}

/// Puts the config at `path` in force; `false` when it is refused (unreadable, invalid,
/// changing what needs a restart, or refused by the engine).
async fn replace_config<P: Proxy>(
    engine: &mut Engine<P>,
    path: &Path,
    groups: &GroupLookup,
) -> bool {
    let mut config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("new config refused, the old one stays in force: {e}");
            return false;
        }
    };
    if config.agent.socket != engine.config().agent.socket
        || config.agent.state_dir != engine.config().agent.state_dir
        || config.proxy.kind != engine.config().proxy.kind
        || config.metrics != engine.config().metrics
        || config.fleet != engine.config().fleet
        || config.remote.as_ref().map(|r| r.listener())
            != engine.config().remote.as_ref().map(|r| r.listener())
    {
        tracing::error!(
            "new config refused: agent.socket, agent.state_dir, proxy.kind, [metrics], the \
             fleet store ([cluster] with store = \"etcd\") and [remote] (but for its clients) \
             change only with a restart"
        );
        return false;
    }
    // The Nginx mode was decided at start, with the proxy built for it.
    if let (Some(new), Some(old)) = (
        config.proxy.nginx.as_mut(),
        engine.config().proxy.nginx.as_ref(),
    ) {
        if new.runtime != old.runtime || new.lua_control != old.lua_control {
            tracing::error!(
                "new config refused: proxy.runtime and proxy.lua_control change only with a restart"
            );
            return false;
        }
        new.lua = old.lua;
    }
    let (mode, group) = (config.agent.socket_mode, config.agent.socket_group.clone());
    match engine.replace_config(Arc::new(config)).await {
        Ok(a) => {
            tracing::info!("new config in force: {}", a.summary());
            groups.set(engine.config().agent.access.needs_groups());
            let socket = &engine.config().agent.socket;
            if let Err(e) = crate::fsio::set_mode_group(socket, mode, group.as_deref()) {
                tracing::error!(socket = %socket.display(), "cannot apply socket_mode/socket_group: {e}");
            }
            true
        }
        Err(e) => {
            tracing::error!("new config refused, the old one stays in force: {e}");
            false
        }
    }
}
