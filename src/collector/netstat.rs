//! `netstat`: node_netstat_<Proto>_<Field> (untyped, HELP "Statistic
//! <Proto><Field>.") from /proc/net/netstat, /proc/net/snmp and
//! /proc/net/snmp6, filtered by `--collector.netstat.fields`, as
//! node_exporter 1.5.0.
//!
//! netstat and snmp come as header/value line pairs per protocol; snmp6 is
//! one `Ip6InReceives 123` line per field, the protocol ending at the first
//! '6'. Like 1.5.0, every value must parse as a number, kept or not, and a
//! missing snmp6 (IPv6 disabled) is fine while the other two are required.
//!
//! The field regex runs only when a header changes: which fields a header
//! line selects is cached by the line's text, so a warm collection does no
//! regex matching and no allocation.
//!
//! Owns: parsing those three files. Must never: succeed on a file with a
//! header/value mismatch or a non-numeric value (the collector fails), or
//! emit a series twice (a protocol block repeated in a corrupt file
//! replaces the earlier one, as in 1.5.0's map).

use std::path::Path;

use regex::Regex;

use super::{read_into, read_optional, CollectError, Collector, Context, Opt, OptKind, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[Opt {
    flag: "collector.netstat.fields",
    kind: OptKind::Regex,
    default: "^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|TCPOFOQueue|TCPRcvQDrop)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$",
    help: "Regexp of fields to return for netstat collector.",
    aliases: &[],
}];

/// Which fields of one header line the regex keeps.
#[derive(Default)]
struct HeaderCache {
    line: String,
    keep: Vec<bool>,
}

pub struct Netstat {
    fields: Option<Regex>,
    netstat: String,
    snmp: String,
    snmp6: String,
    /// One entry per header line of netstat then snmp, in file order.
    headers: Vec<HeaderCache>,
    /// One entry per snmp6 line: its name and whether it is kept.
    snmp6_keep: Vec<(String, bool)>,
    key: String,
    name: String,
    help: String,
}

impl Netstat {
    pub fn new(settings: &Settings) -> Self {
        Netstat {
            fields: settings.regex("collector.netstat.fields"),
            netstat: String::with_capacity(8192),
            snmp: String::with_capacity(4096),
            snmp6: String::with_capacity(8192),
            headers: Vec::new(),
            snmp6_keep: Vec::new(),
            key: String::with_capacity(64),
            name: String::with_capacity(64),
            help: String::with_capacity(64),
        }
    }
}

/// Whether `proto_field` is kept; the empty regex (an unset flag) keeps
/// everything, as Go's empty pattern matches anything.
fn keeps(re: Option<&Regex>, key: &mut String, proto: &str, field: &str) -> bool {
    key.clear();
    key.push_str(proto);
    key.push('_');
    key.push_str(field);
    re.map_or(true, |re| re.is_match(key))
}

fn parse_value(path: &Path, proto: &str, field: &str, v: &str) -> Result<f64, CollectError> {
    v.parse::<f64>()
        .map_err(|_| CollectError::parse(path, format!("invalid value {v:?} for {proto}{field}")))
}

/// Emits one sample; the family name and HELP are built in reused buffers.
fn emit(name: &mut String, help: &mut String, out: &mut Emitter, proto: &str, field: &str, v: f64) {
    name.clear();
    name.push_str("node_netstat_");
    name.push_str(proto);
    name.push('_');
    name.push_str(field);
    help.clear();
    help.push_str("Statistic ");
    help.push_str(proto);
    help.push_str(field);
    help.push('.');
    out.single(name, help, MetricType::Untyped, v);
}

/// Splits `Icmp6InMsgs` into (`Icmp6`, `InMsgs`); None without a '6'.
fn split_snmp6(name: &str) -> Option<(&str, &str)> {
    let six = name.find('6')?;
    Some((&name[..=six], &name[six + 1..]))
}

/// Whether a header line for `proto` follows among the remaining lines of
/// this file (`rest`, starting at a header) or in the file merged after it.
fn superseded<'a>(proto: &str, rest: impl Iterator<Item = &'a str>, later: &str) -> bool {
    let is_proto = |header: &str| {
        header
            .split_ascii_whitespace()
            .next()
            .and_then(|p| p.strip_suffix(':'))
            == Some(proto)
    };
    rest.step_by(2).any(is_proto) || later.lines().step_by(2).any(is_proto)
}

/// The buffers `Netstat::pairs` works with besides the file text.
struct Scratch<'a> {
    fields: Option<&'a Regex>,
    headers: &'a mut Vec<HeaderCache>,
    key: &'a mut String,
    name: &'a mut String,
    help: &'a mut String,
}

impl Scratch<'_> {
    /// Header/value line pairs (`TcpExt: A B` / `TcpExt: 1 2`); `idx` is
    /// this file's first slot in the header cache. Returns the next slot.
    fn pairs(
        &mut self,
        path: &Path,
        text: &str,
        later: &str,
        mut idx: usize,
        out: &mut Emitter,
    ) -> Result<usize, CollectError> {
        let mut lines = text.lines();
        while let Some(header) = lines.next() {
            let bad = |msg: String| CollectError::parse(path, msg);
            let values = lines
                .next()
                .ok_or_else(|| bad(format!("no value line after {header:?}")))?;
            let mut names = header.split_ascii_whitespace();
            let mut vals = values.split_ascii_whitespace();
            let proto = names
                .next()
                .and_then(|p| p.strip_suffix(':'))
                .filter(|p| !p.is_empty())
                .ok_or_else(|| bad(format!("bad header line {header:?}")))?;
            vals.next();
            if names.clone().count() != vals.clone().count() {
                return Err(bad(format!("field count mismatch for {proto}")));
            }
            // 1.5.0 keeps one block per protocol in a map: a later block of
            // the same protocol (here or in `later`) replaces this one,
            // whose values are then never looked at.
            if idx == self.headers.len() {
                self.headers.push(HeaderCache::default());
            }
            if superseded(proto, lines.clone(), later) {
                idx += 1;
                continue;
            }
            let cache = &mut self.headers[idx];
            if cache.line != header {
                // A header not seen before (first run, or another kernel).
                cache.line.clear();
                cache.line.push_str(header);
                cache.keep.clear();
                for field in names.clone() {
                    cache.keep.push(keeps(self.fields, self.key, proto, field));
                }
            }
            for ((field, v), keep) in names.zip(vals).zip(&cache.keep) {
                // Every value must be a number, kept or not, as in 1.5.0.
                let v = parse_value(path, proto, field, v)?;
                if *keep {
                    emit(self.name, self.help, out, proto, field, v);
                }
            }
            idx += 1;
        }
        Ok(idx)
    }
}

impl Collector for Netstat {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let netstat_path = ctx.proc_path("net/netstat");
        let snmp_path = ctx.proc_path("net/snmp");
        let snmp6_path = ctx.proc_path("net/snmp6");
        read_into(&netstat_path, &mut self.netstat)?;
        read_into(&snmp_path, &mut self.snmp)?;
        // No IPv6: no snmp6, and nothing to report from it.
        let have6 = read_optional(&snmp6_path, &mut self.snmp6)?;

        // A failure part-way leaves samples behind; the framework drops a
        // failed collector's output whole, so nothing partial is served.
        let mut s = Scratch {
            fields: self.fields.as_ref(),
            headers: &mut self.headers,
            key: &mut self.key,
            name: &mut self.name,
            help: &mut self.help,
        };
        let mid = s.pairs(&netstat_path, &self.netstat, &self.snmp, 0, out)?;
        let end = s.pairs(&snmp_path, &self.snmp, "", mid, out)?;
        self.headers.truncate(end);

        if have6 {
            self.snmp6_lines(&snmp6_path, out)?;
        } else {
            self.snmp6_keep.clear();
        }
        Ok(())
    }
}

/// The `Ip6InReceives 123` lines of snmp6 that name a protocol.
fn snmp6_fields(text: &str) -> impl Iterator<Item = (&str, &str, &str, &str)> {
    text.lines().filter_map(|line| {
        let mut f = line.split_ascii_whitespace();
        let (name, v) = (f.next()?, f.next()?);
        let (proto, field) = split_snmp6(name)?;
        Some((name, proto, field, v))
    })
}

impl Netstat {
    fn snmp6_lines(&mut self, path: &Path, out: &mut Emitter) -> Result<(), CollectError> {
        // First pass: every value must parse; note whether the names moved.
        let mut n = 0;
        let mut changed = false;
        for (name, proto, field, v) in snmp6_fields(&self.snmp6) {
            parse_value(path, proto, field, v)?;
            match self.snmp6_keep.get_mut(n) {
                Some(slot) if slot.0 == name => {}
                Some(slot) => {
                    slot.0.clear();
                    slot.0.push_str(name);
                    changed = true;
                }
                None => {
                    self.snmp6_keep.push((name.to_owned(), false));
                    changed = true;
                }
            }
            n += 1;
        }
        if n != self.snmp6_keep.len() {
            self.snmp6_keep.truncate(n);
            changed = true;
        }
        if changed {
            // Rare (first run, another kernel): decide afresh, and drop a
            // name repeated further down, as 1.5.0's map keeps the last.
            for i in 0..n {
                let (head, tail) = self.snmp6_keep.split_at_mut(i + 1);
                let slot = &mut head[i];
                let keep = split_snmp6(&slot.0)
                    .is_some_and(|(p, f)| keeps(self.fields.as_ref(), &mut self.key, p, f));
                slot.1 = keep && !tail.iter().any(|(other, _)| *other == slot.0);
            }
        }
        for ((_, proto, field, v), (_, keep)) in snmp6_fields(&self.snmp6).zip(&self.snmp6_keep) {
            if *keep {
                let v = parse_value(path, proto, field, v)?;
                emit(&mut self.name, &mut self.help, out, proto, field, v);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn run(case: &str, s: &Settings) -> Result<String, CollectError> {
        render(
            &mut Netstat::new(s),
            &fixture_ctx(&format!("netstat/{case}")),
        )
    }

    fn has(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }

    #[test]
    fn default_fields_from_all_three_files() {
        let text = run("basic", &Settings::default()).unwrap();
        for line in [
            "# HELP node_netstat_TcpExt_ListenDrops Statistic TcpExtListenDrops.",
            "# TYPE node_netstat_TcpExt_ListenDrops untyped",
            "node_netstat_TcpExt_ListenDrops 7",
            "node_netstat_TcpExt_ListenOverflows 6",
            "node_netstat_TcpExt_SyncookiesSent 1",
            "node_netstat_TcpExt_TCPTimeouts 11",
            "node_netstat_TcpExt_TCPOFOQueue 12",
            "node_netstat_TcpExt_TCPRcvQDrop 13",
            "node_netstat_IpExt_InOctets 41791958",
            "node_netstat_IpExt_OutOctets 18446744073709552000",
            "# HELP node_netstat_Ip_Forwarding Statistic IpForwarding.",
            "node_netstat_Ip_Forwarding 1",
            "node_netstat_Icmp_InErrors 0",
            "node_netstat_Icmp_InMsgs 3",
            "node_netstat_Tcp_CurrEstab 2",
            "node_netstat_Tcp_InErrs 5",
            "node_netstat_Udp_InErrors 0",
            "node_netstat_UdpLite_InErrors 0",
            "node_netstat_Udp_RcvbufErrors 4",
            "# HELP node_netstat_Ip6_InOctets Statistic Ip6InOctets.",
            "# TYPE node_netstat_Ip6_InOctets untyped",
            "node_netstat_Ip6_InOctets 128",
            "node_netstat_Icmp6_InMsgs 1",
            "node_netstat_Icmp6_OutMsgs 9",
            "node_netstat_Icmp6_InErrors 1",
            "node_netstat_Udp6_InDatagrams 2",
            "node_netstat_UdpLite6_InErrors 0",
        ] {
            has(&text, line);
        }
        // Not selected by the default regex.
        for absent in [
            "Tcp_MaxConn",
            "TcpExt_TW ",
            "IcmpMsg",
            "Ip6_InReceives",
            "Icmp6_InType1",
        ] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
    }

    #[test]
    fn custom_fields_and_negative_values() {
        let s = Settings::default().with(
            "collector.netstat.fields",
            "^(Tcp_MaxConn|Icmp6_InType1|IcmpMsg_.*)$",
        );
        let text = run("basic", &s).unwrap();
        assert_eq!(
            text,
            "# HELP node_netstat_Icmp6_InType1 Statistic Icmp6InType1.\n\
             # TYPE node_netstat_Icmp6_InType1 untyped\n\
             node_netstat_Icmp6_InType1 1\n\
             # HELP node_netstat_IcmpMsg_InType3 Statistic IcmpMsgInType3.\n\
             # TYPE node_netstat_IcmpMsg_InType3 untyped\n\
             node_netstat_IcmpMsg_InType3 1\n\
             # HELP node_netstat_Tcp_MaxConn Statistic TcpMaxConn.\n\
             # TYPE node_netstat_Tcp_MaxConn untyped\n\
             node_netstat_Tcp_MaxConn -1\n"
        );
        // An empty pattern keeps everything.
        let s = Settings::default().with("collector.netstat.fields", "");
        let text = run("basic", &s).unwrap();
        has(&text, "node_netstat_TcpExt_TW 9675");
        has(&text, "node_netstat_Ip6_InReceives 3001");
    }

    #[test]
    fn warm_collections_reuse_the_cache_and_see_header_changes() {
        let mut c = Netstat::new(&Settings::default());
        let a = render(&mut c, &fixture_ctx("netstat/basic")).unwrap();
        let b = render(&mut c, &fixture_ctx("netstat/basic")).unwrap();
        assert_eq!(a, b);
        // A kernel that appends fields (and lacks IPv6): the cache follows.
        let text = render(&mut c, &fixture_ctx("netstat/newkernel")).unwrap();
        has(&text, "node_netstat_TcpExt_TCPRcvQDrop 3");
        has(&text, "node_netstat_Tcp_InErrs 1");
        assert!(!text.contains("Ip6"), "{text}");
        assert!(!text.contains("TCPFutureCounter"), "{text}");
        let again = render(&mut c, &fixture_ctx("netstat/basic")).unwrap();
        assert_eq!(a, again);
    }

    #[test]
    fn a_repeated_protocol_block_replaces_the_earlier_one() {
        // As 1.5.0's map: the second `Tcp:` block wins, whole.
        let text = run("duplicate", &Settings::default()).unwrap();
        has(&text, "node_netstat_Tcp_ActiveOpens 1");
        let n = text
            .lines()
            .filter(|l| l.starts_with("node_netstat_Tcp_ActiveOpens "))
            .count();
        assert_eq!(n, 1, "{text}");
        assert!(!text.contains("Tcp_CurrEstab"), "{text}");
        has(&text, "node_netstat_Udp_InDatagrams 23");
        // Same for a repeated snmp6 line.
        has(&text, "node_netstat_Ip6_InOctets 999");
        let n = text
            .lines()
            .filter(|l| l.starts_with("node_netstat_Ip6_InOctets "))
            .count();
        assert_eq!(n, 1, "{text}");
    }

    #[test]
    fn malformed_files_fail() {
        // Header and value lines of different lengths.
        assert!(run("mismatch", &Settings::default()).is_err());
        // A non-numeric value, even in a field the regex drops.
        assert!(run("badvalue", &Settings::default()).is_err());
        assert!(run("badvalue6", &Settings::default()).is_err());
        // A header without its value line.
        assert!(run("truncated", &Settings::default()).is_err());
        // snmp is required.
        assert!(run("nosnmp", &Settings::default()).is_err());
    }
}
