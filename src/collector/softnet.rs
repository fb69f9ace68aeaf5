//! `softnet`: node_softnet_{processed,dropped,times_squeezed}_total{cpu}
//! from /proc/net/softnet_stat, as node_exporter 1.5.0.
//!
//! The `cpu` label is the line number, not the CPU id the kernel prints in
//! a later column: /proc/net/softnet_stat skips offline CPUs, and 1.5.0
//! labels by line, so cairn does too. The counters are the kernel's 32-bit
//! `unsigned int`s and wrap at 2^32; they are reported as read.
//!
//! Owns: parsing /proc/net/softnet_stat. Must never: emit a partial set
//! from a short or malformed line (that fails the collector).

use super::{read_into, CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

const FAMILIES: [(&str, &str); 3] = [
    (
        "node_softnet_processed_total",
        "Number of processed packets",
    ),
    ("node_softnet_dropped_total", "Number of dropped packets"),
    (
        "node_softnet_times_squeezed_total",
        "Number of times processing packets ran out of quota",
    ),
];

/// Kernels since 2.6 print at least 9 columns (newer ones append more:
/// received_rps, flow_limit_count, backlog length, cpu id).
const MIN_COLUMNS: usize = 9;

pub struct Softnet {
    buf: String,
}

impl Softnet {
    pub fn new(_settings: &Settings) -> Self {
        Softnet {
            buf: String::with_capacity(1024),
        }
    }
}

impl Collector for Softnet {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let path = ctx.proc_path("net/softnet_stat");
        read_into(&path, &mut self.buf)?;
        for (cpu, line) in self.buf.lines().enumerate() {
            let mut vals = [0u32; 3];
            let mut n = 0;
            for field in line.split_ascii_whitespace() {
                if n < vals.len() {
                    vals[n] = u32::from_str_radix(field, 16).map_err(|_| {
                        CollectError::parse(&path, format!("bad hex field {field:?} in {line:?}"))
                    })?;
                }
                n += 1;
            }
            if n < MIN_COLUMNS {
                return Err(CollectError::parse(
                    &path,
                    format!("{n} columns in {line:?}, expected at least {MIN_COLUMNS}"),
                ));
            }
            for ((name, help), v) in FAMILIES.iter().zip(vals) {
                out.family(name, help, MetricType::Counter)
                    .sample_with(f64::from(v), |l| {
                        l.label_display("cpu", cpu);
                    });
            }
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
            &mut Softnet::new(&Settings::default()),
            &fixture_ctx(&format!("softnet/{case}")),
        )
    }

    #[test]
    fn labels_by_line_and_reads_hex() {
        let text = run("basic").unwrap();
        assert_eq!(
            text,
            "# HELP node_softnet_dropped_total Number of dropped packets\n\
             # TYPE node_softnet_dropped_total counter\n\
             node_softnet_dropped_total{cpu=\"0\"} 0\n\
             node_softnet_dropped_total{cpu=\"1\"} 16\n\
             node_softnet_dropped_total{cpu=\"2\"} 0\n\
             # HELP node_softnet_processed_total Number of processed packets\n\
             # TYPE node_softnet_processed_total counter\n\
             node_softnet_processed_total{cpu=\"0\"} 48061\n\
             node_softnet_processed_total{cpu=\"1\"} 4294967295\n\
             node_softnet_processed_total{cpu=\"2\"} 10\n\
             # HELP node_softnet_times_squeezed_total Number of times processing packets ran out of quota\n\
             # TYPE node_softnet_times_squeezed_total counter\n\
             node_softnet_times_squeezed_total{cpu=\"0\"} 1\n\
             node_softnet_times_squeezed_total{cpu=\"1\"} 0\n\
             node_softnet_times_squeezed_total{cpu=\"2\"} 2\n"
        );
    }

    #[test]
    fn short_or_garbled_lines_fail() {
        assert!(run("short").is_err());
        assert!(run("garbled").is_err());
        assert!(run("missing").is_err());
    }
}
