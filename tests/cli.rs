//! The binary's command line as a user meets it: --version, check-config
//! and its error messages, collect --once against fixtures and against a
//! broken procfs, and the serving command's bind errors.

mod common;

use std::time::Duration;

use common::{repo_path, run_cairn, text};

#[test]
fn version_is_printed() {
    let out = run_cairn(&["--version"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v = text(&out.stdout);
    assert!(
        v.contains(env!("CARGO_PKG_VERSION")) && v.contains("cairn"),
        "{v:?}"
    );
}

#[test]
fn check_config_accepts_the_shipped_file() {
    let file = repo_path("packaging/cairn.toml");
    let out = run_cairn(&["check-config", file.to_str().expect("utf-8 path")]);
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        text(&out.stderr)
    );
}

#[test]
fn check_config_of_a_missing_file_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("nope.toml");
    let out = run_cairn(&["check-config", file.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("nope.toml"),
        "{}",
        text(&out.stderr)
    );
}

/// True if `msg` locates an error on `line` ("file:3:" or "line 3").
fn mentions_line(msg: &str, line: usize) -> bool {
    let colon = format!(":{line}");
    let after_ok = |rest: &str| !rest.starts_with(|c: char| c.is_ascii_digit());
    msg.match_indices(&colon)
        .any(|(i, m)| after_ok(&msg[i + m.len()..]))
        || msg
            .match_indices(&format!("line {line}"))
            .any(|(i, m)| after_ok(&msg[i + m.len()..]))
}

#[test]
fn check_config_names_line_and_key() {
    let cases = [
        (
            "unknown key",
            "[global]\nscrape_interval = \"15s\"\nscrape_intervall = \"1s\"\n".as_bytes(),
            3,
            "global.scrape_intervall",
        ),
        (
            "bad duration",
            "# cairn\n\n[global]\nscrape_interval = \"15x\"\n".as_bytes(),
            4,
            "global.scrape_interval",
        ),
        (
            "bad size",
            "[web]\nlisten_address = \"127.0.0.1:9100\"\n\n[wal]\nmax_size = \"512MeB\"\n".as_bytes(),
            5,
            "wal.max_size",
        ),
        (
            "bad listen address",
            "\n[web]\nlisten_address = \"0.0.0.0:99999\"\n".as_bytes(),
            3,
            "web.listen_address",
        ),
        (
            "timeout longer than interval",
            "[global]\nscrape_interval = \"5s\"\nscrape_timeout = \"10s\"\n".as_bytes(),
            3,
            "global.scrape_timeout",
        ),
        (
            "invalid utf-8",
            &b"[paths]\nprocfs = \"/proc\"\nsysfs = \"/s\xffys\"\n"[..],
            3,
            "paths.sysfs",
        ),
        (
            "error inside a multi-line inline table",
            "[[remote_write]]\nurl = \"http://127.0.0.1:1/api/v1/write\"\nqueue_config = {\n  max_samples_per_send = 10,\n  min_backoff = \"0s\"\n}\n".as_bytes(),
            5,
            "remote_write.queue_config.min_backoff",
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    for (what, body, line, key) in cases {
        let file = dir.path().join(format!("{}.toml", what.replace(' ', "_")));
        std::fs::write(&file, body).expect("write config");
        let out = run_cairn(&["check-config", file.to_str().expect("utf-8 path")]);
        let err = text(&out.stderr);
        if out.status.success() {
            failures.push(format!("{what}: exit 0 (stderr {err:?})"));
        } else if !mentions_line(&err, line) || !err.contains(key) {
            failures.push(format!(
                "{what}: stderr should name line {line} and key {key}: {err:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn collect_once_reads_the_fixture_procfs() {
    let procfs = repo_path("tests/fixtures/basic/proc");
    let out = run_cairn(&[
        "collect",
        "--once",
        &format!("--path.procfs={}", procfs.display()),
        "--collector.disable-defaults",
        "--collector.loadavg",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.lines().any(|l| l == "node_load1 0.21"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l == "node_scrape_collector_success{collector=\"loadavg\"} 1"),
        "{stdout}"
    );
}

#[test]
fn a_broken_procfs_fails_collectors_not_the_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bogus = dir.path().join("no-proc-here");
    let out = run_cairn(&[
        "collect",
        "--once",
        &format!("--path.procfs={}", bogus.display()),
    ]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "{}: {}",
        out.status,
        text(&out.stderr)
    );
    let fams = common::expo::parse(&stdout).expect("output parses");
    let success = fams
        .get("node_scrape_collector_success")
        .unwrap_or_else(|| panic!("no node_scrape_collector_success:\n{stdout}"));
    assert_eq!(
        success.value(&[("collector", "loadavg")]),
        Some(0.0),
        "{stdout}"
    );
    assert!(!fams.contains_key("node_load1"), "{stdout}");
    // Everything else is still there: one success line per enabled default
    // collector, and cairn's own metrics (which read the real /proc/self).
    for c in [
        "cpu",
        "meminfo",
        "loadavg",
        "stat",
        "uname",
        "time",
        "os",
        "diskstats",
        "netdev",
        "filesystem",
    ] {
        assert!(
            success.value(&[("collector", c)]).is_some(),
            "no success line for {c}:\n{stdout}"
        );
    }
    assert!(fams.contains_key("cairn_build_info"), "{stdout}");
    assert!(
        fams.contains_key("process_resident_memory_bytes"),
        "{stdout}"
    );
}

#[test]
fn a_second_instance_on_the_same_port_exits_with_a_clear_error() {
    let port = common::free_port();
    let first = common::spawn_cairn(port, &[]);
    let addr = format!("127.0.0.1:{port}");

    let mut cmd = std::process::Command::new(common::cairn_bin());
    cmd.arg(format!("--web.listen-address={addr}"));
    let mut second = common::Proc::spawn("second cairn", &mut cmd);
    let status = second
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| {
            panic!(
                "a second cairn on {addr} kept running:\n{}",
                second.output()
            )
        });
    let err = second.output();
    assert!(!status.success(), "second instance exited 0:\n{err}");
    assert!(
        err.contains(&addr) && err.to_ascii_lowercase().contains("in use"),
        "the error should name {addr} and say it is in use:\n{err}"
    );
    // The first one is unaffected.
    let r = common::http::get(&format!("http://{addr}/-/healthy")).expect("first instance");
    assert_eq!(r.status, 200, "{}", first.output());
}
