//! Bounds on what clients can make the listener hold: parallel scrapes,
//! open connections, file descriptors, and how long a connection may sit
//! idle or dribble its request headers.
//!
//! Owns: the descriptor budget (soft `RLIMIT_NOFILE` raised to the hard
//! limit at start, minus a reserve for collectors and the WAL), the table
//! of open connections and which one to close when the table is full.
//! Must never: let connections take the descriptors collectors need (a
//! collector that cannot open a /proc file fails), or close a connection
//! whose request is being handled.
//!
//! Why evict instead of only refusing: a listener that merely stops
//! accepting at its cap leaves new connections (the scraper's among them)
//! queued behind idle ones until those time out. Closing the connection
//! that has been quiet longest keeps /metrics answering under a flood of
//! idle connections, and costs a well-behaved client at most a reconnect.

use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// Descriptors kept free for everything but client connections: collectors
/// (a few files at a time each, two runners at most when one stalls), the
/// WAL (segments, cursors, directory fds), remote_write connections, and
/// logging. Measured: a full collection with every collector and a WAL
/// with two remotes holds under 40 at its peak.
pub const FD_RESERVE: u64 = 128;

/// The listener's limits, as the command line and `[web]` set them.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Parallel `/metrics` requests; more get 503 (node_exporter's
    /// `--web.max-requests`). 0: no limit.
    pub max_requests: usize,
    /// Open client connections at most (further capped by the descriptor
    /// budget).
    pub max_connections: usize,
    /// A request's headers must arrive within this, counted from when the
    /// connection is ready for a request.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress and no byte moved for this
    /// long is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_requests: 40,
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (as Go's runtime does
/// for node_exporter) and returns the soft limit now in force.
// `rlim_t` is u32 on 32-bit ARM (armhf) and u64 elsewhere: the conversion
// is needed there and a no-op here.
#[allow(clippy::useless_conversion)]
pub fn raise_nofile_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 1024;
    }
    if r.rlim_cur < r.rlim_max {
        let want = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        // SAFETY: `want` is a valid rlimit; raising the soft limit up to the
        // hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            r.rlim_cur = r.rlim_max;
        } else {
            tracing::warn!(
                soft = r.rlim_cur,
                hard = r.rlim_max,
                error = %std::io::Error::last_os_error(),
                "cannot raise the open-files limit"
            );
        }
    }
    if r.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        u64::from(r.rlim_cur)
    }
}

/// Descriptors open now (counted in /proc/self/fd; the count includes the
/// directory's own descriptor, which is closed again right after).
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

/// How many client connections fit: the configured cap, and what the
/// descriptor limit leaves after the reserve and what is already open.
pub fn connection_budget(configured: usize, fd_limit: u64, open_now: u64) -> usize {
    let free = fd_limit.saturating_sub(FD_RESERVE).saturating_sub(open_now);
    (configured as u64).min(free).max(1) as usize
}

/// One connection's shared state: when it last moved a byte, whether a
/// request is being handled, and how to tell it to close.
pub struct ConnState {
    /// Milliseconds since the table's epoch.
    last_active: AtomicU64,
    in_flight: AtomicU32,
    evict: Notify,
    epoch: Instant,
}

impl ConnState {
    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_active.store(ms, Ordering::Relaxed);
    }

    /// How long since a byte moved.
    pub fn idle_for(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_active.load(Ordering::Relaxed)))
    }

    pub fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Resolves when the table wants this connection closed.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }

    /// Marks a request in progress until the guard drops.
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        RequestGuard(Arc::clone(self))
    }
}

pub struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections. Eviction scans the table (a few hundred entries,
/// and only when it is full), which costs less than keeping an ordered
/// index up to date on every byte.
pub struct ConnTable {
    epoch: Instant,
    cap: usize,
    conns: Mutex<Vec<(u64, Arc<ConnState>)>>,
    next_id: AtomicU64,
    /// Wakes the accept loop when a connection closes.
    freed: Notify,
}

impl ConnTable {
    pub fn new(cap: usize) -> Self {
        ConnTable {
            epoch: Instant::now(),
            cap: cap.max(1),
            conns: Mutex::new(Vec::with_capacity(cap.min(4096))),
            next_id: AtomicU64::new(0),
            freed: Notify::new(),
        }
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn len(&self) -> usize {
        self.conns.lock().map(|c| c.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for one more connection: when the table is full, tells
    /// the quietest connection without a request in progress to close and
    /// waits until one has. Returns once there is room.
    pub async fn make_room(&self) {
        loop {
            let freed = self.freed.notified();
            {
                let Ok(conns) = self.conns.lock() else { return };
                if conns.len() < self.cap {
                    return;
                }
                let victim = conns
                    .iter()
                    .filter(|(_, c)| !c.busy())
                    .max_by_key(|(_, c)| c.idle_for());
                if let Some((_, c)) = victim {
                    c.evict.notify_one();
                }
            }
            // Every connection busy: wait for one to finish (bounded by the
            // request limit and the timeouts), or for the evicted one to go.
            freed.await;
        }
    }

    /// Registers a new connection; the returned handle removes it on drop.
    pub fn register(self: &Arc<Self>) -> ConnHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            last_active: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            evict: Notify::new(),
            epoch: self.epoch,
        });
        state.touch();
        if let Ok(mut c) = self.conns.lock() {
            c.push((id, Arc::clone(&state)));
        }
        ConnHandle {
            table: Arc::clone(self),
            id,
            state,
        }
    }
}

pub struct ConnHandle {
    table: Arc<ConnTable>,
    id: u64,
    pub state: Arc<ConnState>,
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        if let Ok(mut c) = self.table.conns.lock() {
            if let Some(i) = c.iter().position(|(id, _)| *id == self.id) {
                c.swap_remove(i);
            }
        }
        self.table.freed.notify_waiters();
    }
}

/// Whether an accepted socket's descriptor eats into the reserve: the
/// kernel hands out the lowest free number, so a number at or above
/// `limit − reserve` means that many descriptors are already open.
pub fn in_reserve<S: AsRawFd>(s: &S, fd_limit: u64) -> bool {
    let fd = s.as_raw_fd();
    fd >= 0 && fd as u64 >= fd_limit.saturating_sub(FD_RESERVE)
}

/// A socket (plain or TLS) that notes every byte moved in its connection's
/// state, so idleness is measured on the wire, not guessed.
pub struct Tracked<T> {
    inner: T,
    state: Arc<ConnState>,
}

impl<T> Tracked<T> {
    pub fn new(inner: T, state: Arc<ConnState>) -> Self {
        Tracked { inner, state }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_keeps_the_reserve() {
        assert_eq!(connection_budget(512, 1024, 20), 512);
        assert_eq!(connection_budget(5000, 1024, 20), 1024 - 128 - 20);
        assert_eq!(connection_budget(512, 100, 20), 1);
    }

    #[test]
    fn raise_keeps_a_sane_limit() {
        let l = raise_nofile_limit();
        assert!(l >= 64, "{l}");
        assert!(open_fds() > 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn full_table_evicts_the_quietest_idle_connection() {
        let t = Arc::new(ConnTable::new(2));
        let a = t.register();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let b = t.register();
        let _busy = b.state.request();
        // `a` is the quietest and idle: it is told to go.
        let sa = Arc::clone(&a.state);
        let waiter = tokio::spawn(async move { sa.evicted().await });
        let room = tokio::spawn({
            let t = Arc::clone(&t);
            async move { t.make_room().await }
        });
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("idle connection evicted")
            .unwrap();
        assert!(!room.is_finished());
        drop(a);
        tokio::time::timeout(Duration::from_secs(2), room)
            .await
            .expect("room made once the evicted connection left")
            .unwrap();
        assert_eq!(t.len(), 1);
    }
}
