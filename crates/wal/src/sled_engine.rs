//! The sled WAL engine (cargo feature `sled`, `wal.engine = "sled"`): the
//! same `Wal` contract over sled 0.34, for users who asked for sled and so
//! the benchmark can compare both engines on one workload.
//!
//! Owns: `<wal>/sled/` (a sled database) and what it moves to
//! `<wal>/quarantine/`. Must never: hand a reader a record before `commit`
//! returned (sled writes are durable only after `flush()`); keep more in
//! memory than one small entry per 64 records plus the SeriesSet sequence
//! numbers; refuse to start because sled cannot open its files.
//!
//! # Layout
//! Tree `records`: key = big-endian u64 sequence number (from 1), value =
//! `kind u8 | flags u8 (0) | min_ts i64 | max_ts i64 | samples u32 |
//! payload` (little-endian; sled checksums its own pages). A position is
//! `Position { segment: 0, offset: seq }`; a record ends at `seq + 1`.
//! Tree `cursors`: key = remote name, value = `segment u64 | offset u64`,
//! followed while the remote is inside a window (`wal::WindowMark`) by
//! `end_segment u64 | end_offset u64 | total u64 | sent u64 | next u64 |
//! last_ts i64`.
//! The SeriesSet sequence numbers are kept in memory (rebuilt at open), so
//! a reader starting at P is handed the latest SeriesSet before P; deleting
//! acked records always keeps the latest SeriesSet before the oldest cursor.
//!
//! # Guarantees and limits (compared with the segment engine)
//! `commit` = `flush()`: sled's log fsyncs. What sled recovers after a
//! crash is sled's business (it promises a prefix of the flushed writes);
//! sled 0.34 has open reports of corruption on open after abrupt stops. If
//! sled fails to open (error or panic), the whole `sled/` directory is moved
//! to quarantine (one incident, samples unknown) and an empty WAL starts. A
//! record value too short to decode is copied to quarantine, removed and
//! counted (samples unknown); an undecodable cursor restarts its remote at
//! the oldest record (one incident). Opening reads every record once to
//! rebuild the counters (sled keeps no per-record metadata we could read
//! faster). `max_size` counts the bytes of keys and values (sled's files
//! are larger and shrink only as sled reclaims space); `stats().bytes` is
//! sled's size on disk. The oldest-sample ages in stats come from the first
//! Samples record after the cursor (collections are appended in time order).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::files::{self, io_err, lock, Quarantine};
use super::{
    Dropped, Position, Progress, Record, RecordKind, RecordMeta, RemoteStatus, Wal, WalError,
    WalReader, WalStats, WindowMark,
};

const VAL_HDR: usize = 22;
/// Records per in-memory counter bucket.
const BUCKET_SHIFT: u32 = 6;

#[derive(Debug, Clone)]
pub struct SledOptions {
    pub max_size: u64,
    pub max_age_ms: i64,
    /// sled's `cache_capacity` (which counts on-disk bytes, not RAM).
    pub cache_bytes: u64,
}

impl SledOptions {
    pub fn new(max_size: u64, max_age_ms: i64) -> Self {
        SledOptions {
            max_size,
            max_age_ms,
            cache_bytes: 4 << 20,
        }
    }
}

fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn seq_of(k: &[u8]) -> Option<u64> {
    let a: [u8; 8] = k.try_into().ok()?;
    Some(u64::from_be_bytes(a))
}

fn encode_value(kind: RecordKind, meta: RecordMeta, data: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.push(kind as u8);
    out.push(0);
    out.extend_from_slice(&meta.min_ts.to_le_bytes());
    out.extend_from_slice(&meta.max_ts.to_le_bytes());
    out.extend_from_slice(&meta.samples.to_le_bytes());
    out.extend_from_slice(data);
}

fn decode_value(v: &[u8]) -> Option<(RecordKind, RecordMeta)> {
    if v.len() < VAL_HDR || v[1] != 0 {
        return None;
    }
    let kind = RecordKind::from_u8(v[0])?;
    let i64_at = |i: usize| i64::from_le_bytes(v[i..i + 8].try_into().unwrap_or([0; 8]));
    let samples = u32::from_le_bytes(v[18..22].try_into().unwrap_or([0; 4]));
    Some((
        kind,
        RecordMeta {
            min_ts: i64_at(2),
            max_ts: i64_at(10),
            samples,
        },
    ))
}

fn sled_err(path: &Path, e: sled::Error) -> WalError {
    match e {
        sled::Error::Io(io) => io_err(path, io),
        other => WalError::Other(format!("sled at {}: {other}", path.display())),
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Agg {
    records: u64,
    samples: u64,
    bytes: u64,
}

struct State {
    buckets: BTreeMap<u64, Agg>,
    sets: BTreeSet<u64>,
    /// First record readers get as new (== the committed end when empty).
    /// A SeriesSet kept below it as context is handed over as replayed.
    first: u64,
    newest_ts: Option<i64>,
    cursors: BTreeMap<String, Position>,
    corruptions: u64,
    dropped: Dropped,
    quarantined_bytes: u64,
}

impl State {
    fn add(&mut self, seq: u64, kind: RecordKind, meta: RecordMeta, bytes: u64) {
        let a = self.buckets.entry(seq >> BUCKET_SHIFT).or_default();
        a.records += 1;
        a.samples += meta.samples as u64;
        a.bytes += bytes + 8;
        if kind == RecordKind::SeriesSet {
            self.sets.insert(seq);
        }
        if meta.samples > 0 {
            self.newest_ts = Some(self.newest_ts.map_or(meta.max_ts, |t| t.max(meta.max_ts)));
        }
    }

    fn remove(&mut self, seq: u64, meta: Option<RecordMeta>, bytes: u64) {
        if let Some(a) = self.buckets.get_mut(&(seq >> BUCKET_SHIFT)) {
            a.records = a.records.saturating_sub(1);
            a.samples = a
                .samples
                .saturating_sub(meta.map_or(0, |m| m.samples as u64));
            a.bytes = a.bytes.saturating_sub(bytes + 8);
            if a.records == 0 {
                self.buckets.remove(&(seq >> BUCKET_SHIFT));
            }
        }
        self.sets.remove(&seq);
    }

    fn logical_bytes(&self) -> u64 {
        self.buckets.values().map(|a| a.bytes).sum()
    }
}

struct Writer {
    next: u64,
    committed: u64,
    /// Records appended since the last commit: (seq, kind, meta, bytes).
    pending: Vec<(u64, RecordKind, RecordMeta, u64)>,
    broken: bool,
    buf: Vec<u8>,
}

struct Shared {
    path: PathBuf,
    opts: SledOptions,
    db: sled::Db,
    records: sled::Tree,
    cursors: sled::Tree,
    quarantine: Quarantine,
    // Lock order: writer → acks → state.
    writer: Mutex<Writer>,
    acks: Mutex<()>,
    state: Mutex<State>,
    /// Last recorded progress per remote; its mark counts only while `at`
    /// equals the cursor in `state` (limits move cursors without it).
    marks: Mutex<std::collections::HashMap<String, Progress>>,
    tx: watch::Sender<Position>,
    _lock: File,
}

pub struct SledWal {
    sh: Arc<Shared>,
}

fn open_db(path: &Path, opts: &SledOptions) -> Result<sled::Db, String> {
    let cfg = sled::Config::new()
        .path(path)
        .cache_capacity(opts.cache_bytes)
        .mode(sled::Mode::LowSpace)
        .flush_every_ms(None);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cfg.open())) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("sled panicked while opening".to_string()),
    }
}

impl SledWal {
    pub fn open(root: &Path, opts: SledOptions) -> Result<SledWal, WalError> {
        files::ensure_dir(root)?;
        let _lock = files::take_lock(root)?;
        let qdir = root.join("quarantine");
        files::ensure_dir(&qdir)?;
        let cap = if opts.max_size == 0 {
            64 << 20
        } else {
            (opts.max_size / 8).max(1 << 20)
        };
        let quarantine = Quarantine { dir: qdir, cap };
        let path = root.join("sled");
        let mut corruptions = 0;
        let mut quarantined_bytes = 0;
        let db = match open_db(&path, &opts) {
            Ok(db) => db,
            Err(why) => {
                let name = format!("sled.{}", files::unix_now_secs());
                let (bytes, _) = files::dir_usage(&path);
                quarantine
                    .move_in(&path, &name)
                    .map_err(|e| io_err(&path, e))?;
                corruptions += 1;
                quarantined_bytes += bytes;
                tracing::warn!(
                    "WAL corruption: sled could not open {} ({why}); moved it to quarantine/{name} ({bytes} bytes, samples unknown) and started empty; carrying on",
                    path.display()
                );
                open_db(&path, &opts)
                    .map_err(|e| WalError::Other(format!("sled at {}: {e}", path.display())))?
            }
        };
        let records = db.open_tree("records").map_err(|e| sled_err(&path, e))?;
        let cursors = db.open_tree("cursors").map_err(|e| sled_err(&path, e))?;
        let mut st = State {
            buckets: BTreeMap::new(),
            sets: BTreeSet::new(),
            first: 0,
            newest_ts: None,
            cursors: BTreeMap::new(),
            corruptions,
            dropped: Dropped::new(),
            quarantined_bytes,
        };
        let mut last = 0u64;
        let mut bad = Vec::new();
        for kv in records.iter() {
            let (k, v) = kv.map_err(|e| sled_err(&path, e))?;
            let Some(seq) = seq_of(&k) else {
                bad.push((k.to_vec(), v.to_vec()));
                continue;
            };
            match decode_value(&v) {
                Some((kind, meta)) => {
                    if st.first == 0 {
                        st.first = seq;
                    }
                    st.add(seq, kind, meta, v.len() as u64);
                    last = seq;
                }
                None => bad.push((k.to_vec(), v.to_vec())),
            }
        }
        for (k, v) in bad {
            let name = format!(
                "sled.record.{}.bad",
                k.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
            let qp = quarantine.dir.join(&name);
            let _ = File::create(&qp).and_then(|mut f| f.write_all(&v).and_then(|_| f.sync_all()));
            records.remove(&k).map_err(|e| sled_err(&path, e))?;
            st.corruptions += 1;
            st.quarantined_bytes += v.len() as u64;
            tracing::warn!("WAL corruption: undecodable sled record moved to quarantine/{name} ({} bytes, samples unknown); carrying on", v.len());
        }
        let next = last + 1;
        if st.first == 0 {
            st.first = next;
        }
        let mut marks = std::collections::HashMap::new();
        for kv in cursors.iter() {
            let (k, v) = kv.map_err(|e| sled_err(&path, e))?;
            let name = String::from_utf8_lossy(&k).into_owned();
            let decoded = decode_progress(&v);
            let p = decoded.map(|p| p.at.offset);
            if let Some(pr) = decoded.filter(|p| p.window.is_some_and(|w| w.end.offset <= next)) {
                if pr.at.offset >= st.first {
                    marks.insert(name.clone(), pr);
                }
            }
            let off = match p {
                Some(o) if o > next => {
                    st.corruptions += 1;
                    tracing::warn!("WAL corruption: cursor of remote {name:?} points past the end of the WAL; clamped to the end; carrying on");
                    next
                }
                Some(o) => o.max(st.first),
                None => {
                    st.corruptions += 1;
                    tracing::warn!("WAL corruption: cursor of remote {name:?} is unreadable; it restarts from the oldest record (it may receive duplicates); carrying on");
                    st.first
                }
            };
            st.cursors.insert(
                name,
                Position {
                    segment: 0,
                    offset: off,
                },
            );
        }
        marks.retain(|n, m| st.cursors.get(n) == Some(&m.at));
        for (n, p) in &st.cursors {
            let pr = marks.get(n).copied().unwrap_or(Progress::at(*p));
            cursors
                .insert(n.as_bytes(), encode_progress(&pr))
                .map_err(|e| sled_err(&path, e))?;
        }
        db.flush().map_err(|e| sled_err(&path, e))?;
        let committed = Position {
            segment: 0,
            offset: next,
        };
        let (tx, _rx) = watch::channel(committed);
        Ok(SledWal {
            sh: Arc::new(Shared {
                path,
                opts,
                db,
                records,
                cursors,
                quarantine,
                writer: Mutex::new(Writer {
                    next,
                    committed: next,
                    pending: Vec::new(),
                    broken: false,
                    buf: Vec::new(),
                }),
                acks: Mutex::new(()),
                state: Mutex::new(st),
                marks: Mutex::new(marks),
                tx,
                _lock,
            }),
        })
    }
}

fn encode_progress(p: &Progress) -> Vec<u8> {
    let mut b = encode_pos(p.at).to_vec();
    if let Some(w) = p.window {
        for v in [w.end.segment, w.end.offset, w.total, w.sent, w.next] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&w.last_ts.to_le_bytes());
    }
    b
}

/// A 16-byte cursor, or 64 bytes with a window mark; an inconsistent
/// mark makes the whole value unreadable (the remote restarts at the
/// oldest record: duplicates, not loss).
fn decode_progress(v: &[u8]) -> Option<Progress> {
    let u =
        |i: usize| -> Option<u64> { Some(u64::from_le_bytes(v.get(i..i + 8)?.try_into().ok()?)) };
    let at = Position {
        segment: u(0)?,
        offset: u(8)?,
    };
    match v.len() {
        16 => Some(Progress::at(at)),
        64 => {
            let p = Progress {
                at,
                window: Some(WindowMark {
                    end: Position {
                        segment: u(16)?,
                        offset: u(24)?,
                    },
                    total: u(32)?,
                    sent: u(40)?,
                    next: u(48)?,
                    last_ts: u(56)? as i64,
                }),
            };
            p.valid_window().then_some(p)
        }
        _ => None,
    }
}

fn encode_pos(p: Position) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&p.segment.to_le_bytes());
    b[8..16].copy_from_slice(&p.offset.to_le_bytes());
    b
}

impl Shared {
    fn committed(&self) -> Position {
        *self.tx.borrow()
    }

    fn fail(&self, w: &mut Writer, err: WalError) -> WalError {
        if let Err(e) = self.discard(w) {
            tracing::warn!(
                "WAL: could not undo a failed write yet ({e}); will retry before the next write"
            );
        }
        err
    }

    fn discard(&self, w: &mut Writer) -> Result<(), WalError> {
        w.broken = true;
        let mut batch = sled::Batch::default();
        for (seq, ..) in &w.pending {
            batch.remove(&key(*seq));
        }
        self.records
            .apply_batch(batch)
            .map_err(|e| sled_err(&self.path, e))?;
        self.db.flush().map_err(|e| sled_err(&self.path, e))?;
        let mut st = lock(&self.state);
        for (seq, _, meta, bytes) in w.pending.drain(..) {
            st.remove(seq, Some(meta), bytes);
        }
        drop(st);
        w.next = w.committed;
        w.broken = false;
        Ok(())
    }

    /// Removes records before `upto` (keeping the latest SeriesSet before
    /// it, the context of what follows); returns the samples removed at or
    /// after `count_from` (what some remote never got).
    fn drop_before(&self, upto: u64, count_from: Option<u64>) -> Result<u64, WalError> {
        let (first, keep) = {
            let st = lock(&self.state);
            let oldest_set = st.sets.iter().next().copied().unwrap_or(st.first);
            (
                st.first.min(oldest_set),
                st.sets.range(..upto).next_back().copied(),
            )
        };
        if first >= upto {
            return Ok(0);
        }
        let mut batch = sled::Batch::default();
        let mut gone = Vec::new();
        let mut lost = 0u64;
        for kv in self.records.range(key(first)..key(upto)) {
            let (k, v) = kv.map_err(|e| sled_err(&self.path, e))?;
            let Some(seq) = seq_of(&k) else { continue };
            if Some(seq) == keep {
                continue;
            }
            let meta = decode_value(&v).map(|(_, m)| m);
            if count_from.map_or(true, |c| seq >= c) {
                lost += meta.map_or(0, |m| m.samples as u64);
            }
            batch.remove(&k);
            gone.push((seq, meta, v.len() as u64));
        }
        self.records
            .apply_batch(batch)
            .map_err(|e| sled_err(&self.path, e))?;
        let mut st = lock(&self.state);
        for (seq, meta, bytes) in gone {
            st.remove(seq, meta, bytes);
        }
        st.first = upto.max(st.first);
        Ok(lost)
    }

    /// The first Samples record's oldest timestamp at or after `from`.
    fn oldest_from(&self, from: u64, end: u64) -> Option<i64> {
        for kv in self.records.range(key(from)..key(end)) {
            let Ok((_, v)) = kv else { return None };
            if let Some((RecordKind::Samples, m)) = decode_value(&v) {
                if m.samples > 0 {
                    return Some(m.min_ts);
                }
            }
        }
        None
    }

    /// Moves an undecodable value aside (sled's own checksums passed, so
    /// this is a bug or a foreign write), counted once.
    fn quarantine_value(&self, seq: u64, v: &[u8]) -> Result<(), WalError> {
        let name = format!("sled.record.{seq}.bad");
        let qp = self.quarantine.dir.join(&name);
        let _ = File::create(&qp).and_then(|mut f| f.write_all(v).and_then(|_| f.sync_all()));
        self.records
            .remove(key(seq))
            .map_err(|e| sled_err(&self.path, e))?;
        let mut st = lock(&self.state);
        st.remove(seq, None, v.len() as u64);
        st.corruptions += 1;
        st.quarantined_bytes += v.len() as u64;
        drop(st);
        tracing::warn!("WAL corruption: undecodable sled record moved to quarantine/{name} ({} bytes, samples unknown); carrying on", v.len());
        Ok(())
    }

    fn samples_between(&self, from: u64, to: u64) -> u64 {
        let mut n = 0;
        for (_, v) in self.records.range(key(from)..key(to)).flatten() {
            n += decode_value(&v).map_or(0, |(_, m)| m.samples as u64);
        }
        n
    }
}

impl Wal for SledWal {
    fn append(
        &self,
        kind: RecordKind,
        meta: RecordMeta,
        data: &[u8],
    ) -> Result<Position, WalError> {
        let sh = &self.sh;
        let mut w = lock(&sh.writer);
        if w.broken {
            sh.discard(&mut w)?;
        }
        let seq = w.next;
        let mut buf = std::mem::take(&mut w.buf);
        encode_value(kind, meta, data, &mut buf);
        let r = sh.records.insert(key(seq), buf.as_slice());
        let bytes = buf.len() as u64;
        w.buf = buf;
        if let Err(e) = r {
            let err = sled_err(&sh.path, e);
            return Err(sh.fail(&mut w, err));
        }
        w.next = seq + 1;
        w.pending.push((seq, kind, meta, bytes));
        lock(&sh.state).add(seq, kind, meta, bytes);
        Ok(Position {
            segment: 0,
            offset: seq,
        })
    }

    fn commit(&self) -> Result<Position, WalError> {
        let sh = &self.sh;
        let mut w = lock(&sh.writer);
        if w.broken {
            sh.discard(&mut w)?;
        }
        if w.pending.is_empty() {
            return Ok(Position {
                segment: 0,
                offset: w.committed,
            });
        }
        if let Err(e) = sh.db.flush() {
            let err = sled_err(&sh.path, e);
            return Err(sh.fail(&mut w, err));
        }
        w.pending.clear();
        w.committed = w.next;
        let p = Position {
            segment: 0,
            offset: w.committed,
        };
        sh.tx.send_replace(p);
        Ok(p)
    }

    fn committed(&self) -> Position {
        self.sh.committed()
    }

    fn subscribe(&self) -> watch::Receiver<Position> {
        self.sh.tx.subscribe()
    }

    fn reader(&self, from: Position) -> Result<Box<dyn WalReader>, WalError> {
        let committed = self.sh.committed().offset;
        let st = lock(&self.sh.state);
        let pos = if from.segment > 0 {
            committed
        } else {
            from.offset.clamp(st.first, committed)
        };
        let replay = st.sets.range(..pos).next_back().copied();
        drop(st);
        Ok(Box::new(SledReader {
            sh: self.sh.clone(),
            pos,
            replay,
        }))
    }

    fn register_remotes(&self, names: &[String]) -> Result<(), WalError> {
        let sh = &self.sh;
        let _a = lock(&sh.acks);
        let (new, gone, first) = {
            let st = lock(&sh.state);
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
            (new, gone, st.first)
        };
        for n in &new {
            let p = Position {
                segment: 0,
                offset: first,
            };
            sh.cursors
                .insert(n.as_bytes(), &encode_pos(p))
                .map_err(|e| sled_err(&sh.path, e))?;
            lock(&sh.state).cursors.insert(n.clone(), p);
        }
        for n in &gone {
            sh.cursors
                .remove(n.as_bytes())
                .map_err(|e| sled_err(&sh.path, e))?;
            lock(&sh.state).cursors.remove(n);
            tracing::info!("WAL: forgot the cursor of remote {n:?} (no longer configured)");
        }
        sh.db.flush().map_err(|e| sled_err(&sh.path, e))?;
        let min = lock(&sh.state).cursors.values().map(|p| p.offset).min();
        if let Some(m) = min {
            sh.drop_before(m, None)?;
        }
        Ok(())
    }

    fn cursor(&self, remote: &str) -> Position {
        self.progress(remote).at
    }

    fn ack(&self, remote: &str, upto: Position) -> Result<(), WalError> {
        self.ack_progress(remote, Progress::at(upto))
    }

    fn progress(&self, remote: &str) -> Progress {
        let at = lock(&self.sh.state)
            .cursors
            .get(remote)
            .copied()
            .unwrap_or_default();
        let window = lock(&self.sh.marks)
            .get(remote)
            .filter(|m| m.at == at)
            .and_then(|m| m.window);
        Progress { at, window }
    }

    fn ack_progress(&self, remote: &str, p: Progress) -> Result<(), WalError> {
        let sh = &self.sh;
        let _a = lock(&sh.acks);
        let committed = sh.committed();
        let old = lock(&sh.marks).get(remote).copied();
        let (target, moved) = {
            let st = lock(&sh.state);
            let Some(cur) = st.cursors.get(remote).copied() else {
                return Err(WalError::Other(format!(
                    "ack for unregistered remote {remote:?}"
                )));
            };
            let t = p.at.min(committed);
            let mark = p
                .window
                .filter(|w| p.valid_window() && t == p.at && w.end <= committed);
            if t < cur {
                return Ok(());
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
        sh.cursors
            .insert(remote.as_bytes(), encode_progress(&target))
            .map_err(|e| sled_err(&sh.path, e))?;
        sh.db.flush().map_err(|e| sled_err(&sh.path, e))?;
        lock(&sh.marks).insert(remote.to_string(), target);
        if !moved {
            return Ok(());
        }
        let target = target.at;
        let min = {
            let mut st = lock(&sh.state);
            st.cursors.insert(remote.to_string(), target);
            st.cursors.values().map(|p| p.offset).min()
        };
        if let Some(m) = min {
            sh.drop_before(m, None)?;
        }
        Ok(())
    }

    fn enforce_limits(&self, now_ms: i64) -> Result<Dropped, WalError> {
        let sh = &self.sh;
        let mut out = Dropped::new();
        if sh.opts.max_size == 0 && sh.opts.max_age_ms <= 0 {
            return Ok(out);
        }
        let _w = lock(&sh.writer);
        let _a = lock(&sh.acks);
        let committed = sh.committed().offset;
        let (first, mut total, min_cursor) = {
            let st = lock(&sh.state);
            (
                st.first,
                st.logical_bytes(),
                st.cursors.values().map(|p| p.offset).min(),
            )
        };
        // Walk from the oldest record: drop Samples records while over a
        // limit; the new start is the first record kept.
        let cutoff = now_ms.saturating_sub(sh.opts.max_age_ms);
        let mut upto = first;
        let mut by_reason: Vec<(&'static str, u64)> = Vec::new();
        for kv in sh.records.range(key(first)..key(committed)) {
            let (k, v) = kv.map_err(|e| sled_err(&sh.path, e))?;
            let Some(seq) = seq_of(&k) else { continue };
            let Some((kind, meta)) = decode_value(&v) else {
                continue;
            };
            if kind == RecordKind::SeriesSet {
                // Context, not data: dropped with what follows it (the
                // latest one before the new start is kept).
                continue;
            }
            let old = sh.opts.max_age_ms > 0
                && kind == RecordKind::Samples
                && meta.samples > 0
                && meta.max_ts < cutoff;
            let big = sh.opts.max_size > 0 && total > sh.opts.max_size;
            let reason = if old {
                "max_age"
            } else if big {
                "max_size"
            } else {
                break;
            };
            let unsent = min_cursor.map_or(true, |c| seq >= c);
            by_reason.push((reason, if unsent { meta.samples as u64 } else { 0 }));
            total = total.saturating_sub(v.len() as u64 + 8);
            upto = seq + 1;
        }
        if upto > first {
            sh.drop_before(upto, Some(u64::MAX))?;
            let new_first = upto;
            let moved: Vec<String> = {
                let st = lock(&sh.state);
                st.cursors
                    .iter()
                    .filter(|(_, p)| p.offset < new_first)
                    .map(|(n, _)| n.clone())
                    .collect()
            };
            for n in &moved {
                let p = Position {
                    segment: 0,
                    offset: new_first,
                };
                sh.cursors
                    .insert(n.as_bytes(), &encode_pos(p))
                    .map_err(|e| sled_err(&sh.path, e))?;
                lock(&sh.state).cursors.insert(n.clone(), p);
            }
            sh.db.flush().map_err(|e| sled_err(&sh.path, e))?;
            for (r, n) in by_reason {
                *out.entry(r).or_insert(0) += n;
            }
            let mut st = lock(&sh.state);
            for (k, v) in &out {
                *st.dropped.entry(k).or_insert(0) += v;
            }
            let lost: u64 = out.values().sum();
            if lost > 0 {
                tracing::warn!("WAL over its limits: dropped {lost} unsent samples");
            }
        }
        Ok(out)
    }

    fn stats(&self) -> WalStats {
        let sh = &self.sh;
        let committed = sh.committed();
        let st = lock(&sh.state);
        let mut s = WalStats {
            bytes: sh.db.size_on_disk().unwrap_or(0),
            segments: 0,
            records: st.buckets.values().map(|a| a.records).sum(),
            samples: st.buckets.values().map(|a| a.samples).sum(),
            newest_ts: st.newest_ts,
            committed,
            corruptions: st.corruptions,
            dropped: st.dropped.clone(),
            quarantined_bytes: st.quarantined_bytes,
            ..WalStats::default()
        };
        let first = st.first;
        let cursors = st.cursors.clone();
        let buckets = st.buckets.clone();
        drop(st);
        s.oldest_ts = sh.oldest_from(first, committed.offset);
        for (name, c) in cursors {
            // Whole buckets after the cursor's, plus the rest of its own.
            let b = c.offset >> BUCKET_SHIFT;
            let whole: u64 = buckets.range(b + 1..).map(|(_, a)| a.samples).sum();
            let part =
                sh.samples_between(c.offset, ((b + 1) << BUCKET_SHIFT).min(committed.offset));
            let done = self.progress(&name).window.map_or(0, |w| w.sent);
            s.remotes.insert(
                name,
                RemoteStatus {
                    cursor: c,
                    backlog_samples: (whole + part).saturating_sub(done),
                    oldest_ts: sh.oldest_from(c.offset, committed.offset),
                },
            );
        }
        s
    }
}

struct SledReader {
    sh: Arc<Shared>,
    pos: u64,
    replay: Option<u64>,
}

impl SledReader {
    fn fill(rec: &mut Record, seq: u64, v: &[u8], replayed: bool) -> bool {
        let Some((kind, meta)) = decode_value(v) else {
            return false;
        };
        rec.kind = Some(kind);
        rec.replayed = replayed;
        rec.start = Position {
            segment: 0,
            offset: seq,
        };
        rec.end = Position {
            segment: 0,
            offset: seq + 1,
        };
        rec.meta = meta;
        rec.data.clear();
        rec.data.extend_from_slice(&v[VAL_HDR..]);
        true
    }
}

impl WalReader for SledReader {
    fn next(&mut self, rec: &mut Record) -> Result<bool, WalError> {
        let sh = &self.sh;
        if let Some(seq) = self.replay.take() {
            if let Some(v) = sh
                .records
                .get(key(seq))
                .map_err(|e| sled_err(&sh.path, e))?
            {
                if Self::fill(rec, seq, &v, true) {
                    return Ok(true);
                }
            }
        }
        let committed = sh.committed().offset;
        let (first, context) = {
            let st = lock(&sh.state);
            (st.first, st.sets.range(..st.first).next_back().copied())
        };
        if self.pos < first {
            // Records under us were dropped by limits: go on from the
            // oldest left, with the SeriesSet kept for it as context.
            self.pos = first;
            if let Some(seq) = context {
                self.replay = Some(seq);
                return self.next(rec);
            }
        }
        if self.pos >= committed {
            return Ok(false);
        }
        for kv in sh.records.range(key(self.pos)..key(committed)) {
            let (k, v) = kv.map_err(|e| sled_err(&sh.path, e))?;
            let Some(seq) = seq_of(&k) else { continue };
            self.pos = seq + 1;
            if Self::fill(rec, seq, &v, false) {
                return Ok(true);
            }
            sh.quarantine_value(seq, &v)?;
        }
        self.pos = committed;
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{meta, payload, read_all};

    fn open(d: &Path) -> SledWal {
        SledWal::open(d, SledOptions::new(0, 0)).expect("open")
    }

    fn fill(d: &Path) {
        let w = open(d);
        w.register_remotes(&["a".into()]).unwrap();
        w.append(RecordKind::SeriesSet, RecordMeta::default(), b"set")
            .unwrap();
        for i in 1..=50u64 {
            w.append(RecordKind::Samples, meta(i as i64, 10), &payload(i, 2000))
                .unwrap();
        }
        w.commit().unwrap();
    }

    /// Whatever sled makes of damaged files, cairn starts, and writing and
    /// reading work afterwards.
    fn starts_anyway(d: &Path) -> WalStats {
        let w = open(d);
        w.register_remotes(&["a".into()]).unwrap();
        w.append(RecordKind::SeriesSet, RecordMeta::default(), b"set")
            .unwrap();
        w.append(RecordKind::Samples, meta(99, 1), b"after")
            .unwrap();
        w.commit().unwrap();
        let got = read_all(&w, w.cursor("a"));
        assert_eq!(got.last().map(|g| g.data.as_slice()), Some(&b"after"[..]));
        w.stats()
    }

    #[test]
    fn garbage_sled_files_are_quarantined_and_cairn_starts_empty() {
        let d = tempfile::tempdir().unwrap();
        fill(d.path());
        for e in std::fs::read_dir(d.path().join("sled")).unwrap().flatten() {
            if e.path().is_file() {
                std::fs::write(e.path(), payload(7, 4096)).unwrap();
            }
        }
        let s = starts_anyway(d.path());
        assert_eq!(s.corruptions, 1);
        assert!(std::fs::read_dir(d.path().join("quarantine"))
            .unwrap()
            .flatten()
            .any(|e| { e.file_name().to_string_lossy().starts_with("sled.") }));
    }

    #[test]
    fn truncated_sled_files_still_start() {
        let d = tempfile::tempdir().unwrap();
        fill(d.path());
        for e in std::fs::read_dir(d.path().join("sled")).unwrap().flatten() {
            if e.path().is_file() {
                let len = e.metadata().unwrap().len();
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(e.path())
                    .unwrap();
                f.set_len(len / 2).unwrap();
            }
        }
        starts_anyway(d.path());
    }

    #[test]
    fn sled_dir_that_is_a_file_still_starts() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("sled"), b"not a directory").unwrap();
        let s = starts_anyway(d.path());
        assert_eq!(s.corruptions, 1);
    }

    #[test]
    fn garbage_cursor_value_restarts_that_remote_at_the_oldest() {
        let d = tempfile::tempdir().unwrap();
        {
            fill(d.path());
            let w = open(d.path());
            w.sh.cursors.insert("a", &b"junk"[..]).unwrap();
            w.sh.db.flush().unwrap();
        }
        let w = open(d.path());
        assert_eq!(w.stats().corruptions, 1);
        assert_eq!(read_all(&w, w.cursor("a")).len(), 51);
    }
}
