use super::*;
use crate::relabel::Rules;

fn cfg(toml_text: &str) -> Arc<ScrapeConfig> {
    let mut c: ScrapeConfig =
        toml::from_str(&format!("job_name = \"app\"\n{toml_text}")).expect("scrape config");
    c.metric_relabel = Rules::compile(&c.metric_relabel_configs).expect("rules");
    Arc::new(c)
}

fn target(labels: &[(&str, &str)]) -> Target {
    Target {
        job: "app".into(),
        labels: Labels::from_pairs(labels.iter().copied()),
        url: "http://127.0.0.1:1/metrics".into(),
        interval: Duration::from_secs(15),
        timeout: Duration::from_secs(10),
        hash: 42,
    }
}

fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> ParsedSample {
    ParsedSample {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        value,
        timestamp_ms: None,
    }
}

fn pairs(l: &SeriesLabels) -> Vec<(&str, &str)> {
    l.iter().collect()
}

const TARGET: &[(&str, &str)] = &[("instance", "h:1"), ("job", "app")];

#[test]
fn clashing_exposed_labels_are_renamed_exported_shortest_first() {
    let mut p = Processor::new(cfg(""), &target(TARGET));
    let body = [sample(
        "m",
        &[
            ("job", "inner"),
            ("instance", "x"),
            ("exported_job", "taken"),
        ],
        1.0,
    )];
    let mut out = Vec::new();
    let (n, err) = p.process(&body, &mut out);
    assert_eq!(err, None);
    assert_eq!(n.total, 1);
    assert_eq!(
        pairs(&out[0].labels),
        vec![
            ("__name__", "m"),
            ("exported_exported_job", "inner"),
            ("exported_instance", "x"),
            ("exported_job", "taken"),
            ("instance", "h:1"),
            ("job", "app"),
        ]
    );
}

#[test]
fn empty_exposed_value_keeps_target_label_unless_honor_labels() {
    let body = [sample("m", &[("job", "")], 1.0)];
    let mut out = Vec::new();
    let mut p = Processor::new(cfg(""), &target(TARGET));
    p.process(&body, &mut out);
    assert_eq!(out[0].labels.get("job"), "app");
    assert_eq!(out[0].labels.get("exported_job"), "");
    // honor_labels: an exposed empty label counts as present, so the
    // series ends up with no job at all.
    let mut p = Processor::new(cfg("honor_labels = true"), &target(TARGET));
    p.process(&body, &mut out);
    assert_eq!(
        pairs(&out[0].labels),
        vec![("__name__", "m"), ("instance", "h:1")]
    );
}

#[test]
fn honor_labels_keeps_exposed_values() {
    let mut p = Processor::new(cfg("honor_labels = true"), &target(TARGET));
    let mut out = Vec::new();
    p.process(&[sample("m", &[("job", "inner")], 1.0)], &mut out);
    assert_eq!(out[0].labels.get("job"), "inner");
    assert_eq!(out[0].labels.get("instance"), "h:1");
}

#[test]
fn honor_timestamps_decides_whether_the_exposed_timestamp_is_kept() {
    let mut s = sample("m", &[], 1.0);
    s.timestamp_ms = Some(1_000);
    let mut out = Vec::new();
    Processor::new(cfg(""), &target(TARGET)).process(std::slice::from_ref(&s), &mut out);
    assert_eq!(out[0].timestamp_ms, Some(1_000));
    Processor::new(cfg("honor_timestamps = false"), &target(TARGET))
        .process(std::slice::from_ref(&s), &mut out);
    assert_eq!(out[0].timestamp_ms, None);
}

#[test]
fn metric_relabel_drops_before_limits_and_counts() {
    let c = cfg(
        "sample_limit = 1\n[[metric_relabel_configs]]\nsource_labels = [\"__name__\"]\nregex = \"drop_.*\"\naction = \"drop\"\n",
    );
    let mut p = Processor::new(c, &target(TARGET));
    let body = [sample("drop_me", &[], 1.0), sample("keep", &[], 2.0)];
    let mut out = Vec::new();
    let (n, err) = p.process(&body, &mut out);
    assert_eq!(err, None);
    assert_eq!(
        n,
        Counts {
            total: 2,
            added: 1,
            series_added: 1
        }
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].labels.get("__name__"), "keep");
}

#[test]
fn sample_limit_fails_the_whole_scrape_counting_every_sample() {
    let mut p = Processor::new(cfg("sample_limit = 2"), &target(TARGET));
    let body = [
        sample("a", &[], 1.0),
        sample("b", &[], 1.0),
        sample("c", &[], 1.0),
    ];
    let mut out = Vec::new();
    let (n, err) = p.process(&body, &mut out);
    assert_eq!(err.map(|e| e.kind), Some(Failure::SampleLimit));
    assert!(out.is_empty());
    assert_eq!((n.total, n.added, n.series_added), (3, 3, 2));
}

#[test]
fn label_limits_fail_the_scrape() {
    let body = [sample("m", &[("a", "1"), ("bb", "22")], 1.0)];
    let mut out = Vec::new();
    for (conf, kind) in [
        // __name__, a, bb, instance, job = 5 labels.
        ("label_limit = 4", Failure::LabelLimit),
        ("label_name_length_limit = 7", Failure::LabelNameLengthLimit),
        (
            "label_value_length_limit = 2",
            Failure::LabelValueLengthLimit,
        ),
    ] {
        let mut p = Processor::new(cfg(conf), &target(TARGET));
        let (_, err) = p.process(&body, &mut out);
        assert_eq!(err.map(|e| e.kind), Some(kind), "{conf}");
        assert!(out.is_empty());
    }
    let mut p = Processor::new(
        cfg("label_limit = 5\nlabel_name_length_limit = 8\nlabel_value_length_limit = 3"),
        &target(TARGET),
    );
    assert_eq!(p.process(&body, &mut out).1, None);
}

fn work(c: Arc<ScrapeConfig>, body: &[u8]) -> Work {
    Work {
        proc: Processor::new(c, &target(TARGET)),
        body: body.to_vec(),
        parsed: Vec::new(),
        batch_len: 0,
        conn: None,
    }
}

#[test]
fn a_body_that_fails_to_parse_counts_the_samples_before_the_bad_line() {
    let c = cfg("[[metric_relabel_configs]]\nsource_labels = [\"__name__\"]\nregex = \"b\"\naction = \"drop\"\n");
    let mut w = work(c, b"a 1\nb 2\nc 3\nthis is { bad\nd 4\n");
    let mut out = Vec::new();
    let (n, err) = w.digest(Some("text/plain; version=0.0.4"), &mut out);
    assert_eq!(err.map(|e| e.kind), Some(Failure::Parse));
    assert!(out.is_empty());
    assert_eq!((n.total, n.added, n.series_added), (3, 2, 2));
    // A series that failed the scrape before the bad line keeps its error
    // and the counts reached there.
    let mut w = work(
        cfg("label_limit = 3"),
        b"a 1\nb{x=\"1\"} 2\nthis is { bad\n",
    );
    let (n, err) = w.digest(None, &mut out);
    assert_eq!(err.map(|e| e.kind), Some(Failure::LabelLimit));
    assert_eq!((n.total, n.added), (2, 1));
}

#[test]
fn server_name_gives_an_https_target_its_own_client_and_keeps_its_host() {
    rt().block_on(async {
        let s = Scraper::build(&cfg("[tls_config]\nserver_name = \"metrics.internal\"\n"))
            .await
            .unwrap();
        let c = conn(&s, "https://127.0.0.1:9100/metrics").await;
        assert_eq!(c.url.as_str(), "https://metrics.internal:9100/metrics");
        assert_eq!(
            c.host.as_ref().and_then(|h| h.to_str().ok()),
            Some("127.0.0.1:9100")
        );
        // TLS settings do not apply to plain HTTP, as in Prometheus.
        let c = conn(&s, "http://127.0.0.1:9100/metrics").await;
        assert_eq!(
            (c.url.as_str(), c.host.is_none()),
            ("http://127.0.0.1:9100/metrics", true)
        );
    });
}

#[test]
fn relabeling_to_an_invalid_name_fails_the_scrape() {
    let c =
        cfg("[[metric_relabel_configs]]\ntarget_label = \"__name__\"\nreplacement = \"1bad\"\n");
    let mut out = Vec::new();
    let (_, err) = Processor::new(c, &target(TARGET)).process(&[sample("m", &[], 1.0)], &mut out);
    assert_eq!(err.map(|e| e.kind), Some(Failure::InvalidSeries));
}

#[test]
fn series_added_counts_series_new_since_the_last_successful_scrape() {
    let mut p = Processor::new(cfg(""), &target(TARGET));
    let mut out = Vec::new();
    let a = sample("a", &[], 1.0);
    let b = sample("b", &[], 1.0);
    assert_eq!(
        p.process(&[a.clone(), b.clone()], &mut out).0.series_added,
        2
    );
    assert_eq!(
        p.process(&[a.clone(), b.clone()], &mut out).0.series_added,
        0
    );
    assert_eq!(
        p.process(std::slice::from_ref(&a), &mut out).0.series_added,
        0
    );
    // b left the cache with the last successful scrape: new again.
    assert_eq!(
        p.process(&[a.clone(), b.clone()], &mut out).0.series_added,
        1
    );
    // A failed scrape in between does not flush the cache.
    p.failed();
    assert_eq!(p.process(&[a, b], &mut out).0.series_added, 0);
}

#[test]
fn synthetic_series_carry_the_target_labels_only() {
    let p = Processor::new(cfg(""), &target(TARGET));
    let mut out = Vec::new();
    let n = Counts {
        total: 3,
        added: 2,
        series_added: 1,
    };
    p.report(false, Duration::from_millis(250), n, &mut out);
    let got: Vec<(String, f64)> = out
        .iter()
        .map(|s| (s.labels.get("__name__").to_owned(), s.value))
        .collect();
    assert_eq!(
        got,
        vec![
            ("up".to_owned(), 0.0),
            ("scrape_duration_seconds".to_owned(), 0.25),
            ("scrape_samples_scraped".to_owned(), 3.0),
            ("scrape_samples_post_metric_relabeling".to_owned(), 2.0),
            ("scrape_series_added".to_owned(), 1.0),
        ]
    );
    assert!(out
        .iter()
        .all(|s| s.labels.len() == 3 && s.labels.get("job") == "app"));
}

#[test]
fn offset_is_stable_within_the_interval_and_wraps_as_prometheus() {
    let i = Duration::from_secs(10);
    let ns = i.as_nanos();
    // At an interval boundary, the offset is (hash ^ seed) % interval.
    assert_eq!(offset(i, 7, 0, ns * 100), Duration::from_nanos(7));
    // Half way through, it waits for the next point of its phase.
    assert_eq!(
        offset(i, 7, 0, ns * 100 + ns / 2),
        Duration::from_nanos(u64::try_from(ns / 2 + 7).unwrap())
    );
    // Past its phase in this interval: next interval's.
    let now = ns * 100 + 1_000;
    assert_eq!(
        offset(i, 7, 0, now),
        Duration::from_nanos(u64::try_from(ns - 1_000 + 7).unwrap())
    );
    assert!(offset(i, u64::MAX, 12345, now) <= i);
}

#[test]
fn jitter_seed_is_fnv1a_of_host_and_external_labels() {
    // FNV-1a 64 of the empty string is its offset basis.
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    let mut ext = std::collections::BTreeMap::new();
    ext.insert("b".to_owned(), "2".to_owned());
    ext.insert("a".to_owned(), "1".to_owned());
    assert_eq!(
        jitter_seed("host", &ext),
        fnv1a64(b"host{a=\"1\", b=\"2\"}")
    );
    assert_eq!(jitter_seed("host", &Default::default()), fnv1a64(b"host{}"));
}

#[test]
fn timeout_header_is_formatted_as_go_does() {
    assert_eq!(format_seconds(Duration::from_secs(10)), "10");
    assert_eq!(format_seconds(Duration::from_millis(500)), "0.5");
    assert_eq!(format_seconds(Duration::from_millis(1250)), "1.25");
}

/// A one-shot HTTP server: answers one request with `response`, and hands
/// back the request head it read.
async fn serve_once(response: Vec<u8>) -> (String, tokio::task::JoinHandle<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", l.local_addr().unwrap());
    let h = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut b).await.unwrap();
            if n == 0 {
                break;
            }
            head.extend_from_slice(&b[..n]);
        }
        s.write_all(&response).await.unwrap();
        s.shutdown().await.ok();
        String::from_utf8_lossy(&head).into_owned()
    });
    (url, h)
}

fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("connection: close\r\n\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

async fn conn(s: &Scraper, url: &str) -> Conn {
    s.conn(url).await.unwrap()
}

/// One fetch of `url` through its connection.
async fn get(
    s: &Scraper,
    url: &str,
    timeout: Duration,
    limit: Option<u64>,
    buf: &mut Vec<u8>,
) -> Result<Option<String>, ScrapeError> {
    s.fetch(&conn(s, url).await, timeout, limit, buf).await
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn fetch_sends_prometheus_headers_and_decodes_gzip() {
    use std::io::Write;
    rt().block_on(async {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"m 1\n").unwrap();
        let body = gz.finish().unwrap();
        let (url, server) = serve_once(response(
            "200 OK",
            &[
                ("content-encoding", "gzip"),
                ("content-type", "text/plain; version=0.0.4"),
            ],
            &body,
        ))
        .await;
        let s = Scraper::build(&cfg("")).await.unwrap();
        let mut buf = Vec::new();
        let ct = get(&s, &url, Duration::from_millis(1500), None, &mut buf)
            .await
            .unwrap();
        assert_eq!(buf, b"m 1\n");
        assert_eq!(ct.as_deref(), Some("text/plain; version=0.0.4"));
        let head = server.await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /metrics http/1.1"), "{head}");
        for h in [
            format!("accept: {}", parse::ACCEPT.to_ascii_lowercase()),
            "accept-encoding: gzip".to_owned(),
            "x-prometheus-scrape-timeout-seconds: 1.5".to_owned(),
            "user-agent: cairn/".to_owned(),
        ] {
            assert!(head.contains(&h), "{h} missing from {head}");
        }
    });
}

#[test]
fn fetch_fails_on_status_and_body_size_limit() {
    rt().block_on(async {
        let s = Scraper::build(&cfg("")).await.unwrap();
        let mut buf = Vec::new();
        let (url, _server) = serve_once(response("204 No Content", &[], b"")).await;
        let e = get(&s, &url, Duration::from_secs(2), None, &mut buf).await;
        assert_eq!(e.map_err(|e| e.kind), Err(Failure::Status));
        let (url, _server) = serve_once(response("200 OK", &[], b"0123456789")).await;
        let e = get(&s, &url, Duration::from_secs(2), Some(10), &mut buf).await;
        assert_eq!(e.map_err(|e| e.kind), Err(Failure::BodySizeLimit));
        let (url, _server) = serve_once(response("200 OK", &[], b"0123456789")).await;
        let ok = get(&s, &url, Duration::from_secs(2), Some(11), &mut buf).await;
        assert_eq!(ok.map(|_| buf.len()), Ok(10));
    });
}

#[test]
fn fetch_times_out_on_a_silent_target() {
    rt().block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/metrics", l.local_addr().unwrap());
        // Accepts and never answers.
        let _hold = tokio::spawn(async move {
            let c = l.accept().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(c);
        });
        let s = Scraper::build(&cfg("")).await.unwrap();
        let mut buf = Vec::new();
        let t0 = Instant::now();
        let e = get(&s, &url, Duration::from_millis(200), None, &mut buf).await;
        assert_eq!(e.map_err(|e| e.kind), Err(Failure::Timeout));
        assert!(t0.elapsed() < Duration::from_secs(2));
    });
}

#[test]
fn fqdn_is_the_first_reverse_name_of_the_hosts_addresses_as_prometheus() {
    use std::net::IpAddr;
    let v4: IpAddr = "192.0.2.7".parse().unwrap();
    let v6: IpAddr = "2001:db8::7".parse().unwrap();
    let ips = |_: &str| Ok(vec![v4, v6]);
    // The first address with a name gives it, one trailing dot cut.
    let named = |ip: IpAddr| (ip == v6).then(|| "box.example.org.".to_owned());
    assert_eq!(fqdn_with("box", ips, named), "box.example.org");
    // No address reverse-resolves, or the host name does not resolve: the
    // host name.
    assert_eq!(fqdn_with("box", ips, |_| None), "box");
    let unresolved = |_: &str| Err(std::io::Error::other("no such host"));
    assert_eq!(fqdn_with("box", unresolved, named), "box");
}

#[test]
fn loopback_reverse_resolves_through_the_hosts_resolver() {
    // /etc/hosts names 127.0.0.1 on every Debian host ("localhost").
    let name = reverse_lookup("127.0.0.1".parse().unwrap());
    assert!(name.is_some_and(|n| !n.is_empty()), "127.0.0.1 has no name");
}
