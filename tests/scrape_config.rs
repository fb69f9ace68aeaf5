//! `cairn check-config` on scrape configurations as a user meets it:
//! `[[scrape_configs]]` in cairn.toml and Prometheus YAML files named by
//! `scrape_config_files`, errors naming file, line and key in both.

mod common;

use std::path::Path;

use common::{run_cairn, text};

/// Writes cairn.toml (naming `scrape.d/*.yml`) and the YAML files into
/// `dir`, runs check-config, and returns (success, stderr).
fn check(dir: &Path, toml: &str, yaml: &[(&str, &str)]) -> (bool, String) {
    let d = dir.join("scrape.d");
    std::fs::create_dir_all(&d).expect("mkdir");
    for entry in std::fs::read_dir(&d).expect("read_dir") {
        std::fs::remove_file(entry.expect("entry").path()).expect("rm");
    }
    for (name, body) in yaml {
        std::fs::write(d.join(name), body).expect("write yaml");
    }
    let file = dir.join("cairn.toml");
    std::fs::write(
        &file,
        format!("scrape_config_files = [\"scrape.d/*.yml\"]\n{toml}"),
    )
    .expect("write toml");
    let out = run_cairn(&["check-config", file.to_str().expect("utf-8 path")]);
    (out.status.success(), text(&out.stderr))
}

/// The cairn.toml body, the YAML files, and the error expected.
type Case = (String, Vec<(&'static str, &'static str)>, &'static str);

const REDIS: &str = "[[scrape_configs]]\njob_name = \"redis\"\nstatic_configs = [{ targets = [\"localhost:9121\"] }]\n";
const APP: &str = "scrape_configs:\n  - job_name: app\n    metrics_path: /api/v1/metrics\n    static_configs:\n      - targets: ['localhost:8000']\n        labels:\n          team: web\n";

#[test]
fn valid_scrape_configs_in_toml_and_yaml_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, err) = check(dir.path(), REDIS, &[("app.yml", APP)]);
    assert!(ok, "{err}");
}

#[test]
fn scrape_config_errors_name_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [Case; 5] = [
        (
            format!("{REDIS}scrape_intervall = \"1m\"\n"),
            vec![],
            "cairn.toml:5: key `scrape_configs.scrape_intervall`: unknown field",
        ),
        (
            format!("{REDIS}[[scrape_configs.relabel_configs]]\nsource_labels = [\"a\"]\ntarget_label = \"b\"\nregex = \"(x\"\n"),
            vec![],
            "cairn.toml:8: key `scrape_configs.relabel_configs.regex`: invalid regex",
        ),
        (
            REDIS.to_owned(),
            vec![("app.yml", "scrape_configs:\n  - job_name: app\n    honor_label: true\n")],
            "app.yml:3:5: key `scrape_configs.honor_label`: unknown field",
        ),
        (
            REDIS.to_owned(),
            vec![("app.yml", "scrape_configs:\n  - job_name: app\n    scrape_interval: 10s\n    scrape_timeout: 30s\n")],
            "app.yml:4:21: key `scrape_configs.scrape_timeout`: scrape timeout greater than scrape interval for scrape config with job name \"app\"",
        ),
        (
            REDIS.to_owned(),
            vec![("app.yml", APP), ("more.yml", "scrape_configs:\n  - job_name: redis\n")],
            "more.yml:2:15: key `scrape_configs.job_name`: found multiple scrape configs with job name \"redis\"",
        ),
    ];
    for (toml, yaml, want) in cases {
        let (ok, err) = check(dir.path(), &toml, &yaml);
        assert!(!ok, "accepted:\n{toml}\n{yaml:?}");
        assert!(err.contains(want), "want {want:?} in:\n{err}");
    }
}
