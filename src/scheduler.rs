//! The scheduler: one host collection every `scrape_interval`, aligned to
//! the interval, and every scrape target's batches, turned into WAL
//! records.
//!
//! Owns: the timestamp of each collection (one per collection, ms), the
//! series table (what a series is called on the wire: sorted labels with
//! `__name__` and, for host series, the wire labels — external labels,
//! `job`, `instance` — it does not have; scraped series get the external
//! labels only, their `job`/`instance` come from their target), the one
//! series set all sources share, stale markers for series that vanished
//! (per source: the host, each target). Each host collection and each
//! scrape batch (split by timestamp when the exposition gave its own) is
//! a row, and every row is one Samples record holding that source's
//! values and `ABSENT` for every other series of the set (holding records
//! back to write fewer is the WAL writer's business, not the
//! scheduler's). The set changes only when the union of the sources' live
//! series changes (a vanished series stays in it, absent, until the next
//! change). A scraped series' labels are the target cache's own
//! allocation ([`SeriesLabels`]), found by (target, label hash) and
//! checked equal; the external labels are merged in only as a set is
//! encoded, so a scraped series' labels are in memory once. Must never:
//! wait on the disk or a sender (records go to the WAL writer's queue and
//! the loop moves on), write a series' samples out of timestamp order (a
//! scraped sample not newer than the last one written for its series is
//! dropped, counted), or allocate per sample once warm (host series are
//! looked up by their rendered name and labels in a reused buffer,
//! scraped ones by their hash; only new series allocate).

use crate::clock::now_ms;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::collect::SharedGatherer;
use crate::metrics::{Emitter, Family, MetricType};
use crate::scrape::{LabelsIter, ScrapeBatch, SeriesLabels};
use crate::telemetry::Telemetry;
use crate::wal::record::{self, LabelSet, SamplesEncoder, ABSENT};
use crate::wal::writer::WriterHandle;
use crate::wal::{RecordKind, RecordMeta};

/// Series not seen for this many collections (or batches) of their own
/// source are forgotten, so churn (containers, hot-plugged disks, targets'
/// series) cannot grow the table without bound. A target scraped every
/// minute keeps its series however often the host collects.
const FORGET_AFTER: u64 = 64;

/// The series set is written again after this many bytes of samples
/// records even when unchanged, so a damaged SeriesSet record in the WAL
/// costs at most the records up to its next copy.
pub const SET_EVERY_BYTES: usize = 1 << 20;

/// What a series is called on the wire.
enum Wire {
    /// A host series: its full wire labels.
    Host(LabelSet),
    /// A scraped series: the target's labels, shared with the target's
    /// series cache; the external labels are added as the set is encoded.
    Scraped(SeriesLabels),
}

struct SeriesInfo {
    labels: Wire,
    /// `None`: the host; else the scrape target's hash.
    source: Option<u64>,
    /// Its source's generation when it was last seen.
    last_seen: u64,
    /// Newest timestamp written for it.
    last_ts: i64,
    /// Last seen with the exposition's own timestamp: as in Prometheus,
    /// such a series gets no stale marker when it vanishes.
    explicit_ts: bool,
}

/// One source's state: its generation (collections or batches so far) and
/// the series of its latest one (sorted ids), whose absence next time
/// deserves a stale marker.
#[derive(Default)]
struct Source {
    generation: u64,
    live: Vec<u32>,
}

/// What the scheduler counts.
#[derive(Default)]
pub struct SchedulerMetrics {
    pub collections: AtomicU64,
    pub samples_collected: AtomicU64,
    pub stale_markers: AtomicU64,
    pub series_sets: AtomicU64,
    pub last_collection_ms: AtomicU64,
    pub scrape_batches: AtomicU64,
    pub scrape_samples: AtomicU64,
    pub scrape_stale_markers: AtomicU64,
    pub scrape_out_of_order: AtomicU64,
}

impl Telemetry for SchedulerMetrics {
    fn render(&self, out: &mut Emitter) {
        let g = |v: &AtomicU64| v.load(Ordering::Relaxed) as f64;
        out.single(
            "cairn_collections_total",
            "Scheduled collections taken for the WAL.",
            MetricType::Counter,
            g(&self.collections),
        );
        out.single(
            "cairn_samples_collected_total",
            "Samples taken by scheduled collections (before the WAL).",
            MetricType::Counter,
            g(&self.samples_collected),
        );
        out.single(
            "cairn_stale_markers_total",
            "Stale markers written for series that vanished.",
            MetricType::Counter,
            g(&self.stale_markers),
        );
        out.single(
            "cairn_series_sets_total",
            "Series-set records written (a series appeared or vanished).",
            MetricType::Counter,
            g(&self.series_sets),
        );
        out.single(
            "cairn_last_collection_timestamp_seconds",
            "Timestamp of the last scheduled collection.",
            MetricType::Gauge,
            g(&self.last_collection_ms) / 1000.0,
        );
        out.single(
            "cairn_scrape_batches_written_total",
            "Scrape results (and targets gone) taken for the WAL.",
            MetricType::Counter,
            g(&self.scrape_batches),
        );
        out.single(
            "cairn_scrape_samples_written_total",
            "Scraped samples taken for the WAL (stale markers not included).",
            MetricType::Counter,
            g(&self.scrape_samples),
        );
        out.single(
            "cairn_scrape_stale_markers_total",
            "Stale markers written for scraped series that vanished or whose target failed or left.",
            MetricType::Counter,
            g(&self.scrape_stale_markers),
        );
        out.single(
            "cairn_scrape_samples_out_of_order_total",
            "Scraped samples dropped: not newer than the last one written for their series.",
            MetricType::Counter,
            g(&self.scrape_out_of_order),
        );
    }
}

pub struct Scheduler {
    gatherer: SharedGatherer,
    writer: WriterHandle,
    interval: Duration,
    external: Vec<(String, String)>,
    /// What scraped series get: the external labels without the host's
    /// `job`/`instance` defaults (sorted by name, no empty value).
    scrape_external: Vec<(String, String)>,
    metrics: Arc<SchedulerMetrics>,
    scrapes: Option<tokio::sync::mpsc::Receiver<ScrapeBatch>>,

    /// The host's generation (collections so far).
    generation: u64,
    host: Source,
    targets: HashMap<u64, Source>,
    /// A source's live series changed since the set was built.
    live_changed: bool,
    /// Rows written since the last forgetting pass.
    since_forget: u64,
    /// Host series by their rendered name and labels.
    ids: HashMap<String, u32>,
    /// Scraped series by (target, hash of their labels); the labels
    /// stored with the series decide, and the rare series whose hash
    /// another series of its target took is found in `collided`.
    scraped_ids: HashMap<(u64, u64), u32>,
    collided: HashMap<(u64, SeriesLabels), u32>,
    series: HashMap<u32, SeriesInfo>,
    next_id: u32,
    key: String,

    set_id: u64,
    /// The current set: series ids, sorted.
    set: Vec<u32>,
    /// The current set, encoded (re-emitted as is).
    set_record: Vec<u8>,
    /// Bytes of samples records queued since the set was last written.
    since_set: usize,
    set_every: usize,
    /// The row being written: (series id, value), sorted by id.
    cur: Vec<(u32, f64)>,
    values: Vec<f64>,
    /// A batch's samples: (timestamp, id, value).
    rows: Vec<(i64, u32, f64)>,
    /// A batch's series ids.
    batch_ids: Vec<u32>,

    enc: SamplesEncoder,
}

impl Scheduler {
    pub fn new(
        gatherer: SharedGatherer,
        writer: WriterHandle,
        interval: Duration,
        external_labels: &std::collections::BTreeMap<String, String>,
        metrics: Arc<SchedulerMetrics>,
    ) -> Self {
        let external: Vec<(String, String)> = external_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Without `scrape_external_labels`, the host's wire labels less
        // the `job`/`instance` defaults (exact unless the configuration's
        // external labels set those two themselves).
        let scrape_external = merge_ready(
            external
                .iter()
                .filter(|(k, _)| k != "job" && k != "instance")
                .cloned(),
        );
        Scheduler {
            gatherer,
            writer,
            interval: interval.max(Duration::from_millis(1)),
            external,
            scrape_external,
            metrics,
            scrapes: None,
            generation: 0,
            host: Source::default(),
            targets: HashMap::new(),
            live_changed: false,
            since_forget: 0,
            ids: HashMap::new(),
            scraped_ids: HashMap::new(),
            collided: HashMap::new(),
            series: HashMap::new(),
            next_id: 0,
            key: String::with_capacity(256),
            // Set ids only need to differ between consecutive sets; start
            // from the clock so a restart does not reuse the last one.
            set_id: now_ms() as u64,
            set: Vec::new(),
            set_record: Vec::new(),
            since_set: 0,
            set_every: SET_EVERY_BYTES,
            cur: Vec::new(),
            values: Vec::new(),
            rows: Vec::new(),
            batch_ids: Vec::new(),
            enc: SamplesEncoder::new(),
        }
    }

    /// Takes scrape targets' batches from `rx` too: each becomes rows of
    /// the same records as the host collections.
    pub fn with_scrapes(mut self, rx: tokio::sync::mpsc::Receiver<ScrapeBatch>) -> Self {
        self.scrapes = Some(rx);
        self
    }

    /// The external labels scraped series get (the configuration's
    /// `external_labels`: no `job`/`instance` defaults, a target has its
    /// own). Without it they are derived from the labels given to `new`.
    pub fn with_scrape_external_labels(
        mut self,
        external_labels: &std::collections::BTreeMap<String, String>,
    ) -> Self {
        self.scrape_external =
            merge_ready(external_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        self
    }

    /// Runs until `shutdown` turns true, then writes what is batched.
    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let step = self.interval.as_millis().max(1) as i64;
        let mut scrapes = self.scrapes.take();
        loop {
            let now = now_ms();
            let next = (now / step + 1) * step;
            let sleep = tokio::time::sleep(Duration::from_millis((next - now).max(0) as u64));
            tokio::pin!(sleep);
            // Batches are written as they come while waiting for the tick.
            let ticked = loop {
                let batch = async {
                    match scrapes.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = &mut sleep => break true,
                    _ = shutdown.changed() => break false,
                    b = batch => match b {
                        Some(b) => self.ingest_scrape(&b),
                        // Every sender gone: no more scrapes.
                        None => scrapes = None,
                    },
                }
            };
            if !ticked || *shutdown.borrow() {
                // What the targets sent before the stop still goes.
                if let Some(rx) = scrapes.as_mut() {
                    while let Ok(b) = rx.try_recv() {
                        self.ingest_scrape(&b);
                    }
                }
                return;
            }
            self.collect_once(next).await;
        }
    }

    /// One collection at timestamp `ts` (ms): encode and queue.
    pub async fn collect_once(&mut self, ts: i64) {
        let gatherer = Arc::clone(&self.gatherer);
        let mut g = gatherer.lock().await;
        g.collect(|fams| self.ingest(ts, fams)).await;
        drop(g);
        self.write_row(ts.max(0));
        self.after_source();
    }

    /// The id of a host series keyed by `self.key`, made from `labels` if
    /// new.
    fn series_id(&mut self, labels: impl FnOnce() -> LabelSet) -> u32 {
        if let Some(id) = self.ids.get(self.key.as_str()) {
            return *id;
        }
        let id = self.new_series(None, Wire::Host(labels()));
        self.ids.insert(self.key.clone(), id);
        id
    }

    /// The id of a scraped series of target `source`, made if new.
    fn scraped_id(&mut self, source: u64, labels: &SeriesLabels) -> u32 {
        let key = (source, labels.fingerprint());
        let Some(&id) = self.scraped_ids.get(&key) else {
            let id = self.new_series(Some(source), Wire::Scraped(labels.clone()));
            self.scraped_ids.insert(key, id);
            return id;
        };
        if let Some(SeriesInfo {
            labels: Wire::Scraped(known),
            ..
        }) = self.series.get_mut(&id)
        {
            if known.ptr_eq(labels) {
                return id;
            }
            if known == labels {
                // The target made its labels anew (its cache let the
                // series go, or the loop restarted): keep its copy, so the
                // labels stay in memory once.
                *known = labels.clone();
                return id;
            }
        }
        // Another series of the target has the same hash.
        let key = (source, labels.clone());
        if let Some(&id) = self.collided.get(&key) {
            return id;
        }
        let id = self.new_series(Some(source), Wire::Scraped(labels.clone()));
        self.collided.insert(key, id);
        id
    }

    fn new_series(&mut self, source: Option<u64>, labels: Wire) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.series.insert(
            id,
            SeriesInfo {
                labels,
                source,
                last_seen: 0,
                last_ts: i64::MIN,
                explicit_ts: false,
            },
        );
        id
    }

    fn ingest(&mut self, ts: i64, fams: &[&Family]) {
        self.generation += 1;
        let generation = self.generation;
        self.cur.clear();
        for fam in fams {
            for s in fam.series() {
                self.key.clear();
                self.key.push_str(fam.name());
                self.key.push('{');
                self.key.push_str(&s.labels);
                let external = &self.external;
                let id = {
                    let (name, rendered) = (fam.name(), &s.labels);
                    match self.ids.get(self.key.as_str()) {
                        Some(id) => *id,
                        None => {
                            let labels = canonical_labels(name, rendered, external);
                            self.series_id(|| labels)
                        }
                    }
                };
                if let Some(info) = self.series.get_mut(&id) {
                    info.last_seen = generation;
                }
                self.cur.push((id, s.value));
            }
        }
        let collected = self.cur.len() as u64;
        // Order by id so "same series as last time" is a plain comparison
        // and the row's slots are found by binary search; ids are stable
        // while a series lives.
        self.cur.sort_unstable_by_key(|(id, _)| *id);
        self.cur.dedup_by_key(|(id, _)| *id);
        // Stale markers, once, for series of the previous collection that
        // are gone now.
        let mut stale = 0;
        let n = self.cur.len();
        for &id in &self.host.live {
            if self.cur[..n].binary_search_by_key(&id, |c| c.0).is_err() {
                self.cur.push((id, record::STALE_NAN));
                stale += 1;
            }
        }
        if self.host.live.len() != n
            || self
                .host
                .live
                .iter()
                .zip(&self.cur[..n])
                .any(|(a, b)| *a != b.0)
        {
            self.host.live.clear();
            self.host.live.extend(self.cur[..n].iter().map(|c| c.0));
            self.live_changed = true;
        }
        self.host.generation = generation;
        if stale > 0 {
            self.cur.sort_unstable_by_key(|(id, _)| *id);
        }
        for (id, _) in &self.cur {
            if let Some(info) = self.series.get_mut(id) {
                info.last_ts = ts;
            }
        }
        self.metrics.collections.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .samples_collected
            .fetch_add(collected, Ordering::Relaxed);
        self.metrics
            .stale_markers
            .fetch_add(stale, Ordering::Relaxed);
        self.metrics
            .last_collection_ms
            .store(ts as u64, Ordering::Relaxed);
    }

    /// One scrape target's batch: its series, stale markers for those of
    /// its previous batch missing now (all of them when `gone`), one row
    /// per timestamp.
    pub fn ingest_scrape(&mut self, b: &ScrapeBatch) {
        let generation = self.targets.get(&b.source).map_or(0, |s| s.generation) + 1;
        self.rows.clear();
        self.batch_ids.clear();
        let mut out_of_order = 0u64;
        if !b.gone {
            for s in &b.series {
                let id = self.scraped_id(b.source, &s.labels);
                self.batch_ids.push(id);
                let ts = s.timestamp_ms.unwrap_or(b.ts_ms);
                let Some(info) = self.series.get_mut(&id) else {
                    continue;
                };
                info.last_seen = generation;
                info.explicit_ts = s.timestamp_ms.is_some();
                if ts <= info.last_ts {
                    out_of_order += 1;
                    continue;
                }
                // Reserved now: a duplicate of the series in this batch is
                // out of order too.
                info.last_ts = ts;
                self.rows.push((ts, id, s.value));
            }
        }
        let written = self.rows.len() as u64;
        self.batch_ids.sort_unstable();
        self.batch_ids.dedup();
        let state = self.targets.entry(b.source).or_default();
        state.generation = generation;
        let mut stale = 0u64;
        for &id in &state.live {
            if self.batch_ids.binary_search(&id).is_ok() {
                continue;
            }
            if let Some(info) = self.series.get_mut(&id) {
                if !info.explicit_ts && b.ts_ms > info.last_ts {
                    info.last_ts = b.ts_ms;
                    self.rows.push((b.ts_ms, id, record::STALE_NAN));
                    stale += 1;
                }
            }
        }
        if state.live != self.batch_ids {
            std::mem::swap(&mut state.live, &mut self.batch_ids);
            self.live_changed = true;
        }
        if b.gone {
            self.targets.remove(&b.source);
        }
        // One row per timestamp, oldest first (per series, timestamps
        // increase: each series is in a batch once).
        self.rows.sort_unstable_by_key(|r| (r.0, r.1));
        let mut i = 0;
        while i < self.rows.len() {
            let ts = self.rows[i].0;
            self.cur.clear();
            while i < self.rows.len() && self.rows[i].0 == ts {
                self.cur.push((self.rows[i].1, self.rows[i].2));
                i += 1;
            }
            self.write_row(ts);
        }
        let m = &self.metrics;
        m.scrape_batches.fetch_add(1, Ordering::Relaxed);
        m.scrape_samples.fetch_add(written, Ordering::Relaxed);
        m.scrape_stale_markers.fetch_add(stale, Ordering::Relaxed);
        m.scrape_out_of_order
            .fetch_add(out_of_order, Ordering::Relaxed);
        self.after_source();
    }

    /// Writes `self.cur` (sorted by id) as one row at `ts`: a new series
    /// set first when the sources' live series changed. The row is one
    /// Samples record, queued at once.
    fn write_row(&mut self, ts: i64) {
        let missing = || {
            self.cur
                .iter()
                .any(|(id, _)| self.set.binary_search(id).is_err())
        };
        if self.live_changed || missing() {
            self.live_changed = false;
            // The union of every source's live series, and whatever this
            // row writes (stale markers of series no longer live).
            self.set.clear();
            self.set.extend_from_slice(&self.host.live);
            for s in self.targets.values() {
                self.set.extend_from_slice(&s.live);
            }
            self.set.extend(self.cur.iter().map(|(id, _)| *id));
            self.set.sort_unstable();
            self.set.dedup();
            self.set_id = self.set_id.wrapping_add(1);
            let (series, external) = (&self.series, &self.scrape_external);
            let labels = self
                .set
                .iter()
                .filter_map(|id| series.get(id))
                .map(|i| wire_labels(&i.labels, external));
            self.set_record.clear();
            record::encode_series_set_iter(self.set_id, labels, &mut self.set_record);
            self.since_set = 0;
            self.writer.push(
                RecordKind::SeriesSet,
                RecordMeta::default(),
                self.set_record.clone(),
            );
            self.metrics.series_sets.fetch_add(1, Ordering::Relaxed);
        } else if self.since_set >= self.set_every {
            // Same set, same id: a reader that has it already loses nothing.
            self.since_set = 0;
            self.writer.push(
                RecordKind::SeriesSet,
                RecordMeta::default(),
                self.set_record.clone(),
            );
        }
        self.values.clear();
        self.values.resize(self.set.len(), ABSENT);
        for (id, v) in &self.cur {
            if let Ok(i) = self.set.binary_search(id) {
                self.values[i] = *v;
            }
        }
        self.enc.begin(self.set_id, self.values.len());
        self.enc.push_collection(ts, &self.values);
        let mut out = Vec::new();
        let meta = self.enc.finish(&mut out);
        self.since_set += out.len();
        self.writer.push(RecordKind::Samples, meta, out);
    }

    /// After each host collection or scrape batch: forgetting, now and
    /// then.
    fn after_source(&mut self) {
        self.since_forget += 1;
        if self.since_forget >= FORGET_AFTER {
            self.since_forget = 0;
            self.forget_old();
        }
    }

    /// Forgets series not seen for `FORGET_AFTER` generations of their own
    /// source, and those of targets gone.
    fn forget_old(&mut self) {
        let host = self.generation;
        let targets = &self.targets;
        self.series.retain(|_, i| {
            let g = match i.source {
                None => Some(host),
                Some(t) => targets.get(&t).map(|s| s.generation),
            };
            g.is_some_and(|g| g.saturating_sub(i.last_seen) < FORGET_AFTER)
        });
        let series = &self.series;
        self.ids.retain(|_, id| series.contains_key(id));
        self.scraped_ids.retain(|_, id| series.contains_key(id));
        self.collided.retain(|_, id| series.contains_key(id));
    }
}

/// External labels as `wire_labels` merges them: sorted by name, no
/// empty value (an empty label is no label).
fn merge_ready(labels: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = labels.filter(|(_, v)| !v.is_empty()).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.dedup_by(|later, earlier| later.0 == earlier.0);
    v
}

/// A series' labels as they go on the wire: a host series' own; a scraped
/// series' merged with the external labels it does not have (both sorted
/// by name, so the result is too).
fn wire_labels<'a>(labels: &'a Wire, external: &'a [(String, String)]) -> WireIter<'a> {
    match labels {
        Wire::Host(l) => WireIter::Host(l.pairs().iter()),
        Wire::Scraped(l) => WireIter::Scraped {
            own: l.iter().peekable(),
            external: external.iter().peekable(),
        },
    }
}

enum WireIter<'a> {
    Host(std::slice::Iter<'a, (String, String)>),
    Scraped {
        own: std::iter::Peekable<LabelsIter<'a>>,
        external: std::iter::Peekable<std::slice::Iter<'a, (String, String)>>,
    },
}

impl<'a> Iterator for WireIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            WireIter::Host(it) => it.next().map(|(k, v)| (k.as_str(), v.as_str())),
            WireIter::Scraped { own, external } => {
                let take_own = match (own.peek(), external.peek()) {
                    (None, None) => return None,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (Some((k, _)), Some((e, _))) => {
                        if *k == e.as_str() {
                            // The series' own label wins.
                            external.next();
                        }
                        *k <= e.as_str()
                    }
                };
                if take_own {
                    own.next()
                } else {
                    external.next().map(|(k, v)| (k.as_str(), v.as_str()))
                }
            }
        }
    }
}

/// The wire name of a series: its labels unescaped from the text format,
/// plus `__name__`, plus external labels it does not have, sorted by name.
pub fn canonical_labels(name: &str, rendered: &str, external: &[(String, String)]) -> LabelSet {
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(4 + external.len());
    pairs.push(("__name__".to_owned(), name.to_owned()));
    parse_rendered(rendered, |k, v| pairs.push((k.to_owned(), v)));
    for (k, v) in external {
        if !pairs.iter().any(|(pk, _)| pk == k) {
            pairs.push((k.clone(), v.clone()));
        }
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    // Prometheus drops labels with empty values; a receiver rejects them.
    pairs.retain(|(_, v)| !v.is_empty());
    LabelSet::new(pairs)
}

/// Parses `a="x",b="y\"z"` (as `metrics::Labels` writes it) into pairs.
fn parse_rendered(s: &str, mut f: impl FnMut(&str, String)) {
    let mut rest = s;
    while !rest.is_empty() {
        let Some(eq) = rest.find("=\"") else { return };
        let name = rest[..eq].trim_start_matches(',');
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => break,
                },
                '"' => {
                    end = Some(eq + 2 + i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        f(name, value);
        match end {
            Some(e) => rest = &rest[e..],
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_labels_unescape_sort_and_add_external() {
        let ext = vec![
            ("site".to_owned(), "depot-7".to_owned()),
            ("device".to_owned(), "ignored".to_owned()),
        ];
        let l = canonical_labels("node_x", r#"device="a\"b\\c\nd",mode="",cpu="1""#, &ext);
        let pairs: Vec<(String, String)> = l.pairs().to_vec();
        assert_eq!(
            pairs,
            vec![
                ("__name__".into(), "node_x".into()),
                ("cpu".into(), "1".into()),
                ("device".into(), "a\"b\\c\nd".into()),
                ("site".into(), "depot-7".into()),
            ]
        );
    }

    #[test]
    fn own_label_beats_external_labels_which_beat_job_and_instance() {
        let cfg = crate::config::Config::parse(
            "[global]\njob = \"j\"\ninstance = \"i\"\nexternal_labels = { instance = \"ext\" }\n",
            "t.toml",
        )
        .expect("config");
        let wire: Vec<(String, String)> = cfg.global.wire_labels().into_iter().collect();
        let get = |l: &LabelSet, k: &str| {
            l.pairs()
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        let plain = canonical_labels("node_x", r#"cpu="1""#, &wire);
        assert_eq!(get(&plain, "job").as_deref(), Some("j"));
        assert_eq!(get(&plain, "instance").as_deref(), Some("ext"));
        let own = canonical_labels("node_x", r#"job="own",instance="mine""#, &wire);
        assert_eq!(get(&own, "job").as_deref(), Some("own"));
        assert_eq!(get(&own, "instance").as_deref(), Some("mine"));
        // An own empty value omits the label rather than taking a default.
        let empty = canonical_labels("node_x", r#"instance="""#, &wire);
        assert_eq!(get(&empty, "instance"), None);
    }
}

/// The scheduler end to end on a real WAL: series sets, external labels,
/// stale markers, set re-emission.
#[cfg(test)]
mod wal_tests {
    use super::*;
    use crate::collect::Gatherer;
    use crate::collector::{CollectError, Collector, Context};
    use crate::config;
    use crate::wal::record::{decode_samples, decode_series_set, is_stale};
    use crate::wal::{Record, RecordKind};
    use std::sync::Mutex;

    /// Emits `node_test{dev=...}` for whatever devices the test sets.
    struct Devices(Arc<Mutex<Vec<&'static str>>>);

    impl Collector for Devices {
        fn update(&mut self, _: &Context, out: &mut Emitter) -> Result<(), CollectError> {
            let devs = self.0.lock().unwrap().clone();
            let mut f = out.family("node_test", "T.", MetricType::Gauge);
            for (i, d) in devs.iter().enumerate() {
                f.sample(&[("dev", d)], i as f64);
            }
            Ok(())
        }
    }

    /// (ts, labels of series, value) of every Samples record, in WAL order.
    fn read_back(wal: &dyn crate::wal::Wal) -> Vec<(i64, String, f64)> {
        let mut r = wal.reader(Default::default()).unwrap();
        let mut rec = Record::default();
        let mut sets = HashMap::new();
        let mut out = Vec::new();
        while r.next(&mut rec).unwrap() {
            match rec.kind {
                Some(RecordKind::SeriesSet) => {
                    let s = decode_series_set(&rec.data).unwrap();
                    sets.insert(s.id, s);
                }
                Some(RecordKind::Samples) => {
                    decode_samples(&rec.data, |set, ts, i, v| {
                        let s = &sets[&set];
                        let labels: Vec<String> =
                            s.labels(i).map(|(k, v)| format!("{k}={v}")).collect();
                        out.push((ts, labels.join(","), v));
                    })
                    .unwrap();
                }
                None => {}
            }
        }
        out
    }

    /// Runs the steps at t0, t0 + 1 s, ...; returns t0 and what was read.
    fn run(steps: &[&[&'static str]]) -> (i64, Vec<(i64, String, f64)>) {
        let (t0, out, _) = run_with(SET_EVERY_BYTES, steps);
        (t0, out)
    }

    /// `run`, re-emitting the set every `set_every` bytes; also returns how
    /// many SeriesSet records the WAL holds.
    fn run_with(
        set_every: usize,
        steps: &[&[&'static str]],
    ) -> (i64, Vec<(i64, String, f64)>, usize) {
        let t0 = t0();
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let devs = Arc::new(Mutex::new(Vec::new()));
            let g = Gatherer::with_collectors(
                Context::default(),
                vec![("test", Box::new(Devices(devs.clone())))],
                Duration::from_secs(5),
            );
            let shared = Arc::new(tokio::sync::Mutex::new(g));
            let cfg = config::Wal {
                dir: Some(dir.path().to_owned()),
                ..Default::default()
            };
            let wal = crate::wal::open(&cfg, dir.path()).unwrap();
            let (writer, task) = crate::wal::writer::spawn(wal.clone(), 1 << 20);
            let ext = [("site".to_owned(), "x".to_owned())].into_iter().collect();
            let mut s = Scheduler::new(
                shared,
                writer.clone(),
                Duration::from_secs(1),
                &ext,
                Arc::new(SchedulerMetrics::default()),
            );
            s.set_every = set_every;
            for (i, step) in steps.iter().enumerate() {
                *devs.lock().unwrap() = step.to_vec();
                s.collect_once(t0 + i as i64 * 1000).await;
            }
            writer.close();
            task.await.unwrap();
            let mut r = wal.reader(Default::default()).unwrap();
            let mut rec = Record::default();
            let mut sets = 0;
            while r.next(&mut rec).unwrap() {
                sets += usize::from(rec.kind == Some(RecordKind::SeriesSet));
            }
            (t0, read_back(&*wal), sets)
        })
    }

    #[test]
    fn an_unchanged_set_is_written_again_after_set_every_bytes() {
        let steps: Vec<&[&'static str]> = vec![&["a", "b"]; 40];
        let (_, out, sets) = run_with(200, &steps);
        assert_eq!(node_test(&out, "a").len(), 40, "every collection decodes");
        // Each samples record is a few dozen bytes: a copy every few records.
        assert!(sets >= 3, "only {sets} series sets");
        let (_, _, once) = run_with(SET_EVERY_BYTES, &steps);
        assert_eq!(once, 1, "an unchanged set is written once below the bound");
    }

    /// A recent, whole-second base timestamp (the WAL drops what is older
    /// than `max_age`).
    fn t0() -> i64 {
        now_ms() / 1000 * 1000 - 60_000
    }

    fn node_test(out: &[(i64, String, f64)], dev: &str) -> Vec<(i64, f64)> {
        let key = format!("__name__=node_test,dev={dev},site=x");
        out.iter()
            .filter(|(_, l, _)| *l == key)
            .map(|(t, _, v)| (*t, *v))
            .collect()
    }

    #[test]
    fn vanished_series_get_one_stale_marker_at_the_next_timestamp() {
        let (t, out) = run(&[&["a", "b"], &["a"], &["a"], &["a", "b"]]);
        let b = node_test(&out, "b");
        assert_eq!(b.len(), 3, "{b:?} of {out:?}");
        assert_eq!(b[0], (t, 1.0));
        assert_eq!(b[1].0, t + 1000);
        assert!(
            is_stale(b[1].1),
            "stale marker bits: {:x}",
            b[1].1.to_bits()
        );
        // Not repeated at t + 2000; back at t + 3000.
        assert_eq!(b[2], (t + 3000, 1.0));
        let a = node_test(&out, "a");
        assert_eq!(
            a.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![t, t + 1000, t + 2000, t + 3000]
        );
        // Self-metrics of the collection travel too, with the external label.
        assert!(out.iter().any(|(_, l, _)| l
            .starts_with("__name__=node_scrape_collector_success,collector=test,site=x")));
    }
}

/// Scrape batches and host collections in one series set, on a real WAL.
#[cfg(test)]
mod scrape_tests {
    use super::*;
    use crate::collect::Gatherer;
    use crate::collector::{CollectError, Collector, Context};
    use crate::config;
    use crate::scrape::ScrapedSeries;
    use crate::wal::record::{decode_samples, decode_series_set, is_absent, is_stale};
    use crate::wal::{Record, RecordKind};

    /// `node_test 1` on every collection.
    struct One;

    impl Collector for One {
        fn update(&mut self, _: &Context, out: &mut Emitter) -> Result<(), CollectError> {
            out.family("node_test", "T.", MetricType::Gauge)
                .sample(&[], 1.0);
            Ok(())
        }
    }

    /// A gatherer holding `One`, and a real WAL in `dir` with its writer
    /// task (call inside a runtime).
    fn fixture(
        dir: &std::path::Path,
    ) -> (
        Gatherer,
        Arc<dyn crate::wal::Wal>,
        WriterHandle,
        tokio::task::JoinHandle<()>,
    ) {
        let g = Gatherer::with_collectors(
            Context::default(),
            vec![("test", Box::new(One))],
            Duration::from_secs(5),
        );
        let cfg = config::Wal {
            dir: Some(dir.to_owned()),
            ..Default::default()
        };
        let wal = crate::wal::open(&cfg, dir).unwrap();
        let (writer, task) = crate::wal::writer::spawn(wal.clone(), 1 << 20);
        (g, wal, writer, task)
    }

    enum Step {
        Host(i64),
        Scrape(ScrapeBatch),
    }

    const A: u64 = 0xA;
    const B: u64 = 0xB;

    fn batch(source: u64, ts: i64, series: &[(&str, f64)]) -> ScrapeBatch {
        ScrapeBatch {
            source,
            ts_ms: ts,
            series: series
                .iter()
                .map(|(n, v)| ScrapedSeries {
                    labels: SeriesLabels::from_pairs([
                        ("__name__", *n),
                        ("job", "app"),
                        ("instance", if source == A { "a:1" } else { "b:1" }),
                    ]),
                    value: *v,
                    timestamp_ms: None,
                })
                .collect(),
            gone: false,
        }
    }

    fn gone(source: u64, ts: i64) -> ScrapeBatch {
        ScrapeBatch {
            source,
            ts_ms: ts,
            series: Vec::new(),
            gone: true,
        }
    }

    struct Out {
        /// (ts, labels, value) of every present sample, in WAL order.
        samples: Vec<(i64, String, f64)>,
        sets: usize,
        absent_slots: usize,
        metrics: Arc<SchedulerMetrics>,
    }

    impl Out {
        fn of(&self, name_and_instance: &str) -> Vec<(i64, f64)> {
            self.samples
                .iter()
                .filter(|(_, l, _)| l.contains(name_and_instance))
                .map(|(t, _, v)| (*t, *v))
                .collect()
        }
    }

    fn run_steps(steps: Vec<Step>, after: impl FnOnce(&Scheduler)) -> Out {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let g = Gatherer::with_collectors(
                Context::default(),
                vec![("test", Box::new(One))],
                Duration::from_secs(5),
            );
            let shared = Arc::new(tokio::sync::Mutex::new(g));
            let cfg = config::Wal {
                dir: Some(dir.path().to_owned()),
                ..Default::default()
            };
            let wal = crate::wal::open(&cfg, dir.path()).unwrap();
            let (writer, task) = crate::wal::writer::spawn(wal.clone(), 16 << 20);
            // The host's wire labels: external ones and the job/instance
            // defaults; scraped series take only the external ones.
            let wire = [("site", "x"), ("job", "node"), ("instance", "host-1")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let ext = [("site".to_owned(), "x".to_owned())].into_iter().collect();
            let metrics = Arc::new(SchedulerMetrics::default());
            let mut s = Scheduler::new(
                shared,
                writer.clone(),
                Duration::from_secs(1),
                &wire,
                Arc::clone(&metrics),
            )
            .with_scrape_external_labels(&ext);
            for step in steps {
                match step {
                    Step::Host(ts) => s.collect_once(ts).await,
                    Step::Scrape(b) => s.ingest_scrape(&b),
                }
            }
            after(&s);
            writer.close();
            task.await.unwrap();
            let mut r = wal.reader(Default::default()).unwrap();
            let mut rec = Record::default();
            let mut sets = HashMap::new();
            let mut out = Out {
                samples: Vec::new(),
                sets: 0,
                absent_slots: 0,
                metrics,
            };
            while r.next(&mut rec).unwrap() {
                match rec.kind {
                    Some(RecordKind::SeriesSet) => {
                        let set = decode_series_set(&rec.data).unwrap();
                        out.sets += 1;
                        sets.insert(set.id, set);
                    }
                    Some(RecordKind::Samples) => {
                        let mut present = 0;
                        decode_samples(&rec.data, |id, ts, i, v| {
                            let l: Vec<String> = sets[&id]
                                .labels(i)
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect();
                            out.samples.push((ts, l.join(","), v));
                            present += 1;
                        })
                        .unwrap();
                        assert_eq!(rec.meta.samples, present, "meta counts present values");
                        let mut dec = record::SamplesDecoder::new();
                        let mut rd = dec.open(&rec.data).unwrap();
                        let mut row = vec![0.0; rd.n_series];
                        while rd.next_collection(&mut row).unwrap().is_some() {
                            out.absent_slots += row.iter().filter(|v| is_absent(**v)).count();
                        }
                    }
                    None => {}
                }
            }
            out
        })
    }

    fn t0() -> i64 {
        now_ms() / 1000 * 1000 - 60_000
    }

    /// Whether the series table knows target `source`'s series `name`
    /// (and can find it again by its labels).
    fn has_scraped(s: &Scheduler, source: u64, name: &str) -> bool {
        s.series.iter().any(|(id, i)| match &i.labels {
            Wire::Scraped(l) if i.source == Some(source) && l.get("__name__") == name => {
                s.scraped_ids.get(&(source, l.fingerprint())) == Some(id)
            }
            _ => false,
        })
    }

    #[test]
    fn two_targets_and_the_host_share_one_set_with_staleness_per_source() {
        let t = t0();
        let out = run_steps(
            vec![
                Step::Host(t),
                Step::Scrape(batch(A, t + 200, &[("x", 1.0), ("y", 2.0)])),
                Step::Scrape(batch(B, t + 300, &[("z", 3.0)])),
                Step::Host(t + 1000),
                // A loses y; B goes on; the host is unaffected by either.
                Step::Scrape(batch(A, t + 1200, &[("x", 1.5)])),
                Step::Scrape(batch(B, t + 1300, &[("z", 3.5)])),
                Step::Host(t + 2000),
                Step::Scrape(batch(A, t + 2200, &[("x", 2.0)])),
                // B is scraped late: a row older than the host row before it.
                Step::Scrape(batch(B, t + 1900, &[("z", 4.0)])),
                Step::Host(t + 3000),
            ],
            |_| {},
        );
        let y = out.of("__name__=y,");
        assert_eq!(y.len(), 2, "{y:?}");
        assert_eq!(y[0], (t + 200, 2.0));
        assert_eq!(y[1].0, t + 1200);
        assert!(is_stale(y[1].1), "one stale marker, at A's next scrape");
        assert_eq!(
            out.of("__name__=z,"),
            vec![(t + 300, 3.0), (t + 1300, 3.5), (t + 1900, 4.0)]
        );
        assert_eq!(
            out.of("__name__=x,")
                .iter()
                .map(|s| s.0)
                .collect::<Vec<_>>(),
            vec![t + 200, t + 1200, t + 2200]
        );
        let host = out.of("__name__=node_test,");
        assert_eq!(
            host.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![t, t + 1000, t + 2000, t + 3000]
        );
        assert!(host.iter().all(|s| s.1 == 1.0));
        // Labels: the host's series carry the job/instance defaults, the
        // scraped ones their own and the external label only.
        assert!(out
            .samples
            .iter()
            .any(|(_, l, _)| l == "__name__=node_test,instance=host-1,job=node,site=x"));
        assert!(out
            .samples
            .iter()
            .any(|(_, l, _)| l == "__name__=x,instance=a:1,job=app,site=x"));
        // Sets: the host's first, + A, + B, - y; none after that.
        assert_eq!(out.sets, 4);
        assert!(out.absent_slots > 0);
        let m = &out.metrics;
        assert_eq!(m.scrape_batches.load(Ordering::Relaxed), 6);
        assert_eq!(m.scrape_samples.load(Ordering::Relaxed), 7);
        assert_eq!(m.scrape_stale_markers.load(Ordering::Relaxed), 1);
        assert_eq!(m.stale_markers.load(Ordering::Relaxed), 0);
        assert_eq!(m.collections.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_target_gone_or_failed_gets_stale_markers_for_all_its_series() {
        let t = t0();
        let out = run_steps(
            vec![
                Step::Scrape(batch(A, t, &[("up", 1.0), ("x", 1.0)])),
                Step::Scrape(batch(B, t + 10, &[("up", 1.0), ("z", 1.0)])),
                // A failed scrape: only `up` = 0.
                Step::Scrape(batch(A, t + 1000, &[("up", 0.0)])),
                Step::Scrape(gone(B, t + 1010)),
                Step::Host(t + 1500),
                // Gone again: nothing left to mark.
                Step::Scrape(gone(B, t + 2010)),
            ],
            |s| assert!(!s.targets.contains_key(&B)),
        );
        let x = out.of("__name__=x,");
        assert_eq!(x.len(), 2);
        assert!(is_stale(x[1].1) && x[1].0 == t + 1000);
        assert_eq!(
            out.of("__name__=up,instance=a:1"),
            vec![(t, 1.0), (t + 1000, 0.0)]
        );
        for name in ["__name__=up,instance=b:1", "__name__=z,"] {
            let s = out.of(name);
            assert_eq!(s.len(), 2, "{name}: {s:?}");
            assert_eq!(s[1].0, t + 1010);
            assert!(is_stale(s[1].1), "{name}");
        }
        assert_eq!(out.metrics.scrape_stale_markers.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_slow_target_keeps_its_series_while_the_host_collects_often() {
        let t = t0();
        let mut steps = vec![Step::Scrape(batch(A, t, &[("x", 1.0)]))];
        for i in 1..=(FORGET_AFTER as i64 * 3) {
            steps.push(Step::Host(t + i * 100));
        }
        steps.push(Step::Scrape(batch(A, t + 60_000, &[("x", 2.0)])));
        let out = run_steps(steps, |s| {
            assert!(has_scraped(s, A, "x"), "the target's series is kept");
        });
        assert_eq!(out.of("__name__=x,"), vec![(t, 1.0), (t + 60_000, 2.0)]);
        // No set change for the target's second scrape: its series stayed.
        assert_eq!(out.sets, 2);
    }

    #[test]
    fn series_a_target_stopped_sending_are_forgotten_after_its_own_batches() {
        let t = t0();
        let mut steps = vec![Step::Scrape(batch(A, t, &[("x", 1.0), ("y", 1.0)]))];
        // Forgetting runs every FORGET_AFTER rows: by twice that, y is gone.
        for i in 1..=(FORGET_AFTER as i64 * 2 + 2) {
            steps.push(Step::Scrape(batch(A, t + i * 1000, &[("x", 1.0)])));
        }
        run_steps(steps, |s| {
            assert!(has_scraped(s, A, "x"));
            assert!(
                !has_scraped(s, A, "y"),
                "forgotten after {FORGET_AFTER} of its target's batches"
            );
        });
    }

    #[test]
    fn explicit_timestamps_make_rows_and_older_ones_are_dropped_and_counted() {
        let t = t0();
        let mut b1 = batch(A, t + 1000, &[("x", 1.0), ("y", 2.0), ("z", 3.0)]);
        b1.series[0].timestamp_ms = Some(t + 100);
        b1.series[1].timestamp_ms = Some(t + 500);
        // Same explicit timestamp again: out of order; y newer: kept; x
        // missing: no stale marker (it had its own timestamp).
        let mut b2 = batch(A, t + 2000, &[("y", 2.5), ("z", 3.5)]);
        b2.series[0].timestamp_ms = Some(t + 500);
        let mut b3 = batch(A, t + 3000, &[("y", 2.75), ("z", 3.75)]);
        b3.series[0].timestamp_ms = Some(t + 2900);
        let out = run_steps(
            vec![
                Step::Scrape(b1),
                Step::Host(t + 1500),
                Step::Scrape(b2),
                Step::Scrape(b3),
            ],
            |_| {},
        );
        assert_eq!(out.of("__name__=x,"), vec![(t + 100, 1.0)]);
        assert_eq!(
            out.of("__name__=y,"),
            vec![(t + 500, 2.0), (t + 2900, 2.75)]
        );
        assert_eq!(
            out.of("__name__=z,"),
            vec![(t + 1000, 3.0), (t + 2000, 3.5), (t + 3000, 3.75)]
        );
        // Rows of b1, in timestamp order.
        let rows: Vec<i64> = out.samples.iter().take(3).map(|s| s.0).collect();
        assert_eq!(rows, vec![t + 100, t + 500, t + 1000]);
        let m = &out.metrics;
        assert_eq!(m.scrape_out_of_order.load(Ordering::Relaxed), 1);
        assert_eq!(m.scrape_stale_markers.load(Ordering::Relaxed), 0);
        assert_eq!(m.scrape_samples.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn scraped_series_are_told_apart_by_labels_when_their_hashes_collide() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (g, _wal, writer, task) = fixture(dir.path());
            let mut s = Scheduler::new(
                Arc::new(tokio::sync::Mutex::new(g)),
                writer.clone(),
                Duration::from_secs(1),
                &Default::default(),
                Arc::new(SchedulerMetrics::default()),
            );
            let x = SeriesLabels::from_pairs([("__name__", "x")]);
            let y = SeriesLabels::from_pairs([("__name__", "y")]);
            let ix = s.scraped_id(A, &x);
            // x holds y's hash, as if the two collided.
            s.scraped_ids.insert((A, y.fingerprint()), ix);
            let iy = s.scraped_id(A, &y);
            assert_ne!(ix, iy);
            assert_eq!(s.scraped_id(A, &y), iy, "found again");
            assert_eq!(s.scraped_id(A, &x), ix);
            // Equal labels made anew by the target: the same series, and
            // the table keeps the target's current copy.
            let x2 = SeriesLabels::from_pairs([("__name__", "x")]);
            assert_eq!(s.scraped_id(A, &x2), ix);
            assert!(matches!(&s.series[&ix].labels, Wire::Scraped(l) if l.ptr_eq(&x2)));
            // Another target's x is another series.
            assert_ne!(s.scraped_id(B, &x), ix);
            writer.close();
            task.await.unwrap();
        });
    }

    /// `run` takes batches from the channel between host collections and
    /// writes what is queued at a stop.
    #[test]
    fn run_takes_batches_from_the_channel() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (g, wal, writer, task) = fixture(dir.path());
            let metrics = Arc::new(SchedulerMetrics::default());
            let (tx, rx) = tokio::sync::mpsc::channel(256);
            let s = Scheduler::new(
                Arc::new(tokio::sync::Mutex::new(g)),
                writer.clone(),
                Duration::from_secs(3600),
                &Default::default(),
                Arc::clone(&metrics),
            )
            .with_scrapes(rx);
            let (stop, stop_rx) = tokio::sync::watch::channel(false);
            let h = tokio::spawn(s.run(stop_rx));
            let t = t0();
            tx.send(batch(A, t, &[("x", 1.0)])).await.unwrap();
            let m = Arc::clone(&metrics);
            let end = std::time::Instant::now() + Duration::from_secs(10);
            while m.scrape_batches.load(Ordering::Relaxed) == 0 {
                assert!(std::time::Instant::now() < end, "batch not taken");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tx.send(batch(A, t + 1000, &[("x", 2.0)])).await.unwrap();
            stop.send_replace(true);
            h.await.unwrap();
            writer.close();
            task.await.unwrap();
            assert_eq!(metrics.scrape_batches.load(Ordering::Relaxed), 2);
            let mut r = wal.reader(Default::default()).unwrap();
            let mut rec = Record::default();
            let mut values = Vec::new();
            while r.next(&mut rec).unwrap() {
                if rec.kind == Some(RecordKind::Samples) {
                    decode_samples(&rec.data, |_, ts, _, v| values.push((ts, v))).unwrap();
                }
            }
            assert_eq!(values, vec![(t, 1.0), (t + 1000, 2.0)]);
        });
    }
}
