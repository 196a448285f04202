//! The process metrics, read from `/proc/self` at every scrape under the names every
//! Prometheus client library uses: `process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`,
//! `process_max_fds` and `process_start_time_seconds`. A file that cannot be read (not
//! Linux) leaves its families out.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

/// Clock ticks per second of the times in `/proc/self/stat`: Linux's `USER_HZ`, 100 on
/// every architecture Debian and RHEL build for.
const TICKS_PER_SECOND: f64 = 100.0;

/// Most descriptors counted (a scrape lists `/proc/self/fd` at most this far); the agent's
/// own limits keep it far below.
const MAX_FDS_COUNTED: usize = 1 << 20;

/// The collector of the process metrics.
#[derive(Debug)]
pub(super) struct Process {
    /// When the process started, Unix seconds; `None` when unknown.
    start_time: Option<f64>,
}

impl Process {
    /// A collector for this process (reads its start time once).
    pub(super) fn new() -> Process {
        Process {
            start_time: start_time(),
        }
    }
}

/// What a scrape reads.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    /// User and system CPU time, seconds.
    cpu_seconds: Option<f64>,
    /// Resident set size, bytes.
    resident: Option<u64>,
    /// Virtual memory size, bytes.
    virtual_size: Option<u64>,
    /// Open descriptors.
    open_fds: Option<u64>,
    /// The soft limit on open descriptors.
    max_fds: Option<u64>,
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = sample();
        if let Some(v) = s.cpu_seconds {
            let e = encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent, seconds.",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?;
            ConstCounter::new(v).encode(e)?;
        }
        let gauges: [(&str, &str, Option<Unit>, Option<f64>); 5] = [
            (
                "process_resident_memory",
                "Resident memory size, bytes.",
                Some(Unit::Bytes),
                s.resident.map(|v| v as f64),
            ),
            (
                "process_virtual_memory",
                "Virtual memory size, bytes.",
                Some(Unit::Bytes),
                s.virtual_size.map(|v| v as f64),
            ),
            (
                "process_open_fds",
                "Open file descriptors.",
                None,
                s.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "Most open file descriptors allowed (the soft limit).",
                None,
                s.max_fds.map(|v| v as f64),
            ),
            (
                "process_start_time",
                "When the process started, Unix time in seconds.",
                Some(Unit::Seconds),
                self.start_time,
            ),
        ];
        for (name, help, unit, value) in &gauges {
            if let Some(v) = value {
                let e = encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
                ConstGauge::new(*v).encode(e)?;
            }
        }
        Ok(())
    }
}

/// Reads the process's numbers now.
fn sample() -> Sample {
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let fields = stat.as_deref().map(stat_fields).unwrap_or_default();
    let field = |n: usize| fields.get(n).and_then(|f| f.parse::<u64>().ok());
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    Sample {
        cpu_seconds: field(UTIME)
            .zip(field(STIME))
            .map(|(u, s)| (u + s) as f64 / TICKS_PER_SECOND),
        resident: kib(&status, "VmRSS:"),
        virtual_size: field(VSIZE),
        open_fds: open_fds(),
        max_fds: max_fds(&limits),
    }
}

/// Indexes into [`stat_fields`]: `utime`, `stime` (ticks), `starttime` (ticks after boot)
/// and `vsize` (bytes), fields 14, 15, 22 and 23 of proc(5), counted from `state` (3).
const UTIME: usize = 14 - 3;
const STIME: usize = 15 - 3;
const STARTTIME: usize = 22 - 3;
const VSIZE: usize = 23 - 3;

/// The fields of `/proc/self/stat` after the command name (which may hold spaces and
/// parentheses, so the last `)` ends it).
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

/// A `KEY: N kB` line of `/proc/self/status`, in bytes.
fn kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// Open descriptors: the entries of `/proc/self/fd`, less the one listing them.
fn open_fds() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    let n = dir.take(MAX_FDS_COUNTED).count() as u64;
    Some(n.saturating_sub(1))
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// When this process started, Unix seconds: its start after boot plus the boot time
/// (`btime` in `/proc/stat`).
fn start_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let ticks: u64 = stat_fields(&stat).get(STARTTIME)?.parse().ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(btime as f64 + ticks as f64 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read() {
        let stat = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 900 0 0 0 150 50 0 0 20 0 3 0 \
                    12345 104857600 2000 18446744073709551615";
        let f = stat_fields(stat);
        assert_eq!(f[0], "S");
        assert_eq!(f[UTIME], "150");
        assert_eq!(f[STIME], "50");
        assert_eq!(f[STARTTIME], "12345");
        assert_eq!(f[VSIZE], "104857600");
        assert_eq!(
            kib("Name:\tx\nVmRSS:\t  14740 kB\n", "VmRSS:"),
            Some(14740 * 1024)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_fds(limits), Some(1024));
    }

    /// This test process's own numbers: present and plausible.
    #[test]
    fn this_process_is_measured() {
        let s = sample();
        assert!(s.resident.is_some_and(|r| r > 1024 * 1024), "{s:?}");
        assert!(s.virtual_size >= s.resident, "{s:?}");
        assert!(s.open_fds.is_some_and(|n| n >= 3), "{s:?}");
        assert!(s.max_fds >= s.open_fds, "{s:?}");
        assert!(s.cpu_seconds.is_some_and(|c| c >= 0.0), "{s:?}");
        let start = start_time().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 30.0,
            "{start} {now}"
        );
    }
}
