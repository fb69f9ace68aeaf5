//! The exposition parsers: Prometheus text 0.0.4 and OpenMetrics 1.0,
//! accepting and refusing exactly what Prometheus 2.42's
//! `model/textparse` lexers and parsers accept and refuse, and choosing
//! between them by Content-Type as its scrape loop does.
//!
//! Owns: the choice of format ([`format_for`]), both grammars, Go's
//! `strconv.ParseFloat` syntax for values (and OpenMetrics timestamps),
//! label value unescaping, the canonical NaN.
//!
//! Must never: allocate per sample once warm (the caller's `Vec` keeps its
//! entries and their `String`s, which are overwritten in place); use a
//! regex; panic on any input; hand out a NaN other than the canonical one
//! (a body can never forge a stale marker); accept part of a body (any
//! error fails the whole scrape, as in Prometheus, with the line number).
//!
//! Facts carried over from Prometheus 2.42 (and where cairn differs):
//! - Text: whitespace (spaces, tabs) may surround every token of a sample
//!   line, commas between labels may be left out and one trailing comma is
//!   allowed, a raw newline may sit inside a quoted label value, blank
//!   lines and any `#` comment are skipped, `# HELP`/`# TYPE` lines are
//!   checked (HELP text valid UTF-8; TYPE one of counter, gauge,
//!   histogram, summary, untyped, spelled exactly: a trailing space is an
//!   error), a timestamp is integer milliseconds (digits only). A NUL byte
//!   at the start of a line ends the body without error (Prometheus'
//!   lexer takes it for the end of input); anywhere outside a label value,
//!   HELP text or comment it is an error. CRLF line ends are not special:
//!   `1\r` is not a number, so such a body fails, as in Prometheus.
//! - OpenMetrics: single spaces only, no blank lines, no comment but
//!   HELP/TYPE/UNIT/EOF, `# EOF` required and nothing after it (one
//!   newline allowed), labels strictly comma-separated, TYPE one of
//!   counter, gauge, histogram, gaugehistogram, summary, info, stateset,
//!   unknown; UNIT must be a `_`-suffix of the name; timestamps are float
//!   seconds, turned into milliseconds as Go's `int64(ts * 1000)` does
//!   (truncation toward zero; out of range saturates, as Go on arm64);
//!   exemplars are checked (only on `_total`/`_bucket` names) and dropped.
//!   Prometheus 2.42 gives `_created` samples no special meaning: they are
//!   ordinary series, and so they are here.
//! - Values: Go's ParseFloat minus hex and `_` (Prometheus refuses `p`,
//!   `P`, `_`): `NaN` (any case, no sign), `[+-]Inf`/`Infinity` (any case),
//!   decimals with exponents; a finite literal out of f64's range is an
//!   error. Every NaN becomes Go's `math.NaN()`, 0x7ff8000000000001, the
//!   bits Prometheus stores (`value.NormalNaN`).
//! - Prometheus validates two things after parsing that are checked here
//!   so the scrape fails the same way: a label name given twice with
//!   non-empty values (its appender drops empty-valued labels, then
//!   refuses duplicates) and a non-empty `__name__` label (a duplicate of
//!   the metric name). An empty `__name__` label is dropped. Labels with
//!   empty values otherwise stay in the output, as written: what they mean
//!   for `honor_labels` is the scrape loop's business. (Prometheus checks
//!   duplicates after target labels and metric relabeling, which can hide
//!   one, e.g. `job` given twice with `honor_labels: false`; cairn refuses
//!   every duplicate.)
//! - Content-Type: a media type `application/openmetrics-text` (any case,
//!   with valid parameters) is OpenMetrics; a missing, malformed or any
//!   other type is text, as Prometheus falls back to text. (Prometheus
//!   2.42 would use its protobuf parser for `application/vnd.google.protobuf`;
//!   cairn never asks for protobuf, see [`ACCEPT`], and parses it as text.)

use super::{Format, ParsedSample};

/// The `Accept` header Prometheus 2.42 sends when it scrapes.
pub const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The bits of Go's `math.NaN()`, which Prometheus stores for every NaN a
/// target states (never the stale marker 0x7ff0000000000002).
pub const NORMAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// Why a body could not be parsed; the scrape fails (`up` = 0).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    #[error("line {line}: {msg}")]
    Syntax { line: usize, msg: String },
}

/// Parses `body` (already decompressed) as the format `content_type`
/// names, replacing `out`'s contents with its samples in body order. The
/// entries `out` already holds are reused (their `String`s overwritten),
/// so parsing a similar body again allocates nothing. On error `out` is
/// left empty.
pub fn parse(
    body: &[u8],
    content_type: Option<&str>,
    out: &mut Vec<ParsedSample>,
) -> Result<Format, ParseError> {
    let res = run(body, content_type, out, None);
    if res.is_err() {
        out.clear();
    }
    res
}

/// Parses `body` as [`parse`] does, but hands each sample to `each` as
/// soon as it is read instead of keeping them all: `slot` holds the one
/// sample being read (its `String`s reused from call to call), so the
/// caller never holds a body's worth of parsed samples. On error the
/// samples before the bad line have been handed over already: the caller
/// discards what it made of them.
pub fn parse_each<'a>(
    body: &[u8],
    content_type: Option<&str>,
    slot: &'a mut Vec<ParsedSample>,
    each: &'a mut dyn FnMut(&ParsedSample),
) -> Result<Format, ParseError> {
    run(body, content_type, slot, Some(each))
}

fn run<'a>(
    body: &[u8],
    content_type: Option<&str>,
    out: &'a mut Vec<ParsedSample>,
    each: Option<&'a mut dyn FnMut(&ParsedSample)>,
) -> Result<Format, ParseError> {
    let format = format_for(content_type);
    let streaming = each.is_some();
    let mut p = Parser {
        b: body,
        i: 0,
        w: Writer { out, len: 0, each },
    };
    let res = match format {
        Format::Text => p.text(),
        Format::OpenMetrics => p.openmetrics(),
    };
    match res {
        Ok(()) => {
            if !streaming {
                let len = p.w.len;
                p.w.out.truncate(len);
            }
            Ok(format)
        }
        Err(e) => Err(ParseError::Syntax {
            line: line_of(body, e.pos),
            msg: e.msg,
        }),
    }
}

/// The format Prometheus 2.42 parses a body as, from its Content-Type.
pub fn format_for(content_type: Option<&str>) -> Format {
    let Some(ct) = content_type else {
        return Format::Text;
    };
    let (media, params) = match ct.find(';') {
        Some(i) => (&ct[..i], &ct[i..]),
        None => (ct, ""),
    };
    if media
        .trim()
        .eq_ignore_ascii_case("application/openmetrics-text")
        && media_params_valid(params)
    {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

/// Whether Go's `mime.ParseMediaType` accepts `rest` (everything from the
/// first `;`) as parameters: `; name=value` pairs, a value a token or a
/// quoted string, no name twice, one trailing `;` ignored. Prometheus
/// parses a body whose Content-Type fails this as text.
fn media_params_valid(rest: &str) -> bool {
    // Names seen so far, for Go's duplicate check; a real header has one
    // or two, so an array, not an allocation per scrape.
    const MAX_PARAMS: usize = 16;
    let mut seen: [&str; MAX_PARAMS] = [""; MAX_PARAMS];
    let mut nseen = 0;
    let mut v = rest;
    loop {
        v = v.trim_start();
        if v.is_empty() {
            return true;
        }
        let Some(r) = v.strip_prefix(';') else {
            return false;
        };
        let r = r.trim_start();
        let name_len = r.bytes().take_while(|&c| is_token_byte(c)).count();
        if name_len == 0 {
            // Go ignores a trailing semicolon.
            return r.trim().is_empty();
        }
        let name = &r[..name_len];
        let r = r[name_len..].trim_start();
        let Some(r) = r.strip_prefix('=') else {
            return false;
        };
        let r = r.trim_start();
        let consumed = if let Some(q) = r.strip_prefix('"') {
            let mut end = None;
            let mut esc = false;
            for (k, c) in q.char_indices() {
                if esc {
                    esc = false;
                } else if c == '\\' {
                    esc = true;
                } else if c == '"' {
                    end = Some(k);
                    break;
                }
            }
            match end {
                Some(k) => k + 2,
                None => return false,
            }
        } else {
            let n = r.bytes().take_while(|&c| is_token_byte(c)).count();
            if n == 0 {
                return false;
            }
            n
        };
        if seen[..nseen].iter().any(|s| s.eq_ignore_ascii_case(name)) {
            return false;
        }
        if nseen == MAX_PARAMS {
            // Past any real header: treat as malformed (text), not grow.
            return false;
        }
        seen[nseen] = name;
        nseen += 1;
        v = &r[consumed..];
    }
}

/// RFC 1521 token characters, as Go's mime package defines them.
fn is_token_byte(c: u8) -> bool {
    c > b' ' && c < 0x7f && !b"()<>@,;:\\\"/[]?=".contains(&c)
}

/// 1-based line of byte offset `pos`.
fn line_of(body: &[u8], pos: usize) -> usize {
    1 + body[..pos.min(body.len())]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
}

/// An error at a byte offset; turned into a line number only on the way
/// out, so the hot path never counts lines.
struct Fail {
    pos: usize,
    msg: String,
}

type Res<T> = Result<T, Fail>;

fn err<T>(pos: usize, msg: impl Into<String>) -> Res<T> {
    Err(Fail {
        pos,
        msg: msg.into(),
    })
}

/// Writes samples into the caller's vector, reusing its entries; or,
/// with `each`, hands each one over and reuses the first entry.
struct Writer<'a> {
    out: &'a mut Vec<ParsedSample>,
    /// Entries filled so far in this parse.
    len: usize,
    each: Option<&'a mut dyn FnMut(&ParsedSample)>,
}

impl Writer<'_> {
    /// Starts the next sample: its name set, its labels emptied (kept
    /// allocated until `finish` truncates them).
    fn start(&mut self, name: &str) {
        if self.len == self.out.len() {
            self.out.push(ParsedSample {
                name: String::new(),
                labels: Vec::new(),
                value: 0.0,
                timestamp_ms: None,
            });
        }
        let s = &mut self.out[self.len];
        s.name.clear();
        s.name.push_str(name);
    }

    /// Adds label number `n` of the current sample; `raw` is the value as
    /// quoted in the body, escapes not yet undone.
    fn label(&mut self, n: usize, name: &str, raw: &str) {
        let labels = &mut self.out[self.len].labels;
        if n == labels.len() {
            labels.push((String::new(), String::new()));
        }
        let (ln, lv) = &mut labels[n];
        ln.clear();
        ln.push_str(name);
        lv.clear();
        unescape_into(raw, lv);
    }

    /// Completes the current sample with `nlabels` labels; refuses a label
    /// name given twice with non-empty values.
    fn finish(&mut self, nlabels: usize, value: f64, ts: Option<i64>, pos: usize) -> Res<()> {
        let s = &mut self.out[self.len];
        s.labels.truncate(nlabels);
        s.value = value;
        s.timestamp_ms = ts;
        if let Some(dup) = duplicate_name(&s.labels) {
            return err(pos, format!("label name \"{dup}\" is not unique"));
        }
        match self.each.as_mut() {
            Some(f) => f(s),
            None => self.len += 1,
        }
        Ok(())
    }
}

/// A label name that appears twice with non-empty values, if any.
fn duplicate_name(labels: &[(String, String)]) -> Option<String> {
    // Few labels (the usual case): compare pairs, no allocation. Many: sort
    // the names, so a hostile body cannot make this quadratic.
    const PAIRWISE_MAX: usize = 32;
    if labels.len() <= PAIRWISE_MAX {
        for (i, (n, v)) in labels.iter().enumerate() {
            if v.is_empty() {
                continue;
            }
            if labels[..i].iter().any(|(n2, v2)| n2 == n && !v2.is_empty()) {
                return Some(n.clone());
            }
        }
        return None;
    }
    let mut names: Vec<&str> = labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, _)| n.as_str())
        .collect();
    names.sort_unstable();
    names
        .windows(2)
        .find(|w| w[0] == w[1])
        .map(|w| w[0].to_owned())
}

/// Undoes the label value escapes Prometheus undoes (`\\`, `\"`, `\n`);
/// any other backslash pair stays as written, as Go's strings.Replacer
/// leaves it.
fn unescape_into(raw: &str, out: &mut String) {
    let mut rest = raw;
    while let Some(k) = rest.find('\\') {
        out.push_str(&rest[..k]);
        let after = &rest[k + 1..];
        match after.as_bytes().first() {
            Some(b'\\') => {
                out.push('\\');
                rest = &after[1..];
            }
            Some(b'"') => {
                out.push('"');
                rest = &after[1..];
            }
            Some(b'n') => {
                out.push('\n');
                rest = &after[1..];
            }
            _ => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
}

/// Byte classes of the names' grammars, looked up once per byte.
const NAME_START: u8 = 1;
const NAME: u8 = 2;
const LABEL_START: u8 = 4;
const LABEL: u8 = 8;

const CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let alpha = b.is_ascii_alphabetic() || b == b'_';
        let digit = b.is_ascii_digit();
        let mut k = 0;
        if alpha || b == b':' {
            k |= NAME_START | NAME;
        }
        if digit {
            k |= NAME | LABEL;
        }
        if alpha {
            k |= LABEL_START | LABEL;
        }
        t[c] = k;
        c += 1;
    }
    t
};

fn is_name_start(c: u8) -> bool {
    CLASSES[c as usize] & NAME_START != 0
}

fn is_name_byte(c: u8) -> bool {
    CLASSES[c as usize] & NAME != 0
}

fn is_label_start(c: u8) -> bool {
    CLASSES[c as usize] & LABEL_START != 0
}

fn is_label_byte(c: u8) -> bool {
    CLASSES[c as usize] & LABEL != 0
}

/// Parses a value as Prometheus does: Go's `strconv.ParseFloat(s, 64)`
/// after refusing `p`, `P` and `_` (so no hex floats, no underscores).
pub fn parse_go_float(s: &[u8]) -> Option<f64> {
    let (neg, body) = match s.first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let signed = body.len() != s.len();
    if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
        return Some(if neg {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if !signed && body.eq_ignore_ascii_case(b"nan") {
        return Some(f64::from_bits(NORMAL_NAN_BITS));
    }
    // [digits][.digits] with at least one digit, then [eE][+-]digits.
    let mut k = 0;
    let int_digits = body.iter().take_while(|c| c.is_ascii_digit()).count();
    k += int_digits;
    let mut frac_digits = 0;
    if body.get(k) == Some(&b'.') {
        k += 1;
        frac_digits = body[k..].iter().take_while(|c| c.is_ascii_digit()).count();
        k += frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if matches!(body.get(k), Some(b'e' | b'E')) {
        k += 1;
        if matches!(body.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        let exp_digits = body[k..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp_digits == 0 {
            return None;
        }
        k += exp_digits;
    }
    if k != body.len() {
        return None;
    }
    // Only ASCII digits, signs, '.' and 'e' remain: valid UTF-8, and a
    // syntax Rust's parser accepts with the same correctly rounded result.
    let v: f64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    // Go reports a finite literal beyond f64's range as an error.
    if v.is_infinite() {
        return None;
    }
    Some(v)
}

/// A value for a sample: Go's float syntax, every NaN canonical.
fn sample_value(tok: &[u8], pos: usize) -> Res<f64> {
    match parse_go_float(tok) {
        Some(v) if v.is_nan() => Ok(f64::from_bits(NORMAL_NAN_BITS)),
        Some(v) => Ok(v),
        None => err(
            pos,
            format!(
                "strconv.ParseFloat: parsing {:?}: invalid syntax",
                String::from_utf8_lossy(tok)
            ),
        ),
    }
}

fn as_str<'a>(b: &'a [u8], pos: usize, what: &str) -> Res<&'a str> {
    std::str::from_utf8(b).or_else(|_| err(pos, format!("invalid UTF-8 {what}")))
}

const TEXT_TYPES: &[&[u8]] = &[b"counter", b"gauge", b"histogram", b"summary", b"untyped"];
const OM_TYPES: &[&[u8]] = &[
    b"counter",
    b"gauge",
    b"histogram",
    b"gaugehistogram",
    b"summary",
    b"info",
    b"stateset",
    b"unknown",
];

struct Parser<'b, 'o> {
    b: &'b [u8],
    i: usize,
    w: Writer<'o>,
}

impl<'b> Parser<'b, '_> {
    /// The byte at `k`; the text format sees the body with a newline
    /// appended (as Prometheus appends one), so `k == len` reads `\n`;
    /// beyond that, NUL (the lexer's end of input).
    fn at_text(&self, k: usize) -> u8 {
        match self.b.get(k) {
            Some(&c) => c,
            None if k == self.b.len() => b'\n',
            None => 0,
        }
    }

    fn skip_ws_text(&mut self) {
        while matches!(self.at_text(self.i), b' ' | b'\t') {
            self.i += 1;
        }
    }

    /// Text 0.0.4, entry by entry.
    fn text(&mut self) -> Res<()> {
        loop {
            self.skip_ws_text();
            if self.i > self.b.len() {
                return Ok(());
            }
            match self.at_text(self.i) {
                // The lexer's end of input.
                0 => return Ok(()),
                b'\n' => self.i += 1,
                b'#' => {
                    if self.text_comment()? {
                        return Ok(());
                    }
                }
                c if is_name_start(c) => self.text_sample()?,
                _ => return err(self.i, "not a valid start token"),
            }
        }
    }

    /// A `#` line. Returns true when a NUL ended the input.
    fn text_comment(&mut self) -> Res<bool> {
        self.i += 1;
        let ws_start = self.i;
        self.skip_ws_text();
        if self.i == ws_start {
            // `#` not followed by a blank: a comment whose NUL bytes end
            // the input (the lexer does not skip them here).
            return Ok(self.text_rest_of_comment(false));
        }
        let rest = &self.b[self.i.min(self.b.len())..];
        let kind = if rest.starts_with(b"HELP") {
            Some(true)
        } else if rest.starts_with(b"TYPE") {
            Some(false)
        } else {
            None
        };
        if let Some(is_help) = kind {
            if matches!(self.at_text(self.i + 4), b' ' | b'\t') {
                self.i += 4;
                self.skip_ws_text();
                self.text_meta(is_help)?;
                return Ok(false);
            }
        }
        if self.at_text(self.i) == 0 {
            return Ok(true);
        }
        Ok(self.text_rest_of_comment(true))
    }

    /// Consumes a comment through its newline; NULs are skipped when
    /// `skip_nul`, else the first one ends the input (returns true).
    fn text_rest_of_comment(&mut self, skip_nul: bool) -> bool {
        loop {
            match self.at_text(self.i) {
                b'\n' => {
                    self.i += 1;
                    return false;
                }
                0 if !skip_nul => return true,
                _ => self.i += 1,
            }
        }
    }

    /// `# HELP name text` / `# TYPE name type`, after the keyword.
    fn text_meta(&mut self, is_help: bool) -> Res<()> {
        let what = if is_help { "HELP" } else { "TYPE" };
        if !is_name_start(self.at_text(self.i)) {
            return err(self.i, format!("expected metric name after {what}"));
        }
        while is_name_byte(self.at_text(self.i)) {
            self.i += 1;
        }
        // The rest of the line; the body's end reads as its newline.
        let start = self.i.min(self.b.len());
        let end = match self.b[start..].iter().position(|&c| c == b'\n') {
            Some(k) => start + k,
            None => self.b.len(),
        };
        let rest = &self.b[start..end];
        if rest.first() == Some(&0) {
            return err(start, format!("linebreak expected after {what} metadata"));
        }
        // All blanks: the lexer takes them as whitespace and the text is
        // empty; otherwise the text is the rest without its first byte.
        let text: &[u8] = if rest.iter().all(|&c| c == b' ' || c == b'\t') {
            b""
        } else {
            &rest[1..]
        };
        if is_help {
            if std::str::from_utf8(text).is_err() {
                return err(start, "help text is not a valid utf8 string");
            }
        } else if !TEXT_TYPES.contains(&text) {
            return err(
                start,
                format!("invalid metric type {:?}", String::from_utf8_lossy(text)),
            );
        }
        self.i = end + 1;
        Ok(())
    }

    fn text_sample(&mut self) -> Res<()> {
        let entry = self.i;
        let name_start = self.i;
        while is_name_byte(self.at_text(self.i)) {
            self.i += 1;
        }
        let b = self.b;
        // Names are ASCII by construction.
        let name = as_str(&b[name_start..self.i], name_start, "metric name")?;
        self.w.start(name);
        let mut n = 0;
        self.skip_ws_text();
        if self.at_text(self.i) == b'{' {
            self.i += 1;
            n = self.text_labels()?;
            self.skip_ws_text();
        }
        let vstart = self.i;
        while !matches!(self.at_text(self.i), b'{' | b' ' | b'\t' | b'\n' | 0) {
            self.i += 1;
        }
        if self.i == vstart {
            return err(self.i, "expected value after metric");
        }
        let value = sample_value(&b[vstart..self.i], vstart)?;
        self.skip_ws_text();
        let ts = match self.at_text(self.i) {
            b'\n' => None,
            c if c.is_ascii_digit() => {
                let tstart = self.i;
                while self.at_text(self.i).is_ascii_digit() {
                    self.i += 1;
                }
                let digits = &b[tstart..self.i];
                let t = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok());
                let Some(t) = t else {
                    return err(tstart, "timestamp out of range");
                };
                self.skip_ws_text();
                if self.at_text(self.i) != b'\n' {
                    return err(self.i, "expected next entry after timestamp");
                }
                Some(t)
            }
            _ => return err(self.i, "expected timestamp or new record"),
        };
        self.i += 1;
        self.w.finish(n, value, ts, entry)
    }

    /// Text labels after `{`, through `}`; returns how many were kept.
    fn text_labels(&mut self) -> Res<usize> {
        let b = self.b;
        let mut n = 0;
        self.skip_ws_text();
        loop {
            let c = self.at_text(self.i);
            if c == b'}' {
                self.i += 1;
                return Ok(n);
            }
            if !is_label_start(c) {
                return err(self.i, "expected label name");
            }
            let ls = self.i;
            while is_label_byte(self.at_text(self.i)) {
                self.i += 1;
            }
            let lname = &b[ls..self.i];
            self.skip_ws_text();
            if self.at_text(self.i) != b'=' {
                return err(self.i, "expected equal");
            }
            self.i += 1;
            self.skip_ws_text();
            if self.at_text(self.i) != b'"' {
                return err(self.i, "expected label value");
            }
            self.i += 1;
            let vs = self.i;
            loop {
                // Any byte but a quote or a backslash stands for itself.
                match b[self.i.min(b.len())..]
                    .iter()
                    .position(|&c| c == b'"' || c == b'\\')
                {
                    Some(k) => self.i += k,
                    None => return err(vs, "expected label value"),
                }
                if b[self.i] == b'"' {
                    break;
                }
                // An escape takes any byte but a newline.
                match b.get(self.i + 1) {
                    Some(b'\n') | None => return err(self.i, "expected label value"),
                    Some(_) => self.i += 2,
                }
            }
            let raw = as_str(&b[vs..self.i], vs, "label value")?;
            self.i += 1;
            n = self.add_label(n, lname, raw, vs)?;
            self.skip_ws_text();
            if self.at_text(self.i) == b',' {
                self.i += 1;
                self.skip_ws_text();
            }
        }
    }

    /// Adds one label (an empty `__name__` is dropped, any other
    /// `__name__` duplicates the metric name); returns the new count.
    fn add_label(&mut self, n: usize, lname: &[u8], raw: &str, pos: usize) -> Res<usize> {
        let lname = as_str(lname, pos, "label name")?;
        if lname == "__name__" {
            if raw.is_empty() {
                return Ok(n);
            }
            return err(pos, "label name \"__name__\" is not unique");
        }
        self.w.label(n, lname, raw);
        Ok(n + 1)
    }

    // ---- OpenMetrics 1.0 ----

    fn at(&self, k: usize) -> Option<u8> {
        self.b.get(k).copied()
    }

    fn openmetrics(&mut self) -> Res<()> {
        loop {
            match self.at(self.i) {
                None => return err(self.i, "data does not end with # EOF"),
                Some(b'#') => {
                    if self.om_meta()? {
                        return Ok(());
                    }
                }
                Some(c) if is_name_start(c) => self.om_sample()?,
                Some(_) => return err(self.i, "not a valid start token"),
            }
        }
    }

    /// A `# ` line; returns true at `# EOF`.
    fn om_meta(&mut self) -> Res<bool> {
        let b = self.b;
        let rest = &b[self.i..];
        let kind = if rest.starts_with(b"# HELP ") {
            "HELP"
        } else if rest.starts_with(b"# TYPE ") {
            "TYPE"
        } else if rest.starts_with(b"# UNIT ") {
            "UNIT"
        } else if rest.starts_with(b"# EOF") {
            let mut end = self.i + 5;
            if self.at(end) == Some(b'\n') {
                end += 1;
            }
            if end != b.len() {
                return err(end, "unexpected data after # EOF");
            }
            return Ok(true);
        } else {
            return err(self.i, "not a valid start token");
        };
        self.i += 7;
        let ns = self.i;
        if !self.at(self.i).is_some_and(is_name_start) {
            return err(self.i, format!("expected metric name after {kind}"));
        }
        while self.at(self.i).is_some_and(is_name_byte) {
            self.i += 1;
        }
        let name = &b[ns..self.i];
        // ` text\n`: one space, the text, a newline.
        if self.at(self.i) != Some(b' ') {
            return err(self.i, format!("expected text in {kind}"));
        }
        let ts = self.i + 1;
        let Some(k) = b[ts..].iter().position(|&c| c == b'\n') else {
            return err(self.i, format!("expected text in {kind}"));
        };
        let text = &b[ts..ts + k];
        match kind {
            "HELP" => {
                if std::str::from_utf8(text).is_err() {
                    return err(ts, "help text is not a valid utf8 string");
                }
            }
            "TYPE" => {
                if !OM_TYPES.contains(&text) {
                    return err(
                        ts,
                        format!("invalid metric type {:?}", String::from_utf8_lossy(text)),
                    );
                }
            }
            _ => {
                let ok = text.is_empty()
                    || (name.len() > text.len()
                        && name.ends_with(text)
                        && name[name.len() - text.len() - 1] == b'_');
                if !ok {
                    return err(
                        ts,
                        format!(
                            "unit not a suffix of metric {:?}",
                            String::from_utf8_lossy(name)
                        ),
                    );
                }
            }
        }
        self.i = ts + k + 1;
        Ok(false)
    }

    /// ` token` (one space, then bytes up to a space, newline, NUL or the
    /// end); None when absent.
    fn om_token(&mut self) -> Option<(usize, usize)> {
        if self.at(self.i) != Some(b' ') {
            return None;
        }
        let s = self.i + 1;
        let mut e = s;
        while self
            .at(e)
            .is_some_and(|c| c != b' ' && c != b'\n' && c != 0)
        {
            e += 1;
        }
        if e == s {
            return None;
        }
        self.i = e;
        Some((s, e))
    }

    fn om_sample(&mut self) -> Res<()> {
        let b = self.b;
        let entry = self.i;
        let ns = self.i;
        while self.at(self.i).is_some_and(is_name_byte) {
            self.i += 1;
        }
        let name = as_str(&b[ns..self.i], ns, "metric name")?;
        self.w.start(name);
        let mut n = 0;
        if self.at(self.i) == Some(b'{') {
            self.i += 1;
            n = self.om_labels(true)?;
        }
        let Some((vs, ve)) = self.om_token() else {
            return err(self.i, "expected value after metric");
        };
        let value = sample_value(&b[vs..ve], vs)?;
        let mut ts = None;
        loop {
            match self.at(self.i) {
                None => return err(self.i, "data does not end with # EOF"),
                Some(b'\n') => {
                    self.i += 1;
                    break;
                }
                _ if b[self.i..].starts_with(b" # {") => {
                    if !(name.ends_with("_total") || name.ends_with("_bucket")) {
                        return err(
                            self.i,
                            format!("metric name {name} does not support exemplars"),
                        );
                    }
                    self.i += 4;
                    self.om_exemplar()?;
                    break;
                }
                _ if ts.is_none() => {
                    let Some((s, e)) = self.om_token() else {
                        return err(self.i, "expected timestamp or # symbol");
                    };
                    ts = Some(om_timestamp(&b[s..e], s)?);
                }
                _ => return err(self.i, "expected next entry after timestamp"),
            }
        }
        self.w.finish(n, value, ts, entry)
    }

    /// An exemplar after ` # {`: labels, value, optional timestamp, then
    /// the line's newline. Checked and dropped.
    fn om_exemplar(&mut self) -> Res<()> {
        let b = self.b;
        self.om_labels(false)?;
        let Some((vs, ve)) = self.om_token() else {
            return err(self.i, "expected value after exemplar labels");
        };
        if parse_go_float(&b[vs..ve]).is_none() {
            return err(vs, "invalid exemplar value");
        }
        match self.at(self.i) {
            None => return err(self.i, "data does not end with # EOF"),
            Some(b'\n') => {}
            _ => {
                let Some((s, e)) = self.om_token() else {
                    return err(self.i, "expected timestamp or comment");
                };
                match parse_go_float(&b[s..e]) {
                    Some(t) if t.is_finite() => {}
                    _ => return err(s, "invalid exemplar timestamp"),
                }
                if self.at(self.i) != Some(b'\n') {
                    return err(self.i, "expected next entry after exemplar timestamp");
                }
            }
        }
        self.i += 1;
        Ok(())
    }

    /// OpenMetrics labels after `{` through `}`: `name="value"` pairs
    /// separated by single commas, nothing else. Kept into the sample when
    /// `keep` (an exemplar's are only checked); returns the count kept.
    fn om_labels(&mut self, keep: bool) -> Res<usize> {
        let b = self.b;
        let mut n = 0;
        let mut first = true;
        loop {
            match self.at(self.i) {
                Some(b'}') => {
                    self.i += 1;
                    return Ok(n);
                }
                Some(b',') if !first => {
                    self.i += 1;
                    if !self.at(self.i).is_some_and(is_label_start) {
                        return err(self.i, "expected label name");
                    }
                }
                Some(c) if first && is_label_start(c) => {}
                Some(c) if is_label_start(c) => return err(self.i, "expected comma"),
                _ => return err(self.i, "expected label name, comma or right brace"),
            }
            first = false;
            let ls = self.i;
            while self.at(self.i).is_some_and(is_label_byte) {
                self.i += 1;
            }
            let lname = &b[ls..self.i];
            if self.at(self.i) != Some(b'=') {
                return err(self.i, "expected equal");
            }
            self.i += 1;
            if self.at(self.i) != Some(b'"') {
                return err(self.i, "expected label value");
            }
            self.i += 1;
            let vs = self.i;
            loop {
                match self.at(self.i) {
                    Some(b'"') => break,
                    Some(b'\\') => match self.at(self.i + 1) {
                        Some(b'\n') | None => return err(self.i, "expected label value"),
                        Some(_) => self.i += 2,
                    },
                    Some(b'\n') | None => return err(vs, "expected label value"),
                    Some(_) => self.i += 1,
                }
            }
            let raw = as_str(&b[vs..self.i], vs, "label value")?;
            self.i += 1;
            if keep {
                n = self.add_label(n, lname, raw, vs)?;
            }
        }
    }
}

/// An OpenMetrics timestamp: float seconds, finite, to milliseconds as Go's
/// `int64(ts * 1000)` (truncation; Rust saturates out of range).
fn om_timestamp(tok: &[u8], pos: usize) -> Res<i64> {
    match parse_go_float(tok) {
        Some(t) if t.is_finite() => Ok((t * 1000.0) as i64),
        Some(_) => err(pos, "invalid timestamp"),
        None => err(
            pos,
            format!(
                "strconv.ParseFloat: parsing {:?}: invalid syntax",
                String::from_utf8_lossy(tok)
            ),
        ),
    }
}

#[cfg(test)]
mod tests;
