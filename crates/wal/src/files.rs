//! File-system helpers shared by both WAL engines: the directory layout,
//! the advisory `LOCK`, durable directory changes, the `quarantine/`
//! folder and the names of per-remote files.
//!
//! Owns: how a WAL directory is created and repaired at the top level, and
//! how bytes are moved aside. Must never: delete anything outside the WAL
//! directory, follow data it moves aside (quarantine is write-only for
//! cairn), or let quarantine grow without bound.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use super::WalError;

/// Never propagates a poisoned lock: a panic elsewhere must not stop the
/// spool (the state it guards is kept consistent step by step).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// ENOSPC/EDQUOT become `DiskFull` so the scheduler knows to keep data in
/// memory and retry; everything else is an I/O error on `path`.
pub(crate) fn io_err(path: &Path, e: io::Error) -> WalError {
    if is_disk_full(&e) {
        WalError::DiskFull {
            path: path.to_path_buf(),
        }
    } else {
        WalError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// Makes creations, renames and deletions inside `dir` durable.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub(crate) fn unix_now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads as many bytes as are there (short only at end of file).
pub(crate) fn read_full_at(f: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Makes sure `path` is a directory. Something else in its place (a file
/// left by an admin, a dangling symlink) is moved aside to
/// `<path>.bad-<unix time>` rather than refusing to start; returns whether
/// that happened.
pub(crate) fn ensure_dir(path: &Path) -> Result<bool, WalError> {
    let mut moved = false;
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => return Ok(false),
        Ok(m)
            if m.file_type().is_symlink()
                && fs::metadata(path).map(|t| t.is_dir()).unwrap_or(false) =>
        {
            return Ok(false)
        }
        Ok(_) => {
            let aside = aside_name(path);
            tracing::warn!(
                "WAL: {} is not a directory; moved it to {} and started a new one",
                path.display(),
                aside.display()
            );
            fs::rename(path, &aside).map_err(|e| io_err(path, e))?;
            moved = true;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path, e)),
    }
    fs::create_dir_all(path).map_err(|e| io_err(path, e))?;
    if let Some(parent) = path.parent() {
        let _ = fsync_dir(parent);
    }
    Ok(moved)
}

fn aside_name(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".bad-{}", unix_now_secs()));
    PathBuf::from(s)
}

/// The advisory lock that keeps two agents from writing one WAL. Held as
/// long as the returned file is open. `status` never takes it.
pub(crate) fn take_lock(dir: &Path) -> Result<File, WalError> {
    let path = dir.join("LOCK");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_err(&path, e))?;
    let mut tries = 0;
    loop {
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        let rc = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        if rc == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(io_err(&path, e));
        }
        let holder = fs::read_to_string(&path).unwrap_or_default();
        // Our own pid: the lock of a WAL this process just closed, still
        // shared for an instant by a child forked meanwhile (between fork
        // and exec it holds every descriptor): it goes at the exec.
        let own = holder.trim() == std::process::id().to_string();
        if own && tries < 100 {
            tries += 1;
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        }
        return Err(WalError::Other(format!(
            "{} is locked by another cairn (pid {}); two agents cannot share one WAL",
            dir.display(),
            holder.trim()
        )));
    }
    // Informational only (never read back by cairn): who holds the lock.
    let _ = f.set_len(0);
    let _ = f.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0);
    let _ = f.flush();
    Ok(f)
}

/// File names for remote names: bytes outside `[A-Za-z0-9_-]` are written
/// as `%XX`, so any configured name maps to one safe file name and back.
pub(crate) fn encode_name(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

pub(crate) fn decode_name(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `quarantine/`: where unreadable bytes go. Bounded: after each addition
/// the oldest files are deleted while the folder holds more than `cap`
/// bytes (the newest file is always kept).
pub(crate) struct Quarantine {
    pub dir: PathBuf,
    pub cap: u64,
}

impl Quarantine {
    /// Copies `[from, to)` of `src` to `quarantine/<name>` durably; returns
    /// the bytes copied. A region larger than the cap is cut at the cap.
    pub fn save_region(&self, name: &str, src: &File, from: u64, to: u64) -> io::Result<u64> {
        let path = self.dir.join(name);
        let mut out = File::create(&path)?;
        let len = to.saturating_sub(from).min(self.cap.max(1));
        let mut buf = vec![0u8; 64 << 10];
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(buf.len() as u64) as usize;
            let n = read_full_at(src, &mut buf[..want], from + done)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
            done += n as u64;
        }
        out.sync_all()?;
        fsync_dir(&self.dir)?;
        self.prune(&path);
        Ok(done)
    }

    /// Moves a whole file or directory into quarantine (same file system:
    /// a rename). Returns its size in bytes (0 for directories).
    pub fn move_in(&self, src: &Path, name: &str) -> io::Result<u64> {
        let size = fs::symlink_metadata(src)
            .map(|m| if m.is_file() { m.len() } else { 0 })
            .unwrap_or(0);
        let mut dst = self.dir.join(name);
        if fs::symlink_metadata(&dst).is_ok() {
            dst = self.dir.join(format!("{name}.{}", unix_now_secs()));
        }
        fs::rename(src, &dst)?;
        if let Some(p) = src.parent() {
            fsync_dir(p)?;
        }
        fsync_dir(&self.dir)?;
        self.prune(&dst);
        Ok(size)
    }

    fn prune(&self, keep: &Path) {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(SystemTime, PathBuf, u64)> = rd
            .flatten()
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                let size = if m.is_dir() {
                    dir_size(&e.path())
                } else {
                    m.len()
                };
                Some((m.modified().unwrap_or(UNIX_EPOCH), e.path(), size))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.2).sum();
        files.sort();
        for (_, p, size) in files {
            if total <= self.cap {
                break;
            }
            if p == keep {
                continue;
            }
            let r = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            if r.is_ok() {
                tracing::info!(
                    "WAL: quarantine over {} bytes, deleted its oldest entry {}",
                    self.cap,
                    p.display()
                );
                total = total.saturating_sub(size);
            }
        }
    }
}

/// Bytes of regular files under `dir` (recursively) and how many there are.
pub fn dir_usage(dir: &Path) -> (u64, u64) {
    let mut bytes = 0;
    let mut files = 0;
    let Ok(rd) = fs::read_dir(dir) else {
        return (0, 0);
    };
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            let (b, f) = dir_usage(&e.path());
            bytes += b;
            files += f;
        } else {
            bytes += m.len();
            files += 1;
        }
    }
    (bytes, files)
}

fn dir_size(dir: &Path) -> u64 {
    dir_usage(dir).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_refused_and_a_released_one_taken() {
        let dir = tempfile::tempdir().unwrap();
        let held = take_lock(dir.path()).unwrap();
        let e = take_lock(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("locked by another cairn") && e.contains(&std::process::id().to_string()),
            "{e}"
        );
        drop(held);
        take_lock(dir.path()).unwrap();
    }

    #[test]
    fn remote_names_round_trip_through_file_names() {
        for n in ["central", "a/b", "..", "", "X-Scope_1", "ünï cödé", "%41"] {
            let e = encode_name(n);
            assert!(
                e.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-%".contains(&b)),
                "{e}"
            );
            assert_eq!(decode_name(&e).as_deref(), Some(n));
        }
        assert_eq!(decode_name("%4"), None);
        assert_eq!(decode_name("%zz"), None);
    }
}
