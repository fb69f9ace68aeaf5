//! The scrape configuration: `[[scrape_configs]]` in cairn.toml and the
//! Prometheus YAML files `scrape_config_files` names, with Prometheus' key
//! names and defaults. (Validation, YAML files and `check-config` are
//! being written; field names here are the contract.)

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::{BasicAuth, Dur, Size, TlsConfig};
use crate::relabel::{RelabelConfig, Rules};

/// One `scrape_configs` entry, as Prometheus spells it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    pub job_name: String,
    /// Unset: `global.scrape_interval`.
    #[serde(default)]
    pub scrape_interval: Option<Dur>,
    /// Unset: `global.scrape_timeout` (at most the interval).
    #[serde(default)]
    pub scrape_timeout: Option<Dur>,
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    #[serde(default = "default_scheme")]
    pub scheme: String,
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub honor_labels: bool,
    #[serde(default = "yes")]
    pub honor_timestamps: bool,
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    #[serde(default)]
    pub file_sd_configs: Vec<FileSdConfig>,
    #[serde(default)]
    pub http_sd_configs: Vec<HttpSdConfig>,
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// 0 = no limit, for each of the limits.
    #[serde(default)]
    pub sample_limit: u64,
    #[serde(default)]
    pub label_limit: u64,
    #[serde(default)]
    pub label_name_length_limit: u64,
    #[serde(default)]
    pub label_value_length_limit: u64,
    #[serde(default)]
    pub body_size_limit: Option<Size>,
    #[serde(default)]
    pub target_limit: u64,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default)]
    pub authorization: Option<Authorization>,
    #[serde(default)]
    pub tls_config: TlsConfig,
    /// `relabel_configs` compiled at load.
    #[serde(skip)]
    pub relabel: Rules,
    /// `metric_relabel_configs` compiled at load.
    #[serde(skip)]
    pub metric_relabel: Rules,
}

/// Prometheus' `authorization`: `type` (default `Bearer`) and the
/// credentials, inline or from a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    #[serde(default = "default_auth_type", rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub credentials: Option<String>,
    #[serde(default)]
    pub credentials_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    pub files: Vec<String>,
    /// Unset: 5m, as Prometheus.
    #[serde(default)]
    pub refresh_interval: Option<Dur>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSdConfig {
    pub url: String,
    /// Unset: 60s, as Prometheus.
    #[serde(default)]
    pub refresh_interval: Option<Dur>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default)]
    pub authorization: Option<Authorization>,
    #[serde(default)]
    pub tls_config: TlsConfig,
}

fn default_metrics_path() -> String {
    "/metrics".into()
}

fn default_scheme() -> String {
    "http".into()
}

fn default_auth_type() -> String {
    "Bearer".into()
}

fn yes() -> bool {
    true
}
