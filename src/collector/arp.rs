//! `arp`: node_arp_entries{device}, the number of ARP (IPv4 neighbour)
//! entries per interface, counted from /proc/net/arp as node_exporter 1.5.0
//! does. Upstream later reads the same table over rtnetlink by default; the
//! kernel leaves NUD_NOARP entries out of both, so the counts agree and
//! `--collector.arp.netlink` is accepted but changes nothing here.
//!
//! Owns: parsing /proc/net/arp. Must never: emit a partial count from a
//! malformed table (a line that is neither the header nor a 6-column entry
//! fails the collector, as procfs does).

use regex::Regex;

use super::{device_filtered, read_into, CollectError, Collector, Context, Opt, OptKind, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[
    Opt {
        flag: "collector.arp.device-include",
        kind: OptKind::Regex,
        default: "",
        help: "Regexp of arp devices to include (mutually exclusive to device-exclude).",
        aliases: &[],
    },
    Opt {
        flag: "collector.arp.device-exclude",
        kind: OptKind::Regex,
        default: "",
        help: "Regexp of arp devices to exclude (mutually exclusive to device-include).",
        aliases: &[],
    },
    Opt {
        flag: "collector.arp.netlink",
        kind: OptKind::Bool,
        default: "true",
        help: "Use netlink to gather stats instead of /proc/net/arp. Accepted for \
               compatibility: cairn reads /proc/net/arp, which counts the same entries.",
        aliases: &[],
    },
];

pub struct Arp {
    include: Option<Regex>,
    exclude: Option<Regex>,
    buf: String,
    /// Count per device. Kept between collections so a steady set of
    /// interfaces allocates nothing; devices that had no entries last time
    /// are dropped, so interface churn cannot grow it without bound.
    counts: Vec<(String, u32)>,
}

impl Arp {
    pub fn new(settings: &Settings) -> Self {
        Arp {
            include: settings.regex("collector.arp.device-include"),
            exclude: settings.regex("collector.arp.device-exclude"),
            buf: String::with_capacity(1024),
            counts: Vec::new(),
        }
    }
}

/// Columns of /proc/net/arp: "IP address", "HW type", "Flags",
/// "HW address", "Mask", "Device" (the header splits into 9 words).
const DATA_WIDTH: usize = 6;
const HEADER_WIDTH: usize = 9;

impl Collector for Arp {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let path = ctx.proc_path("net/arp");
        read_into(&path, &mut self.buf)?;
        self.counts.retain(|(_, n)| *n > 0);
        for (_, n) in self.counts.iter_mut() {
            *n = 0;
        }
        for line in self.buf.lines() {
            let mut cols = line.split_ascii_whitespace();
            let mut device = None;
            let mut width = 0;
            for c in cols.by_ref() {
                width += 1;
                if width == DATA_WIDTH {
                    device = Some(c);
                }
            }
            match (width, device) {
                (0, _) | (HEADER_WIDTH, _) => continue,
                (DATA_WIDTH, Some(dev)) => match self.counts.iter_mut().find(|(d, _)| d == dev) {
                    Some((_, n)) => *n += 1,
                    // A device not seen last time: one allocation for its name.
                    None => self.counts.push((dev.to_owned(), 1)),
                },
                _ => {
                    return Err(CollectError::parse(
                        &path,
                        format!("{width} columns in {line:?}, expected {DATA_WIDTH}"),
                    ))
                }
            }
        }
        let mut fam = out.family(
            "node_arp_entries",
            "ARP entries by device",
            MetricType::Gauge,
        );
        for (dev, n) in &self.counts {
            if *n == 0 || device_filtered(dev, self.include.as_ref(), self.exclude.as_ref()) {
                continue;
            }
            fam.sample(&[("device", dev)], f64::from(*n));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn run(case: &str, s: &Settings) -> Result<String, CollectError> {
        render(&mut Arp::new(s), &fixture_ctx(&format!("arp/{case}")))
    }

    #[test]
    fn counts_entries_per_device() {
        let text = run("basic", &Settings::default()).unwrap();
        assert_eq!(
            text,
            "# HELP node_arp_entries ARP entries by device\n\
             # TYPE node_arp_entries gauge\n\
             node_arp_entries{device=\"br-lan\"} 1\n\
             node_arp_entries{device=\"eth0\"} 3\n\
             node_arp_entries{device=\"wlan0\"} 2\n"
        );
    }

    #[test]
    fn filters_apply_after_counting() {
        let s = Settings::default().with("collector.arp.device-exclude", "^eth");
        let text = run("basic", &s).unwrap();
        assert!(!text.contains("eth0"), "{text}");
        assert!(
            text.contains("node_arp_entries{device=\"wlan0\"} 2\n"),
            "{text}"
        );
        let s = Settings::default().with("collector.arp.device-include", "^eth0$");
        let text = run("basic", &s).unwrap();
        assert!(
            text.contains("node_arp_entries{device=\"eth0\"} 3\n"),
            "{text}"
        );
        assert!(!text.contains("wlan0"), "{text}");
    }

    #[test]
    fn header_only_table_emits_nothing() {
        let text = run("empty", &Settings::default()).unwrap();
        assert_eq!(text, "");
    }

    #[test]
    fn stale_devices_are_forgotten_between_collections() {
        let mut c = Arp::new(&Settings::default());
        render(&mut c, &fixture_ctx("arp/basic")).unwrap();
        assert_eq!(c.counts.len(), 3);
        let text = render(&mut c, &fixture_ctx("arp/empty")).unwrap();
        assert_eq!(text, "");
        render(&mut c, &fixture_ctx("arp/empty")).unwrap();
        assert!(c.counts.is_empty());
    }

    #[test]
    fn malformed_line_or_missing_file_fails() {
        assert!(run("malformed", &Settings::default()).is_err());
        assert!(run("missing", &Settings::default()).is_err());
    }
}
