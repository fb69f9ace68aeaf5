//! `btrfs`: per-filesystem Btrfs allocation and device metrics from
//! /sys/fs/btrfs/<uuid>/, plus per-device size, unused bytes and error
//! counters from the BTRFS_IOC_{FS_INFO,DEV_INFO,GET_DEV_STATS} ioctls on
//! each mounted Btrfs filesystem, as node_exporter 1.5.0 reports them
//! (`node_btrfs_*`). A filesystem the ioctls cannot reach (not mounted in
//! our view, or a mount point node_exporter cannot open with O_NOATIME, as
//! when not running as its owner) gets sysfs' device sizes instead.
//!
//! The sysfs reading is procfs' btrfs reader ported step by step, including
//! its error bookkeeping: an error is remembered and later *overwritten* by
//! each allocation subdirectory's outcome, so in the end only a failure
//! under allocation/system fails the collector, and an earlier failure just
//! zeroes the values read after it. That is odd, but it is what decides
//! success and values in node_exporter, so it is kept.
//!
//! Must never: write to the filesystem (the ioctls used only read; stats
//! are never reset), follow a mount it cannot open read-only, or report a
//! host without Btrfs as an error.

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::{read_into, read_optional, CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

/// Linux sectors are 512 bytes in sysfs whatever the device's block size.
const SECTOR_SIZE: u64 = 512;
const BLOCK_GROUP_TYPES: [&str; 3] = ["data", "metadata", "system"];
const ERROR_TYPES: [&str; 5] = ["write", "read", "flush", "corruption", "generation"];

struct Layout {
    mode: String,
    total: u64,
    used: u64,
    ratio: f64,
}

#[derive(Default)]
struct Allocation {
    reserved: u64,
    layouts: Vec<Layout>,
}

#[derive(Default)]
struct FsStats {
    uuid: String,
    label: String,
    global_rsv_size: u64,
    alloc: [Allocation; 3],
    /// (name, bytes), sorted by name.
    devices: Vec<(String, u64)>,
}

/// procfs' btrfs `reader`: remembers the last error; value reads after an
/// error give 0.
struct Reader<'a> {
    path: &'a Path,
    err: Option<io::Error>,
    dev_count: usize,
    buf: &'a mut String,
}

impl Reader<'_> {
    /// Reads `rel` into the buffer; a missing file reads as empty, other
    /// errors are kept.
    fn read(&mut self, rel: &str) {
        let p = self.path.join(rel);
        match read_optional(&p, self.buf) {
            Ok(_) => {}
            Err(e) => {
                self.buf.clear();
                self.err = Some(match e {
                    CollectError::Io { source, .. } => source,
                    e => io::Error::other(e.to_string()),
                });
            }
        }
    }

    fn read_file(&mut self, rel: &str) -> String {
        self.read(rel);
        self.buf.trim().to_owned()
    }

    fn read_value(&mut self, rel: &str) -> u64 {
        self.read(rel);
        if self.err.is_some() {
            return 0;
        }
        self.buf.trim().parse().unwrap_or(0)
    }

    /// Sorted entry names (dirs only if asked), as Go's ReadDir.
    fn list(&mut self, rel: &str, dirs_only: bool) -> Vec<String> {
        let p = self.path.join(rel);
        let entries = match std::fs::read_dir(&p) {
            Ok(e) => e,
            Err(e) => {
                self.err = Some(e);
                return Vec::new();
            }
        };
        let mut names = Vec::new();
        for e in entries {
            let e = match e {
                Ok(e) => e,
                Err(err) => {
                    self.err = Some(err);
                    return Vec::new();
                }
            };
            // Lstat semantics: a symlink to a directory is not a layout.
            if dirs_only && !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            if let Ok(n) = e.file_name().into_string() {
                names.push(n);
            }
        }
        names.sort_unstable();
        names
    }

    fn ratio(&self, mode: &str) -> f64 {
        let n = self.dev_count as f64;
        match mode {
            "single" | "raid0" => 1.0,
            "dup" | "raid1" | "raid10" => 2.0,
            "raid5" => n / (n - 1.0),
            "raid6" => n / (n - 2.0),
            _ => 0.0,
        }
    }
}

/// One filesystem directory, read as procfs' readFilesystemStats.
fn read_fs(dir: &Path, buf: &mut String) -> Result<FsStats, io::Error> {
    let mut r = Reader {
        path: dir,
        err: None,
        dev_count: 0,
        buf,
    };
    let mut s = FsStats::default();
    for name in r.list("devices", false) {
        let size = r.read_value(&format!("devices/{name}/size"));
        s.devices.push((name, SECTOR_SIZE.wrapping_mul(size)));
    }
    r.dev_count = s.devices.len();
    s.label = r.read_file("label");
    s.uuid = r.read_file("metadata_uuid");
    r.list("features", false);
    // clone_alignment, nodesize, quota_override, sectorsize: read (their
    // errors count) but not exported.
    for f in [
        "clone_alignment",
        "nodesize",
        "quota_override",
        "sectorsize",
    ] {
        r.read_value(f);
    }
    r.read_value("allocation/global_rsv_reserved");
    s.global_rsv_size = r.read_value("allocation/global_rsv_size");
    for (i, t) in BLOCK_GROUP_TYPES.iter().enumerate() {
        let sub = dir.join("allocation").join(t);
        let mut sr = Reader {
            path: &sub,
            err: None,
            dev_count: r.dev_count,
            buf: &mut *r.buf,
        };
        let a = &mut s.alloc[i];
        for f in ["bytes_may_use", "bytes_pinned", "bytes_readonly"] {
            sr.read_value(f);
        }
        a.reserved = sr.read_value("bytes_reserved");
        for f in [
            "bytes_used",
            "disk_used",
            "disk_total",
            "flags",
            "total_bytes",
            "total_bytes_pinned",
        ] {
            sr.read_value(f);
        }
        for mode in sr.list("", true) {
            let total = sr.read_value(&format!("{mode}/total_bytes"));
            let used = sr.read_value(&format!("{mode}/used_bytes"));
            let ratio = sr.ratio(&mode);
            a.layouts.push(Layout {
                mode,
                total,
                used,
                ratio,
            });
        }
        // The sub-reader's outcome replaces the parent's error (procfs).
        r.err = sr.err.take();
    }
    match r.err {
        Some(e) => Err(e),
        None => Ok(s),
    }
}

/// One device as the ioctls report it.
struct IoctlDev {
    name: String,
    uuid: String,
    total_bytes: u64,
    bytes_used: u64,
    errors: [u64; 5],
}

struct IoctlFs {
    /// The filesystem id in lower-case hex without dashes.
    fsid: String,
    devices: Vec<IoctlDev>,
}

mod ioctl {
    //! The three read-only Btrfs ioctls, with the kernel's struct layouts.

    use std::io;
    use std::os::unix::io::RawFd;

    const MAGIC: u64 = 0x94;

    const fn ior(nr: u64, size: u64) -> u64 {
        (2 << 30) | (size << 16) | (MAGIC << 8) | nr
    }
    const fn iowr(nr: u64, size: u64) -> u64 {
        (3 << 30) | (size << 16) | (MAGIC << 8) | nr
    }

    /// struct btrfs_ioctl_fs_info_args (1 KiB).
    #[repr(C)]
    pub struct FsInfo {
        pub max_id: u64,
        pub num_devices: u64,
        pub fsid: [u8; 16],
        _rest: [u8; 1024 - 32],
    }

    /// struct btrfs_ioctl_dev_info_args (4 KiB).
    #[repr(C)]
    pub struct DevInfo {
        pub devid: u64,
        pub uuid: [u8; 16],
        pub bytes_used: u64,
        pub total_bytes: u64,
        _rest: [u64; 379],
        pub path: [u8; 1024],
    }

    /// struct btrfs_ioctl_get_dev_stats (1 KiB + 8).
    #[repr(C)]
    pub struct DevStats {
        pub devid: u64,
        pub nr_items: u64,
        pub flags: u64,
        pub values: [u64; 5],
        _rest: [u64; 121],
    }

    const FS_INFO: u64 = ior(31, std::mem::size_of::<FsInfo>() as u64);
    const DEV_INFO: u64 = iowr(30, std::mem::size_of::<DevInfo>() as u64);
    const GET_DEV_STATS: u64 = iowr(52, std::mem::size_of::<DevStats>() as u64);

    fn call<T>(fd: RawFd, req: u64, arg: &mut T) -> io::Result<()> {
        // SAFETY: `arg` is a #[repr(C)] struct of exactly the size encoded
        // in `req`, valid for reads and writes for the whole call.
        let rc = unsafe { libc::ioctl(fd, req as _, arg as *mut T) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    pub fn fs_info(fd: RawFd) -> io::Result<Box<FsInfo>> {
        // SAFETY: all-zero bytes are a valid value of this plain struct.
        let mut a: Box<FsInfo> = Box::new(unsafe { std::mem::zeroed() });
        call(fd, FS_INFO, &mut *a)?;
        Ok(a)
    }

    pub fn dev_info(fd: RawFd, devid: u64) -> io::Result<Box<DevInfo>> {
        // SAFETY: as above.
        let mut a: Box<DevInfo> = Box::new(unsafe { std::mem::zeroed() });
        a.devid = devid;
        call(fd, DEV_INFO, &mut *a)?;
        Ok(a)
    }

    /// Reads (never resets: flags stay 0) the five error counters.
    pub fn dev_stats(fd: RawFd, devid: u64) -> io::Result<[u64; 5]> {
        // SAFETY: as above.
        let mut a: Box<DevStats> = Box::new(unsafe { std::mem::zeroed() });
        a.devid = devid;
        a.nr_items = 5;
        call(fd, GET_DEV_STATS, &mut *a)?;
        Ok(a.values)
    }

    #[cfg(test)]
    #[test]
    fn struct_sizes_match_the_kernel() {
        assert_eq!(std::mem::size_of::<FsInfo>(), 1024);
        assert_eq!(std::mem::size_of::<DevInfo>(), 4096);
        assert_eq!(std::mem::size_of::<DevStats>(), 1032);
        assert_eq!(FS_INFO, 0x8400_941f);
        assert_eq!(DEV_INFO, 0xd000_941e);
        assert_eq!(GET_DEV_STATS, 0xc408_9434);
    }
}

const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;
/// A subvolume's root directory always has this inode number.
const FIRST_FREE_OBJECTID: u64 = 256;

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The dashed form dennwc/btrfs prints device UUIDs in (`<zero>` for none).
fn dashed_uuid(u: &[u8; 16]) -> String {
    if u.iter().all(|&b| b == 0) {
        return "<zero>".to_owned();
    }
    format!(
        "{}-{}-{}-{}-{}",
        hex(&u[..4]),
        hex(&u[4..6]),
        hex(&u[6..8]),
        hex(&u[8..10]),
        hex(&u[10..])
    )
}

/// dennwc/btrfs' Open(path, readOnly=true): a subvolume root on Btrfs,
/// opened with O_NOATIME (which only the owner or CAP_FOWNER may use).
fn open_btrfs(path: &Path) -> io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)?;
    // SAFETY: statfs is plain data; fstatfs only writes into it.
    let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: the fd is open for the duration of the call.
    if unsafe { libc::fstatfs(f.as_raw_fd(), &mut sfs) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    let magic = sfs.f_type as i64;
    if magic != BTRFS_SUPER_MAGIC || f.metadata()?.ino() != FIRST_FREE_OBJECTID {
        return Err(io::Error::other("not a btrfs subvolume"));
    }
    Ok(f)
}

fn ioctl_devices(f: &File) -> io::Result<(String, Vec<IoctlDev>)> {
    let fd = f.as_raw_fd();
    let info = ioctl::fs_info(fd)?;
    let fsid = hex(&info.fsid);
    let mut devices = Vec::with_capacity(info.num_devices.min(64) as usize);
    for id in 0..=info.max_id {
        let dev = match ioctl::dev_info(fd, id) {
            Ok(d) => d,
            // Device ids are neither contiguous nor starting at 0.
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => continue,
            Err(e) => return Err(e),
        };
        let errors = ioctl::dev_stats(fd, id)?;
        let path_len = dev.path.iter().position(|&b| b == 0).unwrap_or(1024);
        let path = String::from_utf8_lossy(&dev.path[..path_len]);
        // Go's path.Split: what follows the last slash.
        let name = path.rsplit('/').next().unwrap_or("").to_owned();
        devices.push(IoctlDev {
            name,
            uuid: dashed_uuid(&dev.uuid),
            total_bytes: dev.total_bytes,
            bytes_used: dev.bytes_used,
            errors,
        });
        if devices.len() as u64 == info.num_devices {
            break;
        }
    }
    Ok((fsid, devices))
}

/// The fstab(5) escapes node_exporter decodes in mount points.
fn decode_mount_point(raw: &str) -> String {
    raw.replace("\\040", " ").replace("\\011", "\t")
}

pub struct Btrfs {
    buf: String,
    mounts: String,
    fs: Vec<FsStats>,
    ioctl: Vec<IoctlFs>,
}

impl Btrfs {
    pub fn new(_settings: &Settings) -> Self {
        Btrfs {
            buf: String::with_capacity(256),
            mounts: String::with_capacity(4096),
            fs: Vec::new(),
            ioctl: Vec::new(),
        }
    }

    /// node_exporter's getIoctlStats: every Btrfs mount, once per device
    /// and once per filesystem. Failures only mean "use sysfs".
    fn read_ioctl(&mut self, ctx: &Context) {
        self.ioctl.clear();
        let read = read_into(&ctx.proc_path("1/mounts"), &mut self.mounts).or_else(|e| match e {
            CollectError::Io { ref source, .. } if source.kind() == io::ErrorKind::NotFound => {
                read_into(&ctx.proc_path("mounts"), &mut self.mounts)
            }
            e => Err(e),
        });
        if let Err(e) = read {
            tracing::debug!(error = %e, "btrfs: cannot read the mount table; device stats from sysfs");
            return;
        }
        let rootfs = ctx.rootfs.to_str().unwrap_or("/").trim_end_matches('/');
        let mut done_devices: Vec<&str> = Vec::new();
        for line in self.mounts.lines() {
            let mut f = line.split_ascii_whitespace();
            let (Some(device), Some(mp), Some(fstype), Some(_)) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                // node_exporter's mount parser rejects the whole table.
                tracing::debug!(line, "btrfs: malformed mount table");
                self.ioctl.clear();
                return;
            };
            if fstype != "btrfs" || done_devices.contains(&device) {
                continue;
            }
            let mp = decode_mount_point(mp);
            let host_mp = match mp.strip_prefix(rootfs) {
                Some(rest) if !rootfs.is_empty() && (rest.is_empty() || rest.starts_with('/')) => {
                    if rest.is_empty() {
                        "/"
                    } else {
                        rest
                    }
                }
                _ => mp.as_str(),
            };
            let path = ctx.root_path(host_mp);
            let file = match open_btrfs(&path) {
                Ok(f) => f,
                Err(e) => {
                    tracing::debug!(mount_point = %path.display(), error = %e, "btrfs: cannot inspect mount point");
                    continue;
                }
            };
            match ioctl_devices(&file) {
                Ok((fsid, devices)) => {
                    if self.ioctl.iter().any(|x| x.fsid == fsid) {
                        continue;
                    }
                    done_devices.push(device);
                    self.ioctl.push(IoctlFs { fsid, devices });
                }
                Err(e) => {
                    tracing::debug!(mount_point = %path.display(), error = %e, "btrfs: device stats ioctl failed");
                }
            }
        }
    }
}

impl Collector for Btrfs {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        self.fs.clear();
        let root = ctx.sys_path("fs/btrfs");
        // Without the module there is no directory, and nothing to report.
        let Ok(entries) = std::fs::read_dir(&root) else {
            return Ok(());
        };
        // Per-collection allocation: filesystem names and their stats are
        // few and can change with every mount.
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.contains('-'))
            .collect();
        names.sort_unstable();
        for name in &names {
            let dir: PathBuf = root.join(name);
            let mut s = read_fs(&dir, &mut self.buf).map_err(|source| CollectError::Io {
                path: dir.clone(),
                source,
            })?;
            if s.uuid.is_empty() {
                s.uuid.clone_from(name);
            }
            self.fs.push(s);
        }
        if self.fs.is_empty() {
            return Ok(());
        }
        self.read_ioctl(ctx);
        self.emit(out);
        Ok(())
    }
}

impl Btrfs {
    fn emit(&self, out: &mut Emitter) {
        let ioctl_of = |s: &FsStats| {
            let id: String = s.uuid.chars().filter(|&c| c != '-').collect();
            self.ioctl.iter().find(|x| x.fsid == id)
        };
        let mut f = out.family(
            "node_btrfs_info",
            "Filesystem information",
            MetricType::Gauge,
        );
        for s in &self.fs {
            f.sample(&[("label", &s.label), ("uuid", &s.uuid)], 1.0);
        }
        let mut f = out.family(
            "node_btrfs_global_rsv_size_bytes",
            "Size of global reserve.",
            MetricType::Gauge,
        );
        for s in &self.fs {
            f.sample(&[("uuid", &s.uuid)], s.global_rsv_size as f64);
        }
        let mut f = out.family(
            "node_btrfs_reserved_bytes",
            "Amount of space reserved for a data type",
            MetricType::Gauge,
        );
        for s in &self.fs {
            for (t, a) in BLOCK_GROUP_TYPES.iter().zip(&s.alloc) {
                f.sample(
                    &[("block_group_type", t), ("uuid", &s.uuid)],
                    a.reserved as f64,
                );
            }
        }
        type Pick = fn(&Layout) -> f64;
        let layouts: [(&str, &str, Pick); 3] = [
            (
                "node_btrfs_used_bytes",
                "Amount of used space by a layout/data type",
                |l| l.used as f64,
            ),
            (
                "node_btrfs_size_bytes",
                "Amount of space allocated for a layout/data type",
                |l| l.total as f64,
            ),
            (
                "node_btrfs_allocation_ratio",
                "Data allocation ratio for a layout/data type",
                |l| l.ratio,
            ),
        ];
        for (name, help, pick) in layouts {
            let mut f = out.family(name, help, MetricType::Gauge);
            for s in &self.fs {
                for (t, a) in BLOCK_GROUP_TYPES.iter().zip(&s.alloc) {
                    for l in &a.layouts {
                        f.sample(
                            &[
                                ("block_group_type", t),
                                ("mode", &l.mode),
                                ("uuid", &s.uuid),
                            ],
                            pick(l),
                        );
                    }
                }
            }
        }
        let mut f = out.family(
            "node_btrfs_device_size_bytes",
            "Size of a device that is part of the filesystem.",
            MetricType::Gauge,
        );
        for s in &self.fs {
            match ioctl_of(s) {
                None => {
                    for (dev, size) in &s.devices {
                        f.sample(&[("device", dev), ("uuid", &s.uuid)], *size as f64);
                    }
                }
                Some(x) => {
                    for d in &x.devices {
                        f.sample(
                            &[
                                ("btrfs_dev_uuid", &d.uuid),
                                ("device", &d.name),
                                ("uuid", &s.uuid),
                            ],
                            d.total_bytes as f64,
                        );
                    }
                }
            }
        }
        let mut f = out.family(
            "node_btrfs_device_unused_bytes",
            "Unused bytes unused on a device that is part of the filesystem.",
            MetricType::Gauge,
        );
        for s in &self.fs {
            for d in ioctl_of(s).iter().flat_map(|x| &x.devices) {
                f.sample(
                    &[
                        ("btrfs_dev_uuid", &d.uuid),
                        ("device", &d.name),
                        ("uuid", &s.uuid),
                    ],
                    d.total_bytes.wrapping_sub(d.bytes_used) as f64,
                );
            }
        }
        let mut f = out.family(
            "node_btrfs_device_errors_total",
            "Errors reported for the device",
            MetricType::Counter,
        );
        for s in &self.fs {
            for d in ioctl_of(s).iter().flat_map(|x| &x.devices) {
                for (t, v) in ERROR_TYPES.iter().zip(d.errors) {
                    f.sample(
                        &[
                            ("btrfs_dev_uuid", &d.uuid),
                            ("device", &d.name),
                            ("type", t),
                            ("uuid", &s.uuid),
                        ],
                        v as f64,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn btrfs() -> Btrfs {
        Btrfs::new(&Settings::default())
    }

    #[test]
    fn two_filesystems_from_sysfs_as_node_exporter() {
        // node_exporter 1.5.0's output for this fixture (its one btrfs mount
        // does not exist, so device sizes come from sysfs). The second
        // filesystem is raid5/raid6/raid1c3 over three devices, with an
        // empty label, a metadata_uuid and an unparsable value (0).
        let want = include_str!("../../tests/fixtures/btrfs/normal/expected.prom");
        let text = render(&mut btrfs(), &fixture_ctx("btrfs/normal")).unwrap();
        assert_eq!(text, want);
    }

    #[test]
    fn no_btrfs_module_or_no_filesystem_is_success() {
        for case in ["btrfs/none", "btrfs/features_only"] {
            let text = render(&mut btrfs(), &fixture_ctx(case)).unwrap();
            assert_eq!(text, "", "{case}");
        }
    }

    #[test]
    fn missing_devices_dir_zeroes_later_values_but_succeeds() {
        let text = render(&mut btrfs(), &fixture_ctx("btrfs/no_devices")).unwrap();
        assert!(!text.contains("node_btrfs_device_size_bytes"), "{text}");
        assert!(
            text.contains("node_btrfs_global_rsv_size_bytes{uuid=\"0abb23a9-579b-43e6-ad30-227ef47fcb9d\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("node_btrfs_reserved_bytes{block_group_type=\"data\",uuid=\"0abb23a9-579b-43e6-ad30-227ef47fcb9d\"} 4096\n"), "{text}");
    }

    #[test]
    fn missing_allocation_system_fails_the_collector() {
        assert!(render(&mut btrfs(), &fixture_ctx("btrfs/no_system")).is_err());
    }

    #[test]
    fn uuid_formats() {
        let u = [
            0x0a, 0xbb, 0x23, 0xa9, 0x57, 0x9b, 0x43, 0xe6, 0xad, 0x30, 0x22, 0x7e, 0xf4, 0x7f,
            0xcb, 0x9d,
        ];
        assert_eq!(dashed_uuid(&u), "0abb23a9-579b-43e6-ad30-227ef47fcb9d");
        assert_eq!(hex(&u), "0abb23a9579b43e6ad30227ef47fcb9d");
        assert_eq!(dashed_uuid(&[0; 16]), "<zero>");
    }
}
