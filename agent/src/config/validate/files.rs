//! Validation of the `[[files]]` section, and the default files of each proxy kind when it
//! is absent.

use std::collections::BTreeSet;
use std::path::Path;

use super::Validator;
use crate::config::raw::RawFile;
use crate::config::*;
use crate::mapfile::check_name;
use crate::protocol::FileKind;

impl Validator<'_> {
    /// The configured files, or the default ones of the proxy kind.
    pub(super) fn files(
        &mut self,
        raw: Vec<RawFile>,
        proxy: &Proxy,
        routes_may_be_empty: bool,
    ) -> Vec<FileSpec> {
        if raw.is_empty() {
            return default_files(proxy, routes_may_be_empty);
        }
        if raw.len() > MAX_FILES {
            self.problem(format!(
                "files: {} [[files]], more than the limit of {MAX_FILES}",
                raw.len()
            ));
            return Vec::new();
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
}

impl Validator<'_> {
    /// With the Nginx runtime mode possible (`runtime` other than `reload`), the maps the
    /// Lua lookup reads ([`LUA_MAPS`]) must be configured maps; their paths go to the
    /// Nginx settings.
    pub(super) fn lua_maps(&mut self, proxy: &mut Proxy, files: &[FileSpec]) {
        let Some(nginx) = proxy.nginx.as_mut() else {
            return;
        };
        if nginx.runtime == NginxRuntime::Reload {
            return;
        }
        for name in LUA_MAPS {
            match files.iter().find(|f| f.name == name) {
                Some(f) if f.kind == FileKind::Map => {
                    nginx.lua_maps.insert(name.to_owned(), f.path.clone());
                }
                _ => self.problem(format!(
                    "files: proxy.runtime = {:?} needs a map named {name:?} (template \
                     nginx/{name}.map) for the Lua lookup",
                    nginx.runtime.as_str()
                )),
            }
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
    let runtime = proxy.nginx.as_ref().map(|n| n.runtime);
    if runtime.is_some_and(|r| r != NginxRuntime::Reload) {
        // The idle colour and the canary shares, which Nginx's Lua lookup reads.
        files.push(FileSpec {
            name: "idle".into(),
            template: format!("{dir}/idle.map"),
            path: proxy.map_dir.join("idle.map"),
            kind: FileKind::Map,
            uses_state: true,
            values: ValueCheck::Backends,
            allow_empty: false,
        });
        files.push(FileSpec {
            name: "canary".into(),
            template: format!("{dir}/canary.map"),
            path: proxy.map_dir.join("canary.map"),
            kind: FileKind::Map,
            uses_state: true,
            values: ValueCheck::Percent,
            allow_empty: false,
        });
    }
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
