use super::*;
use std::io::{Read, Write};
use std::sync::Mutex;

fn configs(toml: &str) -> Arc<Vec<ScrapeConfig>> {
    Arc::new(
        crate::config::Config::parse(toml, "t.toml")
            .unwrap()
            .scrape_configs,
    )
}

fn instances(targets: &[Target]) -> Vec<String> {
    let mut v: Vec<String> = targets
        .iter()
        .map(|t| t.labels.get("instance").to_owned())
        .collect();
    v.sort();
    v
}

/// Waits (at most 10 s) until the published targets' instances are `want`.
async fn wait_for(rx: &mut watch::Receiver<Arc<Vec<Target>>>, want: &[&str]) -> Arc<Vec<Target>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = rx.borrow_and_update().clone();
        if instances(&now) == want {
            return now;
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            panic!("want {want:?}, have {:?}", instances(&now));
        }
    }
}

#[tokio::test]
async fn static_targets_are_there_at_once() {
    let rx = spawn(configs(
        "[[scrape_configs]]\njob_name = \"redis\"\nstatic_configs = [{ targets = [\"localhost:9121\"], labels = { role = \"cache\" } }]\n[[scrape_configs]]\njob_name = \"pg\"\nstatic_configs = [{ targets = [\"localhost:9187\"] }]\n",
    ));
    let t = rx.borrow().clone();
    assert_eq!(instances(&t), ["localhost:9121", "localhost:9187"]);
    assert_eq!(t[0].job, "redis");
    assert_eq!(t[0].labels.get("role"), "cache");
}

#[tokio::test]
async fn file_sd_follows_added_changed_broken_and_removed_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.yml");
    std::fs::write(
        &a,
        r#"[{"targets": ["a:1"], "labels": {"env": "x"}, "ignored": 1}]"#,
    )
    .unwrap();
    let (errors0, _) = counters();
    let mut rx = spawn(configs(&format!(
        "[[scrape_configs]]\njob_name = \"sd\"\nstatic_configs = [{{ targets = [\"s:1\"] }}]\n\
         file_sd_configs = [{{ files = [\"{d}/*.json\", \"{d}/*.yml\"] }}]\n\
         [[scrape_configs.relabel_configs]]\nsource_labels = [\"__meta_filepath\"]\ntarget_label = \"file\"\n"
    )));
    let t = wait_for(&mut rx, &["a:1", "s:1"]).await;
    let from_a = t
        .iter()
        .find(|t| t.labels.get("instance") == "a:1")
        .unwrap();
    assert_eq!(from_a.labels.get("file"), a.display().to_string());
    assert_eq!(from_a.labels.get("env"), "x");

    std::fs::write(&a, r#"[{"targets": ["a:1", "a:2"]}]"#).unwrap();
    wait_for(&mut rx, &["a:1", "a:2", "s:1"]).await;

    std::fs::write(&b, "- targets: ['b:1']\n  labels:\n    env: y\n").unwrap();
    wait_for(&mut rx, &["a:1", "a:2", "b:1", "s:1"]).await;

    // A broken file keeps its targets, as in Prometheus.
    std::fs::write(&a, "[{\"targets\": ").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while counters().0 == errors0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broken file was never read"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(instances(&rx.borrow()), ["a:1", "a:2", "b:1", "s:1"]);

    std::fs::remove_file(&b).unwrap();
    wait_for(&mut rx, &["a:1", "a:2", "s:1"]).await;
    // Fixed again: read again.
    std::fs::write(&a, r#"[{"targets": ["a:3"]}]"#).unwrap();
    wait_for(&mut rx, &["a:3", "s:1"]).await;
}

/// A tiny HTTP server answering every request with what `answer` holds
/// (status line, content type, body); it records the request heads.
fn server(answer: Arc<Mutex<(String, String, String)>>, heads: Arc<Mutex<Vec<String>>>) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            heads
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf).into_owned());
            let (status, ct, body) = answer.lock().unwrap().clone();
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = c.write_all(reply.as_bytes());
        }
    });
    format!("http://{addr}/sd")
}

#[tokio::test]
async fn http_sd_refreshes_and_keeps_the_last_good_groups() {
    let answer = Arc::new(Mutex::new((
        "200 OK".to_owned(),
        "application/json; charset=utf-8".to_owned(),
        r#"[{"targets": ["h:1"], "labels": {"l": "v"}}]"#.to_owned(),
    )));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let url = server(answer.clone(), heads.clone());
    let mut rx = spawn(configs(&format!(
        "[[scrape_configs]]\njob_name = \"h\"\nhttp_sd_configs = [{{ url = \"{url}\", refresh_interval = \"100ms\" }}]\n\
         [[scrape_configs.relabel_configs]]\nsource_labels = [\"__meta_url\"]\ntarget_label = \"sd\"\n"
    )));
    let t = wait_for(&mut rx, &["h:1"]).await;
    assert_eq!(t[0].labels.get("sd"), url);
    assert_eq!(t[0].labels.get("l"), "v");
    {
        let h = heads.lock().unwrap();
        let first = h[0].to_ascii_lowercase();
        assert!(first.starts_with("get /sd "), "{first}");
        assert!(first.contains("accept: application/json"), "{first}");
        assert!(
            first.contains("x-prometheus-refresh-interval-seconds: 0.1"),
            "{first}"
        );
    }
    for (status, ct) in [
        ("500 Internal Server Error", "application/json"),
        ("200 OK", "text/plain"),
    ] {
        let (_, fails0) = counters();
        *answer.lock().unwrap() = (status.into(), ct.into(), "[]".into());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while counters().1 == fails0 {
            assert!(tokio::time::Instant::now() < deadline, "no failed refresh");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(instances(&rx.borrow()), ["h:1"], "{status} {ct}");
    }
    *answer.lock().unwrap() = (
        "200 OK".into(),
        "application/json".into(),
        r#"[{"targets": ["h:2"]}]"#.into(),
    );
    wait_for(&mut rx, &["h:2"]).await;
    // An empty list is a good answer: no targets.
    answer.lock().unwrap().2 = "[]".into();
    wait_for(&mut rx, &[]).await;
}

#[tokio::test]
async fn http_sd_with_server_name_asks_the_urls_own_address_with_its_host() {
    let answer = Arc::new(Mutex::new((
        "200 OK".to_owned(),
        "application/json".to_owned(),
        r#"[{"targets": ["h:1"]}]"#.to_owned(),
    )));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let url = server(answer, heads.clone());
    let mut rx = spawn(configs(&format!(
        "[[scrape_configs]]\njob_name = \"h\"\n\
         http_sd_configs = [{{ url = \"{url}\", tls_config = {{ server_name = \"sd.internal\" }} }}]\n\
         [[scrape_configs.relabel_configs]]\nsource_labels = [\"__meta_url\"]\ntarget_label = \"sd\"\n"
    )));
    let t = wait_for(&mut rx, &["h:1"]).await;
    // The targets carry the URL as configured.
    assert_eq!(t[0].labels.get("sd"), url);
    let authority = url.trim_start_matches("http://").trim_end_matches("/sd");
    let first = heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(first.contains(&format!("host: {authority}\r\n")), "{first}");
}

#[test]
fn group_lists_are_checked_as_prometheus_checks_them() {
    let meta = ("__meta_filepath", "/f.json");
    let g = parse_json(
        br#"[{"targets": ["a:1"], "labels": {"x": "1"}, "extra": true}]"#,
        meta,
    )
    .unwrap();
    assert_eq!(g[0].labels["__meta_filepath"], "/f.json");
    assert_eq!(g[0].labels["x"], "1");
    assert!(parse_json(b"[null]", meta)
        .unwrap_err()
        .contains("nil target group"));
    assert!(parse_json(br#"[{"labels": {"bad-name": "1"}}]"#, meta)
        .unwrap_err()
        .contains("not a valid label name"));
    assert!(parse_json(b"", meta).is_err());
    assert!(parse_yaml(b"- targets: [a:1]\n  extra: 1\n", meta)
        .unwrap_err()
        .contains("unknown field"));
    assert_eq!(parse_yaml(b"# none yet\n", meta).unwrap(), Vec::new());
}

#[test]
fn json_content_types() {
    for ok in [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        "application/json;charset=\"utf-8\"",
    ] {
        assert!(is_json_content_type(ok), "{ok}");
    }
    for bad in [
        "text/plain",
        "application/json; charset=latin1",
        "application/jsonx",
        "",
    ] {
        assert!(!is_json_content_type(bad), "{bad}");
    }
}
