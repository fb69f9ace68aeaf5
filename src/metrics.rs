//! The in-memory shape of one collection and its Prometheus text rendering.
//!
//! Owns: `Emitter` (what a collector writes into), `Family`/`Series`, and the
//! text exposition format 0.0.4. Must never do I/O beyond writing into the
//! caller's buffer, and must never allocate per sample once warm: families and
//! series slots (with their label `String`s) are kept between collections and
//! overwritten in place, which is what keeps a steady-state collection free of
//! heap traffic.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

/// Prometheus metric types as they appear on `# TYPE` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Untyped,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Untyped => "untyped",
        }
    }
}

/// One series: its labels already rendered and escaped (`a="1",b="x"`,
/// sorted by the order the collector wrote them), and its value.
#[derive(Debug, Default, Clone)]
pub struct Series {
    pub labels: String,
    pub value: f64,
}

/// One metric family. `series[..used]` is the current collection; slots past
/// `used` are kept only for their allocated label buffers.
#[derive(Debug)]
pub struct Family {
    name: String,
    help: String,
    kind: MetricType,
    series: Vec<Series>,
    used: usize,
}

impl Family {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn help(&self) -> &str {
        &self.help
    }
    pub fn kind(&self) -> MetricType {
        self.kind
    }
    pub fn series(&self) -> &[Series] {
        &self.series[..self.used]
    }
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Sorts this collection's series by their rendered labels, which is the
    /// order client_golang gives (label names are written in a fixed order
    /// per family, so this compares label values in that order).
    pub fn sort_series(&mut self) {
        self.series[..self.used].sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
    }

    /// Leaves this family out of the current collection.
    pub fn drop_series(&mut self) {
        self.used = 0;
    }

    /// Series of the current collection, writable (values only: labels
    /// stay as the collector rendered them).
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut f64> {
        self.series[..self.used].iter_mut().map(|s| &mut s.value)
    }

    fn next_slot(&mut self) -> &mut Series {
        if self.used == self.series.len() {
            self.series.push(Series::default());
        }
        let s = &mut self.series[self.used];
        self.used += 1;
        s.labels.clear();
        s
    }
}

/// What a collector writes its samples into. One per collector, reused for
/// every collection of that collector.
#[derive(Debug, Default)]
pub struct Emitter {
    families: Vec<Family>,
    /// Family name → index in `families`: a textfile may hold 100,000
    /// families, so the lookup must not be a linear search.
    index: HashMap<Box<str>, usize>,
    /// The family after the last one written: collectors emit families in
    /// the same order every time, so checking it first skips the hash.
    hint: usize,
}

impl Emitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the previous collection's samples, keeping every buffer.
    ///
    /// Families the previous collection did not use are kept for their
    /// buffers, unless they outnumber the used ones (names that come and go,
    /// as a textfile's may): then they are dropped, so memory follows what
    /// is emitted now, not every name ever seen.
    pub fn clear(&mut self) {
        let unused = self.families.iter().filter(|f| f.used == 0).count();
        if unused > 64 && unused > self.families.len() - unused {
            self.families.retain(|f| f.used > 0);
            self.index.clear();
            for (i, f) in self.families.iter().enumerate() {
                self.index.insert(f.name.as_str().into(), i);
            }
        }
        for f in &mut self.families {
            f.used = 0;
        }
        self.hint = 0;
    }

    /// The family called `name`, created on first use. Help and type are
    /// refreshed on every call so a collector may compute them.
    pub fn family(&mut self, name: &str, help: &str, kind: MetricType) -> FamilyWriter<'_> {
        let idx = match self.families.get(self.hint) {
            Some(f) if f.name == name => self.hint,
            _ => match self.index.get(name) {
                Some(&i) => i,
                None => {
                    let i = self.families.len();
                    self.families.push(Family {
                        name: name.to_owned(),
                        help: String::new(),
                        kind,
                        series: Vec::new(),
                        used: 0,
                    });
                    self.index.insert(name.into(), i);
                    i
                }
            },
        };
        self.hint = idx + 1;
        let fam = &mut self.families[idx];
        if fam.help != help {
            fam.help.clear();
            fam.help.push_str(help);
        }
        fam.kind = kind;
        FamilyWriter { fam }
    }

    /// The family called `name` if this collection wrote to it.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Family> {
        let &i = self.index.get(name)?;
        self.families.get_mut(i).filter(|f| f.used > 0)
    }

    /// Shortcut for a family with a single unlabelled series.
    pub fn single(&mut self, name: &str, help: &str, kind: MetricType, value: f64) {
        self.family(name, help, kind).sample(&[], value);
    }

    /// Families that got at least one sample in this collection.
    pub fn families(&self) -> impl Iterator<Item = &Family> {
        self.families.iter().filter(|f| f.used > 0)
    }

    pub fn families_mut(&mut self) -> impl Iterator<Item = &mut Family> {
        self.families.iter_mut().filter(|f| f.used > 0)
    }

    /// Number of series in this collection.
    pub fn series_count(&self) -> usize {
        self.families.iter().map(|f| f.used).sum()
    }
}

/// Adds series to one family.
pub struct FamilyWriter<'a> {
    fam: &'a mut Family,
}

impl FamilyWriter<'_> {
    /// Adds a series whose labels are all plain strings.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.sample_with(value, |l| {
            for (k, v) in labels {
                l.label(k, v);
            }
        });
    }

    /// Adds a series whose labels are written by `f`, so numeric or
    /// formatted label values need no temporary `String`.
    pub fn sample_with(&mut self, value: f64, f: impl FnOnce(&mut Labels<'_>)) {
        let slot = self.fam.next_slot();
        slot.value = value;
        let mut l = Labels {
            buf: &mut slot.labels,
        };
        f(&mut l);
    }
}

/// Writes `name="value"` pairs, escaping values as the text format demands.
pub struct Labels<'a> {
    buf: &'a mut String,
}

impl Labels<'_> {
    pub fn label(&mut self, name: &str, value: &str) -> &mut Self {
        self.start(name);
        escape_into(self.buf, value);
        self.buf.push('"');
        self
    }

    /// A label whose value is anything `Display` (an integer, say).
    pub fn label_display(&mut self, name: &str, value: impl fmt::Display) -> &mut Self {
        self.start(name);
        // Writing into a String cannot fail.
        let _ = write!(Escaper(self.buf), "{value}");
        self.buf.push('"');
        self
    }

    fn start(&mut self, name: &str) {
        if !self.buf.is_empty() {
            self.buf.push(',');
        }
        self.buf.push_str(name);
        self.buf.push_str("=\"");
    }
}

struct Escaper<'a>(&'a mut String);

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// Label value escaping of the text format: backslash, double quote, newline.
pub fn escape_into(buf: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '"' => buf.push_str("\\\""),
            '\n' => buf.push_str("\\n"),
            c => buf.push(c),
        }
    }
}

/// HELP text escaping: backslash and newline only.
fn write_help(out: &mut Vec<u8>, help: &str) {
    for b in help.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b => out.push(b),
        }
    }
}

/// Writes a sample value the way Prometheus parsers expect (`+Inf`, `NaN`).
pub fn write_value(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if v == v.trunc() && v.abs() < 1e15 {
        // Integral values are the common case (counters); itoa-style is both
        // shorter and exact here.
        let _ = std::io::Write::write_fmt(out, format_args!("{}", v as i64));
    } else {
        let _ = std::io::Write::write_fmt(out, format_args!("{v}"));
    }
}

/// Renders families (already sorted by the caller) in text format 0.0.4.
pub fn render_text<'a>(families: impl IntoIterator<Item = &'a Family>, out: &mut Vec<u8>) {
    for f in families {
        if f.is_empty() {
            continue;
        }
        out.extend_from_slice(b"# HELP ");
        out.extend_from_slice(f.name.as_bytes());
        out.push(b' ');
        write_help(out, &f.help);
        out.extend_from_slice(b"\n# TYPE ");
        out.extend_from_slice(f.name.as_bytes());
        out.push(b' ');
        out.extend_from_slice(f.kind.as_str().as_bytes());
        out.push(b'\n');
        for s in f.series() {
            out.extend_from_slice(f.name.as_bytes());
            if !s.labels.is_empty() {
                out.push(b'{');
                out.extend_from_slice(s.labels.as_bytes());
                out.push(b'}');
            }
            out.push(b' ');
            write_value(out, s.value);
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sorted_escaped_families() {
        let mut e = Emitter::new();
        {
            let mut f = e.family(
                "node_x_total",
                "Help with \\ and\nnewline.",
                MetricType::Counter,
            );
            f.sample(&[("device", "b\"q")], 2.0);
            f.sample_with(1.5, |l| {
                l.label_display("cpu", 10).label("mode", "a\\b\nc");
            });
        }
        e.single("node_y", "Y.", MetricType::Gauge, f64::INFINITY);
        for f in e.families_mut() {
            f.sort_series();
        }
        let mut out = Vec::new();
        render_text(e.families(), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "# HELP node_x_total Help with \\\\ and\\nnewline.\n# TYPE node_x_total counter\n\
             node_x_total{cpu=\"10\",mode=\"a\\\\b\\nc\"} 1.5\n\
             node_x_total{device=\"b\\\"q\"} 2\n\
             # HELP node_y Y.\n# TYPE node_y gauge\nnode_y +Inf\n"
        );
    }

    #[test]
    fn reuses_slots_between_collections() {
        let mut e = Emitter::new();
        for round in 0..3 {
            e.clear();
            let mut f = e.family("a", "A.", MetricType::Gauge);
            f.sample(&[("k", "v")], round as f64);
            assert_eq!(e.series_count(), 1);
        }
        let fams: Vec<_> = e.families().collect();
        assert_eq!(fams.len(), 1);
        assert_eq!(fams[0].series()[0].value, 2.0);
    }

    #[test]
    fn names_that_come_and_go_do_not_pile_up() {
        let mut e = Emitter::new();
        for round in 0..50 {
            e.clear();
            for i in 0..100 {
                e.single(&format!("m_{round}_{i}"), "", MetricType::Gauge, 1.0);
            }
            e.single("stays", "", MetricType::Gauge, 1.0);
        }
        assert!(e.families.len() <= 2 * 101 + 64, "{}", e.families.len());
        assert_eq!(e.families().count(), 101);
        for (i, f) in e.families.iter().enumerate() {
            assert_eq!(e.index[f.name.as_str()], i);
        }
    }

    #[test]
    fn lookup_finds_families_in_any_order() {
        let mut e = Emitter::new();
        for round in 0..3 {
            e.clear();
            let order: Vec<usize> = if round == 1 {
                (0..1000).rev().collect()
            } else {
                (0..1000).collect()
            };
            for i in order {
                e.single(&format!("f{i}"), "", MetricType::Gauge, round as f64);
            }
        }
        assert_eq!(e.families.len(), 1000);
        assert!(e
            .families()
            .all(|f| f.series().len() == 1 && f.series()[0].value == 2.0));
    }

    #[test]
    fn values_format_like_prometheus_expects() {
        let cases = [
            (0.0, "0"),
            (-1.0, "-1"),
            (18446744073709551615.0, "18446744073709552000"),
            (0.01, "0.01"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (v, want) in cases {
            let mut out = Vec::new();
            write_value(&mut out, v);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{v}");
        }
    }
}
