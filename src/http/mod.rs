//! The HTTP side: `/metrics` (text format 0.0.4, gzip on request),
//! `/-/healthy`, `/-/ready` and a landing page.
//!
//! Owns: routing and scrape sharing (requests that arrive while a
//! collection is running get that collection's result instead of starting
//! another). The listener and what bounds it live in `listener` and
//! `limits`; TLS and authentication in `web_config` and `auth`. Must never: write to disk, or let a slow client hold
//! the collection lock (the body is rendered before it is sent).

pub mod ready;

use std::convert::Infallible;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::Mutex;

pub mod auth;
pub mod encoding;
pub mod limits;
pub mod listener;
pub mod status;
pub mod web_config;

pub use listener::{serve, serve_with, ListenerOptions};

use crate::collect::SharedGatherer;
use crate::metrics::render_text;

pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

struct TextCache {
    /// Rendering buffer, reused between scrapes.
    buf: Vec<u8>,
    last: Option<(Instant, Bytes)>,
}

/// Shared state of the HTTP server.
pub struct Server {
    gatherer: SharedGatherer,
    text: Mutex<TextCache>,
    ready: Arc<AtomicBool>,
    telemetry_path: String,
    status: std::sync::OnceLock<Arc<status::StatusBoard>>,
    ready_note: ready::NoteSlot,
}

impl Server {
    pub fn new(
        gatherer: SharedGatherer,
        telemetry_path: String,
        ready: Arc<AtomicBool>,
    ) -> Arc<Self> {
        Arc::new(Server {
            gatherer,
            text: Mutex::new(TextCache {
                buf: Vec::with_capacity(64 * 1024),
                last: None,
            }),
            ready,
            telemetry_path,
            status: std::sync::OnceLock::new(),
            ready_note: ready::NoteSlot::default(),
        })
    }

    /// Serves `/` and `/status.json` from `board` (until then `/` is a
    /// plain landing page).
    pub fn attach_status(&self, board: Arc<status::StatusBoard>) {
        let _ = self.status.set(board);
    }

    /// Lines /-/ready adds to its body (e.g. remotes refusing cairn).
    pub fn set_ready_note(&self, note: ready::Note) {
        self.ready_note.set(note);
    }

    /// A fresh collection rendered as text, shared with concurrent callers:
    /// a request that waited for a collection which finished after it
    /// arrived takes that result.
    pub async fn scrape(&self) -> Bytes {
        let arrived = Instant::now();
        let mut cache = self.text.lock().await;
        if let Some((finished, body)) = &cache.last {
            if *finished >= arrived {
                return body.clone();
            }
        }
        let cache = &mut *cache;
        let mut buf = std::mem::take(&mut cache.buf);
        buf.clear();
        self.gatherer
            .lock()
            .await
            .collect(|fams| render_text(fams.iter().copied(), &mut buf))
            .await;
        let body = Bytes::copy_from_slice(&buf);
        cache.buf = buf;
        cache.last = Some((Instant::now(), body.clone()));
        body
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Ok(plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method Not Allowed\n",
            ));
        }
        let path = req.uri().path();
        let resp = if path == self.telemetry_path {
            let gzip = accepts_gzip(&req);
            let body = self.scrape().await;
            metrics_response(body, gzip)
        } else {
            match path {
                "/-/healthy" => plain(StatusCode::OK, "Healthy\n"),
                "/-/ready" => {
                    if self.ready.load(Ordering::Acquire) {
                        match self.ready_note.get() {
                            Some(note) => ready::response(StatusCode::OK, format!("Ready\n{note}")),
                            None => plain(StatusCode::OK, "Ready\n"),
                        }
                    } else {
                        plain(StatusCode::SERVICE_UNAVAILABLE, "Not ready\n")
                    }
                }
                "/" | "/status.json" if self.status.get().is_some() => {
                    status::respond(self.status.get(), path)
                }
                "/" => landing(&self.telemetry_path),
                _ => plain(StatusCode::NOT_FOUND, "Not Found\n"),
            }
        };
        Ok(resp)
    }
}

fn accepts_gzip(req: &Request<Incoming>) -> bool {
    encoding::accepts_gzip(
        req.headers()
            .get_all(ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

fn metrics_response(body: Bytes, gzip: bool) -> Response<Full<Bytes>> {
    let mut resp = if gzip {
        // Level 1: on text this keeps most of the ratio for a fraction of
        // the CPU of the default level, which matters on small boards.
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 6),
            flate2::Compression::fast(),
        );
        let compressed = enc.write_all(&body).and_then(|_| enc.finish());
        match compressed {
            Ok(z) => {
                let mut r = Response::new(Full::new(Bytes::from(z)));
                r.headers_mut()
                    .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            Err(_) => Response::new(Full::new(body)),
        }
    } else {
        Response::new(Full::new(body))
    };
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
    resp
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn landing(telemetry_path: &str) -> Response<Full<Bytes>> {
    let html = format!(
        "<!DOCTYPE html>\n<html><head><title>cairn</title></head><body>\n\
         <h1>cairn {}</h1>\n<p>Host metrics in node_exporter's names, spooled to a crash-safe WAL.</p>\n<ul>\n\
         <li><a href=\"{tp}\">{tp}</a></li>\n<li><a href=\"/-/healthy\">/-/healthy</a></li>\n\
         <li><a href=\"/-/ready\">/-/ready</a></li>\n</ul>\n</body></html>\n",
        env!("CARGO_PKG_VERSION"),
        tp = telemetry_path
    );
    let mut r = Response::new(Full::new(Bytes::from(html)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}
