//! `diskstats`: the node_disk_* families from /proc/diskstats, plus the
//! udev-derived node_disk_info / filesystem_info / device_mapper_info /
//! ata_* families, as node_exporter 1.5.0 emits them.
//!
//! Owns: parsing /proc/diskstats (14, 18 or 20 fields per line depending on
//! the kernel; only the counters a line has are emitted) and the udev
//! database files `b<major>:<minor>`.
//!
//! Must never: fail because udev data is missing or unreadable (the labels
//! are then empty, as upstream), or emit a partial collection from a
//! malformed /proc/diskstats (that fails the collector instead).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;

use regex::Regex;

use super::{device_filtered, read_into, CollectError, Collector, Context, Opt, OptKind, Settings};
use crate::metrics::{Emitter, MetricType};

/// Upstream multiplies by this constant (not divides by 1000), which decides
/// the last bit of e.g. `2.7600000000000002`.
const SECONDS_PER_TICK: f64 = 1.0 / 1000.0;
/// "Standard UNIX 512-byte sectors", whatever the device's block size.
const SECTOR_SIZE: f64 = 512.0;

/// How a raw counter becomes a sample value.
#[derive(Clone, Copy)]
enum Scale {
    One,
    Sectors,
    Ticks,
}

use MetricType::{Counter, Gauge};

/// The per-device counters in /proc/diskstats order (after major, minor,
/// name). A line with N fields yields the first N-3 of these, which is how
/// upstream gates the discard (kernel 4.18+) and flush (5.5+) families.
const STATS: [(&str, &str, MetricType, Scale); 17] = [
    (
        "node_disk_reads_completed_total",
        "The total number of reads completed successfully.",
        Counter,
        Scale::One,
    ),
    (
        "node_disk_reads_merged_total",
        "The total number of reads merged.",
        Counter,
        Scale::One,
    ),
    (
        "node_disk_read_bytes_total",
        "The total number of bytes read successfully.",
        Counter,
        Scale::Sectors,
    ),
    (
        "node_disk_read_time_seconds_total",
        "The total number of seconds spent by all reads.",
        Counter,
        Scale::Ticks,
    ),
    (
        "node_disk_writes_completed_total",
        "The total number of writes completed successfully.",
        Counter,
        Scale::One,
    ),
    (
        "node_disk_writes_merged_total",
        "The number of writes merged.",
        Counter,
        Scale::One,
    ),
    (
        "node_disk_written_bytes_total",
        "The total number of bytes written successfully.",
        Counter,
        Scale::Sectors,
    ),
    (
        "node_disk_write_time_seconds_total",
        "This is the total number of seconds spent by all writes.",
        Counter,
        Scale::Ticks,
    ),
    (
        "node_disk_io_now",
        "The number of I/Os currently in progress.",
        Gauge,
        Scale::One,
    ),
    (
        "node_disk_io_time_seconds_total",
        "Total seconds spent doing I/Os.",
        Counter,
        Scale::Ticks,
    ),
    (
        "node_disk_io_time_weighted_seconds_total",
        "The weighted # of seconds spent doing I/Os.",
        Counter,
        Scale::Ticks,
    ),
    (
        "node_disk_discards_completed_total",
        "The total number of discards completed successfully.",
        Counter,
        Scale::One,
    ),
    (
        "node_disk_discards_merged_total",
        "The total number of discards merged.",
        Counter,
        Scale::One,
    ),
    (
        // Upstream reports sectors here, not bytes.
        "node_disk_discarded_sectors_total",
        "The total number of sectors discarded successfully.",
        Counter,
        Scale::One,
    ),
    (
        "node_disk_discard_time_seconds_total",
        "This is the total number of seconds spent by all discards.",
        Counter,
        Scale::Ticks,
    ),
    (
        // Upstream's HELP has no final period.
        "node_disk_flush_requests_total",
        "The total number of flush requests completed successfully",
        Counter,
        Scale::One,
    ),
    (
        "node_disk_flush_requests_time_seconds_total",
        "This is the total number of seconds spent by all flush requests.",
        Counter,
        Scale::Ticks,
    ),
];

/// Fewer fields than this is not a line any kernel writes (the oldest
/// format has 14): the file was cut short.
const MIN_FIELDS: usize = 14;

/// The udev properties upstream reads, as indexes into `Udev::vals`.
#[derive(Clone, Copy)]
enum Key {
    IdPath,
    IdWwn,
    IdModel,
    IdSerialShort,
    IdRevision,
    IdFsType,
    IdFsUsage,
    IdFsUuid,
    IdFsVersion,
    DmName,
    DmUuid,
    DmVgName,
    DmLvName,
    DmLvLayer,
    IdAta,
    IdAtaWriteCache,
    IdAtaWriteCacheEnabled,
    IdAtaRotationRateRpm,
}
const NKEYS: usize = 18;

fn key_of(name: &str) -> Option<Key> {
    Some(match name {
        "ID_PATH" => Key::IdPath,
        "ID_WWN" => Key::IdWwn,
        "ID_MODEL" => Key::IdModel,
        "ID_SERIAL_SHORT" => Key::IdSerialShort,
        "ID_REVISION" => Key::IdRevision,
        "ID_FS_TYPE" => Key::IdFsType,
        "ID_FS_USAGE" => Key::IdFsUsage,
        "ID_FS_UUID" => Key::IdFsUuid,
        "ID_FS_VERSION" => Key::IdFsVersion,
        "DM_NAME" => Key::DmName,
        "DM_UUID" => Key::DmUuid,
        "DM_VG_NAME" => Key::DmVgName,
        "DM_LV_NAME" => Key::DmLvName,
        "DM_LV_LAYER" => Key::DmLvLayer,
        "ID_ATA" => Key::IdAta,
        "ID_ATA_WRITE_CACHE" => Key::IdAtaWriteCache,
        "ID_ATA_WRITE_CACHE_ENABLED" => Key::IdAtaWriteCacheEnabled,
        "ID_ATA_ROTATION_RATE_RPM" => Key::IdAtaRotationRateRpm,
        _ => return None,
    })
}

/// The ATA families, emitted (in this order) only for keys present in the
/// udev data of a device whose ID_ATA is non-empty.
const ATA: [(Key, &str, &str); 3] = [
    (
        Key::IdAtaWriteCache,
        "node_disk_ata_write_cache",
        "ATA disk has a write cache.",
    ),
    (
        Key::IdAtaWriteCacheEnabled,
        "node_disk_ata_write_cache_enabled",
        "ATA disk has its write cache enabled.",
    ),
    (
        Key::IdAtaRotationRateRpm,
        "node_disk_ata_rotation_rate_rpm",
        "ATA disk rotation rate in RPMs (0 for SSDs).",
    ),
];

/// One device's udev properties: byte ranges into `buf`, so looking them up
/// allocates nothing.
#[derive(Default)]
struct Udev {
    buf: String,
    path: OsString,
    vals: [Option<(usize, usize)>; NKEYS],
}

impl Udev {
    /// Loads `b<major>:<minor>`. Any failure (no udev on the host, no entry
    /// for this device, no permission) just means no properties, as
    /// upstream only logs it.
    fn load(&mut self, dir: &Path, major: u32, minor: u32) {
        self.vals = [None; NKEYS];
        self.path.clear();
        self.path.push(dir.as_os_str());
        // Writing into an OsString cannot fail.
        let _ = write!(self.path, "/b{major}:{minor}");
        if read_into(Path::new(&self.path), &mut self.buf).is_err() {
            self.buf.clear();
            return;
        }
        let mut off = 0;
        for line in self.buf.split_inclusive('\n') {
            let start = off;
            off += line.len();
            let line = line.trim_end_matches('\n');
            // Only `E:` lines are device properties (udevadm(8)); a repeated
            // key overrides the earlier one, as in upstream's map.
            let Some(prop) = line.strip_prefix("E:") else {
                continue;
            };
            let Some((name, value)) = prop.split_once('=') else {
                continue;
            };
            if let Some(k) = key_of(name) {
                let vstart = start + 2 + name.len() + 1;
                self.vals[k as usize] = Some((vstart, vstart + value.len()));
            }
        }
    }

    fn get(&self, k: Key) -> Option<&str> {
        self.vals[k as usize].map(|(s, e)| &self.buf[s..e])
    }

    /// The value, or "" when absent (upstream's map lookup).
    fn str(&self, k: Key) -> &str {
        self.get(k).unwrap_or("")
    }
}

pub const OPTIONS: &[Opt] = &[
    Opt {
        flag: "collector.diskstats.device-exclude",
        kind: OptKind::Regex,
        default: r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$",
        help: "Regexp of diskstats devices to exclude (mutually exclusive to device-include).",
        aliases: &["collector.diskstats.ignored-devices"],
    },
    Opt {
        flag: "collector.diskstats.device-include",
        kind: OptKind::Regex,
        default: "",
        help: "Regexp of diskstats devices to include (mutually exclusive to device-exclude).",
        aliases: &[],
    },
];

pub struct Diskstats {
    include: Option<Regex>,
    exclude: Option<Regex>,
    buf: String,
    udev: Udev,
}

impl Diskstats {
    pub fn new(settings: &Settings) -> Self {
        Diskstats {
            include: settings.regex("collector.diskstats.device-include"),
            exclude: settings.regex("collector.diskstats.device-exclude"),
            buf: String::with_capacity(4096),
            udev: Udev::default(),
        }
    }
}

impl Collector for Diskstats {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let path = ctx.proc_path("diskstats");
        read_into(&path, &mut self.buf)?;
        let mut vals = [0u64; STATS.len()];
        for line in self.buf.lines() {
            let mut fields = line.split_ascii_whitespace();
            let Some(first) = fields.next() else {
                continue;
            };
            let bad = |msg: &str| CollectError::parse(&path, format!("{msg} in line {line:?}"));
            let major: u32 = first.parse().map_err(|_| bad("bad major number"))?;
            let minor: u32 = fields
                .next()
                .ok_or_else(|| bad("too few fields"))?
                .parse()
                .map_err(|_| bad("bad minor number"))?;
            let dev = fields.next().ok_or_else(|| bad("too few fields"))?;
            let mut n = 0;
            // Fields past the 20th (a future kernel) are ignored, as
            // upstream's fixed-format scan does.
            for (slot, f) in vals.iter_mut().zip(fields.by_ref()) {
                *slot = f.parse().map_err(|_| bad("bad counter"))?;
                n += 1;
            }
            if n + 3 < MIN_FIELDS {
                return Err(bad("too few fields"));
            }
            if device_filtered(dev, self.include.as_ref(), self.exclude.as_ref()) {
                continue;
            }

            self.udev.load(&ctx.udev_data, major, minor);
            let u = &self.udev;
            out.family(
                "node_disk_info",
                "Info of /sys/block/<block_device>.",
                Gauge,
            )
            .sample_with(1.0, |l| {
                l.label("device", dev)
                    .label_display("major", major)
                    .label_display("minor", minor)
                    .label("model", u.str(Key::IdModel))
                    .label("path", u.str(Key::IdPath))
                    .label("revision", u.str(Key::IdRevision))
                    .label("serial", u.str(Key::IdSerialShort))
                    .label("wwn", u.str(Key::IdWwn));
            });

            for ((name, help, kind, scale), &raw) in STATS.iter().zip(&vals[..n]) {
                let v = match scale {
                    Scale::One => raw as f64,
                    Scale::Sectors => raw as f64 * SECTOR_SIZE,
                    Scale::Ticks => raw as f64 * SECONDS_PER_TICK,
                };
                out.family(name, help, *kind).sample(&[("device", dev)], v);
            }

            if let Some(fs_type) = u.get(Key::IdFsType).filter(|s| !s.is_empty()) {
                out.family(
                    "node_disk_filesystem_info",
                    "Info about disk filesystem.",
                    Gauge,
                )
                .sample(
                    &[
                        ("device", dev),
                        ("type", fs_type),
                        ("usage", u.str(Key::IdFsUsage)),
                        ("uuid", u.str(Key::IdFsUuid)),
                        ("version", u.str(Key::IdFsVersion)),
                    ],
                    1.0,
                );
            }

            if let Some(dm_name) = u.get(Key::DmName).filter(|s| !s.is_empty()) {
                out.family(
                    "node_disk_device_mapper_info",
                    "Info about disk device mapper.",
                    Gauge,
                )
                .sample(
                    &[
                        ("device", dev),
                        ("lv_layer", u.str(Key::DmLvLayer)),
                        ("lv_name", u.str(Key::DmLvName)),
                        ("name", dm_name),
                        ("uuid", u.str(Key::DmUuid)),
                        ("vg_name", u.str(Key::DmVgName)),
                    ],
                    1.0,
                );
            }

            if u.get(Key::IdAta).is_some_and(|s| !s.is_empty()) {
                for (key, name, help) in ATA {
                    // Upstream logs and skips a value that is not a number.
                    if let Some(v) = u.get(key).and_then(|s| s.parse::<f64>().ok()) {
                        out.family(name, help, Gauge).sample(&[("device", dev)], v);
                    }
                }
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
        let ctx = fixture_ctx(&format!("diskstats/{case}"));
        render(&mut Diskstats::new(settings), &ctx)
    }

    fn has(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }

    #[test]
    fn kernel_5_5_line_has_all_families() {
        let text = run("basic", &Settings::default()).unwrap();
        let d = r#"{device="vda"}"#;
        for (name, v) in [
            ("node_disk_reads_completed_total", "11131"),
            ("node_disk_reads_merged_total", "3681"),
            ("node_disk_read_bytes_total", "1852367872"),
            ("node_disk_read_time_seconds_total", "18.88"),
            ("node_disk_writes_completed_total", "3698"),
            ("node_disk_writes_merged_total", "23023"),
            ("node_disk_written_bytes_total", "4540010496"),
            ("node_disk_write_time_seconds_total", "22.313"),
            ("node_disk_io_now", "10"),
            ("node_disk_io_time_seconds_total", "5.424"),
            ("node_disk_io_time_weighted_seconds_total", "41.516"),
            ("node_disk_discards_completed_total", "3643"),
            ("node_disk_discards_merged_total", "34"),
            ("node_disk_discarded_sectors_total", "102480"),
            ("node_disk_discard_time_seconds_total", "0.321"),
            ("node_disk_flush_requests_total", "18"),
            ("node_disk_flush_requests_time_seconds_total", "0"),
        ] {
            has(&text, &format!("{name}{d} {v}"));
        }
        // Upstream's exact float: 2760 * (1/1000), not 2760 / 1000.
        has(
            &text,
            r#"node_disk_read_time_seconds_total{device="sdb"} 2.7600000000000002"#,
        );
        has(&text, "# TYPE node_disk_io_now gauge");
        has(&text, "# TYPE node_disk_io_time_seconds_total counter");
        has(
            &text,
            "# HELP node_disk_flush_requests_total The total number of flush requests completed successfully",
        );
        has(
            &text,
            r#"node_disk_info{device="vda",major="254",minor="0",model="",path="",revision="",serial="",wwn=""} 1"#,
        );
        // Partitions, loop and zram devices are excluded by default.
        assert!(!text.contains("vda1"), "{text}");
        assert!(!text.contains("loop0"), "{text}");
        assert!(!text.contains("zram0"), "{text}");
    }

    #[test]
    fn udev_properties_fill_info_and_extra_families() {
        let text = run("basic", &Settings::default()).unwrap();
        has(
            &text,
            r#"node_disk_info{device="sdb",major="8",minor="16",model="Samsung_SSD_860",path="pci-0000:00:1f.2-ata-2",revision="RVT04B6Q",serial="S3Z9NB0K123456X",wwn="0x5002538e40a1b2c3"} 1"#,
        );
        has(&text, r#"node_disk_ata_write_cache{device="sdb"} 1"#);
        has(
            &text,
            r#"node_disk_ata_write_cache_enabled{device="sdb"} 1"#,
        );
        has(&text, r#"node_disk_ata_rotation_rate_rpm{device="sdb"} 0"#);
        has(
            &text,
            r#"node_disk_filesystem_info{device="sdb",type="LVM2_member",usage="raid",uuid="aBcD-1234",version="LVM2 001"} 1"#,
        );
        has(
            &text,
            "# HELP node_disk_ata_rotation_rate_rpm ATA disk rotation rate in RPMs (0 for SSDs).",
        );
        has(
            &text,
            r#"node_disk_device_mapper_info{device="dm-0",lv_layer="",lv_name="root",name="vg0-root",uuid="LVM-xyz",vg_name="vg0"} 1"#,
        );
        // dm-0 has no ID_ATA: no ATA families even though a key is present.
        assert!(
            !text.contains(r#"node_disk_ata_write_cache{device="dm-0"}"#),
            "{text}"
        );
    }

    #[test]
    fn odd_device_names_and_huge_counters() {
        let text = run("odd", &Settings::default()).unwrap();
        // 2^64-1 parses as u64 and renders as the nearest f64.
        has(
            &text,
            r#"node_disk_io_now{device="cciss!c0d0"} 18446744073709552000"#,
        );
        has(
            &text,
            r#"node_disk_reads_completed_total{device="we\"ird\\name"} 18446744073709552000"#,
        );
    }

    #[test]
    fn old_kernel_14_fields_has_no_discard_or_flush() {
        let text = run("kernel4", &Settings::default()).unwrap();
        has(
            &text,
            r#"node_disk_io_time_weighted_seconds_total{device="sda"} 1.5"#,
        );
        for l in text.lines().filter(|l| l.contains(r#"device="sda""#)) {
            assert!(!l.contains("discard") && !l.contains("flush"), "{l}");
        }
        // 18 fields: discards but no flush.
        has(
            &text,
            r#"node_disk_discards_completed_total{device="sdc"} 7"#,
        );
        assert!(!text.contains(r#"flush_requests_total{device="sdc"}"#));
    }

    #[test]
    fn filters_apply() {
        let s = Settings::default().with("collector.diskstats.device-include", "^sd");
        let text = run("basic", &s).unwrap();
        assert!(text.contains(r#"device="sdb""#), "{text}");
        assert!(!text.contains(r#"device="vda""#), "{text}");
        let s = s
            .with("collector.diskstats.device-include", "")
            .with("collector.diskstats.device-exclude", "");
        let text = run("basic", &s).unwrap();
        assert!(text.contains(r#"device="vda1""#), "{text}");
    }

    #[test]
    fn truncated_or_garbled_file_fails() {
        assert!(run("truncated", &Settings::default()).is_err());
        assert!(run("garbled", &Settings::default()).is_err());
    }

    #[test]
    fn missing_file_fails() {
        assert!(run("does-not-exist", &Settings::default()).is_err());
    }
}
