//! A receiver that refuses cairn's credentials, then a reload with the
//! right ones, against a real Prometheus 2.42 behind basic auth
//! (`--web.config.file`): while Prometheus answers 401 the data stays in
//! the WAL, `cairn_remote_write_blocked{remote,reason}` is 1, `/-/ready`'s
//! body names the remote and nothing is counted as dropped; after the
//! configuration is fixed and SIGHUP re-executes cairn, the block is gone
//! and every collection committed since the start is in Prometheus.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::agent::{metrics, now_ms, raw, signal, start_cairn_until, sum, wait_for};
use common::http::get;
use common::receiver::Receiver;

const USER: &str = "cairn";
const RIGHT: &str = "the right password";
const WRONG: &str = "an expired password";

fn write_config(path: &Path, port: u16, wal: &Path, url: &str, password: &str) {
    std::fs::write(
        path,
        format!(
            "[global]\nscrape_interval = \"1s\"\n\
             [web]\nlisten_address = \"127.0.0.1:{port}\"\n\
             [wal]\ndir = \"{}\"\n\
             [[remote_write]]\nname = \"central\"\nurl = \"{url}\"\n\
             basic_auth = {{ username = \"{USER}\", password = \"{password}\" }}\n\
             queue_config = {{ min_backoff = \"50ms\", max_backoff = \"2s\", batch_send_deadline = \"500ms\" }}\n",
            wal.display()
        ),
    )
    .expect("write cairn.toml");
}

#[test]
fn unauthorized_keeps_the_data_until_a_reload_with_the_right_password_drains_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::with_basic_auth(dir.path(), USER, RIGHT);
    let _prom = rx.start();
    let port = common::free_port();
    let cfg = dir.path().join("cairn.toml");
    let wal = dir.path().join("wal");
    write_config(&cfg, port, &wal, &rx.write_url(), WRONG);
    let started_ms = now_ms();
    // Few collectors keep the test about delivery, not the host. Healthy,
    // not ready: a blocked remote keeps cairn unready.
    let mut cairn = start_cairn_until(
        &cfg,
        port,
        &[
            "--collector.disable-defaults",
            "--collector.loadavg",
            "--collector.meminfo",
        ],
        "/-/healthy",
    );

    // Blocked: at least five collections committed, none delivered, none
    // dropped, the reason on /metrics and in /-/ready's body.
    let blocked = [("remote", "central"), ("reason", "unauthorized")];
    let before = wait_for(
        Duration::from_secs(30),
        "five collections while blocked",
        || {
            let f = metrics(port)?;
            let n = sum(&f, "cairn_collections_total");
            let b = f
                .get("cairn_remote_write_blocked")
                .and_then(|fam| fam.value(&blocked));
            if n >= 5.0 && b == Some(1.0) {
                Ok(f)
            } else {
                Err(format!("{n} collections, blocked {b:?}"))
            }
        },
    );
    assert_eq!(
        sum(&before, "cairn_remote_write_blocked"),
        1.0,
        "blocked for one reason only"
    );
    for name in [
        "cairn_remote_write_samples_dropped_total",
        "cairn_wal_dropped_samples_total",
        "cairn_remote_write_samples_sent_total",
    ] {
        assert_eq!(sum(&before, name), 0.0, "{name} while blocked");
    }
    let ready = get(&format!("http://127.0.0.1:{port}/-/ready")).expect("/-/ready");
    let body = ready.text();
    assert!(
        body.contains("remote \"central\" blocked: unauthorized"),
        "/-/ready ({}) does not name the blocked remote: {body}",
        ready.status
    );
    assert!(
        rx.query("node_load1").expect("query").is_empty(),
        "a sample got through the wrong password"
    );

    // Fix the password and reload. What the old process committed up to
    // its last collection, read just before the signal.
    write_config(&cfg, port, &wal, &rx.write_url(), RIGHT);
    let f = metrics(port).expect("/metrics");
    let (old_n, old_last) = (
        sum(&f, "cairn_collections_total") as usize,
        (sum(&f, "cairn_last_collection_timestamp_seconds") * 1000.0).round() as i64,
    );
    signal(&cairn, "HUP");
    let hup = Instant::now();

    // Unblocked within 15 s: the re-executed process delivers a
    // collection of its own, so the backlog (sent oldest first) is through.
    wait_for(Duration::from_secs(15), "unblocked and drained", || {
        let f = metrics(port)?;
        let b = sum(&f, "cairn_remote_write_blocked");
        let last = (sum(&f, "cairn_last_collection_timestamp_seconds") * 1000.0).round() as i64;
        if b != 0.0 || last <= old_last {
            return Err(format!("blocked {b}, last collection {last}"));
        }
        let got = raw(&rx, "node_load1", "10m").unwrap_or_else(|e| panic!("range query: {e}"));
        match got.last() {
            Some((t, _)) if *t > old_last => Ok(()),
            other => Err(format!("newest in Prometheus: {other:?}")),
        }
    });
    let unblocked_after = hup.elapsed();
    assert!(
        cairn.exited().is_none(),
        "cairn exited:\n{}",
        cairn.output()
    );

    // A few collections of the new process, then what it committed; then
    // wait for its last collection.
    let f = wait_for(
        Duration::from_secs(15),
        "three collections after the reload",
        || {
            let f = metrics(port)?;
            let n = sum(&f, "cairn_collections_total");
            if n >= 3.0 {
                Ok(f)
            } else {
                Err(format!("{n} collections"))
            }
        },
    );
    let (new_n, new_last) = (
        sum(&f, "cairn_collections_total") as usize,
        (sum(&f, "cairn_last_collection_timestamp_seconds") * 1000.0).round() as i64,
    );
    for name in [
        "cairn_remote_write_samples_dropped_total",
        "cairn_wal_dropped_samples_total",
        "cairn_remote_write_blocked",
    ] {
        assert_eq!(sum(&f, name), 0.0, "{name} after the reload");
    }
    wait_for(
        Duration::from_secs(15),
        "the last collection",
        || match raw(&rx, "node_load1", "10m")
            .unwrap_or_else(|e| panic!("range query: {e}"))
            .last()
        {
            Some((t, _)) if *t >= new_last => Ok(()),
            other => Err(format!("newest in Prometheus: {other:?}")),
        },
    );

    // Every collection since the start is there: node_load1 has a sample
    // at every timestamp cairn's own counter was sent with, and that
    // counter (the collections before each one, per process) runs without
    // a hole through both processes, each as long as the process said.
    let load: Vec<i64> = raw(&rx, "node_load1", "10m")
        .unwrap_or_else(|e| panic!("range query: {e}"))
        .into_iter()
        .map(|(t, _)| t)
        .filter(|t| *t >= started_ms && *t <= new_last)
        .collect();
    let counter: Vec<(i64, f64)> = raw(&rx, "cairn_collections_total", "10m")
        .unwrap_or_else(|e| panic!("range query: {e}"))
        .into_iter()
        .filter(|(t, _)| *t >= started_ms && *t <= new_last)
        .collect();
    let counter_ts: Vec<i64> = counter.iter().map(|(t, _)| *t).collect();
    assert_eq!(load, counter_ts, "node_load1 vs cairn_collections_total");
    let reset = counter
        .windows(2)
        .position(|w| w[1].1 < w[0].1)
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no restart in the counter: {counter:?}"));
    let (old_run, new_run) = counter.split_at(reset);
    for (what, run) in [("first process", old_run), ("after the reload", new_run)] {
        for w in run.windows(2) {
            assert_eq!(
                w[1].1,
                w[0].1 + 1.0,
                "{what}: a collection missing: {run:?}"
            );
        }
    }
    assert_eq!(
        old_run.first().map(|s| s.1),
        new_run.first().map(|s| s.1),
        "both processes' first collection is there"
    );
    let old_by_signal = old_run.iter().filter(|(t, _)| *t <= old_last).count();
    assert_eq!(
        old_by_signal, old_n,
        "collections committed before the reload vs delivered ({old_run:?})"
    );
    assert_eq!(
        new_run.len(),
        new_n,
        "collections committed after the reload vs delivered ({new_run:?})"
    );
    eprintln!(
        "{} collections before the reload ({old_n} by the signal), {new_n} after, unblocked and drained {unblocked_after:?} after SIGHUP",
        old_run.len()
    );
}
