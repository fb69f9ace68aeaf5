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
    let out = common::run_cairn(&["collect", "--once"]);
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
}
