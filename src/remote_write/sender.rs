//! The per-remote sender task: WAL cursor → window of collections →
//! requests → progress.
//!
//! Owns: the order samples reach one remote, batching, splitting refused
//! requests, and when that remote's durable progress moves. Reads records
//! from the remote's cursor into a *window* (consecutive collections of one
//! series set, at most `WINDOW_FACTOR × max_samples_per_send` samples,
//! whole records only), then cuts the window series-major into requests of
//! at most `max_samples_per_send` samples: a series' timestamps sit
//! together in one TimeSeries, so while draining a backlog its labels are
//! sent once per request rather than once per sample. Requests go one at
//! a time.
//!
//! `write_relabel_configs` run once per series set, when its record is
//! read (`SetEntry::new`), never per sample: the set keeps the indexes of
//! the series still sent, and a collection's values are narrowed to those
//! as the window is filled. Samples of series left out (dropped, or made
//! identical to an earlier series of the set) are counted `write_relabel`
//! when their collection is taken into a window.
//!
//! Progress is recorded after every request the receiver answered for
//! good (`Wal::ack_progress`): inside a window as a `WindowMark` (window
//! start and end, the samples already done in the window's series-major
//! order, and the timestamp before the window); at its end as a plain
//! record-boundary cursor. A window is a pure function of the immutable
//! records `[start, end)` and that timestamp, so a restarted sender
//! rebuilds the very same window, cuts it at the same points and resumes
//! at the recorded sample: after a kill the one request that was in
//! flight is sent again with the same content (the receiver takes all of
//! it or none), after a clean stop nothing is (the request in flight gets
//! `shutdown_grace` to be answered and recorded), and a slow uplink makes
//! progress across any number of restarts. (Acking at record boundaries
//! only would be simpler, but one record may hold more samples than a
//! request, and a window cut differently after a restart is what made a
//! receiver refuse half-new requests as out of order.)
//!
//! Answers: 2xx done; 429, 5xx, timeouts: same request after backoff
//! (a wait of over a second without `Retry-After` is cut short once an
//! empty probe request is answered 2xx);
//! 400: split (by series, then by time) until the refused samples are
//! isolated, deliver the rest, count the refused ones (`http_4xx`) — but a
//! 400 "out of order / out of bounds / duplicate" to a request that may
//! have been delivered before (the first after start, or one whose answer
//! was lost) is the receiver saying it has it: counted `resent`; 413:
//! split; 401, 403, 404: blocked, the data stays, retried at
//! `max_backoff`.
//!
//! While the WAL refuses writes (a full disk) and this remote is up and
//! caught up, the sender takes copies of the writer's queued records
//! (`QueueTap`) and delivers them from memory through the same window and
//! requests, without progress marks (they are not in the WAL). The queue
//! then continues the WAL exactly, so each series stays in timestamp order;
//! if those records reach the WAL later, their collections are recognised
//! by timestamp and skipped, not sent twice.
//!
//! A row ("collection") of a record holds one source's values (the host
//! collection, or one scrape target's batch) and `ABSENT` for every other
//! series of the set. An absent slot is not a sample: never sent, never
//! counted; a window's sample indexes (requests, progress marks) count
//! present values only, series-major, so a window stays a pure function
//! of its records. Rows of one record need not be in timestamp order (two
//! sources); only each series' own timestamps must increase.
//!
//! Must never: send a series' samples out of timestamp order (a value not
//! newer than the same series' previous one is dropped, counted), hold more than
//! one window in memory, record as done what was not delivered, refused
//! for good or counted, block the runtime on disk I/O (WAL reads and acks
//! run on the blocking pool), start a request after a stop was asked for,
//! or let one remote wait on another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use crate::relabel::{Labels, Rules, Scratch};
use crate::wal::record::{decode_series_set, is_absent, SamplesDecoder, SeriesSet, ABSENT};
use crate::wal::writer::QueueTap;
use crate::wal::{Position, Progress, Record, RecordKind, Wal, WalError, WalReader, WindowMark};
use std::collections::VecDeque;

use super::client::{Client, RemoteConfig, Reply};
use super::metrics::{DropReason, RequestOutcome, SenderMetrics};
use super::proto::{EncodedLabels, RequestWriter};
use super::retry::{
    already_written, decide, drain_start_delay, probe_interval, probes_for, Backoff, Decision,
    TokenBucket, PROBE_TIMEOUT,
};
use crate::clock::now_ms;

/// A window holds up to this many requests' worth of samples: enough
/// timestamps per series to amortise labels while draining, small enough
/// to bound memory (16k samples ≈ 128 KiB of values at the defaults).
const WINDOW_FACTOR: usize = 8;
/// Series sets remembered at once (a set is replaced when the scheduler's
/// series change; more than one is live only around such a change).
const MAX_SETS: usize = 4;
/// Samples records delivered from memory (a hash of their bytes),
/// remembered so they are not sent again if the WAL takes them later.
/// Bounded (32 KiB): with one remote, delivered records never reach the
/// WAL; with several, one that lags holds them there, and past this bound
/// a record read back is sent again (the receiver answers it has it).
const MAX_SKIP: usize = 4096;
/// A window also stops at this many slots (present or absent) per sample
/// of its cap, so rows that are mostly other sources' absent slots cannot
/// grow it without bound.
const SLOTS_PER_SAMPLE: usize = 8;

/// A series set as the sender needs it: its labels pre-encoded, after
/// `write_relabel_configs`.
#[derive(Debug)]
struct SetEntry {
    id: u64,
    /// Series in the record (a Samples record holds one value for each).
    n_all: usize,
    /// The record's series that are sent, in order, when relabeling left
    /// some out (dropped, or identical to an earlier one); `None`: all.
    kept: Option<Vec<u32>>,
    labels: SetLabels,
}

/// The encoded `labels` fields (tag 1 of TimeSeries) of a set's series
/// sent, one shared allocation per series: a set built after another
/// takes the allocations of the series the two have in common, so the
/// sets remembered at once (they differ by a few series) cost little
/// more than one.
#[derive(Debug, Default)]
struct SetLabels(Vec<Arc<[u8]>>);

impl SetLabels {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn series(&self, i: usize) -> &[u8] {
        &self.0[i]
    }

    /// Series `i` as `{name="value", ...}`, for log lines.
    fn describe(&self, i: usize) -> String {
        match self.0.get(i) {
            Some(bytes) => super::proto::describe_series(bytes),
            None => String::from("{}"),
        }
    }
}

impl SetEntry {
    /// Relabels every series of `set` once: the sender never relabels per
    /// sample. Of series that come out identical the first is kept. A
    /// series whose encoded labels `prev` (the set read before) has too
    /// shares its allocation.
    fn new(
        set: &SeriesSet,
        rules: &Rules,
        scratch: &mut RelabelScratch,
        prev: Option<&SetEntry>,
    ) -> Self {
        // Per set read, not per sample: a map of the previous set's
        // series by their bytes.
        let reuse: std::collections::HashMap<&[u8], &Arc<[u8]>> = prev
            .map(|p| p.labels.0.iter().map(|a| (&a[..], a)).collect())
            .unwrap_or_default();
        let mut labels: Vec<Arc<[u8]>> = Vec::with_capacity(set.len());
        let mut kept = Vec::with_capacity(if rules.is_empty() { 0 } else { set.len() });
        let RelabelScratch {
            labels: relabeled,
            rules: rule_scratch,
            seen,
            enc,
            ..
        } = scratch;
        // Encoded label bytes are unique per label set (sorted, no empty
        // values), so duplicates are found by hashing those bytes.
        seen.clear();
        let hasher = std::collections::hash_map::RandomState::new();
        for i in 0..set.len() {
            enc.truncate(0);
            if rules.is_empty() {
                enc.push(set.labels(i));
            } else {
                relabeled.assign(set.labels(i));
                if !rules.process(relabeled, rule_scratch) || relabeled.is_empty() {
                    continue;
                }
                enc.push(relabeled.iter());
                let bytes = enc.series(0);
                let h = std::hash::BuildHasher::hash_one(&hasher, bytes);
                let dups = seen.entry(h).or_default();
                if dups.iter().any(|&j| *labels[j as usize] == *bytes) {
                    continue;
                }
                dups.push(labels.len() as u32);
                kept.push(i as u32);
            }
            let bytes = enc.series(0);
            labels.push(match reuse.get(bytes) {
                Some(a) => Arc::clone(a),
                None => Arc::from(bytes),
            });
        }
        SetEntry {
            id: set.id,
            n_all: set.len(),
            kept: (!rules.is_empty() && kept.len() < set.len()).then_some(kept),
            labels: SetLabels(labels),
        }
    }
}

/// What relabeling a series set reuses from one set to the next.
#[derive(Debug, Default)]
struct RelabelScratch {
    labels: Labels,
    rules: Scratch,
    seen: std::collections::HashMap<u64, Vec<u32>>,
    /// One series' labels being encoded.
    enc: EncodedLabels,
    /// One collection of a record's values before the kept ones are taken.
    values: Vec<f64>,
}

#[derive(Debug, Default)]
struct Window {
    set: Option<Arc<SetEntry>>,
    n_series: usize,
    ts: Vec<i64>,
    /// Collection-major: collection c's values are `values[c*n .. (c+1)*n]`,
    /// `ABSENT` where series s has no value in collection c.
    values: Vec<f64>,
    /// Present values: the window's samples.
    present: usize,
    /// Present values per series.
    counts: Vec<usize>,
    /// Series s's samples are `starts[s] .. starts[s+1]` in the window's
    /// series-major order (set by `seal`, before the window is sent).
    starts: Vec<usize>,
    first_at: Option<Instant>,
    /// Start of the first record that put samples in, and the newest
    /// timestamp passed before it: with the end, what rebuilds the window.
    from: Option<(Position, Option<i64>)>,
}

impl Window {
    /// Present values only: absent slots are not samples.
    fn samples(&self) -> usize {
        self.present
    }
    fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }
    fn clear(&mut self) {
        self.set = None;
        self.ts.clear();
        self.values.clear();
        self.present = 0;
        self.counts.clear();
        self.starts.clear();
        self.first_at = None;
        self.from = None;
    }
    /// The oldest timestamp in the window (rows of two sources need not be
    /// in timestamp order).
    fn oldest(&self) -> Option<i64> {
        self.ts.iter().copied().min()
    }
    /// Counts present values again (after rows were taken back).
    fn recount(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        let n = self.n_series;
        for row in self.values.chunks_exact(n.max(1)) {
            for (v, c) in row.iter().zip(self.counts.iter_mut()) {
                if !is_absent(*v) {
                    *c += 1;
                }
            }
        }
        self.present = self.counts.iter().sum();
    }
    /// Fixes the series-major sample order: call once filled.
    fn seal(&mut self) {
        self.starts.clear();
        self.starts.push(0);
        let mut at = 0;
        for c in &self.counts {
            at += c;
            self.starts.push(at);
        }
    }
    /// The series holding sample `idx` (< `samples()`), once sealed.
    fn series_of(&self, idx: usize) -> usize {
        series_of(&self.starts, idx)
    }
    /// Series s's present values as (timestamp, value), in row order (which
    /// is timestamp order per series).
    fn series_samples(&self, s: usize) -> impl Iterator<Item = (i64, f64)> + '_ {
        let n = self.n_series;
        self.ts
            .iter()
            .enumerate()
            .map(move |(c, &t)| (t, self.values[c * n + s]))
            .filter(|(_, v)| !is_absent(*v))
    }
    /// Series and timestamp of sample `idx`.
    fn locate(&self, idx: usize) -> (usize, i64) {
        let s = self.series_of(idx);
        let rank = idx - self.starts[s];
        let ts = self.series_samples(s).nth(rank).map_or(0, |(t, _)| t);
        (s, ts)
    }
}

/// The series whose range in `starts` (prefix sums of samples per series)
/// holds sample `idx`; empty series are passed over.
fn series_of(starts: &[usize], idx: usize) -> usize {
    starts.partition_point(|&x| x <= idx).saturating_sub(1)
}

#[derive(Debug)]
enum Stop {
    CaughtUp,
    Full,
    /// The next record belongs to another series set: it waits in `carry`.
    Boundary,
    Error(WalError),
}

/// Everything that runs on the blocking pool: the WAL reader, decoding,
/// and the window being filled.
struct ReadSide {
    reader: Option<Box<dyn WalReader>>,
    rec: Record,
    carry: Option<Record>,
    sets: Vec<Arc<SetEntry>>,
    dec: SamplesDecoder,
    window: Window,
    /// End of the last record fully taken (into the window, or dropped).
    consumed: Option<Position>,
    last_ts: Option<i64>,
    cap: usize,
    age_limit_ms: Option<i64>,
    metrics: Arc<SenderMetrics>,
    name: String,
    write_relabel: Rules,
    relabel: RelabelScratch,
    /// Rebuilding a window recorded as partly done: no cap and no age
    /// drops (neither decided it the first time), nothing counted (that
    /// was counted when it was first built); stop at its end.
    resume: Option<WindowMark>,
    /// Records copied from the writer's queue: read instead of the WAL
    /// while set; they move no position.
    mem: Option<VecDeque<Record>>,
    /// Samples records delivered from memory (hashes, oldest first):
    /// skipped if the WAL hands them over later.
    skip: VecDeque<u64>,
    /// Samples records taken from memory into the window being filled.
    taken_mem: Vec<u64>,
    /// Each series' newest timestamp taken, for the series set `last_set`
    /// (id, series sent): a value not newer is dropped, counted.
    last: Vec<i64>,
    last_set: (u64, usize),
    /// `last` before the record being read (restored if it fails).
    last_saved: Vec<i64>,
}

impl ReadSide {
    fn fill(&mut self) -> Stop {
        loop {
            match self.resume {
                Some(m) if self.consumed.is_some_and(|c| c >= m.end) => return Stop::Full,
                Some(_) => {}
                None if self.window.samples() >= self.cap
                    || self.window.values.len() >= self.cap.saturating_mul(SLOTS_PER_SAMPLE) =>
                {
                    return Stop::Full
                }
                None => {}
            }
            let mut rec = match self.carry.take() {
                Some(r) => r,
                None if self.mem.is_some() => {
                    match self.mem.as_mut().and_then(VecDeque::pop_front) {
                        Some(r) => r,
                        None => return Stop::CaughtUp,
                    }
                }
                None => {
                    let Some(reader) = self.reader.as_mut() else {
                        return Stop::CaughtUp;
                    };
                    let mut rec = std::mem::take(&mut self.rec);
                    match reader.next(&mut rec) {
                        Ok(true) => rec,
                        Ok(false) => {
                            self.rec = rec;
                            return Stop::CaughtUp;
                        }
                        Err(e) => {
                            self.rec = rec;
                            return Stop::Error(e);
                        }
                    }
                }
            };
            let taken = self.take(&rec);
            if !taken {
                self.carry = Some(rec);
                return Stop::Boundary;
            }
            if !rec.replayed && self.mem.is_none() {
                self.consumed = Some(rec.end);
            }
            if self.mem.is_some() && rec.kind == Some(RecordKind::Samples) {
                self.taken_mem.push(record_hash(&rec.data));
            }
            rec.data.clear();
            self.rec = rec;
        }
    }

    /// Takes one record into the window (or drops it, counted). False when
    /// it must wait for the next window.
    fn take(&mut self, rec: &Record) -> bool {
        match rec.kind {
            Some(RecordKind::SeriesSet) => {
                match decode_series_set(&rec.data) {
                    Ok(set) => {
                        let entry = Arc::new(SetEntry::new(
                            &set,
                            &self.write_relabel,
                            &mut self.relabel,
                            self.sets.last().map(|s| &**s),
                        ));
                        self.sets.retain(|s| s.id != entry.id);
                        if self.sets.len() >= MAX_SETS {
                            self.sets.remove(0);
                        }
                        self.sets.push(entry);
                    }
                    Err(e) => {
                        tracing::warn!(remote = %self.name, position = ?rec.start, error = %e, "series set record does not decode; its samples will be dropped");
                    }
                }
                true
            }
            Some(RecordKind::Samples) if !rec.replayed => self.take_samples(rec),
            _ => true,
        }
    }

    fn take_samples(&mut self, rec: &Record) -> bool {
        let samples = rec.meta.samples as u64;
        let count = self.resume.is_none();
        if let (Some(limit), true) = (self.age_limit_ms, count && self.skip.is_empty()) {
            if rec.meta.samples > 0 && rec.meta.max_ts < now_ms() - limit {
                self.metrics.dropped(DropReason::TooOld, samples);
                return true;
            }
        }
        if self.mem.is_none()
            && !self.skip.is_empty()
            && delivered_before(&mut self.skip, record_hash(&rec.data))
        {
            return true;
        }
        let undecodable = |m: &SenderMetrics, why: &str| {
            if count {
                tracing::warn!(remote = %self.name, position = ?rec.start, samples, "samples record dropped: {why}");
                m.dropped(DropReason::Undecodable, samples);
            }
            true
        };
        let mut rd = match self.dec.open(&rec.data) {
            Ok(rd) => rd,
            Err(e) => return undecodable(&self.metrics, &e.to_string()),
        };
        let Some(set) = self.sets.iter().rev().find(|s| s.id == rd.set_id).cloned() else {
            return undecodable(&self.metrics, "no series set for it");
        };
        if set.n_all != rd.n_series {
            return undecodable(&self.metrics, "series count differs from its series set");
        }
        let w = &mut self.window;
        match &w.set {
            Some(cur) if !Arc::ptr_eq(cur, &set) => return false,
            Some(_) => {}
            None => {
                w.set = Some(Arc::clone(&set));
                w.n_series = set.labels.len();
                w.counts.clear();
                w.counts.resize(w.n_series, 0);
            }
        }
        let n = w.n_series;
        if self.last_set != (set.id, set.n_all) {
            // Another series set: its series are numbered afresh.
            self.last_set = (set.id, set.n_all);
            self.last.clear();
            self.last.resize(set.n_all, i64::MIN);
        }
        self.last_saved.clone_from(&self.last);
        let (ts_len, val_len) = (w.ts.len(), w.values.len());
        let ts_before = self.last_ts;
        let scratch = &mut self.relabel.values;
        let (mut relabeled_away, mut out_of_order) = (0u64, 0u64);
        loop {
            let at = w.values.len();
            let next = match &set.kept {
                None => {
                    w.values.resize(at + n, 0.0);
                    rd.next_collection(&mut w.values[at..])
                }
                Some(_) => {
                    scratch.resize(rd.n_series, 0.0);
                    rd.next_collection(scratch)
                }
            };
            match next {
                Ok(Some(ts)) => {
                    // Per-series order, over all the record's series: a
                    // value not newer than its series' last one (a clock
                    // set back) is dropped, counted.
                    let row: &mut [f64] = match &set.kept {
                        None => &mut w.values[at..],
                        Some(_) => &mut scratch[..],
                    };
                    for (v, last) in row.iter_mut().zip(self.last.iter_mut()) {
                        if is_absent(*v) {
                            continue;
                        }
                        if *last >= ts {
                            *v = ABSENT;
                            out_of_order += 1;
                        } else {
                            *last = ts;
                        }
                    }
                    if let Some(kept) = &set.kept {
                        w.values.extend(kept.iter().map(|&i| scratch[i as usize]));
                        let all = scratch.iter().filter(|v| !is_absent(**v)).count();
                        let sent = w.values[at..].iter().filter(|v| !is_absent(**v)).count();
                        relabeled_away += (all - sent) as u64;
                    }
                    let mut present = 0;
                    for (v, c) in w.values[at..].iter().zip(w.counts.iter_mut()) {
                        if !is_absent(*v) {
                            *c += 1;
                            present += 1;
                        }
                    }
                    if present == 0 {
                        // Another source's row, or all of it dropped.
                        w.values.truncate(at);
                        continue;
                    }
                    w.present += present;
                    self.last_ts = Some(self.last_ts.map_or(ts, |l| l.max(ts)));
                    w.ts.push(ts);
                }
                Ok(None) => {
                    w.values.truncate(at);
                    break;
                }
                Err(e) => {
                    // All or nothing per record: what it already added goes.
                    w.ts.truncate(ts_len);
                    w.values.truncate(val_len);
                    w.recount();
                    self.last_ts = ts_before;
                    std::mem::swap(&mut self.last, &mut self.last_saved);
                    if w.ts.is_empty() {
                        w.set = None;
                    }
                    let m = Arc::clone(&self.metrics);
                    return undecodable(&m, &e.to_string());
                }
            }
        }
        if count && out_of_order > 0 {
            self.metrics.dropped(DropReason::OutOfOrder, out_of_order);
        }
        if count && relabeled_away > 0 {
            self.metrics
                .dropped(DropReason::WriteRelabel, relabeled_away);
        }
        if !w.ts.is_empty() {
            w.first_at.get_or_insert_with(Instant::now);
            if ts_len == 0 {
                w.from = Some((rec.start, ts_before));
            }
        } else {
            w.set = None;
        }
        true
    }
}

/// Whether the samples record with this hash, read from the WAL, was
/// delivered from memory already. The WAL holds the writer's queue in
/// order (a record every remote delivered may be missing), so what was
/// delivered before a match, or before a record not delivered at all,
/// will not come any more and is forgotten.
fn delivered_before(skip: &mut VecDeque<u64>, hash: u64) -> bool {
    match skip.iter().position(|&h| h == hash) {
        Some(i) => {
            skip.drain(..=i);
            true
        }
        None => {
            skip.clear();
            false
        }
    }
}

/// Identity of a samples record's bytes (the same in the writer's queue
/// and in the WAL).
fn record_hash(data: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

/// What places a window in the WAL, for its progress marks.
#[derive(Debug, Clone, Copy)]
struct Placed {
    from: Position,
    end: Position,
    total: u64,
    ts_before: Option<i64>,
}

impl Placed {
    /// Samples `..sent` are done and `sent..next` is the request to send.
    fn at(&self, sent: usize, next: usize) -> Progress {
        Progress {
            at: self.from,
            window: Some(WindowMark {
                end: self.end,
                total: self.total,
                sent: sent as u64,
                next: next as u64,
                last_ts: self.ts_before.unwrap_or(i64::MIN),
            }),
        }
    }
}

/// The end of the request starting at `a` on the window's grid of
/// `size`-sample cuts.
fn cut(a: usize, size: usize, total: usize) -> usize {
    ((a / size + 1) * size).min(total)
}

/// How one request ended for good.
enum Answer {
    /// Delivered, or dropped and counted: the request is done.
    Done,
    /// 400; `already`: it says out of order / out of bounds / duplicate.
    /// `too_old`: samples of the piece past `sample_age_limit`, not sent
    /// (counted only if the piece is not split: halves count their own).
    Refused {
        n: u64,
        too_old: u64,
        what: String,
        already: bool,
    },
    /// 413.
    TooLarge {
        n: u64,
        what: String,
    },
    Shutdown,
}

/// Where to cut `[a, b)` (series-major sample indexes; series s holds
/// `starts[s] .. starts[s+1]`) in two: at the series boundary nearest the
/// middle while it spans several series, else in the middle of the one
/// series' time.
fn split_point(starts: &[usize], a: usize, b: usize) -> usize {
    let (s0, s1) = (series_of(starts, a), series_of(starts, b - 1));
    if s1 > s0 {
        let m = starts[s0 + (s1 - s0).div_ceil(2)];
        if m > a && m < b {
            return m;
        }
    }
    a + (b - a) / 2
}

enum Flushed {
    Done,
    Shutdown,
}

enum Unspooled {
    Nothing,
    Sent,
    Shutdown,
}

/// One remote's sender. Build with `Sender::new`, run with `run`.
pub struct Sender {
    cfg: RemoteConfig,
    client: Client,
    wal: Arc<dyn Wal>,
    metrics: Arc<SenderMetrics>,
    shutdown: watch::Receiver<bool>,
    backoff: Backoff,
    req: RequestWriter,
    snappy: snap::raw::Encoder,
    compressed: Vec<u8>,
    /// The next request may have been delivered before: the first after
    /// start (it may be the one in flight at the last stop), or one whose
    /// previous attempt timed out or lost its connection.
    maybe_delivered: bool,
    /// Whether a failing remote is probed during long backoff waits: until
    /// a resend that a successful probe started fails too (a receiver that
    /// answers empty requests but not data would otherwise be sent the
    /// data every second); again after the streak ends.
    probe_ok: bool,
    /// The request now in flight was started early by a successful probe.
    probe_resend: bool,
    /// `max_samples_per_second`, when set.
    bucket: Option<TokenBucket>,
    /// The writer's queue, and the newest record taken from it.
    tap: Option<(QueueTap, u64)>,
    /// Held records are not taken before this (they are gathered into
    /// fuller requests, as the WAL path does with batch_send_deadline).
    unspool_at: Option<tokio::time::Instant>,
}

impl Sender {
    pub fn new(
        cfg: RemoteConfig,
        client: Client,
        wal: Arc<dyn Wal>,
        metrics: Arc<SenderMetrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let (cfg_rate, cfg_burst) = (cfg.max_samples_per_second, cfg.max_samples_per_send);
        Sender {
            backoff: Backoff::new(cfg.min_backoff, cfg.max_backoff),
            cfg,
            client,
            wal,
            metrics,
            shutdown,
            req: RequestWriter::default(),
            snappy: snap::raw::Encoder::new(),
            compressed: Vec::new(),
            maybe_delivered: true,
            probe_ok: true,
            probe_resend: false,
            bucket: (cfg_rate > 0)
                .then(|| TokenBucket::new(cfg_rate, cfg_burst as u64, Instant::now())),
            tap: None,
            unspool_at: None,
        }
    }

    /// Lets the sender deliver the writer's queued records from memory
    /// while the WAL refuses writes.
    pub fn with_tap(mut self, tap: Option<QueueTap>) -> Self {
        self.tap = tap.map(|t| (t, 0));
        self
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves when shutdown is asked for. Only an explicit `true`
    /// stops a sender: a dropped shutdown channel does not.
    async fn stopped(shutdown: &mut watch::Receiver<bool>) {
        if shutdown.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Sleeps unless shutdown comes first; false on shutdown.
    async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = Self::stopped(&mut self.shutdown) => false,
        }
    }

    /// Waits `d` before the same request goes again; false on shutdown.
    /// A long computed step (no `Retry-After`) is cut short by probing the
    /// remote with an empty request about every second: once one is
    /// answered 2xx the resend follows after a jittered delay of under a
    /// second (and not after the step's end). A probe answered with `Retry-After` ends the probing; that
    /// wait is honoured (capped at `max_backoff`) before the resend. One
    /// answered with a final refusal (4xx other than 429) ends the probing
    /// for this wait.
    async fn wait_retry(&mut self, d: Duration, retry_after: Option<Duration>) -> bool {
        if !self.probe_ok || !probes_for(d, retry_after) {
            return self.sleep(d).await;
        }
        let until = Instant::now() + d;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let next = probe_interval();
            if left <= next {
                return self.sleep(left).await;
            }
            if !self.sleep(next).await {
                return false;
            }
            let reply = {
                let probe = self.client.probe(PROBE_TIMEOUT);
                tokio::select! {
                    r = probe => r,
                    _ = Self::stopped(&mut self.shutdown) => return false,
                }
            };
            self.metrics.probed();
            let Reply::Status {
                code, retry_after, ..
            } = reply
            else {
                continue;
            };
            let left = until.saturating_duration_since(Instant::now());
            match decide(code, retry_after) {
                Decision::Success => {
                    // Never later than the backoff step would have resent.
                    let start = drain_start_delay().min(left);
                    tracing::info!(remote = %self.cfg.name, ?start, "remote answers again; resending");
                    self.probe_resend = true;
                    return self.sleep(start).await;
                }
                Decision::Retry { retry_after: None } => {}
                Decision::Retry {
                    retry_after: Some(ra),
                } => return self.sleep(left.max(ra.min(self.cfg.max_backoff))).await,
                _ => return self.sleep(left).await,
            }
        }
    }

    async fn open_reader(&mut self, from: Position) -> Option<Box<dyn WalReader>> {
        let mut backoff = Backoff::new(self.cfg.min_backoff, self.cfg.max_backoff);
        loop {
            let wal = Arc::clone(&self.wal);
            let r = tokio::task::spawn_blocking(move || wal.reader(from)).await;
            match r {
                Ok(Ok(r)) => return Some(r),
                Ok(Err(e)) => {
                    tracing::warn!(remote = %self.cfg.name, error = %e, "cannot open a WAL reader; retrying")
                }
                Err(e) => {
                    tracing::error!(remote = %self.cfg.name, error = %e, "WAL reader task failed")
                }
            }
            let d = backoff.next(None);
            if !self.sleep(d).await {
                return None;
            }
        }
    }

    async fn ack(&self, upto: Position) -> bool {
        self.record(Progress::at(upto)).await
    }

    /// Makes `p` durable; false (logged) if it could not be: the next
    /// record covers it, and a kill before that re-sends a little more.
    async fn record(&self, p: Progress) -> bool {
        let wal = Arc::clone(&self.wal);
        let name = self.cfg.name.clone();
        match tokio::task::spawn_blocking(move || wal.ack_progress(&name, p)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                // The data is delivered; the next ack covers this one.
                tracing::warn!(remote = %self.cfg.name, error = %e, "cannot record the delivered position; will retry with the next ack");
                false
            }
            Err(e) => {
                tracing::error!(remote = %self.cfg.name, error = %e, "WAL ack task failed");
                false
            }
        }
    }

    pub async fn run(mut self) {
        let progress = self.wal.progress(&self.cfg.name);
        let mut acked = progress.at;
        let Some(reader) = self.open_reader(acked).await else {
            return;
        };
        let resume = progress.window.filter(|_| progress.valid_window());
        let mut side = Some(ReadSide {
            reader: Some(reader),
            rec: Record::default(),
            carry: None,
            sets: Vec::new(),
            dec: SamplesDecoder::new(),
            window: Window::default(),
            consumed: None,
            cap: self
                .cfg
                .max_samples_per_send
                .saturating_mul(WINDOW_FACTOR)
                .min(1 << 20)
                .max(self.cfg.max_samples_per_send),
            age_limit_ms: self.cfg.sample_age_limit.map(|d| d.as_millis() as i64),
            metrics: Arc::clone(&self.metrics),
            name: self.cfg.name.clone(),
            write_relabel: self.cfg.write_relabel.clone(),
            relabel: RelabelScratch::default(),
            resume,
            last_ts: resume.map(|m| m.last_ts).filter(|&t| t != i64::MIN),
            mem: None,
            skip: VecDeque::new(),
            taken_mem: Vec::new(),
            last: Vec::new(),
            last_set: (0, usize::MAX),
            last_saved: Vec::new(),
        });
        let mut committed = self.wal.subscribe();
        let mut broken_backoff = Backoff::new(self.cfg.min_backoff, self.cfg.max_backoff);
        loop {
            if self.stopping() {
                return;
            }
            committed.borrow_and_update();
            let Some(mut s) = side.take() else { return };
            let (s, stop) = match tokio::task::spawn_blocking(move || {
                let stop = s.fill();
                (s, stop)
            })
            .await
            {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(remote = %self.cfg.name, error = %e, "WAL read task failed; sender stops");
                    return;
                }
            };
            let rs = side.insert(s);
            // A window recorded as partly done: rebuilt exactly, it goes
            // on from the recorded sample; rebuilt otherwise (records lost
            // to damage or limits), it is sent whole.
            let mut skip = (0usize, None);
            if let Some(m) = rs.resume.take() {
                let same = rs.consumed == Some(m.end)
                    && rs.window.samples() as u64 == m.total
                    && rs.window.from.map(|f| f.0) == Some(acked);
                if same {
                    skip = (m.sent as usize, Some(m.next as usize));
                } else {
                    tracing::warn!(remote = %self.cfg.name, "the window in flight at the last stop reads back differently; sending it whole (the receiver may refuse what it already has)");
                }
            }
            let broken = match stop {
                Stop::Error(ref e) => {
                    tracing::warn!(remote = %self.cfg.name, error = %e, "WAL read failed; sending what was read, then reopening");
                    true
                }
                _ => false,
            };
            self.metrics
                .pending(rs.window.oldest(), rs.window.samples() as u64);

            if !rs.window.is_empty() {
                let deadline = rs.window.first_at.map(|t| t + self.cfg.batch_send_deadline);
                let flush_now = broken
                    || skip.1.is_some()
                    || matches!(stop, Stop::Full | Stop::Boundary)
                    || rs.window.samples() >= self.cfg.max_samples_per_send
                    || deadline.map_or(true, |d| d <= Instant::now());
                if !flush_now {
                    let d = deadline.unwrap_or_else(Instant::now);
                    tokio::select! {
                        r = committed.changed() => {
                            if r.is_err() {
                                return;
                            }
                            continue;
                        }
                        _ = tokio::time::sleep_until(tokio::time::Instant::from_std(d)) => {}
                        _ = Self::stopped(&mut self.shutdown) => return,
                    }
                }
                let mut window = std::mem::take(&mut rs.window);
                window.seal();
                let placed = window.from.map(|(from, ts_before)| Placed {
                    from,
                    end: rs.consumed.unwrap_or(from),
                    total: window.samples() as u64,
                    ts_before,
                });
                let r = self.flush(&window, placed, skip).await;
                window.clear();
                let Some(rs) = side.as_mut() else { return };
                rs.window = window;
                self.metrics.pending(None, 0);
                if let Flushed::Shutdown = r {
                    return;
                }
            }
            let Some(rs) = side.as_mut() else { return };
            if let Some(end) = rs.consumed {
                if end > acked && self.ack(end).await {
                    acked = end;
                }
            }
            if broken {
                let d = broken_backoff.next(None);
                if !self.sleep(d).await {
                    return;
                }
                let from = rs.consumed.unwrap_or(acked).max(acked);
                rs.carry = None;
                rs.reader = None;
                let Some(r) = self.open_reader(from).await else {
                    return;
                };
                if let Some(rs) = side.as_mut() {
                    rs.reader = Some(r);
                }
                continue;
            }
            broken_backoff.reset();
            if matches!(stop, Stop::CaughtUp) {
                let still_empty = side.as_ref().is_some_and(|s| s.window.is_empty());
                if still_empty {
                    match self.unspool(&mut side, &committed).await {
                        Unspooled::Sent => continue,
                        Unspooled::Shutdown => return,
                        Unspooled::Nothing => {}
                    }
                    let tap = self.tap.as_mut().map(|(t, _)| t);
                    let offered = async move {
                        match tap {
                            Some(t) => t.offered().await,
                            None => std::future::pending().await,
                        }
                    };
                    let gathered = self.unspool_at;
                    let gathering = async move {
                        match gathered {
                            Some(t) => tokio::time::sleep_until(t).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        r = committed.changed() => {
                            if r.is_err() {
                                // The WAL is gone: nothing more will come.
                                return;
                            }
                        }
                        _ = offered => {}
                        _ = gathering => {}
                        _ = Self::stopped(&mut self.shutdown) => return,
                    }
                }
            }
        }
    }

    /// Delivers the writer's queued records from memory: only while the
    /// WAL refuses writes, this remote is caught up with the WAL (the
    /// caller's window is empty) and answering, and the WAL has nothing
    /// unread (`committed` unchanged since the last read).
    async fn unspool(
        &mut self,
        side: &mut Option<ReadSide>,
        committed: &watch::Receiver<Position>,
    ) -> Unspooled {
        if self.metrics.failures_in_a_row() > 0 || self.metrics.blocked().is_some() {
            return Unspooled::Nothing;
        }
        let Some((tap, after)) = self.tap.as_mut() else {
            return Unspooled::Nothing;
        };
        self.unspool_at = tap.not_before(
            *after,
            self.cfg.max_samples_per_send,
            self.cfg.batch_send_deadline,
        );
        if self.unspool_at.is_some() {
            return Unspooled::Nothing;
        }
        let items = tap.take(*after, || committed.has_changed().unwrap_or(true));
        let Some(last) = items.last().map(|q| q.seq) else {
            return Unspooled::Nothing;
        };
        let Some(rs) = side.as_mut() else {
            tap.release();
            return Unspooled::Shutdown;
        };
        rs.mem = Some(
            items
                .into_iter()
                .map(|q| Record {
                    kind: Some(q.kind),
                    replayed: false,
                    start: Position::default(),
                    end: Position::default(),
                    meta: q.meta,
                    data: q.data,
                })
                .collect(),
        );
        loop {
            // Memory only: decoding a few collections, no disk.
            let stop = rs.fill();
            if !rs.window.is_empty() {
                let mut window = std::mem::take(&mut rs.window);
                window.seal();
                self.metrics
                    .pending(window.oldest(), window.samples() as u64);
                let r = self.flush(&window, None, (0, None)).await;
                self.metrics.pending(None, 0);
                if let Flushed::Shutdown = r {
                    rs.mem = None;
                    rs.taken_mem.clear();
                    if let Some((tap, _)) = self.tap.as_ref() {
                        tap.release();
                    }
                    return Unspooled::Shutdown;
                }
                self.metrics.unspooled(window.samples() as u64);
                for h in rs.taken_mem.drain(..) {
                    if rs.skip.len() >= MAX_SKIP {
                        rs.skip.pop_front();
                    }
                    rs.skip.push_back(h);
                }
                window.clear();
                rs.window = window;
            }
            if !matches!(stop, Stop::Full | Stop::Boundary) {
                break;
            }
        }
        rs.mem = None;
        if let Some((tap, after)) = self.tap.as_mut() {
            tap.delivered(last);
            *after = last;
        }
        Unspooled::Sent
    }

    /// Sends a window as series-major requests from sample `skip.0` on
    /// (the first one ending at `skip.1` when given), each until it is
    /// done (delivered, or refused for good and counted), recording
    /// progress after each.
    async fn flush(
        &mut self,
        w: &Window,
        placed: Option<Placed>,
        skip: (usize, Option<usize>),
    ) -> Flushed {
        let Some(set) = w.set.clone() else {
            return Flushed::Done;
        };
        let total = w.samples();
        // As few requests as max_samples_per_send allows, of equal size: a
        // window just over the limit would otherwise end in a tiny request
        // (measured: 80 samples at 13 B/sample beside 2000 at 7). Cuts
        // fall on multiples of `size` from the window's start, so a
        // resumed window is cut where it was cut the first time.
        let max = self.cfg.max_samples_per_send.max(1);
        let requests = total.div_ceil(max).max(1);
        let size = total.div_ceil(requests).max(1);
        let mut a = skip.0.min(total);
        let mut first = skip.1;
        while a < total {
            let b = match first.take() {
                Some(b) if b > a && b <= total => b,
                _ => cut(a, size, total),
            };
            if let Flushed::Shutdown = self.deliver(w, &set, placed, size, a, b).await {
                return Flushed::Shutdown;
            }
            a = b;
        }
        Flushed::Done
    }

    /// One request `[a, b)`, split as the receiver's answers demand. The
    /// durable mark always names the piece about to be sent (recorded
    /// before a split's first half goes, and after every piece done), so
    /// whatever is in flight at a kill is what the next run sends first.
    /// The window's end is recorded by the caller.
    async fn deliver(
        &mut self,
        w: &Window,
        set: &SetEntry,
        placed: Option<Placed>,
        size: usize,
        a: usize,
        b: usize,
    ) -> Flushed {
        let total = w.samples();
        let mut todo = vec![(a, b)];
        let mut refused = 0u64;
        let mut example: Option<(usize, i64, String)> = None;
        while let Some((x, y)) = todo.pop() {
            match self.attempt(w, set, x, y).await {
                Answer::Shutdown => return Flushed::Shutdown,
                Answer::Done => {}
                Answer::Refused {
                    n,
                    too_old,
                    what,
                    already,
                } => {
                    if std::mem::take(&mut self.maybe_delivered) && already {
                        self.metrics.dropped(DropReason::TooOld, too_old);
                        // This very request may have reached the receiver
                        // before (the one in flight at the last stop, or
                        // one whose answer was lost), and the receiver
                        // says it has it: all of it, as a receiver takes a
                        // request whole or not at all.
                        tracing::info!(remote = %self.cfg.name, samples = n, "remote already had this request (sent again after a stop or a lost answer): {what}");
                        self.metrics.resent(n);
                    } else if y - x == 1 {
                        self.metrics.dropped(DropReason::Http4xx, n);
                        refused += n;
                        if example.is_none() && n > 0 {
                            let (s, ts) = w.locate(x);
                            example = Some((s, ts, what));
                        }
                    } else {
                        self.split(&mut todo, placed, &w.starts, x, y).await;
                        continue;
                    }
                }
                Answer::TooLarge { n, what } => {
                    if y - x == 1 {
                        tracing::warn!(remote = %self.cfg.name, "remote refuses even a single sample as too large; dropped: {what}");
                        self.metrics.dropped(DropReason::Http4xx, n);
                    } else {
                        self.split(&mut todo, placed, &w.starts, x, y).await;
                        continue;
                    }
                }
            }
            self.maybe_delivered = false;
            if let (Some(p), true) = (placed, y < total) {
                let next = todo.last().map_or_else(|| cut(y, size, total), |t| t.1);
                self.record(p.at(y, next)).await;
            }
        }
        if let Some((s, ts, what)) = example {
            tracing::warn!(
                remote = %self.cfg.name,
                refused,
                delivered = (b - a) as u64 - refused,
                series = %set.labels.describe(s),
                timestamp = ts,
                "remote refused samples for good (dropped, counted http_4xx), delivered the rest of the request: {what}"
            );
        }
        Flushed::Done
    }

    /// Replaces `[x, y)` by its two halves (first half next) and records
    /// that the first half is the piece now in flight.
    async fn split(
        &mut self,
        todo: &mut Vec<(usize, usize)>,
        placed: Option<Placed>,
        starts: &[usize],
        x: usize,
        y: usize,
    ) {
        let m = split_point(starts, x, y);
        todo.push((m, y));
        todo.push((x, m));
        if let Some(p) = placed {
            self.record(p.at(x, m)).await;
        }
    }

    /// Writes the samples at series-major indexes `a..b` (present values
    /// only; series s holds `starts[s] .. starts[s+1]`) newer than `cutoff`
    /// into `self.req`. A series with none in the range gets no TimeSeries.
    fn build(&mut self, w: &Window, set: &SetEntry, a: usize, b: usize, cutoff: i64) {
        self.req.clear();
        let (s0, s1) = (w.series_of(a), w.series_of(b - 1));
        for s in s0..=s1 {
            let (from, to) = (w.starts[s], w.starts[s + 1]);
            let lo = a.max(from) - from;
            let hi = b.min(to).saturating_sub(from);
            let samples = w
                .series_samples(s)
                .skip(lo)
                .take(hi.saturating_sub(lo))
                .filter(|&(t, _)| t >= cutoff);
            self.req.series(set.labels.series(s), samples);
        }
    }

    /// Sends `[a, b)` until the receiver answers it for good.
    async fn attempt(&mut self, w: &Window, set: &SetEntry, a: usize, b: usize) -> Answer {
        let planned = (b - a) as u64;
        let mut attempts = 0u32;
        let mut blocked_logged = false;
        loop {
            if self.stopping() {
                return Answer::Shutdown;
            }
            let cutoff = self
                .cfg
                .sample_age_limit
                .map_or(i64::MIN, |l| now_ms() - l.as_millis() as i64);
            self.build(w, set, a, b, cutoff);
            let n = self.req.n_samples as u64;
            if n == 0 {
                self.metrics.dropped(DropReason::TooOld, planned);
                return Answer::Done;
            }
            self.compressed
                .resize(snap::raw::max_compress_len(self.req.body.len()), 0);
            let len = match self.snappy.compress(&self.req.body, &mut self.compressed) {
                Ok(len) => len,
                Err(e) => {
                    // Only for bodies over 4 GiB, which max_samples_per_send
                    // rules out; drop rather than stall.
                    tracing::error!(remote = %self.cfg.name, error = %e, "cannot compress request; dropped");
                    self.metrics.dropped(DropReason::Undecodable, planned);
                    return Answer::Done;
                }
            };
            let body = Bytes::copy_from_slice(&self.compressed[..len]);
            if let Some(bucket) = self.bucket.as_mut() {
                let wait = bucket.take(n, Instant::now());
                if !wait.is_zero() && !self.sleep(wait).await {
                    return Answer::Shutdown;
                }
            }
            let started = Instant::now();
            // A stop does not abandon the request in flight: it gets
            // `shutdown_grace` to be answered, so it can be recorded and
            // is not sent again by the next run.
            let grace = self.cfg.shutdown_grace;
            let (reply, stopping) = {
                let send = self.client.send(body);
                tokio::pin!(send);
                tokio::select! {
                    r = &mut send => (r, false),
                    _ = Self::stopped(&mut self.shutdown) => {
                        match tokio::time::timeout(grace, &mut send).await {
                            Ok(r) => (r, true),
                            Err(_) => {
                                tracing::warn!(remote = %self.cfg.name, samples = n, ?grace, "stopping: the request in flight got no answer within shutdown_grace; the next run sends it again");
                                return Answer::Shutdown;
                            }
                        }
                    }
                }
            };
            let took = started.elapsed();
            attempts += 1;
            let (outcome, decision, what) = match &reply {
                Reply::Status {
                    code,
                    retry_after,
                    body,
                } => (
                    RequestOutcome::from_status(*code),
                    decide(*code, *retry_after),
                    format!("HTTP {code}: {body}"),
                ),
                Reply::Timeout => (
                    RequestOutcome::Timeout,
                    Decision::Retry { retry_after: None },
                    format!("no answer within {:?}", self.cfg.timeout),
                ),
                Reply::Error(e) => (
                    RequestOutcome::Error,
                    Decision::Retry { retry_after: None },
                    e.clone(),
                ),
            };
            self.metrics.request(outcome, took);
            let after_probe = std::mem::take(&mut self.probe_resend);
            if !matches!(decision, Decision::Retry { .. }) {
                self.probe_ok = true;
            }
            if !matches!(decision, Decision::Success) {
                self.metrics.failed(&what);
            }
            if !matches!(decision, Decision::Blocked(_)) && self.metrics.blocked().is_some() {
                tracing::info!(remote = %self.cfg.name, "remote no longer refuses cairn's requests: {what}");
                self.metrics.set_blocked(None);
            }
            match decision {
                Decision::Success => {
                    self.metrics.sent(n, len as u64);
                    self.metrics.dropped(DropReason::TooOld, planned - n);
                    self.backoff.reset();
                    self.maybe_delivered = false;
                    if attempts > 1 {
                        tracing::info!(remote = %self.cfg.name, attempts, "remote accepted the batch again");
                    }
                    return Answer::Done;
                }
                Decision::Drop => {
                    tracing::warn!(remote = %self.cfg.name, samples = n, "remote rejected the batch for good, dropped: {what}");
                    self.metrics.dropped(DropReason::Http4xx, n);
                    self.metrics.dropped(DropReason::TooOld, planned - n);
                    self.maybe_delivered = false;
                    return Answer::Done;
                }
                Decision::Refused => {
                    let already = match &reply {
                        Reply::Status { body, .. } => already_written(body),
                        _ => false,
                    };
                    // While stopping, an answer that settles the request
                    // without another one (the receiver had it; a single
                    // refused sample) is recorded; one that needs a split
                    // is not: the next run sends this request first.
                    if stopping && !(already && self.maybe_delivered) && b - a > 1 {
                        return Answer::Shutdown;
                    }
                    return Answer::Refused {
                        n,
                        too_old: planned - n,
                        what,
                        already,
                    };
                }
                Decision::Split => {
                    self.maybe_delivered = false;
                    if stopping && b - a > 1 {
                        return Answer::Shutdown;
                    }
                    return Answer::TooLarge { n, what };
                }
                Decision::Blocked(reason) => {
                    self.metrics.set_blocked(Some(reason));
                    self.metrics.retried(n);
                    if !blocked_logged {
                        blocked_logged = true;
                        tracing::error!(remote = %self.cfg.name, reason = reason.as_str(), retry_every = ?self.cfg.max_backoff, "remote refuses every request; keeping the data and retrying until credentials or the URL are fixed (SIGHUP reloads them): {what}");
                    }
                    if stopping || !self.sleep(self.cfg.max_backoff).await {
                        return Answer::Shutdown;
                    }
                }
                Decision::Retry { retry_after } => {
                    self.metrics.retried(n);
                    if matches!(reply, Reply::Timeout | Reply::Error(_)) {
                        self.maybe_delivered = true;
                    }
                    if after_probe {
                        tracing::info!(remote = %self.cfg.name, "remote answers probes but not data; no more probing until a request succeeds");
                        self.probe_ok = false;
                    }
                    if stopping {
                        return Answer::Shutdown;
                    }
                    let d = self.backoff.next(retry_after);
                    if attempts == 1 {
                        tracing::warn!(remote = %self.cfg.name, samples = n, retry_in = ?d, "send failed, will retry: {what}");
                    } else {
                        tracing::debug!(remote = %self.cfg.name, attempts, retry_in = ?d, "send failed again: {what}");
                    }
                    if !self.wait_retry(d, retry_after).await {
                        return Answer::Shutdown;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod split_tests {
    use super::{series_of, split_point};

    #[test]
    fn splits_by_series_first_then_by_time() {
        // 4 series × 10 collections.
        let s = [0, 10, 20, 30, 40];
        assert_eq!(split_point(&s, 0, 40), 20);
        assert_eq!(split_point(&s, 5, 15), 10);
        assert_eq!(split_point(&s, 0, 10), 5);
        assert_eq!(split_point(&s, 3, 5), 4);
        // Every split makes progress on both sides.
        for (a, b) in [(0, 2), (7, 9), (9, 11), (0, 40), (13, 37)] {
            let m = split_point(&s, a, b);
            assert!(m > a && m < b, "{a}..{b} at {m}");
        }
    }

    #[test]
    fn series_without_samples_are_passed_over() {
        // Series 1 and 3 have no present value in the window.
        let s = [0, 4, 4, 6, 6, 9];
        assert_eq!(
            (0..9).map(|i| series_of(&s, i)).collect::<Vec<_>>(),
            vec![0, 0, 0, 0, 2, 2, 4, 4, 4]
        );
        assert_eq!(split_point(&s, 0, 9), 4);
        assert_eq!(split_point(&s, 3, 6), 4);
        for (a, b) in [(0, 2), (3, 5), (5, 7), (0, 9), (4, 6)] {
            let m = split_point(&s, a, b);
            assert!(m > a && m < b, "{a}..{b} at {m}");
        }
    }
}

#[cfg(test)]
mod set_tests {
    use super::*;
    use crate::wal::record::{decode_series_set, encode_series_set, LabelSet};

    fn set(id: u64, names: &[&str]) -> SeriesSet {
        let series: Vec<LabelSet> = names
            .iter()
            .map(|n| LabelSet::from_pairs([("__name__", *n), ("job", "j")]))
            .collect();
        let mut rec = Vec::new();
        encode_series_set(id, &series, &mut rec);
        decode_series_set(&rec).expect("set")
    }

    #[test]
    fn a_set_shares_the_labels_of_series_the_set_before_it_had() {
        let mut scratch = RelabelScratch::default();
        let rules = Rules::default();
        let first = SetEntry::new(&set(1, &["a", "b", "c"]), &rules, &mut scratch, None);
        let second = SetEntry::new(
            &set(2, &["b", "c", "d"]),
            &rules,
            &mut scratch,
            Some(&first),
        );
        assert_eq!(second.labels.len(), 3);
        assert!(
            Arc::ptr_eq(&second.labels.0[0], &first.labels.0[1]),
            "b shared"
        );
        assert!(
            Arc::ptr_eq(&second.labels.0[1], &first.labels.0[2]),
            "c shared"
        );
        assert_eq!(second.labels.describe(2), r#"{__name__="d", job="j"}"#);
        // The same bytes as encoding the set on its own.
        let alone = EncodedLabels::new(&set(2, &["b", "c", "d"]));
        for i in 0..3 {
            assert_eq!(second.labels.series(i), alone.series(i));
        }
    }

    #[test]
    fn relabeled_sets_keep_the_first_of_identical_series_and_share_too() {
        let rules = crate::relabel::Rules::compile(&[toml::from_str(
            "action = \"labeldrop\"\nregex = \"__name__\"",
        )
        .expect("rule")])
        .expect("rules");
        let mut scratch = RelabelScratch::default();
        // Without __name__ every series is {job="j"}: the first is kept.
        let first = SetEntry::new(&set(1, &["a", "b"]), &rules, &mut scratch, None);
        assert_eq!(first.kept.as_deref(), Some(&[0u32][..]));
        let second = SetEntry::new(&set(2, &["c", "d"]), &rules, &mut scratch, Some(&first));
        assert_eq!(second.kept.as_deref(), Some(&[0u32][..]));
        assert!(Arc::ptr_eq(&second.labels.0[0], &first.labels.0[0]));
        assert_eq!(second.labels.describe(0), r#"{job="j"}"#);
    }
}
