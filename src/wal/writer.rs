//! The WAL writer task: the one place that calls `Wal::append`/`commit`.
//!
//! Owns a bounded in-memory queue of encoded records between the scheduler
//! and the disk. The scheduler pushes and returns at once (collections never
//! wait on the disk); this task appends and commits on the blocking pool.
//! When the disk is full or failing, records wait here, bounded by bytes;
//! past the bound the oldest samples records are dropped and counted
//! (`reason="queue_full"`), never a series-set record (later samples records
//! need it). Must never: reorder records, or drop one without counting it.

use crate::clock::now_ms;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::{RecordKind, RecordMeta, Wal, WalError};
use crate::collect::Telemetry;
use crate::metrics::{Emitter, MetricType};

struct Item {
    kind: RecordKind,
    meta: RecordMeta,
    data: Vec<u8>,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    bytes: usize,
    closed: bool,
}

/// Counters of the writer, also rendered as `cairn_wal_*` with the WAL's own
/// statistics (one family per name, so the WAL's drops and the queue's drops
/// share `cairn_wal_dropped_samples_total`).
#[derive(Default)]
pub struct WriterMetrics {
    pub samples_appended: AtomicU64,
    pub records_appended: AtomicU64,
    pub commits: AtomicU64,
    pub write_errors: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub queued_records: AtomicU64,
    pub queued_bytes: AtomicU64,
}

/// The scheduler's handle: push records, close at shutdown.
#[derive(Clone)]
pub struct WriterHandle {
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
    max_bytes: usize,
    metrics: Arc<WriterMetrics>,
}

impl WriterHandle {
    /// Queues a record; never blocks on I/O.
    pub fn push(&self, kind: RecordKind, meta: RecordMeta, data: Vec<u8>) {
        let mut q = match self.queue.lock() {
            Ok(q) => q,
            Err(p) => p.into_inner(),
        };
        q.bytes += data.len();
        q.items.push_back(Item { kind, meta, data });
        // Over the bound: drop the oldest samples records (never the newest
        // item, never a series set).
        while q.bytes > self.max_bytes && q.items.len() > 1 {
            let Some(idx) = q
                .items
                .iter()
                .take(q.items.len() - 1)
                .position(|i| i.kind == RecordKind::Samples)
            else {
                break;
            };
            if let Some(old) = q.items.remove(idx) {
                q.bytes -= old.data.len();
                self.metrics
                    .dropped_queue_full
                    .fetch_add(u64::from(old.meta.samples), Ordering::Relaxed);
            }
        }
        self.metrics
            .queued_records
            .store(q.items.len() as u64, Ordering::Relaxed);
        self.metrics
            .queued_bytes
            .store(q.bytes as u64, Ordering::Relaxed);
        drop(q);
        self.wake.notify_one();
    }

    /// Asks the writer to write what is queued and stop.
    pub fn close(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.closed = true;
        }
        self.wake.notify_one();
    }

    pub fn metrics(&self) -> &Arc<WriterMetrics> {
        &self.metrics
    }
}

/// Starts the writer task; it ends after `close()` once the queue is
/// written (or, if the disk stays unwritable, after a last attempt).
pub fn spawn(wal: Arc<dyn Wal>, max_bytes: usize) -> (WriterHandle, tokio::task::JoinHandle<()>) {
    let handle = WriterHandle {
        queue: Arc::new(Mutex::new(Queue::default())),
        wake: Arc::new(Notify::new()),
        max_bytes,
        metrics: Arc::new(WriterMetrics::default()),
    };
    let h = handle.clone();
    let task = tokio::spawn(async move { run(wal, h).await });
    (handle, task)
}

async fn run(wal: Arc<dyn Wal>, h: WriterHandle) {
    let mut backoff = Duration::from_millis(250);
    let mut logged_error = false;
    loop {
        let (batch, closed) = {
            let mut q = match h.queue.lock() {
                Ok(q) => q,
                Err(p) => p.into_inner(),
            };
            let batch: Vec<Item> = q.items.drain(..).collect();
            q.bytes = 0;
            (batch, q.closed)
        };
        if batch.is_empty() {
            if closed {
                return;
            }
            h.wake.notified().await;
            continue;
        }
        let wal2 = Arc::clone(&wal);
        let res = tokio::task::spawn_blocking(move || write_batch(&*wal2, batch)).await;
        let unwritten = match res {
            Ok((written, unwritten, err)) => {
                h.metrics
                    .records_appended
                    .fetch_add(written.0, Ordering::Relaxed);
                h.metrics
                    .samples_appended
                    .fetch_add(written.1, Ordering::Relaxed);
                if written.0 > 0 {
                    h.metrics.commits.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(e) = err {
                    h.metrics.write_errors.fetch_add(1, Ordering::Relaxed);
                    if !logged_error {
                        tracing::error!(error = %e, "cannot write the WAL; collections wait in memory and are retried");
                        logged_error = true;
                    }
                } else if logged_error {
                    tracing::info!("WAL writable again");
                    logged_error = false;
                }
                unwritten
            }
            Err(e) => {
                tracing::error!(error = %e, "WAL writer task failed");
                Vec::new()
            }
        };
        if unwritten.is_empty() {
            backoff = Duration::from_millis(250);
            continue;
        }
        // Put back in front of anything queued meanwhile, in order.
        let closed = {
            let mut q = match h.queue.lock() {
                Ok(q) => q,
                Err(p) => p.into_inner(),
            };
            for item in unwritten.into_iter().rev() {
                q.bytes += item.data.len();
                q.items.push_front(item);
            }
            h.metrics
                .queued_records
                .store(q.items.len() as u64, Ordering::Relaxed);
            h.metrics
                .queued_bytes
                .store(q.bytes as u64, Ordering::Relaxed);
            q.closed
        };
        if closed {
            // Shutting down and the disk refuses: what is left is lost; say so.
            let q = match h.queue.lock() {
                Ok(q) => q,
                Err(p) => p.into_inner(),
            };
            let samples: u64 = q.items.iter().map(|i| u64::from(i.meta.samples)).sum();
            tracing::error!(
                samples,
                "stopping with collections that could not be written to the WAL"
            );
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Appends the batch and commits once. Returns (records, samples) made
/// durable, the items still to write, and the error that stopped it. The
/// WAL discards everything since its last commit when `append` or `commit`
/// fails, so on any error the whole batch is written again later, in order
/// (its series-set records with it).
fn write_batch(wal: &dyn Wal, batch: Vec<Item>) -> ((u64, u64), Vec<Item>, Option<WalError>) {
    for item in &batch {
        if let Err(e) = wal.append(item.kind, item.meta, &item.data) {
            return ((0, 0), batch, Some(e));
        }
    }
    if let Err(e) = wal.commit() {
        return ((0, 0), batch, Some(e));
    }
    let samples = batch.iter().map(|i| u64::from(i.meta.samples)).sum();
    // Age and size limits move with every commit; what they drop is counted
    // by the WAL (cairn_wal_dropped_samples_total).
    if let Err(e) = wal.enforce_limits(now_ms()) {
        tracing::warn!(error = %e, "enforcing WAL limits failed");
    }
    ((batch.len() as u64, samples), Vec::new(), None)
}

/// Renders the WAL's and the writer's `cairn_wal_*` families.
pub struct WalTelemetry {
    pub wal: Arc<dyn Wal>,
    pub writer: Arc<WriterMetrics>,
}

impl Telemetry for WalTelemetry {
    fn render(&self, out: &mut Emitter) {
        let st = self.wal.stats();
        let m = &self.writer;
        let g = |v: &AtomicU64| v.load(Ordering::Relaxed) as f64;
        out.single(
            "cairn_wal_samples_appended_total",
            "Samples durably committed to the WAL.",
            MetricType::Counter,
            g(&m.samples_appended),
        );
        out.single(
            "cairn_wal_records_appended_total",
            "Records (blocks) durably committed to the WAL.",
            MetricType::Counter,
            g(&m.records_appended),
        );
        out.single(
            "cairn_wal_commits_total",
            "WAL commits (fdatasync).",
            MetricType::Counter,
            g(&m.commits),
        );
        out.single(
            "cairn_wal_write_errors_total",
            "Failed attempts to write the WAL (full disk, I/O errors); the data waits in memory.",
            MetricType::Counter,
            g(&m.write_errors),
        );
        out.single(
            "cairn_wal_queue_records",
            "Records waiting in memory to be written to the WAL.",
            MetricType::Gauge,
            g(&m.queued_records),
        );
        out.single(
            "cairn_wal_queue_bytes",
            "Bytes waiting in memory to be written to the WAL.",
            MetricType::Gauge,
            g(&m.queued_bytes),
        );
        {
            let mut f = out.family(
                "cairn_wal_dropped_samples_total",
                "Samples dropped on purpose before being sent, by reason.",
                MetricType::Counter,
            );
            f.sample(&[("reason", "queue_full")], g(&m.dropped_queue_full));
            for reason in ["max_age", "max_size", "corruption"] {
                let v = st.dropped.get(reason).copied().unwrap_or(0);
                f.sample(&[("reason", reason)], v as f64);
            }
            for (reason, v) in &st.dropped {
                if !["max_age", "max_size", "corruption", "queue_full"].contains(reason) {
                    f.sample(&[("reason", reason)], *v as f64);
                }
            }
        }
        out.single(
            "cairn_wal_corruptions_total",
            "Corrupt WAL data found and moved to quarantine/.",
            MetricType::Counter,
            st.corruptions as f64,
        );
        out.single(
            "cairn_wal_bytes",
            "Bytes of WAL data on disk.",
            MetricType::Gauge,
            st.bytes as f64,
        );
        out.single(
            "cairn_wal_segments",
            "WAL segment files.",
            MetricType::Gauge,
            st.segments as f64,
        );
        out.single(
            "cairn_wal_records",
            "Records (blocks) in the WAL.",
            MetricType::Gauge,
            st.records as f64,
        );
        out.single(
            "cairn_wal_samples",
            "Samples in the WAL.",
            MetricType::Gauge,
            st.samples as f64,
        );
        if let Some(ts) = st.oldest_ts {
            out.single(
                "cairn_wal_oldest_sample_timestamp_seconds",
                "Timestamp of the oldest sample kept in the WAL.",
                MetricType::Gauge,
                ts as f64 / 1000.0,
            );
        }
        {
            let mut f = out.family(
                "cairn_wal_backlog_samples",
                "Committed samples a remote has not acknowledged yet.",
                MetricType::Gauge,
            );
            for (name, r) in &st.remotes {
                f.sample(&[("remote", name)], r.backlog_samples as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{Dropped, Position, Record, WalReader, WalStats};
    use std::sync::atomic::AtomicBool;

    /// A real segment WAL whose appends fail with DiskFull while `full`.
    struct FlakyDisk {
        inner: Arc<dyn Wal>,
        full: AtomicBool,
    }

    impl Wal for FlakyDisk {
        fn append(
            &self,
            kind: RecordKind,
            meta: RecordMeta,
            data: &[u8],
        ) -> Result<Position, WalError> {
            if self.full.load(Ordering::SeqCst) {
                return Err(WalError::DiskFull {
                    path: "test".into(),
                });
            }
            self.inner.append(kind, meta, data)
        }
        fn commit(&self) -> Result<Position, WalError> {
            self.inner.commit()
        }
        fn committed(&self) -> Position {
            self.inner.committed()
        }
        fn subscribe(&self) -> tokio::sync::watch::Receiver<Position> {
            self.inner.subscribe()
        }
        fn reader(&self, from: Position) -> Result<Box<dyn WalReader>, WalError> {
            self.inner.reader(from)
        }
        fn register_remotes(&self, names: &[String]) -> Result<(), WalError> {
            self.inner.register_remotes(names)
        }
        fn cursor(&self, remote: &str) -> Position {
            self.inner.cursor(remote)
        }
        fn ack(&self, remote: &str, upto: Position) -> Result<(), WalError> {
            self.inner.ack(remote, upto)
        }
        fn enforce_limits(&self, now_ms: i64) -> Result<Dropped, WalError> {
            self.inner.enforce_limits(now_ms)
        }
        fn stats(&self) -> WalStats {
            self.inner.stats()
        }
    }

    fn meta(samples: u32) -> RecordMeta {
        let ts = now_ms();
        RecordMeta {
            min_ts: ts,
            max_ts: ts,
            samples,
        }
    }

    fn payloads(wal: &dyn Wal) -> Vec<Vec<u8>> {
        let mut r = wal.reader(Position::default()).unwrap();
        let mut rec = Record::default();
        let mut out = Vec::new();
        while r.next(&mut rec).unwrap() {
            out.push(rec.data.clone());
        }
        out
    }

    fn setup(dir: &std::path::Path) -> Arc<FlakyDisk> {
        let cfg = crate::config::Wal {
            dir: Some(dir.to_owned()),
            ..Default::default()
        };
        Arc::new(FlakyDisk {
            inner: crate::wal::open(&cfg, dir).unwrap(),
            full: AtomicBool::new(false),
        })
    }

    #[test]
    fn full_disk_keeps_collections_in_memory_and_writes_them_in_order_later() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let wal = setup(dir.path());
            let (w, task) = spawn(wal.clone(), 1 << 20);
            w.push(
                RecordKind::SeriesSet,
                RecordMeta::default(),
                b"set".to_vec(),
            );
            w.push(RecordKind::Samples, meta(1), b"one".to_vec());
            tokio::time::sleep(Duration::from_millis(100)).await;
            wal.full.store(true, Ordering::SeqCst);
            w.push(RecordKind::Samples, meta(1), b"two".to_vec());
            w.push(RecordKind::Samples, meta(1), b"three".to_vec());
            tokio::time::sleep(Duration::from_millis(400)).await;
            assert!(w.metrics().write_errors.load(Ordering::Relaxed) >= 1);
            assert_eq!(w.metrics().queued_records.load(Ordering::Relaxed), 2);
            assert_eq!(payloads(&*wal), vec![b"set".to_vec(), b"one".to_vec()]);
            // Space is back: the waiting collections land, in order.
            wal.full.store(false, Ordering::SeqCst);
            w.close();
            task.await.unwrap();
            assert_eq!(
                payloads(&*wal),
                vec![
                    b"set".to_vec(),
                    b"one".to_vec(),
                    b"two".to_vec(),
                    b"three".to_vec()
                ]
            );
            assert_eq!(w.metrics().samples_appended.load(Ordering::Relaxed), 3);
            assert_eq!(w.metrics().dropped_queue_full.load(Ordering::Relaxed), 0);
        });
    }

    #[test]
    fn queue_over_its_bound_drops_oldest_samples_never_series_sets() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let wal = setup(dir.path());
            wal.full.store(true, Ordering::SeqCst);
            let (w, task) = spawn(wal.clone(), 25);
            w.push(RecordKind::SeriesSet, RecordMeta::default(), vec![b's'; 10]);
            for i in 0..4u8 {
                w.push(RecordKind::Samples, meta(7), vec![b'0' + i; 10]);
            }
            // 10 (set) + 10 + 10 = 30 > 25: only the newest samples record
            // stays beside the set.
            tokio::time::sleep(Duration::from_millis(50)).await;
            wal.full.store(false, Ordering::SeqCst);
            w.close();
            task.await.unwrap();
            let got = payloads(&*wal);
            assert_eq!(got.first(), Some(&vec![b's'; 10]), "series set kept first");
            assert_eq!(got.last(), Some(&vec![b'3'; 10]), "newest collection kept");
            let dropped = w.metrics().dropped_queue_full.load(Ordering::Relaxed);
            assert_eq!(
                dropped,
                7 * (5 - got.len() as u64),
                "every drop counted: {got:?}"
            );
        });
    }
}
