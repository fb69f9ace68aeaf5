//! `meminfo`: every line of /proc/meminfo as a gauge, named the way
//! node_exporter 1.5.0 names it: `node_memory_<Key>_bytes` (kB × 1024) or
//! `node_memory_<Key>` for unitless counts, `Active(anon)` → `Active_anon`.
//! No fixed key list, so lines newer kernels add come out without a change.
//!
//! Must never: emit a partial set from a malformed file (node_exporter
//! returns an error for an invalid line, and so do we), nor allocate per
//! line once warm (names are built in reused buffers).

use super::{read_into, CollectError, Collector, Context};
use crate::metrics::{Emitter, MetricType};
use std::path::Path;

const PREFIX: &str = "node_memory_";

pub struct Meminfo {
    buf: String,
    /// This collection's family names, back to back; `parsed` holds each
    /// one's (start, end, value). Parsing everything first means a bad line
    /// further down fails the collector before anything is emitted.
    names: String,
    parsed: Vec<(usize, usize, f64)>,
    help: String,
}

impl Meminfo {
    pub fn new() -> Self {
        Meminfo {
            buf: String::with_capacity(4096),
            help: String::with_capacity(96),
            parsed: Vec::with_capacity(64),
            names: String::with_capacity(2048),
        }
    }
}

impl Default for Meminfo {
    fn default() -> Self {
        Self::new()
    }
}

/// Appends `key` to `out` with node_exporter's `\((.*)\)` → `_$1`: the
/// greedy match runs from the first `(` to the last `)` after it.
fn push_key(out: &mut String, key: &str) {
    if let Some(open) = key.find('(') {
        if let Some(close) = key.rfind(')').filter(|&c| c > open) {
            out.push_str(&key[..open]);
            out.push('_');
            out.push_str(&key[open + 1..close]);
            out.push_str(&key[close + 1..]);
            return;
        }
    }
    out.push_str(key);
}

fn valid_name_tail(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Parses all lines into `names`/`parsed`; emits nothing.
fn parse(
    path: &Path,
    text: &str,
    names: &mut String,
    parsed: &mut Vec<(usize, usize, f64)>,
) -> Result<(), CollectError> {
    names.clear();
    parsed.clear();
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        // Empty lines occur on some old kernels; node_exporter skips them.
        let Some(key) = f.next() else { continue };
        let invalid = || CollectError::parse(path, format!("invalid line in meminfo: {line}"));
        let value = f.next().ok_or_else(invalid)?;
        let unit = f.next();
        if f.next().is_some() {
            return Err(invalid());
        }
        // node_exporter drops the last character whatever it is; a key
        // without its colon is a garbled line, so refuse it instead.
        let key = key.strip_suffix(':').ok_or_else(invalid)?;
        let mut v: f64 = value.parse().map_err(|e| {
            CollectError::parse(path, format!("invalid value in meminfo: {value:?}: {e}"))
        })?;
        let start = names.len();
        names.push_str(PREFIX);
        push_key(names, key);
        if unit.is_some() {
            // node_exporter presumes kB for any unit.
            v *= 1024.0;
            names.push_str("_bytes");
        }
        let tail = &names[start + PREFIX.len()..];
        if key.is_empty() || !valid_name_tail(tail) {
            return Err(CollectError::parse(
                path,
                format!("key {key:?} makes no valid metric name"),
            ));
        }
        parsed.push((start, names.len(), v));
    }
    Ok(())
}

impl Collector for Meminfo {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let path = ctx.proc_path("meminfo");
        read_into(&path, &mut self.buf)?;
        parse(&path, &self.buf, &mut self.names, &mut self.parsed)?;
        for &(start, end, v) in &self.parsed {
            let name = &self.names[start..end];
            // The Emitter copies name and HELP only when it first sees them.
            self.help.clear();
            self.help.push_str("Memory information field ");
            self.help.push_str(&name[PREFIX.len()..]);
            self.help.push('.');
            // A key the kernel repeats would become a duplicate series
            // (node_exporter keeps the last); no kernel does that.
            out.family(name, &self.help, MetricType::Gauge)
                .sample(&[], v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    #[test]
    fn normal_host_with_newer_keys() {
        let text = render(&mut Meminfo::new(), &fixture_ctx("meminfo/normal")).unwrap();
        let want = "\
# HELP node_memory_Active_anon_bytes Memory information field Active_anon_bytes.
# TYPE node_memory_Active_anon_bytes gauge
node_memory_Active_anon_bytes 1585152
# HELP node_memory_Active_bytes Memory information field Active_bytes.
# TYPE node_memory_Active_bytes gauge
node_memory_Active_bytes 1129189376
# HELP node_memory_FileHugePages_bytes Memory information field FileHugePages_bytes.
# TYPE node_memory_FileHugePages_bytes gauge
node_memory_FileHugePages_bytes 0
# HELP node_memory_HugePages_Total Memory information field HugePages_Total.
# TYPE node_memory_HugePages_Total gauge
node_memory_HugePages_Total 16
# HELP node_memory_Hugepagesize_bytes Memory information field Hugepagesize_bytes.
# TYPE node_memory_Hugepagesize_bytes gauge
node_memory_Hugepagesize_bytes 2097152
# HELP node_memory_Inactive_file_bytes Memory information field Inactive_file_bytes.
# TYPE node_memory_Inactive_file_bytes gauge
node_memory_Inactive_file_bytes 2939600896
# HELP node_memory_MemFree_bytes Memory information field MemFree_bytes.
# TYPE node_memory_MemFree_bytes gauge
node_memory_MemFree_bytes 20780675072
# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.
# TYPE node_memory_MemTotal_bytes gauge
node_memory_MemTotal_bytes 25276514304
# HELP node_memory_Unaccepted_bytes Memory information field Unaccepted_bytes.
# TYPE node_memory_Unaccepted_bytes gauge
node_memory_Unaccepted_bytes 4096
# HELP node_memory_VmallocTotal_bytes Memory information field VmallocTotal_bytes.
# TYPE node_memory_VmallocTotal_bytes gauge
node_memory_VmallocTotal_bytes 35184372087808
";
        assert_eq!(text, want);
    }

    #[test]
    fn warm_collection_reuses_its_buffers() {
        let ctx = fixture_ctx("meminfo/normal");
        let mut c = Meminfo::new();
        let mut e = Emitter::new();
        c.update(&ctx, &mut e).unwrap();
        let caps = (c.names.capacity(), c.parsed.capacity(), c.help.capacity());
        e.clear();
        c.update(&ctx, &mut e).unwrap();
        assert_eq!(
            caps,
            (c.names.capacity(), c.parsed.capacity(), c.help.capacity())
        );
        assert_eq!(e.series_count(), 10);
    }

    #[test]
    fn paren_rewrite_is_greedy_like_the_go_regexp() {
        let mut s = String::new();
        push_key(&mut s, "Active(anon)");
        assert_eq!(s, "Active_anon");
        s.clear();
        push_key(&mut s, "A(b)c(d)");
        assert_eq!(s, "A_b)c(d");
        s.clear();
        push_key(&mut s, "A)b(c");
        assert_eq!(s, "A)b(c");
    }

    #[test]
    fn line_with_extra_field_fails() {
        let err = render(&mut Meminfo::new(), &fixture_ctx("meminfo/malformed")).unwrap_err();
        assert!(err.to_string().contains("invalid line in meminfo"), "{err}");
    }

    #[test]
    fn bad_value_fails() {
        let err = render(&mut Meminfo::new(), &fixture_ctx("meminfo/bad_value")).unwrap_err();
        assert!(
            err.to_string().contains("invalid value in meminfo"),
            "{err}"
        );
    }

    #[test]
    fn key_without_value_fails_instead_of_panicking() {
        // node_exporter 1.5.0 indexes parts[1] unchecked here and panics.
        assert!(render(&mut Meminfo::new(), &fixture_ctx("meminfo/no_value")).is_err());
    }
}
