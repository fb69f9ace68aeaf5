//! The writer: appending, committing, rolling to a new segment,
//! discarding what a failed write left, and giving acknowledged space back
//! on a full disk.
//!
//! Owns: the open segment and the committed end readers see. Must never:
//! publish a position before `commit` made it durable, or delete a
//! segment some registered remote has not acknowledged.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;

use super::format::{seg_name, Hdr, FILE_HDR, FLAG_COPY, MAX_RECORD, REC_HDR};
use super::index::Seg;
use super::open::create_segment;
use super::Shared;
use crate::files::{io_err, lock};
use crate::{Position, RecordKind, RecordMeta, WalError};

#[derive(Debug, Clone)]
pub(super) struct SetCopy {
    pub(super) meta: RecordMeta,
    pub(super) data: Vec<u8>,
}

impl SetCopy {
    /// The header of this copy at a segment's start. `pcrc` is 0 where only
    /// the index needs it (the index never reads the payload CRC).
    pub(super) fn header(&self, pcrc: u32) -> Hdr {
        Hdr {
            kind: RecordKind::SeriesSet as u8,
            flags: FLAG_COPY,
            len: self.data.len() as u32,
            meta: self.meta,
            pcrc,
        }
    }
}

#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// The next record write stops after this many bytes with ENOSPC.
    pub write_partial: Option<usize>,
    /// The next fdatasync fails with EIO.
    pub sync_eio: bool,
    /// The next zeroing stops after this many bytes with ENOSPC.
    pub zero_partial: Option<u64>,
}

/// Zeroing ahead stops while the file system has less than this many
/// chunks free (see `zero_ahead`).
const ZERO_MIN_FREE_CHUNKS: u64 = 8;

/// Bytes an unprivileged writer may still use on the file system.
// The field types are u32 on 32-bit ARM (widened here), u64 elsewhere.
#[allow(clippy::unnecessary_cast)]
fn free_bytes(s: &nix::sys::statvfs::Statvfs) -> u64 {
    (s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64)
}

/// Zeros written ahead of the writer come from here: no allocation.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

pub(super) struct Writer {
    pub(super) file: File,
    pub(super) seq: u64,
    pub(super) written: u64,
    /// The open segment file's size: `[written, zeroed)` is all zeros,
    /// written ahead so that appends overwrite blocks the file already has
    /// (see `zero_ahead`).
    pub(super) zeroed: u64,
    /// Offset after the segment's SeriesSet copy: a segment holding nothing
    /// more is never rolled (a huge record gets a segment of its own).
    pub(super) body_start: u64,
    pub(super) committed: Position,
    /// Index entry and body_start of `committed.segment` at the last commit.
    pub(super) snapshot: (Seg, u64),
    pub(super) set_committed: Option<SetCopy>,
    pub(super) set_pending: Option<SetCopy>,
    pub(super) dirty: bool,
    /// A discard failed: the next append or commit retries it first.
    pub(super) broken: bool,
    /// The last append or commit failed (full disk): a fully acked open
    /// segment is then rolled and deleted as soon as acks allow, so
    /// acknowledged data never pins a full disk.
    pub(super) starved: bool,
    pub(super) buf: Vec<u8>,
    /// `[dirty_lo, dirty_hi)`: bytes of the open segment written since its
    /// last sync (appends and zeros only ever extend it at its end).
    pub(super) dirty_lo: u64,
    pub(super) dirty_hi: u64,
    #[cfg(test)]
    pub(super) faults: Faults,
}

impl Writer {
    fn wrote(&mut self, at: u64, len: u64) {
        if self.dirty_lo == self.dirty_hi {
            (self.dirty_lo, self.dirty_hi) = (at, at + len);
        } else {
            self.dirty_lo = self.dirty_lo.min(at);
            self.dirty_hi = self.dirty_hi.max(at + len);
        }
    }

    /// The open segment was synced up to `end` (what lies past it was cut
    /// off): counts the blocks it wrote.
    fn synced(&mut self, sh: &Shared, end: u64) {
        sh.count_blocks(self.dirty_lo, self.dirty_hi.min(end));
        (self.dirty_lo, self.dirty_hi) = (0, 0);
    }

    /// Counts what was written since the last sync as if synced: for
    /// writes no sync follows soon, which the kernel's writeback sends.
    pub(super) fn count_unsynced(&mut self, sh: &Shared) {
        let end = self.dirty_hi;
        self.synced(sh, end);
    }
}

pub(super) fn sync_data(f: &File, #[cfg(test)] faults: &mut Faults) -> io::Result<()> {
    #[cfg(test)]
    if std::mem::take(&mut faults.sync_eio) {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    f.sync_data()
}

impl Shared {
    /// Adds the file-system blocks `[lo, hi)` spans to `device_bytes`.
    pub(super) fn count_blocks(&self, lo: u64, hi: u64) {
        if hi > lo {
            let b = self.block_size;
            let n = hi.div_ceil(b) - lo / b;
            self.device_bytes
                .fetch_add(n * b, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub(super) fn append(
        &self,
        kind: RecordKind,
        meta: RecordMeta,
        data: &[u8],
    ) -> Result<Position, WalError> {
        let mut w = lock(&self.writer);
        if w.broken {
            self.discard(&mut w)?;
        }
        if w.starved && !w.dirty {
            let _a = lock(&self.acks);
            if let Err(e) = self.retire_acked_open(&mut w) {
                return Err(self.fail(&mut w, e));
            }
        }
        if data.len() > MAX_RECORD as usize {
            return Err(WalError::Other(format!(
                "record of {} bytes exceeds the WAL's {MAX_RECORD}",
                data.len()
            )));
        }
        let total = REC_HDR as u64 + data.len() as u64;
        if w.written > w.body_start && w.written + total > self.opts.segment_bytes {
            if let Err(e) = self.roll(&mut w) {
                return Err(self.fail(&mut w, e));
            }
        }
        let rec_end = w.written + total;
        self.zero_ahead(&mut w, rec_end);
        let h = Hdr {
            kind: kind as u8,
            flags: 0,
            len: data.len() as u32,
            meta,
            pcrc: crc32fast::hash(data),
        };
        let at = w.written;
        let mut buf = std::mem::take(&mut w.buf);
        buf.clear();
        buf.extend_from_slice(&h.encode());
        buf.extend_from_slice(data);
        let r = self.write_record(&mut w, &buf, at);
        w.buf = buf;
        if let Err(e) = r {
            let err = io_err(&self.seg_path(w.seq), e);
            return Err(self.fail(&mut w, err));
        }
        w.wrote(at, total);
        w.written = at + total;
        // Past the zeros (zeroing failed) the record itself grew the file.
        w.zeroed = w.zeroed.max(w.written);
        w.dirty = true;
        if kind == RecordKind::SeriesSet {
            w.set_pending = Some(SetCopy {
                meta,
                data: data.to_vec(),
            });
        }
        let seq = w.seq;
        drop(w);
        let mut st = lock(&self.state);
        if let Some(seg) = st.segs.get_mut(&seq) {
            seg.add(at, &h);
        }
        Ok(Position {
            segment: seq,
            offset: at,
        })
    }

    fn write_record(&self, w: &mut Writer, buf: &[u8], at: u64) -> io::Result<()> {
        #[cfg(test)]
        if let Some(n) = w.faults.write_partial.take() {
            w.file.write_all_at(&buf[..n.min(buf.len())], at)?;
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        w.file.write_all_at(buf, at)
    }

    /// Makes sure the bytes up to `end` lie in zeros the open segment file
    /// already holds; if not, writes zeros up to the next chunk boundary
    /// after `end` (never past the segment's size unless one record is
    /// bigger). Why: ext4 journals every fdatasync that grows a file or
    /// allocates blocks (descriptor, inode, bitmaps, commit block: about
    /// 20-30 KiB at the device, measured on a loop device per 7 KiB commit:
    /// 30.4 KiB appending, 22.1 KiB into a fallocate'd range, whose
    /// unwritten extents are converted and journaled at each commit, 10.9
    /// KiB into blocks already written with zeros). So the zeros are real
    /// writes, not fallocate: each block is allocated and its zeros reach
    /// the disk once per chunk, and every commit after that writes its
    /// data pages plus the inode's journal transaction for its mtime (ext4
    /// journals that on every write since Linux 6.2, lazytime or not:
    /// measured 20.7 KiB per 3,000-byte commit 11 s apart in place against
    /// 29.3 KiB appending).
    ///
    /// A failure (ENOSPC, EIO) is no error: zeros hold no data, a partial
    /// run of them is a clean end like a whole one (`Step::ZeroTail`), and
    /// the record is then written as before, growing the file; its own
    /// write and the commit's fdatasync report any real failure and are
    /// handled as always, so nothing is lost and a full disk behaves as
    /// without zeroing (the next append past the zeros tries again). While
    /// the writer recovers from a failed write (`starved`: a full disk) it
    /// zeroes nothing, so the space acknowledged data gives back goes to
    /// records only, as without zeroing; the first good commit ends that.
    ///
    /// Nor does it zero on a nearly full file system (less than
    /// `ZERO_MIN_FREE_CHUNKS` chunks free): zeros taking the last free
    /// blocks would make every commit between failures leave the open
    /// segment not fully acknowledged, so a full disk would never give
    /// acknowledged space back (the full-disk recovery test caught this).
    pub(super) fn zero_ahead(&self, w: &mut Writer, end: u64) {
        if end <= w.zeroed || w.starved {
            return;
        }
        let chunk = self.opts.zero_chunk();
        let room = nix::sys::statvfs::fstatvfs(&w.file).map(|s| free_bytes(&s));
        if !matches!(room, Ok(free) if free >= chunk.saturating_mul(ZERO_MIN_FREE_CHUNKS)) {
            return;
        }
        let target = ((end / chunk + 1) * chunk).min(self.opts.segment_bytes.max(end));
        #[cfg(test)]
        let fault = w.faults.zero_partial.take();
        #[cfg(test)]
        let stop = fault.map_or(target, |n| target.min(w.zeroed + n));
        #[cfg(not(test))]
        let stop = target;
        let mut off = w.zeroed;
        let mut r = Ok(());
        while off < stop {
            let n = ((stop - off) as usize).min(ZEROS.len());
            match w.file.write_at(&ZEROS[..n], off) {
                Ok(0) => {
                    r = Err(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(k) => off += k as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
        #[cfg(test)]
        if fault.is_some() && r.is_ok() {
            r = Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        if off > w.zeroed {
            let from = w.zeroed;
            w.wrote(from, off - from);
            w.zeroed = off;
            if let Some(seg) = lock(&self.state).segs.get_mut(&w.seq) {
                seg.file_len = off;
            }
        }
        if let Err(e) = r {
            tracing::debug!(
                "WAL: could not zero segment {} ahead of the writer ({e}); appending without",
                w.seq
            );
        }
    }

    /// Seals the open segment (durably) and starts the next one.
    pub(super) fn roll(&self, w: &mut Writer) -> Result<(), WalError> {
        let old = self.seg_path(w.seq);
        // A sealed segment carries no zeroed tail: its size is its data
        // (readers and limits count it so). If the truncation fails, the
        // tail stays, and is read as a clean end and counted in `file_len`.
        if w.zeroed > w.written {
            match w.file.set_len(w.written) {
                Ok(()) => w.zeroed = w.written,
                Err(e) => tracing::debug!(
                    "WAL: could not cut the zeroed tail of segment {} ({e}); it stays",
                    w.seq
                ),
            }
        }
        sync_data(
            &w.file,
            #[cfg(test)]
            &mut w.faults,
        )
        .map_err(|e| io_err(&old, e))?;
        let end = w.zeroed;
        w.synced(self, end);
        let next = w.seq + 1;
        let stale = self.seg_path(next);
        if fs::symlink_metadata(&stale).is_ok() {
            // Only a leftover we do not index can be there (we hold LOCK).
            let n = self
                .quarantine
                .move_in(&stale, &format!("{}.stale", seg_name(next)))
                .map_err(|e| io_err(&stale, e))?;
            tracing::warn!(
                "WAL: an unindexed segments/{} was in the way; moved to quarantine ({n} bytes)",
                seg_name(next)
            );
        }
        let copy = w.set_pending.clone().or_else(|| w.set_committed.clone());
        let file = create_segment(&self.segments, next, copy.as_ref())?;
        self.count_new_segment(copy.as_ref());
        self.switch_to(w, next, file, copy.as_ref());
        Ok(())
    }

    /// A segment `create_segment` wrote and synced: its header and copy.
    fn count_new_segment(&self, copy: Option<&SetCopy>) {
        let len = FILE_HDR + copy.map_or(0, |c| c.header(0).total());
        self.count_blocks(0, len);
    }

    /// Makes `file`, just created as segment `next` holding only `copy`,
    /// the open segment; the index entry of the one before (if it is still
    /// indexed) ends where the writer stopped.
    fn switch_to(&self, w: &mut Writer, next: u64, file: File, copy: Option<&SetCopy>) {
        let mut seg = Seg {
            len: FILE_HDR,
            ..Seg::default()
        };
        let mut start = FILE_HDR;
        if let Some(c) = copy {
            let h = c.header(0);
            seg.add(FILE_HDR, &h);
            start += h.total();
        }
        {
            let mut st = lock(&self.state);
            if let Some(s) = st.segs.get_mut(&w.seq) {
                s.len = w.written;
                s.file_len = w.zeroed;
            }
            st.segs.insert(next, seg);
            st.open_seq = next;
        }
        w.file = file;
        w.seq = next;
        w.written = start;
        w.zeroed = start;
        w.body_start = start;
        self.zero_ahead(w, start + 1);
    }

    pub(super) fn commit(&self) -> Result<Position, WalError> {
        let mut guard = lock(&self.writer);
        let w = &mut *guard;
        if w.broken {
            self.discard(w)?;
            return Ok(w.committed);
        }
        let end = Position {
            segment: w.seq,
            offset: w.written,
        };
        if !w.dirty && end == w.committed {
            return Ok(w.committed);
        }
        if let Err(e) = sync_data(
            &w.file,
            #[cfg(test)]
            &mut w.faults,
        ) {
            let err = io_err(&self.seg_path(w.seq), e);
            return Err(self.fail(w, err));
        }
        let synced = w.zeroed;
        w.synced(self, synced);
        w.dirty = false;
        w.starved = false;
        if let Some(s) = w.set_pending.take() {
            w.set_committed = Some(s);
        }
        self.publish_written(w);
        Ok(end)
    }

    /// An append or commit failed: discard everything since the last
    /// commit, then report the original error.
    fn fail(&self, w: &mut Writer, err: WalError) -> WalError {
        w.starved = true;
        if let Err(e) = self.discard(w) {
            tracing::warn!(
                "WAL: could not undo a failed write yet ({e}); will retry before the next write"
            );
        }
        err
    }

    /// Truncates the log back to the committed end (deleting segments
    /// created since) durably; sets `broken` until that succeeds.
    pub(super) fn discard(&self, w: &mut Writer) -> Result<(), WalError> {
        w.broken = true;
        let target = w.committed;
        if w.seq != target.segment {
            let p = self.seg_path(target.segment);
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&p)
                .map_err(|e| io_err(&p, e))?;
            let newer: Vec<u64> = {
                let mut st = lock(&self.state);
                let v: Vec<u64> = st
                    .segs
                    .range(target.segment + 1..)
                    .map(|(s, _)| *s)
                    .collect();
                for s in &v {
                    st.segs.remove(s);
                }
                st.open_seq = target.segment;
                v
            };
            self.unlink_segments(&newer)?;
            w.file = f;
            w.seq = target.segment;
            // What the deleted segments had dirty never reaches the device.
            (w.dirty_lo, w.dirty_hi) = (0, 0);
        }
        let p = self.seg_path(w.seq);
        w.file.set_len(target.offset).map_err(|e| io_err(&p, e))?;
        sync_data(
            &w.file,
            #[cfg(test)]
            &mut w.faults,
        )
        .map_err(|e| io_err(&p, e))?;
        w.synced(self, target.offset);
        w.written = target.offset;
        // The zeroed tail went with what was discarded; the next append
        // zeroes ahead again.
        w.zeroed = target.offset;
        w.body_start = w.snapshot.1;
        w.set_pending = None;
        w.dirty = false;
        {
            let mut st = lock(&self.state);
            let mut seg = w.snapshot.0.clone();
            seg.file_len = target.offset;
            st.segs.insert(w.seq, seg);
            st.open_seq = w.seq;
        }
        w.broken = false;
        Ok(())
    }
}

impl Shared {
    /// The writer's end is durable (a commit, or a roll with nothing
    /// pending: the new segment's SeriesSet copy is synced): it becomes the
    /// committed end readers see, and what a failed write goes back to.
    pub(super) fn publish_written(&self, w: &mut Writer) {
        w.committed = Position {
            segment: w.seq,
            offset: w.written,
        };
        let s = lock(&self.state)
            .segs
            .get(&w.seq)
            .cloned()
            .unwrap_or_default();
        w.snapshot = (s, w.body_start);
        self.publish(w.committed);
    }

    /// When every registered remote has acknowledged the whole open segment
    /// (and nothing uncommitted is in it), rolls it and deletes it, so a
    /// full disk gets the space back. Rolling needs room for the new
    /// segment's header and SeriesSet copy; on a disk too full for that,
    /// the acknowledged segment is deleted first (a crash in between leaves
    /// no segment: `open` starts the next one, cursors normalise to it).
    /// Returns whether it rolled. Caller holds `writer` and `acks`.
    fn retire_acked_open(&self, w: &mut Writer) -> Result<bool, WalError> {
        if w.dirty || w.broken || w.written <= w.body_start {
            return Ok(false);
        }
        let end = Position {
            segment: w.seq,
            offset: w.written,
        };
        if w.committed != end {
            return Ok(false);
        }
        let acked = {
            let st = lock(&self.state);
            let min = st.cursors.values().min().map(|p| st.normalise(*p));
            matches!(min, Some(m) if m >= end)
        };
        if !acked {
            return Ok(false);
        }
        let old = w.seq;
        match self.roll(w) {
            Ok(()) => {}
            Err(WalError::DiskFull { .. }) => {
                lock(&self.state).segs.remove(&old);
                self.unlink_segments(&[old])?;
                let copy = w.set_committed.clone();
                let next = old + 1;
                let file = match create_segment(&self.segments, next, copy.as_ref()) {
                    Ok(f) => (f, copy),
                    // Not even room for the copy: readers that start in
                    // the new segment wait for the next SeriesSet.
                    Err(_) => (create_segment(&self.segments, next, None)?, None),
                };
                let (file, copy) = file;
                self.count_new_segment(copy.as_ref());
                // `old` is no longer indexed: only `next` is entered.
                self.switch_to(w, next, file, copy.as_ref());
            }
            Err(e) => return Err(e),
        }
        self.publish_written(w);
        self.delete_passed()?;
        tracing::info!(
            "WAL: open segment {old} fully acknowledged; rolled and deleted to free the disk"
        );
        Ok(true)
    }

    /// Called after an ack: if the disk was full, gives acknowledged space
    /// back at once rather than at the writer's next attempt. Never waits
    /// for the writer (it may be in an fdatasync).
    pub(super) fn reclaim_after_ack(&self) -> Result<(), WalError> {
        let mut w = match self.writer.try_lock() {
            Ok(w) => w,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(()),
        };
        if !w.starved {
            return Ok(());
        }
        let _a = lock(&self.acks);
        self.retire_acked_open(&mut w).map(|_| ())
    }
}
