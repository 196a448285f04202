//! Validation: raw structs -> [`Config`], every problem collected with where it is, and the
//! default files of each proxy kind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{RawAgent, RawCluster, RawConfig, RawFile, RawProxy, RawService};
use super::*;
use crate::mapfile::{check_name, check_token, MapSyntax};

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
        let proxy = self.proxy(raw.proxy);
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
        let services = self.services(raw.services, proxy.kind.map_syntax());
        let cluster = raw.cluster.map(|c| self.cluster(c));
        let metrics = super::metrics::validate(raw.metrics, &mut self.problems);
        Config {
            source: path.to_owned(),
            agent,
            proxy,
            templates,
            files,
            services,
            cluster,
            metrics,
        }
    }

    fn agent(&mut self, raw: RawAgent) -> Agent {
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
        let max_line = raw.max_line.unwrap_or(DEFAULT_MAX_LINE);
        if !(1024..=16 * 1024 * 1024).contains(&max_line) {
            self.problem(format!(
                "agent.max_line: {max_line} is outside 1024..=16777216 bytes"
            ));
        }
        let access = crate::access::Policy {
            allow_uids: raw.allow_uids,
            allow_gids: raw.allow_gids,
            read_uids: raw.read_uids,
            read_gids: raw.read_gids,
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

    fn proxy(&mut self, raw: RawProxy) -> Proxy {
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

    /// The configured files, or the default ones of the proxy kind.
    fn files(
        &mut self,
        raw: Vec<RawFile>,
        proxy: &Proxy,
        routes_may_be_empty: bool,
    ) -> Vec<FileSpec> {
        if raw.is_empty() {
            return default_files(proxy, routes_may_be_empty);
        }
        if proxy.kind == ProxyKind::Nginx
            && !raw
                .iter()
                .any(|f| f.kind == FileKind::Config && self.base.join(&f.path) == proxy.config)
        {
            self.problem(format!(
                "files: nginx reloads for every change, so its main config {} must be rendered by \
                 cutover (a [[files]] entry with kind = \"config\" and that path) for each change \
                 to be validated as a whole",
                proxy.config.display()
            ));
        }
        let mut names = BTreeSet::new();
        let mut paths = BTreeSet::new();
        let mut out = Vec::new();
        for (i, f) in raw.into_iter().enumerate() {
            let at = format!("files[{i}] ({})", f.name);
            if let Err(e) = check_name(&f.name) {
                self.problem(format!("{at}.name: {e}"));
            }
            if !names.insert(f.name.clone()) {
                self.problem(format!("{at}.name: used twice"));
            }
            if !is_clean_relative(&f.template) {
                self.problem(format!(
                    "{at}.template: {:?} must be a relative path inside the template directory",
                    f.template
                ));
            }
            let path = self.abs(&format!("{at}.path"), f.path);
            if !paths.insert(path.clone()) {
                self.problem(format!("{at}.path: {} is used twice", path.display()));
            }
            if f.kind == FileKind::Config
                && path != proxy.config
                && !path.starts_with(proxy.config.parent().unwrap_or(Path::new("/")))
            {
                self.problem(format!(
                    "{at}.path: a config file must be {} or beside it, so the staged copy validates as one tree",
                    proxy.config.display()
                ));
            }
            out.push(FileSpec {
                name: f.name,
                template: f.template,
                path,
                kind: f.kind,
                uses_state: f.uses_state,
                values: f.values,
                allow_empty: f.allow_empty,
            });
        }
        out
    }

    fn services(&mut self, raw: Vec<RawService>, syntax: MapSyntax) -> BTreeMap<String, Service> {
        let mut out = BTreeMap::new();
        let mut route_owner: BTreeMap<String, String> = BTreeMap::new();
        let mut backends: BTreeMap<String, String> = BTreeMap::new();
        let mut total_routes = 0usize;
        if raw.is_empty() {
            self.problem("services: at least one [[services]] is required".into());
        }
        for (i, s) in raw.into_iter().enumerate() {
            let at = format!("services[{i}] ({})", s.name);
            if let Err(e) = check_name(&s.name) {
                self.problem(format!("{at}.name: {e}"));
            }
            if out.contains_key(&s.name) {
                self.problem(format!("{at}.name: service defined twice"));
                continue;
            }
            let mut routes = Vec::new();
            for (j, r) in s.routes.into_iter().enumerate() {
                self.route(&format!("{at}.routes[{j}]"), r, syntax, &mut routes);
            }
            if let Some(file) = s.routes_file {
                let file = self.abs(&format!("{at}.routes_file"), file);
                match read_bounded(&file) {
                    Err(e) => self.problem(format!("{at}.routes_file: {e}")),
                    Ok(text) => {
                        for (n, line) in text.lines().enumerate() {
                            let line = line.trim();
                            if line.is_empty() || line.starts_with('#') {
                                continue;
                            }
                            self.route(
                                &format!("{}:{}", file.display(), n + 1),
                                line.to_owned(),
                                syntax,
                                &mut routes,
                            );
                        }
                    }
                }
            }
            if routes.is_empty() && !s.allow_empty_routes {
                self.problem(format!(
                    "{at}.routes: no routes; an empty route map looks valid and sends nothing \
                     to the service (set allow_empty_routes = true if that is intended)"
                ));
            }
            for r in &routes {
                if let Some(owner) = route_owner.insert(r.clone(), s.name.clone()) {
                    self.problem(format!(
                        "{at}: route {r:?} is also a route of service {owner:?}"
                    ));
                }
            }
            total_routes += routes.len();
            let mut colours = BTreeMap::new();
            for (colour, c) in [(Colour::Blue, s.blue), (Colour::Green, s.green)] {
                let cat = format!("{at}.{colour}");
                if let Err(e) = check_name(&c.backend) {
                    self.problem(format!("{cat}.backend: {e}"));
                }
                if let Some(other) =
                    backends.insert(c.backend.clone(), format!("{}.{colour}", s.name))
                {
                    self.problem(format!(
                        "{cat}.backend: {:?} is also the backend of {other}",
                        c.backend
                    ));
                }
                for (k, srv) in c.servers.iter().enumerate() {
                    if let Err(e) = check_name(&srv.name) {
                        self.problem(format!("{cat}.servers[{k}].name: {e}"));
                    }
                    if srv.address.parse::<std::net::SocketAddr>().is_err()
                        && check_token(&srv.address).is_err()
                    {
                        self.problem(format!(
                            "{cat}.servers[{k}].address: {:?} is not host:port",
                            srv.address
                        ));
                    }
                }
                colours.insert(
                    colour,
                    ColourSpec {
                        backend: c.backend,
                        servers: c.servers,
                    },
                );
            }
            let mut preview_hosts = Vec::new();
            for (j, h) in s.preview_hosts.into_iter().enumerate() {
                let hat = format!("{at}.preview_hosts[{j}]");
                self.route(&hat, h.clone(), syntax, &mut preview_hosts);
                if let Some(owner) = route_owner.insert(h.clone(), s.name.clone()) {
                    self.problem(format!("{hat}: {h:?} is also a route of service {owner:?}"));
                }
            }
            let mut problems = s.gate.problems(&format!("{at}.gate"));
            if let Some(w) = &s.watch {
                problems.extend(w.problems(&format!("{at}.watch")));
            }
            if let Some(p) = &s.prewarm {
                problems.extend(p.problems(&format!("{at}.prewarm")));
            }
            match &s.canary_sticky {
                Some(Sticky::Cookie(n) | Sticky::Header(n))
                    if n.is_empty()
                        || n.len() > 64
                        || !n
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
                {
                    problems.push(format!(
                        "{at}.canary_sticky: {n:?} must be 1 to 64 letters, digits, '-' or '_'"
                    ))
                }
                Some(Sticky::Source(false)) => problems.push(format!(
                    "{at}.canary_sticky: source = false means nothing; leave canary_sticky out"
                )),
                _ => {}
            }
            if syntax == MapSyntax::Nginx {
                // The shipped template reads the cookie as the variable `$cookie_NAME`, and
                // Nginx variable names have no '-'.
                if let Some(Sticky::Cookie(n)) = &s.canary_sticky {
                    if n.contains('-') {
                        problems.push(format!(
                            "{at}.canary_sticky: cookie {n:?}: with kind = \"nginx\" a cookie \
                             name has only letters, digits and '_' (it is read as $cookie_NAME)"
                        ));
                    }
                }
            }
            for p in problems {
                self.problem(p);
            }
            out.insert(
                s.name.clone(),
                Service {
                    name: s.name,
                    routes,
                    initial: s.initial,
                    colours,
                    preview_hosts,
                    drain_after_switch: s.drain_after_switch,
                    gate: s.gate,
                    watch: s.watch,
                    canary_sticky: s.canary_sticky,
                    prewarm: s.prewarm,
                },
            );
        }
        if total_routes > MAX_ROUTES {
            self.problem(format!(
                "services: {total_routes} routes in all, more than the limit of {MAX_ROUTES}"
            ));
        }
        out
    }

    fn cluster(&mut self, raw: RawCluster) -> ClusterConfig {
        use super::cluster::{
            DEFAULT_PEER_TIMEOUT_MS, DEFAULT_PREPARE_TTL_MS, DEFAULT_REPORT_INTERVAL_MS,
        };
        if let Err(e) = check_name(&raw.node) {
            self.problem(format!("cluster.node: {e}"));
        }
        let listen = raw.listen.parse().unwrap_or_else(|_| {
            self.problem(format!("cluster.listen: {:?} is not ip:port", raw.listen));
            std::net::SocketAddr::from(([127, 0, 0, 1], 0))
        });
        let mut names = BTreeSet::from([raw.node.clone()]);
        for (i, p) in raw.peers.iter().enumerate() {
            let at = format!("cluster.peers[{i}] ({})", p.name);
            if let Err(e) = check_name(&p.name) {
                self.problem(format!("{at}.name: {e}"));
            }
            if !names.insert(p.name.clone()) {
                self.problem(format!("{at}.name: used twice (or the name of this node)"));
            }
            let port_ok = p
                .address
                .rsplit_once(':')
                .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok_and(|n| n > 0));
            if !port_ok {
                self.problem(format!("{at}.address: {:?} is not host:port", p.address));
            }
        }
        let tls = TlsFiles {
            ca: self.abs("cluster.ca", raw.ca),
            cert: self.abs("cluster.cert", raw.cert),
            key: self.abs("cluster.key", raw.key),
        };
        for (what, p) in [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)] {
            if !p.is_file() {
                self.problem(format!(
                    "cluster.{what}: {} is not a readable file",
                    p.display()
                ));
            }
        }
        let hold = |ms: u64| Duration::from_millis(ms.min(600_000));
        ClusterConfig {
            node: raw.node,
            listen,
            tls,
            peers: raw.peers,
            report_interval: self.duration(
                "cluster.report_interval_ms",
                raw.report_interval_ms,
                DEFAULT_REPORT_INTERVAL_MS,
            ),
            timeout: self.duration(
                "cluster.timeout_ms",
                raw.timeout_ms,
                DEFAULT_PEER_TIMEOUT_MS,
            ),
            prepare_ttl: self.duration(
                "cluster.prepare_ttl_ms",
                raw.prepare_ttl_ms,
                DEFAULT_PREPARE_TTL_MS,
            ),
            hold_before_decision: hold(raw.hold_before_decision_ms),
            hold_before_commit: hold(raw.hold_before_commit_ms),
        }
    }

    fn route(&mut self, at: &str, r: String, syntax: MapSyntax, routes: &mut Vec<String>) {
        match syntax.check_key(&r) {
            Ok(()) => routes.push(r),
            Err(e) => self.problem(format!("{at}: route {r:?} {e}")),
        }
    }
}

/// The files of a setup without `[[files]]`: the two maps in `proxy.map_dir` (HAProxy's
/// config stays the operator's), and for Nginx also the main config, which every change
/// reloads and so must be validated as a whole.
fn default_files(proxy: &Proxy, routes_may_be_empty: bool) -> Vec<FileSpec> {
    let dir = match proxy.kind {
        ProxyKind::Haproxy => "haproxy",
        ProxyKind::Nginx => "nginx",
    };
    let mut files = vec![
        FileSpec {
            name: "routes".into(),
            template: format!("{dir}/routes.map"),
            path: proxy.map_dir.join("routes.map"),
            kind: FileKind::Map,
            uses_state: false,
            values: ValueCheck::Services,
            allow_empty: routes_may_be_empty,
        },
        FileSpec {
            name: "services".into(),
            template: format!("{dir}/services.map"),
            path: proxy.map_dir.join("services.map"),
            kind: FileKind::Map,
            uses_state: true,
            values: ValueCheck::Backends,
            allow_empty: false,
        },
    ];
    if proxy.kind == ProxyKind::Nginx {
        files.push(FileSpec {
            name: "nginx".into(),
            template: "nginx/nginx.conf".into(),
            path: proxy.config.clone(),
            kind: FileKind::Config,
            uses_state: true,
            values: ValueCheck::Any,
            allow_empty: false,
        });
    }
    files
}
