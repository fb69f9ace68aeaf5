//! The delivery guarantee across restarts, against a real Prometheus 2.42
//! behind proxies written here (loopback only): one that forwards at most
//! one request a second and answers the others 429 `Retry-After: 2`, and
//! one that carries 16 KB/s. cairn is stopped with SIGTERM and SIGKILL
//! while windows are half sent; every series of every collection
//! committed before a stop must reach Prometheus, a clean stop must make
//! Prometheus refuse nothing, a kill at most the one request in flight,
//! and a drain over a slow uplink must progress from restart to restart.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use common::agent::{metrics, now_ms, query, samples, signal};
use common::{expo, tool, Proc, Tool};

fn start_prometheus(dir: &Path) -> (Proc, u16) {
    let dir = dir.join("prometheus");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("prometheus.yml"),
        "global:\n  scrape_interval: 15s\n",
    )
    .expect("write prometheus.yml");
    let port = common::free_port();
    let mut cmd = Command::new(tool(Tool::Prometheus));
    cmd.arg(format!(
        "--config.file={}",
        dir.join("prometheus.yml").display()
    ))
    .arg(format!(
        "--storage.tsdb.path={}",
        dir.join("data").display()
    ))
    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
    .arg("--web.enable-remote-write-receiver")
    .current_dir(&dir);
    let mut p = Proc::spawn("prometheus", &mut cmd);
    p.wait_ready(
        &format!("http://127.0.0.1:{port}/-/ready"),
        Duration::from_secs(60),
    );
    (p, port)
}

/// Raw (timestamp ms, value) samples of one series over the last `range`.
fn raw(port: u16, selector: &str, range: &str) -> Vec<(i64, f64)> {
    let res = query(port, &format!("{selector}[{range}]"), None).expect("range query");
    res.first().map(samples).unwrap_or_default()
}

/// Series with a sample at exactly `t_ms` (a range selector keeps the
/// metric names, so series differing only by name stay apart).
fn series_at(port: u16, t_ms: i64) -> u64 {
    query(port, "{site=\"e2e\"}[1ms]", Some(t_ms))
        .map(|r| r.len() as u64)
        .unwrap_or(0)
}

fn metric(f: &expo::Families, name: &str) -> f64 {
    f.get(name).and_then(|m| m.value(&[])).unwrap_or(0.0)
}

fn write_config(dir: &Path, port: u16, url: &str, queue: &str, collectors_note: &str) -> PathBuf {
    let s = format!(
        "# {collectors_note}\n[global]\nscrape_interval = \"1s\"\nexternal_labels = {{ site = \"e2e\" }}\n\
         [web]\nlisten_address = \"127.0.0.1:{port}\"\n[wal]\ndir = \"{}\"\n\
         [[remote_write]]\nname = \"prom\"\nurl = \"{url}\"\nqueue_config = {{ {queue} }}\n",
        dir.join("wal").display()
    );
    common::agent::write_config(dir, &s)
}

fn start_cairn(config: &Path, port: u16, collectors: &[&str]) -> Proc {
    let args: Vec<&str> = std::iter::once("--collector.disable-defaults")
        .chain(collectors.iter().copied())
        .collect();
    common::agent::start_cairn(config, port, &args)
}

// ---------------------------------------------------------------------------
// A receiver that takes one request a second (HTTP/1.1, one request per
// connection: it answers with `Connection: close`).

#[derive(Default)]
struct ProxyStats {
    forwarded: usize,
    limited: usize,
    /// Bodies of 4xx answers Prometheus gave, in order.
    refused: Vec<String>,
}

struct RateLimited {
    port: u16,
    stats: Arc<Mutex<ProxyStats>>,
    stop: Arc<AtomicBool>,
}

impl Drop for RateLimited {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn read_head(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).into_owned();
            return Some((head, buf[i + 4..].to_vec()));
        }
        let n = s.read(&mut b).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

fn read_body(s: &mut TcpStream, mut have: Vec<u8>, len: usize) -> Option<Vec<u8>> {
    let mut b = [0u8; 8192];
    while have.len() < len {
        let n = s.read(&mut b).ok()?;
        if n == 0 {
            return None;
        }
        have.extend_from_slice(&b[..n]);
    }
    have.truncate(len);
    Some(have)
}

fn respond(s: &mut TcpStream, status: u16, extra: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    let _ = s.flush();
}

impl RateLimited {
    fn start(upstream: u16) -> RateLimited {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let stats: Arc<Mutex<ProxyStats>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let last: Arc<Mutex<Option<Instant>>> = Arc::default();
        let (st, sp) = (Arc::clone(&stats), Arc::clone(&stop));
        thread::spawn(move || {
            for c in l.incoming() {
                if sp.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut c) = c else { continue };
                let (st, last) = (Arc::clone(&st), Arc::clone(&last));
                thread::spawn(move || {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
                    let Some((head, rest)) = read_head(&mut c) else {
                        return;
                    };
                    let Some(body) = read_body(&mut c, rest, content_length(&head)) else {
                        return;
                    };
                    let go = {
                        let mut l = last.lock().unwrap();
                        let ok = l.map_or(true, |t| t.elapsed() >= Duration::from_secs(1));
                        if ok {
                            *l = Some(Instant::now());
                        }
                        ok
                    };
                    if !go {
                        st.lock().unwrap().limited += 1;
                        respond(&mut c, 429, "Retry-After: 2\r\n", b"rate limited\n");
                        return;
                    }
                    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                        respond(&mut c, 502, "", b"upstream down\n");
                        return;
                    };
                    let req = format!(
                        "POST /api/v1/write HTTP/1.1\r\nHost: 127.0.0.1:{upstream}\r\n\
                         Content-Encoding: snappy\r\nContent-Type: application/x-protobuf\r\n\
                         X-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = up.write_all(req.as_bytes());
                    let _ = up.write_all(&body);
                    let mut resp = Vec::new();
                    let _ = up.read_to_end(&mut resp);
                    let text = String::from_utf8_lossy(&resp).into_owned();
                    let status: u16 = text
                        .split_whitespace()
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(502);
                    let rbody = text
                        .split_once("\r\n\r\n")
                        .map(|(_, b)| b.to_owned())
                        .unwrap_or_default();
                    {
                        let mut s = st.lock().unwrap();
                        s.forwarded += 1;
                        if (400..500).contains(&status) {
                            s.refused.push(rbody.clone());
                        }
                    }
                    respond(&mut c, status, "", rbody.as_bytes());
                });
            }
        });
        RateLimited { port, stats, stop }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/write", self.port)
    }
}

/// What one run of cairn committed, read from its /metrics just before
/// the stop.
#[derive(Debug)]
struct Run {
    started_ms: i64,
    collections: u64,
    samples_collected: f64,
    last_ts: i64,
}

fn out_of_order_lines(prom: &Proc) -> usize {
    prom.output()
        .lines()
        .filter(|l| l.contains("Out of order sample") || l.contains("out of order"))
        .count()
}

#[test]
fn restarts_behind_a_rate_limited_receiver_deliver_every_committed_collection() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let (prom, prom_port) = start_prometheus(dir.path());
    let proxy = RateLimited::start(prom_port);
    let port = common::free_port();
    // Requests of 300 samples: a collection takes about one, a window
    // (8 requests) outlives most runs, so stops fall mid-window.
    let cfg = write_config(
        dir.path(),
        port,
        &proxy.url(),
        "max_samples_per_send = 300, min_backoff = \"50ms\", max_backoff = \"2s\", batch_send_deadline = \"200ms\", shutdown_grace = \"5s\"",
        "restarts",
    );
    let collectors = [
        "--collector.loadavg",
        "--collector.meminfo",
        "--collector.uname",
        "--collector.time",
    ];
    let mut runs = Vec::new();
    let mut term_refused = 0;
    let mut kills = 0;
    for i in 0..20 {
        let term = i < 10;
        let started_ms = now_ms();
        let mut c = start_cairn(&cfg, port, &collectors);
        sleep(Duration::from_millis(3000));
        let f = metrics(port).expect("cairn /metrics");
        let run = Run {
            started_ms,
            collections: metric(&f, "cairn_collections_total") as u64,
            samples_collected: metric(&f, "cairn_samples_collected_total"),
            last_ts: (metric(&f, "cairn_last_collection_timestamp_seconds") * 1000.0).round()
                as i64,
        };
        // flush_interval 0: a collection is committed as it is taken; give
        // the last one its fdatasync.
        sleep(Duration::from_millis(150));
        if term {
            signal(&c, "TERM");
            let st = c
                .wait_exit(Duration::from_secs(10))
                .expect("cairn stops within its grace");
            assert!(st.success(), "SIGTERM exit: {st}\n{}", c.output());
            if i == 9 {
                term_refused = proxy.stats.lock().unwrap().refused.len();
            }
        } else {
            signal(&c, "KILL");
            c.wait_exit(Duration::from_secs(5)).expect("killed");
            kills += 1;
        }
        assert!(run.collections >= 2, "run {i}: {run:?}");
        runs.push(run);
    }
    let term_ooo = out_of_order_lines(&prom);

    // A last run drains what is left: until the last collection of the last
    // run is whole. A window is sent series-major over several collections,
    // so one series of a later collection can arrive before the rest of
    // this one; windows go oldest first, so once this one is whole all
    // before it are too (the checks below then hold without waiting).
    let last = runs.last().expect("runs");
    let c = start_cairn(&cfg, port, &collectors);
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let counter = raw(
            prom_port,
            "cairn_samples_collected_total{site=\"e2e\"}",
            "10m",
        );
        let whole = counter
            .iter()
            .find(|(t, _)| *t == last.last_ts)
            .is_some_and(|(t, v)| {
                series_at(prom_port, *t) == (last.samples_collected - v).round() as u64
            });
        if whole {
            break;
        }
        assert!(Instant::now() < end, "backlog not drained within 60 s");
        sleep(Duration::from_millis(500));
    }
    drop(c);

    // Every collection of every run is there, and each holds as many
    // series as the collection had samples (its own counter: the value
    // a collection carries is the total before it).
    let counter = raw(
        prom_port,
        "cairn_samples_collected_total{site=\"e2e\"}",
        "10m",
    );
    let mut checked = 0;
    for (i, r) in runs.iter().enumerate() {
        let mine: Vec<(i64, f64)> = counter
            .iter()
            .copied()
            .filter(|(t, _)| *t >= r.started_ms && *t <= r.last_ts)
            .collect();
        assert_eq!(
            mine.len() as u64,
            r.collections,
            "run {i} ({}): collections committed vs delivered ({mine:?})",
            if i < 10 { "SIGTERM" } else { "SIGKILL" }
        );
        for (j, (t, v)) in mine.iter().enumerate() {
            let next = mine.get(j + 1).map_or(r.samples_collected, |x| x.1);
            let want = (next - v).round() as u64;
            let got = series_at(prom_port, *t);
            assert_eq!(
                got, want,
                "run {i}: collection at {t} has {got} of {want} series"
            );
            checked += 1;
        }
    }
    let stats = proxy.stats.lock().unwrap();
    eprintln!(
        "{} collections checked; {} requests forwarded, {} answered 429; {term_ooo} out-of-order log lines after the SIGTERM runs; {} refused in the SIGTERM runs, {} in all; {kills} kills; took {:?}",
        checked,
        stats.forwarded,
        stats.limited,
        term_refused,
        stats.refused.len(),
        t0.elapsed()
    );
    assert!(
        stats.limited > 0,
        "the proxy never limited: the test tests nothing"
    );
    assert_eq!(term_ooo, 0, "Prometheus refused samples after clean stops");
    assert_eq!(term_refused, 0, "{:?}", stats.refused);
    assert!(
        stats.refused.len() - term_refused <= kills,
        "more than one refused request per kill: {:?}",
        stats.refused
    );
}

// ---------------------------------------------------------------------------
// A TCP proxy carrying 16 KB/s towards the receiver (answers go back at
// full speed).

struct Slow {
    port: u16,
    sent: Arc<AtomicUsize>,
}

fn slow_proxy(upstream: u16, bytes_per_sec: usize) -> Slow {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let sent = Arc::new(AtomicUsize::new(0));
    let s2 = Arc::clone(&sent);
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (mut c2, mut up2) = match (c.try_clone(), up.try_clone()) {
                (Ok(a), Ok(b)) => (a, b),
                _ => continue,
            };
            let sent = Arc::clone(&s2);
            thread::spawn(move || {
                let chunk = bytes_per_sec / 16;
                let mut b = vec![0u8; chunk];
                loop {
                    let n = match c.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if up.write_all(&b[..n]).is_err() {
                        break;
                    }
                    sent.fetch_add(n, Ordering::Relaxed);
                    sleep(Duration::from_secs_f64(n as f64 / bytes_per_sec as f64));
                }
                let _ = up.shutdown(std::net::Shutdown::Write);
            });
            thread::spawn(move || {
                let _ = std::io::copy(&mut up2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    Slow { port, sent }
}

fn backlog(config: &Path) -> u64 {
    let out = Command::new(common::cairn_bin())
        .arg(format!("--config={}", config.display()))
        .args(["wal", "status"])
        .output()
        .expect("cairn wal status");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("remote prom: backlog ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no backlog in {text:?}"))
}

#[test]
fn a_drain_over_a_slow_uplink_progresses_across_kills() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_prom, prom_port) = start_prometheus(dir.path());
    let port = common::free_port();
    // A backlog: 20 s of the default collectors while the receiver's
    // address is dead.
    let dead = format!("http://127.0.0.1:{}/api/v1/write", common::free_port());
    let queue = "min_backoff = \"50ms\", max_backoff = \"1s\", batch_send_deadline = \"200ms\"";
    let cfg = write_config(dir.path(), port, &dead, queue, "backlog");
    let mut cmd = Command::new(common::cairn_bin());
    cmd.arg(format!("--config={}", cfg.display()));
    let mut c = Proc::spawn("cairn", &mut cmd);
    c.wait_ready(
        &format!("http://127.0.0.1:{port}/-/ready"),
        Duration::from_secs(20),
    );
    sleep(Duration::from_secs(20));
    signal(&c, "TERM");
    drop(c);
    let slow = slow_proxy(prom_port, 16 * 1024);
    let url = format!("http://127.0.0.1:{}/api/v1/write", slow.port);
    let cfg = write_config(dir.path(), port, &url, queue, "drain");
    let mut levels = vec![backlog(&cfg)];
    // Kills every 0.3-3 s (a fixed spread, so the test is repeatable),
    // with a few tiny collectors running meanwhile.
    let runs_ms = [
        300, 1800, 700, 3000, 1200, 2500, 400, 2000, 3000, 1500, 2800, 900,
    ];
    for ms in runs_ms {
        let c = start_cairn(&cfg, port, &["--collector.loadavg"]);
        sleep(Duration::from_millis(ms));
        signal(&c, "KILL");
        drop(c);
        levels.push(backlog(&cfg));
    }
    eprintln!(
        "backlog across kills: {levels:?}; {} bytes through the 16 KB/s link; took {:?}",
        slow.sent.load(Ordering::Relaxed),
        t0.elapsed()
    );
    // Runs long enough to get one request through (≥ 1.5 s at 16 KB/s)
    // each shrink the backlog; none lets it grow by more than what the
    // tiny collectors added (a few hundred samples a second).
    for (i, ms) in runs_ms.iter().enumerate() {
        let (before, after) = (levels[i], levels[i + 1]);
        let added = 400 * (*ms / 1000 + 2);
        assert!(
            after <= before + added,
            "run {i} ({ms} ms): backlog grew {before} -> {after}"
        );
        if *ms >= 1500 && before > added {
            assert!(
                after < before,
                "run {i} ({ms} ms): no progress, {before} -> {after}"
            );
        }
    }
    assert!(
        *levels.last().unwrap() < levels[0] / 2,
        "backlog did not shrink: {levels:?}"
    );
}
