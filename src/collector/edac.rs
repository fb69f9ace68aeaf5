//! `edac`: node_edac_{,un}correctable_errors_total per memory controller and
//! node_edac_csrow_{,un}correctable_errors_total per chip-select row (the
//! `*_noinfo_count` errors as csrow="unknown") from
//! /sys/devices/system/edac/mc, as node_exporter 1.5.0.
//!
//! Must never: report a controller with a missing or malformed count (that
//! fails the collector, as upstream). No EDAC at all (most edge boards) is
//! success with no samples.

use std::path::{Path, PathBuf};

use super::{read_into, CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

const CE: (&str, &str) = (
    "node_edac_correctable_errors_total",
    "Total correctable memory errors.",
);
const UE: (&str, &str) = (
    "node_edac_uncorrectable_errors_total",
    "Total uncorrectable memory errors.",
);
const CSROW_CE: (&str, &str) = (
    "node_edac_csrow_correctable_errors_total",
    "Total correctable memory errors for this csrow.",
);
const CSROW_UE: (&str, &str) = (
    "node_edac_csrow_uncorrectable_errors_total",
    "Total uncorrectable memory errors for this csrow.",
);

pub struct Edac {
    path: PathBuf,
    buf: String,
}

impl Edac {
    pub fn new(_settings: &Settings) -> Self {
        Edac {
            path: PathBuf::new(),
            buf: String::new(),
        }
    }

    /// Upstream's readUintFromFile: whole file, trimmed, base 10.
    fn count(&mut self, dir: &Path, file: &str) -> Result<f64, CollectError> {
        self.path.clear();
        self.path.push(dir);
        self.path.push(file);
        read_into(&self.path, &mut self.buf)?;
        let s = self.buf.trim();
        s.parse::<u64>()
            .map(|v| v as f64)
            .map_err(|e| CollectError::parse(&self.path, format!("{s:?}: {e}")))
    }
}

/// The digits after `prefix` for a glob `<prefix>[0-9]*` match (the label is
/// the leading digits, as upstream's regexp captures them).
fn number<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = name.strip_prefix(prefix)?;
    let n = rest.bytes().take_while(u8::is_ascii_digit).count();
    (n > 0).then(|| &rest[..n])
}

impl Collector for Edac {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let mc = ctx.sys_path("devices/system/edac/mc");
        // Go's filepath.Glob ignores an unreadable or missing directory.
        let Ok(entries) = std::fs::read_dir(&mc) else {
            return Ok(());
        };
        // Listing allocates per entry; controllers are found by listing.
        for entry in entries.flatten() {
            let fname = entry.file_name();
            let Some(ctrl) = fname.to_str().and_then(|n| number(n, "mc")) else {
                continue;
            };
            let dir = entry.path();
            let ce = self.count(&dir, "ce_count")?;
            let ce_noinfo = self.count(&dir, "ce_noinfo_count")?;
            let ue = self.count(&dir, "ue_count")?;
            let ue_noinfo = self.count(&dir, "ue_noinfo_count")?;
            out.family(CE.0, CE.1, MetricType::Counter)
                .sample(&[("controller", ctrl)], ce);
            out.family(CSROW_CE.0, CSROW_CE.1, MetricType::Counter)
                .sample(&[("controller", ctrl), ("csrow", "unknown")], ce_noinfo);
            out.family(UE.0, UE.1, MetricType::Counter)
                .sample(&[("controller", ctrl)], ue);
            out.family(CSROW_UE.0, CSROW_UE.1, MetricType::Counter)
                .sample(&[("controller", ctrl), ("csrow", "unknown")], ue_noinfo);
            // Modern drivers (skx_edac, igen6) may expose only dimmN.
            let Ok(rows) = std::fs::read_dir(&dir) else {
                continue;
            };
            for row in rows.flatten() {
                let rname = row.file_name();
                let Some(csrow) = rname.to_str().and_then(|n| number(n, "csrow")) else {
                    continue;
                };
                let rdir = row.path();
                let ce = self.count(&rdir, "ce_count")?;
                out.family(CSROW_CE.0, CSROW_CE.1, MetricType::Counter)
                    .sample(&[("controller", ctrl), ("csrow", csrow)], ce);
                let ue = self.count(&rdir, "ue_count")?;
                out.family(CSROW_UE.0, CSROW_UE.1, MetricType::Counter)
                    .sample(&[("controller", ctrl), ("csrow", csrow)], ue);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::hwmon::parity::assert_parity;
    use crate::collector::testutil::{fixture_ctx, render};

    fn new() -> Edac {
        Edac::new(&Settings::default())
    }

    #[test]
    fn matches_node_exporter() {
        for case in ["edac/two", "edac/bad", "edac/missing_noinfo", "hwmon/nuc"] {
            assert_parity(&mut new(), case, "edac.prom");
        }
    }

    #[test]
    fn counts_past_32_bits() {
        let text = render(&mut new(), &fixture_ctx("edac/two")).unwrap();
        assert!(text.contains("node_edac_correctable_errors_total{controller=\"1\"} 4294967296\n"));
        assert!(text.contains(
            "node_edac_csrow_correctable_errors_total{controller=\"0\",csrow=\"unknown\"} 2\n"
        ));
        assert!(text.contains(
            "node_edac_csrow_uncorrectable_errors_total{controller=\"0\",csrow=\"1\"} 1\n"
        ));
    }

    #[test]
    fn malformed_count_fails_only_this_collector() {
        assert!(render(&mut new(), &fixture_ctx("edac/bad")).is_err());
    }

    #[test]
    fn no_edac_is_success_without_samples() {
        assert_eq!(render(&mut new(), &fixture_ctx("hwmon/rpi4")).unwrap(), "");
    }
}
