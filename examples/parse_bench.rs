//! Cost of parsing one scrape: a body of N series (node_exporter-like
//! families, 1 to 3 labels, an escaped value here and there) parsed K
//! times into the same output vector, as a target's scrape loop does, in
//! text 0.0.4 and OpenMetrics.
//!
//! cargo run --release --example parse_bench -- [--series N] [--iters K]
//!
//! Prints the median ns per sample over K warm parses (wall clock and
//! this thread's CPU time, which a busy machine does not inflate), MB/s,
//! and the heap allocations a warm parse makes (a counting global
//! allocator; the goal is zero).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cairn::scrape::parse::parse;

/// Counts allocations (and reallocations) made through the global
/// allocator.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn body(n: usize, openmetrics: bool) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let families = [
        ("node_cpu_seconds_total", "counter"),
        ("node_network_receive_bytes_total", "counter"),
        ("node_filesystem_avail_bytes", "gauge"),
        ("http_request_duration_seconds_bucket", "histogram"),
    ];
    let per = n.div_ceil(families.len());
    let mut left = n;
    for (name, kind) in families {
        let base = name.trim_end_matches("_total").trim_end_matches("_bucket");
        let _ = writeln!(s, "# HELP {base} Some help text for {base}.");
        let _ = writeln!(s, "# TYPE {base} {kind}");
        for i in 0..per.min(left) {
            left -= 1;
            let _ = match kind {
                "counter" => writeln!(
                    s,
                    "{name}{{cpu=\"{}\",mode=\"{}\"}} {}.{}",
                    i / 8,
                    ["user", "system", "idle", "iowait"][i % 4],
                    i * 1013,
                    i % 100
                ),
                "gauge" => writeln!(
                    s,
                    "{name}{{device=\"/dev/sd{i}\",fstype=\"ext4\",mountpoint=\"/srv/a \\\"{i}\\\"\"}} {}e+09",
                    i as f64 / 7.0
                ),
                _ => writeln!(
                    s,
                    "{name}{{le=\"{}\",path=\"/api/v1/item/{}\"}} {}",
                    [0.005, 0.01, 0.1, 1.0][i % 4],
                    i / 4,
                    i
                ),
            };
        }
    }
    if openmetrics {
        s.push_str("# EOF\n");
    }
    s
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn arg(args: &[String], flag: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = arg(&args, "--series", 10_000);
    let iters = arg(&args, "--iters", 200).max(1);
    for (label, ct, om) in [
        ("text 0.0.4", None, false),
        (
            "OpenMetrics",
            Some("application/openmetrics-text; version=1.0.0"),
            true,
        ),
    ] {
        let b = body(n, om);
        let mut out = Vec::new();
        parse(b.as_bytes(), ct, &mut out).expect("the benchmark body parses");
        assert_eq!(out.len(), n);
        let mut wall = Vec::with_capacity(iters);
        let mut cpu = Vec::with_capacity(iters);
        let before = ALLOCS.load(Ordering::Relaxed);
        for _ in 0..iters {
            let t = Instant::now();
            let c = thread_cpu();
            parse(b.as_bytes(), ct, &mut out).expect("parses");
            cpu.push(thread_cpu() - c);
            wall.push(t.elapsed());
        }
        let allocs = ALLOCS.load(Ordering::Relaxed) - before;
        wall.sort();
        cpu.sort();
        let (w, c) = (wall[iters / 2], cpu[iters / 2]);
        println!(
            "{label}: {n} series, {} bytes: {:.1} ns/sample CPU ({:.1} wall), {:.0} MB/s CPU (median of {iters}), {:.2} allocations per warm parse",
            b.len(),
            c.as_nanos() as f64 / n as f64,
            w.as_nanos() as f64 / n as f64,
            b.len() as f64 / c.as_secs_f64() / 1e6,
            allocs as f64 / iters as f64
        );
    }
}
