//! `rapl`: node_rapl_<zone>_joules_total (or, with
//! `--collector.rapl.enable-zone-label`, node_rapl_joules_total{rapl_zone})
//! from /sys/class/powercap/*/energy_uj, as node_exporter 1.5.0 names them:
//! `package-0` becomes zone `package` with index 0, repeated names without
//! an index count up, `path` is the class entry under --path.sysfs.
//!
//! Must never: guess at energy the kernel would not show. Since Linux 5.10
//! energy_uj is root-only; a permission error means no data this scrape (the
//! collector reports failure, as upstream's ErrNoData does), never zeros.

use std::io;
use std::path::PathBuf;

use super::{CollectError, Collector, Context, Opt, OptKind, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[Opt {
    flag: "collector.rapl.enable-zone-label",
    kind: OptKind::Bool,
    default: "false",
    help: "Enables service unit metric unit_start_time_seconds",
    aliases: &[],
}];

pub struct Rapl {
    zone_label: bool,
    /// Class entries, sorted: the index of a repeated name depends on the
    /// order, and upstream reads them sorted.
    names: Vec<String>,
    used: usize,
    /// Name → times seen (upstream's countNameUsages).
    counts: Vec<(String, i64)>,
    path: PathBuf,
    buf: String,
    zone: String,
    metric: String,
    help: String,
}

impl Rapl {
    pub fn new(settings: &Settings) -> Self {
        Rapl {
            zone_label: settings.bool("collector.rapl.enable-zone-label"),
            names: Vec::new(),
            used: 0,
            counts: Vec::new(),
            path: PathBuf::new(),
            buf: String::new(),
            zone: String::new(),
            metric: String::new(),
            help: String::new(),
        }
    }
}

fn no_data(what: &str, e: &io::Error) -> CollectError {
    CollectError::NoData(format!("{what}: {e}"))
}

/// node_exporter's SanitizeMetricName: each run of characters outside
/// `[0-9A-Za-z_]`, with the underscores around it, becomes one `_`.
fn push_sanitized(out: &mut String, s: &str) {
    let b = s.as_bytes();
    let valid = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphanumeric() {
            out.push(c as char);
            i += 1;
            continue;
        }
        // Underscores start a match only if an invalid character follows.
        let mut j = i;
        while j < b.len() && b[j] == b'_' {
            j += 1;
        }
        if j > i && (j == b.len() || valid(b[j])) {
            out.push_str(&s[i..j]);
            i = j;
            continue;
        }
        while j < b.len() && !valid(b[j]) {
            j += 1;
        }
        while j < b.len() && b[j] == b'_' {
            j += 1;
        }
        out.push('_');
        i = j;
    }
}

impl Collector for Rapl {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let class = ctx.sys_path("class/powercap");
        let entries = match std::fs::read_dir(&class) {
            Ok(e) => e,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                ) =>
            {
                return Err(no_data("powercap", &e))
            }
            Err(source) => {
                return Err(CollectError::Io {
                    path: class,
                    source,
                })
            }
        };
        self.used = 0;
        for entry in entries {
            let entry = entry.map_err(|source| CollectError::Io {
                path: class.clone(),
                source,
            })?;
            let fname = entry.file_name();
            let Some(name) = fname.to_str() else {
                continue;
            };
            if self.used == self.names.len() {
                self.names.push(String::new());
            }
            self.names[self.used].clear();
            self.names[self.used].push_str(name);
            self.used += 1;
        }
        self.names[..self.used].sort_unstable();
        for c in &mut self.counts {
            c.1 = 0;
        }

        for i in 0..self.used {
            let entry = self.names[i].as_str();
            self.path.clear();
            self.path.push(&class);
            self.path.push(entry);
            self.path.push("name");
            // Entries without a readable name (the intel-rapl control type
            // itself) are not zones.
            if crate::collector::read_into(&self.path, &mut self.buf).is_err() {
                continue;
            }
            let raw = self.buf.trim();
            // "package-0" → ("package", 0); other names count their uses.
            let (zone, index) = match raw.split_once('-') {
                Some((head, tail)) if !tail.contains('-') => match tail.parse::<i64>() {
                    Ok(n) => (head, Some(n)),
                    Err(_) => (raw, None),
                },
                _ => (raw, None),
            };
            self.zone.clear();
            self.zone.push_str(zone);
            let slot = match self.counts.iter().position(|c| c.0 == self.zone) {
                Some(p) => p,
                None => {
                    self.counts.push((self.zone.clone(), 0));
                    self.counts.len() - 1
                }
            };
            let index = index.unwrap_or(self.counts[slot].1);
            self.counts[slot].1 = index + 1;

            self.path.set_file_name("max_energy_range_uj");
            match crate::collector::read_into(&self.path, &mut self.buf) {
                Ok(()) => {
                    self.buf.trim().parse::<u64>().map_err(|e| {
                        CollectError::parse(&self.path, format!("{:?}: {e}", self.buf.trim()))
                    })?;
                }
                Err(CollectError::Io { source, .. })
                    if matches!(
                        source.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                    ) =>
                {
                    return Err(no_data("max_energy_range_uj", &source));
                }
                Err(e) => return Err(e),
            }
            self.path.set_file_name("energy_uj");
            let uj = match crate::collector::read_into(&self.path, &mut self.buf) {
                Ok(()) => self.buf.trim().parse::<u64>().map_err(|e| {
                    CollectError::parse(&self.path, format!("{:?}: {e}", self.buf.trim()))
                })?,
                Err(CollectError::Io { source, .. })
                    if source.kind() == io::ErrorKind::PermissionDenied =>
                {
                    return Err(no_data("energy_uj", &source));
                }
                Err(e) => return Err(e),
            };
            let joules = uj as f64 / 1000000.0;
            self.path.pop();
            let path = self.path.to_string_lossy();
            let zone = self.zone.as_str();
            if self.zone_label {
                out.family(
                    "node_rapl_joules_total",
                    "Current RAPL value in joules",
                    MetricType::Counter,
                )
                .sample_with(joules, |l| {
                    l.label_display("index", index)
                        .label("path", &path)
                        .label("rapl_zone", zone);
                });
            } else {
                self.metric.clear();
                self.metric.push_str("node_rapl_");
                push_sanitized(&mut self.metric, zone);
                self.metric.push_str("_joules_total");
                self.help.clear();
                self.help.push_str("Current RAPL ");
                self.help.push_str(zone);
                self.help.push_str(" value in joules");
                out.family(&self.metric, &self.help, MetricType::Counter)
                    .sample_with(joules, |l| {
                        l.label_display("index", index).label("path", &path);
                    });
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

    fn new() -> Rapl {
        Rapl::new(&Settings::default())
    }

    fn zone_label() -> Rapl {
        Rapl::new(&Settings::default().with("collector.rapl.enable-zone-label", "true"))
    }

    #[test]
    fn nuc_matches_node_exporter() {
        assert_parity(&mut new(), "hwmon/nuc", "rapl.prom");
        assert_parity(&mut zone_label(), "hwmon/nuc", "rapl.zone-label.prom");
        assert_parity(&mut new(), "hwmon/rpi4", "rapl.prom");
    }

    #[test]
    fn edge_cases_match_node_exporter() {
        assert_parity(&mut new(), "rapl/dups", "rapl.prom");
        assert_parity(&mut zone_label(), "rapl/dups", "rapl.zone-label.prom");
        assert_parity(&mut new(), "rapl/bad_energy", "rapl.prom");
        assert_parity(&mut new(), "rapl/no_range", "rapl.prom");
    }

    #[test]
    fn sanitizes_like_node_exporter() {
        for (raw, want) in [
            ("package-0-die-1", "package_0_die_1"),
            ("weird.name-x", "weird_name_x"),
            ("a__-__b", "a_b"),
            ("a_-_-b", "a__b"),
            ("keep_this", "keep_this"),
            ("trail-", "trail_"),
        ] {
            let mut s = String::new();
            push_sanitized(&mut s, raw);
            assert_eq!(s, want, "{raw}");
        }
    }

    #[test]
    fn wrapped_counter_is_reported_as_read() {
        // energy_uj wraps at max_energy_range_uj; the counter reset is for
        // Prometheus' rate() to see, as with node_exporter.
        let text = render(&mut new(), &fixture_ctx("rapl/dups")).unwrap();
        assert!(text.contains("node_rapl_psys_joules_total{index=\"0\",path=\""));
        assert!(text.contains("intel-rapl:3\"} 4294.967295\n"));
    }

    #[test]
    fn malformed_energy_fails_only_this_collector() {
        assert!(render(&mut new(), &fixture_ctx("rapl/bad_energy")).is_err());
    }
}
