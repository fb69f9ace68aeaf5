//! The running agent: wiring, signals, supervision and shutdown.
//!
//! Owns: starting the runtime, binding the listener, opening the WAL, the
//! WAL writer, the remote_write senders, the scheduler and (with scrape
//! configs) discovery and the scrape manager under the supervisor, feeding
//! systemd (READY, STOPPING, the watchdog), and turning SIGTERM/SIGINT
//! into a clean stop and a valid SIGHUP into a reload (exec of the same
//! command line). The binary's `main` only parses arguments and calls
//! `run`. Must never: parse the command line itself except to
//! check a new configuration on SIGHUP, do disk I/O on the async runtime
//! (opening the WAL and reading the configuration go through
//! `spawn_blocking`), or let a hung collector hold up exit.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::cli::{self, Agent};
use crate::collect::Gatherer;

/// The runtime every sub-command runs on: one thread for async work, a
/// bounded pool for blocking work (collectors, disk).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(16)
        .build()
}

/// The collection as configured: the enabled collectors and the deadline.
pub fn gatherer(a: &Agent) -> Gatherer {
    let mut g = Gatherer::new(
        a.ctx.clone(),
        &a.collectors,
        &a.settings,
        a.config.global.scrape_timeout.0,
    );
    g.set_exporter_metrics(a.exporter_metrics);
    g
}

/// Bound of the in-memory queue in front of the WAL (a full or failing
/// disk): at 15 s and ~10 KB per collection, well over an hour.
const WAL_QUEUE_BYTES: usize = 16 << 20;

/// What the agent does once its signals say stop.
enum Exit {
    Stop,
    /// SIGHUP with a valid new configuration: stop cleanly, then exec the
    /// same command line again so every setting applies.
    Reload,
}

/// One glibc malloc arena instead of up to eight per core. cairn's threads
/// (one runtime thread and the blocking pool) rarely allocate at the same
/// time, and every extra arena keeps free pages of its own: measured with
/// `bench/scrape.sh` (one 10k-series target, 50 small ones), RSS 33.4 →
/// 31.7 MiB with the same CPU per scrape. Called before any thread starts.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called on
    // the main thread before the runtime or any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Runs the agent until a signal stops it; a reload execs the same command
/// line again.
pub fn run(agent: Agent) -> ExitCode {
    one_malloc_arena();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start runtime");
            return ExitCode::FAILURE;
        }
    };
    for name in &agent.unimplemented {
        tracing::warn!(
            collector = name,
            "collector is not implemented in this version; skipped"
        );
    }
    let exit = rt.block_on(agent_main(agent));
    // Blocking work still running (a hung collector) must not hold up exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match exit {
        Ok(Exit::Stop) => ExitCode::SUCCESS,
        Ok(Exit::Reload) => {
            use std::os::unix::process::CommandExt;
            let mut args = std::env::args_os();
            let Some(exe) = std::env::current_exe().ok() else {
                tracing::error!("cannot find my own executable to reload; exiting");
                return ExitCode::FAILURE;
            };
            args.next();
            let err = std::process::Command::new(exe).args(args).exec();
            tracing::error!(error = %err, "reload (exec) failed");
            ExitCode::FAILURE
        }
        Err(code) => code,
    }
}

async fn agent_main(agent: Agent) -> Result<Exit, ExitCode> {
    let listener = match tokio::net::TcpListener::bind(agent.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(address = %agent.listen, error = %e, "cannot listen");
            return Err(ExitCode::FAILURE);
        }
    };
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cfg = &agent.config;
    // Serve /metrics (and a 503 /-/ready) from the start: opening a large
    // WAL after a crash may take a moment, and /metrics must not wait on it.
    let g0 = gatherer(&agent);
    let board = crate::http::status::StatusBoard::new(
        agent
            .config_path
            .as_ref()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())),
        agent.listen.to_string(),
        agent.telemetry_path.clone(),
        g0.stats(),
    );
    let shared = Arc::new(tokio::sync::Mutex::new(g0));
    let server = crate::http::Server::new(
        Arc::clone(&shared),
        agent.telemetry_path.clone(),
        Arc::clone(&ready),
    );
    server.attach_status(Arc::clone(&board));
    let opts = crate::http::ListenerOptions {
        limits: agent.limits.clone(),
        web: agent.web_config.clone(),
    };
    // Every long-lived task runs under the supervisor: a panic is logged,
    // counted and the task restarted; one that keeps failing stops the
    // watchdog, so systemd restarts the agent.
    let sup = crate::supervisor::Supervisor::new(crate::supervisor::Policy::default());
    shared.lock().await.add_telemetry(sup.clone());
    let std_listener = match listener.into_std() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(address = %agent.listen, error = %e, "cannot listen");
            return Err(ExitCode::FAILURE);
        }
    };
    let http_server = Arc::clone(&server);
    let http_task = sup.supervise("http", move || {
        // A restarted server keeps the bound socket (a dup of it).
        let l = std_listener
            .try_clone()
            .and_then(tokio::net::TcpListener::from_std);
        let server = Arc::clone(&http_server);
        let opts = opts.clone();
        async move {
            match l {
                Ok(l) => crate::http::serve_with(l, server, opts).await,
                Err(e) => panic!("cannot reuse the listening socket: {e}"),
            }
        }
    });

    // The spool and its senders exist only when there is somewhere to send:
    // without [[remote_write]], cairn is a node_exporter and writes nothing.
    let mut spool = None;
    if !cfg.remote_write.is_empty() {
        let wal_cfg = cfg.wal.clone();
        let opened = tokio::task::spawn_blocking(move || open_spool(&wal_cfg)).await;
        let (wal, writer) = match opened {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot open the WAL");
                return Err(ExitCode::FAILURE);
            }
            Err(e) => {
                tracing::error!(error = %e, "opening the WAL failed");
                return Err(ExitCode::FAILURE);
            }
        };
        let names: Vec<String> = cfg
            .remote_write
            .iter()
            .enumerate()
            .map(|(i, r)| r.name_or(i))
            .collect();
        if let Err(e) = wal.register_remotes(&names) {
            tracing::error!(error = %e, "cannot register remotes in the WAL");
            return Err(ExitCode::FAILURE);
        }
        let writer_task = {
            let (wal, writer) = (Arc::clone(&wal), writer.clone());
            sup.supervise("writer", move || {
                crate::wal::writer::run(Arc::clone(&wal), writer.clone())
            })
        };
        board.set_wal(writer.clone(), cfg.wal.resolved_dir());
        let sched_metrics = Arc::new(crate::scheduler::SchedulerMetrics::default());
        let mut g = shared.lock().await;
        g.add_telemetry(Arc::new(writer.telemetry()));
        g.add_telemetry(sched_metrics.clone());
        let mut senders = Vec::new();
        let mut sender_metrics = Vec::new();
        for (rw, name) in cfg.remote_write.iter().zip(&names) {
            let m = Arc::new(crate::remote_write::SenderMetrics::new(name));
            g.add_telemetry(m.clone());
            board.add_remote(m.clone());
            sender_metrics.push(Arc::clone(&m));
            // Set up once here, so a bad remote stops the start with a
            // clear error; a restart after a panic sets it up again.
            let tap = writer.tap();
            let first = match crate::remote_write::spawn(
                rw,
                name.clone(),
                Arc::clone(&wal),
                Arc::clone(&m),
                stop_rx.clone(),
                tap.clone(),
            )
            .await
            {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(remote = %name, error = %e, "cannot set up remote_write");
                    return Err(ExitCode::FAILURE);
                }
            };
            let mut first = Some(first);
            let (rw, name2, wal, stop) =
                (rw.clone(), name.clone(), Arc::clone(&wal), stop_rx.clone());
            senders.push(sup.supervise(&format!("sender/{name}"), move || {
                let first = first.take();
                let (rw, name2, wal, m, stop, tap) = (
                    rw.clone(),
                    name2.clone(),
                    Arc::clone(&wal),
                    Arc::clone(&m),
                    stop.clone(),
                    tap.clone(),
                );
                async move {
                    let task = match first {
                        Some(t) => Ok(t),
                        None => crate::remote_write::spawn(&rw, name2, wal, m, stop, tap).await,
                    };
                    match task {
                        Ok(t) => {
                            // Dropped with this future: the sender goes too.
                            let t = crate::supervisor::AbortOnDrop(t);
                            if let Err(e) = t.join().await {
                                if e.is_panic() {
                                    std::panic::resume_unwind(e.into_panic());
                                }
                            }
                        }
                        Err(e) => panic!("cannot set up remote_write again: {e}"),
                    }
                }
            }));
        }
        drop(g);
        server.set_ready_note(crate::http::ready::blocked_remotes(sender_metrics));
        spool = Some((writer, writer_task, sched_metrics, senders));
    }

    // Agent mode: scraped batches reach the scheduler through a relay, so
    // a scheduler restarted after a panic gets a fresh channel while the
    // target loops keep their sender.
    let scraping = spool.is_some() && !cfg.scrape_configs.is_empty();
    if !cfg.scrape_configs.is_empty() && spool.is_none() {
        tracing::warn!("scrape_configs are ignored without [[remote_write]]: scraped samples have nowhere to go");
    }
    let mut scrape_task = None;
    let relay = scraping.then(|| Arc::new(ScrapeRelay::new()));
    if let Some(relay) = &relay {
        let (tx, rx) = tokio::sync::mpsc::channel(SCRAPE_CHANNEL);
        tokio::spawn(Arc::clone(relay).run(rx));
        let metrics = Arc::new(crate::scrape::target::ScrapeMetrics::default());
        shared.lock().await.add_telemetry(metrics.clone());
        let configs = Arc::new(cfg.scrape_configs.clone());
        let seed = crate::scrape::target::jitter_seed(
            &fqdn_within(FQDN_WAIT).await,
            &cfg.global.external_labels,
        );
        let stop = stop_rx.clone();
        scrape_task = Some(sup.supervise("scrape", move || {
            let manager = crate::scrape::manager::Manager {
                configs: Arc::clone(&configs),
                tx: tx.clone(),
                metrics: Arc::clone(&metrics),
                seed,
            };
            let stop = stop.clone();
            async move {
                let targets = crate::scrape::discovery::spawn(Arc::clone(&manager.configs));
                manager.run(targets, stop).await;
            }
        }));
    }

    let mut sched_task = None;
    let mut progress = None;
    if let Some((writer, _, sched_metrics, _)) = &spool {
        let (shared, writer, metrics, stop, relay) = (
            Arc::clone(&shared),
            writer.clone(),
            Arc::clone(sched_metrics),
            stop_rx.clone(),
            relay.clone(),
        );
        // Each collection is its own record: with a flush_interval the
        // writer holds records back (see `open_spool`), not the scheduler.
        let (interval, labels) = (cfg.global.scrape_interval.0, cfg.global.wire_labels());
        // A restarted scheduler starts a new series table: its first
        // record is a fresh SeriesSet.
        sched_task = Some(sup.supervise("scheduler", move || {
            let s = crate::scheduler::Scheduler::new(
                Arc::clone(&shared),
                writer.clone(),
                interval,
                &labels,
                Arc::clone(&metrics),
            );
            let s = match &relay {
                Some(r) => s.with_scrapes(r.receiver()),
                None => s,
            };
            s.run(stop.clone())
        }));
        progress = Some(Arc::clone(sched_metrics));
    }
    ready.store(true, Ordering::Release);
    crate::systemd::notify("READY=1");
    tracing::info!(
        address = %agent.listen,
        collectors = agent.collectors.len(),
        remotes = cfg.remote_write.len(),
        version = env!("CARGO_PKG_VERSION"),
        "cairn started"
    );
    if let Some(period) = crate::systemd::watchdog_interval() {
        tokio::spawn(watchdog(
            period,
            progress,
            cfg.global.scrape_interval.0,
            Arc::clone(&sup),
        ));
    }

    let exit = wait_for_signal(&agent).await;
    crate::systemd::notify(match exit {
        Exit::Stop => "STOPPING=1",
        Exit::Reload => "RELOADING=1",
    });
    tracing::info!("shutting down");
    ready.store(false, Ordering::Release);
    let stopped_at = std::time::Instant::now();
    let _ = stop_tx.send(true);
    // Target loops stop first (aborted, without stale batches: a
    // restarted agent carries on where it was, as Prometheus).
    if let Some(t) = scrape_task {
        let _ = t.await;
    }
    if let Some(t) = sched_task {
        let _ = t.await;
    }
    if let Some((writer, writer_task, _, senders)) = spool {
        // The scheduler has handed over its last batch: write it, then let
        // the senders finish their current request.
        writer.close();
        let bound = std::time::Duration::from_secs(10);
        if tokio::time::timeout(bound, writer_task).await.is_err() {
            tracing::error!("the WAL writer did not finish within 10 s; exiting anyway");
        }
        // Each sender got the stop with everyone else and gives the request
        // in flight at most its shutdown_grace, then records it.
        let grace = cfg
            .remote_write
            .iter()
            .map(|r| r.queue_config.shutdown_grace.0)
            .max()
            .unwrap_or_default();
        let until =
            tokio::time::Instant::from_std(stopped_at) + grace + std::time::Duration::from_secs(2);
        for s in senders {
            if tokio::time::timeout_at(until, s).await.is_err() {
                tracing::warn!(
                    "a remote_write sender did not stop within shutdown_grace; exiting anyway"
                );
            }
        }
    }
    http_task.abort();
    Ok(exit)
}

/// Opens the WAL and the writer's queue. With `flush_interval` > 0 the
/// writer holds records back from the WAL in the stage: a tmpfs file in
/// the stage directory, one per WAL, read back first (what a killed
/// process held is queued again). A configured stage directory that cannot
/// be used stops the start; the default one falls back to the WAL's parent
/// directory (safe, but the stage then costs disk writes), with a warning.
fn open_spool(
    cfg: &crate::config::Wal,
) -> Result<(Arc<dyn crate::wal::Wal>, crate::wal::writer::WriterHandle), crate::wal::WalError> {
    use crate::wal::stage::Stage;
    let dir = cfg.resolved_dir();
    let wal = crate::wal::open(cfg, &dir)?;
    let hold = cfg.flush_interval.0;
    if hold.is_zero() {
        return Ok((wal, crate::wal::writer::WriterHandle::new(WAL_QUEUE_BYTES)));
    }
    let stage_dir = cfg.resolved_stage_dir();
    let opened = match Stage::open(&Stage::path_for(&stage_dir, &dir)) {
        Err(e) if cfg.stage_dir.is_none() => {
            let fallback = dir.parent().unwrap_or(&dir).to_path_buf();
            tracing::warn!(error = %e, dir = %fallback.display(), "cannot use the default stage directory; staging in the data directory instead (it costs disk writes)");
            Stage::open(&Stage::path_for(&fallback, &dir))?
        }
        r => r?,
    };
    let (stage, found) = opened;
    let path = stage.path().to_path_buf();
    if let Some(parent) = path.parent() {
        if !Stage::memory_backed(parent) {
            tracing::warn!(dir = %parent.display(), "the stage directory is not memory-backed (tmpfs): holding records back still saves fdatasyncs, but the stage's own writes reach the disk");
        }
    }
    if found.torn_bytes > 0 {
        tracing::warn!(bytes = found.torn_bytes, stage = %path.display(), "the stage ends in a partial entry (a write cut short by the last stop); ignored");
    }
    let held: u64 = found
        .records
        .iter()
        .map(|r| u64::from(r.meta.samples))
        .sum();
    if !found.records.is_empty() {
        tracing::info!(records = found.records.len(), samples = held, stage = %path.display(), "records held by the last process are queued again");
    }
    let writer =
        crate::wal::writer::WriterHandle::with_stage(WAL_QUEUE_BYTES, hold, stage, found.records)?;
    Ok((wal, writer))
}

/// Capacity of the channels carrying scraped batches to the scheduler.
const SCRAPE_CHANNEL: usize = 256;

/// How long the start waits for the FQDN lookup of the scrape offsets'
/// seed. Prometheus waits for it however long DNS takes; on a box whose
/// uplink is down that would hold scraping back by the resolver's timeouts,
/// so past this the host name is used (offsets then differ from
/// Prometheus', series do not).
const FQDN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `scrape::target::fqdn` on the blocking pool, or the host name if it
/// takes longer than `wait`.
async fn fqdn_within(wait: std::time::Duration) -> String {
    let lookup = tokio::task::spawn_blocking(crate::scrape::target::fqdn);
    match tokio::time::timeout(wait, lookup).await {
        Ok(Ok(name)) => name,
        _ => {
            let host = crate::config::host_name();
            tracing::warn!(host = %host, "looking up this host's FQDN took over {wait:?}: the scrape offsets are seeded with the host name");
            host
        }
    }
}

type ScrapeSender = tokio::sync::mpsc::Sender<crate::scrape::ScrapeBatch>;
type ScrapeReceiver = tokio::sync::mpsc::Receiver<crate::scrape::ScrapeBatch>;

/// Forwards the target loops' batches to the scheduler running now. A
/// scheduler that panicked took its receiver with it; its successor asks
/// for a new one (`receiver`), and the relay sends there from then on.
struct ScrapeRelay {
    current: std::sync::Mutex<ScrapeSender>,
    /// The first scheduler's receiver, made with the relay.
    first: std::sync::Mutex<Option<ScrapeReceiver>>,
}

impl ScrapeRelay {
    fn new() -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(SCRAPE_CHANNEL);
        ScrapeRelay {
            current: std::sync::Mutex::new(tx),
            first: std::sync::Mutex::new(Some(rx)),
        }
    }

    /// The receiver for a (re)started scheduler.
    fn receiver(&self) -> ScrapeReceiver {
        let first = self.first.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(rx) = first {
            return rx;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(SCRAPE_CHANNEL);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = tx;
        rx
    }

    async fn run(self: Arc<Self>, mut rx: ScrapeReceiver) {
        while let Some(b) = rx.recv().await {
            let tx = self
                .current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            // Err: the scheduler stopped (shutdown) or is restarting; the
            // batch is lost with it, as its collections would be.
            let _ = tx.send(b).await;
        }
    }
}

/// Sends WATCHDOG=1 while the agent makes progress: with a scheduler, only
/// while collections keep happening (a hung scheduler gets restarted).
async fn watchdog(
    period: std::time::Duration,
    progress: Option<Arc<crate::scheduler::SchedulerMetrics>>,
    interval: std::time::Duration,
    sup: Arc<crate::supervisor::Supervisor>,
) {
    let mut tick = tokio::time::interval(period);
    let started = std::time::SystemTime::now();
    loop {
        tick.tick().await;
        let alive = match &progress {
            None => true,
            Some(m) => {
                let last = m.last_collection_ms.load(Ordering::Relaxed);
                let now = crate::clock::now_ms().max(0) as u64;
                let slack = (interval * 3).as_millis() as u64 + period.as_millis() as u64;
                let booting = started.elapsed().map(|e| e < interval * 3).unwrap_or(true);
                booting || now.saturating_sub(last) <= slack
            }
        };
        if !sup.healthy() {
            tracing::error!("a task keeps failing; not feeding the systemd watchdog");
        } else if alive {
            crate::systemd::notify("WATCHDOG=1");
        } else {
            tracing::error!("no collection for a while; not feeding the systemd watchdog");
        }
    }
}

/// Waits for SIGTERM/SIGINT (stop) or a SIGHUP whose new configuration is
/// valid (reload). A bad configuration on SIGHUP is logged and ignored.
async fn wait_for_signal(agent: &Agent) -> Exit {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; running until killed");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return Exit::Stop,
            _ = int.recv() => return Exit::Stop,
            _ = hup.recv() => {
                // Reading the configuration (and the files it names) is
                // disk I/O: off the runtime.
                let parsed = tokio::task::spawn_blocking(|| cli::parse(std::env::args_os()).map(|_| ())).await;
                let parsed = match parsed {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: checking the configuration failed; keeping the running one");
                        continue;
                    }
                };
                match parsed {
                    Ok(()) => {
                        tracing::info!(config = ?agent.config_path, "SIGHUP: configuration valid; reloading");
                        return Exit::Reload;
                    }
                    Err(e) => tracing::error!(error = %e, "SIGHUP: new configuration is invalid; keeping the running one"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_wal(dir: &std::path::Path, stage_dir: std::path::PathBuf) -> crate::config::Wal {
        crate::config::Wal {
            dir: Some(dir.join("wal")),
            flush_interval: crate::config::Dur(std::time::Duration::from_secs(5)),
            stage_dir: Some(stage_dir),
            ..Default::default()
        }
    }

    /// A configured stage directory that cannot be used stops the start
    /// (a regular file where the directory should be), naming the path.
    #[test]
    fn a_configured_stage_dir_that_cannot_be_used_stops_the_start() {
        let d = tempfile::tempdir().unwrap();
        let blocker = d.path().join("not-a-dir");
        std::fs::write(&blocker, b"x").unwrap();
        let err = open_spool(&held_wal(d.path(), blocker.join("stage")))
            .err()
            .expect("the start must fail");
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }

    /// A usable one holds the stage file, named after the WAL.
    #[test]
    fn a_configured_stage_dir_holds_the_stage_file() {
        let d = tempfile::tempdir().unwrap();
        let stage = d.path().join("run");
        assert!(open_spool(&held_wal(d.path(), stage.clone())).is_ok());
        let names: Vec<String> = std::fs::read_dir(&stage)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with("cairn-stage-"), "{names:?}");
    }

    fn batch(source: u64) -> crate::scrape::ScrapeBatch {
        crate::scrape::ScrapeBatch {
            source,
            ts_ms: 1,
            series: Vec::new(),
            gone: false,
        }
    }

    #[test]
    fn the_relay_feeds_whichever_scheduler_runs_now() {
        let rt = runtime().expect("runtime");
        rt.block_on(async {
            let relay = Arc::new(ScrapeRelay::new());
            let (tx, rx) = tokio::sync::mpsc::channel(SCRAPE_CHANNEL);
            tokio::spawn(Arc::clone(&relay).run(rx));
            let mut first = relay.receiver();
            tx.send(batch(1)).await.expect("send");
            assert_eq!(first.recv().await.map(|b| b.source), Some(1));
            // The scheduler panicked: its receiver is gone, its successor
            // gets a new one and every later batch.
            drop(first);
            let mut second = relay.receiver();
            tx.send(batch(2)).await.expect("send");
            assert_eq!(second.recv().await.map(|b| b.source), Some(2));
        });
    }
}
