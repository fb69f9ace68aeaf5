//! `time`: node_time_seconds, node_time_zone_offset_seconds and (as 1.5.0 on
//! Linux) the clocksource info families from
//! sysfs devices/system/clocksource/clocksourceN/.
//!
//! Must never: cache the zone (it is asked of libc each collection, which
//! honours TZ and /etc/localtime), or fail because the clocksource directory
//! is absent (1.5.0 globs it, and an empty glob is not an error). A
//! clocksourceN directory lacking either file does fail the collector, as in
//! 1.5.0.

use std::borrow::Cow;
use std::ffi::{CStr, OsString};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{CollectError, Collector, Context};
use crate::metrics::{Emitter, MetricType};

const AVAILABLE_HELP: &str = "Available clocksources read from '/sys/devices/system/clocksource'.";
const CURRENT_HELP: &str = "Current clocksource read from '/sys/devices/system/clocksource'.";

/// procfs' SysReadFile does one read(2) of at most this many bytes.
const SYS_READ_MAX: usize = 128;

pub struct Time {
    /// clocksourceN directory names of this collection, `names[..used]`;
    /// the `OsString`s are kept so a warm collection does not allocate.
    names: Vec<OsString>,
    used: usize,
    path: PathBuf,
}

impl Default for Time {
    fn default() -> Self {
        Self::new()
    }
}

impl Time {
    pub fn new() -> Self {
        Time {
            names: Vec::new(),
            used: 0,
            path: PathBuf::new(),
        }
    }

    /// The sorted clocksourceN entries, like Go's
    /// `filepath.Glob(".../clocksource[0-9]*")`, which ignores directory
    /// read errors (a missing directory is simply no match).
    fn list(&mut self, dir: &Path) {
        self.used = 0;
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for ent in rd.flatten() {
            let name = ent.file_name();
            let b = std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str());
            let Some(rest) = b.strip_prefix(b"clocksource") else {
                continue;
            };
            if !rest.first().is_some_and(u8::is_ascii_digit) {
                continue;
            }
            if self.used == self.names.len() {
                self.names.push(OsString::new());
            }
            let slot = &mut self.names[self.used];
            slot.clear();
            slot.push(&name);
            self.used += 1;
        }
        // Glob sorts by bytes; the device label is the position in this
        // order (so clocksource10 sorts before clocksource2), as in 1.5.0.
        self.names[..self.used].sort_unstable();
    }

    fn set_path(&mut self, dir: &Path, idx: usize, file: &str) {
        let p = self.path.as_mut_os_string();
        p.clear();
        p.push(dir.as_os_str());
        p.push("/");
        p.push(&self.names[idx]);
        p.push("/");
        p.push(file);
    }
}

/// One read(2) of up to 128 bytes, whitespace-trimmed, like procfs'
/// `util.SysReadFile` (sysfs attributes are read in one go).
fn sys_read<'b>(
    path: &Path,
    buf: &'b mut [u8; SYS_READ_MAX],
) -> Result<Cow<'b, str>, CollectError> {
    let io_err = |source: io::Error| CollectError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io_err)?;
    let n = loop {
        match f.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => break r.map_err(io_err)?,
        }
    };
    // Lossy, not an error: the 128-byte cut may split a character, and Go
    // keeps whatever bytes it got.
    Ok(match String::from_utf8_lossy(&buf[..n]) {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
        Cow::Owned(s) => Cow::Owned(s.trim().to_owned()),
    })
}

/// Seconds since the epoch as Go computes it (`float64(UnixNano()) / 1e9`),
/// and the whole seconds for localtime.
fn now() -> (f64, libc::time_t) {
    let nanos: i128 = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    let secs = nanos.div_euclid(1_000_000_000) as libc::time_t;
    ((nanos as i64) as f64 / 1e9, secs)
}

impl Collector for Time {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let (seconds, whole) = now();
        out.single(
            "node_time_seconds",
            "System time in seconds since epoch (1970).",
            MetricType::Gauge,
            seconds,
        );

        // Go's `time.Now().Zone()`: the local zone's abbreviation and UTC
        // offset at this instant. localtime_r consults TZ / /etc/localtime.
        // SAFETY: `tm` is plain data that localtime_r fills in; tm_zone then
        // points at libc's zone-name storage, copied out before returning.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let ok = unsafe { !libc::localtime_r(&whole, &mut tm).is_null() };
        if !ok {
            return Err(CollectError::Other(format!(
                "localtime_r failed for {whole}"
            )));
        }
        let zone = if tm.tm_zone.is_null() {
            Cow::Borrowed("")
        } else {
            // SAFETY: non-null tm_zone is a NUL-terminated C string.
            unsafe { CStr::from_ptr(tm.tm_zone) }.to_string_lossy()
        };
        out.family(
            "node_time_zone_offset_seconds",
            "System time zone offset in seconds.",
            MetricType::Gauge,
        )
        .sample(&[("time_zone", &zone)], tm.tm_gmtoff as f64);

        let dir = ctx.sys_path("devices/system/clocksource");
        self.list(&dir);
        let mut buf = [0u8; SYS_READ_MAX];
        for i in 0..self.used {
            self.set_path(&dir, i, "available_clocksource");
            let avail = sys_read(&self.path, &mut buf)?;
            {
                let mut fam = out.family(
                    "node_time_clocksource_available_info",
                    AVAILABLE_HELP,
                    MetricType::Gauge,
                );
                for cs in avail.split_whitespace() {
                    fam.sample_with(1.0, |l| {
                        l.label("clocksource", cs).label_display("device", i);
                    });
                }
            }
            self.set_path(&dir, i, "current_clocksource");
            let current = sys_read(&self.path, &mut buf)?;
            out.family(
                "node_time_clocksource_current_info",
                CURRENT_HELP,
                MetricType::Gauge,
            )
            .sample_with(1.0, |l| {
                l.label("clocksource", &current).label_display("device", i);
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn clocksource_lines(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| l.starts_with("node_time_clocksource"))
            .collect()
    }

    #[test]
    fn clocksources_get_glob_position_as_device() {
        let ctx = fixture_ctx("time/devices");
        let text = render(&mut Time::new(), &ctx).unwrap();
        assert_eq!(
            clocksource_lines(&text),
            [
                "node_time_clocksource_available_info{clocksource=\"acpi_pm\",device=\"0\"} 1",
                "node_time_clocksource_available_info{clocksource=\"hpet\",device=\"0\"} 1",
                "node_time_clocksource_available_info{clocksource=\"kvm-clock\",device=\"1\"} 1",
                "node_time_clocksource_available_info{clocksource=\"tsc\",device=\"0\"} 1",
                "node_time_clocksource_current_info{clocksource=\"jiffies\",device=\"2\"} 1",
                "node_time_clocksource_current_info{clocksource=\"kvm-clock\",device=\"1\"} 1",
                "node_time_clocksource_current_info{clocksource=\"tsc\",device=\"0\"} 1",
            ]
        );
        assert!(text.contains(&format!(
            "# HELP node_time_clocksource_available_info {AVAILABLE_HELP}\n\
             # TYPE node_time_clocksource_available_info gauge\n"
        )));
        assert!(text.contains(&format!(
            "# HELP node_time_clocksource_current_info {CURRENT_HELP}\n\
             # TYPE node_time_clocksource_current_info gauge\n"
        )));
    }

    #[test]
    fn missing_current_file_fails_the_collector() {
        let ctx = fixture_ctx("time/missing_current");
        let err = render(&mut Time::new(), &ctx).unwrap_err();
        assert!(
            err.to_string().contains("clocksource1/current_clocksource"),
            "{err}"
        );
    }

    #[test]
    fn missing_clocksource_dir_is_not_an_error() {
        let ctx = fixture_ctx("time/no_clocksource");
        let text = render(&mut Time::new(), &ctx).unwrap();
        assert!(clocksource_lines(&text).is_empty(), "{text}");
        assert!(text.contains("\n# TYPE node_time_seconds gauge\nnode_time_seconds "));
        let ctx = fixture_ctx("time/does_not_exist");
        assert!(render(&mut Time::new(), &ctx).is_ok());
    }

    #[test]
    fn time_seconds_is_now_with_subsecond_precision() {
        let mut e = Emitter::new();
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        Time::new()
            .update(&fixture_ctx("time/no_clocksource"), &mut e)
            .unwrap();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let fam = e
            .families()
            .find(|f| f.name() == "node_time_seconds")
            .unwrap();
        assert_eq!(fam.help(), "System time in seconds since epoch (1970).");
        let v = fam.series()[0].value;
        assert!(v >= before.as_secs_f64() - 1e-6 && v <= after.as_secs_f64() + 1e-6);
        // Go's float64(UnixNano())/1e9 keeps sub-second digits.
        let (a, _) = now();
        let (b, _) = now();
        assert!(a.fract() != 0.0 || b.fract() != 0.0);
    }

    #[test]
    fn zone_line_has_help_and_one_series() {
        let text = render(&mut Time::new(), &fixture_ctx("time/no_clocksource")).unwrap();
        assert!(text.contains(
            "# HELP node_time_zone_offset_seconds System time zone offset in seconds.\n\
             # TYPE node_time_zone_offset_seconds gauge\n\
             node_time_zone_offset_seconds{time_zone=\""
        ));
    }

    /// setenv("TZ") inside the threaded test harness would race with other
    /// tests, so the TZ case runs this file's `tz_child` in a child process.
    #[test]
    fn zone_follows_tz_env() {
        let exe = std::env::current_exe().unwrap();
        let run = |tz: &str| {
            let out = std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "collector::time::tests::tz_child",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("TZ", tz)
                .env("CAIRN_TZ_CHILD", "1")
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        // A POSIX TZ string needs no tzdata on the test host.
        let east = run("ABC-3");
        assert!(
            east.contains("\nnode_time_zone_offset_seconds{time_zone=\"ABC\"} 10800\n"),
            "{east}"
        );
        let west = run("XYZ+5:30");
        assert!(
            west.contains("\nnode_time_zone_offset_seconds{time_zone=\"XYZ\"} -19800\n"),
            "{west}"
        );
        let utc = run("UTC0");
        assert!(
            utc.contains("\nnode_time_zone_offset_seconds{time_zone=\"UTC\"} 0\n"),
            "{utc}"
        );
    }

    #[test]
    #[ignore = "run by zone_follows_tz_env in a child process"]
    fn tz_child() {
        if std::env::var_os("CAIRN_TZ_CHILD").is_none() {
            return;
        }
        let text = render(&mut Time::new(), &fixture_ctx("time/no_clocksource")).unwrap();
        print!("\n{text}");
    }
}
