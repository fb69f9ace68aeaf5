//! Depth-first walk of one cgroup tree, listing directories only.
//!
//! Owns: the one place this collector calls `opendir`/`readdir` directly.
//! `std::fs::read_dir` allocates for every entry (and cgroup directories are
//! mostly files), which is most of a warm collection's heap traffic with a
//! few hundred containers; this walk reuses one path buffer instead.
//! Must never: follow symlinks, descend deeper than `MAX_DEPTH`, or fail the
//! walk because a directory vanished while it was being read (cgroups come
//! and go all the time).

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[cfg(not(target_env = "gnu"))]
use libc::{dirent, readdir};
#[cfg(target_env = "gnu")]
use libc::{dirent64 as dirent, readdir64 as readdir};

/// cgroup trees are shallow (k8s containers sit at depth 4); this only
/// bounds a pathological tree.
const MAX_DEPTH: usize = 32;

pub struct Walker {
    buf: Vec<u8>,
}

struct Dir(*mut libc::DIR);

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a successful opendir and is closed once.
        unsafe {
            libc::closedir(self.0);
        }
    }
}

impl Walker {
    pub fn new() -> Self {
        Walker {
            buf: Vec::with_capacity(512),
        }
    }

    /// Calls `visit(rel, inode)` for every directory below `root` (not
    /// `root` itself); `rel` starts with `/`. A missing `root` is an empty
    /// tree.
    pub fn walk(&mut self, root: &Path, visit: &mut dyn FnMut(&[u8], u64)) -> io::Result<()> {
        self.buf.clear();
        self.buf.extend_from_slice(root.as_os_str().as_bytes());
        while self.buf.len() > 1 && self.buf.last() == Some(&b'/') {
            self.buf.pop();
        }
        let root_len = self.buf.len();
        walk_dir(&mut self.buf, root_len, 0, visit)
    }
}

fn walk_dir(
    buf: &mut Vec<u8>,
    root_len: usize,
    depth: usize,
    visit: &mut dyn FnMut(&[u8], u64),
) -> io::Result<()> {
    buf.push(0);
    // SAFETY: `buf` is NUL-terminated and has no interior NUL (it is built
    // from a path and from directory entry names, neither of which can
    // contain one).
    let ptr = unsafe { libc::opendir(buf.as_ptr().cast()) };
    buf.pop();
    if ptr.is_null() {
        let e = io::Error::last_os_error();
        // Below the root, a directory that vanished or that we may not read
        // is skipped: the rest of the tree is still worth reporting.
        if depth > 0 || e.kind() == io::ErrorKind::NotFound {
            return Ok(());
        }
        return Err(e);
    }
    let dir = Dir(ptr);
    loop {
        // SAFETY: `dir.0` is an open DIR*; the returned entry stays valid
        // until the next readdir/closedir on it, and we copy the name out
        // before either happens.
        let ent: *mut dirent = unsafe { readdir(dir.0) };
        if ent.is_null() {
            break;
        }
        let (d_type, d_ino, name) = unsafe {
            let e = &*ent;
            (
                e.d_type,
                e.d_ino,
                CStr::from_ptr(e.d_name.as_ptr()).to_bytes(),
            )
        };
        if name == b"." || name == b".." {
            continue;
        }
        let len = buf.len();
        buf.push(b'/');
        buf.extend_from_slice(name);
        let is_dir = match d_type {
            libc::DT_DIR => true,
            // Filesystems without d_type (some fixture filesystems): ask.
            libc::DT_UNKNOWN => std::fs::symlink_metadata(Path::new(OsStr::from_bytes(buf)))
                .map(|m| m.is_dir())
                .unwrap_or(false),
            _ => false,
        };
        if is_dir {
            // ino_t is not u64 on every target.
            #[allow(clippy::unnecessary_cast)]
            visit(&buf[root_len..], d_ino as u64);
            if depth + 1 < MAX_DEPTH && may_have_subdirs(&dir, name) {
                walk_dir(buf, root_len, depth + 1, visit)?;
            }
        }
        buf.truncate(len);
    }
    Ok(())
}

/// Most cgroups are leaves. kernfs (cgroupfs), tmpfs and ext4 keep a
/// directory's link count at 2 + its subdirectories, so one `fstatat` saves
/// the opendir/getdents/close of a leaf; a filesystem that does not keep
/// the count (btrfs reports 1) is always descended into.
fn may_have_subdirs(dir: &Dir, name: &[u8]) -> bool {
    let mut cname = [0u8; 256];
    if name.len() >= cname.len() {
        return true;
    }
    cname[..name.len()].copy_from_slice(name);
    // SAFETY: `dir.0` is open, `cname` is NUL-terminated, `st` is written
    // by the call before it is read.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        let fd = libc::dirfd(dir.0);
        if fd < 0
            || libc::fstatat(
                fd,
                cname.as_ptr().cast(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            ) != 0
        {
            return true;
        }
        st.st_nlink != 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_nested_directories_only() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b/c")).unwrap();
        std::fs::create_dir_all(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("a/file"), "x").unwrap();
        std::os::unix::fs::symlink(t.path().join("d"), t.path().join("link")).unwrap();
        let mut seen = Vec::new();
        Walker::new()
            .walk(t.path(), &mut |rel, _| {
                seen.push(String::from_utf8(rel.to_vec()).unwrap())
            })
            .unwrap();
        seen.sort();
        assert_eq!(seen, ["/a", "/a/b", "/a/b/c", "/d"]);
        let mut n = 0;
        Walker::new()
            .walk(&t.path().join("missing"), &mut |_, _| n += 1)
            .unwrap();
        assert_eq!(n, 0);
    }
}
