//! The HAProxy admin-socket and master-CLI clients against a real HAProxy.

use std::time::{Duration, Instant};

use cutover::mapfile::MapDiff;
use cutover::proxy::haproxy::admin::{AdminError, ServerAdminState};
use cutover::proxy::haproxy::master::MasterError;
use cutover_tests::haproxy::{BLUE_BACKEND, GREEN_BACKEND, ROUTES_MAP, SERVER, TAGS_MAP};
use cutover_tests::{get, http, require_proxy, Backend, Haproxy};
use nix::sys::signal::Signal;

/// Bound on one confirmed reload in these tests.
const RELOAD_WITHIN: Duration = Duration::from_secs(15);

struct Site {
    haproxy: Haproxy,
    // Kept alive for as long as HAProxy routes to them.
    _blue: Backend,
    _green: Backend,
}

impl Site {
    fn start(binary: &std::path::Path) -> Site {
        let blue = Backend::start("blue");
        let green = Backend::start("green");
        let haproxy = Haproxy::start_minimal(binary, blue.addr(), green.addr());
        Site {
            haproxy,
            _blue: blue,
            _green: green,
        }
    }

    fn map(&self, name: &str) -> String {
        self.haproxy.paths().file(name).display().to_string()
    }

    async fn body_for(&self, host: &str) -> String {
        let (status, body) = get(self.haproxy.frontend(), host)
            .await
            .unwrap_or_else(|e| panic!("GET Host: {host}: {e}"));
        assert_eq!(status, 200, "GET Host: {host}: body {body:?}");
        body
    }
}

fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn show_map_and_listings_round_trip() {
    let binary = require_proxy!("haproxy");
    let site = Site::start(&binary);
    let admin = site.haproxy.admin();
    let routes = site.map(ROUTES_MAP);

    assert_eq!(
        admin.show_map(&routes).await.unwrap(),
        pairs(&[
            ("blue.example", BLUE_BACKEND),
            ("green.example", GREEN_BACKEND)
        ])
    );
    assert_eq!(admin.show_map(&site.map(TAGS_MAP)).await.unwrap(), vec![]);

    let maps = admin.list_maps().await.unwrap();
    let info = maps
        .iter()
        .find(|m| m.path == routes)
        .expect("routes map listed");
    assert_eq!((info.curr_ver, info.next_ver, info.entry_cnt), (0, 0, 2));
    assert!(maps.iter().any(|m| m.path == site.map(TAGS_MAP)));

    assert_eq!(
        admin.backends().await.unwrap(),
        vec![BLUE_BACKEND.to_owned(), GREEN_BACKEND.to_owned()]
    );
    assert_eq!(site.body_for("green.example").await, "green");
    assert_eq!(site.body_for("other.example").await, "blue");
}

#[tokio::test]
async fn set_add_del_change_the_live_map() {
    let binary = require_proxy!("haproxy");
    let site = Site::start(&binary);
    let admin = site.haproxy.admin();
    let routes = site.map(ROUTES_MAP);

    admin
        .add_map(&routes, "new.example", GREEN_BACKEND)
        .await
        .unwrap();
    assert_eq!(site.body_for("new.example").await, "green");
    admin
        .set_map(&routes, "new.example", BLUE_BACKEND)
        .await
        .unwrap();
    assert_eq!(site.body_for("new.example").await, "blue");
    admin
        .set_map(&routes, "blue.example", GREEN_BACKEND)
        .await
        .unwrap();
    assert_eq!(site.body_for("blue.example").await, "green");
    admin.del_map(&routes, "new.example").await.unwrap();
    assert_eq!(
        admin.show_map(&routes).await.unwrap(),
        pairs(&[
            ("blue.example", GREEN_BACKEND),
            ("green.example", GREEN_BACKEND)
        ])
    );

    // The second map feeds a response header.
    let tags = site.map(TAGS_MAP);
    admin
        .add_map(&tags, "green.example", "canary")
        .await
        .unwrap();
    let response = http::request(site.haproxy.frontend(), "GET", "green.example", "/")
        .await
        .unwrap();
    assert_eq!(response.header("x-tag"), Some("canary"));
}

#[tokio::test]
async fn the_edits_of_a_map_go_in_one_exchange_and_a_refusal_names_its_command() {
    let binary = require_proxy!("haproxy");
    let site = Site::start(&binary);
    let admin = site.haproxy.admin();
    let routes = site.map(ROUTES_MAP);
    let diff = MapDiff {
        added: pairs(&[("new.example", GREEN_BACKEND)]),
        changed: pairs(&[("blue.example", GREEN_BACKEND)]),
        removed: vec!["green.example".into()],
    };
    admin.edit_map(&routes, &diff).await.unwrap();
    assert_eq!(
        admin.show_map(&routes).await.unwrap(),
        pairs(&[
            ("blue.example", GREEN_BACKEND),
            ("new.example", GREEN_BACKEND)
        ])
    );
    assert_eq!(site.body_for("new.example").await, "green");

    // The second command is refused: the first was carried out, the error names the second.
    let diff = MapDiff {
        added: vec![],
        changed: pairs(&[("blue.example", BLUE_BACKEND)]),
        removed: vec!["gone.example".into()],
    };
    let err = admin.edit_map(&routes, &diff).await.unwrap_err();
    assert!(
        matches!(&err, AdminError::Refused { command, .. } if command.contains("del map") && command.contains("gone.example")),
        "{err}"
    );
    assert_eq!(site.body_for("blue.example").await, "blue");
    // The connection is still usable after a refusal.
    assert_eq!(admin.show_map(&routes).await.unwrap().len(), 2);
}

#[tokio::test]
async fn the_kept_connection_follows_a_foreign_reload_and_lets_the_old_worker_go() {
    let binary = require_proxy!("haproxy");
    let site = Site::start(&binary);
    let admin = site.haproxy.admin();
    let master = site.haproxy.master();
    let routes = site.map(ROUTES_MAP);
    let first = admin.info().await.unwrap().pid;
    // The persistent connection now belongs to the first worker.
    admin
        .set_map(&routes, "blue.example", GREEN_BACKEND)
        .await
        .unwrap();

    // A reload cutover did not make: the new worker reads the map file (blue again).
    site.haproxy.signal(Signal::SIGUSR2);
    let deadline = Instant::now() + RELOAD_WITHIN;
    while admin.info().await.map(|i| i.pid).unwrap_or(first) == first {
        assert!(Instant::now() < deadline, "no new worker answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(site.body_for("blue.example").await, "blue");

    // The edit reaches the worker that serves, not the one the connection was made to.
    admin
        .set_map(&routes, "blue.example", GREEN_BACKEND)
        .await
        .unwrap();
    assert_eq!(site.body_for("blue.example").await, "green");
    let fresh = cutover::proxy::haproxy::admin::AdminClient::new(admin.socket_path());
    assert_eq!(
        fresh.show_map(&routes).await.unwrap()[0],
        ("blue.example".to_owned(), GREEN_BACKEND.to_owned())
    );
    // Nothing holds the old worker any more: it exits.
    loop {
        // The master re-executes on a reload: its socket may refuse connections for a moment.
        let gone = match master.show_proc().await {
            Ok(table) => !table.old_workers.iter().any(|w| w.pid == first),
            Err(_) => false,
        };
        if gone {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old worker {first} is still alive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_kept_connection_haproxy_closed_is_replaced() {
    let binary = require_proxy!("haproxy");
    let site = Site::start(&binary);
    let admin = site.haproxy.admin();
    let routes = site.map(ROUTES_MAP);
    assert_eq!(admin.show_map(&routes).await.unwrap().len(), 2);
    // Close every other CLI session, as `stats timeout` would close an idle one.
    let sessions = site.haproxy.admin_command("show sess");
    let mut closed = 0;
    for line in sessions.lines().filter(|l| l.contains("proto=unix_stream")) {
        let id = line.split(':').next().unwrap();
        let reply = site
            .haproxy
            .admin_command(&format!("shutdown session {id}"));
        closed += usize::from(reply.trim().is_empty());
    }
    assert!(closed >= 1, "no CLI session to close in:\n{sessions}");
    admin
        .set_map(&routes, "blue.example", GREEN_BACKEND)
        .await
        .unwrap();
    assert_eq!(site.body_for("blue.example").await, "green");
}

#[tokio::test]
async fn errors_carry_haproxys_text() {
    let binary = require_proxy!("haproxy");
    let site = Site::start(&binary);
    let admin = site.haproxy.admin();
    let routes = site.map(ROUTES_MAP);
    let socket = site.haproxy.paths().admin_socket.display().to_string();

    let err = admin.set_map("/no/such.map", "k", "v").await.unwrap_err();
    match &err {
        AdminError::Refused { reply, command, .. } => {
            assert!(reply.starts_with("Unknown map identifier"), "{err}");
            assert_eq!(command, "set map /no/such.map k v");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(err.to_string().contains(&socket), "{err}");

    let err = admin.del_map(&routes, "missing.example").await.unwrap_err();
    assert!(
        matches!(&err, AdminError::Refused { reply, .. } if reply == "Key not found."),
        "{err}"
    );
    let err = admin
        .set_map(&routes, "missing.example", "x")
        .await
        .unwrap_err();
    assert!(matches!(&err, AdminError::Refused { .. }), "{err}");
    let err = admin.show_map("/no/such.map").await.unwrap_err();
    assert!(
        matches!(&err, AdminError::Refused { reply, .. } if reply.starts_with("Unknown map identifier")),
        "{err}"
    );
    let err = admin
        .set_weight(BLUE_BACKEND, SERVER, 300)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AdminError::Refused { reply, .. } if reply.contains("between 0 and 256")),
        "{err}"
    );
    let err = admin.set_weight(BLUE_BACKEND, "nope", 1).await.unwrap_err();
    assert!(
        matches!(&err, AdminError::Refused { reply, .. } if reply == "No such server."),
        "{err}"
    );
    let err = admin.mutate("bogus command").await.unwrap_err();
    assert!(
        matches!(&err, AdminError::Refused { reply, .. } if reply.starts_with("Unknown command")),
        "{err}"
    );

    // Arguments the CLI would split or interpret never reach HAProxy.
    let err = admin
        .add_map(&routes, "x.example;clear", "map")
        .await
        .unwrap_err();
    assert!(matches!(err, AdminError::InvalidArgument { .. }), "{err}");
    assert_eq!(admin.show_map(&routes).await.unwrap().len(), 2);
}

fn many_entries(count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            let backend = if i % 2 == 0 {
                BLUE_BACKEND
            } else {
                GREEN_BACKEND
            };
            (format!("host-{i:07}.example"), backend.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn replace_map_with_100k_entries_in_chunks() {
    let binary = require_proxy!("haproxy");
    let site = Site::start(&binary);
    let admin = site.haproxy.admin();
    let routes = site.map(ROUTES_MAP);

    let entries = many_entries(100_000);
    let stats = admin.replace_map(&routes, &entries).await.unwrap();
    eprintln!("replace_map of 100000 entries: {stats:?}");
    assert_eq!(stats.entries, entries.len());
    assert!(stats.chunks > 100, "{stats:?}");
    assert!(stats.bytes / stats.chunks <= admin.max_chunk_bytes());

    let started = Instant::now();
    let live = admin.show_map(&routes).await.unwrap();
    eprintln!("show_map of 100000 entries: {:?}", started.elapsed());
    assert!(live == entries, "live map differs from what was written");
    let info = admin.map_info(&routes).await.unwrap();
    assert_eq!(info.curr_ver, stats.version);
    assert_eq!(
        info.entry_cnt,
        entries.len() as u64,
        "old versions were dropped"
    );
    assert_eq!(site.body_for("host-0000001.example").await, "green");
    assert_eq!(
        site.body_for("blue.example").await,
        "blue",
        "old entries are gone, default is blue"
    );

    // A second replace builds on the new version.
    let smaller = many_entries(10);
    let again = admin.replace_map(&routes, &smaller).await.unwrap();
    assert!(again.version > stats.version);
    assert_eq!(admin.show_map(&routes).await.unwrap(), smaller);
}

#[tokio::test]
async fn dropped_payload_is_detected_and_nothing_is_committed() {
    let binary = require_proxy!("haproxy");
    let site = Site::start(&binary);
    let admin = site.haproxy.admin();
    let routes = site.map(ROUTES_MAP);
    let original = admin.show_map(&routes).await.unwrap();
    let before = admin.map_info(&routes).await.unwrap();

    // One payload of ~30 KiB, beyond the default tune.bufsize of 16 KiB.
    let entries = many_entries(1_000);
    let version = admin.prepare_map(&routes).await.unwrap();
    let err = admin
        .add_map_payload(&routes, Some(version), &entries)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AdminError::PayloadDropped { payload_bytes, .. } if payload_bytes > 16 * 1024),
        "{err}"
    );

    // The same through replace_map with chunks allowed to exceed the buffer.
    let oversized = admin.clone().with_max_chunk_bytes(64 * 1024);
    let err = oversized.replace_map(&routes, &entries).await.unwrap_err();
    assert!(matches!(err, AdminError::PayloadDropped { .. }), "{err}");
    assert!(err.to_string().contains("tune.bufsize"), "{err}");

    assert_eq!(
        admin.show_map(&routes).await.unwrap(),
        original,
        "live map changed"
    );
    let after = admin.map_info(&routes).await.unwrap();
    assert_eq!(after.curr_ver, before.curr_ver, "a version was committed");
    assert_eq!(
        after.entry_cnt, before.entry_cnt,
        "the abandoned version was not cleared"
    );
    assert_eq!(site.body_for("green.example").await, "green");

    // The normal chunking still works afterwards.
    let stats = admin.replace_map(&routes, &entries).await.unwrap();
    assert!(stats.chunks >= 4, "{stats:?}");
    assert_eq!(admin.show_map(&routes).await.unwrap(), entries);
}

#[tokio::test]
async fn reload_through_master_starts_a_new_worker() {
    let binary = require_proxy!("haproxy");
    let site = Site::start(&binary);
    let master = site.haproxy.master();

    let before = master.show_proc().await.unwrap();
    assert_eq!(before.master_pid, site.haproxy.master_pid());
    assert_eq!(before.workers.len(), 1);

    let outcome = master.reload(RELOAD_WITHIN).await.unwrap();
    eprintln!("reload confirmed: {outcome:?}");
    assert_eq!(outcome.previous_reloads, before.reloads);
    assert_eq!(outcome.reloads, before.reloads + 1);
    assert_eq!(outcome.new_worker_pids.len(), 1);
    assert!(!before.worker_pids().contains(&outcome.new_worker_pids[0]));
    assert!(outcome.worker_pids.contains(&outcome.new_worker_pids[0]));
    assert_eq!(outcome.table.failed, 0);
    assert_eq!(site.body_for("green.example").await, "green");

    // Runtime changes are lost on reload: the map is back to its file.
    let admin = site.haproxy.admin();
    assert_eq!(
        admin.show_map(&site.map(ROUTES_MAP)).await.unwrap().len(),
        2
    );
}

#[tokio::test]
async fn reload_with_a_broken_config_fails_and_the_old_worker_serves() {
    let binary = require_proxy!("haproxy");
    let site = Site::start(&binary);
    let master = site.haproxy.master();
    let before = master.show_proc().await.unwrap();
    let good_config = site.haproxy.config_text();

    site.haproxy.write_config(&format!(
        "{good_config}\nbackend be_broken\n    this-is-not-a-keyword\n"
    ));
    let err = master.reload(RELOAD_WITHIN).await.unwrap_err();
    match &err {
        MasterError::ReloadFailed { table, .. } => {
            assert_eq!(table.reloads, before.reloads + 1);
            assert!(table.failed > 0);
            assert_eq!(
                table.worker_pids(),
                before.worker_pids(),
                "old worker replaced"
            );
            assert_eq!(table.current_workers()[0].reloads, 1);
        }
        other => panic!("expected ReloadFailed, got {other:?}"),
    }
    assert!(err.to_string().contains("reload failed"), "{err}");
    assert_eq!(site.body_for("green.example").await, "green");
    assert!(site.haproxy.is_running());
    // 2.7+ keeps the failed load's log (what explains a failed reload someone else asked
    // for); 2.6's master has no such command.
    match master.startup_logs().await.unwrap() {
        Some(logs) => assert!(logs.contains("this-is-not-a-keyword"), "{logs}"),
        None => assert!(before.workers[0].version.starts_with("2.6"), "{before:?}"),
    }

    // Fixing the config makes the next reload succeed and resets the failure count.
    site.haproxy.write_config(&good_config);
    let outcome = master.reload(RELOAD_WITHIN).await.unwrap();
    assert_eq!(outcome.table.failed, 0);
    assert_eq!(outcome.reloads, before.reloads + 2);
    assert_eq!(site.body_for("blue.example").await, "blue");
}

/// A reload asked for while another one runs waits for it: 3.2 answers "Another reload is
/// still in progress.", 2.6 and 3.0 refuse connections while the master re-executes. Both
/// are retried within the deadline, and both reloads happen.
#[tokio::test]
async fn a_reload_while_another_runs_waits_for_it() {
    let binary = require_proxy!("haproxy");
    let site = Site::start(&binary);
    let master = site.haproxy.master();
    let before = master.show_proc().await.unwrap();

    // A map big enough that loading the config takes a noticeable time.
    let slow = site.haproxy.paths().file("slow.map");
    let mut text = String::with_capacity(40 << 20);
    for i in 0..1_000_000 {
        text.push_str(&format!("key{i}.example.com be{}\n", i % 7));
    }
    std::fs::write(&slow, text).unwrap();
    let good_config = site.haproxy.config_text();
    site.haproxy.write_config(&format!(
        "{good_config}\nbackend be_slow\n    http-request set-header X-Slow %[str(x),map({},none)]\n",
        slow.display()
    ));

    // The foreign reload: 2.6 answers at once, 2.7+ when the new worker is up.
    let foreign = {
        let master = master.clone();
        tokio::spawn(async move { master.command("reload").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let outcome = master.reload(RELOAD_WITHIN).await.unwrap();
    eprintln!("reload after {:?}: {outcome:?}", started.elapsed());
    let _ = foreign.await.unwrap();
    assert_eq!(outcome.table.failed, 0);
    assert_eq!(outcome.reloads, before.reloads + 2, "{outcome:?}");
    assert_eq!(site.body_for("green.example").await, "green");
}

/// A reload through the agent's `Proxy` is done only once the admin socket answers from a
/// new worker (3.1+ lists the new worker in `show proc` before it serves), and it teaches
/// the agent the running version.
#[tokio::test]
async fn a_reload_is_done_when_a_new_worker_answers_the_admin_socket() {
    use cutover::proxy::Proxy as _;
    let binary = require_proxy!("haproxy");
    let site = Site::start(&binary);
    let paths = site.haproxy.paths();
    let proxy = cutover::proxy::haproxy::Haproxy::new(&cutover::config::Proxy {
        kind: cutover::config::ProxyKind::Haproxy,
        binary: binary.clone(),
        config: paths.config.clone(),
        admin_socket: Some(paths.admin_socket.clone()),
        master_socket: Some(paths.master_socket.clone()),
        nginx: None,
        map_dir: paths.dir.clone(),
        reload_timeout: RELOAD_WITHIN,
        command_timeout: Duration::from_secs(5),
        min_reload_gap: Duration::ZERO,
    });
    let admin = site.haproxy.admin();
    for _ in 0..3 {
        let report = proxy.reload(0).await.unwrap();
        let answering = admin.info().await.unwrap();
        assert!(
            report.workers.contains(&answering.pid),
            "{report:?}, admin socket answered by {answering:?}"
        );
    }
    let (version, warnings) = proxy.version_report();
    let banner = std::process::Command::new(&binary)
        .arg("-v")
        .output()
        .unwrap();
    let version = version.expect("version learned by the reload");
    assert!(
        String::from_utf8_lossy(&banner.stdout).contains(&version),
        "{version}"
    );
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[tokio::test]
async fn a_foreign_reload_moves_the_epoch() {
    let binary = require_proxy!("haproxy");
    let site = Site::start(&binary);
    let master = site.haproxy.master();
    let before = master.show_proc().await.unwrap();

    site.haproxy.signal(Signal::SIGUSR2);
    let deadline = Instant::now() + RELOAD_WITHIN;
    let after = loop {
        // The master re-executes: its socket may refuse connections for a moment.
        if let Ok(table) = master.show_proc().await {
            if table.reloads > before.reloads && table.newest_workers().count() > 0 {
                break table;
            }
        }
        assert!(Instant::now() < deadline, "reload counter did not move");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(after.epoch(), before.epoch());
    assert_eq!(after.master_pid, before.master_pid);
    assert_eq!(master.epoch().await.unwrap(), after.epoch());
    assert!(after
        .newest_workers()
        .all(|w| !before.worker_pids().contains(&w.pid)));
}

#[tokio::test]
async fn weight_and_state_helpers_show_in_servers_state() {
    let binary = require_proxy!("haproxy");
    let site = Site::start(&binary);
    let admin = site.haproxy.admin();
    let row = |rows: Vec<cutover::proxy::haproxy::reply::ServerState>| {
        rows.into_iter()
            .find(|r| r.server == SERVER)
            .expect("server row")
    };

    let initial = row(admin.servers_state(BLUE_BACKEND).await.unwrap());
    assert_eq!(
        (
            initial.backend.as_str(),
            initial.user_weight,
            initial.admin_state
        ),
        (BLUE_BACKEND, 1, 0)
    );

    admin.set_weight(BLUE_BACKEND, SERVER, 7).await.unwrap();
    assert_eq!(
        row(admin.servers_state(BLUE_BACKEND).await.unwrap()).user_weight,
        7
    );

    admin
        .set_server_state(BLUE_BACKEND, SERVER, ServerAdminState::Drain)
        .await
        .unwrap();
    assert!(row(admin.servers_state(BLUE_BACKEND).await.unwrap()).is_drain());

    admin
        .set_server_state(BLUE_BACKEND, SERVER, ServerAdminState::Maint)
        .await
        .unwrap();
    assert!(row(admin.servers_state(BLUE_BACKEND).await.unwrap()).is_maint());
    let (status, _) = get(site.haproxy.frontend(), "blue.example").await.unwrap();
    assert_eq!(status, 503, "a server in maintenance takes no traffic");

    admin
        .set_server_state(BLUE_BACKEND, SERVER, ServerAdminState::Ready)
        .await
        .unwrap();
    let ready = row(admin.servers_state(BLUE_BACKEND).await.unwrap());
    assert_eq!(ready.admin_state, 0);
    assert_eq!(site.body_for("blue.example").await, "blue");

    // The green backend was not touched.
    assert_eq!(
        row(admin.servers_state(GREEN_BACKEND).await.unwrap()).admin_state,
        0
    );
    let err = admin.servers_state("be/x").await.unwrap_err();
    assert!(matches!(err, AdminError::InvalidArgument { .. }), "{err}");
    let err = admin.servers_state("be_none").await.unwrap_err();
    assert!(matches!(err, AdminError::Refused { .. }), "{err}");
}

/// The largest maps cutover is meant for; slow in debug builds, so opt-in:
/// `cargo test --release -p cutover-tests --test haproxy_client -- --ignored`.
#[tokio::test]
#[ignore = "one million entries: run with --ignored, preferably in release mode"]
async fn replace_map_with_1m_entries() {
    let binary = require_proxy!("haproxy");
    let site = Site::start(&binary);
    let admin = site.haproxy.admin();
    let routes = site.map(ROUTES_MAP);

    let entries = many_entries(1_000_000);
    let stats = admin.replace_map(&routes, &entries).await.unwrap();
    eprintln!("replace_map of 1000000 entries: {stats:?}");
    let started = Instant::now();
    let live = admin.show_map(&routes).await.unwrap();
    eprintln!("show_map of 1000000 entries: {:?}", started.elapsed());
    assert!(live == entries, "live map differs from what was written");
    assert_eq!(site.body_for("host-0999999.example").await, "green");
}
