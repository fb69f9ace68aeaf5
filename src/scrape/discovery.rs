//! Service discovery: `static_configs`, `file_sd_configs` and
//! `http_sd_configs` turned into the targets to scrape, with Prometheus
//! 2.42's behaviour for each.
//!
//! Owns: one task per file_sd / http_sd entry, the target groups each has
//! found, and one aggregating task that rebuilds a job's targets
//! (`targets::build`) whenever one of its providers changes and publishes
//! every job's targets on the watch channel.
//!
//! - file_sd: the files matching each glob (`.json`, `.yml`, `.yaml`),
//!   each a list of `{targets, labels}`; every group gets
//!   `__meta_filepath`. A file that cannot be read or parsed keeps the
//!   groups it had (none if it never parsed); a file that is gone loses
//!   them. Changes are picked up within a second (file sizes and mtimes
//!   are polled each second, which costs one stat per file) and every file
//!   is read again at `refresh_interval`, as Prometheus does next to its
//!   inotify watch.
//! - http_sd: a GET of `url` at once and then every `refresh_interval`;
//!   only a 200 with a JSON content type and a JSON list counts; on any
//!   failure the last good groups stay. Every group gets `__meta_url`.
//!
//! Must never: touch the disk on the async runtime (globs, stats and reads
//! run on the blocking pool); let one provider's failure remove another's
//! targets; publish when nothing changed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use super::config::{expand_glob, Authorization, HttpSdConfig, ScrapeConfig};
use super::targets::{self, Group};
use super::Target;
use crate::config::BasicAuth;
use crate::secret::Secret;

/// How often file_sd checks its files for changes.
const FILE_POLL: Duration = Duration::from_secs(1);
/// An http_sd answer larger than this is refused (a list of targets, not
/// a data set).
const HTTP_SD_MAX_BODY: usize = 16 << 20;

static FILE_SD_READ_ERRORS: AtomicU64 = AtomicU64::new(0);
static HTTP_SD_FAILURES: AtomicU64 = AtomicU64::new(0);

/// `(file_sd read errors, http_sd refresh failures)` since start, as
/// Prometheus' `prometheus_sd_file_read_errors_total` and
/// `prometheus_sd_http_failures_total`.
pub fn counters() -> (u64, u64) {
    (
        FILE_SD_READ_ERRORS.load(Ordering::Relaxed),
        HTTP_SD_FAILURES.load(Ordering::Relaxed),
    )
}

/// New groups from one provider of one job.
struct Update {
    job: usize,
    provider: usize,
    groups: Vec<Group>,
}

/// Starts discovery for `configs` on the current tokio runtime. The
/// receiver always holds every target of every job, after relabeling;
/// discovery tasks end when it is dropped.
pub fn spawn(configs: Arc<Vec<ScrapeConfig>>) -> watch::Receiver<Arc<Vec<Target>>> {
    // Per job, per provider: the groups found so far. Provider 0 holds the
    // static groups, then one per file_sd entry, then one per http_sd entry.
    let mut state: Vec<Vec<Vec<Group>>> = configs
        .iter()
        .map(|c| {
            let statics = c
                .static_configs
                .iter()
                .map(|s| Group {
                    targets: s.targets.clone(),
                    labels: s.labels.clone(),
                })
                .collect();
            let mut providers = vec![statics];
            providers.resize_with(
                1 + c.file_sd_configs.len() + c.http_sd_configs.len(),
                Vec::new,
            );
            providers
        })
        .collect();
    let mut per_job: Vec<Vec<Target>> = configs
        .iter()
        .zip(&state)
        .map(|(c, p)| targets::build(c, &p.concat()))
        .collect();
    let (tx, rx) = watch::channel(Arc::new(per_job.concat()));
    let (up_tx, mut up_rx) = mpsc::unbounded_channel::<Update>();
    for (job, c) in configs.iter().enumerate() {
        for (i, f) in c.file_sd_configs.iter().enumerate() {
            let refresh = f
                .refresh_interval
                .map_or(super::config::FILE_SD_REFRESH, |d| d.0);
            tokio::spawn(file_sd(f.files.clone(), refresh, job, 1 + i, up_tx.clone()));
        }
        for (i, h) in c.http_sd_configs.iter().enumerate() {
            let provider = 1 + c.file_sd_configs.len() + i;
            tokio::spawn(http_sd(
                h.clone(),
                c.job_name.clone(),
                job,
                provider,
                up_tx.clone(),
            ));
        }
    }
    drop(up_tx);
    tokio::spawn(async move {
        loop {
            let first = tokio::select! {
                u = up_rx.recv() => match u {
                    Some(u) => u,
                    // No provider left: only static targets, already published.
                    None => { tx.closed().await; return; }
                },
                _ = tx.closed() => return,
            };
            // Everything already waiting goes into one rebuild.
            let mut changed = std::collections::BTreeSet::new();
            let mut next = Some(first);
            while let Some(u) = next {
                state[u.job][u.provider] = u.groups;
                changed.insert(u.job);
                next = up_rx.try_recv().ok();
            }
            let mut any = false;
            for job in changed {
                let built = targets::build(&configs[job], &state[job].concat());
                if built != per_job[job] {
                    per_job[job] = built;
                    any = true;
                }
            }
            if any && tx.send(Arc::new(per_job.concat())).is_err() {
                return;
            }
        }
    });
    rx
}

// ---------------------------------------------------------------------------
// Target group files and answers.

/// A target group as JSON states it; unknown keys are ignored, as Go's
/// `json.Unmarshal` does.
#[derive(Deserialize)]
struct JsonGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// The same in YAML, which Prometheus reads strictly.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Checks what Prometheus checks of a group list and adds the meta label.
fn groups_from(raw: Vec<Option<Group>>, meta: (&str, &str)) -> Result<Vec<Group>, String> {
    raw.into_iter()
        .map(|g| {
            let Group {
                targets,
                mut labels,
            } = g.ok_or("nil target group item found")?;
            if let Some(bad) = labels
                .keys()
                .find(|k| !crate::relabel::is_valid_label_name(k))
            {
                return Err(format!("{bad:?} is not a valid label name"));
            }
            labels.insert(meta.0.to_owned(), meta.1.to_owned());
            Ok(Group { targets, labels })
        })
        .collect()
}

fn parse_json(bytes: &[u8], meta: (&str, &str)) -> Result<Vec<Group>, String> {
    let raw: Vec<Option<JsonGroup>> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    groups_from(
        raw.into_iter()
            .map(|g| {
                g.map(|g| Group {
                    targets: g.targets,
                    labels: g.labels,
                })
            })
            .collect(),
        meta,
    )
}

fn parse_yaml(bytes: &[u8], meta: (&str, &str)) -> Result<Vec<Group>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(Vec::new());
    }
    let raw: Vec<Option<YamlGroup>> = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    groups_from(
        raw.into_iter()
            .map(|g| {
                g.map(|g| Group {
                    targets: g.targets,
                    labels: g.labels,
                })
            })
            .collect(),
        meta,
    )
}

// ---------------------------------------------------------------------------
// file_sd

/// What a file looked like when last read: a change to any of these makes
/// it read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
    ino: u64,
}

#[derive(Default)]
struct FileSdState {
    /// By path: the stamp of the last read and the groups it kept.
    files: BTreeMap<PathBuf, (Stamp, Vec<Group>)>,
}

impl FileSdState {
    fn groups(&self) -> Vec<Group> {
        self.files
            .values()
            .flat_map(|(_, g)| g.iter().cloned())
            .collect()
    }

    /// One poll (blocking): new, changed and vanished files; every file
    /// read when `full`. True when the groups changed.
    fn scan(&mut self, patterns: &[String], full: bool) -> bool {
        use std::os::unix::fs::MetadataExt;
        let mut found = std::collections::BTreeSet::new();
        for p in patterns {
            match expand_glob(p) {
                Ok(paths) => found.extend(paths),
                // Checked at load; a pattern cannot turn bad later.
                Err(e) => tracing::error!(pattern = %p, error = %e, "file_sd: bad glob"),
            }
        }
        let before = self.files.len();
        self.files.retain(|path, _| found.contains(path));
        let mut changed = self.files.len() != before;
        for path in found {
            let Ok(md) = std::fs::metadata(&path) else {
                // Gone between the glob and the stat: gone.
                changed |= self.files.remove(&path).is_some();
                continue;
            };
            let stamp = Stamp {
                mtime: md.modified().ok(),
                len: md.len(),
                ino: md.ino(),
            };
            let old = self.files.get(&path);
            if !full && old.is_some_and(|(s, _)| *s == stamp) {
                continue;
            }
            let name = path.to_string_lossy().into_owned();
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            let read = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    if ext == "json" {
                        parse_json(&b, ("__meta_filepath", &name))
                    } else {
                        parse_yaml(&b, ("__meta_filepath", &name))
                    }
                });
            match read {
                Ok(groups) => {
                    changed |= old.map_or(true, |(_, g)| *g != groups);
                    self.files.insert(path, (stamp, groups));
                }
                Err(e) => {
                    FILE_SD_READ_ERRORS.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(path = %name, error = %e, "file_sd: error reading file, its previous targets are kept");
                    // As Prometheus: the file keeps what it had. The new
                    // stamp avoids reading (and logging) it every second.
                    let kept = old.map(|(_, g)| g.clone()).unwrap_or_default();
                    self.files.insert(path, (stamp, kept));
                }
            }
        }
        changed
    }
}

async fn file_sd(
    patterns: Vec<String>,
    refresh: Duration,
    job: usize,
    provider: usize,
    tx: mpsc::UnboundedSender<Update>,
) {
    let patterns = Arc::new(patterns);
    let mut state = Some(FileSdState::default());
    let mut last_full: Option<Instant> = None;
    loop {
        let full = last_full.map_or(true, |t| t.elapsed() >= refresh);
        if full {
            last_full = Some(Instant::now());
        }
        let mut st = state.take().unwrap_or_default();
        let pats = Arc::clone(&patterns);
        let result = tokio::task::spawn_blocking(move || {
            let changed = st.scan(&pats, full);
            (st, changed)
        })
        .await;
        let (st, changed) = match result {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "file_sd: scan task failed");
                (FileSdState::default(), false)
            }
        };
        // The first scan always reports, so the job's targets are known.
        if (changed || full)
            && tx
                .send(Update {
                    job,
                    provider,
                    groups: st.groups(),
                })
                .is_err()
        {
            return;
        }
        state = Some(st);
        tokio::select! {
            _ = tokio::time::sleep(FILE_POLL) => {}
            _ = tx.closed() => return,
        }
    }
}

// ---------------------------------------------------------------------------
// http_sd

/// The HTTP side of one http_sd entry.
struct SdClient {
    http: reqwest::Client,
    /// As configured: the `__meta_url` of every target it gives.
    url: String,
    /// What is requested: `url`, or with `tls_config.server_name` the same
    /// under that name (`tls_client::name_peer`).
    request: reqwest::Url,
    /// With `server_name`: the URL's own `host[:port]`, sent as `Host`.
    host: Option<reqwest::header::HeaderValue>,
    refresh: Duration,
    basic: Option<BasicAuth>,
    authorization: Option<Authorization>,
}

/// Blocking (reads TLS files): build on the blocking pool.
fn sd_client(cfg: &HttpSdConfig, refresh: Duration) -> Result<SdClient, String> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(crate::remote_write::client::USER_AGENT)
        // The answer must come before the next refresh is due.
        .timeout(refresh)
        .no_proxy();
    b = crate::tls_client::apply(b, &cfg.tls_config)?;
    let mut request =
        reqwest::Url::parse(&cfg.url).map_err(|e| format!("url {:?}: {e}", cfg.url))?;
    let mut host = None;
    if let Some(name) = &cfg.tls_config.server_name {
        let (named, peer) = crate::tls_client::name_peer(b, &mut request, name)?;
        b = named;
        host = peer.host;
    }
    Ok(SdClient {
        http: b.build().map_err(|e| format!("HTTP client: {e}"))?,
        url: cfg.url.clone(),
        request,
        host,
        refresh,
        basic: cfg.basic_auth.clone(),
        authorization: cfg.authorization.clone(),
    })
}

impl SdClient {
    async fn refresh(&self) -> Result<Vec<Group>, String> {
        let mut req = self
            .http
            .get(self.request.clone())
            .header("Accept", "application/json")
            .header(
                "X-Prometheus-Refresh-Interval-Seconds",
                format!("{}", self.refresh.as_secs_f64()),
            );
        if let Some(h) = &self.host {
            req = req.header(reqwest::header::HOST, h.clone());
        }
        if let Some(b) = &self.basic {
            let password = match (&b.password, &b.password_file) {
                (Some(p), _) => Some(p.clone()),
                (None, Some(f)) => Some(Secret::File(f.clone()).get().await?),
                (None, None) => None,
            };
            req = req.basic_auth(&b.username, password);
        } else if let Some(a) = &self.authorization {
            let cred = match (&a.credentials, &a.credentials_file) {
                (Some(c), _) => c.clone(),
                (None, Some(f)) => Secret::File(f.clone()).get().await?,
                (None, None) => String::new(),
            };
            req = req.header("Authorization", format!("{} {cred}", a.kind.trim()));
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(format!("server returned HTTP status {}", resp.status()));
        }
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_owned();
        if !is_json_content_type(&ct) {
            return Err(format!("unsupported content type {ct:?}"));
        }
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > HTTP_SD_MAX_BODY {
                return Err(format!("answer larger than {HTTP_SD_MAX_BODY} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        parse_json(&body, ("__meta_url", &self.url))
    }
}

/// Prometheus' `^(?i:application\/json(;\s*charset=("utf-8"|utf-8))?)$`.
fn is_json_content_type(ct: &str) -> bool {
    let lower = ct.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("application/json") else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let Some(rest) = rest.strip_prefix(';') else {
        return false;
    };
    matches!(
        rest.trim_start_matches(char::is_whitespace),
        "charset=utf-8" | "charset=\"utf-8\""
    )
}

async fn http_sd(
    cfg: HttpSdConfig,
    job_name: String,
    job: usize,
    provider: usize,
    tx: mpsc::UnboundedSender<Update>,
) {
    let refresh = cfg
        .refresh_interval
        .map_or(super::config::HTTP_SD_REFRESH, |d| d.0);
    let mut client: Option<SdClient> = None;
    let mut last: Option<Vec<Group>> = None;
    loop {
        if client.is_none() {
            let c = cfg.clone();
            match tokio::task::spawn_blocking(move || sd_client(&c, refresh)).await {
                Ok(Ok(c)) => client = Some(c),
                Ok(Err(e)) => {
                    HTTP_SD_FAILURES.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(job = %job_name, url = %cfg.url, error = %e, "http_sd: cannot build the client");
                }
                Err(e) => {
                    tracing::error!(job = %job_name, error = %e, "http_sd: client task failed")
                }
            }
        }
        if let Some(c) = &client {
            match c.refresh().await {
                Ok(groups) => {
                    if last.as_ref() != Some(&groups) {
                        last = Some(groups.clone());
                        if tx
                            .send(Update {
                                job,
                                provider,
                                groups,
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                Err(e) => {
                    // As Prometheus: logged, and the last good groups stay.
                    HTTP_SD_FAILURES.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(job = %job_name, url = %cfg.url, error = %e, "http_sd: unable to refresh target groups");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(refresh) => {}
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests;
