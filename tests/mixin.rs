//! The monitoring mixin in `mixin/`: the alert rules pass `promtool check
//! rules` and their unit tests (`promtool test rules`), and the dashboard
//! is a Grafana 9+ dashboard with the variables README promises. That every
//! panel query returns data is `tests/dashboard_e2e.rs`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{repo_path, run_bounded, text, tool, Tool};

fn promtool(args: &[&str]) {
    let out = run_bounded(
        Command::new(tool(Tool::Promtool))
            .args(args)
            .current_dir(repo_path("mixin")),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool_check() {
    promtool(&["check", "rules", "cairn-alerts.yml"]);
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    promtool(&["test", "rules", "cairn-alerts_test.yml"]);
}

/// Every alert has a severity, a summary and a description, and has a
/// firing and a silent case in the unit tests.
#[test]
fn every_alert_is_documented_and_tested_both_ways() {
    let rules = std::fs::read_to_string(repo_path("mixin/cairn-alerts.yml")).expect("rules");
    let tests = std::fs::read_to_string(repo_path("mixin/cairn-alerts_test.yml")).expect("tests");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 9, "{alerts:?}");
    assert_eq!(rules.matches("severity: ").count(), alerts.len());
    assert_eq!(rules.matches("summary: ").count(), alerts.len());
    assert_eq!(rules.matches("description: |").count(), alerts.len());
    // Cases are "alertname: X" followed by either "exp_alerts: []"
    // (silent) or a list (firing).
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    for a in &alerts {
        let (mut firing, mut silent) = (0, 0);
        for (i, l) in lines.iter().enumerate() {
            if *l == format!("alertname: {a}") {
                match lines.get(i + 1) {
                    Some(&"exp_alerts: []") => silent += 1,
                    Some(&"exp_alerts:") => firing += 1,
                    other => panic!("unexpected line after {l:?}: {other:?}"),
                }
            }
        }
        assert!(
            firing >= 1 && silent >= 1,
            "{a}: {firing} firing and {silent} silent cases"
        );
    }
    assert!(
        rules.contains("node-mixin"),
        "the rules point to node-mixin for host alerts"
    );
}

/// Grafana 9+ schema, a Prometheus data source variable used by every
/// panel, `job` and `instance` variables, a fleet row and a host row.
#[test]
fn dashboard_has_the_promised_shape() {
    let raw = std::fs::read_to_string(repo_path("mixin/cairn-dashboard.json")).expect("dashboard");
    let d: serde_json::Value = serde_json::from_str(&raw).expect("dashboard is JSON");
    assert!(
        d["schemaVersion"].as_u64().unwrap_or(0) >= 36,
        "Grafana 9+ schema"
    );
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let vars = d["templating"]["list"].as_array().expect("templating");
    let var = |name: &str| vars.iter().find(|v| v["name"] == name).cloned();
    let ds = var("datasource").expect("datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for v in ["job", "instance"] {
        let v = var(v).unwrap_or_else(|| panic!("{v} variable"));
        assert_eq!(v["type"], "query");
        assert_eq!(v["datasource"]["uid"], "${datasource}");
    }
    let panels = d["panels"].as_array().expect("panels");
    let rows: Vec<&str> = panels
        .iter()
        .filter(|p| p["type"] == "row")
        .filter_map(|p| p["title"].as_str())
        .collect();
    assert!(rows.contains(&"Fleet"), "{rows:?}");
    assert!(rows.iter().any(|r| r.contains("$instance")), "{rows:?}");
    let mut ids = std::collections::BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id"
        );
        assert!(p["gridPos"]["w"].as_u64().is_some(), "gridPos: {p}");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        assert!(p["description"].as_str().is_some_and(|s| !s.is_empty()));
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            let e = t["expr"].as_str().expect("expr");
            assert!(
                e.contains("$job"),
                "{}: every query is scoped by $job: {e}",
                p["title"]
            );
        }
    }
}
