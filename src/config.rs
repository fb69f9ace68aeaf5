//! Configuration: the TOML file, its validation, and defaults.
//!
//! Owns: the `Config` shape, parsing of durations ("15s"), sizes ("512MiB"),
//! listen addresses and regexes, the Prometheus YAML files named by
//! `scrape_config_files`, and error messages that name the file, line and
//! key. Must never: read anything but the one file it is given and the
//! scrape config files it names, or start anything. Command-line flags are
//! merged on top by `cli`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::de::{self, Deserializer};

use crate::collector::options::Raw;
use crate::collector::Settings;
use crate::relabel::{RelabelConfig, Rules};
use crate::scrape::config::{self as scrape_cfg, ScrapeConfig};
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
    /// In a YAML file, where the parser gives a column too.
    #[error("{file}:{line}:{column}: key `{key}`: {msg}")]
    At {
        file: String,
        line: usize,
        column: usize,
        key: String,
        msg: String,
    },
    #[error("{file}:{line}: key `{key}`: {msg}")]
    Invalid {
        file: String,
        line: usize,
        key: String,
        msg: String,
    },
    /// Somewhere no key covers (a comment, a syntax error before any key).
    #[error("{file}:{line}: {msg}")]
    Line {
        file: String,
        line: usize,
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
    /// `[[scrape_configs]]`; after loading, followed by every entry of the
    /// files `scrape_config_files` names (in name order), all validated.
    pub scrape_configs: Vec<ScrapeConfig>,
    /// Globs of Prometheus YAML files holding `scrape_configs:`; relative
    /// ones are resolved against this file's directory, as Prometheus does.
    pub scrape_config_files: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Global {
    pub scrape_interval: Dur,
    /// Timeout for one collection; a collector still running past it is
    /// reported failed for that scrape.
    pub scrape_timeout: Dur,
    pub external_labels: BTreeMap<String, String>,
    /// `job` on cairn's own series sent by remote_write ("" omits it).
    pub job: String,
    /// `instance` on cairn's own series sent by remote_write; unset means
    /// the host's name (uname nodename), "" omits it.
    pub instance: Option<String>,
}

impl Global {
    /// The labels added to every series sent by remote_write, unless the
    /// series has the label: `external_labels`, then the `job`/`instance`
    /// defaults where `external_labels` does not set them. Two hosts with
    /// the default configuration so write distinct series, and dashboards
    /// that select by `job` and `instance` find them.
    pub fn wire_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.external_labels.clone();
        let instance = match &self.instance {
            Some(i) => i.clone(),
            None => host_name(),
        };
        for (k, v) in [("job", self.job.clone()), ("instance", instance)] {
            if !v.is_empty() {
                labels.entry(k.to_owned()).or_insert(v);
            }
        }
        labels
    }
}

/// The host's name as uname(2) reports it (nodename); empty if the call
/// fails, which omits the label rather than inventing a name.
pub fn host_name() -> String {
    match nix::sys::utsname::uname() {
        Ok(u) => String::from_utf8_lossy(std::os::unix::ffi::OsStrExt::as_bytes(u.nodename()))
            .into_owned(),
        Err(_) => String::new(),
    }
}

impl Default for Global {
    fn default() -> Self {
        Global {
            scrape_interval: Dur(Duration::from_secs(15)),
            scrape_timeout: Dur(Duration::from_secs(10)),
            external_labels: BTreeMap::new(),
            job: "node".to_owned(),
            instance: None,
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
    /// Where records are held while `flush_interval` > 0. Unset:
    /// `$RUNTIME_DIRECTORY` under systemd, else `/run/cairn`.
    pub stage_dir: Option<PathBuf>,
}

impl Default for Wal {
    fn default() -> Self {
        Wal {
            engine: WalEngine::Segment,
            dir: None,
            max_size: Size(512 << 20),
            max_age: Dur(Duration::from_secs(72 * 3600)),
            flush_interval: Dur(Duration::ZERO),
            stage_dir: None,
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

    /// The stage's directory: the configured one, else systemd's
    /// `$RUNTIME_DIRECTORY` (first entry: a tmpfs under /run kept across
    /// restarts by `RuntimeDirectoryPreserve=`), else `/run/cairn`.
    pub fn resolved_stage_dir(&self) -> PathBuf {
        if let Some(d) = &self.stage_dir {
            return d.clone();
        }
        match std::env::var_os("RUNTIME_DIRECTORY") {
            Some(v) if !v.is_empty() => {
                let s = v.to_string_lossy();
                PathBuf::from(s.split(':').next().unwrap_or("/run/cairn"))
            }
            _ => PathBuf::from("/run/cairn"),
        }
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
    /// Prometheus' `write_relabel_configs`: applied by the sender to each
    /// series set it reads (after external labels, as Prometheus does).
    #[serde(default)]
    pub write_relabel_configs: Vec<RelabelConfig>,
    /// `write_relabel_configs` compiled by `validate` (regexes once, at load).
    #[serde(skip)]
    pub write_relabel: Rules,
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
            write_relabel_configs: Vec::new(),
            write_relabel: Rules::default(),
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
    /// Cap on the samples sent per second (a token bucket holding one
    /// request); 0 = no cap.
    pub max_samples_per_second: u64,
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
            max_samples_per_second: 0,
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
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"15s\", \"1m30s\", \"500ms\" or \"72h\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                parse_duration(s).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
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

/// Written as a visitor rather than an untagged enum, so a wrong value is
/// told the forms it may take instead of serde's "did not match any variant".
impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a number of bytes (512) or a size string such as \"512MiB\", \"1GiB\" or \"100MB\"",
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
                parse_size(s).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
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
        if a.port() == 0 {
            return Err(bad("port 0 is not a port to listen on"));
        }
        return Ok(a);
    }
    let (host, port) = full.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    match port.parse::<u16>() {
        Ok(0) => return Err(bad("port 0 is not a port to listen on")),
        Ok(_) => {}
        Err(_) => return Err(bad("bad port")),
    }
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
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Config::parse_bytes(&bytes, &file)
    }

    /// Parses and validates config bytes, which must be UTF-8 (TOML is).
    pub fn parse_bytes(bytes: &[u8], file: &str) -> Result<Config, ConfigError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Config::parse(text, file),
            Err(e) => {
                let pos = e.valid_up_to();
                let lossy = String::from_utf8_lossy(bytes);
                // The lossy text is byte-identical up to `pos`, so spans
                // found in it locate the first bad byte.
                let (root, _) = toml::de::DeTable::parse_recoverable(&lossy);
                let key = key_at(root.get_ref(), pos);
                Err(error_at(
                    file,
                    &lossy,
                    pos,
                    key,
                    format!(
                        "invalid UTF-8 (byte 0x{:02x}): the file must be UTF-8 text",
                        bytes[pos]
                    ),
                ))
            }
        }
    }

    /// Parses and validates config text; `file` names it in errors, and
    /// its directory anchors relative `scrape_config_files` globs (whose
    /// files are read and validated here too).
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| locate(text, file, &e))?;
        // The text parsed above, so it parses here too; the spans locate
        // errors found after deserialization.
        let root = toml::de::DeTable::parse(text).map_err(|e| locate(text, file, &e))?;
        let doc = Doc {
            text,
            file,
            root: root.get_ref(),
        };
        cfg.validate(&doc)?;
        Ok(cfg)
    }

    /// Checks that need the whole config (names, cross-field rules), each
    /// error located by the span of the key or value at fault.
    fn validate(&mut self, doc: &Doc<'_>) -> Result<(), ConfigError> {
        use Seg::{Idx, Key};
        let mut settings = Settings::default();
        for (name, table) in &self.collectors.tables {
            let at = [Key("collectors"), Key(name)];
            let Some(known) = crate::collector::find(name) else {
                return Err(doc.key_err(&at, format!("unknown key or collector {name:?}")));
            };
            let Some(table) = table.as_table() else {
                return Err(doc.err(&at, "expected a table of options".into()));
            };
            for (k, v) in table {
                let at = [Key("collectors"), Key(name), Key(k)];
                let Some(opt) = known.options.iter().find(|o| o.toml_key() == *k) else {
                    let known_keys: Vec<String> =
                        known.options.iter().map(|o| o.toml_key()).collect();
                    return Err(doc.key_err(
                        &at,
                        format!("unknown option; {name} has: {}", known_keys.join(", ")),
                    ));
                };
                let raw = match v {
                    toml::Value::String(s) if s.contains('\0') => {
                        return Err(doc.err(&at, "must not contain a NUL character".into()))
                    }
                    toml::Value::String(s) => Raw::Str(s),
                    toml::Value::Boolean(b) => Raw::Bool(*b),
                    toml::Value::Integer(n) => Raw::Int(*n),
                    _ => return Err(doc.err(&at, "expected a string, boolean or number".into())),
                };
                settings
                    .set(opt.flag, raw)
                    .map_err(|msg| doc.err(&at, msg))?;
            }
        }
        self.collectors.settings = settings;
        for (list, names) in [
            ("enable", &self.collectors.enable),
            ("disable", &self.collectors.disable),
        ] {
            for (i, name) in names.iter().enumerate() {
                if crate::collector::find(name).is_none() {
                    let at = [Key("collectors"), Key(list), Idx(i)];
                    return Err(doc.err(&at, format!("unknown collector {name:?}")));
                }
            }
        }
        for k in self.global.external_labels.keys() {
            if !is_label_name(k) {
                let at = [Key("global"), Key("external_labels"), Key(k)];
                return Err(doc.key_err(&at, format!("{k:?} is not a valid label name")));
            }
        }

        let g = &mut self.global;
        if g.scrape_interval.0.is_zero() {
            let at = [Key("global"), Key("scrape_interval")];
            return Err(doc.err(&at, "must be greater than 0".into()));
        }
        let timeout_at = [Key("global"), Key("scrape_timeout")];
        if doc.span(&timeout_at).is_none() {
            // As Prometheus: an unset timeout is capped by the interval.
            g.scrape_timeout.0 = g.scrape_timeout.0.min(g.scrape_interval.0);
        } else if g.scrape_timeout.0.is_zero() {
            return Err(doc.err(&timeout_at, "must be greater than 0".into()));
        } else if g.scrape_timeout.0 > g.scrape_interval.0 {
            return Err(doc.err(
                &timeout_at,
                format!(
                    "scrape_timeout ({}) must not be longer than scrape_interval ({})",
                    fmt_duration(g.scrape_timeout.0),
                    fmt_duration(g.scrape_interval.0)
                ),
            ));
        }
        if !self.web.telemetry_path.starts_with('/') {
            return Err(doc.err(
                &[Key("web"), Key("telemetry_path")],
                format!("{:?} must start with /", self.web.telemetry_path),
            ));
        }
        let paths = [
            ("paths", "procfs", Some(&self.paths.procfs)),
            ("paths", "sysfs", Some(&self.paths.sysfs)),
            ("paths", "rootfs", Some(&self.paths.rootfs)),
            ("paths", "udev_data", Some(&self.paths.udev_data)),
            ("wal", "dir", self.wal.dir.as_ref()),
        ];
        for (table, key, path) in paths {
            if path.is_some_and(|p| has_nul(p)) {
                return Err(doc.err(
                    &[Key(table), Key(key)],
                    "must not contain a NUL character".into(),
                ));
            }
        }

        let mut names = std::collections::BTreeSet::new();
        for (i, rw) in self.remote_write.iter().enumerate() {
            let here = |rest: &[Seg<'static>]| -> Vec<Seg<'static>> {
                let mut v = vec![Key("remote_write"), Idx(i)];
                v.extend_from_slice(rest);
                v
            };
            // A remote's own name, or its table when it has none.
            let name_at = if rw.name.is_some() {
                here(&[Key("name")])
            } else {
                here(&[])
            };
            let name = rw.name_or(i);
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
                && !name.starts_with('.');
            if !name_ok {
                return Err(doc.err(
                    &name_at,
                    format!(
                        "{name:?}: use letters, digits, '-', '_' and '.' (it names a cursor file)"
                    ),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(doc.err(&name_at, format!("duplicate remote_write name {name:?}")));
            }
            if rw.bearer_token.is_some() && rw.bearer_token_file.is_some() {
                return Err(doc.err(
                    &here(&[Key("bearer_token_file")]),
                    "set bearer_token or bearer_token_file, not both".into(),
                ));
            }
            let files = [
                (
                    vec![Key("bearer_token_file")],
                    rw.bearer_token_file.as_ref(),
                ),
                (
                    vec![Key("basic_auth"), Key("password_file")],
                    rw.basic_auth
                        .as_ref()
                        .and_then(|b| b.password_file.as_ref()),
                ),
                (
                    vec![Key("tls_config"), Key("ca_file")],
                    rw.tls_config.ca_file.as_ref(),
                ),
                (
                    vec![Key("tls_config"), Key("cert_file")],
                    rw.tls_config.cert_file.as_ref(),
                ),
                (
                    vec![Key("tls_config"), Key("key_file")],
                    rw.tls_config.key_file.as_ref(),
                ),
            ];
            for (rest, path) in files {
                if path.is_some_and(|p| has_nul(p)) {
                    return Err(doc.err(&here(&rest), "must not contain a NUL character".into()));
                }
            }
            if let Some(b) = &rw.basic_auth {
                if b.password.is_some() && b.password_file.is_some() {
                    return Err(doc.err(
                        &here(&[Key("basic_auth"), Key("password_file")]),
                        "set password or password_file, not both".into(),
                    ));
                }
            }
            let q = &rw.queue_config;
            let positive = [
                (vec![Key("remote_timeout")], rw.remote_timeout.map(|d| d.0)),
                (
                    vec![Key("queue_config"), Key("batch_send_deadline")],
                    Some(q.batch_send_deadline.0),
                ),
                (
                    vec![Key("queue_config"), Key("min_backoff")],
                    Some(q.min_backoff.0),
                ),
                (
                    vec![Key("queue_config"), Key("max_backoff")],
                    Some(q.max_backoff.0),
                ),
            ];
            for (rest, d) in positive {
                if d.is_some_and(|d| d.is_zero()) {
                    return Err(doc.err(&here(&rest), "must be greater than 0".into()));
                }
            }
            if q.min_backoff.0 > q.max_backoff.0 {
                return Err(doc.err(
                    &here(&[Key("queue_config"), Key("min_backoff")]),
                    "min_backoff is larger than max_backoff".into(),
                ));
            }
            if q.shutdown_grace.0 > MAX_SHUTDOWN_GRACE {
                return Err(doc.err(
                    &here(&[Key("queue_config"), Key("shutdown_grace")]),
                    format!(
                        "at most {}s (a stop must finish within the systemd unit's TimeoutStopSec=30s)",
                        MAX_SHUTDOWN_GRACE.as_secs()
                    ),
                ));
            }
            if q.max_samples_per_send == 0 {
                return Err(doc.err(
                    &here(&[Key("queue_config"), Key("max_samples_per_send")]),
                    "must be at least 1".into(),
                ));
            }
        }
        for (i, rw) in self.remote_write.iter_mut().enumerate() {
            match Rules::compile(&rw.write_relabel_configs) {
                Ok(rules) => rw.write_relabel = rules,
                Err((j, e)) => {
                    // The key at fault, or (unset, as a missing
                    // target_label) the rule's own table.
                    let at = [
                        Key("remote_write"),
                        Idx(i),
                        Key("write_relabel_configs"),
                        Idx(j),
                        Key(e.field),
                    ];
                    return Err(doc.err(&at, e.msg));
                }
            }
        }
        self.validate_scrape(doc)
    }

    /// `[[scrape_configs]]` and the files of `scrape_config_files`: each
    /// entry checked as Prometheus checks it, job names unique across all.
    fn validate_scrape(&mut self, doc: &Doc<'_>) -> Result<(), ConfigError> {
        use Seg::{Idx, Key};
        let (gi, gt) = (self.global.scrape_interval.0, self.global.scrape_timeout.0);
        let dir = match Path::new(doc.file).parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut jobs = std::collections::BTreeSet::new();
        for (i, sc) in self.scrape_configs.iter_mut().enumerate() {
            let at = |rest: &[scrape_cfg::Seg]| -> Vec<Seg<'static>> {
                let mut v = vec![Key("scrape_configs"), Idx(i)];
                v.extend(rest.iter().map(|s| match *s {
                    scrape_cfg::Seg::Key(k) => Key(k),
                    scrape_cfg::Seg::Idx(j) => Idx(j),
                }));
                v
            };
            sc.validate(gi, gt)
                .map_err(|e| doc.err(&at(&e.path), e.msg))?;
            if !jobs.insert(sc.job_name.clone()) {
                return Err(doc.err(
                    &at(&[scrape_cfg::Seg::Key("job_name")]),
                    duplicate_job(&sc.job_name),
                ));
            }
            sc.resolve_paths(&dir);
        }
        for (i, pattern) in self.scrape_config_files.iter().enumerate() {
            let at = [Key("scrape_config_files"), Idx(i)];
            let full = if Path::new(pattern).is_relative() {
                dir.join(pattern).to_string_lossy().into_owned()
            } else {
                pattern.clone()
            };
            let files = scrape_cfg::expand_glob(&full).map_err(|msg| doc.err(&at, msg))?;
            for f in files {
                let configs = load_scrape_file(&f, gi, gt, &mut jobs)?;
                self.scrape_configs.extend(configs);
            }
        }
        Ok(())
    }
}

fn duplicate_job(name: &str) -> String {
    format!("found multiple scrape configs with job name {name:?}")
}

/// A Prometheus YAML file of `scrape_config_files`: only `scrape_configs:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScrapeFile {
    #[serde(default)]
    scrape_configs: Vec<ScrapeConfig>,
}

/// Reads one scrape config file, validates its entries (job names unique
/// with `jobs`, which it extends) and resolves their relative paths
/// against the file's directory.
///
/// YAML through serde_norway: serde_yaml is archived; serde_norway is its
/// maintained fork with the same API, and its errors carry line and column.
fn load_scrape_file(
    path: &Path,
    gi: Duration,
    gt: Duration,
    jobs: &mut std::collections::BTreeSet<String>,
) -> Result<Vec<ScrapeConfig>, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    // A file of comments only is an empty list, as Prometheus reads it.
    let has_content = text
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#') && l.trim() != "---");
    let mut parsed: ScrapeFile = if has_content {
        serde_norway::from_str(&text).map_err(|e| yaml_error(&file, &e))?
    } else {
        ScrapeFile {
            scrape_configs: Vec::new(),
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    for (i, sc) in parsed.scrape_configs.iter_mut().enumerate() {
        let mut at = vec![
            scrape_cfg::Seg::Key("scrape_configs"),
            scrape_cfg::Seg::Idx(i),
        ];
        if let Err(e) = sc.validate(gi, gt) {
            at.extend(e.path);
            return Err(yaml_at(&file, &text, &at, e.msg));
        }
        if !jobs.insert(sc.job_name.clone()) {
            at.push(scrape_cfg::Seg::Key("job_name"));
            return Err(yaml_at(&file, &text, &at, duplicate_job(&sc.job_name)));
        }
        sc.resolve_paths(dir);
    }
    Ok(parsed.scrape_configs)
}

/// An error found after parsing, at the YAML value `path` points to (or
/// its deepest ancestor present in the file), located by the parser's own
/// marks: the document is walked again down `path` and the walk stops with
/// an error at the value, which serde_norway stamps with its line and column.
fn yaml_at(file: &str, text: &str, path: &[scrape_cfg::Seg], msg: String) -> ConfigError {
    use serde::de::DeserializeSeed;
    let key: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            scrape_cfg::Seg::Key(k) => Some(*k),
            scrape_cfg::Seg::Idx(_) => None,
        })
        .collect();
    let de = serde_norway::Deserializer::from_str(text);
    let (line, column) = match Probe(path).deserialize(de) {
        Err(e) => e.location().map_or((0, 0), |l| (l.line(), l.column())),
        Ok(()) => (0, 0),
    };
    ConfigError::At {
        file: file.to_owned(),
        line,
        column,
        key: key.join("."),
        msg,
    }
}

/// Walks a YAML document down a key path; always ends in an error at the
/// value reached (see `yaml_at`).
struct Probe<'a>(&'a [scrape_cfg::Seg]);

const PROBE_HERE: &str = "here";

impl<'de> de::DeserializeSeed<'de> for Probe<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> de::Visitor<'de> for Probe<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if let Some((scrape_cfg::Seg::Key(want), rest)) = self.0.split_first() {
            while let Some(k) = map.next_key::<String>()? {
                if k == *want {
                    return map.next_value_seed(Probe(rest));
                }
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Err(de::Error::custom(PROBE_HERE))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some((scrape_cfg::Seg::Idx(want), rest)) = self.0.split_first() {
            let mut i = 0;
            loop {
                if i == *want {
                    // Past the end: the error is stamped at the list.
                    return match seq.next_element_seed(Probe(rest))? {
                        Some(()) => Ok(()),
                        None => Err(de::Error::custom(PROBE_HERE)),
                    };
                }
                if seq.next_element::<de::IgnoredAny>()?.is_none() {
                    break;
                }
                i += 1;
            }
        }
        Err(de::Error::custom(PROBE_HERE))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(PROBE_HERE))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(PROBE_HERE))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(PROBE_HERE))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(PROBE_HERE))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(PROBE_HERE))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(PROBE_HERE))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(PROBE_HERE))
    }
}

/// A serde_norway error (syntax, unknown key, bad value) with its line,
/// column and the dotted key from the path serde_norway names.
fn yaml_error(file: &str, e: &serde_norway::Error) -> ConfigError {
    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    let full = e.to_string();
    // "scrape_configs[0].relabel_configs[1]: unknown field `x`, expected ... at line 3 column 3"
    let msg = full
        .rsplit_once(" at line ")
        .map_or(full.as_str(), |(m, _)| m);
    let (path, msg) = match msg.split_once(": ") {
        Some((k, m)) if !k.contains(' ') => (if k == "." { "" } else { k }, m),
        _ => ("", msg),
    };
    // Indices left out, as TOML errors name keys.
    let mut key: Vec<String> = path
        .split('.')
        .filter(|s| !s.is_empty())
        .map(|s| s.split('[').next().unwrap_or(s).to_owned())
        .collect();
    if let Some(field) = msg
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
    {
        key.push(field.to_owned());
    }
    ConfigError::At {
        file: file.to_owned(),
        line,
        column,
        key: if key.is_empty() {
            "(document)".into()
        } else {
            key.join(".")
        },
        msg: msg.to_owned(),
    }
}

fn has_nul(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().contains(&0)
}

/// A duration as the config writes it (`1m30s`), for messages.
fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// One step of a path into the document: a key, or an array index.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Idx(usize),
}

/// The parsed document with the byte span of every key and value, so an
/// error found after deserialization names the line it comes from (escaped
/// strings, inline tables over several lines and arrays of tables included)
/// without searching the text.
struct Doc<'a> {
    text: &'a str,
    file: &'a str,
    root: &'a toml::de::DeTable<'a>,
}

impl Doc<'_> {
    /// Span of the key (`key: true`) or the value at `path`.
    fn locate(&self, path: &[Seg<'_>], key: bool) -> Option<std::ops::Range<usize>> {
        use toml::de::DeValue;
        let mut table = self.root;
        let mut value: Option<&toml::Spanned<DeValue<'_>>> = None;
        let mut key_span = None;
        for seg in path {
            match (seg, value.map(|v| v.get_ref())) {
                (Seg::Key(k), None | Some(DeValue::Table(_))) => {
                    if let Some(DeValue::Table(t)) = value.map(|v| v.get_ref()) {
                        table = t;
                    }
                    let (ks, v) = table.iter().find(|(ks, _)| ks.get_ref() == k)?;
                    key_span = Some(ks.span());
                    value = Some(v);
                }
                (Seg::Idx(i), Some(DeValue::Array(a))) => value = Some(a.get(*i)?),
                _ => return None,
            }
        }
        if key {
            key_span
        } else {
            value.map(|v| v.span())
        }
    }

    fn span(&self, path: &[Seg<'_>]) -> Option<std::ops::Range<usize>> {
        self.locate(path, false)
    }

    /// An error about the value at `path`.
    fn err(&self, path: &[Seg<'_>], msg: String) -> ConfigError {
        self.error(path, false, msg)
    }

    /// An error about the key at `path` itself (unknown, misspelt).
    fn key_err(&self, path: &[Seg<'_>], msg: String) -> ConfigError {
        self.error(path, true, msg)
    }

    fn error(&self, path: &[Seg<'_>], key: bool, msg: String) -> ConfigError {
        let dotted: Vec<&str> = path
            .iter()
            .filter_map(|s| match s {
                Seg::Key(k) => Some(*k),
                Seg::Idx(_) => None,
            })
            .collect();
        // A value that is not in the file (a default, or a name made up
        // for an unnamed remote) is reported at its table.
        let mut span = None;
        for n in (0..=path.len()).rev() {
            span = self.locate(&path[..n], key && n == path.len());
            if span.is_some() {
                break;
            }
        }
        let pos = span.map_or(0, |s| s.start);
        error_at(self.file, self.text, pos, Some(dotted.join(".")), msg)
    }
}

/// An error at byte `pos` of `text`: line (1-based) and, when known, key.
fn error_at(file: &str, text: &str, pos: usize, key: Option<String>, msg: String) -> ConfigError {
    let pos = pos.min(text.len());
    let line = text.as_bytes()[..pos]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1;
    match key {
        Some(key) if !key.is_empty() => ConfigError::Invalid {
            file: file.to_owned(),
            line,
            key,
            msg,
        },
        _ => ConfigError::Line {
            file: file.to_owned(),
            line,
            msg,
        },
    }
}

/// The dotted key (array indices left out) of the innermost key or value
/// whose span holds byte `pos`.
fn key_at(root: &toml::de::DeTable<'_>, pos: usize) -> Option<String> {
    use toml::de::{DeTable, DeValue};
    fn inside(r: std::ops::Range<usize>, pos: usize) -> bool {
        r.start <= pos && pos < r.end.max(r.start + 1)
    }
    fn in_value(v: &toml::Spanned<DeValue<'_>>, pos: usize, path: &mut Vec<String>) -> bool {
        match v.get_ref() {
            DeValue::Table(t) if in_table(t, pos, path) => return true,
            DeValue::Array(a) if a.iter().any(|item| in_value(item, pos, path)) => return true,
            _ => {}
        }
        inside(v.span(), pos)
    }
    fn in_table(t: &DeTable<'_>, pos: usize, path: &mut Vec<String>) -> bool {
        for (k, v) in t.iter() {
            path.push(k.get_ref().to_string());
            if inside(k.span(), pos) || in_value(v, pos, path) {
                return true;
            }
            path.pop();
        }
        false
    }
    let mut path = Vec::new();
    in_table(root, pos, &mut path).then(|| path.join("."))
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
    let (root, _) = toml::de::DeTable::parse_recoverable(text);
    let key = key_at(root.get_ref(), span.start).or_else(|| header_at(text, span.start));
    error_at(file, text, span.start, key, msg)
}

/// For a syntax error the document may hold no span around `pos`: the
/// `[table]` header above it is the best key there is.
fn header_at(text: &str, pos: usize) -> Option<String> {
    let before = &text[..pos.min(text.len())];
    before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned())
}

pub fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !s.starts_with("__")
}

/// The commented default configuration, shipped as /etc/cairn/cairn.toml.
pub const EXAMPLE: &str = include_str!("../packaging/cairn.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_labels_default_job_and_host_instance_external_wins() {
        let c = Config::parse("", "t.toml").unwrap();
        let l = c.global.wire_labels();
        assert_eq!(l["job"], "node");
        assert_eq!(l["instance"], host_name());
        let c = Config::parse(
            "[global]\njob = \"\"\ninstance = \"a\"\nexternal_labels = { instance = \"x\" }\n",
            "t.toml",
        )
        .unwrap();
        let l = c.global.wire_labels();
        assert!(!l.contains_key("job"), "{l:?}");
        assert_eq!(l["instance"], "x");
        let c = Config::parse("[global]\ninstance = \"\"\n", "t.toml").unwrap();
        assert!(!c.global.wire_labels().contains_key("instance"));
    }

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
queue_config = { max_samples_per_send = 2000, max_samples_per_second = 5000, batch_send_deadline = "5s", min_backoff = "30ms", max_backoff = "5m", sample_age_limit = "0s", shutdown_grace = "7s" }
"#;
        let c = Config::parse(text, "t.toml").unwrap();
        assert_eq!(c.global.external_labels["site"], "depot-7");
        assert_eq!(c.wal.max_age.0, Duration::from_secs(72 * 3600));
        assert_eq!(
            c.remote_write[0].queue_config.max_backoff.0,
            Duration::from_secs(300)
        );
        assert_eq!(c.collectors.disable, vec!["hwmon".to_string()]);
        assert_eq!(c.remote_write[0].queue_config.max_samples_per_second, 5000);
        assert_eq!(QueueConfig::default().max_samples_per_second, 0);
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

    /// The example's commented relabel rules, uncommented under a remote.
    #[test]
    fn shipped_write_relabel_example_is_valid() {
        let start = EXAMPLE
            .find("# [[remote_write.write_relabel_configs]]")
            .expect("the example shows write_relabel_configs");
        let rules: String = EXAMPLE[start..]
            .lines()
            .take_while(|l| l.starts_with("# [[") || l.contains(" = "))
            .map(|l| format!("{}\n", l.trim_start_matches("# ")))
            .collect();
        let text = format!("[[remote_write]]\nurl = \"http://x/api/v1/write\"\n{rules}");
        let c = Config::parse(&text, "t.toml").unwrap();
        assert_eq!(c.remote_write[0].write_relabel_configs.len(), 3);
        assert_eq!(c.remote_write[0].write_relabel.len(), 3);
    }

    /// The example's commented scrape section and scrape_config_files,
    /// uncommented.
    #[test]
    fn shipped_scrape_example_is_valid() {
        let files = EXAMPLE
            .lines()
            .find(|l| l.starts_with("# scrape_config_files = "))
            .expect("the example shows scrape_config_files")
            .trim_start_matches("# ");
        let start = EXAMPLE
            .find("# [[scrape_configs]]")
            .expect("the example shows scrape_configs");
        let jobs: String = EXAMPLE[start..]
            .lines()
            .take_while(|l| l.starts_with("# [[") || l.contains(" = "))
            .map(|l| format!("{}\n", l.trim_start_matches("# ")))
            .collect();
        let c = Config::parse(&format!("{files}\n{jobs}"), "t.toml").unwrap();
        let names: Vec<&str> = c
            .scrape_configs
            .iter()
            .map(|s| s.job_name.as_str())
            .collect();
        assert_eq!(names, ["redis", "postgres", "app"]);
        assert_eq!(c.scrape_configs[2].metrics_path, "/api/v1/metrics");
        assert_eq!(c.scrape_configs[2].metric_relabel.len(), 1);
        assert_eq!(c.scrape_config_files.len(), 1);
    }

    #[test]
    fn write_relabel_configs_compile_and_errors_name_key_and_line() {
        let rw = "[[remote_write]]\nurl = \"http://x/api/v1/write\"\n";
        let text = format!(
            "{rw}[[remote_write.write_relabel_configs]]\nsource_labels = [\"__name__\"]\nregex = \"node_cpu_.*\"\naction = \"drop\"\n"
        );
        let c = Config::parse(&text, "t.toml").unwrap();
        assert_eq!(c.remote_write[0].write_relabel.len(), 1);
        let client = crate::remote_write::client::RemoteConfig::new(&c.remote_write[0], "r".into());
        assert_eq!(client.write_relabel.len(), 1);

        let e = err_at(
            &format!("{rw}[[remote_write.write_relabel_configs]]\nsource_labels = [\"a\"]\nregex = \"(unclosed\"\ntarget_label = \"b\"\n"),
            5,
            "remote_write.write_relabel_configs.regex",
        );
        assert!(e.contains("invalid regex"), "{e}");
        // Missing: reported at the rule's own table.
        let e = err_at(
            &format!("{rw}\n[[remote_write.write_relabel_configs]]\nsource_labels = [\"a\"]\naction = \"replace\"\n"),
            4,
            "remote_write.write_relabel_configs.target_label",
        );
        assert!(e.contains("requires 'target_label'"), "{e}");
        let e = err_at(
            &format!("{rw}write_relabel_configs = [\n  {{ action = \"hashmod\", target_label = \"shard\" }},\n]\n"),
            4,
            "remote_write.write_relabel_configs.modulus",
        );
        assert!(e.contains("non-zero modulus"), "{e}");
        let e = err_at(
            &format!("{rw}[[remote_write.write_relabel_configs]]\nregex = \"a\"\naction = \"labeldrop\"\nseparator = \",\"\n"),
            6,
            "remote_write.write_relabel_configs.separator",
        );
        assert!(e.contains("requires only 'regex'"), "{e}");
        let e = err_at(
            &format!("{rw}[[remote_write.write_relabel_configs]]\nactoin = \"drop\"\n"),
            4,
            "remote_write.write_relabel_configs.actoin",
        );
        assert!(e.contains("unknown field"), "{e}");
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
    fn bad_max_samples_per_second_names_key_and_line() {
        let e = err("[[remote_write]]\nurl = \"http://x/api/v1/write\"\n[remote_write.queue_config]\nmax_samples_per_second = -5\n");
        assert!(e.contains("t.toml:4"), "{e}");
        assert!(
            e.contains("remote_write.queue_config.max_samples_per_second"),
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

    /// Asserts `text` fails naming line `line` and key `key`, and returns
    /// the message.
    fn err_at(text: &str, line: usize, key: &str) -> String {
        let e = err(text);
        assert!(
            e.starts_with(&format!("t.toml:{line}: key `{key}`: ")),
            "want line {line} key {key}: {e}"
        );
        e
    }

    #[test]
    fn zero_durations_are_refused() {
        err_at(
            "[global]\nscrape_timeout = \"0\"\n",
            2,
            "global.scrape_timeout",
        );
        err_at(
            "\n[global]\nscrape_interval = \"0s\"\n",
            3,
            "global.scrape_interval",
        );
        let rw = "[[remote_write]]\nurl = \"http://x/api/v1/write\"\n";
        err_at(
            &format!("{rw}remote_timeout = \"0s\"\n"),
            3,
            "remote_write.remote_timeout",
        );
        err_at(
            &format!("{rw}queue_config = {{ batch_send_deadline = \"0s\" }}\n"),
            3,
            "remote_write.queue_config.batch_send_deadline",
        );
        err_at(
            &format!("{rw}[remote_write.queue_config]\nmin_backoff = \"0ms\"\n"),
            4,
            "remote_write.queue_config.min_backoff",
        );
    }

    #[test]
    fn scrape_timeout_must_not_exceed_interval() {
        let e = err_at(
            "[global]\nscrape_interval = \"5s\"\nscrape_timeout = \"1m\"\n",
            3,
            "global.scrape_timeout",
        );
        assert!(e.contains("(1m)") && e.contains("(5s)"), "{e}");
        // Unset, the default timeout is capped by a shorter interval.
        let c = Config::parse("[global]\nscrape_interval = \"5s\"\n", "t.toml").unwrap();
        assert_eq!(c.global.scrape_timeout.0, Duration::from_secs(5));
        let c = Config::parse("[global]\nscrape_timeout = \"15s\"\n", "t.toml").unwrap();
        assert_eq!(c.global.scrape_timeout.0, Duration::from_secs(15));
    }

    #[test]
    fn telemetry_path_must_start_with_slash() {
        let e = err_at(
            "[web]\ntelemetry_path = \"metrics\"\n",
            2,
            "web.telemetry_path",
        );
        assert!(e.contains("must start with /"), "{e}");
    }

    #[test]
    fn port_zero_is_refused() {
        let e = err_at("[web]\nlisten_address = \":0\"\n", 2, "web.listen_address");
        assert!(e.contains("port 0"), "{e}");
        assert!(parse_listen_addr("localhost:0").is_err());
        assert!(parse_listen_addr("[::1]:0").is_err());
    }

    #[test]
    fn nul_in_paths_is_refused() {
        err_at("[paths]\nprocfs = \"/pr\\u0000oc\"\n", 2, "paths.procfs");
        err_at("[wal]\ndir = \"/var/\\u0000\"\n", 2, "wal.dir");
        err_at(
            "[[remote_write]]\nurl = \"http://x/api/v1/write\"\ntls_config = { ca_file = \"a\\u0000\" }\n",
            3,
            "remote_write.tls_config.ca_file",
        );
        err_at(
            "[collectors.textfile]\ndirectory = \"/x\\u0000\"\n",
            2,
            "collectors.textfile.directory",
        );
    }

    #[test]
    fn invalid_utf8_names_line_and_key() {
        let text = b"[global]\nscrape_interval = \"15s\"\n[paths]\nsysfs = \"/s\xc3\x28ys\"\n";
        let e = Config::parse_bytes(text, "t.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("t.toml:4: key `paths.sysfs`: invalid UTF-8"),
            "{e}"
        );
        // In a comment there is no key, but still a line.
        let e = Config::parse_bytes(b"\n\n# caf\xe9\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:3: invalid UTF-8"), "{e}");
    }

    #[test]
    fn escaped_strings_get_their_line() {
        // The value as written ("a\u0020b") is not the value as read.
        err_at(
            "[[remote_write]]\nurl = \"http://x/api/v1/write\"\n\n[[remote_write]]\nurl = \"http://y/api/v1/write\"\nname = \"a\\u0020b\"\n",
            6,
            "remote_write.name",
        );
        err_at(
            "[global.external_labels]\n\"b\\u0061d-label\" = \"x\"\n",
            2,
            "global.external_labels.bad-label",
        );
    }

    #[test]
    fn errors_inside_multiline_inline_tables() {
        let rw = "[[remote_write]]\nurl = \"http://x/api/v1/write\"\n";
        // A value that does not parse, on the inner key's own line.
        err_at(
            &format!(
                "{rw}queue_config = {{\n  max_samples_per_send = 10,\n  min_backoff = \"3q\"\n}}\n"
            ),
            5,
            "remote_write.queue_config.min_backoff",
        );
        // A rule checked after parsing, likewise.
        err_at(
            &format!(
                "{rw}queue_config = {{\n  min_backoff = \"1m\",\n  max_backoff = \"1s\"\n}}\n"
            ),
            4,
            "remote_write.queue_config.min_backoff",
        );
        err_at(
            &format!("{rw}basic_auth = {{\n  username = \"u\",\n  password = \"p\",\n  password_file = \"/f\"\n}}\n"),
            6,
            "remote_write.basic_auth.password_file",
        );
    }

    #[test]
    fn second_remote_and_array_elements_are_located() {
        let rw = "[[remote_write]]\nurl = \"http://x/api/v1/write\"\n";
        err_at(
            &format!("{rw}{rw}bearer_token = \"t\"\nbearer_token_file = \"/f\"\n"),
            6,
            "remote_write.bearer_token_file",
        );
        // Two unnamed remotes get distinct names; two equal names do not.
        err_at(
            "[[remote_write]]\nurl = \"http://x/\"\nname = \"a\"\n[[remote_write]]\nurl = \"http://y/\"\nname = \"a\"\n",
            6,
            "remote_write.name",
        );
        err_at(
            "[collectors]\ndisable = [\n  \"hwmon\",\n  \"nope\",\n]\n",
            4,
            "collectors.disable",
        );
    }

    #[test]
    fn several_forms_are_listed() {
        let e = err_at("[wal]\nmax_size = true\n", 2, "wal.max_size");
        assert!(!e.contains("untagged"), "{e}");
        assert!(
            e.contains("a number of bytes") && e.contains("\"512MiB\""),
            "{e}"
        );
        let e = err_at("[wal]\nmax_size = -1\n", 2, "wal.max_size");
        assert!(e.contains("negative"), "{e}");
        assert_eq!(
            Config::parse("[wal]\nmax_size = 4096\n", "t.toml")
                .unwrap()
                .wal
                .max_size
                .0,
            4096
        );
        let e = err_at(
            "[global]\nscrape_interval = 15\n",
            2,
            "global.scrape_interval",
        );
        assert!(e.contains("a duration string such as \"15s\""), "{e}");
    }

    const JOB: &str = "[[scrape_configs]]\njob_name = \"redis\"\n";

    #[test]
    fn scrape_configs_in_toml() {
        let c = Config::parse(
            &format!("[global]\nscrape_interval = \"30s\"\n{JOB}static_configs = [{{ targets = [\"localhost:9121\"], labels = {{ role = \"cache\" }} }}]\n[[scrape_configs]]\njob_name = \"app\"\nmetrics_path = \"/api/v1/metrics\"\nscrape_interval = \"5s\"\n[[scrape_configs.relabel_configs]]\nsource_labels = [\"__address__\"]\ntarget_label = \"host\"\n"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.scrape_configs.len(), 2);
        let redis = &c.scrape_configs[0];
        assert_eq!(redis.interval(), Duration::from_secs(30));
        assert_eq!(redis.timeout(), Duration::from_secs(10));
        assert_eq!(redis.static_configs[0].labels["role"], "cache");
        let app = &c.scrape_configs[1];
        assert_eq!(app.timeout(), Duration::from_secs(5));
        assert_eq!(app.relabel.len(), 1);
    }

    #[test]
    fn scrape_config_errors_in_toml_name_line_and_key() {
        let e = err_at(
            &format!("{JOB}scrape_intervall = \"1s\"\n"),
            3,
            "scrape_configs.scrape_intervall",
        );
        assert!(e.contains("unknown field"), "{e}");
        let e = err_at(
            &format!("{JOB}[[scrape_configs.relabel_configs]]\nsource_labels = [\"a\"]\nregex = \"(unclosed\"\ntarget_label = \"b\"\n"),
            5,
            "scrape_configs.relabel_configs.regex",
        );
        assert!(e.contains("invalid regex"), "{e}");
        let e = err_at(
            &format!("{JOB}scrape_interval = \"5s\"\nscrape_timeout = \"6s\"\n"),
            4,
            "scrape_configs.scrape_timeout",
        );
        assert!(e.contains("scrape timeout greater than scrape interval for scrape config with job name \"redis\""), "{e}");
        let e = err_at(&format!("{JOB}\n{JOB}"), 5, "scrape_configs.job_name");
        assert!(
            e.contains("found multiple scrape configs with job name \"redis\""),
            "{e}"
        );
        let e = err_at(
            &format!("{JOB}static_configs = [\n  {{ targets = [\"a:1\", \"http://b:2/metrics\"] }},\n]\n"),
            4,
            "scrape_configs.static_configs.targets",
        );
        assert!(e.contains("is not a valid hostname"), "{e}");
    }

    /// A cairn.toml naming `scrape.d/*.yml` beside it, with `files` written
    /// into that directory.
    fn with_yaml(toml_extra: &str, files: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("scrape.d")).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join("scrape.d").join(name), text).unwrap();
        }
        let toml = dir.path().join("cairn.toml");
        std::fs::write(
            &toml,
            format!("scrape_config_files = [\"scrape.d/*.yml\"]\n{toml_extra}"),
        )
        .unwrap();
        Config::load(&toml)
    }

    const PG: &str = "scrape_configs:\n  - job_name: postgres\n    scrape_interval: 1m\n    static_configs:\n      - targets: ['localhost:9187']\n";

    #[test]
    fn scrape_config_files_are_read_relative_to_the_config() {
        let c = with_yaml(
            JOB,
            &[
                ("b.yml", PG),
                ("a.yml", "# nothing yet\n"),
                ("c.yaml", "not: [read"),
                (
                    "d.yml",
                    "scrape_configs:\n  - job_name: sd\n    file_sd_configs:\n      - files: ['targets/*.json']\n",
                ),
            ],
        )
        .unwrap();
        let jobs: Vec<&str> = c
            .scrape_configs
            .iter()
            .map(|s| s.job_name.as_str())
            .collect();
        assert_eq!(jobs, ["redis", "postgres", "sd"]);
        assert_eq!(c.scrape_configs[1].interval(), Duration::from_secs(60));
        assert_eq!(c.scrape_configs[1].timeout(), Duration::from_secs(10));
        let f = &c.scrape_configs[2].file_sd_configs[0].files[0];
        assert!(
            f.ends_with("scrape.d/targets/*.json") && f.starts_with('/'),
            "{f}"
        );
    }

    /// Asserts the YAML error names `x.yml`, `line`, `column` and `key`.
    fn yaml_err(yaml: &str, line: usize, column: usize, key: &str) -> String {
        let e = with_yaml("", &[("x.yml", yaml)]).unwrap_err().to_string();
        assert!(
            e.contains(&format!("x.yml:{line}:{column}: key `{key}`: ")),
            "want {line}:{column} key {key}: {e}"
        );
        e
    }

    #[test]
    fn scrape_config_errors_in_yaml_name_file_line_column_and_key() {
        let e = yaml_err(
            "scrape_configs:\n  - job_name: a\n    scrape_intervall: 1s\n",
            3,
            5,
            "scrape_configs.scrape_intervall",
        );
        assert!(e.contains("unknown field"), "{e}");
        let e = yaml_err(
            "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - source_labels: [a]\n        target_label: b\n        regex: '(unclosed'\n",
            6,
            16,
            "scrape_configs.relabel_configs.regex",
        );
        assert!(e.contains("invalid regex"), "{e}");
        let e = yaml_err(
            "scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 6s\n",
            4,
            21,
            "scrape_configs.scrape_timeout",
        );
        assert!(
            e.contains("scrape timeout greater than scrape interval"),
            "{e}"
        );
        let e = yaml_err(
            "scrape_configs:\n  - job_name: a\n    scrape_interval: 5x\n",
            3,
            22,
            "scrape_configs.scrape_interval",
        );
        assert!(e.contains("invalid duration"), "{e}");
        yaml_err("global:\n  scrape_interval: 1s\n", 1, 1, "global");
        // Missing: reported at the rule's own mapping.
        let e = yaml_err(
            "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - action: replace\n",
            4,
            9,
            "scrape_configs.relabel_configs.target_label",
        );
        assert!(e.contains("target_label"), "{e}");
    }

    #[test]
    fn bad_scrape_config_files_glob_names_key_and_line() {
        let e = err_at(
            "scrape_config_files = [\n  \"/etc/cairn/*.yml\",\n  \"/etc/[x.yml\",\n]\n",
            3,
            "scrape_config_files",
        );
        assert!(e.contains("invalid glob"), "{e}");
        // A glob matching nothing is no error, as in Prometheus.
        let c =
            Config::parse("scrape_config_files = [\"/nonexistent/*.yml\"]\n", "t.toml").unwrap();
        assert!(c.scrape_configs.is_empty());
    }

    #[test]
    fn job_names_are_unique_across_toml_and_yaml() {
        let e = with_yaml(
            "[[scrape_configs]]\njob_name = \"postgres\"\n",
            &[("x.yml", PG)],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("x.yml:2:15: key `scrape_configs.job_name`: found multiple scrape configs with job name \"postgres\""),
            "{e}"
        );
        let e = with_yaml("", &[("x.yml", PG), ("y.yml", PG)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("y.yml:2:15:"), "{e}");
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
