//! Service discovery: static_configs, file_sd_configs and http_sd_configs
//! turned into the targets to scrape. (Being written: today no target is
//! ever discovered.)

use std::sync::Arc;

use super::config::ScrapeConfig;
use super::Target;

/// Starts discovery for `configs` on the current tokio runtime. The
/// receiver always holds every target of every job, after relabeling;
/// discovery tasks end when it is dropped.
pub fn spawn(configs: Arc<Vec<ScrapeConfig>>) -> tokio::sync::watch::Receiver<Arc<Vec<Target>>> {
    let _ = configs;
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(Vec::new()));
    // Kept open so the receiver never reports the sender gone.
    tokio::spawn(async move { tx.closed().await });
    rx
}
