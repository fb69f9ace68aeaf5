//! The TLS part of cairn's outgoing HTTP clients (remote_write, scrapes,
//! http_sd) from a `tls_config`, read as Prometheus reads one: a
//! configured CA replaces the system roots, a client certificate and its
//! key go together, `insecure_skip_verify` turns verification off.
//!
//! `server_name`, as Prometheus: the TLS peer is named (SNI, and the name
//! its certificate must carry) by `server_name` while the connection goes
//! to the URL's own host and the request keeps it as its `Host`.
//!
//! Owns: only that part of a `reqwest::ClientBuilder` and the URL's peer
//! name; each caller keeps its own timeouts and headers. Must never: run
//! `apply` on the async runtime (it reads the certificate files).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use reqwest::header::HeaderValue;

use crate::config::TlsConfig;

/// `b` with `tls` applied; the error names the key and the file.
pub fn apply(
    mut b: reqwest::ClientBuilder,
    tls: &TlsConfig,
) -> Result<reqwest::ClientBuilder, String> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    if let Some(ca) = &tls.ca_file {
        let certs = reqwest::Certificate::from_pem_bundle(&read(ca)?)
            .map_err(|e| format!("tls_config.ca_file {}: {e}", ca.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "tls_config.ca_file {}: no certificate",
                ca.display()
            ));
        }
        b = b.tls_built_in_root_certs(false);
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => {
            let mut pem = read(c)?;
            pem.push(b'\n');
            pem.extend_from_slice(&read(k)?);
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| format!("tls_config cert_file/key_file: {e}"))?;
            b = b.identity(id);
        }
        (None, None) => {}
        _ => return Err("tls_config: cert_file and key_file go together".into()),
    }
    if tls.insecure_skip_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    Ok(b)
}

/// A client for `url` with `tls_config.server_name` set: what the caller
/// must send as `Host` (the URL's own `host[:port]`).
pub struct NamedPeer {
    pub host: Option<HeaderValue>,
}

/// Points `url` at `server_name` and has `b` resolve that name to the
/// URL's own host (resolved at each new connection, as Prometheus dials
/// it). reqwest takes the TLS peer name from the URL's host and has no
/// setting of its own for it; this gives the same bytes on the wire as
/// Prometheus' `tls_config.server_name`.
pub fn name_peer(
    b: reqwest::ClientBuilder,
    url: &mut reqwest::Url,
    server_name: &str,
) -> Result<(reqwest::ClientBuilder, NamedPeer), String> {
    let host = url
        .host_str()
        .ok_or_else(|| format!("{url}: no host"))?
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    url.set_host(Some(server_name))
        .map_err(|e| format!("tls_config.server_name {server_name:?}: {e}"))?;
    let resolver = PeerResolver {
        name: server_name.to_ascii_lowercase(),
        // host_str keeps an IPv6 literal's brackets, as "host:port" needs.
        addr: format!("{host}:{port}"),
    };
    Ok((
        b.dns_resolver(Arc::new(resolver)),
        NamedPeer {
            host: HeaderValue::from_str(&authority).ok(),
        },
    ))
}

/// Resolves the server name to the URL's own host; any other name (a
/// redirect's) as usual.
struct PeerResolver {
    name: String,
    addr: String,
}

impl reqwest::dns::Resolve for PeerResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let target = if name.as_str().eq_ignore_ascii_case(&self.name) {
            self.addr.clone()
        } else {
            // The connector puts the URL's port on what is returned.
            format!("{}:0", name.as_str())
        };
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target).await?.collect();
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::dns::Resolve;

    fn resolve(r: &PeerResolver, name: &str) -> Vec<SocketAddr> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let name: reqwest::dns::Name = name.parse().unwrap();
        rt.block_on(r.resolve(name)).unwrap().collect()
    }

    #[test]
    fn the_server_name_resolves_to_the_urls_own_host_which_stays_the_host_header() {
        for (url, host, addr) in [
            (
                "https://10.1.2.3:9100/metrics",
                "10.1.2.3:9100",
                "10.1.2.3:9100",
            ),
            ("https://[::1]:9100/m", "[::1]:9100", "[::1]:9100"),
            ("https://127.0.0.1/metrics", "127.0.0.1", "127.0.0.1:443"),
        ] {
            let mut u = reqwest::Url::parse(url).unwrap();
            let (_, peer) =
                name_peer(reqwest::Client::builder(), &mut u, "Metrics.Internal").unwrap();
            assert_eq!(u.host_str(), Some("metrics.internal"), "{url}");
            assert_eq!(u.path(), reqwest::Url::parse(url).unwrap().path());
            assert_eq!(peer.host.unwrap().to_str().unwrap(), host);
            let r = PeerResolver {
                name: "metrics.internal".into(),
                addr: addr.into(),
            };
            let want: SocketAddr = addr.parse().unwrap();
            assert_eq!(resolve(&r, "METRICS.internal"), vec![want], "{url}");
        }
    }

    #[test]
    fn other_names_resolve_as_usual() {
        let r = PeerResolver {
            name: "metrics.internal".into(),
            addr: "10.1.2.3:9100".into(),
        };
        let a = resolve(&r, "localhost");
        assert!(
            !a.is_empty() && a.iter().all(|a| a.ip().is_loopback()),
            "{a:?}"
        );
    }
}
