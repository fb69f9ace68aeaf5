//! `write_relabel_configs` against a real receiver (Prometheus 2.42 started
//! here on loopback): a dropped family never arrives, a label renamed with
//! replace + labeldrop arrives under its new name only, the other series
//! arrive as they were, and cairn counts the dropped family's samples as
//! `cairn_remote_write_samples_dropped_total{reason="write_relabel"}`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::agent::{wait_for, write_config};
use common::http::get;
use common::receiver::Receiver;
use common::{expo, Proc};

const DROPPED: &str = "node_cpu_seconds_total";

fn config(dir: &Path, port: u16, url: &str) -> std::path::PathBuf {
    let text = format!(
        "[global]\nscrape_interval = \"2s\"\nexternal_labels = {{ site = \"e2e\" }}\n\
         [web]\nlisten_address = \"127.0.0.1:{port}\"\n\
         [wal]\ndir = \"{}\"\n\
         [[remote_write]]\nname = \"prom\"\nurl = \"{url}\"\n\
         queue_config = {{ min_backoff = \"50ms\", max_backoff = \"500ms\", batch_send_deadline = \"200ms\" }}\n\
         [[remote_write.write_relabel_configs]]\n\
         source_labels = [\"__name__\"]\nregex = \"{DROPPED}\"\naction = \"drop\"\n\
         [[remote_write.write_relabel_configs]]\n\
         source_labels = [\"nodename\"]\ntarget_label = \"host\"\n\
         [[remote_write.write_relabel_configs]]\n\
         regex = \"nodename\"\naction = \"labeldrop\"\n",
        dir.join("wal").display()
    );
    write_config(dir, &text)
}

/// Starts cairn with the collectors whose families the relabelling
/// changes (cpu is dropped, uname's `nodename` renamed) and one left alone.
fn start_cairn(config: &Path, port: u16) -> Proc {
    common::agent::start_cairn(
        config,
        port,
        &[
            "--collector.disable-defaults",
            "--collector.cpu",
            "--collector.loadavg",
            "--collector.uname",
        ],
    )
}

fn local(port: u16) -> expo::Families {
    let r = get(&format!("http://127.0.0.1:{port}/metrics")).expect("GET /metrics");
    expo::parse(&r.text()).expect("/metrics parses")
}

fn dropped_write_relabel(port: u16) -> f64 {
    local(port)
        .get("cairn_remote_write_samples_dropped_total")
        .and_then(|f| f.value(&[("reason", "write_relabel"), ("remote", "prom")]))
        .expect("the write_relabel drop counter")
}

/// Label sets (as name=value strings) of one family in the receiver, less
/// what is added on the wire only: `site` (external_labels), `__name__`,
/// and the host identity labels `job` and `instance`.
fn received_label_sets(rx: &Receiver, name: &str) -> BTreeSet<Vec<String>> {
    rx.query(&format!("{name}{{site=\"e2e\"}}"))
        .unwrap_or_else(|e| panic!("query {name}: {e}"))
        .iter()
        .map(|s| {
            s["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| {
                            !["site", "__name__", "job", "instance"].contains(&k.as_str())
                        })
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

fn local_label_sets(fams: &expo::Families, name: &str) -> BTreeSet<Vec<String>> {
    fams.get(name)
        .map(|f| {
            f.samples
                .iter()
                .map(|s| s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn write_relabel_drops_a_family_renames_a_label_and_counts_the_drops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::new(dir.path());
    let _prom = rx.start();
    let port = common::free_port();
    let cfg = config(dir.path(), port, &rx.write_url());
    let _cairn = start_cairn(&cfg, port);

    let fams = local(port);
    let n_dropped = fams
        .get(DROPPED)
        .map(|f| f.samples.len())
        .expect("cairn shows node_cpu_seconds_total on /metrics");
    assert!(n_dropped > 0);

    // Other series arrive as they are.
    wait_for(Duration::from_secs(30), "node_load1 in Prometheus", || {
        let r = rx.query("node_load1{site=\"e2e\"}")?;
        (r.len() == 1).then_some(()).ok_or_else(|| format!("{r:?}"))
    });
    for family in [
        "node_load1",
        "node_load5",
        "node_load15",
        "node_cpu_guest_seconds_total",
    ] {
        assert_eq!(
            received_label_sets(&rx, family),
            local_label_sets(&fams, family),
            "{family} arrives unchanged"
        );
    }
    // The dropped family never arrives.
    let r = rx
        .query(&format!("{{__name__=\"{DROPPED}\"}}"))
        .expect("query");
    assert!(r.is_empty(), "{DROPPED} reached Prometheus: {r:?}");
    // nodename arrives as host, and only so.
    let nodename = fams
        .get("node_uname_info")
        .and_then(|f| f.samples.first())
        .and_then(|s| s.labels.get("nodename").cloned())
        .expect("node_uname_info has nodename on /metrics");
    let uname = rx.query("node_uname_info{site=\"e2e\"}").expect("query");
    assert_eq!(uname.len(), 1, "{uname:?}");
    assert_eq!(uname[0]["metric"]["host"].as_str(), Some(nodename.as_str()));
    assert!(uname[0]["metric"].get("nodename").is_none(), "{uname:?}");

    // Every collection read drops exactly the family's series: the counter
    // equals its series × the collections Prometheus has of any other
    // series (read while nothing is between reader and receiver).
    wait_for(
        Duration::from_secs(30),
        "write_relabel drops = series × collections",
        || {
            let before = dropped_write_relabel(port);
            let r = rx.query("count_over_time(node_load1{site=\"e2e\"}[1h])")?;
            let collections = r
                .first()
                .and_then(|s| s["value"][1].as_str())
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| format!("{r:?}"))?;
            let after = dropped_write_relabel(port);
            let want = n_dropped as f64 * collections;
            (before == after && after == want && collections >= 2.0)
                .then_some(())
                .ok_or_else(|| {
                    format!("dropped {before}..{after}, {n_dropped} series × {collections} collections = {want}")
                })
        },
    );
}
