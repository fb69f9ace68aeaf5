//! `pressure`: pressure stall information from /proc/pressure/{cpu,io,memory}
//! as node_exporter 1.5.0 names it: node_pressure_cpu_waiting_seconds_total,
//! node_pressure_{io,memory}_{waiting,stalled}_seconds_total (the `some` and
//! `full` totals, microseconds in the file, seconds here).
//!
//! Must never: invent a series 1.5.0 does not have. Newer upstream also
//! reports cpu `full` (node_pressure_cpu_stalled_seconds_total) and
//! /proc/pressure/irq; 1.5.0 does not, so neither does cairn (its `full` line
//! for cpu is read past, like any line that is neither `some` nor `full`).
//!
//! A kernel without PSI (no /proc/pressure, or `psi=0`, where reads fail with
//! EOPNOTSUPP) is 1.5.0's ErrNoData: no samples and success 0, reported here
//! as a "no data" error. A `some` line, or for io/memory a `full` line, that
//! is missing or garbled fails the collector (1.5.0 would crash on the
//! missing line).

use std::io;

use super::{read_into, CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

/// A family name and its HELP.
type Fam = (&'static str, &'static str);

/// Resource file, the family of its `full` line if reported, and of `some`.
const RESOURCES: &[(&str, Option<Fam>, Fam)] = &[
    (
        "pressure/cpu",
        None,
        (
            "node_pressure_cpu_waiting_seconds_total",
            "Total time in seconds that processes have waited for CPU time",
        ),
    ),
    (
        "pressure/io",
        Some((
            "node_pressure_io_stalled_seconds_total",
            "Total time in seconds no process could make progress due to IO congestion",
        )),
        (
            "node_pressure_io_waiting_seconds_total",
            "Total time in seconds that processes have waited due to IO congestion",
        ),
    ),
    (
        "pressure/memory",
        Some((
            "node_pressure_memory_stalled_seconds_total",
            "Total time in seconds no process could make progress due to memory congestion",
        )),
        (
            "node_pressure_memory_waiting_seconds_total",
            "Total time in seconds that processes have waited for memory",
        ),
    ),
];

pub struct Pressure {
    buf: String,
}

impl Pressure {
    pub fn new(_settings: &Settings) -> Self {
        Pressure {
            buf: String::with_capacity(128),
        }
    }
}

/// The `total=` of one `some`/`full` line, checked the way procfs' Sscanf
/// format `avg10=%f avg60=%f avg300=%f total=%d` checks it (fields a newer
/// kernel might append after `total` are ignored, as Sscanf ignores them).
fn parse_total(rest: &str) -> Option<u64> {
    let mut f = rest.split_ascii_whitespace();
    for key in ["avg10=", "avg60=", "avg300="] {
        f.next()?.strip_prefix(key)?.parse::<f64>().ok()?;
    }
    f.next()?.strip_prefix("total=")?.parse::<u64>().ok()
}

fn is_no_data(e: &CollectError) -> bool {
    match e {
        CollectError::Io { source, .. } => {
            source.kind() == io::ErrorKind::NotFound
                || source.raw_os_error() == Some(libc::EOPNOTSUPP)
        }
        _ => false,
    }
}

impl Collector for Pressure {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        for &(rel, full_fam, some_fam) in RESOURCES {
            let path = ctx.proc_path(rel);
            if let Err(e) = read_into(&path, &mut self.buf) {
                if is_no_data(&e) {
                    return Err(CollectError::NoData(format!(
                        "pressure information is unavailable ({e}); \
                         it needs Linux >= 4.20 with CONFIG_PSI and without psi=0"
                    )));
                }
                return Err(e);
            }
            let (mut some, mut full) = (None, None);
            for line in self.buf.lines() {
                let (slot, rest) = if let Some(r) = line.strip_prefix("some ") {
                    (&mut some, r)
                } else if let Some(r) = line.strip_prefix("full ") {
                    (&mut full, r)
                } else {
                    continue;
                };
                *slot = Some(
                    parse_total(rest)
                        .ok_or_else(|| CollectError::parse(&path, format!("bad line {line:?}")))?,
                );
            }
            let some = some.ok_or_else(|| CollectError::parse(&path, "no \"some\" line"))?;
            out.single(
                some_fam.0,
                some_fam.1,
                MetricType::Counter,
                // Two divisions, as node_exporter: the rounding matches.
                some as f64 / 1000.0 / 1000.0,
            );
            if let Some((name, help)) = full_fam {
                let full = full.ok_or_else(|| CollectError::parse(&path, "no \"full\" line"))?;
                out.single(
                    name,
                    help,
                    MetricType::Counter,
                    full as f64 / 1000.0 / 1000.0,
                );
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
            &mut Pressure::new(&Settings::default()),
            &fixture_ctx(&format!("pressure/{case}")),
        )
    }

    /// Go divides by 1000 twice; so does cairn, which gives
    /// 6.511667999999999 for 6511668 µs where one division by 1e6 would not.
    #[test]
    fn pressure_normal() {
        assert_eq!(
            run("normal").unwrap(),
            "# HELP node_pressure_cpu_waiting_seconds_total Total time in seconds that processes have waited for CPU time\n\
             # TYPE node_pressure_cpu_waiting_seconds_total counter\n\
             node_pressure_cpu_waiting_seconds_total 333.59666\n\
             # HELP node_pressure_io_stalled_seconds_total Total time in seconds no process could make progress due to IO congestion\n\
             # TYPE node_pressure_io_stalled_seconds_total counter\n\
             node_pressure_io_stalled_seconds_total 6.511667999999999\n\
             # HELP node_pressure_io_waiting_seconds_total Total time in seconds that processes have waited due to IO congestion\n\
             # TYPE node_pressure_io_waiting_seconds_total counter\n\
             node_pressure_io_waiting_seconds_total 10.176743\n\
             # HELP node_pressure_memory_stalled_seconds_total Total time in seconds no process could make progress due to memory congestion\n\
             # TYPE node_pressure_memory_stalled_seconds_total counter\n\
             node_pressure_memory_stalled_seconds_total 0\n\
             # HELP node_pressure_memory_waiting_seconds_total Total time in seconds that processes have waited for memory\n\
             # TYPE node_pressure_memory_waiting_seconds_total counter\n\
             node_pressure_memory_waiting_seconds_total 0.000001\n"
        );
    }

    /// Kernels before 5.13 have no cpu `full` line; newer ones may add
    /// fields after `total=` and new resource files (irq): all fine.
    #[test]
    fn pressure_old_and_new_kernels() {
        let old = run("old_kernel").unwrap();
        assert!(
            old.contains("node_pressure_cpu_waiting_seconds_total 1\n"),
            "{old}"
        );
        let new = run("new_fields").unwrap();
        assert!(
            new.contains("node_pressure_io_stalled_seconds_total 2\n"),
            "{new}"
        );
        assert!(!new.contains("irq"), "{new}");
        assert!(!new.contains("cpu_stalled"), "{new}");
    }

    /// The total is a u64 of microseconds: no 32-bit wrap.
    #[test]
    fn pressure_large_total() {
        let t = run("large").unwrap();
        assert!(
            t.contains("node_pressure_cpu_waiting_seconds_total 18446744073709.55\n"),
            "{t}"
        );
    }

    #[test]
    fn pressure_without_psi_is_no_data() {
        let e = run("no_psi").unwrap_err();
        assert!(e.to_string().starts_with("no data"), "{e}");
    }

    #[test]
    fn pressure_missing_full_line_fails() {
        let e = run("no_full").unwrap_err();
        assert!(e.to_string().contains("no \"full\" line"), "{e}");
    }

    #[test]
    fn pressure_garbled_fails() {
        assert!(run("garbled").is_err());
    }

    /// Only a missing file or EOPNOTSUPP is "no data"; other read errors fail.
    #[test]
    fn pressure_unreadable_fails_not_no_data() {
        let e = run("unreadable").unwrap_err();
        assert!(!e.to_string().starts_with("no data"), "{e}");
    }
}
