//! The accept loop and each connection's life: the connection cap and the
//! descriptor reserve, TLS, basic auth, the parallel-scrape limit, the
//! header and idle timeouts, and the web config's extra headers.
//!
//! Owns: everything between `accept` and `Server::handle`. Must never: let
//! a client hold a descriptor past the budget (see `limits`), serve a route
//! before authentication when users are configured, or block the runtime
//! (TLS handshakes and bcrypt run with timeouts / on the blocking pool).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::auth::BasicAuth;
use super::limits::{self, ConnState, ConnTable, Limits, Tracked};
use super::web_config::WebConfig;
use super::{plain, Server};

/// How the listener is set up: limits, and the web config file if any.
#[derive(Debug, Clone, Default)]
pub struct ListenerOptions {
    pub limits: Limits,
    pub web: Option<WebConfig>,
}

struct Shared {
    server: Arc<Server>,
    limits: Limits,
    auth: BasicAuth,
    headers: Vec<(hyper::header::HeaderName, HeaderValue)>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Parallel /metrics requests; None: unlimited.
    scrapes: Option<Semaphore>,
}

/// Serves HTTP on `listener` with default limits and no web config.
pub async fn serve(listener: TcpListener, server: Arc<Server>) {
    serve_with(listener, server, ListenerOptions::default()).await
}

/// Serves HTTP (or HTTPS) on `listener` until the future is dropped.
pub async fn serve_with(listener: TcpListener, server: Arc<Server>, opts: ListenerOptions) {
    let fd_limit = limits::raise_nofile_limit();
    let cap = limits::connection_budget(opts.limits.max_connections, fd_limit, limits::open_fds());
    tracing::debug!(
        fd_limit,
        max_connections = cap,
        fd_reserve = limits::FD_RESERVE,
        "listener limits"
    );
    let table = Arc::new(ConnTable::new(cap));
    let web = opts.web.unwrap_or_else(|| WebConfig {
        path: Default::default(),
        tls: None,
        users: Default::default(),
        headers: Vec::new(),
    });
    let shared = Arc::new(Shared {
        server,
        auth: BasicAuth::new(web.users),
        headers: web.headers,
        tls: web.tls.map(tokio_rustls::TlsAcceptor::from),
        scrapes: (opts.limits.max_requests > 0).then(|| Semaphore::new(opts.limits.max_requests)),
        limits: opts.limits,
    });
    let mut last_reserve_warning: Option<std::time::Instant> = None;
    loop {
        table.make_room().await;
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of fds and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if limits::in_reserve(&stream, fd_limit) {
            // Something else holds descriptors: the reserve is for the
            // collectors and the WAL, not for one more client.
            drop(stream);
            if last_reserve_warning.map_or(true, |t| t.elapsed() > Duration::from_secs(60)) {
                tracing::warn!(
                    fd_limit,
                    reserve = limits::FD_RESERVE,
                    "refusing connections: open files are near the limit"
                );
                last_reserve_warning = Some(std::time::Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let handle = table.register();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let state = Arc::clone(&handle.state);
            let io = Tracked::new(stream, Arc::clone(&state));
            tokio::select! {
                r = connection(io, &shared, &state) => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                _ = state.evicted() => tracing::debug!(%peer, "closed the quietest connection: the listener is full"),
                _ = idle(&state, shared.limits.idle_timeout) => tracing::debug!(%peer, "closed an idle connection"),
            }
            drop(handle);
        });
    }
}

/// Resolves once the connection has had no request in progress and no
/// byte moved for `timeout`.
async fn idle(state: &ConnState, timeout: Duration) {
    loop {
        let quiet = state.idle_for();
        if quiet >= timeout && !state.busy() {
            return;
        }
        tokio::time::sleep(
            timeout
                .saturating_sub(quiet)
                .max(Duration::from_millis(100)),
        )
        .await;
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn connection(
    io: Tracked<tokio::net::TcpStream>,
    shared: &Arc<Shared>,
    state: &Arc<ConnState>,
) -> Result<(), BoxError> {
    match &shared.tls {
        Some(acceptor) => {
            // The handshake counts against the header timeout: a client that
            // opens a connection and says nothing must not hold it.
            let tls = tokio::time::timeout(shared.limits.header_read_timeout, acceptor.accept(io))
                .await
                .map_err(|_| "TLS handshake timed out")??;
            http(TokioIo::new(tls), shared, state).await
        }
        None => http(TokioIo::new(io), shared, state).await,
    }
}

async fn http<I>(io: I, shared: &Arc<Shared>, state: &Arc<ConnState>) -> Result<(), BoxError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = {
        let shared = Arc::clone(shared);
        let state = Arc::clone(state);
        service_fn(move |req| handle(Arc::clone(&shared), Arc::clone(&state), req))
    };
    http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_read_timeout)
        .serve_connection(io, svc)
        .await?;
    Ok(())
}

async fn handle(
    shared: Arc<Shared>,
    state: Arc<ConnState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let _busy = state.request();
    let mut resp =
        if shared.auth.enabled() && !shared.auth.check(req.headers().get(AUTHORIZATION)).await {
            let mut r = plain(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            r
        } else if req.uri().path() == shared.server.telemetry_path {
            match &shared.scrapes {
                None => shared.server.clone().handle(req).await?,
                Some(sem) => match sem.try_acquire() {
                    Ok(_permit) => shared.server.clone().handle(req).await?,
                    Err(_) => too_many(shared.limits.max_requests),
                },
            }
        } else {
            shared.server.clone().handle(req).await?
        };
    for (k, v) in &shared.headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    Ok(resp)
}

/// promhttp's answer past `MaxRequestsInFlight`.
fn too_many(limit: usize) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!(
        "Limit of concurrent requests reached ({limit}), try again later.\n"
    ))));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
