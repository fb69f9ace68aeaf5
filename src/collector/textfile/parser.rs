//! The Prometheus text format as node_exporter 1.5.0's textfile collector
//! reads it: a byte-for-byte port of the state machine of prometheus/common
//! v0.37's `expfmt.TextParser`, so a file node_exporter accepts is accepted
//! here and a file it rejects is rejected here, for the same reason.
//!
//! Its quirks are kept on purpose: the last line must end in a newline;
//! whitespace after a value is read as a missing timestamp (an error); a
//! family may be split across the file; `_sum`/`_count`/`_bucket` lines join
//! a summary or histogram declared before them; lines of counters, gauges
//! and untyped families are not de-duplicated here (the caller does that, as
//! client_golang's registry does).
//!
//! Must never: panic on any input, or accept a value, label or name the Go
//! parser would refuse.

use std::collections::{HashMap, HashSet};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Untyped,
    Summary,
    Histogram,
    /// Declarable in client_model v0.3, but the parser cannot store its
    /// samples: a sample of one is an error.
    GaugeHistogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Untyped => "untyped",
            Kind::Summary => "summary",
            Kind::Histogram => "histogram",
            Kind::GaugeHistogram => "gaugehistogram",
        }
    }
}

/// One metric (series, or for summaries and histograms, one label set with
/// all its quantiles/buckets).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metric {
    /// In file order, without `quantile`/`le` of summaries/histograms.
    pub labels: Vec<(String, String)>,
    /// Counter, gauge and untyped value.
    pub value: f64,
    pub has_timestamp: bool,
    pub count: u64,
    pub sum: f64,
    /// (quantile, value) or (upper bound, cumulative count), file order.
    pub quantiles: Vec<(f64, f64)>,
    pub buckets: Vec<(f64, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: Option<String>,
    /// Untyped when the file has no TYPE line for it.
    pub kind: Kind,
    pub metrics: Vec<Metric>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "text format parsing error in line {}: {}",
            self.line, self.msg
        )
    }
}

enum Stop {
    Eof,
    Err(String),
}

type R<T> = Result<T, Stop>;

#[derive(Clone, Copy)]
enum State {
    StartOfLine,
    StartComment,
    ReadingMetricName,
    ReadingLabels,
    StartLabelName,
    StartLabelValue,
    ReadingValue,
    StartTimestamp,
    ReadingHelp,
    ReadingType,
}

/// A family while parsing: its TYPE may still be unset.
struct Fam {
    name: String,
    help: Option<String>,
    kind: Option<Kind>,
    metrics: Vec<Metric>,
}

struct Parser<'a> {
    data: &'a [u8],
    pos: usize,
    cur: u8,
    line: usize,
    token: Vec<u8>,
    fams: Vec<Fam>,
    by_name: HashMap<String, usize>,
    mf: usize,
    metric: Metric,
    /// Index of the label pair being read in `metric.labels`, if it is kept.
    label_idx: Option<usize>,
    /// Names in `metric.labels`: the duplicate check is one lookup per
    /// label, not a scan (a line may hold thousands of labels).
    label_names: HashSet<String>,
    /// The label just read repeats one of the metric's.
    duplicate_label: bool,
    label_name: String,
    /// The metric the value just read went to (for its timestamp).
    metric_idx: usize,
    /// Summary/histogram grouping: the labels other than quantile/le.
    sig_labels: Vec<(String, String)>,
    groups: HashMap<(usize, Vec<(String, String)>), usize>,
    quantile: f64,
    bucket: f64,
    is_count: bool,
    is_sum: bool,
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}
fn label_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}
fn label_cont(b: u8) -> bool {
    label_start(b) || b.is_ascii_digit()
}
fn metric_start(b: u8) -> bool {
    label_start(b) || b == b':'
}
fn metric_cont(b: u8) -> bool {
    label_cont(b) || b == b':'
}

fn strip_count_sum(name: &str) -> &str {
    if name.len() > 6 && name.ends_with("_count") {
        &name[..name.len() - 6]
    } else if name.len() > 4 && name.ends_with("_sum") {
        &name[..name.len() - 4]
    } else {
        name
    }
}

/// expfmt's parseFloat: Go's strconv.ParseFloat without hex floats and
/// digit separators. Out-of-range values are errors, as in Go.
pub fn parse_float(s: &str) -> Option<f64> {
    if s.contains(['p', 'P', '_']) {
        return None;
    }
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = unsigned.to_ascii_lowercase();
    let special_inf = lower == "inf" || lower == "infinity";
    if lower == "nan" {
        // Go takes no sign before NaN.
        return (unsigned.len() == s.len()).then_some(f64::NAN);
    }
    if !special_inf
        && !unsigned
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    if v.is_infinite() && !special_inf {
        return None;
    }
    Some(v)
}

impl<'a> Parser<'a> {
    fn read(&mut self) -> R<()> {
        match self.data.get(self.pos) {
            Some(&b) => {
                self.cur = b;
                self.pos += 1;
                Ok(())
            }
            None => Err(Stop::Eof),
        }
    }

    fn err<T>(&self, msg: impl Into<String>) -> R<T> {
        Err(Stop::Err(msg.into()))
    }

    fn skip_blank_tab(&mut self) -> R<()> {
        loop {
            self.read()?;
            if !is_blank(self.cur) {
                return Ok(());
            }
        }
    }

    fn skip_blank_tab_if_current(&mut self) -> R<()> {
        if is_blank(self.cur) {
            self.skip_blank_tab()?;
        }
        Ok(())
    }

    fn read_token_until_whitespace(&mut self) -> R<()> {
        self.token.clear();
        while !is_blank(self.cur) && self.cur != b'\n' {
            self.token.push(self.cur);
            self.read()?;
        }
        Ok(())
    }

    /// With `escapes`, `\\` and `\n` are decoded and any other escape is an
    /// error; without, a backslash is dropped (Go's behaviour).
    fn read_token_until_newline(&mut self, escapes: bool) -> R<()> {
        self.token.clear();
        let mut escaped = false;
        loop {
            if escapes && escaped {
                match self.cur {
                    b'\\' => self.token.push(b'\\'),
                    b'n' => self.token.push(b'\n'),
                    c => return self.err(format!("invalid escape sequence '\\{}'", char::from(c))),
                }
                escaped = false;
            } else {
                match self.cur {
                    b'\n' => return Ok(()),
                    b'\\' => escaped = true,
                    c => self.token.push(c),
                }
            }
            self.read()?;
        }
    }

    fn read_token_as_metric_name(&mut self) -> R<()> {
        self.token.clear();
        if !metric_start(self.cur) {
            return Ok(());
        }
        loop {
            self.token.push(self.cur);
            self.read()?;
            if !metric_cont(self.cur) {
                return Ok(());
            }
        }
    }

    fn read_token_as_label_name(&mut self) -> R<()> {
        self.token.clear();
        if !label_start(self.cur) {
            return Ok(());
        }
        loop {
            self.token.push(self.cur);
            self.read()?;
            if !label_cont(self.cur) {
                return Ok(());
            }
        }
    }

    fn read_token_as_label_value(&mut self) -> R<()> {
        self.token.clear();
        let mut escaped = false;
        loop {
            self.read()?;
            if escaped {
                match self.cur {
                    b'"' | b'\\' => self.token.push(self.cur),
                    b'n' => self.token.push(b'\n'),
                    c => return self.err(format!("invalid escape sequence '\\{}'", char::from(c))),
                }
                escaped = false;
                continue;
            }
            match self.cur {
                b'"' => return Ok(()),
                b'\n' => {
                    return self.err(format!(
                        "label value {:?} contains unescaped new-line",
                        String::from_utf8_lossy(&self.token)
                    ))
                }
                b'\\' => escaped = true,
                c => self.token.push(c),
            }
        }
    }

    /// Tokens of names are ASCII by construction.
    fn token_str(&self) -> String {
        String::from_utf8_lossy(&self.token).into_owned()
    }

    fn kind(&self) -> Option<Kind> {
        self.fams[self.mf].kind
    }

    fn set_or_create_current_mf(&mut self) {
        self.is_count = false;
        self.is_sum = false;
        let name = self.token_str();
        if let Some(&i) = self.by_name.get(&name) {
            self.mf = i;
            return;
        }
        let counted = name.len() > 6 && name.ends_with("_count");
        let summed = name.len() > 4 && name.ends_with("_sum");
        if let Some(&i) = self.by_name.get(strip_count_sum(&name)) {
            if self.fams[i].kind == Some(Kind::Summary) {
                self.mf = i;
                self.is_count = counted;
                self.is_sum = summed;
                return;
            }
        }
        let hist_name = if name.len() > 7 && name.ends_with("_bucket") {
            &name[..name.len() - 7]
        } else {
            strip_count_sum(&name)
        };
        if let Some(&i) = self.by_name.get(hist_name) {
            if self.fams[i].kind == Some(Kind::Histogram) {
                self.mf = i;
                self.is_count = counted;
                self.is_sum = summed;
                return;
            }
        }
        self.mf = self.fams.len();
        self.by_name.insert(name.clone(), self.mf);
        self.fams.push(Fam {
            name,
            help: None,
            kind: None,
            metrics: Vec::new(),
        });
    }

    fn step(&mut self, st: State) -> R<Option<State>> {
        use State::*;
        let next = match st {
            StartOfLine => {
                self.line += 1;
                match self.skip_blank_tab() {
                    Err(Stop::Eof) => return Ok(None),
                    r => r?,
                }
                match self.cur {
                    b'#' => StartComment,
                    b'\n' => StartOfLine,
                    _ => ReadingMetricName,
                }
            }
            StartComment => {
                self.skip_blank_tab()?;
                if self.cur == b'\n' {
                    return Ok(Some(StartOfLine));
                }
                self.read_token_until_whitespace()?;
                if self.cur == b'\n' {
                    return Ok(Some(StartOfLine));
                }
                let keyword = match self.token.as_slice() {
                    b"HELP" => ReadingHelp,
                    b"TYPE" => ReadingType,
                    _ => {
                        while self.cur != b'\n' {
                            self.read()?;
                        }
                        return Ok(Some(StartOfLine));
                    }
                };
                self.skip_blank_tab()?;
                self.read_token_as_metric_name()?;
                if self.cur == b'\n' {
                    return Ok(Some(StartOfLine));
                }
                if !is_blank(self.cur) {
                    return self.err("invalid metric name in comment");
                }
                self.set_or_create_current_mf();
                self.skip_blank_tab()?;
                if self.cur == b'\n' {
                    return Ok(Some(StartOfLine));
                }
                keyword
            }
            ReadingMetricName => {
                self.read_token_as_metric_name()?;
                if self.token.is_empty() {
                    return self.err("invalid metric name");
                }
                self.set_or_create_current_mf();
                if self.kind().is_none() {
                    self.fams[self.mf].kind = Some(Kind::Untyped);
                }
                self.metric = Metric::default();
                self.label_names.clear();
                self.duplicate_label = false;
                self.skip_blank_tab_if_current()?;
                ReadingLabels
            }
            ReadingLabels => {
                if matches!(self.kind(), Some(Kind::Summary | Kind::Histogram)) {
                    self.sig_labels.clear();
                    self.quantile = f64::NAN;
                    self.bucket = f64::NAN;
                }
                if self.cur != b'{' {
                    ReadingValue
                } else {
                    StartLabelName
                }
            }
            StartLabelName => {
                self.skip_blank_tab()?;
                if self.cur == b'}' {
                    self.skip_blank_tab()?;
                    return Ok(Some(ReadingValue));
                }
                self.read_token_as_label_name()?;
                if self.token.is_empty() {
                    let name = &self.fams[self.mf].name;
                    return self.err(format!("invalid label name for metric {name:?}"));
                }
                self.label_name = self.token_str();
                if self.label_name == "__name__" {
                    return self.err("label name \"__name__\" is reserved");
                }
                let kind = self.kind();
                let special = (kind == Some(Kind::Summary) && self.label_name == "quantile")
                    || (kind == Some(Kind::Histogram) && self.label_name == "le");
                self.label_idx = None;
                if !special {
                    if !self.label_names.insert(self.label_name.clone()) {
                        self.duplicate_label = true;
                    }
                    self.label_idx = Some(self.metric.labels.len());
                    self.metric
                        .labels
                        .push((self.label_name.clone(), String::new()));
                }
                self.skip_blank_tab_if_current()?;
                if self.cur != b'=' {
                    return self.err(format!(
                        "expected '=' after label name, found {:?}",
                        char::from(self.cur)
                    ));
                }
                if self.duplicate_label {
                    let name = &self.fams[self.mf].name;
                    return self.err(format!("duplicate label names for metric {name:?}"));
                }
                StartLabelValue
            }
            StartLabelValue => {
                self.skip_blank_tab()?;
                if self.cur != b'"' {
                    return self.err(format!(
                        "expected '\"' at start of label value, found {:?}",
                        char::from(self.cur)
                    ));
                }
                self.read_token_as_label_value()?;
                let Ok(value) = String::from_utf8(self.token.clone()) else {
                    return self.err(format!(
                        "invalid label value {:?}",
                        String::from_utf8_lossy(&self.token)
                    ));
                };
                let kind = self.kind();
                for (k, special) in [(Kind::Summary, "quantile"), (Kind::Histogram, "le")] {
                    if kind != Some(k) {
                        continue;
                    }
                    if self.label_name == special {
                        let Some(v) = parse_float(&value) else {
                            return self.err(format!(
                                "expected float as value for '{special}' label, got {value:?}"
                            ));
                        };
                        if k == Kind::Summary {
                            self.quantile = v;
                        } else {
                            self.bucket = v;
                        }
                    } else {
                        self.sig_labels
                            .push((self.label_name.clone(), value.clone()));
                    }
                }
                if let Some(i) = self.label_idx {
                    self.metric.labels[i].1 = value;
                }
                self.skip_blank_tab()?;
                match self.cur {
                    b',' => StartLabelName,
                    b'}' => {
                        self.skip_blank_tab()?;
                        ReadingValue
                    }
                    _ => {
                        let v = self
                            .label_idx
                            .map(|i| self.metric.labels[i].1.clone())
                            .unwrap_or_default();
                        return self.err(format!("unexpected end of label value {v:?}"));
                    }
                }
            }
            ReadingValue => {
                let kind = self.kind().unwrap_or(Kind::Untyped);
                let mf = self.mf;
                let idx = if matches!(kind, Kind::Summary | Kind::Histogram) {
                    let mut sig = self.sig_labels.clone();
                    sig.sort();
                    match self.groups.get(&(mf, sig.clone())) {
                        Some(&i) => i,
                        None => {
                            let i = self.fams[mf].metrics.len();
                            self.fams[mf].metrics.push(std::mem::take(&mut self.metric));
                            self.groups.insert((mf, sig), i);
                            i
                        }
                    }
                } else {
                    self.fams[mf].metrics.push(std::mem::take(&mut self.metric));
                    self.fams[mf].metrics.len() - 1
                };
                self.read_token_until_whitespace()?;
                let tok = String::from_utf8_lossy(&self.token).into_owned();
                let Some(value) = parse_float(&tok) else {
                    return self.err(format!("expected float as value, got {tok:?}"));
                };
                let (is_count, is_sum, q, b) =
                    (self.is_count, self.is_sum, self.quantile, self.bucket);
                let m = &mut self.fams[mf].metrics[idx];
                match kind {
                    Kind::Counter | Kind::Gauge | Kind::Untyped => m.value = value,
                    Kind::Summary => {
                        if is_count {
                            m.count = value as u64;
                        } else if is_sum {
                            m.sum = value;
                        } else if !q.is_nan() {
                            m.quantiles.push((q, value));
                        }
                    }
                    Kind::Histogram => {
                        if is_count {
                            m.count = value as u64;
                        } else if is_sum {
                            m.sum = value;
                        } else if !b.is_nan() {
                            m.buckets.push((b, value as u64));
                        }
                    }
                    Kind::GaugeHistogram => {
                        let name = &self.fams[mf].name;
                        return self.err(format!("unexpected type for metric name {name:?}"));
                    }
                }
                self.metric_idx = idx;
                if self.cur == b'\n' {
                    StartOfLine
                } else {
                    StartTimestamp
                }
            }
            StartTimestamp => {
                self.skip_blank_tab()?;
                self.read_token_until_whitespace()?;
                let tok = String::from_utf8_lossy(&self.token).into_owned();
                if tok.parse::<i64>().is_err() {
                    return self.err(format!("expected integer as timestamp, got {tok:?}"));
                }
                self.fams[self.mf].metrics[self.metric_idx].has_timestamp = true;
                self.read_token_until_newline(false)?;
                if !self.token.is_empty() {
                    return self.err(format!(
                        "spurious string after timestamp: {:?}",
                        String::from_utf8_lossy(&self.token)
                    ));
                }
                StartOfLine
            }
            ReadingHelp => {
                if self.fams[self.mf].help.is_some() {
                    let name = &self.fams[self.mf].name;
                    return self.err(format!("second HELP line for metric name {name:?}"));
                }
                self.read_token_until_newline(true)?;
                self.fams[self.mf].help = Some(String::from_utf8_lossy(&self.token).into_owned());
                StartOfLine
            }
            ReadingType => {
                if self.kind().is_some() {
                    let name = &self.fams[self.mf].name;
                    return self.err(format!(
                        "second TYPE line for metric name {name:?}, or TYPE reported after samples"
                    ));
                }
                self.read_token_until_newline(false)?;
                let t = String::from_utf8_lossy(&self.token).to_ascii_uppercase();
                let kind = match t.as_str() {
                    "COUNTER" => Kind::Counter,
                    "GAUGE" => Kind::Gauge,
                    "UNTYPED" => Kind::Untyped,
                    "SUMMARY" => Kind::Summary,
                    "HISTOGRAM" => Kind::Histogram,
                    "GAUGE_HISTOGRAM" => Kind::GaugeHistogram,
                    _ => {
                        return self.err(format!(
                            "unknown metric type {:?}",
                            String::from_utf8_lossy(&self.token)
                        ))
                    }
                };
                self.fams[self.mf].kind = Some(kind);
                StartOfLine
            }
        };
        Ok(Some(next))
    }
}

/// Parses a whole file. Families come in the order they first appear;
/// families without samples are left out.
pub fn parse(data: &[u8]) -> Result<Vec<Family>, ParseError> {
    let mut p = Parser {
        data,
        pos: 0,
        cur: 0,
        line: 0,
        token: Vec::with_capacity(64),
        fams: Vec::new(),
        by_name: HashMap::new(),
        mf: 0,
        metric: Metric::default(),
        label_idx: None,
        label_names: HashSet::new(),
        duplicate_label: false,
        label_name: String::new(),
        metric_idx: 0,
        sig_labels: Vec::new(),
        groups: HashMap::new(),
        quantile: f64::NAN,
        bucket: f64::NAN,
        is_count: false,
        is_sum: false,
    };
    let mut st = State::StartOfLine;
    loop {
        match p.step(st) {
            Ok(Some(next)) => st = next,
            Ok(None) => break,
            Err(Stop::Eof) => {
                return Err(ParseError {
                    line: p.line,
                    msg: "unexpected end of input stream".into(),
                })
            }
            Err(Stop::Err(msg)) => return Err(ParseError { line: p.line, msg }),
        }
    }
    Ok(p.fams
        .into_iter()
        .filter(|f| !f.metrics.is_empty())
        .map(|f| Family {
            name: f.name,
            help: f.help,
            kind: f.kind.unwrap_or(Kind::Untyped),
            metrics: f.metrics,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<Family> {
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn bad(text: &str) -> String {
        match parse(text.as_bytes()) {
            Ok(f) => panic!("{text:?} parsed: {f:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn simple_families_help_type_and_escapes() {
        let f = ok("# HELP a_total A \\\\ b\\nc\n# TYPE a_total counter\n\
                    a_total{x=\"1\",y=\"q\\\"\\\\\\n\"} 3\n  a_total{x=\"2\",} 4\n\
                    b\t-Inf\n# just a comment\n\n# TYPE c GAUGE\nc{} NaN\n");
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].name, "a_total");
        assert_eq!(f[0].help.as_deref(), Some("A \\ b\nc"));
        assert_eq!(f[0].kind, Kind::Counter);
        assert_eq!(
            f[0].metrics[0].labels,
            [("x".into(), "1".into()), ("y".into(), "q\"\\\n".into())]
        );
        assert_eq!(f[0].metrics[1].value, 4.0);
        assert_eq!(f[1].kind, Kind::Untyped);
        assert_eq!(f[1].metrics[0].value, f64::NEG_INFINITY);
        assert_eq!(f[2].kind, Kind::Gauge);
        assert!(f[2].metrics[0].value.is_nan());
    }

    #[test]
    fn summary_and_histogram_lines_group_by_labels() {
        let f = ok("# TYPE s summary\ns{a=\"1\",quantile=\"0.5\"} 1\ns_sum{a=\"1\"} 10\n\
                    s{quantile=\"0.9\",a=\"1\"} 2\ns_count{a=\"1\"} 5\ns{a=\"2\",quantile=\"0.5\"} 7\n\
                    # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 3\nh_sum 2.5\nh_count 3\n\
                    h_total 9\n");
        assert_eq!(f.len(), 3);
        let s = &f[0];
        assert_eq!(s.metrics.len(), 2);
        assert_eq!(s.metrics[0].labels, [("a".into(), "1".into())]);
        assert_eq!(s.metrics[0].quantiles, [(0.5, 1.0), (0.9, 2.0)]);
        assert_eq!((s.metrics[0].count, s.metrics[0].sum), (5, 10.0));
        let h = &f[1];
        assert_eq!(h.metrics.len(), 1);
        assert_eq!(h.metrics[0].buckets, [(1.0, 1), (f64::INFINITY, 3)]);
        assert_eq!((h.metrics[0].count, h.metrics[0].sum), (3, 2.5));
        // Not a histogram suffix: its own family.
        assert_eq!(f[2].name, "h_total");
    }

    #[test]
    fn timestamps_are_recorded() {
        let f = ok("a 1 1700000000000\nb 2\n");
        assert!(f[0].metrics[0].has_timestamp);
        assert!(!f[1].metrics[0].has_timestamp);
    }

    #[test]
    fn what_the_go_parser_rejects() {
        for (text, want) in [
            ("a 1", "unexpected end of input stream"),
            ("a 1 \n", "expected integer as timestamp"),
            ("a 1e400\n", "expected float as value"),
            ("a 0x1p3\n", "expected float as value"),
            ("a 1_000\n", "expected float as value"),
            ("a +nan\n", "expected float as value"),
            ("a\n", "expected float as value"),
            ("1a 1\n", "invalid metric name"),
            ("a{1=\"x\"} 1\n", "invalid label name"),
            ("a{__name__=\"x\"} 1\n", "reserved"),
            ("a{b=\"x\",b=\"y\"} 1\n", "duplicate label names"),
            ("a{b=x} 1\n", "expected '\"' at start of label value"),
            ("a{b=\"x\\t\"} 1\n", "invalid escape sequence"),
            ("a{b=\"x\ny\"} 1\n", "unescaped new-line"),
            ("a{b=\"x\" c=\"y\"} 1\n", "unexpected end of label value"),
            ("a{b \"x\"} 1\n", "expected '=' after label name"),
            ("a 1 2 3\n", "spurious string after timestamp"),
            ("a 1 x\n", "expected integer as timestamp"),
            ("# HELP a x\n# HELP a y\na 1\n", "second HELP line"),
            ("# TYPE a gauge\n# TYPE a gauge\na 1\n", "second TYPE line"),
            ("a 1\n# TYPE a gauge\n", "TYPE reported after samples"),
            ("# TYPE a gauge \na 1\n", "unknown metric type"),
            ("# TYPE a bogus\na 1\n", "unknown metric type"),
            ("# HELP a b\\t\na 1\n", "invalid escape sequence"),
            ("# HELP a-b x\n", "invalid metric name in comment"),
            (
                "# TYPE s summary\ns{quantile=\"x\"} 1\n",
                "'quantile' label",
            ),
            ("# TYPE h histogram\nh_bucket{le=\"\"} 1\n", "'le' label"),
            ("# TYPE g gauge_histogram\ng 1\n", "unexpected type"),
        ] {
            let e = bad(text);
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let invalid_utf8 = b"a{b=\"\xff\"} 1\n";
        assert!(parse(invalid_utf8)
            .unwrap_err()
            .msg
            .contains("invalid label value"));
    }

    #[test]
    fn odd_but_accepted() {
        // A backslash in a TYPE is dropped; HELP/TYPE without a value, and
        // families without samples, are fine; a family may come back.
        let f = ok("# TYPE a gau\\ge\n# HELP b\n# HELP c \n# TYPE d counter\na 1\n\
                    x 2\na{l=\"v\"} 3\n#\n   \n# comment without newline at end is fine if one follows\n");
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].kind, Kind::Gauge);
        assert_eq!(f[0].metrics.len(), 2);
        assert_eq!(f[0].help, None);
        assert!(ok("").is_empty());
        assert!(ok("  ").is_empty());
    }

    #[test]
    fn floats_as_go_parses_them() {
        assert_eq!(parse_float("1.5e3"), Some(1500.0));
        assert_eq!(parse_float("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_float("-infinity"), Some(f64::NEG_INFINITY));
        assert!(parse_float("NaN").unwrap().is_nan());
        assert!(parse_float("nan").unwrap().is_nan());
        assert_eq!(parse_float(".5"), Some(0.5));
        assert_eq!(parse_float("5."), Some(5.0));
        assert_eq!(parse_float("1e400"), None);
        assert_eq!(parse_float("-nan"), None);
        assert_eq!(parse_float("0x10"), None);
        assert_eq!(parse_float(""), None);
        assert_eq!(parse_float("1,5"), None);
    }
}
