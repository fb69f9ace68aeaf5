use super::*;
use crate::relabel::Labels;
use crate::scrape::target::Failure;

const INTERVAL: Duration = Duration::from_millis(200);

/// Answers every connection with a small text exposition.
async fn app() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut b = [0u8; 2048];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let body = "m 1\n";
                let r = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(r.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/metrics")
}

fn config(extra: &str) -> ScrapeConfig {
    toml::from_str(&format!("job_name = \"app\"\n{extra}")).expect("scrape config")
}

fn target(url: &str, hash: u64) -> Target {
    Target {
        job: "app".into(),
        labels: Labels::from_pairs([("job", "app"), ("instance", url)]),
        url: url.into(),
        interval: INTERVAL,
        timeout: INTERVAL / 2,
        hash,
    }
}

struct Harness {
    targets: watch::Sender<Arc<Vec<Target>>>,
    stop: watch::Sender<bool>,
    rx: mpsc::Receiver<ScrapeBatch>,
    metrics: Arc<ScrapeMetrics>,
    task: JoinHandle<()>,
}

fn start(cfg: ScrapeConfig, initial: Vec<Target>) -> Harness {
    let (targets, targets_rx) = watch::channel(Arc::new(initial));
    let (stop, stop_rx) = watch::channel(false);
    let (tx, rx) = mpsc::channel(256);
    let metrics = Arc::new(ScrapeMetrics::default());
    let m = Manager {
        configs: Arc::new(vec![cfg]),
        tx,
        metrics: Arc::clone(&metrics),
        seed: 0,
    };
    let task = tokio::spawn(async move { m.run(targets_rx, stop_rx).await });
    Harness {
        targets,
        stop,
        rx,
        metrics,
        task,
    }
}

async fn next(rx: &mut mpsc::Receiver<ScrapeBatch>) -> ScrapeBatch {
    tokio::time::timeout(INTERVAL * 10, rx.recv())
        .await
        .expect("a batch within 10 intervals")
        .expect("channel open")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_vanished_target_sends_its_gone_batch_after_two_ticks_and_stops() {
    rt().block_on(async {
        let url = app().await;
        let mut h = start(config(""), vec![target(&url, 1)]);
        let b = next(&mut h.rx).await;
        assert_eq!((b.source, b.gone), (1, false));
        let names: Vec<&str> = b.series.iter().map(|s| s.labels.get("__name__")).collect();
        assert!(names.contains(&"up"), "{names:?}");
        h.targets.send(Arc::new(Vec::new())).unwrap();
        let told = crate::clock::now_ms();
        let mut gone = None;
        while gone.is_none() {
            let b = next(&mut h.rx).await;
            if b.gone {
                gone = Some((b, crate::clock::now_ms()));
            }
        }
        let (g, at) = gone.unwrap();
        assert_eq!(g.source, 1);
        assert!(g.series.is_empty());
        let i = INTERVAL.as_millis() as i64;
        // Stamped with the next tick, sent a tick and a tenth later.
        assert!(
            g.ts_ms >= told && g.ts_ms <= told + 2 * i,
            "{g:?} told {told}"
        );
        // (20 ms of slack between the monotonic and the wall clock.)
        assert!(at + 20 >= g.ts_ms + i, "sent at {at}, stale ts {}", g.ts_ms);
        // Nothing after the gone batch.
        assert!(tokio::time::timeout(INTERVAL * 3, h.rx.recv())
            .await
            .is_err());
        h.stop.send(true).unwrap();
        h.task.await.unwrap();
    });
}

#[test]
fn shutdown_stops_every_loop_without_gone_batches() {
    rt().block_on(async {
        let url = app().await;
        let mut h = start(config(""), vec![target(&url, 1), target(&url, 2)]);
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < 2 {
            seen.insert(next(&mut h.rx).await.source);
        }
        h.stop.send(true).unwrap();
        h.task.await.unwrap();
        // Every sender is gone with the loops: the channel drains, no
        // gone batch among what is left.
        while let Some(b) = h.rx.recv().await {
            assert!(!b.gone, "{b:?}");
        }
    });
}

#[test]
fn a_target_back_before_its_stale_batch_keeps_its_series() {
    rt().block_on(async {
        let url = app().await;
        let t = target(&url, 7);
        let mut h = start(config(""), vec![t.clone()]);
        next(&mut h.rx).await;
        h.targets.send(Arc::new(Vec::new())).unwrap();
        tokio::time::sleep(INTERVAL / 2).await;
        h.targets.send(Arc::new(vec![t])).unwrap();
        let until = tokio::time::Instant::now() + INTERVAL * 5;
        let mut batches = 0;
        while let Ok(Some(b)) = tokio::time::timeout_at(until, h.rx.recv()).await {
            assert!(!b.gone, "{b:?}");
            batches += 1;
        }
        assert!(batches >= 3, "the new loop keeps scraping: {batches}");
        h.stop.send(true).unwrap();
        h.task.await.unwrap();
    });
}

#[test]
fn a_job_over_its_target_limit_fails_every_scrape() {
    rt().block_on(async {
        let url = app().await;
        let mut h = start(
            config("target_limit = 1"),
            vec![target(&url, 1), target(&url, 2)],
        );
        for _ in 0..2 {
            let b = next(&mut h.rx).await;
            let up = b
                .series
                .iter()
                .find(|s| s.labels.get("__name__") == "up")
                .map(|s| s.value);
            assert_eq!(up, Some(0.0));
        }
        assert!(h.metrics.job("app").failures(Failure::TargetLimit) >= 2);
        h.stop.send(true).unwrap();
        h.task.await.unwrap();
    });
}
