//! `filesystem`: node_filesystem_* for every mount of the host, as
//! node_exporter 1.5.0 reports them.
//!
//! Owns: reading the mount table (`/proc/1/mounts`, falling back to
//! `/proc/self/mounts`), the mount-point / fs-type filters, statvfs(3) on
//! each mount (under the rootfs prefix), and the set of "stuck" mounts.
//!
//! Must never: fail the collector because one mount cannot be stat'ed (that
//! mount gets `device_error 1` and nothing else), or let a hung network
//! filesystem hang every scrape. statfs(2) on a dead NFS server can block
//! for minutes and cannot be interrupted, so, as upstream's stuck-mount
//! watcher does cheaply enough:
//! - network filesystems (`NETWORK_FS`) are stat'ed on a helper thread; if
//!   it has not answered within `MOUNT_TIMEOUT`, the mount reports
//!   `device_error 1` and is remembered as stuck: later collections skip it
//!   (again `device_error 1`) without starting another thread, until the
//!   hung call finally returns and the thread forgets it;
//! - local filesystems are stat'ed inline (a thread per local mount per
//!   scrape would cost more than the rare hung local disk it guards against;
//!   the framework's collection deadline still bounds the scrape).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use regex::Regex;

use super::{read_into, CollectError, Collector, Context, Opt, OptKind, Settings};
use crate::metrics::{Emitter, MetricType};

/// Upstream's `--collector.filesystem.mount-timeout` default.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(5);

/// Filesystem types whose statfs may block on a remote server.
fn is_network_fs(fstype: &str) -> bool {
    matches!(
        fstype,
        "nfs" | "nfs4" | "cifs" | "smb3" | "smbfs" | "ceph" | "9p" | "glusterfs" | "fuse"
    ) || fstype.starts_with("fuse.")
}

/// A byte range into one of the collector's buffers.
type Span = (usize, usize);

/// One line of the mount table: `device` and `fstype` index the raw file
/// buffer, `mountpoint` the decoded-and-stripped buffer.
#[derive(Clone, Copy)]
struct Mount {
    device: Span,
    mountpoint: Span,
    fstype: Span,
    readonly: bool,
}

/// statvfs results, already as upstream computes them.
#[derive(Clone, Copy)]
struct Stats {
    size: f64,
    free: f64,
    avail: f64,
    files: f64,
    files_free: f64,
}

fn stat(path: &Path) -> Option<Stats> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    // Upstream multiplies statfs' f_bsize (which glibc and musl copy into
    // statvfs' f_bsize), not f_frsize; the block counts are the same fields.
    let bsize = s.block_size() as f64;
    Some(Stats {
        size: s.blocks() as f64 * bsize,
        free: s.blocks_free() as f64 * bsize,
        avail: s.blocks_available() as f64 * bsize,
        files: s.files() as f64,
        files_free: s.files_free() as f64,
    })
}

/// Appends `raw` to `out` with the two fstab(5) escapes upstream decodes
/// (`\040` space, `\011` tab); other escapes stay as the kernel wrote them,
/// as in node_exporter 1.5.0.
fn decode_into(raw: &str, out: &mut String) {
    let mut rest = raw;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("\\040") {
            out.push(' ');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("\\011") {
            out.push('\t');
            rest = after;
        } else {
            out.push('\\');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
}

/// The rootfs prefix to strip from mount points ("" when rootfs is `/`).
fn rootfs_prefix(rootfs: &Path) -> &str {
    rootfs.to_str().unwrap_or("").trim_end_matches('/')
}

/// `mp` as seen on the host: without the rootfs prefix (upstream's
/// rootfsStripPrefix, but only at a path-component boundary).
fn strip_rootfs<'a>(mp: &'a str, prefix: &str) -> &'a str {
    if prefix.is_empty() {
        return mp;
    }
    match mp.strip_prefix(prefix) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => mp,
    }
}

pub const OPTIONS: &[Opt] = &[
    Opt {
        flag: "collector.filesystem.mount-points-exclude",
        kind: OptKind::Regex,
        default: r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)",
        help: "Regexp of mount points to exclude for filesystem collector.",
        aliases: &["collector.filesystem.ignored-mount-points"],
    },
    Opt {
        flag: "collector.filesystem.fs-types-exclude",
        kind: OptKind::Regex,
        default: r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$",
        help: "Regexp of filesystem types to exclude for filesystem collector.",
        aliases: &["collector.filesystem.ignored-fs-types"],
    },
];

pub struct Filesystem {
    mount_points_exclude: Option<Regex>,
    fs_types_exclude: Option<Regex>,
    buf: String,
    /// Mount points as labels: decoded and rootfs-stripped.
    decoded: String,
    scratch: String,
    mounts: Vec<Mount>,
    path: PathBuf,
    /// Mount points with a statfs helper thread still running (shared with
    /// those threads, which remove their entry when the call returns).
    stuck: Arc<Mutex<HashSet<String>>>,
}

impl Filesystem {
    pub fn new(settings: &Settings) -> Self {
        Filesystem {
            mount_points_exclude: settings.regex("collector.filesystem.mount-points-exclude"),
            fs_types_exclude: settings.regex("collector.filesystem.fs-types-exclude"),
            buf: String::with_capacity(4096),
            decoded: String::with_capacity(1024),
            scratch: String::new(),
            mounts: Vec::new(),
            path: PathBuf::new(),
            stuck: Arc::default(),
        }
    }

    /// Reads and parses the mount table into `mounts`.
    fn read_mounts(&mut self, ctx: &Context) -> Result<(), CollectError> {
        let path = ctx.proc_path("1/mounts");
        // /proc/1 is hidden under hidepid=; our own view is the fallback.
        // (Upstream falls back only when the file is missing; any failure
        // here is as good a reason.)
        let path = match read_into(&path, &mut self.buf) {
            Ok(()) => path,
            Err(_) => {
                let path = ctx.proc_path("self/mounts");
                read_into(&path, &mut self.buf)?;
                path
            }
        };
        let prefix = rootfs_prefix(&ctx.rootfs);
        self.mounts.clear();
        self.decoded.clear();
        let base = self.buf.as_ptr() as usize;
        let span = |s: &str| {
            let start = s.as_ptr() as usize - base;
            (start, start + s.len())
        };
        for line in self.buf.lines() {
            let mut f = line.split_ascii_whitespace();
            let (Some(device), Some(mp), Some(fstype), Some(options)) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                // Upstream fails on any line with fewer than 4 fields,
                // which also catches a truncated file.
                return Err(CollectError::parse(
                    &path,
                    format!("malformed mount point information: {line:?}"),
                ));
            };
            self.scratch.clear();
            decode_into(mp, &mut self.scratch);
            let start = self.decoded.len();
            self.decoded.push_str(strip_rootfs(&self.scratch, prefix));
            self.mounts.push(Mount {
                device: span(device),
                mountpoint: (start, self.decoded.len()),
                fstype: span(fstype),
                readonly: options.split(',').any(|o| o == "ro"),
            });
        }
        Ok(())
    }
}

/// What one mount will report.
enum Outcome {
    Ok(Stats),
    Error,
    /// Being stat'ed on a helper thread.
    Pending(mpsc::Receiver<Option<Stats>>),
}

impl Collector for Filesystem {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        self.read_mounts(ctx)?;
        let buf = &self.buf;
        let decoded = &self.decoded;
        let text = |s: Span| &buf[s.0..s.1];
        let mountpoint = |m: &Mount| &decoded[m.mountpoint.0..m.mountpoint.1];

        // Per collection, sized by this mount table: a mount can appear
        // several times (bind mounts, over-mounts) and upstream reports a
        // label set once, the first time it sees it.
        let mut seen: HashSet<(&str, &str, &str)> = HashSet::with_capacity(self.mounts.len());
        // Also per collection, and usually tiny: the mounts kept.
        let mut kept: Vec<(Mount, Outcome)> = Vec::new();
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        for m in &self.mounts {
            let (device, mp, fstype) = (text(m.device), mountpoint(m), text(m.fstype));
            let matches = |re: &Option<Regex>, s: &str| re.as_ref().is_some_and(|r| r.is_match(s));
            if matches(&self.mount_points_exclude, mp) || matches(&self.fs_types_exclude, fstype) {
                continue;
            }
            if !seen.insert((device, mp, fstype)) {
                continue;
            }
            let outcome = if is_network_fs(fstype) {
                spawn_stat(&self.stuck, ctx, mp)
            } else {
                self.path.as_mut_os_string().clear();
                self.path.push(&ctx.rootfs);
                self.path.push(mp.trim_start_matches('/'));
                stat(&self.path).map_or(Outcome::Error, Outcome::Ok)
            };
            kept.push((*m, outcome));
        }

        for (m, outcome) in kept {
            let stats = match outcome {
                Outcome::Ok(s) => Some(s),
                Outcome::Error => None,
                Outcome::Pending(rx) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    // Timed out: the thread keeps the mount marked stuck
                    // until its statfs returns. Disconnected: it died.
                    rx.recv_timeout(left).ok().flatten()
                }
            };
            let labels = |l: &mut crate::metrics::Labels<'_>| {
                l.label("device", text(m.device))
                    .label("fstype", text(m.fstype))
                    .label("mountpoint", mountpoint(&m));
            };
            out.family(
                "node_filesystem_device_error",
                "Whether an error occurred while getting statistics for the given device.",
                MetricType::Gauge,
            )
            .sample_with(if stats.is_some() { 0.0 } else { 1.0 }, labels);
            let Some(s) = stats else { continue };
            for (name, help, v) in [
                (
                    "node_filesystem_size_bytes",
                    "Filesystem size in bytes.",
                    s.size,
                ),
                (
                    "node_filesystem_free_bytes",
                    "Filesystem free space in bytes.",
                    s.free,
                ),
                (
                    "node_filesystem_avail_bytes",
                    "Filesystem space available to non-root users in bytes.",
                    s.avail,
                ),
                (
                    "node_filesystem_files",
                    "Filesystem total file nodes.",
                    s.files,
                ),
                (
                    "node_filesystem_files_free",
                    "Filesystem total free file nodes.",
                    s.files_free,
                ),
                (
                    "node_filesystem_readonly",
                    "Filesystem read-only status.",
                    if m.readonly { 1.0 } else { 0.0 },
                ),
            ] {
                out.family(name, help, MetricType::Gauge)
                    .sample_with(v, labels);
            }
        }
        Ok(())
    }
}

/// Starts statfs of `mp` on a helper thread, unless one is still running
/// for it from an earlier collection (then the mount is stuck: an error).
fn spawn_stat(stuck: &Arc<Mutex<HashSet<String>>>, ctx: &Context, mp: &str) -> Outcome {
    let mut set = stuck.lock().unwrap_or_else(PoisonError::into_inner);
    if set.contains(mp) {
        tracing::debug!(mountpoint = mp, "mount point is in an unresponsive state");
        return Outcome::Error;
    }
    // Owned copies for the thread: one small allocation per network mount
    // per collection.
    let key = mp.to_owned();
    let path = ctx.rootfs.join(mp.trim_start_matches('/'));
    set.insert(key.clone());
    drop(set);
    let (tx, rx) = mpsc::sync_channel(1);
    let shared = Arc::clone(stuck);
    let spawned = thread::Builder::new()
        .name("cairn-statfs".into())
        .spawn(move || {
            let res = stat(&path);
            // Forget the mount before answering, so the next collection
            // never sees a finished call as stuck.
            shared
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
            let _ = tx.send(res);
        });
    match spawned {
        Ok(_) => Outcome::Pending(rx),
        Err(_) => {
            stuck
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(mp);
            Outcome::Error
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn has(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }

    fn run(ctx: &Context) -> String {
        render(&mut Filesystem::new(&Settings::default()), ctx).unwrap()
    }

    #[test]
    fn reports_mounts_like_upstream() {
        let ctx = fixture_ctx("filesystem/basic");
        let text = run(&ctx);
        let root = r#"{device="/dev/sda1",fstype="ext4",mountpoint="/"}"#;
        let want = stat(&ctx.rootfs).unwrap();
        has(&text, &format!("node_filesystem_device_error{root} 0"));
        has(&text, &format!("node_filesystem_readonly{root} 0"));
        has(
            &text,
            &format!("node_filesystem_size_bytes{root} {}", want.size),
        );
        has(
            &text,
            &format!("node_filesystem_files{root} {}", want.files),
        );
        for f in ["free_bytes", "avail_bytes", "files_free"] {
            assert!(
                text.contains(&format!("node_filesystem_{f}{root} ")),
                "{text}"
            );
        }
        has(
            &text,
            "# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.",
        );
        has(
            &text,
            "# HELP node_filesystem_device_error Whether an error occurred while getting statistics for the given device.",
        );
        has(&text, "# TYPE node_filesystem_readonly gauge");

        // Duplicate label set: reported once, from the first line (ro).
        let data = r#"{device="/dev/sda2",fstype="ext4",mountpoint="/data"}"#;
        has(&text, &format!("node_filesystem_readonly{data} 1"));
        assert_eq!(
            text.matches(&format!("node_filesystem_readonly{data}"))
                .count(),
            1
        );

        // \040 decoded in the label, and the directory found for statfs.
        let sp = r#"{device="/dev/sda3",fstype="xfs",mountpoint="/with space"}"#;
        has(&text, &format!("node_filesystem_device_error{sp} 0"));
        has(&text, &format!("node_filesystem_readonly{sp} 0"));

        // statfs failure: device_error 1 and nothing else for that mount.
        let missing = r#"{device="/dev/sda4",fstype="ext4",mountpoint="/missing"}"#;
        has(&text, &format!("node_filesystem_device_error{missing} 1"));
        assert_eq!(text.matches("mountpoint=\"/missing\"").count(), 1, "{text}");

        // Network filesystems go through the helper thread.
        let nfs = r#"{device="server:/export",fstype="nfs4",mountpoint="/nfs"}"#;
        has(&text, &format!("node_filesystem_device_error{nfs} 0"));
        has(&text, &format!("node_filesystem_files{nfs} {}", want.files));
        let fuse = r#"{device="sshfs#me@host:",fstype="fuse.sshfs",mountpoint="/fusemissing"}"#;
        has(&text, &format!("node_filesystem_device_error{fuse} 1"));

        // /run is kept by upstream's default (only /run/credentials/.+ is not).
        assert!(text.contains(r#"mountpoint="/run"}"#), "{text}");
        for gone in ["/proc", "/run/credentials", "/sys/fs/cgroup", "/data/ovl"] {
            assert!(
                !text.contains(&format!("mountpoint=\"{gone}")),
                "{gone} should be excluded:\n{text}"
            );
        }
    }

    #[test]
    fn custom_filters_apply() {
        let ctx = fixture_ctx("filesystem/basic");
        let s = Settings::default()
            .with(
                "collector.filesystem.mount-points-exclude",
                "^/(data|run)($|/)",
            )
            .with("collector.filesystem.fs-types-exclude", "^(xfs|nfs4)$");
        let text = render(&mut Filesystem::new(&s), &ctx).unwrap();
        for gone in ["/data", "/run", "/with space", "/nfs"] {
            assert!(!text.contains(&format!("mountpoint=\"{gone}\"")), "{text}");
        }
        // The old defaults no longer apply: proc is back.
        assert!(text.contains(r#"mountpoint="/proc""#), "{text}");
    }

    #[test]
    fn stuck_network_mount_is_skipped_until_its_call_returns() {
        let ctx = fixture_ctx("filesystem/basic");
        let mut c = Filesystem::new(&Settings::default());
        // As if a statfs of /nfs from an earlier collection still hung.
        c.stuck.lock().unwrap().insert("/nfs".to_owned());
        let text = render(&mut c, &ctx).unwrap();
        let nfs = r#"{device="server:/export",fstype="nfs4",mountpoint="/nfs"}"#;
        has(&text, &format!("node_filesystem_device_error{nfs} 1"));
        assert!(
            !text.contains(&format!("node_filesystem_files{nfs}")),
            "{text}"
        );
        // The hung call returns: the thread forgets the mount.
        c.stuck.lock().unwrap().remove("/nfs");
        let text = render(&mut c, &ctx).unwrap();
        has(&text, &format!("node_filesystem_device_error{nfs} 0"));
        // Finished helper threads leave nothing behind.
        assert!(c.stuck.lock().unwrap().is_empty());
    }

    #[test]
    fn falls_back_to_self_mounts() {
        let ctx = fixture_ctx("filesystem/fallback");
        let text = run(&ctx);
        has(
            &text,
            r#"node_filesystem_device_error{device="/dev/vda",fstype="ext4",mountpoint="/"} 0"#,
        );
    }

    #[test]
    fn truncated_or_missing_mount_table_fails() {
        let mut c = Filesystem::new(&Settings::default());
        assert!(render(&mut c, &fixture_ctx("filesystem/truncated")).is_err());
        assert!(render(&mut c, &fixture_ctx("filesystem/does-not-exist")).is_err());
    }

    #[test]
    fn rootfs_prefix_is_stripped_from_mount_points() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("host");
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::create_dir_all(dir.path().join("proc/1")).unwrap();
        let r = root.to_str().unwrap();
        std::fs::write(
            dir.path().join("proc/1/mounts"),
            format!(
                "/dev/a {r} ext4 rw 0 0\n/dev/b {r}/data ext4 rw 0 0\n\
                 /dev/c {r}data ext4 rw 0 0\n/dev/d {r}/dev/shm tmpfs rw 0 0\n"
            ),
        )
        .unwrap();
        let ctx = Context {
            procfs: dir.path().join("proc"),
            sysfs: dir.path().join("sys"),
            rootfs: PathBuf::from(format!("{r}/")),
            udev_data: dir.path().join("udev"),
        };
        let text = run(&ctx);
        has(
            &text,
            r#"node_filesystem_device_error{device="/dev/a",fstype="ext4",mountpoint="/"} 0"#,
        );
        has(
            &text,
            r#"node_filesystem_device_error{device="/dev/b",fstype="ext4",mountpoint="/data"} 0"#,
        );
        // Not under the rootfs at a component boundary: left alone (and
        // then not found under the rootfs).
        has(
            &text,
            &format!(
                r#"node_filesystem_device_error{{device="/dev/c",fstype="ext4",mountpoint="{r}data"}} 1"#
            ),
        );
        // Filters see the host path: /dev/shm is excluded.
        assert!(!text.contains("/dev/d"), "{text}");
    }

    #[test]
    fn decodes_space_and_tab_only() {
        let mut s = String::new();
        decode_into(r"/a\040b\011c\134d\", &mut s);
        assert_eq!(s, "/a b\tc\\134d\\");
    }

    #[test]
    fn network_types() {
        for t in [
            "nfs",
            "nfs4",
            "cifs",
            "smb3",
            "fuse.sshfs",
            "ceph",
            "9p",
            "glusterfs",
        ] {
            assert!(is_network_fs(t), "{t}");
        }
        for t in ["ext4", "xfs", "tmpfs", "fuseblk", "btrfs"] {
            assert!(!is_network_fs(t), "{t}");
        }
    }
}
