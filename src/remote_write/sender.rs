//! The per-remote sender task: WAL cursor → window of collections →
//! requests → ack.
//!
//! Owns: the order samples reach one remote, batching, and when that
//! remote's cursor moves. Reads records from the remote's cursor into a
//! *window* (consecutive collections of one series set, at most
//! `WINDOW_FACTOR × max_samples_per_send` samples, whole records only),
//! then cuts the window series-major into requests of at most
//! `max_samples_per_send` samples: a series' timestamps sit together in
//! one TimeSeries, so while draining a backlog its labels are sent once
//! per request rather than once per sample. Requests go one at a time;
//! the window's end is acked only when every request of it succeeded or
//! was dropped by a 4xx, so an ack always falls on a record boundary.
//!
//! Must never: send a series' samples out of timestamp order (collections
//! not newer than the previous one are dropped, counted), hold more than
//! one window in memory, ack what was not delivered or deliberately
//! dropped, block the runtime on disk I/O (WAL reads and acks run on the
//! blocking pool), or let one remote wait on another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use crate::block::{decode_series_set, SamplesDecoder};
use crate::wal::{Position, Record, RecordKind, Wal, WalError, WalReader};

use super::client::{Client, RemoteConfig, Reply};
use super::metrics::{DropReason, RequestOutcome, SenderMetrics};
use super::proto::{EncodedLabels, RequestWriter};
use super::retry::{decide, Backoff, Decision};
use crate::clock::now_ms;

/// A window holds up to this many requests' worth of samples: enough
/// timestamps per series to amortise labels while draining, small enough
/// to bound memory (16k samples ≈ 128 KiB of values at the defaults).
const WINDOW_FACTOR: usize = 8;
/// Series sets remembered at once (a set is replaced when the scheduler's
/// series change; more than one is live only around such a change).
const MAX_SETS: usize = 4;

/// A series set as the sender needs it: its labels pre-encoded.
#[derive(Debug)]
struct SetEntry {
    id: u64,
    labels: EncodedLabels,
}

#[derive(Debug, Default)]
struct Window {
    set: Option<Arc<SetEntry>>,
    n_series: usize,
    ts: Vec<i64>,
    /// Collection-major: collection c's values are `values[c*n .. (c+1)*n]`.
    values: Vec<f64>,
    first_at: Option<Instant>,
}

impl Window {
    fn samples(&self) -> usize {
        self.values.len()
    }
    fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }
    fn clear(&mut self) {
        self.set = None;
        self.ts.clear();
        self.values.clear();
        self.first_at = None;
    }
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
}

impl ReadSide {
    fn fill(&mut self) -> Stop {
        loop {
            if self.window.samples() >= self.cap {
                return Stop::Full;
            }
            let mut rec = match self.carry.take() {
                Some(r) => r,
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
            if !rec.replayed {
                self.consumed = Some(rec.end);
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
                        let entry = Arc::new(SetEntry {
                            id: set.id,
                            labels: EncodedLabels::new(&set),
                        });
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
        if let Some(limit) = self.age_limit_ms {
            if rec.meta.samples > 0 && rec.meta.max_ts < now_ms() - limit {
                self.metrics.dropped(DropReason::TooOld, samples);
                return true;
            }
        }
        let undecodable = |m: &SenderMetrics, why: &str| {
            tracing::warn!(remote = %self.name, position = ?rec.start, samples, "samples record dropped: {why}");
            m.dropped(DropReason::Undecodable, samples);
            true
        };
        let mut rd = match self.dec.open(&rec.data) {
            Ok(rd) => rd,
            Err(e) => return undecodable(&self.metrics, &e.to_string()),
        };
        let Some(set) = self.sets.iter().rev().find(|s| s.id == rd.set_id).cloned() else {
            return undecodable(&self.metrics, "no series set for it");
        };
        if set.labels.len() != rd.n_series {
            return undecodable(&self.metrics, "series count differs from its series set");
        }
        let w = &mut self.window;
        match &w.set {
            Some(cur) if !Arc::ptr_eq(cur, &set) => return false,
            Some(_) => {}
            None => {
                w.set = Some(set);
                w.n_series = rd.n_series;
            }
        }
        let n = w.n_series;
        let (ts_len, val_len) = (w.ts.len(), w.values.len());
        loop {
            let at = w.values.len();
            w.values.resize(at + n, 0.0);
            match rd.next_collection(&mut w.values[at..]) {
                Ok(Some(ts)) => {
                    if self.last_ts.is_some_and(|l| ts <= l) {
                        w.values.truncate(at);
                        self.metrics.dropped(DropReason::OutOfOrder, n as u64);
                        continue;
                    }
                    self.last_ts = Some(ts);
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
                    if w.ts.is_empty() {
                        w.set = None;
                    }
                    let m = Arc::clone(&self.metrics);
                    return undecodable(&m, &e.to_string());
                }
            }
        }
        if !w.ts.is_empty() {
            w.first_at.get_or_insert_with(Instant::now);
        } else {
            w.set = None;
        }
        true
    }
}

enum Flushed {
    Done,
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
}

impl Sender {
    pub fn new(
        cfg: RemoteConfig,
        client: Client,
        wal: Arc<dyn Wal>,
        metrics: Arc<SenderMetrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
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
        }
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
        let wal = Arc::clone(&self.wal);
        let name = self.cfg.name.clone();
        match tokio::task::spawn_blocking(move || wal.ack(&name, upto)).await {
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
        let mut acked = self.wal.cursor(&self.cfg.name);
        let Some(reader) = self.open_reader(acked).await else {
            return;
        };
        let mut side = Some(ReadSide {
            reader: Some(reader),
            rec: Record::default(),
            carry: None,
            sets: Vec::new(),
            dec: SamplesDecoder::new(),
            window: Window::default(),
            consumed: None,
            last_ts: None,
            cap: self
                .cfg
                .max_samples_per_send
                .saturating_mul(WINDOW_FACTOR)
                .min(1 << 20)
                .max(self.cfg.max_samples_per_send),
            age_limit_ms: self.cfg.sample_age_limit.map(|d| d.as_millis() as i64),
            metrics: Arc::clone(&self.metrics),
            name: self.cfg.name.clone(),
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
            let broken = match stop {
                Stop::Error(ref e) => {
                    tracing::warn!(remote = %self.cfg.name, error = %e, "WAL read failed; sending what was read, then reopening");
                    true
                }
                _ => false,
            };
            self.metrics
                .pending(rs.window.ts.first().copied(), rs.window.samples() as u64);

            if !rs.window.is_empty() {
                let deadline = rs.window.first_at.map(|t| t + self.cfg.batch_send_deadline);
                let flush_now = broken
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
                let r = self.flush(&window).await;
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
                    tokio::select! {
                        r = committed.changed() => {
                            if r.is_err() {
                                // The WAL is gone: nothing more will come.
                                return;
                            }
                        }
                        _ = Self::stopped(&mut self.shutdown) => return,
                    }
                }
            }
        }
    }

    /// Sends a window as series-major requests, each retried until it is
    /// accepted, rejected for good, or too old.
    async fn flush(&mut self, w: &Window) -> Flushed {
        let Some(set) = w.set.clone() else {
            return Flushed::Done;
        };
        let n = w.n_series;
        let k = w.ts.len();
        let total = n * k;
        // As few requests as max_samples_per_send allows, of equal size: a
        // window just over the limit would otherwise end in a tiny request
        // (measured: 80 samples at 13 B/sample beside 2000 at 7).
        let max = self.cfg.max_samples_per_send.max(1);
        let requests = total.div_ceil(max).max(1);
        let size = total.div_ceil(requests);
        let mut a = 0;
        while a < total {
            let b = (a + size).min(total);
            if let Flushed::Shutdown = self.send_range(w, &set, a, b).await {
                return Flushed::Shutdown;
            }
            a = b;
        }
        Flushed::Done
    }

    /// Writes the samples at series-major indexes `a..b` (index = series ×
    /// collections + collection) newer than `cutoff` into `self.req`.
    fn build(&mut self, w: &Window, set: &SetEntry, a: usize, b: usize, cutoff: i64) {
        let n = w.n_series;
        let k = w.ts.len();
        self.req.clear();
        let (s0, s1) = (a / k, (b - 1) / k);
        for s in s0..=s1 {
            let c_from = if s == s0 { a % k } else { 0 };
            let c_to = if s == s1 { (b - 1) % k + 1 } else { k };
            let samples = (c_from..c_to)
                .filter(|&c| w.ts[c] >= cutoff)
                .map(|c| (w.ts[c], w.values[c * n + s]));
            self.req.series(set.labels.series(s), samples);
        }
    }

    async fn send_range(&mut self, w: &Window, set: &SetEntry, a: usize, b: usize) -> Flushed {
        let planned = (b - a) as u64;
        let mut attempts = 0u32;
        loop {
            let cutoff = self
                .cfg
                .sample_age_limit
                .map_or(i64::MIN, |l| now_ms() - l.as_millis() as i64);
            self.build(w, set, a, b, cutoff);
            let n = self.req.n_samples as u64;
            if n == 0 {
                self.metrics.dropped(DropReason::TooOld, planned);
                return Flushed::Done;
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
                    return Flushed::Done;
                }
            };
            let body = Bytes::copy_from_slice(&self.compressed[..len]);
            let started = Instant::now();
            let reply = tokio::select! {
                r = self.client.send(body) => r,
                _ = Self::stopped(&mut self.shutdown) => return Flushed::Shutdown,
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
            if !matches!(decision, Decision::Success) {
                self.metrics.failed(&what);
            }
            match decision {
                Decision::Success => {
                    self.metrics.sent(n, len as u64);
                    self.metrics.dropped(DropReason::TooOld, planned - n);
                    self.backoff.reset();
                    if attempts > 1 {
                        tracing::info!(remote = %self.cfg.name, attempts, "remote accepted the batch again");
                    }
                    return Flushed::Done;
                }
                Decision::Drop => {
                    tracing::warn!(remote = %self.cfg.name, samples = n, "remote rejected the batch for good, dropped: {what}");
                    self.metrics.dropped(DropReason::Http4xx, n);
                    self.metrics.dropped(DropReason::TooOld, planned - n);
                    return Flushed::Done;
                }
                Decision::Retry { retry_after } => {
                    self.metrics.retried(n);
                    let d = self.backoff.next(retry_after);
                    if attempts == 1 {
                        tracing::warn!(remote = %self.cfg.name, samples = n, retry_in = ?d, "send failed, will retry: {what}");
                    } else {
                        tracing::debug!(remote = %self.cfg.name, attempts, retry_in = ?d, "send failed again: {what}");
                    }
                    if !self.sleep(d).await {
                        return Flushed::Shutdown;
                    }
                }
            }
        }
    }
}
