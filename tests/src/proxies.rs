//! Finding the real proxy binaries, and the skip-or-fail rule for tests that need them.

use std::env;
use std::path::{Path, PathBuf};

/// Environment variable that turns a missing proxy from a skipped test into a failure.
/// CI sets `CUTOVER_REQUIRE_PROXIES=1`.
pub const REQUIRE_PROXIES_ENV: &str = "CUTOVER_REQUIRE_PROXIES";

/// Directories searched after `PATH`: Debian installs both proxies in /usr/sbin, which is
/// often not on an unprivileged user's `PATH`.
const EXTRA_DIRS: &[&str] = &["/usr/sbin", "/usr/local/sbin", "/sbin"];

/// Path of the executable `name` (e.g. `"haproxy"`, `"nginx"`), looked up in `PATH`, then
/// in /usr/sbin, /usr/local/sbin and /sbin. `None` when absent.
pub fn proxy_binary(name: &str) -> Option<PathBuf> {
    let path_dirs = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
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
    if let Some(path) = proxy_binary(name) {
        return Some(path);
    }
    if proxies_required() {
        panic!(
            "{name} not found in PATH or {EXTRA_DIRS:?}, and {REQUIRE_PROXIES_ENV}=1 requires it; \
             install {name} or unset {REQUIRE_PROXIES_ENV} to skip"
        );
    }
    eprintln!("SKIPPED: {name} not found in PATH or {EXTRA_DIRS:?} (set {REQUIRE_PROXIES_ENV}=1 to fail instead)");
    None
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
