//! A reload through the master CLI, confirmed by reading the process table back until the
//! reload counter moved and a new worker runs, or the master reports the reload failed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::{MasterClient, MasterError, MAX_REPLY_BYTES};
use crate::proxy::haproxy::oneshot::{into_string, is_reset, open_oneshot, read_to_end, Exchange};
use crate::proxy::haproxy::reply::{self, ProcTable, ReplyError};

/// First pause between two `show proc` polls while a reload is confirmed (20 ms); it doubles
/// up to [`RELOAD_POLL_MAX`].
pub const RELOAD_POLL_START: Duration = Duration::from_millis(20);

/// Longest pause between two `show proc` polls while a reload is confirmed (250 ms).
pub const RELOAD_POLL_MAX: Duration = Duration::from_millis(250);

/// Shortest bound on one `show proc` while confirming a reload, even past the deadline, so
/// the last poll can still answer (50 ms).
const MIN_POLL_TIMEOUT: Duration = Duration::from_millis(50);

/// A confirmed reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// The master's reload counter before the reload.
    pub previous_reloads: u64,
    /// The master's reload counter after it (more than `previous_reloads + 1` when someone
    /// else reloaded meanwhile).
    pub reloads: u64,
    /// PIDs of the workers started by this reload.
    pub new_worker_pids: Vec<u32>,
    /// PIDs of all current workers (section `# workers`) after the reload.
    pub worker_pids: Vec<u32>,
    /// The process table that confirmed the reload.
    pub table: ProcTable,
    /// Wall time from sending `reload` to its confirmation.
    pub elapsed: Duration,
}

impl MasterClient {
    /// Reloads HAProxy and waits, at most `within` in total, until the reload is confirmed:
    /// the reload counter moved, no reload failed, and a worker that did not exist before
    /// runs with a reload count of 0. HAProxy 2.7+ answers `Success=0/1` itself, which is
    /// used too; 2.6 answers nothing and re-executes the master, during which the socket
    /// refuses connections for a moment (retried with a backoff from [`RELOAD_POLL_START`]
    /// to [`RELOAD_POLL_MAX`]).
    ///
    /// While another reload runs (a foreign one: `kill -USR2`, systemd, another client),
    /// the master is busy: 3.2 answers "Another reload is still in progress.", 2.6 and 3.0
    /// refuse connections while they re-execute. Both are retried with the same backoff
    /// until the deadline.
    ///
    /// Errors: [`MasterError::ReloadFailed`] (old workers keep serving),
    /// [`MasterError::ReloadUnconfirmed`] (deadline), [`MasterError::Busy`] (another reload
    /// kept the master busy until the deadline; ours was not done), or a connection error
    /// before the reload was sent.
    pub async fn reload(&self, within: Duration) -> Result<ReloadOutcome, MasterError> {
        let deadline = Instant::now() + within;
        let (before, sent, reply) = self.send_reload(deadline).await?;
        let verdict = reply::parse_reload_verdict(&reply);
        let reply_text = (!reply.trim().is_empty()).then(|| reply::clip(&reply).to_owned());

        let mut pause = RELOAD_POLL_START;
        let mut last: String;
        loop {
            let poll_timeout = self.timeout.min(remaining(deadline)).max(MIN_POLL_TIMEOUT);
            match self.show_proc_within(poll_timeout).await {
                Ok(table) => match (verdict, judge_reload(&before, &table)) {
                    (Some(false), _) | (_, Progress::Failed) => {
                        return Err(MasterError::ReloadFailed {
                            path: self.path.clone(),
                            table,
                            reply: reply_text,
                        })
                    }
                    (_, Progress::Done(new_worker_pids)) => {
                        return Ok(ReloadOutcome {
                            previous_reloads: before.reloads,
                            reloads: table.reloads,
                            new_worker_pids,
                            worker_pids: table.worker_pids(),
                            elapsed: sent.elapsed(),
                            table,
                        })
                    }
                    (_, Progress::Pending) => last = format!("{table:?}"),
                },
                // While the master re-executes: refused, missing socket, reset, empty reply.
                Err(err) => last = err.to_string(),
            }
            let left = remaining(deadline);
            if left.is_zero() {
                return Err(MasterError::ReloadUnconfirmed {
                    path: self.path.clone(),
                    waited: sent.elapsed(),
                    last,
                    reply: reply_text,
                });
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(RELOAD_POLL_MAX);
        }
    }
}

impl MasterClient {
    /// Reads the process table and sends `reload`, again and again while the master is
    /// busy with another reload, until the deadline. Returns the table read just before the
    /// reload that was taken, when it was sent, and the master's reply to it.
    async fn send_reload(
        &self,
        deadline: Instant,
    ) -> Result<(ProcTable, Instant, String), MasterError> {
        const RELOAD: &str = "reload";
        let first = Instant::now();
        let mut pause = RELOAD_POLL_START;
        loop {
            let attempt = async {
                let before = self
                    .show_proc_within(self.timeout.min(remaining(deadline)).max(MIN_POLL_TIMEOUT))
                    .await?;
                let sent = Instant::now();
                let reply = match open_oneshot(&self.path, &[b"reload\n"], self.timeout).await {
                    Err(e @ (Exchange::Connect(_) | Exchange::Timeout)) => {
                        return Err(self.exchange_error(RELOAD, e, self.timeout))
                    }
                    Err(Exchange::Io(e)) if !is_reset(&e) => {
                        return Err(self.exchange_error(RELOAD, Exchange::Io(e), self.timeout))
                    }
                    // Reset while writing: the master may already be re-executing; confirm
                    // below.
                    Err(_) => String::new(),
                    Ok(mut stream) => {
                        // 2.7+ answers once the new worker is up or failed: allow the whole
                        // budget.
                        let wait = remaining(deadline).max(Duration::from_millis(1));
                        match read_to_end(&mut stream, wait, MAX_REPLY_BYTES).await {
                            Ok(bytes) => into_string(bytes),
                            // 2.6 re-executes the master, which may cut the connection.
                            Err(_) => String::new(),
                        }
                    }
                };
                Ok((before, sent, reply))
            };
            let busy = match attempt.await {
                Ok((_, _, ref reply)) if reply::is_reload_busy(reply) => reply::clip(reply.trim())
                    .lines()
                    .filter(|l| *l != "--" && !l.starts_with("Success="))
                    .collect::<Vec<_>>()
                    .join(" "),
                Ok(done) => return Ok(done),
                Err(err) if is_refused(&err) => err.to_string(),
                Err(err) => return Err(err),
            };
            let left = remaining(deadline);
            if left.is_zero() {
                return Err(MasterError::Busy {
                    path: self.path.clone(),
                    waited: first.elapsed(),
                    last: busy,
                });
            }
            tracing::debug!(%busy, "haproxy master busy with another reload; retrying");
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(RELOAD_POLL_MAX);
        }
    }
}

/// What a reload in progress looks like on 2.6 and 3.0, where the master re-executes: a
/// refused connection, or one reset or closed without an answer. A missing socket is not
/// retried.
fn is_refused(err: &MasterError) -> bool {
    match err {
        MasterError::Connect { source, .. } => {
            source.kind() == std::io::ErrorKind::ConnectionRefused
        }
        MasterError::Io { source, .. } => is_reset(source),
        MasterError::UnexpectedReply { source, .. } => *source == ReplyError::Empty,
        _ => false,
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Where a reload stands, judged from the process tables before and after it.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    /// Counter not moved yet, or moved without a new worker yet.
    Pending,
    /// Counter moved, no failure, these workers are new.
    Done(Vec<u32>),
    /// Counter moved and the master reports a failed reload.
    Failed,
}

fn judge_reload(before: &ProcTable, now: &ProcTable) -> Progress {
    if now.master_pid != before.master_pid || now.reloads <= before.reloads {
        return Progress::Pending;
    }
    if now.failed > 0 {
        return Progress::Failed;
    }
    let known: HashSet<u32> = before
        .workers
        .iter()
        .chain(&before.old_workers)
        .map(|w| w.pid)
        .collect();
    let new: Vec<u32> = now
        .newest_workers()
        .map(|w| w.pid)
        .filter(|pid| !known.contains(pid))
        .collect();
    if new.is_empty() {
        Progress::Pending
    } else {
        Progress::Done(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::haproxy::reply::ProcEntry;

    fn worker(pid: u32, reloads: u64) -> ProcEntry {
        ProcEntry {
            pid,
            kind: "worker".into(),
            reloads,
            uptime: "0d00h00m01s".into(),
            version: "2.6.12".into(),
        }
    }

    fn table(reloads: u64, failed: u64, workers: Vec<ProcEntry>) -> ProcTable {
        ProcTable {
            master_pid: 100,
            reloads,
            failed,
            workers,
            old_workers: vec![],
        }
    }

    #[test]
    fn reload_confirmed_by_counter_and_new_worker() {
        let before = table(3, 0, vec![worker(200, 0)]);
        assert_eq!(judge_reload(&before, &before), Progress::Pending);
        // Counter moved, the new worker is not listed yet.
        let moving = table(4, 0, vec![worker(200, 1)]);
        assert_eq!(judge_reload(&before, &moving), Progress::Pending);
        let mut done = table(4, 0, vec![worker(300, 0)]);
        done.old_workers = vec![worker(200, 1)];
        assert_eq!(judge_reload(&before, &done), Progress::Done(vec![300]));
    }

    #[test]
    fn reload_failure_and_restarted_master() {
        let before = table(3, 0, vec![worker(200, 0)]);
        let failed = table(4, 1, vec![worker(200, 1)]);
        assert_eq!(judge_reload(&before, &failed), Progress::Failed);
        // A previous failure does not count until the counter moves; a good reload resets it.
        let before_failed = table(4, 1, vec![worker(200, 1)]);
        assert_eq!(
            judge_reload(&before_failed, &before_failed),
            Progress::Pending
        );
        assert_eq!(
            judge_reload(&before_failed, &table(5, 0, vec![worker(300, 0)])),
            Progress::Done(vec![300])
        );
        let mut restarted = table(9, 0, vec![worker(400, 0)]);
        restarted.master_pid = 101;
        assert_eq!(judge_reload(&before, &restarted), Progress::Pending);
    }

    #[tokio::test]
    async fn unreachable_master_names_the_socket_and_sends_nothing() {
        let client = MasterClient::new("/nonexistent/master.sock");
        let err = client.reload(Duration::from_millis(200)).await.unwrap_err();
        assert!(matches!(err, MasterError::Connect { .. }), "{err}");
        assert!(
            err.to_string().contains("/nonexistent/master.sock"),
            "{err}"
        );
    }

    /// One scripted exchange of a fake master: the command expected, the reply, and whether
    /// the socket then disappears for a moment (as while a 2.6 master re-executes).
    struct Step(&'static str, String, bool);

    const PROC_BEFORE: &str = "#<PID> <type> <reloads> <uptime> <version>\n\
        100 master 3 [failed: 0] 0d00h01m00s 2.8.0\n# workers\n200 worker 0 0d00h01m00s 2.8.0\n\n";
    const PROC_AFTER: &str = "#<PID> <type> <reloads> <uptime> <version>\n\
        100 master 4 [failed: 0] 0d00h01m01s 2.8.0\n# workers\n300 worker 0 0d00h00m00s 2.8.0\n\
        # old workers\n200 worker 1 0d00h01m01s 2.8.0\n\n";
    const PROC_FAILED: &str = "#<PID> <type> <reloads> <uptime> <version>\n\
        100 master 4 [failed: 1] 0d00h01m01s 2.8.0\n# workers\n200 worker 1 0d00h01m01s 2.8.0\n\n";

    /// Serves `steps` in order on `path`, one connection each, checking each command.
    fn fake_master(path: std::path::PathBuf, steps: Vec<Step>) -> tokio::task::JoinHandle<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            for Step(expected, reply, vanish) in steps {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut command = String::new();
                stream.read_to_string(&mut command).await.unwrap();
                assert_eq!(command, format!("{expected}\n"));
                stream.write_all(reply.as_bytes()).await.unwrap();
                drop(stream);
                if vanish {
                    drop(listener);
                    std::fs::remove_file(&path).unwrap();
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    listener = tokio::net::UnixListener::bind(&path).unwrap();
                }
            }
        })
    }

    #[tokio::test]
    async fn reload_2_6_style_retries_while_the_socket_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.sock");
        let server = fake_master(
            path.clone(),
            vec![
                Step("show proc", PROC_BEFORE.into(), false),
                Step("reload", String::new(), true),
                Step("show proc", PROC_AFTER.into(), false),
            ],
        );
        let outcome = MasterClient::new(&path)
            .reload(Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!((outcome.previous_reloads, outcome.reloads), (3, 4));
        assert_eq!(outcome.new_worker_pids, vec![300]);
        assert_eq!(outcome.worker_pids, vec![300]);
        assert!(outcome.elapsed >= Duration::from_millis(100), "{outcome:?}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn reload_2_7_style_uses_the_success_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.sock");
        let server = fake_master(
            path.clone(),
            vec![
                Step("show proc", PROC_BEFORE.into(), false),
                Step("reload", "Success=1\n--\n[NOTICE] loading\n".into(), false),
                Step("show proc", PROC_AFTER.into(), false),
            ],
        );
        let client = MasterClient::new(&path);
        let outcome = client.reload(Duration::from_secs(5)).await.unwrap();
        assert_eq!(outcome.new_worker_pids, vec![300]);
        server.await.unwrap();

        let path = dir.path().join("master2.sock");
        let server = fake_master(
            path.clone(),
            vec![
                Step("show proc", PROC_BEFORE.into(), false),
                Step(
                    "reload",
                    "Success=0\n--\n[ALERT] parsing error\n".into(),
                    false,
                ),
                Step("show proc", PROC_FAILED.into(), false),
            ],
        );
        let err = MasterClient::new(&path)
            .reload(Duration::from_secs(5))
            .await
            .unwrap_err();
        match &err {
            MasterError::ReloadFailed { table, reply, .. } => {
                assert_eq!((table.reloads, table.failed), (4, 1));
                assert!(reply.as_deref().unwrap_or("").contains("parsing error"));
            }
            other => panic!("expected ReloadFailed, got {other:?}"),
        }
        assert!(err.to_string().contains("[ALERT] parsing error"), "{err}");
        server.await.unwrap();
    }

    /// 3.2 while a foreign reload runs: "Another reload is still in progress." is retried,
    /// never taken for a failed reload; when it lasts past the deadline, that is the error.
    #[tokio::test]
    async fn a_busy_master_is_retried_and_named_when_it_stays_busy() {
        const BUSY: &str = "Success=0\n--\nAnother reload is still in progress.\n\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.sock");
        let server = fake_master(
            path.clone(),
            vec![
                Step("show proc", PROC_BEFORE.into(), false),
                Step("reload", BUSY.into(), false),
                Step("show proc", PROC_BEFORE.into(), false),
                Step("reload", "Success=1\n--\n[NOTICE] loading\n".into(), false),
                Step("show proc", PROC_AFTER.into(), false),
            ],
        );
        let outcome = MasterClient::new(&path)
            .reload(Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(outcome.new_worker_pids, vec![300]);
        server.await.unwrap();

        let path = dir.path().join("busy.sock");
        let mut steps = vec![];
        for _ in 0..50 {
            steps.push(Step("show proc", PROC_BEFORE.into(), false));
            steps.push(Step("reload", BUSY.into(), false));
        }
        let _server = fake_master(path.clone(), steps);
        let started = std::time::Instant::now();
        let err = MasterClient::new(&path)
            .reload(Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, MasterError::Busy { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("Another reload is still in progress"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn reload_that_never_shows_is_unconfirmed_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.sock");
        let mut steps = vec![
            Step("show proc", PROC_BEFORE.into(), false),
            Step("reload", String::new(), false),
        ];
        steps.extend((0..50).map(|_| Step("show proc", PROC_BEFORE.into(), false)));
        let _server = fake_master(path.clone(), steps);
        let started = std::time::Instant::now();
        let err = MasterClient::new(&path)
            .reload(Duration::from_millis(400))
            .await
            .unwrap_err();
        assert!(
            matches!(err, MasterError::ReloadUnconfirmed { .. }),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
