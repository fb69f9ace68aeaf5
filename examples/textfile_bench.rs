//! Exposition cost with many textfile families: one whole /metrics
//! (collection through the gatherer + text rendering) for 1k, 10k and 100k
//! families, so growth can be read off as linear or not.
//!
//! cargo run --release --example textfile_bench -- [N...] [--iters K]
//!
//! Each N: one file of N gauge families (one labelled series each, HELP
//! and TYPE lines), next to a default-style set of other collectors' names
//! (loadavg, on this host's /proc). Prints the first (cold: every
//! family new) and the median of K warm expositions, and time per family.

use std::time::{Duration, Instant};

use cairn::collect::Gatherer;
use cairn::collector::options::Raw;
use cairn::collector::{self, Collector, Context, Settings};
use cairn::metrics::render_text;

fn ctx() -> Context {
    Context {
        procfs: "/proc".into(),
        sysfs: "/sys".into(),
        rootfs: "/".into(),
        udev_data: "/run/udev/data".into(),
    }
}

fn one(rt: &tokio::runtime::Runtime, g: &mut Gatherer) -> (Duration, usize) {
    let start = Instant::now();
    let bytes = rt.block_on(g.collect(|fams| {
        let mut out = Vec::with_capacity(1 << 20);
        render_text(fams.iter().copied(), &mut out);
        out.len()
    }));
    (start.elapsed(), bytes)
}

fn main() {
    let mut sizes: Vec<usize> = Vec::new();
    let mut iters = 5;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--iters" {
            iters = args.next().and_then(|v| v.parse().ok()).unwrap_or(iters);
        } else if let Ok(n) = a.parse() {
            sizes.push(n);
        }
    }
    if sizes.is_empty() {
        sizes = vec![1_000, 10_000, 100_000];
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("families  bytes      cold_ms   warm_ms   warm_us_per_family");
    for n in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = String::with_capacity(n * 96);
        for i in 0..n {
            text.push_str(&format!(
                "# HELP bench_metric_{i} Bench family {i}.\n# TYPE bench_metric_{i} gauge\nbench_metric_{i}{{job=\"bench\",shard=\"{}\"}} {i}\n",
                i % 16
            ));
        }
        std::fs::write(dir.path().join("bench.prom"), text).expect("write");
        let mut settings = Settings::default();
        let d = dir.path().to_str().expect("utf-8 temp path");
        settings
            .set("collector.textfile.directory", Raw::Str(d))
            .expect("directory option");
        // Absent before the option existed; the bench also builds there.
        let _ = settings.set("collector.textfile.max-bytes", Raw::Str("1073741824"));
        let build = |name: &str| -> Box<dyn Collector> {
            let k = collector::find(name).expect("known collector");
            (k.build.expect("implemented"))(&settings)
        };
        let collectors = vec![
            ("loadavg", build("loadavg")),
            ("textfile", build("textfile")),
        ];
        let mut g = Gatherer::with_collectors(ctx(), collectors, Duration::from_secs(600));
        let (cold, bytes) = one(&rt, &mut g);
        let mut warm: Vec<Duration> = (0..iters).map(|_| one(&rt, &mut g).0).collect();
        warm.sort();
        let med = warm[warm.len() / 2];
        println!(
            "{n:<9} {bytes:<10} {:<9.1} {:<9.1} {:.2}",
            cold.as_secs_f64() * 1e3,
            med.as_secs_f64() * 1e3,
            med.as_secs_f64() * 1e6 / n as f64
        );
    }
}
