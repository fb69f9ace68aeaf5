//! Certificates for the TLS tests, made by Debian's `openssl` (scripts/test.sh
//! installs it): a CA, and certificates it signs.
//!
//! Must never: reuse a key or certificate across tests (each makes its own
//! in its temp dir).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::run_bounded;

/// Runs `openssl args` in `dir`; panics with its stderr if it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = run_bounded(
        Command::new("openssl").current_dir(dir).args(args),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA in `dir`: ca.crt and ca.key.
pub fn make_ca(dir: &Path) {
    make_self_signed(dir, "ca", "/CN=cairn test CA", &[]);
}

/// A self-signed `<stem>.crt` and its `<stem>.key` in `dir`, for `subject`,
/// with `extra` arguments to `openssl req` (e.g. `-addext`).
pub fn make_self_signed(dir: &Path, stem: &str, subject: &str, extra: &[&str]) {
    let (key, crt) = (format!("{stem}.key"), format!("{stem}.crt"));
    let mut args = vec![
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject, "-keyout",
        &key, "-out", &crt,
    ];
    args.extend_from_slice(extra);
    openssl(dir, &args);
}

/// `<stem>.crt` and `<stem>.key` in `dir`, for `subject`, signed by the CA
/// `make_ca` made there, with the X.509 extensions `ext` (openssl's
/// extension-file syntax).
pub fn make_signed(dir: &Path, stem: &str, subject: &str, ext: &str) {
    let (key, csr, crt, extfile) = (
        format!("{stem}.key"),
        format!("{stem}.csr"),
        format!("{stem}.crt"),
        format!("{stem}.ext"),
    );
    openssl(
        dir,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", &key, "-out", &csr,
        ],
    );
    std::fs::write(dir.join(&extfile), ext).expect("write the extension file");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &extfile,
            "-out",
            &crt,
        ],
    );
}
