//! Starts and stops the target loops as discovery changes, as Prometheus'
//! scrape pools do.
//!
//! Owns: the diff of discovery's target list by `Target::hash` (new
//! targets get a loop, vanished ones are told `Gone` and send their stale
//! batch after Prometheus' end-of-run wait, unchanged ones keep running),
//! one HTTP client per job, `target_limit` (a job over it fails every
//! scrape of its targets, as in Prometheus), restarting a loop that
//! panicked, and stopping every loop on shutdown *without* stale batches
//! (Prometheus writes none when it shuts down: a restarted agent carries
//! on where it was).
//!
//! Must never: scrape (the loops do), wait on a target, or leave a loop
//! running once the manager is gone (loops are aborted when it is dropped,
//! so a restarted manager starts from a clean slate).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::config::ScrapeConfig;
use super::target::{ScrapeMetrics, Scraper, Stop, TargetLoop};
use super::{ScrapeBatch, Target};

/// How often the manager looks for loops that ended unexpectedly (a
/// panic) and starts them again.
const REAP_EVERY: Duration = Duration::from_secs(5);

struct Job {
    cfg: Arc<ScrapeConfig>,
    /// `None`: the job's HTTP client could not be built (logged once); its
    /// targets are not scraped.
    scraper: Option<Arc<Scraper>>,
    forced: Arc<AtomicBool>,
}

struct Running {
    target: Target,
    stop: watch::Sender<Stop>,
    task: JoinHandle<()>,
}

/// Aborts every task it holds when dropped.
#[derive(Default)]
struct Loops {
    running: HashMap<u64, Running>,
    /// Told `Gone`, waiting to send their stale batch.
    ending: HashMap<u64, Running>,
}

impl Drop for Loops {
    fn drop(&mut self) {
        for r in self.running.values() {
            r.task.abort();
        }
        for r in self.ending.values() {
            r.task.abort();
        }
    }
}

/// What the manager needs besides the targets.
pub struct Manager {
    pub configs: Arc<Vec<ScrapeConfig>>,
    pub tx: mpsc::Sender<ScrapeBatch>,
    pub metrics: Arc<ScrapeMetrics>,
    /// `target::jitter_seed` of this host and its external labels.
    pub seed: u64,
}

impl Manager {
    /// Runs until `stop` turns true (or its sender goes), following
    /// `targets`.
    pub async fn run(
        &self,
        mut targets: watch::Receiver<Arc<Vec<Target>>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut jobs: HashMap<String, Job> = HashMap::new();
        for c in self.configs.iter() {
            let scraper = match Scraper::build(c).await {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    tracing::error!(error = %e, "scrape job disabled: its HTTP client cannot be built");
                    None
                }
            };
            // Registered up front so the job shows in the self-metrics
            // even before its first target.
            self.metrics.job(&c.job_name);
            jobs.insert(
                c.job_name.clone(),
                Job {
                    cfg: Arc::new(c.clone()),
                    scraper,
                    forced: Arc::new(AtomicBool::new(false)),
                },
            );
        }
        let mut loops = Loops::default();
        let mut reap = tokio::time::interval(REAP_EVERY);
        reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut discovery_open = true;
        let current = targets.borrow_and_update().clone();
        self.sync(&jobs, &mut loops, &current);
        loop {
            tokio::select! {
                r = stop.changed() => {
                    if r.is_err() || *stop.borrow() {
                        // Dropping `loops` aborts every loop: no stale
                        // batches on shutdown, as Prometheus.
                        return;
                    }
                }
                r = targets.changed(), if discovery_open => {
                    if r.is_err() {
                        // Discovery ended: keep scraping what it last said.
                        discovery_open = false;
                        continue;
                    }
                    let current = targets.borrow_and_update().clone();
                    self.sync(&jobs, &mut loops, &current);
                }
                _ = reap.tick() => self.reap(&jobs, &mut loops),
            }
        }
    }

    fn sync(&self, jobs: &HashMap<String, Job>, loops: &mut Loops, targets: &[Target]) {
        let mut wanted: HashMap<u64, &Target> = HashMap::with_capacity(targets.len());
        let mut per_job: HashMap<&str, u64> = HashMap::new();
        for t in targets {
            if !jobs.contains_key(&t.job) {
                tracing::warn!(job = %t.job, "target of an unknown job ignored");
                continue;
            }
            // Two targets with the same hash are one target, one loop.
            if wanted.insert(t.hash, t).is_none() {
                *per_job.entry(t.job.as_str()).or_default() += 1;
            }
        }
        for (name, job) in jobs {
            let n = per_job.get(name.as_str()).copied().unwrap_or(0);
            let limit = job.cfg.target_limit;
            let over = limit > 0 && n > limit;
            if over != job.forced.swap(over, Ordering::Relaxed) && over {
                tracing::warn!(job = %name, targets = n, limit, "target_limit exceeded: every scrape of the job fails");
            }
        }
        loops.ending.retain(|_, r| !r.task.is_finished());
        let gone: Vec<u64> = loops
            .running
            .keys()
            .filter(|h| !wanted.contains_key(h))
            .copied()
            .collect();
        for h in gone {
            if let Some(r) = loops.running.remove(&h) {
                tracing::debug!(job = %r.target.job, url = %r.target.url, "target gone");
                let _ = r.stop.send(Stop::Gone);
                if let Some(old) = loops.ending.insert(h, r) {
                    old.task.abort();
                }
            }
        }
        for (h, t) in wanted {
            if loops.running.contains_key(&h) {
                continue;
            }
            // Back before its stale batch went out: that batch would mark
            // the new loop's series stale, so it is not sent.
            if let Some(old) = loops.ending.remove(&h) {
                old.task.abort();
            }
            if let Some(r) = self.start(jobs, t) {
                loops.running.insert(h, r);
            }
        }
    }

    fn start(&self, jobs: &HashMap<String, Job>, t: &Target) -> Option<Running> {
        let job = jobs.get(&t.job)?;
        let scraper = job.scraper.as_ref()?;
        let (stop_tx, stop_rx) = watch::channel(Stop::Run);
        let l = TargetLoop {
            target: t.clone(),
            cfg: Arc::clone(&job.cfg),
            scraper: Arc::clone(scraper),
            tx: self.tx.clone(),
            metrics: self.metrics.job(&t.job),
            seed: self.seed,
            forced: Arc::clone(&job.forced),
        };
        tracing::debug!(job = %t.job, url = %t.url, "target added");
        Some(Running {
            target: t.clone(),
            stop: stop_tx,
            task: tokio::spawn(l.run(stop_rx)),
        })
    }

    /// A loop ends only when told to: one that ended otherwise panicked,
    /// and is started again.
    fn reap(&self, jobs: &HashMap<String, Job>, loops: &mut Loops) {
        loops.ending.retain(|_, r| !r.task.is_finished());
        let dead: Vec<u64> = loops
            .running
            .iter()
            .filter(|(_, r)| r.task.is_finished())
            .map(|(h, _)| *h)
            .collect();
        for h in dead {
            if let Some(r) = loops.running.remove(&h) {
                tracing::error!(job = %r.target.job, url = %r.target.url, "scrape loop ended unexpectedly; restarting it");
                if let Some(n) = self.start(jobs, &r.target) {
                    loops.running.insert(h, n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
