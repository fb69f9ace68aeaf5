//! Helpers for the end-to-end tests that run cairn as an agent against a
//! receiver: starting it from a config file, reading its own /metrics,
//! polling until a condition holds, signalling it, and reading what a
//! Prometheus holds (instant queries, raw samples).
//!
//! Must never: retry an assertion silently (a poll that times out panics
//! and says what it waited for and what it last saw).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::http::{get, urlencode};
use super::receiver::Receiver;
use super::{cairn_bin, expo, Proc};

/// How long a started cairn gets to answer its readiness probe.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How often `wait_for` / `try_for` try again.
const POLL: Duration = Duration::from_millis(200);

/// Wall-clock now in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Writes `text` as `dir`/cairn.toml and returns its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("cairn.toml");
    std::fs::write(&p, text).expect("write cairn.toml");
    p
}

/// Starts cairn with `--config=config` and `args`, and waits until
/// 127.0.0.1:`port`/-/ready answers 200.
pub fn start_cairn(config: &Path, port: u16, args: &[&str]) -> Proc {
    start_cairn_until(config, port, args, "/-/ready")
}

/// `start_cairn`, waiting for `probe` (e.g. /-/healthy when the test
/// starts cairn with its remote blocked, so never ready).
pub fn start_cairn_until(config: &Path, port: u16, args: &[&str], probe: &str) -> Proc {
    let mut cmd = Command::new(cairn_bin());
    cmd.arg(format!("--config={}", config.display())).args(args);
    let mut p = Proc::spawn("cairn", &mut cmd);
    p.wait_ready(&format!("http://127.0.0.1:{port}{probe}"), START_TIMEOUT);
    p
}

/// Sends `sig` (a name such as HUP or KILL) to `p`.
pub fn signal(p: &Proc, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(p.pid().to_string())
        .status()
        .expect("kill");
    assert!(st.success(), "kill -{sig}");
}

/// Polls `f` until it returns Ok, at most `timeout`; panics with `what`
/// and the last error.
pub fn wait_for<T>(timeout: Duration, what: &str, f: impl FnMut() -> Result<T, String>) -> T {
    try_for(timeout, what, f).unwrap_or_else(|e| panic!("{e}"))
}

/// `wait_for` that returns the timeout as an error instead of panicking.
pub fn try_for<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let end = Instant::now() + timeout;
    loop {
        let last = match f() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if Instant::now() >= end {
            return Err(format!("{what}: not within {timeout:?}; last: {last}"));
        }
        sleep(POLL);
    }
}

/// cairn's own /metrics on `port`, parsed (an error on a non-200 answer).
pub fn metrics(port: u16) -> Result<expo::Families, String> {
    let r = get(&format!("http://127.0.0.1:{port}/metrics")).map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("status {}", r.status));
    }
    expo::parse(&r.text())
}

/// The value of one sample of cairn's /metrics, None when cairn does not
/// answer or has no such sample.
pub fn metric(port: u16, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics(port).ok()?.get(name)?.value(labels)
}

/// Sum of every sample of `name` (0 when the family is absent).
pub fn sum(f: &expo::Families, name: &str) -> f64 {
    f.get(name)
        .map_or(0.0, |fam| fam.samples.iter().map(|s| s.value).sum())
}

/// The JSON `data.result` of an instant query to the Prometheus API on
/// `port`, evaluated at `at_ms` when given.
pub fn query(port: u16, q: &str, at_ms: Option<i64>) -> Result<Vec<serde_json::Value>, String> {
    let mut url = format!(
        "http://127.0.0.1:{port}/api/v1/query?query={}",
        urlencode(q)
    );
    if let Some(t) = at_ms {
        url.push_str(&format!("&time={:.3}", t as f64 / 1000.0));
    }
    let r = get(&url).map_err(|e| e.to_string())?;
    let v: serde_json::Value =
        serde_json::from_str(&r.text()).map_err(|e| format!("{e}: {}", r.text()))?;
    if v["status"] != "success" {
        return Err(format!("status {}: {}", r.status, r.text()));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// (timestamp ms, value) of every raw sample of one range-query series.
pub fn samples(series: &serde_json::Value) -> Vec<(i64, f64)> {
    series["values"]
        .as_array()
        .map(|vals| {
            vals.iter()
                .filter_map(|p| {
                    let t = (p[0].as_f64()? * 1000.0).round() as i64;
                    let v = p[1].as_str()?.parse::<f64>().ok()?;
                    Some((t, v))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// (timestamp ms, value) of every raw sample `rx` holds over the last
/// `range` of the one series `selector` selects (an error unless exactly
/// one series matches).
pub fn raw(rx: &Receiver, selector: &str, range: &str) -> Result<Vec<(i64, f64)>, String> {
    let res = rx.query(&format!("{selector}[{range}]"))?;
    if res.len() != 1 {
        return Err(format!("{} series for {selector}: {res:?}", res.len()));
    }
    Ok(samples(&res[0]))
}

/// Timestamps (ms) of `raw`.
pub fn raw_timestamps(rx: &Receiver, selector: &str, range: &str) -> Result<Vec<i64>, String> {
    Ok(raw(rx, selector, range)?
        .into_iter()
        .map(|(t, _)| t)
        .collect())
}
