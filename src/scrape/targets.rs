//! From discovered target groups to the targets to scrape, exactly as
//! Prometheus 2.42's `TargetsFromGroup` / `PopulateLabels` and its scrape
//! pool's target limit.
//!
//! Owns: the target labels (`job`, `__address__`, `__scheme__`,
//! `__metrics_path__`, `__scrape_interval__`, `__scrape_timeout__`,
//! `__param_<name>`, group and meta labels), `relabel_configs`, the default
//! port, `instance`, the scrape URL, a target's interval and timeout from
//! its relabeled labels, the stable target hash, and `target_limit`.
//!
//! Must never: do I/O or block (discovery calls it after every change);
//! keep a target whose labels say it cannot be scraped (it is logged and
//! left out, as Prometheus fails it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::config::ScrapeConfig;
use super::Target;
use crate::relabel::{Labels, Scratch};

/// One target group as discovery found it: addresses, the labels the
/// group gives them all, and discovery's `__meta_*` labels (merged into
/// `labels`, as Prometheus does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// Times a job had more targets than its `target_limit`. The targets are
/// kept: as in Prometheus, the manager fails every scrape of the job
/// (`up` = 0 for each), rather than letting them vanish as stale.
static TARGET_LIMIT_EXCEEDED: AtomicU64 = AtomicU64::new(0);

/// Targets left out because their labels were invalid (no address, a bad
/// interval, ...), summed over every rebuild.
static TARGET_ERRORS: AtomicU64 = AtomicU64::new(0);

/// `(target_limit exceeded, invalid targets)` since start, for self-metrics.
pub fn counters() -> (u64, u64) {
    (
        TARGET_LIMIT_EXCEEDED.load(Ordering::Relaxed),
        TARGET_ERRORS.load(Ordering::Relaxed),
    )
}

/// Every target of one job from all its groups: each built by
/// `populate`, duplicates (same hash) scraped once. More than
/// `target_limit` is logged and counted here and enforced by the manager.
/// Errors are logged and counted.
pub fn build(cfg: &ScrapeConfig, groups: &[Group]) -> Vec<Target> {
    let mut scratch = Scratch::default();
    let mut out: Vec<Target> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for group in groups {
        for (i, addr) in group.targets.iter().enumerate() {
            match populate(addr, &group.labels, cfg, &mut scratch) {
                Ok(Some(t)) => {
                    if seen.insert(t.hash) {
                        out.push(t);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    TARGET_ERRORS.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(job = %cfg.job_name, target = i, address = %addr, error = %e, "invalid target, not scraped");
                }
            }
        }
    }
    if cfg.target_limit > 0 && out.len() as u64 > cfg.target_limit {
        TARGET_LIMIT_EXCEEDED.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            job = %cfg.job_name,
            targets = out.len(),
            target_limit = cfg.target_limit,
            "target_limit exceeded: every target of the job is kept, and each scrape fails"
        );
    }
    out
}

/// Prometheus' `PopulateLabels` for one address of a group: `Ok(None)`
/// when relabeling drops it, `Err` (Prometheus' message) when it cannot
/// be scraped.
pub fn populate(
    address: &str,
    group_labels: &BTreeMap<String, String>,
    cfg: &ScrapeConfig,
    scratch: &mut Scratch,
) -> Result<Option<Target>, String> {
    // The target's own label (`__address__`) wins over the group's.
    let mut lset = Labels::from_pairs(
        std::iter::once(("__address__", address))
            .chain(group_labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    );
    let interval = prom_duration(cfg.interval());
    let timeout = prom_duration(cfg.timeout());
    for (name, value) in [
        ("job", cfg.job_name.as_str()),
        ("__scrape_interval__", interval.as_str()),
        ("__scrape_timeout__", timeout.as_str()),
        ("__metrics_path__", cfg.metrics_path.as_str()),
        ("__scheme__", cfg.scheme.as_str()),
    ] {
        if lset.get(name).is_empty() {
            lset.set(name, value);
        }
    }
    for (k, v) in &cfg.params {
        if let Some(first) = v.first() {
            lset.set(&format!("__param_{k}"), first);
        }
    }
    if !cfg.relabel.process(&mut lset, scratch) {
        return Ok(None);
    }
    let mut addr = lset.get("__address__").to_owned();
    if addr.is_empty() {
        return Err("no address".into());
    }
    // A port is added only where one is missing and adding one makes the
    // address valid (Go's net.SplitHostPort decides both).
    if split_host_port(&addr).is_none() && split_host_port(&format!("{addr}:1234")).is_some() {
        match lset.get("__scheme__") {
            "http" | "" => addr.push_str(":80"),
            "https" => addr.push_str(":443"),
            // Prometheus names the configured scheme here, not the label.
            _ => return Err(format!("invalid scheme: {:?}", cfg.scheme)),
        }
        lset.set("__address__", &addr);
    }
    if addr.contains('/') {
        return Err(format!("{addr:?} is not a valid hostname"));
    }
    let interval_s = lset.get("__scrape_interval__").to_owned();
    let interval = crate::config::parse_duration(&interval_s)
        .map_err(|e| format!("error parsing scrape interval: {e}"))?;
    if interval.is_zero() {
        return Err("scrape interval cannot be 0".into());
    }
    let timeout_s = lset.get("__scrape_timeout__").to_owned();
    let timeout = crate::config::parse_duration(&timeout_s)
        .map_err(|e| format!("error parsing scrape timeout: {e}"))?;
    if timeout.is_zero() {
        return Err("scrape timeout cannot be 0".into());
    }
    if timeout > interval {
        return Err(format!(
            "scrape timeout cannot be greater than scrape interval ({timeout_s:?} > {interval_s:?})"
        ));
    }
    if lset.get("instance").is_empty() {
        lset.set("instance", &addr);
    }
    let url = target_url(&lset, &cfg.params);
    // `__meta_*` go after relabeling, and every other `__` label once the
    // URL is built: a target's series carry none of them.
    let labels = Labels::from_pairs(lset.iter().filter(|(k, _)| !k.starts_with("__")));
    let hash = target_hash(&labels, &url);
    Ok(Some(Target {
        job: cfg.job_name.clone(),
        labels,
        url,
        interval,
        timeout,
        hash,
    }))
}

/// FNV-1a over the labels and the URL: the same target gets the same hash
/// in every run and on every host (its scrape offset depends on it).
fn target_hash(labels: &Labels, url: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (k, v) in labels.iter() {
        eat(k.as_bytes());
        eat(&[0xff]);
        eat(v.as_bytes());
        eat(&[0xff]);
    }
    eat(url.as_bytes());
    h
}

/// Prometheus' `Target.URL()`: the configured `params`, each first value
/// replaced (or added) by a `__param_<name>` label, then Go's
/// `url.URL.String()` of scheme, address, path and sorted query.
fn target_url(lset: &Labels, params: &BTreeMap<String, Vec<String>>) -> String {
    let mut merged = params.clone();
    for (k, v) in lset.iter() {
        if let Some(name) = k.strip_prefix("__param_") {
            let values = merged.entry(name.to_owned()).or_default();
            match values.first_mut() {
                Some(first) => *first = v.to_owned(),
                None => values.push(v.to_owned()),
            }
        }
    }
    let mut url = format!("{}://{}", lset.get("__scheme__"), lset.get("__address__"));
    let path = lset.get("__metrics_path__");
    if !path.is_empty() && !path.starts_with('/') {
        url.push('/');
    }
    escape_into(&mut url, path, false);
    let mut first = true;
    for (k, values) in &merged {
        for v in values {
            url.push(if first { '?' } else { '&' });
            first = false;
            escape_into(&mut url, k, true);
            url.push('=');
            escape_into(&mut url, v, true);
        }
    }
    url
}

/// Go's `url` escaping: in a path `$&+,/:;=@` stay; in a query component
/// only unreserved characters stay and a space becomes `+`.
fn escape_into(out: &mut String, s: &str, query: bool) {
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (!query
                && matches!(
                    b,
                    b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'@'
                ));
        if keep {
            out.push(char::from(b));
        } else if query && b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Go's `net.SplitHostPort`: `Some((host, port))` when the address has a
/// port part (possibly empty), `None` when Go would return an error.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    let i = s.rfind(':')?;
    let (host, j, k) = if s.starts_with('[') {
        let end = s.find(']')?;
        if end + 1 != i {
            return None;
        }
        (&s[1..end], 1, end + 1)
    } else {
        let host = &s[..i];
        if host.contains(':') {
            return None;
        }
        (host, 0, 0)
    };
    if s[j..].contains('[') || s[k..].contains(']') {
        return None;
    }
    Some((host, &s[i + 1..]))
}

/// Prometheus' `model.Duration.String()`: years and weeks only when exact,
/// then days, hours, minutes, seconds, milliseconds; `0s` for zero.
pub fn prom_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".into();
    }
    const DAY: u64 = 86_400_000;
    let mut out = String::new();
    for (unit, mult, exact) in [
        ("y", 365 * DAY, true),
        ("w", 7 * DAY, true),
        ("d", DAY, false),
        ("h", 3_600_000, false),
        ("m", 60_000, false),
        ("s", 1000, false),
        ("ms", 1, false),
    ] {
        if exact && ms % mult != 0 {
            continue;
        }
        let v = ms / mult;
        if v > 0 {
            out.push_str(&format!("{v}{unit}"));
            ms -= v * mult;
        }
    }
    out
}

#[cfg(test)]
mod tests;
