//! node_exporter's web configuration file (`--web.config.file`, the
//! exporter-toolkit format): TLS, basic auth users and extra response
//! headers, with the same YAML keys and the same checks.
//!
//! Owns: parsing and validating the file, reading the certificate, key and
//! CA files it names (relative paths are relative to the file, as in
//! exporter-toolkit), and building the rustls server configuration. Must
//! never: accept a key it does not implement (an unknown key is an error
//! naming file, line and key, so a typo cannot silently turn TLS or
//! authentication off).
//!
//! Differences from exporter-toolkit, each an explicit error rather than a
//! silent change: rustls speaks TLS 1.2 and 1.3 only (a `min_version` below
//! TLS12 means TLS12), offers only AEAD cipher suites, and has no
//! `RequestClientCert`/`RequireAnyClientCert` (a client certificate is
//! either verified against `client_ca_file` or not asked for);
//! `client_allowed_sans` and `rate_limit` are not implemented. The file is
//! read at start and on SIGHUP, not on every request. HTTP/2 is not served
//! (`http2` is accepted and ignored).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::header::{HeaderName, HeaderValue};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;

use crate::config::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    http_server_config: Option<HttpFile>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    rate_limit: Option<serde_norway::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<String>,
    key_file: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_ca: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    /// Accepted as exporter-toolkit does; cairn serves HTTP/1.1 only.
    #[allow(dead_code)]
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The validated web configuration, ready for the listener.
#[derive(Clone)]
pub struct WebConfig {
    pub path: PathBuf,
    /// None: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// User name → bcrypt hash. Empty: no authentication.
    pub users: BTreeMap<String, String>,
    /// Added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("path", &self.path)
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("headers", &self.headers)
            .finish()
    }
}

/// Headers exporter-toolkit lets the file set, with the values it allows
/// (empty: any).
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

struct Ctx<'a> {
    file: String,
    text: &'a str,
    dir: PathBuf,
}

impl Ctx<'_> {
    /// An error at the line that sets `key` (its last dotted part).
    fn err(&self, key: &str, msg: impl Into<String>) -> ConfigError {
        let leaf = key.rsplit('.').next().unwrap_or(key);
        let line = self
            .text
            .lines()
            .position(|l| {
                let l = l.split('#').next().unwrap_or("").trim_start();
                let l = l.strip_prefix("- ").unwrap_or(l);
                l.starts_with(&format!("{leaf}:"))
                    || l.starts_with(&format!("\"{leaf}\":"))
                    || l.starts_with(&format!("'{leaf}':"))
            })
            .map_or(0, |i| i + 1);
        ConfigError::Invalid {
            file: self.file.clone(),
            line,
            key: key.to_owned(),
            msg: msg.into(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.dir.join(p)
        }
    }

    fn read(&self, key: &str, p: &str) -> Result<Vec<u8>, ConfigError> {
        let path = self.path(p);
        std::fs::read(&path)
            .map_err(|e| self.err(key, format!("cannot read {}: {e}", path.display())))
    }
}

/// Reads and validates the web configuration file.
pub fn load(path: &Path) -> Result<WebConfig, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    let dir = path
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."));
    parse(&text, &file, &dir).map(|mut w| {
        w.path = path.to_owned();
        w
    })
}

/// Parses config text; `file` names it in errors, `dir` anchors relative
/// paths.
pub fn parse(text: &str, file: &str, dir: &Path) -> Result<WebConfig, ConfigError> {
    let cx = Ctx {
        file: file.to_owned(),
        text,
        dir: dir.to_owned(),
    };
    // An empty file (or one of comments) is a valid, empty configuration.
    let has_content = text
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#') && l.trim() != "---");
    let f: File = if has_content {
        serde_norway::from_str(text).map_err(|e| yaml_error(&cx, &e))?
    } else {
        File::default()
    };
    if f.rate_limit.is_some() {
        return Err(cx.err("rate_limit", "not supported by cairn; remove it"));
    }
    let tls = match &f.tls_server_config {
        Some(t) => tls_config(&cx, t)?,
        None => None,
    };
    let mut users = BTreeMap::new();
    for (user, hash) in f.basic_auth_users.unwrap_or_default() {
        let key = format!("basic_auth_users.{user}");
        if user.contains(':') {
            return Err(cx.err(
                &key,
                "a user name cannot contain ':' (basic auth splits on it)",
            ));
        }
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(cx.err(
                &key,
                "not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)",
            ));
        }
        users.insert(user, hash);
    }
    let mut headers = Vec::new();
    if let Some(h) = f
        .http_server_config
        .as_ref()
        .and_then(|h| h.headers.as_ref())
    {
        for (name, value) in h {
            let key = format!("http_server_config.headers.{name}");
            let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| n == name) else {
                let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
                return Err(cx.err(
                    &key,
                    format!(
                        "HTTP header {name:?} can not be configured; allowed: {}",
                        names.join(", ")
                    ),
                ));
            };
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                return Err(cx.err(
                    &key,
                    format!(
                        "invalid value {value:?}; expected one of: {}",
                        allowed.join(", ")
                    ),
                ));
            }
            let (Ok(n), Ok(v)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) else {
                return Err(cx.err(&key, "not a valid HTTP header value"));
            };
            headers.push((n, v));
        }
    }
    if tls.is_none() && !users.is_empty() {
        tracing::warn!(
            file,
            "basic_auth_users without tls_server_config: passwords cross the network in clear text"
        );
    }
    Ok(WebConfig {
        path: PathBuf::from(file),
        tls,
        users,
        headers,
    })
}

/// A YAML or schema error with its line and the key path serde names.
fn yaml_error(cx: &Ctx<'_>, e: &serde_norway::Error) -> ConfigError {
    let line = e.location().map_or(0, |l| l.line());
    let full = e.to_string();
    // "tls_server_config: unknown field `x`, expected ... at line 3 column 3"
    let msg = full
        .rsplit_once(" at line ")
        .map_or(full.as_str(), |(m, _)| m);
    let (key, msg) = match msg.split_once(": ") {
        Some((k, m)) if !k.contains(' ') => {
            let field = m
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next());
            let key = match field {
                Some(f) if k != "." => format!("{k}.{f}"),
                Some(f) => f.to_owned(),
                None => k.to_owned(),
            };
            (key, m.to_owned())
        }
        _ => {
            let key = msg
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
                .unwrap_or("")
                .to_owned();
            (key, msg.to_owned())
        }
    };
    ConfigError::Invalid {
        file: cx.file.clone(),
        line,
        key: if key.is_empty() {
            "(document)".into()
        } else {
            key
        },
        msg,
    }
}

fn version(cx: &Ctx<'_>, key: &str, v: &str) -> Result<u8, ConfigError> {
    match v {
        "TLS10" => Ok(10),
        "TLS11" => Ok(11),
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        _ => Err(cx.err(
            key,
            format!("unknown TLS version {v:?}; expected TLS10, TLS11, TLS12 or TLS13"),
        )),
    }
}

fn tls_config(cx: &Ctx<'_>, t: &TlsFile) -> Result<Option<Arc<rustls::ServerConfig>>, ConfigError> {
    const K: &str = "tls_server_config";
    let key = |k: &str| format!("{K}.{k}");
    let set = |o: &Option<String>| o.as_deref().is_some_and(|v| !v.is_empty());
    if set(&t.cert_file) && set(&t.cert) {
        return Err(cx.err(&key("cert"), "set cert or cert_file, not both"));
    }
    if set(&t.key_file) && set(&t.key) {
        return Err(cx.err(&key("key"), "set key or key_file, not both"));
    }
    let has_cert = set(&t.cert_file) || set(&t.cert);
    let has_key = set(&t.key_file) || set(&t.key);
    match (has_cert, has_key) {
        // As exporter-toolkit: an empty tls_server_config serves plain HTTP.
        (false, false) => return Ok(None),
        (true, false) => return Err(cx.err(K, "missing key_file")),
        (false, true) => return Err(cx.err(K, "missing cert_file")),
        (true, true) => {}
    }
    let cert_pem = match (&t.cert_file, &t.cert) {
        (Some(p), _) if !p.is_empty() => cx.read(&key("cert_file"), p)?,
        (_, c) => c.clone().unwrap_or_default().into_bytes(),
    };
    let key_pem = match (&t.key_file, &t.key) {
        (Some(p), _) if !p.is_empty() => cx.read(&key("key_file"), p)?,
        (_, k) => k.clone().unwrap_or_default().into_bytes(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| cx.err(&key("cert_file"), format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(cx.err(&key("cert_file"), "no certificate in the file"));
    }
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| cx.err(&key("key_file"), format!("not a PEM private key: {e}")))?;

    if t.client_allowed_sans
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(cx.err(
            &key("client_allowed_sans"),
            "not supported by cairn; remove it",
        ));
    }
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = &t.cipher_suites {
        provider.cipher_suites = cipher_suites(cx, &key("cipher_suites"), names, &provider)?;
    }
    if let Some(names) = &t.curve_preferences {
        provider.kx_groups = curves(cx, &key("curve_preferences"), names, &provider)?;
    }
    let provider = Arc::new(provider);

    let min = match &t.min_version {
        Some(v) => version(cx, &key("min_version"), v)?,
        None => 12,
    };
    let max = match &t.max_version {
        Some(v) => version(cx, &key("max_version"), v)?,
        None => 13,
    };
    if max < 12 {
        return Err(cx.err(
            &key("max_version"),
            "cairn speaks TLS12 and TLS13 only; max_version must be one of them",
        ));
    }
    if min > max {
        return Err(cx.err(&key("min_version"), "min_version is above max_version"));
    }
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if min <= 13 && max >= 13 {
        versions.push(&rustls::version::TLS13);
    }
    if max >= 12 && min <= 12 {
        versions.push(&rustls::version::TLS12);
    }

    let ca_pem = match (&t.client_ca_file, &t.client_ca) {
        (Some(_), Some(_)) => {
            return Err(cx.err(
                &key("client_ca"),
                "set client_ca or client_ca_file, not both",
            ))
        }
        (Some(p), None) if !p.is_empty() => Some(cx.read(&key("client_ca_file"), p)?),
        (None, Some(c)) if !c.is_empty() => Some(c.clone().into_bytes()),
        _ => None,
    };
    let auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let auth_key = key("client_auth_type");
    let verify = match auth {
        "" | "NoClientCert" => None,
        "VerifyClientCertIfGiven" => Some(true),
        "RequireAndVerifyClientCert" => Some(false),
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(cx.err(
                &auth_key,
                format!("{auth} (a client certificate nobody verifies) is not supported by cairn; use VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
            ))
        }
        other => {
            return Err(cx.err(
                &auth_key,
                format!("invalid client_auth_type {other:?}; expected NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
            ))
        }
    };
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| cx.err(&key("min_version"), e.to_string()))?;
    let builder = match (verify, ca_pem) {
        (None, Some(_)) => {
            return Err(cx.err(
                &key("client_ca_file"),
                "client CAs are configured without a client_auth_type",
            ))
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(cx.err(&auth_key, format!("{auth} needs client_ca_file")));
        }
        (Some(optional), Some(pem)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| {
                    cx.err(
                        &key("client_ca_file"),
                        format!("not a PEM certificate: {e}"),
                    )
                })?;
                roots
                    .add(c)
                    .map_err(|e| cx.err(&key("client_ca_file"), e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(cx.err(&key("client_ca_file"), "no certificate in the file"));
            }
            let mut v =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            if optional {
                v = v.allow_unauthenticated();
            }
            let v = v
                .build()
                .map_err(|e| cx.err(&key("client_ca_file"), e.to_string()))?;
            builder.with_client_cert_verifier(v)
        }
    };
    let mut cfg = builder.with_single_cert(certs, private_key).map_err(|e| {
        cx.err(
            &key("key_file"),
            format!("certificate and key do not fit together: {e}"),
        )
    })?;
    cfg.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(cfg)))
}

/// Go's names for TLS 1.2 suites (TLS 1.3 suites cannot be chosen in Go
/// either, so all of them stay). Go also spells the ChaCha suites without
/// the `_SHA256` suffix.
fn cipher_suites(
    cx: &Ctx<'_>,
    key: &str,
    names: &[String],
    p: &CryptoProvider,
) -> Result<Vec<rustls::SupportedCipherSuite>, ConfigError> {
    let tls12: Vec<_> = p
        .cipher_suites
        .iter()
        .filter(|s| s.tls13().is_none())
        .collect();
    let mut out: Vec<rustls::SupportedCipherSuite> = p
        .cipher_suites
        .iter()
        .filter(|s| s.tls13().is_some())
        .copied()
        .collect();
    for name in names {
        let want = if name.ends_with("CHACHA20_POLY1305") {
            format!("{name}_SHA256")
        } else {
            name.clone()
        };
        match tls12.iter().find(|s| format!("{:?}", s.suite()) == want) {
            Some(s) => out.push(**s),
            None => {
                let offered: Vec<String> =
                    tls12.iter().map(|s| format!("{:?}", s.suite())).collect();
                return Err(cx.err(
                    key,
                    format!(
                        "cipher suite {name:?} is not offered; cairn (rustls) offers: {}",
                        offered.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(out)
}

fn curves(
    cx: &Ctx<'_>,
    key: &str,
    names: &[String],
    p: &CryptoProvider,
) -> Result<Vec<&'static dyn rustls::crypto::SupportedKxGroup>, ConfigError> {
    let mut out = Vec::new();
    for name in names {
        let group = match name.as_str() {
            "X25519" => rustls::NamedGroup::X25519,
            "CurveP256" => rustls::NamedGroup::secp256r1,
            "CurveP384" => rustls::NamedGroup::secp384r1,
            _ => {
                return Err(cx.err(
                    key,
                    format!("curve {name:?} is not offered; cairn (rustls) offers: X25519, CurveP256, CurveP384"),
                ))
            }
        };
        if let Some(g) = p.kx_groups.iter().find(|g| g.name() == group) {
            out.push(*g);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse(text, "web.yml", Path::new("/nonexistent")) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(e) => e.to_string(),
        }
    }

    // bcrypt of "secret", cost 4 (a test need not be slow).
    const HASH: &str = "$2y$04$EQrToDZ/8wF8qZpShhExoO.g5qm2BI4GGnRkrYUQyKFP8UegEGiMu";

    #[test]
    fn empty_file_is_plain_http_without_auth() {
        for t in ["", "# nothing\n", "---\n"] {
            let w = parse(t, "web.yml", Path::new(".")).unwrap();
            assert!(w.tls.is_none() && w.users.is_empty() && w.headers.is_empty());
        }
    }

    #[test]
    fn users_and_headers() {
        let t = format!(
            "basic_auth_users:\n  alice: {HASH}\nhttp_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\n"
        );
        let w = parse(&t, "web.yml", Path::new(".")).unwrap();
        assert_eq!(w.users.len(), 1);
        assert_eq!(w.headers.len(), 1);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = err("basic_auth_users: {}\ntls_server_config:\n  cert_file: a\n  client_auth: x\n");
        assert!(e.starts_with("web.yml:4:"), "{e}");
        assert!(e.contains("tls_server_config.client_auth"), "{e}");
        let e = err("\n\ntls_sever_config:\n  cert_file: a\n");
        assert!(e.starts_with("web.yml:3:"), "{e}");
        assert!(e.contains("tls_sever_config"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key_and_line() {
        let e = err("basic_auth_users:\n  bob: plain-password\n");
        assert!(
            e.starts_with("web.yml:2:") && e.contains("basic_auth_users.bob"),
            "{e}"
        );
        let e = err("http_server_config:\n  headers:\n    X-Frame-Options: allow\n");
        assert!(e.starts_with("web.yml:3:") && e.contains("deny"), "{e}");
        let e = err("http_server_config:\n  headers:\n    Server: x\n");
        assert!(e.contains("can not be configured"), "{e}");
        let e = err("tls_server_config:\n  cert_file: c.pem\n");
        assert!(e.contains("missing key_file"), "{e}");
        let e = err("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n");
        assert!(
            e.starts_with("web.yml:2:") && e.contains("/nonexistent/c.pem"),
            "{e}"
        );
        let e = err("rate_limit:\n  interval: 1s\n");
        assert!(
            e.starts_with("web.yml:1:") && e.contains("not supported"),
            "{e}"
        );
        let e = err("basic_auth_users: [1, 2]\n");
        assert!(e.starts_with("web.yml:1:"), "{e}");
    }
}
