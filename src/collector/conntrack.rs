//! `conntrack`: node_nf_conntrack_entries / _entries_limit from
//! /proc/sys/net/netfilter and the node_nf_conntrack_stat_* sums over CPUs
//! from /proc/net/stat/nf_conntrack, as node_exporter 1.5.0.
//!
//! Without the nf_conntrack module none of these files exist; 1.5.0 then
//! returns ErrNoData, which it reports as node_scrape_collector_success 0,
//! so a missing file is an error here too.
//!
//! Owns: those three files. Must never: report a table whose statistics
//! could not be read (one unreadable or malformed file fails the collector).

use std::path::Path;

use super::{read_into, CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

/// (column in the per-CPU stat line, family, HELP). Columns are positional,
/// as procfs reads them: the header names changed between kernels
/// ("searched" became "clashres", ...) but these positions did not.
const STATS: [(usize, &str, &str); 8] = [
    (
        2,
        "node_nf_conntrack_stat_found",
        "Number of searched entries which were successful.",
    ),
    (
        4,
        "node_nf_conntrack_stat_invalid",
        "Number of packets seen which can not be tracked.",
    ),
    (
        5,
        "node_nf_conntrack_stat_ignore",
        "Number of packets seen which are already connected to a conntrack entry.",
    ),
    (
        8,
        "node_nf_conntrack_stat_insert",
        "Number of entries inserted into the list.",
    ),
    (
        9,
        "node_nf_conntrack_stat_insert_failed",
        "Number of entries for which list insertion was attempted but failed.",
    ),
    (
        10,
        "node_nf_conntrack_stat_drop",
        "Number of packets dropped due to conntrack failure.",
    ),
    (
        11,
        "node_nf_conntrack_stat_early_drop",
        "Number of dropped conntrack entries to make room for new ones, if maximum table size was reached.",
    ),
    (
        16,
        "node_nf_conntrack_stat_search_restart",
        "Number of conntrack table lookups which had to be restarted due to hashtable resizes.",
    ),
];

/// Kernels before 2.6.35 lack search_restart (16 columns); newer ones have
/// 17. More columns are accepted in case a kernel appends some.
const MIN_COLUMNS: usize = 16;
const MAX_STAT_COLUMN: usize = 17;

pub struct Conntrack {
    buf: String,
}

impl Conntrack {
    pub fn new(_settings: &Settings) -> Self {
        Conntrack {
            buf: String::with_capacity(2048),
        }
    }
}

fn read_uint(path: &Path, buf: &mut String) -> Result<u64, CollectError> {
    read_into(path, buf)?;
    buf.trim()
        .parse()
        .map_err(|_| CollectError::parse(path, format!("bad value {:?}", buf.trim())))
}

impl Collector for Conntrack {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let count = read_uint(
            &ctx.proc_path("sys/net/netfilter/nf_conntrack_count"),
            &mut self.buf,
        )?;
        let max = read_uint(
            &ctx.proc_path("sys/net/netfilter/nf_conntrack_max"),
            &mut self.buf,
        )?;

        let path = ctx.proc_path("net/stat/nf_conntrack");
        read_into(&path, &mut self.buf)?;
        let mut sums = [0u64; STATS.len()];
        let mut cols = [0u64; MAX_STAT_COLUMN];
        // The first line is the header; each further line is one CPU.
        for line in self.buf.lines().skip(1) {
            let mut n = 0;
            for field in line.split_ascii_whitespace() {
                let v = u64::from_str_radix(field, 16).map_err(|_| {
                    CollectError::parse(&path, format!("bad hex field {field:?} in {line:?}"))
                })?;
                if n < cols.len() {
                    cols[n] = v;
                }
                n += 1;
            }
            if n < MIN_COLUMNS {
                return Err(CollectError::parse(
                    &path,
                    format!("{n} columns in {line:?}, expected at least {MIN_COLUMNS}"),
                ));
            }
            if n == MIN_COLUMNS {
                cols[16] = 0;
            }
            for (sum, (col, _, _)) in sums.iter_mut().zip(STATS.iter()) {
                *sum = sum.wrapping_add(cols[*col]);
            }
        }

        out.single(
            "node_nf_conntrack_entries",
            "Number of currently allocated flow entries for connection tracking.",
            MetricType::Gauge,
            count as f64,
        );
        out.single(
            "node_nf_conntrack_entries_limit",
            "Maximum size of connection tracking table.",
            MetricType::Gauge,
            max as f64,
        );
        for ((_, name, help), v) in STATS.iter().zip(sums) {
            out.single(name, help, MetricType::Gauge, v as f64);
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
            &mut Conntrack::new(&Settings::default()),
            &fixture_ctx(&format!("conntrack/{case}")),
        )
    }

    #[test]
    fn sums_stats_over_cpus() {
        let text = run("basic").unwrap();
        let want = [
            "# HELP node_nf_conntrack_entries Number of currently allocated flow entries for connection tracking.",
            "# TYPE node_nf_conntrack_entries gauge",
            "node_nf_conntrack_entries 123",
            "# HELP node_nf_conntrack_entries_limit Maximum size of connection tracking table.",
            "node_nf_conntrack_entries_limit 65536",
            "# TYPE node_nf_conntrack_stat_found gauge",
            "node_nf_conntrack_stat_found 3",
            "node_nf_conntrack_stat_invalid 276",
            "node_nf_conntrack_stat_ignore 4",
            "node_nf_conntrack_stat_insert 5",
            "node_nf_conntrack_stat_insert_failed 7",
            "node_nf_conntrack_stat_drop 9",
            "node_nf_conntrack_stat_early_drop 11",
            // 0xffffffff + 1: per-CPU counters are summed without wrapping at 32 bits.
            "node_nf_conntrack_stat_search_restart 4294967296",
        ];
        for w in want {
            assert!(text.lines().any(|l| l == w), "missing {w:?} in\n{text}");
        }
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 10);
    }

    #[test]
    fn old_kernel_without_search_restart_and_appended_columns() {
        let text = run("oldkernel").unwrap();
        assert!(
            text.contains("node_nf_conntrack_stat_search_restart 0\n"),
            "{text}"
        );
        assert!(text.contains("node_nf_conntrack_stat_found 2\n"), "{text}");
        let text = run("newcolumns").unwrap();
        assert!(
            text.contains("node_nf_conntrack_stat_search_restart 1\n"),
            "{text}"
        );
        assert!(text.contains("node_nf_conntrack_stat_drop 16\n"), "{text}");
    }

    #[test]
    fn module_not_loaded_is_an_error_like_1_5_0_no_data() {
        assert!(run("notloaded").is_err());
    }

    #[test]
    fn malformed_files_fail() {
        assert!(run("badcount").is_err());
        assert!(run("badstat").is_err());
        assert!(run("shortstat").is_err());
    }
}
