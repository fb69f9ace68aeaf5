//! `thermal_zone`: node_thermal_zone_temp from /sys/class/thermal/thermal_zone*
//! and node_cooling_device_{cur,max}_state from .../cooling_device*, as
//! node_exporter 1.5.0 (procfs' ClassThermalZoneStats /
//! ClassCoolingDeviceStats) reads them.
//!
//! Must never: report a zone whose required file cannot be parsed as if it
//! were fine (that fails the collector, as upstream), or fail the collector
//! over a zone the kernel says has no data right now (ENODATA, EAGAIN,
//! EINVAL: an interface that is down, a sensor being probed): that zone is
//! skipped.

use std::io;
use std::path::{Path, PathBuf};

use super::sysfs;
use super::{CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

pub struct ThermalZone {
    path: PathBuf,
    kind: String,
    buf: String,
}

impl ThermalZone {
    pub fn new(_settings: &Settings) -> Self {
        ThermalZone {
            path: PathBuf::new(),
            kind: String::new(),
            buf: String::new(),
        }
    }
}

/// What happened to one zone or cooling device.
enum Read {
    Ok,
    /// The kernel has no value for it right now: leave it out.
    Skip,
}

/// Read errors that mean "this device has no data now", which upstream
/// skips instead of failing every zone with it.
fn transient(e: &io::Error) -> bool {
    matches!(sysfs::errno(e), libc::ENODATA | libc::EAGAIN | libc::EINVAL)
}

fn io_err(path: &Path, source: io::Error) -> CollectError {
    CollectError::Io {
        path: path.to_owned(),
        source,
    }
}

impl ThermalZone {
    /// procfs' SysReadFile into `buf`; transient errors become `Skip`.
    fn read(path: &Path, buf: &mut String) -> Result<Read, CollectError> {
        match sysfs::read_attr_string(path, buf) {
            Ok(()) => Ok(Read::Ok),
            Err(e) if transient(&e) => Ok(Read::Skip),
            Err(e) => Err(io_err(path, e)),
        }
    }

    fn zone(&mut self, dir: &Path, zone: &str, out: &mut Emitter) -> Result<(), CollectError> {
        self.path.clear();
        self.path.push(dir);
        // Optional; only a real read error matters. Upstream reads it to
        // parse, and 1.5.0 reports disabled zones like any other.
        self.path.push("mode");
        match sysfs::read_attr_string(&self.path, &mut self.buf) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                ) => {}
            Err(e) if transient(&e) => return Ok(()),
            Err(e) => return Err(io_err(&self.path, e)),
        }
        self.path.set_file_name("type");
        if let Read::Skip = Self::read(&self.path, &mut self.kind)? {
            return Ok(());
        }
        self.path.set_file_name("policy");
        if let Read::Skip = Self::read(&self.path, &mut self.buf)? {
            return Ok(());
        }
        self.path.set_file_name("temp");
        if let Read::Skip = Self::read(&self.path, &mut self.buf)? {
            return Ok(());
        }
        let temp: i64 = self
            .buf
            .parse()
            .map_err(|e| CollectError::parse(&self.path, format!("{:?}: {e}", self.buf)))?;
        self.path.set_file_name("passive");
        match sysfs::read_attr_string(&self.path, &mut self.buf) {
            Ok(()) => {
                self.buf
                    .parse::<u64>()
                    .map_err(|e| CollectError::parse(&self.path, format!("{:?}: {e}", self.buf)))?;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                ) => {}
            Err(e) if transient(&e) => return Ok(()),
            Err(e) => return Err(io_err(&self.path, e)),
        }
        out.family(
            "node_thermal_zone_temp",
            "Zone temperature in Celsius",
            MetricType::Gauge,
        )
        .sample(
            &[("type", &self.kind), ("zone", zone)],
            temp as f64 / 1000.0,
        );
        Ok(())
    }

    fn cooling(&mut self, dir: &Path, name: &str, out: &mut Emitter) -> Result<(), CollectError> {
        self.path.clear();
        self.path.push(dir);
        self.path.push("type");
        if let Read::Skip = Self::read(&self.path, &mut self.kind)? {
            return Ok(());
        }
        let mut state = [0i64; 2];
        for (i, file) in ["max_state", "cur_state"].into_iter().enumerate() {
            self.path.set_file_name(file);
            if let Read::Skip = Self::read(&self.path, &mut self.buf)? {
                return Ok(());
            }
            // cur_state is -1 for intel_powerclamp when idle.
            state[i] = self
                .buf
                .parse()
                .map_err(|e| CollectError::parse(&self.path, format!("{:?}: {e}", self.buf)))?;
        }
        let labels = [("name", name), ("type", self.kind.as_str())];
        out.family(
            "node_cooling_device_cur_state",
            "Current throttle state of the cooling device",
            MetricType::Gauge,
        )
        .sample(&labels, state[1] as f64);
        out.family(
            "node_cooling_device_max_state",
            "Maximum throttle state of the cooling device",
            MetricType::Gauge,
        )
        .sample(&labels, state[0] as f64);
        Ok(())
    }
}

/// `thermal_zone12` → `Some("12")` for the glob `thermal_zone[0-9]*`.
fn numbered<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = name.strip_prefix(prefix)?;
    rest.as_bytes()
        .first()
        .is_some_and(u8::is_ascii_digit)
        .then_some(rest)
}

impl Collector for ThermalZone {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let class = ctx.sys_path("class/thermal");
        // Like Go's filepath.Glob, an unreadable or missing directory is
        // simply no zones.
        let Ok(entries) = std::fs::read_dir(&class) else {
            return Ok(());
        };
        // Listing allocates a name per entry; zones are discovered by listing.
        for entry in entries.flatten() {
            let fname = entry.file_name();
            let Some(fname) = fname.to_str() else {
                continue;
            };
            let dir = entry.path();
            if let Some(zone) = numbered(fname, "thermal_zone") {
                self.zone(&dir, zone, out)?;
            } else if let Some(name) = numbered(fname, "cooling_device") {
                self.cooling(&dir, name, out)?;
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

    fn new() -> ThermalZone {
        ThermalZone::new(&Settings::default())
    }

    #[test]
    fn boards_match_node_exporter() {
        assert_parity(&mut new(), "hwmon/rpi4", "thermal_zone.prom");
        assert_parity(&mut new(), "hwmon/nuc", "thermal_zone.prom");
    }

    #[test]
    fn edge_cases_match_node_exporter() {
        for case in [
            "edge",
            "missing_temp",
            "bad_temp",
            "bad_cooling",
            "missing_policy",
        ] {
            assert_parity(
                &mut new(),
                &format!("thermal_zone/{case}"),
                "thermal_zone.prom",
            );
        }
    }

    #[test]
    fn pi_zone_and_fan() {
        let text = render(&mut new(), &fixture_ctx("hwmon/rpi4")).unwrap();
        assert!(text.contains("node_thermal_zone_temp{type=\"cpu-thermal\",zone=\"0\"} 45.277\n"));
        assert!(text.contains("node_cooling_device_cur_state{name=\"0\",type=\"pwm-fan\"} 2\n"));
        assert!(text.contains("node_cooling_device_max_state{name=\"0\",type=\"pwm-fan\"} 4\n"));
    }

    #[test]
    fn powerclamp_idle_is_minus_one() {
        let text = render(&mut new(), &fixture_ctx("hwmon/nuc")).unwrap();
        assert!(text
            .contains("node_cooling_device_cur_state{name=\"4\",type=\"intel_powerclamp\"} -1\n"));
    }

    #[test]
    fn malformed_temp_fails_only_this_collector() {
        assert!(render(&mut new(), &fixture_ctx("thermal_zone/bad_temp")).is_err());
    }

    #[test]
    fn no_thermal_class_is_success_without_samples() {
        assert_eq!(render(&mut new(), &fixture_ctx("hwmon/none")).unwrap(), "");
    }
}
