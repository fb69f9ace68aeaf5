//! Cursors, deletion and limits: cursor files, acks, each remote's
//! progress, the backlog counts in `stats`, and `enforce_limits`.
//!
//! Owns: `<wal>/cursors/` and segment deletion. Must never: move a
//! cursor except by `ack` or a limit, or delete a segment before the
//! moved cursors are durable.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::format::{
    decode_cursor_file, encode_slot, newest_slot, probe, Probe, FILE_HDR, KIND_SKIP, SLOT_LEN,
};
use super::index::{Counters, PartialScan, Seg};
use super::Shared;
use crate::files::{self, fsync_dir, io_err, lock, read_full_at};
use crate::{Dropped, Position, Progress, RemoteStatus, WalError, WalStats};

impl Shared {
    pub(super) fn write_cursor(&self, name: &str, p: Position) -> io::Result<()> {
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
                    f.sync_data()?;
                    self.count_blocks(0, SLOT_LEN as u64);
                    return Ok(());
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
        self.count_blocks(0, b.len() as u64);
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
    pub(super) fn delete_passed(&self) -> Result<(), WalError> {
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

    pub(super) fn unlink_segments(&self, seqs: &[u64]) -> Result<(), WalError> {
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

impl Shared {
    pub(super) fn register_remotes(&self, names: &[String]) -> Result<(), WalError> {
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

    pub(super) fn ack_progress(&self, remote: &str, p: Progress) -> Result<(), WalError> {
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
    pub(super) fn progress(&self, remote: &str) -> Progress {
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

    pub(super) fn enforce_limits(&self, now_ms: i64) -> Result<Dropped, WalError> {
        let mut out = Dropped::new();
        if self.opts.max_size == 0 && self.opts.max_age_ms <= 0 {
            return Ok(out);
        }
        let mut w = lock(&self.writer);
        let _a = lock(&self.acks);
        loop {
            let (seq, seg, reason, only_open, next) = {
                let st = lock(&self.state);
                // The open segment's zeroed tail is on disk too, so it
                // counts (`Seg::on_disk`): at most one chunk, and sealed
                // segments carry none (truncated when rolled).
                let total: u64 = st.segs.values().map(|s| s.on_disk()).sum();
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
                self.publish_written(&mut w);
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

    pub(super) fn stats(&self) -> WalStats {
        let committed = self.committed();
        let (mut s, cursors, segs_after) = {
            let st = lock(&self.state);
            let mut s = WalStats {
                segments: st.segs.len() as u64,
                committed,
                corruptions: st.counters.corruptions,
                dropped: st.counters.dropped.clone(),
                quarantined_bytes: st.counters.quarantined_bytes,
                device_bytes: Some(self.device_bytes.load(std::sync::atomic::Ordering::Relaxed)),
                ..WalStats::default()
            };
            for seg in st.segs.values() {
                s.bytes += seg.on_disk();
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

pub(super) fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

pub(super) fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Who reads `cursors/`: `open`, which holds `LOCK` and may tidy up and
/// log, or `cairn wal status`, which must not write anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CursorScan {
    Open,
    ReadOnly,
}

/// Every remote's progress as its cursor file holds it. An unreadable file
/// counts one incident and reads as position 0 (which `open` moves to the
/// oldest record).
pub(super) fn read_cursors(
    dir: &Path,
    c: &mut Counters,
    scan: CursorScan,
) -> BTreeMap<String, Progress> {
    let mut out = BTreeMap::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let fname = e.file_name();
        let Some(s) = fname.to_str() else { continue };
        if s.ends_with(".pos.tmp") {
            if scan == CursorScan::Open {
                // An ack interrupted before its rename: the old .pos stands.
                let _ = fs::remove_file(e.path());
            }
            continue;
        }
        let Some(stem) = s.strip_suffix(".pos") else {
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
                if scan == CursorScan::Open {
                    tracing::warn!(
                        "WAL corruption: cursor file cursors/{s} is unreadable; remote {name:?} restarts from the oldest record (it may receive duplicates); carrying on"
                    );
                }
                // Position 0 sorts before everything: clamp_cursor moves it
                // to the oldest record and rewrites the file.
                out.insert(name, Progress::default());
            }
        }
    }
    out
}
