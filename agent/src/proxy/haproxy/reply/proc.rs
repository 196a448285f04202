//! Replies of the master CLI: the process table of `show proc` and the verdict HAProxy
//! 2.7+ gives to `reload`.

use super::ReplyError;

/// One process line of `show proc` on the master CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcEntry {
    /// Process id.
    pub pid: u32,
    /// `worker` (or a program name's type column).
    pub kind: String,
    /// The `<reloads>` column: for a worker, how many reloads it has survived (0 = newest).
    pub reloads: u64,
    /// Uptime as HAProxy prints it, e.g. `0d00h00m35s`.
    pub uptime: String,
    /// HAProxy version of that process.
    pub version: String,
}

/// The master's process table from `show proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcTable {
    /// PID of the master process (stable across reloads: the master re-executes itself).
    pub master_pid: u32,
    /// Reloads of the master since start (successful or not, including foreign `SIGUSR2`).
    /// Together with [`ProcTable::worker_pids`] this is the "epoch" callers compare to notice
    /// reloads they did not make.
    pub reloads: u64,
    /// Failed reloads since the last successful one (`[failed: N]`; 0 after a good reload).
    /// 0 when the HAProxy version does not print it.
    pub failed: u64,
    /// Workers listed under `# workers`, as printed. Use [`ProcTable::current_workers`]
    /// for the serving ones: after a failed reload HAProxy 3.2 leaves this section empty.
    pub workers: Vec<ProcEntry>,
    /// Workers listed under `# old workers`: previous generations still finishing their
    /// connections, and (HAProxy 3.2) the worker kept by a failed reload. HAProxy 2.6 and
    /// 3.0 keep that worker under `# workers` with `reloads` > 0.
    pub old_workers: Vec<ProcEntry>,
}

/// What identifies the running generation of an HAProxy master: it changes on every
/// reload (ours, a foreign `kill -USR2`, a failed one) and when the master is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcEpoch {
    /// PID of the master process.
    pub master_pid: u32,
    /// The master's reload counter.
    pub reloads: u64,
}

impl ProcTable {
    /// The generation this table shows; compare two to detect reloads in between.
    pub fn epoch(&self) -> ProcEpoch {
        ProcEpoch {
            master_pid: self.master_pid,
            reloads: self.reloads,
        }
    }

    /// The serving workers, in both layouts: the `# workers` section when it lists any
    /// (HAProxy 2.6, 3.0, and 3.2 after a good reload); otherwise the youngest generation
    /// of `# old workers` (the fewest reloads survived), which is where HAProxy 3.2 lists
    /// the worker kept by a failed reload.
    pub fn current_workers(&self) -> Vec<&ProcEntry> {
        if !self.workers.is_empty() {
            return self.workers.iter().collect();
        }
        let youngest = self.old_workers.iter().map(|w| w.reloads).min();
        self.old_workers
            .iter()
            .filter(|w| Some(w.reloads) == youngest)
            .collect()
    }

    /// PIDs of the serving workers ([`ProcTable::current_workers`]).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.current_workers().iter().map(|w| w.pid).collect()
    }

    /// Workers started by the latest successful reload (`reloads` column 0).
    pub fn newest_workers(&self) -> impl Iterator<Item = &ProcEntry> {
        self.workers.iter().filter(|w| w.reloads == 0)
    }
}

/// Parses `show proc`. Sections other than the master line, `# workers` and `# old workers`
/// (e.g. `# programs`) are skipped.
pub fn parse_show_proc(reply: &str) -> Result<ProcTable, ReplyError> {
    const WHAT: &str = "show proc";
    #[derive(PartialEq)]
    enum Section {
        Master,
        Workers,
        OldWorkers,
        Other,
    }
    let mut lines = reply.lines();
    match lines.next() {
        Some(header) if header.starts_with("#<PID>") => {}
        Some(_) => return Err(ReplyError::refused(reply)),
        None => return Err(ReplyError::Empty),
    }
    let mut section = Section::Master;
    let mut master: Option<(u32, u64, u64)> = None;
    let mut workers = Vec::new();
    let mut old_workers = Vec::new();
    for line in lines {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('#') {
            section = match name.trim() {
                "workers" => Section::Workers,
                "old workers" => Section::OldWorkers,
                _ => Section::Other,
            };
            continue;
        }
        let bad = || ReplyError::unexpected(WHAT, line);
        match section {
            Section::Master => {
                let f: Vec<&str> = trimmed.split_ascii_whitespace().collect();
                if f.get(1) != Some(&"master") {
                    return Err(bad());
                }
                let pid = f[0].parse().map_err(|_| bad())?;
                let reloads = f.get(2).and_then(|r| r.parse().ok()).ok_or_else(bad)?;
                let failed = match trimmed.split_once("[failed:") {
                    Some((_, rest)) => rest
                        .split(']')
                        .next()
                        .and_then(|n| n.trim().parse().ok())
                        .ok_or_else(bad)?,
                    None => 0,
                };
                master = Some((pid, reloads, failed));
            }
            Section::Workers | Section::OldWorkers => {
                let f: Vec<&str> = trimmed.split_ascii_whitespace().collect();
                let entry = (|| {
                    Some(ProcEntry {
                        pid: f.first()?.parse().ok()?,
                        kind: (*f.get(1)?).to_owned(),
                        reloads: f.get(2)?.parse().ok()?,
                        uptime: f.get(3).copied().unwrap_or_default().to_owned(),
                        version: f.get(4).copied().unwrap_or_default().to_owned(),
                    })
                })()
                .ok_or_else(bad)?;
                if section == Section::Workers {
                    workers.push(entry);
                } else {
                    old_workers.push(entry);
                }
            }
            Section::Other => {}
        }
    }
    let (master_pid, reloads, failed) =
        master.ok_or_else(|| ReplyError::unexpected(WHAT, reply))?;
    Ok(ProcTable {
        master_pid,
        reloads,
        failed,
        workers,
        old_workers,
    })
}

/// The verdict HAProxy 2.7+ prints in answer to `reload` (`Success=1` / `Success=0`).
/// `None` when the reply carries none (HAProxy 2.6 answers nothing).
pub fn parse_reload_verdict(reply: &str) -> Option<bool> {
    reply.lines().find_map(|line| match line.trim() {
        "Success=1" => Some(true),
        "Success=0" => Some(false),
        _ => None,
    })
}

/// True when the master refused `reload` because another one runs (3.2: "Another reload is
/// still in progress.", with `Success=0`): nothing was reloaded, try again later.
pub fn is_reload_busy(reply: &str) -> bool {
    reply.contains("Another reload is still in progress")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_proc_2_6() {
        let reply =
            "#<PID>          <type>          <reloads>       <uptime>        <version>      \n\
            2415            master          3 [failed: 0]   0d00h00m35s     2.6.12-1+deb12u4\n\
            # workers\n\
            2658            worker          0               0d00h00m05s     2.6.12-1+deb12u4\n\
            # old workers\n\
            2233            worker          1               0d00h00m05s     2.6.12-1+deb12u4\n\
            # programs\n\
            \n";
        let table = parse_show_proc(reply).unwrap();
        assert_eq!(table.master_pid, 2415);
        assert_eq!(
            table.epoch(),
            ProcEpoch {
                master_pid: 2415,
                reloads: 3
            }
        );
        assert_eq!(table.reloads, 3);
        assert_eq!(table.failed, 0);
        assert_eq!(table.worker_pids(), vec![2658]);
        assert_eq!(table.workers[0].uptime, "0d00h00m05s");
        assert_eq!(table.old_workers.len(), 1);
        assert_eq!(table.old_workers[0].pid, 2233);
        assert_eq!(table.old_workers[0].reloads, 1);

        let failed = "#<PID> <type> <reloads> <uptime> <version>\n\
            2415 master 4 [failed: 1] 0d00h01m00s 2.6.12\n# workers\n2658 worker 1 0d00h00m30s 2.6.12\n# programs\n\n";
        let table = parse_show_proc(failed).unwrap();
        assert_eq!((table.reloads, table.failed), (4, 1));
        assert_eq!(table.newest_workers().count(), 0);
    }

    /// After a failed reload, 3.2 lists the surviving worker under `# old workers` only.
    #[test]
    fn show_proc_3_2_after_a_failed_reload() {
        let reply =
            "#<PID>          <type>          <reloads>       <uptime>        <version>      \n\
            3001            master          1 [failed: 1]   0d00h00m03s     3.2.9-1\n\
            # workers\n\
            # old workers\n\
            3010            worker          1               0d00h00m03s     3.2.9-1\n\
            # programs\n\
            \n";
        let table = parse_show_proc(reply).unwrap();
        assert!(table.workers.is_empty());
        assert_eq!((table.reloads, table.failed), (1, 1));
        assert_eq!(table.worker_pids(), vec![3010]);
        assert_eq!(table.current_workers()[0].reloads, 1);
        assert_eq!(table.newest_workers().count(), 0);
        // Two draining generations: only the younger one serves.
        let mut older = table.old_workers[0].clone();
        older.pid = 2990;
        older.reloads = 2;
        let mut two = table.clone();
        two.old_workers.push(older);
        assert_eq!(two.worker_pids(), vec![3010]);
        // A good reload lists the new worker under `# workers` again.
        let mut good = table.clone();
        good.workers = vec![ProcEntry {
            pid: 3020,
            ..table.old_workers[0].clone()
        }];
        assert_eq!(good.worker_pids(), vec![3020]);
    }

    #[test]
    fn show_proc_without_failed_counter_and_errors() {
        let reply = "#<PID> <type> <reloads> <uptime> <version>\n10 master 0 0d00h00m01s 2.4.0\n# workers\n11 worker 0 0d00h00m01s 2.4.0\n\n";
        let table = parse_show_proc(reply).unwrap();
        assert_eq!((table.master_pid, table.reloads, table.failed), (10, 0, 0));
        assert_eq!(parse_show_proc(""), Err(ReplyError::Empty));
        assert!(matches!(
            parse_show_proc("Unknown command\n\n"),
            Err(ReplyError::Refused { .. })
        ));
        assert!(matches!(
            parse_show_proc("#<PID> <type>\n# workers\n11 worker 0 x y\n\n"),
            Err(ReplyError::Unexpected { .. })
        ));
        assert!(matches!(
            parse_show_proc("#<PID> <type>\n10 master x\n\n"),
            Err(ReplyError::Unexpected { .. })
        ));
    }

    #[test]
    fn reload_verdict() {
        assert_eq!(parse_reload_verdict(""), None);
        assert_eq!(
            parse_reload_verdict("Success=1\n--\n[NOTICE] loading\n"),
            Some(true)
        );
        assert_eq!(
            parse_reload_verdict("Success=0\n--\n[ALERT] bad\n"),
            Some(false)
        );
        let busy = "Success=0\n--\nAnother reload is still in progress.\n\n";
        assert!(is_reload_busy(busy));
        assert!(!is_reload_busy("Success=0\n--\n[ALERT] bad\n"));
    }
}
