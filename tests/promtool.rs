//! cairn's exposition (all default collectors) passes `promtool check
//! metrics`, with the exceptions node_exporter's own test makes: metric
//! names kept from the kernel's spelling (camelCase meminfo keys and the
//! like) under node_(entropy|memory|netstat|wifi_station)_.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{tool, Tool};

/// promtool's exit code when it only found lint problems (1 is a parse
/// error or a usage problem, which is never acceptable).
const LINT_PROBLEMS: i32 = 3;

fn ignored(metric: &str) -> bool {
    ["entropy", "memory", "netstat", "wifi_station"]
        .iter()
        .any(|g| metric.starts_with(&format!("node_{g}_")))
}

#[test]
fn promtool_check_metrics_passes() {
    check_with_promtool(&["collect", "--once"]);
}

/// Runs cairn with `args`, feeds its output to promtool, and fails on any
/// problem but the known kernel-spelling ones; returns cairn's output and
/// log.
fn check_with_promtool(args: &[&str]) -> (String, String) {
    let out = common::run_cairn(args);
    assert!(
        out.status.success(),
        "cairn collect --once failed ({}): {}",
        out.status,
        common::text(&out.stderr)
    );
    assert!(
        common::text(&out.stdout).contains("# TYPE node_scrape_collector_success gauge"),
        "unexpected cairn output:\n{}",
        common::text(&out.stdout)
    );

    let check = common::run_with_stdin(
        Command::new(tool(Tool::Promtool)).args(["check", "metrics"]),
        &out.stdout,
        Duration::from_secs(60),
    );
    let lines = format!(
        "{}{}",
        common::text(&check.stdout),
        common::text(&check.stderr)
    );
    let code = check.status.code();
    assert!(
        code == Some(0) || code == Some(LINT_PROBLEMS),
        "promtool check metrics failed ({}):\n{lines}",
        check.status
    );
    // Each problem line is "<metric> <what is wrong>".
    let problems: Vec<&str> = lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !ignored(l.split(' ').next().unwrap_or("")))
        .collect();
    assert!(
        problems.is_empty(),
        "promtool check metrics found problems:\n{}",
        problems.join("\n")
    );
    assert!(
        code == Some(0) || !lines.trim().is_empty(),
        "promtool exited {LINT_PROBLEMS} without saying why"
    );
    (common::text(&out.stdout), common::text(&out.stderr))
}

/// The worst a textfile directory can hold: names of other collectors and
/// of cairn itself, type and HELP clashes between files, duplicate series,
/// a summary whose `_count` another file defines, invalid names, a FIFO and
/// a symlink to /dev/zero. /metrics still passes promtool, with one family
/// per name and the real owners' values.
#[test]
fn promtool_passes_whatever_the_textfiles_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files: &[(&str, &str)] = &[
        (
            "a_spoof.prom",
            "node_load1 999\ncairn_build_info{version=\"evil\"} 1\n\
             node_scrape_collector_success{collector=\"cpu\"} 0\nprocess_open_fds 1\n\
             node_textfile_scrape_error 0\nnode_textfile_mtime_seconds{file=\"/etc/passwd\"} 1\n",
        ),
        (
            "b_types.prom",
            "# HELP app_clash A gauge first.\n# TYPE app_clash gauge\napp_clash{k=\"1\"} 1\n\
             # HELP app_help_total First help.\n# TYPE app_help_total counter\napp_help_total{k=\"1\"} 1\n\
             # HELP app_dup_total Duplicated.\n# TYPE app_dup_total counter\napp_dup_total{k=\"1\"} 1\napp_dup_total{k=\"1\"} 2\n\
             # HELP app_latency_seconds A summary.\n# TYPE app_latency_seconds summary\n\
             app_latency_seconds{quantile=\"0.5\"} 0.1\napp_latency_seconds_sum 1\napp_latency_seconds_count 10\n",
        ),
        (
            "c_clash.prom",
            "# HELP app_clash Then a counter.\n# TYPE app_clash counter\napp_clash{k=\"2\"} 2\n\
             # HELP app_help_total Other help.\n# TYPE app_help_total counter\napp_help_total{k=\"2\"} 2\n\
             # HELP app_dup_total Duplicated.\n# TYPE app_dup_total counter\napp_dup_total{k=\"1\"} 3\n\
             # HELP app_latency_seconds_count Not the summary's.\n# TYPE app_latency_seconds_count gauge\napp_latency_seconds_count 5\n",
        ),
        ("d_invalid.prom", "0bad_name 1\n"),
        ("e_invalid.prom", "app_x{0bad=\"v\"} 1\n"),
        ("f_ok.prom", "# HELP app_ok_total Fine.\n# TYPE app_ok_total counter\napp_ok_total 7\n"),
    ];
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).expect("write textfile");
    }
    nix_mkfifo(&dir.path().join("g_fifo.prom"));
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("h_zero.prom")).expect("symlink");
    let arg = format!("--collector.textfile.directory={}", dir.path().display());
    let (text, log) = check_with_promtool(&["collect", "--once", "--collector.textfile", &arg]);

    for family in [
        "node_load1",
        "cairn_build_info",
        "node_scrape_collector_success",
        "process_open_fds",
        "node_textfile_scrape_error",
        "node_textfile_mtime_seconds",
        "app_clash",
        "app_help_total",
        "app_dup_total",
    ] {
        assert_eq!(
            text.matches(&format!("# TYPE {family} ")).count(),
            1,
            "{family} must be one family:\n{text}"
        );
    }
    let has = |l: &str| text.lines().any(|x| x == l);
    assert!(
        !has("node_load1 999") && !text.contains("evil") && !text.contains("/etc/passwd"),
        "{text}"
    );
    assert!(has("node_textfile_scrape_error 1"), "{text}");
    assert!(has("app_ok_total 7"), "{text}");
    assert!(
        has("app_clash{k=\"1\"} 1") && !text.contains("app_clash{k=\"2\"}"),
        "{text}"
    );
    assert!(
        has("app_dup_total{k=\"1\"} 1") && !has("app_dup_total{k=\"1\"} 3"),
        "{text}"
    );
    assert!(
        has("app_latency_seconds_count 10") && !has("app_latency_seconds_count 5"),
        "{text}"
    );
    assert!(!text.contains("0bad"), "{text}");
    // node_load1, cairn_build_info, node_scrape_collector_success,
    // process_open_fds, and the two node_textfile_* series.
    assert!(has("cairn_textfile_dropped_series_total 6"), "{text}");
    for file in ["g_fifo.prom", "h_zero.prom", "d_invalid.prom"] {
        assert!(log.contains(file), "the log must name {file}:\n{log}");
    }
    assert_eq!(
        log.lines().filter(|l| l.contains("node_load1")).count(),
        1,
        "{log}"
    );
}

fn nix_mkfifo(path: &std::path::Path) {
    let st = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(st.success(), "mkfifo {path:?}");
}
