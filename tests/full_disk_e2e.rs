//! A full disk recovers by itself, whole binary: the WAL on a 3 MiB tmpfs
//! (mounted here, as root), a real Prometheus 2.42 receiver down until the
//! WAL cannot be written, a hold, then the receiver up. Within 60 s the
//! in-memory queue is empty and delivery is current again, with the
//! default `wal.max_size` (one open segment: acknowledged data must not pin
//! the disk) and with `max_size = "8MiB"` (1 MiB segments).
//! And with the receiver up while the disk is full: fresh collections go
//! to it from memory, none missing, and they are committed again within
//! two intervals of space returning.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::agent::{metric, now_ms, raw_timestamps, try_for, wait_for};
use common::receiver::Receiver;
use common::Proc;

/// How long the disk stays full with the receiver down before it returns:
/// a minute, as the delivery guarantee's full-disk case is stated.
const HOLD: Duration = Duration::from_secs(60);

/// A tmpfs mounted at a directory, unmounted when dropped (also when the
/// test panics).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mkdir mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and must run as root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Newest timestamp (ms) Prometheus holds for the probe series.
fn newest_ms(rx: &Receiver) -> Result<i64, String> {
    let r = rx.query("timestamp(node_time_seconds{site=\"e2e\"})")?;
    r.first()
        .and_then(|v| v["value"][1].as_str())
        .and_then(|s| s.parse::<f64>().ok())
        .map(|s| (s * 1000.0) as i64)
        .ok_or_else(|| format!("no probe sample yet: {r:?}"))
}

/// The agent's WAL and sender state in one line, for failure messages.
fn state(port: u16) -> String {
    let m = |n: &str, l: &[(&str, &str)]| {
        metric(port, n, l).map_or_else(|| "-".to_string(), |v| v.to_string())
    };
    let rl = [("remote", "prom")];
    format!(
        "queue {} records / {} bytes, wal {} bytes, write errors {}, commits {}, \
         dropped max_size {} queue_full {} max_age {} corruption {}, sent {}, oldest unsent {} s",
        m("cairn_wal_queue_records", &[]),
        m("cairn_wal_queue_bytes", &[]),
        m("cairn_wal_bytes", &[]),
        m("cairn_wal_write_errors_total", &[]),
        m("cairn_wal_commits_total", &[]),
        m("cairn_wal_dropped_samples_total", &[("reason", "max_size")]),
        m(
            "cairn_wal_dropped_samples_total",
            &[("reason", "queue_full")]
        ),
        m("cairn_wal_dropped_samples_total", &[("reason", "max_age")]),
        m(
            "cairn_wal_dropped_samples_total",
            &[("reason", "corruption")]
        ),
        m("cairn_remote_write_samples_sent_total", &rl),
        m("cairn_remote_write_oldest_unsent_sample_age_seconds", &rl),
    )
}

/// Panics with `msg`, the agent's state and its last log lines: a failure
/// on a slower machine must say which phase and why.
fn fail(cairn: &Proc, port: u16, msg: &str) -> ! {
    let log = cairn.output();
    let tail: Vec<&str> = log.lines().rev().take(60).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    panic!(
        "{msg}\nstate: {}\ncairn's last log lines:\n{}",
        state(port),
        tail.join("\n")
    )
}

fn full_disk_recovers(max_size: Option<&str>) {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::new(dir.path());
    let wal_dir = dir.path().join("wal");
    // Declared before cairn: dropped (unmounted) after cairn is killed.
    let _fs = Tmpfs::mount(&wal_dir, "3m");
    let port = common::free_port();
    let extra = max_size.map_or(String::new(), |m| format!("max_size = \"{m}\"\n"));
    let cfg = dir.path().join("cairn.toml");
    std::fs::write(
        &cfg,
        format!(
            "[global]\nscrape_interval = \"1s\"\nexternal_labels = {{ site = \"e2e\" }}\n\
             [web]\nlisten_address = \"127.0.0.1:{port}\"\n\
             [wal]\ndir = \"{}\"\n{extra}\
             [[remote_write]]\nname = \"prom\"\nurl = \"http://127.0.0.1:{}/api/v1/write\"\n\
             queue_config = {{ min_backoff = \"50ms\", max_backoff = \"1s\", batch_send_deadline = \"500ms\" }}\n",
            wal_dir.display(),
            rx.port
        ),
    )
    .expect("write cairn.toml");
    // A 1 MiB ballast file on the same file system, and every default
    // collector plus a textfile of 8000 series whose values change each
    // collection: the WAL fills the rest in well under a minute.
    std::fs::write(wal_dir.join("ballast"), vec![0u8; 1 << 20]).expect("ballast");
    let text_dir = dir.path().join("textfile");
    std::fs::create_dir_all(&text_dir).expect("mkdir textfile");
    let mut cmd = Command::new(common::cairn_bin());
    cmd.arg(format!("--config={}", cfg.display())).arg(format!(
        "--collector.textfile.directory={}",
        text_dir.display()
    ));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (stop, text_dir) = (stop.clone(), text_dir.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut s = String::from("# TYPE e2e_filler gauge\n");
                for i in 0..8000u64 {
                    let v = (n * 7919 + i * 104_729) % 1_000_003;
                    s.push_str(&format!("e2e_filler{{i=\"{i}\"}} {v}.{}\n", n % 97));
                }
                let tmp = text_dir.join("filler.prom.tmp");
                if std::fs::write(&tmp, s).is_ok() {
                    let _ = std::fs::rename(&tmp, text_dir.join("filler.prom"));
                }
                n += 1;
                sleep(Duration::from_millis(500));
            }
        })
    };
    let mut cairn = Proc::spawn("cairn", &mut cmd);
    cairn.wait_ready(
        &format!("http://127.0.0.1:{port}/-/ready"),
        Duration::from_secs(20),
    );
    let errors = || metric(port, "cairn_wal_write_errors_total", &[]).unwrap_or(0.0);
    try_for(Duration::from_secs(150), "the WAL disk full", || {
        if errors() > 0.0 {
            Ok(())
        } else {
            Err(format!(
                "wal bytes {:?}",
                metric(port, "cairn_wal_bytes", &[])
            ))
        }
    })
    .unwrap_or_else(|e| fail(&cairn, port, &e));
    let full_at = t0.elapsed();
    sleep(HOLD);
    let queued = metric(port, "cairn_wal_queue_records", &[]).unwrap_or(0.0);
    if queued <= 0.0 {
        fail(
            &cairn,
            port,
            "collections wait in memory while the disk is full",
        );
    }
    let prom = rx.start();
    let up = Instant::now();
    let (queue, lag) = try_for(
        Duration::from_secs(60),
        "queue empty and delivery current",
        || {
            let q = metric(port, "cairn_wal_queue_records", &[]).ok_or("no /metrics")?;
            let lag = metric(
                port,
                "cairn_remote_write_oldest_unsent_sample_age_seconds",
                &[("remote", "prom")],
            )
            .ok_or("no lag metric")?;
            let newest = newest_ms(&rx)?;
            let behind = (now_ms() - newest) as f64 / 1000.0;
            if q == 0.0 && lag < 15.0 && behind < 15.0 {
                Ok((q, behind.max(lag)))
            } else {
                Err(format!(
                    "queue {q}, oldest unsent {lag} s, newest in Prometheus {behind:.1} s old"
                ))
            }
        },
    )
    .unwrap_or_else(|e| fail(&cairn, port, &e));
    let recovered = up.elapsed();
    // Collections are committed again: the write counter moves.
    let commits = metric(port, "cairn_wal_commits_total", &[]).unwrap_or(0.0);
    try_for(Duration::from_secs(10), "commits continue", || {
        let c = metric(port, "cairn_wal_commits_total", &[]).unwrap_or(0.0);
        (c > commits).then_some(()).ok_or(format!("{c}"))
    })
    .unwrap_or_else(|e| fail(&cairn, port, &e));
    let dropped =
        |r: &str| metric(port, "cairn_wal_dropped_samples_total", &[("reason", r)]).unwrap_or(-1.0);
    eprintln!(
        "max_size {max_size:?}: disk full after {full_at:?}, held {HOLD:?}, recovered {recovered:?} after the receiver came up \
         (queue {queue}, lag {lag:.1} s); dropped max_size {} queue_full {} corruption {}; total {:?}",
        dropped("max_size"),
        dropped("queue_full"),
        dropped("corruption"),
        t0.elapsed()
    );
    if dropped("corruption") != 0.0 {
        fail(&cairn, port, "samples dropped as corrupt");
    }
    if dropped("queue_full") != 0.0 {
        fail(&cairn, port, "16 MiB of queue should outlast the hold");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = churn.join();
    drop(cairn);
    drop(prom);
}

#[test]
fn full_disk_recovers_with_the_default_max_size() {
    full_disk_recovers(None);
}

#[test]
fn full_disk_recovers_with_small_segments() {
    full_disk_recovers(Some("8MiB"));
}

/// Fills the file system holding `dir` with one file, until it refuses.
fn fill_up(dir: &Path) -> PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).expect("create filler");
    let chunk = vec![0u8; 16 << 10];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    p
}

/// The disk fills while the receiver is up: fresh collections go to it
/// straight from memory (none waits behind the disk, none is lost), and
/// within two intervals of space returning collections are committed to
/// the WAL again.
#[test]
fn full_disk_with_the_receiver_up_delivers_from_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::new(dir.path());
    let wal_dir = dir.path().join("wal");
    let _fs = Tmpfs::mount(&wal_dir, "3m");
    let prom = rx.start();
    let port = common::free_port();
    let cfg = dir.path().join("cairn.toml");
    std::fs::write(
        &cfg,
        format!(
            "[global]\nscrape_interval = \"1s\"\nexternal_labels = {{ site = \"e2e\" }}\n\
             [web]\nlisten_address = \"127.0.0.1:{port}\"\n\
             [wal]\ndir = \"{}\"\n\
             [[remote_write]]\nname = \"prom\"\nurl = \"{}\"\n\
             queue_config = {{ min_backoff = \"50ms\", max_backoff = \"1s\", batch_send_deadline = \"200ms\" }}\n",
            wal_dir.display(),
            rx.write_url()
        ),
    )
    .expect("write cairn.toml");
    let mut cmd = Command::new(common::cairn_bin());
    cmd.arg(format!("--config={}", cfg.display()));
    let mut cairn = Proc::spawn("cairn", &mut cmd);
    cairn.wait_ready(
        &format!("http://127.0.0.1:{port}/-/ready"),
        Duration::from_secs(20),
    );
    let m = |name: &str, labels: &[(&str, &str)]| metric(port, name, labels).unwrap_or(-1.0);
    let prom_l = [("remote", "prom")];
    wait_for(Duration::from_secs(30), "first deliveries", || {
        let sent = m("cairn_remote_write_samples_sent_total", &prom_l);
        (sent > 0.0).then_some(()).ok_or(format!("sent {sent}"))
    });

    let filler = fill_up(&wal_dir);
    // The WAL first fills the zeros its writer keeps ahead of itself in
    // the open segment (blocks it already has: at most 128 KiB, about 60
    // collections here), then refuses writes.
    wait_for(Duration::from_secs(120), "the WAL refusing writes", || {
        let e = m("cairn_wal_write_errors_total", &[]);
        (e > 0.0).then_some(()).ok_or(format!("write errors {e}"))
    });
    let full_from = now_ms();
    let unspooled_before = m("cairn_remote_write_samples_unspooled_total", &prom_l);
    let commits_full = m("cairn_wal_commits_total", &[]);
    let mut max_queue = 0.0f64;
    for _ in 0..20 {
        sleep(Duration::from_millis(500));
        max_queue = max_queue.max(m("cairn_wal_queue_records", &[]));
    }
    let unspooled = m("cairn_remote_write_samples_unspooled_total", &prom_l) - unspooled_before;
    let wal_unspooled = m("cairn_wal_unspooled_samples_total", &[]);
    let behind = (now_ms() - newest_ms(&rx).expect("probe series")) as f64 / 1000.0;
    eprintln!(
        "disk full 10 s with the receiver up: {unspooled} samples sent from memory \
         ({wal_unspooled} never written), queue at most {max_queue} records, newest in Prometheus {behind:.1} s old"
    );
    assert!(unspooled > 0.0, "nothing was sent from memory");
    assert!(
        wal_unspooled > 0.0,
        "delivered records still went to the WAL"
    );
    assert!(
        max_queue <= 3.0,
        "collections waited behind the disk: {max_queue} queued"
    );
    assert!(behind < 5.0, "delivery fell behind: {behind:.1} s");
    assert_eq!(
        m("cairn_wal_commits_total", &[]),
        commits_full,
        "the disk took data while full"
    );

    // Space returns: within two intervals collections are committed again.
    std::fs::remove_file(&filler).expect("remove filler");
    let back = Instant::now();
    wait_for(Duration::from_secs(10), "commits again", || {
        let c = m("cairn_wal_commits_total", &[]);
        (c > commits_full)
            .then_some(())
            .ok_or(format!("commits {c}"))
    });
    let recommitted = back.elapsed();
    eprintln!("space returned: first commit after {recommitted:?}");
    assert!(
        recommitted <= Duration::from_millis(2_500),
        "committed again only after {recommitted:?}"
    );
    // No collection missing in Prometheus, from before the disk filled to
    // after it emptied, and nothing dropped.
    sleep(Duration::from_secs(3));
    let ts = wait_for(Duration::from_secs(10), "the probe series", || {
        raw_timestamps(&rx, "node_time_seconds{site=\"e2e\"}", "5m")
    });
    let gaps: Vec<(i64, i64)> = ts
        .windows(2)
        .filter(|w| w[1] - w[0] > 1_600)
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(
        ts.first().is_some_and(|&t| t < full_from - 1_000),
        "no samples before the disk filled: {ts:?}"
    );
    assert!(gaps.is_empty(), "collections missing between {gaps:?}");
    for r in ["queue_full", "corruption", "max_size", "max_age"] {
        assert!(
            m("cairn_wal_dropped_samples_total", &[("reason", r)]) <= 0.0,
            "WAL dropped samples ({r})"
        );
    }
    for r in ["http_4xx", "out_of_order", "too_old", "undecodable"] {
        assert!(
            m(
                "cairn_remote_write_samples_dropped_total",
                &[("reason", r), ("remote", "prom")]
            ) <= 0.0,
            "sender dropped samples ({r})"
        );
    }
    drop(cairn);
    drop(prom);
}
