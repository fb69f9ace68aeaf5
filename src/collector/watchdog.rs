//! `watchdog`: /sys/class/watchdog/<name>/ attributes as upstream master's
//! collector reports them (node_exporter 1.5.0 has no watchdog collector):
//! node_watchdog_{bootstatus,fw_version,nowayout,timeleft_seconds,
//! timeout_seconds,pretimeout_seconds,access_cs0}{name} for the numeric
//! files that exist, and node_watchdog_info{name,options,identity,state,
//! status,pretimeout_governor} (an absent file is an empty label).
//!
//! Must never: open /dev/watchdog* (opening it arms the timer and a missed
//! keepalive reboots the board); only sysfs attributes are read.
//!
//! No /sys/class/watchdog, or one it may not read, is upstream's ErrNoData:
//! success 0. A numeric attribute that does not parse (procfs parses with
//! Go's base-0 ParseInt, so 0x.. is hex) fails the collector.

use std::io;
use std::path::PathBuf;

use super::sysfs::parse_int_base0 as parse_go_int;
use super::{read_into, CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

/// Numeric attributes: file, family, HELP.
const NUMERIC: [(&str, &str, &str); 7] = [
    (
        "bootstatus",
        "node_watchdog_bootstatus",
        "Value of /sys/class/watchdog/<watchdog>/bootstatus",
    ),
    (
        "fw_version",
        "node_watchdog_fw_version",
        "Value of /sys/class/watchdog/<watchdog>/fw_version",
    ),
    (
        "nowayout",
        "node_watchdog_nowayout",
        "Value of /sys/class/watchdog/<watchdog>/nowayout",
    ),
    (
        "timeleft",
        "node_watchdog_timeleft_seconds",
        "Value of /sys/class/watchdog/<watchdog>/timeleft",
    ),
    (
        "timeout",
        "node_watchdog_timeout_seconds",
        "Value of /sys/class/watchdog/<watchdog>/timeout",
    ),
    (
        "pretimeout",
        "node_watchdog_pretimeout_seconds",
        "Value of /sys/class/watchdog/<watchdog>/pretimeout",
    ),
    (
        "access_cs0",
        "node_watchdog_access_cs0",
        "Value of /sys/class/watchdog/<watchdog>/access_cs0",
    ),
];

/// Text attributes, labels of node_watchdog_info.
const TEXT: [&str; 5] = [
    "options",
    "identity",
    "state",
    "status",
    "pretimeout_governor",
];

pub struct Watchdog {
    /// Device names of this collection. A new board's names are allocated
    /// once; the Vec keeps them between collections.
    names: Vec<String>,
    used: usize,
    path: PathBuf,
    buf: String,
    text: [String; 5],
}

impl Watchdog {
    pub fn new(_settings: &Settings) -> Self {
        Watchdog {
            names: Vec::new(),
            used: 0,
            path: PathBuf::new(),
            buf: String::with_capacity(64),
            text: Default::default(),
        }
    }
}

/// procfs' rule: a missing attribute is skipped, permission or EINVAL
/// errors make the whole collector "no data", anything else fails it.
fn no_data(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::EINVAL)
}

impl Collector for Watchdog {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let dir = ctx.sys_path("class/watchdog");
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound || no_data(&e) => {
                return Err(CollectError::NoData(format!(
                    "could not read watchdog stats at {}: {e}",
                    dir.display()
                )))
            }
            Err(source) => return Err(CollectError::Io { path: dir, source }),
        };
        self.used = 0;
        for ent in rd {
            let ent = ent.map_err(|source| CollectError::Io {
                path: dir.clone(),
                source,
            })?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if self.used == self.names.len() {
                self.names.push(String::new());
            }
            let slot = &mut self.names[self.used];
            slot.clear();
            slot.push_str(name);
            self.used += 1;
        }

        for i in 0..self.used {
            let name = self.names[i].as_str();
            let mut nums = [None; 7];
            let files = NUMERIC
                .iter()
                .map(|n| n.0)
                .enumerate()
                .map(|(k, f)| (Some(k), f))
                .chain(TEXT.iter().map(|&f| (None, f)));
            let mut t = 0;
            for (k, file) in files {
                self.path.clear();
                self.path.push(&dir);
                self.path.push(name);
                self.path.push(file);
                let res = read_into(&self.path, &mut self.buf);
                let found = match res {
                    Ok(()) => true,
                    Err(CollectError::Io { source, .. })
                        if source.kind() == io::ErrorKind::NotFound =>
                    {
                        false
                    }
                    Err(CollectError::Io { source, .. }) if no_data(&source) => {
                        return Err(CollectError::NoData(format!(
                            "could not read {}: {source}",
                            self.path.display()
                        )));
                    }
                    Err(e) => return Err(e),
                };
                let value = self.buf.trim();
                match k {
                    Some(k) => {
                        if found {
                            nums[k] = Some(parse_go_int(value).ok_or_else(|| {
                                CollectError::parse(
                                    &self.path,
                                    format!("not an integer: {value:?}"),
                                )
                            })?);
                        }
                    }
                    None => {
                        self.text[t].clear();
                        if found {
                            self.text[t].push_str(value);
                        }
                        t += 1;
                    }
                }
            }
            for (k, &(_, fam, help)) in NUMERIC.iter().enumerate() {
                if let Some(v) = nums[k] {
                    out.family(fam, help, MetricType::Gauge)
                        .sample(&[("name", name)], v as f64);
                }
            }
            let text = &self.text;
            out.family(
                "node_watchdog_info",
                "Info of /sys/class/watchdog/<watchdog>",
                MetricType::Gauge,
            )
            // Label names in client_golang's (sorted) order.
            .sample_with(1.0, |l| {
                l.label("identity", &text[1])
                    .label("name", name)
                    .label("options", &text[0])
                    .label("pretimeout_governor", &text[4])
                    .label("state", &text[2])
                    .label("status", &text[3]);
            });
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
            &mut Watchdog::new(&Settings::default()),
            &fixture_ctx(&format!("watchdog/{case}")),
        )
    }

    /// A Raspberry Pi's bcm2835-wdt armed by systemd, and a second device
    /// exposing only a few attributes (older kernel, minimal driver).
    #[test]
    fn watchdog_two_devices() {
        assert_eq!(
            run("normal").unwrap(),
            "# HELP node_watchdog_access_cs0 Value of /sys/class/watchdog/<watchdog>/access_cs0\n\
             # TYPE node_watchdog_access_cs0 gauge\n\
             node_watchdog_access_cs0{name=\"watchdog0\"} 0\n\
             # HELP node_watchdog_bootstatus Value of /sys/class/watchdog/<watchdog>/bootstatus\n\
             # TYPE node_watchdog_bootstatus gauge\n\
             node_watchdog_bootstatus{name=\"watchdog0\"} 1\n\
             node_watchdog_bootstatus{name=\"watchdog1\"} 32\n\
             # HELP node_watchdog_fw_version Value of /sys/class/watchdog/<watchdog>/fw_version\n\
             # TYPE node_watchdog_fw_version gauge\n\
             node_watchdog_fw_version{name=\"watchdog0\"} 2\n\
             # HELP node_watchdog_info Info of /sys/class/watchdog/<watchdog>\n\
             # TYPE node_watchdog_info gauge\n\
             node_watchdog_info{identity=\"Broadcom BCM2835 Watchdog timer\",name=\"watchdog0\",options=\"0x8380\",pretimeout_governor=\"noop\",state=\"active\",status=\"0x8000\"} 1\n\
             node_watchdog_info{identity=\"Software Watchdog\",name=\"watchdog1\",options=\"\",pretimeout_governor=\"\",state=\"inactive\",status=\"\"} 1\n\
             # HELP node_watchdog_nowayout Value of /sys/class/watchdog/<watchdog>/nowayout\n\
             # TYPE node_watchdog_nowayout gauge\n\
             node_watchdog_nowayout{name=\"watchdog0\"} 0\n\
             # HELP node_watchdog_pretimeout_seconds Value of /sys/class/watchdog/<watchdog>/pretimeout\n\
             # TYPE node_watchdog_pretimeout_seconds gauge\n\
             node_watchdog_pretimeout_seconds{name=\"watchdog0\"} 120\n\
             # HELP node_watchdog_timeleft_seconds Value of /sys/class/watchdog/<watchdog>/timeleft\n\
             # TYPE node_watchdog_timeleft_seconds gauge\n\
             node_watchdog_timeleft_seconds{name=\"watchdog0\"} 14\n\
             # HELP node_watchdog_timeout_seconds Value of /sys/class/watchdog/<watchdog>/timeout\n\
             # TYPE node_watchdog_timeout_seconds gauge\n\
             node_watchdog_timeout_seconds{name=\"watchdog0\"} 15\n\
             node_watchdog_timeout_seconds{name=\"watchdog1\"} 60\n"
        );
    }

    /// A kernel with the class but no driver bound (git keeps no empty
    /// directory, so this tree is made here).
    #[test]
    fn watchdog_empty_class_is_success_without_samples() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("sys/class/watchdog")).unwrap();
        let ctx = Context {
            sysfs: tmp.path().join("sys"),
            ..Context::default()
        };
        assert_eq!(
            render(&mut Watchdog::new(&Settings::default()), &ctx).unwrap(),
            ""
        );
    }

    #[test]
    fn watchdog_missing_class_is_no_data() {
        let e = run("missing").unwrap_err();
        assert!(e.to_string().starts_with("no data"), "{e}");
    }

    #[test]
    fn watchdog_garbled_number_fails() {
        assert!(run("garbled").is_err());
    }

    #[test]
    fn go_base0_ints() {
        assert_eq!(parse_go_int("0x10"), Some(16));
        assert_eq!(parse_go_int("010"), Some(8));
        assert_eq!(parse_go_int("-7"), Some(-7));
        assert_eq!(parse_go_int("1_000"), Some(1000));
        assert_eq!(parse_go_int("0"), Some(0));
        assert_eq!(parse_go_int("08"), None);
        assert_eq!(parse_go_int(""), None);
        assert_eq!(parse_go_int("x"), None);
        assert_eq!(parse_go_int("9223372036854775808"), None);
        assert_eq!(parse_go_int("-9223372036854775808"), Some(i64::MIN));
    }
}
