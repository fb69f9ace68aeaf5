//! `netdev`: node_network_{receive,transmit}_<field>_total from
//! /proc/net/dev, with node_exporter 1.5.0's legacy names.
//!
//! 1.5.0 reads the counters over rtnetlink by default and folds them into
//! the /proc/net/dev names (`receive_drop` = rx_dropped + rx_missed_errors,
//! and so on), which is exactly the arithmetic the kernel does when it
//! prints /proc/net/dev, so the values agree. The one counter netlink has
//! and the file lacks, rx_nohandler, comes from
//! /sys/class/net/<dev>/statistics/rx_nohandler when that file exists.
//!
//! Owns: parsing /proc/net/dev. Must never: fail on a missing sysfs
//! statistics file (it is optional), or emit a partial collection from a
//! malformed /proc/net/dev (that fails the collector).

use std::ffi::OsString;
use std::path::Path;

use regex::Regex;

use super::{
    device_filtered, read_into, read_optional, CollectError, Collector, Context, Opt, OptKind,
    Settings,
};
use crate::metrics::{Emitter, MetricType};

/// (family name, HELP) per /proc/net/dev column, in the kernel's fixed
/// column order: 8 receive then 8 transmit counters.
const FIELDS: [(&str, &str); 16] = [
    (
        "node_network_receive_bytes_total",
        "Network device statistic receive_bytes.",
    ),
    (
        "node_network_receive_packets_total",
        "Network device statistic receive_packets.",
    ),
    (
        "node_network_receive_errs_total",
        "Network device statistic receive_errs.",
    ),
    (
        "node_network_receive_drop_total",
        "Network device statistic receive_drop.",
    ),
    (
        "node_network_receive_fifo_total",
        "Network device statistic receive_fifo.",
    ),
    (
        "node_network_receive_frame_total",
        "Network device statistic receive_frame.",
    ),
    (
        "node_network_receive_compressed_total",
        "Network device statistic receive_compressed.",
    ),
    (
        "node_network_receive_multicast_total",
        "Network device statistic receive_multicast.",
    ),
    (
        "node_network_transmit_bytes_total",
        "Network device statistic transmit_bytes.",
    ),
    (
        "node_network_transmit_packets_total",
        "Network device statistic transmit_packets.",
    ),
    (
        "node_network_transmit_errs_total",
        "Network device statistic transmit_errs.",
    ),
    (
        "node_network_transmit_drop_total",
        "Network device statistic transmit_drop.",
    ),
    (
        "node_network_transmit_fifo_total",
        "Network device statistic transmit_fifo.",
    ),
    (
        "node_network_transmit_colls_total",
        "Network device statistic transmit_colls.",
    ),
    (
        "node_network_transmit_carrier_total",
        "Network device statistic transmit_carrier.",
    ),
    (
        "node_network_transmit_compressed_total",
        "Network device statistic transmit_compressed.",
    ),
];

const NOHANDLER: (&str, &str) = (
    "node_network_receive_nohandler_total",
    "Network device statistic receive_nohandler.",
);

pub const OPTIONS: &[Opt] = &[
    Opt {
        flag: "collector.netdev.device-exclude",
        kind: OptKind::Regex,
        default: "",
        help: "Regexp of net devices to exclude (mutually exclusive to device-include).",
        aliases: &["collector.netdev.device-blacklist"],
    },
    Opt {
        flag: "collector.netdev.device-include",
        kind: OptKind::Regex,
        default: "",
        help: "Regexp of net devices to include (mutually exclusive to device-exclude).",
        aliases: &["collector.netdev.device-whitelist"],
    },
];

pub struct Netdev {
    include: Option<Regex>,
    exclude: Option<Regex>,
    buf: String,
    small: String,
    path: OsString,
}

impl Netdev {
    pub fn new(settings: &Settings) -> Self {
        Netdev {
            include: settings.regex("collector.netdev.device-include"),
            exclude: settings.regex("collector.netdev.device-exclude"),
            buf: String::with_capacity(2048),
            small: String::with_capacity(32),
            path: OsString::new(),
        }
    }
}

/// rx_nohandler for `dev`, if the kernel (4.6+) exposes it. `path` and
/// `buf` are scratch buffers kept by the collector.
fn nohandler(
    sysfs: &Path,
    dev: &str,
    path: &mut OsString,
    buf: &mut String,
) -> Result<Option<u64>, CollectError> {
    // A name that is not a single path component cannot be a kernel
    // interface name; do not let it walk the sysfs tree.
    if dev.contains('/') || dev == "." || dev == ".." {
        return Ok(None);
    }
    path.clear();
    path.push(sysfs.as_os_str());
    path.push("/class/net/");
    path.push(dev);
    path.push("/statistics/rx_nohandler");
    let path = Path::new(path);
    // Unreadable (no permission, a device gone since /proc/net/dev was
    // read) counts as absent: the file is optional.
    if !matches!(read_optional(path, buf), Ok(true)) {
        return Ok(None);
    }
    buf.trim()
        .parse()
        .map(Some)
        .map_err(|_| CollectError::parse(path, format!("bad counter {:?}", buf.trim())))
}

impl Collector for Netdev {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let path = ctx.proc_path("net/dev");
        read_into(&path, &mut self.buf)?;
        let mut lines = self.buf.lines();
        // Two header lines ("Inter-|   Receive ..." and " face |bytes ...");
        // the columns are fixed by the kernel, so they are not parsed.
        if lines.next().is_none() || lines.next().is_none() {
            return Err(CollectError::parse(&path, "missing header lines"));
        }
        let mut vals = [0u64; FIELDS.len()];
        for line in lines {
            let bad = |msg: &str| CollectError::parse(&path, format!("{msg} in line {line:?}"));
            // Names are right-aligned in a padded column and followed by a
            // colon with no space before the first counter when that is
            // wide (`  eth0:123 456`). The kernel forbids ':' in interface
            // names, so the last colon ends the name (as upstream's parser).
            let (name, rest) = line.rsplit_once(':').ok_or_else(|| bad("missing colon"))?;
            let dev = name.trim();
            if dev.is_empty() {
                return Err(bad("empty interface name"));
            }
            let mut fields = rest.split_ascii_whitespace();
            for slot in vals.iter_mut() {
                *slot = fields
                    .next()
                    .ok_or_else(|| bad("too few fields"))?
                    .parse()
                    .map_err(|_| bad("bad counter"))?;
            }
            if device_filtered(dev, self.include.as_ref(), self.exclude.as_ref()) {
                continue;
            }
            for ((name, help), &v) in FIELDS.iter().zip(&vals) {
                out.family(name, help, MetricType::Counter)
                    .sample(&[("device", dev)], v as f64);
            }
            if let Some(v) = nohandler(&ctx.sysfs, dev, &mut self.path, &mut self.small)? {
                out.family(NOHANDLER.0, NOHANDLER.1, MetricType::Counter)
                    .sample(&[("device", dev)], v as f64);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn run(case: &str, settings: &Settings) -> Result<String, CollectError> {
        let ctx = fixture_ctx(&format!("netdev/{case}"));
        render(&mut Netdev::new(settings), &ctx)
    }

    fn has(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }

    #[test]
    fn parses_all_columns_with_legacy_names() {
        let text = run("basic", &Settings::default()).unwrap();
        let cols = [
            ("receive_bytes", "65165192"),
            ("receive_packets", "2004"),
            ("receive_errs", "3"),
            ("receive_drop", "4"),
            ("receive_fifo", "5"),
            ("receive_frame", "6"),
            ("receive_compressed", "7"),
            ("receive_multicast", "8"),
            ("transmit_bytes", "92541"),
            ("transmit_packets", "1037"),
            ("transmit_errs", "11"),
            ("transmit_drop", "12"),
            ("transmit_fifo", "13"),
            ("transmit_colls", "14"),
            ("transmit_carrier", "15"),
            ("transmit_compressed", "16"),
        ];
        for (f, v) in cols {
            has(
                &text,
                &format!("# HELP node_network_{f}_total Network device statistic {f}."),
            );
            has(&text, &format!("# TYPE node_network_{f}_total counter"));
            has(
                &text,
                &format!("node_network_{f}_total{{device=\"eth0\"}} {v}"),
            );
        }
        // lo is not excluded by upstream's default.
        has(
            &text,
            r#"node_network_receive_bytes_total{device="lo"} 62935"#,
        );
        // rx_nohandler comes from sysfs where it exists (eth0 only here).
        has(
            &text,
            "# HELP node_network_receive_nohandler_total Network device statistic receive_nohandler.",
        );
        has(
            &text,
            r#"node_network_receive_nohandler_total{device="eth0"} 42"#,
        );
        assert!(
            !text.contains(r#"node_network_receive_nohandler_total{device="lo"}"#),
            "{text}"
        );
        assert_eq!(text.matches("node_network_receive_bytes_total{").count(), 2);
    }

    #[test]
    fn odd_names_glued_colons_and_huge_counters() {
        let text = run("odd", &Settings::default()).unwrap();
        // `  eth0:123 456`: the first counter is glued to the colon.
        has(
            &text,
            r#"node_network_receive_bytes_total{device="eth0"} 123"#,
        );
        has(
            &text,
            r#"node_network_receive_packets_total{device="eth0"} 456"#,
        );
        // `eth1: 123`: no padding before the name.
        has(
            &text,
            r#"node_network_receive_bytes_total{device="eth1"} 1"#,
        );
        has(
            &text,
            r#"node_network_receive_bytes_total{device="veth@if3"} 9"#,
        );
        has(
            &text,
            r#"node_network_receive_bytes_total{device="br-1a2b"} 10"#,
        );
        has(
            &text,
            r#"node_network_transmit_bytes_total{device="br-1a2b"} 18446744073709552000"#,
        );
        has(
            &text,
            r#"node_network_transmit_compressed_total{device="br-1a2b"} 18446744073709552000"#,
        );
    }

    #[test]
    fn filters_apply() {
        let s = Settings::default().with("collector.netdev.device-exclude", "^lo$");
        let text = run("basic", &s).unwrap();
        assert!(!text.contains(r#"device="lo""#), "{text}");
        assert!(text.contains(r#"device="eth0""#), "{text}");
        let s = Settings::default().with("collector.netdev.device-include", "^lo$");
        let text = run("basic", &s).unwrap();
        assert!(text.contains(r#"device="lo""#), "{text}");
        assert!(!text.contains(r#"device="eth0""#), "{text}");
    }

    #[test]
    fn truncated_or_garbled_file_fails() {
        assert!(run("truncated", &Settings::default()).is_err());
        assert!(run("garbled", &Settings::default()).is_err());
        assert!(run("headeronly", &Settings::default()).is_err());
    }

    #[test]
    fn garbage_nohandler_fails() {
        assert!(run("badnohandler", &Settings::default()).is_err());
    }
}
