//! The in-memory index: one small entry per segment, the counters, the
//! engine's `State`, and the header walk that finds the records a lost
//! SeriesSet takes with it.
//!
//! Owns: what the engine knows about the log without reading it. Must
//! never: hold more than one entry per segment, or write to disk.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;

use super::format::{probe, Hdr, Probe, FILE_HDR, KIND_SKIP};
use crate::{Dropped, Position, RecordKind};

/// Records after a damaged SeriesSet that cannot be decoded without it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Span {
    pub(super) records: u64,
    pub(super) samples: u64,
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
pub(super) fn extend_over_dependents(
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
pub(super) struct Seg {
    /// End of the last record (the file length, for all but a segment
    /// being written).
    pub(super) len: u64,
    /// Records readers get (not copies, not skips) and their samples.
    pub(super) records: u64,
    pub(super) samples: u64,
    pub(super) min_ts: Option<i64>,
    pub(super) max_ts: Option<i64>,
    /// Offset of the latest SeriesSet (copy or not) in the segment.
    pub(super) last_set: Option<u64>,
    /// The file's size when it holds zeros past `len` (the open segment's
    /// zeroed tail; 0 otherwise). `[len, file_len)` is all zeros.
    pub(super) file_len: u64,
}

impl Seg {
    /// Bytes the segment takes on disk: what `max_size` and `bytes` count,
    /// the zeroed tail included (it is written, allocated space).
    pub(super) fn on_disk(&self) -> u64 {
        self.len.max(self.file_len)
    }

    pub(super) fn add(&mut self, off: u64, h: &Hdr) {
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

    pub(super) fn forget(&mut self, h: &Hdr) {
        if h.kind != KIND_SKIP && !h.is_copy() {
            self.records = self.records.saturating_sub(1);
            self.samples = self.samples.saturating_sub(h.meta.samples as u64);
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) corruptions: u64,
    pub(super) dropped: Dropped,
    pub(super) quarantined_bytes: u64,
}

impl Counters {
    /// Counts one incident: its quarantined bytes and, when the first bad
    /// record's header was readable, its samples and those of the records
    /// that needed it (`span`). Returns those samples (None: unknowable).
    pub(super) fn count(&mut self, hdr: Option<Hdr>, bytes: u64, span: Span) -> Option<u64> {
        self.corruptions += 1;
        self.quarantined_bytes += bytes;
        let samples = hdr
            .filter(|h| !h.is_copy())
            .map(|h| h.meta.samples as u64 + span.samples);
        if let Some(n) = samples {
            *self.dropped.entry("corruption").or_insert(0) += n;
        }
        samples
    }
}

/// Backlog of one remote inside the segment its cursor is in, scanned from
/// the cursor and extended as that segment grows.
#[derive(Debug, Clone, Copy)]
pub(super) struct PartialScan {
    pub(super) cursor: Position,
    pub(super) scanned_to: u64,
    pub(super) samples: u64,
    pub(super) min_ts: Option<i64>,
}

pub(super) struct State {
    pub(super) segs: BTreeMap<u64, Seg>,
    pub(super) open_seq: u64,
    pub(super) cursors: BTreeMap<String, Position>,
    pub(super) counters: Counters,
    /// Incidents handled by this process: (seq, offset) → where reading
    /// resumes. Keeps counting and logging to once per incident.
    pub(super) repaired: HashMap<(u64, u64), u64>,
    pub(super) partial: HashMap<String, PartialScan>,
}

impl State {
    pub(super) fn first_seq(&self) -> u64 {
        self.segs.keys().next().copied().unwrap_or(self.open_seq)
    }

    pub(super) fn next_seq_after(&self, seq: u64) -> Option<u64> {
        self.segs.range(seq + 1..).next().map(|(s, _)| *s)
    }

    pub(super) fn oldest(&self) -> Position {
        Position {
            segment: self.first_seq(),
            offset: FILE_HDR,
        }
    }

    /// Sealed segments every registered remote is past (none when no remote
    /// is registered: then only the limits delete data).
    pub(super) fn deletable(&self) -> Vec<u64> {
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
    pub(super) fn normalise(&self, p: Position) -> Position {
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
