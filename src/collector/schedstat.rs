//! `schedstat`: per-CPU scheduler statistics from /proc/schedstat:
//! node_schedstat_running_seconds_total, node_schedstat_waiting_seconds_total
//! (nanoseconds in the file) and node_schedstat_timeslices_total, labelled
//! `cpu` with the kernel's CPU number.
//!
//! Must never: read the `domainN` lines (node_exporter does not report them)
//! or fail on lines it does not know (`version`, `timestamp`). Without
//! /proc/schedstat (CONFIG_SCHEDSTATS off) node_exporter returns ErrNoData,
//! success 0; so does this.
//!
//! Known difference: procfs matches `cpuN` lines with a regex and silently
//! skips one that does not fit; cairn fails the collector on a `cpuN` line
//! with fewer than nine numeric fields, so a garbled file shows up in
//! node_scrape_collector_success instead of as missing CPUs.

use super::{read_optional, CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

const NS_PER_SEC: f64 = 1e9;

pub struct Schedstat {
    buf: String,
}

impl Schedstat {
    pub fn new(_settings: &Settings) -> Self {
        Schedstat {
            buf: String::with_capacity(4096),
        }
    }
}

impl Collector for Schedstat {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let path = ctx.proc_path("schedstat");
        if !read_optional(&path, &mut self.buf)? {
            return Err(CollectError::NoData(format!(
                "{} does not exist",
                path.display()
            )));
        }
        for line in self.buf.lines() {
            let mut f = line.split_ascii_whitespace();
            let Some(cpu) = f.next().and_then(|n| n.strip_prefix("cpu")) else {
                continue;
            };
            if cpu.is_empty() || !cpu.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            // Fields 7-9 (of the 9 a version 15 kernel writes; older
            // versions wrote more, and what a newer one appends is ignored):
            // time running, time waiting on the runqueue, timeslices.
            let mut vals = [0u64; 9];
            for v in vals.iter_mut() {
                *v = f
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| CollectError::parse(&path, format!("bad line {line:?}")))?;
            }
            let label = |l: &mut crate::metrics::Labels<'_>| {
                l.label("cpu", cpu);
            };
            out.family(
                "node_schedstat_running_seconds_total",
                "Number of seconds CPU spent running a process.",
                MetricType::Counter,
            )
            .sample_with(vals[6] as f64 / NS_PER_SEC, label);
            out.family(
                "node_schedstat_waiting_seconds_total",
                "Number of seconds spent by processing waiting for this CPU.",
                MetricType::Counter,
            )
            .sample_with(vals[7] as f64 / NS_PER_SEC, label);
            out.family(
                "node_schedstat_timeslices_total",
                "Number of timeslices executed by CPU.",
                MetricType::Counter,
            )
            .sample_with(vals[8] as f64, label);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn run(case: &str) -> Result<String, CollectError> {
        render(
            &mut Schedstat::new(&Settings::default()),
            &fixture_ctx(&format!("schedstat/{case}")),
        )
    }

    #[test]
    fn schedstat_normal() {
        assert_eq!(
            run("normal").unwrap(),
            "# HELP node_schedstat_running_seconds_total Number of seconds CPU spent running a process.\n\
             # TYPE node_schedstat_running_seconds_total counter\n\
             node_schedstat_running_seconds_total{cpu=\"0\"} 2045.936778163\n\
             node_schedstat_running_seconds_total{cpu=\"1\"} 1904.686152592\n\
             # HELP node_schedstat_timeslices_total Number of timeslices executed by CPU.\n\
             # TYPE node_schedstat_timeslices_total counter\n\
             node_schedstat_timeslices_total{cpu=\"0\"} 4767485306\n\
             node_schedstat_timeslices_total{cpu=\"1\"} 5145567945\n\
             # HELP node_schedstat_waiting_seconds_total Number of seconds spent by processing waiting for this CPU.\n\
             # TYPE node_schedstat_waiting_seconds_total counter\n\
             node_schedstat_waiting_seconds_total{cpu=\"0\"} 343.796328872\n\
             node_schedstat_waiting_seconds_total{cpu=\"1\"} 364.107263788\n"
        );
    }

    /// Labels are the kernel's CPU numbers (offline CPUs leave gaps), and
    /// fields a newer kernel appends are ignored.
    #[test]
    fn schedstat_sparse_cpus_and_new_fields() {
        let t = run("sparse").unwrap();
        assert!(
            t.contains("node_schedstat_timeslices_total{cpu=\"3\"} 9\n"),
            "{t}"
        );
        assert!(!t.contains("cpu=\"1\""), "{t}");
        assert!(
            t.contains("node_schedstat_running_seconds_total{cpu=\"3\"} 18446744073.709553\n"),
            "{t}"
        );
    }

    #[test]
    fn schedstat_missing_is_no_data() {
        let e = run("missing").unwrap_err();
        assert!(e.to_string().starts_with("no data"), "{e}");
    }

    #[test]
    fn schedstat_garbled_fails() {
        assert!(run("garbled").is_err());
    }
}
