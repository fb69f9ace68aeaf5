//! The `cairn` binary: parse the command line, then run the agent, one
//! collection, or a config check. All logic lives in the library.

use std::process::ExitCode;

use cairn::agent::{self, gatherer, runtime};
use cairn::cli::{self, Agent, Invocation};
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

fn main() -> ExitCode {
    let inv = match cli::parse(std::env::args_os()) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("cairn: {e}");
            return ExitCode::from(2);
        }
    };
    match inv {
        Invocation::CheckConfig(path) => match cli::check_config(&path) {
            Ok(_) => {
                println!("{}: OK", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cairn: {e}");
                ExitCode::FAILURE
            }
        },
        Invocation::WalStatus(agent, json) => wal_status(&agent, json),
        Invocation::Collect(agent) => {
            init_logging(&agent.log_level);
            collect_once(&agent)
        }
        Invocation::Run(agent) => {
            init_logging(&agent.log_level);
            agent::run(agent)
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

/// `cairn wal status`: the WAL read from disk (read-only), joined with the
/// running agent's live facts from its /status.json when it answers.
fn wal_status(agent: &Agent, json: bool) -> ExitCode {
    use cairn::http::status;
    let dir = agent.config.wal.resolved_dir();
    let st = match cairn::wal::status(&dir) {
        Ok(st) => st,
        Err(e) => {
            eprintln!("cairn: {e}");
            return ExitCode::FAILURE;
        }
    };
    let live = fetch_live_status(agent.listen);
    let report = status::WalReport::new(&dir, &st, live.as_ref(), cairn::clock::now_ms());
    let out = if json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cairn: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        report.to_text()
    };
    println!("{out}");
    ExitCode::SUCCESS
}

/// The running agent's /status.json, if one answers on `listen` within
/// two seconds (an unspecified address is asked on loopback).
fn fetch_live_status(listen: std::net::SocketAddr) -> Option<cairn::http::status::Status> {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let url = format!("http://{addr}/status.json");
    let rt = runtime().ok()?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(2))
            .no_proxy()
            .build()
            .ok()?;
        let resp = client.get(&url).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body = resp.bytes().await.ok()?;
        serde_json::from_slice(&body).ok()
    })
}
