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

pub mod arp;
pub mod bonding;
pub mod btrfs;
pub mod conntrack;
pub mod containers;
pub mod cpu;
pub mod cpufreq;
pub mod diskstats;
pub mod dmi;
pub mod edac;
pub mod entropy;
pub mod filefd;
pub mod filesystem;
pub mod hwmon;
pub mod interrupts;
pub mod kernel_hung;
pub mod loadavg;
pub mod mdadm;
pub mod meminfo;
pub mod netclass;
pub mod netdev;
pub mod netstat;
pub mod nvme;
pub mod options;
pub mod os;
pub mod powersupplyclass;
pub mod pressure;
pub mod processes;
pub mod rapl;
pub mod schedstat;
pub mod selinux;
pub mod sockstat;
pub mod softnet;
pub mod stat;
pub mod sysfs;
pub mod tcpstat;
pub mod textfile;
pub mod thermal_zone;
pub mod time;
pub mod timex;
pub mod udp_queues;
pub mod uname;
pub mod vmstat;
pub mod watchdog;
pub mod xfs;

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
    /// What node_exporter calls ErrNoData: the source does not exist on
    /// this host (no PSI, no watchdog). Reported as success 0, as 1.5.0
    /// does, but logged at debug: it is not an incident.
    #[error("no data: {0}")]
    NoData(String),
    #[error("{0}")]
    Other(String),
}

impl CollectError {
    /// The host lacks this source (no bonding driver, no PSI): worth a
    /// debug line, not a warning on every scrape.
    pub fn is_no_data(&self) -> bool {
        match self {
            CollectError::NoData(_) => true,
            CollectError::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        }
    }

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

/// Lists a directory whose absence means the host simply has none of these
/// devices (node_exporter's ErrNoData): `NoData` then, any other failure an
/// I/O error naming the path. Listing allocates one name per entry; device
/// lists are short and change (hot-plug), so they are listed every time.
pub fn list_devices(
    dir: &Path,
) -> Result<impl Iterator<Item = Result<std::fs::DirEntry, CollectError>> + '_, CollectError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CollectError::NoData(format!(
                "{} does not exist",
                dir.display()
            )))
        }
        Err(source) => {
            return Err(CollectError::Io {
                path: dir.to_owned(),
                source,
            })
        }
    };
    Ok(entries.map(move |e| {
        e.map_err(|source| CollectError::Io {
            path: dir.to_owned(),
            source,
        })
    }))
}

/// One node_exporter collector.
pub trait Collector: Send {
    /// Writes this collection's samples into `out` (already cleared).
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError>;

    /// Whether this collector's metric names come from outside cairn (the
    /// textfile collector): then the gatherer gives every name that another
    /// collector or cairn itself produced in the same collection to that
    /// owner, through `drop_taken`.
    fn names_from_outside(&self) -> bool {
        false
    }

    /// Drops this collection's families named in `taken` (names another
    /// collector or cairn produced too), counting and reporting them.
    /// Called after `update` only when `names_from_outside`.
    fn drop_taken(&mut self, _out: &mut Emitter, _taken: &[String]) {}
}

pub use options::{Opt, OptKind, Settings};

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
/// Linux, cairn's implementation if it has one yet, and its options.
pub struct Known {
    pub name: &'static str,
    pub default_enabled: bool,
    pub build: Option<Build>,
    pub options: &'static [Opt],
}

macro_rules! known {
    ($name:literal, $def:expr) => {
        Known {
            name: $name,
            default_enabled: $def,
            build: None,
            options: &[],
        }
    };
    ($name:literal, $def:expr, $build:expr) => {
        Known {
            name: $name,
            default_enabled: $def,
            build: Some($build),
            options: &[],
        }
    };
    ($name:literal, $def:expr, $build:expr, $opts:expr) => {
        Known {
            name: $name,
            default_enabled: $def,
            build: Some($build),
            options: $opts,
        }
    };
}

/// node_exporter's Linux collectors (upstream master), so every
/// `--collector.NAME` a node_exporter user knows parses here.
pub const KNOWN: &[Known] = &[
    known!("arp", true, |s| Box::new(arp::Arp::new(s)), arp::OPTIONS),
    known!("bcache", true),
    known!("bcachefs", true),
    known!(
        "bonding",
        true,
        |s| Box::new(bonding::Bonding::new(s)),
        bonding::OPTIONS
    ),
    known!(
        "btrfs",
        true,
        |s| Box::new(btrfs::Btrfs::new(s)),
        btrfs::OPTIONS
    ),
    known!("buddyinfo", false),
    known!("cgroups", false),
    known!(
        "conntrack",
        true,
        |s| Box::new(conntrack::Conntrack::new(s)),
        conntrack::OPTIONS
    ),
    known!(
        "containers",
        true,
        |s| Box::new(containers::Containers::new(s)),
        containers::OPTIONS
    ),
    known!("cpu", true, |s| Box::new(cpu::Cpu::new(s)), cpu::OPTIONS),
    known!("cpu_vulnerabilities", false),
    known!(
        "cpufreq",
        true,
        |s| Box::new(cpufreq::Cpufreq::new(s)),
        cpufreq::OPTIONS
    ),
    known!(
        "diskstats",
        true,
        |s| Box::new(diskstats::Diskstats::new(s)),
        diskstats::OPTIONS
    ),
    known!("dmi", true, |s| Box::new(dmi::Dmi::new(s)), dmi::OPTIONS),
    known!("dmmultipath", true),
    known!("drbd", false),
    known!("drm", false),
    known!(
        "edac",
        true,
        |s| Box::new(edac::Edac::new(s)),
        edac::OPTIONS
    ),
    known!(
        "entropy",
        true,
        |s| Box::new(entropy::Entropy::new(s)),
        entropy::OPTIONS
    ),
    known!("ethtool", false),
    known!("fibrechannel", true),
    known!(
        "filefd",
        true,
        |s| Box::new(filefd::Filefd::new(s)),
        filefd::OPTIONS
    ),
    known!(
        "filesystem",
        true,
        |s| Box::new(filesystem::Filesystem::new(s)),
        filesystem::OPTIONS
    ),
    known!(
        "hwmon",
        true,
        |s| Box::new(hwmon::Hwmon::new(s)),
        hwmon::OPTIONS
    ),
    known!("infiniband", true),
    known!(
        "interrupts",
        false,
        |s| Box::new(interrupts::Interrupts::new(s)),
        interrupts::OPTIONS
    ),
    known!("ipvs", true),
    known!(
        "kernel_hung",
        true,
        |s| Box::new(kernel_hung::KernelHung::new(s)),
        kernel_hung::OPTIONS
    ),
    known!("ksmd", false),
    known!("lnstat", false),
    known!("loadavg", true, |_| Box::new(loadavg::Loadavg::new())),
    known!("logind", false),
    known!(
        "mdadm",
        true,
        |s| Box::new(mdadm::Mdadm::new(s)),
        mdadm::OPTIONS
    ),
    known!("meminfo", true, |_| Box::new(meminfo::Meminfo::new())),
    known!("meminfo_numa", false),
    known!("mountstats", false),
    known!(
        "netclass",
        true,
        |s| Box::new(netclass::Netclass::new(s)),
        netclass::OPTIONS
    ),
    known!(
        "netdev",
        true,
        |s| Box::new(netdev::Netdev::new(s)),
        netdev::OPTIONS
    ),
    known!(
        "netstat",
        true,
        |s| Box::new(netstat::Netstat::new(s)),
        netstat::OPTIONS
    ),
    known!("network_route", false),
    known!("nfs", true),
    known!("nfsd", true),
    known!("ntp", false),
    known!(
        "nvme",
        true,
        |s| Box::new(nvme::Nvme::new(s)),
        nvme::OPTIONS
    ),
    known!("os", true, |_| Box::new(os::Os::new())),
    known!("perf", false),
    known!(
        "powersupplyclass",
        true,
        |s| Box::new(powersupplyclass::Powersupplyclass::new(s)),
        powersupplyclass::OPTIONS
    ),
    known!(
        "pressure",
        true,
        |s| Box::new(pressure::Pressure::new(s)),
        pressure::OPTIONS
    ),
    known!(
        "processes",
        false,
        |s| Box::new(processes::Processes::new(s)),
        processes::OPTIONS
    ),
    known!("qdisc", false),
    known!(
        "rapl",
        true,
        |s| Box::new(rapl::Rapl::new(s)),
        rapl::OPTIONS
    ),
    known!("runit", false),
    known!(
        "schedstat",
        true,
        |s| Box::new(schedstat::Schedstat::new(s)),
        schedstat::OPTIONS
    ),
    known!(
        "selinux",
        true,
        |s| Box::new(selinux::Selinux::new(s)),
        selinux::OPTIONS
    ),
    known!("slabinfo", false),
    known!(
        "sockstat",
        true,
        |s| Box::new(sockstat::Sockstat::new(s)),
        sockstat::OPTIONS
    ),
    known!("softirqs", false),
    known!(
        "softnet",
        true,
        |s| Box::new(softnet::Softnet::new(s)),
        softnet::OPTIONS
    ),
    known!(
        "stat",
        true,
        |s| Box::new(stat::Stat::new(s)),
        stat::OPTIONS
    ),
    known!("supervisord", false),
    known!("sysctl", false),
    known!("systemd", false),
    known!("tapestats", true),
    known!(
        "tcpstat",
        false,
        |s| Box::new(tcpstat::Tcpstat::new(s)),
        tcpstat::OPTIONS
    ),
    known!(
        "textfile",
        true,
        |s| Box::new(textfile::Textfile::new(s)),
        textfile::OPTIONS
    ),
    known!(
        "thermal_zone",
        true,
        |s| Box::new(thermal_zone::ThermalZone::new(s)),
        thermal_zone::OPTIONS
    ),
    known!("time", true, |_| Box::new(time::Time::new())),
    known!(
        "timex",
        true,
        |s| Box::new(timex::Timex::new(s)),
        timex::OPTIONS
    ),
    known!(
        "udp_queues",
        true,
        |s| Box::new(udp_queues::UdpQueues::new(s)),
        udp_queues::OPTIONS
    ),
    known!("uname", true, |_| Box::new(uname::Uname::new())),
    known!(
        "vmstat",
        true,
        |s| Box::new(vmstat::Vmstat::new(s)),
        vmstat::OPTIONS
    ),
    known!(
        "watchdog",
        true,
        |s| Box::new(watchdog::Watchdog::new(s)),
        watchdog::OPTIONS
    ),
    known!("wifi", false),
    known!("xfs", true, |s| Box::new(xfs::Xfs::new(s)), xfs::OPTIONS),
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
