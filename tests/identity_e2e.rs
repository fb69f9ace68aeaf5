//! Host identity on the wire, against a real Prometheus 2.42 receiving
//! remote_write from three cairn processes on this machine: two with
//! different `[global] instance` names and one with none (its instance is
//! the host's name), all with the default `job`. Each host's series are
//! its own (no rejection, nothing dropped, no sample of one host counted
//! in another's), and the selectors dashboards use (`job`, `instance`)
//! find each host.

mod common;

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::agent::{metrics, now_ms, raw_timestamps, start_cairn, sum, write_config};
use common::receiver::Receiver;
use common::Proc;

/// One cairn process, as a host of its own.
struct Host {
    /// The `instance` it should carry on the wire.
    instance: String,
    /// A value only this host's textfile marker has.
    marker: u32,
    port: u16,
    proc: Proc,
}

/// Starts a cairn with `instance` set (or not) in `[global]`, a textfile
/// marker `e2e_host_marker` = `marker`, and one remote: `rx`.
fn start_host(dir: &Path, rx: &Receiver, instance: Option<&str>, marker: u32) -> (u16, Proc) {
    let dir = dir.join(format!("host-{marker}"));
    let textfiles = dir.join("textfile");
    std::fs::create_dir_all(&textfiles).expect("mkdir");
    std::fs::write(
        textfiles.join("marker.prom"),
        format!("# HELP e2e_host_marker Which test host this is.\n# TYPE e2e_host_marker gauge\ne2e_host_marker {marker}\n"),
    )
    .expect("write marker");
    let port = common::free_port();
    let instance_line = instance.map_or(String::new(), |i| format!("instance = \"{i}\"\n"));
    let cfg = write_config(
        &dir,
        &format!(
            "[global]\nscrape_interval = \"1s\"\n{instance_line}\
             [web]\nlisten_address = \"127.0.0.1:{port}\"\n\
             [wal]\ndir = \"{}\"\n\
             [[remote_write]]\nname = \"central\"\nurl = \"{}\"\n\
             queue_config = {{ batch_send_deadline = \"500ms\" }}\n",
            dir.join("wal").display(),
            rx.write_url()
        ),
    );
    // Few collectors keep the test about labels, not the host.
    let p = start_cairn(
        &cfg,
        port,
        &[
            "--collector.disable-defaults",
            "--collector.loadavg",
            "--collector.meminfo",
            "--collector.textfile",
            &format!("--collector.textfile.directory={}", textfiles.display()),
        ],
    );
    (port, p)
}

#[test]
fn hosts_with_their_own_instance_write_distinct_series_without_rejections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::new(dir.path());
    let prom = rx.start();
    let host_name = common::host_name();
    assert!(
        !host_name.is_empty() && host_name != "a" && host_name != "b",
        "this test needs a host name other than a and b: {host_name:?}"
    );
    let started_ms = now_ms();
    let mut hosts: Vec<Host> = [(Some("a"), 1), (Some("b"), 2), (None, 3)]
        .into_iter()
        .map(|(instance, marker)| {
            let (port, proc) = start_host(dir.path(), &rx, instance, marker);
            Host {
                instance: instance.map_or_else(|| host_name.clone(), str::to_owned),
                marker,
                port,
                proc,
            }
        })
        .collect();

    // Let each host take a few collections, then note what it committed:
    // its collection count and the timestamp of its last collection.
    sleep(Duration::from_secs(6));
    let mut committed = Vec::new();
    for h in &hosts {
        let f = metrics(h.port).expect("cairn /metrics");
        let n = sum(&f, "cairn_collections_total") as usize;
        let last = (sum(&f, "cairn_last_collection_timestamp_seconds") * 1000.0).round() as i64;
        assert!(n >= 3, "{}: only {n} collections", h.instance);
        committed.push((n, last));
    }
    // flush_interval 0: a collection is committed as it is taken; give the
    // last one its fdatasync, then wait until each host's last collection
    // is in Prometheus.
    sleep(Duration::from_millis(200));
    let end = Instant::now() + Duration::from_secs(30);
    for (h, (_, last)) in hosts.iter().zip(&committed) {
        let sel = format!("node_load1{{job=\"node\",instance=\"{}\"}}", h.instance);
        loop {
            let got = raw_timestamps(&rx, &sel, "10m");
            if got.as_ref().is_ok_and(|ts| ts.iter().any(|t| t >= last)) {
                break;
            }
            assert!(
                Instant::now() < end,
                "{sel}: the collection at {last} not in Prometheus within 30 s; last: {got:?}"
            );
            sleep(Duration::from_millis(300));
        }
    }

    for (h, (n, last)) in hosts.iter().zip(&committed) {
        let who = |name: &str| format!("{name}{{job=\"node\",instance=\"{}\"}}", h.instance);
        // The dashboard-style selector finds this host, and only it: one
        // series whose labels are its name plus job and instance, and the
        // marker only this process serves.
        let load = rx.query(&who("node_load1")).expect("query");
        assert_eq!(load.len(), 1, "{}: {load:?}", who("node_load1"));
        assert_eq!(
            load[0]["metric"],
            serde_json::json!({"__name__": "node_load1", "job": "node", "instance": h.instance}),
            "labels on the wire"
        );
        let marker = rx.query(&who("e2e_host_marker")).expect("query");
        assert_eq!(marker.len(), 1, "{}: {marker:?}", who("e2e_host_marker"));
        assert_eq!(
            marker[0]["value"][1].as_str(),
            Some(h.marker.to_string().as_str()),
            "{} is served by another host",
            who("e2e_host_marker")
        );
        // Each collection this host committed is there once: no sample of
        // another host landed in its series.
        let ts = raw_timestamps(&rx, &who("node_load1"), "10m").expect("range query");
        let mine = ts
            .iter()
            .filter(|t| **t >= started_ms && *t <= last)
            .count();
        assert_eq!(
            mine,
            *n,
            "{}: samples up to {last} vs collections committed ({ts:?})",
            who("node_load1")
        );
    }

    // Distinct series: one node_load1 per host, under its own instance.
    let by_instance = rx
        .query("count by (instance) (node_load1{job=\"node\"})")
        .expect("query");
    let mut instances: Vec<String> = by_instance
        .iter()
        .filter_map(|s| s["metric"]["instance"].as_str().map(str::to_owned))
        .collect();
    instances.sort();
    let mut want: Vec<String> = hosts.iter().map(|h| h.instance.clone()).collect();
    want.sort();
    assert_eq!(instances, want, "instances in Prometheus: {by_instance:?}");
    for s in &by_instance {
        assert_eq!(s["value"][1].as_str(), Some("1"), "one series each: {s:?}");
    }

    // Zero rejections: nothing dropped by any sender or WAL, and
    // Prometheus never refused a sample.
    for h in &mut hosts {
        let f = metrics(h.port).expect("cairn /metrics");
        for name in [
            "cairn_remote_write_samples_dropped_total",
            "cairn_wal_dropped_samples_total",
        ] {
            assert_eq!(sum(&f, name), 0.0, "{}: {name}", h.instance);
        }
        assert!(
            sum(&f, "cairn_remote_write_samples_sent_total") > 0.0,
            "{}: nothing sent",
            h.instance
        );
        assert!(h.proc.exited().is_none(), "{} exited", h.instance);
    }
    let log = prom.output().to_lowercase();
    for refusal in ["out of order", "duplicate sample", "out of bounds"] {
        assert!(
            !log.contains(refusal),
            "Prometheus logged {refusal:?}:\n{}",
            prom.output()
        );
    }
    eprintln!(
        "{} hosts, collections committed and delivered: {:?}",
        hosts.len(),
        committed.iter().map(|c| c.0).collect::<Vec<_>>()
    );
}
