//! WAL engine benchmark: the same workload on each engine, each in its own
//! child process (so RSS and /proc/self/io are that engine's alone).
//!
//! Workload: N records of ~8 KB (one collection of 500 samples each),
//! each appended and committed (fdatasync / sled flush), with one remote's
//! reader following and acking every 10 records, 5 records behind, and
//! `enforce_limits` after each commit, as the scheduler and a sender do.
//!
//! "disk written" and "B/sample" are the kernel's `/proc/self/io`
//! write_bytes, which counts a whole page-cache folio per dirtied page (1 MiB
//! measured on ext4, Linux 6.18): an upper bound, several times what a device sees.
//! "dev B/sample" is the engine's own count of the blocks it sends to the
//! device (`WalStats::device_bytes`; the segment engine only), without the
//! file system's journal. bench/agents.sh measures a real device.
//!
//! Run: `cargo run --release -p cairn-wal --features sled --example wal_bench [-- N]`.
//! Owns nothing but its temporary directories; never touches a real WAL.

use std::process::Command;
use std::time::{Duration, Instant};

use cairn_wal::{self as wal, Engine, Options, Position, Record, RecordKind, RecordMeta};

const RECORD: usize = 8 * 1024;
const SAMPLES: u32 = 500;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let engine = args[2].as_str();
        let n: u64 = args[3].parse().expect("N");
        child(engine, n);
        return;
    }
    let n: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3000);
    let mut engines = vec!["segment"];
    if cfg!(feature = "sled") {
        engines.push("sled");
    }
    println!(
        "workload: {n} records of {RECORD} B ({SAMPLES} samples each), append+commit each, one remote acking every 10 records 5 behind"
    );
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>13} {:>11} {:>13} {:>9} {:>9} {:>7} {:>10}",
        "engine",
        "mean us",
        "p50 us",
        "p99 us",
        "disk written",
        "B/sample",
        "dev B/sample",
        "RSS MiB",
        "peak MiB",
        "files",
        "on disk"
    );
    let exe = std::env::current_exe().expect("current_exe");
    for e in engines {
        let out = Command::new(&exe)
            .args(["--child", e, &n.to_string()])
            .output()
            .expect("spawn child");
        if !out.status.success() {
            eprintln!(
                "{e}: child failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        }
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

fn child(engine: &str, n: u64) {
    let dir = tempfile::Builder::new()
        .prefix("cairn-wal-bench")
        .tempdir()
        .expect("tempdir");
    // The agent's defaults: `wal.max_size` 512 MiB, `wal.max_age` 72 h.
    let cfg = Options {
        engine: match engine {
            "sled" => Engine::Sled,
            _ => Engine::Segment,
        },
        max_size: 512 << 20,
        max_age_ms: 72 * 3600 * 1000,
    };
    let w = wal::open(&cfg, dir.path()).expect("open WAL");
    w.register_remotes(&["bench".to_string()])
        .expect("register");
    // A stand-in for a snappy-compressed block: incompressible bytes.
    let mut data = vec![0u8; RECORD];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    w.append(RecordKind::SeriesSet, RecordMeta::default(), &data[..4096])
        .expect("append set");
    w.commit().expect("commit");
    let mut reader = w.reader(w.cursor("bench")).expect("reader");
    let mut rec = Record::default();
    let mut ends: Vec<Position> = Vec::new();
    let mut times: Vec<Duration> = Vec::with_capacity(n as usize);
    let io0 = write_bytes();
    let dev0 = w.stats().device_bytes;
    for i in 0..n {
        data[..8].copy_from_slice(&i.to_le_bytes());
        let ts = 1_700_000_000_000 + i as i64 * 15_000;
        let meta = RecordMeta {
            min_ts: ts,
            max_ts: ts,
            samples: SAMPLES,
        };
        let t = Instant::now();
        w.append(RecordKind::Samples, meta, &data).expect("append");
        w.commit().expect("commit");
        times.push(t.elapsed());
        w.enforce_limits(ts).expect("limits");
        while reader.next(&mut rec).expect("read") {
            ends.push(rec.end);
        }
        if i % 10 == 9 && ends.len() > 5 {
            w.ack("bench", ends[ends.len() - 6]).expect("ack");
        }
    }
    let written = write_bytes().saturating_sub(io0);
    let dev = match (dev0, w.stats().device_bytes) {
        (Some(a), Some(b)) => format!("{:.2}", (b - a) as f64 / (n as f64 * SAMPLES as f64)),
        _ => "n/a".to_string(),
    };
    let (rss, hwm) = rss();
    let (bytes, files) = wal::dir_usage(dir.path());
    times.sort();
    let mean = times.iter().sum::<Duration>() / n.max(1) as u32;
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!(
        "{:<8} {:>10.0} {:>10.0} {:>10.0} {:>10.1} MiB {:>11.2} {:>13} {:>9.1} {:>9.1} {:>7} {:>6.1} MiB",
        engine,
        mean.as_secs_f64() * 1e6,
        pct(0.5).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        written as f64 / 1048576.0,
        written as f64 / (n as f64 * SAMPLES as f64),
        dev,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        files,
        bytes as f64 / 1048576.0,
    );
    drop(reader);
    drop(w);
}

/// Bytes this process caused to be written to storage.
fn write_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// VmRSS and VmHWM in KiB.
fn rss() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}
