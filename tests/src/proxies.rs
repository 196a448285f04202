//! Finding the real proxy binaries, and the skip-or-fail rule for tests that need them.

use std::env;
use std::path::{Path, PathBuf};

/// Environment variable that turns a missing proxy from a skipped test into a failure.
/// CI sets `CUTOVER_REQUIRE_PROXIES=1`.
pub const REQUIRE_PROXIES_ENV: &str = "CUTOVER_REQUIRE_PROXIES";

/// Environment variable naming a directory searched before `PATH` for the proxies: the
/// wrappers of scripts/matrix.sh that run another Debian release's HAProxy and Nginx. (A
/// changed `PATH` would make cargo rebuild the crates whose build scripts watch it.)
pub const PROXY_DIR_ENV: &str = "CUTOVER_PROXY_DIR";

/// Directories searched after `PATH`: Debian installs both proxies in /usr/sbin, which is
/// often not on an unprivileged user's `PATH`.
const EXTRA_DIRS: &[&str] = &["/usr/sbin", "/usr/local/sbin", "/sbin"];

/// Path of the executable `name` (e.g. `"haproxy"`, `"nginx"`), looked up in
/// [`PROXY_DIR_ENV`] when set, in `PATH`, then in /usr/sbin, /usr/local/sbin and /sbin.
/// `None` when absent.
pub fn proxy_binary(name: &str) -> Option<PathBuf> {
    let path_dirs = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    env::var_os(PROXY_DIR_ENV)
        .map(PathBuf::from)
        .into_iter()
        .chain(path_dirs)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// True when [`REQUIRE_PROXIES_ENV`] is set to `1`.
pub fn proxies_required() -> bool {
    env::var(REQUIRE_PROXIES_ENV).is_ok_and(|v| v.trim() == "1")
}

/// The proxy binary a test needs. When it is missing, prints a skip notice and returns
/// `None` (the test should return early), or panics when [`REQUIRE_PROXIES_ENV`]`=1`.
/// Most tests use the [`require_proxy!`](crate::require_proxy) macro, which returns for them.
pub fn require_proxy(name: &str) -> Option<PathBuf> {
    require_found(name, proxy_binary(name), proxies_required())
}

/// The skip-or-fail decision of [`require_proxy`], given the lookup result.
fn require_found(name: &str, found: Option<PathBuf>, required: bool) -> Option<PathBuf> {
    if found.is_some() {
        return found;
    }
    if required {
        panic!(
            "{name} not found in PATH or {EXTRA_DIRS:?}, and {REQUIRE_PROXIES_ENV}=1 requires it; \
             install {name} or unset {REQUIRE_PROXIES_ENV} to skip"
        );
    }
    eprintln!("SKIPPED: {name} not found in PATH or {EXTRA_DIRS:?} (set {REQUIRE_PROXIES_ENV}=1 to fail instead)");
    None
}

/// The skip-or-fail rule for anything else a test needs from the host (mounting a tmpfs,
/// running a program as another user): prints a skip notice naming `what` and `why`, or
/// panics when [`REQUIRE_PROXIES_ENV`]`=1`, where CI promises a host that has it all.
pub fn skip_or_fail(what: &str, why: &str) {
    if proxies_required() {
        panic!("{what} is not possible here ({why}), and {REQUIRE_PROXIES_ENV}=1 requires it");
    }
    eprintln!(
        "SKIPPED: {what} is not possible here ({why}); set {REQUIRE_PROXIES_ENV}=1 to fail instead"
    );
}

/// Like [`require_proxy`] for several proxies at once: true when all are present.
pub fn require_proxies(names: &[&str]) -> bool {
    names.iter().all(|name| require_proxy(name).is_some())
}

/// Evaluates to the path of proxy binary `$name`, or returns from the enclosing function
/// (skipping the test) when it is missing; panics instead under `CUTOVER_REQUIRE_PROXIES=1`.
///
/// ```ignore
/// let haproxy = cutover_tests::require_proxy!("haproxy");
/// ```
#[macro_export]
macro_rules! require_proxy {
    ($name:expr) => {
        match $crate::proxies::require_proxy($name) {
            Some(path) => path,
            None => return,
        }
    };
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_proxy_skips_unless_required() {
        let found = Some(PathBuf::from("/usr/sbin/haproxy"));
        assert_eq!(require_found("haproxy", found.clone(), true), found);
        assert_eq!(require_found("no-such-proxy", None, false), None);
        let required = std::panic::catch_unwind(|| require_found("no-such-proxy", None, true));
        let message = required.expect_err("must panic when required");
        let text = message
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(
            text.contains(REQUIRE_PROXIES_ENV) && text.contains("no-such-proxy"),
            "{text}"
        );
    }

    #[test]
    fn lookup_finds_executables_only() {
        assert_eq!(proxy_binary("no-such-proxy-binary"), None);
        let sh = proxy_binary("sh").expect("sh is on every test machine");
        assert!(sh.is_absolute() || sh.starts_with("."));
    }
}
