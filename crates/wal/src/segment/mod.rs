//! The default WAL engine: an append-only log of CRC-framed records in
//! size-rolled segment files.
//!
//! Owns: every file under `<wal>/segments/` and `<wal>/cursors/`, and what
//! it moves to `<wal>/quarantine/`. Must never: hand a reader a record
//! before `commit` made it durable; load a segment (or the WAL) whole into
//! memory (the index is one small entry per segment); refuse to start
//! because of what is on disk; delete a segment some registered remote has
//! not acknowledged, except through `enforce_limits`, which counts it.
//!
//! # On-disk format (version 1, all integers little-endian)
//! ```text
//! <wal>/LOCK                          advisory flock (pid inside, informational)
//! <wal>/segments/<20-digit seq>.seg   the log; seq grows by one per segment
//! <wal>/cursors/<remote>.pos          one per remote (%XX-escaped name)
//! <wal>/quarantine/                   unreadable bytes moved aside, never read
//!
//! segment  = file header, then records back to back, then optionally
//!            zeros to the end of the file (the zeroed tail, below)
//! header   = "CAIRNWAL" | version u32 = 1 | reserved u32 = 0 | seq u64      (24 bytes)
//! record   = magic 0xCA 0x1B | kind u8 | flags u8 | len u32
//!            | min_ts i64 | max_ts i64 | samples u32
//!            | payload_crc u32 | header_crc u32 | payload (len bytes)     (36 + len bytes)
//!   kind      0 = skip (a neutralised bad region), 1 = SeriesSet, 2 = Samples
//!   flags     bit 0 = copy: the SeriesSet re-emitted at the start of a segment
//!   header_crc  CRC-32 (IEEE) of the 32 header bytes before it
//!   payload_crc CRC-32 of the payload (0 and unchecked for skip records)
//! cursor file = two 512-byte slots; each slot = "CWALPOS3" | generation u64
//!            | len u16 | a cursor (below, len bytes) | crc u32 of the slot's
//!            bytes before it; the whole slot with the highest generation
//!            holds the position. Older builds wrote one cursor as the whole
//!            file; such a file is read as is and replaced at the next ack.
//! cursor   = "CWALPOS1" | segment u64 | offset u64 | crc u32 of the 24 bytes  (28 bytes)
//!          | "CWALPOS2" | segment u64 | offset u64                        (76 bytes)
//!            | end_segment u64 | end_offset u64 | total u64 | sent u64
//!            | next u64 | last_ts i64 | crc u32 of the 72 bytes
//! ```
//! Version 2 carries a `WindowMark` (see `wal::Progress`): the remote is at
//! a record boundary plus `sent` samples into the window ending at `end`.
//! It is written only while a remote is inside a window, so a cursor at a
//! record boundary stays in version 1 (which older builds read too).
//! A position is (segment seq, byte offset of a record's start); the first
//! record of a segment is at offset 24. Every segment begins with a copy of
//! the latest SeriesSet, so each segment can be read on its own; readers
//! get copies only as context (`replayed = true`): where they start reading,
//! and after a bad or neutralised region (it may have held the set).
//!
//! # Writing
//! `append` writes the record to the open segment with one `pwrite` (so a
//! kill -9 after `append` keeps it in the page cache); `commit` fdatasyncs
//! the open segment and only then publishes the new committed end to
//! readers. Rolling to a new segment first fdatasyncs the old one, then
//! creates the new one (`O_EXCL`), writes its header and the SeriesSet
//! copy, fdatasyncs it and fsyncs `segments/`. A cursor is recorded by
//! overwriting the older of its file's two slots and fdatasyncing the file
//! (no allocation: acks work on a full disk); a new or old-format file is
//! written as `<remote>.pos.tmp`, fsync, rename over `<remote>.pos`, fsync
//! `cursors/`.
//!
//! The writer keeps the open segment's file written with zeros (real
//! writes, one chunk at a time) some way past its last record, so a commit
//! overwrites blocks the file already has: its fdatasync writes data pages
//! and a journal transaction for the inode's new mtime only (ext4 journals
//! that on every write since Linux 6.2), not the bitmaps and extent tree a
//! grown file adds (see `append::zero_ahead`). It zeroes when a segment is created, at open, and
//! when an append would pass the zeroed end; a failure to zero only means a
//! plain append. A sealed segment is truncated to its last record when
//! rolled, and a discard cuts the zeros with what it discards. `max_size`
//! and `bytes` count the zeros (they are on disk).
//!
//! An all-zero tail (every byte from a record boundary to the end of the
//! file is zero) is a segment's clean end, in any segment: no damage, not
//! counted, logged or quarantined; in the open segment it stays for the
//! writer. Zeros followed by anything that is not zero are a bad region
//! like any other (below). No record starts with a zero byte, so this needs
//! no format change, and a crash in the middle of zeroing leaves fewer
//! zeros: a clean end too. An older cairn opening such a segment takes the
//! zeros for a torn tail: one incident, 0 samples counted, the zeros (at
//! most one chunk) moved to quarantine and the file truncated there; no
//! record is lost.
//!
//! Segments are deleted only when every registered remote's cursor is past
//! them (or by `enforce_limits`, after the moved cursors are durable).
//! After a failed write (full disk), an open segment every remote has
//! acknowledged to its end is rolled and deleted at the next ack or append,
//! so acknowledged data never pins a full disk; outside that, a segment
//! rolls only when full (rolling at every ack would cost SD-card writes).
//! If `append` or `commit` fails (ENOSPC, EIO), every record appended since
//! the last successful commit is discarded: the file is truncated back to
//! the committed end (segments created since are deleted) and fdatasync'd,
//! so the caller, which still holds those collections, appends them again
//! later without duplicates. (After a failed fsync the page cache cannot be
//! trusted, so nothing written since the last good commit is kept.)
//!
//! # Guarantees after kill -9 or power loss
//! Every record whose `commit` returned Ok is read back after restart, and
//! every remote's cursor is at or before where its last `ack` returned Ok
//! (so records are delivered at least once; a duplicate can only be a
//! record sent but not yet acked). Records appended but not committed may
//! or may not survive (after kill -9 they do, being in the page cache).
//! This assumes "powersafe overwrite" as SQLite does: writing a sector does
//! not damage bytes outside it. It holds for every file system that honours
//! fsync; cheap flash that corrupts old sectors on power loss is corruption.
//!
//! # Recovery and corruption: what exactly is lost
//! At open every segment's record headers are checked (header CRC; payloads
//! are skipped by seeking), the newest segment's payloads too. Older
//! payloads are checked when a reader reads them. Whenever a record is bad
//! (bad magic or header CRC, length past the end, payload CRC mismatch),
//! cairn looks for the next record whose header AND payload CRCs are valid
//! ("resync"; a false match needs 48 bits of luck and a matching payload
//! CRC). Then, for a bad region `[x, y)`:
//! - a valid record follows (`y` found): the region is copied to
//!   `quarantine/<seq>.<x>.bad` and neutralised in place by writing a skip
//!   header over its start (so it is found, counted and logged only once).
//!   Lost: exactly the records in the region; with a bit flip in a payload
//!   or a header that is one record, and all records after it survive.
//! - nothing valid follows: the region runs to the end of the segment. It
//!   is copied to quarantine (without the zeros that trail it, though
//!   never less than the bad record's own length) and the segment truncated
//!   at `x` (in the open segment at run time: neutralised instead). This is the torn tail a
//!   crash leaves in the newest segment (it was never committed unless the
//!   disk lost data) and a truncated older segment. Lost: the records from
//!   `x` on in that segment; later segments are unaffected.
//!
//! - the first bad record is a SeriesSet whose header is readable: the
//!   Samples records after it up to the next SeriesSet (at most ~1 MiB: the
//!   scheduler re-emits its set at least that often, and every segment
//!   starts with a copy) cannot be decoded without it, so the region is
//!   extended over them and their samples are counted with it, once. A
//!   SeriesSet whose header is unreadable cannot be told from a Samples
//!   record: the records that needed it are counted by the sender
//!   (`undecodable`) when it reads them.
//!
//! Each incident adds 1 to `corruptions`, the samples of the first bad
//! record (and of the records that need it) to `dropped["corruption"]` when
//! its header was readable (a region
//! whose header is unreadable counts 0 samples: its size is unknowable; its
//! bytes are counted in `quarantined_bytes`), and logs one warning line.
//!
//! A segment file whose 24-byte header is wrong (garbage, another version,
//! the wrong seq), that is empty or that is a directory is moved whole to
//! quarantine (one incident, 0 samples) — except an empty or partly written
//! newest segment, the normal result of a crash while rolling, which is
//! reinitialised silently. A cursor file that is unreadable is reset to the
//! oldest record (one incident: at-least-once wins, the remote gets
//! duplicates); one past the committed end is clamped to it (one incident);
//! one not at a record start moves to the next record start (one incident);
//! one before the oldest segment moves to its start (normal after limits).
//! quarantine/ is capped at max_size/8 (at least 1 MiB): oldest files go.
//!
//! # Where each part lives
//! - `mod.rs`: the engine type (`SegmentWal` and its shared state), the
//!   options, and the `Wal` trait impl, which only delegates.
//! - `format`: the byte layouts above and the record probe/verify/resync
//!   primitives; no state, no writes.
//! - `index`: the one-entry-per-segment index, the counters and `State`.
//! - `open`: opening and recovery (the scan at open, cursor files read and
//!   put on record starts).
//! - `append`: the writer (append, commit, roll, discard after a failure).
//! - `repair`: run-time repair of a bad region (quarantine, neutralise,
//!   count once).
//! - `cursors`: cursor files, acks, deletion, limits and `stats`.
//! - `read`: the reader handed to senders.
//! - `status`: `cairn wal status`, read-only (no lock, nothing written).

mod append;
mod cursors;
mod format;
mod index;
mod open;
mod read;
mod repair;
mod status;

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use self::append::Writer;
use self::format::seg_name;
use self::index::State;
use self::read::SegReader;
use super::files::Quarantine;
use super::{
    Dropped, Position, Progress, RecordKind, RecordMeta, Wal, WalError, WalReader, WalStats,
};

pub use self::format::{FILE_HDR, MAX_RECORD};
pub use self::status::status;

/// Segment size for the default `max_size`; smaller WALs get smaller
/// segments (max_size/8, at least 64 KiB) so whole-segment deletion stays
/// fine-grained. 8 MiB ≈ 1000 collections of 8 KB: a reader opening
/// mid-segment scans at most that many headers.
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 << 20;

/// How much the writer zeroes at a time ahead of itself. Measured on an
/// ext4 loop device (defaults, 4 KiB blocks), device KiB per commit of a
/// 4,400-byte record (one 1 s collection) + fdatasync: appending 32.1;
/// zeroed ahead in chunks of 32 KiB 15.0, 64 KiB 14.3, 128 KiB 14.2, 256
/// KiB 13.9, 512 KiB 15.5, 1 MiB 15.4 (the zeros past the last record are
/// written too); of a 20,000-byte record: appending 43.7, 128 KiB 45.4, 1
/// MiB 44.3 (large commits gain nothing: the zeros cost what the journal
/// did). Past 64 KiB the chunk barely matters; 128 KiB keeps what a roll
/// cuts off, and what a small WAL holds in zeros, small.
const ZERO_CHUNK: u64 = 128 << 10;

#[derive(Debug, Clone)]
pub struct SegmentOptions {
    /// 0 = unbounded.
    pub max_size: u64,
    /// 0 = unbounded.
    pub max_age_ms: i64,
    pub segment_bytes: u64,
}

impl SegmentOptions {
    pub fn new(max_size: u64, max_age_ms: i64) -> Self {
        let segment_bytes = if max_size == 0 {
            DEFAULT_SEGMENT_BYTES
        } else {
            (max_size / 8).clamp(64 << 10, DEFAULT_SEGMENT_BYTES)
        };
        SegmentOptions {
            max_size,
            max_age_ms,
            segment_bytes,
        }
    }

    /// How far ahead of itself the writer zeroes the open segment, in one
    /// write each time it passes the zeroed end (`append::zero_ahead`):
    /// ZERO_CHUNK, at most an eighth of a segment.
    fn zero_chunk(&self) -> u64 {
        ZERO_CHUNK.min(self.segment_bytes / 8).max(1)
    }

    fn quarantine_cap(&self) -> u64 {
        if self.max_size == 0 {
            64 << 20
        } else {
            (self.max_size / 8).max(1 << 20)
        }
    }
}

pub struct SegmentWal {
    sh: Arc<Shared>,
}

struct Shared {
    root: PathBuf,
    segments: PathBuf,
    cursors_dir: PathBuf,
    opts: SegmentOptions,
    quarantine: Quarantine,
    // Lock order: writer → acks → state; repair → state. Disk I/O happens
    // under `writer`, `acks` or `repair`, never under `state`, so readers
    // (which take `state` briefly per record) never wait for an fsync.
    writer: Mutex<Writer>,
    acks: Mutex<()>,
    repair: Mutex<()>,
    state: Mutex<State>,
    /// Each remote's last recorded progress; its window mark counts only
    /// while `at` equals the remote's cursor in `state` (limits move
    /// cursors without touching this). Written under `acks`.
    marks: Mutex<HashMap<String, Progress>>,
    tx: watch::Sender<Position>,
    _lock: File,
    /// The file system's block size (`statvfs`), for `device_bytes`.
    block_size: u64,
    /// `WalStats::device_bytes`.
    device_bytes: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn seg_path(&self, seq: u64) -> PathBuf {
        self.segments.join(seg_name(seq))
    }

    fn committed(&self) -> Position {
        *self.tx.borrow()
    }

    fn publish(&self, p: Position) {
        self.tx.send_replace(p);
    }
}

impl Wal for SegmentWal {
    fn append(
        &self,
        kind: RecordKind,
        meta: RecordMeta,
        data: &[u8],
    ) -> Result<Position, WalError> {
        self.sh.append(kind, meta, data)
    }

    fn commit(&self) -> Result<Position, WalError> {
        self.sh.commit()
    }

    fn committed(&self) -> Position {
        self.sh.committed()
    }

    fn subscribe(&self) -> watch::Receiver<Position> {
        self.sh.tx.subscribe()
    }

    fn reader(&self, from: Position) -> Result<Box<dyn WalReader>, WalError> {
        let mut r = SegReader {
            sh: self.sh.clone(),
            pos: from,
            file: None,
            replay: None,
            want_context: false,
            need_set: false,
            retries: 0,
        };
        r.seek(from)?;
        Ok(Box::new(r))
    }

    fn register_remotes(&self, names: &[String]) -> Result<(), WalError> {
        self.sh.register_remotes(names)
    }

    fn cursor(&self, remote: &str) -> Position {
        self.progress(remote).at
    }

    fn ack(&self, remote: &str, upto: Position) -> Result<(), WalError> {
        self.ack_progress(remote, Progress::at(upto))
    }

    fn progress(&self, remote: &str) -> Progress {
        self.sh.progress(remote)
    }

    fn ack_progress(&self, remote: &str, p: Progress) -> Result<(), WalError> {
        self.sh.ack_progress(remote, p)?;
        // A full disk gets acknowledged space back at once.
        self.sh.reclaim_after_ack()
    }

    fn enforce_limits(&self, now_ms: i64) -> Result<Dropped, WalError> {
        self.sh.enforce_limits(now_ms)
    }

    fn stats(&self) -> WalStats {
        self.sh.stats()
    }
}

#[cfg(test)]
mod tests;
