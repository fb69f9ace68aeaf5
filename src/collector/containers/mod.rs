//! `containers`: per-cgroup metrics with cAdvisor's names, types, labels,
//! HELP texts and units, on cgroup v1, v2 and hybrid hosts.
//!
//! Owns: finding containers (every cgroup whose path, relative to its
//! hierarchy root, matches `--collector.containers.cgroup-include`), bounding
//! them (`--collector.containers.max`; the excess is counted in
//! `cairn_containers_dropped`, never emitted), reading their controller files
//! and emitting `container_*` series labelled `id` (the cgroup path), `image`
//! and `name`. One walk of each mounted tree per collection; a container
//! whose cgroup is gone is forgotten at the next collection.
//!
//! Must never: write to a cgroup, talk to a container runtime, follow the
//! paths it is given anywhere but under the Context roots, or let one
//! vanishing cgroup fail the collection (cgroups come and go while we read).
//!
//! Where we knowingly differ from cAdvisor (kubelet's `/metrics/cadvisor`):
//! - `container_cpu_usage_seconds_total` has `cpu="total"` only, as with
//!   cAdvisor's per-cpu metrics disabled (kubelet's setting).
//! - cgroup v2 `container_memory_failcnt` is `memory.events`' `max` count
//!   (times the limit was hit); cAdvisor reports a constant 0 there.
//! - `container_oom_events_total` counts the cgroup's `oom_kill` (v1
//!   `memory.oom_control`, v2 `memory.events`); cAdvisor counts OOM kills it
//!   sees in the kernel log.
//! - v1 block I/O comes from `blkio.throttle.*_recursive` (every bio,
//!   whatever the scheduler), falling back to BFQ's files; runc prefers BFQ.
//! - Pressure series appear only where the kernel has the files (v2, and in
//!   hybrid mode where the same cgroup exists in the v2 tree).
//! - Series for a controller the cgroup does not have are left out rather
//!   than reported as 0.

mod layout;
mod names;
#[cfg(test)]
mod tests;
mod walk;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read as _};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use regex::Regex;

use self::layout::{Layout, Mode, BLKIO, CPU, CPUACCT, MEMORY, PIDS};
use self::walk::Walker;
use super::{read_into, read_optional, CollectError, Collector, Context, Opt, OptKind, Settings};
use crate::metrics::{Emitter, Labels, MetricType};

/// Docker, Podman, containerd (incl. nerdctl), CRI-O, LXC/LXD, Kubernetes
/// and k3s pods and containers (systemd and cgroupfs drivers), systemd
/// services and nspawn machines.
pub const DEFAULT_CGROUP_INCLUDE: &str = concat!(
    r"^/(?:",
    r"system\.slice/(?:[^/]+\.slice/)?[^/]+\.service",
    r"|machine\.slice/(?:machine-[^/]+\.scope|systemd-nspawn@[^/]+\.service)",
    r"|(?:.+/)?(?:docker|libpod|crio|cri-containerd|nerdctl)-[0-9a-f]{64}\.scope",
    r"|docker/[0-9a-f]{64}",
    r"|libpod_parent/libpod-[0-9a-f]{64}",
    r"|kubepods(?:/[a-z]+)?/pod[0-9a-f-]+(?:/(?:crio-)?[0-9a-f]{64})?",
    r"|(?:.+/)?kubepods(?:-[a-z]+)?-pod[0-9a-f_]+\.slice",
    r"|lxc/[^/]+",
    r"|lxc\.payload[./][^/]+",
    r")$"
);
pub const DEFAULT_MAX: usize = 500;

pub const OPTIONS: &[Opt] = &[
    Opt {
        flag: "collector.containers.cgroup-include",
        kind: OptKind::Regex,
        default: DEFAULT_CGROUP_INCLUDE,
        help:
            "Regexp of cgroup paths (e.g. /system.slice/docker-<id>.scope) reported as containers",
        aliases: &[],
    },
    Opt {
        flag: "collector.containers.max",
        kind: OptKind::Count,
        // DEFAULT_MAX, as text (a unit test checks they agree).
        default: "500",
        help: "Most containers reported; the rest are counted in cairn_containers_dropped",
        aliases: &[],
    },
];

/// cAdvisor's threshold above which a memory limit means "unlimited" (the
/// kernel rounds `PAGE_COUNTER_MAX`, so it is not `i64::MAX`).
const MAX_MEMORY: u64 = 1 << 62;
/// USER_HZ, the unit of v1 `cpuacct.stat`; fixed at 100 in the kernel ABI.
const USER_HZ: f64 = 100.0;
/// Runtime-record lookups for a container whose record was not found yet.
const LOOKUPS: u8 = 3;

struct Container {
    id: String,
    name: String,
    image: String,
    /// Collection in which the cgroup was last found.
    seen: u64,
    /// Bit `i` set: the cgroup exists in `Layout::roots[i]` this collection.
    present: u8,
    /// Inode of the cgroup directory in the first tree it was found in; a
    /// change means the cgroup was removed and made again under the same path.
    ino: u64,
    /// `ino` for which `name`, `image` and `start` were computed (0: never).
    meta_ino: u64,
    lookups_left: u8,
    start: f64,
}

#[derive(Default, Clone, Copy)]
struct CpuSpec {
    shares: u64,
    period: u64,
    quota: u64,
}

#[derive(Default, Clone, Copy)]
struct Mem {
    usage: u64,
    working_set: u64,
    rss: u64,
    cache: u64,
    swap: u64,
    failcnt: u64,
}

#[derive(Default, Clone, Copy)]
struct Psi {
    some: Option<f64>,
    full: Option<f64>,
}

#[derive(Default)]
struct Stats {
    cpu_total: Option<f64>,
    cpu_user: Option<f64>,
    cpu_system: Option<f64>,
    /// nr_periods, nr_throttled, throttled seconds.
    cfs: Option<[f64; 3]>,
    cpu_spec: Option<CpuSpec>,
    mem: Option<Mem>,
    mem_limit: Option<u64>,
    oom: Option<u64>,
    processes: Option<u64>,
    threads: Option<u64>,
    /// cpu, memory, io.
    psi: [Option<Psi>; 3],
}

const OPS: [&str; 6] = ["Read", "Write", "Sync", "Async", "Discard", "Total"];

struct IoDev {
    major: u32,
    minor: u32,
    bytes: [Option<u64>; 6],
    ios: [Option<u64>; 6],
}

/// Reads controller files one at a time into a reused buffer.
///
/// Opening `/sys/fs/cgroup/<ctrl>/<...>/<cgroup>/<file>` makes the kernel
/// walk (and, on kernfs, revalidate) every component each time, which was
/// most of a collection's cost. So the cgroup directory is opened once
/// (`O_PATH`) and its files with `openat` relative to it; consecutive reads
/// in the same directory reuse that descriptor.
struct Reader {
    /// The file last read, for error messages.
    path: Vec<u8>,
    /// `base + rel` of the directory `dir` refers to (when `dir_valid`).
    dir_key: Vec<u8>,
    /// `None` while `dir_valid`: the directory does not exist.
    dir: Option<std::fs::File>,
    dir_valid: bool,
    /// Tree roots opened this collection, so a cgroup directory is opened
    /// relative to its root instead of walking the mount path again.
    /// Keys persist across collections (no allocation once warm); the
    /// descriptors and `opened` flags are reset by `leave`.
    roots: Vec<Root>,
    bytes: Vec<u8>,
    len: usize,
}

struct Root {
    path: Vec<u8>,
    /// Opened this collection (`fd` is `None` if the tree is missing).
    opened: bool,
    fd: Option<std::fs::File>,
}

/// Room kept free for one `read`: cgroup files are seq_files, which return
/// everything they have in one call when the buffer is large enough.
const READ_CHUNK: usize = 8192;

/// An `O_PATH` descriptor of a directory: `path` absolute, or relative to
/// `at`. The path is copied to a stack buffer (cgroup paths are short).
fn open_dir(at: Option<&std::fs::File>, path: &[u8]) -> io::Result<std::fs::File> {
    let mut c = [0u8; 4096];
    if path.len() >= c.len() || path.contains(&0) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    c[..path.len()].copy_from_slice(path);
    let dirfd = at.map_or(libc::AT_FDCWD, |f| f.as_raw_fd());
    // SAFETY: `dirfd` is AT_FDCWD or an open descriptor; `c` is NUL-terminated.
    let fd = unsafe {
        libc::openat(
            dirfd,
            c.as_ptr().cast(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
}

impl Reader {
    fn new() -> Self {
        Reader {
            path: Vec::with_capacity(256),
            dir_key: Vec::with_capacity(256),
            dir: None,
            dir_valid: false,
            roots: Vec::new(),
            bytes: vec![0; 2 * READ_CHUNK],
            len: 0,
        }
    }

    fn path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.path))
    }

    /// The content of the last successful `read`.
    fn text(&self) -> &str {
        // Validated in `read`.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }

    fn err(&self, msg: impl Into<String>) -> CollectError {
        CollectError::parse(self.path(), msg)
    }

    fn io_err(&self, source: io::Error) -> CollectError {
        CollectError::Io {
            path: self.path().to_owned(),
            source,
        }
    }

    /// Points `dir` at `<base><rel>` unless it is there already.
    fn enter(&mut self, base: &Path, rel: &str) -> Result<(), CollectError> {
        let b = base.as_os_str().as_bytes();
        if self.dir_valid
            && self.dir_key.len() == b.len() + rel.len()
            && self.dir_key.starts_with(b)
            && self.dir_key.ends_with(rel.as_bytes())
        {
            return Ok(());
        }
        self.dir = None;
        self.dir_key.clear();
        self.dir_key.extend_from_slice(b);
        self.dir_key.extend_from_slice(rel.as_bytes());
        self.dir_valid = true;
        let i = match self.roots.iter().position(|r| r.path == b) {
            Some(i) => i,
            None => {
                // A tree seen for the first time: the one allocation.
                self.roots.push(Root {
                    path: b.to_vec(),
                    opened: false,
                    fd: None,
                });
                self.roots.len() - 1
            }
        };
        if !self.roots[i].opened {
            match open_dir(None, b) {
                Ok(f) => self.roots[i].fd = Some(f),
                Err(e) if vanished(&e) => {}
                Err(e) => {
                    self.dir_valid = false;
                    self.path.clear();
                    self.path.extend_from_slice(b);
                    return Err(self.io_err(e));
                }
            }
            self.roots[i].opened = true;
        }
        let Some(root) = &self.roots[i].fd else {
            return Ok(());
        };
        let sub = rel.trim_start_matches('/');
        let res = if sub.is_empty() {
            root.try_clone()
        } else {
            open_dir(Some(root), sub.as_bytes())
        };
        match res {
            Ok(f) => self.dir = Some(f),
            Err(e) if vanished(&e) => {}
            Err(e) => {
                self.dir_valid = false;
                self.path.clone_from(&self.dir_key);
                return Err(self.io_err(e));
            }
        }
        Ok(())
    }

    /// Forgets the open directories (the next read opens them again).
    fn leave(&mut self) {
        self.dir = None;
        self.dir_valid = false;
        for r in &mut self.roots {
            r.fd = None;
            r.opened = false;
        }
    }

    /// Reads `<base><rel>/<file>`; `Ok(false)` when it is absent (the
    /// controller is not enabled for that cgroup, or the cgroup just went).
    /// Absence is the common case and costs no allocation.
    fn read(&mut self, base: &Path, rel: &str, file: &str) -> Result<bool, CollectError> {
        self.len = 0;
        self.enter(base, rel)?;
        self.path.clear();
        self.path.extend_from_slice(&self.dir_key);
        self.path.push(b'/');
        self.path.extend_from_slice(file.as_bytes());
        let Some(dir) = &self.dir else {
            return Ok(false);
        };
        let mut cname = [0u8; 64];
        if file.len() >= cname.len() || file.contains('\0') {
            return Err(self.err("file name too long"));
        }
        cname[..file.len()].copy_from_slice(file.as_bytes());
        // SAFETY: `dir` is an open descriptor and `cname` NUL-terminated.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                cname.as_ptr().cast(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return if vanished(&e) {
                Ok(false)
            } else {
                Err(self.io_err(e))
            };
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        loop {
            if self.bytes.len() - self.len < READ_CHUNK {
                self.bytes.resize(self.len + 2 * READ_CHUNK, 0);
            }
            let room = self.bytes.len() - self.len;
            match f.read(&mut self.bytes[self.len..]) {
                Ok(n) => {
                    self.len += n;
                    // A short read from a seq_file (or a regular file) is
                    // the end: saves the extra read that would return 0.
                    if n == 0 || n < room {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if vanished(&e) => {
                    self.len = 0;
                    return Ok(false);
                }
                Err(e) => {
                    self.len = 0;
                    return Err(self.io_err(e));
                }
            }
        }
        if std::str::from_utf8(&self.bytes[..self.len]).is_err() {
            self.len = 0;
            return Err(self.err("not UTF-8"));
        }
        Ok(true)
    }

    /// A file holding one number (`max` reads as `u64::MAX`).
    fn num(&mut self, base: &Path, rel: &str, file: &str) -> Result<Option<u64>, CollectError> {
        if !self.read(base, rel, file)? {
            return Ok(None);
        }
        let t = self.text().trim();
        if t == "max" {
            return Ok(Some(u64::MAX));
        }
        t.parse()
            .map(Some)
            .map_err(|_| self.err(format!("not a number: {t:?}")))
    }

    /// `key value` lines; `f` gets each pair whose value parses as u64.
    fn keyed(&self, mut f: impl FnMut(&str, u64)) -> Result<(), CollectError> {
        for line in self.text().lines() {
            let mut it = line.split_ascii_whitespace();
            let (Some(k), Some(v)) = (it.next(), it.next()) else {
                continue;
            };
            match v.parse::<u64>() {
                Ok(v) => f(k, v),
                // Keys we do not read may hold anything; ours never do.
                Err(_) => {
                    if KEYS_READ.contains(&k) {
                        return Err(self.err(format!("{k}: not a number: {v:?}")));
                    }
                }
            }
        }
        Ok(())
    }

    /// PSI: `some avg10=.. avg60=.. avg300=.. total=USEC`, maybe a `full` line.
    fn psi(&self) -> Result<Psi, CollectError> {
        let mut p = Psi::default();
        for line in self.text().lines() {
            let mut it = line.split_ascii_whitespace();
            let kind = it.next();
            let total = it.find_map(|f| f.strip_prefix("total="));
            let Some(total) = total else { continue };
            let v = total
                .parse::<u64>()
                .map_err(|_| self.err(format!("bad total {total:?}")))? as f64
                / 1e6;
            match kind {
                Some("some") => p.some = Some(v),
                Some("full") => p.full = Some(v),
                _ => {}
            }
        }
        Ok(p)
    }
}

/// Keys whose values must be numbers (any other key is skipped if not).
const KEYS_READ: &[&str] = &[
    "user",
    "system",
    "nr_periods",
    "nr_throttled",
    "throttled_time",
    "usage_usec",
    "user_usec",
    "system_usec",
    "throttled_usec",
    "total_cache",
    "total_rss",
    "total_swap",
    "total_inactive_file",
    "cache",
    "rss",
    "swap",
    "inactive_file",
    "anon",
    "file",
    "max",
    "oom_kill",
];

fn io_dev(io: &mut Vec<IoDev>, major: u32, minor: u32) -> &mut IoDev {
    let i = match io.iter().position(|d| d.major == major && d.minor == minor) {
        Some(i) => i,
        None => {
            io.push(IoDev {
                major,
                minor,
                bytes: [None; 6],
                ios: [None; 6],
            });
            io.len() - 1
        }
    };
    &mut io[i]
}

fn parse_dev(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

pub struct Containers {
    include: Regex,
    max: usize,
    mountinfo: String,
    /// The cgroup lines of the mountinfo `layout` was built from, so an
    /// unchanged mount table is not parsed again.
    layout_src: String,
    layout_key: String,
    layout: Option<Layout>,
    walker: Walker,
    table: HashMap<String, Container>,
    /// Matched this collection but over `max`: admitted if slots free up
    /// once the vanished containers are gone, else counted as dropped.
    pending: HashMap<String, (u8, u64)>,
    dropped: usize,
    gen: u64,
    rd: Reader,
    meta_buf: String,
    stats: Stats,
    io: Vec<IoDev>,
    devices: HashMap<(u32, u32), String>,
    boot: Option<i64>,
}

impl Containers {
    pub fn new(settings: &Settings) -> Self {
        Containers {
            // An empty include (unset) means every cgroup, as the other
            // include flags.
            include: settings
                .regex("collector.containers.cgroup-include")
                .unwrap_or_else(|| Regex::new("").expect("empty regex")),
            max: settings.count("collector.containers.max"),
            mountinfo: String::with_capacity(4096),
            layout_src: String::new(),
            layout_key: String::new(),
            layout: None,
            walker: Walker::new(),
            table: HashMap::new(),
            pending: HashMap::new(),
            dropped: 0,
            gen: 0,
            rd: Reader::new(),
            meta_buf: String::new(),
            stats: Stats::default(),
            io: Vec::new(),
            devices: HashMap::new(),
            boot: None,
        }
    }

    fn refresh_layout(&mut self, ctx: &Context) -> Result<(), CollectError> {
        read_into(&ctx.proc_path("self/mountinfo"), &mut self.mountinfo)?;
        self.layout_key.clear();
        for line in self.mountinfo.lines() {
            if line.contains(" - cgroup") {
                self.layout_key.push_str(line);
                self.layout_key.push('\n');
            }
        }
        if self.layout_key != self.layout_src || self.gen == 0 {
            std::mem::swap(&mut self.layout_key, &mut self.layout_src);
            let new = layout::parse(&self.layout_src, &ctx.rootfs);
            if new != self.layout {
                // Bits in `present` index the old roots.
                self.table.clear();
                self.layout = new;
            }
        }
        Ok(())
    }

    /// One walk of every tree: marks the containers found, admits new ones
    /// up to `max`, forgets the ones that are gone.
    fn discover(&mut self) -> Result<(), CollectError> {
        let Some(layout) = &self.layout else {
            self.table.clear();
            return Ok(());
        };
        self.gen += 1;
        let gen = self.gen;
        let (include, max) = (&self.include, self.max);
        let (table, pending) = (&mut self.table, &mut self.pending);
        pending.clear();
        for (h, root) in layout.roots.iter().enumerate() {
            let bit = 1u8 << h;
            let mut visit = |rel: &[u8], ino: u64| {
                let Ok(rel) = std::str::from_utf8(rel) else {
                    return;
                };
                // Known containers matched before; only new paths pay for
                // the regex.
                let known = table.get_mut(rel);
                if known.is_none() && !pending.contains_key(rel) && !include.is_match(rel) {
                    return;
                }
                if let Some(c) = known {
                    if c.seen != gen {
                        c.seen = gen;
                        c.present = 0;
                        c.ino = ino;
                    }
                    c.present |= bit;
                } else if let Some(p) = pending.get_mut(rel) {
                    p.0 |= bit;
                } else if table.len() < max {
                    // A new container: the one allocation per container.
                    table.insert(
                        rel.to_owned(),
                        Container {
                            id: rel.to_owned(),
                            name: String::new(),
                            image: String::new(),
                            seen: gen,
                            present: bit,
                            ino,
                            meta_ino: 0,
                            lookups_left: LOOKUPS,
                            start: 0.0,
                        },
                    );
                } else {
                    pending.insert(rel.to_owned(), (bit, ino));
                }
            };
            self.walker
                .walk(root, &mut visit)
                .map_err(|source| CollectError::Io {
                    path: root.clone(),
                    source,
                })?;
        }
        table.retain(|_, c| c.seen == gen);
        self.dropped = 0;
        if !pending.is_empty() {
            // Over the limit (rare): admit in path order for a stable choice.
            let mut keys: Vec<&String> = pending.keys().collect();
            keys.sort();
            for k in keys {
                if table.len() >= max {
                    self.dropped += 1;
                    continue;
                }
                let (present, ino) = pending[k];
                table.insert(
                    k.clone(),
                    Container {
                        id: k.clone(),
                        name: String::new(),
                        image: String::new(),
                        seen: gen,
                        present,
                        ino,
                        meta_ino: 0,
                        lookups_left: LOOKUPS,
                        start: 0.0,
                    },
                );
            }
        }
        Ok(())
    }

    fn boot_time(&mut self, ctx: &Context) -> i64 {
        if let Some(b) = self.boot {
            return b;
        }
        let mut buf = String::new();
        let btime = read_into(&ctx.proc_path("stat"), &mut buf)
            .ok()
            .and_then(|_| {
                buf.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<i64>().ok())
            })
            .unwrap_or(0);
        // cAdvisor truncates boot time to the minute.
        let b = btime - btime.rem_euclid(60);
        self.boot = Some(b);
        b
    }
}

/// cAdvisor's creation time: the oldest mtime of the cgroup directory and
/// of a file the kernel writes once at creation, in every tree, but never
/// before boot (a cgroup made during boot has an earlier, meaningless mtime).
fn start_time(layout: &Layout, c: &Container, path: &mut Vec<u8>, boot: i64) -> f64 {
    let marker: &[u8] = if layout.mode == Mode::V2 {
        b"/cgroup.events"
    } else {
        b"/cgroup.clone_children"
    };
    let mut lowest: Option<i64> = None;
    for (h, root) in layout.roots.iter().enumerate() {
        if c.present & (1 << h) == 0 {
            continue;
        }
        path.clear();
        path.extend_from_slice(root.as_os_str().as_bytes());
        path.extend_from_slice(c.id.as_bytes());
        for suffix in [&b""[..], marker] {
            let len = path.len();
            path.extend_from_slice(suffix);
            if let Ok(m) = std::fs::metadata(Path::new(OsStr::from_bytes(path))) {
                let t = m.mtime();
                lowest = Some(lowest.map_or(t, |l| l.min(t)));
            }
            path.truncate(len);
        }
    }
    lowest.map_or(0.0, |t| t.max(boot) as f64)
}

fn read_v1(
    layout: &Layout,
    c: &Container,
    rd: &mut Reader,
    st: &mut Stats,
    io: &mut Vec<IoDev>,
) -> Result<(), CollectError> {
    let id = c.id.as_str();
    let base = |ctrl: usize| -> Option<&PathBuf> {
        layout.ctrl[ctrl]
            .filter(|&h| c.present & (1 << h) != 0)
            .map(|h| &layout.roots[h])
    };
    if let Some(b) = base(CPUACCT) {
        st.cpu_total = rd.num(b, id, "cpuacct.usage")?.map(|ns| ns as f64 / 1e9);
        if rd.read(b, id, "cpuacct.stat")? {
            rd.keyed(|k, v| match k {
                "user" => st.cpu_user = Some(v as f64 / USER_HZ),
                "system" => st.cpu_system = Some(v as f64 / USER_HZ),
                _ => {}
            })?;
        }
    }
    if let Some(b) = base(CPU) {
        let mut spec = CpuSpec {
            shares: rd.num(b, id, "cpu.shares")?.unwrap_or(0),
            period: rd.num(b, id, "cpu.cfs_period_us")?.unwrap_or(0),
            quota: 0,
        };
        if rd.read(b, id, "cpu.cfs_quota_us")? {
            let t = rd.text().trim();
            let q: i64 = t
                .parse()
                .map_err(|_| rd.err(format!("not a number: {t:?}")))?;
            spec.quota = u64::try_from(q).unwrap_or(0);
        }
        st.cpu_spec = Some(spec);
        if rd.read(b, id, "cpu.stat")? {
            let mut cfs = [0.0; 3];
            rd.keyed(|k, v| match k {
                "nr_periods" => cfs[0] = v as f64,
                "nr_throttled" => cfs[1] = v as f64,
                "throttled_time" => cfs[2] = v as f64 / 1e9,
                _ => {}
            })?;
            st.cfs = Some(cfs);
        }
    }
    if let Some(b) = base(MEMORY) {
        st.mem_limit = Some(rd.num(b, id, "memory.limit_in_bytes")?.unwrap_or(0));
        if let Some(usage) = rd.num(b, id, "memory.usage_in_bytes")? {
            let mut m = Mem {
                usage,
                ..Mem::default()
            };
            if rd.read(b, id, "memory.stat")? {
                // total_* include descendants (use_hierarchy, always on
                // since 5.16); plain keys only if total_* are missing.
                let (mut t, mut p) = ([None; 4], [None; 4]);
                rd.keyed(|k, v| {
                    let (arr, key) = match k.strip_prefix("total_") {
                        Some(rest) => (&mut t, rest),
                        None => (&mut p, k),
                    };
                    if let Some(i) = ["cache", "rss", "swap", "inactive_file"]
                        .iter()
                        .position(|n| *n == key)
                    {
                        arr[i] = Some(v);
                    }
                })?;
                let get = |i: usize| t[i].or(p[i]);
                m.cache = get(0).unwrap_or(0);
                m.rss = get(1).unwrap_or(0);
                m.swap = get(2).unwrap_or(0);
                m.working_set = usage.saturating_sub(get(3).unwrap_or(0));
            } else {
                m.working_set = usage;
            }
            m.failcnt = rd.num(b, id, "memory.failcnt")?.unwrap_or(0);
            st.mem = Some(m);
        }
        if rd.read(b, id, "memory.oom_control")? {
            rd.keyed(|k, v| {
                if k == "oom_kill" {
                    st.oom = Some(v);
                }
            })?;
        }
    }
    if let Some(b) = base(BLKIO) {
        const GROUPS: [[&str; 2]; 3] = [
            [
                "blkio.throttle.io_service_bytes_recursive",
                "blkio.throttle.io_serviced_recursive",
            ],
            [
                "blkio.bfq.io_service_bytes_recursive",
                "blkio.bfq.io_serviced_recursive",
            ],
            [
                "blkio.throttle.io_service_bytes",
                "blkio.throttle.io_serviced",
            ],
        ];
        for [bytes, ios] in GROUPS {
            if !rd.read(b, id, bytes)? {
                continue;
            }
            blkio_v1(rd, io, true)?;
            if rd.read(b, id, ios)? {
                blkio_v1(rd, io, false)?;
            }
            break;
        }
    }
    if let Some(b) = base(PIDS) {
        st.threads = rd.num(b, id, "pids.current")?;
    }
    // Processes are counted in one tree (any has the same members).
    if let Some(b) = base(PIDS)
        .or(base(CPU))
        .or(base(MEMORY))
        .or(base(CPUACCT))
        .or(base(BLKIO))
    {
        if rd.read(b, id, "cgroup.procs")? {
            st.processes = Some(rd.text().lines().count() as u64);
        }
    }
    if let Some(u) = &layout.unified {
        // Not every v1 cgroup has a twin in the v2 tree.
        rd.enter(u, id)?;
        if rd.dir.is_some() {
            read_psi(rd, st, u, id)?;
        }
    }
    Ok(())
}

/// `MAJ:MIN Op value` lines (and a final `Total N`).
fn blkio_v1(rd: &Reader, io: &mut Vec<IoDev>, bytes: bool) -> Result<(), CollectError> {
    for line in rd.text().lines() {
        let mut it = line.split_ascii_whitespace();
        let (Some(dev), Some(op), Some(v)) = (it.next(), it.next(), it.next()) else {
            continue; // "Total N" or a blank line
        };
        let (major, minor) = parse_dev(dev).ok_or_else(|| rd.err(format!("bad device {dev:?}")))?;
        let v: u64 = v.parse().map_err(|_| rd.err(format!("bad value {v:?}")))?;
        let Some(i) = OPS.iter().position(|o| *o == op) else {
            continue;
        };
        let d = io_dev(io, major, minor);
        if bytes {
            d.bytes[i] = Some(v);
        } else {
            d.ios[i] = Some(v);
        }
    }
    Ok(())
}

fn read_psi(rd: &mut Reader, st: &mut Stats, base: &Path, id: &str) -> Result<(), CollectError> {
    for (i, f) in ["cpu.pressure", "memory.pressure", "io.pressure"]
        .into_iter()
        .enumerate()
    {
        if rd.read(base, id, f)? {
            st.psi[i] = Some(rd.psi()?);
        }
    }
    Ok(())
}

/// runc's and cAdvisor's cpu.weight [1, 10000] to cpu.shares [2, 262144].
fn weight_to_shares(w: u64) -> u64 {
    if !(1..=10000).contains(&w) {
        return 0;
    }
    2 + ((w - 1) * 262142) / 9999
}

fn read_v2(
    root: &Path,
    c: &Container,
    rd: &mut Reader,
    st: &mut Stats,
    io: &mut Vec<IoDev>,
) -> Result<(), CollectError> {
    let id = c.id.as_str();
    if rd.read(root, id, "cpu.stat")? {
        let mut cfs = [None; 3];
        rd.keyed(|k, v| match k {
            "usage_usec" => st.cpu_total = Some(v as f64 / 1e6),
            "user_usec" => st.cpu_user = Some(v as f64 / 1e6),
            "system_usec" => st.cpu_system = Some(v as f64 / 1e6),
            "nr_periods" => cfs[0] = Some(v as f64),
            "nr_throttled" => cfs[1] = Some(v as f64),
            "throttled_usec" => cfs[2] = Some(v as f64 / 1e6),
            _ => {}
        })?;
        if let [Some(a), Some(b), Some(t)] = cfs {
            st.cfs = Some([a, b, t]);
        }
    }
    // The cgroup directory is the cpu "controller path" in v2, so cAdvisor
    // always has a cpu spec there (zeros where the files are missing).
    let mut spec = CpuSpec {
        shares: rd.num(root, id, "cpu.weight")?.map_or(0, weight_to_shares),
        ..CpuSpec::default()
    };
    if rd.read(root, id, "cpu.max")? {
        let mut it = rd.text().split_ascii_whitespace();
        let (q, p) = (it.next(), it.next());
        let num = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| rd.err(format!("not a number: {s:?}")))
        };
        if let (Some(q), Some(p)) = (q, p) {
            if q != "max" {
                spec.quota = num(q)?;
            }
            spec.period = num(p)?;
        }
    }
    st.cpu_spec = Some(spec);
    if let Some(limit) = rd.num(root, id, "memory.max")? {
        st.mem_limit = Some(limit);
    }
    if let Some(usage) = rd.num(root, id, "memory.current")? {
        let mut m = Mem {
            usage,
            working_set: usage,
            ..Mem::default()
        };
        if rd.read(root, id, "memory.stat")? {
            rd.keyed(|k, v| match k {
                "anon" => m.rss = v,
                "file" => m.cache = v,
                "inactive_file" => m.working_set = usage.saturating_sub(v),
                _ => {}
            })?;
        }
        m.swap = rd.num(root, id, "memory.swap.current")?.unwrap_or(0);
        if rd.read(root, id, "memory.events")? {
            rd.keyed(|k, v| match k {
                "max" => m.failcnt = v,
                "oom_kill" => st.oom = Some(v),
                _ => {}
            })?;
        }
        st.mem = Some(m);
    }
    if rd.read(root, id, "io.stat")? {
        for line in rd.text().lines() {
            let mut it = line.split_ascii_whitespace();
            let Some(dev) = it.next() else { continue };
            let (major, minor) =
                parse_dev(dev).ok_or_else(|| rd.err(format!("bad device {dev:?}")))?;
            let d = io_dev(io, major, minor);
            for kv in it {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let (slot, op) = match k {
                    "rbytes" => (&mut d.bytes, 0),
                    "wbytes" => (&mut d.bytes, 1),
                    "dbytes" => (&mut d.bytes, 4),
                    "rios" => (&mut d.ios, 0),
                    "wios" => (&mut d.ios, 1),
                    "dios" => (&mut d.ios, 4),
                    _ => continue,
                };
                slot[op] = Some(v.parse().map_err(|_| rd.err(format!("bad {k}={v:?}")))?);
            }
        }
    }
    st.threads = rd.num(root, id, "pids.current")?;
    if rd.read(root, id, "cgroup.procs")? {
        st.processes = Some(rd.text().lines().count() as u64);
    }
    read_psi(rd, st, root, id)
}

/// `/dev/NAME` for a block device, as cAdvisor labels it ("" if unknown).
fn device_name(ctx: &Context, major: u32, minor: u32) -> String {
    let mut buf = String::new();
    let p = ctx.sys_path(&format!("dev/block/{major}:{minor}/uevent"));
    if let Ok(true) = read_optional(&p, &mut buf) {
        if let Some(n) = buf.lines().find_map(|l| l.strip_prefix("DEVNAME=")) {
            return format!("/dev/{n}");
        }
    }
    String::new()
}

fn base(l: &mut Labels<'_>, c: &Container) {
    l.label("id", &c.id)
        .label("image", &c.image)
        .label("name", &c.name);
}

fn one(out: &mut Emitter, name: &str, help: &str, kind: MetricType, c: &Container, v: f64) {
    out.family(name, help, kind).sample_with(v, |l| base(l, c));
}

fn emit(
    out: &mut Emitter,
    c: &Container,
    st: &Stats,
    io: &[IoDev],
    devices: &HashMap<(u32, u32), String>,
    now: f64,
) {
    use MetricType::{Counter, Gauge};
    one(
        out,
        "container_last_seen",
        "Last time a container was seen by the exporter",
        Gauge,
        c,
        now,
    );
    one(
        out,
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
        Gauge,
        c,
        c.start,
    );
    if let Some(v) = st.cpu_user {
        one(
            out,
            "container_cpu_user_seconds_total",
            "Cumulative user cpu time consumed in seconds.",
            Counter,
            c,
            v,
        );
    }
    if let Some(v) = st.cpu_system {
        one(
            out,
            "container_cpu_system_seconds_total",
            "Cumulative system cpu time consumed in seconds.",
            Counter,
            c,
            v,
        );
    }
    // cAdvisor leaves the series out until the cgroup has used some CPU.
    if let Some(v) = st.cpu_total.filter(|v| *v > 0.0) {
        out.family(
            "container_cpu_usage_seconds_total",
            "Cumulative cpu time consumed in seconds.",
            Counter,
        )
        .sample_with(v, |l| {
            l.label("cpu", "total");
            base(l, c);
        });
    }
    if let Some(spec) = st.cpu_spec {
        one(
            out,
            "container_spec_cpu_period",
            "CPU period of the container.",
            Gauge,
            c,
            spec.period as f64,
        );
        one(
            out,
            "container_spec_cpu_shares",
            "CPU share of the container.",
            Gauge,
            c,
            spec.shares as f64,
        );
        if spec.quota != 0 {
            one(
                out,
                "container_spec_cpu_quota",
                "CPU quota of the container.",
                Gauge,
                c,
                spec.quota as f64,
            );
            if let Some([p, t, s]) = st.cfs {
                one(
                    out,
                    "container_cpu_cfs_periods_total",
                    "Number of elapsed enforcement period intervals.",
                    Counter,
                    c,
                    p,
                );
                one(
                    out,
                    "container_cpu_cfs_throttled_periods_total",
                    "Number of throttled period intervals.",
                    Counter,
                    c,
                    t,
                );
                one(
                    out,
                    "container_cpu_cfs_throttled_seconds_total",
                    "Total time duration the container has been throttled.",
                    Counter,
                    c,
                    s,
                );
            }
        }
    }
    if let Some(limit) = st.mem_limit {
        let v = if limit > MAX_MEMORY {
            0.0
        } else {
            limit as f64
        };
        one(
            out,
            "container_spec_memory_limit_bytes",
            "Memory limit for the container.",
            Gauge,
            c,
            v,
        );
    }
    if let Some(m) = st.mem {
        one(
            out,
            "container_memory_cache",
            "Number of bytes of page cache memory.",
            Gauge,
            c,
            m.cache as f64,
        );
        one(
            out,
            "container_memory_rss",
            "Size of RSS in bytes.",
            Gauge,
            c,
            m.rss as f64,
        );
        one(
            out,
            "container_memory_swap",
            "Container swap usage in bytes.",
            Gauge,
            c,
            m.swap as f64,
        );
        one(
            out,
            "container_memory_failcnt",
            "Number of memory usage hits limits",
            Counter,
            c,
            m.failcnt as f64,
        );
        one(
            out,
            "container_memory_usage_bytes",
            "Current memory usage in bytes, including all memory regardless of when it was accessed",
            Gauge,
            c,
            m.usage as f64,
        );
        one(
            out,
            "container_memory_working_set_bytes",
            "Current working set in bytes.",
            Gauge,
            c,
            m.working_set as f64,
        );
    }
    if let Some(v) = st.oom {
        one(
            out,
            "container_oom_events_total",
            "Count of out of memory events observed for the container",
            Counter,
            c,
            v as f64,
        );
    }
    if let Some(v) = st.processes {
        one(
            out,
            "container_processes",
            "Number of processes running inside the container.",
            Gauge,
            c,
            v as f64,
        );
    }
    if let Some(v) = st.threads {
        one(
            out,
            "container_threads",
            "Number of threads running inside the container",
            Gauge,
            c,
            v as f64,
        );
    }
    const PSI: [[(&str, &str); 2]; 3] = [
        [
            ("container_pressure_cpu_waiting_seconds_total", "Total time duration tasks in the container have waited due to CPU congestion."),
            ("container_pressure_cpu_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to CPU congestion."),
        ],
        [
            ("container_pressure_memory_waiting_seconds_total", "Total time duration tasks in the container have waited due to memory congestion."),
            ("container_pressure_memory_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to memory congestion."),
        ],
        [
            ("container_pressure_io_waiting_seconds_total", "Total time duration tasks in the container have waited due to IO congestion."),
            ("container_pressure_io_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to IO congestion."),
        ],
    ];
    for (p, [(wn, wh), (sn, sh)]) in st.psi.iter().zip(PSI) {
        let Some(p) = p else { continue };
        if let Some(v) = p.some {
            one(out, wn, wh, Counter, c, v);
        }
        if let Some(v) = p.full {
            one(out, sn, sh, Counter, c, v);
        }
    }
    if io.is_empty() {
        return;
    }
    const FS: [(&str, &str, bool, usize); 4] = [
        (
            "container_fs_reads_bytes_total",
            "Cumulative count of bytes read",
            true,
            0,
        ),
        (
            "container_fs_writes_bytes_total",
            "Cumulative count of bytes written",
            true,
            1,
        ),
        (
            "container_fs_reads_total",
            "Cumulative count of reads completed",
            false,
            0,
        ),
        (
            "container_fs_writes_total",
            "Cumulative count of writes completed",
            false,
            1,
        ),
    ];
    for (name, help, bytes, op) in FS {
        let mut f = out.family(name, help, Counter);
        for d in io {
            let arr = if bytes { &d.bytes } else { &d.ios };
            if arr.iter().all(Option::is_none) {
                continue;
            }
            let dev = devices.get(&(d.major, d.minor)).map_or("", String::as_str);
            f.sample_with(arr[op].unwrap_or(0) as f64, |l| {
                l.label("device", dev);
                base(l, c);
            });
        }
    }
    let mut f = out.family(
        "container_blkio_device_usage_total",
        "Blkio Device bytes usage",
        Counter,
    );
    for d in io {
        let dev = devices.get(&(d.major, d.minor)).map_or("", String::as_str);
        for (op, v) in OPS.iter().zip(d.bytes) {
            let Some(v) = v else { continue };
            f.sample_with(v as f64, |l| {
                l.label("device", dev)
                    .label("id", &c.id)
                    .label("image", &c.image)
                    .label_display("major", d.major)
                    .label_display("minor", d.minor)
                    .label("name", &c.name)
                    .label("operation", op);
            });
        }
    }
}

impl Collector for Containers {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        self.refresh_layout(ctx)?;
        self.discover()?;
        let boot = self.boot_time(ctx);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs() as f64);
        let Containers {
            layout,
            table,
            rd,
            meta_buf,
            stats,
            io,
            devices,
            ..
        } = self;
        // A directory kept open from the last collection may have been
        // removed and made again since.
        rd.leave();
        if let Some(layout) = layout.as_ref() {
            for c in table.values_mut() {
                if c.meta_ino != c.ino {
                    // New, or made again under the same path.
                    c.start = start_time(layout, c, &mut rd.path, boot);
                    c.meta_ino = c.ino;
                    c.lookups_left = LOOKUPS;
                }
                if c.lookups_left > 0 {
                    let m = names::resolve(ctx, &c.id, meta_buf);
                    c.name = m.name;
                    c.image = m.image;
                    c.lookups_left = if m.resolved { 0 } else { c.lookups_left - 1 };
                }
                *stats = Stats::default();
                io.clear();
                match layout.mode {
                    Mode::V2 => read_v2(&layout.roots[0], c, rd, stats, io)?,
                    Mode::V1 | Mode::Hybrid => read_v1(layout, c, rd, stats, io)?,
                }
                for d in io.iter() {
                    // Once per block device ever seen.
                    devices
                        .entry((d.major, d.minor))
                        .or_insert_with(|| device_name(ctx, d.major, d.minor));
                }
                emit(out, c, stats, io, devices, now);
            }
        }
        rd.leave();
        out.single(
            "cairn_containers_dropped",
            "Cgroups matched by --collector.containers.cgroup-include but not reported because --collector.containers.max was reached.",
            MetricType::Gauge,
            self.dropped as f64,
        );
        Ok(())
    }
}
