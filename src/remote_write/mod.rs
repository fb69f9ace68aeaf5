//! Prometheus remote_write 1.0 senders: one task per
//! `[[remote_write]]`, each reading the WAL from its own durable cursor, in
//! per-series timestamp order, with backoff and jitter.
//!
//! Owns: everything between a committed WAL record and a receiver's 2xx —
//! `proto` (wire messages), `client` (HTTP, TLS, auth), `retry` (what to do
//! after an attempt), `sender` (windows, batching, acks) and `metrics`
//! (`cairn_remote_write_*`). Must never: write to the WAL except through
//! `Wal::ack`, ack a sample before the remote accepted it (or rejected it
//! for good), or let one remote's outage delay another.

pub mod client;
pub mod metrics;
pub mod proto;
pub mod retry;
pub mod sender;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub mod testutil;

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config;
use crate::wal::writer::QueueTap;
use crate::wal::Wal;

pub use client::{Client, ClientError, RemoteConfig, USER_AGENT};
pub use metrics::{DropReason, RequestOutcome, SenderMetrics};
pub use sender::Sender;

/// Starts the sender of one remote on the current runtime. `name` is the
/// remote's validated name (`config` defaults it to `remote-<index>`); the
/// WAL must already know it (`Wal::register_remotes`). Fails only on a
/// configuration the HTTP client cannot be built from (unreadable CA,
/// key or certificate file, invalid header): report it and exit.
///
/// The task runs until `shutdown` turns `true`; what it has not acked is
/// sent again by the next run.
pub async fn spawn(
    remote: &config::RemoteWrite,
    name: String,
    wal: Arc<dyn Wal>,
    metrics: Arc<SenderMetrics>,
    shutdown: watch::Receiver<bool>,
    tap: Option<QueueTap>,
) -> Result<JoinHandle<()>, ClientError> {
    spawn_tapped(RemoteConfig::new(remote, name), wal, metrics, shutdown, tap).await
}

/// `spawn` for an already converted config (`RemoteConfig::for_url` for
/// `--remote-write.url`).
pub async fn spawn_remote(
    cfg: RemoteConfig,
    wal: Arc<dyn Wal>,
    metrics: Arc<SenderMetrics>,
    shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, ClientError> {
    spawn_tapped(cfg, wal, metrics, shutdown, None).await
}

/// `spawn_remote` with the writer's queue to deliver from while the WAL
/// refuses writes.
pub async fn spawn_tapped(
    cfg: RemoteConfig,
    wal: Arc<dyn Wal>,
    metrics: Arc<SenderMetrics>,
    shutdown: watch::Receiver<bool>,
    tap: Option<QueueTap>,
) -> Result<JoinHandle<()>, ClientError> {
    let client = Client::build(&cfg).await?;
    let sender = Sender::new(cfg, client, wal, metrics, shutdown).with_tap(tap);
    Ok(tokio::spawn(sender.run()))
}
