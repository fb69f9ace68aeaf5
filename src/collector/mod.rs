//! Collectors: one file per node_exporter collector, behind one small trait.
//!
//! Owns: the `Collector` trait, the `Context` every collector reads through
//! (procfs / sysfs / rootfs / udev roots, so tests can point them at fixture
//! trees), the registry of node_exporter's collector names and which are on by
//! default, and the per-collector settings.
//!
//! Must never: write to disk, talk to the network, or wait on anything but
//! the file it is reading. A collector that fails returns an error; it never
//! panics on input it read, and never fails the scrape for the others.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use regex::Regex;

use crate::metrics::Emitter;

pub mod containers;
pub mod cpu;
pub mod diskstats;
pub mod filesystem;
pub mod loadavg;
pub mod meminfo;
pub mod netdev;
pub mod os;
pub mod stat;
pub mod time;
pub mod uname;

/// Why a collector could not produce its metrics this time.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parsing {path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("{0}")]
    Other(String),
}

impl CollectError {
    pub fn parse(path: &Path, msg: impl Into<String>) -> Self {
        CollectError::Parse {
            path: path.to_owned(),
            msg: msg.into(),
        }
    }
}

/// Where a collector reads from. Cheap to share; never mutated during a
/// collection.
#[derive(Debug, Clone)]
pub struct Context {
    pub procfs: PathBuf,
    pub sysfs: PathBuf,
    pub rootfs: PathBuf,
    pub udev_data: PathBuf,
}

impl Default for Context {
    fn default() -> Self {
        Context {
            procfs: PathBuf::from("/proc"),
            sysfs: PathBuf::from("/sys"),
            rootfs: PathBuf::from("/"),
            udev_data: PathBuf::from("/run/udev/data"),
        }
    }
}

impl Context {
    pub fn proc_path(&self, rel: &str) -> PathBuf {
        self.procfs.join(rel)
    }
    pub fn sys_path(&self, rel: &str) -> PathBuf {
        self.sysfs.join(rel)
    }
    /// A path on the host's root filesystem (`rel` may start with `/`).
    pub fn root_path(&self, rel: &str) -> PathBuf {
        self.rootfs.join(rel.trim_start_matches('/'))
    }
}

/// Reads a whole file into `buf` (cleared first), reusing its capacity so a
/// warm collector does not allocate. Errors carry the path.
pub fn read_into(path: &Path, buf: &mut String) -> Result<(), CollectError> {
    buf.clear();
    let res = std::fs::File::open(path).and_then(|mut f| f.read_to_string(buf));
    res.map(|_| ()).map_err(|source| CollectError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Like `read_into` but a missing file is `Ok(false)`: for optional files
/// that older kernels or other boards lack.
pub fn read_optional(path: &Path, buf: &mut String) -> Result<bool, CollectError> {
    match read_into(path, buf) {
        Ok(()) => Ok(true),
        Err(CollectError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            buf.clear();
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// One node_exporter collector.
pub trait Collector: Send {
    /// Writes this collection's samples into `out` (already cleared).
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError>;
}

/// Per-collector settings, from the config file's `[collectors.NAME]`
/// tables and the `--collector.NAME.OPTION` flags (flags win). Defaults are
/// upstream node_exporter's.
#[derive(Debug, Clone)]
pub struct Settings {
    pub cpu_guest: bool,
    pub stat_softirq: bool,
    pub diskstats_device_exclude: Option<Regex>,
    pub diskstats_device_include: Option<Regex>,
    pub netdev_device_exclude: Option<Regex>,
    pub netdev_device_include: Option<Regex>,
    pub filesystem_mount_points_exclude: Regex,
    pub filesystem_fs_types_exclude: Regex,
    pub containers_cgroup_include: Regex,
    pub containers_max: usize,
}

pub const DISKSTATS_DEVICE_EXCLUDE: &str = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";
pub const FILESYSTEM_MOUNT_POINTS_EXCLUDE: &str =
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
pub const FILESYSTEM_FS_TYPES_EXCLUDE: &str = r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$";

impl Default for Settings {
    fn default() -> Self {
        // The defaults are constants checked by a unit test, so they compile.
        let re = |s: &str| Regex::new(s).expect("built-in regex");
        Settings {
            cpu_guest: true,
            stat_softirq: false,
            diskstats_device_exclude: Some(re(DISKSTATS_DEVICE_EXCLUDE)),
            diskstats_device_include: None,
            netdev_device_exclude: None,
            netdev_device_include: None,
            filesystem_mount_points_exclude: re(FILESYSTEM_MOUNT_POINTS_EXCLUDE),
            filesystem_fs_types_exclude: re(FILESYSTEM_FS_TYPES_EXCLUDE),
            containers_cgroup_include: re(containers::DEFAULT_CGROUP_INCLUDE),
            containers_max: containers::DEFAULT_MAX,
        }
    }
}

/// An include/exclude pair as node_exporter's device filters apply it:
/// include (if set) must match, exclude (if set) must not.
pub fn device_filtered(name: &str, include: Option<&Regex>, exclude: Option<&Regex>) -> bool {
    if let Some(inc) = include {
        if !inc.is_match(name) {
            return true;
        }
    }
    if let Some(exc) = exclude {
        if exc.is_match(name) {
            return true;
        }
    }
    false
}

type Build = fn(&Settings) -> Box<dyn Collector>;

/// A node_exporter collector name, whether upstream enables it by default on
/// Linux, and cairn's implementation if it has one yet.
pub struct Known {
    pub name: &'static str,
    pub default_enabled: bool,
    pub build: Option<Build>,
}

macro_rules! known {
    ($name:literal, $def:expr) => {
        Known {
            name: $name,
            default_enabled: $def,
            build: None,
        }
    };
    ($name:literal, $def:expr, $build:expr) => {
        Known {
            name: $name,
            default_enabled: $def,
            build: Some($build),
        }
    };
}

/// node_exporter's Linux collectors (upstream master), so every
/// `--collector.NAME` a node_exporter user knows parses here.
pub const KNOWN: &[Known] = &[
    known!("arp", true),
    known!("bcache", true),
    known!("bcachefs", true),
    known!("bonding", true),
    known!("btrfs", true),
    known!("buddyinfo", false),
    known!("cgroups", false),
    known!("conntrack", true),
    known!("containers", true, |s| Box::new(
        containers::Containers::new(s)
    )),
    known!("cpu", true, |s| Box::new(cpu::Cpu::new(s))),
    known!("cpu_vulnerabilities", false),
    known!("cpufreq", true),
    known!("diskstats", true, |s| Box::new(diskstats::Diskstats::new(
        s
    ))),
    known!("dmi", true),
    known!("dmmultipath", true),
    known!("drbd", false),
    known!("drm", false),
    known!("edac", true),
    known!("entropy", true),
    known!("ethtool", false),
    known!("fibrechannel", true),
    known!("filefd", true),
    known!("filesystem", true, |s| Box::new(
        filesystem::Filesystem::new(s)
    )),
    known!("hwmon", true),
    known!("infiniband", true),
    known!("interrupts", false),
    known!("ipvs", true),
    known!("kernel_hung", true),
    known!("ksmd", false),
    known!("lnstat", false),
    known!("loadavg", true, |_| Box::new(loadavg::Loadavg::new())),
    known!("logind", false),
    known!("mdadm", true),
    known!("meminfo", true, |_| Box::new(meminfo::Meminfo::new())),
    known!("meminfo_numa", false),
    known!("mountstats", false),
    known!("netclass", true),
    known!("netdev", true, |s| Box::new(netdev::Netdev::new(s))),
    known!("netstat", true),
    known!("network_route", false),
    known!("nfs", true),
    known!("nfsd", true),
    known!("ntp", false),
    known!("nvme", true),
    known!("os", true, |_| Box::new(os::Os::new())),
    known!("perf", false),
    known!("powersupplyclass", true),
    known!("pressure", true),
    known!("processes", false),
    known!("qdisc", false),
    known!("rapl", true),
    known!("runit", false),
    known!("schedstat", true),
    known!("selinux", true),
    known!("slabinfo", false),
    known!("sockstat", true),
    known!("softirqs", false),
    known!("softnet", true),
    known!("stat", true, |s| Box::new(stat::Stat::new(s))),
    known!("supervisord", false),
    known!("sysctl", false),
    known!("systemd", false),
    known!("tapestats", true),
    known!("tcpstat", false),
    known!("textfile", true),
    known!("thermal_zone", true),
    known!("time", true, |_| Box::new(time::Time::new())),
    known!("timex", true),
    known!("udp_queues", true),
    known!("uname", true, |_| Box::new(uname::Uname::new())),
    known!("vmstat", true),
    known!("watchdog", true),
    known!("wifi", false),
    known!("xfs", true),
    known!("zfs", true),
    known!("zoneinfo", false),
];

pub fn find(name: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_filters_compile_and_match_like_upstream() {
        let s = Settings::default();
        let dex = s.diskstats_device_exclude.as_ref().unwrap();
        for dev in ["sda1", "nvme0n1p2", "loop3", "ram0", "zram0", "vda1"] {
            assert!(dex.is_match(dev), "{dev} should be excluded");
        }
        for dev in ["sda", "nvme0n1", "vda", "mmcblk0", "dm-0"] {
            assert!(!dex.is_match(dev), "{dev} should be kept");
        }
        assert!(s.filesystem_mount_points_exclude.is_match("/proc/sys"));
        assert!(s
            .filesystem_mount_points_exclude
            .is_match("/run/credentials/x"));
        assert!(!s.filesystem_mount_points_exclude.is_match("/run"));
        assert!(!s.filesystem_mount_points_exclude.is_match("/"));
        assert!(s.filesystem_fs_types_exclude.is_match("cgroup2"));
        assert!(!s.filesystem_fs_types_exclude.is_match("ext4"));
    }

    #[test]
    fn registry_names_are_unique_and_sorted() {
        for w in KNOWN.windows(2) {
            assert!(w[0].name < w[1].name, "{} !< {}", w[0].name, w[1].name);
        }
    }

    #[test]
    fn device_filter_semantics() {
        let inc = Regex::new("^eth").unwrap();
        let exc = Regex::new("^eth1$").unwrap();
        assert!(!device_filtered("eth0", Some(&inc), Some(&exc)));
        assert!(device_filtered("eth1", Some(&inc), Some(&exc)));
        assert!(device_filtered("lo", Some(&inc), None));
        assert!(!device_filtered("lo", None, None));
    }
}

/// Helpers for collector unit tests: fixture roots and one-shot rendering.
#[cfg(test)]
pub mod testutil {
    use super::{CollectError, Collector, Context};
    use crate::metrics::{render_text, Emitter};
    use std::path::PathBuf;

    /// A `Context` whose roots all point into `tests/fixtures/<name>/`
    /// (`proc/`, `sys/`, `root/`, `udev/`).
    pub fn fixture_ctx(name: &str) -> Context {
        let base = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        Context {
            procfs: base.join("proc"),
            sysfs: base.join("sys"),
            rootfs: base.join("root"),
            udev_data: base.join("udev"),
        }
    }

    /// Runs one collection and renders it as sorted text.
    pub fn render(c: &mut dyn Collector, ctx: &Context) -> Result<String, CollectError> {
        let mut e = Emitter::new();
        c.update(ctx, &mut e)?;
        for f in e.families_mut() {
            f.sort_series();
        }
        let mut fams: Vec<_> = e.families().collect();
        fams.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        render_text(fams, &mut out);
        Ok(String::from_utf8(out).expect("utf8 exposition"))
    }
}
