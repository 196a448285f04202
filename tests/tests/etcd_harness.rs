//! The etcd harness against real etcd 3.4: a member starts and serves reads and writes, a
//! three-member cluster elects a leader and keeps serving when the leader is killed, a
//! killed member comes back from its data directory, the whole cluster survives an outage,
//! and compaction moves the compact revision. Each test fails, not skips, when
//! `CUTOVER_REQUIRE_PROXIES=1` and etcd or etcdctl is missing.
// Test code: an `unwrap()` that fails is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use cutover_tests::etcd::ELECTION_MS;
use cutover_tests::{require_etcd, wait_until, EtcdCluster};

/// Bound on electing a new leader after the leader is killed, and then on writing again:
/// an election takes one to two election timeouts; the rest is slack for a loaded machine.
const FAILOVER_WITHIN: Duration = Duration::from_secs(5);

#[test]
fn a_single_member_serves_reads_and_writes() {
    let etcd = require_etcd!();
    let cluster = EtcdCluster::single(&etcd);
    assert_eq!(cluster.endpoints(), [cluster.member(0).client_url()]);
    assert_eq!(cluster.endpoints_csv(), cluster.member(0).client_url());
    assert!(cluster.member(0).data_dir().is_dir());
    assert_eq!(cluster.leader(), 0);
    assert!(cluster.member(0).is_leader());

    let before = cluster.revision();
    cluster.put("/routes/web", "blue");
    assert_eq!(cluster.revision(), before + 1);
    assert_eq!(cluster.get("/routes/web").as_deref(), Some("blue"));
    assert_eq!(cluster.get("/routes/missing"), None);

    // Values that look like flags or span lines go through unchanged.
    cluster.put("/routes/api", "-green\nsecond line");
    cluster.put("/routesX", "outside the prefix");
    assert_eq!(
        cluster.get_prefix("/routes/"),
        [
            ("/routes/api".to_owned(), "-green\nsecond line".to_owned()),
            ("/routes/web".to_owned(), "blue".to_owned()),
        ]
    );
    assert_eq!(cluster.get_prefix("/nothing/"), []);
}

#[test]
fn a_three_member_cluster_survives_losing_its_leader() {
    let etcd = require_etcd!();
    let mut cluster = EtcdCluster::three(&etcd);
    assert_eq!(cluster.endpoints().len(), 3);
    let leader = cluster.leader();
    cluster.put("/before", "1");
    let killed_pid = cluster.member(leader).pid();

    cluster.kill(leader);
    assert!(!cluster.member(leader).is_running());
    assert!(
        std::fs::metadata(format!("/proc/{killed_pid}")).is_err(),
        "etcd pid {killed_pid} still exists after kill"
    );
    // A write sent before the election may hang for etcdctl's whole command timeout: the
    // follower drops a proposal it forwarded to the dead leader. So wait for the new
    // leader first, then write.
    let killed = Instant::now();
    let new_leader = cluster.leader();
    let elected = killed.elapsed();
    assert_ne!(new_leader, leader);
    assert!(
        elected < FAILOVER_WITHIN,
        "leader {new_leader} elected {elected:?} after leader {leader} was killed \
         (election timeout {ELECTION_MS} ms)"
    );
    let mut last_error = String::new();
    let written = wait_until(FAILOVER_WITHIN, Duration::from_millis(50), || match cluster
        .try_put("/after", "2")
    {
        Ok(()) => true,
        Err(e) => {
            last_error = e;
            false
        }
    });
    assert!(
        written,
        "no write within {FAILOVER_WITHIN:?} of electing {new_leader}: {last_error}\n{}",
        cluster.logs()
    );
    eprintln!(
        "leader {leader} killed: {new_leader} elected after {elected:?}, written after {:?}",
        killed.elapsed()
    );

    cluster.restart(leader);
    assert!(cluster.member(leader).is_healthy());
    assert_ne!(cluster.member(leader).pid(), killed_pid);
    // The member caught up from its data directory and the leader's log.
    let from_restarted = cluster.etcdctl_for(leader);
    assert_eq!(from_restarted.get("/before").unwrap().as_deref(), Some("1"));
    assert_eq!(from_restarted.get("/after").unwrap().as_deref(), Some("2"));
    // Pre-vote: coming back did not depose the leader elected meanwhile.
    assert_eq!(cluster.leader(), new_leader);

    // A graceful stop of a follower leaves a quorum that serves.
    let follower = (0..3).find(|i| *i != new_leader).unwrap();
    cluster.stop(follower);
    assert!(!cluster.member(follower).is_running());
    cluster.put("/stopped", "3");
    cluster.restart(follower);
    assert_eq!(
        cluster
            .etcdctl_for(follower)
            .get("/stopped")
            .unwrap()
            .as_deref(),
        Some("3")
    );
}

#[test]
fn a_cluster_comes_back_after_a_full_outage() {
    let etcd = require_etcd!();
    let mut cluster = EtcdCluster::three(&etcd);
    cluster.put("/kept", "across the outage");
    let revision = cluster.revision();

    cluster.stop_all();
    assert!(cluster.members().iter().all(|m| !m.is_running()));
    // Nobody answers, within etcdctl's bounded timeouts.
    let direct = cutover_tests::etcd::ctl::Etcdctl::new(&etcd.etcdctl, cluster.endpoints());
    assert!(direct.put("/during", "outage").is_err());

    cluster.start_all();
    assert!(cluster.members().iter().all(|m| m.is_healthy()));
    assert_eq!(cluster.get("/kept").as_deref(), Some("across the outage"));
    assert_eq!(cluster.revision(), revision);
    cluster.put("/after", "outage");
    cluster.leader();
}

#[test]
fn compaction_moves_the_compact_revision() {
    let etcd = require_etcd!();
    let cluster = EtcdCluster::single(&etcd);
    for value in ["1", "2", "3"] {
        cluster.put("/counter", value);
    }
    assert_eq!(cluster.compact_revision(), 0);
    let old = cluster.revision() - 1;
    let at_old = ["get", "--rev", &old.to_string(), "--", "/counter"];
    assert_eq!(cluster.etcdctl().run(&at_old).unwrap(), "/counter\n2\n");

    let compacted = cluster.compact_to_current();
    assert_eq!(compacted, cluster.revision());
    assert_eq!(cluster.compact_revision(), compacted);
    let refused = cluster.etcdctl().run(&at_old).unwrap_err();
    assert!(refused.contains("compacted"), "{refused}");
    assert_eq!(cluster.get("/counter").as_deref(), Some("3"));
    // Again with no write in between: same revision, accepted.
    assert_eq!(cluster.compact_to_current(), compacted);

    cluster.put("/counter", "4");
    let later = cluster.compact_to_current();
    assert_eq!(later, compacted + 1);
    assert_eq!(cluster.compact_revision(), later);
}
