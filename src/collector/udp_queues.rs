//! `udp_queues`: node_udp_queues{ip,queue}, the bytes queued in UDP socket
//! buffers, summed from the tx_queue:rx_queue column of /proc/net/udp and
//! /proc/net/udp6, as node_exporter 1.5.0.
//!
//! A missing file (IPv6 disabled, say) leaves that `ip` out; both missing is
//! 1.5.0's ErrNoData, which it reports as success 0, so it is an error here.
//!
//! Owns: parsing /proc/net/udp{,6}. Must never: report a sum over a file
//! with a malformed line (that fails the collector, as procfs does).

use std::path::Path;

use super::{read_optional, CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

pub struct UdpQueues {
    buf: String,
}

impl UdpQueues {
    pub fn new(_settings: &Settings) -> Self {
        UdpQueues {
            buf: String::with_capacity(4096),
        }
    }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `ADDR:PORT` with ADDR 8 (IPv4) or 32 (IPv6) hex digits, as procfs
/// insists.
fn valid_address(s: &str) -> bool {
    match s.split_once(':') {
        Some((addr, port)) => {
            (addr.len() == 8 || addr.len() == 32)
                && is_hex(addr)
                && is_hex(port)
                && !port.contains(':')
        }
        None => false,
    }
}

/// Sums (tx, rx) queue bytes over the socket lines of one file (header
/// skipped). Checks the columns procfs checks, so a file node_exporter
/// rejects is rejected here too.
fn sum_queues(path: &Path, text: &str) -> Result<(u64, u64), CollectError> {
    let (mut tx, mut rx) = (0u64, 0u64);
    for line in text.lines().skip(1) {
        let bad = |what: &str| CollectError::parse(path, format!("{what} in {line:?}"));
        let mut f = [""; 10];
        let mut n = 0;
        for field in line.split_ascii_whitespace() {
            if n < f.len() {
                f[n] = field;
            }
            n += 1;
        }
        if n < f.len() {
            return Err(bad("fewer than 10 columns"));
        }
        match f[0].split_once(':') {
            Some((sl, "")) if sl.parse::<u64>().is_ok() => {}
            _ => return Err(bad("bad sl")),
        }
        if !valid_address(f[1]) || !valid_address(f[2]) {
            return Err(bad("bad address"));
        }
        if u64::from_str_radix(f[3], 16).is_err() {
            return Err(bad("bad st"));
        }
        let (t, r) = f[4].split_once(':').ok_or_else(|| bad("bad tx/rx queue"))?;
        let t = u64::from_str_radix(t, 16).map_err(|_| bad("bad tx_queue"))?;
        let r = u64::from_str_radix(r, 16).map_err(|_| bad("bad rx_queue"))?;
        if f[7].parse::<u64>().is_err() || f[9].parse::<u64>().is_err() {
            return Err(bad("bad uid or inode"));
        }
        tx = tx.wrapping_add(t);
        rx = rx.wrapping_add(r);
    }
    Ok((tx, rx))
}

impl Collector for UdpQueues {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let mut any = false;
        for (file, ip) in [("net/udp", "v4"), ("net/udp6", "v6")] {
            let path = ctx.proc_path(file);
            if !read_optional(&path, &mut self.buf)? {
                continue;
            }
            any = true;
            let (tx, rx) = sum_queues(&path, &self.buf)?;
            let mut fam = out.family(
                "node_udp_queues",
                "Number of allocated memory in the kernel for UDP datagrams in bytes.",
                MetricType::Gauge,
            );
            fam.sample(&[("ip", ip), ("queue", "tx")], tx as f64);
            fam.sample(&[("ip", ip), ("queue", "rx")], rx as f64);
        }
        if !any {
            return Err(CollectError::NoData(
                "neither /proc/net/udp nor /proc/net/udp6 exists".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn run(case: &str) -> Result<String, CollectError> {
        render(
            &mut UdpQueues::new(&Settings::default()),
            &fixture_ctx(&format!("udp_queues/{case}")),
        )
    }

    #[test]
    fn sums_queues_per_family() {
        let text = run("basic").unwrap();
        assert_eq!(
            text,
            "# HELP node_udp_queues Number of allocated memory in the kernel for UDP datagrams in bytes.\n\
             # TYPE node_udp_queues gauge\n\
             node_udp_queues{ip=\"v4\",queue=\"rx\"} 2304\n\
             node_udp_queues{ip=\"v4\",queue=\"tx\"} 1\n\
             node_udp_queues{ip=\"v6\",queue=\"rx\"} 0\n\
             node_udp_queues{ip=\"v6\",queue=\"tx\"} 4294967296\n"
        );
    }

    #[test]
    fn ipv6_disabled_leaves_v6_out() {
        let text = run("noipv6").unwrap();
        assert!(
            text.contains("node_udp_queues{ip=\"v4\",queue=\"tx\"} 0\n"),
            "{text}"
        );
        assert!(!text.contains("v6"), "{text}");
    }

    #[test]
    fn no_files_or_malformed_line_fails() {
        assert!(run("missing").is_err());
        assert!(run("malformed").is_err());
        assert!(run("badqueue").is_err());
    }
}
