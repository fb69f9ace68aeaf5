//! Sender tests against the in-memory WAL and the fault-injecting
//! in-process receiver (testutil).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::testutil::{evolve, node_exporter_series, FakeWal, Fault, Receiver};
use super::*;
use crate::wal::record::{LabelSet, STALE_NAN, STALE_NAN_BITS};
use crate::wal::{Position, RecordKind, RecordMeta};

const WAIT: Duration = Duration::from_secs(10);

fn cfg(name: &str, url: &str) -> RemoteConfig {
    let mut c = RemoteConfig::for_url(name, url);
    c.min_backoff = Duration::from_millis(10);
    c.max_backoff = Duration::from_millis(200);
    c.timeout = Duration::from_secs(2);
    c.batch_send_deadline = Duration::from_millis(10);
    c
}

struct Running {
    metrics: Arc<SenderMetrics>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(2), self.task)
            .await
            .expect("sender stops promptly")
            .unwrap();
    }
}

async fn start(wal: &Arc<FakeWal>, c: RemoteConfig) -> Running {
    let metrics = Arc::new(SenderMetrics::new(&c.name));
    let (stop, rx) = watch::channel(false);
    let wal_dyn: Arc<dyn Wal> = wal.clone();
    let task = spawn_remote(c, wal_dyn, Arc::clone(&metrics), rx)
        .await
        .unwrap();
    Running {
        metrics,
        stop,
        task,
    }
}

fn series(n: usize) -> Vec<LabelSet> {
    (0..n)
        .map(|i| {
            LabelSet::new(vec![
                ("job".into(), "node".into()),
                ("i".into(), format!("{i:03}")),
                ("__name__".into(), "test_metric".into()),
            ])
        })
        .collect()
}

fn col(ts: i64, n: usize, base: f64) -> (i64, Vec<f64>) {
    (ts, (0..n).map(|i| base + i as f64).collect())
}

fn key(ts: &super::proto::TimeSeries) -> String {
    ts.labels
        .iter()
        .map(|l| format!("{}={}", l.name, l.value))
        .collect::<Vec<_>>()
        .join(",")
}

/// Every accepted sample per series (label key), in arrival order.
fn received(r: &Receiver) -> BTreeMap<String, Vec<(i64, u64)>> {
    let mut m: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
    for a in r.accepted() {
        for ts in &a.req.timeseries {
            let e = m.entry(key(ts)).or_default();
            e.extend(ts.samples.iter().map(|s| (s.timestamp, s.value.to_bits())));
        }
    }
    m
}

// ---------------------------------------------------------------------------
// Fault injection: one case per fault, each checking the decision, the
// counters, and that the next collection still goes through (no stall).

#[derive(Debug, PartialEq)]
enum Expect {
    Retried,
    Dropped,
    Delivered,
    /// Refused whole once, then delivered in two halves.
    Split,
}

async fn fault_case(
    fault: Fault,
    expect: Expect,
    tweak: impl FnOnce(&mut RemoteConfig),
) -> (Receiver, Arc<SenderMetrics>) {
    let rx = Receiver::start().await;
    rx.script([fault]);
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    wal.push_set(1, &series(10));
    let p1 = wal.push_samples(1, &[col(1_000, 10, 0.0), col(16_000, 10, 100.0)]);
    let mut c = cfg("r", &rx.url);
    tweak(&mut c);
    let s = start(&wal, c).await;
    assert!(
        wal.wait_cursor("r", p1, WAIT).await,
        "stalled on the faulted batch"
    );
    let m = Arc::clone(&s.metrics);
    match expect {
        Expect::Retried => {
            assert_eq!(m.samples_retried(), 20);
            assert_eq!(m.samples_sent(), 20);
            assert_eq!(m.samples_dropped(DropReason::Http4xx), 0);
            assert_eq!(rx.attempts().len(), 2);
            assert_eq!(rx.accepted_samples(), 20);
        }
        Expect::Dropped => {
            assert_eq!(m.samples_retried(), 0);
            assert_eq!(m.samples_sent(), 0);
            assert_eq!(m.samples_dropped(DropReason::Http4xx), 20);
            assert_eq!(rx.attempts().len(), 1);
            assert_eq!(rx.accepted_samples(), 0);
        }
        Expect::Split => {
            assert_eq!(m.samples_retried(), 0);
            assert_eq!(m.samples_sent(), 20);
            assert_eq!(m.samples_dropped(DropReason::Http4xx), 0);
            assert_eq!(rx.attempts().len(), 3);
            assert_eq!(rx.accepted_samples(), 20);
        }
        Expect::Delivered => {
            assert_eq!(m.samples_retried(), 0);
            assert_eq!(m.samples_sent(), 20);
            assert_eq!(rx.attempts().len(), 1);
            assert_eq!(rx.accepted_samples(), 20);
        }
    }
    // The queue moves on.
    let p2 = wal.push_samples(1, &[col(31_000, 10, 200.0)]);
    assert!(
        wal.wait_cursor("r", p2, WAIT).await,
        "stalled after the faulted batch"
    );
    let got = received(&rx);
    assert_eq!(got.len(), 10);
    for v in got.values() {
        assert_eq!(v.last().unwrap().0, 31_000);
    }
    s.stop().await;
    (rx, m)
}

#[tokio::test]
async fn fault_500_is_retried() {
    let (_, m) = fault_case(Fault::Status(500), Expect::Retried, |_| {}).await;
    assert_eq!(m.requests(RequestOutcome::Http5xx), 1);
}

#[tokio::test]
async fn fault_503_is_retried() {
    fault_case(Fault::Status(503), Expect::Retried, |_| {}).await;
}

#[tokio::test]
async fn fault_429_is_retried_after_retry_after() {
    let (rx, m) = fault_case(Fault::RetryAfter(429, "1"), Expect::Retried, |c| {
        c.max_backoff = Duration::from_secs(5);
    })
    .await;
    let a = rx.attempts();
    let gap = a[1].at - a[0].at;
    assert!(
        gap >= Duration::from_millis(950) && gap < Duration::from_secs(3),
        "{gap:?}"
    );
    assert_eq!(m.requests(RequestOutcome::Http429), 1);
}

#[tokio::test]
async fn fault_429_retry_after_is_capped_at_max_backoff() {
    let (rx, _) = fault_case(Fault::RetryAfter(429, "3600"), Expect::Retried, |c| {
        c.max_backoff = Duration::from_millis(300);
    })
    .await;
    let a = rx.attempts();
    assert!(a[1].at - a[0].at < Duration::from_secs(2));
}

#[tokio::test]
async fn fault_400_splits_and_delivers_what_is_not_refused() {
    let (_, m) = fault_case(Fault::Status(400), Expect::Split, |_| {}).await;
    assert_eq!(m.requests(RequestOutcome::Http4xx), 1);
}

#[tokio::test]
async fn fault_401_blocks_then_delivers() {
    let (_, m) = fault_case(Fault::Status(401), Expect::Retried, |_| {}).await;
    assert_eq!(m.blocked(), None, "unblocked by the 2xx");
}

#[tokio::test]
async fn fault_413_splits() {
    fault_case(Fault::Status(413), Expect::Split, |_| {}).await;
}

#[tokio::test]
async fn fault_409_is_dropped() {
    let (_, m) = fault_case(Fault::Status(409), Expect::Dropped, |_| {}).await;
    assert_eq!(m.requests(RequestOutcome::Http4xx), 1);
}

#[tokio::test]
async fn slow_body_on_2xx_is_success_without_waiting_for_it() {
    let t = Instant::now();
    fault_case(Fault::SlowBody(200), Expect::Delivered, |_| {}).await;
    // The body takes 10 s to arrive; nobody waited for it.
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[tokio::test]
async fn slow_body_on_4xx_is_dropped_after_a_bounded_read() {
    let t = Instant::now();
    fault_case(Fault::SlowBody(409), Expect::Dropped, |_| {}).await;
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[tokio::test]
async fn timeout_is_retried() {
    let (_, m) = fault_case(Fault::Hang(Duration::from_secs(5)), Expect::Retried, |c| {
        c.timeout = Duration::from_millis(300);
    })
    .await;
    assert_eq!(m.requests(RequestOutcome::Timeout), 1);
}

#[tokio::test]
async fn reset_connection_is_retried() {
    let rx = Receiver::start().await;
    rx.script([Fault::Reset]);
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    wal.push_set(1, &series(10));
    let p1 = wal.push_samples(1, &[col(1_000, 10, 0.0), col(16_000, 10, 100.0)]);
    let s = start(&wal, cfg("r", &rx.url)).await;
    assert!(wal.wait_cursor("r", p1, WAIT).await);
    assert_eq!(s.metrics.requests(RequestOutcome::Error), 1);
    assert_eq!(s.metrics.samples_retried(), 20);
    assert_eq!(s.metrics.samples_sent(), 20);
    assert_eq!(rx.accepted_samples(), 20);
    s.stop().await;
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn receiver_decodes_sorted_labels_and_per_series_ordered_samples() {
    let rx = Receiver::start().await;
    // A 503 in the middle must not reorder anything.
    rx.script([Fault::Status(503)]);
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    let n = 50;
    let mut set_a = series(n);
    for s in &mut set_a {
        s.insert_if_absent("site", "depot-7");
    }
    wal.push_set(1, &set_a);
    let mut model: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
    let key_of = |s: &LabelSet| {
        s.pairs()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut record = |wal: &FakeWal, set: &[LabelSet], cols: Vec<(i64, Vec<f64>)>, keep: bool| {
        wal.push_samples(1, &cols);
        if keep {
            for (ts, v) in &cols {
                for (s, x) in set.iter().zip(v) {
                    model.entry(key_of(s)).or_default().push((*ts, x.to_bits()));
                }
            }
        }
    };
    record(
        &wal,
        &set_a,
        (0..4)
            .map(|c| col(1_000 + c * 15_000, n, c as f64 * 0.5))
            .collect(),
        true,
    );
    record(&wal, &set_a, vec![col(61_000, n, 7.25)], true);
    // The set changes: series 0 vanishes (its stale marker was in the last
    // collection of set A), a new series appears.
    let mut stale = col(76_000, n, 8.0);
    stale.1[0] = STALE_NAN;
    record(&wal, &set_a, vec![stale], true);
    let mut set_b: Vec<LabelSet> = set_a[1..].to_vec();
    set_b.push(LabelSet::from_pairs([
        ("__name__", "new_metric"),
        ("site", "depot-7"),
    ]));
    wal.push_set(1, &set_b);
    record(
        &wal,
        &set_b,
        (0..3)
            .map(|c| col(91_000 + c * 15_000, n, -(c as f64)))
            .collect(),
        true,
    );
    // A collection not after the previous one (clock stepped back): dropped.
    record(&wal, &set_b, vec![col(100_000, n, 1.0)], false);
    let end = wal.push_samples(1, &[col(200_000, n, 2.0)]);
    for (ts, v) in [col(200_000, n, 2.0)] {
        for (s, x) in set_b.iter().zip(v) {
            model.entry(key_of(s)).or_default().push((ts, x.to_bits()));
        }
    }
    let mut c = cfg("r", &rx.url);
    c.max_samples_per_send = 37;
    let s = start(&wal, c).await;
    assert!(wal.wait_cursor("r", end, WAIT).await);
    assert_eq!(s.metrics.samples_dropped(DropReason::OutOfOrder), n as u64);
    for a in rx.accepted() {
        assert_eq!(a.headers["content-encoding"], "snappy");
        assert_eq!(a.headers["content-type"], "application/x-protobuf");
        assert_eq!(a.headers["x-prometheus-remote-write-version"], "0.1.0");
        assert_eq!(a.headers["user-agent"], USER_AGENT);
        assert!(USER_AGENT.starts_with("cairn/"));
        let n_samples: usize = a.req.timeseries.iter().map(|t| t.samples.len()).sum();
        assert!(n_samples <= 37);
        for ts in &a.req.timeseries {
            assert_eq!(ts.labels[0].name, "__name__");
            for w in ts.labels.windows(2) {
                assert!(w[0].name < w[1].name, "labels not sorted: {}", key(ts));
            }
            assert!(ts
                .labels
                .iter()
                .all(|l| !l.name.is_empty() && !l.value.is_empty()));
        }
    }
    let got = received(&rx);
    for (k, v) in &got {
        assert!(
            v.windows(2).all(|w| w[0].0 < w[1].0),
            "{k} out of order: {v:?}"
        );
    }
    assert_eq!(got, model);
    let stale_key = key_of(&set_a[0]);
    assert_eq!(got[&stale_key].last().unwrap().1, STALE_NAN_BITS);
    s.stop().await;
}

/// The WAL's record codec on the node_exporter snapshot: bytes per sample
/// the WAL writes (before its own framing) per collection, and batched.
#[test]
fn node_exporter_record_sizes() {
    use crate::wal::record::{encode_series_set, LabelSet, SamplesEncoder};
    let ne = node_exporter_series();
    let labels: Vec<LabelSet> = ne.iter().map(|s| s.labels.clone()).collect();
    let cols = evolve(&ne, 20, 1_700_000_000_000);
    let mut set = Vec::new();
    encode_series_set(1, &labels, &mut set);
    let mut enc = SamplesEncoder::new();
    let mut single = 0;
    for (ts, v) in &cols {
        let mut out = Vec::new();
        enc.begin(1, v.len());
        enc.push_collection(*ts, v);
        enc.finish(&mut out);
        single += out.len();
    }
    let mut batched = Vec::new();
    enc.begin(1, ne.len());
    for (ts, v) in &cols {
        enc.push_collection(*ts, v);
    }
    enc.finish(&mut batched);
    let samples = (cols.len() * ne.len()) as f64;
    let (one, twenty) = (single as f64 / samples, batched.len() as f64 / samples);
    eprintln!(
        "block, {} node_exporter series: series set {} B; samples {one:.2} B/sample \
         one collection per record, {twenty:.2} B/sample 20 per record",
        ne.len(),
        set.len()
    );
    assert!(one < 4.0 && twenty < 2.0, "{one} {twenty}");
}

/// Wire bytes per sample for ~500 node_exporter series: one collection per
/// request (steady state) vs a drained backlog of 20 collections.
#[tokio::test]
async fn draining_packs_timestamps_per_series_and_cuts_wire_bytes() {
    let ne = node_exporter_series();
    let n = ne.len();
    assert!(n > 450, "{n}");
    let labels: Vec<LabelSet> = ne.iter().map(|s| s.labels.clone()).collect();
    let cols = evolve(&ne, 20, 1_700_000_000_000);
    let c = |url: &str| {
        let mut c = cfg("r", url);
        c.max_samples_per_send = 2000;
        c
    };

    // Steady state: the sender is caught up and gets one collection at a time.
    let rx = Receiver::start().await;
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    wal.push_set(1, &labels);
    let s = start(&wal, c(&rx.url)).await;
    for col in &cols {
        let p = wal.push_samples(1, std::slice::from_ref(col));
        assert!(wal.wait_cursor("r", p, WAIT).await);
    }
    let steady = rx.accepted();
    assert_eq!(steady.len(), 20);
    let (bytes, samples) = wire(&steady);
    let steady_bps = bytes as f64 / samples as f64;
    assert_eq!(samples, 20 * n);
    assert!(steady
        .iter()
        .all(|a| a.req.timeseries.iter().all(|t| t.samples.len() == 1)));
    s.stop().await;

    // Draining: 20 committed collections (one record each, as the scheduler
    // writes them) wait for a sender that starts late.
    let rx = Receiver::start().await;
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    wal.push_set(1, &labels);
    let mut end = Position::default();
    for col in &cols {
        end = wal.push_samples(1, std::slice::from_ref(col));
    }
    let s = start(&wal, c(&rx.url)).await;
    assert!(wal.wait_cursor("r", end, WAIT).await);
    let drained = rx.accepted();
    let (bytes, samples) = wire(&drained);
    assert_eq!(samples, 20 * n);
    let drain_bps = bytes as f64 / samples as f64;
    let series_msgs: usize = drained.iter().map(|a| a.req.timeseries.len()).sum();
    let per_series = samples as f64 / series_msgs as f64;
    eprintln!(
        "wire bytes/sample, {n} node_exporter series: steady (1 collection/request) {steady_bps:.2}, \
         drained backlog of 20 collections {drain_bps:.2} ({} requests, {per_series:.1} samples per TimeSeries)",
        drained.len()
    );
    assert!(per_series > 10.0, "{per_series}");
    assert!(drain_bps < steady_bps / 3.0, "{drain_bps} vs {steady_bps}");
    assert_eq!(received(&rx).len(), n);
    s.stop().await;
}

fn wire(a: &[super::testutil::Accepted]) -> (usize, usize) {
    let bytes = a.iter().map(|a| a.wire_bytes).sum();
    let samples = a
        .iter()
        .map(|a| {
            a.req
                .timeseries
                .iter()
                .map(|t| t.samples.len())
                .sum::<usize>()
        })
        .sum();
    (bytes, samples)
}

#[tokio::test]
async fn sample_age_limit_drops_and_counts() {
    let rx = Receiver::start().await;
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    let n = 10;
    wal.push_set(1, &series(n));
    let now = crate::clock::now_ms();
    let (h, m) = (3_600_000, 60_000);
    // Wholly too old: dropped at read.
    wal.push_samples(1, &[col(now - 3 * h, n, 1.0), col(now - 2 * h, n, 2.0)]);
    // Straddling the cutoff: the old collection goes, the other is sent.
    wal.push_samples(1, &[col(now - 90 * m, n, 3.0), col(now - 30 * m, n, 4.0)]);
    let end = wal.push_samples(1, &[col(now - 10_000, n, 5.0)]);
    let mut c = cfg("r", &rx.url);
    c.sample_age_limit = Some(Duration::from_secs(3600));
    let s = start(&wal, c).await;
    assert!(wal.wait_cursor("r", end, WAIT).await);
    assert_eq!(s.metrics.samples_dropped(DropReason::TooOld), 3 * n as u64);
    assert_eq!(s.metrics.samples_sent(), 2 * n as u64);
    for v in received(&rx).values() {
        assert_eq!(
            v.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![now - 30 * m, now - 10_000]
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn two_remotes_one_down_the_other_keeps_flowing() {
    let up = Receiver::start().await;
    let down = Receiver::start().await;
    down.set_sticky(Some(Fault::Status(503)));
    let wal = FakeWal::new();
    wal.register_remotes(&["up".into(), "down".into()]).unwrap();
    let n = 20;
    wal.push_set(1, &series(n));
    let a = start(&wal, cfg("up", &up.url)).await;
    let b = start(&wal, cfg("down", &down.url)).await;
    let mut end = Position::default();
    for c in 0..5 {
        end = wal.push_samples(1, &[col(1_000 + c * 15_000, n, c as f64)]);
        assert!(
            wal.wait_cursor("up", end, WAIT).await,
            "the healthy remote waited on the other"
        );
    }
    assert_eq!(up.accepted_samples(), 5 * n);
    assert_eq!(
        wal.cursor("down"),
        Position::default(),
        "acked without delivery"
    );
    assert!(wal.acks().iter().all(|(r, _)| r == "up"));
    assert!(b.metrics.samples_retried() > 0);
    assert_eq!(b.metrics.samples_sent(), 0);
    // It comes back: everything arrives, in order.
    down.set_sticky(None);
    assert!(wal.wait_cursor("down", end, WAIT).await);
    assert_eq!(received(&down), received(&up));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn acks_only_after_success_and_at_whole_record_boundaries() {
    let rx = Receiver::start().await;
    rx.script([Fault::Status(503), Fault::Reset, Fault::Status(500)]);
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    let n = 100;
    wal.push_set(1, &series(n)); // index 0
                                 // Three records of 4 collections (400 samples each): indexes 1, 2, 3.
    for r in 0..3 {
        let cols: Vec<_> = (0..4)
            .map(|c| col(1_000 + (r * 4 + c) * 15_000, n, c as f64))
            .collect();
        wal.push_samples(1, &cols);
    }
    let state = Arc::clone(&rx.state);
    let w = Arc::downgrade(&wal);
    wal.on_ack(move |_, upto| {
        let accepted: u64 = state
            .lock()
            .unwrap()
            .accepted
            .iter()
            .map(|a| {
                a.req
                    .timeseries
                    .iter()
                    .map(|t| t.samples.len() as u64)
                    .sum::<u64>()
            })
            .sum();
        let need = w.upgrade().unwrap().samples_before(upto);
        assert!(
            accepted >= need,
            "acked {upto:?} ({need} samples) with {accepted} delivered"
        );
    });
    let mut c = cfg("r", &rx.url);
    // 100 samples per request, windows of 800: the first window is records
    // 1 and 2 (split over 8 requests), the second record 3.
    c.max_samples_per_send = 100;
    let s = start(&wal, c).await;
    let end = Position {
        segment: 0,
        offset: 4,
    };
    assert!(wal.wait_cursor("r", end, WAIT).await);
    let acks: Vec<u64> = wal.acks().iter().map(|a| a.1.offset).collect();
    assert_eq!(acks, vec![3, 4]);
    assert_eq!(rx.accepted_samples(), 1200);
    assert_eq!(s.metrics.samples_retried(), 300);
    s.stop().await;
}

#[tokio::test]
async fn nothing_is_acked_while_the_remote_is_down_and_shutdown_is_prompt() {
    let rx = Receiver::start().await;
    rx.set_sticky(Some(Fault::Status(503)));
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    wal.push_set(1, &series(5));
    wal.push_samples(1, &[col(1_000, 5, 0.0)]);
    let s = start(&wal, cfg("r", &rx.url)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.attempts().len() >= 2);
    let t = Instant::now();
    s.stop().await;
    assert!(t.elapsed() < Duration::from_millis(500));
    assert!(wal.acks().is_empty());
}

#[tokio::test]
async fn resumes_from_its_cursor_with_the_replayed_series_set() {
    let rx = Receiver::start().await;
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    wal.push_set(1, &series(3));
    let first = wal.push_samples(1, &[col(1_000, 3, 0.0)]);
    let end = wal.push_samples(1, &[col(16_000, 3, 1.0)]);
    // A previous run delivered the first record.
    wal.ack("r", first).unwrap();
    let s = start(&wal, cfg("r", &rx.url)).await;
    assert!(wal.wait_cursor("r", end, WAIT).await);
    for v in received(&rx).values() {
        assert_eq!(v.iter().map(|x| x.0).collect::<Vec<_>>(), vec![16_000]);
    }
    s.stop().await;
}

#[tokio::test]
async fn undecodable_records_are_dropped_counted_and_skipped() {
    let rx = Receiver::start().await;
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    wal.push_set(1, &series(3));
    // No series set 9.
    wal.push_samples(9, &[col(1_000, 3, 0.0)]);
    // Garbage.
    let meta = RecordMeta {
        min_ts: 1,
        max_ts: 1,
        samples: 7,
    };
    wal.append(RecordKind::Samples, meta, b"\xC2garbage")
        .unwrap();
    wal.append(RecordKind::SeriesSet, RecordMeta::default(), b"\xC1junk")
        .unwrap();
    wal.commit().unwrap();
    // Width mismatch with set 1.
    wal.push_samples(1, &[col(2_000, 4, 0.0)]);
    let end = wal.push_samples(1, &[col(16_000, 3, 1.0)]);
    let s = start(&wal, cfg("r", &rx.url)).await;
    assert!(wal.wait_cursor("r", end, WAIT).await);
    assert_eq!(
        s.metrics.samples_dropped(DropReason::Undecodable),
        3 + 7 + 4
    );
    assert_eq!(rx.accepted_samples(), 3);
    s.stop().await;
}

#[tokio::test]
async fn headers_auth_from_file_rotation_and_reserved_headers() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("password");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let text = format!(
        "[[remote_write]]\nname = \"central\"\nurl = \"{}\"\n\
         headers = {{ \"X-Scope-OrgID\" = \"depot-7\", \"Content-Type\" = \"text/plain\" }}\n\
         basic_auth = {{ username = \"cairn\", password_file = \"{}\" }}\n",
        rx.url,
        pw.display()
    );
    let conf = crate::config::Config::parse(&text, "t.toml").unwrap();
    let mut c = RemoteConfig::new(&conf.remote_write[0], "central".into());
    c.batch_send_deadline = Duration::from_millis(10);
    let wal = FakeWal::new();
    wal.register_remotes(&["central".into()]).unwrap();
    wal.push_set(1, &series(2));
    let p = wal.push_samples(1, &[col(1_000, 2, 0.0)]);
    let s = start(&wal, c).await;
    assert!(wal.wait_cursor("central", p, WAIT).await);
    std::fs::write(&pw, "rotated").unwrap();
    let p = wal.push_samples(1, &[col(16_000, 2, 0.0)]);
    assert!(wal.wait_cursor("central", p, WAIT).await);
    let a = rx.accepted();
    assert_eq!(a.len(), 2);
    // base64("cairn:s3cret"), base64("cairn:rotated")
    assert_eq!(a[0].headers["authorization"], "Basic Y2Fpcm46czNjcmV0");
    assert_eq!(a[1].headers["authorization"], "Basic Y2Fpcm46cm90YXRlZA==");
    assert_eq!(a[0].headers["x-scope-orgid"], "depot-7");
    assert_eq!(a[0].headers.get_all("content-type").iter().count(), 1);
    assert_eq!(a[0].headers["content-type"], "application/x-protobuf");
    s.stop().await;
}

/// write_relabel_configs: applied once per series set; series dropped,
/// and series made identical to an earlier one, are not sent and their
/// samples are counted as `write_relabel`; the rest arrive relabeled.
#[tokio::test]
async fn write_relabel_drops_renames_and_dedups_series() {
    let rx = Receiver::start().await;
    let text = format!(
        "[[remote_write]]\nname = \"central\"\nurl = \"{}\"\n\
         [[remote_write.write_relabel_configs]]\n\
         source_labels = [\"__name__\"]\nregex = \"node_cpu_.*\"\naction = \"drop\"\n\
         [[remote_write.write_relabel_configs]]\n\
         source_labels = [\"host\"]\ntarget_label = \"node\"\n\
         [[remote_write.write_relabel_configs]]\n\
         regex = \"host|x\"\naction = \"labeldrop\"\n",
        rx.url
    );
    let conf = crate::config::Config::parse(&text, "t.toml").unwrap();
    let mut c = RemoteConfig::new(&conf.remote_write[0], "central".into());
    c.batch_send_deadline = Duration::from_millis(10);
    let set = [
        vec![("__name__", "node_cpu_seconds_total"), ("cpu", "0")],
        vec![("__name__", "node_load1"), ("host", "a")],
        vec![("__name__", "node_cpu_seconds_total"), ("cpu", "1")],
        vec![("__name__", "t"), ("i", "1"), ("x", "a")],
        // Identical to the one above once `x` is gone: left out.
        vec![("__name__", "t"), ("i", "1"), ("x", "b")],
        vec![("__name__", "t"), ("i", "2"), ("x", "a")],
    ]
    .map(LabelSet::from_pairs);
    let wal = FakeWal::new();
    wal.register_remotes(&["central".into()]).unwrap();
    wal.push_set(1, &set);
    let p = wal.push_samples(1, &[col(1_000, 6, 0.0), col(16_000, 6, 100.0)]);
    let s = start(&wal, c).await;
    assert!(wal.wait_cursor("central", p, WAIT).await);
    let got = received(&rx);
    let want: BTreeMap<String, Vec<(i64, u64)>> = [
        ("__name__=node_load1,node=a", 1.0),
        ("__name__=t,i=1", 3.0),
        ("__name__=t,i=2", 5.0),
    ]
    .into_iter()
    .map(|(k, v)| {
        let samples = vec![(1_000, f64::to_bits(v)), (16_000, f64::to_bits(100.0 + v))];
        (k.to_owned(), samples)
    })
    .collect();
    assert_eq!(got, want);
    assert_eq!(s.metrics.samples_sent(), 6);
    assert_eq!(s.metrics.samples_dropped(DropReason::WriteRelabel), 6);
    for r in DropReason::ALL {
        if r != DropReason::WriteRelabel {
            assert_eq!(s.metrics.samples_dropped(r), 0, "{}", r.as_str());
        }
    }
    s.stop().await;
}

/// A configuration that drops every series: nothing is sent, every sample
/// is counted once, and the cursor still moves on.
#[tokio::test]
async fn write_relabel_dropping_everything_still_acks() {
    let rx = Receiver::start().await;
    let text = format!(
        "[[remote_write]]\nname = \"central\"\nurl = \"{}\"\n\
         write_relabel_configs = [{{ source_labels = [\"job\"], regex = \"node\", action = \"drop\" }}]\n",
        rx.url
    );
    let conf = crate::config::Config::parse(&text, "t.toml").unwrap();
    let mut c = RemoteConfig::new(&conf.remote_write[0], "central".into());
    c.batch_send_deadline = Duration::from_millis(10);
    let wal = FakeWal::new();
    wal.register_remotes(&["central".into()]).unwrap();
    wal.push_set(1, &series(4));
    let p = wal.push_samples(1, &[col(1_000, 4, 0.0), col(16_000, 4, 0.0)]);
    let s = start(&wal, c).await;
    assert!(wal.wait_cursor("central", p, WAIT).await);
    assert!(rx.attempts().is_empty());
    assert_eq!(s.metrics.samples_sent(), 0);
    assert_eq!(s.metrics.samples_dropped(DropReason::WriteRelabel), 8);
    // A collection dropped for another reason is counted once, under that
    // reason, with all the series of its record.
    let p = wal.push_samples(1, &[col(500, 4, 0.0)]);
    assert!(wal.wait_cursor("central", p, WAIT).await);
    assert_eq!(s.metrics.samples_dropped(DropReason::OutOfOrder), 4);
    assert_eq!(s.metrics.samples_dropped(DropReason::WriteRelabel), 8);
    s.stop().await;
}

#[test]
fn bad_tls_files_fail_at_spawn_with_the_remote_named() {
    let mut c = RemoteConfig::for_url("central", "https://example.invalid/api/v1/write");
    c.tls.ca_file = Some("/nonexistent/ca.pem".into());
    let e = Client::new(&c).err().unwrap().to_string();
    assert!(
        e.contains("central") && e.contains("/nonexistent/ca.pem"),
        "{e}"
    );
    let mut c = RemoteConfig::for_url("central", "https://example.invalid/api/v1/write");
    c.tls.cert_file = Some("/x".into());
    assert!(Client::new(&c).is_err());
    // The default client (system roots plus the bundled set) builds.
    Client::new(&RemoteConfig::for_url("x", "https://example.invalid/")).unwrap();
}

#[tokio::test]
async fn server_name_connects_to_the_url_address_and_keeps_its_host_header() {
    let rx = Receiver::start().await;
    let mut c = cfg("r", &rx.url);
    c.tls.server_name = Some("metrics.internal".into());
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    wal.push_set(1, &series(2));
    let p = wal.push_samples(1, &[col(1_000, 2, 0.0)]);
    let s = start(&wal, c).await;
    assert!(wal.wait_cursor("r", p, WAIT).await);
    let authority = rx
        .url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(rx.accepted()[0].headers["host"], authority.as_str());
    s.stop().await;
}

#[tokio::test]
async fn a_failed_wal_read_sends_what_was_read_then_reopens_without_loss_or_duplicates() {
    let rx = Receiver::start().await;
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    wal.push_set(1, &series(4));
    for c in 0..4 {
        wal.push_samples(1, &[col(1_000 + c * 15_000, 4, c as f64)]);
    }
    // Set and two records read, then the read fails.
    wal.fail_read_after(3);
    let mut c = cfg("r", &rx.url);
    c.max_samples_per_send = 1000;
    let s = start(&wal, c).await;
    let end = Position {
        segment: 0,
        offset: 5,
    };
    assert!(wal.wait_cursor("r", end, WAIT).await);
    let acks: Vec<u64> = wal.acks().iter().map(|a| a.1.offset).collect();
    assert_eq!(acks, vec![3, 5]);
    for v in received(&rx).values() {
        assert_eq!(
            v.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![1_000, 16_000, 31_000, 46_000]
        );
    }
    s.stop().await;
}

// ---------------------------------------------------------------------------
// Noticing a returned receiver: probes during long backoff waits, and the
// `max_samples_per_second` cap on the drain that follows.

/// A remote whose first backoff step is long: `min_backoff` is the first
/// wait (the step's jitter never goes below it).
fn slow_backoff(url: &str, first_wait: Duration) -> RemoteConfig {
    let mut c = cfg("r", url);
    c.min_backoff = first_wait;
    c.max_backoff = Duration::from_secs(30);
    c
}

#[tokio::test]
async fn a_returned_receiver_is_noticed_by_probes_long_before_the_backoff_ends() {
    let first_wait = Duration::from_secs(8);
    let rx = Receiver::start().await;
    rx.set_sticky(Some(Fault::Status(503)));
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    wal.push_set(1, &series(10));
    let p1 = wal.push_samples(1, &[col(1_000, 10, 0.0), col(16_000, 10, 100.0)]);
    let s = start(&wal, slow_backoff(&rx.url, first_wait)).await;
    let until = Instant::now() + WAIT;
    while rx.attempts().is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let failed_at = rx.attempts()[0].at;
    // Down a while longer: probes go out and fail.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let failed_probes = rx.probes().len();
    assert!(failed_probes >= 1, "no probe while down");
    rx.set_sticky(None);
    let back = Instant::now();
    assert!(wal.wait_cursor("r", p1, WAIT).await);
    let noticed = back.elapsed();
    // A probe period (≤ 1.25 s) plus the drain's jittered start (< 1 s),
    // and some slack for a loaded machine: far below the 8 s step.
    assert!(noticed < Duration::from_secs(3), "{noticed:?}");
    let a = rx.attempts();
    assert_eq!(a.len(), 2);
    assert!(
        a[1].at - failed_at < first_wait,
        "{:?}",
        a[1].at - failed_at
    );
    let m = &s.metrics;
    assert_eq!(m.probes() as usize, rx.probes().len());
    assert!(rx.probes().iter().any(|p| p.status == 204));
    // Probes carry no data and count nowhere but probes_total.
    assert_eq!(m.samples_sent(), 20);
    assert_eq!(m.samples_retried(), 20);
    assert_eq!(m.requests(RequestOutcome::Http5xx), 1);
    assert_eq!(m.requests(RequestOutcome::Ok2xx), 1);
    assert_eq!(rx.accepted().len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn a_receiver_answering_probes_but_refusing_data_keeps_the_backoff() {
    let first_wait = Duration::from_secs(2);
    let rx = Receiver::start().await;
    rx.set_sticky(Some(Fault::DataOnly(503)));
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    wal.push_set(1, &series(10));
    wal.push_samples(1, &[col(1_000, 10, 0.0)]);
    let s = start(&wal, slow_backoff(&rx.url, first_wait)).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    // One probe cut the first wait short; its resend failed too, so the
    // later waits are plain backoff: not one data request a second.
    assert_eq!(rx.probes().len(), 1, "{:?}", rx.probes());
    let a = rx.attempts();
    assert!((2..=3).contains(&a.len()), "{} data attempts", a.len());
    let probe = &rx.probes()[0];
    assert!(probe.at < a[1].at && a[1].at - probe.at < Duration::from_millis(1500));
    if let Some(third) = a.get(2) {
        assert!(third.at - a[1].at >= first_wait);
    }
    assert_eq!(s.metrics.probes(), 1);
    assert_eq!(s.metrics.samples_sent(), 0);
    s.stop().await;
}

#[tokio::test]
async fn a_receiver_refusing_probes_still_gets_the_data_after_the_backoff() {
    let first_wait = Duration::from_secs(3);
    let rx = Receiver::start().await;
    rx.script([Fault::Status(503)]);
    rx.set_sticky(Some(Fault::ProbesOnly(503)));
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    wal.push_set(1, &series(10));
    let p1 = wal.push_samples(1, &[col(1_000, 10, 0.0)]);
    let s = start(&wal, slow_backoff(&rx.url, first_wait)).await;
    assert!(wal.wait_cursor("r", p1, WAIT).await);
    let a = rx.attempts();
    assert_eq!(a.len(), 2);
    assert!(a[1].at - a[0].at >= first_wait, "{:?}", a[1].at - a[0].at);
    assert!(!rx.probes().is_empty());
    assert!(rx.probes().iter().all(|p| p.status == 503));
    assert_eq!(s.metrics.probes() as usize, rx.probes().len());
    assert_eq!(s.metrics.samples_sent(), 10);
    assert_eq!(s.metrics.requests(RequestOutcome::Http5xx), 1);
    s.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured_without_probing() {
    let rx = Receiver::start().await;
    rx.script([Fault::RetryAfter(503, "3")]);
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    wal.push_set(1, &series(10));
    let p1 = wal.push_samples(1, &[col(1_000, 10, 0.0)]);
    let s = start(&wal, slow_backoff(&rx.url, Duration::from_millis(100))).await;
    assert!(wal.wait_cursor("r", p1, WAIT).await);
    let a = rx.attempts();
    assert!(a[1].at - a[0].at >= Duration::from_millis(2900));
    assert!(rx.probes().is_empty(), "{:?}", rx.probes());
    assert_eq!(s.metrics.probes(), 0);
    s.stop().await;
}

#[tokio::test]
async fn max_samples_per_second_caps_the_drain() {
    let (n, k, per_send, rate) = (10usize, 100usize, 100usize, 500u64);
    let rx = Receiver::start().await;
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    wal.push_set(1, &series(n));
    let cols: Vec<_> = (0..k)
        .map(|c| col(1_000 + c as i64 * 15_000, n, c as f64))
        .collect();
    let end = wal.push_samples(1, &cols);
    let mut c = cfg("r", &rx.url);
    c.max_samples_per_send = per_send;
    c.max_samples_per_second = rate;
    let t0 = Instant::now();
    let s = start(&wal, c).await;
    assert!(wal.wait_cursor("r", end, WAIT).await);
    let took = t0.elapsed();
    let total = n * k;
    assert_eq!(rx.accepted_samples(), total);
    // Every prefix of the drain stays within one request of burst plus
    // the rate (one more request of slack for the first request's own
    // travel time).
    let a = rx.attempts();
    let mut sent = 0usize;
    for x in &a {
        sent += x.samples;
        let allowed = 2.0 * per_send as f64 + rate as f64 * (x.at - a[0].at).as_secs_f64();
        assert!(
            sent as f64 <= allowed,
            "{sent} samples by {:?}",
            x.at - a[0].at
        );
    }
    let least = Duration::from_secs_f64((total - per_send) as f64 / rate as f64);
    assert!(took >= least, "{took:?} < {least:?}");
    s.stop().await;
}

// ---------------------------------------------------------------------------
// A full disk: fresh collections go to a remote that is up straight from the
// writer's queue, and none is sent twice when the WAL takes it later.

async fn start_tapped(
    wal: &Arc<FakeWal>,
    c: RemoteConfig,
    tap: Option<crate::wal::writer::QueueTap>,
) -> Running {
    let metrics = Arc::new(SenderMetrics::new(&c.name));
    let (stop, rx) = watch::channel(false);
    let wal_dyn: Arc<dyn Wal> = wal.clone();
    let task = spawn_tapped(c, wal_dyn, Arc::clone(&metrics), rx, tap)
        .await
        .unwrap();
    Running {
        metrics,
        stop,
        task,
    }
}

/// One encoded Samples record of these collections, for the writer.
fn encoded(id: u64, cols: &[(i64, Vec<f64>)]) -> (RecordMeta, Vec<u8>) {
    let mut enc = crate::wal::record::SamplesEncoder::new();
    enc.begin(id, cols[0].1.len());
    for (ts, v) in cols {
        enc.push_collection(*ts, v);
    }
    let mut data = Vec::new();
    let meta = enc.finish(&mut data);
    (meta, data)
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Each series received each of `want` exactly once, in order.
fn each_once(rx: &Receiver, n: usize, want: &[i64]) {
    let got = received(rx);
    assert_eq!(got.len(), n);
    for (k, v) in got {
        let ts: Vec<i64> = v.iter().map(|s| s.0).collect();
        assert_eq!(ts, want, "series {k}");
    }
}

fn no_drops(m: &SenderMetrics) {
    for r in DropReason::ALL {
        assert_eq!(m.samples_dropped(r), 0, "{r:?}");
    }
}

/// A fake WAL holding one collection of 10 series, `remotes` registered,
/// and a writer in front of it: the start of the full-disk tests.
fn wal_with_one_collection(
    remotes: &[&str],
) -> (
    Arc<FakeWal>,
    crate::wal::writer::WriterHandle,
    JoinHandle<()>,
) {
    let wal = FakeWal::new();
    let names: Vec<String> = remotes.iter().map(|r| r.to_string()).collect();
    wal.register_remotes(&names).unwrap();
    wal.push_set(1, &series(10));
    wal.push_samples(1, &[col(1_000, 10, 0.0)]);
    let wal_dyn: Arc<dyn Wal> = wal.clone();
    let (writer, wtask) = crate::wal::writer::spawn(wal_dyn, 1 << 20);
    (wal, writer, wtask)
}

#[tokio::test]
async fn full_disk_fresh_collections_go_from_memory() {
    let rx = Receiver::start().await;
    let (wal, writer, wtask) = wal_with_one_collection(&["r"]);
    let s = start_tapped(&wal, cfg("r", &rx.url), writer.tap()).await;
    until("the first collection", || rx.accepted_samples() == 10).await;

    wal.set_full(true);
    for k in 2..=6i64 {
        let (m, d) = encoded(1, &[col(k * 1_000, 10, k as f64)]);
        writer.push(RecordKind::Samples, m, d);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    until("collections from memory", || rx.accepted_samples() == 60).await;
    let wm = Arc::clone(writer.metrics());
    use std::sync::atomic::Ordering::Relaxed;
    until("an empty queue", || wm.queued_records.load(Relaxed) == 0).await;
    assert!(wm.write_errors.load(Relaxed) > 0);
    assert_eq!(wm.unspooled.load(Relaxed), 50);
    assert_eq!(s.metrics.samples_unspooled(), 50);
    assert_eq!(
        wal.written_ts(),
        vec![1_000],
        "nothing reached the full WAL"
    );

    // Space returns: a collection queued after the last refused write is
    // the writer's to try first, and it goes through the WAL again.
    wal.set_full(false);
    let (m, d) = encoded(1, &[col(7_000, 10, 7.0)]);
    writer.push(RecordKind::Samples, m, d);
    until("the WAL again", || wal.written_ts() == vec![1_000, 7_000]).await;
    until("the collection", || rx.accepted_samples() == 70).await;
    let from_memory = s.metrics.samples_unspooled();
    assert_eq!(from_memory, 50);
    let (m, d) = encoded(1, &[col(8_000, 10, 8.0)]);
    writer.push(RecordKind::Samples, m, d);
    until("the next", || wal.written_ts() == vec![1_000, 7_000, 8_000]).await;
    until("all of them", || rx.accepted_samples() == 80).await;
    let all: Vec<i64> = (1..=8).map(|k| k * 1_000).collect();
    each_once(&rx, 10, &all);
    no_drops(&s.metrics);
    assert_eq!(s.metrics.samples_unspooled(), from_memory);
    writer.close();
    s.stop().await;
    wtask.await.unwrap();
}

/// With two remotes, one of them down, what the other delivered from
/// memory stays queued, reaches the WAL when space returns, and is skipped
/// there by the remote that had it — not sent twice, not counted dropped.
#[tokio::test]
async fn regression_full_disk_memory_delivery_not_resent_from_the_wal() {
    let up = Receiver::start().await;
    let down = Receiver::start().await;
    down.set_sticky(Some(Fault::Status(503)));
    let (wal, writer, wtask) = wal_with_one_collection(&["up", "down"]);
    let a = start_tapped(&wal, cfg("up", &up.url), writer.tap()).await;
    let b = start_tapped(&wal, cfg("down", &down.url), writer.tap()).await;
    until("the first collection", || up.accepted_samples() == 10).await;

    wal.set_full(true);
    for k in 2..=4i64 {
        let (m, d) = encoded(1, &[col(k * 1_000, 10, k as f64)]);
        writer.push(RecordKind::Samples, m, d);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    until("collections from memory", || up.accepted_samples() == 40).await;
    let wm = Arc::clone(writer.metrics());
    use std::sync::atomic::Ordering::Relaxed;
    // The other remote has not had them: they stay queued.
    assert_eq!(wm.queued_records.load(Relaxed), 3);
    assert_eq!(wm.unspooled.load(Relaxed), 0);

    wal.set_full(false);
    // The writer's next attempt writes the three (once written, the WAL no
    // longer refuses, and nothing more is taken from memory).
    until("the WAL again", || wal.written_ts().len() == 4).await;
    down.set_sticky(None);
    let (m, d) = encoded(1, &[col(5_000, 10, 5.0)]);
    writer.push(RecordKind::Samples, m, d);
    until("the next", || wal.written_ts().len() == 5).await;
    until("the up remote", || up.accepted_samples() == 50).await;
    until("the down remote", || down.accepted_samples() == 50).await;
    let all: Vec<i64> = (1..=5).map(|k| k * 1_000).collect();
    each_once(&up, 10, &all);
    each_once(&down, 10, &all);
    no_drops(&a.metrics);
    no_drops(&b.metrics);
    assert_eq!(a.metrics.samples_unspooled(), 30);
    assert_eq!(b.metrics.samples_unspooled(), 0);
    writer.close();
    a.stop().await;
    b.stop().await;
    wtask.await.unwrap();
}

// ---------------------------------------------------------------------------
// Rows of several sources: absent slots are not samples.

/// Rows of two sources in one set (host: series 0..4, a scrape target:
/// 4..7, one series never present): `ABSENT` elsewhere, the target's rows
/// stamped before the host row written ahead of them.
fn two_source_rows() -> Vec<(i64, Vec<f64>)> {
    use crate::wal::record::ABSENT as A;
    let mut rows = Vec::new();
    for c in 0..6i64 {
        let t = 1_000 + c * 15_000;
        let b = c as f64;
        rows.push((t, vec![b, b + 0.5, b + 1.0, b + 2.0, A, A, A, A]));
        rows.push((t - 300, vec![A, A, A, A, 10.0 + b, 20.0 + b, 30.0 + b, A]));
    }
    rows
}

fn want_two_sources(
    rows: &[(i64, Vec<f64>)],
    set: &[LabelSet],
) -> BTreeMap<String, Vec<(i64, u64)>> {
    let mut want: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
    for (ts, v) in rows {
        for (s, x) in set.iter().zip(v) {
            if !crate::wal::record::is_absent(*x) {
                let k = s
                    .pairs()
                    .iter()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                want.entry(k).or_default().push((*ts, x.to_bits()));
            }
        }
    }
    want
}

#[tokio::test]
async fn absent_slots_are_never_sent_or_counted_and_rows_need_not_be_in_time_order() {
    let rx = Receiver::start().await;
    let set = series(8);
    let rows = two_source_rows();
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    wal.push_set(1, &set);
    let p1 = wal.push_samples(1, &rows[..6]);
    let end = wal.push_samples(1, &rows[6..]);
    // 42 samples in 12 rows × 8 slots: the WAL's own count agrees.
    assert_eq!(wal.samples_before(end), 42);
    assert!(wal.samples_before(p1) == 21);
    let mut c = cfg("r", &rx.url);
    // Cuts that fall inside series and across the empty one.
    c.max_samples_per_send = 5;
    let s = start(&wal, c).await;
    assert!(wal.wait_cursor("r", end, WAIT).await);
    let got = received(&rx);
    assert_eq!(got, want_two_sources(&rows, &set));
    assert!(
        !got.keys().any(|k| k.contains("i=007")),
        "no TimeSeries for a series with no value"
    );
    assert_eq!(s.metrics.samples_sent(), 42);
    no_drops(&s.metrics);
    for a in rx.accepted() {
        let n: usize = a.req.timeseries.iter().map(|t| t.samples.len()).sum();
        assert!(n <= 5 && n > 0, "a request of {n} samples");
        for t in &a.req.timeseries {
            assert!(!t.samples.is_empty());
            assert!(t
                .samples
                .windows(2)
                .all(|w| w[0].timestamp < w[1].timestamp));
        }
    }
    s.stop().await;
}

/// A sender stopped in the middle of a window of two-source rows resumes
/// at the recorded sample: every present sample arrives exactly once.
#[tokio::test]
async fn a_window_of_absent_slots_resumes_exactly() {
    let rx = Receiver::start().await;
    let set = series(8);
    let rows = two_source_rows();
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    wal.push_set(1, &set);
    let end = wal.push_samples(1, &rows);
    let mut c = cfg("r", &rx.url);
    c.max_samples_per_send = 4;
    // Slow enough to stop it after a few requests of the window.
    c.max_samples_per_second = 20;
    let s = start(&wal, c.clone()).await;
    until("two requests", || rx.accepted().len() >= 2).await;
    s.stop().await;
    let marks: Vec<u64> = wal
        .progress_acks()
        .iter()
        .filter_map(|(_, p)| p.window.map(|w| w.sent))
        .collect();
    assert!(marks.contains(&8), "a mark after two requests: {marks:?}");
    c.max_samples_per_second = 0;
    let s = start(&wal, c).await;
    assert!(wal.wait_cursor("r", end, WAIT).await);
    assert_eq!(received(&rx), want_two_sources(&rows, &set));
    assert_eq!(s.metrics.samples_resent(), 0);
    no_drops(&s.metrics);
    s.stop().await;
}

/// A value not newer than its own series' last one is dropped and
/// counted per value; the other source's rows in between are untouched.
#[tokio::test]
async fn out_of_order_is_judged_per_series() {
    use crate::wal::record::ABSENT as A;
    let rx = Receiver::start().await;
    let set = series(4);
    let wal = FakeWal::new();
    wal.register_remotes(&["r".into()]).unwrap();
    wal.push_set(1, &set);
    wal.push_samples(
        1,
        &[
            (10_000, vec![1.0, 2.0, A, A]),
            (5_000, vec![A, A, 3.0, 4.0]),
            // Series 0 steps back (dropped), series 1 goes on.
            (9_000, vec![5.0, A, A, A]),
            (11_000, vec![A, 6.0, 7.0, A]),
        ],
    );
    let end = wal.push_samples(1, &[(20_000, vec![8.0, 9.0, 10.0, 11.0])]);
    let s = start(&wal, cfg("r", &rx.url)).await;
    assert!(wal.wait_cursor("r", end, WAIT).await);
    assert_eq!(s.metrics.samples_dropped(DropReason::OutOfOrder), 1);
    assert_eq!(s.metrics.samples_sent(), 10);
    let got = received(&rx);
    let ts = |k: &str| -> Vec<i64> { got[k].iter().map(|x| x.0).collect() };
    assert_eq!(
        ts("__name__=test_metric,i=000,job=node"),
        vec![10_000, 20_000]
    );
    assert_eq!(
        ts("__name__=test_metric,i=002,job=node"),
        vec![5_000, 11_000, 20_000]
    );
    s.stop().await;
}

/// write_relabel_configs dropping one source's series: only their present
/// values are counted `write_relabel`; absent slots are not samples.
#[tokio::test]
async fn write_relabel_counts_only_present_values_of_dropped_series() {
    let rx = Receiver::start().await;
    let text = format!(
        "[[remote_write]]\nname = \"central\"\nurl = \"{}\"\n\
         write_relabel_configs = [{{ source_labels = [\"i\"], regex = \"00[4-6]\", action = \"drop\" }}]\n",
        rx.url
    );
    let conf = crate::config::Config::parse(&text, "t.toml").unwrap();
    let mut c = RemoteConfig::new(&conf.remote_write[0], "central".into());
    c.batch_send_deadline = Duration::from_millis(10);
    let set = series(8);
    let rows = two_source_rows();
    let wal = FakeWal::new();
    wal.register_remotes(&["central".into()]).unwrap();
    wal.push_set(1, &set);
    let end = wal.push_samples(1, &rows);
    let s = start(&wal, c).await;
    assert!(wal.wait_cursor("central", end, WAIT).await);
    let mut want = want_two_sources(&rows, &set);
    want.retain(|k, _| !["i=004", "i=005", "i=006"].iter().any(|i| k.contains(i)));
    assert_eq!(received(&rx), want);
    assert_eq!(s.metrics.samples_sent(), 24);
    assert_eq!(s.metrics.samples_dropped(DropReason::WriteRelabel), 18);
    assert_eq!(s.metrics.samples_dropped(DropReason::OutOfOrder), 0);
    s.stop().await;
}
