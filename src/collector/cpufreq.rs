//! `cpufreq`: node_cpu_frequency_{,min_,max_}hertz and
//! node_cpu_scaling_frequency_{,min_,max_}hertz from
//! /sys/devices/system/cpu/cpu*/cpufreq, as node_exporter 1.5.0 (procfs'
//! SystemCpufreq) reads them: kHz → Hz, a missing or root-only file
//! (cpuinfo_cur_freq is 0400) just leaves its metric out.
//!
//! Must never: report a CPU from a half-parsed policy (a malformed number or
//! a missing scaling_governor/driver/setspeed/available_governors/
//! related_cpus fails the collector, as upstream), or read a shared policy
//! more than once per scrape (a Raspberry Pi's four CPUs all link to
//! policy0).

use std::io;
use std::path::{Path, PathBuf};

use super::sysfs;
use super::{CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

/// The numeric files procfs parses, in this order; all of them must parse
/// if present, though only six are exported.
const UINT_FILES: [&str; 7] = [
    "cpuinfo_cur_freq",
    "cpuinfo_min_freq",
    "cpuinfo_max_freq",
    "scaling_cur_freq",
    "scaling_min_freq",
    "scaling_max_freq",
    "cpuinfo_transition_latency",
];

/// Exported families, indexed like `UINT_FILES`.
const FAMILIES: [(&str, &str); 6] = [
    (
        "node_cpu_frequency_hertz",
        "Current cpu thread frequency in hertz.",
    ),
    (
        "node_cpu_frequency_min_hertz",
        "Minimum cpu thread frequency in hertz.",
    ),
    (
        "node_cpu_frequency_max_hertz",
        "Maximum cpu thread frequency in hertz.",
    ),
    (
        "node_cpu_scaling_frequency_hertz",
        "Current scaled CPU thread frequency in hertz.",
    ),
    (
        "node_cpu_scaling_frequency_min_hertz",
        "Minimum scaled CPU thread frequency in hertz.",
    ),
    (
        "node_cpu_scaling_frequency_max_hertz",
        "Maximum scaled CPU thread frequency in hertz.",
    ),
];

/// Files procfs requires (any read error fails it) though none is exported.
const REQUIRED_FILES: [&str; 5] = [
    "scaling_available_governors",
    "scaling_driver",
    "scaling_governor",
    "related_cpus",
    "scaling_setspeed",
];

pub struct Cpufreq {
    path: PathBuf,
    buf: String,
    /// The `cpuN/cpufreq` link target of the policy in `values`, so CPUs
    /// sharing a policy reuse one read.
    last_link: PathBuf,
    values: [Option<u64>; 7],
}

impl Cpufreq {
    pub fn new(_settings: &Settings) -> Self {
        Cpufreq {
            path: PathBuf::new(),
            buf: String::new(),
            last_link: PathBuf::new(),
            values: [None; 7],
        }
    }

    fn read_policy(&mut self, dir: &Path) -> Result<(), CollectError> {
        self.path.clear();
        self.path.push(dir);
        self.path.push("x");
        for (i, file) in UINT_FILES.iter().enumerate() {
            self.path.set_file_name(file);
            self.values[i] = match crate::collector::read_into(&self.path, &mut self.buf) {
                Ok(()) => Some(self.buf.trim().parse::<u64>().map_err(|e| {
                    CollectError::parse(&self.path, format!("{:?}: {e}", self.buf.trim()))
                })?),
                Err(CollectError::Io { source, .. })
                    if matches!(
                        source.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                    ) =>
                {
                    None
                }
                Err(e) => return Err(e),
            };
        }
        for file in REQUIRED_FILES {
            self.path.set_file_name(file);
            sysfs::read_attr_string(&self.path, &mut self.buf).map_err(|source| {
                CollectError::Io {
                    path: self.path.clone(),
                    source,
                }
            })?;
        }
        Ok(())
    }
}

impl Collector for Cpufreq {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let base = ctx.sys_path("devices/system/cpu");
        // Go's filepath.Glob: an unreadable directory is just no CPUs.
        let Ok(entries) = std::fs::read_dir(&base) else {
            return Ok(());
        };
        self.last_link.clear();
        // Listing allocates a name per entry; CPUs come and go (hotplug).
        for entry in entries.flatten() {
            let fname = entry.file_name();
            let Some(cpu) = fname
                .to_str()
                .and_then(|n| n.strip_prefix("cpu"))
                .filter(|n| n.as_bytes().first().is_some_and(u8::is_ascii_digit))
            else {
                continue;
            };
            let dir = entry.path().join("cpufreq");
            match std::fs::metadata(&dir) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(CollectError::Io { path: dir, source }),
            }
            // Entries are not sorted, so only a run of CPUs on one policy
            // shares a read; that is still every CPU on single-policy boards.
            match std::fs::read_link(&dir) {
                Ok(target)
                    if !self.last_link.as_os_str().is_empty() && target == self.last_link => {}
                Ok(target) => {
                    self.read_policy(&dir)?;
                    self.last_link = target;
                }
                Err(_) => {
                    self.read_policy(&dir)?;
                    self.last_link.clear();
                }
            }
            for (i, (name, help)) in FAMILIES.iter().enumerate() {
                if let Some(khz) = self.values[i] {
                    out.family(name, help, MetricType::Gauge)
                        .sample(&[("cpu", cpu)], khz as f64 * 1000.0);
                }
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

    fn new() -> Cpufreq {
        Cpufreq::new(&Settings::default())
    }

    #[test]
    fn boards_match_node_exporter() {
        assert_parity(&mut new(), "hwmon/rpi4", "cpufreq.prom");
        assert_parity(&mut new(), "hwmon/nuc", "cpufreq.prom");
    }

    #[test]
    fn edge_cases_match_node_exporter() {
        for case in [
            "offline",
            "bad_value",
            "no_setspeed",
            "bad_stats",
            "no_cpus",
        ] {
            assert_parity(&mut new(), &format!("cpufreq/{case}"), "cpufreq.prom");
        }
    }

    #[test]
    fn shared_policy_reports_every_cpu() {
        let text = render(&mut new(), &fixture_ctx("hwmon/rpi4")).unwrap();
        for cpu in 0..4 {
            let line =
                format!("node_cpu_scaling_frequency_max_hertz{{cpu=\"{cpu}\"}} 1500000000\n");
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert!(text.contains("node_cpu_frequency_hertz{cpu=\"3\"} 600000000\n"));
    }

    #[test]
    fn intel_pstate_has_no_cpuinfo_cur_freq() {
        let text = render(&mut new(), &fixture_ctx("hwmon/nuc")).unwrap();
        assert!(!text.contains("node_cpu_frequency_hertz"));
        assert!(text.contains("node_cpu_scaling_frequency_hertz{cpu=\"0\"} 1800123000\n"));
    }

    #[test]
    fn malformed_frequency_fails_only_this_collector() {
        assert!(render(&mut new(), &fixture_ctx("cpufreq/bad_value")).is_err());
    }
}
