//! `filefd`: node_filefd_allocated and node_filefd_maximum from
//! /proc/sys/fs/file-nr (allocated, free, maximum; the middle field has been
//! 0 since Linux 2.6 and is not reported, as in node_exporter).
//!
//! Must never: report one value without the other; a file with fewer than
//! three fields fails the collector.

use super::{read_into, CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

pub struct Filefd {
    buf: String,
}

impl Filefd {
    pub fn new(_settings: &Settings) -> Self {
        Filefd {
            buf: String::with_capacity(64),
        }
    }
}

impl Collector for Filefd {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let path = ctx.proc_path("sys/fs/file-nr");
        read_into(&path, &mut self.buf)?;
        let mut f = self.buf.split_ascii_whitespace();
        let (Some(allocated), Some(_), Some(maximum)) = (f.next(), f.next(), f.next()) else {
            return Err(CollectError::parse(
                &path,
                "unexpected number of file stats",
            ));
        };
        // node_exporter parses these with ParseFloat.
        let num = |s: &str| {
            s.parse::<f64>()
                .map_err(|e| CollectError::parse(&path, format!("invalid value {s:?}: {e}")))
        };
        let (allocated, maximum) = (num(allocated)?, num(maximum)?);
        out.single(
            "node_filefd_allocated",
            "File descriptor statistics: allocated.",
            MetricType::Gauge,
            allocated,
        );
        out.single(
            "node_filefd_maximum",
            "File descriptor statistics: maximum.",
            MetricType::Gauge,
            maximum,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn run(case: &str) -> Result<String, CollectError> {
        render(
            &mut Filefd::new(&Settings::default()),
            &fixture_ctx(&format!("filefd/{case}")),
        )
    }

    #[test]
    fn filefd_normal() {
        assert_eq!(
            run("normal").unwrap(),
            "# HELP node_filefd_allocated File descriptor statistics: allocated.\n\
             # TYPE node_filefd_allocated gauge\n\
             node_filefd_allocated 1024\n\
             # HELP node_filefd_maximum File descriptor statistics: maximum.\n\
             # TYPE node_filefd_maximum gauge\n\
             node_filefd_maximum 1631329\n"
        );
    }

    /// fs.file-max defaults to LONG_MAX on 64-bit kernels since 5.x when
    /// raised by systemd: beyond 2^53 the value is Go's float64 of it
    /// (9.223372036854776e+18, the same number written out).
    #[test]
    fn filefd_huge_maximum() {
        let t = run("huge").unwrap();
        assert!(
            t.contains("node_filefd_maximum 9223372036854776000\n"),
            "{t}"
        );
    }

    #[test]
    fn filefd_short_file_fails() {
        assert!(run("short").is_err());
    }

    #[test]
    fn filefd_garbled_fails() {
        assert!(run("garbled").is_err());
    }

    /// EISDIR and friends are read errors, not "no data".
    #[test]
    fn filefd_unreadable_fails() {
        assert!(run("unreadable").is_err());
    }
}
