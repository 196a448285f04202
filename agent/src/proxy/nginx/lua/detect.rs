//! Whether the Lua runtime mode works on this host, and which mode is in use
//! ([`resolve`]): `runtime = "reload"` needs nothing, `"lua"` must pass the probe (or the
//! agent refuses to start), `"auto"` uses Lua when the probe passes and reloads otherwise,
//! saying why.
//!
//! The probe ([`probe`]), in order: both module files exist in `module_dir` (the
//! development kit's and Lua's; `dpkg-query` names their package when it can); `nginx -t`
//! accepts a probe config that loads them by absolute path, the kit first; and, because
//! `nginx -t` runs no Lua (a broken `init_by_lua` block passes it and fails only at start),
//! a throw-away Nginx on a temporary prefix runs that config: its `init_by_lua` loads
//! `resty.core` (which needs the default `lua_package_path`) and writes a shared dict
//! with `safe_set`, and its unix listener must answer what the dict holds. Besides, the
//! control socket's directory must be private (mode 0700): Nginx makes the socket 0666.
//!
//! [`lint`] catches in a rendered config what the probe cannot see: a relative
//! `load_module` path, Lua loaded before the kit, a `lua_package_path` without `;;`, and
//! `cjson`, which Debian's build lacks.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{Config, NginxRuntime, NginxSettings, LUA_MODULE, NDK_MODULE};
use crate::proxy::run_program;

/// Longest the probe may take, from `nginx -t` to the answer of the throw-away Nginx: 10 s.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Debian's package of the Lua module.
pub const LUA_PACKAGE: &str = "libnginx-mod-http-lua";

/// Which mode is in use and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Detection {
    /// `runtime` as configured.
    pub configured: NginxRuntime,
    /// Whether the Lua runtime is in use.
    pub lua: bool,
    /// Why: the probe's evidence, or why it failed.
    pub why: String,
}

impl Detection {
    /// One line for humans: `nginx runtime: lua (...)`.
    pub fn summary(&self) -> String {
        format!(
            "nginx runtime: {} (configured {:?}): {}",
            if self.lua { "lua" } else { "reload" },
            self.configured.as_str(),
            self.why
        )
    }
}

/// Decides the mode of an Nginx config and records it in `config.proxy.nginx.lua`; `None`
/// for HAProxy. With `create_dir` (the agent, `cutover render`) a missing control
/// directory is created with mode 0700; `cutover check` only looks. An error is a
/// `runtime = "lua"` whose probe failed.
pub async fn resolve(config: &mut Config, create_dir: bool) -> Result<Option<Detection>, String> {
    let binary = config.proxy.binary.clone();
    let Some(n) = config.proxy.nginx.as_mut() else {
        return Ok(None);
    };
    let configured = n.runtime;
    if configured == NginxRuntime::Reload {
        n.lua = false;
        return Ok(Some(Detection {
            configured,
            lua: false,
            why: "every change is a reload (runtime = \"reload\", the default)".into(),
        }));
    }
    let outcome = match control_dir(&n.lua_control, create_dir) {
        Ok(()) => probe(&binary, n).await,
        Err(e) => Err(e),
    };
    match (outcome, configured) {
        (Ok(evidence), _) => {
            n.lua = true;
            Ok(Some(Detection {
                configured,
                lua: true,
                why: evidence,
            }))
        }
        (Err(why), NginxRuntime::Auto) => {
            n.lua = false;
            Ok(Some(Detection {
                configured,
                lua: false,
                why: format!(
                    "the Lua runtime does not work here, so every change is a reload: {why}"
                ),
            }))
        }
        (Err(why), _) => Err(format!(
            "proxy.runtime = \"lua\": the Lua runtime does not work here: {why} (install \
             {LUA_PACKAGE}, or use runtime = \"auto\" to fall back to reloads)"
        )),
    }
}

/// The control socket's directory must be private: mode 0700, owned by this user.
fn control_dir(socket: &Path, create: bool) -> Result<(), String> {
    let dir = socket
        .parent()
        .ok_or_else(|| format!("{}: no directory", socket.display()))?;
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            // The umask may have taken bits; the mode must be exact.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("cannot set the mode of {}: {e}", dir.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "the control socket's directory {} does not exist yet (the agent creates it with mode 0700)",
            dir.display()
        )),
        Err(e) => Err(format!("{}: {e}", dir.display())),
        Ok(m) if !m.is_dir() => Err(format!("{} is not a directory", dir.display())),
        Ok(m) if m.permissions().mode() & 0o077 != 0 => Err(format!(
            "the control socket's directory {} has mode {:o}: it must be 0700, since Nginx \
             makes the socket itself writable by everyone",
            dir.display(),
            m.permissions().mode() & 0o777
        )),
        Ok(_) => Ok(()),
    }
}

/// Proves that the Lua module loads and runs; the evidence, or why not.
pub async fn probe(binary: &Path, settings: &NginxSettings) -> Result<String, String> {
    let started = Instant::now();
    let ndk = settings.module_dir.join(NDK_MODULE);
    let lua = settings.module_dir.join(LUA_MODULE);
    for m in [&ndk, &lua] {
        if !m.is_file() {
            return Err(format!(
                "{} is missing (Debian: apt-get install {LUA_PACKAGE})",
                m.display()
            ));
        }
    }
    let package = package_of(&lua).await;
    let dir = tempfile::Builder::new()
        .prefix("cutover-lua-probe-")
        .tempdir()
        .map_err(|e| format!("cannot create a probe directory: {e}"))?;
    let conf = dir.path().join("probe.conf");
    let socket = dir.path().join("probe.sock");
    std::fs::write(&conf, probe_config(dir.path(), &ndk, &lua, &socket))
        .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
    let prefix = dir.path().as_os_str();
    let error_log = dir.path().join("error.log");
    let args = [
        "-t".as_ref(),
        "-q".as_ref(),
        "-p".as_ref(),
        prefix,
        "-e".as_ref(),
        error_log.as_os_str(),
        "-c".as_ref(),
        conf.as_os_str(),
    ];
    let out = run_program(binary, &args, PROBE_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "nginx -t refused a config loading {} and {}: {}",
            ndk.display(),
            lua.display(),
            out.stderr.trim()
        ));
    }
    let answer = run_instance(binary, dir.path(), &conf, &socket, &error_log).await?;
    if answer.trim() != "ok true" {
        return Err(format!(
            "a throw-away nginx with the module answered {:?} instead of \"ok true\"",
            answer.trim()
        ));
    }
    Ok(format!(
        "{}{} loads, and a throw-away nginx ran init_by_lua with resty.core and served \
         from a shared dict ({} ms)",
        lua.display(),
        package.map(|p| format!(" ({p})")).unwrap_or_default(),
        started.elapsed().as_millis()
    ))
}

/// `package version` of the file per dpkg, when dpkg knows it.
async fn package_of(file: &Path) -> Option<String> {
    let dpkg = Path::new("/usr/bin/dpkg-query");
    let out = run_program(
        dpkg,
        &["-S".as_ref(), file.as_os_str()],
        Duration::from_secs(5),
    )
    .await
    .ok()?;
    let package = out.stdout.split(':').next()?.trim().to_owned();
    if !out.status.success() || package.is_empty() {
        return None;
    }
    let version = run_program(
        dpkg,
        &["-W".as_ref(), "-f=${Version}".as_ref(), package.as_ref()],
        Duration::from_secs(5),
    )
    .await
    .ok()
    .map(|o| o.stdout.trim().to_owned())
    .unwrap_or_default();
    Some(format!("{package} {version}").trim().to_owned())
}

/// A config that loads both modules, seeds a dict in `init_by_lua` and answers on `socket`.
pub fn probe_config(dir: &Path, ndk: &Path, lua: &Path, socket: &Path) -> String {
    let d = dir.display();
    format!(
        "load_module {ndk};\nload_module {lua};\nworker_processes 1;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 16; }}\n\
         http {{\n    access_log off;\n\
             client_body_temp_path {d}/client_body;\n    proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\
             lua_shared_dict cutover_probe 64k;\n\
             init_by_lua_block {{\n        require \"resty.core\"\n        \
             assert(ngx.shared.cutover_probe:safe_set(\"probe\", \"ok\"))\n    }}\n\
             server {{\n        listen unix:{socket};\n        location / {{\n            \
             content_by_lua_block {{ ngx.print(ngx.shared.cutover_probe:get(\"probe\") .. \" \" .. \
             tostring(package.loaded[\"resty.core\"] ~= nil)) }}\n        }}\n    }}\n}}\n",
        ndk = ndk.display(),
        lua = lua.display(),
        socket = socket.display(),
    )
}

/// Runs Nginx in the foreground (no master) on `conf`, asks its socket, and stops it by
/// its PID; the answer, or why there was none (with its error log).
async fn run_instance(
    binary: &Path,
    dir: &Path,
    conf: &Path,
    socket: &Path,
    error_log: &Path,
) -> Result<String, String> {
    let mut child = tokio::process::Command::new(binary)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(error_log)
        .arg("-c")
        .arg(conf)
        .args(["-g", "daemon off; master_process off;"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let log = |what: &str| {
        let text = std::fs::read_to_string(error_log).unwrap_or_default();
        let last: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("[emerg]") || l.contains("[alert]") || l.contains("[error]"))
            .collect();
        format!(
            "a throw-away nginx with the module {what}: {}",
            last.join("; ")
        )
    };
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let answer = loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(log(&format!("exited at start ({status})")));
        }
        if let Ok(mut s) = tokio::net::UnixStream::connect(socket).await {
            let mut reply = Vec::new();
            let asked = async {
                s.write_all(b"GET / HTTP/1.0\r\nHost: probe\r\n\r\n")
                    .await?;
                (&mut s).take(4096).read_to_end(&mut reply).await
            };
            let res = tokio::time::timeout(Duration::from_secs(2), asked).await;
            break match res {
                Ok(Ok(_)) => Ok(String::from_utf8_lossy(&reply).into_owned()),
                _ => Err(log("did not answer")),
            };
        }
        if Instant::now() >= deadline {
            break Err(log(&format!("did not listen within {PROBE_TIMEOUT:?}")));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    let _ = child.start_kill();
    let reply = answer?;
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("a throw-away nginx answered an incomplete reply: {reply:?}"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!(
            "a throw-away nginx answered {:?}",
            head.lines().next().unwrap_or("")
        ));
    }
    Ok(body.to_owned())
}

/// What a rendered main config gets wrong for the Lua runtime, one line per problem.
pub fn lint(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut ndk_at = None;
    let mut lua_at = None;
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('#') {
            continue;
        }
        if let Some(rest) = l.strip_prefix("load_module ") {
            let path = rest.trim_end_matches(';').trim().trim_matches('"');
            if !Path::new(path).is_absolute() {
                problems.push(format!(
                    "line {}: load_module {path}: the path must be absolute (a relative one \
                     resolves against nginx's prefix)",
                    i + 1
                ));
            }
            if path.ends_with(NDK_MODULE) {
                ndk_at.get_or_insert(i);
            }
            if path.ends_with(LUA_MODULE) {
                lua_at.get_or_insert(i);
            }
        }
        if let Some(rest) = l.strip_prefix("lua_package_path ") {
            if !rest.contains(";;") {
                problems.push(format!(
                    "line {}: lua_package_path must keep the default path (end it with \";;\"), \
                     or resty.core fails when nginx starts (nginx -t does not notice)",
                    i + 1
                ));
            }
        }
        if l.contains("require \"cjson\"")
            || l.contains("require('cjson')")
            || l.contains("require(\"cjson\")")
            || l.contains("require 'cjson'")
        {
            problems.push(format!(
                "line {}: cjson is not part of Debian's Lua module",
                i + 1
            ));
        }
    }
    match (ndk_at, lua_at) {
        (None, _) | (_, None) => problems.push(format!(
            "the config must load_module both {NDK_MODULE} and {LUA_MODULE}"
        )),
        (Some(n), Some(l)) if l < n => problems.push(format!(
            "{LUA_MODULE} is loaded before {NDK_MODULE}; the development kit must load first"
        )),
        _ => {}
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_catches_the_traps() {
        let good = "load_module /usr/lib/nginx/modules/ndk_http_module.so;\n\
                    load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;\n\
                    lua_package_path \"/opt/lua/?.lua;;\";\n";
        assert!(lint(good).is_empty(), "{:?}", lint(good));
        let bad = "load_module modules/ngx_http_lua_module.so;\n\
                   load_module /usr/lib/nginx/modules/ndk_http_module.so;\n\
                   lua_package_path \"/opt/lua/?.lua\";\n\
                   local j = require \"cjson\"\n";
        let p = lint(bad).join("\n");
        for needle in ["must be absolute", "before ndk", "\";;\"", "cjson"] {
            assert!(p.contains(needle), "{needle}: {p}");
        }
        assert!(lint("worker_processes 1;\n")[0].contains("must load_module both"));
    }

    #[test]
    fn a_loose_control_directory_is_refused_and_a_missing_one_created_private() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("ctl/control.sock");
        assert!(control_dir(&socket, false)
            .unwrap_err()
            .contains("does not exist"));
        control_dir(&socket, true).unwrap();
        let mode = std::fs::metadata(dir.path().join("ctl"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::set_permissions(
            dir.path().join("ctl"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert!(control_dir(&socket, true)
            .unwrap_err()
            .contains("must be 0700"));
    }
}
