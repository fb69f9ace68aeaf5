//! `textfile`: metrics that cron jobs and scripts write to `*.prom` files in
//! `--collector.textfile.directory` (a directory or a glob of directories),
//! merged into the scrape as node_exporter 1.5.0 merges them, plus
//! `node_textfile_mtime_seconds{file}` for each file read and
//! `node_textfile_scrape_error` (1 when any file or the directory failed).
//!
//! A bad file is a log line and `node_textfile_scrape_error 1`, never a
//! failed collector: its metrics are left out, the other files' kept. Where
//! files disagree, node_exporter's registry decides and so do we: the first
//! file (by name) to define a family fixes its HELP and TYPE, a later file's
//! series with another HELP or TYPE, a series already seen, or a family whose
//! name collides with a summary/histogram's `_sum`/`_count`/`_bucket` are
//! dropped with a log line (client_golang's Gather; scrape_error stays 0 for
//! those, as in 1.5.0). Files with client-side timestamps are rejected whole.
//!
//! Where cairn is stricter than node_exporter, on purpose: only regular files
//! (or symlinks to one) up to `--collector.textfile.max-bytes` are read (a
//! FIFO would block, `/dev/zero` never ends; node_exporter reads a directory
//! named `x.prom` as empty, cairn reports it); and a file cannot define a
//! name that cairn or another collector owns (`RESERVED_PREFIXES`, and via
//! the gatherer's `drop_taken` any name another collector produced in the
//! same collection): such series are dropped, counted in
//! `cairn_textfile_dropped_series_total`, logged once while it lasts, and set
//! `node_textfile_scrape_error`, where node_exporter would serve a spoofed or
//! doubled family.
//!
//! Must never: fail the scrape because of a file's content, cache a file's
//! metrics between collections (files change at any time), block on or read
//! without bound from a file, or follow the directory option anywhere but
//! where the user pointed it.

mod glob;
pub mod parser;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Read;

use super::{CollectError, Collector, Context, Opt, OptKind, Settings};
use crate::metrics::{Emitter, MetricType};
use glob::go_join;
use parser::{Family, Kind};

pub const OPTIONS: &[Opt] = &[
    Opt {
        flag: "collector.textfile.directory",
        kind: OptKind::Text,
        default: "",
        help: "Directory to read text files with metrics from, supports glob matching.",
        aliases: &[],
    },
    Opt {
        flag: "collector.textfile.max-bytes",
        kind: OptKind::Count,
        default: "16777216",
        help: "Largest textfile read, in bytes; a larger file is skipped and sets node_textfile_scrape_error.",
        aliases: &[],
    },
];

/// The read buffer is shrunk back to this after a collection, so one large
/// file does not pin its size in memory until the next restart.
const KEEP_BUFFER: usize = 256 << 10;

const MTIME_NAME: &str = "node_textfile_mtime_seconds";
const MTIME_HELP: &str = "Unixtime mtime of textfiles successfully read.";
const ERROR_NAME: &str = "node_textfile_scrape_error";
const ERROR_HELP: &str = "1 if there was an error opening or reading a file, 0 otherwise";
const DROPPED_NAME: &str = "cairn_textfile_dropped_series_total";
const DROPPED_HELP: &str =
    "Series read from textfiles and dropped because their metric name belongs to another collector or to cairn itself.";

/// Names a textfile may never define: cairn's own families and the
/// per-collector ones. Names other collectors produced in the same
/// collection are refused by the gatherer (`drop_taken`).
const RESERVED_PREFIXES: &[&str] = &[
    "cairn_",
    "process_",
    "node_scrape_collector_",
    "node_textfile_",
];

fn reserved(name: &str) -> bool {
    RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
}

pub struct Textfile {
    directory: String,
    max_bytes: u64,
    data: Vec<u8>,
    /// Series dropped so far because another owner has their name.
    dropped: u64,
    /// Names refused in this collection, and in the one before: a name is
    /// logged when it is refused and was not the collection before, so a
    /// file that keeps a taken name is one log line, not one per scrape.
    refused_now: HashSet<String>,
    refused_before: HashSet<String>,
}

impl Textfile {
    pub fn new(settings: &Settings) -> Self {
        Textfile {
            directory: settings.text("collector.textfile.directory").to_owned(),
            max_bytes: settings.count("collector.textfile.max-bytes") as u64,
            data: Vec::with_capacity(4096),
            dropped: 0,
            refused_now: HashSet::new(),
            refused_before: HashSet::new(),
        }
    }

    /// Counts `series` of family `name` as dropped; logs the first time in
    /// a row.
    fn refuse(&mut self, name: &str, series: usize, owner: &str) {
        self.dropped += series as u64;
        if self.refused_now.insert(name.to_owned()) && !self.refused_before.contains(name) {
            tracing::error!(
                metric = name,
                series,
                "textfile metric dropped: its name belongs to {owner}; logged once while it lasts"
            );
        }
    }
}

/// One file that parsed: its path (as the `file` label), its families, and
/// its mtime when it could be read.
struct Parsed {
    path: String,
    families: Vec<Family>,
    mtime: Option<f64>,
}

/// Go's strconv.FormatFloat(v, 'g', -1, 64), as client_golang writes `le`
/// and `quantile` label values.
fn go_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Go picks %e when the decimal exponent is < -4 or >= 6 (the precision
    // it uses for that decision when formatting shortest), else %f; both
    // with the shortest digits that round-trip, which Rust also produces.
    let e = format!("{v:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", exp.abs());
    }
    format!("{v}")
}

/// A family as client_golang's registry has accepted it so far.
struct Accepted {
    help: String,
    kind: Kind,
}

/// The registry's consistency checks over this collector's output.
#[derive(Default)]
struct Registry {
    families: HashMap<String, Accepted>,
    series: HashSet<String>,
    key: String,
}

impl Registry {
    /// client_golang's checkSuffixCollisions for a new family.
    fn collides(&self, name: &str, kind: Kind) -> Option<String> {
        for (suffix, hist_only) in [("_count", false), ("_sum", false), ("_bucket", true)] {
            if let Some(base) = name.strip_suffix(suffix) {
                if let Some(f) = self.families.get(base) {
                    if f.kind == Kind::Histogram || (f.kind == Kind::Summary && !hist_only) {
                        return Some(format!(
                            "collected metric named {name:?} collides with previously collected {} named {base:?}",
                            f.kind.as_str()
                        ));
                    }
                }
            }
        }
        if matches!(kind, Kind::Summary | Kind::Histogram) {
            let mut suffixes = vec!["_count", "_sum"];
            if kind == Kind::Histogram {
                suffixes.push("_bucket");
            }
            for s in suffixes {
                let other = format!("{name}{s}");
                if self.families.contains_key(&other) {
                    return Some(format!(
                        "{} {name:?} collides with previously collected metric named {other:?}",
                        kind.as_str()
                    ));
                }
            }
        }
        None
    }

    /// Whether one series of family `name` may be added; logs why not.
    fn accept(&mut self, name: &str, help: &str, kind: Kind, labels: &[(&str, &str)]) -> bool {
        match self.families.get(name) {
            Some(f) if f.help != help => {
                tracing::error!(
                    metric = name,
                    help,
                    expected = %f.help,
                    "error gathering textfile metrics: collected metric has another HELP than one collected before; dropped"
                );
                return false;
            }
            Some(f) if f.kind != kind => {
                tracing::error!(
                    metric = name,
                    kind = kind.as_str(),
                    expected = f.kind.as_str(),
                    "error gathering textfile metrics: collected metric has another TYPE than one collected before; dropped"
                );
                return false;
            }
            Some(_) => {}
            None => {
                if let Some(msg) = self.collides(name, kind) {
                    tracing::error!(
                        metric = name,
                        "error gathering textfile metrics: {msg}; dropped"
                    );
                    return false;
                }
                self.families.insert(
                    name.to_owned(),
                    Accepted {
                        help: help.to_owned(),
                        kind,
                    },
                );
            }
        }
        self.key.clear();
        self.key.push_str(name);
        for (k, v) in labels {
            let _ = write!(self.key, "\u{ff}{k}\u{ff}{v}");
        }
        if !self.series.insert(self.key.clone()) {
            tracing::error!(
                metric = name,
                labels = ?labels,
                "error gathering textfile metrics: collected metric was collected before with the same name and label values; dropped"
            );
            return false;
        }
        true
    }
}

/// What `fstat` says an opened file is, for the error message.
fn file_kind(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// Reads and checks one `.prom` file (node_exporter's processFile). The
/// families are returned even when only the stat failed, as upstream.
///
/// Only regular files (or symlinks to one) are read, and at most
/// `max_bytes` of them: the file is opened with `O_NONBLOCK` so a FIFO
/// cannot block the open, `fstat`ed, and read through a `take` so neither a
/// device (`/dev/zero`) nor a file growing while it is read can make the
/// agent read without end.
fn process_file(
    path: &str,
    data: &mut Vec<u8>,
    max_bytes: u64,
) -> (Option<Vec<Family>>, Result<f64, String>) {
    use std::os::unix::fs::OpenOptionsExt;
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) => {
            return (
                None,
                Err(format!("failed to open textfile data file {path:?}: {e}")),
            )
        }
    };
    let meta = match f.metadata() {
        Ok(m) => m,
        Err(e) => return (None, Err(format!("failed to stat {path:?}: {e}"))),
    };
    if !meta.file_type().is_file() {
        return (
            None,
            Err(format!(
                "textfile {path:?} is {}, not a regular file; skipped",
                file_kind(meta.file_type())
            )),
        );
    }
    if meta.len() > max_bytes {
        return (
            None,
            Err(format!(
                "textfile {path:?} is {} bytes, over the limit of {max_bytes} (--collector.textfile.max-bytes); skipped",
                meta.len()
            )),
        );
    }
    data.clear();
    // One byte past the cap tells a file that grew since fstat.
    if let Err(e) = f.take(max_bytes.saturating_add(1)).read_to_end(data) {
        return (
            None,
            Err(format!("failed to read textfile data from {path:?}: {e}")),
        );
    }
    if data.len() as u64 > max_bytes {
        return (
            None,
            Err(format!(
                "textfile {path:?} grew over the limit of {max_bytes} bytes (--collector.textfile.max-bytes) while read; skipped"
            )),
        );
    }
    let families = match parser::parse(data) {
        Ok(f) => f,
        Err(e) => {
            return (
                None,
                Err(format!("failed to parse textfile data from {path:?}: {e}")),
            )
        }
    };
    if families
        .iter()
        .any(|f| f.metrics.iter().any(|m| m.has_timestamp))
    {
        return (
            None,
            Err(format!(
                "textfile {path:?} contains unsupported client-side timestamps, skipping entire file"
            )),
        );
    }
    // node_exporter would panic building a metric with a reserved label
    // name (`__x`); a file is at fault, so it is treated as a bad file.
    for fam in &families {
        for m in &fam.metrics {
            if let Some((l, _)) = m.labels.iter().find(|(l, _)| l.starts_with("__")) {
                return (
                    None,
                    Err(format!(
                        "textfile {path:?}: {l:?} is not a valid label name for metric {:?}",
                        fam.name
                    )),
                );
            }
        }
    }
    // The mtime is reported only once parsed, so a failed file never looks
    // fresh.
    match meta.modified() {
        Ok(t) => {
            let secs = match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => d.as_secs() as f64,
                Err(e) => -(e.duration().as_secs() as f64),
            };
            (Some(families), Ok(secs))
        }
        Err(e) => (Some(families), Err(format!("failed to stat {path:?}: {e}"))),
    }
}

/// Labels of a metric as client_golang builds them for its family: every
/// label name used anywhere in the family (`names`, sorted and unique;
/// missing ones empty), sorted. A merge of two sorted lists, so a family
/// with thousands of label names costs O(n log n), not O(n²).
fn full_labels<'a>(names: &[&'a str], m: &'a parser::Metric) -> Vec<(&'a str, &'a str)> {
    let mut own: Vec<(&str, &str)> = m
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    own.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut own = own.into_iter().peekable();
    names
        .iter()
        .map(|n| match own.peek() {
            Some((k, v)) if k == n => {
                let v = *v;
                own.next();
                (*n, v)
            }
            _ => (*n, ""),
        })
        .collect()
}

/// Adds one series with `labels` and, last, one extra label (`le` or
/// `quantile`), as client_golang's text writer orders them.
fn sample(
    out: &mut Emitter,
    name: &str,
    help: &str,
    kind: MetricType,
    labels: &[(&str, &str)],
    extra: Option<(&str, &str)>,
    value: f64,
) {
    out.family(name, help, kind).sample_with(value, |l| {
        for (k, v) in labels {
            l.label(k, v);
        }
        if let Some((k, v)) = extra {
            l.label(k, v);
        }
    });
}

/// Emits one accepted metric. Summaries and histograms go out as their
/// `_bucket`/`_sum`/`_count` (and quantile) series in untyped families of
/// those names: the exposition framework has no summary/histogram type yet,
/// and this keeps every sample Prometheus would ingest (histogram_quantile
/// works on `_bucket` whatever the TYPE line says).
fn emit_metric(
    out: &mut Emitter,
    fam: &Family,
    help: &str,
    labels: &[(&str, &str)],
    m: &parser::Metric,
) {
    let name = fam.name.as_str();
    match fam.kind {
        Kind::Counter => sample(out, name, help, MetricType::Counter, labels, None, m.value),
        Kind::Gauge => sample(out, name, help, MetricType::Gauge, labels, None, m.value),
        Kind::Untyped => sample(out, name, help, MetricType::Untyped, labels, None, m.value),
        Kind::Summary => {
            // client_golang keeps one value per quantile (the last one).
            let mut qs: Vec<(f64, f64)> = Vec::with_capacity(m.quantiles.len());
            for &(q, v) in &m.quantiles {
                match qs.iter_mut().find(|(x, _)| *x == q) {
                    Some(slot) => slot.1 = v,
                    None => qs.push((q, v)),
                }
            }
            qs.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (q, v) in qs {
                let q = go_g(q);
                sample(
                    out,
                    name,
                    help,
                    MetricType::Untyped,
                    labels,
                    Some(("quantile", &q)),
                    v,
                );
            }
            let sum = format!("{name}_sum");
            let count = format!("{name}_count");
            sample(out, &sum, help, MetricType::Untyped, labels, None, m.sum);
            sample(
                out,
                &count,
                help,
                MetricType::Untyped,
                labels,
                None,
                m.count as f64,
            );
        }
        Kind::Histogram => {
            let mut bs: Vec<(f64, u64)> = Vec::with_capacity(m.buckets.len() + 1);
            for &(le, c) in &m.buckets {
                match bs.iter_mut().find(|(x, _)| *x == le) {
                    Some(slot) => slot.1 = c,
                    None => bs.push((le, c)),
                }
            }
            bs.sort_by(|a, b| a.0.total_cmp(&b.0));
            if !bs.iter().any(|(le, _)| *le == f64::INFINITY) {
                bs.push((f64::INFINITY, m.count));
            }
            let bucket = format!("{name}_bucket");
            for (le, c) in bs {
                let le = go_g(le);
                sample(
                    out,
                    &bucket,
                    help,
                    MetricType::Untyped,
                    labels,
                    Some(("le", &le)),
                    c as f64,
                );
            }
            let sum = format!("{name}_sum");
            let count = format!("{name}_count");
            sample(out, &sum, help, MetricType::Untyped, labels, None, m.sum);
            sample(
                out,
                &count,
                help,
                MetricType::Untyped,
                labels,
                None,
                m.count as f64,
            );
        }
        // The parser rejects samples of these.
        Kind::GaugeHistogram => {}
    }
}

impl Collector for Textfile {
    fn update(&mut self, _ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        // Everything below is per collection on purpose: the files are
        // arbitrary, usually small, and may change between any two scrapes.
        std::mem::swap(&mut self.refused_now, &mut self.refused_before);
        self.refused_now.clear();
        let mut errored = false;
        let dirs = match glob::glob(&self.directory) {
            Ok(v) if !v.is_empty() => v,
            _ => vec![self.directory.clone()],
        };
        let mut parsed: Vec<Parsed> = Vec::new();
        for dir in &dirs {
            let mut names: Vec<String> = match std::fs::read_dir(dir) {
                Ok(rd) => rd
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect(),
                Err(e) => {
                    // No directory configured is not an error.
                    if !dir.is_empty() {
                        errored = true;
                        tracing::error!(path = %dir, error = %e, "failed to read textfile collector directory");
                    }
                    continue;
                }
            };
            names.sort_unstable();
            for name in names.iter().filter(|n| n.ends_with(".prom")) {
                let path = go_join(dir, name);
                let (families, mtime) = process_file(&path, &mut self.data, self.max_bytes);
                if let Err(e) = &mtime {
                    errored = true;
                    tracing::error!(file = %name, error = %e, "failed to collect textfile data");
                }
                if let Some(families) = families {
                    parsed.push(Parsed {
                        path,
                        families,
                        mtime: mtime.ok(),
                    });
                }
            }
        }

        // A family without HELP gets "Metric read from <every file with it>".
        let mut files_of: HashMap<&str, Vec<&str>> = HashMap::new();
        for p in &parsed {
            for f in &p.families {
                files_of.entry(&f.name).or_default().push(&p.path);
            }
        }
        let mut registry = Registry::default();
        let mut refused: Vec<(&str, usize)> = Vec::new();
        for p in &parsed {
            for fam in &p.families {
                if reserved(&fam.name) {
                    refused.push((&fam.name, fam.metrics.len()));
                    continue;
                }
                let default_help;
                let help = match &fam.help {
                    Some(h) => h.as_str(),
                    None => {
                        default_help = format!(
                            "Metric read from {}",
                            files_of[fam.name.as_str()].join(", ")
                        );
                        &default_help
                    }
                };
                let mut names: Vec<&str> = fam
                    .metrics
                    .iter()
                    .flat_map(|m| m.labels.iter().map(|(k, _)| k.as_str()))
                    .collect();
                names.sort_unstable();
                names.dedup();
                for m in &fam.metrics {
                    let labels = full_labels(&names, m);
                    if registry.accept(&fam.name, help, fam.kind, &labels) {
                        emit_metric(out, fam, help, &labels, m);
                    }
                }
            }
        }

        let mut mtimes: Vec<(&str, f64)> = parsed
            .iter()
            .filter_map(|p| p.mtime.map(|t| (p.path.as_str(), t)))
            .collect();
        mtimes.sort_by(|a, b| a.0.cmp(b.0));
        mtimes.dedup_by(|a, b| a.0 == b.0);
        for (path, t) in mtimes {
            let labels = [("file", path)];
            if registry.accept(MTIME_NAME, MTIME_HELP, Kind::Gauge, &labels) {
                sample(
                    out,
                    MTIME_NAME,
                    MTIME_HELP,
                    MetricType::Gauge,
                    &labels,
                    None,
                    t,
                );
            }
        }
        errored |= !refused.is_empty();
        let v = if errored { 1.0 } else { 0.0 };
        if registry.accept(ERROR_NAME, ERROR_HELP, Kind::Gauge, &[]) {
            out.single(ERROR_NAME, ERROR_HELP, MetricType::Gauge, v);
        }
        for (name, series) in refused {
            self.refuse(name, series, "cairn or another collector");
        }
        out.single(
            DROPPED_NAME,
            DROPPED_HELP,
            MetricType::Counter,
            self.dropped as f64,
        );
        self.data.clear();
        self.data.shrink_to(KEEP_BUFFER);
        Ok(())
    }

    fn names_from_outside(&self) -> bool {
        true
    }

    fn drop_taken(&mut self, out: &mut Emitter, taken: &[String]) {
        let mut any = false;
        for name in taken {
            if matches!(name.as_str(), MTIME_NAME | ERROR_NAME | DROPPED_NAME) {
                continue;
            }
            let Some(fam) = out.get_mut(name) else {
                continue;
            };
            let series = fam.series().len();
            fam.drop_series();
            any = true;
            self.refuse(name, series, "another collector");
        }
        if any {
            if let Some(f) = out.get_mut(ERROR_NAME) {
                f.values_mut().for_each(|v| *v = 1.0);
            }
            if let Some(f) = out.get_mut(DROPPED_NAME) {
                f.values_mut().for_each(|v| *v = self.dropped as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob::go_clean;
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};
    use std::path::PathBuf;

    fn dir(case: &str) -> String {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/textfile")
            .join(case)
            .to_str()
            .unwrap()
            .to_owned()
    }

    fn textfile(directory: &str) -> Textfile {
        Textfile::new(&Settings::default().with("collector.textfile.directory", directory))
    }

    /// Renders with mtimes replaced by 0 (they depend on the checkout).
    fn run(directory: &str) -> String {
        let text = render(&mut textfile(directory), &fixture_ctx("textfile")).unwrap();
        text.lines()
            .map(|l| {
                if l.starts_with("node_textfile_mtime_seconds{") {
                    let (k, _) = l.rsplit_once(' ').unwrap();
                    format!("{k} 0\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    }

    #[test]
    fn no_directory_is_no_error() {
        let text = run("");
        assert_eq!(
            text,
            "# HELP cairn_textfile_dropped_series_total Series read from textfiles and dropped because their metric name belongs to another collector or to cairn itself.\n\
             # TYPE cairn_textfile_dropped_series_total counter\ncairn_textfile_dropped_series_total 0\n\
             # HELP node_textfile_scrape_error 1 if there was an error opening or reading a file, 0 otherwise\n\
             # TYPE node_textfile_scrape_error gauge\nnode_textfile_scrape_error 0\n"
        );
    }

    #[test]
    fn missing_directory_is_an_error_metric_not_a_failure() {
        let text = run(&dir("does-not-exist"));
        assert!(text.ends_with("node_textfile_scrape_error 1\n"), "{text}");
    }

    #[test]
    fn good_files_as_node_exporter() {
        // node_exporter 1.5.0's output for this directory (mtimes zeroed,
        // paths relative to the fixture), except summaries and histograms:
        // see `expected.prom`'s header.
        let d = dir("good");
        let text = run(&d).replace(&format!("{d}/"), "DIR/");
        let want = include_str!("../../tests/fixtures/textfile/good.expected");
        assert_eq!(text, want);
    }

    #[test]
    fn bad_files_are_skipped_and_flagged() {
        let d = dir("bad");
        let text = run(&d).replace(&format!("{d}/"), "DIR/");
        let want = include_str!("../../tests/fixtures/textfile/bad.expected");
        assert_eq!(text, want);
    }

    #[test]
    fn conflicting_files_first_one_wins() {
        let d = dir("conflict");
        let text = run(&d).replace(&format!("{d}/"), "DIR/");
        let want = include_str!("../../tests/fixtures/textfile/conflict.expected");
        assert_eq!(text, want);
    }

    #[test]
    fn histograms_and_summaries_keep_every_sample() {
        // Until the exposition has summary/histogram families, their series
        // go out in untyped `_bucket`/`_sum`/`_count` families: the same
        // samples node_exporter 1.5.0 writes (`histograms.node_exporter`),
        // with +Inf added, duplicate bounds merged, and `_count`/`_sum`/
        // `_bucket` families of other files that collide dropped.
        let d = dir("histograms");
        let text = run(&d).replace(&format!("{d}/"), "DIR/");
        let want = include_str!("../../tests/fixtures/textfile/histograms.expected");
        assert_eq!(text, want);
        let samples = |t: &str| {
            let mut v: Vec<String> = t
                .lines()
                // cairn's own counter is not node_exporter's.
                .filter(|l| !l.starts_with('#') && !l.starts_with("cairn_"))
                .map(str::to_owned)
                .collect();
            v.sort();
            v
        };
        let ne = include_str!("../../tests/fixtures/textfile/histograms.node_exporter");
        assert_eq!(samples(&text), samples(ne));
    }

    /// Runs the collector on `dir` in a thread and gives up after 20 s, so
    /// a hang fails the test instead of hanging the suite.
    fn run_bounded(directory: &str, settings: Settings) -> String {
        let directory = directory.to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut t = Textfile::new(&settings.with("collector.textfile.directory", &directory));
            let _ = tx.send(render(&mut t, &fixture_ctx("textfile")).unwrap());
        });
        rx.recv_timeout(std::time::Duration::from_secs(20))
            .expect("the textfile collector did not return within 20 s")
    }

    /// A directory with one good file, so each case shows the other files
    /// still count.
    fn hostile_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a_good.prom"), "good_metric 1\n").unwrap();
        d
    }

    fn assert_only_good_counted(text: &str, bad: &str) {
        assert!(text.contains("good_metric 1\n"), "{text}");
        assert!(text.ends_with("node_textfile_scrape_error 1\n"), "{text}");
        assert!(
            !text.contains(&format!("{bad}\"}}")),
            "a skipped file must not get an mtime: {text}"
        );
    }

    #[test]
    fn regression_textfile_fifo_hang() {
        let d = hostile_dir();
        let fifo = d.path().join("fifo.prom");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let text = run_bounded(d.path().to_str().unwrap(), Settings::default());
        assert_only_good_counted(&text, "fifo.prom");
    }

    #[test]
    fn regression_textfile_dev_zero_symlink() {
        let d = hostile_dir();
        std::os::unix::fs::symlink("/dev/zero", d.path().join("zero.prom")).unwrap();
        let text = run_bounded(d.path().to_str().unwrap(), Settings::default());
        assert_only_good_counted(&text, "zero.prom");
    }

    #[test]
    fn regression_textfile_huge_file() {
        let d = hostile_dir();
        // Sparse: 1 GiB on the file system costs no blocks.
        let f = std::fs::File::create(d.path().join("huge.prom")).unwrap();
        f.set_len(1 << 30).unwrap();
        let text = run_bounded(d.path().to_str().unwrap(), Settings::default());
        assert_only_good_counted(&text, "huge.prom");
        // The cap is the option's: 100 bytes of valid metrics over a 64-byte cap.
        let d = hostile_dir();
        std::fs::write(d.path().join("b.prom"), "x_metric 1\n".repeat(10)).unwrap();
        let small = Settings::default().with("collector.textfile.max-bytes", "64");
        let text = run_bounded(d.path().to_str().unwrap(), small);
        assert_only_good_counted(&text, "b.prom");
        assert!(!text.contains("x_metric"), "{text}");
    }

    #[test]
    fn symlink_to_a_regular_file_is_read() {
        let d = hostile_dir();
        let target = d.path().join("target.txt");
        std::fs::write(&target, "linked_metric 2\n").unwrap();
        std::os::unix::fs::symlink(&target, d.path().join("link.prom")).unwrap();
        let text = run_bounded(d.path().to_str().unwrap(), Settings::default());
        assert!(text.contains("linked_metric 2\n"), "{text}");
        assert!(text.ends_with("node_textfile_scrape_error 0\n"), "{text}");
    }

    #[test]
    fn socket_and_directory_are_skipped() {
        let d = hostile_dir();
        let _sock = std::os::unix::net::UnixListener::bind(d.path().join("s.prom")).unwrap();
        let text = run_bounded(d.path().to_str().unwrap(), Settings::default());
        assert_only_good_counted(&text, "s.prom");
        let d = hostile_dir();
        std::fs::create_dir(d.path().join("sub.prom")).unwrap();
        let text = run_bounded(d.path().to_str().unwrap(), Settings::default());
        assert_only_good_counted(&text, "sub.prom");
    }

    #[test]
    fn glob_of_directories() {
        let pattern = format!("{}/g*", dir("globbed"));
        let text = run(&pattern);
        assert!(text.contains("from_g1 1\n"), "{text}");
        assert!(text.contains("from_g2 2\n"), "{text}");
        assert!(!text.contains("from_other"), "{text}");
        assert!(text.ends_with("node_textfile_scrape_error 0\n"), "{text}");
    }

    #[test]
    fn go_paths() {
        assert_eq!(go_clean("/a//b/./c/../d/"), "/a/b/d");
        assert_eq!(go_clean(""), ".");
        assert_eq!(go_clean("../x/.."), "..");
        assert_eq!(go_join("/var/lib/", "x.prom"), "/var/lib/x.prom");
        assert_eq!(go_join("dir", "x.prom"), "dir/x.prom");
    }

    #[test]
    fn go_match_semantics() {
        let m = |p: &str, n: &str| glob::matches(p, n).ok();
        assert_eq!(m("*.prom", "a.prom"), Some(true));
        assert_eq!(m("*", "a/b"), Some(false));
        assert_eq!(m("a?c", "abc"), Some(true));
        assert_eq!(m("[a-c]x", "bx"), Some(true));
        assert_eq!(m("[^a-c]x", "bx"), Some(false));
        assert_eq!(m("\\*", "*"), Some(true));
        assert_eq!(m("[", "a"), None);
        assert_eq!(m("a*b*c", "axxbyyc"), Some(true));
        assert_eq!(m("a*b", "axxbyy"), Some(false));
    }

    #[test]
    fn go_float_format() {
        for (v, want) in [
            (0.5, "0.5"),
            (1e6, "1e+06"),
            (100000.0, "100000"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1.5e-7, "1.5e-07"),
            (2.5e10, "2.5e+10"),
            (1234567.0, "1.234567e+06"),
            (f64::INFINITY, "+Inf"),
            (0.0, "0"),
            (-2.0, "-2"),
        ] {
            assert_eq!(go_g(v), want, "{v}");
        }
    }
}
