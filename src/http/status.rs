//! The status page (`/`) and `/status.json`: what a person (or a script)
//! asks an agent first — is it running, is each remote getting its data,
//! how big is the WAL, which collectors fail.
//!
//! Owns: the `Status` snapshot (also what `cairn wal status` prints and
//! reads back from a running agent), its HTML rendering (one page, inline
//! CSS, no scripts, nothing fetched from elsewhere) and JSON. Must never:
//! take the gatherer's lock (a page view must not wait for a collection),
//! do I/O beyond the WAL's in-memory stats, or show credentials (remote
//! URLs are not shown: they may carry a user and password).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::collect::CollectorStat;
use crate::remote_write::{DropReason, SenderMetrics};
use crate::wal::writer::WriterHandle;
use crate::wal::RemoteStatus;

/// Older than this, a remote that is not failing is "behind" on the page:
/// a healthy one stays within a scrape interval plus batch_send_deadline.
const BEHIND_SECONDS: f64 = 120.0;

/// One remote's facts, from the sender (live) and the WAL (backlog).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RemoteFacts {
    pub name: String,
    /// ok, behind, failing, blocked, waiting (nothing delivered yet), or
    /// unknown (`cairn wal status` without a running agent).
    pub state: String,
    /// Committed samples the remote has not acknowledged.
    pub backlog_samples: Option<u64>,
    /// Age of the oldest of those samples.
    pub oldest_unsent_age_seconds: Option<f64>,
    /// Unix seconds of the last accepted request.
    pub last_success: Option<f64>,
    pub last_error: Option<String>,
    /// Unix seconds of the last failed attempt.
    pub last_error_at: Option<f64>,
    pub failures_in_a_row: Option<u64>,
    /// unauthorized, forbidden or not_found while the receiver refuses.
    pub blocked_reason: Option<String>,
    pub samples_sent: Option<u64>,
    pub samples_dropped: Option<u64>,
}

impl RemoteFacts {
    /// Facts of a remote from what is known: the sender's counters (only in
    /// the running agent) and the WAL's view of its cursor.
    pub fn new(
        name: &str,
        sender: Option<&SenderMetrics>,
        wal: Option<&RemoteStatus>,
        now_ms: i64,
    ) -> RemoteFacts {
        let age = wal.and_then(|w| w.oldest_ts).map(|ts| age_s(now_ms, ts));
        let mut f = RemoteFacts {
            name: name.to_owned(),
            state: "unknown".into(),
            backlog_samples: wal.map(|w| w.backlog_samples),
            oldest_unsent_age_seconds: age,
            ..RemoteFacts::default()
        };
        let Some(m) = sender else {
            return f;
        };
        let last_ok = m.last_success_ms();
        f.last_success = (last_ok > 0).then(|| last_ok as f64 / 1000.0);
        if let Some((at, text)) = m.last_error() {
            f.last_error_at = Some(at as f64 / 1000.0);
            f.last_error = Some(text);
        }
        f.failures_in_a_row = Some(m.failures_in_a_row());
        f.blocked_reason = m.blocked().map(|r| r.as_str().to_owned());
        f.samples_sent = Some(m.samples_sent());
        f.samples_dropped = Some(DropReason::ALL.iter().map(|r| m.samples_dropped(*r)).sum());
        f.state = if f.blocked_reason.is_some() {
            "blocked"
        } else if m.failures_in_a_row() > 0 {
            "failing"
        } else if age.is_some_and(|a| a > BEHIND_SECONDS) {
            "behind"
        } else if last_ok == 0 {
            "waiting"
        } else {
            "ok"
        }
        .into();
        f
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WalFacts {
    pub dir: String,
    pub bytes: u64,
    pub segments: u64,
    pub records: u64,
    pub samples: u64,
    pub oldest_sample_age_seconds: Option<f64>,
    pub corruptions: u64,
    pub write_errors: u64,
    /// Collections waiting in memory because the disk refuses writes.
    pub queue_bytes: u64,
    /// Samples dropped before sending, by reason.
    pub dropped: std::collections::BTreeMap<String, u64>,
    /// Since the agent started: bytes of file-system blocks the WAL's
    /// writes sent to the device (the segment engine's own count, see
    /// `WalStats::device_bytes`: records, the zeros ahead of them, cursors;
    /// not the file system's journal, not a stage on tmpfs), and the
    /// samples handed to the WAL writer. The sled engine cannot tell, so
    /// there it is the kernel's `/proc/self/io` write_bytes, which counts a
    /// whole page cache folio (1 MiB measured on ext4, Linux 6.18) per dirtied one and
    /// read 2.6 to 5.9 times the device's figure for the segment engine.
    #[serde(default)]
    pub disk_bytes_written: u64,
    #[serde(default)]
    pub samples_spooled: u64,
}

impl WalFacts {
    /// Disk bytes written per sample since the agent started.
    pub fn disk_bytes_per_sample(&self) -> Option<f64> {
        (self.samples_spooled > 0)
            .then(|| self.disk_bytes_written as f64 / self.samples_spooled as f64)
    }
}

/// The WAL engine's own count of device blocks; for an engine that cannot
/// count (sled), the kernel's inflated figure rather than none.
fn disk_bytes_written(st: &crate::wal::WalStats) -> u64 {
    st.device_bytes.unwrap_or_else(own_write_bytes)
}

/// This process's `write_bytes` from `/proc/self/io` (0 if unreadable).
fn own_write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CollectorFacts {
    pub name: String,
    /// ok, failed, "no data" (the host lacks its source), "not run yet".
    pub state: String,
    pub last_duration_seconds: f64,
    pub errors: u64,
}

/// Everything the page shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    /// Unix seconds.
    pub started: f64,
    pub uptime_seconds: f64,
    pub config_file: Option<String>,
    pub listen_address: String,
    pub telemetry_path: String,
    pub remotes: Vec<RemoteFacts>,
    /// None without `[[remote_write]]` (nothing is written to disk).
    pub wal: Option<WalFacts>,
    pub collectors: Vec<CollectorFacts>,
}

struct WalSource {
    /// The writer's handle: its counters and its statistics snapshot, so a
    /// page view never scans segments on the async runtime.
    writer: WriterHandle,
    dir: PathBuf,
}

/// What the running agent registers for the page; read on each request.
pub struct StatusBoard {
    started_ms: i64,
    config_file: Option<PathBuf>,
    listen_address: String,
    telemetry_path: String,
    collectors: Arc<[CollectorStat]>,
    remotes: Mutex<Vec<Arc<SenderMetrics>>>,
    wal: Mutex<Option<WalSource>>,
}

impl StatusBoard {
    pub fn new(
        config_file: Option<PathBuf>,
        listen_address: String,
        telemetry_path: String,
        collectors: Arc<[CollectorStat]>,
    ) -> Arc<StatusBoard> {
        Arc::new(StatusBoard {
            started_ms: now_ms(),
            config_file,
            listen_address,
            telemetry_path,
            collectors,
            remotes: Mutex::new(Vec::new()),
            wal: Mutex::new(None),
        })
    }

    pub fn add_remote(&self, m: Arc<SenderMetrics>) {
        lock(&self.remotes).push(m);
    }

    pub fn set_wal(&self, writer: WriterHandle, dir: PathBuf) {
        *lock(&self.wal) = Some(WalSource { writer, dir });
    }

    pub fn snapshot(&self) -> Status {
        let now = now_ms();
        let stats = lock(&self.wal).as_ref().map(|w| {
            (
                w.writer.stats(),
                Arc::clone(w.writer.metrics()),
                w.dir.clone(),
            )
        });
        let remotes = lock(&self.remotes)
            .iter()
            .map(|m| {
                let rs = stats
                    .as_ref()
                    .and_then(|(s, _, _)| s.remotes.get(m.remote()));
                RemoteFacts::new(m.remote(), Some(m), rs, now)
            })
            .collect();
        let wal = stats.map(|(st, w, dir)| WalFacts {
            dir: dir.display().to_string(),
            bytes: st.bytes,
            segments: st.segments,
            records: st.records,
            samples: st.samples,
            oldest_sample_age_seconds: st.oldest_ts.map(|ts| age_s(now, ts)),
            corruptions: st.corruptions,
            write_errors: w.write_errors.load(Ordering::Relaxed),
            queue_bytes: w.queued_bytes.load(Ordering::Relaxed),
            // The WAL's reasons appear once counted; name the usual
            // ones from the start so the page shows them at 0.
            dropped: ["max_age", "max_size", "corruption"]
                .iter()
                .map(|k| (k.to_string(), 0))
                .chain(st.dropped.iter().map(|(k, v)| (k.to_string(), *v)))
                .chain(std::iter::once((
                    "queue_full".to_string(),
                    w.dropped_queue_full.load(Ordering::Relaxed),
                )))
                .collect(),
            disk_bytes_written: disk_bytes_written(&st),
            samples_spooled: w.samples_queued.load(Ordering::Relaxed),
        });
        Status {
            version: env!("CARGO_PKG_VERSION").into(),
            started: self.started_ms as f64 / 1000.0,
            uptime_seconds: age_s(now, self.started_ms),
            config_file: self.config_file.as_ref().map(|p| p.display().to_string()),
            listen_address: self.listen_address.clone(),
            telemetry_path: self.telemetry_path.clone(),
            remotes,
            wal,
            collectors: self
                .collectors
                .iter()
                .map(|c| CollectorFacts {
                    name: c.name.to_owned(),
                    state: match c.last_ok() {
                        Some(true) => "ok",
                        Some(false) if c.last_no_data() => "no data",
                        Some(false) => "failed",
                        None => "not run yet",
                    }
                    .into(),
                    last_duration_seconds: c.last_seconds(),
                    errors: c.errors(),
                })
                .collect(),
        }
    }
}

/// What `cairn wal status` prints: the WAL as read from disk, each
/// remote's facts from the running agent when it answered, else from the
/// WAL alone (state "unknown").
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WalReport {
    pub dir: String,
    /// A running agent answered: state, last success, last error and
    /// blocked reason are live.
    pub agent_running: bool,
    pub bytes: u64,
    pub segments: u64,
    pub records: u64,
    pub samples: u64,
    /// Unix seconds.
    pub oldest_sample: Option<f64>,
    pub newest_sample: Option<f64>,
    /// The running agent's disk bytes written per sample since it started.
    pub disk_bytes_per_sample: Option<f64>,
    pub remotes: Vec<RemoteFacts>,
}

impl WalReport {
    pub fn new(
        dir: &std::path::Path,
        st: &crate::wal::WalStats,
        live: Option<&Status>,
        now_ms: i64,
    ) -> WalReport {
        let mut remotes: Vec<RemoteFacts> = st
            .remotes
            .iter()
            .map(|(name, rs)| {
                live.and_then(|l| l.remotes.iter().find(|r| &r.name == name))
                    .cloned()
                    .unwrap_or_else(|| RemoteFacts::new(name, None, Some(rs), now_ms))
            })
            .collect();
        if let Some(l) = live {
            for r in &l.remotes {
                if !remotes.iter().any(|x| x.name == r.name) {
                    remotes.push(r.clone());
                }
            }
        }
        WalReport {
            dir: dir.display().to_string(),
            agent_running: live.is_some(),
            bytes: st.bytes,
            segments: st.segments,
            records: st.records,
            samples: st.samples,
            oldest_sample: st.oldest_ts.map(|t| t as f64 / 1000.0),
            newest_sample: st.newest_ts.map(|t| t as f64 / 1000.0),
            disk_bytes_per_sample: live
                .and_then(|l| l.wal.as_ref())
                .and_then(WalFacts::disk_bytes_per_sample),
            remotes,
        }
    }

    pub fn to_text(&self) -> String {
        let now = now_ms() as f64 / 1000.0;
        let ts = |t: Option<f64>| t.map_or_else(|| "-".to_owned(), |t| format!("{t:.3}"));
        let mut o = String::new();
        let _ = writeln!(o, "WAL {}", self.dir);
        let _ = writeln!(
            o,
            "  size {} bytes in {} segments, {} records, {} samples",
            self.bytes, self.segments, self.records, self.samples
        );
        let _ = writeln!(
            o,
            "  oldest sample {}  newest sample {}",
            ts(self.oldest_sample),
            ts(self.newest_sample)
        );
        if let Some(b) = self.disk_bytes_per_sample {
            let _ = writeln!(
                o,
                "  disk bytes written per sample since the agent started: {b:.2}"
            );
        }
        if !self.agent_running {
            o.push_str("  agent not reachable: state, last success and last error unknown\n");
        }
        if self.remotes.is_empty() {
            o.push_str("  no remotes have cursors\n");
        }
        for r in &self.remotes {
            let _ = writeln!(
                o,
                "  remote {}: backlog {} samples, oldest unsent {}",
                r.name,
                r.backlog_samples.unwrap_or(0),
                r.oldest_unsent_age_seconds
                    .map_or_else(|| "-".to_owned(), |a| format!("{a:.0}s ago")),
            );
            let _ = writeln!(
                o,
                "    state {}, last success {}, blocked {}",
                r.state,
                if self.agent_running {
                    ago(now, r.last_success)
                } else {
                    "unknown".into()
                },
                r.blocked_reason.as_deref().unwrap_or("no"),
            );
            if let Some(e) = &r.last_error {
                let _ = writeln!(o, "    last error ({}): {e}", ago(now, r.last_error_at));
            }
        }
        o.truncate(o.trim_end().len());
        o
    }
}

/// The response for `/` (HTML) or `/status.json`.
pub(super) fn respond(
    board: Option<&Arc<StatusBoard>>,
    path: &str,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
    let st = board.map(|b| b.snapshot()).unwrap_or_default();
    let (body, ctype) = if path == "/status.json" {
        // Serialising plain structs of numbers and strings cannot fail.
        let j = serde_json::to_vec_pretty(&st).unwrap_or_default();
        (j, "application/json")
    } else {
        (render_html(&st).into_bytes(), "text/html; charset=utf-8")
    };
    let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn age_s(now_ms: i64, then_ms: i64) -> f64 {
    (now_ms - then_ms).max(0) as f64 / 1000.0
}

/// "3d 4h", "2h 5m", "4m 10s", "12s", "0.250s".
pub fn human_duration(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "-".into();
    }
    if s < 1.0 {
        return format!("{s:.3}s");
    }
    let t = s as u64;
    let (d, h, m, sec) = (t / 86400, t / 3600 % 24, t / 60 % 60, t % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// 1234567 → "1 234 567" (thin spaces would need an entity; plain is fine).
pub fn human_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

fn ago(now_s: f64, at: Option<f64>) -> String {
    match at {
        Some(t) => format!("{} ago", human_duration((now_s - t).max(0.0))),
        None => "never".into(),
    }
}

fn opt_count(n: Option<u64>) -> String {
    n.map_or_else(|| "-".into(), human_count)
}

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:68em;padding:0 1em;color:#222;background:#fafafa}\
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .4em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #eee;vertical-align:top}\
th{background:#f0f0f0;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.st{display:inline-block;padding:0 .5em;border-radius:.6em;font-weight:600;font-size:.9em}\
.ok{background:#d9f2d9;color:#1a5e1a}.waiting,.unknown{background:#eee;color:#555}.behind{background:#fff0c2;color:#7a5a00}\
.failing,.blocked,.bad{background:#fbd5d5;color:#8a1c1c}.err{color:#8a1c1c;word-break:break-word}\
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1.2em;margin:0}dt{color:#666}dd{margin:0}\
nav a{margin-right:1.2em}footer{margin-top:2em;color:#888;font-size:.85em}";

/// The page: self-contained, readable without scripts, under 50 KB for
/// every collector of the registry.
pub fn render_html(st: &Status) -> String {
    let now = st.started + st.uptime_seconds;
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <meta http-equiv=\"refresh\" content=\"30\"><title>cairn {v}</title><style>{CSS}</style></head><body>\n\
         <h1>cairn {v}</h1>\n<nav><a href=\"{tp}\">{tp}</a><a href=\"/-/healthy\">/-/healthy</a>\
         <a href=\"/-/ready\">/-/ready</a><a href=\"/status.json\">/status.json</a></nav>\n",
        v = esc(&st.version),
        tp = esc(&st.telemetry_path),
    );
    let _ = writeln!(
        h,
        "<section id=\"agent\"><h2>Agent</h2><dl>\
         <dt>version</dt><dd>{}</dd><dt>uptime</dt><dd id=\"uptime\">{}</dd>\
         <dt>config file</dt><dd id=\"config-file\">{}</dd><dt>listening on</dt><dd>{}</dd></dl></section>",
        esc(&st.version),
        human_duration(st.uptime_seconds),
        st.config_file
            .as_deref()
            .map_or_else(|| "none (defaults and flags)".to_owned(), esc),
        esc(&st.listen_address),
    );

    h.push_str("<section id=\"remotes\"><h2>Remotes</h2>\n");
    if st.remotes.is_empty() {
        h.push_str("<p>No <code>[[remote_write]]</code> configured: metrics are served on the telemetry path only, and nothing is written to disk.</p>\n");
    } else {
        h.push_str(
            "<table><tr><th>remote</th><th>state</th><th>backlog samples</th><th>oldest unsent</th>\
             <th>last success</th><th>sent</th><th>dropped</th><th>last error</th></tr>\n",
        );
        for r in &st.remotes {
            let state = match &r.blocked_reason {
                Some(b) => format!("blocked: {}", esc(b)),
                None => esc(&r.state),
            };
            let err = match (&r.last_error, r.last_error_at) {
                (Some(e), at) => format!(
                    "<span class=\"err\">{}</span> ({}{})",
                    esc(e),
                    ago(now, at),
                    r.failures_in_a_row
                        .filter(|n| *n > 0)
                        .map_or_else(String::new, |n| format!(", {n} failures in a row"))
                ),
                (None, _) => "none".into(),
            };
            let _ = writeln!(
                h,
                "<tr data-remote=\"{n}\"><td>{n}</td><td><span class=\"st {cls}\">{state}</span></td>\
                 <td class=\"n backlog\">{b}</td><td class=\"n oldest\">{o}</td><td>{ls}</td>\
                 <td class=\"n\">{s}</td><td class=\"n\">{d}</td><td>{err}</td></tr>",
                n = esc(&r.name),
                cls = esc(&r.state),
                b = opt_count(r.backlog_samples),
                o = r
                    .oldest_unsent_age_seconds
                    .map_or_else(|| "-".into(), human_duration),
                ls = ago(now, r.last_success),
                s = opt_count(r.samples_sent),
                d = opt_count(r.samples_dropped),
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("</section>\n<section id=\"wal\"><h2>WAL</h2>\n");
    match &st.wal {
        None => {
            h.push_str("<p>No WAL: cairn writes one only with <code>[[remote_write]]</code>.</p>\n")
        }
        Some(w) => {
            let dropped: String = w
                .dropped
                .iter()
                .map(|(k, v)| format!("{} {}", esc(k), human_count(*v)))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                h,
                "<dl><dt>directory</dt><dd>{}</dd><dt>size</dt><dd id=\"wal-bytes\">{} bytes in {} segments</dd>\
                 <dt>content</dt><dd>{} samples in {} records, oldest {}</dd>\
                 <dt>corruptions</dt><dd class=\"{}\">{}</dd><dt>write errors</dt><dd class=\"{}\">{}</dd>\
                 <dt>waiting in memory</dt><dd>{} bytes</dd><dt>dropped samples</dt><dd>{}</dd>\
                 <dt>disk writes since start</dt><dd>{} bytes, {} per sample</dd></dl>",
                esc(&w.dir),
                human_count(w.bytes),
                w.segments,
                human_count(w.samples),
                human_count(w.records),
                w.oldest_sample_age_seconds
                    .map_or_else(|| "-".into(), |a| format!("{} old", human_duration(a))),
                if w.corruptions > 0 { "st bad" } else { "" },
                human_count(w.corruptions),
                if w.write_errors > 0 { "st bad" } else { "" },
                human_count(w.write_errors),
                human_count(w.queue_bytes),
                dropped,
                human_count(w.disk_bytes_written),
                w.disk_bytes_per_sample()
                    .map_or_else(|| "-".into(), |b| format!("{b:.2}")),
            );
        }
    }
    h.push_str("</section>\n<section id=\"collectors\"><h2>Collectors</h2>\n");
    let count = |s: &str| st.collectors.iter().filter(|c| c.state == s).count();
    let _ = writeln!(
        h,
        "<p>{} enabled: {} failed and {} found no data in the last collection (the host lacks their source; \
         on /metrics both report <code>node_scrape_collector_success 0</code>).</p>",
        st.collectors.len(),
        count("failed"),
        count("no data"),
    );
    h.push_str("<table><tr><th>collector</th><th>last collection</th><th>duration</th><th>errors</th></tr>\n");
    for c in &st.collectors {
        let cls = match c.state.as_str() {
            "ok" => "ok",
            "failed" => "failing",
            _ => "waiting",
        };
        let took = c.last_duration_seconds;
        let took = if took < 0.001 {
            format!("{:.0} µs", took * 1e6)
        } else {
            format!("{:.1} ms", took * 1e3)
        };
        let _ = writeln!(
            h,
            "<tr data-collector=\"{n}\"><td>{n}</td><td><span class=\"st {cls}\">{w}</span></td>\
             <td class=\"n\">{took}</td><td class=\"n\">{e}</td></tr>",
            e = human_count(c.errors),
            n = esc(&c.name),
            w = esc(&c.state),
        );
    }
    h.push_str("</table></section>\n<footer>Reloads every 30 s. The same facts as JSON: <a href=\"/status.json\">/status.json</a>.</footer>\n</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_writes_are_the_engines_count_or_else_the_kernels() {
        let counted = crate::wal::WalStats {
            device_bytes: Some(12_288),
            ..Default::default()
        };
        assert_eq!(disk_bytes_written(&counted), 12_288);
        // sled counts nothing: the figure is this process's write_bytes,
        // which only grows.
        let before = own_write_bytes();
        let uncounted = crate::wal::WalStats::default();
        assert!(disk_bytes_written(&uncounted) >= before);
    }

    fn sample() -> Status {
        let m = SenderMetrics::new("central");
        m.failed("HTTP 503: <b>busy</b>");
        let ws = RemoteStatus {
            backlog_samples: 12345,
            oldest_ts: Some(now_ms() - 300_000),
            ..RemoteStatus::default()
        };
        let r = RemoteFacts::new("central", Some(&m), Some(&ws), now_ms());
        Status {
            version: "1.2.3".into(),
            started: 1000.0,
            uptime_seconds: 3725.0,
            config_file: Some("/etc/cairn/cairn.toml".into()),
            listen_address: "0.0.0.0:9100".into(),
            telemetry_path: "/metrics".into(),
            remotes: vec![r],
            wal: Some(WalFacts {
                dir: "/var/lib/cairn/wal".into(),
                bytes: 4096,
                ..WalFacts::default()
            }),
            collectors: crate::collector::KNOWN
                .iter()
                .map(|k| CollectorFacts {
                    name: k.name.into(),
                    state: "ok".into(),
                    last_duration_seconds: 0.0012,
                    errors: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn facts_say_failing_with_backlog_and_escaped_error() {
        let st = sample();
        let r = &st.remotes[0];
        assert_eq!(r.state, "failing");
        assert_eq!(r.backlog_samples, Some(12345));
        assert!(r.oldest_unsent_age_seconds.unwrap() >= 299.0);
        let html = render_html(&st);
        assert!(
            html.contains("<td class=\"n backlog\">12 345</td>"),
            "{html}"
        );
        assert!(html.contains("HTTP 503: &lt;b&gt;busy&lt;/b&gt;"), "{html}");
        assert!(html.contains("1h 2m"), "{html}");
        assert!(!html.contains("<script"), "no scripts");
        assert!(!html.contains("src="), "nothing fetched");
    }

    #[test]
    fn page_with_every_collector_stays_under_50_kb() {
        let html = render_html(&sample());
        assert!(html.len() < 50 * 1024, "{} bytes", html.len());
    }

    #[test]
    fn json_round_trips() {
        let st = sample();
        let j = serde_json::to_string(&st).unwrap();
        let back: Status = serde_json::from_str(&j).unwrap();
        assert_eq!(back, st);
    }

    #[test]
    fn states_without_sender_and_healthy() {
        let f = RemoteFacts::new("x", None, None, now_ms());
        assert_eq!(f.state, "unknown");
        let m = SenderMetrics::new("x");
        assert_eq!(
            RemoteFacts::new("x", Some(&m), None, now_ms()).state,
            "waiting"
        );
        m.set_blocked(Some(
            crate::remote_write::metrics::BlockReason::Unauthorized,
        ));
        assert_eq!(
            RemoteFacts::new("x", Some(&m), None, now_ms()).state,
            "blocked"
        );
        assert_eq!(human_duration(0.25), "0.250s");
        assert_eq!(human_duration(90061.0), "1d 1h");
        assert_eq!(human_count(1_000), "1 000");
        assert_eq!(human_count(999), "999");
    }
}
