//! Reading: a cursor over committed records, with the SeriesSet to
//! replay where it starts and after a bad region.
//!
//! Owns: `SegReader`. Must never: hand a record past the committed end,
//! or write anything but a repair through `repair_at`.

use std::fs::File;
use std::io;
use std::sync::Arc;

use super::format::{probe, read_payload, Hdr, Probe, FILE_HDR, KIND_SKIP};
use super::Shared;
use crate::files::{io_err, lock};
use crate::{Position, Record, RecordKind, WalError, WalReader};

pub(super) struct SegReader {
    pub(super) sh: Arc<Shared>,
    pub(super) pos: Position,
    pub(super) file: Option<(u64, File)>,
    /// The latest SeriesSet before the start, handed over first.
    pub(super) replay: Option<Position>,
    /// Set at a segment start the reader jumped to: the SeriesSet copy
    /// there is handed over as context.
    pub(super) want_context: bool,
    /// A bad or neutralised region was passed: it may have held the
    /// SeriesSet later records need, so the next copy is handed over too.
    pub(super) need_set: bool,
    pub(super) retries: u32,
}

pub(super) enum Got {
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
    pub(super) fn seek(&mut self, from: Position) -> Result<(), WalError> {
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
