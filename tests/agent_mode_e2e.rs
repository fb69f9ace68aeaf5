//! Agent mode against Prometheus 2.42's own agent, on one scrape
//! configuration: Debian's node_exporter and an application of the test's
//! own (text 0.0.4 on one port, OpenMetrics on another, with counters, a
//! histogram, a summary, escaped label values and a clashing `job` label)
//! are scraped by `prometheus --enable-feature=agent` and by cairn reading
//! the same `scrape_configs` YAML through `scrape_config_files`. Both write
//! into one receiving Prometheus, told apart only by an external label
//! `agent`. For each scrape job the series each agent delivered are the
//! same (synthetic series included), the application's values are the
//! same, relabeling did the same, a target leaving file_sd goes stale in
//! both, a series the application stops exposing goes stale in both, and a
//! stopped application is `up` 0 in both. A second test does the same for
//! an HTTPS target whose certificate names neither its address nor its
//! host (`tls_config.server_name`) and for a body that fails to parse.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::Duration;

use common::agent::{metrics, wait_for};
use common::agent_mode::{
    delivered, diff, names, same_series, start_cairn_agent, start_prometheus_agent, Delivered,
    CONVERGE, INTERVAL, SYNTHETIC, TIMEOUT,
};
use common::receiver::Receiver;
use common::{cairn_bin, free_port, spawn_node_exporter, tls, Proc};

/// What the application serves; the test changes it while both agents
/// scrape.
#[derive(Default)]
struct AppState {
    /// `app_ephemeral` is exposed until this is set.
    ephemeral_removed: bool,
}

/// What both formats of the application share, from the histogram's
/// second bucket on.
const APP_COMMON: &str = "\
         app_latency_seconds_bucket{le=\"1\"} 9\n\
         app_latency_seconds_bucket{le=\"+Inf\"} 10\n\
         app_latency_seconds_sum 4.25\n\
         app_latency_seconds_count 10\n\
         # HELP app_rpc_seconds RPC latency.\n\
         # TYPE app_rpc_seconds summary\n\
         app_rpc_seconds{quantile=\"0.5\"} 0.05\n\
         app_rpc_seconds{quantile=\"0.99\"} 0.3\n\
         app_rpc_seconds_sum 12.5\n\
         app_rpc_seconds_count 200\n\
         # HELP app_info Build information.\n\
         # TYPE app_info gauge\n\
         app_info{version=\"1.2.3\",path=\"C:\\\\dir\\\\file\",quote=\"say \\\"hi\\\"\\nbye\"} 1\n\
         # HELP app_queue_length Jobs waiting, by queue (its own job label).\n\
         # TYPE app_queue_length gauge\n\
         app_queue_length{job=\"worker\",queue=\"emails\"} 4\n\
         # HELP app_debug_allocations Dropped by metric_relabel_configs.\n\
         # TYPE app_debug_allocations gauge\n\
         app_debug_allocations 12345\n";

/// `app_ephemeral`, until the test removes it.
fn push_ephemeral(st: &AppState, s: &mut String) {
    if !st.ephemeral_removed {
        s.push_str(
            "# HELP app_ephemeral A series the application stops exposing.\n\
             # TYPE app_ephemeral gauge\n\
             app_ephemeral{id=\"1\"} 7\n",
        );
    }
}

/// The application's exposition, text 0.0.4.
fn app_text(st: &AppState) -> String {
    let mut s = String::from(
        "# HELP app_requests_total Requests handled.\n\
         # TYPE app_requests_total counter\n\
         app_requests_total{method=\"get\",code=\"200\"} 1027\n\
         app_requests_total{method=\"post\",code=\"500\"} 3\n\
         # HELP app_temperature_celsius Temperature of the room.\n\
         # TYPE app_temperature_celsius gauge\n\
         app_temperature_celsius 21.5\n\
         # HELP app_latency_seconds Request latency.\n\
         # TYPE app_latency_seconds histogram\n\
         app_latency_seconds_bucket{le=\"0.1\"} 5\n",
    );
    s.push_str(APP_COMMON);
    push_ephemeral(st, &mut s);
    s
}

/// The same application in OpenMetrics 1.0: `_created` series, a unit,
/// exemplars (ignored by scrapers), `# EOF`.
fn app_openmetrics(st: &AppState) -> String {
    let mut s = String::from(
        "# HELP app_requests Requests handled.\n\
         # TYPE app_requests counter\n\
         app_requests_total{method=\"get\",code=\"200\"} 1027\n\
         app_requests_created{method=\"get\",code=\"200\"} 1700000000.5\n\
         app_requests_total{method=\"post\",code=\"500\"} 3\n\
         app_requests_created{method=\"post\",code=\"500\"} 1700000000.5\n\
         # HELP app_temperature_celsius Temperature of the room.\n\
         # TYPE app_temperature_celsius gauge\n\
         # UNIT app_temperature_celsius celsius\n\
         app_temperature_celsius 21.5\n\
         # HELP app_latency_seconds Request latency.\n\
         # TYPE app_latency_seconds histogram\n\
         app_latency_seconds_bucket{le=\"0.1\"} 5 # {trace_id=\"abc\"} 0.05 1700000000.0\n",
    );
    s.push_str(APP_COMMON);
    push_ephemeral(st, &mut s);
    s.push_str("# EOF\n");
    s
}

/// One listener of the application on loopback; `openmetrics` answers in
/// OpenMetrics when the scraper accepts it (as client libraries do), and
/// gzips when asked. Stops listening (connection refused) when dropped.
struct App {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl App {
    fn start(state: Arc<Mutex<AppState>>, openmetrics: bool) -> App {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind the app");
        let port = l.local_addr().expect("local_addr").port();
        l.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => {
                        let state = Arc::clone(&state);
                        std::thread::spawn(move || serve(s, &state, openmetrics));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        sleep(Duration::from_millis(10));
                    }
                    Err(_) => sleep(Duration::from_millis(10)),
                }
            }
        });
        App {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut s: std::net::TcpStream, state: &Mutex<AppState>, openmetrics: bool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut b = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&b[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_default()
    };
    if head.starts_with("get /broken ") {
        let body = BROKEN_BODY;
        let r = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(r.as_bytes());
        return;
    }
    if !head.starts_with("get /api/v1/metrics ") {
        let _ = s
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        return;
    }
    let st = state.lock().unwrap_or_else(|e| e.into_inner());
    let om = openmetrics && header("accept:").contains("application/openmetrics-text");
    let (body, ct) = if om {
        (
            app_openmetrics(&st),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (app_text(&st), "text/plain; version=0.0.4; charset=utf-8")
    };
    drop(st);
    let gzip = openmetrics && header("accept-encoding:").contains("gzip");
    let (body, enc) = if gzip {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(body.as_bytes()).expect("gzip");
        (e.finish().expect("gzip"), "content-encoding: gzip\r\n")
    } else {
        (body.into_bytes(), "")
    };
    let mut r = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\n{enc}content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(&body);
    let _ = s.write_all(&r);
}

/// What the application serves at /broken: three samples, then a line no
/// parser accepts.
const BROKEN_BODY: &str = "a 1\nb 2\nc 3\nthis is { bad\nd 4\n";

/// The `scrape_configs` both agents run, as one Prometheus YAML document;
/// `sd_dir` holds the file_sd target files.
fn scrape_configs(node_port: u16, text_port: u16, om_port: u16, sd_dir: &Path) -> String {
    let sd_glob = sd_dir.join("*.json");
    let sd_glob = sd_glob.display();
    format!(
        r#"scrape_configs:
  - job_name: node_exporter
    scrape_interval: {INTERVAL}
    scrape_timeout: {TIMEOUT}
    static_configs:
      - targets: ["127.0.0.1:{node_port}"]
        labels:
          role: host
    relabel_configs:
      - source_labels: [__address__]
        regex: '127\.0\.0\.1:(\d+)'
        target_label: port
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: 'go_memstats_.*|go_gc_.*'
        action: drop
  - job_name: app
    scrape_interval: {INTERVAL}
    scrape_timeout: {TIMEOUT}
    metrics_path: /api/v1/metrics
    static_configs:
      - targets: ["127.0.0.1:{text_port}", "127.0.0.1:{om_port}"]
        labels:
          team: web
    relabel_configs:
      - source_labels: [__address__]
        regex: '127\.0\.0\.1:(\d+)'
        target_label: instance
        replacement: 'app-$1'
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: 'app_debug_.*'
        action: drop
      - source_labels: [method, code]
        separator: '/'
        regex: '(.+)/(.+)'
        target_label: route
        replacement: '${{1}}_${{2}}'
      - regex: 'code'
        action: labeldrop
  - job_name: file_sd_app
    scrape_interval: {INTERVAL}
    scrape_timeout: {TIMEOUT}
    metrics_path: /api/v1/metrics
    file_sd_configs:
      - files: ["{sd_glob}"]
"#
    )
}

/// Replaces `path` in one rename, so no agent reads half a file.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write target file");
    std::fs::rename(&tmp, path).expect("rename target file");
}

/// The values of a job that must be equal between agents: all but the
/// scrape's own duration (a measurement of each agent).
fn comparable_values(s: &Delivered) -> Delivered {
    s.iter()
        .filter(|(k, _)| {
            k.get("__name__")
                .is_some_and(|n| n != "scrape_duration_seconds")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The value of `up` for one target as each agent delivered it.
fn up(rx: &Receiver, agent: &str, instance: &str) -> Result<String, String> {
    let r = rx.query(&format!(
        "up{{agent=\"{agent}\",job=\"app\",instance=\"{instance}\"}}"
    ))?;
    match r.as_slice() {
        [s] => Ok(s["value"][1].as_str().unwrap_or_default().to_owned()),
        other => Err(format!("{} up series: {other:?}", other.len())),
    }
}

#[test]
fn cairn_sends_what_prometheus_agent_sends_for_the_same_scrape_configs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::new(dir.path());
    let _receiver = rx.start();
    let node_port = free_port();
    let _node = spawn_node_exporter(
        node_port,
        &[
            "--collector.disable-defaults",
            "--collector.loadavg",
            "--collector.meminfo",
            "--collector.cpu",
            "--collector.stat",
            "--collector.time",
            "--collector.uname",
        ],
    );
    let state = Arc::new(Mutex::new(AppState::default()));
    let text_app = App::start(Arc::clone(&state), false);
    let om_app = App::start(Arc::clone(&state), true);
    let text_instance = format!("app-{}", text_app.port);
    let om_instance = format!("app-{}", om_app.port);

    // A file_sd job on the OpenMetrics app, whose target leaves later.
    let sd_dir = dir.path().join("file_sd");
    std::fs::create_dir_all(&sd_dir).expect("mkdir");
    write_atomically(
        &sd_dir.join("app.json"),
        &format!(
            "[{{\"targets\": [\"127.0.0.1:{}\"], \"labels\": {{\"source\": \"file\"}}}}]\n",
            om_app.port
        ),
    );
    let scrape = scrape_configs(node_port, text_app.port, om_app.port, &sd_dir);
    let scrape_file = dir.path().join("scrape.yml");
    std::fs::write(&scrape_file, &scrape).expect("write scrape.yml");
    let (_prom_port, mut prom_agent) = start_prometheus_agent(dir.path(), &rx, &scrape);
    let (cairn_port, mut cairn) = start_cairn_agent(dir.path(), &rx, &scrape_file);

    // Both agents have every target up.
    for agent in ["prom", "cairn"] {
        wait_for(CONVERGE, &format!("{agent}: 4 targets up"), || {
            let r = rx.query(&format!("up{{agent=\"{agent}\"}} == 1"))?;
            if r.len() == 4 {
                Ok(())
            } else {
                Err(format!("{r:?}"))
            }
        });
    }

    // The same series for each job, synthetic series included; for the
    // application, the same values too.
    for job in ["node_exporter", "app", "file_sd_app"] {
        let (p, c) = same_series(&rx, job);
        let n = names(&c);
        for synthetic in SYNTHETIC {
            assert!(n.contains(synthetic), "{job}: no {synthetic} in {n:?}");
        }
        if job == "app" {
            wait_for(CONVERGE, "app: the same values", || {
                let p = comparable_values(&delivered(&rx, "prom", job)?);
                let c = comparable_values(&delivered(&rx, "cairn", job)?);
                if p == c {
                    Ok(())
                } else {
                    let d: Vec<_> = p
                        .iter()
                        .filter(|(k, v)| c.get(*k) != Some(v))
                        .map(|(k, v)| (k, v, c.get(k)))
                        .collect();
                    Err(format!("differ (series, prom, cairn): {d:?}"))
                }
            });
        }
        eprintln!("{job}: {} series from each agent, equal", p.len());
        // What relabeling must have done, in both.
        for (agent, s) in [("prom", &p), ("cairn", &c)] {
            if job == "file_sd_app" {
                assert!(
                    s.keys()
                        .all(|l| l.get("source").map(String::as_str) == Some("file")
                            && !l.contains_key("__meta_filepath")),
                    "{agent}: file_sd labels"
                );
            } else if job == "node_exporter" {
                assert!(
                    s.keys()
                        .all(|l| l.get("port") == Some(&node_port.to_string())
                            && l.get("role").map(String::as_str) == Some("host")),
                    "{agent}: a node_exporter series without port/role"
                );
                assert!(
                    !names(s).iter().any(|n| n.starts_with("go_memstats_")),
                    "{agent}: go_memstats_* not dropped"
                );
            } else {
                let n = names(s);
                assert!(
                    !n.contains("app_debug_allocations"),
                    "{agent}: metric_relabel drop not applied"
                );
                assert!(
                    s.keys().all(|l| !l.contains_key("code")),
                    "{agent}: labeldrop not applied"
                );
                assert!(
                    s.keys()
                        .any(|l| l.get("route").map(String::as_str) == Some("get_200")
                            && l.get("team").map(String::as_str) == Some("web")),
                    "{agent}: no route=get_200"
                );
                assert!(
                    s.keys()
                        .any(|l| l.get("exported_job").map(String::as_str) == Some("worker")),
                    "{agent}: the exposed job label is not exported_job"
                );
                assert!(
                    n.contains("app_requests_created"),
                    "{agent}: OpenMetrics _created series missing: {n:?}"
                );
            }
        }
    }

    // cairn's own /metrics shows its host and itself, never what it scraped.
    let own = metrics(cairn_port).expect("cairn /metrics");
    let leaked: Vec<&String> = own
        .keys()
        .filter(|n| n.starts_with("app_") || n.starts_with("scrape_") || *n == "up")
        .collect();
    assert!(
        leaked.is_empty(),
        "scraped series on cairn's /metrics: {leaked:?}"
    );
    assert!(
        own.contains_key("cairn_scrapes_total"),
        "no scrape self-metrics on /metrics"
    );

    // The file_sd target leaves: all its series go stale in both, `up`
    // included (Prometheus writes the markers two intervals later).
    write_atomically(&sd_dir.join("app.json"), "[]\n");
    for agent in ["prom", "cairn"] {
        wait_for(
            CONVERGE,
            &format!("{agent}: file_sd target's series stale"),
            || {
                let r = rx.query(&format!("{{agent=\"{agent}\",job=\"file_sd_app\"}}"))?;
                if r.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{} series left: {r:?}", r.len()))
                }
            },
        );
    }

    // A series the application stops exposing goes stale in both at once
    // (without a stale marker it would linger for the 5 m lookback).
    state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .ephemeral_removed = true;
    for agent in ["prom", "cairn"] {
        wait_for(CONVERGE, &format!("{agent}: app_ephemeral stale"), || {
            let r = rx.query(&format!("app_ephemeral{{agent=\"{agent}\"}}"))?;
            if r.is_empty() {
                Ok(())
            } else {
                Err(format!("{r:?}"))
            }
        });
    }

    // The text application stops: up 0 in both, and its series go stale
    // while the OpenMetrics one stays up.
    drop(text_app);
    for agent in ["prom", "cairn"] {
        wait_for(
            CONVERGE,
            &format!("{agent}: stopped app up 0"),
            || match up(&rx, agent, &text_instance)?.as_str() {
                "0" => Ok(()),
                v => Err(format!("up = {v}")),
            },
        );
        wait_for(
            CONVERGE,
            &format!("{agent}: stopped app's series stale"),
            || {
                let r = rx.query(&format!(
                    "app_temperature_celsius{{agent=\"{agent}\",instance=\"{text_instance}\"}}"
                ))?;
                if r.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{r:?}"))
                }
            },
        );
        assert_eq!(up(&rx, agent, &om_instance).as_deref(), Ok("1"));
    }
    // The synthetic series of the stopped target agree as well.
    wait_for(CONVERGE, "app after the stop: the same series", || {
        let p = delivered(&rx, "prom", "app")?;
        let c = delivered(&rx, "cairn", "app")?;
        let (pk, ck): (BTreeSet<_>, BTreeSet<_>) = (p.keys().collect(), c.keys().collect());
        if pk == ck {
            Ok(())
        } else {
            Err(diff(&p, &c))
        }
    });
    drop(om_app);
    assert!(
        prom_agent.exited().is_none(),
        "Prometheus agent exited:\n{}",
        prom_agent.output()
    );
    assert!(
        cairn.exited().is_none(),
        "cairn exited:\n{}",
        cairn.output()
    );
}

/// A CA, and a server certificate it signs for the DNS name
/// `metrics.internal` only: not for 127.0.0.1, where the server listens.
fn make_named_certificate(dir: &Path) {
    tls::make_ca(dir);
    tls::make_signed(
        dir,
        "server",
        "/CN=metrics.internal",
        "subjectAltName=DNS:metrics.internal\n",
    );
}

/// `query`'s one value for each agent, once both have one.
fn both(rx: &Receiver, query: &str) -> (String, String) {
    wait_for(CONVERGE, query, || {
        let one = |agent: &str| -> Result<String, String> {
            let q = query.replacen('{', &format!("{{agent=\"{agent}\","), 1);
            match rx.query(&q)?.as_slice() {
                [s] => Ok(s["value"][1].as_str().unwrap_or_default().to_owned()),
                other => Err(format!("{agent}: {} series for {q}", other.len())),
            }
        };
        Ok((one("prom")?, one("cairn")?))
    })
}

#[test]
fn tls_server_name_and_a_body_that_fails_to_parse_as_in_prometheus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    make_named_certificate(d);
    // The HTTPS target: cairn's own listener with a web config file.
    let web = d.join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    )
    .expect("write web.yml");
    let tls_port = free_port();
    let _target = Proc::spawn(
        "cairn (https target)",
        Command::new(cairn_bin()).args([
            format!("--web.listen-address=127.0.0.1:{tls_port}"),
            format!("--web.config.file={}", web.display()),
            "--collector.disable-defaults".into(),
            "--collector.loadavg".into(),
        ]),
    );
    let app = App::start(Arc::new(Mutex::new(AppState::default())), false);
    let rx = Receiver::new(d);
    let _receiver = rx.start();
    let ca = d.join("ca.crt");
    let ca = ca.display();
    let job = |name: &str, tls: &str, port: u16, path: &str| {
        format!(
            "  - job_name: {name}\n    scrape_interval: {INTERVAL}\n    scrape_timeout: {TIMEOUT}\n\
             {tls}    metrics_path: {path}\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"
        )
    };
    let scrape = format!(
        "scrape_configs:\n{}{}{}",
        job(
            "tls_named",
            &format!("    scheme: https\n    tls_config:\n      ca_file: {ca}\n      server_name: metrics.internal\n"),
            tls_port,
            "/metrics"
        ),
        job(
            "tls_unnamed",
            &format!("    scheme: https\n    tls_config:\n      ca_file: {ca}\n"),
            tls_port,
            "/metrics"
        ),
        job("broken", "", app.port, "/broken"),
    );
    let scrape_file = d.join("scrape.yml");
    std::fs::write(&scrape_file, &scrape).expect("write scrape.yml");
    let (_prom_port, mut prom_agent) = start_prometheus_agent(d, &rx, &scrape);
    let (cairn_port, mut cairn) = start_cairn_agent(d, &rx, &scrape_file);

    // Under its server name the target is verified and up in both, with the
    // same series; under its address it is not (the certificate does not
    // name 127.0.0.1), in both.
    let want_up = [("tls_named", "1"), ("tls_unnamed", "0"), ("broken", "0")];
    wait_for(CONVERGE, "up as expected in both agents", || {
        for (job, want) in want_up {
            let got = both(&rx, &format!("up{{job=\"{job}\"}}"));
            if got != (want.to_owned(), want.to_owned()) {
                return Err(format!("{job}: up (prom, cairn) = {got:?}, want {want}"));
            }
        }
        Ok(())
    });
    let (p, c) = same_series(&rx, "tls_named");
    assert!(
        names(&c).contains("node_load1"),
        "no node_load1 scraped over TLS: {:?}",
        names(&c)
    );
    eprintln!("tls_named: {} series from each agent, equal", p.len());

    // The bad body: both count the three samples before the bad line.
    for name in SYNTHETIC.iter().skip(2) {
        let q = format!("{name}{{job=\"broken\"}}");
        wait_for(CONVERGE, &format!("{q} equal in both"), || {
            let got = both(&rx, &q);
            if got.0 == got.1 {
                Ok(())
            } else {
                Err(format!("(prom, cairn) = {got:?}"))
            }
        });
    }
    assert_eq!(
        both(&rx, "scrape_samples_scraped{job=\"broken\"}"),
        ("3".to_owned(), "3".to_owned())
    );

    // cairn says why each failed.
    let own = metrics(cairn_port).expect("cairn /metrics");
    for (job, reason) in [("tls_unnamed", "http"), ("broken", "parse")] {
        let n = own
            .get("cairn_scrape_failures_total")
            .and_then(|f| f.value(&[("scrape_job", job), ("reason", reason)]));
        assert!(n.is_some_and(|n| n > 0.0), "{job}: {reason} failures {n:?}");
    }
    assert!(prom_agent.exited().is_none(), "{}", prom_agent.output());
    assert!(cairn.exited().is_none(), "{}", cairn.output());
}
