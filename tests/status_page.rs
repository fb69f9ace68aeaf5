//! The status page at `/`, rendered by a real browser (Debian's chromium,
//! headless): its sections are there and show the live backlog of a
//! remote whose receiver is down, it is self-contained, and a screenshot
//! of it is written to `target/tmp/status-page.png`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::http::get;
use common::{run_bounded, text, Proc};

/// `$CAIRN_CHROMIUM`, else `chromium` on PATH; never skipped.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_CHROMIUM").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("chromium not found: $CAIRN_CHROMIUM is unset and it is not on PATH; run scripts/test.sh, which installs it")
        })
}

/// Runs headless chromium on `url` with `mode` (`--dump-dom` or
/// `--screenshot=...`), in a fresh profile, touching nothing but `url`.
fn browse(url: &str, mode: &str) -> String {
    let profile = tempfile::tempdir().expect("tempdir");
    let out = run_bounded(
        Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1200,1600",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(mode)
            .arg(url),
        Duration::from_secs(90),
    );
    assert!(
        out.status.success(),
        "chromium {mode} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// cairn collecting every second into a WAL under `dir`, with one remote
/// `down` whose receiver is not there (connection refused) and its
/// `queue_config` line; ready. Returns it, its port and its config file.
fn start_with_a_down_receiver(dir: &Path, queue_config: &str) -> (Proc, u16, PathBuf) {
    let port = common::free_port();
    let down = common::free_port();
    let cfg = dir.join("cairn.toml");
    std::fs::write(
        &cfg,
        format!(
            "[global]\nscrape_interval = \"1s\"\n[web]\nlisten_address = \"127.0.0.1:{port}\"\n\
             [wal]\ndir = \"{}\"\n\
             [[remote_write]]\nname = \"down\"\nurl = \"http://127.0.0.1:{down}/api/v1/write\"\n\
             {queue_config}\n",
            dir.join("wal").display()
        ),
    )
    .expect("write config");
    (common::agent::start_cairn(&cfg, port, &[]), port, cfg)
}

fn remote_fact(port: u16, remote: &str, key: &str) -> serde_json::Value {
    let r = get(&format!("http://127.0.0.1:{port}/status.json")).expect("status.json");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    v["remotes"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == remote))
        .map(|x| x[key].clone())
        .unwrap_or(serde_json::Value::Null)
}

fn backlog(port: u16, remote: &str) -> u64 {
    remote_fact(port, remote, "backlog_samples")
        .as_u64()
        .unwrap_or(0)
}

/// The text of the first element after `anchor` whose opening tag
/// contains `class`.
fn cell_after<'a>(dom: &'a str, anchor: &str, class: &str) -> &'a str {
    let at = dom
        .find(anchor)
        .unwrap_or_else(|| panic!("{anchor} not in the page:\n{dom}"));
    let rest = &dom[at..];
    let c = rest
        .find(class)
        .unwrap_or_else(|| panic!("{class} not after {anchor}"));
    let rest = &rest[c..];
    let open_end = rest.find('>').expect("tag end") + 1;
    let close = rest[open_end..].find('<').expect("text end");
    &rest[open_end..open_end + close]
}

#[test]
fn browser_shows_sections_and_live_backlog_of_a_down_receiver() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cairn, port, cfg) = start_with_a_down_receiver(
        dir.path(),
        "queue_config = { min_backoff = \"50ms\", max_backoff = \"500ms\" }",
    );
    let end = Instant::now() + Duration::from_secs(30);
    // A backlog, and the sender has tried (and failed) at least once.
    while backlog(port, "down") == 0 || remote_fact(port, "down", "state") != "failing" {
        assert!(
            Instant::now() < end,
            "no backlog of a failing remote after 30 s:\n{}",
            cairn.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let url = format!("http://127.0.0.1:{port}/");
    let raw = get(&url).expect("GET /");
    assert_eq!(raw.status, 200);
    assert!(raw
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/html")));
    let html = raw.text();
    assert!(html.len() < 50 * 1024, "page is {} bytes", html.len());
    for bad in ["<script", "src=", "href=\"http", "@import", "url("] {
        assert!(
            !html.contains(bad),
            "page must be self-contained: found {bad:?}"
        );
    }

    let before = backlog(port, "down");
    let dom = browse(&url, "--dump-dom");
    let after = backlog(port, "down");
    for section in [
        "id=\"agent\"",
        "id=\"remotes\"",
        "id=\"wal\"",
        "id=\"collectors\"",
    ] {
        assert!(dom.contains(section), "no {section} in:\n{dom}");
    }
    for link in [
        "href=\"/metrics\"",
        "href=\"/-/healthy\"",
        "href=\"/-/ready\"",
    ] {
        assert!(dom.contains(link), "no {link}");
    }
    assert!(dom.contains(&format!("cairn {}", env!("CARGO_PKG_VERSION"))));
    assert!(
        dom.contains(&cfg.display().to_string()),
        "config file shown"
    );
    let shown: u64 = cell_after(&dom, "data-remote=\"down\"", "class=\"n backlog\"")
        .replace(' ', "")
        .parse()
        .expect("backlog is a number");
    assert!(
        before <= shown && shown <= after && shown > 0,
        "page shows backlog {shown}, /status.json said {before} before and {after} after"
    );
    let state = cell_after(&dom, "data-remote=\"down\"", "class=\"st ");
    assert_eq!(state, "failing");
    assert!(
        dom.contains("Connection refused"),
        "the last error is shown"
    );
    assert!(
        dom.contains("data-collector=\"loadavg\""),
        "collectors are listed"
    );
    assert!(dom.contains("segments"), "the WAL's segments are shown");

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    browse(&url, &format!("--screenshot={}", shot.display()));
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    assert!(png.len() > 10_000, "a real rendering, {} bytes", png.len());
    eprintln!("screenshot: {}", shot.display());

    // `cairn wal status` prints the same facts: live while the agent runs,
    // from the WAL alone once it is gone.
    let cfg_arg = format!("--config={}", cfg.display());
    let wal_status = |json: bool| -> String {
        let mut args = vec!["wal", "status", cfg_arg.as_str()];
        if json {
            args.extend(["--output", "json"]);
        }
        let out = common::run_cairn(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let t = wal_status(false);
    assert!(t.contains("remote down: backlog "), "{t}");
    assert!(t.contains("state failing"), "{t}");
    assert!(t.contains("Connection refused"), "{t}");
    let v: serde_json::Value = serde_json::from_str(&wal_status(true)).expect("JSON");
    assert_eq!(v["agent_running"], true, "{v}");
    let r = &v["remotes"][0];
    assert_eq!(r["name"], "down");
    assert_eq!(r["state"], "failing");
    assert!(r["backlog_samples"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(r["oldest_unsent_age_seconds"].as_f64().is_some(), "{v}");
    drop(cairn);
    let v: serde_json::Value = serde_json::from_str(&wal_status(true)).expect("JSON");
    assert_eq!(v["agent_running"], false, "{v}");
    assert_eq!(v["remotes"][0]["state"], "unknown");
    assert!(
        v["remotes"][0]["backlog_samples"].as_u64().unwrap_or(0) > 0,
        "{v}"
    );
    assert!(wal_status(false).contains("agent not reachable"));
}

fn status_json(port: u16) -> serde_json::Value {
    let raw = get(&format!("http://127.0.0.1:{port}/status.json")).expect("GET /status.json");
    serde_json::from_str(&raw.text()).expect("status.json is JSON")
}

/// Regression: the page's "disk writes since start" came from the kernel's
/// `/proc/self/io` write_bytes, which counts a whole page-cache folio per
/// dirtied page and read 2.6 to 5.9 times what the device saw (bench/agents.sh
/// on a loop device). It is now the WAL's own count of the blocks it sends
/// to the device: at least every byte of the segment files (records and the
/// zeros ahead of them, each written once here), at most that plus the
/// blocks each commit rewrites and the cursor file.
#[test]
fn disk_writes_since_start_count_the_wals_blocks_not_page_cache_folios() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cairn, port, _) = start_with_a_down_receiver(dir.path(), "");
    let end = Instant::now() + Duration::from_secs(30);
    let commits = |port| -> u64 {
        let m = get(&format!("http://127.0.0.1:{port}/metrics"))
            .expect("GET /metrics")
            .text();
        m.lines()
            .find_map(|l| l.strip_prefix("cairn_wal_commits_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    while commits(port) < 5 {
        assert!(
            Instant::now() < end,
            "no 5 commits in 30 s:\n{}",
            cairn.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The counts settle between two collections (the writer's snapshot
    // follows each commit); read them, then the files, then again.
    let v = status_json(port);
    let n = commits(port);
    let w = &v["wal"];
    let written = w["disk_bytes_written"].as_u64().expect("a count");
    let files: u64 = std::fs::read_dir(dir.path().join("wal/segments"))
        .expect("segments/")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum();
    let block = 4096u64;
    let low = files.saturating_sub(block * 2);
    let high = files.div_ceil(block) * block + (n + 2) * 2 * block + block;
    assert!(
        (low..=high).contains(&written),
        "disk bytes written {written}: expected between {low} and {high} \
         (segment files {files} bytes, {n} commits)\n{v}"
    );
    assert!(w["samples_spooled"].as_u64().unwrap_or(0) > 0, "{v}");
}
