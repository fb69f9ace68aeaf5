//! Repair of a bad region: quarantine its bytes, neutralise it in place (a
//! skip header, or truncation of a sealed segment), count it (through
//! `Counters::count`) and log it once; at run time for readers and stats,
//! and the same quarantine and log line for `open`.
//!
//! Owns: the incident log line and the run-time repair. Must never: touch
//! a byte outside the bad region, or count the same incident twice.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;

use super::format::{resync, valid_at, Hdr, REC_HDR};
use super::index::{extend_over_dependents, Span};
use super::Shared;
use crate::files::{lock, Quarantine};
use crate::RecordKind;

impl Shared {
    /// Quarantines the bad region starting at `x` of segment `seq` and
    /// returns where reading resumes (the segment end when nothing valid
    /// follows; `u64::MAX` if the segment is gone). Used by readers and
    /// stats at run time: once per incident per process.
    pub(super) fn repair_at(&self, seq: u64, x: u64, hdr: Option<Hdr>) -> io::Result<u64> {
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
                    seg.file_len = x;
                }
            }
            st.repaired.insert((seq, x), end);
        }
        let what = if hdr.is_some() {
            "bad payload or length"
        } else {
            "bad record header"
        };
        let counted = lock(&self.state).counters.count(hdr, fixed, span);
        log_incident(what, seq, x, fixed, counted, span);
        Ok(end)
    }
}

/// Logs one incident counted by `Counters::count` (never under the state
/// lock: readers take it per record): what was lost, where its bytes went.
pub(super) fn log_incident(
    what: &str,
    seq: u64,
    off: u64,
    bytes: u64,
    counted: Option<u64>,
    span: Span,
) {
    let lost = match counted {
        Some(n) if span.records > 0 => format!(
            "{n} samples lost (the series set and the {} records after it that need it)",
            span.records
        ),
        Some(n) => format!("{n} samples lost"),
        None => "samples unknown (header unreadable)".to_string(),
    };
    tracing::warn!(
        "WAL corruption: {what} in segment {seq} at offset {off}; {bytes} bytes moved to quarantine/{seq:020}.{off}.bad, {lost}; carrying on"
    );
}

/// Moves `[x, resume or limit)` of segment `seq` to quarantine and makes it
/// unreadable for good: a skip header when a valid record follows (or the
/// segment may not be truncated), else truncation at `x`. Returns (where
/// reading resumes, bytes quarantined).
pub(super) fn fix_region(
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
