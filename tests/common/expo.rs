//! A parser of the Prometheus text format (0.0.4) into families, good
//! enough for node_exporter's and cairn's output: HELP/TYPE lines, escaped
//! label values and HELP text, `NaN`/`+Inf`/`-Inf`, exponent floats,
//! optional timestamps, summary/histogram suffixes. Must never accept what
//! Prometheus would reject in those outputs (duplicate series, duplicate
//! HELP/TYPE, malformed lines): those are errors.

use std::collections::{BTreeMap, BTreeSet};

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's own name (`foo_sum` in a summary `foo`).
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    /// As on the TYPE line; `untyped` when there is none.
    pub kind: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

impl Family {
    /// The distinct label-name sets used by this family's samples.
    pub fn label_name_sets(&self) -> BTreeSet<Vec<String>> {
        self.samples
            .iter()
            .map(|s| s.labels.keys().cloned().collect())
            .collect()
    }

    /// The value of the sample with exactly these labels.
    pub fn value(&self, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }
}

/// Families by name.
pub type Families = BTreeMap<String, Family>;

/// Parses `text`, or says which line is wrong and why.
pub fn parse(text: &str) -> Result<Families, String> {
    let mut fams = Families::new();
    let mut seen_help = BTreeSet::new();
    let mut seen_type = BTreeSet::new();
    let mut seen_series = BTreeSet::new();
    // The family the last HELP/TYPE line was about: summary and histogram
    // samples carry suffixed names.
    let mut current: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let lno = i + 1;
        let err = |msg: String| format!("line {lno}: {msg}: {line:?}");
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start();
            let (kw, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            if kw != "HELP" && kw != "TYPE" {
                continue; // a comment
            }
            let (name, arg) = rest.split_once(' ').unwrap_or((rest, ""));
            if !is_metric_name(name) {
                return Err(err(format!("bad metric name {name:?}")));
            }
            let fam = fams.entry(name.to_owned()).or_insert_with(|| Family {
                name: name.to_owned(),
                kind: "untyped".into(),
                help: String::new(),
                samples: Vec::new(),
            });
            if !fam.samples.is_empty() {
                return Err(err(format!("{kw} for {name} after its samples")));
            }
            if kw == "HELP" {
                if !seen_help.insert(name.to_owned()) {
                    return Err(err("second HELP".into()));
                }
                fam.help = unescape_help(arg);
            } else {
                if !seen_type.insert(name.to_owned()) {
                    return Err(err("second TYPE".into()));
                }
                match arg {
                    "counter" | "gauge" | "summary" | "histogram" | "untyped" => {
                        fam.kind = arg.to_owned()
                    }
                    _ => return Err(err(format!("unknown type {arg:?}"))),
                }
            }
            current = Some(name.to_owned());
            continue;
        }
        let sample = parse_sample(line).map_err(err)?;
        let fam_name = match &current {
            Some(c) if belongs_to(&sample.name, c, &fams[c].kind) => c.clone(),
            _ => sample.name.clone(),
        };
        let key = (sample.name.clone(), sample.labels.clone());
        if !seen_series.insert(key) {
            return Err(err("duplicate series".into()));
        }
        let fam = fams.entry(fam_name.clone()).or_insert_with(|| Family {
            name: fam_name.clone(),
            kind: "untyped".into(),
            help: String::new(),
            samples: Vec::new(),
        });
        fam.samples.push(sample);
        current = Some(fam_name);
    }
    // A HELP/TYPE without samples describes nothing.
    fams.retain(|_, f| !f.samples.is_empty());
    Ok(fams)
}

fn belongs_to(sample: &str, fam: &str, kind: &str) -> bool {
    if sample == fam {
        return true;
    }
    let suffixes: &[&str] = match kind {
        "summary" => &["_sum", "_count"],
        "histogram" => &["_sum", "_count", "_bucket"],
        _ => &[],
    };
    sample
        .strip_prefix(fam)
        .is_some_and(|s| suffixes.contains(&s))
}

fn is_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses a float as the text format writes them.
pub fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ if s
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Labels::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = parse_labels(r, &mut labels)?;
    }
    let mut fields = rest.split_ascii_whitespace();
    let v = fields.next().ok_or("no value")?;
    let value = parse_value(v).ok_or_else(|| format!("bad value {v:?}"))?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y"}` (after the `{`); returns what follows the `}`.
fn parse_labels<'a>(mut s: &'a str, labels: &mut Labels) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(r) = s.strip_prefix('}') {
            return Ok(r);
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let lname = s[..eq].trim();
        if !is_label_name(lname) {
            return Err(format!("bad label name {lname:?}"));
        }
        s = s[eq + 1..].trim_start();
        s = s.strip_prefix('"').ok_or("label value without quotes")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let close = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    other => return Err(format!("bad escape in label value: {other:?}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(lname.to_owned(), value).is_some() {
            return Err(format!("label {lname:?} given twice"));
        }
        s = s[close + 1..].trim_start();
        if let Some(r) = s.strip_prefix(',') {
            s = r;
        } else if !s.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}
