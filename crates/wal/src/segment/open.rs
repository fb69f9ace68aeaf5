//! Opening and recovery: the lock, the scan of every segment's headers
//! (payloads of the newest), repair of what it finds, cursor files read
//! and put on valid record starts.
//!
//! Owns: the state `open` hands the engine. Must never: refuse to start
//! because of what is on disk, or load a segment whole into memory.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

#[cfg(test)]
use super::append::Faults;
use super::append::{SetCopy, Writer};
use super::cursors::{read_cursors, CursorScan};
use super::format::{
    file_header, parse_seg_name, probe, read_payload, seg_name, Probe, Step, Walk, FILE_HDR,
    KIND_SKIP,
};
use super::index::{extend_over_dependents, Counters, Seg, State};
use super::repair::{fix_region, log_incident};
use super::{SegmentOptions, SegmentWal, Shared};
use crate::files::{self, fsync_dir, io_err, lock, read_full_at, Quarantine};
use crate::{Position, WalError};

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

        let cursors = read_cursors(&cursors_dir, &mut counters, CursorScan::Open);
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
        // The open segment's zeroed tail, left by the last process, is the
        // writer's to fill.
        let zeroed = segs.get(&seq).map_or(written, |g| g.on_disk());
        let (tx, _rx) = watch::channel(committed);
        // ext4 on a card: 4 KiB; what the device writes for a dirty block.
        #[allow(clippy::unnecessary_cast)] // u32 on 32-bit ARM
        let block_size = nix::sys::statvfs::fstatvfs(&file)
            .map(|s| s.block_size() as u64)
            .ok()
            .filter(|b| *b >= 512)
            .unwrap_or(4096);
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
                zeroed,
                body_start,
                committed,
                snapshot,
                set_committed: None,
                set_pending: None,
                dirty: false,
                broken: false,
                starved: false,
                buf: Vec::new(),
                dirty_lo: 0,
                dirty_hi: 0,
                #[cfg(test)]
                faults: Faults::default(),
            }),
            acks: Mutex::new(()),
            repair: Mutex::new(()),
            state: Mutex::new(state),
            marks: Mutex::new(HashMap::new()),
            tx,
            _lock,
            block_size,
            device_bytes: Default::default(),
        });
        let set = sh.find_latest_set()?;
        {
            let mut guard = lock(&sh.writer);
            let w = &mut *guard;
            w.set_committed = set;
            let from = w.written;
            sh.zero_ahead(w, from + 1);
            // No commit may come for long (held records, a healthy
            // receiver): the kernel writes these zeros back within ~30 s.
            w.count_unsynced(&sh);
        }
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

pub(super) fn create_segment(
    dir: &Path,
    seq: u64,
    copy: Option<&SetCopy>,
) -> Result<File, WalError> {
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
        let h = c.header(crc32fast::hash(&c.data));
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
    let mut limit = len;
    let mut walk = Walk::new(f, FILE_HDR, len, verify);
    while let Some(step) = walk.step()? {
        let (off, bad, resume, end) = match step {
            // The writer's zeroed tail: the clean end, left in place (the
            // open segment's writer goes on writing into it).
            Step::ZeroTail(_) => break,
            Step::Record(off, h) if h.kind == KIND_SKIP => {
                seg.len = off + h.total();
                continue;
            }
            Step::Record(off, h) => {
                if off == body_start && h.is_copy() {
                    body_start = off + h.total();
                }
                seg.add(off, &h);
                continue;
            }
            Step::Bad {
                at,
                hdr,
                resume,
                end,
            } => (at, hdr, resume, end),
        };
        // Nothing valid follows: the bytes to quarantine end before the
        // zeros trailing them (the segment is truncated at `off` anyway).
        let qlimit = if resume.is_none() { end } else { limit };
        let (resume, span) = extend_over_dependents(f, bad, resume, limit)?;
        let (end, bytes) = fix_region(q, f, seq, off, resume, qlimit, true)?;
        let counted = c.count(bad, bytes, span);
        let what = match (resume, verify) {
            (None, true) => "torn or damaged tail (a crash mid-write leaves one)",
            (None, false) => "truncated or damaged segment end",
            (Some(_), _) => "damaged record",
        };
        log_incident(what, seq, off, bytes, counted, span);
        if resume.is_none() {
            limit = off;
            seg.len = off;
            break;
        }
        seg.len = end;
        walk.resume_at(end);
    }
    seg.len = seg.len.max(FILE_HDR).min(limit.max(FILE_HDR));
    // What is past `len` now is the zeroed tail (a torn tail was cut off).
    seg.file_len = limit;
    Ok((seg, body_start))
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
    pub(super) fn limit_of(&self, seq: u64, committed: Position) -> Option<u64> {
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
