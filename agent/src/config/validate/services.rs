//! Validation of the `[[services]]` section: names, colours, backends, routes and preview
//! hosts.

use std::collections::BTreeMap;

use super::Validator;
use crate::config::raw::RawService;
use crate::config::*;
use crate::mapfile::{check_name, check_token, MapSyntax};

impl Validator<'_> {
    pub(super) fn services(
        &mut self,
        raw: Vec<RawService>,
        kind: ProxyKind,
    ) -> BTreeMap<String, Service> {
        let syntax = kind.map_syntax();
        let mut out = BTreeMap::new();
        let mut route_owner: BTreeMap<String, String> = BTreeMap::new();
        let mut backends: BTreeMap<String, String> = BTreeMap::new();
        let mut total_routes = 0usize;
        if raw.is_empty() {
            self.problem("services: at least one [[services]] is required".into());
        }
        if raw.len() > MAX_SERVICES {
            self.problem(format!(
                "services: {} [[services]], more than the limit of {MAX_SERVICES}",
                raw.len()
            ));
            return out;
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
            let health = match s
                .health
                .as_ref()
                .map(|h| h.resolve(kind, &format!("{at}.health")))
            {
                None => None,
                Some(Ok(checks)) => Some(checks),
                Some(Err(found)) => {
                    problems.extend(found);
                    None
                }
            };
            let drain_timeout = match s
                .drain_timeout_ms
                .map(|ms| crate::config::health::drain_timeout(ms, kind, &at))
            {
                None => None,
                Some(Ok(d)) => Some(d),
                Some(Err(e)) => {
                    problems.push(e);
                    None
                }
            };
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
                    health,
                    drain_timeout,
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

    fn route(&mut self, at: &str, r: String, syntax: MapSyntax, routes: &mut Vec<String>) {
        match syntax.check_key(&r) {
            Ok(()) => routes.push(r),
            Err(e) => self.problem(format!("{at}: route {r:?} {e}")),
        }
    }
}
