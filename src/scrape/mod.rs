//! Agent mode: scraping the host's own exporters and applications with
//! Prometheus' `scrape_configs` semantics, so that for the same
//! configuration cairn sends the series Prometheus in agent mode sends.
//!
//! Owns: the scrape configuration (`config.rs`: `[[scrape_configs]]` and
//! `scrape_config_files`), service discovery (`discovery.rs`: static,
//! file_sd, http_sd), target labels and relabeling (`targets.rs`), the
//! exposition parsers (`parse.rs`: text 0.0.4, OpenMetrics 1.0), and one
//! loop per target (`target.rs`, started and stopped by `manager.rs`)
//! that turns each scrape into a [`ScrapeBatch`] for the scheduler.
//!
//! Must never: delay a host collection or another target (each target
//! has its own task and its own deadline, `scrape_timeout`); write to
//! disk (scraped samples reach the WAL only through the scheduler, like
//! collections); put scraped series on cairn's own `/metrics`.

pub mod config;
pub mod discovery;
pub mod manager;
pub mod parse;
pub mod target;
pub mod targets;

use std::time::Duration;

use crate::relabel::Labels;

/// One sample as an exposition states it, before any target label or
/// relabeling. `labels` are in the order the exposition wrote them and
/// never include `__name__`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds since the epoch, when the exposition gave one.
    pub timestamp_ms: Option<i64>,
}

/// The exposition format a body was parsed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4 (also a missing or unknown Content-Type).
    Text,
    /// OpenMetrics 1.0.
    OpenMetrics,
}

/// A target to scrape: the result of discovery and `relabel_configs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The `job_name` of the scrape config it came from.
    pub job: String,
    /// Labels every series of the target carries (`job`, `instance`, any
    /// other target label), after relabeling, with every `__`-prefixed
    /// label removed.
    pub labels: Labels,
    /// `scheme://address/metrics_path?params`, from `__scheme__`,
    /// `__address__`, `__metrics_path__` and `__param_*` after relabeling.
    pub url: String,
    /// From `__scrape_interval__` / `__scrape_timeout__` after relabeling.
    pub interval: Duration,
    pub timeout: Duration,
    /// Stable identity: a hash of `labels` and `url`, as Prometheus' target
    /// hash. The scrape offset within the interval comes from it, and the
    /// scheduler keys the target's series (and their staleness) by it.
    pub hash: u64,
}

/// One series of a scrape as it goes on the wire: full labels, sorted,
/// `__name__` included, target labels applied (`honor_labels`), after
/// `metric_relabel_configs`. External labels are not applied here: the
/// scheduler adds them, as for collections.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapedSeries {
    pub labels: Labels,
    pub value: f64,
    /// The exposition's own timestamp, kept when `honor_timestamps`.
    pub timestamp_ms: Option<i64>,
}

/// What one scrape of one target hands the scheduler. The scheduler
/// writes stale markers for every series of the same `source` that was in
/// the previous batch and is not in this one (a failed scrape sends only
/// its synthetic series, `up` = 0, so all others go stale), and for all
/// of them when `gone` (the target left discovery; `series` is empty).
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeBatch {
    /// `Target::hash`.
    pub source: u64,
    /// When the scrape started (ms since the epoch): the timestamp of every
    /// series without its own.
    pub ts_ms: i64,
    pub series: Vec<ScrapedSeries>,
    pub gone: bool,
}
