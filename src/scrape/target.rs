//! One loop per target: when to scrape it, the HTTP GET, and turning the
//! body into one [`ScrapeBatch`] per scrape, with Prometheus 2.42's
//! scrape-loop semantics.
//!
//! Owns: the scrape offset within the interval (Prometheus' target hash
//! XOR a seed from the FQDN and external labels), timestamp
//! alignment, the request (Prometheus' `Accept`, gzip, `User-Agent`,
//! `X-Prometheus-Scrape-Timeout-Seconds`, auth, TLS, `body_size_limit`,
//! `scrape_timeout` over the whole exchange), target labels on samples
//! (`honor_labels`, `exported_` renaming), `honor_timestamps`,
//! `metric_relabel_configs`, the limits that fail a scrape, the synthetic
//! series (`up`, `scrape_*`), the per-target series cache (each series'
//! final labels made once, as a [`SeriesLabels`] every batch and the
//! scheduler share), and the end-of-run stale batch of a target that left
//! discovery. A body is parsed and processed in one pass
//! (`parse::parse_each`): its samples are never all held parsed.
//!
//! Must never: wait on another target (each loop is its own task), write to
//! disk, read a secret file on the async runtime, or send scraped series
//! anywhere but the scheduler's channel.
//!
//! `tls_config.server_name` names the TLS peer as in Prometheus: an https
//! target then gets a client of its own (`Scraper::conn`).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::config::ScrapeConfig;
use super::{parse, ParsedSample, ScrapeBatch, ScrapedSeries, SeriesLabels, Target};
use crate::metrics::{Emitter, MetricType};
use crate::relabel::{is_valid_label_name, Labels, Scratch};
use crate::telemetry::Telemetry;

/// Prometheus aligns a scrape's timestamp to the ideal tick when it is
/// within this much of it (better compression downstream).
const TIMESTAMP_TOLERANCE: Duration = Duration::from_millis(2);

/// The bit pattern of Prometheus' stale marker; an exposed sample holding
/// it does not count against `sample_limit` (as in Prometheus).
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Synthetic series every scrape reports, in Prometheus' order.
pub const SYNTHETIC: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Why a scrape failed (`up` = 0); also the `reason` of
/// `cairn_scrape_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Connect, reset, TLS, DNS, a secret file that cannot be read.
    Http,
    Timeout,
    /// An answer other than 200 OK.
    Status,
    BodySizeLimit,
    Parse,
    SampleLimit,
    LabelLimit,
    LabelNameLengthLimit,
    LabelValueLengthLimit,
    /// After relabeling: no `__name__`, or an invalid metric or label name.
    InvalidSeries,
    /// The job has more targets than its `target_limit`.
    TargetLimit,
}

impl Failure {
    pub const ALL: [Failure; 11] = [
        Failure::Http,
        Failure::Timeout,
        Failure::Status,
        Failure::BodySizeLimit,
        Failure::Parse,
        Failure::SampleLimit,
        Failure::LabelLimit,
        Failure::LabelNameLengthLimit,
        Failure::LabelValueLengthLimit,
        Failure::InvalidSeries,
        Failure::TargetLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Http => "http",
            Failure::Timeout => "timeout",
            Failure::Status => "status",
            Failure::BodySizeLimit => "body_size_limit",
            Failure::Parse => "parse",
            Failure::SampleLimit => "sample_limit",
            Failure::LabelLimit => "label_limit",
            Failure::LabelNameLengthLimit => "label_name_length_limit",
            Failure::LabelValueLengthLimit => "label_value_length_limit",
            Failure::InvalidSeries => "invalid_series",
            Failure::TargetLimit => "target_limit",
        }
    }

    /// The limits whose failure drops the scrape's samples on purpose:
    /// the `reason`s of `cairn_scrape_samples_dropped_total` (README's
    /// "Drop reasons").
    pub const LIMITS: [Failure; 4] = [
        Failure::SampleLimit,
        Failure::LabelLimit,
        Failure::LabelNameLengthLimit,
        Failure::LabelValueLengthLimit,
    ];

    fn is_limit(self) -> bool {
        Failure::LIMITS.contains(&self)
    }

    fn index(self) -> usize {
        Failure::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// A failed scrape: why, and a line for the debug log.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeError {
    pub kind: Failure,
    pub msg: String,
}

impl ScrapeError {
    fn new(kind: Failure, msg: impl Into<String>) -> Self {
        ScrapeError {
            kind,
            msg: msg.into(),
        }
    }
}

/// Setting up a job's HTTP client failed.
#[derive(Debug, thiserror::Error)]
#[error("scrape job {job}: {msg}")]
pub struct SetupError {
    pub job: String,
    pub msg: String,
}

/// Per job self-metrics: targets up and down, scrapes, failures by
/// reason, samples dropped by limits.
#[derive(Debug, Default)]
pub struct JobMetrics {
    pub scrapes: AtomicU64,
    pub up: AtomicI64,
    pub down: AtomicI64,
    failures: [AtomicU64; Failure::ALL.len()],
    dropped: [AtomicU64; Failure::ALL.len()],
}

impl JobMetrics {
    pub fn failures(&self, f: Failure) -> u64 {
        self.failures[f.index()].load(Ordering::Relaxed)
    }

    pub fn dropped(&self, f: Failure) -> u64 {
        self.dropped[f.index()].load(Ordering::Relaxed)
    }
}

/// Every job's [`JobMetrics`], rendered as `cairn_scrape_*` with the job
/// as `scrape_job` (as Prometheus names it in its own metrics): a `job`
/// label would replace the `job` cairn's own series carry on the wire.
#[derive(Debug, Default)]
pub struct ScrapeMetrics {
    jobs: Mutex<Vec<(String, Arc<JobMetrics>)>>,
}

impl ScrapeMetrics {
    /// The job's counters, created on first use.
    pub fn job(&self, job: &str) -> Arc<JobMetrics> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, m)) = jobs.iter().find(|(j, _)| j == job) {
            return Arc::clone(m);
        }
        let m = Arc::new(JobMetrics::default());
        jobs.push((job.to_owned(), Arc::clone(&m)));
        jobs.sort_by(|a, b| a.0.cmp(&b.0));
        m
    }
}

impl Telemetry for ScrapeMetrics {
    fn render(&self, out: &mut Emitter) {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.is_empty() {
            return;
        }
        let mut f = out.family(
            "cairn_scrape_targets",
            "Scrape targets by job and the outcome of their last scrape.",
            MetricType::Gauge,
        );
        for (job, m) in jobs.iter() {
            f.sample(
                &[("scrape_job", job), ("state", "up")],
                m.up.load(Ordering::Relaxed) as f64,
            );
            f.sample(
                &[("scrape_job", job), ("state", "down")],
                m.down.load(Ordering::Relaxed) as f64,
            );
        }
        let mut f = out.family(
            "cairn_scrapes_total",
            "Scrapes of targets, by job.",
            MetricType::Counter,
        );
        for (job, m) in jobs.iter() {
            f.sample(
                &[("scrape_job", job)],
                m.scrapes.load(Ordering::Relaxed) as f64,
            );
        }
        let mut f = out.family(
            "cairn_scrape_failures_total",
            "Failed scrapes (up = 0), by job and reason.",
            MetricType::Counter,
        );
        for (job, m) in jobs.iter() {
            for r in Failure::ALL {
                f.sample(
                    &[("scrape_job", job), ("reason", r.as_str())],
                    m.failures(r) as f64,
                );
            }
        }
        let (limit_exceeded, invalid) = super::targets::counters();
        out.single(
            "cairn_scrape_target_limit_exceeded_total",
            "Target list updates in which a job had more targets than its target_limit.",
            MetricType::Counter,
            limit_exceeded as f64,
        );
        out.single(
            "cairn_scrape_invalid_targets_total",
            "Targets left out because their labels were invalid after relabeling.",
            MetricType::Counter,
            invalid as f64,
        );
        let mut f = out.family(
            "cairn_scrape_samples_dropped_total",
            "Scraped samples not sent because their scrape exceeded a limit, by job and limit.",
            MetricType::Counter,
        );
        for (job, m) in jobs.iter() {
            for r in Failure::LIMITS {
                f.sample(
                    &[("scrape_job", job), ("reason", r.as_str())],
                    m.dropped(r) as f64,
                );
            }
        }
    }
}

use crate::secret::Secret;

#[derive(Debug, Clone)]
enum Auth {
    None,
    Basic {
        username: String,
        password: Option<Secret>,
    },
    /// `Authorization: <type> <credentials>`.
    Header {
        kind: String,
        credentials: Secret,
    },
}

/// What every target of one job shares: the HTTP client and its auth.
pub struct Scraper {
    http: reqwest::Client,
    auth: Auth,
    /// `tls_config` when it sets `server_name`: each https target then gets
    /// a client of its own (`conn`), because the name reqwest gives the TLS
    /// peer comes from the URL, which must then carry `server_name`.
    named: Option<(String, crate::config::TlsConfig)>,
}

/// How one target is reached: its URL (parsed once) and the client that
/// fetches it.
pub struct Conn {
    http: reqwest::Client,
    url: reqwest::Url,
    /// With `server_name`: the target's own `host[:port]`, sent as `Host`.
    host: Option<reqwest::header::HeaderValue>,
}

/// As Prometheus: redirects followed, no proxy from the environment,
/// per-request deadline set from the target's scrape_timeout.
fn client_builder(tls: &crate::config::TlsConfig) -> Result<reqwest::ClientBuilder, String> {
    let b = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(crate::remote_write::client::USER_AGENT)
        .no_proxy()
        .pool_max_idle_per_host(1);
    crate::tls_client::apply(b, tls)
}

impl Scraper {
    /// Blocking (TLS files): call on the blocking pool.
    pub fn new(cfg: &ScrapeConfig) -> Result<Scraper, SetupError> {
        let err = |msg: String| SetupError {
            job: cfg.job_name.clone(),
            msg,
        };
        let auth = if let Some(b) = &cfg.basic_auth {
            Auth::Basic {
                username: b.username.clone(),
                password: Secret::from(&b.password, &b.password_file),
            }
        } else if let Some(a) = &cfg.authorization {
            match Secret::from(&a.credentials, &a.credentials_file) {
                Some(credentials) => Auth::Header {
                    kind: a.kind.clone(),
                    credentials,
                },
                None => Auth::None,
            }
        } else {
            Auth::None
        };
        let tls = &cfg.tls_config;
        let http = client_builder(tls)
            .map_err(err)?
            .build()
            .map_err(|e| err(format!("HTTP client: {e}")))?;
        let named = tls.server_name.clone().map(|n| (n, tls.clone()));
        Ok(Scraper { http, auth, named })
    }

    /// The connection for one target's URL. With `server_name` and https,
    /// a client of the target's own, built on the blocking pool (it reads
    /// the TLS files); else the job's.
    pub async fn conn(&self, url: &str) -> Result<Conn, ScrapeError> {
        let fail = |m: String| ScrapeError::new(Failure::Http, m);
        let mut url = reqwest::Url::parse(url).map_err(|e| fail(format!("{url}: {e}")))?;
        let named = self.named.as_ref().filter(|_| url.scheme() == "https");
        let Some((name, tls)) = named else {
            return Ok(Conn {
                http: self.http.clone(),
                url,
                host: None,
            });
        };
        let (name, tls) = (name.clone(), tls.clone());
        let built = tokio::task::spawn_blocking(move || {
            let b = client_builder(&tls)?;
            let (b, peer) = crate::tls_client::name_peer(b, &mut url, &name)?;
            let http = b.build().map_err(|e| format!("HTTP client: {e}"))?;
            Ok::<_, String>(Conn {
                http,
                url,
                host: peer.host,
            })
        })
        .await;
        match built {
            Ok(r) => r.map_err(fail),
            Err(e) => Err(fail(format!("building the HTTP client failed: {e}"))),
        }
    }

    /// Built on the blocking pool.
    pub async fn build(cfg: &ScrapeConfig) -> Result<Scraper, SetupError> {
        let c = cfg.clone();
        tokio::task::spawn_blocking(move || Scraper::new(&c))
            .await
            .map_err(|e| SetupError {
                job: cfg.job_name.clone(),
                msg: format!("building the HTTP client failed: {e}"),
            })?
    }

    /// One GET of the target into `buf` (decompressed), within `timeout`;
    /// returns the Content-Type.
    pub async fn fetch(
        &self,
        conn: &Conn,
        timeout: Duration,
        body_size_limit: Option<u64>,
        buf: &mut Vec<u8>,
    ) -> Result<Option<String>, ScrapeError> {
        buf.clear();
        match tokio::time::timeout(
            timeout,
            self.fetch_inner(conn, timeout, body_size_limit, buf),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(ScrapeError::new(
                Failure::Timeout,
                format!("scrape took longer than {timeout:?}"),
            )),
        }
    }

    async fn fetch_inner(
        &self,
        conn: &Conn,
        timeout: Duration,
        limit: Option<u64>,
        buf: &mut Vec<u8>,
    ) -> Result<Option<String>, ScrapeError> {
        let http = |e: String| ScrapeError::new(Failure::Http, e);
        let mut req = conn
            .http
            .get(conn.url.clone())
            .header(reqwest::header::ACCEPT, parse::ACCEPT)
            .header(reqwest::header::ACCEPT_ENCODING, "gzip")
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format_seconds(timeout),
            )
            .timeout(timeout);
        if let Some(h) = &conn.host {
            req = req.header(reqwest::header::HOST, h.clone());
        }
        match &self.auth {
            Auth::None => {}
            Auth::Basic { username, password } => {
                let pw = match password {
                    Some(p) => Some(p.get().await.map_err(http)?),
                    None => None,
                };
                req = req.basic_auth(username, pw);
            }
            Auth::Header { kind, credentials } => {
                let c = credentials.get().await.map_err(http)?;
                req = req.header(reqwest::header::AUTHORIZATION, format!("{kind} {c}"));
            }
        }
        let mut resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                ScrapeError::new(Failure::Timeout, "scrape timed out")
            } else {
                http(error_chain(&e.without_url()))
            }
        })?;
        // As Prometheus: only 200 is a successful scrape.
        if resp.status() != reqwest::StatusCode::OK {
            return Err(ScrapeError::new(
                Failure::Status,
                format!("server returned HTTP status {}", resp.status()),
            ));
        }
        let header = |name: reqwest::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let gzip = header(reqwest::header::CONTENT_ENCODING).as_deref() == Some("gzip");
        // Prometheus fails a body of `limit` bytes or more (decompressed).
        let over = |n: usize| limit.is_some_and(|l| n as u64 >= l);
        let too_big = || {
            ScrapeError::new(
                Failure::BodySizeLimit,
                format!("body size limit exceeded ({} bytes)", limit.unwrap_or(0)),
            )
        };
        // A compressed body bigger than the limit cannot decompress to
        // less (gzip adds a few bytes at most): stop reading it early.
        let wire_cap = limit.map(|l| l.saturating_add(l / 100 + 1024));
        let mut wire = Vec::new();
        loop {
            let chunk = resp.chunk().await.map_err(|e| {
                if e.is_timeout() {
                    ScrapeError::new(Failure::Timeout, "scrape timed out")
                } else {
                    http(error_chain(&e.without_url()))
                }
            })?;
            let Some(c) = chunk else { break };
            let dst = if gzip { &mut wire } else { &mut *buf };
            dst.extend_from_slice(&c);
            if gzip {
                if wire_cap.is_some_and(|cap| wire.len() as u64 > cap) {
                    return Err(too_big());
                }
            } else if over(buf.len()) {
                return Err(too_big());
            }
        }
        if gzip {
            let d = flate2::read::GzDecoder::new(wire.as_slice());
            let cap = limit.unwrap_or(u64::MAX);
            d.take(cap)
                .read_to_end(buf)
                .map_err(|e| ScrapeError::new(Failure::Http, format!("gzip: {e}")))?;
            if over(buf.len()) {
                return Err(too_big());
            }
        }
        Ok(content_type)
    }
}

/// Go's `strconv.FormatFloat(s, 'f', -1, 64)` for a timeout: "10", "0.5".
fn format_seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    let mut t = format!("{s}");
    if t.contains('.') {
        while t.ends_with('0') {
            t.pop();
        }
        if t.ends_with('.') {
            t.pop();
        }
    }
    t
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Prometheus' scrape offset: where in the interval this target's scrapes
/// fall, stable across restarts, from the target hash and the seed.
pub fn offset(interval: Duration, hash: u64, seed: u64, now_ns: u128) -> Duration {
    let i = interval.as_nanos().max(1);
    let base = i - now_ns % i;
    let off = u128::from(hash ^ seed) % i;
    let mut next = base + off;
    if next > i {
        next -= i;
    }
    Duration::from_nanos(u64::try_from(next).unwrap_or(u64::MAX))
}

/// The host's name as Prometheus' `osutil.GetFQDN` finds it for the jitter
/// seed: the host name's addresses looked up, the first that reverse
/// resolves gives the name (one trailing dot cut); else the host name.
/// Blocking (DNS): run it off the runtime, and bound the wait.
pub fn fqdn() -> String {
    let host = crate::config::host_name();
    fqdn_with(
        &host,
        |h| {
            use std::net::ToSocketAddrs;
            (h, 0)
                .to_socket_addrs()
                .map(|a| a.map(|s| s.ip()).collect())
        },
        reverse_lookup,
    )
}

fn fqdn_with(
    host: &str,
    lookup_ip: impl Fn(&str) -> std::io::Result<Vec<std::net::IpAddr>>,
    lookup_addr: impl Fn(std::net::IpAddr) -> Option<String>,
) -> String {
    let Ok(ips) = lookup_ip(host) else {
        return host.to_owned();
    };
    for ip in ips {
        if let Some(name) = lookup_addr(ip) {
            return name.strip_suffix('.').unwrap_or(&name).to_owned();
        }
    }
    host.to_owned()
}

/// The name an address reverse-resolves to (getnameinfo with
/// `NI_NAMEREQD`: /etc/hosts, then DNS, as the host's resolver is set up).
/// Neither std nor nix offers a reverse lookup.
fn reverse_lookup(ip: std::net::IpAddr) -> Option<String> {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let sa = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.octets()),
                },
                sin_zero: [0; 8],
            };
            name_of(&sa)
        }
        std::net::IpAddr::V6(v6) => {
            // SAFETY: all-zero bytes are a valid sockaddr_in6.
            let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_addr.s6_addr = v6.octets();
            name_of(&sa)
        }
    }
}

/// getnameinfo of one socket address (`T` is `sockaddr_in` or
/// `sockaddr_in6`, as its family field says).
fn name_of<T>(sa: &T) -> Option<String> {
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: `sa` is a whole sockaddr of its type's size, `host` a
    // writable buffer of the given length; getnameinfo writes a
    // NUL-terminated string into it and keeps no pointer.
    let rc = unsafe {
        libc::getnameinfo(
            (sa as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: getnameinfo succeeded, so `host` holds a NUL-terminated
    // string within its length.
    let name = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) };
    name.to_str()
        .ok()
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
}

/// Prometheus' jitter seed: FNV-1a 64 of the FQDN (`fqdn`) followed by the
/// external labels written as `{a="b", c="d"}`.
pub fn jitter_seed(host: &str, external: &std::collections::BTreeMap<String, String>) -> u64 {
    let mut s = String::from(host);
    s.push('{');
    for (i, (k, v)) in external.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(k);
        s.push('=');
        // Go's strconv.Quote for the usual printable values.
        s.push_str(&format!("{v:?}"));
    }
    s.push('}');
    fnv1a64(s.as_bytes())
}

fn fnv1a64(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &c in b {
        h ^= u64::from(c);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Prometheus' metric name rule: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn is_valid_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// What one scrape's samples came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Samples in the body.
    pub total: u64,
    /// Samples left after `metric_relabel_configs`.
    pub added: u64,
    /// Series not in the previous successful scrape.
    pub series_added: u64,
}

/// One scrape's progress through `Processor::one`.
#[derive(Default)]
struct Pass {
    n: Counts,
    err: Option<ScrapeError>,
    /// A series failed the scrape: the samples after it are not looked at.
    stopped: bool,
    /// Samples counted against `sample_limit`.
    appended: u64,
    over_limit: bool,
}

struct CacheEntry {
    /// The series' final labels, shared with every batch that carries it;
    /// `None`: dropped by `metric_relabel_configs`.
    labels: Option<SeriesLabels>,
    last_iter: u64,
}

/// Everything about one target's samples that outlives a scrape: the
/// series cache (exposed series → final labels, computed once while the
/// target's output is stable) and the reusable buffers.
pub struct Processor {
    cfg: Arc<ScrapeConfig>,
    target_labels: Labels,
    cache: HashMap<u64, CacheEntry>,
    iter: u64,
    /// Cache size after the last successful scrape (Prometheus' bound on
    /// a cache that failed scrapes keep growing).
    successful: usize,
    scratch: Scratch,
    pairs: Vec<(String, String)>,
    conflicts: Vec<(String, String)>,
    synthetic: [SeriesLabels; 5],
}

impl Processor {
    pub fn new(cfg: Arc<ScrapeConfig>, target: &Target) -> Self {
        let synthetic = SYNTHETIC.map(|name| {
            // As Prometheus: the target labels, never relabeled.
            let mut l = target.labels.clone();
            l.set("__name__", name);
            SeriesLabels::new(&l)
        });
        Processor {
            cfg,
            target_labels: target.labels.clone(),
            cache: HashMap::new(),
            iter: 0,
            successful: 0,
            scratch: Scratch::default(),
            pairs: Vec::new(),
            conflicts: Vec::new(),
            synthetic,
        }
    }

    /// The target labels applied to one exposed series, as Prometheus'
    /// `mutateSampleLabels` before relabeling. An exposed label with an
    /// empty value counts as present for `honor_labels: true` (the target
    /// label is not added) and as absent otherwise.
    fn apply_target_labels(&mut self, s: &ParsedSample) -> Labels {
        let exposed = |name: &str| s.labels.iter().find(|(k, _)| k == name);
        self.pairs.clear();
        self.pairs.push(("__name__".to_owned(), s.name.clone()));
        self.pairs.extend(s.labels.iter().cloned());
        if self.cfg.honor_labels {
            for (k, v) in self.target_labels.iter() {
                if exposed(k).is_none() {
                    self.pairs.push((k.to_owned(), v.to_owned()));
                }
            }
        } else {
            self.conflicts.clear();
            for (k, v) in self.target_labels.iter() {
                if let Some((_, ev)) = exposed(k) {
                    if !ev.is_empty() {
                        self.conflicts.push((k.to_owned(), ev.clone()));
                    }
                }
                self.pairs.retain(|(pk, _)| pk != k);
                self.pairs.push((k.to_owned(), v.to_owned()));
            }
            if !self.conflicts.is_empty() {
                // Shortest names first; each gets `exported_` prefixes until
                // its name is taken by nothing exposed, no target label and
                // no conflict renamed before it.
                self.conflicts.sort_by_key(|(k, _)| k.len());
                for i in 0..self.conflicts.len() {
                    let mut name = self.conflicts[i].0.clone();
                    loop {
                        name.insert_str(0, "exported_");
                        let taken = exposed(&name).is_some()
                            || self.target_labels.iter().any(|(k, _)| k == name)
                            || self.conflicts[..i].iter().any(|(k, _)| *k == name);
                        if !taken {
                            break;
                        }
                    }
                    self.conflicts[i].0 = name;
                }
                for (k, v) in &self.conflicts {
                    self.pairs.retain(|(pk, _)| pk != k);
                    self.pairs.push((k.clone(), v.clone()));
                }
            }
        }
        Labels::from_pairs(self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    fn check(&self, l: &Labels) -> Result<(), ScrapeError> {
        let name = l.get("__name__");
        if name.is_empty() {
            return Err(ScrapeError::new(
                Failure::InvalidSeries,
                "missing metric name (__name__ label)",
            ));
        }
        if !is_valid_metric_name(name)
            || l.iter()
                .any(|(k, _)| k != "__name__" && !is_valid_label_name(k))
        {
            return Err(ScrapeError::new(
                Failure::InvalidSeries,
                format!("invalid metric name or label names: {l:?}"),
            ));
        }
        let c = &self.cfg;
        let short: String = name.chars().take(50).collect();
        if c.label_limit > 0 && l.len() as u64 > c.label_limit {
            return Err(ScrapeError::new(
                Failure::LabelLimit,
                format!(
                    "label_limit exceeded (metric: {short}, number of labels: {}, limit: {})",
                    l.len(),
                    c.label_limit
                ),
            ));
        }
        for (k, v) in l.iter() {
            if c.label_name_length_limit > 0 && k.len() as u64 > c.label_name_length_limit {
                return Err(ScrapeError::new(
                    Failure::LabelNameLengthLimit,
                    format!("label_name_length_limit exceeded (metric: {short}, label name: {k}, limit: {})", c.label_name_length_limit),
                ));
            }
            if c.label_value_length_limit > 0 && v.len() as u64 > c.label_value_length_limit {
                return Err(ScrapeError::new(
                    Failure::LabelValueLengthLimit,
                    format!("label_value_length_limit exceeded (metric: {short}, label name: {k}, limit: {})", c.label_value_length_limit),
                ));
            }
        }
        Ok(())
    }

    /// Turns one scrape's samples into `out` (cleared first), as
    /// Prometheus' `scrapeLoop.append`. On error `out` is empty: the
    /// whole scrape fails and only the synthetic series are sent.
    pub fn process(
        &mut self,
        parsed: &[ParsedSample],
        out: &mut Vec<ScrapedSeries>,
    ) -> (Counts, Option<ScrapeError>) {
        self.process_body(parsed, !parsed.is_empty(), out)
    }

    /// `process` for a body that was empty or not (a body of comments
    /// only has no samples but, as in Prometheus, still renews the cache).
    pub fn process_body(
        &mut self,
        parsed: &[ParsedSample],
        had_body: bool,
        out: &mut Vec<ScrapedSeries>,
    ) -> (Counts, Option<ScrapeError>) {
        out.clear();
        let mut pass = Pass::default();
        for s in parsed {
            self.one(s, &mut pass, out);
        }
        self.finish(pass, had_body, out)
    }

    /// One sample of a scrape, as it is parsed (`pass` carries the
    /// scrape's state); once the scrape has failed, nothing.
    fn one(&mut self, s: &ParsedSample, pass: &mut Pass, out: &mut Vec<ScrapedSeries>) {
        if pass.stopped {
            return;
        }
        let n = &mut pass.n;
        let limit = self.cfg.sample_limit;
        n.total += 1;
        let key = series_key(s);
        let ts = if self.cfg.honor_timestamps {
            s.timestamp_ms
        } else {
            None
        };
        let hit = match self.cache.get_mut(&key) {
            Some(e) => {
                e.last_iter = self.iter;
                Some(e.labels.clone())
            }
            None => None,
        };
        let (labels, new) = match hit {
            Some(None) => return,
            Some(Some(l)) => (l, false),
            None => {
                let mut l = self.apply_target_labels(s);
                let kept = self.cfg.metric_relabel.process(&mut l, &mut self.scratch);
                if !kept || l.is_empty() {
                    self.cache.insert(
                        key,
                        CacheEntry {
                            labels: None,
                            last_iter: self.iter,
                        },
                    );
                    return;
                }
                if let Err(e) = self.check(&l) {
                    pass.err = Some(e);
                    pass.stopped = true;
                    return;
                }
                let l = SeriesLabels::new(&l);
                self.cache.insert(
                    key,
                    CacheEntry {
                        labels: Some(l.clone()),
                        last_iter: self.iter,
                    },
                );
                (l, true)
            }
        };
        if s.value.to_bits() != STALE_NAN_BITS {
            pass.appended += 1;
            if limit > 0 && pass.appended > limit {
                pass.over_limit = true;
            }
        }
        if new && !pass.over_limit {
            n.series_added += 1;
        }
        n.added += 1;
        if !pass.over_limit {
            out.push(ScrapedSeries {
                labels,
                value: s.value,
                timestamp_ms: ts,
            });
        }
    }

    /// The end of a scrape whose samples all went through `one`.
    fn finish(
        &mut self,
        pass: Pass,
        had_body: bool,
        out: &mut Vec<ScrapedSeries>,
    ) -> (Counts, Option<ScrapeError>) {
        let Pass {
            n,
            mut err,
            over_limit,
            ..
        } = pass;
        let limit = self.cfg.sample_limit;
        if over_limit && err.is_none() {
            err = Some(ScrapeError::new(
                Failure::SampleLimit,
                format!("sample_limit exceeded ({} samples, limit {limit})", n.added),
            ));
        }
        if err.is_some() {
            out.clear();
        } else {
            self.iter_done(had_body);
        }
        (n, err)
    }

    /// Prometheus' `iterDone`: after a successful scrape with a body, the
    /// cache keeps only what that scrape exposed.
    fn iter_done(&mut self, flush: bool) {
        let mut flush = flush;
        if flush {
            self.successful = self.cache.len();
        } else if self.cache.len() > self.successful * 2 + 1000 {
            flush = true;
        }
        if flush {
            let it = self.iter;
            self.cache.retain(|_, e| e.last_iter == it);
        }
        self.iter += 1;
    }

    /// A failed scrape: Prometheus appends an empty body to get its stale
    /// markers, which moves the cache's iteration without a flush.
    pub fn failed(&mut self) {
        self.iter_done(false);
    }

    /// The synthetic series, as Prometheus' `report`.
    pub fn report(&self, up: bool, duration: Duration, n: Counts, out: &mut Vec<ScrapedSeries>) {
        let values = [
            if up { 1.0 } else { 0.0 },
            duration.as_secs_f64(),
            n.total as f64,
            n.added as f64,
            n.series_added as f64,
        ];
        for (l, v) in self.synthetic.iter().zip(values) {
            out.push(ScrapedSeries {
                labels: l.clone(),
                value: v,
                timestamp_ms: None,
            });
        }
    }
}

fn series_key(s: &ParsedSample) -> u64 {
    let mut h = DefaultHasher::new();
    s.name.hash(&mut h);
    for (k, v) in &s.labels {
        k.hash(&mut h);
        v.hash(&mut h);
    }
    h.finish()
}

/// How a loop is told to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Run,
    /// The target left discovery: after the next two ticks and a tenth of
    /// the interval, send a `gone` batch stamped with the next tick (as
    /// Prometheus' end-of-run staleness).
    Gone,
}

/// One target's loop and what it needs.
pub struct TargetLoop {
    pub target: Target,
    pub cfg: Arc<ScrapeConfig>,
    pub scraper: Arc<Scraper>,
    pub tx: mpsc::Sender<ScrapeBatch>,
    pub metrics: Arc<JobMetrics>,
    pub seed: u64,
    /// Set while the job has more targets than its `target_limit`.
    pub forced: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Health {
    Unknown,
    Up,
    Down,
}

impl TargetLoop {
    /// Runs until `stop` says `Gone` (then sends the gone batch) or is
    /// dropped; aborting the task ends it without a gone batch (shutdown).
    pub async fn run(self, mut stop: watch::Receiver<Stop>) {
        let mut health = Health::Unknown;
        self.run_inner(&mut stop, &mut health).await;
        match health {
            Health::Up => self.metrics.up.fetch_sub(1, Ordering::Relaxed),
            Health::Down => self.metrics.down.fetch_sub(1, Ordering::Relaxed),
            Health::Unknown => 0,
        };
    }

    async fn run_inner(&self, stop: &mut watch::Receiver<Stop>, health: &mut Health) {
        let t = &self.target;
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let wait = offset(t.interval, t.hash, self.seed, now_ns);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s != Stop::Run) => return,
        }
        let mut aligned = crate::clock::now_ms();
        let interval_ms = i64::try_from(t.interval.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let align = t.interval > TIMESTAMP_TOLERANCE * 100;
        let tol = TIMESTAMP_TOLERANCE.as_millis() as i64;
        let mut ticker = tokio::time::interval(t.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        ticker.tick().await;
        let mut work = Box::new(Work {
            proc: Processor::new(Arc::clone(&self.cfg), t),
            body: Vec::new(),
            parsed: Vec::new(),
            batch_len: 0,
            conn: None,
        });
        loop {
            let mut ts = crate::clock::now_ms();
            if align {
                while ts - aligned >= interval_ms {
                    aligned += interval_ms;
                }
                if ts - aligned <= tol {
                    ts = aligned;
                }
            }
            let (w, up) = self.scrape_once(work, ts).await;
            work = w;
            let now = if up { Health::Up } else { Health::Down };
            if now != *health {
                match *health {
                    Health::Up => self.metrics.up.fetch_sub(1, Ordering::Relaxed),
                    Health::Down => self.metrics.down.fetch_sub(1, Ordering::Relaxed),
                    Health::Unknown => 0,
                };
                match now {
                    Health::Up => self.metrics.up.fetch_add(1, Ordering::Relaxed),
                    _ => self.metrics.down.fetch_add(1, Ordering::Relaxed),
                };
                *health = now;
            }
            let told = tokio::select! {
                _ = ticker.tick() => None,
                r = stop.wait_for(|s| *s != Stop::Run) => Some(r.is_ok()),
            };
            match told {
                None => {}
                // Prometheus writes end-of-run stale markers only after a
                // first scrape: here always the case.
                Some(true) => return self.end_of_run(&mut ticker).await,
                // The manager is gone without a word: shutdown.
                Some(false) => return,
            }
        }
    }

    /// Prometheus waits for when the next scrape would have been (the
    /// stale markers' timestamp), one more tick and a tenth of the interval,
    /// in case the target comes back; the manager aborts this task if it
    /// does.
    async fn end_of_run(&self, ticker: &mut tokio::time::Interval) {
        ticker.tick().await;
        let stale_ts = crate::clock::now_ms();
        ticker.tick().await;
        tokio::time::sleep(self.target.interval / 10).await;
        let _ = self
            .tx
            .send(ScrapeBatch {
                source: self.target.hash,
                ts_ms: stale_ts,
                series: Vec::new(),
                gone: true,
            })
            .await;
    }

    /// The target's connection, made at its first scrape (and again after
    /// a failure to make it: a TLS file may be fixed meanwhile).
    async fn conn<'a>(&self, slot: &'a mut Option<Conn>) -> Result<&'a Conn, ScrapeError> {
        if slot.is_none() {
            *slot = Some(self.scraper.conn(&self.target.url).await?);
        }
        slot.as_ref()
            .ok_or_else(|| ScrapeError::new(Failure::Http, "no connection"))
    }

    /// One scrape and its batch; whether the target was up.
    async fn scrape_once(&self, mut work: Box<Work>, ts: i64) -> (Box<Work>, bool) {
        let t = &self.target;
        let started = Instant::now();
        self.metrics.scrapes.fetch_add(1, Ordering::Relaxed);
        let limit = self.cfg.body_size_limit.map(|s| s.0).filter(|&l| l > 0);
        // The batch leaves with the scheduler: sized as the last one, so a
        // stable target's batch is one allocation, not a chain of growths.
        let mut series = Vec::with_capacity(work.batch_len);
        let fetched = if self.forced.load(Ordering::Relaxed) {
            Err(ScrapeError::new(
                Failure::TargetLimit,
                format!("target_limit exceeded (limit: {})", self.cfg.target_limit),
            ))
        } else {
            match self.conn(&mut work.conn).await {
                Ok(c) => {
                    self.scraper
                        .fetch(c, t.timeout, limit, &mut work.body)
                        .await
                }
                Err(e) => Err(e),
            }
        };
        let (counts, err) = match fetched {
            Err(e) => (Counts::default(), Some(e)),
            Ok(ct) if work.body.len() <= INLINE_BODY => work.digest(ct.as_deref(), &mut series),
            Ok(ct) => {
                // A large body is parsed on the blocking pool: the runtime
                // has one thread, and other targets must not wait on it.
                let done = tokio::task::spawn_blocking(move || {
                    let r = work.digest(ct.as_deref(), &mut series);
                    (work, series, r)
                })
                .await;
                match done {
                    Ok((w, s, r)) => {
                        work = w;
                        series = s;
                        r
                    }
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(e) => panic!("parsing a scrape was cancelled: {e}"),
                }
            }
        };
        if let Some(e) = &err {
            work.proc.failed();
            series.clear();
            self.metrics.failures[e.kind.index()].fetch_add(1, Ordering::Relaxed);
            if e.kind.is_limit() {
                self.metrics.dropped[e.kind.index()].fetch_add(counts.added, Ordering::Relaxed);
            }
            tracing::debug!(job = %t.job, url = %t.url, reason = e.kind.as_str(), error = %e.msg, "scrape failed");
        }
        work.proc
            .report(err.is_none(), started.elapsed(), counts, &mut series);
        work.batch_len = series.len();
        // Backpressure rather than loss: a full channel means the
        // scheduler is behind, and this target waits, not the others.
        let _ = self
            .tx
            .send(ScrapeBatch {
                source: t.hash,
                ts_ms: ts,
                series,
                gone: false,
            })
            .await;
        (work, err.is_none())
    }
}

/// Bodies up to this size are parsed on the runtime; larger ones on the
/// blocking pool (a 10,000-series body takes milliseconds).
const INLINE_BODY: usize = 256 << 10;

/// A target's state between scrapes: its cache and reusable buffers, moved
/// to the blocking pool and back with a large body.
struct Work {
    proc: Processor,
    body: Vec<u8>,
    /// The one sample being parsed (its strings reused).
    parsed: Vec<ParsedSample>,
    /// Series in the last batch.
    batch_len: usize,
    conn: Option<Conn>,
}

impl Work {
    /// Parses the body and turns its samples into `series` in one pass:
    /// a body's samples are never all held parsed at once.
    fn digest(
        &mut self,
        content_type: Option<&str>,
        series: &mut Vec<ScrapedSeries>,
    ) -> (Counts, Option<ScrapeError>) {
        series.clear();
        let mut pass = Pass::default();
        let proc = &mut self.proc;
        let parsed = parse::parse_each(&self.body, content_type, &mut self.parsed, &mut |s| {
            proc.one(s, &mut pass, series)
        });
        match parsed {
            Err(e) => {
                // What the samples before the bad line made goes too, but
                // they are counted (Prometheus reports the counts its
                // append loop reached). A series that already stopped the
                // scrape keeps its own error: Prometheus stops reading there
                // and never meets the bad line.
                series.clear();
                let err = pass
                    .err
                    .take()
                    .unwrap_or_else(|| ScrapeError::new(Failure::Parse, e.to_string()));
                (pass.n, Some(err))
            }
            Ok(_) => self.proc.finish(pass, !self.body.is_empty(), series),
        }
    }
}

#[cfg(test)]
mod tests;
