//! One collection: every enabled collector run once, bounded by a deadline.
//!
//! Owns: the collector instances and their reusable output buffers, the
//! per-collection meta metrics (`node_scrape_collector_*`, `process_*`,
//! `cairn_build_info`) and the sorted view of all families a consumer (the
//! /metrics renderer, the scheduler) reads. Must never: let one collector's
//! error or hang fail the others. A collector still running at the deadline
//! is reported as failed and keeps its lock, so it is skipped (not stacked
//! up) on later collections until it returns.
//!
//! Why not one blocking task per collector, as node_exporter runs one
//! goroutine each: measured here, the thread hand-offs (futex wake-ups and
//! context switches) were a quarter of cairn's CPU per scrape. So one runner
//! thread takes the collectors in turn from a shared queue; only when it
//! makes no progress for a while (a slow sensor, a hung read) does another
//! runner start and take the rest, leaving the slow one behind.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::collector::{self, Collector, Context, Settings};
use crate::metrics::{Emitter, Family, MetricType};
use crate::self_metrics::ProcessMetrics;
use crate::telemetry::Telemetry;

struct SlotState {
    collector: Box<dyn Collector>,
    out: Emitter,
    ok: bool,
    seconds: f64,
}

struct Slot {
    name: &'static str,
    state: Mutex<SlotState>,
}

/// Per-collector facts kept across collections, readable without the
/// gatherer's lock (the status page reads them while a collection runs).
#[derive(Debug)]
pub struct CollectorStat {
    pub name: &'static str,
    /// f64 bits of the last collection's duration in seconds.
    last_seconds: AtomicU64,
    /// 0: not run yet, 1: succeeded, 2: failed, 3: no data.
    last: AtomicU8,
    errors: AtomicU64,
}

impl CollectorStat {
    pub fn last_seconds(&self) -> f64 {
        f64::from_bits(self.last_seconds.load(Ordering::Relaxed))
    }
    /// None before the first collection.
    pub fn last_ok(&self) -> Option<bool> {
        match self.last.load(Ordering::Relaxed) {
            1 => Some(true),
            2 | 3 => Some(false),
            _ => None,
        }
    }
    /// The last collection failed only because the host lacks the
    /// collector's source (node_exporter's ErrNoData).
    pub fn last_no_data(&self) -> bool {
        self.last.load(Ordering::Relaxed) == 3
    }
    /// Collections in which the collector failed with an error, panicked
    /// or did not finish in time; "no data" (the host lacks its source) is
    /// not an error.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// Outcome of one collector in one collection.
#[derive(Clone, Copy)]
enum Outcome {
    Done {
        ok: bool,
        seconds: f64,
    },
    /// Still running from an earlier collection, or past the deadline now.
    Stuck,
}

const PENDING: u8 = 0;
const OK: u8 = 1;
const FAILED: u8 = 2;
const BUSY: u8 = 3;
/// Failed with "no data": reported failed, not counted as an error.
const NO_DATA: u8 = 4;

/// One collection's shared work queue: runners take the next index, record
/// the outcome, and the last one to finish wakes the collection.
struct Job {
    slots: Vec<Arc<Slot>>,
    ctx: Arc<Context>,
    next: AtomicUsize,
    done: AtomicUsize,
    /// Set at the deadline: runners take no more work.
    closed: AtomicBool,
    state: Vec<AtomicU8>,
    seconds: Vec<AtomicU64>,
    finished: Notify,
}

impl Job {
    fn run(&self) {
        while !self.closed.load(Ordering::Acquire) {
            let i = self.next.fetch_add(1, Ordering::AcqRel);
            let Some(slot) = self.slots.get(i) else {
                return;
            };
            let (state, secs) = run_one(slot, &self.ctx);
            self.seconds[i].store(secs.to_bits(), Ordering::Release);
            self.state[i].store(state, Ordering::Release);
            if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.slots.len() {
                self.finished.notify_one();
            }
        }
    }
}

/// The gatherer as the HTTP server and the scheduler share it: whoever
/// holds the lock collects; the other waits for its turn.
pub type SharedGatherer = Arc<tokio::sync::Mutex<Gatherer>>;

pub struct Gatherer {
    ctx: Arc<Context>,
    slots: Vec<Arc<Slot>>,
    timeout: Duration,
    meta: Emitter,
    process: ProcessMetrics,
    outcomes: Vec<Outcome>,
    telemetry: Vec<Arc<dyn Telemetry>>,
    stats: Arc<[CollectorStat]>,
    /// `process_*` about cairn itself (off with
    /// `--web.disable-exporter-metrics`, as node_exporter drops its
    /// process and Go collectors).
    exporter_metrics: bool,
}

impl Gatherer {
    /// Builds the named collectors from the registry (unknown or
    /// unimplemented names are skipped; `cli` has warned about them).
    pub fn new(
        ctx: Context,
        names: &[&'static str],
        settings: &Settings,
        timeout: Duration,
    ) -> Self {
        let collectors = names
            .iter()
            .filter_map(|n| collector::find(n))
            .filter_map(|k| Some((k.name, (k.build?)(settings))))
            .collect();
        Self::with_collectors(ctx, collectors, timeout)
    }

    pub fn with_collectors(
        ctx: Context,
        collectors: Vec<(&'static str, Box<dyn Collector>)>,
        timeout: Duration,
    ) -> Self {
        let stats = collectors
            .iter()
            .map(|(name, _)| CollectorStat {
                name,
                last_seconds: AtomicU64::new(0),
                last: AtomicU8::new(0),
                errors: AtomicU64::new(0),
            })
            .collect();
        let slots = collectors
            .into_iter()
            .map(|(name, collector)| {
                Arc::new(Slot {
                    name,
                    state: Mutex::new(SlotState {
                        collector,
                        out: Emitter::new(),
                        ok: false,
                        seconds: 0.0,
                    }),
                })
            })
            .collect();
        Gatherer {
            ctx: Arc::new(ctx),
            slots,
            timeout,
            meta: Emitter::new(),
            process: ProcessMetrics::new(),
            outcomes: Vec::new(),
            telemetry: Vec::new(),
            stats,
            exporter_metrics: true,
        }
    }

    /// Each collector's last outcome and error count, in collection order.
    pub fn stats(&self) -> Arc<[CollectorStat]> {
        Arc::clone(&self.stats)
    }

    /// Whether to add cairn's own `process_*` metrics.
    pub fn set_exporter_metrics(&mut self, on: bool) {
        self.exporter_metrics = on;
    }

    /// Adds a source of self-metrics rendered into every collection.
    pub fn add_telemetry(&mut self, t: Arc<dyn Telemetry>) {
        self.telemetry.push(t);
    }

    /// Runs every collector (on the blocking pool, since they read files),
    /// then hands `f` every non-empty family sorted by name.
    pub async fn collect<R>(&mut self, f: impl FnOnce(&[&Family]) -> R) -> R {
        let n = self.slots.len();
        let job = Arc::new(Job {
            slots: self.slots.clone(),
            ctx: Arc::clone(&self.ctx),
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            state: (0..n).map(|_| AtomicU8::new(PENDING)).collect(),
            seconds: (0..n).map(|_| AtomicU64::new(0)).collect(),
            finished: Notify::new(),
        });
        let deadline = tokio::time::Instant::now() + self.timeout;
        // How long without a finished collector before another runner
        // starts: far above a healthy collector's milliseconds.
        let stall = (self.timeout / 4).min(Duration::from_secs(1));
        let spawn_runner = |job: &Arc<Job>| {
            let j = Arc::clone(job);
            drop(tokio::task::spawn_blocking(move || j.run()));
        };
        if n > 0 {
            spawn_runner(&job);
            let mut last = 0;
            loop {
                let wake = (tokio::time::Instant::now() + stall).min(deadline);
                let _ = tokio::time::timeout_at(wake, job.finished.notified()).await;
                let done = job.done.load(Ordering::Acquire);
                if done >= n || tokio::time::Instant::now() >= deadline {
                    break;
                }
                // No collector finished within `stall`: leave the slow one
                // to its runner and start another for the rest.
                if done == last && job.next.load(Ordering::Acquire) < n {
                    spawn_runner(&job);
                }
                last = done;
            }
        }
        job.closed.store(true, Ordering::Release);

        self.outcomes.clear();
        for (i, slot) in self.slots.iter().enumerate() {
            let outcome = match job.state[i].load(Ordering::Acquire) {
                OK | FAILED | NO_DATA => Outcome::Done {
                    ok: job.state[i].load(Ordering::Acquire) == OK,
                    seconds: f64::from_bits(job.seconds[i].load(Ordering::Acquire)),
                },
                BUSY => Outcome::Stuck,
                _ => {
                    tracing::warn!(
                        collector = slot.name,
                        timeout = ?self.timeout,
                        "collector did not finish in time; reported as failed"
                    );
                    Outcome::Stuck
                }
            };
            let st = &self.stats[i];
            match outcome {
                Outcome::Done { ok, seconds } => {
                    st.last_seconds.store(seconds.to_bits(), Ordering::Relaxed);
                    let state = job.state[i].load(Ordering::Acquire);
                    let code = match (ok, state) {
                        (true, _) => 1,
                        (false, NO_DATA) => 3,
                        (false, _) => 2,
                    };
                    st.last.store(code, Ordering::Relaxed);
                    if state == FAILED {
                        st.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Outcome::Stuck => {
                    st.last_seconds
                        .store(self.timeout.as_secs_f64().to_bits(), Ordering::Relaxed);
                    st.last.store(2, Ordering::Relaxed);
                    st.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.outcomes.push(outcome);
        }

        self.meta.clear();
        {
            let mut dur = self.meta.family(
                "node_scrape_collector_duration_seconds",
                "node_exporter: Duration of a collector scrape.",
                MetricType::Gauge,
            );
            for (slot, o) in self.slots.iter().zip(&self.outcomes) {
                let secs = match o {
                    Outcome::Done { seconds, .. } => *seconds,
                    Outcome::Stuck => self.timeout.as_secs_f64(),
                };
                dur.sample(&[("collector", slot.name)], secs);
            }
        }
        {
            let mut succ = self.meta.family(
                "node_scrape_collector_success",
                "node_exporter: Whether a collector succeeded.",
                MetricType::Gauge,
            );
            for (slot, o) in self.slots.iter().zip(&self.outcomes) {
                let ok = matches!(o, Outcome::Done { ok: true, .. });
                succ.sample(&[("collector", slot.name)], if ok { 1.0 } else { 0.0 });
            }
        }
        {
            let mut errs = self.meta.family(
                "cairn_collector_errors_total",
                "Collections in which a collector failed (error, panic or timeout; a host lacking its source is not counted).",
                MetricType::Counter,
            );
            for st in self.stats.iter() {
                errs.sample(&[("collector", st.name)], st.errors() as f64);
            }
        }
        self.meta
            .family(
                "cairn_build_info",
                "A metric with a constant '1' value labeled by version from which cairn was built.",
                MetricType::Gauge,
            )
            .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        if self.exporter_metrics {
            self.process.update(&mut self.meta);
        }
        for t in &self.telemetry {
            t.render(&mut self.meta);
        }

        // Hold the finished collectors' locks while the consumer reads their
        // families; stuck ones are skipped.
        let mut guards: Vec<MutexGuard<'_, SlotState>> = Vec::with_capacity(self.slots.len());
        for (slot, o) in self.slots.iter().zip(&self.outcomes) {
            // As node_exporter: what a failing collector emitted before its
            // error is still served (success says it failed).
            if matches!(o, Outcome::Done { .. }) {
                if let Ok(g) = slot.state.try_lock() {
                    guards.push(g);
                }
            }
        }
        for g in guards.iter_mut() {
            for fam in g.out.families_mut() {
                fam.sort_series();
            }
        }
        for fam in self.meta.families_mut() {
            fam.sort_series();
        }
        // One owner per name: a family of a collector whose names come from
        // outside (textfile) loses to any other producer of its name.
        // Sorting by name puts the owners first and the clash next to them,
        // so finding clashes costs nothing beyond the sort needed anyway.
        let taken = {
            let fams = sorted_families(&guards, &self.meta);
            let mut taken: Vec<String> = Vec::new();
            for w in fams.windows(2) {
                if w[0].0.name() == w[1].0.name() && w[1].1 && !w[0].1 {
                    taken.push(w[1].0.name().to_owned());
                }
            }
            if taken.is_empty() {
                let fams: Vec<&Family> = fams.into_iter().map(|(f, _)| f).collect();
                return f(&fams);
            }
            taken
        };
        for g in guards.iter_mut() {
            if g.collector.names_from_outside() {
                let g = &mut **g;
                g.collector.drop_taken(&mut g.out, &taken);
            }
        }
        let fams: Vec<&Family> = sorted_families(&guards, &self.meta)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        f(&fams)
    }
}

/// Every family of this collection with whether its names come from
/// outside, sorted by name and, within a name, the outside one last.
fn sorted_families<'a>(
    guards: &'a [MutexGuard<'_, SlotState>],
    meta: &'a Emitter,
) -> Vec<(&'a Family, bool)> {
    let mut fams: Vec<(&Family, bool)> = guards
        .iter()
        .flat_map(|g| {
            let outside = g.collector.names_from_outside();
            g.out.families().map(move |f| (f, outside))
        })
        .chain(meta.families().map(|f| (f, false)))
        .collect();
    fams.sort_unstable_by(|a, b| a.0.name().cmp(b.0.name()).then(a.1.cmp(&b.1)));
    fams
}

/// Runs one collector; returns its state (`OK`, `FAILED`, `BUSY`) and
/// how long it took.
fn run_one(slot: &Slot, ctx: &Context) -> (u8, f64) {
    let mut st = match slot.state.try_lock() {
        Ok(g) => g,
        // A poisoned lock means the collector panicked last time; its state
        // is only buffers, so carry on with it.
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
        Err(TryLockError::WouldBlock) => return (BUSY, 0.0),
    };
    let st = &mut *st;
    st.out.clear();
    let start = Instant::now();
    let res = catch_unwind(AssertUnwindSafe(|| st.collector.update(ctx, &mut st.out)));
    st.seconds = start.elapsed().as_secs_f64();
    st.ok = matches!(res, Ok(Ok(())));
    let panicked = res.is_err();
    let mut no_data = false;
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.is_no_data() => {
            no_data = true;
            tracing::debug!(collector = slot.name, error = %e, "collector returned no data")
        }
        Ok(Err(e)) => tracing::warn!(collector = slot.name, error = %e, "collector failed"),
        Err(_) => tracing::error!(collector = slot.name, "collector panicked"),
    }
    if panicked {
        // A panic may have left half a family behind; an error return is
        // the collector's own decision about what it emitted first.
        st.out.clear();
    }
    let state = match (st.ok, no_data) {
        (true, _) => OK,
        (false, true) => NO_DATA,
        (false, false) => FAILED,
    };
    (state, st.seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::fixture_ctx;
    use crate::metrics::render_text;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn text(g: &mut Gatherer) -> String {
        text_in(&runtime(), g)
    }

    // Dropping a runtime waits for its blocking threads, so a test about a
    // hung collector keeps one runtime alive across collections.
    fn text_in(rt: &tokio::runtime::Runtime, g: &mut Gatherer) -> String {
        rt.block_on(g.collect(|fams| {
            let mut out = Vec::new();
            render_text(fams.iter().copied(), &mut out);
            String::from_utf8(out).unwrap()
        }))
    }

    #[test]
    fn failing_collector_is_reported_not_fatal() {
        let mut g = Gatherer::new(
            fixture_ctx("truncated"),
            &["loadavg"],
            &Settings::default(),
            Duration::from_secs(5),
        );
        let t = text(&mut g);
        assert!(
            t.contains("node_scrape_collector_success{collector=\"loadavg\"} 0\n"),
            "{t}"
        );
        assert!(!t.contains("node_load1 "), "{t}");
        assert!(t.contains("cairn_build_info{version="), "{t}");
        assert!(t.contains("process_resident_memory_bytes "), "{t}");
    }

    /// Emits `owned_metric` as a collector of cairn's own would.
    struct Owner;

    impl Collector for Owner {
        fn update(
            &mut self,
            _ctx: &Context,
            out: &mut Emitter,
        ) -> Result<(), crate::collector::CollectError> {
            out.single("owned_metric", "The real one.", MetricType::Gauge, 1.0);
            Ok(())
        }
    }

    #[test]
    fn a_textfile_cannot_take_another_collectors_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("spoof.prom"),
            "# HELP owned_metric The real one.\n# TYPE owned_metric gauge\nowned_metric{x=\"y\"} 666\nowned_metric 666\n\
             cairn_build_info{version=\"evil\"} 1\nnode_textfile_scrape_error 0\nfree_metric 3\n",
        )
        .unwrap();
        let settings =
            Settings::default().with("collector.textfile.directory", dir.path().to_str().unwrap());
        let textfile = (crate::collector::find("textfile").unwrap().build.unwrap())(&settings);
        let mut g = Gatherer::with_collectors(
            fixture_ctx("truncated"),
            vec![("textfile", textfile), ("owner", Box::new(Owner))],
            Duration::from_secs(5),
        );
        let rt = runtime();
        for round in 1..=2 {
            let t = text_in(&rt, &mut g);
            assert_eq!(t.matches("# TYPE owned_metric ").count(), 1, "{t}");
            // " 666\n", not "666": a duration such as 0.000176662 holds
            // those digits too (a CI run failed on exactly that).
            assert!(
                t.contains("\nowned_metric 1\n") && !t.contains(" 666\n"),
                "{t}"
            );
            assert!(!t.contains("owned_metric{x="), "{t}");
            assert!(!t.contains("evil"), "{t}");
            assert!(t.contains("\nnode_textfile_scrape_error 1\n"), "{t}");
            assert!(t.contains("\nfree_metric 3\n"), "{t}");
            // Two series of owned_metric, cairn_build_info's and
            // node_textfile_scrape_error's: 4 per collection.
            let want = format!("\ncairn_textfile_dropped_series_total {}\n", 4 * round);
            assert!(t.contains(&want), "round {round}: {t}");
        }
    }

    /// Sleeps far past the deadline on its first collection only.
    struct Hangs {
        calls: u32,
    }

    impl Collector for Hangs {
        fn update(
            &mut self,
            _ctx: &Context,
            out: &mut Emitter,
        ) -> Result<(), crate::collector::CollectError> {
            self.calls += 1;
            if self.calls == 1 {
                std::thread::sleep(Duration::from_millis(1500));
            }
            out.single("node_hangs", "H.", MetricType::Gauge, self.calls as f64);
            Ok(())
        }
    }

    #[test]
    fn hung_collector_is_bounded_reported_and_not_stacked() {
        let ctx = fixture_ctx("basic");
        let collectors: Vec<(&'static str, Box<dyn Collector>)> = vec![
            ("hangs", Box::new(Hangs { calls: 0 })),
            (
                "loadavg",
                Box::new(crate::collector::loadavg::Loadavg::new()),
            ),
        ];
        let mut g = Gatherer::with_collectors(ctx, collectors, Duration::from_millis(200));
        let rt = runtime();
        let start = Instant::now();
        let t = text_in(&rt, &mut g);
        assert!(
            start.elapsed() < Duration::from_millis(1200),
            "waited for the hung collector"
        );
        assert!(
            t.contains("node_scrape_collector_success{collector=\"hangs\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("node_scrape_collector_success{collector=\"loadavg\"} 1\n"),
            "{t}"
        );
        assert!(t.contains("node_load1 0.21\n"), "{t}");
        assert!(
            t.contains("cairn_collector_errors_total{collector=\"hangs\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("cairn_collector_errors_total{collector=\"loadavg\"} 0\n"),
            "{t}"
        );
        // Still stuck: skipped at once, not run a second time in parallel.
        let t = text_in(&rt, &mut g);
        assert!(
            t.contains("node_scrape_collector_success{collector=\"hangs\"} 0\n"),
            "{t}"
        );
        // Once it returns, it is collected normally again.
        std::thread::sleep(Duration::from_millis(1500));
        let t = text_in(&rt, &mut g);
        assert!(
            t.contains("node_scrape_collector_success{collector=\"hangs\"} 1\n"),
            "{t}"
        );
        assert!(t.contains("node_hangs 2\n"), "{t}");
    }

    struct Panics;

    impl Collector for Panics {
        fn update(
            &mut self,
            _ctx: &Context,
            _out: &mut Emitter,
        ) -> Result<(), crate::collector::CollectError> {
            panic!("collector bug");
        }
    }

    #[test]
    fn panicking_collector_fails_alone() {
        let collectors: Vec<(&'static str, Box<dyn Collector>)> = vec![
            ("panics", Box::new(Panics)),
            (
                "loadavg",
                Box::new(crate::collector::loadavg::Loadavg::new()),
            ),
        ];
        let mut g =
            Gatherer::with_collectors(fixture_ctx("basic"), collectors, Duration::from_secs(5));
        for _ in 0..2 {
            let t = text(&mut g);
            assert!(
                t.contains("node_scrape_collector_success{collector=\"panics\"} 0\n"),
                "{t}"
            );
            assert!(t.contains("node_load1 0.21\n"), "{t}");
        }
        let stats = g.stats();
        assert_eq!(stats[0].name, "panics");
        assert_eq!(stats[0].errors(), 2);
        assert_eq!(stats[0].last_ok(), Some(false));
        assert_eq!(stats[1].errors(), 0);
        assert_eq!(stats[1].last_ok(), Some(true));
    }

    struct Absent;

    impl Collector for Absent {
        fn update(
            &mut self,
            _ctx: &Context,
            _out: &mut Emitter,
        ) -> Result<(), crate::collector::CollectError> {
            Err(crate::collector::CollectError::NoData(
                "no such device".into(),
            ))
        }
    }

    #[test]
    fn no_data_is_a_failure_but_not_an_error() {
        let collectors: Vec<(&'static str, Box<dyn Collector>)> =
            vec![("absent", Box::new(Absent))];
        let mut g =
            Gatherer::with_collectors(fixture_ctx("basic"), collectors, Duration::from_secs(5));
        let t = text(&mut g);
        assert!(
            t.contains("node_scrape_collector_success{collector=\"absent\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("cairn_collector_errors_total{collector=\"absent\"} 0\n"),
            "{t}"
        );
        assert_eq!(g.stats()[0].last_ok(), Some(false));
        assert!(g.stats()[0].last_no_data());
    }

    #[test]
    fn families_are_sorted_and_successes_reported() {
        let mut g = Gatherer::new(
            fixture_ctx("basic"),
            &["loadavg"],
            &Settings::default(),
            Duration::from_secs(5),
        );
        let t = text(&mut g);
        assert!(
            t.contains("node_scrape_collector_success{collector=\"loadavg\"} 1\n"),
            "{t}"
        );
        let names: Vec<&str> = t
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
