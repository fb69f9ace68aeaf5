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

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
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

/// A scraped series' final labels (sorted by name, `__name__` included,
/// no empty value) in one shared allocation, with a hash of them. The
/// target's series cache makes one per series when it first sees it;
/// every batch carrying the series and the scheduler's series table hold
/// a reference to that same allocation, so a warm scrape copies no label
/// and a series' labels are in memory once.
#[derive(Clone)]
pub struct SeriesLabels {
    /// Of `text`, by a fixed hasher: the same labels always hash the same,
    /// whichever target loop (or restart of one) made them.
    hash: u64,
    /// Each name, then its value, as `<decimal byte length>:<bytes>`: one
    /// string, sliced at known boundaries (no parsing of the content).
    text: Arc<str>,
}

impl SeriesLabels {
    /// From labels already sorted with no empty value (what [`Labels`]
    /// holds).
    pub fn new(labels: &Labels) -> Self {
        let mut text = String::with_capacity(
            labels
                .iter()
                .map(|(k, v)| k.len() + v.len() + 8)
                .sum::<usize>(),
        );
        for (k, v) in labels.iter() {
            let _ = write!(text, "{}:{k}{}:{v}", k.len(), v.len());
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        SeriesLabels {
            hash: h.finish(),
            text: Arc::from(text),
        }
    }

    /// From pairs in any order (tests, tools): as [`Labels::from_pairs`].
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self::new(&Labels::from_pairs(pairs))
    }

    /// The hash of the labels (the same labels, the same number).
    pub fn fingerprint(&self) -> u64 {
        self.hash
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> LabelsIter<'_> {
        LabelsIter { rest: &self.text }
    }

    /// The value of `name`, "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.iter().find(|(k, _)| *k == name).map_or("", |(_, v)| v)
    }

    /// How many pairs.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Whether both hold the same allocation (then they are equal).
    pub fn ptr_eq(&self, other: &SeriesLabels) -> bool {
        Arc::ptr_eq(&self.text, &other.text)
    }

    /// Bytes of the shared allocation's content (memory accounting).
    pub fn text_len(&self) -> usize {
        self.text.len()
    }
}

impl PartialEq for SeriesLabels {
    fn eq(&self, other: &Self) -> bool {
        self.ptr_eq(other) || (self.hash == other.hash && self.text == other.text)
    }
}

impl Eq for SeriesLabels {}

impl Hash for SeriesLabels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl std::fmt::Debug for SeriesLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The pairs of a [`SeriesLabels`].
pub struct LabelsIter<'a> {
    rest: &'a str,
}

impl<'a> LabelsIter<'a> {
    /// The next `<length>:<bytes>` item. `SeriesLabels::new` wrote every
    /// item, so a malformed one cannot occur; it would end the iteration.
    fn item(&mut self) -> Option<&'a str> {
        let colon = self.rest.find(':')?;
        let n: usize = self.rest[..colon].parse().ok()?;
        let item = self.rest.get(colon + 1..colon + 1 + n)?;
        self.rest = &self.rest[colon + 1 + n..];
        Some(item)
    }
}

impl<'a> Iterator for LabelsIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let k = self.item()?;
        let v = self.item()?;
        Some((k, v))
    }
}

/// One series of a scrape as it goes on the wire: full labels, sorted,
/// `__name__` included, target labels applied (`honor_labels`), after
/// `metric_relabel_configs`. External labels are not applied here: the
/// scheduler adds them, as for collections.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapedSeries {
    pub labels: SeriesLabels,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_labels_give_back_every_pair_whatever_it_holds() {
        let pairs = [
            ("__name__", "x_total"),
            ("a", "12:34"),
            ("b", "ü\u{0}\n\"é"),
            ("c", "9"),
            ("empty_is_no_label", ""),
        ];
        let l = SeriesLabels::from_pairs(pairs);
        let got: Vec<(&str, &str)> = l.iter().collect();
        assert_eq!(got, pairs[..4].to_vec());
        assert_eq!(l.len(), 4);
        assert_eq!(l.get("a"), "12:34");
        assert_eq!(l.get("empty_is_no_label"), "");
        let empty = SeriesLabels::from_pairs([]);
        assert!(empty.is_empty() && empty.iter().next().is_none());
    }

    #[test]
    fn series_labels_equal_and_hash_alike_by_content_alone() {
        let a = SeriesLabels::from_pairs([("job", "j"), ("__name__", "up")]);
        let b = SeriesLabels::from_pairs([("__name__", "up"), ("job", "j")]);
        assert!(!a.ptr_eq(&b));
        assert_eq!(a, b);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert!(a.ptr_eq(&a.clone()));
        // Boundaries are part of the content: moving a character from a
        // name to its value is another series.
        let c = SeriesLabels::from_pairs([("ab", "c")]);
        let d = SeriesLabels::from_pairs([("a", "bc")]);
        assert_ne!(c, d);
        assert_ne!(c.fingerprint(), d.fingerprint());
    }
}
