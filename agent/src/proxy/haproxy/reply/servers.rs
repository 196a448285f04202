//! Replies about backends and servers: `show backend`, `show servers state` and the
//! counters of `show stat`.

use super::ReplyError;
use crate::protocol::HealthState;
use crate::proxy::BackendStats;

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

/// The header line of a `show stat` reply, its column names, and the lines after it.
type StatHeader<'a> = (&'a str, Vec<&'a str>, std::str::Lines<'a>);

/// Splits a `show stat` reply into its `# pxname,svname,...` header, the column names and
/// the rows; a reply without that header is HAProxy's refusal.
fn stat_header(reply: &str) -> Result<StatHeader<'_>, ReplyError> {
    let mut lines = reply.lines();
    let header = lines.next().ok_or(ReplyError::Empty)?;
    let names: Vec<&str> = header
        .strip_prefix("# ")
        .ok_or_else(|| ReplyError::refused(reply))?
        .split(',')
        .collect();
    Ok((header, names, lines))
}

/// Counters of one backend from `show stat <backend> 2 -1` (CSV, columns found by name in
/// the `# pxname,svname,...` header): `req_tot`, `hrsp_5xx`, `econ` + `eresp`, `rtime` and
/// whether `status` is `DOWN`. `econ`, `eresp` and `status` may be missing (read as 0 / up).
pub fn parse_backend_stat(reply: &str, backend: &str) -> Result<BackendStats, ReplyError> {
    const WHAT: &str = "show stat";
    let (header, names, lines) = stat_header(reply)?;
    let find = |name: &str| names.iter().position(|n| *n == name);
    let col = |name: &str| find(name).ok_or_else(|| ReplyError::unexpected(WHAT, header));
    let (px, sv, req, e5, rt) = (
        col("pxname")?,
        col("svname")?,
        col("req_tot")?,
        col("hrsp_5xx")?,
        col("rtime")?,
    );
    let (econ, eresp, status, scur) = (find("econ"), find("eresp"), find("status"), find("scur"));
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        if f.get(px) == Some(&backend) && f.get(sv) == Some(&"BACKEND") {
            let num = |i: Option<usize>| {
                i.and_then(|i| f.get(i))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let down = status
                .and_then(|i| f.get(i))
                .is_some_and(|s| s.starts_with("DOWN"));
            return Ok(BackendStats {
                requests: num(Some(req)),
                errors_5xx: num(Some(e5)),
                failed: num(econ) + num(eresp),
                avg_response_ms: num(Some(rt)),
                down,
                sessions: num(scur),
            });
        }
    }
    Err(ReplyError::unexpected(WHAT, reply))
}

impl ServerState {
    /// How the proxy sees the server: in maintenance or draining by its admin state, else
    /// up while running or stopping (`UP`, `UP 1/3`), down while stopped or starting.
    pub fn health(&self) -> HealthState {
        if self.is_maint() {
            HealthState::Maint
        } else if self.is_drain() {
            HealthState::Drain
        } else if matches!(self.op_state, 2 | 3) {
            HealthState::Up
        } else {
            HealthState::Down
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            (rows[0].health(), rows[1].health()),
            (HealthState::Drain, HealthState::Maint)
        );
        let up = |op_state| {
            ServerState {
                op_state,
                admin_state: 0,
                ..rows[0].clone()
            }
            .health()
        };
        assert_eq!(
            [up(0), up(1), up(2), up(3)],
            [
                HealthState::Down,
                HealthState::Down,
                HealthState::Up,
                HealthState::Up
            ]
        );
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
    fn backend_row_by_column_name() {
        let reply = "# pxname,svname,scur,req_tot,hrsp_5xx,rtime,\nbe,s1,0,5,1,3,\nbe,BACKEND,2,12,4,7,\n\n";
        let stats = parse_backend_stat(reply, "be").unwrap();
        assert_eq!(
            (stats.requests, stats.errors_5xx, stats.avg_response_ms),
            (12, 4, 7)
        );
        assert_eq!((stats.failed, stats.down, stats.sessions), (0, false, 2));
        let down = "# pxname,svname,req_tot,hrsp_5xx,rtime,econ,eresp,status,\nbe,BACKEND,9,2,0,3,1,DOWN,\n";
        let stats = parse_backend_stat(down, "be").unwrap();
        assert_eq!((stats.failed, stats.down), (4, true));
        assert!(parse_backend_stat(reply, "other").is_err());
        assert!(parse_backend_stat("Unknown command\n", "be").is_err());
    }
}
