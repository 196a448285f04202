//! Validation of the `[agent]` and `[proxy]` sections: sockets, modes, timeouts, the proxy's
//! kind and its commands.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use super::Validator;
use crate::config::raw::{IdOrName, RawAgent, RawProxy};
use crate::config::*;
use crate::mapfile::check_name;

/// What the entries of an access list name.
#[derive(Clone, Copy)]
enum Principal {
    User,
    Group,
}

impl Validator<'_> {
    /// The numbers of an access list whose entries are numbers or names; a name the user
    /// database does not know is a problem naming the list and the name.
    fn ids(&mut self, list: &str, what: Principal, entries: BTreeSet<IdOrName>) -> BTreeSet<u32> {
        use nix::unistd::{Group, User};
        let mut ids = BTreeSet::new();
        for entry in entries {
            let name = match entry {
                IdOrName::Id(id) => {
                    ids.insert(id);
                    continue;
                }
                IdOrName::Name(name) => name,
            };
            let found = match what {
                Principal::User => User::from_name(&name).map(|u| u.map(|u| u.uid.as_raw())),
                Principal::Group => Group::from_name(&name).map(|g| g.map(|g| g.gid.as_raw())),
            };
            let kind = match what {
                Principal::User => "user",
                Principal::Group => "group",
            };
            match found {
                Ok(Some(id)) => {
                    ids.insert(id);
                }
                Ok(None) => self.problem(format!(
                    "{list}: no {kind} named {name:?} in the user database"
                )),
                Err(e) => self.problem(format!("{list}: cannot look up {kind} {name:?}: {e}")),
            }
        }
        ids
    }

    pub(super) fn agent(&mut self, raw: RawAgent) -> Agent {
        let socket_mode = raw.socket_mode.unwrap_or(DEFAULT_SOCKET_MODE);
        if socket_mode & !0o777 != 0 || socket_mode & 0o007 != 0 {
            self.problem(format!(
                "agent.socket_mode: {socket_mode:#o} must not give access to others (at most 0o770)"
            ));
        }
        let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if !(1..=4096).contains(&max_connections) {
            self.problem(format!(
                "agent.max_connections: {max_connections} is outside 1..=4096"
            ));
        }
        let max_connections_per_uid = raw
            .max_connections_per_uid
            .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_UID.min(max_connections));
        if !(1..=max_connections).contains(&max_connections_per_uid) {
            self.problem(format!(
                "agent.max_connections_per_uid: {max_connections_per_uid} is outside 1..={max_connections} (agent.max_connections)"
            ));
        }
        let reserved_connections = raw
            .reserved_connections
            .unwrap_or(DEFAULT_RESERVED_CONNECTIONS.min(max_connections / 2));
        if reserved_connections >= max_connections {
            self.problem(format!(
                "agent.reserved_connections: {reserved_connections} must be below agent.max_connections ({max_connections})"
            ));
        }
        let journal = JournalLimits {
            max_bytes: raw.journal_max_bytes.unwrap_or(DEFAULT_JOURNAL_MAX_BYTES),
            files: raw.journal_files.unwrap_or(DEFAULT_JOURNAL_FILES),
            max_age: Duration::from_secs(
                raw.journal_max_age_days
                    .unwrap_or(DEFAULT_JOURNAL_MAX_AGE_DAYS)
                    .saturating_mul(86_400),
            ),
        };
        if !(64 * 1024..=1 << 30).contains(&journal.max_bytes) {
            self.problem(format!(
                "agent.journal_max_bytes: {} is outside 65536..=1073741824 bytes",
                journal.max_bytes
            ));
        }
        if !(1..=100).contains(&journal.files) {
            self.problem(format!(
                "agent.journal_files: {} is outside 1..=100",
                journal.files
            ));
        }
        if !(1..=36_500).contains(&raw.journal_max_age_days.unwrap_or(1)) {
            self.problem("agent.journal_max_age_days: must be within 1..=36500".to_owned());
        }
        let max_line = raw.max_line.unwrap_or(DEFAULT_MAX_LINE);
        if !(1024..=16 * 1024 * 1024).contains(&max_line) {
            self.problem(format!(
                "agent.max_line: {max_line} is outside 1024..=16777216 bytes"
            ));
        }
        let access = crate::access::Policy {
            allow_uids: self.ids("agent.allow_uids", Principal::User, raw.allow_uids),
            allow_gids: self.ids("agent.allow_gids", Principal::Group, raw.allow_gids),
            read_uids: self.ids("agent.read_uids", Principal::User, raw.read_uids),
            read_gids: self.ids("agent.read_gids", Principal::Group, raw.read_gids),
            // Filled once `[cluster]` and `[remote]` are validated.
            remote: crate::access::Remote::default(),
        };
        for p in access.problems() {
            self.problem(p);
        }
        if let Some(group) = &raw.socket_group {
            if let Err(e) = check_name(group) {
                self.problem(format!("agent.socket_group: {e}"));
            }
        }
        Agent {
            access,
            socket: raw
                .socket
                .map(|s| self.abs("agent.socket", s))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
            socket_mode,
            socket_group: raw.socket_group,
            state_dir: raw
                .state_dir
                .map(|s| self.abs("agent.state_dir", s))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            max_connections,
            max_connections_per_uid,
            reserved_connections,
            journal,
            max_line,
            read_timeout: self.duration(
                "agent.read_timeout_ms",
                raw.read_timeout_ms,
                DEFAULT_READ_TIMEOUT_MS,
            ),
            reconcile_interval: self.duration(
                "agent.reconcile_interval_ms",
                raw.reconcile_interval_ms,
                DEFAULT_RECONCILE_INTERVAL_MS,
            ),
            desired_state: raw
                .desired_state
                .map(|p| self.abs("agent.desired_state", p)),
            desired_debounce: match raw.desired_debounce_ms {
                Some(0) => Duration::ZERO,
                ms => self.duration("agent.desired_debounce_ms", ms, DEFAULT_DESIRED_DEBOUNCE_MS),
            },
        }
    }

    pub(super) fn proxy(&mut self, raw: RawProxy) -> Proxy {
        let admin_socket = raw.admin_socket.map(|p| self.abs("proxy.admin_socket", p));
        let master_socket = raw
            .master_socket
            .map(|p| self.abs("proxy.master_socket", p));
        let (binary, config, map_dir, gap) = match raw.kind {
            ProxyKind::Haproxy => (
                DEFAULT_HAPROXY_BINARY,
                DEFAULT_HAPROXY_CONFIG,
                DEFAULT_MAP_DIR,
                DEFAULT_HAPROXY_MIN_RELOAD_GAP_MS,
            ),
            ProxyKind::Nginx => (
                DEFAULT_NGINX_BINARY,
                DEFAULT_NGINX_CONFIG,
                DEFAULT_NGINX_MAP_DIR,
                DEFAULT_NGINX_MIN_RELOAD_GAP_MS,
            ),
        };
        let nginx = match raw.kind {
            ProxyKind::Haproxy => {
                if admin_socket.is_none() {
                    self.problem(
                        "proxy.admin_socket: required for haproxy (a `stats socket ... level admin`)"
                            .into(),
                    );
                }
                if master_socket.is_none() {
                    self.problem(
                        "proxy.master_socket: required for haproxy (the `-S` master CLI socket)"
                            .into(),
                    );
                }
                for (key, set) in [
                    ("pid_file", raw.pid_file.is_some()),
                    ("error_log", raw.error_log.is_some()),
                    ("status", raw.status.is_some()),
                    ("access_log_socket", raw.access_log_socket.is_some()),
                    ("access_log_group", raw.access_log_group.is_some()),
                    ("prefix", raw.prefix.is_some()),
                    ("runtime", raw.runtime.is_some()),
                    ("lua_control", raw.lua_control.is_some()),
                    ("module_dir", raw.module_dir.is_some()),
                ] {
                    if set {
                        self.problem(format!("proxy.{key}: only for kind = \"nginx\""));
                    }
                }
                None
            }
            ProxyKind::Nginx => {
                for (key, set) in [
                    ("admin_socket", admin_socket.is_some()),
                    ("master_socket", master_socket.is_some()),
                ] {
                    if set {
                        self.problem(format!("proxy.{key}: only for kind = \"haproxy\""));
                    }
                }
                let status_text = raw.status.as_deref().unwrap_or(DEFAULT_NGINX_STATUS);
                let status = StatusAddress::parse(status_text).unwrap_or_else(|e| {
                    self.problem(format!("proxy.status: {e}"));
                    StatusAddress::Unix(PathBuf::from("/"))
                });
                Some(NginxSettings {
                    pid_file: raw
                        .pid_file
                        .map(|p| self.abs("proxy.pid_file", p))
                        .unwrap_or_else(|| PathBuf::from(DEFAULT_NGINX_PID_FILE)),
                    error_log: raw
                        .error_log
                        .map(|p| self.abs("proxy.error_log", p))
                        .unwrap_or_else(|| PathBuf::from(DEFAULT_NGINX_ERROR_LOG)),
                    status,
                    access_log_socket: raw
                        .access_log_socket
                        .map(|p| self.abs("proxy.access_log_socket", p))
                        .unwrap_or_else(|| PathBuf::from(DEFAULT_NGINX_ACCESS_LOG_SOCKET)),
                    access_log_group: raw.access_log_group.inspect(|g| {
                        if check_name(g).is_err() {
                            self.problem(format!(
                                "proxy.access_log_group: {g:?} is not a group name"
                            ));
                        }
                    }),
                    prefix: raw.prefix.map(|p| self.abs("proxy.prefix", p)),
                    runtime: raw.runtime.unwrap_or_default(),
                    lua: raw.runtime == Some(NginxRuntime::Lua),
                    lua_control: raw
                        .lua_control
                        .map(|p| self.abs("proxy.lua_control", p))
                        .unwrap_or_else(|| PathBuf::from(DEFAULT_NGINX_LUA_CONTROL)),
                    module_dir: raw
                        .module_dir
                        .map(|p| self.abs("proxy.module_dir", p))
                        .unwrap_or_else(|| PathBuf::from(DEFAULT_NGINX_MODULE_DIR)),
                    lua_maps: Default::default(),
                })
            }
        };
        let min_reload_gap_ms = raw.min_reload_gap_ms.unwrap_or(gap);
        if min_reload_gap_ms > MAX_MIN_RELOAD_GAP_MS {
            self.problem(format!(
                "proxy.min_reload_gap_ms: {min_reload_gap_ms} ms is more than {MAX_MIN_RELOAD_GAP_MS}"
            ));
        }
        Proxy {
            kind: raw.kind,
            binary: raw.binary.unwrap_or_else(|| PathBuf::from(binary)),
            config: raw
                .config
                .map(|p| self.abs("proxy.config", p))
                .unwrap_or_else(|| PathBuf::from(config)),
            admin_socket,
            master_socket,
            nginx,
            map_dir: raw
                .map_dir
                .map(|p| self.abs("proxy.map_dir", p))
                .unwrap_or_else(|| PathBuf::from(map_dir)),
            reload_timeout: self.duration(
                "proxy.reload_timeout_ms",
                raw.reload_timeout_ms,
                DEFAULT_RELOAD_TIMEOUT_MS,
            ),
            command_timeout: self.duration(
                "proxy.command_timeout_ms",
                raw.command_timeout_ms,
                DEFAULT_COMMAND_TIMEOUT_MS,
            ),
            min_reload_gap: Duration::from_millis(min_reload_gap_ms),
        }
    }
}
