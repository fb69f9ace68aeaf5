//! What the agent-mode comparisons share: Prometheus 2.42 in agent mode and
//! cairn started on one `scrape_configs` YAML, both writing into one
//! receiving Prometheus told apart only by the external label `agent`
//! (`prom` or `cairn`), and reading back per job what each delivered.
//!
//! Must never: compare an agent against itself, or call two series sets
//! equal while one is empty.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::agent::{start_cairn, wait_for, write_config};
use super::receiver::Receiver;
use super::{free_port, tool, Proc, Tool};

/// Scrape interval of every job; short, so the tests take seconds.
pub const INTERVAL: &str = "1s";
pub const TIMEOUT: &str = "900ms";
/// How long agents get to converge on a state in the receiver (Prometheus'
/// agent sends every `batch_send_deadline`, cairn every flush).
pub const CONVERGE: Duration = Duration::from_secs(40);

/// The series every scrape adds per target, in both agents.
pub const SYNTHETIC: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Starts Prometheus 2.42 in agent mode with `scrape` appended to its own
/// global and remote_write sections.
pub fn start_prometheus_agent(dir: &Path, rx: &Receiver, scrape: &str) -> (u16, Proc) {
    let dir = dir.join("prom-agent");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let cfg = dir.join("agent.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: {INTERVAL}\n  scrape_timeout: {TIMEOUT}\n  external_labels:\n    agent: prom\n\
             remote_write:\n  - url: {}\n    queue_config:\n      batch_send_deadline: 500ms\n{scrape}",
            rx.write_url()
        ),
    )
    .expect("write agent.yml");
    let port = free_port();
    let mut cmd = Command::new(tool(Tool::Prometheus));
    cmd.arg("--enable-feature=agent")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.agent.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .current_dir(&dir);
    let mut p = Proc::spawn("prometheus-agent", &mut cmd);
    p.wait_ready(
        &format!("http://127.0.0.1:{port}/-/ready"),
        Duration::from_secs(60),
    );
    (port, p)
}

/// Starts cairn reading `scrape_file` through `scrape_config_files`.
pub fn start_cairn_agent(dir: &Path, rx: &Receiver, scrape_file: &Path) -> (u16, Proc) {
    let dir = dir.join("cairn");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let port = free_port();
    let cfg = write_config(
        &dir,
        &format!(
            "scrape_config_files = [\"{}\"]\n\
             [global]\nscrape_interval = \"{INTERVAL}\"\nexternal_labels = {{ agent = \"cairn\" }}\n\
             [web]\nlisten_address = \"127.0.0.1:{port}\"\n\
             [wal]\ndir = \"{}\"\n\
             [[remote_write]]\nname = \"receiver\"\nurl = \"{}\"\n\
             queue_config = {{ batch_send_deadline = \"500ms\" }}\n",
            scrape_file.display(),
            dir.join("wal").display(),
            rx.write_url()
        ),
    );
    // Its own host metrics are not what these tests compare: few collectors.
    let p = start_cairn(
        &cfg,
        port,
        &["--collector.disable-defaults", "--collector.loadavg"],
    );
    (port, p)
}

/// One series' labels, without the agent's external label.
pub type Series = BTreeMap<String, String>;

/// What one agent delivered for one job: each series with its value.
pub type Delivered = BTreeMap<Series, String>;

/// Every series `agent` delivered for `job` that is not stale at the
/// query's instant, keyed by its labels without `agent`, with its value.
pub fn delivered(rx: &Receiver, agent: &str, job: &str) -> Result<Delivered, String> {
    let res = rx.query(&format!("{{agent=\"{agent}\",job=\"{job}\"}}"))?;
    let mut out = BTreeMap::new();
    for s in res {
        let mut labels: Series = s["metric"]
            .as_object()
            .ok_or("series without labels")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        labels.remove("agent");
        let value = s["value"][1].as_str().unwrap_or_default().to_owned();
        out.insert(labels, value);
    }
    Ok(out)
}

/// The metric names of a series set.
pub fn names(s: &Delivered) -> BTreeSet<String> {
    s.keys()
        .filter_map(|l| l.get("__name__").cloned())
        .collect()
}

/// Differences between two agents' series sets, for a failure message.
pub fn diff(prom: &Delivered, cairn: &Delivered) -> String {
    let only_prom: Vec<_> = prom.keys().filter(|k| !cairn.contains_key(*k)).collect();
    let only_cairn: Vec<_> = cairn.keys().filter(|k| !prom.contains_key(*k)).collect();
    format!(
        "{} series only from Prometheus: {only_prom:?}\n{} only from cairn: {only_cairn:?}",
        only_prom.len(),
        only_cairn.len()
    )
}

/// Waits until both agents delivered the same, non-empty set of series
/// for `job`, and returns (Prometheus', cairn's).
pub fn same_series(rx: &Receiver, job: &str) -> (Delivered, Delivered) {
    wait_for(CONVERGE, &format!("job {job}: the same series"), || {
        let p = delivered(rx, "prom", job)?;
        let c = delivered(rx, "cairn", job)?;
        let (pk, ck): (BTreeSet<_>, BTreeSet<_>) = (p.keys().collect(), c.keys().collect());
        if !p.is_empty() && pk == ck {
            Ok((p, c))
        } else {
            Err(diff(&p, &c))
        }
    })
}
