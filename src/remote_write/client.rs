//! One remote's HTTP side: the reqwest client (rustls with ring, the
//! system trust store plus bundled roots), the spec's headers, auth, and
//! turning a POST into a `Reply` the retry rules can judge.
//!
//! Owns: everything about talking HTTP to one receiver. Must never: let a
//! configured header replace a protocol header, follow a redirect (a POST
//! would lose its body), read more than a small prefix of a response body,
//! wait on a receiver past `remote_timeout`, or wait on the disk or DNS on
//! the async runtime: secret files are read on the blocking pool, the
//! client (TLS files) is built there (`Client::build`), and both resolvers
//! (reqwest's default, hyper-util's `GaiResolver`, and the `server_name`
//! one, tokio's `lookup_host`) run getaddrinfo through `spawn_blocking`.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config;
use crate::relabel::Rules;

use super::retry::parse_retry_after;

pub const USER_AGENT: &str = concat!("cairn/", env!("CARGO_PKG_VERSION"));
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an error response body is kept for the log line.
const BODY_SNIPPET: usize = 512;
/// A receiver dribbling an error body must not hold the queue.
const BODY_READ_LIMIT: Duration = Duration::from_secs(1);

/// Headers the protocol sets; a configured header with one of these names
/// is ignored (with a warning) rather than sent twice or instead.
const RESERVED: &[&str] = &[
    "content-encoding",
    "content-type",
    "content-length",
    "user-agent",
    "x-prometheus-remote-write-version",
    "host",
    "transfer-encoding",
    "connection",
];

pub use crate::secret::Secret;

#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Basic {
        username: String,
        password: Option<Secret>,
    },
    Bearer(Secret),
}

/// What the sender needs of one `[[remote_write]]` entry.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    pub name: String,
    pub url: String,
    pub timeout: Duration,
    pub headers: Vec<(String, String)>,
    pub auth: Auth,
    pub tls: config::TlsConfig,
    pub max_samples_per_send: usize,
    /// 0: no cap.
    pub max_samples_per_second: u64,
    pub batch_send_deadline: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// `None` when `sample_age_limit` is 0 (no limit).
    pub sample_age_limit: Option<Duration>,
    /// On stop, how long the request in flight may still take.
    pub shutdown_grace: Duration,
    /// `write_relabel_configs`, compiled.
    pub write_relabel: Rules,
}

impl RemoteConfig {
    /// `name` is the remote's validated name (`config` defaults it to
    /// `remote-<index>`).
    pub fn new(rw: &config::RemoteWrite, name: String) -> Self {
        let auth = if let Some(b) = &rw.basic_auth {
            let password = match (&b.password, &b.password_file) {
                (Some(p), _) => Some(Secret::Inline(p.clone())),
                (None, Some(f)) => Some(Secret::File(f.clone())),
                (None, None) => None,
            };
            Auth::Basic {
                username: b.username.clone(),
                password,
            }
        } else if let Some(t) = &rw.bearer_token {
            Auth::Bearer(Secret::Inline(t.clone()))
        } else if let Some(f) = &rw.bearer_token_file {
            Auth::Bearer(Secret::File(f.clone()))
        } else {
            Auth::None
        };
        let q = &rw.queue_config;
        RemoteConfig {
            name,
            url: rw.url.0.clone(),
            timeout: rw.remote_timeout.map_or(DEFAULT_TIMEOUT, |d| d.0),
            headers: rw
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            auth,
            tls: rw.tls_config.clone(),
            max_samples_per_send: q.max_samples_per_send.max(1),
            max_samples_per_second: q.max_samples_per_second,
            batch_send_deadline: q.batch_send_deadline.0,
            min_backoff: q.min_backoff.0,
            max_backoff: q.max_backoff.0,
            sample_age_limit: (!q.sample_age_limit.0.is_zero()).then_some(q.sample_age_limit.0),
            shutdown_grace: q.shutdown_grace.0,
            write_relabel: rw.write_relabel.clone(),
        }
    }

    /// A remote with defaults for everything but the URL (tests, and
    /// `--remote-write.url`).
    pub fn for_url(name: &str, url: &str) -> Self {
        let rw = config::RemoteWrite::new(name.to_owned(), config::HttpUrl(url.to_owned()));
        Self::new(&rw, name.to_owned())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("remote_write {remote}: {msg}")]
    Config { remote: String, msg: String },
    #[error("cannot read secret {0}")]
    Secret(String),
}

/// The answer to one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status {
        code: u16,
        retry_after: Option<Duration>,
        /// The start of the body, kept only for non-2xx answers.
        body: String,
    },
    Timeout,
    /// Connect, TLS, reset, or a secret file that cannot be read: all
    /// retried.
    Error(String),
}

pub struct Client {
    http: reqwest::Client,
    url: reqwest::Url,
    auth: Auth,
    host: Option<HeaderValue>,
}

impl Client {
    /// `new` on the blocking pool: it reads TLS files.
    pub async fn build(cfg: &RemoteConfig) -> Result<Client, ClientError> {
        let c = cfg.clone();
        tokio::task::spawn_blocking(move || Client::new(&c))
            .await
            .map_err(|e| ClientError::Config {
                remote: cfg.name.clone(),
                msg: format!("building the HTTP client failed: {e}"),
            })?
    }

    /// Blocking (files): on the runtime use `build`.
    pub fn new(cfg: &RemoteConfig) -> Result<Client, ClientError> {
        let err = |msg: String| ClientError::Config {
            remote: cfg.name.clone(),
            msg,
        };
        let mut url = reqwest::Url::parse(&cfg.url).map_err(|e| err(format!("url: {e}")))?;
        let mut defaults = HeaderMap::new();
        for (k, v) in &cfg.headers {
            let lower = k.to_ascii_lowercase();
            let auth_clash = lower == "authorization" && !matches!(cfg.auth, Auth::None);
            if RESERVED.contains(&lower.as_str()) || auth_clash {
                tracing::warn!(remote = %cfg.name, header = %k, "configured header ignored: the protocol or the auth settings set it");
                continue;
            }
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| err(format!("header {k:?}: {e}")))?;
            let value = HeaderValue::from_str(v).map_err(|e| err(format!("header {k:?}: {e}")))?;
            defaults.insert(name, value);
        }
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(USER_AGENT)
            .default_headers(defaults)
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            // As Prometheus: a proxy only when configured (not from the
            // environment). cairn has no proxy setting yet.
            .no_proxy()
            .pool_max_idle_per_host(1);
        let tls = &cfg.tls;
        b = crate::tls_client::apply(b, tls).map_err(err)?;
        let mut host = None;
        if let Some(sn) = &tls.server_name {
            let (named, peer) = crate::tls_client::name_peer(b, &mut url, sn).map_err(err)?;
            b = named;
            host = peer.host;
        }
        let http = b.build().map_err(|e| err(format!("HTTP client: {e}")))?;
        Ok(Client {
            http,
            url,
            auth: cfg.auth.clone(),
            host,
        })
    }

    /// POSTs one snappy-compressed WriteRequest.
    pub async fn send(&self, body: Bytes) -> Reply {
        self.post(body, None).await
    }

    /// POSTs an empty WriteRequest (no samples) with its own timeout: is
    /// the receiver answering again?
    pub async fn probe(&self, timeout: Duration) -> Reply {
        self.post(
            Bytes::from_static(super::retry::EMPTY_REQUEST),
            Some(timeout),
        )
        .await
    }

    async fn post(&self, body: Bytes, timeout: Option<Duration>) -> Reply {
        let mut req = self
            .http
            .post(self.url.clone())
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0");
        if let Some(h) = &self.host {
            req = req.header(reqwest::header::HOST, h.clone());
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        match &self.auth {
            Auth::None => {}
            Auth::Basic { username, password } => {
                let pw = match password {
                    Some(p) => match p.get().await.map_err(ClientError::Secret) {
                        Ok(p) => Some(p),
                        Err(e) => return Reply::Error(e.to_string()),
                    },
                    None => None,
                };
                req = req.basic_auth(username, pw);
            }
            Auth::Bearer(s) => match s.get().await.map_err(ClientError::Secret) {
                Ok(t) => req = req.bearer_auth(t),
                Err(e) => return Reply::Error(e.to_string()),
            },
        }
        let mut resp = match req.body(body).send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Reply::Timeout,
            // Without the URL: it may carry credentials (`user:pass@`), and
            // this text reaches logs and the status page.
            Err(e) => return Reply::Error(error_chain(&e.without_url())),
        };
        let code = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let mut body = String::new();
        if !(200..300).contains(&code) {
            // A 2xx body is not read: the answer is in the status, and a
            // receiver trickling a body must not turn success into a
            // timeout (and a duplicate send).
            body = read_snippet(&mut resp).await;
        }
        Reply::Status {
            code,
            retry_after,
            body,
        }
    }
}

async fn read_snippet(resp: &mut reqwest::Response) -> String {
    let mut buf = Vec::new();
    let deadline = Instant::now() + BODY_READ_LIMIT;
    while buf.len() < BODY_SNIPPET {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, resp.chunk()).await {
            Ok(Ok(Some(c))) => buf.extend_from_slice(&c),
            _ => break,
        }
    }
    buf.truncate(BODY_SNIPPET);
    String::from_utf8_lossy(&buf).trim().to_owned()
}

/// reqwest's Display hides the cause ("error sending request"); the chain
/// says "connection reset by peer".
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
