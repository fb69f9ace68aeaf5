//! Read-only status (`cairn wal status`).
//!
//! Owns: the report of a WAL another process may be writing. Must never:
//! take `LOCK`, write, repair or quarantine anything.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;

use super::cursors::{max_opt, min_opt, read_cursors, CursorScan};
use super::format::{file_header, parse_seg_name, seg_name, Step, Walk, FILE_HDR, KIND_SKIP};
use super::index::{Counters, Seg};
use crate::files::{io_err, read_full_at};
use crate::{Position, RemoteStatus, WalError, WalStats};

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
    let cursors = read_cursors(&root.join("cursors"), &mut counters, CursorScan::ReadOnly);
    // Per segment: (seq, samples, min_ts, and per cursor in it the partial
    // sample count after it).
    let mut per_seg: Vec<(u64, Seg, u64)> = Vec::new();
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
        let here: Vec<(&String, u64)> = cursors
            .iter()
            .filter(|(_, c)| c.at.segment == seq)
            .map(|(n, c)| (n, c.at.offset))
            .collect();
        let newest = i + 1 == n;
        // Where the records end (the committed end, as `open` finds it):
        // the file's end, where a zeroed tail starts, or where a tail
        // nothing valid follows starts.
        let mut end = len.max(FILE_HDR);
        // Payloads of the newest segment are checked, as `open` does: a
        // torn record's header may fit in the zeroed tail.
        let mut walk = Walk::new(&f, FILE_HDR, len, newest);
        while let Some(step) = walk.step().map_err(|e| io_err(&p, e))? {
            match step {
                Step::ZeroTail(at) => end = at,
                Step::Record(off, h) => {
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
                }
                Step::Bad {
                    resume: Some(_), ..
                } => counters.corruptions += 1,
                Step::Bad {
                    resume: None, at, ..
                } => {
                    if !newest {
                        counters.corruptions += 1;
                    }
                    end = at;
                    break;
                }
            }
        }
        seg.len = end;
        per_seg.push((seq, seg, len.max(FILE_HDR)));
    }
    for (seq, seg, on_disk) in &per_seg {
        s.segments += 1;
        s.bytes += on_disk;
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
        for (seq, seg, _) in &per_seg {
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
