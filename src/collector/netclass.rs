//! `netclass`: per-interface properties from /sys/class/net/<iface>/ with
//! node_exporter 1.5.0's names: node_network_up, node_network_info
//! (address, broadcast, duplex, ifalias, operstate), and one
//! "Network device property: X" family per numeric attribute
//! (mtu_bytes, speed_bytes, carrier, carrier_changes_total, flags, ...).
//!
//! Edge cases follow procfs/sysfs as 1.5.0 vendors it:
//! - An attribute the kernel refuses to show (EINVAL for `speed`, `duplex`,
//!   `carrier` or `dormant` of a down interface; EOPNOTSUPP; no permission)
//!   or that does not exist is left out, not an error.
//! - A numeric attribute that does not parse (or overflows int64) reads as
//!   0, as procfs' ValueParser makes it, and numbers are read with Go's
//!   base prefixes (`flags` is `0x1003`).
//! - Each attribute is read with one 128-byte read, as procfs'
//!   `SysReadFile` does, so an `ifalias` longer than that is cut the same
//!   way (at a character boundary here).
//! - An interface whose directory cannot be opened (it vanished between the
//!   listing and the read) fails the collector, as the failing `ReadDir`
//!   makes 1.5.0 return ErrNoData (success 0). Files vanishing after that
//!   are simply missing attributes, as there.
//! - Speed is reported as is, -1 Mb/s (unknown) as -125000 bytes, unless
//!   `--collector.netclass.ignore-invalid-speed`.
//!
//! Attributes are opened relative to the interface's directory (`openat`),
//! so the kernel resolves the sysfs path and its symlink once per
//! interface, not once per attribute.
//!
//! Owns: reading /sys/class/net. Must never: follow a device name out of
//! /sys/class/net, or fail on an attribute a driver does not implement.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use regex::Regex;

use super::sysfs::parse_int_base0 as parse_go_int;
use super::{CollectError, Collector, Context, Opt, OptKind, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[
    Opt {
        flag: "collector.netclass.ignored-devices",
        kind: OptKind::Regex,
        default: "^$",
        help: "Regexp of net devices to ignore for netclass collector.",
        aliases: &[],
    },
    Opt {
        flag: "collector.netclass.ignore-invalid-speed",
        kind: OptKind::Bool,
        default: "false",
        help:
            "Ignore devices where the speed is invalid. This will be the default behavior in 2.x.",
        aliases: &[],
    },
];

/// Numeric attributes: (file, family, HELP, type).
const NUMERIC: [(&std::ffi::CStr, &str, &str, MetricType); 17] = [
    (
        c"addr_assign_type",
        "node_network_address_assign_type",
        "Network device property: address_assign_type",
        MetricType::Gauge,
    ),
    (
        c"carrier",
        "node_network_carrier",
        "Network device property: carrier",
        MetricType::Gauge,
    ),
    (
        c"carrier_changes",
        "node_network_carrier_changes_total",
        "Network device property: carrier_changes_total",
        MetricType::Counter,
    ),
    (
        c"carrier_up_count",
        "node_network_carrier_up_changes_total",
        "Network device property: carrier_up_changes_total",
        MetricType::Counter,
    ),
    (
        c"carrier_down_count",
        "node_network_carrier_down_changes_total",
        "Network device property: carrier_down_changes_total",
        MetricType::Counter,
    ),
    (
        c"dev_id",
        "node_network_device_id",
        "Network device property: device_id",
        MetricType::Gauge,
    ),
    (
        c"dormant",
        "node_network_dormant",
        "Network device property: dormant",
        MetricType::Gauge,
    ),
    (
        c"flags",
        "node_network_flags",
        "Network device property: flags",
        MetricType::Gauge,
    ),
    (
        c"ifindex",
        "node_network_iface_id",
        "Network device property: iface_id",
        MetricType::Gauge,
    ),
    (
        c"iflink",
        "node_network_iface_link",
        "Network device property: iface_link",
        MetricType::Gauge,
    ),
    (
        c"link_mode",
        "node_network_iface_link_mode",
        "Network device property: iface_link_mode",
        MetricType::Gauge,
    ),
    (
        c"mtu",
        "node_network_mtu_bytes",
        "Network device property: mtu_bytes",
        MetricType::Gauge,
    ),
    (
        c"name_assign_type",
        "node_network_name_assign_type",
        "Network device property: name_assign_type",
        MetricType::Gauge,
    ),
    (
        c"netdev_group",
        "node_network_net_dev_group",
        "Network device property: net_dev_group",
        MetricType::Gauge,
    ),
    (
        c"speed",
        "node_network_speed_bytes",
        "Network device property: speed_bytes",
        MetricType::Gauge,
    ),
    (
        c"tx_queue_len",
        "node_network_transmit_queue_length",
        "Network device property: transmit_queue_length",
        MetricType::Gauge,
    ),
    (
        c"type",
        "node_network_protocol_type",
        "Network device property: protocol_type",
        MetricType::Gauge,
    ),
];
const SPEED: usize = 14;

/// String attributes, in the order of `Netclass::strs`.
const STRINGS: [&std::ffi::CStr; 5] = [
    c"address",
    c"broadcast",
    c"duplex",
    c"ifalias",
    c"operstate",
];
const ADDRESS: usize = 0;
const BROADCAST: usize = 1;
const DUPLEX: usize = 2;
const IFALIAS: usize = 3;
const OPERSTATE: usize = 4;

/// procfs' `SysReadFile` reads at most this much of an attribute.
const SYS_READ_LIMIT: usize = 128;

pub struct Netclass {
    ignored: Option<Regex>,
    ignore_invalid_speed: bool,
    path: PathBuf,
    raw: [u8; SYS_READ_LIMIT],
    strs: [String; STRINGS.len()],
}

impl Netclass {
    pub fn new(settings: &Settings) -> Self {
        Netclass {
            ignored: settings.regex("collector.netclass.ignored-devices"),
            ignore_invalid_speed: settings.bool("collector.netclass.ignore-invalid-speed"),
            path: PathBuf::new(),
            raw: [0; SYS_READ_LIMIT],
            strs: Default::default(),
        }
    }
}

/// Errors procfs skips an attribute for: not there, not allowed, or a
/// driver that cannot show it ("operation not supported", "invalid
/// argument").
fn skippable(e: Errno) -> bool {
    matches!(
        e,
        Errno::ENOENT | Errno::EACCES | Errno::EPERM | Errno::EOPNOTSUPP | Errno::EINVAL
    )
}

/// Reads one attribute of the interface directory `dir` with a single
/// bounded read. `Ok(None)` for an attribute procfs would skip.
fn read_attr<'a>(
    dir: RawFd,
    name: &std::ffi::CStr,
    raw: &'a mut [u8; SYS_READ_LIMIT],
) -> Result<Option<&'a str>, Errno> {
    let fd = match openat(
        Some(dir),
        name,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) if skippable(e) => return Ok(None),
        Err(e) => return Err(e),
    };
    // SAFETY: `openat` just returned this descriptor and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let n = match nix::unistd::read(fd.as_raw_fd(), raw) {
        Ok(n) => n,
        Err(e) if skippable(e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let bytes = &raw[..n];
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        // A 128-byte cut can split a character: keep the whole ones.
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    };
    Ok(Some(text.trim()))
}

impl Collector for Netclass {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let base = ctx.sys_path("class/net");
        let entries = std::fs::read_dir(&base).map_err(|source| CollectError::Io {
            path: base.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| CollectError::Io {
                path: base.clone(),
                source,
            })?;
            // bonding_masters is a regular file next to the interface links.
            if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                continue;
            }
            // The directory listing hands over an owned name either way; a
            // name that is not UTF-8 is shown lossily rather than dropped.
            let os_name = entry.file_name();
            let name = os_name.to_string_lossy();
            if self.ignored.as_ref().is_some_and(|re| re.is_match(&name)) {
                continue;
            }
            self.path.clear();
            self.path.push(&base);
            self.path.push(&os_name);
            let dir = File::open(&self.path).map_err(|source| CollectError::Io {
                path: self.path.clone(),
                source,
            })?;
            let fail = |path: &PathBuf, attr: &std::ffi::CStr, e: Errno| CollectError::Io {
                path: path.join(attr.to_string_lossy().as_ref()),
                source: io::Error::from(e),
            };

            for (i, attr) in STRINGS.iter().enumerate() {
                let s = &mut self.strs[i];
                s.clear();
                if let Some(v) = read_attr(dir.as_raw_fd(), attr, &mut self.raw)
                    .map_err(|e| fail(&self.path, attr, e))?
                {
                    s.push_str(v);
                }
            }
            let mut nums = [None; NUMERIC.len()];
            for (slot, (attr, ..)) in nums.iter_mut().zip(NUMERIC.iter()) {
                *slot = read_attr(dir.as_raw_fd(), attr, &mut self.raw)
                    .map_err(|e| fail(&self.path, attr, e))?
                    // procfs' ValueParser yields 0 for what does not parse.
                    .map(|v| parse_go_int(v).unwrap_or(0));
            }
            drop(dir);

            let up = if self.strs[OPERSTATE] == "up" {
                1.0
            } else {
                0.0
            };
            out.family(
                "node_network_up",
                "Value is 1 if operstate is 'up', 0 otherwise.",
                MetricType::Gauge,
            )
            .sample(&[("device", &name)], up);
            out.family(
                "node_network_info",
                "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
                MetricType::Gauge,
            )
            .sample(
                &[
                    ("address", &self.strs[ADDRESS]),
                    ("broadcast", &self.strs[BROADCAST]),
                    ("device", &name),
                    ("duplex", &self.strs[DUPLEX]),
                    ("ifalias", &self.strs[IFALIAS]),
                    ("operstate", &self.strs[OPERSTATE]),
                ],
                1.0,
            );
            for (i, ((_, family, help, kind), v)) in NUMERIC.iter().zip(nums).enumerate() {
                let Some(mut v) = v else { continue };
                if i == SPEED {
                    // Some drivers report -1 (unknown).
                    if v < 0 && self.ignore_invalid_speed {
                        continue;
                    }
                    // Mb/s to bytes/s with Go's int64 arithmetic.
                    v = v.wrapping_mul(1000 * 1000) / 8;
                }
                out.family(family, help, *kind)
                    .sample(&[("device", &name)], v as f64);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn run(case: &str, s: &Settings) -> Result<String, CollectError> {
        render(
            &mut Netclass::new(s),
            &fixture_ctx(&format!("netclass/{case}")),
        )
    }

    fn has(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }

    #[test]
    fn go_integer_syntax() {
        assert_eq!(parse_go_int("0x1003"), Some(4099));
        assert_eq!(parse_go_int("1500"), Some(1500));
        assert_eq!(parse_go_int("-1"), Some(-1));
        assert_eq!(parse_go_int("010"), Some(8));
        assert_eq!(parse_go_int("0"), Some(0));
        assert_eq!(parse_go_int("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_go_int("9223372036854775808"), None);
        assert_eq!(parse_go_int(""), None);
        assert_eq!(parse_go_int("0x"), None);
        assert_eq!(parse_go_int("--1"), None);
        assert_eq!(parse_go_int("12ab"), None);
    }

    #[test]
    fn skips_what_procfs_skips() {
        for e in [
            Errno::EINVAL,
            Errno::EOPNOTSUPP,
            Errno::ENOENT,
            Errno::EACCES,
        ] {
            assert!(skippable(e), "{e}");
        }
        assert!(!skippable(Errno::EIO));
        assert!(!skippable(Errno::ENODEV));
    }

    #[test]
    fn full_host() {
        let text = run("basic", &Settings::default()).unwrap();
        for line in [
            "# HELP node_network_up Value is 1 if operstate is 'up', 0 otherwise.",
            "# TYPE node_network_up gauge",
            r#"node_network_up{device="eth0"} 1"#,
            r#"node_network_up{device="lo"} 0"#,
            r#"node_network_up{device="wlan0"} 0"#,
            "# HELP node_network_info Non-numeric data from /sys/class/net/<iface>, value is always 1.",
            r#"node_network_info{address="dc:a6:32:01:02:03",broadcast="ff:ff:ff:ff:ff:ff",device="eth0",duplex="full",ifalias="uplink",operstate="up"} 1"#,
            r#"node_network_info{address="00:00:00:00:00:00",broadcast="00:00:00:00:00:00",device="lo",duplex="",ifalias="",operstate="unknown"} 1"#,
            // A down wlan0: speed, duplex, carrier and dormant are EINVAL on
            // a real kernel, absent in the fixture.
            r#"node_network_info{address="dc:a6:32:01:02:04",broadcast="ff:ff:ff:ff:ff:ff",device="wlan0",duplex="",ifalias="",operstate="down"} 1"#,
            "# HELP node_network_speed_bytes Network device property: speed_bytes",
            "# TYPE node_network_speed_bytes gauge",
            r#"node_network_speed_bytes{device="eth0"} 125000000"#,
            r#"node_network_flags{device="eth0"} 4099"#,
            r#"node_network_flags{device="lo"} 9"#,
            r#"node_network_mtu_bytes{device="lo"} 65536"#,
            r#"node_network_transmit_queue_length{device="eth0"} 1000"#,
            "# HELP node_network_transmit_queue_length Network device property: transmit_queue_length",
            r#"node_network_protocol_type{device="lo"} 772"#,
            r#"node_network_iface_id{device="wlan0"} 3"#,
            r#"node_network_iface_link{device="wlan0"} 3"#,
            r#"node_network_iface_link_mode{device="wlan0"} 1"#,
            r#"node_network_address_assign_type{device="eth0"} 0"#,
            r#"node_network_name_assign_type{device="eth0"} 4"#,
            r#"node_network_net_dev_group{device="eth0"} 0"#,
            r#"node_network_device_id{device="eth0"} 0"#,
            r#"node_network_dormant{device="eth0"} 0"#,
            r#"node_network_carrier{device="eth0"} 1"#,
            "# TYPE node_network_carrier_changes_total counter",
            r#"node_network_carrier_changes_total{device="eth0"} 4294967297"#,
            "# HELP node_network_carrier_up_changes_total Network device property: carrier_up_changes_total",
            "# TYPE node_network_carrier_up_changes_total counter",
            r#"node_network_carrier_up_changes_total{device="eth0"} 2"#,
            "# TYPE node_network_carrier_down_changes_total counter",
            r#"node_network_carrier_down_changes_total{device="eth0"} 1"#,
        ] {
            has(&text, line);
        }
        assert!(
            !text.contains(r#"node_network_speed_bytes{device="wlan0"}"#),
            "{text}"
        );
        assert!(
            !text.contains(r#"node_network_carrier{device="wlan0"}"#),
            "{text}"
        );
        // bonding_masters is a file, not an interface.
        assert!(!text.contains("bonding_masters"), "{text}");
        assert_eq!(text.matches("node_network_up{").count(), 3);
    }

    #[test]
    fn unknown_speed_and_the_flag_that_hides_it() {
        let text = run("odd", &Settings::default()).unwrap();
        has(&text, r#"node_network_speed_bytes{device="eth1"} -125000"#);
        let s = Settings::default().with("collector.netclass.ignore-invalid-speed", "true");
        let text = run("odd", &s).unwrap();
        assert!(
            !text.contains(r#"node_network_speed_bytes{device="eth1"}"#),
            "{text}"
        );
    }

    #[test]
    fn odd_names_garbage_values_and_long_alias() {
        let text = run("odd", &Settings::default()).unwrap();
        // Quotes and backslashes are legal in interface names.
        has(
            &text,
            r#"node_network_mtu_bytes{device="odd\"na\\me"} 1500"#,
        );
        has(&text, r#"node_network_up{device="lan-ü"} 1"#);
        has(
            &text,
            r#"node_network_mtu_bytes{device="veth1a2b@if3"} 1500"#,
        );
        // A value that does not parse reads as 0, as procfs makes it.
        has(&text, r#"node_network_mtu_bytes{device="eth1"} 0"#);
        has(
            &text,
            r#"node_network_transmit_queue_length{device="eth1"} 1000"#,
        );
        // ifalias is cut to 128 bytes like procfs' single read (here 127
        // ASCII bytes then a 2-byte character that does not fit; 1.5.0
        // panics on the half character, cairn drops it).
        let alias = format!("ifalias=\"{}\"", "a".repeat(127));
        assert!(text.contains(&alias), "{text}");
        assert!(!text.contains(&format!("{}é", "a".repeat(127))), "{text}");
    }

    #[test]
    fn ignored_devices() {
        let s = Settings::default().with("collector.netclass.ignored-devices", "^(lo|wlan.*)$");
        let text = run("basic", &s).unwrap();
        assert!(!text.contains(r#"device="lo""#), "{text}");
        assert!(!text.contains(r#"device="wlan0""#), "{text}");
        has(&text, r#"node_network_up{device="eth0"} 1"#);
    }

    #[test]
    fn files_gone_mid_read_are_missing_attributes() {
        // Only operstate and mtu were left when this interface went away.
        let text = run("partial", &Settings::default()).unwrap();
        has(&text, r#"node_network_up{device="veth9"} 0"#);
        has(
            &text,
            r#"node_network_info{address="",broadcast="",device="veth9",duplex="",ifalias="",operstate="down"} 1"#,
        );
        has(&text, r#"node_network_mtu_bytes{device="veth9"} 1500"#);
        assert_eq!(text.matches("device=\"veth9\"").count(), 3, "{text}");
    }

    #[test]
    fn vanished_interface_or_no_sysfs_fails() {
        // /sys/class/net/gone is a link to a directory that no longer exists.
        let err = run("vanished", &Settings::default()).unwrap_err();
        assert!(err.to_string().contains("gone"), "{err}");
        assert!(run("missing", &Settings::default()).is_err());
    }
}
