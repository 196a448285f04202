//! The engine over the in-memory proxy: the order of steps, and that every failure leaves
//! files, proxy and state as they were.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::config::Config;
use crate::mapfile::MapEntries;
use crate::protocol::Colour;
use crate::proxy::fake::FakeProxy;
use crate::store::JournalEntry;

struct Fixture {
    _dir: tempfile::TempDir,
    maps: PathBuf,
    engine: Engine<FakeProxy>,
    proxy: FakeProxy,
}

/// A config of kind haproxy with the services `web` and `api`, `extra_files` (more tables)
/// before them.
pub(crate) fn config(dir: &Path, extra_files: &str) -> Config {
    let proxy = format!(
        "kind = \"haproxy\"\nadmin_socket = \"{d}/admin.sock\"\nmaster_socket = \"{d}/master.sock\"\nconfig = \"{d}/haproxy.cfg\"",
        d = dir.display()
    );
    config_with(dir, &proxy, extra_files)
}

/// A config of kind nginx: its default files are the main config and both maps.
fn nginx_config(dir: &Path) -> Config {
    let proxy = format!(
        "kind = \"nginx\"\nconfig = \"{d}/nginx.conf\"\npid_file = \"{d}/nginx.pid\"\nerror_log = \"{d}/error.log\"\nstatus = \"unix:{d}/status.sock\"",
        d = dir.display()
    );
    config_with(dir, &proxy, "vars = { listen = \"127.0.0.1:1\" }")
}

fn config_with(dir: &Path, proxy: &str, extra_files: &str) -> Config {
    let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/../templates");
    let text = format!(
        r#"
[agent]
state_dir = "{d}/state"
[proxy]
{proxy}
map_dir = "{d}/maps"
[templates]
dir = "{templates}"
{extra_files}
[[services]]
name = "web"
routes = ["a.example", "b.example"]
blue = {{ backend = "web_blue" }}
green = {{ backend = "web_green" }}
[[services]]
name = "api"
routes = ["api.example"]
blue = {{ backend = "api_blue" }}
green = {{ backend = "api_green" }}
"#,
        d = dir.display()
    );
    Config::from_toml(&dir.join("cutover.toml"), &text).unwrap()
}

async fn fixture() -> Fixture {
    fixture_with(false).await
}

/// With `reload_only`, the config is of kind nginx and the fake has no runtime maps (like
/// Nginx): every change is checked on a staged tree and reloaded.
async fn fixture_with(reload_only: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let maps = dir.path().join("maps");
    std::fs::create_dir_all(&maps).unwrap();
    let config = Arc::new(if reload_only {
        nginx_config(dir.path())
    } else {
        config(dir.path(), "")
    });
    Fixture::started(dir, config, reload_only).await
}

/// An engine for `config` on a fake proxy with the four backends of the test services, which
/// loads `map_files` at a reload and has runtime maps unless `reload_only`; the files are
/// written and loaded, as after a first start.
pub(crate) async fn start(
    config: Arc<Config>,
    map_files: Vec<PathBuf>,
    reload_only: bool,
) -> (Engine<FakeProxy>, FakeProxy) {
    let mut proxy = FakeProxy::new(
        map_files,
        &["web_blue", "web_green", "api_blue", "api_green"],
    );
    proxy.runtime_maps = !reload_only;
    proxy.syntax = config.proxy.kind.map_syntax();
    let store = Store::open(&config.agent.state_dir).unwrap();
    let mut engine = Engine::new(config, proxy.clone(), store).unwrap();
    engine.write_files().await.unwrap();
    proxy.reload(0).await.unwrap();
    (engine, proxy)
}

fn switch(service: &str, colour: Colour) -> Request {
    Request::Switch {
        service: service.into(),
        colour,
    }
}

impl Fixture {
    /// The engine of `config` (maps in `dir`/maps) started on a fake proxy, no calls
    /// recorded yet.
    async fn started(dir: tempfile::TempDir, config: Arc<Config>, reload_only: bool) -> Fixture {
        let maps = dir.path().join("maps");
        let map_files = vec![maps.join("routes.map"), maps.join("services.map")];
        let (engine, proxy) = start(config, map_files, reload_only).await;
        proxy.state().calls.clear();
        Fixture {
            _dir: dir,
            maps,
            engine,
            proxy,
        }
    }

    /// Names in the map directory that contain `part` (e.g. `.tmp`: what an interrupted or
    /// undone write would leave behind).
    fn names_in_maps(&self, part: &str) -> Vec<String> {
        std::fs::read_dir(&self.maps)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(part))
            .collect()
    }

    /// Calls to the proxy other than drains.
    fn reload_calls(&self) -> Vec<String> {
        let calls = self.proxy.state().calls.clone();
        calls
            .into_iter()
            .filter(|c| !c.starts_with("set_drain"))
            .collect()
    }

    fn services_file(&self) -> String {
        std::fs::read_to_string(self.maps.join("services.map")).unwrap()
    }

    fn live_services(&self) -> MapEntries {
        self.proxy.state().maps[&self.maps.join("services.map")].clone()
    }
}

pub(crate) mod admission;
mod batches;
mod failures;
mod flips;
mod health;
mod metrics;
mod reconcile;
