//! Whether HAProxy's runtime, the map files and the saved state agree, read without the
//! agent (the admin and master sockets directly), for tests that break things on purpose.

use std::time::{Duration, Instant};

use super::{Agent, Setup};

impl Setup {
    /// The saved state, as the agent would load it.
    pub fn saved_state(&self) -> Result<cutover::state::State, String> {
        let dir = self.file("state");
        let store = cutover::store::Store::open(&dir).map_err(|e| e.to_string())?;
        let loaded = store
            .load()
            .map_err(|e| format!("the saved state does not load: {e}"))?;
        match (loaded.state, loaded.recovered_from) {
            (Some(state), None) => Ok(state),
            (_, Some(why)) => Err(format!("state.json is unusable: {why}")),
            (None, None) => Err(format!("no state saved in {}", dir.display())),
        }
    }

    /// The managed maps of the HAProxy setup, by name: `maps/<name>.map`.
    pub const MAPS: [&'static str; 5] = ["routes", "services", "idle", "canary", "preview"];

    /// `Ok(saved state)` when, for every managed map, HAProxy's runtime (read on the admin
    /// socket, not through the agent) equals the file on disk, the services and idle maps
    /// name the backends of each service's live and other colour in the saved state, and
    /// exactly the servers of the colours the state says are drained are in drain; else
    /// what differs.
    pub fn consistency(&self) -> Result<cutover::state::State, String> {
        use cutover::mapfile::MapSyntax;
        let state = self.saved_state()?;
        let mut files = std::collections::BTreeMap::new();
        for name in Self::MAPS {
            let path = self.file(&format!("maps/{name}.map"));
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{name}.map: {e}"))?;
            let file = MapSyntax::Haproxy
                .parse(&text)
                .map_err(|e| format!("{name}.map: {e}"))?;
            let runtime = self.haproxy().runtime_map(&path)?;
            if runtime != file {
                return Err(format!("{name}.map: runtime {runtime:?}, file {file:?}"));
            }
            files.insert(name, file);
        }
        for (name, s) in &state.services {
            // Server drains are runtime state: HAProxy's must be those the state names.
            for colour in cutover::protocol::Colour::ALL {
                let backend = format!("{name}_{colour}");
                let reply = crate::haproxy::unix_command(
                    &self.haproxy().paths().admin_socket,
                    &format!("show servers state {backend}"),
                    Duration::from_secs(5),
                )
                .map_err(|e| e.to_string())?;
                let rows = cutover::proxy::haproxy::reply::parse_servers_state(&reply)
                    .map_err(|e| e.to_string())?;
                let want = s.drained.contains(&colour);
                if let Some(r) = rows.iter().find(|r| r.is_drain() != want) {
                    return Err(format!(
                        "server {backend}/{} drained: {}, the saved state says {want}",
                        r.server,
                        r.is_drain()
                    ));
                }
            }
            let want = [
                ("services", format!("{name}_{}", s.live)),
                ("idle", format!("{name}_{}", s.live.other())),
            ];
            for (map, backend) in want {
                if files[map].get(name) != Some(&backend) {
                    return Err(format!(
                        "{map}.map names {:?} for {name}, the saved state says {backend}",
                        files[map].get(name)
                    ));
                }
            }
        }
        Ok(state)
    }

    /// Polls [`Setup::consistency`] until it holds, at most `within`; the last difference
    /// (with the agent's log) when it does not.
    pub fn wait_consistent(&self, within: Duration) -> Result<cutover::state::State, String> {
        let deadline = Instant::now() + within;
        loop {
            match self.consistency() {
                Ok(state) => return Ok(state),
                Err(e) if Instant::now() >= deadline => {
                    let log = self.agent.as_ref().map(Agent::log).unwrap_or_default();
                    return Err(format!(
                        "not consistent within {within:?}: {e}\nagent log:\n{log}"
                    ));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// The HAProxy master's reload counter, read from `show proc` (retried while the master
    /// re-executes itself).
    pub fn reloads(&self) -> u64 {
        let mut last = String::new();
        for _ in 0..100 {
            match crate::haproxy::unix_command(
                &self.haproxy().paths().master_socket,
                "show proc",
                Duration::from_secs(5),
            ) {
                Ok(reply) => match cutover::proxy::haproxy::reply::parse_show_proc(&reply) {
                    Ok(table) => return table.reloads,
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cannot read show proc: {last}");
    }
}
