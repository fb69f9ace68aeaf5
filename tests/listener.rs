//! The listener under hostile clients, whole binary: a flood of idle
//! connections under a small open-files limit (util-linux `prlimit`), and
//! the parallel-scrape limit.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::http::get;
use common::{cairn_bin, free_port, Proc};

/// Raises this test process' own open-files limit so it can hold the flood.
fn raise_own_nofile(want: u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid, writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
    assert!(
        r.rlim_max >= want,
        "the hard open-files limit ({}) is below the {want} this test needs",
        r.rlim_max
    );
    r.rlim_cur = r.rlim_cur.max(want);
    // SAFETY: valid rlimit, soft ≤ hard.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) }, 0);
}

/// `node_scrape_collector_success` per collector.
fn successes(body: &str) -> BTreeMap<String, bool> {
    body.lines()
        .filter_map(|l| l.strip_prefix("node_scrape_collector_success{collector=\""))
        .filter_map(|l| {
            let (name, rest) = l.split_once('"')?;
            Some((name.to_owned(), rest.trim_start_matches('}').trim() == "1"))
        })
        .collect()
}

fn value(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// With 3,000 idle connections against a limit of 1,024 descriptors,
/// /metrics still answers within 5 s and every collector that succeeds
/// without the flood still succeeds (none runs out of descriptors).
#[test]
fn idle_connection_flood_under_1024_fds() {
    raise_own_nofile(4096);
    let port = free_port();
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=1024:1024")
        .arg("--")
        .arg(cairn_bin())
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        // More than the descriptors allow: the budget must cap it.
        .arg("--web.max-connections=5000");
    let mut p = Proc::spawn("cairn", &mut cmd);
    let url = format!("http://127.0.0.1:{port}/metrics");
    p.wait_ready(&url, Duration::from_secs(20));
    let before = get(&url).expect("scrape before the flood").text();
    let ok_before: Vec<String> = successes(&before)
        .into_iter()
        .filter_map(|(c, ok)| ok.then_some(c))
        .collect();
    assert!(ok_before.len() >= 5, "too few collectors succeed: {before}");
    assert_eq!(value(&before, "process_max_fds"), Some(1024.0));

    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    let mut flood = Vec::with_capacity(3000);
    for _ in 0..3000 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            flood.push(s);
        }
    }
    eprintln!(
        "{} idle connections opened in {:?}",
        flood.len(),
        started.elapsed()
    );
    assert!(
        flood.len() > 1024,
        "only {} connections opened",
        flood.len()
    );

    let t = Instant::now();
    let r = get(&url).expect("scrape during the flood");
    let took = t.elapsed();
    eprintln!("/metrics during the flood: {took:?}");
    assert_eq!(r.status, 200);
    assert!(took < Duration::from_secs(5), "/metrics took {took:?}");
    let body = r.text();
    let now = successes(&body);
    for c in &ok_before {
        assert_eq!(
            now.get(c),
            Some(&true),
            "collector {c} failed under the flood:\n{body}"
        );
    }
    let open = value(&body, "process_open_fds").expect("process_open_fds");
    assert!(
        open <= (1024 - 128) as f64 + 8.0,
        "{open} descriptors open: the reserve was used"
    );
    assert!(p.exited().is_none(), "cairn died: {}", p.output());
    drop(flood);
}

/// Past `--web.max-requests` parallel scrapes, /metrics answers 503 as
/// node_exporter's promhttp does; other routes are not limited.
#[test]
fn max_requests_answers_503_past_the_limit() {
    let port = free_port();
    let mut p = common::spawn_cairn(port, &["--web.max-requests=1"]);
    let url = format!("http://127.0.0.1:{port}/metrics");
    // A collection takes tens of milliseconds; 16 clients started together
    // arrive while the first one holds the only slot.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(16));
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let url = url.clone();
                let b = std::sync::Arc::clone(&barrier);
                std::thread::spawn(move || {
                    b.wait();
                    get(&url).map(|r| r.status).unwrap_or(0)
                })
            })
            .collect();
        for h in handles {
            statuses.push(h.join().unwrap());
        }
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&503),
        "no scrape was refused: {statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    let r = get(&format!("http://127.0.0.1:{port}/-/healthy")).unwrap();
    assert_eq!(r.status, 200);
    assert!(p.exited().is_none());
}

/// `--web.disable-exporter-metrics` drops `process_*` (node_exporter drops
/// its process and Go collectors); the collectors' own meta metrics stay.
#[test]
fn disable_exporter_metrics_drops_process_metrics() {
    let port = free_port();
    let _p = common::spawn_cairn(port, &[]);
    let body = get(&format!("http://127.0.0.1:{port}/metrics"))
        .unwrap()
        .text();
    for m in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(body.contains(&format!("# TYPE {m} ")), "{m} missing");
    }
    let port = free_port();
    let _p = common::spawn_cairn(port, &["--web.disable-exporter-metrics"]);
    let body = get(&format!("http://127.0.0.1:{port}/metrics"))
        .unwrap()
        .text();
    assert!(!body.contains("process_"), "{body}");
    assert!(body.contains("node_scrape_collector_success"));
    assert!(body.contains("cairn_build_info"));
}

/// A client that sends half a request and stops is cut off after the
/// 10 s header timeout, not held forever (slowloris).
#[test]
fn half_sent_headers_are_cut_off() {
    use std::io::{Read, Write};
    let port = free_port();
    let _p = common::spawn_cairn(port, &[]);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 512];
    // Closed (EOF or a 408/error answer, then EOF) within the timeout.
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => continue,
        }
    }
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(20),
        "connection closed after {took:?}"
    );
}
