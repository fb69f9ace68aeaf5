//! Which cgroup hierarchies this host has, read from `<procfs>/self/mountinfo`.
//!
//! Owns: the v1 / v2 / hybrid decision and the map from the controllers the
//! collector reads (cpu, cpuacct, memory, blkio, pids) to mounted trees.
//! Mount points in mountinfo are host paths; they are joined under the
//! rootfs so fixture trees work. Must never: assume a path such as
//! `/sys/fs/cgroup`, or read anything but the text it is given.

use std::path::{Path, PathBuf};

pub const CPU: usize = 0;
pub const CPUACCT: usize = 1;
pub const MEMORY: usize = 2;
pub const BLKIO: usize = 3;
pub const PIDS: usize = 4;
pub const NCTRL: usize = 5;
const CTRL_NAMES: [&str; NCTRL] = ["cpu", "cpuacct", "memory", "blkio", "pids"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only v1 controller hierarchies.
    V1,
    /// One v2 tree with every controller.
    V2,
    /// v1 controllers plus a v2 tree (systemd's "hybrid"): stats come from
    /// v1, pressure from the v2 tree where the same path exists there.
    Hybrid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub mode: Mode,
    /// The trees walked to find containers: each v1 hierarchy holding one of
    /// our controllers (co-mounted controllers share one), or the v2 tree.
    /// At most `NCTRL` entries, so a `u8` bit set indexes them.
    pub roots: Vec<PathBuf>,
    /// `roots` index of each controller, if mounted.
    pub ctrl: [Option<usize>; NCTRL],
    /// The v2 tree in hybrid mode (pressure files); `None` otherwise.
    pub unified: Option<PathBuf>,
}

struct Mount<'a> {
    root: &'a str,
    point: String,
    fstype: &'a str,
    super_opts: &'a str,
}

/// One mountinfo line: `id parent maj:min root point opts [optional...] - fstype source superopts`.
fn parse_line(line: &str) -> Option<Mount<'_>> {
    let mut f = line.split_ascii_whitespace();
    let (_id, _parent, _dev) = (f.next()?, f.next()?, f.next()?);
    let root = f.next()?;
    let point = unescape(f.next()?);
    loop {
        if f.next()? == "-" {
            break;
        }
    }
    let fstype = f.next()?;
    let _source = f.next()?;
    let super_opts = f.next().unwrap_or("");
    Some(Mount {
        root,
        point,
        fstype,
        super_opts,
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = (oct[0] - b'0') as u32 * 64
                    + (oct[1] - b'0') as u32 * 8
                    + (oct[2] - b'0') as u32;
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn under_root(rootfs: &Path, point: &str) -> PathBuf {
    rootfs.join(point.trim_start_matches('/'))
}

/// The layout described by `mountinfo`, or `None` when no cgroup tree with
/// a controller we read is mounted.
pub fn parse(mountinfo: &str, rootfs: &Path) -> Option<Layout> {
    // For each controller, the best mount: one whose root is "/" (the whole
    // hierarchy) beats a bind mount of a subtree.
    let mut ctrl_mount: [Option<(String, bool)>; NCTRL] = Default::default();
    let mut unified: Option<(String, bool)> = None;
    for line in mountinfo.lines() {
        let Some(m) = parse_line(line) else { continue };
        let whole = m.root == "/";
        match m.fstype {
            "cgroup" => {
                for opt in m.super_opts.split(',') {
                    if let Some(i) = CTRL_NAMES.iter().position(|c| *c == opt) {
                        let better = match &ctrl_mount[i] {
                            None => true,
                            Some((_, w)) => whole && !*w,
                        };
                        if better {
                            ctrl_mount[i] = Some((m.point.clone(), whole));
                        }
                    }
                }
            }
            "cgroup2" => {
                let better = match &unified {
                    None => true,
                    Some((_, w)) => whole && !*w,
                };
                if better {
                    unified = Some((m.point, whole));
                }
            }
            _ => {}
        }
    }
    let any_v1 = ctrl_mount.iter().any(Option::is_some);
    if any_v1 {
        let mut roots: Vec<PathBuf> = Vec::new();
        let mut points: Vec<&str> = Vec::new();
        let mut ctrl = [None; NCTRL];
        for (i, m) in ctrl_mount.iter().enumerate() {
            if let Some((point, _)) = m {
                let idx = match points.iter().position(|p| p == point) {
                    Some(idx) => idx,
                    None => {
                        points.push(point);
                        roots.push(under_root(rootfs, point));
                        roots.len() - 1
                    }
                };
                ctrl[i] = Some(idx);
            }
        }
        let unified = unified.map(|(p, _)| under_root(rootfs, &p));
        return Some(Layout {
            mode: if unified.is_some() {
                Mode::Hybrid
            } else {
                Mode::V1
            },
            roots,
            ctrl,
            unified,
        });
    }
    let (point, _) = unified?;
    Some(Layout {
        mode: Mode::V2,
        roots: vec![under_root(rootfs, &point)],
        ctrl: [Some(0); NCTRL],
        unified: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_with_separate_cpu_and_cpuacct() {
        let l = parse(HYBRID, Path::new("/r")).unwrap();
        assert_eq!(l.mode, Mode::Hybrid);
        assert_eq!(l.roots.len(), 5);
        assert_eq!(
            l.roots[l.ctrl[CPU].unwrap()],
            Path::new("/r/sys/fs/cgroup/cpu")
        );
        assert_eq!(
            l.roots[l.ctrl[CPUACCT].unwrap()],
            Path::new("/r/sys/fs/cgroup/cpuacct")
        );
        assert_eq!(
            l.unified.as_deref(),
            Some(Path::new("/r/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn comounted_v1_shares_one_root() {
        let mi =
            "25 20 0:22 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct\n\
                  26 20 0:23 / /sys/fs/cgroup/memory rw shared:10 - cgroup cgroup rw,memory\n";
        let l = parse(mi, Path::new("/")).unwrap();
        assert_eq!(l.mode, Mode::V1);
        assert_eq!(l.roots.len(), 2);
        assert_eq!(l.ctrl[CPU], l.ctrl[CPUACCT]);
        assert_eq!(l.ctrl[BLKIO], None);
    }

    #[test]
    fn pure_v2_and_none() {
        let mi = "30 24 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        let l = parse(mi, Path::new("/")).unwrap();
        assert_eq!(l.mode, Mode::V2);
        assert_eq!(l.roots, vec![PathBuf::from("/sys/fs/cgroup")]);
        assert_eq!(l.ctrl, [Some(0); NCTRL]);
        assert!(parse("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n", Path::new("/")).is_none());
    }

    #[test]
    fn escaped_mount_point_and_bind_mount_preference() {
        let mi =
            "1 0 0:1 /sub /a\\040b rw - cgroup2 cgroup2 rw\n2 0 0:1 / /c rw - cgroup2 cgroup2 rw\n";
        let l = parse(mi, Path::new("/")).unwrap();
        assert_eq!(l.roots, vec![PathBuf::from("/c")]);
        assert_eq!(unescape("a\\040b\\134"), "a b\\");
    }
}
