//! `cpu`: per-CPU time from the `cpuN` lines of /proc/stat
//! (`node_cpu_seconds_total`, `node_cpu_guest_seconds_total`), the thermal
//! throttle counters of /sys/devices/system/cpu/cpuN/thermal_throttle and
//! `node_cpu_isolated` from /sys/devices/system/cpu/isolated, and with
//! `--collector.cpu.info` the /proc/cpuinfo families `node_cpu_info`,
//! `node_cpu_flag_info` and `node_cpu_bug_info`, as node_exporter 1.5.0
//! reports them. /proc/cpuinfo is parsed the way procfs v0.8 does for the
//! architecture cairn runs on (x86's per-CPU blocks; ARM's `processor` /
//! `BogoMIPS` / `Features` layout, or the old single `Processor :` line).
//!
//! Owns the per-CPU cache that keeps the exported counters from going
//! backwards (node_exporter's `updateCPUStats`). Must never: invent a CPU
//! (labels are exactly the N of the `cpuN` lines, gaps and all), keep
//! reporting a CPU that went offline, or update the cache from a /proc/stat
//! read that turned out to be truncated.
//!
//! `node_cpu_frequency_hertz` is not emitted from /proc/cpuinfo: 1.5.0 does
//! not; later upstream versions do, under the name the cpufreq collector
//! already uses for sysfs' cpuinfo_cur_freq, which in one exposition would
//! be two families of one name.

use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use regex::Regex;

use super::{read_into, read_optional, CollectError, Collector, Context, Opt, OptKind, Settings};

mod info;
use crate::metrics::{Emitter, MetricType};
use info::{CpuinfoArch, CpuinfoEntry};

/// procfs divides by 100 whatever the kernel's CONFIG_HZ; so do we.
const USER_HZ: f64 = 100.0;
/// An idle counter falling back this many seconds is a hotplugged CPU
/// starting from zero, not jitter: start that CPU's cache over.
const JUMP_BACK_SECONDS: f64 = 3.0;
/// Order of the values on a `cpuN` line; the first eight are the modes of
/// `node_cpu_seconds_total`, the last two the guest modes.
const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];
const IDLE: usize = 3;
const GUEST: usize = 8;
const GUEST_NICE: usize = 9;
/// Kernels since 2.6 have at least user, nice, system and idle; fewer
/// values on a `cpuN` line means the line was cut.
const MIN_FIELDS: usize = 4;
/// More isolated CPUs than this is a garbled range, not a machine.
const MAX_ISOLATED: usize = 1 << 16;

type Times = [f64; 10];

pub const OPTIONS: &[Opt] = &[
    Opt {
        flag: "collector.cpu.guest",
        kind: OptKind::Bool,
        default: "true",
        help: "Enables metric node_cpu_guest_seconds_total",
        aliases: &[],
    },
    Opt {
        flag: "collector.cpu.info",
        kind: OptKind::Bool,
        default: "false",
        help: "Enables metric cpu_info",
        aliases: &[],
    },
    Opt {
        flag: "collector.cpu.info.flags-include",
        kind: OptKind::Regex,
        default: "",
        help: "Filter the `flags` field in cpuInfo with a value that must be a regular expression",
        aliases: &[],
    },
    Opt {
        flag: "collector.cpu.info.bugs-include",
        kind: OptKind::Regex,
        default: "",
        help: "Filter the `bugs` field in cpuInfo with a value that must be a regular expression",
        aliases: &[],
    },
];

struct CachedCpu {
    id: u32,
    times: Times,
    seen: bool,
}

pub struct Cpu {
    guest: bool,
    /// `--collector.cpu.info`, or implied by an include filter (upstream).
    info: bool,
    flags_include: Option<Regex>,
    bugs_include: Option<Regex>,
    /// Which procfs cpuinfo parser applies: the one for the build target,
    /// as node_exporter's own build picks it.
    arch: CpuinfoArch,
    info_buf: String,
    info_cpus: Vec<CpuinfoEntry>,
    /// Flags/bugs already emitted this collection (a repeated word would be
    /// a duplicate series, which client_golang drops).
    seen_words: Vec<Range<usize>>,
    buf: String,
    /// This read's `cpuN` lines, merged into `cache` only once the whole
    /// file parsed.
    fresh: Vec<(u32, Times)>,
    /// Sorted by id.
    cache: Vec<CachedCpu>,
    path: PathBuf,
    name: String,
    cpu_dirs: Vec<u32>,
    core_throttles: Vec<(u64, u64, u64)>,
    package_throttles: Vec<(u64, u64)>,
    /// None until the isolated file has been read once: it reflects the
    /// `isolcpus=` boot parameter, so node_exporter reads it only at start.
    isolated: Option<Option<Vec<u32>>>,
}

impl Cpu {
    pub fn new(settings: &Settings) -> Self {
        let flags_include = settings.regex("collector.cpu.info.flags-include");
        let bugs_include = settings.regex("collector.cpu.info.bugs-include");
        let mut info = settings.bool("collector.cpu.info");
        if !info && (flags_include.is_some() || bugs_include.is_some()) {
            info = true;
            tracing::info!("--collector.cpu.info has been set to `true` because you set the following flags, like --collector.cpu.info.flags-include and --collector.cpu.info.bugs-include");
        }
        Cpu {
            guest: settings.bool("collector.cpu.guest"),
            info,
            flags_include,
            bugs_include,
            arch: CpuinfoArch::TARGET,
            info_buf: String::new(),
            info_cpus: Vec::new(),
            seen_words: Vec::new(),
            buf: String::with_capacity(8 * 1024),
            fresh: Vec::new(),
            cache: Vec::new(),
            path: PathBuf::new(),
            name: String::with_capacity(16),
            cpu_dirs: Vec::new(),
            core_throttles: Vec::new(),
            package_throttles: Vec::new(),
            isolated: None,
        }
    }

    fn parse_stat(&mut self, path: &Path) -> Result<(), CollectError> {
        read_into(path, &mut self.buf)?;
        self.fresh.clear();
        if !self.buf.ends_with('\n') {
            return Err(CollectError::parse(path, "truncated: last line incomplete"));
        }
        for line in self.buf.lines() {
            let mut f = line.split_ascii_whitespace();
            let Some(name) = f.next() else { continue };
            let Some(id) = name.strip_prefix("cpu") else {
                continue;
            };
            let mut times = [0.0; 10];
            let mut n = 0;
            for (slot, tok) in times.iter_mut().zip(f) {
                let ticks: u64 = tok
                    .parse()
                    .map_err(|e| CollectError::parse(path, format!("{name} value {tok:?}: {e}")))?;
                *slot = ticks as f64 / USER_HZ;
                n += 1;
            }
            // Like procfs: a key alone on its line is skipped, and the
            // all-CPU `cpu` line is not exported.
            if n == 0 || id.is_empty() {
                continue;
            }
            let id: u32 = id
                .parse()
                .map_err(|e| CollectError::parse(path, format!("cpu id in {name:?}: {e}")))?;
            if n < MIN_FIELDS {
                return Err(CollectError::parse(
                    path,
                    format!("truncated: {name} has {n} values"),
                ));
            }
            self.fresh.push((id, times));
        }
        if self.fresh.is_empty() {
            // Some CPU is always online: a file without cpuN lines was cut.
            return Err(CollectError::parse(path, "truncated: no cpuN lines"));
        }
        Ok(())
    }

    /// node_exporter's `updateCPUStats`, plus dropping CPUs that are gone.
    fn merge(&mut self) {
        for &(id, new) in &self.fresh {
            let idx = match self.cache.binary_search_by_key(&id, |c| c.id) {
                Ok(i) => i,
                Err(i) => {
                    // A CPU seen for the first time (or back from offline):
                    // the only allocation of a warm collector, and rare.
                    self.cache.insert(
                        i,
                        CachedCpu {
                            id,
                            times: [0.0; 10],
                            seen: false,
                        },
                    );
                    i
                }
            };
            let c = &mut self.cache[idx];
            c.seen = true;
            if c.times[IDLE] - new[IDLE] >= JUMP_BACK_SECONDS {
                tracing::debug!(
                    cpu = id,
                    old = c.times[IDLE],
                    new = new[IDLE],
                    "CPU idle counter jumped backwards, possible hotplug event, resetting CPU stats"
                );
                c.times = [0.0; 10];
            }
            // A counter that went backwards keeps its previous value, so the
            // exported series stays monotonic.
            for (old, new) in c.times.iter_mut().zip(new) {
                if new >= *old {
                    *old = new;
                }
            }
        }
        self.cache
            .retain_mut(|c| std::mem::replace(&mut c.seen, false));
    }

    fn emit_times(&self, out: &mut Emitter) {
        let mut fam = out.family(
            "node_cpu_seconds_total",
            "Seconds the CPUs spent in each mode.",
            MetricType::Counter,
        );
        for c in &self.cache {
            for (mode, v) in MODES.iter().zip(c.times) {
                fam.sample_with(v, |l| {
                    l.label_display("cpu", c.id).label("mode", mode);
                });
            }
        }
        if !self.guest {
            return;
        }
        let mut fam = out.family(
            "node_cpu_guest_seconds_total",
            "Seconds the CPUs spent in guests (VMs) for each mode.",
            MetricType::Counter,
        );
        for c in &self.cache {
            // Guest time is also counted in user and nice.
            for (mode, i) in [("user", GUEST), ("nice", GUEST_NICE)] {
                fam.sample_with(c.times[i], |l| {
                    l.label_display("cpu", c.id).label("mode", mode);
                });
            }
        }
    }

    /// `self.path` = <sysfs>/devices/system/cpu, rebuilt in its own buffer.
    fn reset_path(&mut self, ctx: &Context) {
        self.path.as_mut_os_string().clear();
        self.path.push(&ctx.sysfs);
        self.path.push("devices/system/cpu");
    }

    /// The N of every `cpuN` directory (node_exporter globs `cpu[0-9]*`),
    /// online or not. An unreadable directory is no CPUs, as with Go's glob.
    /// std's directory iterator allocates each entry's name: a per-collection
    /// cost of a few dozen small allocations, for CPUs that can come and go.
    fn list_cpu_dirs(&mut self) {
        self.cpu_dirs.clear();
        let Ok(dir) = std::fs::read_dir(&self.path) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            if let Some(id) = name
                .as_bytes()
                .strip_prefix(b"cpu")
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.parse::<u32>().ok())
            {
                self.cpu_dirs.push(id);
            }
        }
        self.cpu_dirs.sort_unstable();
    }

    /// Reads `<cpu dir>/<sub>/<file>` as node_exporter's readUintFromFile:
    /// trimmed, unsigned; any failure is "not there".
    fn read_cpu_uint(&mut self, sub: &str, file: &str) -> Option<u64> {
        self.path.push(sub);
        self.path.push(file);
        let ok = read_into(&self.path, &mut self.buf).is_ok();
        self.path.pop();
        self.path.pop();
        if !ok {
            return None;
        }
        self.buf.trim().parse().ok()
    }

    /// node_exporter's `updateThermalThrottle`: one value per package and
    /// per (package, core), from the first CPU of each that has it.
    fn update_thermal_throttle(&mut self, ctx: &Context, out: &mut Emitter) {
        use std::fmt::Write as _;
        self.reset_path(ctx);
        self.list_cpu_dirs();
        self.core_throttles.clear();
        self.package_throttles.clear();
        for i in 0..self.cpu_dirs.len() {
            self.name.clear();
            let _ = write!(self.name, "cpu{}", self.cpu_dirs[i]);
            self.path.push(&self.name);
            self.throttle_of_cpu();
            self.path.pop();
        }
        let mut fam = out.family(
            "node_cpu_package_throttles_total",
            "Number of times this CPU package has been throttled.",
            MetricType::Counter,
        );
        for &(package, n) in &self.package_throttles {
            fam.sample_with(n as f64, |l| {
                l.label_display("package", package);
            });
        }
        let mut fam = out.family(
            "node_cpu_core_throttles_total",
            "Number of times this CPU core has been throttled.",
            MetricType::Counter,
        );
        for &(package, core, n) in &self.core_throttles {
            // client_golang sorts label pairs by name.
            fam.sample_with(n as f64, |l| {
                l.label_display("core", core)
                    .label_display("package", package);
            });
        }
    }

    /// One CPU directory (in `self.path`). Offline CPUs have no topology
    /// and are skipped, as node_exporter does.
    fn throttle_of_cpu(&mut self) {
        let Some(package) = self.read_cpu_uint("topology", "physical_package_id") else {
            return;
        };
        let Some(core) = self.read_cpu_uint("topology", "core_id") else {
            return;
        };
        // Core throttles first: some CPU/kernel pairs only have those.
        if !self
            .core_throttles
            .iter()
            .any(|&(p, c, _)| p == package && c == core)
        {
            if let Some(n) = self.read_cpu_uint("thermal_throttle", "core_throttle_count") {
                self.core_throttles.push((package, core, n));
            }
        }
        if !self.package_throttles.iter().any(|&(p, _)| p == package) {
            if let Some(n) = self.read_cpu_uint("thermal_throttle", "package_throttle_count") {
                self.package_throttles.push((package, n));
            }
        }
    }

    fn update_isolated(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        if self.isolated.is_none() {
            let path = ctx.sys_path("devices/system/cpu/isolated");
            let list = if read_optional(&path, &mut self.buf)? {
                Some(parse_cpu_list(&path, &self.buf)?)
            } else {
                None
            };
            self.isolated = Some(list);
        }
        if let Some(Some(cpus)) = &self.isolated {
            let mut fam = out.family(
                "node_cpu_isolated",
                "Whether each core is isolated, information from /sys/devices/system/cpu/isolated.",
                MetricType::Gauge,
            );
            for &cpu in cpus {
                fam.sample_with(1.0, |l| {
                    l.label_display("cpu", cpu);
                });
            }
        }
        Ok(())
    }
}

/// A kernel CPU list (`0-2,5`), deduplicated and sorted. Empty is none.
fn parse_cpu_list(path: &Path, text: &str) -> Result<Vec<u32>, CollectError> {
    let bad = |what: &str| CollectError::parse(path, format!("invalid cpu list {what:?}"));
    let mut cpus = Vec::new();
    for part in text.trim_end_matches('\n').split(',') {
        if part.is_empty() {
            continue;
        }
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let first: u32 = first.parse().map_err(|_| bad(part))?;
        let last: u32 = last.parse().map_err(|_| bad(part))?;
        if last < first || cpus.len() + (last - first) as usize >= MAX_ISOLATED {
            return Err(bad(part));
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

impl Collector for Cpu {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        if self.info {
            self.update_info(ctx, out)?;
        }
        self.parse_stat(&ctx.proc_path("stat"))?;
        self.merge();
        self.emit_times(out);
        self.update_isolated(ctx, out)?;
        self.update_thermal_throttle(ctx, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::info::parse_cpuinfo;
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn cpu() -> Cpu {
        Cpu::new(&Settings::default())
    }

    fn lines_of<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']))
            .collect()
    }

    #[test]
    fn normal_host() {
        let text = render(&mut cpu(), &fixture_ctx("cpu/normal")).unwrap();
        let want = "\
# HELP node_cpu_core_throttles_total Number of times this CPU core has been throttled.
# TYPE node_cpu_core_throttles_total counter
node_cpu_core_throttles_total{core=\"0\",package=\"0\"} 5
node_cpu_core_throttles_total{core=\"1\",package=\"0\"} 7
# HELP node_cpu_guest_seconds_total Seconds the CPUs spent in guests (VMs) for each mode.
# TYPE node_cpu_guest_seconds_total counter
node_cpu_guest_seconds_total{cpu=\"0\",mode=\"nice\"} 0.02
node_cpu_guest_seconds_total{cpu=\"0\",mode=\"user\"} 1.5
node_cpu_guest_seconds_total{cpu=\"1\",mode=\"nice\"} 0
node_cpu_guest_seconds_total{cpu=\"1\",mode=\"user\"} 0
# HELP node_cpu_isolated Whether each core is isolated, information from /sys/devices/system/cpu/isolated.
# TYPE node_cpu_isolated gauge
node_cpu_isolated{cpu=\"1\"} 1
# HELP node_cpu_package_throttles_total Number of times this CPU package has been throttled.
# TYPE node_cpu_package_throttles_total counter
node_cpu_package_throttles_total{package=\"0\"} 30
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 274.71
node_cpu_seconds_total{cpu=\"0\",mode=\"iowait\"} 0.56
node_cpu_seconds_total{cpu=\"0\",mode=\"irq\"} 0
node_cpu_seconds_total{cpu=\"0\",mode=\"nice\"} 0.03
node_cpu_seconds_total{cpu=\"0\",mode=\"softirq\"} 0.04
node_cpu_seconds_total{cpu=\"0\",mode=\"steal\"} 0.09
node_cpu_seconds_total{cpu=\"0\",mode=\"system\"} 18.79
node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 53.91
node_cpu_seconds_total{cpu=\"1\",mode=\"idle\"} 263.15
node_cpu_seconds_total{cpu=\"1\",mode=\"iowait\"} 3.15
node_cpu_seconds_total{cpu=\"1\",mode=\"irq\"} 0
node_cpu_seconds_total{cpu=\"1\",mode=\"nice\"} 0
node_cpu_seconds_total{cpu=\"1\",mode=\"softirq\"} 0.17
node_cpu_seconds_total{cpu=\"1\",mode=\"steal\"} 0.15
node_cpu_seconds_total{cpu=\"1\",mode=\"system\"} 23.46
node_cpu_seconds_total{cpu=\"1\",mode=\"user\"} 57.96
";
        assert_eq!(text, want);
    }

    #[test]
    fn guest_metrics_follow_the_setting() {
        let mut c = Cpu::new(&Settings::default().with("collector.cpu.guest", "false"));
        let text = render(&mut c, &fixture_ctx("cpu/normal")).unwrap();
        assert!(!text.contains("node_cpu_guest_seconds_total"), "{text}");
        assert!(text.contains("node_cpu_seconds_total{"), "{text}");
    }

    #[test]
    fn offline_cpu_keeps_the_kernel_numbering_and_no_thermal_files() {
        let text = render(&mut cpu(), &fixture_ctx("cpu/offline")).unwrap();
        let idle = lines_of(&text, "node_cpu_seconds_total")
            .into_iter()
            .filter(|l| l.contains("mode=\"idle\""))
            .collect::<Vec<_>>();
        assert_eq!(
            idle,
            [
                "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 100",
                "node_cpu_seconds_total{cpu=\"1\",mode=\"idle\"} 200",
                "node_cpu_seconds_total{cpu=\"3\",mode=\"idle\"} 300",
            ]
        );
        assert_eq!(lines_of(&text, "node_cpu_guest_seconds_total").len(), 6);
        // cpu2 has no topology; the others have no thermal_throttle dir; and
        // there is no isolated file.
        assert!(!text.contains("throttles_total"), "{text}");
        assert!(!text.contains("node_cpu_isolated"), "{text}");
    }

    #[test]
    fn cpu_going_offline_is_dropped() {
        let mut c = cpu();
        render(&mut c, &fixture_ctx("cpu/normal")).unwrap();
        let text = render(&mut c, &fixture_ctx("cpu/one_cpu")).unwrap();
        let series = lines_of(&text, "node_cpu_seconds_total");
        assert_eq!(series.len(), 8, "{text}");
        assert!(series.iter().all(|l| l.contains("cpu=\"0\"")), "{text}");
    }

    #[test]
    fn backwards_counter_keeps_old_value_and_idle_drop_resets() {
        let mut c = cpu();
        render(&mut c, &fixture_ctx("cpu/jump_before")).unwrap();
        // jump_after: cpu0 user 100.00 -> 99.50 s and iowait 5 -> 4 s (idle
        // up); cpu1 idle 1000 -> 10 s, a hotplug.
        for _ in 0..2 {
            let text = render(&mut c, &fixture_ctx("cpu/jump_after")).unwrap();
            let got = lines_of(&text, "node_cpu_seconds_total");
            for want in [
                "node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 100",
                "node_cpu_seconds_total{cpu=\"0\",mode=\"iowait\"} 5",
                "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 1002",
                "node_cpu_seconds_total{cpu=\"0\",mode=\"system\"} 21",
                "node_cpu_seconds_total{cpu=\"1\",mode=\"idle\"} 10",
                "node_cpu_seconds_total{cpu=\"1\",mode=\"user\"} 1",
                "node_cpu_seconds_total{cpu=\"1\",mode=\"iowait\"} 0.5",
            ] {
                assert!(got.contains(&want), "missing {want}\n{text}");
            }
        }
    }

    #[test]
    fn small_idle_jitter_is_not_a_hotplug() {
        let mut c = cpu();
        render(&mut c, &fixture_ctx("cpu/jump_before")).unwrap();
        let text = render(&mut c, &fixture_ctx("cpu/jitter")).unwrap();
        let got = lines_of(&text, "node_cpu_seconds_total");
        // cpu0 idle 1000 -> 998 s: kept at 1000, user still moves on.
        assert!(got.contains(&"node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 1000"));
        assert!(got.contains(&"node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 101"));
    }

    #[test]
    fn counter_near_u64_max_parses() {
        let mut c = cpu();
        let mut e = Emitter::new();
        c.update(&fixture_ctx("cpu/huge"), &mut e).unwrap();
        let fam = e
            .families()
            .find(|f| f.name() == "node_cpu_seconds_total")
            .unwrap();
        let user = fam
            .series()
            .iter()
            .find(|s| s.labels == "cpu=\"0\",mode=\"user\"")
            .unwrap();
        assert_eq!(user.value, 18446744073709551000u64 as f64 / 100.0);
    }

    #[test]
    fn truncated_stat_fails_and_leaves_the_cache_alone() {
        let mut c = cpu();
        render(&mut c, &fixture_ctx("cpu/normal")).unwrap();
        for case in ["cpu/truncated", "cpu/no_cpu_lines", "cpu/short_line"] {
            let err = render(&mut c, &fixture_ctx(case)).unwrap_err();
            assert!(err.to_string().contains("truncated"), "{case}: {err}");
        }
        // Each failed read has cpu0 user at 60 s before the damage; had it
        // reached the cache, the 53.91 s below would be held at 60.
        let text = render(&mut c, &fixture_ctx("cpu/normal")).unwrap();
        assert!(text.contains("{cpu=\"0\",mode=\"user\"} 53.91\n"), "{text}");
    }

    #[test]
    fn bad_cpu_id_fails() {
        assert!(render(&mut cpu(), &fixture_ctx("cpu/bad_id")).is_err());
    }

    fn info_lines(text: &str) -> String {
        text.lines()
            .filter(|l| {
                ["node_cpu_info", "node_cpu_flag_info", "node_cpu_bug_info"]
                    .iter()
                    .any(|f| l.contains(f))
            })
            .map(|l| format!("{l}\n"))
            .collect()
    }

    fn with_info(flags: &str, bugs: &str) -> Cpu {
        Cpu::new(
            &Settings::default()
                .with("collector.cpu.info", "true")
                .with("collector.cpu.info.flags-include", flags)
                .with("collector.cpu.info.bugs-include", bugs),
        )
    }

    #[test]
    fn cpu_info_x86_as_node_exporter() {
        // node_exporter 1.5.0 on this fixture with
        // --collector.cpu.info.flags-include='^(aes|avx2?|vmx)$'
        // --collector.cpu.info.bugs-include='spectre|mds'.
        let mut c = with_info("^(aes|avx2?|vmx)$", "spectre|mds");
        c.arch = CpuinfoArch::X86;
        let text = render(&mut c, &fixture_ctx("cpu/info_x86")).unwrap();
        let want = include_str!("../../tests/fixtures/cpu/info_x86/expected_info.prom");
        assert_eq!(info_lines(&text), want);
        // The rest of the collector is unchanged.
        assert!(text.contains("node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 274.71\n"));
    }

    #[test]
    fn cpu_info_is_off_by_default_and_flags_only_with_a_filter() {
        let text = render(&mut cpu(), &fixture_ctx("cpu/info_x86")).unwrap();
        assert_eq!(info_lines(&text), "");
        let mut c = Cpu::new(&Settings::default().with("collector.cpu.info", "true"));
        c.arch = CpuinfoArch::X86;
        let text = render(&mut c, &fixture_ctx("cpu/info_x86")).unwrap();
        assert_eq!(lines_of(&text, "node_cpu_info").len(), 2);
        assert!(
            !text.contains("flag_info") && !text.contains("bug_info"),
            "{text}"
        );
    }

    #[test]
    fn an_include_filter_turns_cpu_info_on() {
        let mut c = Cpu::new(&Settings::default().with("collector.cpu.info.bugs-include", "."));
        c.arch = CpuinfoArch::X86;
        let text = render(&mut c, &fixture_ctx("cpu/info_x86")).unwrap();
        assert_eq!(lines_of(&text, "node_cpu_info").len(), 2);
        assert_eq!(lines_of(&text, "node_cpu_bug_info").len(), 11);
        assert!(!text.contains("flag_info"), "{text}");
    }

    #[test]
    fn cpu_info_raspberry_pi_4_arm64() {
        let mut c = with_info(".", ".");
        c.arch = CpuinfoArch::Arm;
        let text = render(&mut c, &fixture_ctx("cpu/info_arm64_rpi4")).unwrap();
        let want = "\
node_cpu_flag_info{flag=\"asimd\"} 1
node_cpu_flag_info{flag=\"cpuid\"} 1
node_cpu_flag_info{flag=\"crc32\"} 1
node_cpu_flag_info{flag=\"evtstrm\"} 1
node_cpu_flag_info{flag=\"fp\"} 1
node_cpu_info{cachesize=\"\",core=\"\",cpu=\"0\",family=\"\",microcode=\"\",model=\"\",model_name=\"\",package=\"\",stepping=\"\",vendor=\"\"} 1
node_cpu_info{cachesize=\"\",core=\"\",cpu=\"1\",family=\"\",microcode=\"\",model=\"\",model_name=\"\",package=\"\",stepping=\"\",vendor=\"\"} 1
node_cpu_info{cachesize=\"\",core=\"\",cpu=\"2\",family=\"\",microcode=\"\",model=\"\",model_name=\"\",package=\"\",stepping=\"\",vendor=\"\"} 1
node_cpu_info{cachesize=\"\",core=\"\",cpu=\"3\",family=\"\",microcode=\"\",model=\"\",model_name=\"\",package=\"\",stepping=\"\",vendor=\"\"} 1
";
        let got: String = info_lines(&text)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn cpu_info_raspberry_pi_3_armv7_and_old_armv6() {
        let mut c = with_info("^neon$", "");
        c.arch = CpuinfoArch::Arm;
        let text = render(&mut c, &fixture_ctx("cpu/info_armv7_rpi3")).unwrap();
        let info = lines_of(&text, "node_cpu_info");
        assert_eq!(info.len(), 2, "{text}");
        assert!(info[1].contains("cpu=\"1\""), "{text}");
        assert!(
            info[1].contains("model_name=\"ARMv7 Processor rev 4 (v7l)\""),
            "{text}"
        );
        assert_eq!(
            lines_of(&text, "node_cpu_flag_info"),
            ["node_cpu_flag_info{flag=\"neon\"} 1"]
        );

        // One `Processor :` line names the model; BogoMIPS makes CPU 0.
        let mut c = with_info("^(vfp|java)$", "");
        c.arch = CpuinfoArch::Arm;
        let text = render(&mut c, &fixture_ctx("cpu/info_armv6_old")).unwrap();
        let info = lines_of(&text, "node_cpu_info");
        assert_eq!(info.len(), 1, "{text}");
        assert!(info[0].contains("cpu=\"0\""), "{text}");
        assert!(
            info[0].contains("model_name=\"ARMv6-compatible processor rev 7 (v6l)\""),
            "{text}"
        );
        assert_eq!(lines_of(&text, "node_cpu_flag_info").len(), 2, "{text}");
    }

    #[test]
    fn cpu_info_riscv() {
        let mut c = with_info("", "");
        c.arch = CpuinfoArch::Riscv;
        let text = render(&mut c, &fixture_ctx("cpu/info_riscv")).unwrap();
        let info = lines_of(&text, "node_cpu_info");
        assert_eq!(info.len(), 2, "{text}");
        assert!(info[1].contains("core=\"2\",cpu=\"1\""), "{text}");
        assert!(info[1].contains("model_name=\"rv64imafdc\""), "{text}");
    }

    #[test]
    fn cpu_info_parse_errors_fail_the_collector() {
        let mut c = Cpu::new(&Settings::default().with("collector.cpu.info", "true"));
        c.arch = CpuinfoArch::X86;
        // `cpu MHz : fast`, as node_exporter: strconv.ParseFloat fails.
        assert!(render(&mut c, &fixture_ctx("cpu/info_bad")).is_err());
        // A file that does not start with a processor, a bad processor
        // number, a line without ": ", a model before any processor, an
        // out-of-sequence RISC-V hart, an unsupported architecture.
        let mut v = Vec::new();
        assert!(parse_cpuinfo(CpuinfoArch::X86, "\n\nvendor_id : x\n", &mut v).is_err());
        assert!(parse_cpuinfo(CpuinfoArch::Arm, "Hardware : BCM2835\n", &mut v).is_err());
        assert!(parse_cpuinfo(CpuinfoArch::X86, "processor : x\n", &mut v).is_err());
        assert!(parse_cpuinfo(CpuinfoArch::X86, "processor:0\n", &mut v).is_err());
        assert!(
            parse_cpuinfo(CpuinfoArch::Arm, "Processor : a\nmodel name : b\n", &mut v).is_err()
        );
        assert!(
            parse_cpuinfo(CpuinfoArch::Riscv, "processor : 0\nprocessor : 5\n", &mut v).is_err()
        );
        assert!(parse_cpuinfo(CpuinfoArch::Other, "processor : 0\n", &mut v).is_err());
        // No Features line (node_exporter would crash): no flags.
        parse_cpuinfo(CpuinfoArch::Arm, "processor : 0\nBogoMIPS : 1.0\n", &mut v).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].flags, 0..0);
    }

    #[test]
    fn cpu_list_parsing() {
        let p = Path::new("x");
        assert_eq!(parse_cpu_list(p, "\n").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_cpu_list(p, "0-2,5\n").unwrap(), [0, 1, 2, 5]);
        assert_eq!(parse_cpu_list(p, "3,1-2,2").unwrap(), [1, 2, 3]);
        assert!(parse_cpu_list(p, "2-1").is_err());
        assert!(parse_cpu_list(p, "a").is_err());
        assert!(parse_cpu_list(p, "0-4000000000").is_err());
    }
}
