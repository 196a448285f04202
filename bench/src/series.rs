//! One series: N switches made by one method while the load runs, each timed by the
//! probes, then summarised against the load's records (failures, when the old colour was
//! last served).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use crate::client::{Colour, Outcome};
use crate::load::{Load, LoadSpec, Record, Recorder, Source};
use crate::method::Method;
use crate::probe::Probes;
use crate::procstat::{self, ProcSample};

/// What to run.
#[derive(Debug, Clone)]
pub struct SeriesSpec {
    pub switches: usize,
    /// Pause after one switch has settled and before the next.
    pub gap: Duration,
    /// How long the probes wait for the new colour.
    pub probe_wait: Duration,
    /// Load before the first switch, and after the last.
    pub warmup: Duration,
}

/// One switch.
#[derive(Debug, Clone)]
pub struct Sample {
    pub to: Colour,
    /// Microseconds from the recorder's origin to issuing the command, and to the next
    /// switch (or the end of the series): the window this switch owns.
    pub t0_us: u64,
    pub end_us: u64,
    pub command_ms: f64,
    pub first_new_ms: Option<f64>,
    pub first_keepalive_ms: Option<f64>,
    pub keepalive_reconnected: bool,
    pub agent_ms: BTreeMap<String, f64>,
}

/// A finished series.
pub struct Series {
    pub proxy: String,
    pub method: String,
    pub samples: Vec<Sample>,
    pub records: Vec<Record>,
    /// New-connection requests not sent because too many were in flight.
    pub skipped: u64,
    /// The agent before the first switch and after the last, when an agent runs.
    pub agent: Option<(ProcSample, ProcSample)>,
    /// Commands that failed.
    pub errors: Vec<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Where a series runs: the proxy's frontend, the host asked for and the load.
pub struct Bench<'a> {
    pub rt: &'a Handle,
    pub addr: SocketAddr,
    pub host: &'a str,
    pub load: &'a LoadSpec,
    /// Label of the proxy in the tables.
    pub proxy: &'a str,
}

impl Bench<'_> {
    /// Runs `spec.switches` switches of `method` under the load; `agent_pid` is read for
    /// CPU time and memory.
    pub fn run(
        &self,
        spec: &SeriesSpec,
        method: &mut dyn Method,
        agent_pid: Option<u32>,
    ) -> Series {
        run(self, spec, method, agent_pid)
    }
}

fn run(
    b: &Bench<'_>,
    spec: &SeriesSpec,
    method: &mut dyn Method,
    agent_pid: Option<u32>,
) -> Series {
    let (rt, addr, host) = (b.rt, b.addr, b.host);
    let rec = Recorder::new();
    let running = Load::start(rt, addr, host, b.load, &rec);
    let mut probes = Probes::new(addr, host, &rec);
    std::thread::sleep(spec.warmup);
    let mut errors = Vec::new();
    let mut current = probes.current(rt).colour().unwrap_or(Colour::Blue);
    let before = agent_pid.and_then(procstat::sample);
    let mut samples: Vec<Sample> = Vec::with_capacity(spec.switches);
    for _ in 0..spec.switches {
        if errors.len() >= 3 {
            break;
        }
        if let Err(e) = probes.prepare(rt) {
            errors.push(e);
            std::thread::sleep(spec.gap);
            continue;
        }
        let to = current.other();
        let mut armed = probes.arm(rt, to, spec.probe_wait);
        let t0 = Instant::now();
        armed.go(t0);
        let issued = method.issue(to);
        let command_ms = ms(t0.elapsed());
        let seen = probes.finish(rt, armed);
        let issued = match issued {
            Ok(i) => i,
            Err(e) => {
                errors.push(e);
                method.settle();
                std::thread::sleep(spec.gap);
                current = probes.current(rt).colour().unwrap_or(current);
                continue;
            }
        };
        if let Some(last) = samples.last_mut() {
            last.end_us = rec.us(t0);
        }
        samples.push(Sample {
            to,
            t0_us: rec.us(t0),
            end_us: u64::MAX,
            command_ms,
            first_new_ms: seen.new_conn.map(|t| ms(t - t0)),
            first_keepalive_ms: seen.keepalive.map(|t| ms(t - t0)),
            keepalive_reconnected: seen.keepalive_reconnected,
            agent_ms: issued.agent_ms,
        });
        current = to;
        method.settle();
        std::thread::sleep(spec.gap);
    }
    let after = agent_pid.and_then(procstat::sample);
    std::thread::sleep(spec.warmup);
    if let Some(last) = samples.last_mut() {
        last.end_us = rec.us(Instant::now());
    }
    let skipped = running.stop(rt);
    Series {
        proxy: b.proxy.to_owned(),
        method: method.label(),
        samples,
        records: rec.take(),
        skipped,
        agent: before.zip(after),
        errors,
    }
}

/// The `p` percentile (0..=100) of unsorted values, as the harness's measuring programs
/// compute it (the sample at rank `round((n - 1) * p / 100)`); `None` when empty.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Some(cutover_tests::http::percentile(&v, p / 100.0))
}

/// The figures of one series.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub proxy: String,
    pub method: String,
    pub switches: usize,
    pub command: Vec<f64>,
    pub first_new: Vec<f64>,
    pub first_keepalive: Vec<f64>,
    /// Switches whose probe never saw the new colour, per probe.
    pub missed_new: usize,
    pub missed_keepalive: usize,
    pub keepalive_reconnects: usize,
    /// Per switch: the last response in the old colour to a request sent after the
    /// command was issued, ms after issuing (0 when there was none).
    pub old_gone: Vec<f64>,
    /// Switches where a request sent after the command returned got the old colour.
    pub old_after_answer: usize,
    /// Requests sent, and failed, during the series (load and probes).
    pub requests: u64,
    pub failed: u64,
    /// Failures by kind and by source.
    pub failures: BTreeMap<String, u64>,
    pub skipped: u64,
    /// Agent CPU per switch, ms, and its memory after the series.
    pub agent_cpu_ms_per_switch: Option<f64>,
    pub agent_after: Option<ProcSample>,
    /// The agent's mean milliseconds per step.
    pub agent_steps: BTreeMap<String, f64>,
    pub errors: Vec<String>,
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::KeepAlive => "load kept-alive",
        Source::NewConn => "load new-conn",
        Source::ProbeNew => "probe new-conn",
        Source::ProbeKeepAlive => "probe kept-alive",
    }
}

impl Series {
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            proxy: self.proxy.clone(),
            method: self.method.clone(),
            switches: self.samples.len(),
            skipped: self.skipped,
            errors: self.errors.clone(),
            ..Summary::default()
        };
        for sample in &self.samples {
            s.command.push(sample.command_ms);
            match sample.first_new_ms {
                Some(v) => s.first_new.push(v),
                None => s.missed_new += 1,
            }
            match sample.first_keepalive_ms {
                Some(v) => s.first_keepalive.push(v),
                None => s.missed_keepalive += 1,
            }
            s.keepalive_reconnects += usize::from(sample.keepalive_reconnected);
            let old = Outcome::Ok(sample.to.other());
            let last_old = self
                .records
                .iter()
                .filter(|r| r.sent_us >= sample.t0_us && r.sent_us < sample.end_us)
                .filter(|r| r.outcome == old)
                .map(|r| r.done_us)
                .max();
            s.old_gone
                .push(last_old.map_or(0.0, |d| (d - sample.t0_us) as f64 / 1e3));
            // A request in flight when the switch landed may still answer in the old
            // colour after the command returned; one sent after it must not.
            let answered_us = sample.t0_us + (sample.command_ms * 1e3) as u64;
            s.old_after_answer +=
                usize::from(self.records.iter().any(|r| {
                    r.sent_us > answered_us && r.sent_us < sample.end_us && r.outcome == old
                }));
            for (step, v) in &sample.agent_ms {
                *s.agent_steps.entry(step.clone()).or_default() += v / self.samples.len() as f64;
            }
        }
        for r in &self.records {
            s.requests += 1;
            if r.outcome.is_failure() {
                s.failed += 1;
                let key = format!("{} ({})", r.outcome.label(), source_name(r.source));
                *s.failures.entry(key).or_default() += 1;
            }
        }
        if let Some((before, after)) = self.agent {
            if !self.samples.is_empty() {
                s.agent_cpu_ms_per_switch =
                    Some(ms(after.cpu.saturating_sub(before.cpu)) / self.samples.len() as f64);
            }
            s.agent_after = Some(after);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=101).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(51.0));
        assert_eq!(percentile(&v, 99.0), Some(100.0));
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
