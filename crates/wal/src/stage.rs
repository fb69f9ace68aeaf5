//! The stage: a copy of the writer's queue in memory-backed storage (a
//! tmpfs such as `/run`), so that holding collections back from the disk
//! for `wal.flush_interval` costs nothing on a kill -9.
//!
//! Why it exists: with a healthy receiver a collection is delivered well
//! within a second, and writing it to the WAL only to acknowledge it a
//! moment later is what wears out an SD card (every fdatasync rewrites a
//! page and the file system's journal). The writer therefore holds each
//! record for `flush_interval`: what every remote delivers from memory in
//! that time never reaches the WAL, what is still undelivered then is
//! written and committed. While held, a record lives here too. A tmpfs
//! outlives the process (kill -9, OOM kill, a panic, a restart by systemd)
//! but not the machine: a power cut loses at most `flush_interval` of
//! undelivered collections, as README promises.
//!
//! Owns: the stage file's format and its replay at start. Must never: be
//! trusted past its first damaged entry (a torn tail is a collection that
//! was never staged), hold more than the writer's queue plus its
//! tombstones (compacted past a bound), or be written on the async
//! runtime (the writer calls it on the blocking pool).
//!
//! Format: a sequence of entries `len u32 LE | crc32 u32 LE | body`, where
//! `body` is `1 | seq u64 | kind u8 | min_ts i64 | max_ts i64 | samples
//! u32 | data` (a record) or `2 | seq u64` (that record left the queue:
//! written to the WAL, delivered by every remote, or dropped and counted).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::files::io_err;
use super::{RecordKind, RecordMeta, WalError};

const RECORD: u8 = 1;
const GONE: u8 = 2;
/// Header of an entry: length and checksum of its body.
const HEADER: usize = 8;
/// Longest body read back: more than the writer's queue can hold, so only
/// damage is ever longer.
const MAX_BODY: usize = 64 << 20;
/// Compaction: the file is rewritten with only its live records once it
/// is this much larger than them.
const COMPACT_SLACK: u64 = 1 << 20;
/// tmpfs and ramfs: memory-backed, never written to a device.
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// A record staged and not known to have left the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Staged {
    pub seq: u64,
    pub kind: RecordKind,
    pub meta: RecordMeta,
    pub data: Vec<u8>,
}

pub struct Stage {
    file: File,
    path: PathBuf,
    /// Bytes in the file.
    len: u64,
    /// Bytes of the entries of records not yet gone, by seq.
    live: BTreeMap<u64, u64>,
    live_bytes: u64,
    buf: Vec<u8>,
    /// Entries of the write being prepared: counted live once written.
    pending: Vec<(u64, u64)>,
}

/// What was found in a stage file at start.
#[derive(Debug, Default)]
pub struct Found {
    /// Records still held when the last process stopped, oldest first.
    pub records: Vec<Staged>,
    /// Bytes after the last whole entry (a write cut short by the kill):
    /// never acknowledged to anyone, so not a loss of committed data.
    pub torn_bytes: u64,
}

impl Stage {
    /// The stage file of the WAL in `wal_dir`, inside `stage_dir`: one
    /// file per WAL, so several agents can share a runtime directory.
    pub fn path_for(stage_dir: &Path, wal_dir: &Path) -> PathBuf {
        let abs = std::fs::canonicalize(wal_dir).unwrap_or_else(|_| wal_dir.to_path_buf());
        let tag = crc32fast::hash(abs.as_os_str().as_encoded_bytes());
        stage_dir.join(format!("cairn-stage-{tag:08x}"))
    }

    /// Whether `dir` is memory-backed (so the stage costs no device writes).
    pub fn memory_backed(dir: &Path) -> bool {
        match nix::sys::statfs::statfs(dir) {
            // The field's integer type differs between targets.
            #[allow(clippy::unnecessary_cast)]
            Ok(s) => matches!(s.filesystem_type().0 as i64, TMPFS_MAGIC | RAMFS_MAGIC),
            Err(_) => false,
        }
    }

    /// Opens (creating it and its directory, owner-only) the stage at
    /// `path` and reads what a previous process left in it. The caller
    /// writes `Found::records` to the WAL, commits, then calls `reset`.
    pub fn open(path: &Path) -> Result<(Stage, Found), WalError> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io_err(dir, e))?;
        }
        // O_NOFOLLOW: the runtime directory may be shared; never write
        // through a link someone else put there.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        let meta = file.metadata().map_err(|e| io_err(path, e))?;
        if !meta.file_type().is_file() {
            return Err(io_err(
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            ));
        }
        let found = read_all(&mut file, meta.len()).map_err(|e| io_err(path, e))?;
        let stage = Stage {
            file,
            path: path.to_path_buf(),
            len: meta.len(),
            live: BTreeMap::new(),
            live_bytes: 0,
            buf: Vec::new(),
            pending: Vec::new(),
        };
        Ok((stage, found))
    }

    /// A stage whose every write fails with ENOSPC (`/dev/full`): for the
    /// tests of the stage's callers, which live outside this crate.
    #[doc(hidden)]
    pub fn always_full() -> Result<Stage, WalError> {
        let path = PathBuf::from("/dev/full");
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        Ok(Stage {
            file,
            path,
            len: 0,
            live: BTreeMap::new(),
            live_bytes: 0,
            buf: Vec::new(),
            pending: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records held now (not yet gone).
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// Bytes in the file now.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stages records (one write for all of them).
    pub fn append<'a>(
        &mut self,
        records: impl IntoIterator<Item = (u64, RecordKind, RecordMeta, &'a [u8])>,
    ) -> Result<(), WalError> {
        self.buf.clear();
        self.pending.clear();
        for (seq, kind, meta, data) in records {
            let start = self.buf.len();
            let mut body = [0u8; 1 + 8 + 1 + 8 + 8 + 4];
            body[0] = RECORD;
            body[1..9].copy_from_slice(&seq.to_le_bytes());
            body[9] = kind as u8;
            body[10..18].copy_from_slice(&meta.min_ts.to_le_bytes());
            body[18..26].copy_from_slice(&meta.max_ts.to_le_bytes());
            body[26..30].copy_from_slice(&meta.samples.to_le_bytes());
            let mut crc = crc32fast::Hasher::new();
            crc.update(&body);
            crc.update(data);
            let len = (body.len() + data.len()) as u32;
            self.buf.extend_from_slice(&len.to_le_bytes());
            self.buf.extend_from_slice(&crc.finalize().to_le_bytes());
            self.buf.extend_from_slice(&body);
            self.buf.extend_from_slice(data);
            self.pending.push((seq, (self.buf.len() - start) as u64));
        }
        let written = self.write_buf();
        for (seq, n) in self.pending.drain(..) {
            if written.is_ok() {
                self.live.insert(seq, n);
                self.live_bytes += n;
            }
        }
        written
    }

    /// Marks records as gone (written to the WAL, delivered everywhere, or
    /// dropped). Unknown seqs are ignored.
    pub fn forget(&mut self, seqs: impl IntoIterator<Item = u64>) -> Result<(), WalError> {
        self.buf.clear();
        for seq in seqs {
            let Some(n) = self.live.remove(&seq) else {
                continue;
            };
            self.live_bytes -= n;
            let mut body = [0u8; 9];
            body[0] = GONE;
            body[1..9].copy_from_slice(&seq.to_le_bytes());
            self.buf
                .extend_from_slice(&(body.len() as u32).to_le_bytes());
            self.buf
                .extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            self.buf.extend_from_slice(&body);
        }
        if self.live.is_empty() {
            return self.reset();
        }
        self.write_buf()
    }

    /// Whether the file has grown far past what it holds: the caller then
    /// hands `compact` the live records.
    pub fn wants_compaction(&self) -> bool {
        self.len > self.live_bytes.saturating_mul(2) + COMPACT_SLACK
    }

    /// Rewrites the file with exactly these records (the live ones), by a
    /// new file renamed over the old, so a kill in between leaves one of
    /// the two whole.
    pub fn compact<'a>(
        &mut self,
        records: impl IntoIterator<Item = (u64, RecordKind, RecordMeta, &'a [u8])>,
    ) -> Result<(), WalError> {
        let tmp = self.path.with_extension("compact");
        let _ = std::fs::remove_file(&tmp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, e))?;
        let mut fresh = Stage {
            file,
            path: tmp.clone(),
            len: 0,
            live: BTreeMap::new(),
            live_bytes: 0,
            buf: std::mem::take(&mut self.buf),
            pending: Vec::new(),
        };
        fresh.append(records)?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io_err(&self.path, e))?;
        fresh.path = std::mem::take(&mut self.path);
        *self = fresh;
        Ok(())
    }

    /// Empties the file: nothing is held.
    pub fn reset(&mut self) -> Result<(), WalError> {
        self.live.clear();
        self.live_bytes = 0;
        if self.len == 0 {
            return Ok(());
        }
        self.file.set_len(0).map_err(|e| io_err(&self.path, e))?;
        self.len = 0;
        Ok(())
    }

    fn write_buf(&mut self) -> Result<(), WalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // A file opened without O_APPEND: write at our own length, so a
        // reset (set_len 0) is followed by writes from offset 0.
        self.file
            .seek(SeekFrom::Start(self.len))
            .and_then(|_| self.file.write_all(&self.buf))
            .map_err(|e| io_err(&self.path, e))?;
        self.len += self.buf.len() as u64;
        Ok(())
    }
}

/// Reads every whole entry; stops at the first damaged or torn one.
fn read_all(file: &mut File, len: u64) -> io::Result<Found> {
    file.seek(SeekFrom::Start(0))?;
    let mut r = io::BufReader::new(&mut *file);
    let mut held: BTreeMap<u64, Staged> = BTreeMap::new();
    let mut off = 0u64;
    let mut header = [0u8; HEADER];
    let mut body = Vec::new();
    loop {
        if off + HEADER as u64 > len {
            break;
        }
        r.read_exact(&mut header)?;
        let n = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if !(9..=MAX_BODY).contains(&n) || off + (HEADER + n) as u64 > len {
            break;
        }
        body.resize(n, 0);
        r.read_exact(&mut body)?;
        if crc32fast::hash(&body) != crc {
            break;
        }
        off += (HEADER + n) as u64;
        let seq = u64::from_le_bytes(body[1..9].try_into().unwrap_or_default());
        match body[0] {
            RECORD if n >= 30 => {
                let Some(kind) = RecordKind::from_u8(body[9]) else {
                    break;
                };
                let i64_at =
                    |i: usize| i64::from_le_bytes(body[i..i + 8].try_into().unwrap_or_default());
                let meta = RecordMeta {
                    min_ts: i64_at(10),
                    max_ts: i64_at(18),
                    samples: u32::from_le_bytes(body[26..30].try_into().unwrap_or_default()),
                };
                held.insert(
                    seq,
                    Staged {
                        seq,
                        kind,
                        meta,
                        data: body[30..].to_vec(),
                    },
                );
            }
            GONE => {
                held.remove(&seq);
            }
            _ => break,
        }
    }
    Ok(Found {
        records: held.into_values().collect(),
        torn_bytes: len - off,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(samples: u32) -> RecordMeta {
        RecordMeta {
            min_ts: 1_000,
            max_ts: 2_000,
            samples,
        }
    }

    fn stage(dir: &Path) -> Stage {
        let (s, found) = Stage::open(&dir.join("run/stage")).unwrap();
        assert!(found.records.is_empty());
        s
    }

    fn reopen(dir: &Path) -> Found {
        Stage::open(&dir.join("run/stage")).unwrap().1
    }

    #[test]
    fn held_records_survive_the_process_and_gone_ones_do_not() {
        let d = tempfile::tempdir().unwrap();
        let mut s = stage(d.path());
        s.append([
            (1, RecordKind::SeriesSet, RecordMeta::default(), &b"set"[..]),
            (2, RecordKind::Samples, meta(3), &b"abc"[..]),
            (3, RecordKind::Samples, meta(4), &b"defg"[..]),
        ])
        .unwrap();
        s.forget([2]).unwrap();
        drop(s);
        let found = reopen(d.path());
        let seqs: Vec<u64> = found.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![1, 3]);
        assert_eq!(found.records[1].meta, meta(4));
        assert_eq!(found.records[1].data, b"defg");
        assert_eq!(found.records[0].kind, RecordKind::SeriesSet);
        assert_eq!(found.torn_bytes, 0);
    }

    #[test]
    fn the_file_is_emptied_once_nothing_is_held() {
        let d = tempfile::tempdir().unwrap();
        let mut s = stage(d.path());
        s.append([(1, RecordKind::Samples, meta(1), &b"x"[..])])
            .unwrap();
        assert!(!s.is_empty());
        s.forget([1]).unwrap();
        assert!(s.is_empty());
        assert_eq!(
            std::fs::metadata(d.path().join("run/stage")).unwrap().len(),
            0
        );
        // And writes start again at the beginning.
        s.append([(2, RecordKind::Samples, meta(1), &b"y"[..])])
            .unwrap();
        drop(s);
        let found = reopen(d.path());
        assert_eq!(found.records.len(), 1);
        assert_eq!(found.records[0].seq, 2);
    }

    #[test]
    fn a_torn_tail_keeps_every_whole_entry_before_it() {
        let d = tempfile::tempdir().unwrap();
        let mut s = stage(d.path());
        s.append([(1, RecordKind::Samples, meta(1), &b"one"[..])])
            .unwrap();
        s.append([(2, RecordKind::Samples, meta(1), &b"two"[..])])
            .unwrap();
        let whole = s.len();
        drop(s);
        let path = d.path().join("run/stage");
        let mut bytes = std::fs::read(&path).unwrap();
        // A third entry cut short, as a kill in the middle of a write.
        bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3]);
        std::fs::write(&path, &bytes).unwrap();
        let found = reopen(d.path());
        assert_eq!(found.records.len(), 2);
        assert_eq!(found.torn_bytes, bytes.len() as u64 - whole);
    }

    #[test]
    fn a_bad_checksum_ends_the_stage_there() {
        let d = tempfile::tempdir().unwrap();
        let mut s = stage(d.path());
        s.append([(1, RecordKind::Samples, meta(1), &b"one"[..])])
            .unwrap();
        let first = s.len() as usize;
        s.append([(2, RecordKind::Samples, meta(1), &b"two"[..])])
            .unwrap();
        drop(s);
        let path = d.path().join("run/stage");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let found = reopen(d.path());
        assert_eq!(found.records.len(), 1);
        assert_eq!(found.records[0].data, b"one");
        assert_eq!(found.torn_bytes, (bytes.len() - first) as u64);
    }

    #[test]
    fn compaction_keeps_exactly_the_live_records() {
        let d = tempfile::tempdir().unwrap();
        let mut s = stage(d.path());
        let big = vec![7u8; 64 << 10];
        for seq in 1..=40u64 {
            s.append([(seq, RecordKind::Samples, meta(1), &big[..])])
                .unwrap();
            if seq < 40 {
                s.forget([seq - 1]).unwrap();
            }
        }
        assert!(s.wants_compaction(), "len {}", s.len());
        s.compact([
            (39, RecordKind::Samples, meta(1), &big[..]),
            (40, RecordKind::Samples, meta(1), &big[..]),
        ])
        .unwrap();
        assert!(!s.wants_compaction());
        assert_eq!(s.live(), 2);
        s.forget([39]).unwrap();
        drop(s);
        let found = reopen(d.path());
        let seqs: Vec<u64> = found.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![40]);
        assert!(!d.path().join("run/stage.compact").exists());
    }

    #[test]
    fn a_link_in_place_of_the_stage_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("run")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.path().join("run/stage")).unwrap();
        assert!(Stage::open(&d.path().join("run/stage")).is_err());
    }

    #[test]
    fn the_path_names_the_wal_so_agents_can_share_a_directory() {
        let a = Stage::path_for(Path::new("/run/cairn"), Path::new("/var/lib/a/wal"));
        let b = Stage::path_for(Path::new("/run/cairn"), Path::new("/var/lib/b/wal"));
        assert_ne!(a, b);
        assert!(a.starts_with("/run/cairn"));
    }
}
