//! Every panel query of `mixin/cairn-dashboard.json` returns data from a
//! real Prometheus 2.42 that receives cairn's remote_write: the queries are
//! read from the dashboard itself, Grafana's variables replaced by the
//! values a user would pick (this agent's job and instance) and
//! `$__rate_interval` & co. by fixed ranges, then run through Prometheus'
//! HTTP API. A query naming a metric cairn does not export, or a label it
//! does not set, fails here.

mod common;

use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::http::{get, urlencode};
use common::{repo_path, tool, Proc, Tool};

/// Metrics exported by work that is merged separately: their queries may
/// return nothing here until then. Delete this list once all of them are
/// in the tree: every query must then return data.
const JOB: &str = "cairn";
const INSTANCE: &str = "e2e-host";

/// Every `expr` of every panel (rows' nested panels included), with the
/// panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let raw = std::fs::read_to_string(repo_path("mixin/cairn-dashboard.json")).expect("dashboard");
    let d: serde_json::Value = serde_json::from_str(&raw).expect("dashboard is JSON");
    let mut out = Vec::new();
    fn walk(panels: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            walk(&p["panels"], out);
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((p["title"].as_str().unwrap_or("?").to_owned(), e.to_owned()));
                }
            }
        }
    }
    walk(&d["panels"], &mut out);
    out
}

/// The query Grafana would send with job = JOB and instance = INSTANCE
/// selected and a 10 s rate interval (ten collections at 1 s).
fn substitute(expr: &str) -> String {
    let q = expr
        .replace("${job}", JOB)
        .replace("$job", JOB)
        .replace("${instance}", INSTANCE)
        .replace("$instance", INSTANCE)
        .replace("$__rate_interval", "10s")
        .replace("$__interval", "2s")
        .replace("$__range", "1m");
    assert!(!q.contains('$'), "a Grafana variable left in {q}");
    q
}

/// Result rows of an instant query, or the error Prometheus gave.
fn query(port: u16, q: &str) -> Result<usize, String> {
    let url = format!(
        "http://127.0.0.1:{port}/api/v1/query?query={}",
        urlencode(q)
    );
    let r = get(&url).map_err(|e| e.to_string())?;
    let v: serde_json::Value =
        serde_json::from_str(&r.text()).map_err(|e| format!("{e}: {}", r.text()))?;
    if v["status"] != "success" {
        return Err(format!("{}: {}", r.status, r.text()));
    }
    Ok(match v["data"]["resultType"].as_str() {
        Some("scalar") => 1,
        _ => v["data"]["result"].as_array().map_or(0, |a| a.len()),
    })
}

#[test]
fn every_dashboard_query_returns_data() {
    let queries = dashboard_queries();
    assert!(queries.len() >= 30, "only {} queries found", queries.len());
    let dir = tempfile::tempdir().expect("tempdir");
    let prom_port = common::free_port();
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).expect("mkdir");
    std::fs::write(
        prom_dir.join("prometheus.yml"),
        "global:\n  scrape_interval: 15s\n",
    )
    .expect("write");
    let mut prom = Proc::spawn(
        "prometheus",
        Command::new(tool(Tool::Prometheus))
            .arg(format!(
                "--config.file={}",
                prom_dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--web.enable-remote-write-receiver")
            .current_dir(&prom_dir),
    );
    prom.wait_ready(
        &format!("http://127.0.0.1:{prom_port}/-/ready"),
        Duration::from_secs(60),
    );

    // Two remotes: one delivering, one down, so backlog, failures and
    // retries have values.
    let port = common::free_port();
    let down = common::free_port();
    let cfg = dir.path().join("cairn.toml");
    std::fs::write(
        &cfg,
        format!(
            "[global]\nscrape_interval = \"1s\"\n\
             job = \"{JOB}\"\ninstance = \"{INSTANCE}\"\n\
             [web]\nlisten_address = \"127.0.0.1:{port}\"\n\
             [wal]\ndir = \"{}\"\n\
             [[remote_write]]\nname = \"central\"\nurl = \"http://127.0.0.1:{prom_port}/api/v1/write\"\n\
             queue_config = {{ batch_send_deadline = \"500ms\" }}\n\
             [[remote_write]]\nname = \"down\"\nurl = \"http://127.0.0.1:{down}/api/v1/write\"\n\
             queue_config = {{ min_backoff = \"50ms\", max_backoff = \"500ms\" }}\n",
            dir.path().join("wal").display()
        ),
    )
    .expect("write cairn.toml");
    let mut cairn = Proc::spawn(
        "cairn",
        Command::new(common::cairn_bin()).arg(format!("--config={}", cfg.display())),
    );
    cairn.wait_ready(
        &format!("http://127.0.0.1:{port}/-/ready"),
        Duration::from_secs(20),
    );

    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let mut missing: Vec<(String, String, String)>;
    loop {
        missing = Vec::new();
        for (title, expr) in &queries {
            let q = substitute(expr);
            match query(prom_port, &q) {
                Ok(n) if n > 0 => {}
                Ok(_) => missing.push((title.clone(), q, "no data".into())),
                Err(e) => missing.push((title.clone(), q, e)),
            }
        }
        // Syntax errors never heal: fail at once.
        if let Some((t, q, e)) = missing.iter().find(|(_, _, e)| e != "no data") {
            panic!("panel {t:?}: query {q} failed: {e}");
        }
        if missing.is_empty() || Instant::now() >= deadline {
            break;
        }
        sleep(Duration::from_secs(2));
    }
    let failed = missing;
    assert!(
        failed.is_empty(),
        "{} of {} queries returned no data after {:?}:\n{}\ncairn's output:\n{}",
        failed.len(),
        queries.len(),
        started.elapsed(),
        failed
            .iter()
            .map(|(t, q, e)| format!("  {t}: {q} ({e})"))
            .collect::<Vec<_>>()
            .join("\n"),
        cairn.output()
    );
    eprintln!(
        "{} queries returned data after {:?}",
        queries.len(),
        started.elapsed()
    );
}
