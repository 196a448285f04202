//! Pure parsers of the text HAProxy answers on its admin socket and master CLI (no I/O).
//!
//! Formats are those of HAProxy 2.6; where 2.7+ differs (the `reload` reply), both are
//! understood. Every parser either returns typed data or a [`ReplyError`] carrying the reply.

use thiserror::Error;

/// Longest piece of a reply kept inside an error, in bytes. Error replies of HAProxy are one
/// or two lines; anything longer is an unexpected reply and is cut here so errors stay small.
pub const MAX_REPLY_IN_ERROR: usize = 2048;

/// A reply that does not say what the caller needed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplyError {
    /// HAProxy answered with its own error text (e.g. `Key not found.`).
    #[error("HAProxy refused it: {reply}")]
    Refused {
        /// HAProxy's text, trimmed.
        reply: String,
    },
    /// Zero bytes: HAProxy dropped the command (e.g. its payload exceeded `tune.bufsize`).
    #[error("HAProxy sent an empty reply (command or payload dropped)")]
    Empty,
    /// A reply that is neither the expected format nor a recognisable error.
    #[error("unexpected reply ({what}): {reply:?}")]
    Unexpected {
        /// What was being parsed, e.g. `show map list`.
        what: &'static str,
        /// The reply (cut to [`MAX_REPLY_IN_ERROR`] bytes).
        reply: String,
    },
}

impl ReplyError {
    fn unexpected(what: &'static str, reply: &str) -> Self {
        ReplyError::Unexpected {
            what,
            reply: clip(reply).to_owned(),
        }
    }

    fn refused(reply: &str) -> Self {
        ReplyError::Refused {
            reply: clip(reply.trim()).to_owned(),
        }
    }
}

/// `reply` cut to at most [`MAX_REPLY_IN_ERROR`] bytes, on a character boundary.
pub fn clip(reply: &str) -> &str {
    if reply.len() <= MAX_REPLY_IN_ERROR {
        return reply;
    }
    let mut end = MAX_REPLY_IN_ERROR;
    while !reply.is_char_boundary(end) {
        end -= 1;
    }
    &reply[..end]
}

/// Checks the reply of a mutating command (`set map`, `add map`, `del map`, `commit map`,
/// `clear map`, `set weight`, `set server ... state`): success is exactly `"\n"`.
pub fn check_mutation(reply: &str) -> Result<(), ReplyError> {
    match reply {
        "\n" => Ok(()),
        "" => Err(ReplyError::Empty),
        text if text.trim().is_empty() => Err(ReplyError::unexpected("mutation", text)),
        text => Err(ReplyError::refused(text)),
    }
}

/// The version number in the reply to `prepare map`: `"New version created: 1\n\n"`.
pub fn parse_prepared_version(reply: &str) -> Result<u64, ReplyError> {
    if reply.is_empty() {
        return Err(ReplyError::Empty);
    }
    let line = reply.trim();
    match line.strip_prefix("New version created:") {
        Some(rest) => rest
            .trim()
            .parse()
            .map_err(|_| ReplyError::unexpected("prepare map", reply)),
        None => Err(ReplyError::refused(reply)),
    }
}

/// One map as listed by `show map` without argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapInfo {
    /// HAProxy's numeric id of the map (usable as `#<id>`).
    pub id: u32,
    /// The file name the map was loaded from, as written in the configuration.
    pub path: String,
    /// Version currently used for lookups.
    pub curr_ver: u64,
    /// Highest version handed out by `prepare map` (equal to `curr_ver` when none is pending).
    pub next_ver: u64,
    /// Entries of ALL versions held (current plus prepared ones).
    pub entry_cnt: u64,
}

/// Parses the map list of `show map`:
/// `# id (file) description` then one line per map, then a blank line.
pub fn parse_map_list(reply: &str) -> Result<Vec<MapInfo>, ReplyError> {
    const WHAT: &str = "show map list";
    let mut lines = reply.lines();
    match lines.next() {
        Some(header) if header.starts_with("# id") => {}
        Some(_) => return Err(ReplyError::refused(reply)),
        None => return Err(ReplyError::Empty),
    }
    let mut maps = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        maps.push(parse_map_list_line(line).ok_or_else(|| ReplyError::unexpected(WHAT, line))?);
    }
    Ok(maps)
}

fn parse_map_list_line(line: &str) -> Option<MapInfo> {
    let (id, rest) = line.split_once(' ')?;
    let rest = rest.strip_prefix('(')?;
    // The file name contains no ") " in practice; the description after it may contain
    // anything, so the counters are read from the end of the line.
    let (path, description) = rest.split_once(") ")?;
    let mut curr_ver = None;
    let mut next_ver = None;
    let mut entry_cnt = None;
    for word in description.split_ascii_whitespace().rev().take(3) {
        let (name, value) = word.split_once('=')?;
        let value: u64 = value.parse().ok()?;
        match name {
            "curr_ver" => curr_ver = Some(value),
            "next_ver" => next_ver = Some(value),
            "entry_cnt" => entry_cnt = Some(value),
            _ => return None,
        }
    }
    Some(MapInfo {
        id: id.parse().ok()?,
        path: path.to_owned(),
        curr_ver: curr_ver?,
        next_ver: next_ver?,
        entry_cnt: entry_cnt?,
    })
}

/// What one line of `show map <map>` turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapLine<'a> {
    /// `0x55cf21cb04d0 key value`: an entry (pointer dropped). The value is the rest of the
    /// line, so values loaded from a file with inner spaces survive.
    Entry(&'a str, &'a str),
    /// The blank line that ends the listing.
    End,
}

/// Parses one line (without its `\n`) of `show map <map>`. A line that is not an entry is
/// HAProxy's error text (e.g. `Unknown map identifier...`): the caller collects the rest of
/// the reply and reports it with [`ReplyError::Refused`]. Returns `None` for such a line.
pub fn parse_map_line(line: &str) -> Option<MapLine<'_>> {
    if line.is_empty() {
        return Some(MapLine::End);
    }
    let rest = line.strip_prefix("0x")?;
    let (pointer, rest) = rest.split_once(' ')?;
    if pointer.is_empty() || !pointer.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(MapLine::Entry(key, value))
}

/// Parses a whole `show map <map>` reply into `(key, value)` pairs in HAProxy's order.
/// An empty map answers `"\n"`. For large maps prefer streaming with [`parse_map_line`].
pub fn parse_map_entries(reply: &str) -> Result<Vec<(String, String)>, ReplyError> {
    if reply.is_empty() {
        return Err(ReplyError::Empty);
    }
    let mut entries = Vec::new();
    for line in reply.lines() {
        match parse_map_line(line) {
            Some(MapLine::Entry(k, v)) => entries.push((k.to_owned(), v.to_owned())),
            Some(MapLine::End) => break,
            None => return Err(ReplyError::refused(reply)),
        }
    }
    Ok(entries)
}

/// Parses `show backend`: `# name` then one backend name per line.
pub fn parse_backends(reply: &str) -> Result<Vec<String>, ReplyError> {
    let mut lines = reply.lines();
    match lines.next() {
        Some("# name") => {}
        Some(_) => return Err(ReplyError::refused(reply)),
        None => return Err(ReplyError::Empty),
    }
    Ok(lines
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// One server row of `show servers state <backend>` (format version 1), the columns cutover
/// uses. Numeric states are HAProxy's own codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// Backend name (`be_name`).
    pub backend: String,
    /// Server name (`srv_name`).
    pub server: String,
    /// Address (`srv_addr`).
    pub addr: String,
    /// Operational state (`srv_op_state`): 0 stopped, 1 starting, 2 running, 3 stopping.
    pub op_state: u8,
    /// Administrative state bit field (`srv_admin_state`): 0 ready, 0x01/0x02/0x04 maint
    /// (forced/inherited/resolution), 0x08 drain (forced), 0x10 inherited drain; 0x20 maint
    /// from address resolution.
    pub admin_state: u8,
    /// Weight set by the user or the configuration (`srv_uweight`), 0..=256.
    pub user_weight: u32,
    /// Weight from the configuration (`srv_iweight`).
    pub initial_weight: u32,
    /// Port (`srv_port`); `None` when the line has no such column.
    pub port: Option<u16>,
}

impl ServerState {
    /// Admin state bits meaning maintenance (forced, inherited, or address resolution).
    pub const ADMIN_MAINT_MASK: u8 = 0x01 | 0x02 | 0x04 | 0x20;
    /// Admin state bits meaning drain (forced or inherited).
    pub const ADMIN_DRAIN_MASK: u8 = 0x08 | 0x10;

    /// True when the server is in maintenance for any reason.
    pub fn is_maint(&self) -> bool {
        self.admin_state & Self::ADMIN_MAINT_MASK != 0
    }

    /// True when the server is draining (and not in maintenance).
    pub fn is_drain(&self) -> bool {
        !self.is_maint() && self.admin_state & Self::ADMIN_DRAIN_MASK != 0
    }
}

/// Parses `show servers state [<backend>]`: a format version line (`1`), a `#` header, then
/// one row per server.
pub fn parse_servers_state(reply: &str) -> Result<Vec<ServerState>, ReplyError> {
    const WHAT: &str = "show servers state";
    let mut lines = reply.lines();
    match lines.next().map(str::trim) {
        Some("1") => {}
        Some(_) => return Err(ReplyError::refused(reply)),
        None => return Err(ReplyError::Empty),
    }
    let mut rows = Vec::new();
    for line in lines {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        let row = (|| {
            Some(ServerState {
                backend: (*f.get(1)?).to_owned(),
                server: (*f.get(3)?).to_owned(),
                addr: (*f.get(4)?).to_owned(),
                op_state: f.get(5)?.parse().ok()?,
                admin_state: f.get(6)?.parse().ok()?,
                user_weight: f.get(7)?.parse().ok()?,
                initial_weight: f.get(8)?.parse().ok()?,
                port: f.get(18).and_then(|p| p.parse().ok()),
            })
        })();
        rows.push(row.ok_or_else(|| ReplyError::unexpected(WHAT, line))?);
    }
    Ok(rows)
}

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
    /// Current workers (section `# workers`).
    pub workers: Vec<ProcEntry>,
    /// Workers of previous generations still finishing their connections (`# old workers`).
    /// A worker kept by a failed reload is not old: it stays under `# workers` with
    /// `reloads` > 0.
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

    /// PIDs of the current workers (section `# workers`).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.pid).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    const MAP_LIST: &str = "# id (file) description\n\
        0 (/tmp/hx/empty.map) pattern loaded from file '/tmp/hx/empty.map' used by map at file 'h.cfg' line 12. curr_ver=0 next_ver=0 entry_cnt=0\n\
        2 (/tmp/hx/routes.map) pattern loaded from file '/tmp/hx/routes.map' used by map at file 'h.cfg' line 11. curr_ver=0 next_ver=1 entry_cnt=622\n\
        \n";

    #[test]
    fn mutation_success_is_a_single_newline() {
        assert_eq!(check_mutation("\n"), Ok(()));
        assert_eq!(check_mutation(""), Err(ReplyError::Empty));
        assert_eq!(
            check_mutation("Key not found.\n\n"),
            Err(ReplyError::Refused {
                reply: "Key not found.".into()
            })
        );
        assert!(matches!(
            check_mutation("\n\n"),
            Err(ReplyError::Unexpected { .. })
        ));
        let unknown = "Unknown command, but maybe one of the following ones is a better match:\n  add map ...\n\n";
        assert!(
            matches!(check_mutation(unknown), Err(ReplyError::Refused { reply }) if reply.starts_with("Unknown command"))
        );
    }

    #[test]
    fn prepared_version() {
        assert_eq!(parse_prepared_version("New version created: 1\n\n"), Ok(1));
        assert_eq!(
            parse_prepared_version("New version created: 4096\n\n"),
            Ok(4096)
        );
        assert_eq!(parse_prepared_version(""), Err(ReplyError::Empty));
        assert!(matches!(
            parse_prepared_version("Unknown map identifier. Please use #<id> or <file>.\n\n"),
            Err(ReplyError::Refused { reply }) if reply.starts_with("Unknown map identifier")
        ));
        assert!(matches!(
            parse_prepared_version("New version created: x\n\n"),
            Err(ReplyError::Unexpected { .. })
        ));
    }

    #[test]
    fn map_list() {
        let maps = parse_map_list(MAP_LIST).unwrap();
        assert_eq!(
            maps,
            vec![
                MapInfo {
                    id: 0,
                    path: "/tmp/hx/empty.map".into(),
                    curr_ver: 0,
                    next_ver: 0,
                    entry_cnt: 0
                },
                MapInfo {
                    id: 2,
                    path: "/tmp/hx/routes.map".into(),
                    curr_ver: 0,
                    next_ver: 1,
                    entry_cnt: 622
                },
            ]
        );
        assert_eq!(
            parse_map_list("# id (file) description\n\n").unwrap(),
            vec![]
        );
        assert_eq!(parse_map_list(""), Err(ReplyError::Empty));
        assert!(matches!(
            parse_map_list("# id (file) description\n2 (/x.map) no counters\n\n"),
            Err(ReplyError::Unexpected { .. })
        ));
    }

    #[test]
    fn map_entries_in_order() {
        let reply = "0x55cf21cb04d0 a.example svc_a\n0x55cf21cb0560 b.example svc_b\n\n";
        assert_eq!(
            parse_map_entries(reply).unwrap(),
            vec![
                ("a.example".to_owned(), "svc_a".to_owned()),
                ("b.example".to_owned(), "svc_b".to_owned())
            ]
        );
        assert_eq!(parse_map_entries("\n").unwrap(), vec![]);
        // A value loaded from a file may hold spaces: it is the rest of the line.
        assert_eq!(
            parse_map_line("0x1f k some value"),
            Some(MapLine::Entry("k", "some value"))
        );
        assert_eq!(parse_map_line(""), Some(MapLine::End));
        assert_eq!(parse_map_line("0xZZ k v"), None);
        assert!(matches!(
            parse_map_entries("Unknown map identifier. Please use #<id> or <file>.\n\n"),
            Err(ReplyError::Refused { reply }) if reply == "Unknown map identifier. Please use #<id> or <file>."
        ));
    }

    #[test]
    fn backends() {
        assert_eq!(
            parse_backends("# name\nbe_blue\nbe_green\n\n").unwrap(),
            vec!["be_blue".to_owned(), "be_green".to_owned()]
        );
        assert_eq!(parse_backends("# name\n\n").unwrap(), Vec::<String>::new());
        assert!(matches!(
            parse_backends("Permission denied\n\n"),
            Err(ReplyError::Refused { .. })
        ));
    }

    #[test]
    fn servers_state_rows() {
        let reply = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change\n\
            3 be_blue 1 s1 127.0.0.1 2 8 50 1 0 1 0 2 0 0 0 0 - 18081 - 0 0 - - 0\n\
            3 be_blue 2 s2 127.0.0.1 0 1 0 1 0 1 0 2 0 0 0 0 - 18082 - 0 0 - - 0\n\n";
        let rows = parse_servers_state(reply).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            ServerState {
                backend: "be_blue".into(),
                server: "s1".into(),
                addr: "127.0.0.1".into(),
                op_state: 2,
                admin_state: 8,
                user_weight: 50,
                initial_weight: 1,
                port: Some(18081),
            }
        );
        assert!(rows[0].is_drain() && !rows[0].is_maint());
        assert!(rows[1].is_maint() && !rows[1].is_drain());
        assert!(matches!(
            parse_servers_state("Can't find backend.\n\n"),
            Err(ReplyError::Refused { .. })
        ));
        assert!(matches!(
            parse_servers_state("1\n# h\n3 be_blue 1\n\n"),
            Err(ReplyError::Unexpected { .. })
        ));
    }

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
    }

    #[test]
    fn clip_respects_char_boundaries() {
        let long = "é".repeat(MAX_REPLY_IN_ERROR);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_REPLY_IN_ERROR);
        assert!(clipped.chars().all(|c| c == 'é'));
        assert_eq!(clip("short"), "short");
    }
}

/// Counters of one backend from `show stat <backend> 2 -1` (CSV, columns found by name in
/// the `# pxname,svname,...` header): `(req_tot, hrsp_5xx, rtime)`.
pub fn parse_backend_stat(reply: &str, backend: &str) -> Result<(u64, u64, u64), ReplyError> {
    const WHAT: &str = "show stat";
    let mut lines = reply.lines();
    let header = lines.next().ok_or(ReplyError::Empty)?;
    let names: Vec<&str> = header
        .strip_prefix("# ")
        .ok_or_else(|| ReplyError::refused(reply))?
        .split(',')
        .collect();
    let col = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| ReplyError::unexpected(WHAT, header))
    };
    let (px, sv, req, e5, rt) = (
        col("pxname")?,
        col("svname")?,
        col("req_tot")?,
        col("hrsp_5xx")?,
        col("rtime")?,
    );
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        if f.get(px) == Some(&backend) && f.get(sv) == Some(&"BACKEND") {
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            return Ok((num(req), num(e5), num(rt)));
        }
    }
    Err(ReplyError::unexpected(WHAT, reply))
}

#[cfg(test)]
mod stat_tests {
    use super::*;

    #[test]
    fn backend_row_by_column_name() {
        let reply = "# pxname,svname,qcur,req_tot,hrsp_5xx,rtime,\nbe,s1,0,5,1,3,\nbe,BACKEND,0,12,4,7,\n\n";
        assert_eq!(parse_backend_stat(reply, "be").unwrap(), (12, 4, 7));
        assert!(parse_backend_stat(reply, "other").is_err());
        assert!(parse_backend_stat("Unknown command\n", "be").is_err());
    }
}
