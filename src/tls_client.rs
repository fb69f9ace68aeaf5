//! The TLS part of cairn's outgoing HTTP clients (remote_write, scrapes,
//! http_sd) from a `tls_config`, read as Prometheus reads one: a
//! configured CA replaces the system roots, a client certificate and its
//! key go together, `insecure_skip_verify` turns verification off.
//!
//! Owns: only that part of a `reqwest::ClientBuilder`; each caller keeps
//! its own timeouts, headers and `server_name` handling. Must never: run on
//! the async runtime (it reads the certificate files).

use std::path::PathBuf;

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
