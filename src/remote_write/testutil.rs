//! Test doubles for the sender: an in-memory `Wal` and an in-process
//! receiver that injects faults. Test-only; also usable by the scheduler's
//! tests.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::wal::record::{encode_series_set, LabelSet, SamplesEncoder};
use crate::wal::{
    Dropped, Position, Progress, Record, RecordKind, RecordMeta, Wal, WalError, WalReader, WalStats,
};

use super::proto::WriteRequest;

// ---------------------------------------------------------------------------
// In-memory WAL: position = (0, record index); a record's end is the next
// index, so every ack position is a record boundary by construction and
// `acks()` shows exactly where a remote acked.

struct Rec {
    kind: RecordKind,
    meta: RecordMeta,
    data: Vec<u8>,
}

#[derive(Default)]
struct Inner {
    records: Vec<Rec>,
    committed: usize,
    cursors: BTreeMap<String, Position>,
    marks: BTreeMap<String, Progress>,
    acks: Vec<(String, Position)>,
    progress_acks: Vec<(String, Progress)>,
}

type AckHook = Box<dyn Fn(&str, Position) + Send + Sync>;

pub struct FakeWal {
    inner: Arc<Mutex<Inner>>,
    /// Reads left before one fails with an I/O error (-1: never).
    fail_after: Arc<AtomicI64>,
    tx: watch::Sender<Position>,
    on_ack: Mutex<Option<AckHook>>,
    /// Appends fail with `DiskFull` while set.
    full: AtomicBool,
}

fn pos(i: usize) -> Position {
    Position {
        segment: 0,
        offset: i as u64,
    }
}

impl FakeWal {
    pub fn new() -> Arc<Self> {
        Arc::new(FakeWal {
            inner: Arc::default(),
            fail_after: Arc::new(AtomicI64::new(-1)),
            tx: watch::channel(Position::default()).0,
            on_ack: Mutex::new(None),
            full: AtomicBool::new(false),
        })
    }

    /// Appends fail with `DiskFull` while `full`.
    pub fn set_full(&self, full: bool) {
        self.full.store(full, SeqCst);
    }

    /// Timestamps of the samples records written, in order.
    pub fn written_ts(&self) -> Vec<i64> {
        self.lock()
            .records
            .iter()
            .filter(|r| r.kind == RecordKind::Samples)
            .map(|r| r.meta.max_ts)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    /// The read after `reads` more successful ones fails (once).
    pub fn fail_read_after(&self, reads: i64) {
        self.fail_after.store(reads, SeqCst);
    }

    /// Called on every ack, before the cursor moves.
    pub fn on_ack(&self, f: impl Fn(&str, Position) + Send + Sync + 'static) {
        *self.on_ack.lock().unwrap() = Some(Box::new(f));
    }

    pub fn push_set(&self, id: u64, series: &[LabelSet]) {
        let mut data = Vec::new();
        encode_series_set(id, series, &mut data);
        self.append(RecordKind::SeriesSet, RecordMeta::default(), &data)
            .unwrap();
        self.commit().unwrap();
    }

    /// One Samples record holding these collections, committed.
    pub fn push_samples(&self, id: u64, cols: &[(i64, Vec<f64>)]) -> Position {
        let mut enc = SamplesEncoder::new();
        enc.begin(id, cols[0].1.len());
        for (ts, v) in cols {
            enc.push_collection(*ts, v);
        }
        let mut data = Vec::new();
        let meta = enc.finish(&mut data);
        self.append(RecordKind::Samples, meta, &data).unwrap();
        self.commit().unwrap()
    }

    /// Acks at whole-record boundaries (no window mark).
    pub fn acks(&self) -> Vec<(String, Position)> {
        self.lock().acks.clone()
    }

    /// Every progress recorded, window marks included.
    pub fn progress_acks(&self) -> Vec<(String, Progress)> {
        self.lock().progress_acks.clone()
    }

    /// Samples in records before `upto`.
    pub fn samples_before(&self, upto: Position) -> u64 {
        self.lock().records[..upto.offset as usize]
            .iter()
            .map(|r| r.meta.samples as u64)
            .sum()
    }

    /// Waits until `remote`'s cursor reaches `upto`; false on timeout.
    pub async fn wait_cursor(&self, remote: &str, upto: Position, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if self.cursor(remote) >= upto {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }
}

impl Wal for FakeWal {
    fn append(
        &self,
        kind: RecordKind,
        meta: RecordMeta,
        data: &[u8],
    ) -> Result<Position, WalError> {
        if self.full.load(SeqCst) {
            return Err(WalError::DiskFull {
                path: "fake".into(),
            });
        }
        let mut i = self.lock();
        i.records.push(Rec {
            kind,
            meta,
            data: data.to_vec(),
        });
        Ok(pos(i.records.len() - 1))
    }
    fn commit(&self) -> Result<Position, WalError> {
        let end = {
            let mut i = self.lock();
            i.committed = i.records.len();
            pos(i.committed)
        };
        self.tx.send_replace(end);
        Ok(end)
    }
    fn committed(&self) -> Position {
        pos(self.lock().committed)
    }
    fn subscribe(&self) -> watch::Receiver<Position> {
        self.tx.subscribe()
    }
    fn reader(&self, from: Position) -> Result<Box<dyn WalReader>, WalError> {
        Ok(Box::new(FakeReader {
            inner: Arc::clone(&self.inner),
            fail_after: Arc::clone(&self.fail_after),
            next: from.offset as usize,
            replay: true,
        }))
    }
    fn register_remotes(&self, names: &[String]) -> Result<(), WalError> {
        let mut i = self.lock();
        i.cursors.retain(|k, _| names.contains(k));
        for n in names {
            i.cursors.entry(n.clone()).or_default();
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
        let i = self.lock();
        let at = i.cursors.get(remote).copied().unwrap_or_default();
        let window = i
            .marks
            .get(remote)
            .filter(|m| m.at == at)
            .and_then(|m| m.window);
        Progress { at, window }
    }
    fn ack_progress(&self, remote: &str, p: Progress) -> Result<(), WalError> {
        if let Some(h) = self.on_ack.lock().unwrap().as_ref() {
            h(remote, p.at);
        }
        let mut i = self.lock();
        assert!(
            p.at.offset as usize <= i.committed,
            "ack past the committed end"
        );
        if let Some(w) = p.window {
            assert!(p.valid_window(), "inconsistent window mark {p:?}");
            assert!(
                w.end.offset as usize <= i.committed,
                "window mark past the committed end"
            );
        }
        let cur = i.cursors.get(remote).copied().unwrap_or_default();
        if p.at < cur {
            return Ok(());
        }
        if p.at == cur {
            let old = i
                .marks
                .get(remote)
                .filter(|m| m.at == cur)
                .and_then(|m| m.window);
            match (old, p.window) {
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
        if p.window.is_none() {
            i.acks.push((remote.to_owned(), p.at));
        }
        i.progress_acks.push((remote.to_owned(), p));
        i.cursors.insert(remote.to_owned(), p.at);
        i.marks.insert(remote.to_owned(), p);
        Ok(())
    }
    fn enforce_limits(&self, _now_ms: i64) -> Result<Dropped, WalError> {
        Ok(Dropped::new())
    }
    fn stats(&self) -> WalStats {
        WalStats::default()
    }
}

struct FakeReader {
    inner: Arc<Mutex<Inner>>,
    fail_after: Arc<AtomicI64>,
    next: usize,
    replay: bool,
}

impl WalReader for FakeReader {
    fn next(&mut self, rec: &mut Record) -> Result<bool, WalError> {
        match self.fail_after.load(SeqCst) {
            0 => {
                self.fail_after.store(-1, SeqCst);
                return Err(WalError::Other("injected read failure".into()));
            }
            n if n > 0 => {
                self.fail_after.store(n - 1, SeqCst);
            }
            _ => {}
        }
        let i = self.inner.lock().unwrap();
        let fill = |rec: &mut Record, idx: usize, replayed: bool| {
            let r = &i.records[idx];
            rec.kind = Some(r.kind);
            rec.replayed = replayed;
            rec.start = pos(idx);
            rec.end = pos(idx + 1);
            rec.meta = r.meta;
            rec.data.clear();
            rec.data.extend_from_slice(&r.data);
        };
        if std::mem::take(&mut self.replay) {
            let upto = self.next.min(i.committed);
            if let Some(idx) = i.records[..upto]
                .iter()
                .rposition(|r| r.kind == RecordKind::SeriesSet)
            {
                fill(rec, idx, true);
                return Ok(true);
            }
        }
        if self.next < i.committed {
            fill(rec, self.next, false);
            self.next += 1;
            return Ok(true);
        }
        Ok(false)
    }
}

// ---------------------------------------------------------------------------
// Receiver

#[derive(Debug, Clone)]
pub enum Fault {
    Status(u16),
    /// Status with a `Retry-After` header value.
    RetryAfter(u16, &'static str),
    /// No answer for this long (then 204, to a client long gone).
    Hang(Duration),
    /// Status line at once, then a body of one byte per 200 ms for 10 s.
    SlowBody(u16),
    /// The TCP connection is reset before any HTTP (for probes too: the
    /// receiver cannot tell them apart yet, so a reset probe is recorded
    /// as an attempt).
    Reset,
    /// Requests with samples get this status; probes (no timeseries) are
    /// answered 204: up for probes, down for data.
    DataOnly(u16),
    /// Probes get this status; requests with samples are accepted.
    ProbesOnly(u16),
}

#[derive(Debug, Clone)]
pub struct Accepted {
    pub req: WriteRequest,
    /// Snappy-compressed body bytes, as on the wire.
    pub wire_bytes: usize,
    pub headers: HeaderMap,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub at: Instant,
    pub fault: Option<Fault>,
    pub samples: usize,
}

#[derive(Debug, Clone)]
pub struct Probe {
    pub at: Instant,
    pub status: u16,
}

#[derive(Debug, Default)]
pub struct RecvState {
    /// Faults for the next attempts, in order; then `sticky`, or success.
    /// Probes (requests without timeseries) never take a scripted fault:
    /// they see only `sticky`, and are recorded in `probes`, not in
    /// `attempts` or `accepted`.
    pub script: VecDeque<Fault>,
    pub sticky: Option<Fault>,
    pub accepted: Vec<Accepted>,
    pub attempts: Vec<Attempt>,
    pub probes: Vec<Probe>,
}

pub struct Receiver {
    pub url: String,
    pub state: Arc<Mutex<RecvState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/v1/write", listener.local_addr().unwrap());
        let state: Arc<Mutex<RecvState>> = Arc::default();
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let reset = {
                    let mut s = st.lock().unwrap();
                    let front_reset = matches!(s.script.front(), Some(Fault::Reset))
                        || (s.script.is_empty() && matches!(s.sticky, Some(Fault::Reset)));
                    if front_reset {
                        let f = s.script.pop_front().or(s.sticky.clone());
                        s.attempts.push(Attempt {
                            at: Instant::now(),
                            fault: f,
                            samples: 0,
                        });
                    }
                    front_reset
                };
                if reset {
                    let _ = stream.set_zero_linger();
                    drop(stream);
                    continue;
                }
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(Arc::clone(&st), req));
                    let _ = http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver { url, state, task }
    }

    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().script.extend(faults);
    }

    pub fn set_sticky(&self, f: Option<Fault>) {
        self.state.lock().unwrap().sticky = f;
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.state.lock().unwrap().accepted.clone()
    }

    pub fn attempts(&self) -> Vec<Attempt> {
        self.state.lock().unwrap().attempts.clone()
    }

    pub fn probes(&self) -> Vec<Probe> {
        self.state.lock().unwrap().probes.clone()
    }

    pub fn accepted_samples(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .accepted
            .iter()
            .map(|a| {
                a.req
                    .timeseries
                    .iter()
                    .map(|t| t.samples.len())
                    .sum::<usize>()
            })
            .sum()
    }
}

type RespBody = Either<Full<Bytes>, Trickle>;

async fn handle(
    st: Arc<Mutex<RecvState>>,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, Infallible> {
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let decoded = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .ok()
        .and_then(|raw| WriteRequest::decode(&raw[..]).ok());
    let samples = decoded
        .as_ref()
        .map_or(0, |r| r.timeseries.iter().map(|t| t.samples.len()).sum());
    let full = |code: u16, text: &'static str| {
        let mut r = Response::new(Either::Left(Full::new(Bytes::from_static(text.as_bytes()))));
        *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
        r
    };
    if decoded.as_ref().is_some_and(|r| r.timeseries.is_empty()) {
        let sticky = st.lock().unwrap().sticky.clone();
        let (status, retry_after) = match sticky {
            None | Some(Fault::DataOnly(_)) | Some(Fault::SlowBody(_)) => (204, None),
            Some(Fault::Status(c)) | Some(Fault::ProbesOnly(c)) => (c, None),
            Some(Fault::RetryAfter(c, v)) => (c, Some(v)),
            // A probe's own timeout ends it; a receiver that hangs data
            // hangs probes too.
            Some(Fault::Hang(d)) => {
                tokio::time::sleep(d).await;
                (204, None)
            }
            Some(Fault::Reset) => (500, None),
        };
        st.lock().unwrap().probes.push(Probe {
            at: Instant::now(),
            status,
        });
        let mut r = full(status, if status < 300 { "" } else { "injected failure" });
        if let Some(v) = retry_after {
            r.headers_mut().insert("Retry-After", v.parse().unwrap());
        }
        return Ok(r);
    }
    let fault = {
        let mut s = st.lock().unwrap();
        s.script.pop_front().or(s.sticky.clone())
    };
    st.lock().unwrap().attempts.push(Attempt {
        at: Instant::now(),
        fault: fault.clone(),
        samples,
    });
    let accept = |st: &Mutex<RecvState>| {
        if let Some(req) = decoded.clone() {
            st.lock().unwrap().accepted.push(Accepted {
                req,
                wire_bytes: body.len(),
                headers: headers.clone(),
            });
        }
    };
    Ok(match fault {
        None => {
            if decoded.is_none() {
                return Ok(full(400, "cannot decode snappy/protobuf body"));
            }
            accept(&st);
            full(204, "")
        }
        Some(Fault::Status(c)) | Some(Fault::DataOnly(c)) => full(c, "injected failure"),
        Some(Fault::RetryAfter(c, v)) => {
            let mut r = full(c, "slow down");
            r.headers_mut().insert("Retry-After", v.parse().unwrap());
            r
        }
        Some(Fault::Hang(d)) => {
            tokio::time::sleep(d).await;
            full(204, "")
        }
        Some(Fault::SlowBody(c)) => {
            if (200..300).contains(&c) {
                accept(&st);
            }
            let mut r = Response::new(Either::Right(Trickle {
                left: 50,
                sleep: Box::pin(tokio::time::sleep(Duration::from_millis(200))),
            }));
            *r.status_mut() = hyper::StatusCode::from_u16(c).unwrap();
            r
        }
        Some(Fault::Reset) => full(500, "reset is injected at accept"),
        Some(Fault::ProbesOnly(_)) => {
            accept(&st);
            full(204, "")
        }
    })
}

/// A response body of one byte every 200 ms.
pub struct Trickle {
    left: usize,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Body for Trickle {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.left -= 1;
        let next = tokio::time::Instant::now() + Duration::from_millis(200);
        self.sleep.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
    }
}

// ---------------------------------------------------------------------------
// node_exporter-like data

/// One series of the node_exporter 1.5.0 snapshot in
/// tests/fixtures/remote_write (this very host's /metrics).
#[derive(Debug, Clone)]
pub struct NeSeries {
    pub labels: LabelSet,
    pub value: f64,
    pub counter: bool,
    /// Digits after the decimal point in the exposition text (`None` for
    /// exponent notation).
    pub decimals: Option<u32>,
}

pub fn node_exporter_series() -> Vec<NeSeries> {
    let text = include_str!("../../tests/fixtures/remote_write/node_exporter_1.5.0.txt");
    let mut types = BTreeMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            if let (Some(n), Some(t)) = (it.next(), it.next()) {
                types.insert(n.to_owned(), t.to_owned());
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut pairs = vec![
            ("__name__".to_owned(), name.to_owned()),
            ("instance".to_owned(), "edge-7.example.net:9100".to_owned()),
            ("job".to_owned(), "node".to_owned()),
        ];
        let mut rest = labels;
        while let Some((k, after)) = rest.split_once("=\"") {
            let mut v = String::new();
            let mut chars = after.char_indices();
            let mut end = after.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, e)) = chars.next() {
                            v.push(if e == 'n' { '\n' } else { e });
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            pairs.push((k.trim_start_matches(',').to_owned(), v));
            rest = &after[end..];
        }
        let base = name
            .strip_suffix("_sum")
            .or(name.strip_suffix("_count"))
            .unwrap_or(name);
        let counter = types
            .get(name)
            .or(types.get(base))
            .is_some_and(|t| t == "counter" || t == "summary");
        let decimals = if value.contains('e') {
            None
        } else {
            Some(value.split_once('.').map_or(0, |(_, d)| d.len() as u32))
        };
        out.push(NeSeries {
            labels: LabelSet::new(pairs),
            value: value.parse().unwrap(),
            counter,
            decimals,
        });
    }
    out
}

/// `k` collections of the snapshot 15 s apart, evolving like a host: non-zero
/// counters grow by up to 2e-4 of their value per interval (about what a
/// host up for a day shows), at their printed precision; a third of the
/// gauges other than 0 and 1 move by up to ±1 %; the rest stay. Seeded, so
/// every run sees the same data.
pub fn evolve(series: &[NeSeries], k: usize, start_ms: i64) -> Vec<(i64, Vec<f64>)> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut cur: Vec<f64> = series.iter().map(|s| s.value).collect();
    let mut out = Vec::with_capacity(k);
    for c in 0..k {
        if c > 0 {
            for (v, s) in cur.iter_mut().zip(series) {
                let round = |x: f64| match s.decimals {
                    Some(d) => {
                        let p = 10f64.powi(d as i32);
                        (x * p).round() / p
                    }
                    None => x,
                };
                if s.counter {
                    if *v > 0.0 {
                        *v = round(*v + *v * 2e-4 * rng.f64());
                    }
                } else if *v != 0.0 && *v != 1.0 && rng.u8(0..3) == 0 {
                    *v = round(*v * (1.0 + (rng.f64() - 0.5) * 0.02));
                }
            }
        }
        out.push((start_ms + c as i64 * 15_000, cur.clone()));
    }
    out
}
