//! The `cairn` binary: parse the command line, then run the agent, one
//! collection, or a config check. All logic lives in the library.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cairn::cli::{self, Agent, Invocation};
use cairn::collect::Gatherer;
use cairn::config::Config;
use cairn::metrics::render_text;

fn init_logging(level: &str) {
    let level = match level.to_ascii_lowercase().as_str() {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    // journald adds its own timestamps; keep lines short there.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(16)
        .build()
}

fn gatherer(a: &Agent) -> Gatherer {
    Gatherer::new(
        a.ctx.clone(),
        &a.collectors,
        &a.settings,
        a.config.global.scrape_timeout.0,
    )
}

fn main() -> ExitCode {
    let inv = match cli::parse(std::env::args_os()) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("cairn: {e}");
            return ExitCode::from(2);
        }
    };
    match inv {
        Invocation::CheckConfig(path) => match Config::load(&path) {
            Ok(_) => {
                println!("{}: OK", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cairn: {e}");
                ExitCode::FAILURE
            }
        },
        Invocation::WalStatus(agent) => wal_status(&agent),
        Invocation::Collect(agent) => {
            init_logging(&agent.log_level);
            collect_once(&agent)
        }
        Invocation::Run(agent) => {
            init_logging(&agent.log_level);
            run(agent)
        }
    }
}

fn collect_once(agent: &Agent) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut g = gatherer(agent);
    let mut out = Vec::with_capacity(64 * 1024);
    rt.block_on(g.collect(|fams| render_text(fams.iter().copied(), &mut out)));
    use std::io::Write;
    match std::io::stdout().lock().write_all(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn: writing to stdout: {e}");
            ExitCode::FAILURE
        }
    }
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

fn run(agent: Agent) -> ExitCode {
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
    let shared = Arc::new(tokio::sync::Mutex::new(gatherer(&agent)));
    let server = cairn::http::Server::new(
        Arc::clone(&shared),
        agent.telemetry_path.clone(),
        Arc::clone(&ready),
    );
    let http_task = tokio::spawn(cairn::http::serve(listener, Arc::clone(&server)));

    // The spool and its senders exist only when there is somewhere to send:
    // without [[remote_write]], cairn is a node_exporter and writes nothing.
    let mut spool = None;
    if !cfg.remote_write.is_empty() {
        let dir = cfg.wal.resolved_dir();
        let wal_cfg = cfg.wal.clone();
        let opened = tokio::task::spawn_blocking(move || cairn::wal::open(&wal_cfg, &dir)).await;
        let wal = match opened {
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
        let (writer, writer_task) = cairn::wal::writer::spawn(Arc::clone(&wal), WAL_QUEUE_BYTES);
        let sched_metrics = Arc::new(cairn::scheduler::SchedulerMetrics::default());
        let mut g = shared.lock().await;
        g.add_telemetry(Arc::new(cairn::wal::writer::WalTelemetry {
            wal: Arc::clone(&wal),
            writer: Arc::clone(writer.metrics()),
        }));
        g.add_telemetry(sched_metrics.clone());
        let mut senders = Vec::new();
        let mut sender_metrics = Vec::new();
        for (rw, name) in cfg.remote_write.iter().zip(&names) {
            let m = Arc::new(cairn::remote_write::SenderMetrics::new(name));
            g.add_telemetry(m.clone());
            sender_metrics.push(Arc::clone(&m));
            match cairn::remote_write::spawn(rw, name.clone(), Arc::clone(&wal), m, stop_rx.clone())
                .await
            {
                Ok(t) => senders.push(t),
                Err(e) => {
                    tracing::error!(remote = %name, error = %e, "cannot set up remote_write");
                    return Err(ExitCode::FAILURE);
                }
            }
        }
        drop(g);
        server.set_ready_note(cairn::http::ready::blocked_remotes(sender_metrics));
        spool = Some((writer, writer_task, sched_metrics, senders));
    }

    let mut sched_task = None;
    let mut progress = None;
    if let Some((writer, _, sched_metrics, _)) = &spool {
        let s = cairn::scheduler::Scheduler::new(
            Arc::clone(&shared),
            writer.clone(),
            cfg.global.scrape_interval.0,
            cfg.wal.flush_interval.0,
            &cfg.global.external_labels,
            Arc::clone(sched_metrics),
        );
        sched_task = Some(tokio::spawn(s.run(stop_rx.clone())));
        progress = Some(Arc::clone(sched_metrics));
    }
    ready.store(true, Ordering::Release);
    cairn::systemd::notify("READY=1");
    tracing::info!(
        address = %agent.listen,
        collectors = agent.collectors.len(),
        remotes = cfg.remote_write.len(),
        version = env!("CARGO_PKG_VERSION"),
        "cairn started"
    );
    if let Some(period) = cairn::systemd::watchdog_interval() {
        tokio::spawn(watchdog(period, progress, cfg.global.scrape_interval.0));
    }

    let exit = wait_for_signal(&agent).await;
    cairn::systemd::notify(match exit {
        Exit::Stop => "STOPPING=1",
        Exit::Reload => "RELOADING=1",
    });
    tracing::info!("shutting down");
    ready.store(false, Ordering::Release);
    let stopped_at = std::time::Instant::now();
    let _ = stop_tx.send(true);
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

/// Sends WATCHDOG=1 while the agent makes progress: with a scheduler, only
/// while collections keep happening (a hung scheduler gets restarted).
async fn watchdog(
    period: std::time::Duration,
    progress: Option<Arc<cairn::scheduler::SchedulerMetrics>>,
    interval: std::time::Duration,
) {
    let mut tick = tokio::time::interval(period);
    let started = std::time::SystemTime::now();
    loop {
        tick.tick().await;
        let alive = match &progress {
            None => true,
            Some(m) => {
                let last = m.last_collection_ms.load(Ordering::Relaxed);
                let now = cairn::clock::now_ms().max(0) as u64;
                let slack = (interval * 3).as_millis() as u64 + period.as_millis() as u64;
                let booting = started.elapsed().map(|e| e < interval * 3).unwrap_or(true);
                booting || now.saturating_sub(last) <= slack
            }
        };
        if alive {
            cairn::systemd::notify("WATCHDOG=1");
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
                match cli::parse(std::env::args_os()) {
                    Ok(_) => {
                        tracing::info!(config = ?agent.config_path, "SIGHUP: configuration valid; reloading");
                        return Exit::Reload;
                    }
                    Err(e) => tracing::error!(error = %e, "SIGHUP: new configuration is invalid; keeping the running one"),
                }
            }
        }
    }
}

fn wal_status(agent: &Agent) -> ExitCode {
    let dir = agent.config.wal.resolved_dir();
    match cairn::wal::status(&dir) {
        Ok(st) => {
            println!("WAL {}", dir.display());
            println!(
                "  size {} bytes in {} segments, {} records, {} samples",
                st.bytes, st.segments, st.records, st.samples
            );
            let fmt_ts = |t: Option<i64>| match t {
                Some(ms) => format!("{:.3}", ms as f64 / 1000.0),
                None => "-".into(),
            };
            println!(
                "  oldest sample {}  newest sample {}",
                fmt_ts(st.oldest_ts),
                fmt_ts(st.newest_ts)
            );
            if st.remotes.is_empty() {
                println!("  no remotes have cursors");
            }
            for (name, r) in &st.remotes {
                println!(
                    "  remote {name}: backlog {} samples, oldest unsent {}",
                    r.backlog_samples,
                    fmt_ts(r.oldest_ts)
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cairn: {e}");
            ExitCode::FAILURE
        }
    }
}
