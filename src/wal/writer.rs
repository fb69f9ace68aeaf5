//! The WAL writer task: the one place that calls `Wal::append`/`commit`.
//!
//! Owns a bounded in-memory queue of encoded records between the scheduler
//! and the disk. The scheduler pushes and returns at once (collections never
//! wait on the disk); this task appends and commits on the blocking pool.
//! When the disk is full or failing, records wait here, bounded by bytes;
//! past the bound the oldest samples records are dropped and counted
//! (`reason="queue_full"`), never a series-set record (later samples records
//! need it). Must never: reorder records, or drop one without counting it.
//!
//! While the WAL refuses writes (a full or failing disk), senders that are
//! caught up with the WAL may take copies of the queued records and deliver
//! them straight from memory (a [`QueueTap`]); a samples record every remote
//! has delivered leaves the queue without being written (counted in
//! `cairn_wal_unspooled_samples_total`), so a disk that stays full does not
//! stop the flow to a receiver that is up.
//!
//! With `wal.flush_interval` > 0 the same happens on purpose: each record
//! is held up to that long, kept meanwhile in the stage (`stage.rs`, a
//! tmpfs file that survives a kill), and offered to the taps at once. With
//! a healthy receiver every samples record is delivered from memory and
//! never written: the disk sees only series-set changes. What is still
//! undelivered when the oldest record is due is written with one commit.

use crate::clock::now_ms;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::stage::{Stage, Staged};
use super::{RecordKind, RecordMeta, Wal, WalError, WalStats};
use crate::metrics::{Emitter, MetricType};
use crate::telemetry::Telemetry;

/// A poisoned lock still guards consistent data here (every critical
/// section leaves it whole), so the writer carries on rather than panic.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Item {
    kind: RecordKind,
    meta: RecordMeta,
    data: Vec<u8>,
    /// Push order, from 1: what a tap has taken is named by it.
    seq: u64,
    /// Bit `i`: the remote with tap index `i` delivered it from memory.
    delivered: u64,
    /// When it was queued: held (with a stage) until `hold` after this.
    pushed: Instant,
    /// In the stage file (with a stage): a kill -9 no longer loses it.
    staged: bool,
    /// A tap took a copy: it is written as it is (never merged), so a
    /// sender that delivered it recognises it when the WAL hands it over.
    copied: bool,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    bytes: usize,
    closed: bool,
    next_seq: u64,
    /// The last write failed and no commit succeeded since.
    refusing: bool,
    /// A batch taken by the writer is being written: records older than
    /// the queue's front may be about to appear in the WAL.
    in_flight: bool,
    /// One bit per tap.
    taps: u64,
    /// A remote beyond the 64 taps reads only the WAL: then nothing may
    /// leave the queue unwritten.
    untapped: bool,
    /// The newest record of the last batch the WAL refused: a record
    /// queued after it has not been tried yet and is left to the writer
    /// (the disk may have room again), so a tap never races the writer
    /// for it.
    failed_through: u64,
    /// Staged records that left the queue without the writer writing them
    /// (delivered by every remote, or dropped): the stage forgets them.
    gone: Vec<u64>,
    /// The newest series-set record every remote has, taken out of the
    /// queue's front while holding: written only in front of the next
    /// samples records that reach the WAL (they need it there), so a set
    /// change with a healthy receiver costs no disk write.
    pending_set: Option<Item>,
    /// One bit per tap holding copies it has not reported on yet: a
    /// closing writer waits for them, so what a remote is delivering right
    /// now is not also written and sent again after the restart.
    taking: u64,
}

/// A record copied out of the queue for a sender.
#[derive(Debug, Clone)]
pub struct Queued {
    pub seq: u64,
    pub kind: RecordKind,
    pub meta: RecordMeta,
    pub data: Vec<u8>,
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
    /// Samples every remote delivered from memory; never written.
    pub unspooled: AtomicU64,
    /// Samples pushed (every collection and scrape handed to the writer).
    pub samples_queued: AtomicU64,
    /// Samples found in the stage at start (held when the last process
    /// stopped) and queued again.
    pub stage_replayed: AtomicU64,
    /// Stage writes that failed (then nothing is held until one works).
    pub stage_errors: AtomicU64,
}

/// The scheduler's handle: push records, close at shutdown.
#[derive(Clone)]
pub struct WriterHandle {
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
    max_bytes: usize,
    metrics: Arc<WriterMetrics>,
    snapshot: Arc<Mutex<WalStats>>,
    /// Bumped when a record is queued while the WAL refuses writes, or
    /// when it starts refusing: wakes the taps.
    offered: Arc<watch::Sender<u64>>,
    /// How long a record is held back from the WAL for the remotes to
    /// deliver it from memory (`wal.flush_interval`); zero: written at
    /// once, as every record was before stages existed.
    hold: Duration,
    /// Where held records are kept safe from a kill (with `hold` > 0).
    stage: Option<Arc<Mutex<Stage>>>,
    /// The stage could not be written: hold nothing until it can.
    stage_failed: Arc<AtomicBool>,
}

impl WriterHandle {
    /// Queues a record; never blocks on I/O.
    pub fn push(&self, kind: RecordKind, meta: RecordMeta, data: Vec<u8>) {
        self.metrics
            .samples_queued
            .fetch_add(u64::from(meta.samples), Ordering::Relaxed);
        let mut q = self.lock_queue();
        q.bytes += data.len();
        q.next_seq += 1;
        let seq = q.next_seq;
        q.items.push_back(Item {
            kind,
            meta,
            data,
            seq,
            delivered: 0,
            pushed: Instant::now(),
            staged: false,
            copied: false,
        });
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
                if old.staged {
                    q.gone.push(old.seq);
                }
                self.metrics
                    .dropped_queue_full
                    .fetch_add(u64::from(old.meta.samples), Ordering::Relaxed);
            }
        }
        self.publish_queue(&q);
        let offer = (q.refusing || self.holding()) && q.taps != 0;
        drop(q);
        if offer {
            self.offered.send_modify(|v| *v += 1);
        }
        self.wake.notify_one();
    }

    /// A tap for one more remote; `None` past 64 remotes (those wait for
    /// the disk, as every remote did before taps).
    pub fn tap(&self) -> Option<QueueTap> {
        let mut q = self.lock_queue();
        let idx = q.taps.count_ones();
        if idx >= 64 {
            q.untapped = true;
            return None;
        }
        q.taps |= 1 << idx;
        drop(q);
        Some(QueueTap {
            handle: self.clone(),
            bit: 1 << idx,
            offered: self.offered.subscribe(),
        })
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

    /// The writer's latest snapshot of the WAL's statistics: a copy taken
    /// under a short lock, never a disk read (safe on the async runtime).
    pub fn stats(&self) -> WalStats {
        match self.snapshot.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

impl WriterHandle {
    /// A handle with an empty queue; `run` is the task that drains it.
    pub fn new(max_bytes: usize) -> Self {
        WriterHandle {
            queue: Arc::new(Mutex::new(Queue::default())),
            wake: Arc::new(Notify::new()),
            max_bytes,
            metrics: Arc::new(WriterMetrics::default()),
            snapshot: Arc::new(Mutex::new(WalStats::default())),
            offered: Arc::new(watch::channel(0).0),
            hold: Duration::ZERO,
            stage: None,
            stage_failed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A handle that holds each record up to `hold` for the remotes to
    /// deliver from memory, keeping it meanwhile in `stage`. What the stage
    /// held when the last process stopped (`found`, from `Stage::open`)
    /// is queued first, due at once, and the stage is rewritten to hold
    /// exactly that. Blocking (call it where the WAL is opened).
    pub fn with_stage(
        max_bytes: usize,
        hold: Duration,
        mut stage: Stage,
        found: Vec<Staged>,
    ) -> Result<Self, WalError> {
        let mut h = WriterHandle::new(max_bytes);
        let due = Instant::now()
            .checked_sub(hold)
            .unwrap_or_else(Instant::now);
        {
            let mut q = h.lock_queue();
            for r in found {
                q.next_seq += 1;
                q.bytes += r.data.len();
                let seq = q.next_seq;
                q.items.push_back(Item {
                    kind: r.kind,
                    meta: r.meta,
                    data: r.data,
                    seq,
                    delivered: 0,
                    pushed: due,
                    staged: true,
                    copied: false,
                });
            }
            stage.compact(q.items.iter().map(|i| (i.seq, i.kind, i.meta, &i.data[..])))?;
            let replayed: u64 = q.items.iter().map(|i| u64::from(i.meta.samples)).sum();
            h.metrics.stage_replayed.store(replayed, Ordering::Relaxed);
            h.publish_queue(&q);
        }
        h.hold = hold;
        h.stage = Some(Arc::new(Mutex::new(stage)));
        Ok(h)
    }

    /// Whether records are held back for delivery from memory now.
    fn holding(&self) -> bool {
        !self.hold.is_zero() && !self.stage_failed.load(Ordering::Relaxed)
    }

    /// The `cairn_wal_*` telemetry: the writer's counters and its latest
    /// snapshot of the WAL's statistics (rendering never touches the disk).
    pub fn telemetry(&self) -> WalTelemetry {
        WalTelemetry {
            snapshot: Arc::clone(&self.snapshot),
            writer: Arc::clone(&self.metrics),
        }
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        match self.queue.lock() {
            Ok(q) => q,
            Err(p) => p.into_inner(),
        }
    }

    fn publish_queue(&self, q: &Queue) {
        self.metrics
            .queued_records
            .store(q.items.len() as u64, Ordering::Relaxed);
        self.metrics
            .queued_bytes
            .store(q.bytes as u64, Ordering::Relaxed);
    }

    /// Takes the oldest records, up to `limit` bytes (at least one record).
    /// While holding, nothing until the oldest has been held `hold` (or
    /// the writer is closing and no remote is still delivering copies):
    /// then everything, so an outage costs one commit per `hold`.
    fn take(&self, limit: usize, close_wait_over: bool) -> (Vec<Item>, bool) {
        let mut q = self.lock_queue();
        if self.holding() {
            // Half the queue's bound held: written now, so holding never
            // costs a queue_full drop (and the stage, in RAM, stays small).
            let due = q
                .items
                .front()
                .is_some_and(|f| f.pushed.elapsed() >= self.hold)
                || q.bytes > self.max_bytes / 2;
            let closing = q.closed && (q.taking == 0 || close_wait_over);
            if !due && !closing {
                return (Vec::new(), q.closed);
            }
        }
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        while let Some(first) = q.items.front() {
            let n = first.data.len();
            if !batch.is_empty() && bytes.saturating_add(n) > limit {
                break;
            }
            bytes += n;
            if let Some(item) = q.items.pop_front() {
                batch.push(item);
            }
        }
        q.bytes -= bytes;
        if batch.iter().any(|i| i.kind == RecordKind::Samples) {
            if let Some(set) = q.pending_set.take() {
                // Back in the queue's accounting: a failed write puts the
                // whole batch back in front.
                q.bytes += set.data.len();
                batch.insert(0, set);
            }
        }
        q.in_flight = !batch.is_empty();
        self.publish_queue(&q);
        (batch, q.closed)
    }

    /// The batch taken last is written (`ok`) or not, and put back.
    fn settle(&self, batch: Option<Vec<Item>>, ok: bool) -> bool {
        let mut q = self.lock_queue();
        if let Some(batch) = batch {
            for item in batch.into_iter().rev() {
                q.bytes += item.data.len();
                q.items.push_front(item);
            }
        }
        q.in_flight = false;
        q.refusing = !ok;
        if !ok {
            q.failed_through = q.items.back().map_or(q.failed_through, |i| i.seq);
        }
        self.publish_queue(&q);
        let offer = !ok && q.taps != 0 && !q.items.is_empty();
        let closed = q.closed;
        drop(q);
        if offer {
            self.offered.send_modify(|v| *v += 1);
        }
        closed
    }

    /// The batch is committed: the stage forgets it.
    fn written(&self, batch: &[Item]) {
        if self.stage.is_none() {
            return;
        }
        let mut q = self.lock_queue();
        q.gone
            .extend(batch.iter().filter(|i| i.staged).map(|i| i.seq));
    }

    /// When the oldest held record is due (holding only).
    fn next_due(&self) -> Option<Instant> {
        if !self.holding() {
            return None;
        }
        let q = self.lock_queue();
        q.items.front().map(|f| f.pushed + self.hold)
    }

    /// Brings the stage up to date with the queue: stages what was queued
    /// since, forgets what left it, empties the file once nothing is held,
    /// compacts it when it has grown far past what it holds. On the
    /// blocking pool. A stage that cannot be written stops the holding
    /// (records then go to the WAL at once) until a write succeeds again.
    async fn sync_stage(&self) {
        let Some(stage) = self.stage.clone() else {
            return;
        };
        let (new, gone) = {
            let mut q = self.lock_queue();
            let new: Vec<Staged> = q
                .items
                .iter_mut()
                .filter(|i| !i.staged)
                .map(|i| {
                    i.staged = true;
                    Staged {
                        seq: i.seq,
                        kind: i.kind,
                        meta: i.meta,
                        data: i.data.clone(),
                    }
                })
                .collect();
            (new, std::mem::take(&mut q.gone))
        };
        if new.is_empty() && gone.is_empty() {
            return;
        }
        let queue = Arc::clone(&self.queue);
        let res = tokio::task::spawn_blocking(move || {
            let mut s = lock(&stage);
            let appended = s.append(new.iter().map(|r| (r.seq, r.kind, r.meta, &r.data[..])));
            s.forget(gone)?;
            if s.wants_compaction() {
                // Copies taken under the queue's lock, written after it is
                // released: the scheduler pushes under that lock and must
                // never wait for a file write.
                let live: Vec<Staged> = {
                    let q = lock(&queue);
                    q.pending_set
                        .iter()
                        .chain(q.items.iter())
                        .filter(|i| i.staged)
                        .map(|i| Staged {
                            seq: i.seq,
                            kind: i.kind,
                            meta: i.meta,
                            data: i.data.clone(),
                        })
                        .collect()
                };
                s.compact(live.iter().map(|r| (r.seq, r.kind, r.meta, &r.data[..])))?;
            }
            appended.map(|()| !new.is_empty())
        })
        .await;
        match res {
            Ok(Ok(wrote)) => {
                if wrote && self.stage_failed.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        "the stage is writable again; holding records back from the WAL"
                    );
                }
            }
            Ok(Err(e)) => {
                self.metrics.stage_errors.fetch_add(1, Ordering::Relaxed);
                if !self.stage_failed.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %e, "cannot write the stage; records go to the WAL at once until it works again");
                }
            }
            Err(e) => tracing::error!(error = %e, "stage write: blocking task lost"),
        }
    }

    /// Puts unwritten records back in front of anything queued meanwhile,
    /// in order, and marks the WAL as refusing. Returns whether the writer
    /// was asked to stop.
    fn put_back(&self, batch: Vec<Item>) -> bool {
        self.settle(Some(batch), false)
    }
}

/// One remote's view of the writer's queue, for delivering from memory
/// while the WAL refuses writes. A clone is the same remote (a restarted
/// sender).
#[derive(Clone)]
pub struct QueueTap {
    handle: WriterHandle,
    bit: u64,
    offered: watch::Receiver<u64>,
}

impl QueueTap {
    /// Copies of the queued records after `after` this remote has not
    /// delivered, oldest first — only while the WAL refuses writes and
    /// nothing is being written, and only if `wal_moved()` (asked under
    /// the queue's lock) says the WAL has nothing the caller has not read:
    /// then the queue continues the WAL exactly, and delivering it keeps
    /// each series in timestamp order.
    pub fn take(&mut self, after: u64, wal_moved: impl FnOnce() -> bool) -> Vec<Queued> {
        self.offered.borrow_and_update();
        let mut q = self.handle.lock_queue();
        let tried = q.items.front().is_some_and(|f| f.seq <= q.failed_through);
        let offering = (q.refusing && tried) || self.handle.holding();
        if !offering || q.in_flight || wal_moved() {
            return Vec::new();
        }
        // A series set this remote delivered before (an earlier run of its
        // sender) is handed over again: a restarted sender needs it to
        // read the samples records after it.
        let pending = q
            .pending_set
            .as_ref()
            .filter(|p| p.seq > after)
            .map(|i| Queued {
                seq: i.seq,
                kind: i.kind,
                meta: i.meta,
                data: i.data.clone(),
            });
        let out: Vec<Queued> = pending
            .into_iter()
            .chain(
                q.items
                    .iter_mut()
                    .filter(|i| {
                        i.seq > after
                            && (i.delivered & self.bit == 0 || i.kind == RecordKind::SeriesSet)
                    })
                    .map(|i| {
                        i.copied = true;
                        Queued {
                            seq: i.seq,
                            kind: i.kind,
                            meta: i.meta,
                            data: i.data.clone(),
                        }
                    }),
            )
            .collect();
        if !out.is_empty() {
            q.taking |= self.bit;
        }
        out
    }

    /// While records are held: when this remote should take its queued
    /// records after `after`, if not now — once they hold `max_samples`
    /// samples, or the oldest has waited `deadline` (at most half the
    /// hold, so the writer never writes them first). `None`: now (or
    /// nothing to take; while the WAL refuses writes, always now).
    pub fn not_before(
        &self,
        after: u64,
        max_samples: usize,
        deadline: Duration,
    ) -> Option<Instant> {
        if !self.handle.holding() {
            return None;
        }
        let q = self.handle.lock_queue();
        if q.refusing {
            return None;
        }
        let mut mine = q.items.iter().filter(|i| {
            i.seq > after && i.delivered & self.bit == 0 && i.kind == RecordKind::Samples
        });
        let oldest = mine.next()?.pushed;
        let samples: u64 = q
            .items
            .iter()
            .filter(|i| i.seq > after && i.delivered & self.bit == 0)
            .map(|i| u64::from(i.meta.samples))
            .sum();
        if samples >= max_samples as u64 {
            return None;
        }
        let at = oldest + deadline.min(self.handle.hold / 2);
        (at > Instant::now()).then_some(at)
    }

    /// The copies taken last will not be reported as delivered (the
    /// sender is stopping): a closing writer need not wait for them.
    pub fn release(&self) {
        let mut q = self.handle.lock_queue();
        q.taking &= !self.bit;
        drop(q);
        self.handle.wake.notify_one();
    }

    /// This remote delivered (or counted) every record up to `through`.
    /// Samples records every remote has delivered leave the queue unwritten.
    pub fn delivered(&self, through: u64) {
        let mut q = self.handle.lock_queue();
        // No bit pattern means "every remote" while one remote has no tap.
        let all = if q.untapped { None } else { Some(q.taps) };
        let mut gone = 0u64;
        let mut freed = 0usize;
        let mut left = std::mem::take(&mut q.gone);
        q.items.retain_mut(|i| {
            if i.seq <= through {
                i.delivered |= self.bit;
            }
            if i.kind == RecordKind::Samples && Some(i.delivered) == all {
                gone += u64::from(i.meta.samples);
                freed += i.data.len();
                if i.staged {
                    left.push(i.seq);
                }
                false
            } else {
                true
            }
        });
        q.gone = left;
        q.bytes -= freed;
        if self.handle.holding() {
            // Sets every remote has, at the queue's front (nothing older
            // waits for the WAL): only the newest is kept, aside.
            while q
                .items
                .front()
                .is_some_and(|i| i.kind == RecordKind::SeriesSet && Some(i.delivered) == all)
            {
                let Some(set) = q.items.pop_front() else {
                    break;
                };
                q.bytes -= set.data.len();
                if let Some(old) = q.pending_set.replace(set) {
                    if old.staged {
                        q.gone.push(old.seq);
                    }
                }
            }
        }
        q.taking &= !self.bit;
        self.handle.publish_queue(&q);
        let tell_stage = !q.gone.is_empty() || q.closed;
        drop(q);
        if tell_stage {
            // The writer forgets them in the stage (and empties it once
            // nothing is held), or stops waiting for this remote.
            self.handle.wake.notify_one();
        }
        self.handle
            .metrics
            .unspooled
            .fetch_add(gone, Ordering::Relaxed);
    }

    /// Resolves when records were queued while the WAL refuses writes.
    pub async fn offered(&mut self) {
        if self.offered.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Starts the writer task; it ends after `close()` once the queue is
/// written (or, if the disk stays unwritable, after a last attempt).
pub fn spawn(wal: Arc<dyn Wal>, max_bytes: usize) -> (WriterHandle, tokio::task::JoinHandle<()>) {
    let handle = WriterHandle::new(max_bytes);
    let task = tokio::spawn(run(wal, handle.clone()));
    (handle, task)
}

/// How often the statistics snapshot is refreshed while nothing is written
/// (acks move backlogs and free segments between commits).
const SNAPSHOT_EVERY: Duration = Duration::from_secs(2);
/// How often it is refreshed while a remote has a backlog: a sender's acks
/// change the backlog between commits, and a gauge that showed the last
/// commit's backlog until the next commit would never read 0 at short
/// intervals. Cheap: with the cursors in memory a refresh reads at most the
/// headers a cursor moved over.
const SNAPSHOT_CATCH_UP: Duration = Duration::from_millis(300);
/// Longest a closing writer waits for remotes delivering held records
/// from memory before it writes them anyway (inside the agent's bound).
const CLOSE_WAIT: Duration = Duration::from_secs(8);
/// Longest wait between two attempts on a failing disk; every new
/// collection also triggers an attempt, so space that returns is used
/// within one collection interval.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The writer task. Restartable: everything it keeps lives in the handle,
/// so a supervisor can run it again after a panic (the records being
/// written are put back first).
pub async fn run(wal: Arc<dyn Wal>, h: WriterHandle) {
    let mut backoff = Duration::from_millis(250);
    let mut logged_error = false;
    // Bytes per commit. Unbounded while the disk takes everything; after a
    // failure one record per commit, doubling with each success, so room
    // for one collection is enough to make progress (a full disk frees
    // space a few records at a time as remotes acknowledge).
    let mut limit = usize::MAX;
    let mut next_refresh = tokio::time::Instant::now();
    let mut close_started: Option<Instant> = None;
    loop {
        h.sync_stage().await;
        if close_started.is_none() && h.lock_queue().closed {
            close_started = Some(Instant::now());
        }
        let wait_over = close_started.is_some_and(|t| t.elapsed() >= CLOSE_WAIT);
        let (batch, closed) = h.take(limit, wait_over);
        if batch.is_empty() {
            if closed && h.lock_queue().items.is_empty() {
                // What the stage still names was written or delivered; a
                // set kept aside is not needed (nothing follows it, and
                // the next process starts with a set of its own).
                {
                    let mut q = h.lock_queue();
                    if let Some(set) = q.pending_set.take() {
                        q.gone.push(set.seq);
                    }
                }
                h.sync_stage().await;
                refresh(&wal, &h).await;
                return;
            }
            if closed {
                // Holding, and a remote is still delivering copies: wait
                // for its answer (bounded) before writing the rest.
                tokio::select! {
                    _ = h.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
                continue;
            }
            if tokio::time::Instant::now() >= next_refresh {
                refresh(&wal, &h).await;
                let every = if h.stats().remotes.values().any(|r| r.backlog_samples > 0) {
                    SNAPSHOT_CATCH_UP
                } else {
                    SNAPSHOT_EVERY
                };
                next_refresh = tokio::time::Instant::now() + every;
            }
            let until = h.next_due().map_or(next_refresh, |d| d.min(next_refresh));
            tokio::select! {
                _ = h.wake.notified() => {}
                _ = tokio::time::sleep_until(until) => {}
            }
            continue;
        }
        let bytes: usize = batch.iter().map(|i| i.data.len()).sum();
        let wal2 = Arc::clone(&wal);
        let snap = Arc::clone(&h.snapshot);
        let merge = !h.hold.is_zero();
        let res = tokio::task::spawn_blocking(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                write_batch(&*wal2, &batch, merge)
            }));
            if matches!(r, Ok(Ok(_))) {
                store(&snap, wal2.stats());
            }
            (batch, r)
        })
        .await;
        let (batch, outcome) = match res {
            Ok(v) => v,
            Err(e) => {
                // Only a cancelled runtime gets here (panics are caught
                // inside, with the batch kept).
                tracing::error!(error = %e, "WAL writer: blocking task lost");
                return;
            }
        };
        let err = match outcome {
            Ok(Ok((records, samples))) => {
                h.settle(None, true);
                h.written(&batch);
                h.metrics
                    .records_appended
                    .fetch_add(records, Ordering::Relaxed);
                h.metrics
                    .samples_appended
                    .fetch_add(samples, Ordering::Relaxed);
                h.metrics.commits.fetch_add(1, Ordering::Relaxed);
                // The commit left a backlog the senders are about to take.
                next_refresh = tokio::time::Instant::now() + SNAPSHOT_CATCH_UP;
                if logged_error {
                    tracing::info!("WAL writable again");
                    logged_error = false;
                }
                backoff = Duration::from_millis(250);
                limit = limit.max(bytes).saturating_mul(2);
                continue;
            }
            Ok(Err(e)) => e,
            Err(panic) => {
                h.put_back(batch);
                std::panic::resume_unwind(panic);
            }
        };
        h.metrics.write_errors.fetch_add(1, Ordering::Relaxed);
        if !logged_error {
            tracing::error!(error = %err, "cannot write the WAL; collections wait in memory and are retried");
            logged_error = true;
        }
        limit = 0;
        if h.put_back(batch) {
            // Shutting down and the disk refuses: what is left is lost; say so.
            let samples: u64 = h
                .lock_queue()
                .items
                .iter()
                .map(|i| u64::from(i.meta.samples))
                .sum();
            tracing::error!(
                samples,
                "stopping with collections that could not be written to the WAL"
            );
            return;
        }
        refresh(&wal, &h).await;
        // A new collection (or the backoff) triggers the next attempt.
        tokio::select! {
            _ = h.wake.notified() => {}
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn store(snap: &Mutex<WalStats>, st: WalStats) {
    match snap.lock() {
        Ok(mut g) => *g = st,
        Err(p) => *p.into_inner() = st,
    }
}

/// Refreshes the statistics snapshot on the blocking pool (the segment
/// engine may read headers, or repair a bad region it meets).
async fn refresh(wal: &Arc<dyn Wal>, h: &WriterHandle) {
    let wal = Arc::clone(wal);
    let snap = Arc::clone(&h.snapshot);
    let _ = tokio::task::spawn_blocking(move || store(&snap, wal.stats())).await;
}

/// Appends the batch and commits once. Returns the (records, samples) made
/// durable. The WAL discards everything since its last commit when
/// `append` or `commit` fails, so on an error the whole batch is written
/// again later, in order (its series-set records with it).
///
/// With `merge` (held records), each run of consecutive samples records of
/// one series set that no remote took a copy of is written as one record
/// (`record::Merger`): an outage's collections then cost about a third of
/// the bytes on disk.
fn write_batch(wal: &dyn Wal, batch: &[Item], merge: bool) -> Result<(u64, u64), WalError> {
    let mut merger = super::record::Merger::new();
    let mut merged = Vec::new();
    let mut i = 0;
    while i < batch.len() {
        let run = if merge {
            mergeable_run(&mut merger, &batch[i..])
        } else {
            None
        };
        if let Some((set, n)) = run {
            merged.clear();
            let meta = merger.merge(
                set,
                batch[i..i + n].iter().map(|x| &x.data[..]),
                &mut merged,
            );
            if let Ok(meta) = meta {
                wal.append(RecordKind::Samples, meta, &merged)?;
                i += n;
                continue;
            }
        }
        wal.append(batch[i].kind, batch[i].meta, &batch[i].data)?;
        i += 1;
    }
    wal.commit()?;
    let samples = batch.iter().map(|i| u64::from(i.meta.samples)).sum();
    // Age and size limits move with every commit; what they drop is counted
    // by the WAL (cairn_wal_dropped_samples_total).
    if let Err(e) = wal.enforce_limits(now_ms()) {
        tracing::warn!(error = %e, "enforcing WAL limits failed");
    }
    Ok((batch.len() as u64, samples))
}

/// The series set and length of the run of records at the head of
/// `items` that can be merged: at least two samples records of one set,
/// none of them copied by a tap.
fn mergeable_run(m: &mut super::record::Merger, items: &[Item]) -> Option<((u64, usize), usize)> {
    let ok = |i: &Item| i.kind == RecordKind::Samples && !i.copied;
    let first = items.first().filter(|i| ok(i))?;
    let set = m.set_of(&first.data).ok()?;
    let n = 1 + items[1..]
        .iter()
        .take_while(|i| ok(i) && m.set_of(&i.data).ok() == Some(set))
        .count();
    (n >= 2).then_some((set, n))
}

/// Renders the WAL's and the writer's `cairn_wal_*` families from the
/// writer's counters and its snapshot of the WAL statistics: never a disk
/// read or an fdatasync on the async runtime (it runs at every collection
/// and every /metrics request).
pub struct WalTelemetry {
    snapshot: Arc<Mutex<WalStats>>,
    writer: Arc<WriterMetrics>,
}

impl Telemetry for WalTelemetry {
    fn render(&self, out: &mut Emitter) {
        let st = match self.snapshot.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
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
        out.single(
            "cairn_wal_unspooled_samples_total",
            "Samples every remote received straight from memory (while held back by wal.flush_interval, or while the WAL refused writes); never written to the WAL.",
            MetricType::Counter,
            g(&m.unspooled),
        );
        out.single(
            "cairn_wal_stage_replayed_samples_total",
            "Samples held in the stage when the previous process stopped, queued again at start.",
            MetricType::Counter,
            g(&m.stage_replayed),
        );
        out.single(
            "cairn_wal_stage_errors_total",
            "Failed writes of the stage; until one succeeds, records go to the WAL at once.",
            MetricType::Counter,
            g(&m.stage_errors),
        );
        {
            let mut f = out.family(
                "cairn_wal_dropped_samples_total",
                "Samples dropped on purpose before being sent, by reason.",
                MetricType::Counter,
            );
            for reason in super::DROP_REASONS {
                let v = if reason == "queue_full" {
                    m.dropped_queue_full.load(Ordering::Relaxed)
                } else {
                    st.dropped.get(reason).copied().unwrap_or(0)
                };
                f.sample(&[("reason", reason)], v as f64);
            }
        }
        out.single(
            "cairn_wal_corruptions_total",
            "Corrupt WAL data found and moved to quarantine/.",
            MetricType::Counter,
            st.corruptions as f64,
        );
        if let Some(b) = st.device_bytes {
            out.single(
                "cairn_wal_device_write_bytes_total",
                "Bytes of file-system blocks the WAL's writes sent to the device (records, the zeros written ahead, cursors; not the file system's journal). Absent with the sled engine.",
                MetricType::Counter,
                b as f64,
            );
        }
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

    /// A fault these tests inject into a real WAL: it replaces only the
    /// methods it changes, and `Faulty` forwards the rest (one forwarding
    /// impl for every fault).
    trait Fault: Send + Sync + 'static {
        fn inner(&self) -> &dyn Wal;
        fn append(
            &self,
            kind: RecordKind,
            meta: RecordMeta,
            data: &[u8],
        ) -> Result<Position, WalError> {
            self.inner().append(kind, meta, data)
        }
        fn commit(&self) -> Result<Position, WalError> {
            self.inner().commit()
        }
        fn stats(&self) -> WalStats {
            self.inner().stats()
        }
    }

    /// A real WAL with a `Fault` in front; derefs to the fault's state.
    struct Faulty<F>(F);

    impl<F> std::ops::Deref for Faulty<F> {
        type Target = F;
        fn deref(&self) -> &F {
            &self.0
        }
    }

    impl<F: Fault> Wal for Faulty<F> {
        fn append(
            &self,
            kind: RecordKind,
            meta: RecordMeta,
            data: &[u8],
        ) -> Result<Position, WalError> {
            self.0.append(kind, meta, data)
        }
        fn commit(&self) -> Result<Position, WalError> {
            self.0.commit()
        }
        fn committed(&self) -> Position {
            self.0.inner().committed()
        }
        fn subscribe(&self) -> tokio::sync::watch::Receiver<Position> {
            self.0.inner().subscribe()
        }
        fn reader(&self, from: Position) -> Result<Box<dyn WalReader>, WalError> {
            self.0.inner().reader(from)
        }
        fn register_remotes(&self, names: &[String]) -> Result<(), WalError> {
            self.0.inner().register_remotes(names)
        }
        fn cursor(&self, remote: &str) -> Position {
            self.0.inner().cursor(remote)
        }
        fn ack(&self, remote: &str, upto: Position) -> Result<(), WalError> {
            self.0.inner().ack(remote, upto)
        }
        fn enforce_limits(&self, now_ms: i64) -> Result<Dropped, WalError> {
            self.0.inner().enforce_limits(now_ms)
        }
        fn stats(&self) -> WalStats {
            self.0.stats()
        }
    }

    /// A real segment WAL whose appends fail with DiskFull while `full`.
    struct FlakyDisk {
        inner: Arc<dyn Wal>,
        full: AtomicBool,
    }

    impl Fault for FlakyDisk {
        fn inner(&self) -> &dyn Wal {
            &*self.inner
        }
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
    }

    /// Regression: with a 65th remote (no tap), records the 64 tapped
    /// remotes delivered from memory must still be written for it.
    #[test]
    fn regression_a_remote_without_a_tap_keeps_delivered_records_queued() {
        let h = WriterHandle::new(1 << 20);
        let taps: Vec<QueueTap> = (0..64).filter_map(|_| h.tap()).collect();
        assert_eq!(taps.len(), 64);
        assert!(h.tap().is_none());
        h.push(RecordKind::Samples, meta(5), vec![1, 2, 3]);
        for t in &taps {
            t.delivered(1);
        }
        assert_eq!(h.metrics.queued_records.load(Ordering::Relaxed), 1);
        assert_eq!(h.metrics.unspooled.load(Ordering::Relaxed), 0);
    }

    /// With every remote tapped, a record all of them delivered leaves the
    /// queue unwritten and is counted.
    #[test]
    fn a_record_every_remote_delivered_leaves_the_queue_unwritten() {
        let h = WriterHandle::new(1 << 20);
        let (a, b) = (h.tap().unwrap(), h.tap().unwrap());
        h.push(RecordKind::Samples, meta(5), vec![1, 2, 3]);
        a.delivered(1);
        assert_eq!(h.metrics.queued_records.load(Ordering::Relaxed), 1);
        b.delivered(1);
        assert_eq!(h.metrics.queued_records.load(Ordering::Relaxed), 0);
        assert_eq!(h.metrics.unspooled.load(Ordering::Relaxed), 5);
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

    fn setup(dir: &std::path::Path) -> Arc<Faulty<FlakyDisk>> {
        let cfg = crate::config::Wal {
            dir: Some(dir.to_owned()),
            ..Default::default()
        };
        Arc::new(Faulty(FlakyDisk {
            inner: crate::wal::open(&cfg, dir).unwrap(),
            full: AtomicBool::new(false),
        }))
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
            push_set(&w);
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

    /// A disk of `cap` bytes (payload bytes, for the test's arithmetic):
    /// appends are buffered and reach the real WAL at commit, so a refused
    /// append leaves nothing behind, as the segment engine's discard does.
    /// Counts `stats` calls.
    struct SmallDisk {
        inner: Arc<dyn Wal>,
        cap: AtomicU64,
        used: AtomicU64,
        pending: Mutex<Vec<(RecordKind, RecordMeta, Vec<u8>)>>,
        stats_calls: AtomicU64,
    }

    impl Fault for SmallDisk {
        fn inner(&self) -> &dyn Wal {
            &*self.inner
        }
        fn append(
            &self,
            kind: RecordKind,
            meta: RecordMeta,
            data: &[u8],
        ) -> Result<Position, WalError> {
            let mut p = self.pending.lock().unwrap();
            let pending: u64 = p.iter().map(|(_, _, d)| d.len() as u64).sum();
            let used = self.used.load(Ordering::SeqCst);
            if used + pending + data.len() as u64 > self.cap.load(Ordering::SeqCst) {
                p.clear();
                return Err(WalError::DiskFull {
                    path: "test".into(),
                });
            }
            p.push((kind, meta, data.to_vec()));
            Ok(Position::default())
        }
        fn commit(&self) -> Result<Position, WalError> {
            let mut p = self.pending.lock().unwrap();
            for (k, m, d) in p.drain(..) {
                self.used.fetch_add(d.len() as u64, Ordering::SeqCst);
                self.inner.append(k, m, &d)?;
            }
            self.inner.commit()
        }
        fn stats(&self) -> WalStats {
            self.stats_calls.fetch_add(1, Ordering::SeqCst);
            self.inner.stats()
        }
    }

    fn small_disk(dir: &std::path::Path, cap: u64) -> Arc<Faulty<SmallDisk>> {
        let cfg = crate::config::Wal {
            dir: Some(dir.to_owned()),
            ..Default::default()
        };
        Arc::new(Faulty(SmallDisk {
            inner: crate::wal::open(&cfg, dir).unwrap(),
            cap: AtomicU64::new(cap),
            used: AtomicU64::new(0),
            pending: Mutex::new(Vec::new()),
            stats_calls: AtomicU64::new(0),
        }))
    }

    async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn room_for_exactly_one_collection_is_enough_to_progress() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Room for the series set and one 100-byte collection.
            let disk = small_disk(dir.path(), 10 + 100);
            let (w, task) = spawn(disk.clone(), 1 << 20);
            w.push(RecordKind::SeriesSet, RecordMeta::default(), vec![b's'; 10]);
            for i in 0..5u8 {
                w.push(RecordKind::Samples, meta(3), vec![b'0' + i; 100]);
            }
            let m = Arc::clone(w.metrics());
            wait_for("the set and the first collection", || {
                m.records_appended.load(Ordering::Relaxed) == 2
            })
            .await;
            assert!(m.write_errors.load(Ordering::Relaxed) >= 1);
            // Waited for, not read once: while a retry is on the blocking
            // pool its record is out of the queue (flaky under load).
            wait_for("four collections queued", || {
                m.queued_records.load(Ordering::Relaxed) == 4
            })
            .await;
            // Space for exactly one more (as an ack deleting a segment
            // would give): one more collection lands, the oldest.
            disk.cap.fetch_add(100, Ordering::SeqCst);
            wait_for("the second collection", || {
                m.records_appended.load(Ordering::Relaxed) == 3
            })
            .await;
            assert_eq!(
                payloads(&*disk.inner),
                vec![vec![b's'; 10], vec![b'0'; 100], vec![b'1'; 100]]
            );
            disk.cap.store(u64::MAX, Ordering::SeqCst);
            w.close();
            task.await.unwrap();
            let got = payloads(&*disk.inner);
            assert_eq!(got.len(), 6, "all written, in order");
            for (i, p) in got[1..].iter().enumerate() {
                assert_eq!(p[0], b'0' + i as u8);
            }
            assert_eq!(m.dropped_queue_full.load(Ordering::Relaxed), 0);
            assert_eq!(m.samples_appended.load(Ordering::Relaxed), 15);
        });
    }

    #[test]
    fn telemetry_renders_the_writers_snapshot_without_touching_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let disk = small_disk(dir.path(), u64::MAX);
            let (w, task) = spawn(disk.clone(), 1 << 20);
            let tel = w.telemetry();
            push_set(&w);
            w.push(RecordKind::Samples, meta(5), b"one".to_vec());
            let m = Arc::clone(w.metrics());
            wait_for("the commit", || m.commits.load(Ordering::Relaxed) >= 1).await;
            let calls = disk.stats_calls.load(Ordering::SeqCst);
            assert!(calls >= 1, "the writer refreshes its snapshot");
            let mut text = Vec::new();
            for _ in 0..100 {
                let mut e = Emitter::new();
                tel.render(&mut e);
                text.clear();
                crate::metrics::render_text(e.families(), &mut text);
            }
            assert_eq!(
                disk.stats_calls.load(Ordering::SeqCst),
                calls,
                "render must not ask the WAL"
            );
            let text = String::from_utf8(text).unwrap();
            assert!(text.contains("cairn_wal_samples 5\n"), "{text}");
            assert!(text.contains("cairn_wal_records 2\n"), "{text}");
            let device: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix("cairn_wal_device_write_bytes_total "))
                .and_then(|v| v.parse().ok())
                .expect("the segment engine's device bytes are exported");
            assert!(
                device >= 4096.0,
                "the commit wrote at least a block: {text}"
            );
            for reason in crate::wal::DROP_REASONS {
                assert!(
                    text.contains(&format!(
                        "cairn_wal_dropped_samples_total{{reason=\"{reason}\"}} 0\n"
                    )),
                    "{reason}: {text}"
                );
            }
            w.close();
            task.await.unwrap();
        });
    }

    #[test]
    fn a_panic_while_writing_keeps_the_records_for_the_restarted_writer() {
        struct PanicOnce {
            inner: Arc<Faulty<FlakyDisk>>,
            armed: AtomicBool,
        }
        impl Fault for PanicOnce {
            fn inner(&self) -> &dyn Wal {
                &*self.inner
            }
            fn append(
                &self,
                kind: RecordKind,
                meta: RecordMeta,
                data: &[u8],
            ) -> Result<Position, WalError> {
                if self.armed.swap(false, Ordering::SeqCst) {
                    panic!("injected");
                }
                self.inner.append(kind, meta, data)
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let wal: Arc<dyn Wal> = Arc::new(Faulty(PanicOnce {
                inner: setup(dir.path()),
                armed: AtomicBool::new(true),
            }));
            let sup = crate::supervisor::Supervisor::new(crate::supervisor::Policy {
                min_backoff: Duration::from_millis(1),
                ..Default::default()
            });
            let h = WriterHandle::new(1 << 20);
            h.push(
                RecordKind::SeriesSet,
                RecordMeta::default(),
                b"set".to_vec(),
            );
            h.push(RecordKind::Samples, meta(1), b"one".to_vec());
            let (w2, h2) = (Arc::clone(&wal), h.clone());
            let task = sup.supervise("writer", move || run(Arc::clone(&w2), h2.clone()));
            let m = Arc::clone(h.metrics());
            wait_for("written after the restart", || {
                m.records_appended.load(Ordering::Relaxed) == 2
            })
            .await;
            assert_eq!(sup.restarts("writer"), 1);
            h.close();
            task.await.unwrap();
            assert_eq!(payloads(&*wal), vec![b"set".to_vec(), b"one".to_vec()]);
        });
    }

    // --- holding records back (wal.flush_interval > 0) -------------------

    fn stage_path(dir: &std::path::Path) -> std::path::PathBuf {
        dir.join("run/stage")
    }

    /// A writer holding records `hold` with its stage under `dir/run`,
    /// reading back what a previous writer left there.
    fn held(
        dir: &std::path::Path,
        wal: &Arc<Faulty<FlakyDisk>>,
        hold: Duration,
    ) -> (WriterHandle, tokio::task::JoinHandle<()>) {
        let (stage, found) = Stage::open(&stage_path(dir)).unwrap();
        let h = WriterHandle::with_stage(1 << 20, hold, stage, found.records).unwrap();
        let w: Arc<dyn Wal> = wal.clone();
        let task = tokio::spawn(run(w, h.clone()));
        (h, task)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn push_set(w: &WriterHandle) {
        w.push(
            RecordKind::SeriesSet,
            RecordMeta::default(),
            b"set".to_vec(),
        );
    }

    fn stage_len(dir: &std::path::Path) -> u64 {
        std::fs::metadata(stage_path(dir)).map_or(0, |m| m.len())
    }

    #[test]
    fn held_records_every_remote_delivered_never_reach_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let wal = setup(&dir.path().join("wal"));
            let (w, task) = held(dir.path(), &wal, Duration::from_millis(300));
            let mut tap = w.tap().unwrap();
            push_set(&w);
            w.push(RecordKind::Samples, meta(4), b"one".to_vec());
            w.push(RecordKind::Samples, meta(4), b"two".to_vec());
            // Offered at once, without waiting for the hold.
            let got = tap.take(0, || false);
            assert_eq!(got.len(), 3);
            wait_for("staged", || stage_len(dir.path()) > 0).await;
            tap.delivered(got[2].seq);
            assert_eq!(w.metrics().unspooled.load(Ordering::Relaxed), 8);
            // The set every remote has is kept aside (no samples record
            // needs it in the WAL); past the hold nothing is written.
            assert!(w.lock_queue().pending_set.is_some());
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(payloads(&*wal).is_empty());
            w.close();
            task.await.unwrap();
            assert!(payloads(&*wal).is_empty());
            assert_eq!(stage_len(dir.path()), 0);
            assert_eq!(w.metrics().samples_appended.load(Ordering::Relaxed), 0);
            assert_eq!(w.metrics().commits.load(Ordering::Relaxed), 0);
        });
    }

    #[test]
    fn undelivered_records_are_written_with_one_commit_once_the_oldest_is_due() {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let wal = setup(&dir.path().join("wal"));
            let hold = Duration::from_millis(400);
            let (w, task) = held(dir.path(), &wal, hold);
            let _tap = w.tap().unwrap();
            let t0 = Instant::now();
            for p in [&b"one"[..], b"two", b"three"] {
                w.push(RecordKind::Samples, meta(1), p.to_vec());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            wait_for("written", || payloads(&*wal).len() == 3).await;
            assert!(t0.elapsed() >= hold, "written after {:?}", t0.elapsed());
            // The counter moves once the blocking write has returned.
            wait_for("one commit", || {
                w.metrics().commits.load(Ordering::Relaxed) == 1
            })
            .await;
            wait_for("the stage emptied", || stage_len(dir.path()) == 0).await;
            w.close();
            task.await.unwrap();
            assert_eq!(
                payloads(&*wal),
                vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
            );
        });
    }

    #[test]
    fn a_killed_writer_leaves_its_held_records_to_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        rt().block_on(async {
            let wal = setup(&wal_dir);
            let (w, task) = held(dir.path(), &wal, Duration::from_secs(3600));
            let tap = w.tap().unwrap();
            push_set(&w);
            w.push(RecordKind::Samples, meta(2), b"one".to_vec());
            w.push(RecordKind::Samples, meta(2), b"two".to_vec());
            w.push(RecordKind::Samples, meta(2), b"three".to_vec());
            wait_for("staged", || stage_len(dir.path()) > 0).await;
            // "one" was delivered everywhere before the kill.
            let one = w.lock_queue().items[1].seq;
            tap.delivered(one);
            wait_for("forgotten", || w.lock_queue().gone.is_empty()).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            // kill -9: the task stops where it is, nothing is closed.
            task.abort();
            let _ = task.await;
            let q = w.lock_queue();
            // "two" and "three" queued, the set every remote has aside.
            assert_eq!(q.items.len(), 2);
            assert!(q.pending_set.is_some());
            drop(q);
            assert!(payloads(&*wal).is_empty());
        });
        // The next process: the WAL reopened, the stage read back.
        rt().block_on(async {
            let wal = setup(&wal_dir);
            let (w, task) = held(dir.path(), &wal, Duration::from_secs(3600));
            assert_eq!(w.metrics().stage_replayed.load(Ordering::Relaxed), 4);
            // Due at once, before anything new.
            wait_for("replayed into the WAL", || payloads(&*wal).len() == 3).await;
            w.push(RecordKind::Samples, meta(2), b"four".to_vec());
            w.close();
            task.await.unwrap();
            assert_eq!(
                payloads(&*wal),
                vec![
                    b"set".to_vec(),
                    b"two".to_vec(),
                    b"three".to_vec(),
                    b"four".to_vec()
                ]
            );
            assert_eq!(stage_len(dir.path()), 0);
        });
    }

    #[test]
    fn a_closing_writer_waits_for_the_copies_a_remote_is_delivering() {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let wal = setup(&dir.path().join("wal"));
            let (w, task) = held(dir.path(), &wal, Duration::from_secs(3600));
            let mut tap = w.tap().unwrap();
            w.push(RecordKind::Samples, meta(3), b"one".to_vec());
            w.push(RecordKind::Samples, meta(3), b"two".to_vec());
            let got = tap.take(0, || false);
            assert_eq!(got.len(), 2);
            w.close();
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(
                !task.is_finished(),
                "the writer must wait for the remote's answer"
            );
            assert!(payloads(&*wal).is_empty());
            // The remote's request for "one" succeeded; "two" was not sent.
            tap.delivered(got[0].seq);
            tap.release();
            task.await.unwrap();
            assert_eq!(payloads(&*wal), vec![b"two".to_vec()]);
            assert_eq!(w.metrics().unspooled.load(Ordering::Relaxed), 3);
        });
    }

    /// One real single-collection samples record of set 5 (3 series).
    fn collection(ts: i64, v: f64) -> (RecordMeta, Vec<u8>) {
        let mut enc = crate::wal::record::SamplesEncoder::new();
        enc.begin(5, 3);
        enc.push_collection(ts, &[v, v + 1.0, v + 2.0]);
        let mut out = Vec::new();
        let meta = enc.finish(&mut out);
        (meta, out)
    }

    #[test]
    fn held_records_no_remote_copied_are_merged_copied_ones_stay_whole() {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let wal = setup(&dir.path().join("wal"));
            let (w, task) = held(dir.path(), &wal, Duration::from_millis(300));
            let mut tap = w.tap().unwrap();
            // Recent timestamps: the WAL's max_age drops older ones.
            let t = now_ms();
            let (m1, one) = collection(t, 1.0);
            w.push(RecordKind::Samples, m1, one.clone());
            // A remote takes a copy of the first (and never answers).
            assert_eq!(tap.take(0, || false).len(), 1);
            for (ts, v) in [(t + 1_000, 2.0), (t + 2_000, 3.0)] {
                let (m, d) = collection(ts, v);
                w.push(RecordKind::Samples, m, d);
            }
            wait_for("written", || payloads(&*wal).len() == 2).await;
            let got = payloads(&*wal);
            assert_eq!(got[0], one, "a copied record is written byte for byte");
            let mut dec = crate::wal::record::SamplesDecoder::new();
            let mut rd = dec.open(&got[1]).unwrap();
            let mut row = vec![0.0; 3];
            let mut rows = Vec::new();
            while let Some(ts) = rd.next_collection(&mut row).unwrap() {
                rows.push((ts, row.clone()));
            }
            assert_eq!(
                rows,
                vec![
                    (t + 1_000, vec![2.0, 3.0, 4.0]),
                    (t + 2_000, vec![3.0, 4.0, 5.0])
                ]
            );
            tap.release();
            w.close();
            task.await.unwrap();
            assert_eq!(w.metrics().samples_appended.load(Ordering::Relaxed), 9);
        });
    }

    /// Held records are gathered into fuller requests: a remote takes
    /// them once they hold a request's worth of samples, or once the
    /// oldest has waited the send deadline (at most half the hold).
    #[test]
    fn a_remote_takes_held_records_when_a_request_is_full_or_due() {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let wal = setup(&dir.path().join("wal"));
            let (w, task) = held(dir.path(), &wal, Duration::from_secs(3600));
            let tap = w.tap().unwrap();
            assert_eq!(
                tap.not_before(0, 100, Duration::from_secs(5)),
                None,
                "nothing queued"
            );
            let t0 = Instant::now();
            w.push(RecordKind::Samples, meta(40), b"one".to_vec());
            let at = tap
                .not_before(0, 100, Duration::from_secs(5))
                .expect("not yet");
            assert!(
                at >= t0 + Duration::from_secs(5) && at <= Instant::now() + Duration::from_secs(5)
            );
            w.push(RecordKind::Samples, meta(40), b"two".to_vec());
            assert!(tap.not_before(0, 100, Duration::from_secs(5)).is_some());
            w.push(RecordKind::Samples, meta(40), b"three".to_vec());
            assert_eq!(
                tap.not_before(0, 100, Duration::from_secs(5)),
                None,
                "a request's worth"
            );
            // Half the hold bounds the wait.
            let at = tap
                .not_before(0, 1000, Duration::from_secs(3600 * 24))
                .expect("not yet");
            assert!(at <= t0 + Duration::from_secs(1800) + Duration::from_secs(1));
            w.close();
            task.await.unwrap();
        });
    }

    /// A set every remote has costs no write, until samples that need
    /// it reach the WAL: then it is written first, in front of them.
    #[test]
    fn a_set_kept_aside_goes_to_the_wal_in_front_of_the_samples_that_need_it() {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let wal = setup(&dir.path().join("wal"));
            let (w, task) = held(dir.path(), &wal, Duration::from_millis(300));
            let mut tap = w.tap().unwrap();
            push_set(&w);
            w.push(RecordKind::Samples, meta(4), b"one".to_vec());
            let got = tap.take(0, || false);
            tap.delivered(got[1].seq);
            assert!(w.lock_queue().pending_set.is_some());
            // A restarted sender of the same remote (from seq 0) is handed
            // the set again: it needs it for what follows.
            let again = tap.take(0, || false);
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].data, b"set");
            tap.delivered(again[0].seq);
            // The remote fails from here on: "two" is written with the set.
            w.push(RecordKind::Samples, meta(4), b"two".to_vec());
            wait_for("written", || payloads(&*wal).len() == 2).await;
            assert_eq!(payloads(&*wal), vec![b"set".to_vec(), b"two".to_vec()]);
            w.close();
            tap.release();
            task.await.unwrap();
        });
    }

    /// Delivered records leave gone marks behind the series set kept
    /// aside (still needed if samples reach the WAL later): the stage is
    /// compacted to that set, and it is what a killed writer's successor
    /// reads back.
    #[test]
    fn the_stage_is_compacted_to_what_is_still_held() {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let wal = setup(&dir.path().join("wal"));
            let (w, task) = held(dir.path(), &wal, Duration::from_secs(3600));
            let mut tap = w.tap().unwrap();
            w.push(
                RecordKind::SeriesSet,
                RecordMeta::default(),
                vec![b'k'; 1000],
            );
            let mut after = 0;
            for _ in 0..40 {
                w.push(RecordKind::Samples, meta(1), vec![b'd'; 64 << 10]);
                wait_for("staged", || w.lock_queue().items.iter().all(|i| i.staged)).await;
                let got = tap.take(after, || false);
                after = got.last().map_or(after, |q| q.seq);
                tap.delivered(after);
            }
            assert!(w.lock_queue().pending_set.is_some());
            // 2.5 MiB went through; compaction keeps the file within its
            // 1 MiB of slack (plus one sync's appends) of what is held.
            wait_for("forgotten", || {
                let q = w.lock_queue();
                q.items.is_empty() && q.gone.is_empty()
            })
            .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(stage_len(dir.path()) < (1 << 20) + (128 << 10));
            task.abort();
            let _ = task.await;
            let (_, found) = Stage::open(&stage_path(dir.path())).unwrap();
            assert_eq!(found.records.len(), 1);
            assert_eq!(found.records[0].kind, RecordKind::SeriesSet);
            assert_eq!(found.records[0].data, vec![b'k'; 1000]);
        });
    }

    #[test]
    fn holding_half_the_queue_bound_writes_at_once_never_drops() {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let wal = setup(&dir.path().join("wal"));
            let (stage, found) = Stage::open(&stage_path(dir.path())).unwrap();
            let w = WriterHandle::with_stage(100, Duration::from_secs(3600), stage, found.records)
                .unwrap();
            let _tap = w.tap().unwrap();
            let task = tokio::spawn(run(wal.clone() as Arc<dyn Wal>, w.clone()));
            for i in 0..6u8 {
                w.push(RecordKind::Samples, meta(1), vec![b'0' + i; 20]);
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            wait_for("written before the hold", || payloads(&*wal).len() == 6).await;
            assert_eq!(w.metrics().dropped_queue_full.load(Ordering::Relaxed), 0);
            w.close();
            task.await.unwrap();
        });
    }

    #[test]
    fn an_unwritable_stage_sends_records_to_the_wal_at_once() {
        let dir = tempfile::tempdir().unwrap();
        rt().block_on(async {
            let wal = setup(&dir.path().join("wal"));
            let (w, task) = held(dir.path(), &wal, Duration::from_secs(3600));
            // A stage on a device that is always full: every write fails.
            {
                let s = w.stage.as_ref().unwrap();
                *lock(s) = Stage::always_full().unwrap();
            }
            w.push(RecordKind::Samples, meta(1), b"one".to_vec());
            wait_for("written without holding", || payloads(&*wal).len() == 1).await;
            assert!(w.metrics().stage_errors.load(Ordering::Relaxed) >= 1);
            w.close();
            task.await.unwrap();
        });
    }
}
