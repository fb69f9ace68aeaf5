//! The scrape configuration: one `scrape_configs` entry, whether from
//! `[[scrape_configs]]` in cairn.toml or from a Prometheus YAML file that
//! `scrape_config_files` names, with Prometheus' key names, defaults and
//! load-time validation (Prometheus 2.42's `config.go`).
//!
//! Owns: the schema, the defaults taken from `[global]`, the checks
//! Prometheus makes when it loads a config (with its messages), and the
//! compiled relabel rules. Must never: read a file (`config.rs` reads the
//! TOML and YAML files and locates errors; here an error names only the
//! path of keys inside the one entry).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

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
    /// As Prometheus reads it (Go's `units.Base2Bytes`): `KB`, `MB`, `GB`,
    /// `TB` are powers of 1024 here, like `KiB`, `MiB`, `GiB`, `TiB`, so a
    /// limit pasted from prometheus.yml means the same number of bytes.
    #[serde(default, deserialize_with = "base2_size")]
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

fn base2_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Size>, D::Error> {
    use serde::de;
    struct V;
    impl de::Visitor<'_> for V {
        type Value = Size;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(
                "a number of bytes or a size such as \"10MB\" (powers of 1024, as Prometheus)",
            )
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
            Ok(Size(n))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Size, E> {
            u64::try_from(n)
                .map(Size)
                .map_err(|_| E::custom(format!("invalid size {n}: must not be negative")))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Size, E> {
            parse_base2_size(s).map(Size).map_err(E::custom)
        }
    }
    d.deserialize_any(V).map(Some)
}

/// Go's `units.ParseBase2Bytes` for one number and unit: every unit is a
/// power of 1024 (`KB` = `KiB`).
pub fn parse_base2_size(s: &str) -> Result<u64, String> {
    let bad =
        || format!("invalid size {s:?} (expected e.g. \"10MB\", \"512KiB\" or a number of bytes)");
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = s[..digits].parse().map_err(|_| bad())?;
    let shift = match &s[digits..] {
        "" | "B" => 0,
        "KB" | "KiB" => 10,
        "MB" | "MiB" => 20,
        "GB" | "GiB" => 30,
        "TB" | "TiB" => 40,
        "PB" | "PiB" => 50,
        _ => return Err(bad()),
    };
    n.checked_mul(1 << shift).ok_or_else(bad)
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

/// Prometheus' file_sd default refresh interval.
pub const FILE_SD_REFRESH: Duration = Duration::from_secs(300);
/// Prometheus' http_sd default refresh interval.
pub const HTTP_SD_REFRESH: Duration = Duration::from_secs(60);

/// One step of the path to the key at fault, inside one scrape config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg {
    Key(&'static str),
    Idx(usize),
}

/// A validation error: the key at fault (relative to the scrape config
/// entry) and Prometheus' message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct Invalid {
    pub path: Vec<Seg>,
    pub msg: String,
}

fn invalid<T>(path: &[Seg], msg: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid {
        path: path.to_vec(),
        msg: msg.into(),
    })
}

impl ScrapeConfig {
    /// Prometheus' load-time checks and defaults. `global_interval` and
    /// `global_timeout` are `[global]`'s (the timeout already capped by
    /// the global interval). Afterwards `scrape_interval` and
    /// `scrape_timeout` are always `Some`, and `relabel` /
    /// `metric_relabel` hold the compiled rules.
    pub fn validate(
        &mut self,
        global_interval: Duration,
        global_timeout: Duration,
    ) -> Result<(), Invalid> {
        use Seg::{Idx, Key};
        if self.job_name.is_empty() {
            return invalid(&[Key("job_name")], "job_name is empty");
        }
        if self.scheme != "http" && self.scheme != "https" {
            return invalid(
                &[Key("scheme")],
                format!(
                    "invalid scheme {:?}: must be \"http\" or \"https\"",
                    self.scheme
                ),
            );
        }
        if !self.metrics_path.starts_with('/') {
            return invalid(
                &[Key("metrics_path")],
                format!("{:?} must start with /", self.metrics_path),
            );
        }
        check_auth(&[], &self.basic_auth, &self.authorization)?;
        // As Prometheus: URLs in static targets are refused only when no
        // relabel rule could turn them into addresses.
        for (i, sc) in self.static_configs.iter().enumerate() {
            if self.relabel_configs.is_empty() {
                for (j, t) in sc.targets.iter().enumerate() {
                    if t.contains('/') {
                        return invalid(
                            &[Key("static_configs"), Idx(i), Key("targets"), Idx(j)],
                            format!("{t:?} is not a valid hostname"),
                        );
                    }
                }
            }
            for k in sc.labels.keys() {
                if !crate::relabel::is_valid_label_name(k) {
                    return invalid(
                        &[Key("static_configs"), Idx(i), Key("labels")],
                        format!("{k:?} is not a valid label name"),
                    );
                }
            }
        }
        for (i, f) in self.file_sd_configs.iter_mut().enumerate() {
            for (j, name) in f.files.iter().enumerate() {
                if !is_file_sd_name(name) {
                    return invalid(
                        &[Key("file_sd_configs"), Idx(i), Key("files"), Idx(j)],
                        format!("path name {name:?} is not valid for file discovery"),
                    );
                }
            }
            if !f.refresh_interval.is_some_and(|d| !d.0.is_zero()) {
                f.refresh_interval = Some(Dur(FILE_SD_REFRESH));
            }
        }
        for (i, h) in self.http_sd_configs.iter_mut().enumerate() {
            let at = [Key("http_sd_configs"), Idx(i)];
            let url_at = [Key("http_sd_configs"), Idx(i), Key("url")];
            if h.url.is_empty() {
                return invalid(&url_at, "URL is missing");
            }
            let Some((scheme, rest)) = h.url.split_once("://") else {
                return invalid(&url_at, "URL scheme must be 'http' or 'https'");
            };
            if scheme != "http" && scheme != "https" {
                return invalid(&url_at, "URL scheme must be 'http' or 'https'");
            }
            if rest.split(['/', '?', '#']).next().unwrap_or("").is_empty() {
                return invalid(&url_at, "host is missing in URL");
            }
            check_auth(&at, &h.basic_auth, &h.authorization)?;
            if !h.refresh_interval.is_some_and(|d| !d.0.is_zero()) {
                h.refresh_interval = Some(Dur(HTTP_SD_REFRESH));
            }
        }
        // Prometheus' order: the interval first, then the timeout (set or
        // inferred) checked against it. Zero means unset, as in Prometheus.
        let interval = match self.scrape_interval {
            Some(d) if !d.0.is_zero() => d.0,
            _ => global_interval,
        };
        let timeout = self.scrape_timeout.map(|d| d.0).filter(|d| !d.is_zero());
        if timeout.is_some_and(|t| t > interval) {
            return invalid(
                &[Key("scrape_timeout")],
                format!(
                    "scrape timeout greater than scrape interval for scrape config with job name {:?}",
                    self.job_name
                ),
            );
        }
        let timeout = timeout.unwrap_or(global_timeout.min(interval));
        self.scrape_interval = Some(Dur(interval));
        self.scrape_timeout = Some(Dur(timeout));
        for (key, configs, out) in [
            ("relabel_configs", &self.relabel_configs, &mut self.relabel),
            (
                "metric_relabel_configs",
                &self.metric_relabel_configs,
                &mut self.metric_relabel,
            ),
        ] {
            match Rules::compile(configs) {
                Ok(rules) => *out = rules,
                Err((j, e)) => return invalid(&[Key(key), Idx(j), Key(e.field)], e.msg),
            }
        }
        Ok(())
    }

    /// Resolves relative file names (file_sd `files`, auth and TLS files)
    /// against `dir`, the directory of the file the entry came from, as
    /// Prometheus does.
    pub fn resolve_paths(&mut self, dir: &Path) {
        let join = |p: &mut std::path::PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        let join_auth =
            |b: &mut Option<BasicAuth>, a: &mut Option<Authorization>, t: &mut TlsConfig| {
                if let Some(p) = b.as_mut().and_then(|b| b.password_file.as_mut()) {
                    join(p);
                }
                if let Some(p) = a.as_mut().and_then(|a| a.credentials_file.as_mut()) {
                    join(p);
                }
                for p in [&mut t.ca_file, &mut t.cert_file, &mut t.key_file]
                    .into_iter()
                    .flatten()
                {
                    join(p);
                }
            };
        join_auth(
            &mut self.basic_auth,
            &mut self.authorization,
            &mut self.tls_config,
        );
        for h in &mut self.http_sd_configs {
            join_auth(&mut h.basic_auth, &mut h.authorization, &mut h.tls_config);
        }
        for f in &mut self.file_sd_configs {
            for name in &mut f.files {
                if Path::new(name.as_str()).is_relative() {
                    *name = dir.join(name.as_str()).to_string_lossy().into_owned();
                }
            }
        }
    }

    /// `scrape_interval` after `validate`.
    pub fn interval(&self) -> Duration {
        self.scrape_interval.map_or(Duration::ZERO, |d| d.0)
    }

    /// `scrape_timeout` after `validate`.
    pub fn timeout(&self) -> Duration {
        self.scrape_timeout.map_or(Duration::ZERO, |d| d.0)
    }
}

/// Prometheus' HTTP client config checks for the auth keys cairn knows.
fn check_auth(
    at: &[Seg],
    basic: &Option<BasicAuth>,
    authorization: &Option<Authorization>,
) -> Result<(), Invalid> {
    let path = |rest: &[Seg]| -> Vec<Seg> { at.iter().chain(rest).copied().collect() };
    if let Some(b) = basic {
        if b.password.is_some() && b.password_file.is_some() {
            return invalid(
                &path(&[Seg::Key("basic_auth"), Seg::Key("password_file")]),
                "at most one of basic_auth password & password_file must be configured",
            );
        }
    }
    if let Some(a) = authorization {
        if basic.is_some() {
            return invalid(
                &path(&[Seg::Key("authorization")]),
                "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured",
            );
        }
        if a.kind.eq_ignore_ascii_case("basic") {
            return invalid(
                &path(&[Seg::Key("authorization"), Seg::Key("type")]),
                "authorization type cannot be set to \"basic\", use \"basic_auth\" instead",
            );
        }
        if a.credentials.is_some() && a.credentials_file.is_some() {
            return invalid(
                &path(&[Seg::Key("authorization"), Seg::Key("credentials_file")]),
                "at most one of authorization credentials & credentials_file must be configured",
            );
        }
    }
    Ok(())
}

/// The files matching `pattern` (Go's `filepath.Glob`: `*` never crosses
/// a `/` but matches a leading dot; unreadable directories are skipped),
/// sorted. Only a malformed pattern is an error.
pub fn expand_glob(pattern: &str) -> Result<Vec<std::path::PathBuf>, String> {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let paths =
        glob::glob_with(pattern, opts).map_err(|e| format!("invalid glob {pattern:?}: {e}"))?;
    let mut out: Vec<_> = paths
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// Prometheus' pattern for a file_sd name:
/// `^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$` — at most one `*`,
/// in the last path element, and a JSON or YAML extension.
pub fn is_file_sd_name(name: &str) -> bool {
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    if !["json", "yml", "yaml", "JSON", "YML", "YAML"].contains(&ext) {
        return false;
    }
    match stem.split_once('*') {
        None => true,
        Some((_, after)) => !after.contains(['*', '/']),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(job: &str) -> ScrapeConfig {
        ScrapeConfig {
            job_name: job.into(),
            scrape_interval: None,
            scrape_timeout: None,
            metrics_path: default_metrics_path(),
            scheme: default_scheme(),
            params: BTreeMap::new(),
            honor_labels: false,
            honor_timestamps: true,
            static_configs: Vec::new(),
            file_sd_configs: Vec::new(),
            http_sd_configs: Vec::new(),
            relabel_configs: Vec::new(),
            metric_relabel_configs: Vec::new(),
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            body_size_limit: None,
            target_limit: 0,
            basic_auth: None,
            authorization: None,
            tls_config: TlsConfig::default(),
            relabel: Rules::default(),
            metric_relabel: Rules::default(),
        }
    }

    const G_INT: Duration = Duration::from_secs(15);
    const G_TO: Duration = Duration::from_secs(10);

    #[test]
    fn interval_and_timeout_default_as_prometheus() {
        let mut c = base("a");
        c.validate(G_INT, G_TO).unwrap();
        assert_eq!((c.interval(), c.timeout()), (G_INT, G_TO));
        // A shorter interval caps the inferred timeout.
        let mut c = base("a");
        c.scrape_interval = Some(Dur(Duration::from_secs(5)));
        c.validate(G_INT, G_TO).unwrap();
        assert_eq!(c.timeout(), Duration::from_secs(5));
        let mut c = base("a");
        c.scrape_interval = Some(Dur(Duration::from_secs(5)));
        c.scrape_timeout = Some(Dur(Duration::from_secs(6)));
        let e = c.validate(G_INT, G_TO).unwrap_err();
        assert_eq!(e.path, vec![Seg::Key("scrape_timeout")]);
        assert_eq!(
            e.msg,
            "scrape timeout greater than scrape interval for scrape config with job name \"a\""
        );
        // Against the global interval too.
        let mut c = base("a");
        c.scrape_timeout = Some(Dur(Duration::from_secs(20)));
        assert!(c.validate(G_INT, G_TO).is_err());
    }

    #[test]
    fn prometheus_load_checks() {
        let mut c = base("");
        assert_eq!(
            c.validate(G_INT, G_TO).unwrap_err().msg,
            "job_name is empty"
        );
        let mut c = base("a");
        c.scheme = "ftp".into();
        assert_eq!(
            c.validate(G_INT, G_TO).unwrap_err().path,
            vec![Seg::Key("scheme")]
        );
        let mut c = base("a");
        c.static_configs.push(StaticConfig {
            targets: vec!["localhost:9121".into(), "http://x:1/metrics".into()],
            labels: BTreeMap::new(),
        });
        let e = c.validate(G_INT, G_TO).unwrap_err();
        assert_eq!(e.msg, "\"http://x:1/metrics\" is not a valid hostname");
        assert_eq!(
            e.path,
            vec![
                Seg::Key("static_configs"),
                Seg::Idx(0),
                Seg::Key("targets"),
                Seg::Idx(1)
            ]
        );
        // With relabel rules, Prometheus lets the rules fix the address.
        c.relabel_configs.push(crate::relabel::RelabelConfig {
            source_labels: Some(vec!["__address__".into()]),
            regex: Some("http://(.*)/metrics".into()),
            target_label: Some("__address__".into()),
            ..Default::default()
        });
        c.validate(G_INT, G_TO).unwrap();
        assert_eq!(c.relabel.len(), 1);
        let mut c = base("a");
        c.basic_auth = Some(BasicAuth {
            username: "u".into(),
            password: Some("p".into()),
            password_file: Some("/f".into()),
        });
        assert!(c
            .validate(G_INT, G_TO)
            .unwrap_err()
            .msg
            .contains("password & password_file"));
        let mut c = base("a");
        c.authorization = Some(Authorization {
            kind: "Bearer".into(),
            credentials: Some("t".into()),
            credentials_file: Some("/f".into()),
        });
        assert!(c
            .validate(G_INT, G_TO)
            .unwrap_err()
            .msg
            .contains("credentials & credentials_file"));
        let mut c = base("a");
        c.metric_relabel_configs
            .push(crate::relabel::RelabelConfig {
                regex: Some("(".into()),
                action: Some("drop".into()),
                source_labels: Some(vec!["__name__".into()]),
                ..Default::default()
            });
        let e = c.validate(G_INT, G_TO).unwrap_err();
        assert_eq!(
            e.path,
            vec![
                Seg::Key("metric_relabel_configs"),
                Seg::Idx(0),
                Seg::Key("regex")
            ]
        );
    }

    #[test]
    fn body_size_limit_units_are_powers_of_1024_as_in_prometheus() {
        assert_eq!(parse_base2_size("10MB"), Ok(10 << 20));
        assert_eq!(parse_base2_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_base2_size("1KB"), Ok(1024));
        assert_eq!(parse_base2_size("4096"), Ok(4096));
        for bad in ["", "MB", "1.5MB", "10XB", "99999999999PB"] {
            assert!(parse_base2_size(bad).is_err(), "{bad}");
        }
        let c: ScrapeConfig =
            serde_norway::from_str("job_name: a\nbody_size_limit: 100MB\n").unwrap();
        assert_eq!(c.body_size_limit, Some(Size(100 << 20)));
        let c: ScrapeConfig = toml::from_str("job_name = \"a\"\nbody_size_limit = 2048\n").unwrap();
        assert_eq!(c.body_size_limit, Some(Size(2048)));
        let c: ScrapeConfig = toml::from_str("job_name = \"a\"\n").unwrap();
        assert_eq!(c.body_size_limit, None);
    }

    #[test]
    fn sd_checks_and_defaults() {
        for ok in ["a.json", "/x/*.yml", "/x/y/t*.YAML", "d/*a.yaml"] {
            assert!(is_file_sd_name(ok), "{ok}");
        }
        for bad in ["a.txt", "/x/*/y.yml", "/x/**.json", "noext"] {
            assert!(!is_file_sd_name(bad), "{bad}");
        }
        let mut c = base("a");
        c.file_sd_configs.push(FileSdConfig {
            files: vec!["t/*.json".into()],
            refresh_interval: None,
        });
        c.http_sd_configs.push(HttpSdConfig {
            url: "http://127.0.0.1:1/sd".into(),
            refresh_interval: None,
            basic_auth: None,
            authorization: None,
            tls_config: TlsConfig::default(),
        });
        c.validate(G_INT, G_TO).unwrap();
        assert_eq!(
            c.file_sd_configs[0].refresh_interval.map(|d| d.0),
            Some(FILE_SD_REFRESH)
        );
        assert_eq!(
            c.http_sd_configs[0].refresh_interval.map(|d| d.0),
            Some(HTTP_SD_REFRESH)
        );
        c.resolve_paths(Path::new("/etc/cairn"));
        assert_eq!(c.file_sd_configs[0].files[0], "/etc/cairn/t/*.json");
        c.http_sd_configs[0].url = "ftp://x/".into();
        assert!(c
            .validate(G_INT, G_TO)
            .unwrap_err()
            .msg
            .contains("'http' or 'https'"));
        c.http_sd_configs[0].url = "http:///sd".into();
        assert_eq!(
            c.validate(G_INT, G_TO).unwrap_err().msg,
            "host is missing in URL"
        );
    }
}
