//! cairn served over HTTP and scraped by a real Prometheus 2.42, plus the
//! HTTP surface itself: gzip, health and readiness, landing page, 404.

mod common;

use std::io::Read;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::http::{get, get_with, urlencode};
use common::{expo, tool, Proc, Tool};

/// The sample values (as strings) in a Prometheus instant-query JSON answer.
/// Prometheus writes compact JSON with `"value":[<ts>,"<v>"]` per series;
/// looking for that is enough here and needs no JSON dependency.
fn query_values(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find("\"value\":[") {
        rest = &rest[i + "\"value\":[".len()..];
        let Some(j) = rest.find(",\"") else { break };
        let v = &rest[j + 2..];
        let Some(k) = v.find('"') else { break };
        out.push(v[..k].to_owned());
        rest = &v[k..];
    }
    out
}

fn query(prom_port: u16, q: &str) -> Result<Vec<String>, String> {
    let url = format!(
        "http://127.0.0.1:{prom_port}/api/v1/query?query={}",
        urlencode(q)
    );
    let r = get(&url).map_err(|e| e.to_string())?;
    let body = r.text();
    if r.status != 200 || !body.contains("\"status\":\"success\"") {
        return Err(format!("status {}: {body}", r.status));
    }
    Ok(query_values(&body))
}

#[test]
fn prometheus_scrapes_cairn() {
    let cairn_port = common::free_port();
    let cairn = common::spawn_cairn(cairn_port, &[]);

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: cairn\n    static_configs:\n      - targets: ['127.0.0.1:{cairn_port}']\n"
        ),
    )
    .expect("write prometheus.yml");
    let prom_port = common::free_port();
    let mut cmd = Command::new(tool(Tool::Prometheus));
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .current_dir(dir.path());
    let mut prom = Proc::spawn("prometheus", &mut cmd);
    prom.wait_ready(
        &format!("http://127.0.0.1:{prom_port}/-/ready"),
        Duration::from_secs(30),
    );

    let wanted = [
        ("up{job=\"cairn\"}", Some("1")),
        ("node_load1{job=\"cairn\"}", None),
        (
            "node_scrape_collector_success{job=\"cairn\",collector=\"loadavg\"}",
            Some("1"),
        ),
    ];
    let end = Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    loop {
        last.clear();
        for (q, want) in wanted {
            match query(prom_port, q) {
                Ok(vals) if vals.len() == 1 && want.map_or(true, |w| vals[0] == w) => {}
                Ok(vals) => last.push(format!("{q} -> {vals:?}, want one value {want:?}")),
                Err(e) => last.push(format!("{q} -> {e}")),
            }
        }
        if last.is_empty() {
            break;
        }
        if let Some(s) = prom.exited() {
            panic!("prometheus exited ({s}):\n{}", prom.output());
        }
        if Instant::now() >= end {
            let targets = get(&format!("http://127.0.0.1:{prom_port}/api/v1/targets"))
                .map(|r| r.text())
                .unwrap_or_else(|e| e.to_string());
            panic!(
                "Prometheus did not scrape cairn within 30 s:\n{}\ntargets: {targets}\n\
                 prometheus output:\n{}\ncairn output:\n{}",
                last.join("\n"),
                prom.output(),
                cairn.output()
            );
        }
        sleep(Duration::from_millis(250));
    }
}

#[test]
fn http_endpoints() {
    let port = common::free_port();
    let cairn = common::spawn_cairn(port, &[]);
    let base = format!("http://127.0.0.1:{port}");

    let plain = get(&format!("{base}/metrics")).expect("GET /metrics");
    assert_eq!(plain.status, 200, "{}", cairn.output());
    assert!(
        plain
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        plain.headers
    );
    assert_eq!(plain.header("content-encoding"), None);
    let plain_fams = expo::parse(&plain.text()).expect("/metrics parses");

    let zipped = get_with(&format!("{base}/metrics"), &[("Accept-Encoding", "gzip")])
        .expect("GET /metrics with gzip");
    assert_eq!(zipped.status, 200);
    assert_eq!(
        zipped.header("content-encoding"),
        Some("gzip"),
        "{:?}",
        zipped.headers
    );
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(zipped.body.as_slice())
        .read_to_string(&mut unzipped)
        .expect("the gzip body decompresses");
    let zipped_fams = expo::parse(&unzipped).expect("gunzipped /metrics parses");
    let shape = |f: &expo::Families| -> Vec<(String, String)> {
        f.values()
            .map(|x| (x.name.clone(), x.kind.clone()))
            .collect()
    };
    assert_eq!(shape(&plain_fams), shape(&zipped_fams));
    assert!(plain_fams.contains_key("node_load1"));

    for path in ["/-/healthy", "/-/ready"] {
        let r = get(&format!("{base}{path}")).expect(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }

    let landing = get(&format!("{base}/")).expect("GET /");
    assert_eq!(landing.status, 200);
    assert!(
        landing.text().contains("href=\"/metrics\""),
        "{}",
        landing.text()
    );

    let missing = get(&format!("{base}/no-such-page")).expect("GET /no-such-page");
    assert_eq!(missing.status, 404);
}
