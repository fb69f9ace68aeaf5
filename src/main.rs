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
        Invocation::WalStatus(_) => {
            eprintln!("cairn: wal status is not available in this build");
            ExitCode::FAILURE
        }
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
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(agent.listen).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(address = %agent.listen, error = %e, "cannot listen");
                return ExitCode::FAILURE;
            }
        };
        let ready = Arc::new(AtomicBool::new(false));
        let server = cairn::http::Server::new(
            Arc::new(tokio::sync::Mutex::new(gatherer(&agent))),
            agent.telemetry_path.clone(),
            Arc::clone(&ready),
        );
        tracing::info!(
            address = %agent.listen,
            collectors = agent.collectors.len(),
            version = env!("CARGO_PKG_VERSION"),
            "cairn listening"
        );
        ready.store(true, Ordering::Release);
        tokio::select! {
            _ = cairn::http::serve(listener, server) => ExitCode::SUCCESS,
            _ = shutdown_signal() => {
                tracing::info!("shutting down");
                ExitCode::SUCCESS
            }
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}
