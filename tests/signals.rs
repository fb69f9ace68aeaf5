//! The process contract with its supervisor: SIGHUP reloads a valid
//! configuration in place (same PID) and keeps the running one when the new
//! file is invalid; SIGTERM stops cleanly with exit status 0, committing the
//! WAL.

mod common;

use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::agent::signal;
use common::http::get;
use common::Proc;

fn write_config(path: &std::path::Path, port: u16, telemetry: &str) {
    std::fs::write(
        path,
        format!("[web]\nlisten_address = \"127.0.0.1:{port}\"\ntelemetry_path = \"{telemetry}\"\n"),
    )
    .expect("write config");
}

fn wait_status(url: &str, want: u16, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if get(url).map(|r| r.status == want).unwrap_or(false) {
            return true;
        }
        sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn sighup_reloads_valid_config_and_keeps_running_on_a_bad_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("cairn.toml");
    let port = common::free_port();
    write_config(&cfg, port, "/metrics");
    let mut cmd = Command::new(common::cairn_bin());
    cmd.arg(format!("--config={}", cfg.display()))
        .args(["--collector.disable-defaults", "--collector.loadavg"]);
    let mut p = Proc::spawn("cairn", &mut cmd);
    p.wait_ready(
        &format!("http://127.0.0.1:{port}/-/ready"),
        Duration::from_secs(20),
    );

    // An invalid file: logged, nothing changes.
    std::fs::write(&cfg, "[web]\nlisten_adress = \"x\"\n").expect("write");
    signal(&p, "HUP");
    sleep(Duration::from_millis(500));
    assert!(
        p.exited().is_none(),
        "cairn exited on a bad config:\n{}",
        p.output()
    );
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    assert!(wait_status(&metrics, 200, Duration::from_secs(2)));
    let log = p.output();
    assert!(
        log.contains("invalid") && log.contains("listen_adress"),
        "{log}"
    );

    // A valid file: applied, same process.
    write_config(&cfg, port, "/m2");
    signal(&p, "HUP");
    let m2 = format!("http://127.0.0.1:{port}/m2");
    assert!(
        wait_status(&m2, 200, Duration::from_secs(10)),
        "new telemetry path not served after reload:\n{}",
        p.output()
    );
    assert!(p.exited().is_none(), "reload must keep the process");
    let body = get(&m2).expect("GET /m2").text();
    assert!(body.contains("node_load1 "), "{body}");

    signal(&p, "TERM");
    let st = p
        .wait_exit(Duration::from_secs(10))
        .expect("exit after SIGTERM");
    assert!(st.success(), "SIGTERM exit status {st}:\n{}", p.output());
}
