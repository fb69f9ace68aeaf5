//! The on-disk format: record and file headers, cursor files, and the
//! primitives that probe, verify and resync records in a segment file.
//!
//! Owns: every byte layout and constant of the format. Must never: hold
//! engine state, take a lock, or write to a file (it reads and encodes).

use std::fs::File;
use std::io;

use crate::files::read_full_at;
use crate::{Position, Progress, RecordKind, RecordMeta, WindowMark};

const FILE_MAGIC: &[u8; 8] = b"CAIRNWAL";
const FILE_VERSION: u32 = 1;
/// Offset of a segment's first record.
pub const FILE_HDR: u64 = 24;
const REC_MAGIC: [u8; 2] = [0xCA, 0x1B];
pub(super) const REC_HDR: usize = 36;
pub(super) const KIND_SKIP: u8 = 0;
pub(super) const FLAG_COPY: u8 = 1;
/// A header claiming more is garbage (and `append` refuses more).
pub const MAX_RECORD: u32 = 64 << 20;
const CURSOR_MAGIC: &[u8; 8] = b"CWALPOS1";
const CURSOR_LEN: usize = 28;
const CURSOR2_MAGIC: &[u8; 8] = b"CWALPOS2";
const CURSOR2_LEN: usize = 76;
const SLOT_MAGIC: &[u8; 8] = b"CWALPOS3";
/// A slotted cursor file is two of these, each in its own 512-byte sector,
/// so a write torn by a power cut damages at most the slot being written.
pub(super) const SLOT_LEN: usize = 512;
/// magic | generation u64 | payload length u16, then the payload, then the
/// CRC-32 of everything before it in the slot.
const SLOT_HDR: usize = 18;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hdr {
    pub(super) kind: u8,
    pub(super) flags: u8,
    pub(super) len: u32,
    pub(super) meta: RecordMeta,
    pub(super) pcrc: u32,
}

impl Hdr {
    pub(super) fn encode(&self) -> [u8; REC_HDR] {
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

    pub(super) fn total(&self) -> u64 {
        REC_HDR as u64 + self.len as u64
    }

    pub(super) fn is_copy(&self) -> bool {
        self.flags & FLAG_COPY != 0
    }

    pub(super) fn skip(region: u64) -> Hdr {
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

pub(super) fn file_header(seq: u64) -> [u8; FILE_HDR as usize] {
    let mut b = [0u8; FILE_HDR as usize];
    b[0..8].copy_from_slice(FILE_MAGIC);
    b[8..12].copy_from_slice(&FILE_VERSION.to_le_bytes());
    b[16..24].copy_from_slice(&seq.to_le_bytes());
    b
}

pub(super) fn seg_name(seq: u64) -> String {
    format!("{seq:020}.seg")
}

pub(super) fn parse_seg_name(name: &str) -> Option<u64> {
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
pub(super) fn encode_slot(gen: u64, p: &Progress) -> [u8; SLOT_LEN] {
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
pub(super) fn decode_slot(b: &[u8]) -> Option<(u64, Progress)> {
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
pub(super) fn newest_slot(b: &[u8]) -> Option<(usize, u64, Progress)> {
    if b.len() != 2 * SLOT_LEN {
        return None;
    }
    (0..2)
        .filter_map(|i| decode_slot(&b[i * SLOT_LEN..(i + 1) * SLOT_LEN]).map(|(g, p)| (i, g, p)))
        .max_by_key(|&(_, g, _)| g)
}

/// A cursor file's content: slotted (the newest whole slot), or a whole
/// file of version 1 or 2 as older builds wrote it.
pub(super) fn decode_cursor_file(b: &[u8]) -> Option<Progress> {
    if b.len() == 2 * SLOT_LEN {
        return newest_slot(b).map(|(_, _, p)| p);
    }
    decode_progress(b)
}

pub(super) fn encode_cursor(p: Position) -> [u8; CURSOR_LEN] {
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
pub(super) enum Probe {
    Ok(Hdr),
    /// Unreadable; the header if it alone was valid (so its meta is known).
    Bad(Option<Hdr>),
}

/// Reads the header at `off` and checks it fits before `limit`.
pub(super) fn probe(f: &File, off: u64, limit: u64) -> io::Result<Probe> {
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
pub(super) fn read_payload(f: &File, off: u64, h: &Hdr, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.clear();
    buf.resize(h.len as usize, 0);
    let n = read_full_at(f, buf, off + REC_HDR as u64)?;
    Ok(n == buf.len() && crc32fast::hash(buf) == h.pcrc)
}

/// A fully valid record (header and payload CRCs) at `off`?
pub(super) fn valid_at(
    f: &File,
    off: u64,
    limit: u64,
    scratch: &mut Vec<u8>,
) -> io::Result<Option<Hdr>> {
    match probe(f, off, limit)? {
        Probe::Ok(h) if h.kind == KIND_SKIP => Ok(Some(h)),
        Probe::Ok(h) => Ok(read_payload(f, off, &h, scratch)?.then_some(h)),
        Probe::Bad(_) => Ok(None),
    }
}

/// The first offset in `[from, limit)` where a fully valid record starts.
pub(super) fn resync(f: &File, from: u64, limit: u64) -> io::Result<Option<u64>> {
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

/// Whether every byte of `[from, limit)` is zero (reads stop at the first
/// byte that is not).
pub(super) fn all_zero(f: &File, from: u64, limit: u64) -> io::Result<bool> {
    let mut buf = vec![0u8; 64 << 10];
    let mut off = from;
    while off < limit {
        let want = ((limit - off) as usize).min(buf.len());
        let n = read_full_at(f, &mut buf[..want], off)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        if n < want {
            break; // the file is shorter than `limit`: nothing more there
        }
        off += n as u64;
    }
    Ok(true)
}

/// The offset just after the last byte of `[from, limit)` that is not
/// zero (`from` if there is none): where a trailing zero run starts.
fn zero_run_start(f: &File, from: u64, limit: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 << 10];
    let mut end = limit;
    while end > from {
        let start = end.saturating_sub(buf.len() as u64).max(from);
        let want = (end - start) as usize;
        let n = read_full_at(f, &mut buf[..want], start)?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b != 0) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(from)
}

/// What a walk over a segment's records meets.
#[derive(Debug)]
pub(super) enum Step {
    /// A valid record at this offset (its payload checked when the walk
    /// verifies payloads; a skip record's never is).
    Record(u64, Hdr),
    /// A bad record at `at` (its header if that alone was valid), and the
    /// next fully valid record after it (None: nothing valid before the
    /// limit, and the walk ends). `end` is where the bad bytes end: at
    /// `resume`, or with nothing valid after them, before the zeros that
    /// trail them (never inside the bad record's own length): zeros past a
    /// torn record are the writer's zeroed tail, not damage.
    Bad {
        at: u64,
        hdr: Option<Hdr>,
        resume: Option<u64>,
        end: u64,
    },
    /// Every byte from this record boundary to the limit is zero: the
    /// segment's clean end (the writer keeps zeros ahead of itself); the
    /// walk ends.
    ZeroTail(u64),
}

/// The record walk `open` (which repairs what it meets) and `status`
/// (which only counts it) share: headers, payloads too when `verify`, and
/// resync past a bad record. Reads only.
pub(super) struct Walk<'f> {
    f: &'f File,
    off: u64,
    limit: u64,
    verify: bool,
    buf: Vec<u8>,
}

impl<'f> Walk<'f> {
    pub(super) fn new(f: &'f File, from: u64, limit: u64, verify: bool) -> Self {
        Walk {
            f,
            off: from,
            limit,
            verify,
            buf: Vec::new(),
        }
    }

    /// Goes on from `off` instead of where the last bad record's resync
    /// found the next valid one (a caller that extended the bad region).
    pub(super) fn resume_at(&mut self, off: u64) {
        self.off = off;
    }

    /// The next record or bad region; None at the limit.
    pub(super) fn step(&mut self) -> io::Result<Option<Step>> {
        if self.off >= self.limit {
            return Ok(None);
        }
        let at = self.off;
        let hdr = match probe(self.f, at, self.limit)? {
            Probe::Ok(h) if h.kind == KIND_SKIP => {
                self.off = at + h.total();
                return Ok(Some(Step::Record(at, h)));
            }
            Probe::Ok(h) => {
                if !self.verify || read_payload(self.f, at, &h, &mut self.buf)? {
                    self.off = at + h.total();
                    return Ok(Some(Step::Record(at, h)));
                }
                Some(h)
            }
            Probe::Bad(h) => h,
        };
        // No record starts with a zero byte, so zeros from a record
        // boundary to the limit were never a record.
        if hdr.is_none() && all_zero(self.f, at, self.limit)? {
            self.off = self.limit;
            return Ok(Some(Step::ZeroTail(at)));
        }
        let resume = resync(self.f, at + 1, self.limit)?;
        self.off = resume.unwrap_or(self.limit);
        let end = match resume {
            Some(y) => y,
            None => {
                let own = hdr.map_or(at, |h| (at + h.total()).min(self.limit));
                zero_run_start(self.f, at, self.limit)?.max(own)
            }
        };
        Ok(Some(Step::Bad {
            at,
            hdr,
            resume,
            end,
        }))
    }
}
