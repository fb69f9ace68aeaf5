//! Builds a synthetic remote_write backlog in a WAL directory, for
//! `bench/remote_write.sh` (RSS with a 24 h backlog, drain throughput).
//!
//! Writes `--collections` collections (default 5760 = 24 h at 15 s) of the
//! series of a text exposition (node_exporter's format: a saved
//! node_exporter 1.5.0 scrape, or `cairn collect --once`), with timestamps
//! `--interval-ms` apart ending now, through cairn's own library: the WAL
//! (`cairn::wal::open`, segment engine, default limits), the record codec
//! and the scheduler's label canonicalisation. The remote's cursor is
//! registered before the first record, so all of it is that remote's
//! backlog. Layout as cairn writes it with `wal.flush_interval = "0s"`: one
//! series-set record, then one samples record per collection (commits are
//! grouped only to make the fill fast; the bytes on disk are the same).
//!
//! Values evolve like a host's (as `remote_write::testutil::evolve`, which
//! is test-only): non-zero counters grow by up to 2e-4 of their value per
//! interval at their printed precision, a third of the gauges other than 0
//! and 1 move by up to ±1 %, the rest stay. Seeded: every run is the same.
//!
//! Run: `cargo run --release --example fill_wal -- --dir DIR --remote NAME
//! --series FILE [--collections N] [--interval-ms MS] [--end-ms MS]
//! [--label k=v]...`. Prints one JSON line. Refuses a directory that
//! already holds a WAL. Owns nothing but the directory it is given.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cairn::scheduler::canonical_labels;
use cairn::wal::record::{encode_series_set, LabelSet, SamplesEncoder};
use cairn::wal::{self, RecordKind, RecordMeta};

struct Series {
    labels: LabelSet,
    value: f64,
    counter: bool,
    /// Printed decimals; None for exponent notation (evolves unrounded).
    decimals: Option<u32>,
}

struct Args {
    dir: PathBuf,
    remote: String,
    series: PathBuf,
    collections: usize,
    interval_ms: i64,
    end_ms: Option<i64>,
    labels: Vec<(String, String)>,
    commit_every: usize,
}

fn usage(msg: &str) -> ! {
    eprintln!("fill_wal: {msg}");
    eprintln!(
        "usage: fill_wal --dir DIR --remote NAME --series FILE [--collections N] \
         [--interval-ms MS] [--end-ms MS] [--label k=v]... [--commit-every N]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut a = Args {
        dir: PathBuf::new(),
        remote: String::new(),
        series: PathBuf::new(),
        collections: 5760,
        interval_ms: 15_000,
        end_ms: None,
        labels: Vec::new(),
        commit_every: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--dir" => a.dir = PathBuf::from(val()),
            "--remote" => a.remote = val(),
            "--series" => a.series = PathBuf::from(val()),
            "--collections" => a.collections = val().parse().unwrap_or_else(|_| usage("N")),
            "--interval-ms" => a.interval_ms = val().parse().unwrap_or_else(|_| usage("MS")),
            "--end-ms" => a.end_ms = Some(val().parse().unwrap_or_else(|_| usage("MS"))),
            "--commit-every" => {
                a.commit_every = val().parse::<usize>().unwrap_or_else(|_| usage("N")).max(1)
            }
            "--label" => {
                let v = val();
                let (k, v) = v.split_once('=').unwrap_or_else(|| usage("--label k=v"));
                a.labels.push((k.to_owned(), v.to_owned()));
            }
            _ => usage(&format!("unknown argument {flag}")),
        }
    }
    if a.dir.as_os_str().is_empty() || a.remote.is_empty() || a.series.as_os_str().is_empty() {
        usage("--dir, --remote and --series are required");
    }
    a
}

/// Series of a text exposition, labels as cairn's scheduler names them.
fn read_series(path: &Path, external: &[(String, String)]) -> Vec<Series> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| usage(&format!("{}: {e}", path.display())));
    let mut types = BTreeMap::new();
    let mut out: Vec<Series> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            if let (Some(n), Some(t)) = (it.next(), it.next()) {
                types.insert(n.to_owned(), t.to_owned());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        // The value is the last field (no exporter here writes timestamps);
        // label values may hold spaces, so split from the right.
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let (name, rendered) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').unwrap_or(l)),
            None => (series, ""),
        };
        let labels = canonical_labels(name, rendered, external);
        if !seen.insert(labels.clone()) {
            continue;
        }
        let base = name
            .strip_suffix("_sum")
            .or(name.strip_suffix("_count"))
            .or(name.strip_suffix("_bucket"))
            .unwrap_or(name);
        let counter = types
            .get(name)
            .or(types.get(base))
            .is_some_and(|t| t == "counter" || t == "summary" || t == "histogram");
        let decimals = if value.contains(['e', 'E']) || !v.is_finite() {
            None
        } else {
            Some(value.split_once('.').map_or(0, |(_, d)| d.len() as u32))
        };
        out.push(Series {
            labels,
            value: v,
            counter,
            decimals,
        });
    }
    out
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn main() {
    let a = parse_args();
    let series = read_series(&a.series, &a.labels);
    if series.is_empty() {
        usage("no series in the exposition");
    }
    if a.dir.join("segments").exists() || a.dir.join("sled").exists() {
        usage(&format!("{} already holds a WAL", a.dir.display()));
    }
    let started = Instant::now();
    let cfg = cairn::config::Wal::default();
    let w = wal::open(&cfg, &a.dir).unwrap_or_else(|e| usage(&format!("open WAL: {e}")));
    w.register_remotes(std::slice::from_ref(&a.remote))
        .unwrap_or_else(|e| usage(&format!("register remote: {e}")));

    let n = series.len();
    let set_id = 1;
    let labels: Vec<LabelSet> = series.iter().map(|s| s.labels.clone()).collect();
    let mut buf = Vec::new();
    encode_series_set(set_id, &labels, &mut buf);
    let set_bytes = buf.len();
    w.append(RecordKind::SeriesSet, RecordMeta::default(), &buf)
        .unwrap_or_else(|e| usage(&format!("append: {e}")));

    let step = a.interval_ms.max(1);
    let end = a.end_ms.unwrap_or_else(|| now_ms() / step * step);
    let first = end - (a.collections as i64 - 1) * step;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut cur: Vec<f64> = series.iter().map(|s| s.value).collect();
    let mut enc = SamplesEncoder::new();
    let mut record_bytes = 0usize;
    for c in 0..a.collections {
        if c > 0 {
            for (v, s) in cur.iter_mut().zip(&series) {
                let round = |x: f64| match s.decimals {
                    Some(d) => {
                        let p = 10f64.powi(d as i32);
                        (x * p).round() / p
                    }
                    None => x,
                };
                if s.counter {
                    if *v > 0.0 && v.is_finite() {
                        *v = round(*v + *v * 2e-4 * rng.f64());
                    }
                } else if v.is_finite() && *v != 0.0 && *v != 1.0 && rng.u8(0..3) == 0 {
                    *v = round(*v * (1.0 + (rng.f64() - 0.5) * 0.02));
                }
            }
        }
        buf.clear();
        enc.begin(set_id, n);
        enc.push_collection(first + c as i64 * step, &cur);
        let meta = enc.finish(&mut buf);
        record_bytes += buf.len();
        w.append(RecordKind::Samples, meta, &buf)
            .unwrap_or_else(|e| usage(&format!("append: {e}")));
        if (c + 1) % a.commit_every == 0 {
            w.commit()
                .unwrap_or_else(|e| usage(&format!("commit: {e}")));
        }
    }
    w.commit()
        .unwrap_or_else(|e| usage(&format!("commit: {e}")));
    let st = w.stats();
    let backlog = st.remotes.get(&a.remote).map_or(0, |r| r.backlog_samples);
    println!(
        "{{\"series\": {n}, \"collections\": {}, \"interval_ms\": {step}, \"samples\": {}, \"backlog_samples\": {backlog}, \
         \"first_ts_ms\": {first}, \"last_ts_ms\": {}, \"series_set_bytes\": {set_bytes}, \
         \"record_bytes\": {record_bytes}, \"wal_bytes\": {}, \"segments\": {}, \"seconds\": {:.3}}}",
        a.collections,
        n * a.collections,
        first + (a.collections as i64 - 1) * step,
        st.bytes,
        st.segments,
        started.elapsed().as_secs_f64()
    );
}
