//! Configuration: the TOML file, its validation, and defaults.
//!
//! Owns: the `Config` shape, parsing of durations ("15s"), sizes ("512MiB"),
//! listen addresses and regexes, and error messages that name the key and
//! line. Must never: read anything but the one file it is given, or start
//! anything. Command-line flags are merged on top by `cli`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::de::{self, Deserializer};

use crate::collector::options::Raw;
use crate::collector::Settings;
use serde::Deserialize;

/// A configuration problem, located as precisely as we can.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: key `{key}`: {msg}")]
    Invalid {
        file: String,
        line: usize,
        key: String,
        msg: String,
    },
    #[error("{file}: {msg}")]
    Other { file: String, msg: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub global: Global,
    pub web: Web,
    pub paths: Paths,
    pub collectors: Collectors,
    pub wal: Wal,
    pub remote_write: Vec<RemoteWrite>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Global {
    pub scrape_interval: Dur,
    /// Timeout for one collection; a collector still running past it is
    /// reported failed for that scrape.
    pub scrape_timeout: Dur,
    pub external_labels: BTreeMap<String, String>,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            scrape_interval: Dur(Duration::from_secs(15)),
            scrape_timeout: Dur(Duration::from_secs(10)),
            external_labels: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Web {
    pub listen_address: ListenAddr,
    pub telemetry_path: String,
    /// node_exporter's web configuration file (TLS, basic auth, headers);
    /// relative to this file's directory.
    pub config_file: Option<PathBuf>,
}

impl Default for Web {
    fn default() -> Self {
        Web {
            listen_address: ListenAddr(SocketAddr::from(([0, 0, 0, 0], 9100))),
            telemetry_path: "/metrics".into(),
            config_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Paths {
    pub procfs: PathBuf,
    pub sysfs: PathBuf,
    pub rootfs: PathBuf,
    pub udev_data: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            procfs: "/proc".into(),
            sysfs: "/sys".into(),
            rootfs: "/".into(),
            udev_data: "/run/udev/data".into(),
        }
    }
}

/// `[collectors]`: which collectors run, and a `[collectors.NAME]` table of
/// options per collector (keys are the option flags' suffixes with `_`,
/// declared in each collector's `OPTIONS`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Collectors {
    pub disable_defaults: bool,
    pub enable: Vec<String>,
    pub disable: Vec<String>,
    /// Every other key: checked against the registry by `validate`, which
    /// fills `settings` (serde cannot combine `flatten` with
    /// `deny_unknown_fields`, so unknown keys are caught there).
    #[serde(flatten)]
    pub tables: BTreeMap<String, toml::Value>,
    #[serde(skip)]
    pub settings: Settings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WalEngine {
    Segment,
    Sled,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Wal {
    pub engine: WalEngine,
    /// Unset: `$STATE_DIRECTORY/wal` under systemd, else `./data/wal`.
    pub dir: Option<PathBuf>,
    pub max_size: Size,
    pub max_age: Dur,
    pub flush_interval: Dur,
}

impl Default for Wal {
    fn default() -> Self {
        Wal {
            engine: WalEngine::Segment,
            dir: None,
            max_size: Size(512 << 20),
            max_age: Dur(Duration::from_secs(72 * 3600)),
            flush_interval: Dur(Duration::ZERO),
        }
    }
}

impl Wal {
    /// The WAL directory: the configured one, else under systemd's
    /// `$STATE_DIRECTORY` (first entry), else `./data/wal`.
    pub fn resolved_dir(&self) -> PathBuf {
        if let Some(d) = &self.dir {
            return d.clone();
        }
        data_dir().join("wal")
    }
}

/// Where cairn keeps state when the config does not say.
pub fn data_dir() -> PathBuf {
    match std::env::var_os("STATE_DIRECTORY") {
        // systemd passes a colon-separated list when several are configured.
        Some(v) if !v.is_empty() => {
            let s = v.to_string_lossy();
            PathBuf::from(s.split(':').next().unwrap_or("."))
        }
        _ => PathBuf::from("./data"),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWrite {
    pub name: Option<String>,
    pub url: HttpUrl,
    #[serde(default)]
    pub remote_timeout: Option<Dur>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_config: TlsConfig,
    #[serde(default)]
    pub queue_config: QueueConfig,
}

impl RemoteWrite {
    /// A remote with defaults for everything but its name and URL (the
    /// `--remote-write.url` flag).
    pub fn new(name: String, url: HttpUrl) -> Self {
        RemoteWrite {
            name: Some(name),
            url,
            remote_timeout: None,
            headers: BTreeMap::new(),
            basic_auth: None,
            bearer_token: None,
            bearer_token_file: None,
            tls_config: TlsConfig::default(),
            queue_config: QueueConfig::default(),
        }
    }

    /// The name used for its cursor and metrics: configured, else by index.
    pub fn name_or(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("remote-{index}"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub max_samples_per_send: usize,
    pub batch_send_deadline: Dur,
    pub min_backoff: Dur,
    pub max_backoff: Dur,
    pub sample_age_limit: Dur,
    /// On stop: how long the request in flight may take to be answered
    /// (and recorded) before the sender gives up on it.
    pub shutdown_grace: Dur,
}

/// `shutdown_grace` must leave the stop inside systemd's
/// `TimeoutStopSec=30s` (systemd/cairn.service), which also covers the
/// WAL writer's last commit.
pub const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

impl Default for QueueConfig {
    fn default() -> Self {
        // Prometheus' defaults, but for max_backoff.
        QueueConfig {
            max_samples_per_send: 2000,
            batch_send_deadline: Dur(Duration::from_secs(5)),
            min_backoff: Dur(Duration::from_millis(30)),
            // Prometheus caps at 5 s, vmagent at 1 min. Measured here
            // (bench/remote_write.sh) a 5 min cap left fresh data waiting
            // 30-45 s after a receiver came back; 30 s bounds that while
            // thousands of boards, jittered, do not hammer a recovering
            // central server.
            max_backoff: Dur(Duration::from_secs(30)),
            sample_age_limit: Dur(Duration::ZERO),
            shutdown_grace: Dur(Duration::from_secs(5)),
        }
    }
}

// ---------------------------------------------------------------------------
// Value types with their own parsing, so a bad value fails deserialization
// at its own span and the error can name its line.

/// A Prometheus-style duration: `1w2d3h4m5s6ms`, each unit at most once, in
/// that order; `0` alone is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("invalid duration {s:?} (expected e.g. \"15s\", \"1m30s\", \"500ms\", \"72h\")");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    const UNITS: [(&str, u64); 8] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
        ("", 0),
    ];
    let mut rest = s;
    let mut total_ms: u64 = 0;
    let mut last_unit = 0usize;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let ulen = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..ulen];
        rest = &rest[ulen..];
        let pos = UNITS[..7]
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(bad)?;
        if pos < last_unit || (pos == last_unit && total_ms > 0) {
            return Err(bad());
        }
        last_unit = pos;
        total_ms = n
            .checked_mul(UNITS[pos].1)
            .and_then(|v| total_ms.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(Duration::from_millis(total_ms))
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Dur).map_err(de::Error::custom)
    }
}

/// A byte size: a plain number of bytes, or with a unit (`KB`/`MB`/`GB`/`TB`
/// are powers of 1000, `KiB`/`MiB`/`GiB`/`TiB` powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || {
        format!("invalid size {s:?} (expected e.g. \"512MiB\", \"1GiB\", \"100MB\" or a number of bytes)")
    };
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = t[..digits].parse().map_err(|_| bad())?;
    let mult: u64 = match t[digits..].trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "MB" => 1000_u64.pow(2),
        "GB" => 1000_u64.pow(3),
        "TB" => 1000_u64.pow(4),
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => parse_size(&s).map(Size).map_err(de::Error::custom),
        }
    }
}

/// `HOST:PORT`; an empty host (`:9100`) means every address, as in Go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    let bad = |why: &str| {
        format!("invalid listen address {s:?}: {why} (expected HOST:PORT, e.g. \"0.0.0.0:9100\")")
    };
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_owned()
    };
    if let Ok(a) = full.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = full.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    port.parse::<u16>().map_err(|_| bad("bad port"))?;
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad("bad host"));
    }
    full.to_socket_addrs()
        .map_err(|e| bad(&e.to_string()))?
        .next()
        .ok_or_else(|| bad("host has no address"))
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_listen_addr(&s)
            .map(ListenAddr)
            .map_err(de::Error::custom)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A regular expression, compiled when the config is read.
#[derive(Debug, Clone)]
pub struct Re(pub Regex);

impl<'de> Deserialize<'de> for Re {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Regex::new(&s)
            .map(Re)
            .map_err(|e| de::Error::custom(format!("invalid regex: {e}")))
    }
}

/// An `http://` or `https://` URL with a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(pub String);

pub fn parse_http_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("invalid URL {s:?}: must start with http:// or https://"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("invalid URL {s:?}: no host"));
    }
    Ok(s.to_owned())
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_http_url(&s).map(HttpUrl).map_err(de::Error::custom)
    }
}

// ---------------------------------------------------------------------------

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Config::parse(&text, &file)
    }

    /// Parses and validates config text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| locate(text, file, &e))?;
        cfg.validate(text, file)?;
        Ok(cfg)
    }

    /// Checks that need the whole config (names, cross-field rules).
    fn validate(&mut self, text: &str, file: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, needle: &str, msg: String| ConfigError::Invalid {
            file: file.to_owned(),
            line: find_line(text, needle).unwrap_or(0),
            key: key.to_owned(),
            msg,
        };
        let mut settings = Settings::default();
        for (name, table) in &self.collectors.tables {
            let key = format!("collectors.{name}");
            let Some(known) = crate::collector::find(name) else {
                return Err(invalid(
                    &key,
                    name,
                    format!("unknown key or collector {name:?}"),
                ));
            };
            let Some(table) = table.as_table() else {
                return Err(invalid(&key, name, "expected a table of options".into()));
            };
            for (k, v) in table {
                let key = format!("collectors.{name}.{k}");
                let Some(opt) = known.options.iter().find(|o| o.toml_key() == *k) else {
                    let known_keys: Vec<String> =
                        known.options.iter().map(|o| o.toml_key()).collect();
                    return Err(invalid(
                        &key,
                        k,
                        format!("unknown option; {name} has: {}", known_keys.join(", ")),
                    ));
                };
                let raw = match v {
                    toml::Value::String(s) => Raw::Str(s),
                    toml::Value::Boolean(b) => Raw::Bool(*b),
                    toml::Value::Integer(n) => Raw::Int(*n),
                    _ => {
                        return Err(invalid(
                            &key,
                            k,
                            "expected a string, boolean or number".into(),
                        ))
                    }
                };
                settings
                    .set(opt.flag, raw)
                    .map_err(|msg| invalid(&key, k, msg))?;
            }
        }
        self.collectors.settings = settings;
        for name in self
            .collectors
            .enable
            .iter()
            .chain(&self.collectors.disable)
        {
            if crate::collector::find(name).is_none() {
                let key = if self.collectors.enable.contains(name) {
                    "collectors.enable"
                } else {
                    "collectors.disable"
                };
                return Err(invalid(key, name, format!("unknown collector {name:?}")));
            }
        }
        for k in self.global.external_labels.keys() {
            if !is_label_name(k) {
                return Err(invalid(
                    "global.external_labels",
                    k,
                    format!("{k:?} is not a valid label name"),
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, rw) in self.remote_write.iter().enumerate() {
            let name = rw.name_or(i);
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
                && !name.starts_with('.');
            if !name_ok {
                return Err(invalid(
                    "remote_write.name",
                    &name,
                    format!(
                        "{name:?}: use letters, digits, '-', '_' and '.' (it names a cursor file)"
                    ),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(
                    "remote_write.name",
                    &name,
                    format!("duplicate remote_write name {name:?}"),
                ));
            }
            if rw.bearer_token.is_some() && rw.bearer_token_file.is_some() {
                return Err(invalid(
                    "remote_write.bearer_token_file",
                    "bearer_token_file",
                    "set bearer_token or bearer_token_file, not both".into(),
                ));
            }
            if let Some(b) = &rw.basic_auth {
                if b.password.is_some() && b.password_file.is_some() {
                    return Err(invalid(
                        "remote_write.basic_auth.password_file",
                        "password_file",
                        "set password or password_file, not both".into(),
                    ));
                }
            }
            if rw.queue_config.min_backoff.0 > rw.queue_config.max_backoff.0 {
                return Err(invalid(
                    "remote_write.queue_config.min_backoff",
                    "min_backoff",
                    "min_backoff is larger than max_backoff".into(),
                ));
            }
            if rw.queue_config.shutdown_grace.0 > MAX_SHUTDOWN_GRACE {
                return Err(invalid(
                    "remote_write.queue_config.shutdown_grace",
                    "shutdown_grace",
                    format!(
                        "at most {}s (a stop must finish within the systemd unit's TimeoutStopSec=30s)",
                        MAX_SHUTDOWN_GRACE.as_secs()
                    ),
                ));
            }
            if rw.queue_config.max_samples_per_send == 0 {
                return Err(invalid(
                    "remote_write.queue_config.max_samples_per_send",
                    "max_samples_per_send",
                    "must be at least 1".into(),
                ));
            }
        }
        if self.global.scrape_interval.0.is_zero() {
            return Err(invalid(
                "global.scrape_interval",
                "scrape_interval",
                "must be greater than 0".into(),
            ));
        }
        Ok(())
    }
}

pub fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !s.starts_with("__")
}

/// The first line, outside comments, that mentions `needle`.
fn find_line(text: &str, needle: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.split('#').next().unwrap_or("").contains(needle))
        .map(|i| i + 1)
}

/// Turns a toml error into one that names the file, line and dotted key.
fn locate(text: &str, file: &str, e: &toml::de::Error) -> ConfigError {
    let msg = e.message().trim().to_owned();
    let Some(span) = e.span() else {
        return ConfigError::Other {
            file: file.to_owned(),
            msg,
        };
    };
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    ConfigError::Invalid {
        file: file.to_owned(),
        line,
        key: key_at(text, start),
        msg,
    }
}

/// The dotted key whose value (or name) sits at byte `pos`: the innermost
/// `[table]` header above it plus the key on its line.
fn key_at(text: &str, pos: usize) -> String {
    let before = &text[..pos];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
    let line = &text[line_start..line_end];
    let mut table = String::new();
    for l in before[..line_start].lines() {
        let t = l.trim();
        if t.starts_with('[') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
        }
    }
    let t = line.trim();
    if t.starts_with('[') {
        return t.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
    }
    let mut key = t.split('=').next().unwrap_or("").trim().to_owned();
    // For an inline table (`queue_config = { min_backoff = "x" }`), name the
    // inner key the error points into.
    let col = pos - line_start;
    if let Some(brace) = line.find('{') {
        if col > brace {
            let inner = &line[brace + 1..col];
            if let Some(k) = inner.rsplit(',').next().and_then(|p| p.split('=').next()) {
                let k = k.trim();
                if !k.is_empty() {
                    key = format!("{key}.{k}");
                }
            }
        }
    }
    key = key.trim_matches('"').to_owned();
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

/// The commented default configuration, shipped as /etc/cairn/cairn.toml.
pub const EXAMPLE: &str = include_str!("../packaging/cairn.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(c.global.scrape_interval.0, Duration::from_secs(15));
        assert_eq!(c.web.listen_address.0.to_string(), "0.0.0.0:9100");
        assert_eq!(c.wal.engine, WalEngine::Segment);
        assert_eq!(c.wal.max_size.0, 512 << 20);
    }

    #[test]
    fn contract_example_parses() {
        let text = r#"
[global]
scrape_interval = "15s"
external_labels = { site = "depot-7" }
[web]
listen_address = "0.0.0.0:9100"
[paths]
procfs = "/proc"
sysfs = "/sys"
rootfs = "/"
[collectors]
disable = ["hwmon"]
[wal]
engine = "segment"
dir = "/var/lib/cairn/wal"
max_size = "512MiB"
max_age = "72h"
flush_interval = "0s"
[[remote_write]]
name = "central"
url = "https://metrics.example.com/api/v1/write"
headers = { "X-Scope-OrgID" = "depot-7" }
basic_auth = { username = "cairn", password_file = "/etc/cairn/password" }
tls_config = { ca_file = "/etc/cairn/ca.pem" }
queue_config = { max_samples_per_send = 2000, batch_send_deadline = "5s", min_backoff = "30ms", max_backoff = "5m", sample_age_limit = "0s", shutdown_grace = "7s" }
"#;
        let c = Config::parse(text, "t.toml").unwrap();
        assert_eq!(c.global.external_labels["site"], "depot-7");
        assert_eq!(c.wal.max_age.0, Duration::from_secs(72 * 3600));
        assert_eq!(
            c.remote_write[0].queue_config.max_backoff.0,
            Duration::from_secs(300)
        );
        assert_eq!(c.collectors.disable, vec!["hwmon".to_string()]);
        assert_eq!(
            c.remote_write[0].queue_config.shutdown_grace.0,
            Duration::from_secs(7)
        );
        assert_eq!(
            QueueConfig::default().shutdown_grace.0,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn shutdown_grace_is_bounded_by_the_stop_timeout() {
        let e = err("[[remote_write]]\nurl = \"http://x/api/v1/write\"\nqueue_config = { shutdown_grace = \"25s\" }\n");
        assert!(
            e.contains("remote_write.queue_config.shutdown_grace"),
            "{e}"
        );
        assert!(e.contains("TimeoutStopSec"), "{e}");
        let e = err("[[remote_write]]\nurl = \"http://x/api/v1/write\"\nqueue_config = { shutdown_grace = \"soon\" }\n");
        assert!(e.contains("shutdown_grace"), "{e}");
    }

    #[test]
    fn shipped_example_is_valid() {
        Config::parse(EXAMPLE, "cairn.toml").unwrap();
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = err("[global]\nscrape_interval = \"15s\"\nscrape_intervall = \"1s\"\n");
        assert!(e.contains("t.toml:3"), "{e}");
        assert!(e.contains("global.scrape_intervall"), "{e}");
    }

    #[test]
    fn bad_duration_names_key_and_line() {
        let e = err("[web]\nlisten_address = \":9100\"\n[global]\nscrape_interval = \"15x\"\n");
        assert!(e.contains("t.toml:4"), "{e}");
        assert!(e.contains("global.scrape_interval"), "{e}");
        assert!(e.contains("15x"), "{e}");
    }

    #[test]
    fn bad_size_names_key_and_line() {
        let e = err("[wal]\nmax_size = \"512MeB\"\n");
        assert!(e.contains("t.toml:2") && e.contains("wal.max_size"), "{e}");
    }

    #[test]
    fn bad_address_names_key_and_line() {
        let e = err("\n[web]\nlisten_address = \"0.0.0.0:99999\"\n");
        assert!(
            e.contains("t.toml:3") && e.contains("web.listen_address"),
            "{e}"
        );
    }

    #[test]
    fn bad_inline_value_names_inner_key() {
        let e = err("[[remote_write]]\nurl = \"http://x/api/v1/write\"\nqueue_config = { min_backoff = \"3q\" }\n");
        assert!(e.contains("t.toml:3"), "{e}");
        assert!(e.contains("remote_write.queue_config.min_backoff"), "{e}");
    }

    #[test]
    fn bad_url_and_unknown_collector() {
        let e = err("[[remote_write]]\nurl = \"ftp://x\"\n");
        assert!(
            e.contains("t.toml:2") && e.contains("remote_write.url"),
            "{e}"
        );
        let e = err("[collectors]\ndisable = [\"hwmon\", \"nope\"]\n");
        assert!(
            e.contains("t.toml:2") && e.contains("collectors.disable") && e.contains("nope"),
            "{e}"
        );
    }

    #[test]
    fn collector_options_are_validated_with_key_and_line() {
        let c = Config::parse(
            "[collectors.diskstats]\ndevice_include = \"^sd\"\n[collectors.cpu]\nguest = false\n",
            "t.toml",
        )
        .unwrap();
        let s = &c.collectors.settings;
        assert!(s
            .regex("collector.diskstats.device-include")
            .unwrap()
            .is_match("sda"));
        assert!(!s.bool("collector.cpu.guest"));
        let e = err("[collectors]\nenable = []\n[collectors.diskstats]\ndevice_includ = \"x\"\n");
        assert!(
            e.contains("t.toml:4") && e.contains("collectors.diskstats.device_includ"),
            "{e}"
        );
        let e = err("[collectors.netdev]\ndevice_exclude = \"(\"\n");
        assert!(e.contains("t.toml:2") && e.contains("invalid regex"), "{e}");
        let e = err("[collectors.cpu]\n# guest = 1\nguest = \"yes\"\n");
        assert!(
            e.contains("t.toml:3") && e.contains("collectors.cpu.guest"),
            "{e}"
        );
        let e = err("[collectors]\ndisabel = [\"hwmon\"]\n");
        assert!(
            e.contains("t.toml:2") && e.contains("collectors.disabel"),
            "{e}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        for bad in ["", "15", "s", "1s1m", "1.5s", "-1s", "1s1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("100MB").unwrap(), 100_000_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        for bad in ["", "MiB", "1.5GiB", "12XB", "99999999999999999999GiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_addr(":9100").unwrap().to_string(),
            "0.0.0.0:9100"
        );
        assert_eq!(
            parse_listen_addr("[::1]:9100").unwrap().to_string(),
            "[::1]:9100"
        );
        assert!(parse_listen_addr("localhost:9100").is_ok());
        for bad in ["9100", "1.2.3.4:", "1.2.3.4:70000", ":x"] {
            assert!(parse_listen_addr(bad).is_err(), "{bad}");
        }
    }
}
