//! `stat`: the system-wide counters of /proc/stat (interrupts, context
//! switches, forks, boot time, running/blocked processes and, with
//! `--collector.stat.softirq`, softirqs per vector), named as node_exporter
//! 1.5.0 names them. The per-CPU lines belong to the `cpu` collector.
//!
//! Must never: report a default (zero) for a line that is missing or cut off.
//! node_exporter's procfs silently emits 0 then; a /proc/stat without its
//! last newline or without one of the always-present lines is a truncated
//! read here and fails the collector instead.

use super::{read_into, CollectError, Collector, Context, Opt, OptKind, Settings};
use crate::metrics::{Emitter, MetricType};
use std::path::Path;

/// node_exporter 1.5.0's `vector` label values, in the order the kernel
/// writes them after the total on the `softirq` line. The kernel calls the
/// sixth one `irq_poll`; node_exporter keeps its older name.
const SOFTIRQ_VECTORS: [&str; 10] = [
    "hi",
    "timer",
    "net_tx",
    "net_rx",
    "block",
    "block_iopoll",
    "tasklet",
    "sched",
    "hrtimer",
    "rcu",
];

pub const OPTIONS: &[Opt] = &[Opt {
    flag: "collector.stat.softirq",
    kind: OptKind::Bool,
    default: "false",
    help: "Export softirq calls per vector",
    aliases: &[],
}];

pub struct Stat {
    softirq: bool,
    buf: String,
}

impl Stat {
    pub fn new(settings: &Settings) -> Self {
        Stat {
            softirq: settings.bool("collector.stat.softirq"),
            buf: String::with_capacity(8 * 1024),
        }
    }
}

/// The values this collector reports from one read of /proc/stat.
#[derive(Default)]
struct Values {
    intr: Option<u64>,
    ctxt: Option<u64>,
    btime: Option<u64>,
    processes: Option<u64>,
    procs_running: Option<u64>,
    procs_blocked: Option<u64>,
    softirq: Option<[u64; 10]>,
}

fn parse_u64(path: &Path, key: &str, tok: &str) -> Result<u64, CollectError> {
    tok.parse::<u64>()
        .map_err(|e| CollectError::parse(path, format!("{key} value {tok:?}: {e}")))
}

fn parse(path: &Path, text: &str) -> Result<Values, CollectError> {
    if !text.ends_with('\n') {
        return Err(CollectError::parse(path, "truncated: last line incomplete"));
    }
    let mut v = Values::default();
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let Some(key) = f.next() else { continue };
        // Like procfs: a key without a value is not an error by itself (a
        // required key that never gets a value is, below).
        let Some(first) = f.next() else { continue };
        let slot = match key {
            "intr" => {
                // The per-IRQ counts are not reported, but procfs rejects the
                // file when one does not parse, so we do too.
                for tok in f.by_ref() {
                    parse_u64(path, "intr", tok)?;
                }
                &mut v.intr
            }
            "ctxt" => &mut v.ctxt,
            "btime" => &mut v.btime,
            "processes" => &mut v.processes,
            "procs_running" => &mut v.procs_running,
            "procs_blocked" => &mut v.procs_blocked,
            "softirq" => {
                // procfs parses the total plus all ten vectors (and fails the
                // whole file if fewer are there), flag or not.
                parse_u64(path, "softirq", first)?;
                let mut vec = [0u64; 10];
                for (i, slot) in vec.iter_mut().enumerate() {
                    let tok = f.next().ok_or_else(|| {
                        CollectError::parse(path, format!("softirq line has {} of 10 vectors", i))
                    })?;
                    *slot = parse_u64(path, "softirq", tok)?;
                }
                v.softirq = Some(vec);
                continue;
            }
            _ => continue,
        };
        *slot = Some(parse_u64(path, key, first)?);
    }
    Ok(v)
}

fn required(path: &Path, key: &str, v: Option<u64>) -> Result<f64, CollectError> {
    v.map(|n| n as f64)
        .ok_or_else(|| CollectError::parse(path, format!("no {key} line")))
}

impl Collector for Stat {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let path = ctx.proc_path("stat");
        read_into(&path, &mut self.buf)?;
        let v = parse(&path, &self.buf)?;
        // Check all before emitting anything, so a failure reports nothing.
        let intr = required(&path, "intr", v.intr)?;
        let ctxt = required(&path, "ctxt", v.ctxt)?;
        let btime = required(&path, "btime", v.btime)?;
        let forks = required(&path, "processes", v.processes)?;
        let running = required(&path, "procs_running", v.procs_running)?;
        let blocked = required(&path, "procs_blocked", v.procs_blocked)?;

        use MetricType::{Counter, Gauge};
        out.single(
            "node_intr_total",
            "Total number of interrupts serviced.",
            Counter,
            intr,
        );
        out.single(
            "node_context_switches_total",
            "Total number of context switches.",
            Counter,
            ctxt,
        );
        out.single("node_forks_total", "Total number of forks.", Counter, forks);
        out.single(
            "node_boot_time_seconds",
            "Node boot time, in unixtime.",
            Gauge,
            btime,
        );
        out.single(
            "node_procs_running",
            "Number of processes in runnable state.",
            Gauge,
            running,
        );
        out.single(
            "node_procs_blocked",
            "Number of processes blocked waiting for I/O to complete.",
            Gauge,
            blocked,
        );
        // A kernel without the softirq line (before 2.6.31) gets no series
        // rather than node_exporter's ten zeros.
        if let (true, Some(si)) = (self.softirq, v.softirq) {
            let mut fam = out.family("node_softirqs_total", "Number of softirq calls.", Counter);
            for (name, n) in SOFTIRQ_VECTORS.iter().zip(si) {
                fam.sample(&[("vector", name)], n as f64);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn stat(softirq: bool) -> Stat {
        Stat::new(&Settings::default().with("collector.stat.softirq", &softirq.to_string()))
    }

    const NORMAL: &str = "\
# HELP node_boot_time_seconds Node boot time, in unixtime.
# TYPE node_boot_time_seconds gauge
node_boot_time_seconds 1700000000
# HELP node_context_switches_total Total number of context switches.
# TYPE node_context_switches_total counter
node_context_switches_total 253926
# HELP node_forks_total Total number of forks.
# TYPE node_forks_total counter
node_forks_total 6821
# HELP node_intr_total Total number of interrupts serviced.
# TYPE node_intr_total counter
node_intr_total 164270
# HELP node_procs_blocked Number of processes blocked waiting for I/O to complete.
# TYPE node_procs_blocked gauge
node_procs_blocked 1
# HELP node_procs_running Number of processes in runnable state.
# TYPE node_procs_running gauge
node_procs_running 4
";

    #[test]
    fn normal_host_without_softirq() {
        let text = render(&mut stat(false), &fixture_ctx("stat/normal")).unwrap();
        assert_eq!(text, NORMAL);
    }

    #[test]
    fn normal_host_with_softirq_vectors() {
        let text = render(&mut stat(true), &fixture_ctx("stat/normal")).unwrap();
        let want = format!(
            "{NORMAL}\
# HELP node_softirqs_total Number of softirq calls.
# TYPE node_softirqs_total counter
node_softirqs_total{{vector=\"block\"}} 2108
node_softirqs_total{{vector=\"block_iopoll\"}} 10274
node_softirqs_total{{vector=\"hi\"}} 0
node_softirqs_total{{vector=\"hrtimer\"}} 21077
node_softirqs_total{{vector=\"net_rx\"}} 4
node_softirqs_total{{vector=\"net_tx\"}} 11626
node_softirqs_total{{vector=\"rcu\"}} 27197
node_softirqs_total{{vector=\"sched\"}} 54
node_softirqs_total{{vector=\"tasklet\"}} 0
node_softirqs_total{{vector=\"timer\"}} 1
"
        );
        assert_eq!(text, want);
    }

    #[test]
    fn counters_near_u64_max_parse() {
        let ctx = fixture_ctx("stat/huge");
        let mut c = stat(true);
        let mut e = Emitter::new();
        c.update(&ctx, &mut e).unwrap();
        let get = |name: &str| {
            e.families()
                .find(|f| f.name() == name)
                .map(|f| f.series()[0].value)
                .unwrap()
        };
        assert_eq!(get("node_intr_total"), 18446744073709551000u64 as f64);
        assert_eq!(get("node_context_switches_total"), u64::MAX as f64);
        let text = render(&mut c, &ctx).unwrap();
        assert!(
            text.contains("node_intr_total 18446744073709552000\n"),
            "{text}"
        );
        assert!(
            text.contains("node_softirqs_total{vector=\"timer\"} 18446744073709552000\n"),
            "{text}"
        );
    }

    #[test]
    fn cut_mid_line_fails() {
        let err = render(&mut stat(false), &fixture_ctx("stat/truncated")).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn missing_required_line_fails() {
        let err = render(&mut stat(false), &fixture_ctx("stat/no_btime")).unwrap_err();
        assert!(err.to_string().contains("no btime line"), "{err}");
    }

    #[test]
    fn short_softirq_line_fails_like_procfs() {
        // procfs parses the softirq line whether or not it is exported.
        assert!(render(&mut stat(false), &fixture_ctx("stat/short_softirq")).is_err());
    }

    #[test]
    fn no_cpu_lines_is_not_this_collectors_problem() {
        let text = render(&mut stat(false), &fixture_ctx("stat/no_cpu")).unwrap();
        assert!(text.contains("node_forks_total 6821\n"), "{text}");
    }
}
