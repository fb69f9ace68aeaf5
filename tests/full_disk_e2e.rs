//! A full disk recovers by itself, whole binary: the WAL on a 3 MiB tmpfs
//! (mounted here, as root), a real Prometheus 2.42 receiver down until the
//! WAL cannot be written, a hold, then the receiver up. Within 60 s the
//! in-memory queue is empty and delivery is current again, with the
//! default `wal.max_size` (one open segment: acknowledged data must not pin
//! the disk) and with `max_size = "8MiB"` (1 MiB segments).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::http::get;
use common::receiver::Receiver;
use common::{expo, Proc};

/// How long the disk stays full with the receiver down before it returns:
/// a minute, as the delivery guarantee's full-disk case is stated.
const HOLD: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

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

fn metric(port: u16, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let r = get(&format!("http://127.0.0.1:{port}/metrics")).ok()?;
    let fams = expo::parse(&r.text()).ok()?;
    fams.get(name)?.value(labels)
}

fn wait_for<T>(timeout: Duration, what: &str, f: impl FnMut() -> Result<T, String>) -> T {
    try_for(timeout, what, f).unwrap_or_else(|e| panic!("{e}"))
}

fn try_for<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let end = Instant::now() + timeout;
    loop {
        let last = match f() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if Instant::now() >= end {
            return Err(format!("{what}: not within {timeout:?}; last: {last}"));
        }
        sleep(Duration::from_millis(250));
    }
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
    wait_for(Duration::from_secs(100), "the WAL disk full", || {
        if errors() > 0.0 {
            Ok(())
        } else {
            Err(format!(
                "wal bytes {:?}",
                metric(port, "cairn_wal_bytes", &[])
            ))
        }
    });
    let full_at = t0.elapsed();
    sleep(HOLD);
    let queued = metric(port, "cairn_wal_queue_records", &[]).unwrap_or(0.0);
    assert!(
        queued > 0.0,
        "collections wait in memory while the disk is full"
    );
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
    .unwrap_or_else(|e| {
        let log = cairn.output();
        let tail: Vec<&str> = log.lines().rev().take(80).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!("{e}\ncairn's last log lines:\n{}", tail.join("\n"))
    });
    let recovered = up.elapsed();
    // Collections are committed again: the write counter moves.
    let commits = metric(port, "cairn_wal_commits_total", &[]).unwrap_or(0.0);
    wait_for(Duration::from_secs(5), "commits continue", || {
        let c = metric(port, "cairn_wal_commits_total", &[]).unwrap_or(0.0);
        (c > commits).then_some(()).ok_or(format!("{c}"))
    });
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
    assert_eq!(dropped("corruption"), 0.0);
    assert_eq!(
        dropped("queue_full"),
        0.0,
        "16 MiB of queue outlasts the hold"
    );
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
