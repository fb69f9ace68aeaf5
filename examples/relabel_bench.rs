//! Cost of `write_relabel_configs` per series: what the sender does once
//! per series set it reads (labels out of the decoded set, the rules, the
//! wire encoding of what is kept), against the encoding alone.
//!
//! cargo run --release --example relabel_bench -- [N...] [--iters K]
//!
//! The set: N node_exporter-like series (`__name__`, `cpu`, `mode` or
//! `device`, `instance`, `job`, one external label). The rules, a typical
//! three: drop a family by `__name__`, copy `instance` to `host`
//! (replace), drop `instance` (labeldrop). Prints the median of K runs,
//! in ns per series, with and without the rules.

use std::time::{Duration, Instant};

use cairn::relabel::{Labels, RelabelConfig, Rules, Scratch};
use cairn::remote_write::proto::EncodedLabels;
use cairn::wal::record::{decode_series_set, encode_series_set, LabelSet, SeriesSet};

fn set(n: usize) -> SeriesSet {
    let families = [
        "node_cpu_seconds_total",
        "node_network_receive_bytes_total",
        "node_disk_read_bytes_total",
        "node_filesystem_avail_bytes",
    ];
    let series: Vec<LabelSet> = (0..n)
        .map(|i| {
            let name = families[i % families.len()];
            let (k, v) = if name == "node_cpu_seconds_total" {
                ("cpu", format!("{}", i / 8))
            } else {
                ("device", format!("dev{i}"))
            };
            LabelSet::from_pairs([
                ("__name__", name),
                (k, v.as_str()),
                ("mode", ["user", "system", "idle", "iowait"][i % 4]),
                ("instance", "host-17.example.org:9100"),
                ("job", "node"),
                ("site", "depot-7"),
            ])
        })
        .collect();
    let mut rec = Vec::new();
    encode_series_set(1, &series, &mut rec);
    decode_series_set(&rec).expect("the set just encoded decodes")
}

fn rules() -> Rules {
    let drop = RelabelConfig {
        source_labels: Some(vec!["__name__".into()]),
        regex: Some("node_cpu_seconds_total|node_softnet_.*".into()),
        action: Some("drop".into()),
        ..Default::default()
    };
    let copy = RelabelConfig {
        source_labels: Some(vec!["instance".into()]),
        regex: Some("([^:]+)(?::\\d+)?".into()),
        target_label: Some("host".into()),
        ..Default::default()
    };
    let labeldrop = RelabelConfig {
        regex: Some("instance".into()),
        action: Some("labeldrop".into()),
        ..Default::default()
    };
    match Rules::compile(&[drop, copy, labeldrop]) {
        Ok(r) => r,
        Err((i, e)) => panic!("rule {i}: {e}"),
    }
}

/// One pass over the set as the sender makes it; returns series kept.
fn pass(set: &SeriesSet, rules: Option<&Rules>, l: &mut Labels, s: &mut Scratch) -> usize {
    let mut out = EncodedLabels::default();
    for i in 0..set.len() {
        match rules {
            None => out.push(set.labels(i)),
            Some(r) => {
                l.assign(set.labels(i));
                if r.process(l, s) && !l.is_empty() {
                    out.push(l.iter());
                }
            }
        }
    }
    out.len()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut sizes = Vec::new();
    let mut iters = 21usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--iters" {
            iters = args
                .next()
                .and_then(|v| v.parse().ok())
                .expect("--iters takes a number");
        } else {
            sizes.push(a.parse::<usize>().expect("sizes are numbers"));
        }
    }
    if sizes.is_empty() {
        sizes = vec![1_000, 10_000];
    }
    let rules = rules();
    let (mut l, mut s) = (Labels::default(), Scratch::default());
    println!("series\tkept\tencode_only_ns_per_series\trelabel_and_encode_ns_per_series");
    for n in sizes {
        let set = set(n);
        let mut kept = 0;
        let mut plain = Vec::new();
        let mut relabeled = Vec::new();
        for _ in 0..iters {
            let t = Instant::now();
            std::hint::black_box(pass(&set, None, &mut l, &mut s));
            plain.push(t.elapsed());
            let t = Instant::now();
            kept = std::hint::black_box(pass(&set, Some(&rules), &mut l, &mut s));
            relabeled.push(t.elapsed());
        }
        let per = |d: Duration| d.as_nanos() as f64 / n as f64;
        println!(
            "{n}\t{kept}\t{:.0}\t{:.0}",
            per(median(plain)),
            per(median(relabeled))
        );
    }
}
