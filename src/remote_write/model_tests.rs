//! The sender against a receiver that behaves like Prometheus' remote-write
//! handler (a request is appended sample by sample and rolled back whole
//! at the first refusal; a sample older than the series' newest, or at the
//! same time with another value, is "out of order"), with faults and
//! process deaths injected: unit tests for splitting, blocking and the
//! `resent` classification, and a model-based property test.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::metrics::BlockReason;
use super::proto::WriteRequest;
use super::testutil::FakeWal;
use super::{spawn_remote, DropReason, RemoteConfig, SenderMetrics};
use crate::wal::record::LabelSet;
use crate::wal::{Position, Wal};

/// (series label value, timestamp)
type Key = (String, i64);

/// What the receiver does with the next request.
#[derive(Debug, Clone)]
enum Op {
    Ok,
    R429,
    R5xx,
    /// 400 "out of order sample" without looking at the request.
    Ooo400,
    /// Appends it, answers after the client gave up.
    LostAnswer,
    /// The process dies while this request is in flight; `applied`: the
    /// receiver had appended it.
    Kill {
        applied: bool,
    },
    /// A clean stop while this request is in flight (answered in grace).
    Term,
    /// 401, 403 or 404 until `unblock`.
    Block(u16),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Event {
    Kill,
    Term,
}

#[derive(Default)]
struct PromState {
    newest: BTreeMap<String, (i64, u64)>,
    stored: BTreeSet<Key>,
    poison: BTreeSet<Key>,
    /// 413 above this many samples.
    max_req: Option<usize>,
    script: VecDeque<Op>,
    sticky_block: Option<u16>,
    requests: usize,
    /// Requests refused as out of order while holding no new sample.
    resends: usize,
    /// Requests refused as out of order holding a sample it did not have.
    half_new: usize,
    /// Samples of requests refused by an injected `Ooo400`.
    spurious: BTreeSet<Key>,
}

struct Prom {
    url: String,
    st: Arc<Mutex<PromState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Prom {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn samples_of(req: &WriteRequest) -> Vec<(Key, u64)> {
    let mut out = Vec::new();
    for ts in &req.timeseries {
        let name = ts
            .labels
            .iter()
            .find(|l| l.name == "i")
            .map(|l| l.value.clone())
            .unwrap_or_default();
        for s in &ts.samples {
            out.push(((name.clone(), s.timestamp), s.value.to_bits()));
        }
    }
    out
}

/// Prometheus 2.42's write handler, reduced to what matters here.
fn append(st: &mut PromState, samples: &[(Key, u64)]) -> (u16, &'static str) {
    if st.max_req.is_some_and(|m| samples.len() > m) {
        return (413, "request too large");
    }
    let mut newest = st.newest.clone();
    for ((series, ts), v) in samples {
        if st.poison.contains(&(series.clone(), *ts)) {
            return (400, "invalid sample value");
        }
        match newest.get(series) {
            Some((t, _)) if ts < t => {
                count_ooo(st, samples);
                return (400, "out of order sample");
            }
            Some((t, old)) if ts == t && old != v => {
                count_ooo(st, samples);
                return (400, "duplicate sample for timestamp");
            }
            _ => {
                newest.insert(series.clone(), (*ts, *v));
            }
        }
    }
    st.newest = newest;
    for (k, _) in samples {
        st.stored.insert(k.clone());
    }
    (204, "")
}

fn count_ooo(st: &mut PromState, samples: &[(Key, u64)]) {
    if samples.iter().all(|(k, _)| st.stored.contains(k)) {
        st.resends += 1;
    } else {
        st.half_new += 1;
    }
}

impl Prom {
    async fn start(events: mpsc::UnboundedSender<Event>, lost_answer: Duration) -> Prom {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/v1/write", listener.local_addr().unwrap());
        let st: Arc<Mutex<PromState>> = Arc::default();
        let st2 = Arc::clone(&st);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = Arc::clone(&st2);
                let ev = events.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        handle(Arc::clone(&st), ev.clone(), lost_answer, req)
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Prom { url, st, task }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PromState> {
        self.st.lock().unwrap()
    }
}

async fn handle(
    st: Arc<Mutex<PromState>>,
    events: mpsc::UnboundedSender<Event>,
    lost_answer: Duration,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
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
    let reply = |code: u16, text: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
        if code == 429 {
            r.headers_mut().insert("Retry-After", "0".parse().unwrap());
        }
        Ok(r)
    };
    let Some(req) = decoded else {
        return reply(400, "cannot decode");
    };
    let samples = samples_of(&req);
    let op = {
        let mut s = st.lock().unwrap();
        s.requests += 1;
        match s.sticky_block {
            Some(code) => Op::Block(code),
            None => s.script.pop_front().unwrap_or(Op::Ok),
        }
    };
    match op {
        Op::Ok => {
            let (c, t) = append(&mut st.lock().unwrap(), &samples);
            reply(c, t)
        }
        Op::R429 => reply(429, "slow down"),
        Op::R5xx => reply(503, "unavailable"),
        Op::Block(code) => reply(code, "go away"),
        Op::Ooo400 => {
            let mut s = st.lock().unwrap();
            for (k, _) in &samples {
                s.spurious.insert(k.clone());
            }
            reply(400, "out of order sample")
        }
        Op::LostAnswer => {
            let _ = append(&mut st.lock().unwrap(), &samples);
            tokio::time::sleep(lost_answer).await;
            reply(204, "")
        }
        Op::Kill { applied } => {
            if applied {
                let _ = append(&mut st.lock().unwrap(), &samples);
            }
            let _ = events.send(Event::Kill);
            tokio::time::sleep(Duration::from_secs(30)).await;
            reply(204, "")
        }
        Op::Term => {
            let _ = events.send(Event::Term);
            tokio::time::sleep(Duration::from_millis(30)).await;
            let (c, t) = append(&mut st.lock().unwrap(), &samples);
            reply(c, t)
        }
    }
}

fn series(n: usize) -> Vec<LabelSet> {
    (0..n)
        .map(|i| {
            LabelSet::new(vec![
                ("__name__".into(), "m".into()),
                ("i".into(), format!("{i:02}")),
            ])
        })
        .collect()
}

/// Commits `records` Samples records of `per` collections of `n` series;
/// returns every sample key.
fn fill(wal: &FakeWal, n: usize, records: &[usize]) -> Vec<Key> {
    wal.push_set(1, &series(n));
    let mut keys = Vec::new();
    let mut ts = 1_000;
    for &per in records {
        let mut cols = Vec::new();
        for _ in 0..per {
            cols.push((ts, (0..n).map(|i| (ts + i as i64) as f64).collect()));
            for i in 0..n {
                keys.push((format!("{i:02}"), ts));
            }
            ts += 1_000;
        }
        wal.push_samples(1, &cols);
    }
    keys
}

fn cfg(url: &str, max_samples: usize) -> RemoteConfig {
    let mut c = RemoteConfig::for_url("r", url);
    c.min_backoff = Duration::from_millis(1);
    c.max_backoff = Duration::from_millis(5);
    c.timeout = Duration::from_millis(300);
    c.batch_send_deadline = Duration::from_millis(1);
    c.max_samples_per_send = max_samples;
    c.shutdown_grace = Duration::from_secs(3);
    c
}

/// Runs sender processes one after the other against `rx` until the
/// cursor is at the committed end: a `Kill` event aborts the task (its
/// durable state is only what it recorded), a `Term` asks it to stop and
/// waits. Returns (kills, terms).
async fn drive(
    wal: &Arc<FakeWal>,
    _rx: &Prom,
    events: &mut mpsc::UnboundedReceiver<Event>,
    c: &RemoteConfig,
    metrics: &Arc<SenderMetrics>,
) -> (usize, usize) {
    let end = wal.committed();
    let (mut kills, mut terms) = (0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (stop, stop_rx) = watch::channel(false);
        let wal_dyn: Arc<dyn Wal> = wal.clone();
        let mut task = spawn_remote(c.clone(), wal_dyn, Arc::clone(metrics), stop_rx)
            .await
            .unwrap();
        let done = async {
            while wal.cursor("r") < end {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::select! {
            ev = events.recv() => match ev {
                Some(Event::Kill) => {
                    task.abort();
                    let _ = (&mut task).await;
                    kills += 1;
                }
                Some(Event::Term) => {
                    stop.send_replace(true);
                    tokio::time::timeout(Duration::from_secs(5), &mut task)
                        .await
                        .expect("a stopped sender exits within its grace")
                        .unwrap();
                    terms += 1;
                }
                None => unreachable!(),
            },
            _ = done => {
                stop.send_replace(true);
                let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
                return (kills, terms);
            }
            _ = tokio::time::sleep_until(deadline) => panic!("no progress within 30 s: cursor {:?} of {end:?}", wal.cursor("r")),
        }
    }
}

// ---------------------------------------------------------------------------
// Unit tests

async fn setup(
    n: usize,
    records: &[usize],
) -> (
    Arc<FakeWal>,
    Prom,
    mpsc::UnboundedReceiver<Event>,
    Vec<Key>,
    Arc<SenderMetrics>,
) {
    let (tx, rx_ev) = mpsc::unbounded_channel();
    let rx = Prom::start(tx, Duration::from_millis(600)).await;
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    let keys = fill(&wal, n, records);
    (wal, rx, rx_ev, keys, Arc::new(SenderMetrics::new("r")))
}

#[tokio::test]
async fn a_400_isolates_the_one_refused_sample_and_delivers_the_rest() {
    let (wal, rx, mut ev, keys, m) = setup(6, &[4, 4]).await;
    let bad = keys[17].clone();
    rx.lock().poison.insert(bad.clone());
    drive(&wal, &rx, &mut ev, &cfg(&rx.url, 48), &m).await;
    let st = rx.lock();
    for k in &keys {
        assert_eq!(st.stored.contains(k), *k != bad, "{k:?}");
    }
    assert_eq!(m.samples_dropped(DropReason::Http4xx), 1);
    assert_eq!(m.samples_sent() as usize, keys.len() - 1);
    assert_eq!(m.samples_resent(), 0);
    // Bisection: about 2·log2(48) requests, not one per sample.
    assert!(st.requests <= 16, "{} requests", st.requests);
}

#[tokio::test]
async fn a_413_splits_until_requests_fit() {
    let (wal, rx, mut ev, keys, m) = setup(5, &[3, 3, 2]).await;
    rx.lock().max_req = Some(7);
    drive(&wal, &rx, &mut ev, &cfg(&rx.url, 40), &m).await;
    let st = rx.lock();
    assert!(keys.iter().all(|k| st.stored.contains(k)));
    assert_eq!(m.samples_dropped(DropReason::Http4xx), 0);
    assert_eq!(m.samples_sent() as usize, keys.len());
}

#[tokio::test]
async fn unauthorized_forbidden_not_found_block_keep_the_data_and_resume() {
    for (code, reason) in [
        (401, BlockReason::Unauthorized),
        (403, BlockReason::Forbidden),
        (404, BlockReason::NotFound),
    ] {
        let (wal, rx, mut ev, keys, m) = setup(3, &[2]).await;
        rx.lock().sticky_block = Some(code);
        let mut c = cfg(&rx.url, 100);
        c.max_backoff = Duration::from_millis(50);
        let (stop, stop_rx) = watch::channel(false);
        let wal_dyn: Arc<dyn Wal> = wal.clone();
        let task = spawn_remote(c.clone(), wal_dyn, Arc::clone(&m), stop_rx)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(m.blocked(), Some(reason));
        assert_eq!(wal.cursor("r"), Position::default(), "nothing acked");
        for r in DropReason::ALL {
            assert_eq!(m.samples_dropped(r), 0, "{r:?}");
        }
        // Retried at max_backoff, not hammered.
        let tries = rx.lock().requests;
        assert!((3..=12).contains(&tries), "{tries} requests in 400 ms");
        // Credentials fixed (a SIGHUP restarts the sender; here the
        // receiver changes its mind): the drain resumes.
        rx.lock().sticky_block = None;
        drive(&wal, &rx, &mut ev, &c, &m).await;
        stop.send_replace(true);
        let _ = task.await;
        assert_eq!(m.blocked(), None);
        let st = rx.lock();
        assert!(keys.iter().all(|k| st.stored.contains(k)), "{code}");
    }
}

#[tokio::test]
async fn a_request_sent_again_after_a_kill_counts_as_resent_not_dropped() {
    // 4 requests of 10; the second is appended, then the process dies.
    let (wal, rx, mut ev, keys, m) = setup(5, &[8]).await;
    rx.lock().script = [Op::Ok, Op::Kill { applied: true }].into();
    let (kills, _) = drive(&wal, &rx, &mut ev, &cfg(&rx.url, 10), &m).await;
    assert_eq!(kills, 1);
    let st = rx.lock();
    assert!(keys.iter().all(|k| st.stored.contains(k)));
    assert_eq!(st.resends, 1, "only the request in flight came again");
    assert_eq!(st.half_new, 0);
    assert_eq!(m.samples_resent(), 10);
    assert_eq!(m.samples_dropped(DropReason::Http4xx), 0);
    // Progress was recorded inside the window, per request.
    let marks = wal
        .progress_acks()
        .iter()
        .filter(|(_, p)| p.window.is_some())
        .count();
    assert!(marks >= 3, "{marks} marks");
}

#[tokio::test]
async fn an_out_of_order_400_to_a_fresh_request_is_split_not_counted_resent() {
    // The first request after start is suspect, so let it pass first.
    let (wal, rx, mut ev, keys, m) = setup(4, &[5]).await;
    rx.lock().script = [Op::Ok, Op::Ooo400].into();
    drive(&wal, &rx, &mut ev, &cfg(&rx.url, 10), &m).await;
    let st = rx.lock();
    assert!(keys.iter().all(|k| st.stored.contains(k)));
    assert_eq!(m.samples_resent(), 0);
    assert_eq!(m.samples_dropped(DropReason::Http4xx), 0);
}

#[tokio::test]
async fn a_clean_stop_records_the_request_in_flight_and_nothing_is_sent_twice() {
    let (wal, rx, mut ev, keys, m) = setup(5, &[8]).await;
    rx.lock().script = [Op::Ok, Op::Term, Op::Ok, Op::Term].into();
    let (_, terms) = drive(&wal, &rx, &mut ev, &cfg(&rx.url, 10), &m).await;
    assert_eq!(terms, 2);
    let st = rx.lock();
    assert!(keys.iter().all(|k| st.stored.contains(k)));
    assert_eq!(
        st.resends + st.half_new,
        0,
        "a clean stop re-sent something"
    );
    assert_eq!(st.requests, 4);
}

// ---------------------------------------------------------------------------
// The model

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Ok),
        1 => Just(Op::R429),
        1 => Just(Op::R5xx),
        1 => Just(Op::Ooo400),
        1 => Just(Op::LostAnswer),
        2 => any::<bool>().prop_map(|applied| Op::Kill { applied }),
        2 => Just(Op::Term),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    n: usize,
    records: Vec<usize>,
    max_samples: usize,
    max_req: Option<usize>,
    poison: Vec<usize>,
    ops: Vec<Op>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        1usize..5,
        proptest::collection::vec(1usize..4, 1..7),
        2usize..12,
        proptest::option::weighted(0.3, 2usize..15),
        proptest::collection::vec(any::<usize>(), 0..3),
        proptest::collection::vec(op(), 0..14),
    )
        .prop_map(|(n, records, max_samples, max_req, poison, ops)| Case {
            n,
            records,
            max_samples,
            max_req,
            poison,
            ops,
        })
}

async fn run_case(c: Case) -> Result<(), TestCaseError> {
    let (tx, mut ev) = mpsc::unbounded_channel();
    let rx = Prom::start(tx, Duration::from_millis(600)).await;
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    let keys = fill(&wal, c.n, &c.records);
    let poison: BTreeSet<Key> = c
        .poison
        .iter()
        .map(|i| keys[i % keys.len()].clone())
        .collect();
    let lost_answers = c.ops.iter().filter(|o| matches!(o, Op::LostAnswer)).count();
    {
        let mut st = rx.lock();
        st.poison = poison.clone();
        st.max_req = c.max_req;
        st.script = c.ops.iter().cloned().collect();
    }
    let m = Arc::new(SenderMetrics::new("r"));
    let (kills, _) = drive(&wal, &rx, &mut ev, &cfg(&rx.url, c.max_samples), &m).await;
    let st = rx.lock();
    // Every committed sample is delivered, or counted under exactly one
    // reason: refused for good (only poisoned ones), or resent after an
    // answer that said the receiver had it.
    let mut missing = 0u64;
    for k in &keys {
        if st.stored.contains(k) {
            prop_assert!(!poison.contains(k));
            continue;
        }
        missing += 1;
        prop_assert!(
            poison.contains(k) || st.spurious.contains(k),
            "{k:?} neither delivered nor refused"
        );
    }
    let refused = m.samples_dropped(DropReason::Http4xx);
    // A sample the receiver itself refused (an injected out-of-order answer
    // to a fresh one-sample request) is refused for good too: a real
    // receiver says so only when it holds a newer sample of the series.
    let refused_by_receiver = keys
        .iter()
        .filter(|k| !st.stored.contains(*k) && !poison.contains(*k) && st.spurious.contains(*k))
        .count();
    prop_assert!(
        refused <= (poison.len() + refused_by_receiver) as u64,
        "counted good samples as refused"
    );
    prop_assert!(refused + m.samples_resent() >= missing, "loss not counted");
    for r in [
        DropReason::TooOld,
        DropReason::OutOfOrder,
        DropReason::Undecodable,
    ] {
        prop_assert_eq!(m.samples_dropped(r), 0);
    }
    // Only the request in flight at a kill (or whose answer was lost) is
    // ever delivered twice, and a request sent again is the same request.
    prop_assert!(
        st.resends <= kills + lost_answers,
        "{} resends for {kills} kills and {lost_answers} lost answers",
        st.resends
    );
    prop_assert_eq!(st.half_new, 0, "a request mixing delivered and new samples");
    Ok(())
}

proptest! {
    // Each case runs real HTTP on loopback: few cases, each well under a
    // second.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn model_every_sample_delivered_or_counted_once(c in case()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_case(c))?;
    }
}
