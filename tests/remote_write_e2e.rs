//! cairn's WAL and remote_write against real receivers started here on
//! loopback: Prometheus 2.42 (`--web.enable-remote-write-receiver`) and
//! VictoriaMetrics. The clauses of the README's delivery guarantee that need
//! a real receiver are tested here: samples arrive with the external labels
//! and equal what /metrics shows; an outage with a kill -9 in the middle
//! leaves no gap beyond the time cairn was dead and no rejected sample; a
//! damaged WAL never stops cairn from starting and delivering.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::agent::{metric, now_ms, query, raw_timestamps, wait_for, write_config};
use common::http::get;
use common::receiver::Receiver;
use common::{expo, tool, Proc, Tool};

const INTERVAL_MS: i64 = 1000;

/// Writes a cairn config and returns its path.
fn cairn_config(dir: &Path, listen_port: u16, remotes: &[(&str, String)], extra: &str) -> PathBuf {
    cairn_config_with_queue(
        dir,
        listen_port,
        remotes,
        extra,
        "min_backoff = \"50ms\", max_backoff = \"500ms\", batch_send_deadline = \"500ms\"",
    )
}

/// `cairn_config` with each remote's `queue_config` given (inline table
/// body).
fn cairn_config_with_queue(
    dir: &Path,
    listen_port: u16,
    remotes: &[(&str, String)],
    extra: &str,
    queue: &str,
) -> PathBuf {
    let mut s = format!(
        "[global]\nscrape_interval = \"1s\"\nexternal_labels = {{ site = \"e2e\" }}\n\
         [web]\nlisten_address = \"127.0.0.1:{listen_port}\"\n\
         [wal]\ndir = \"{}\"\n{extra}\n",
        dir.join("wal").display()
    );
    for (name, url) in remotes {
        s.push_str(&format!(
            "[[remote_write]]\nname = \"{name}\"\nurl = \"{url}\"\n\
             queue_config = {{ {queue} }}\n"
        ));
    }
    write_config(dir, &s)
}

/// Starts cairn with few collectors, which keep the test about the spool,
/// not the host.
fn start_cairn(config: &Path, port: u16) -> Proc {
    common::agent::start_cairn(
        config,
        port,
        &[
            "--collector.disable-defaults",
            "--collector.loadavg",
            "--collector.meminfo",
            "--collector.uname",
            "--collector.time",
        ],
    )
}

#[test]
fn samples_reach_prometheus_with_external_labels_and_equal_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::new(dir.path());
    let prom = rx.start();
    let port = common::free_port();
    let cfg = cairn_config(dir.path(), port, &[("prom", rx.write_url())], "");
    let cairn = start_cairn(&cfg, port);

    // A static series: equal on /metrics and in Prometheus, with site="e2e".
    let local = metric(port, "node_memory_MemTotal_bytes", &[]).expect("MemTotal on /metrics");
    let got = wait_for(Duration::from_secs(30), "MemTotal in Prometheus", || {
        let r = rx.query("node_memory_MemTotal_bytes{site=\"e2e\"}")?;
        let v = r
            .first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or_else(|| format!("no sample yet: {r:?}"))?;
        Ok(v)
    });
    assert_eq!(got, local, "MemTotal sent differs from /metrics");
    // The series' whole label set on the wire: the external label, then the
    // default job and the host's name as instance.
    let host = common::host_name();
    let series = rx
        .query("node_memory_MemTotal_bytes")
        .expect("MemTotal query");
    assert_eq!(series.len(), 1, "one MemTotal series: {series:?}");
    let want = serde_json::json!({
        "__name__": "node_memory_MemTotal_bytes",
        "site": "e2e",
        "job": "node",
        "instance": host,
    });
    assert_eq!(series[0]["metric"], want, "labels on the wire");

    // Every family /metrics shows arrives (the series sent are the ones
    // served, plus the external label).
    let text = get(&format!("http://127.0.0.1:{port}/metrics"))
        .expect("metrics")
        .text();
    let fams = expo::parse(&text).expect("parse");
    // Give the sender a couple of intervals to ship the newest families.
    sleep(Duration::from_millis(3 * INTERVAL_MS as u64));
    let names = rx
        .query("group by (__name__) ({site=\"e2e\"})")
        .expect("names query");
    let sent: std::collections::BTreeSet<String> = names
        .iter()
        .filter_map(|s| s["metric"]["__name__"].as_str().map(str::to_owned))
        .collect();
    let missing: Vec<&String> = fams.keys().filter(|n| !sent.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "families on /metrics never reached Prometheus: {missing:?}"
    );
    // /metrics itself shows neither the external label nor job/instance.
    for leak in ["site=\"e2e\"", "job=\"", "instance=\""] {
        assert!(!text.contains(leak), "{leak} leaked into /metrics");
    }
    drop(cairn);
    drop(prom);
}

#[test]
fn outage_with_kill_9_loses_nothing_committed_and_nothing_is_rejected() {
    outage_with_kill_9(|_| String::new(), "node_load1{site=\"e2e\"}");
}

/// The same outage and kill -9 for what cairn scrapes (agent mode): here
/// its own `/metrics` as a target every second. Scraped samples share the
/// WAL and the senders, so the same guarantee holds: every scrape's `up`
/// sample is delivered, none rejected, none dropped.
#[test]
fn scraped_samples_survive_an_outage_with_kill_9() {
    outage_with_kill_9(
        |port| {
            format!(
                "[[scrape_configs]]\njob_name = \"self\"\nscrape_interval = \"1s\"\nscrape_timeout = \"900ms\"\n\
                 static_configs = [{{ targets = [\"127.0.0.1:{port}\"] }}]\n"
            )
        },
        "up{job=\"self\",site=\"e2e\"}",
    );
}

/// The same outage and kill -9 with collections held back from the WAL
/// (`wal.flush_interval = "5s"`): at the kill the newest few seconds of
/// the outage exist only in the stage, and the next process queues them
/// again. Nothing is missing, rejected or dropped.
#[test]
fn held_collections_survive_an_outage_with_kill_9() {
    let run = tempfile::tempdir().expect("tempdir");
    let stage = run.path().to_path_buf();
    outage_with_kill_9(
        move |_| {
            format!(
                "flush_interval = \"5s\"\nstage_dir = \"{}\"\n",
                stage.display()
            )
        },
        "node_load1{site=\"e2e\"}",
    );
}

/// With the receiver up and `wal.flush_interval = "30s"`, every collection
/// is delivered from memory: the WAL gets no samples at all (only series
/// sets), across a kill -9 and a SIGTERM. Afterwards every collection is
/// in Prometheus with no gap beyond the dead time, nothing was dropped,
/// and after the clean stop nothing was sent twice.
#[test]
fn held_collections_with_the_receiver_up_never_reach_the_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::new(dir.path());
    let prom = rx.start();
    let port = common::free_port();
    let extra = format!(
        "flush_interval = \"30s\"\nstage_dir = \"{}\"\n",
        dir.path().join("run").display()
    );
    let cfg = cairn_config(dir.path(), port, &[("prom", rx.write_url())], &extra);
    let selector = "node_load1{site=\"e2e\"}";
    let mut cairn = start_cairn(&cfg, port);
    let window_start = now_ms();
    wait_for(
        Duration::from_secs(30),
        "samples delivered from memory",
        || match metric(port, "cairn_wal_unspooled_samples_total", &[]) {
            Some(v) if v > 0.0 => Ok(()),
            v => Err(format!("unspooled {v:?}")),
        },
    );
    sleep(Duration::from_secs(4));
    let appended = |port| metric(port, "cairn_wal_samples_appended_total", &[]);
    assert_eq!(appended(port), Some(0.0), "samples reached the WAL");
    // kill -9 with the receiver up, straight back.
    let dead_from = now_ms();
    drop(cairn);
    cairn = start_cairn(&cfg, port);
    let mut dead_ms = now_ms() - dead_from;
    sleep(Duration::from_secs(4));
    // A clean stop: nothing held is lost and nothing is sent twice.
    common::agent::signal(&cairn, "TERM");
    let stopped_from = now_ms();
    assert!(
        cairn.wait_exit(Duration::from_secs(15)).is_some(),
        "cairn did not stop on SIGTERM"
    );
    cairn = start_cairn(&cfg, port);
    dead_ms = dead_ms.max(now_ms() - stopped_from);
    sleep(Duration::from_secs(4));
    let text = get(&format!("http://127.0.0.1:{port}/metrics"))
        .expect("metrics")
        .text();
    let f = expo::parse(&text).expect("metrics parse");
    assert_eq!(
        f.get("cairn_wal_samples_appended_total")
            .and_then(|x| x.value(&[])),
        Some(0.0),
        "samples reached the WAL after the SIGTERM restart"
    );
    assert_eq!(
        f.get("cairn_remote_write_samples_resent_total")
            .and_then(|x| x.value(&[("remote", "prom")])),
        Some(0.0),
        "a clean stop left something to send again"
    );
    no_sender_drops(&text);
    samples_without_gaps(&rx, selector, window_start, dead_ms);
    drop(cairn);
    drop(prom);
}

/// The timestamps of `selector` in the receiver from `from` until now:
/// more than ten, and no gap over two intervals plus `dead_ms` (the time
/// cairn was not running).
fn samples_without_gaps(rx: &Receiver, selector: &str, from: i64, dead_ms: i64) -> Vec<i64> {
    let window_end = now_ms();
    let ts = raw_timestamps(rx, selector, "2m").unwrap_or_else(|e| panic!("range query: {e}"));
    let ts: Vec<i64> = ts
        .into_iter()
        .filter(|t| *t >= from && *t <= window_end)
        .collect();
    assert!(ts.len() > 10, "too few samples in the window: {ts:?}");
    let max_gap = ts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let allowed = 2 * INTERVAL_MS + dead_ms;
    assert!(
        max_gap <= allowed,
        "a gap of {max_gap} ms (allowed {allowed} ms: two intervals + {dead_ms} ms dead) in {ts:?}"
    );
    ts
}

/// Every `cairn_remote_write_samples_dropped_total` in `/metrics` text is 0.
fn no_sender_drops(text: &str) {
    for line in text
        .lines()
        .filter(|l| l.starts_with("cairn_remote_write_samples_dropped_total"))
    {
        assert!(line.ends_with(" 0"), "cairn dropped samples: {line}");
    }
}

/// Receiver up, then gone for 20 s with cairn killed (SIGKILL) 8 s in and
/// dead for 3 s, then back: every sample of `selector` from the start of
/// the outage on is in the receiver, nothing rejected or dropped. `extra`
/// adds config (given cairn's port).
fn outage_with_kill_9(extra: impl Fn(u16) -> String, selector: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::new(dir.path());
    let prom = rx.start();
    let port = common::free_port();
    let cfg = cairn_config(dir.path(), port, &[("prom", rx.write_url())], &extra(port));
    let mut cairn = start_cairn(&cfg, port);
    wait_for(Duration::from_secs(30), "first samples", || {
        rx.query(selector).and_then(|r| {
            if r.is_empty() {
                Err("none yet".into())
            } else {
                Ok(())
            }
        })
    });
    let window_start = now_ms();
    let prom_log_1 = prom.output();
    drop(prom); // Outage: the receiver is gone (SIGKILL).
    let outage_start = Instant::now();

    sleep(Duration::from_secs(8));
    // kill -9 in the middle of the outage, dead for a few seconds.
    let dead_from = now_ms();
    drop(cairn);
    sleep(Duration::from_secs(3));
    cairn = start_cairn(&cfg, port);
    let dead_ms = now_ms() - dead_from;

    let remaining = Duration::from_secs(20).saturating_sub(outage_start.elapsed());
    sleep(remaining);
    let prom = rx.start();

    // Drained: cairn reports no backlog, and the newest sample is recent.
    wait_for(Duration::from_secs(60), "backlog drained", || match metric(
        port,
        "cairn_wal_backlog_samples",
        &[("remote", "prom")],
    ) {
        Some(0.0) => Ok(()),
        v => Err(format!("backlog {v:?}")),
    });
    sleep(Duration::from_millis(2 * INTERVAL_MS as u64));
    let ts = samples_without_gaps(&rx, selector, window_start - 2 * INTERVAL_MS, dead_ms);
    assert!(
        ts.first().copied().unwrap_or(i64::MAX) <= window_start + 2 * INTERVAL_MS,
        "the window's start is missing: {ts:?}"
    );
    // No sample was rejected: Prometheus logged no rejection, cairn dropped
    // nothing for a 4xx.
    let log = format!("{prom_log_1}\n{}", prom.output());
    for bad in ["out of order", "out of bounds", "duplicate sample"] {
        assert!(
            !log.contains(bad),
            "Prometheus rejected samples ({bad}):\n{log}"
        );
    }
    let text = get(&format!("http://127.0.0.1:{port}/metrics"))
        .expect("metrics")
        .text();
    no_sender_drops(&text);
    drop(cairn);
    drop(prom);
}

/// With the default backoff (30 ms doubling to 30 s), 20 s of outage puts
/// the sender in a wait of at least 7.7 s (half of the 15.36 s step). The
/// probes notice the returned receiver within about 2 s, and the backlog
/// is caught up a few seconds after that.
#[test]
fn a_returned_receiver_is_drained_within_seconds_not_after_the_backoff_step() {
    const OUTAGE: Duration = Duration::from_secs(20);
    /// Lag of the oldest unsent sample when caught up: the batch deadline
    /// (1 s) plus two collection intervals.
    const CAUGHT_UP_LAG_S: f64 = 3.0;
    /// Well under the 7.7 s the backoff step alone would have waited.
    const DRAINED_WITHIN: Duration = Duration::from_secs(5);
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::new(dir.path());
    let prom = rx.start();
    let port = common::free_port();
    let cfg = cairn_config_with_queue(
        dir.path(),
        port,
        &[("prom", rx.write_url())],
        "",
        "batch_send_deadline = \"1s\"",
    );
    let cairn = start_cairn(&cfg, port);
    let remote = [("remote", "prom")];
    let lag = || {
        metric(
            port,
            "cairn_remote_write_oldest_unsent_sample_age_seconds",
            &remote,
        )
        .ok_or_else(|| "no lag metric".to_string())
    };
    wait_for(
        Duration::from_secs(30),
        "caught up before the outage",
        || match metric(port, "cairn_remote_write_samples_sent_total", &remote) {
            Some(v) if v > 0.0 => Ok(()),
            v => Err(format!("sent {v:?}")),
        },
    );
    drop(prom);
    sleep(OUTAGE);
    let probes = metric(port, "cairn_remote_write_probes_total", &remote).unwrap_or(0.0);
    assert!(probes > 0.0, "no probe during a {OUTAGE:?} outage");
    let behind = lag().expect("lag");
    assert!(behind > OUTAGE.as_secs_f64() / 2.0, "lag {behind} s");

    let prom = rx.start();
    let up = Instant::now();
    wait_for(DRAINED_WITHIN, "backlog caught up", || match lag()? {
        l if l < CAUGHT_UP_LAG_S => Ok(()),
        l => Err(format!("lag {l} s")),
    });
    let took = up.elapsed();
    eprintln!("caught up {took:?} after the receiver was ready");
    let text = get(&format!("http://127.0.0.1:{port}/metrics"))
        .expect("metrics")
        .text();
    no_sender_drops(&text);
    drop(cairn);
    drop(prom);
}

#[test]
fn victoria_metrics_receives_the_same_samples() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vm_port = common::free_port();
    let mut cmd = Command::new(tool(Tool::VictoriaMetrics));
    cmd.arg(format!("-httpListenAddr=127.0.0.1:{vm_port}"))
        .arg(format!(
            "-storageDataPath={}",
            dir.path().join("vm").display()
        ))
        .arg("-search.latencyOffset=0s")
        .current_dir(dir.path());
    let mut vm = Proc::spawn("victoria-metrics", &mut cmd);
    vm.wait_ready(
        &format!("http://127.0.0.1:{vm_port}/health"),
        Duration::from_secs(30),
    );
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{vm_port}/api/v1/write");
    let cfg = cairn_config(dir.path(), port, &[("vm", url)], "");
    let cairn = start_cairn(&cfg, port);
    let local = metric(port, "node_memory_MemTotal_bytes", &[]).expect("MemTotal");
    let got = wait_for(
        Duration::from_secs(40),
        "MemTotal in VictoriaMetrics",
        || {
            let r = query(vm_port, "node_memory_MemTotal_bytes{site=\"e2e\"}", None)?;
            r.first()
                .and_then(|s| s["value"][1].as_str())
                .and_then(|s| s.parse::<f64>().ok())
                .ok_or_else(|| format!("no sample yet: {r:?}"))
        },
    );
    assert_eq!(got, local);
    drop(cairn);
    drop(vm);
}

/// Damage to the WAL between runs: cairn starts every time, reports the
/// damage, and delivers what is still readable plus everything new.
#[test]
fn damaged_wal_between_runs_never_stops_cairn() {
    for damage in ["truncate", "zero", "bitflip"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let rx = Receiver::new(dir.path());
        let port = common::free_port();
        let cfg = cairn_config(dir.path(), port, &[("prom", rx.write_url())], "");
        // Spool a few seconds with the receiver down, then kill -9.
        let cairn = start_cairn(&cfg, port);
        sleep(Duration::from_secs(4));
        drop(cairn);
        let segs = segment_files(&dir.path().join("wal"));
        assert!(!segs.is_empty(), "no WAL segment files written");
        for seg in &segs {
            damage_file(seg, damage);
        }
        let cairn = start_cairn(&cfg, port);
        let prom = rx.start();
        wait_for(
            Duration::from_secs(30),
            &format!("delivery after {damage}"),
            || {
                let r = rx.query("node_load1{site=\"e2e\"}")?;
                if r.is_empty() {
                    Err("nothing yet".into())
                } else {
                    Ok(())
                }
            },
        );
        if damage != "truncate" {
            let c = metric(port, "cairn_wal_corruptions_total", &[]).unwrap_or(0.0);
            assert!(c >= 1.0, "{damage}: corruption not counted ({c})");
        }
        drop(prom);
        drop(cairn);
    }
}

fn segment_files(wal: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![wal.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "quarantine") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "seg") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn damage_file(p: &Path, how: &str) {
    let mut data = std::fs::read(p).expect("read segment");
    // Damage the records, not the zeros the writer keeps ahead of itself
    // (they are the segment's clean end): `n` is where the data ends.
    let n = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if n < 64 {
        return;
    }
    match how {
        "truncate" => data.truncate(n - n / 3),
        "zero" => {
            for b in &mut data[n / 2..n] {
                *b = 0;
            }
        }
        _ => data[n / 2] ^= 0x40,
    }
    std::fs::write(p, data).expect("write segment");
}

/// `cairn wal status` reads the WAL of a running agent without disturbing
/// it, and reports the backlog of a remote that is down.
#[test]
fn wal_status_reports_the_backlog_while_the_agent_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let down = format!("http://127.0.0.1:{}/api/v1/write", common::free_port());
    let port = common::free_port();
    let cfg = cairn_config(dir.path(), port, &[("down", down)], "");
    let cairn = start_cairn(&cfg, port);
    sleep(Duration::from_secs(3));
    let out = common::run_cairn(&["wal", "status", &format!("--config={}", cfg.display())]);
    let text = common::text(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        common::text(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.contains("remote down:"))
        .unwrap_or_else(|| panic!("no line for the remote:\n{text}"));
    let backlog: u64 = line
        .split("backlog ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no backlog number in {line:?}"));
    assert!(backlog > 0, "{text}");
    // The agent is undisturbed: still ready, still collecting.
    let r = get(&format!("http://127.0.0.1:{port}/-/ready")).expect("ready");
    assert_eq!(r.status, 200);
    drop(cairn);
}
