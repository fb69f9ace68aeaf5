//! `sockstat`: node_sockstat_<PROTO>_<state> gauges from /proc/net/sockstat
//! and /proc/net/sockstat6, plus node_sockstat_sockets_used, as
//! node_exporter 1.5.0: `inuse` always (0 if a line lacks it), `orphan`,
//! `tw`, `alloc`, `mem` and `memory` when the line has them, and
//! `mem_bytes` = `mem` × page size.
//!
//! Family names come from the file (a protocol a newer kernel adds gets its
//! own families), so they are built in reused buffers.
//!
//! Owns: parsing both files. Must never: fail because one file is absent
//! (no IPv6: those families are left out), or emit anything from a
//! malformed file (that fails the collector).

use std::path::Path;

use super::sysfs::parse_int_base0 as parse_go_int;
use super::{read_optional, CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

/// The per-protocol keys 1.5.0 exports, in its order; others are ignored.
const KEYS: [&str; 6] = ["inuse", "orphan", "tw", "alloc", "mem", "memory"];
const INUSE: usize = 0;
const MEM: usize = 4;

pub struct Sockstat {
    page_size: i64,
    buf: String,
    name: String,
    help: String,
}

impl Sockstat {
    pub fn new(_settings: &Settings) -> Self {
        // The page size cannot change while we run; Linux always reports it.
        let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map_or(4096, i64::from);
        Sockstat {
            page_size,
            buf: String::with_capacity(512),
            name: String::with_capacity(64),
            help: String::with_capacity(64),
        }
    }

    fn emit(&mut self, out: &mut Emitter, proto: &str, key: &str, v: i64) {
        self.name.clear();
        self.name.push_str("node_sockstat_");
        self.name.push_str(proto);
        self.name.push('_');
        self.name.push_str(key);
        self.help.clear();
        self.help.push_str("Number of ");
        self.help.push_str(proto);
        self.help.push_str(" sockets in state ");
        self.help.push_str(key);
        self.help.push('.');
        out.single(&self.name, &self.help, MetricType::Gauge, v as f64);
    }
}

/// One line, `PROTO: key value key value ...`, checked whole before
/// anything is emitted from it.
struct Line<'a> {
    proto: &'a str,
    vals: [Option<i64>; KEYS.len()],
    used: Option<i64>,
}

fn parse_line<'a>(path: &Path, line: &'a str) -> Result<Line<'a>, CollectError> {
    let bad = |what: &str| CollectError::parse(path, format!("{what} in {line:?}"));
    let mut fields = line.split_ascii_whitespace();
    let first = fields.next().ok_or_else(|| bad("empty line"))?;
    let proto = first.strip_suffix(':').unwrap_or(first);
    let mut l = Line {
        proto,
        vals: [None; KEYS.len()],
        used: None,
    };
    let mut pairs = 0;
    while let Some(key) = fields.next() {
        let v = fields.next().ok_or_else(|| bad("odd number of fields"))?;
        let v = parse_go_int(v).ok_or_else(|| bad("bad value"))?;
        pairs += 1;
        if let Some(i) = KEYS.iter().position(|k| *k == key) {
            l.vals[i] = Some(v);
        } else if key == "used" {
            l.used = Some(v);
        }
    }
    if pairs == 0 {
        return Err(bad("no key/value pair"));
    }
    Ok(l)
}

impl Sockstat {
    fn emit_file(
        &mut self,
        path: &Path,
        text: &str,
        ipv6: bool,
        out: &mut Emitter,
    ) -> Result<(), CollectError> {
        // A bad line part-way leaves samples behind; the framework drops a
        // failed collector's output whole, so nothing partial is served.
        for line in text.lines() {
            let l = parse_line(path, line)?;
            if l.proto == "sockets" {
                // 1.5.0 exports `used` from the IPv4 file only.
                if !ipv6 {
                    out.single(
                        "node_sockstat_sockets_used",
                        "Number of IPv4 sockets in use.",
                        MetricType::Gauge,
                        l.used.unwrap_or(0) as f64,
                    );
                }
                continue;
            }
            for (i, key) in KEYS.iter().enumerate() {
                let v = match (i, l.vals[i]) {
                    (INUSE, v) => v.unwrap_or(0),
                    (_, Some(v)) => v,
                    (_, None) => continue,
                };
                self.emit(out, l.proto, key, v);
            }
            if let Some(mem) = l.vals[MEM] {
                self.emit(out, l.proto, "mem_bytes", mem.wrapping_mul(self.page_size));
            }
        }
        Ok(())
    }
}

impl Collector for Sockstat {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        for (file, ipv6) in [("net/sockstat", false), ("net/sockstat6", true)] {
            let path = ctx.proc_path(file);
            if !read_optional(&path, &mut self.buf)? {
                continue;
            }
            // Taken out so `emit_file` can borrow self; put back after.
            let text = std::mem::take(&mut self.buf);
            let res = self.emit_file(&path, &text, ipv6, out);
            self.buf = text;
            res?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn run(case: &str) -> Result<String, CollectError> {
        let mut c = Sockstat::new(&Settings::default());
        c.page_size = 4096;
        render(&mut c, &fixture_ctx(&format!("sockstat/{case}")))
    }

    fn has(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }

    #[test]
    fn parses_both_files() {
        let text = run("basic").unwrap();
        for line in [
            "# HELP node_sockstat_sockets_used Number of IPv4 sockets in use.",
            "# TYPE node_sockstat_sockets_used gauge",
            "node_sockstat_sockets_used 229",
            "# HELP node_sockstat_TCP_inuse Number of TCP sockets in state inuse.",
            "# TYPE node_sockstat_TCP_inuse gauge",
            "node_sockstat_TCP_inuse 4",
            "node_sockstat_TCP_orphan 0",
            "node_sockstat_TCP_tw 4",
            "node_sockstat_TCP_alloc 17",
            "node_sockstat_TCP_mem 1",
            "# HELP node_sockstat_TCP_mem_bytes Number of TCP sockets in state mem_bytes.",
            "node_sockstat_TCP_mem_bytes 4096",
            "node_sockstat_UDP_inuse 0",
            "node_sockstat_UDP_mem 0",
            "node_sockstat_UDP_mem_bytes 0",
            "node_sockstat_UDPLITE_inuse 0",
            "node_sockstat_RAW_inuse 0",
            "node_sockstat_FRAG_inuse 0",
            "# HELP node_sockstat_FRAG_memory Number of FRAG sockets in state memory.",
            "node_sockstat_FRAG_memory 0",
            "node_sockstat_TCP6_inuse 17",
            "node_sockstat_UDP6_inuse 9",
            "node_sockstat_UDPLITE6_inuse 0",
            "node_sockstat_RAW6_inuse 1",
            "node_sockstat_FRAG6_inuse 0",
            "node_sockstat_FRAG6_memory 0",
        ] {
            has(&text, line);
        }
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 20);
    }

    #[test]
    fn new_protocol_and_key_from_a_newer_kernel() {
        let text = run("newkernel").unwrap();
        has(&text, "node_sockstat_MPTCP_inuse 3");
        has(
            &text,
            "# HELP node_sockstat_MPTCP_inuse Number of MPTCP sockets in state inuse.",
        );
        // An unknown key is ignored; a line without `inuse` still reports 0.
        has(&text, "node_sockstat_TCP_inuse 2");
        has(&text, "node_sockstat_XDP_inuse 0");
        assert!(!text.contains("frobs"), "{text}");
    }

    #[test]
    fn missing_ipv6_file_is_fine_and_missing_both_emits_nothing() {
        let text = run("noipv6").unwrap();
        has(&text, "node_sockstat_TCP_inuse 1");
        assert!(!text.contains("TCP6"), "{text}");
        assert_eq!(run("missing").unwrap(), "");
    }

    #[test]
    fn malformed_lines_fail() {
        assert!(run("oddfields").is_err());
        assert!(run("badvalue").is_err());
    }
}
