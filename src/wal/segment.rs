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
//! segment  = file header, then records back to back
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
//!   is copied to quarantine and the segment truncated at `x` (in the open
//!   segment at run time: neutralised instead). This is the torn tail a
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

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::files::{self, fsync_dir, io_err, lock, read_full_at, Quarantine};
use super::{
    Dropped, Position, Progress, Record, RecordKind, RecordMeta, RemoteStatus, Wal, WalError,
    WalReader, WalStats, WindowMark,
};

const FILE_MAGIC: &[u8; 8] = b"CAIRNWAL";
const FILE_VERSION: u32 = 1;
/// Offset of a segment's first record.
pub const FILE_HDR: u64 = 24;
const REC_MAGIC: [u8; 2] = [0xCA, 0x1B];
const REC_HDR: usize = 36;
const KIND_SKIP: u8 = 0;
const FLAG_COPY: u8 = 1;
/// A header claiming more is garbage (and `append` refuses more).
pub const MAX_RECORD: u32 = 64 << 20;
const CURSOR_MAGIC: &[u8; 8] = b"CWALPOS1";
const CURSOR_LEN: usize = 28;
const CURSOR2_MAGIC: &[u8; 8] = b"CWALPOS2";
const CURSOR2_LEN: usize = 76;
const SLOT_MAGIC: &[u8; 8] = b"CWALPOS3";
/// A slotted cursor file is two of these, each in its own 512-byte sector,
/// so a write torn by a power cut damages at most the slot being written.
const SLOT_LEN: usize = 512;
/// magic | generation u64 | payload length u16, then the payload, then the
/// CRC-32 of everything before it in the slot.
const SLOT_HDR: usize = 18;
/// Segment size for the default `max_size`; smaller WALs get smaller
/// segments (max_size/8, at least 64 KiB) so whole-segment deletion stays
/// fine-grained. 8 MiB ≈ 1000 collections of 8 KB: a reader opening
/// mid-segment scans at most that many headers.
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 << 20;

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

    fn quarantine_cap(&self) -> u64 {
        if self.max_size == 0 {
            64 << 20
        } else {
            (self.max_size / 8).max(1 << 20)
        }
    }
}

// ---------------------------------------------------------------------------
// Record and file headers

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hdr {
    kind: u8,
    flags: u8,
    len: u32,
    meta: RecordMeta,
    pcrc: u32,
}

impl Hdr {
    fn encode(&self) -> [u8; REC_HDR] {
        let mut b = [0u8; REC_HDR];
        b[0..2].copy_from_slice(&REC_MAGIC);
        b[2] = self.kind;
        b[3] = self.flags;
        b[4..8].copy_from_slice(&self.len.to_le_bytes());
        b[8..16].copy_from_slice(&self.meta.min_ts.to_le_bytes());
        b[16..24].copy_from_slice(&self.meta.max_ts.to_le_bytes());
        b[24..28].copy_from_slice(&self.meta.samples.to_le_bytes());
        b[28..32].copy_from_slice(&self.pcrc.to_le_bytes());
        let hcrc = crc32fast::hash(&b[..32]);
        b[32..36].copy_from_slice(&hcrc.to_le_bytes());
        b
    }

    fn decode(b: &[u8; REC_HDR]) -> Option<Hdr> {
        if b[0..2] != REC_MAGIC || u32_at(b, 32) != crc32fast::hash(&b[..32]) {
            return None;
        }
        let h = Hdr {
            kind: b[2],
            flags: b[3],
            len: u32_at(b, 4),
            meta: RecordMeta {
                min_ts: i64_at(b, 8),
                max_ts: i64_at(b, 16),
                samples: u32_at(b, 24),
            },
            pcrc: u32_at(b, 28),
        };
        let kind_ok = h.kind == KIND_SKIP || RecordKind::from_u8(h.kind).is_some();
        if !kind_ok || h.flags & !FLAG_COPY != 0 || (h.kind != KIND_SKIP && h.len > MAX_RECORD) {
            return None;
        }
        Some(h)
    }

    fn total(&self) -> u64 {
        REC_HDR as u64 + self.len as u64
    }

    fn is_copy(&self) -> bool {
        self.flags & FLAG_COPY != 0
    }

    fn skip(region: u64) -> Hdr {
        Hdr {
            kind: KIND_SKIP,
            flags: 0,
            len: (region - REC_HDR as u64).min(u32::MAX as u64) as u32,
            meta: RecordMeta::default(),
            pcrc: 0,
        }
    }
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[i..i + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

fn i64_at(b: &[u8], i: usize) -> i64 {
    u64_at(b, i) as i64
}

fn file_header(seq: u64) -> [u8; FILE_HDR as usize] {
    let mut b = [0u8; FILE_HDR as usize];
    b[0..8].copy_from_slice(FILE_MAGIC);
    b[8..12].copy_from_slice(&FILE_VERSION.to_le_bytes());
    b[16..24].copy_from_slice(&seq.to_le_bytes());
    b
}

fn seg_name(seq: u64) -> String {
    format!("{seq:020}.seg")
}

fn parse_seg_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Version 2 when `p` carries a window mark, else version 1.
fn encode_progress(p: &Progress) -> Vec<u8> {
    let Some(w) = p.window else {
        return encode_cursor(p.at).to_vec();
    };
    let mut b = Vec::with_capacity(CURSOR2_LEN);
    b.extend_from_slice(CURSOR2_MAGIC);
    for v in [
        p.at.segment,
        p.at.offset,
        w.end.segment,
        w.end.offset,
        w.total,
        w.sent,
        w.next,
    ] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&w.last_ts.to_le_bytes());
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Either version; an inconsistent mark (`Progress::valid_window`) is
/// reported as unreadable like any other damage.
fn decode_progress(b: &[u8]) -> Option<Progress> {
    if b.len() == CURSOR_LEN {
        return decode_cursor(b).map(Progress::at);
    }
    if b.len() != CURSOR2_LEN
        || &b[0..8] != CURSOR2_MAGIC
        || u32_at(b, 72) != crc32fast::hash(&b[..72])
    {
        return None;
    }
    let p = Progress {
        at: Position {
            segment: u64_at(b, 8),
            offset: u64_at(b, 16),
        },
        window: Some(WindowMark {
            end: Position {
                segment: u64_at(b, 24),
                offset: u64_at(b, 32),
            },
            total: u64_at(b, 40),
            sent: u64_at(b, 48),
            next: u64_at(b, 56),
            last_ts: i64_at(b, 64),
        }),
    };
    p.valid_window().then_some(p)
}

/// One slot of a slotted cursor file: `p` as version 1 or 2, at
/// generation `gen`.
fn encode_slot(gen: u64, p: &Progress) -> [u8; SLOT_LEN] {
    let payload = encode_progress(p);
    let mut b = [0u8; SLOT_LEN];
    b[0..8].copy_from_slice(SLOT_MAGIC);
    b[8..16].copy_from_slice(&gen.to_le_bytes());
    b[16..18].copy_from_slice(&(payload.len() as u16).to_le_bytes());
    let end = SLOT_HDR + payload.len();
    b[SLOT_HDR..end].copy_from_slice(&payload);
    let crc = crc32fast::hash(&b[..end]);
    b[end..end + 4].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The generation and progress of a slot, if it is whole.
fn decode_slot(b: &[u8]) -> Option<(u64, Progress)> {
    if b.len() < SLOT_HDR || &b[0..8] != SLOT_MAGIC {
        return None;
    }
    let len = u16::from_le_bytes([b[16], b[17]]) as usize;
    let end = SLOT_HDR + len;
    if end + 4 > b.len() || u32_at(b, end) != crc32fast::hash(&b[..end]) {
        return None;
    }
    Some((u64_at(b, 8), decode_progress(&b[SLOT_HDR..end])?))
}

/// The newest whole slot of a slotted file: (slot index, generation,
/// progress).
fn newest_slot(b: &[u8]) -> Option<(usize, u64, Progress)> {
    if b.len() != 2 * SLOT_LEN {
        return None;
    }
    (0..2)
        .filter_map(|i| decode_slot(&b[i * SLOT_LEN..(i + 1) * SLOT_LEN]).map(|(g, p)| (i, g, p)))
        .max_by_key(|&(_, g, _)| g)
}

/// A cursor file's content: slotted (the newest whole slot), or a whole
/// file of version 1 or 2 as older builds wrote it.
fn decode_cursor_file(b: &[u8]) -> Option<Progress> {
    if b.len() == 2 * SLOT_LEN {
        return newest_slot(b).map(|(_, _, p)| p);
    }
    decode_progress(b)
}

fn encode_cursor(p: Position) -> [u8; CURSOR_LEN] {
    let mut b = [0u8; CURSOR_LEN];
    b[0..8].copy_from_slice(CURSOR_MAGIC);
    b[8..16].copy_from_slice(&p.segment.to_le_bytes());
    b[16..24].copy_from_slice(&p.offset.to_le_bytes());
    let crc = crc32fast::hash(&b[..24]);
    b[24..28].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode_cursor(b: &[u8]) -> Option<Position> {
    if b.len() != CURSOR_LEN
        || &b[0..8] != CURSOR_MAGIC
        || u32_at(b, 24) != crc32fast::hash(&b[..24])
    {
        return None;
    }
    Some(Position {
        segment: u64_at(b, 8),
        offset: u64_at(b, 16),
    })
}

/// What is at an offset of a segment.
#[derive(Debug)]
enum Probe {
    Ok(Hdr),
    /// Unreadable; the header if it alone was valid (so its meta is known).
    Bad(Option<Hdr>),
}

/// Reads the header at `off` and checks it fits before `limit`.
fn probe(f: &File, off: u64, limit: u64) -> io::Result<Probe> {
    if off + REC_HDR as u64 > limit {
        return Ok(Probe::Bad(None));
    }
    let mut b = [0u8; REC_HDR];
    if read_full_at(f, &mut b, off)? < REC_HDR {
        return Ok(Probe::Bad(None));
    }
    let Some(h) = Hdr::decode(&b) else {
        return Ok(Probe::Bad(None));
    };
    if off + h.total() > limit {
        return Ok(Probe::Bad(Some(h)));
    }
    Ok(Probe::Ok(h))
}

/// Reads the payload of the record at `off` into `buf`; false if its CRC
/// does not match (or the file ends early).
fn read_payload(f: &File, off: u64, h: &Hdr, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.clear();
    buf.resize(h.len as usize, 0);
    let n = read_full_at(f, buf, off + REC_HDR as u64)?;
    Ok(n == buf.len() && crc32fast::hash(buf) == h.pcrc)
}

/// A fully valid record (header and payload CRCs) at `off`?
fn valid_at(f: &File, off: u64, limit: u64, scratch: &mut Vec<u8>) -> io::Result<Option<Hdr>> {
    match probe(f, off, limit)? {
        Probe::Ok(h) if h.kind == KIND_SKIP => Ok(Some(h)),
        Probe::Ok(h) => Ok(read_payload(f, off, &h, scratch)?.then_some(h)),
        Probe::Bad(_) => Ok(None),
    }
}

/// The first offset in `[from, limit)` where a fully valid record starts.
fn resync(f: &File, from: u64, limit: u64) -> io::Result<Option<u64>> {
    let mut buf = vec![0u8; 64 << 10];
    let mut scratch = Vec::new();
    let mut base = from;
    while base < limit {
        let want = ((limit - base) as usize).min(buf.len());
        let n = read_full_at(f, &mut buf[..want], base)?;
        if n == 0 {
            break;
        }
        for i in 0..n {
            if buf[i] == REC_MAGIC[0]
                && (i + 1 == n || buf[i + 1] == REC_MAGIC[1])
                && valid_at(f, base + i as u64, limit, &mut scratch)?.is_some()
            {
                return Ok(Some(base + i as u64));
            }
        }
        base += n as u64;
    }
    Ok(None)
}

// ---------------------------------------------------------------------------
// In-memory index: one entry per segment

/// Records after a damaged SeriesSet that cannot be decoded without it.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    records: u64,
    samples: u64,
}

/// Samples records depend on the latest SeriesSet before them, so when a
/// SeriesSet is lost the records after it, up to the next SeriesSet (a copy
/// or not; the scheduler writes one at least every 1 MiB of records), are
/// lost with it. Returns where that span ends (None: at `limit`) and what
/// it holds, from headers only.
fn dependent_span(f: &File, from: u64, limit: u64) -> io::Result<(Option<u64>, Span)> {
    let mut off = from;
    let mut span = Span::default();
    while off < limit {
        match probe(f, off, limit)? {
            Probe::Ok(h) if h.kind == RecordKind::SeriesSet as u8 => return Ok((Some(off), span)),
            Probe::Ok(h) => {
                if h.kind == RecordKind::Samples as u8 {
                    span.records += 1;
                    span.samples += u64::from(h.meta.samples);
                }
                off += h.total();
            }
            // Another incident: handled (and counted) on its own.
            Probe::Bad(_) => return Ok((Some(off), span)),
        }
    }
    Ok((None, span))
}

/// Extends a bad region that starts with a (non-copy) SeriesSet over the
/// records that need it.
fn extend_over_dependents(
    f: &File,
    hdr: Option<Hdr>,
    resume: Option<u64>,
    limit: u64,
) -> io::Result<(Option<u64>, Span)> {
    match (hdr, resume) {
        (Some(h), Some(y)) if h.kind == RecordKind::SeriesSet as u8 && !h.is_copy() => {
            dependent_span(f, y, limit)
        }
        _ => Ok((resume, Span::default())),
    }
}

#[derive(Debug, Clone, Default)]
struct Seg {
    /// End of the last record (the file length, for all but a segment
    /// being written).
    len: u64,
    /// Records readers get (not copies, not skips) and their samples.
    records: u64,
    samples: u64,
    min_ts: Option<i64>,
    max_ts: Option<i64>,
    /// Offset of the latest SeriesSet (copy or not) in the segment.
    last_set: Option<u64>,
}

impl Seg {
    fn add(&mut self, off: u64, h: &Hdr) {
        self.len = self.len.max(off + h.total());
        if h.kind == RecordKind::SeriesSet as u8 {
            self.last_set = Some(off);
        }
        if h.kind == KIND_SKIP || h.is_copy() {
            return;
        }
        self.records += 1;
        self.samples += h.meta.samples as u64;
        if h.meta.samples > 0 {
            self.min_ts = Some(self.min_ts.map_or(h.meta.min_ts, |t| t.min(h.meta.min_ts)));
            self.max_ts = Some(self.max_ts.map_or(h.meta.max_ts, |t| t.max(h.meta.max_ts)));
        }
    }

    fn forget(&mut self, h: &Hdr) {
        if h.kind != KIND_SKIP && !h.is_copy() {
            self.records = self.records.saturating_sub(1);
            self.samples = self.samples.saturating_sub(h.meta.samples as u64);
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    corruptions: u64,
    dropped: Dropped,
    quarantined_bytes: u64,
}

/// Backlog of one remote inside the segment its cursor is in, scanned from
/// the cursor and extended as that segment grows.
#[derive(Debug, Clone, Copy)]
struct PartialScan {
    cursor: Position,
    scanned_to: u64,
    samples: u64,
    min_ts: Option<i64>,
}

struct State {
    segs: BTreeMap<u64, Seg>,
    open_seq: u64,
    cursors: BTreeMap<String, Position>,
    counters: Counters,
    /// Incidents handled by this process: (seq, offset) → where reading
    /// resumes. Keeps counting and logging to once per incident.
    repaired: HashMap<(u64, u64), u64>,
    partial: HashMap<String, PartialScan>,
}

impl State {
    fn first_seq(&self) -> u64 {
        self.segs.keys().next().copied().unwrap_or(self.open_seq)
    }

    fn next_seq_after(&self, seq: u64) -> Option<u64> {
        self.segs.range(seq + 1..).next().map(|(s, _)| *s)
    }

    fn oldest(&self) -> Position {
        Position {
            segment: self.first_seq(),
            offset: FILE_HDR,
        }
    }

    /// Sealed segments every registered remote is past (none when no remote
    /// is registered: then only the limits delete data).
    fn deletable(&self) -> Vec<u64> {
        let Some(min) = self.cursors.values().min().copied() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (&seq, seg) in &self.segs {
            if seq >= self.open_seq {
                break;
            }
            if min.segment > seq || (min.segment == seq && min.offset >= seg.len) {
                out.push(seq);
            } else {
                break;
            }
        }
        out
    }

    /// A sealed segment's end position becomes the next segment's start,
    /// so "past segment S" is one comparison.
    fn normalise(&self, p: Position) -> Position {
        match self.segs.get(&p.segment) {
            Some(seg) if p.segment < self.open_seq && p.offset >= seg.len => {
                match self.next_seq_after(p.segment) {
                    Some(n) => Position {
                        segment: n,
                        offset: FILE_HDR,
                    },
                    None => p,
                }
            }
            Some(_) => p,
            None => match self.next_seq_after(p.segment) {
                Some(n) if p.segment < n => Position {
                    segment: n,
                    offset: FILE_HDR,
                },
                _ => p,
            },
        }
    }
}

// ---------------------------------------------------------------------------
// The writer

#[derive(Debug, Clone)]
struct SetCopy {
    meta: RecordMeta,
    data: Vec<u8>,
}

#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// The next record write stops after this many bytes with ENOSPC.
    pub write_partial: Option<usize>,
    /// The next fdatasync fails with EIO.
    pub sync_eio: bool,
}

struct Writer {
    file: File,
    seq: u64,
    written: u64,
    /// Offset after the segment's SeriesSet copy: a segment holding nothing
    /// more is never rolled (a huge record gets a segment of its own).
    body_start: u64,
    committed: Position,
    /// Index entry and body_start of `committed.segment` at the last commit.
    snapshot: (Seg, u64),
    set_committed: Option<SetCopy>,
    set_pending: Option<SetCopy>,
    dirty: bool,
    /// A discard failed: the next append or commit retries it first.
    broken: bool,
    /// The last append or commit failed (full disk): a fully acked open
    /// segment is then rolled and deleted as soon as acks allow, so
    /// acknowledged data never pins a full disk.
    starved: bool,
    buf: Vec<u8>,
    #[cfg(test)]
    faults: Faults,
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
}

fn sync_data(f: &File, #[cfg(test)] faults: &mut Faults) -> io::Result<()> {
    #[cfg(test)]
    if std::mem::take(&mut faults.sync_eio) {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    f.sync_data()
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

    /// Counts and logs one incident.
    #[allow(clippy::too_many_arguments)]
    fn count_incident(
        &self,
        what: &str,
        seq: u64,
        off: u64,
        hdr: Option<Hdr>,
        bytes: u64,
        dest: &str,
        span: Span,
    ) {
        let mut st = lock(&self.state);
        st.counters.corruptions += 1;
        st.counters.quarantined_bytes += bytes;
        let samples = hdr
            .filter(|h| !h.is_copy())
            .map(|h| h.meta.samples as u64 + span.samples);
        if let Some(n) = samples {
            *st.counters.dropped.entry("corruption").or_insert(0) += n;
        }
        drop(st);
        let lost = match samples {
            Some(n) if span.records > 0 => format!(
                "{n} samples lost (the series set and the {} records after it that need it)",
                span.records
            ),
            Some(n) => format!("{n} samples lost"),
            None => "samples unknown (header unreadable)".to_string(),
        };
        tracing::warn!(
            "WAL corruption: {what} in segment {seq} at offset {off}; {bytes} bytes moved to quarantine/{dest}, {lost}; carrying on"
        );
    }

    /// Quarantines the bad region starting at `x` of segment `seq` and
    /// returns where reading resumes (the segment end when nothing valid
    /// follows; `u64::MAX` if the segment is gone). Used by readers and
    /// stats at run time: once per incident per process.
    fn repair_at(&self, seq: u64, x: u64, hdr: Option<Hdr>) -> io::Result<u64> {
        let _g = lock(&self.repair);
        let committed = self.committed();
        let (limit, whole) = {
            let st = lock(&self.state);
            if let Some(&r) = st.repaired.get(&(seq, x)) {
                return Ok(r);
            }
            let Some(seg) = st.segs.get(&seq) else {
                return Ok(u64::MAX);
            };
            if seq == committed.segment {
                (committed.offset, false)
            } else {
                // Only a sealed, fully committed segment may be truncated.
                (seg.len, seq < committed.segment)
            }
        };
        let path = self.seg_path(seq);
        let f = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(u64::MAX),
            Err(e) => return Err(e),
        };
        // Read failures can be transient; only repair what is still bad.
        let mut scratch = Vec::new();
        if valid_at(&f, x, limit, &mut scratch)?.is_some() {
            return Ok(x);
        }
        let resume = resync(&f, x + 1, limit)?;
        let (resume, span) = extend_over_dependents(&f, hdr, resume, limit)?;
        // A lost SeriesSet leaves a skip record, never a truncation: a
        // reader passing it later must know to take the next segment's copy.
        let lost_set = hdr.is_some_and(|h| h.kind == RecordKind::SeriesSet as u8);
        let whole = whole && !lost_set;
        let (end, fixed) = fix_region(&self.quarantine, &f, seq, x, resume, limit, whole)?;
        {
            let mut st = lock(&self.state);
            if let Some(seg) = st.segs.get_mut(&seq) {
                if let Some(h) = hdr {
                    seg.forget(&h);
                }
                seg.records = seg.records.saturating_sub(span.records);
                seg.samples = seg.samples.saturating_sub(span.samples);
                if resume.is_none() && whole {
                    seg.len = x;
                }
            }
            st.repaired.insert((seq, x), end);
        }
        let what = if hdr.is_some() {
            "bad payload or length"
        } else {
            "bad record header"
        };
        self.count_incident(
            what,
            seq,
            x,
            hdr,
            fixed,
            &format!("{seq:020}.{x}.bad"),
            span,
        );
        Ok(end)
    }

    fn write_cursor(&self, name: &str, p: Position) -> io::Result<()> {
        self.write_progress(name, &Progress::at(p))
    }

    /// Records `p` durably. An existing slotted file is updated in place:
    /// the slot not holding the newest progress is overwritten and
    /// fdatasync'd. That allocates nothing, so acks (and with them the
    /// deletion of acknowledged segments) go on when the disk is full, and
    /// it costs one sync of one block instead of a new file, a rename and
    /// two syncs (SD-card writes, drain speed). A write torn by a power cut
    /// leaves the other slot, the previous progress: at most a re-send.
    /// A missing or old-format file is replaced whole (tmp, fsync, rename,
    /// fsync of the directory).
    fn write_progress(&self, name: &str, p: &Progress) -> io::Result<()> {
        let file = format!("{}.pos", files::encode_name(name));
        let dst = self.cursors_dir.join(&file);
        match OpenOptions::new().read(true).write(true).open(&dst) {
            Ok(f) => {
                let mut cur = [0u8; 2 * SLOT_LEN];
                let whole = f.metadata()?.len() == cur.len() as u64
                    && read_full_at(&f, &mut cur, 0)? == cur.len();
                if whole {
                    let (slot, gen) = match newest_slot(&cur) {
                        Some((i, g, _)) => (1 - i, g.wrapping_add(1)),
                        None => (0, 1),
                    };
                    f.write_all_at(&encode_slot(gen, p), (slot * SLOT_LEN) as u64)?;
                    return f.sync_data();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let tmp = self.cursors_dir.join(format!("{file}.tmp"));
        let mut b = [0u8; 2 * SLOT_LEN];
        b[..SLOT_LEN].copy_from_slice(&encode_slot(1, p));
        let mut f = File::create(&tmp)?;
        io::Write::write_all(&mut f, &b)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &dst)?;
        fsync_dir(&self.cursors_dir)
    }

    fn remove_cursor_file(&self, name: &str) -> io::Result<()> {
        let p = self
            .cursors_dir
            .join(format!("{}.pos", files::encode_name(name)));
        match fs::remove_file(&p) {
            Ok(()) => fsync_dir(&self.cursors_dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes sealed segments every remote is past. Caller holds `acks`.
    fn delete_passed(&self) -> Result<(), WalError> {
        let doomed = {
            let mut st = lock(&self.state);
            let d = st.deletable();
            for s in &d {
                st.segs.remove(s);
            }
            d
        };
        self.unlink_segments(&doomed)
    }

    fn unlink_segments(&self, seqs: &[u64]) -> Result<(), WalError> {
        if seqs.is_empty() {
            return Ok(());
        }
        for &s in seqs {
            let p = self.seg_path(s);
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&p, e)),
            }
        }
        fsync_dir(&self.segments).map_err(|e| io_err(&self.segments, e))
    }

    /// Samples of `seq` from `from` to `limit`, reading headers only;
    /// repairs bad regions it meets.
    fn scan_samples(&self, seq: u64, from: u64, limit: u64) -> io::Result<(u64, Option<i64>)> {
        let f = match File::open(self.seg_path(seq)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, None)),
            Err(e) => return Err(e),
        };
        let mut off = from;
        let (mut samples, mut min_ts) = (0u64, None::<i64>);
        while off < limit {
            match probe(&f, off, limit)? {
                Probe::Ok(h) => {
                    if h.kind != KIND_SKIP && !h.is_copy() && h.meta.samples > 0 {
                        samples += h.meta.samples as u64;
                        min_ts = Some(min_ts.map_or(h.meta.min_ts, |t| t.min(h.meta.min_ts)));
                    }
                    off += h.total();
                }
                Probe::Bad(h) => off = self.repair_at(seq, off, h)?,
            }
        }
        Ok((samples, min_ts))
    }
}

/// Moves `[x, resume or limit)` of segment `seq` to quarantine and makes it
/// unreadable for good: a skip header when a valid record follows (or the
/// segment may not be truncated), else truncation at `x`. Returns (where
/// reading resumes, bytes quarantined).
fn fix_region(
    q: &Quarantine,
    f: &File,
    seq: u64,
    x: u64,
    resume: Option<u64>,
    limit: u64,
    may_truncate: bool,
) -> io::Result<(u64, u64)> {
    let end = resume.unwrap_or(limit);
    let saved = q.save_region(&format!("{seq:020}.{x}.bad"), f, x, end.max(x))?;
    if resume.is_none() && may_truncate {
        f.set_len(x)?;
        f.sync_data()?;
        return Ok((x, saved));
    }
    if end >= x + REC_HDR as u64 {
        f.write_all_at(&Hdr::skip(end - x).encode(), x)?;
        f.sync_data()?;
    }
    Ok((end, saved))
}

// ---------------------------------------------------------------------------
// Opening and recovery

struct Loaded {
    segs: BTreeMap<u64, Seg>,
    body_start_last: u64,
}

impl SegmentWal {
    pub fn open(root: &Path, opts: SegmentOptions) -> Result<SegmentWal, WalError> {
        files::ensure_dir(root)?;
        let _lock = files::take_lock(root)?;
        let segments = root.join("segments");
        let cursors_dir = root.join("cursors");
        let qdir = root.join("quarantine");
        files::ensure_dir(&qdir)?;
        let quarantine = Quarantine {
            dir: qdir,
            cap: opts.quarantine_cap(),
        };
        let mut counters = Counters::default();
        for d in [&segments, &cursors_dir] {
            // A file where our directory should be: it already was moved
            // aside by ensure_dir (with one log line); count it.
            if files::ensure_dir(d)? {
                counters.corruptions += 1;
            }
        }
        let loaded = load_segments(&segments, &quarantine, &mut counters)?;
        let mut segs = loaded.segs;
        let mut body_start = loaded.body_start_last;

        let cursors = read_cursors(&cursors_dir, &mut counters);
        let max_cursor_seq = cursors.values().map(|p| p.at.segment).max().unwrap_or(0);
        let (file, seq, written) = match segs.iter().next_back().map(|(s, g)| (*s, g.len)) {
            Some((seq, len)) => {
                let p = segments.join(seg_name(seq));
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&p)
                    .map_err(|e| io_err(&p, e))?;
                (f, seq, len)
            }
            None => {
                // Never reuse a sequence number a cursor may still name.
                let seq = max_cursor_seq + 1;
                let f = create_segment(&segments, seq, None)?;
                segs.insert(
                    seq,
                    Seg {
                        len: FILE_HDR,
                        ..Seg::default()
                    },
                );
                body_start = FILE_HDR;
                (f, seq, FILE_HDR)
            }
        };
        let committed = Position {
            segment: seq,
            offset: written,
        };
        let (tx, _rx) = watch::channel(committed);
        let state = State {
            segs,
            open_seq: seq,
            cursors: BTreeMap::new(),
            counters,
            repaired: HashMap::new(),
            partial: HashMap::new(),
        };
        let snapshot = (
            state.segs.get(&seq).cloned().unwrap_or_default(),
            body_start,
        );
        let sh = Arc::new(Shared {
            root: root.to_path_buf(),
            segments,
            cursors_dir,
            opts,
            quarantine,
            writer: Mutex::new(Writer {
                file,
                seq,
                written,
                body_start,
                committed,
                snapshot,
                set_committed: None,
                set_pending: None,
                dirty: false,
                broken: false,
                starved: false,
                buf: Vec::new(),
                #[cfg(test)]
                faults: Faults::default(),
            }),
            acks: Mutex::new(()),
            repair: Mutex::new(()),
            state: Mutex::new(state),
            marks: Mutex::new(HashMap::new()),
            tx,
            _lock,
        });
        let set = sh.find_latest_set()?;
        lock(&sh.writer).set_committed = set;
        for (name, p) in cursors {
            let fixed = sh.clamp_cursor(&name, p.at)?;
            lock(&sh.state).cursors.insert(name.clone(), fixed);
            let committed = sh.committed();
            if fixed == p.at && p.window.is_some_and(|w| w.end <= committed) {
                lock(&sh.marks).insert(name, p);
            } else if p.window.is_some() {
                // The window is sent again whole: duplicates, not loss.
                tracing::warn!("WAL: cursor of remote {name:?} had progress inside a window that is no longer there; it resends that window");
                sh.write_cursor(&name, fixed)
                    .map_err(|e| io_err(&sh.cursors_dir, e))?;
            }
        }
        Ok(SegmentWal { sh })
    }

    #[cfg(test)]
    pub(crate) fn inject(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut lock(&self.sh.writer).faults)
    }

    pub fn dir(&self) -> &Path {
        &self.sh.root
    }
}

fn create_segment(dir: &Path, seq: u64, copy: Option<&SetCopy>) -> Result<File, WalError> {
    let p = dir.join(seg_name(seq));
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&p)
        .map_err(|e| io_err(&p, e))?;
    let mut b = file_header(seq).to_vec();
    if let Some(c) = copy {
        let h = Hdr {
            kind: RecordKind::SeriesSet as u8,
            flags: FLAG_COPY,
            len: c.data.len() as u32,
            meta: c.meta,
            pcrc: crc32fast::hash(&c.data),
        };
        b.extend_from_slice(&h.encode());
        b.extend_from_slice(&c.data);
    }
    let r = f
        .write_all_at(&b, 0)
        .and_then(|_| f.sync_data())
        .and_then(|_| fsync_dir(dir));
    if let Err(e) = r {
        // Leave no half-made segment behind: recovery would take it for
        // the newest one.
        let _ = fs::remove_file(&p);
        let _ = fsync_dir(dir);
        return Err(io_err(&p, e));
    }
    Ok(f)
}

/// Builds the index from `segments/`, repairing as described in the module
/// comment. Headers of all segments, payloads of the newest.
fn load_segments(dir: &Path, q: &Quarantine, c: &mut Counters) -> Result<Loaded, WalError> {
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| io_err(dir, e))?;
    for e in rd {
        let e = e.map_err(|e| io_err(dir, e))?;
        let name = e.file_name();
        let Some(seq) = name.to_str().and_then(parse_seg_name) else {
            continue; // not ours: left alone
        };
        let path = e.path();
        let is_file = fs::symlink_metadata(&path)
            .map(|m| m.is_file())
            .unwrap_or(false);
        if !is_file {
            let n = q
                .move_in(&path, &format!("{}.notafile", seg_name(seq)))
                .map_err(|e| io_err(&path, e))?;
            c.corruptions += 1;
            c.quarantined_bytes += n;
            tracing::warn!("WAL corruption: segments/{} is not a regular file; moved to quarantine; carrying on", seg_name(seq));
            continue;
        }
        found.push((seq, path));
    }
    found.sort();
    let mut segs = BTreeMap::new();
    let mut body_start_last = FILE_HDR;
    let n = found.len();
    for (i, (seq, path)) in found.into_iter().enumerate() {
        let newest = i + 1 == n;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        let len = f.metadata().map_err(|e| io_err(&path, e))?.len();
        let mut hb = [0u8; FILE_HDR as usize];
        let got = read_full_at(&f, &mut hb, 0).map_err(|e| io_err(&path, e))?;
        let want = file_header(seq);
        if got < FILE_HDR as usize && newest && hb[..got] == want[..got] && len == got as u64 {
            // A crash while creating the newest segment: make it whole.
            f.set_len(0)
                .and_then(|_| f.write_all_at(&want, 0))
                .and_then(|_| f.sync_data())
                .map_err(|e| io_err(&path, e))?;
            segs.insert(
                seq,
                Seg {
                    len: FILE_HDR,
                    ..Seg::default()
                },
            );
            body_start_last = FILE_HDR;
            continue;
        }
        if got < FILE_HDR as usize || hb != want {
            drop(f);
            let why = if len == 0 {
                "empty segment file"
            } else {
                "bad segment file header"
            };
            let bytes = q
                .move_in(&path, &seg_name(seq))
                .map_err(|e| io_err(&path, e))?;
            c.corruptions += 1;
            c.quarantined_bytes += bytes;
            tracing::warn!(
                "WAL corruption: {why} segments/{}; moved whole to quarantine ({bytes} bytes, samples unknown); carrying on",
                seg_name(seq)
            );
            continue;
        }
        let (seg, body_start) =
            scan_for_open(&f, seq, len, newest, q, c).map_err(|e| io_err(&path, e))?;
        if newest {
            body_start_last = body_start;
        }
        segs.insert(seq, seg);
    }
    Ok(Loaded {
        segs,
        body_start_last,
    })
}

/// Scans one segment at open: headers (and payloads if `verify`), fixing
/// bad regions in place. Returns its index entry and where its body starts.
fn scan_for_open(
    f: &File,
    seq: u64,
    len: u64,
    verify: bool,
    q: &Quarantine,
    c: &mut Counters,
) -> io::Result<(Seg, u64)> {
    let mut seg = Seg {
        len: FILE_HDR,
        ..Seg::default()
    };
    let mut body_start = FILE_HDR;
    let mut off = FILE_HDR;
    let mut limit = len;
    let mut buf = Vec::new();
    while off < limit {
        let bad = match probe(f, off, limit)? {
            Probe::Ok(h) if h.kind == KIND_SKIP => {
                seg.len = off + h.total();
                off += h.total();
                continue;
            }
            Probe::Ok(h) => {
                if !verify || read_payload(f, off, &h, &mut buf)? {
                    if off == body_start && h.is_copy() {
                        body_start = off + h.total();
                    }
                    seg.add(off, &h);
                    off += h.total();
                    continue;
                }
                Some(h)
            }
            Probe::Bad(h) => h,
        };
        let resume = resync(f, off + 1, limit)?;
        let (resume, span) = extend_over_dependents(f, bad, resume, limit)?;
        let (end, bytes) = fix_region(q, f, seq, off, resume, limit, true)?;
        c.corruptions += 1;
        c.quarantined_bytes += bytes;
        let counted = bad
            .filter(|h| !h.is_copy())
            .map(|h| h.meta.samples as u64 + span.samples);
        if let Some(n) = counted {
            *c.dropped.entry("corruption").or_insert(0) += n;
        }
        let lost = match counted {
            Some(n) if span.records > 0 => format!(
                "{n} samples lost (the series set and the {} records after it that need it)",
                span.records
            ),
            Some(n) => format!("{n} samples lost"),
            None => "samples unknown (header unreadable)".to_string(),
        };
        let what = match (resume, verify) {
            (None, true) => "torn or damaged tail (a crash mid-write leaves one)",
            (None, false) => "truncated or damaged segment end",
            (Some(_), _) => "damaged record",
        };
        tracing::warn!(
            "WAL corruption: {what} in segment {seq} at offset {off}; {bytes} bytes moved to quarantine/{seq:020}.{off}.bad, {lost}; carrying on"
        );
        if resume.is_none() {
            limit = off;
            seg.len = off;
            break;
        }
        seg.len = end;
        off = end;
    }
    seg.len = seg.len.max(FILE_HDR).min(limit.max(FILE_HDR));
    Ok((seg, body_start))
}

fn read_cursors(dir: &Path, c: &mut Counters) -> BTreeMap<String, Progress> {
    let mut out = BTreeMap::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let fname = e.file_name();
        let Some(s) = fname.to_str() else { continue };
        if s.ends_with(".pos.tmp") {
            // An ack interrupted before its rename: the old .pos stands.
            let _ = fs::remove_file(e.path());
            continue;
        }
        let Some(stem) = s.strip_suffix(".pos") else {
            continue;
        };
        let Some(name) = files::decode_name(stem) else {
            continue;
        };
        let p = match fs::read(e.path()) {
            Ok(b) => decode_cursor_file(&b),
            Err(_) => None,
        };
        match p {
            Some(p) => {
                out.insert(name, p);
            }
            None => {
                c.corruptions += 1;
                tracing::warn!(
                    "WAL corruption: cursor file cursors/{s} is unreadable; remote {name:?} restarts from the oldest record (it may receive duplicates); carrying on"
                );
                // Position 0 sorts before everything: clamp_cursor moves it
                // to the oldest record and rewrites the file.
                out.insert(name, Progress::default());
            }
        }
    }
    out
}

impl Shared {
    /// Puts a loaded cursor on a valid record start (see module comment)
    /// and rewrites its file if it moved.
    fn clamp_cursor(&self, name: &str, p: Position) -> Result<Position, WalError> {
        let committed = self.committed();
        let (oldest, mut fixed) = {
            let st = lock(&self.state);
            (st.oldest(), st.normalise(p))
        };
        let mut incident = None;
        // Samples the move passes over without delivering them: counted
        // as lost (`corruption`), since this remote never gets them.
        let mut skipped = 0u64;
        if p == Position::default() {
            // A new or unreadable cursor (the latter already counted).
            fixed = oldest;
        } else if fixed < oldest {
            tracing::info!("WAL: cursor of remote {name:?} was before the oldest segment (dropped by limits); moved to it");
            fixed = oldest;
        } else if fixed > committed {
            incident = Some("points past the end of the WAL; clamped to the end");
            fixed = committed;
            // Past the end of a segment that is here: only a lost tail
            // (counted where it was found). Naming a segment that is not:
            // nothing says how much of this WAL the remote had, and it
            // never gets any of it.
            let st = lock(&self.state);
            if !st.segs.contains_key(&p.segment) {
                skipped = st.segs.values().map(|g| g.samples).sum();
            }
        } else if fixed.offset > FILE_HDR && fixed < committed {
            let (aligned, straddled) = self.align(fixed)?;
            if aligned != fixed {
                incident = Some("is not at a record start; moved to the next record");
                fixed = aligned;
                skipped = straddled;
            }
        }
        if let Some(why) = incident {
            let mut st = lock(&self.state);
            st.counters.corruptions += 1;
            if skipped > 0 {
                *st.counters.dropped.entry("corruption").or_insert(0) += skipped;
            }
            drop(st);
            tracing::warn!("WAL corruption: cursor of remote {name:?} {why} ({skipped} samples skipped); carrying on");
        }
        if fixed != p {
            self.write_cursor(name, fixed)
                .map_err(|e| io_err(&self.cursors_dir, e))?;
        }
        Ok(fixed)
    }

    /// The first record start at or after `p` in its segment (normalised),
    /// and the samples of the record `p` points inside (0 if none).
    fn align(&self, p: Position) -> Result<(Position, u64), WalError> {
        let committed = self.committed();
        let limit = self.limit_of(p.segment, committed);
        let Some(limit) = limit else {
            return Ok((p, 0));
        };
        let path = self.seg_path(p.segment);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((p, 0)),
            Err(e) => return Err(io_err(&path, e)),
        };
        let mut off = FILE_HDR;
        let mut straddled = 0;
        while off < p.offset && off < limit {
            match probe(&f, off, limit).map_err(|e| io_err(&path, e))? {
                Probe::Ok(h) => {
                    let end = off + h.total();
                    if end > p.offset && h.kind != KIND_SKIP && !h.is_copy() {
                        straddled = u64::from(h.meta.samples);
                    }
                    off = end;
                }
                Probe::Bad(h) => {
                    off = self
                        .repair_at(p.segment, off, h)
                        .map_err(|e| io_err(&path, e))?;
                    if off == u64::MAX {
                        return Ok((p, 0));
                    }
                }
            }
        }
        let st = lock(&self.state);
        Ok((
            st.normalise(Position {
                segment: p.segment,
                offset: off.min(limit),
            }),
            straddled,
        ))
    }

    /// How far readers may read in `seq`; None if it is gone.
    fn limit_of(&self, seq: u64, committed: Position) -> Option<u64> {
        let st = lock(&self.state);
        let seg = st.segs.get(&seq)?;
        Some(if seq == committed.segment {
            committed.offset
        } else {
            seg.len
        })
    }

    /// The newest SeriesSet on disk, for re-emission into the next segment.
    fn find_latest_set(&self) -> Result<Option<SetCopy>, WalError> {
        let candidates: Vec<(u64, u64)> = {
            let st = lock(&self.state);
            st.segs
                .iter()
                .rev()
                .filter_map(|(s, g)| g.last_set.map(|o| (*s, o)))
                .collect()
        };
        let mut buf = Vec::new();
        for (seq, off) in candidates {
            let path = self.seg_path(seq);
            let Ok(f) = File::open(&path) else { continue };
            let limit = self.limit_of(seq, self.committed()).unwrap_or(0);
            if let Probe::Ok(h) = probe(&f, off, limit).map_err(|e| io_err(&path, e))? {
                if read_payload(&f, off, &h, &mut buf).map_err(|e| io_err(&path, e))? {
                    return Ok(Some(SetCopy {
                        meta: h.meta,
                        data: std::mem::take(&mut buf),
                    }));
                }
                self.repair_at(seq, off, Some(h))
                    .map_err(|e| io_err(&path, e))?;
            }
        }
        Ok(None)
    }
}

// ---------------------------------------------------------------------------
// Writing

impl Shared {
    fn append(
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
        w.written = at + total;
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

    /// Seals the open segment (durably) and starts the next one.
    fn roll(&self, w: &mut Writer) -> Result<(), WalError> {
        let old = self.seg_path(w.seq);
        sync_data(
            &w.file,
            #[cfg(test)]
            &mut w.faults,
        )
        .map_err(|e| io_err(&old, e))?;
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
        let start = FILE_HDR
            + copy
                .as_ref()
                .map_or(0, |c| REC_HDR as u64 + c.data.len() as u64);
        let mut seg = Seg {
            len: FILE_HDR,
            ..Seg::default()
        };
        if let Some(c) = &copy {
            let h = Hdr {
                kind: RecordKind::SeriesSet as u8,
                flags: FLAG_COPY,
                len: c.data.len() as u32,
                meta: c.meta,
                pcrc: 0,
            };
            seg.add(FILE_HDR, &h);
        }
        {
            let mut st = lock(&self.state);
            if let Some(s) = st.segs.get_mut(&w.seq) {
                s.len = w.written;
            }
            st.segs.insert(next, seg);
            st.open_seq = next;
        }
        w.file = file;
        w.seq = next;
        w.written = start;
        w.body_start = start;
        Ok(())
    }

    fn commit(&self) -> Result<Position, WalError> {
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
        w.committed = end;
        w.dirty = false;
        w.starved = false;
        if let Some(s) = w.set_pending.take() {
            w.set_committed = Some(s);
        }
        let seg = lock(&self.state)
            .segs
            .get(&w.seq)
            .cloned()
            .unwrap_or_default();
        w.snapshot = (seg, w.body_start);
        self.publish(end);
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
    fn discard(&self, w: &mut Writer) -> Result<(), WalError> {
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
        }
        let p = self.seg_path(w.seq);
        w.file.set_len(target.offset).map_err(|e| io_err(&p, e))?;
        sync_data(
            &w.file,
            #[cfg(test)]
            &mut w.faults,
        )
        .map_err(|e| io_err(&p, e))?;
        w.written = target.offset;
        w.body_start = w.snapshot.1;
        w.set_pending = None;
        w.dirty = false;
        {
            let mut st = lock(&self.state);
            st.segs.insert(w.seq, w.snapshot.0.clone());
            st.open_seq = w.seq;
        }
        w.broken = false;
        Ok(())
    }
}

impl Shared {
    /// After a roll with nothing pending: the new segment's start (its
    /// SeriesSet copy is durable) is the committed end.
    fn commit_roll(&self, w: &mut Writer) {
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
                let mut seg = Seg {
                    len: FILE_HDR,
                    ..Seg::default()
                };
                let mut start = FILE_HDR;
                if let Some(c) = &copy {
                    let h = Hdr {
                        kind: RecordKind::SeriesSet as u8,
                        flags: FLAG_COPY,
                        len: c.data.len() as u32,
                        meta: c.meta,
                        pcrc: 0,
                    };
                    seg.add(FILE_HDR, &h);
                    start += h.total();
                }
                {
                    let mut st = lock(&self.state);
                    st.segs.insert(next, seg);
                    st.open_seq = next;
                }
                w.file = file;
                w.seq = next;
                w.written = start;
                w.body_start = start;
            }
            Err(e) => return Err(e),
        }
        self.commit_roll(w);
        self.delete_passed()?;
        tracing::info!(
            "WAL: open segment {old} fully acknowledged; rolled and deleted to free the disk"
        );
        Ok(true)
    }

    /// Called after an ack: if the disk was full, gives acknowledged space
    /// back at once rather than at the writer's next attempt. Never waits
    /// for the writer (it may be in an fdatasync).
    fn reclaim_after_ack(&self) -> Result<(), WalError> {
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

// ---------------------------------------------------------------------------
// Cursors, deletion, limits

impl Shared {
    fn register_remotes(&self, names: &[String]) -> Result<(), WalError> {
        let _a = lock(&self.acks);
        let (new, gone) = {
            let st = lock(&self.state);
            let new: Vec<String> = names
                .iter()
                .filter(|n| !st.cursors.contains_key(*n))
                .cloned()
                .collect();
            let gone: Vec<String> = st
                .cursors
                .keys()
                .filter(|n| !names.contains(n))
                .cloned()
                .collect();
            (new, gone)
        };
        for n in &new {
            let oldest = lock(&self.state).oldest();
            self.write_cursor(n, oldest)
                .map_err(|e| io_err(&self.cursors_dir, e))?;
            lock(&self.state).cursors.insert(n.clone(), oldest);
        }
        for n in &gone {
            self.remove_cursor_file(n)
                .map_err(|e| io_err(&self.cursors_dir, e))?;
            let mut st = lock(&self.state);
            st.cursors.remove(n);
            st.partial.remove(n);
            drop(st);
            tracing::info!("WAL: forgot the cursor of remote {n:?} (no longer configured)");
        }
        self.delete_passed()
    }

    fn ack_progress(&self, remote: &str, p: Progress) -> Result<(), WalError> {
        let _a = lock(&self.acks);
        let committed = self.committed();
        let old = lock(&self.marks).get(remote).copied();
        let (target, moved) = {
            let st = lock(&self.state);
            let Some(cur) = st.cursors.get(remote).copied() else {
                return Err(WalError::Other(format!(
                    "ack for unregistered remote {remote:?}"
                )));
            };
            let t = st.normalise(p.at.min(committed));
            let mark = p
                .window
                .filter(|w| p.valid_window() && t == p.at && w.end <= committed);
            if t < cur {
                return Ok(()); // never backwards (e.g. limits moved it on)
            }
            if t == cur {
                let old = old.filter(|o| o.at == cur).and_then(|o| o.window);
                match (old, mark) {
                    (_, None) => return Ok(()),
                    (Some(o), Some(n))
                        if o.end == n.end
                            && (n.sent < o.sent || (n.sent == o.sent && n.next == o.next)) =>
                    {
                        return Ok(())
                    }
                    _ => {}
                }
            }
            (
                Progress {
                    at: t,
                    window: mark,
                },
                t > cur,
            )
        };
        self.write_progress(remote, &target)
            .map_err(|e| io_err(&self.cursors_dir, e))?;
        lock(&self.state)
            .cursors
            .insert(remote.to_string(), target.at);
        lock(&self.marks).insert(remote.to_string(), target);
        if moved {
            self.delete_passed()
        } else {
            Ok(())
        }
    }

    /// The remote's progress: its cursor, and the window mark recorded at
    /// that cursor if limits have not moved it since.
    fn progress(&self, remote: &str) -> Progress {
        let at = lock(&self.state)
            .cursors
            .get(remote)
            .copied()
            .unwrap_or_default();
        let window = lock(&self.marks)
            .get(remote)
            .filter(|m| m.at == at)
            .and_then(|m| m.window);
        Progress { at, window }
    }

    fn enforce_limits(&self, now_ms: i64) -> Result<Dropped, WalError> {
        let mut out = Dropped::new();
        if self.opts.max_size == 0 && self.opts.max_age_ms <= 0 {
            return Ok(out);
        }
        let mut w = lock(&self.writer);
        let _a = lock(&self.acks);
        loop {
            let (seq, seg, reason, only_open, next) = {
                let st = lock(&self.state);
                let total: u64 = st.segs.values().map(|s| s.len).sum();
                let Some((&seq, seg)) = st.segs.iter().next() else {
                    break;
                };
                let sealed = seq < st.open_seq;
                let old = self.opts.max_age_ms > 0
                    && match seg.max_ts {
                        Some(t) => t < now_ms.saturating_sub(self.opts.max_age_ms),
                        None => sealed,
                    };
                let reason = if old {
                    "max_age"
                } else if self.opts.max_size > 0 && total > self.opts.max_size {
                    "max_size"
                } else {
                    break;
                };
                (seq, seg.clone(), reason, !sealed, st.next_seq_after(seq))
            };
            if only_open {
                // Only the open segment is left and it is over a limit:
                // seal it first (never with uncommitted records in it).
                if w.dirty || w.written <= w.body_start || w.broken {
                    break;
                }
                self.roll(&mut w)?;
                self.commit_roll(&mut w);
                continue;
            }
            let Some(next) = next else { break };
            let lost = self.unsent_samples(seq, &seg)?;
            let start = Position {
                segment: next,
                offset: FILE_HDR,
            };
            let moved: Vec<String> = {
                let st = lock(&self.state);
                st.cursors
                    .iter()
                    .filter(|(_, p)| p.segment <= seq)
                    .map(|(n, _)| n.clone())
                    .collect()
            };
            for n in &moved {
                self.write_cursor(n, start)
                    .map_err(|e| io_err(&self.cursors_dir, e))?;
                lock(&self.state).cursors.insert(n.clone(), start);
            }
            lock(&self.state).segs.remove(&seq);
            self.unlink_segments(&[seq])?;
            *out.entry(reason).or_insert(0) += lost;
            if lost > 0 {
                tracing::warn!(
                    "WAL over {reason}: dropped segment {seq} with {lost} unsent samples"
                );
            }
        }
        drop(w);
        let mut st = lock(&self.state);
        for (k, v) in &out {
            *st.counters.dropped.entry(k).or_insert(0) += v;
        }
        Ok(out)
    }

    /// Samples of segment `seq` some remote has not acked (all of them
    /// when no remote is registered).
    fn unsent_samples(&self, seq: u64, seg: &Seg) -> Result<u64, WalError> {
        let min = lock(&self.state).cursors.values().min().copied();
        match min {
            None => Ok(seg.samples),
            Some(c) if c.segment > seq => Ok(0),
            Some(c) if c.segment == seq && c.offset > FILE_HDR => {
                let path = self.seg_path(seq);
                Ok(self
                    .scan_samples(seq, c.offset, seg.len)
                    .map_err(|e| io_err(&path, e))?
                    .0)
            }
            Some(_) => Ok(seg.samples),
        }
    }

    fn stats(&self) -> WalStats {
        let committed = self.committed();
        let (mut s, cursors, segs_after) = {
            let st = lock(&self.state);
            let mut s = WalStats {
                segments: st.segs.len() as u64,
                committed,
                corruptions: st.counters.corruptions,
                dropped: st.counters.dropped.clone(),
                quarantined_bytes: st.counters.quarantined_bytes,
                ..WalStats::default()
            };
            for seg in st.segs.values() {
                s.bytes += seg.len;
                s.records += seg.records;
                s.samples += seg.samples;
                s.oldest_ts = min_opt(s.oldest_ts, seg.min_ts);
                s.newest_ts = max_opt(s.newest_ts, seg.max_ts);
            }
            // Per remote: the whole segments after its cursor's segment.
            let mut after = BTreeMap::new();
            for (name, c) in &st.cursors {
                let (mut n, mut oldest) = (0u64, None);
                for (_, seg) in st.segs.range(c.segment + 1..) {
                    n += seg.samples;
                    oldest = min_opt(oldest, seg.min_ts);
                }
                after.insert(name.clone(), (n, oldest, st.partial.get(name).copied()));
            }
            (s, st.cursors.clone(), after)
        };
        for (name, c) in cursors {
            let (n, oldest, cached) = segs_after.get(&name).copied().unwrap_or((0, None, None));
            let (pn, pmin) = self
                .partial_backlog(&name, c, committed, cached)
                .unwrap_or((0, None));
            let done = self.progress(&name).window.map_or(0, |w| w.sent);
            s.remotes.insert(
                name,
                RemoteStatus {
                    cursor: c,
                    backlog_samples: (n + pn).saturating_sub(done),
                    oldest_ts: min_opt(pmin, oldest),
                },
            );
        }
        s
    }

    /// Samples from the cursor to the end of its segment: scanned once per
    /// cursor move, then extended as the open segment grows (headers only).
    fn partial_backlog(
        &self,
        name: &str,
        c: Position,
        committed: Position,
        cached: Option<PartialScan>,
    ) -> io::Result<(u64, Option<i64>)> {
        let Some(limit) = self.limit_of(c.segment, committed) else {
            return Ok((0, None));
        };
        let mut ps = match cached {
            Some(p) if p.cursor == c && p.scanned_to <= limit => p,
            _ => PartialScan {
                cursor: c,
                scanned_to: c.offset.max(FILE_HDR),
                samples: 0,
                min_ts: None,
            },
        };
        if ps.scanned_to < limit {
            let (n, m) = self.scan_samples(c.segment, ps.scanned_to, limit)?;
            ps.samples += n;
            ps.min_ts = min_opt(ps.min_ts, m);
            ps.scanned_to = limit;
        }
        lock(&self.state).partial.insert(name.to_string(), ps);
        Ok((ps.samples, ps.min_ts))
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

// ---------------------------------------------------------------------------
// Reading

struct SegReader {
    sh: Arc<Shared>,
    pos: Position,
    file: Option<(u64, File)>,
    /// The latest SeriesSet before the start, handed over first.
    replay: Option<Position>,
    /// Set at a segment start the reader jumped to: the SeriesSet copy
    /// there is handed over as context.
    want_context: bool,
    /// A bad or neutralised region was passed: it may have held the
    /// SeriesSet later records need, so the next copy is handed over too.
    need_set: bool,
    retries: u32,
}

enum Got {
    Rec(Hdr),
    /// The record was bad and is quarantined: read on from here.
    Resume(u64),
    /// The segment is gone (dropped by limits, or deleted by hand).
    Gone,
}

impl SegReader {
    /// Opens segment `seq` unless it is open already; false if it is gone.
    fn open_file(&mut self, seq: u64) -> Result<bool, WalError> {
        if self.file.as_ref().map(|(s, _)| *s) != Some(seq) {
            let p = self.sh.seg_path(seq);
            match File::open(&p) {
                Ok(f) => self.file = Some((seq, f)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.file = None;
                    return Ok(false);
                }
                Err(e) => return Err(io_err(&p, e)),
            }
        }
        Ok(true)
    }

    /// Reads the record at `at` into `rec` (header only for skips).
    fn read_at(&mut self, at: Position, limit: u64, rec: &mut Record) -> Result<Got, WalError> {
        let path = self.sh.seg_path(at.segment);
        if !self.open_file(at.segment)? {
            return Ok(Got::Gone);
        }
        let Some((_, f)) = self.file.as_ref() else {
            return Ok(Got::Gone);
        };
        let e = |e| io_err(&path, e);
        let bad = match probe(f, at.offset, limit).map_err(e)? {
            Probe::Ok(h) if h.kind == KIND_SKIP => return Ok(Got::Rec(h)),
            Probe::Ok(h) => {
                if read_payload(f, at.offset, &h, &mut rec.data).map_err(e)? {
                    return Ok(Got::Rec(h));
                }
                Some(h)
            }
            Probe::Bad(h) => h,
        };
        match self.sh.repair_at(at.segment, at.offset, bad).map_err(e)? {
            u64::MAX => Ok(Got::Gone),
            r => Ok(Got::Resume(r)),
        }
    }

    fn fill(rec: &mut Record, h: &Hdr, at: Position, replayed: bool) {
        rec.kind = RecordKind::from_u8(h.kind);
        rec.replayed = replayed;
        rec.start = at;
        rec.end = Position {
            segment: at.segment,
            offset: at.offset + h.total(),
        };
        rec.meta = h.meta;
    }

    /// Positions the reader at the first record start at or after `from`
    /// and finds the SeriesSet to replay.
    fn seek(&mut self, from: Position) -> Result<(), WalError> {
        let committed = self.sh.committed();
        let from = from.min(committed);
        let st = lock(&self.sh.state);
        let oldest = st.oldest();
        let mut p = st.normalise(from);
        if p < oldest {
            p = oldest;
        }
        drop(st);
        self.pos = p;
        if p.offset <= FILE_HDR {
            self.pos.offset = FILE_HDR;
            self.want_context = true;
            return Ok(());
        }
        let Some(limit) = self.sh.limit_of(p.segment, committed) else {
            self.want_context = true;
            return Ok(());
        };
        let path = self.sh.seg_path(p.segment);
        if !self.open_file(p.segment)? {
            return Ok(());
        }
        let Some((_, f)) = self.file.as_ref() else {
            return Ok(());
        };
        let e = |e| io_err(&path, e);
        let mut off = FILE_HDR;
        let mut last_set = None;
        while off < limit {
            match probe(f, off, limit).map_err(e)? {
                Probe::Ok(h) => {
                    if off >= p.offset && !h.is_copy() {
                        break;
                    }
                    if h.kind == RecordKind::SeriesSet as u8 {
                        last_set = Some(off);
                    }
                    off += h.total();
                }
                Probe::Bad(h) => match self.sh.repair_at(p.segment, off, h).map_err(e)? {
                    u64::MAX => break,
                    r if r > off => off = r,
                    _ => {
                        return Err(WalError::Other(format!(
                            "{}: unstable read at offset {off}",
                            path.display()
                        )))
                    }
                },
            }
        }
        self.pos.offset = off.min(limit);
        self.replay = last_set.map(|o| Position {
            segment: p.segment,
            offset: o,
        });
        Ok(())
    }
}

impl WalReader for SegReader {
    fn next(&mut self, rec: &mut Record) -> Result<bool, WalError> {
        if let Some(at) = self.replay.take() {
            let committed = self.sh.committed();
            if let Some(limit) = self.sh.limit_of(at.segment, committed) {
                if let Got::Rec(h) = self.read_at(at, limit, rec)? {
                    if h.kind != KIND_SKIP {
                        Self::fill(rec, &h, at, true);
                        return Ok(true);
                    }
                }
            }
        }
        loop {
            // Let go of a segment as soon as the position leaves it: an
            // open descriptor keeps a deleted file's blocks allocated, and
            // a reader caught up on a retired segment would otherwise pin
            // the space a full disk is waiting for.
            if matches!(&self.file, Some((seq, _)) if *seq != self.pos.segment) {
                self.file = None;
            }
            let committed = self.sh.committed();
            if self.pos >= committed {
                return Ok(false);
            }
            let (limit, next, first) = {
                let st = lock(&self.sh.state);
                let limit = st.segs.get(&self.pos.segment).map(|seg| {
                    if self.pos.segment == committed.segment {
                        committed.offset
                    } else {
                        seg.len
                    }
                });
                (limit, st.next_seq_after(self.pos.segment), st.first_seq())
            };
            let Some(limit) = limit else {
                // Dropped by limits (or vanished): go on with what is left.
                let seq = next.unwrap_or(first).max(first);
                if seq <= self.pos.segment {
                    return Ok(false);
                }
                self.pos = Position {
                    segment: seq,
                    offset: FILE_HDR,
                };
                self.want_context = true;
                continue;
            };
            if self.pos.offset >= limit {
                match next {
                    Some(n) if self.pos.segment < committed.segment => {
                        self.pos = Position {
                            segment: n,
                            offset: FILE_HDR,
                        };
                        continue;
                    }
                    _ => return Ok(false),
                }
            }
            let at = self.pos;
            let h = match self.read_at(at, limit, rec)? {
                Got::Rec(h) => h,
                Got::Gone => {
                    // The file vanished under us: go on with the next one.
                    match next {
                        Some(n) if at.segment < committed.segment => {
                            self.pos = Position {
                                segment: n,
                                offset: FILE_HDR,
                            };
                            self.want_context = true;
                            continue;
                        }
                        _ => return Ok(false),
                    }
                }
                Got::Resume(r) if r > at.offset => {
                    // Quarantined: go on after it.
                    self.pos.offset = r;
                    self.need_set = true;
                    continue;
                }
                Got::Resume(_) => {
                    // Truncated here (nothing valid followed), or bad, then
                    // fine on a second look: read it again, but never spin
                    // on a flapping disk.
                    self.need_set = true;
                    self.retries += 1;
                    if self.retries > 3 {
                        let p = self.sh.seg_path(at.segment);
                        return Err(WalError::Other(format!(
                            "{}: unstable read at offset {}",
                            p.display(),
                            at.offset
                        )));
                    }
                    continue;
                }
            };
            self.retries = 0;
            self.pos.offset = at.offset + h.total();
            if h.kind == KIND_SKIP {
                self.need_set = true;
                continue;
            }
            if h.is_copy() && !self.want_context && !self.need_set {
                continue;
            }
            let replayed = h.is_copy();
            self.want_context = false;
            if h.kind == RecordKind::SeriesSet as u8 {
                self.need_set = false;
            }
            Self::fill(rec, &h, at, replayed);
            return Ok(true);
        }
    }
}

// ---------------------------------------------------------------------------
// The trait

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

// ---------------------------------------------------------------------------
// Read-only status (`cairn wal status`): no lock, nothing written.

/// Reads the WAL at `root` without writing anything or taking `LOCK`, so it
/// works while an agent is appending. Bad regions are skipped (by resync)
/// and counted in `corruptions`, not repaired; the newest segment is read
/// up to its last complete record (an agent may be mid-write).
pub fn status(root: &Path) -> Result<WalStats, WalError> {
    let dir = root.join("segments");
    let mut s = WalStats::default();
    let mut found: Vec<u64> = match fs::read_dir(&dir) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(parse_seg_name))
            .collect(),
        Err(e) => return Err(io_err(&dir, e)),
    };
    found.sort_unstable();
    let mut counters = Counters::default();
    let cursors = read_cursors_ro(&root.join("cursors"), &mut counters);
    // Per segment: (seq, samples, min_ts, and per cursor in it the partial
    // sample count after it).
    let mut per_seg: Vec<(u64, Seg)> = Vec::new();
    let mut partial: BTreeMap<String, (u64, Option<i64>)> = BTreeMap::new();
    let n = found.len();
    for (i, seq) in found.into_iter().enumerate() {
        let p = dir.join(seg_name(seq));
        let Ok(f) = File::open(&p) else { continue };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut hb = [0u8; FILE_HDR as usize];
        if read_full_at(&f, &mut hb, 0).unwrap_or(0) < FILE_HDR as usize || hb != file_header(seq) {
            if !(i + 1 == n && len < FILE_HDR) {
                counters.corruptions += 1;
            }
            continue;
        }
        let mut seg = Seg {
            len: FILE_HDR,
            ..Seg::default()
        };
        let mut off = FILE_HDR;
        let here: Vec<(&String, u64)> = cursors
            .iter()
            .filter(|(_, c)| c.at.segment == seq)
            .map(|(n, c)| (n, c.at.offset))
            .collect();
        let newest = i + 1 == n;
        while off < len {
            match probe(&f, off, len).map_err(|e| io_err(&p, e))? {
                Probe::Ok(h) => {
                    seg.add(off, &h);
                    if h.kind != KIND_SKIP && !h.is_copy() && h.meta.samples > 0 {
                        for (name, c) in &here {
                            if off >= *c {
                                let e = partial.entry((*name).clone()).or_insert((0, None));
                                e.0 += h.meta.samples as u64;
                                e.1 = min_opt(e.1, Some(h.meta.min_ts));
                            }
                        }
                    }
                    off += h.total();
                }
                Probe::Bad(_) => match resync(&f, off + 1, len).map_err(|e| io_err(&p, e))? {
                    Some(r) => {
                        counters.corruptions += 1;
                        off = r;
                    }
                    None => {
                        if !newest {
                            counters.corruptions += 1;
                        }
                        break;
                    }
                },
            }
        }
        seg.len = len.max(FILE_HDR);
        per_seg.push((seq, seg));
    }
    for (seq, seg) in &per_seg {
        s.segments += 1;
        s.bytes += seg.len;
        s.records += seg.records;
        s.samples += seg.samples;
        s.oldest_ts = min_opt(s.oldest_ts, seg.min_ts);
        s.newest_ts = max_opt(s.newest_ts, seg.max_ts);
        s.committed = Position {
            segment: *seq,
            offset: seg.len,
        };
    }
    for (name, p) in cursors {
        let c = p.at;
        let (mut n, mut oldest) = partial.get(&name).copied().unwrap_or((0, None));
        for (seq, seg) in &per_seg {
            if *seq > c.segment {
                n += seg.samples;
                oldest = min_opt(oldest, seg.min_ts);
            }
        }
        let done = p.window.map_or(0, |w| w.sent);
        s.remotes.insert(
            name,
            RemoteStatus {
                cursor: c,
                backlog_samples: n.saturating_sub(done),
                oldest_ts: oldest,
            },
        );
    }
    s.corruptions = counters.corruptions;
    Ok(s)
}

fn read_cursors_ro(dir: &Path, c: &mut Counters) -> BTreeMap<String, Progress> {
    let mut out = BTreeMap::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let fname = e.file_name();
        let Some(stem) = fname.to_str().and_then(|s| s.strip_suffix(".pos")) else {
            continue;
        };
        let Some(name) = files::decode_name(stem) else {
            continue;
        };
        match fs::read(e.path()).ok().and_then(|b| decode_cursor_file(&b)) {
            Some(p) => {
                out.insert(name, p);
            }
            None => {
                c.corruptions += 1;
                out.insert(name, Progress::default());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
