//! The web configuration file, whole binary: HTTPS with a self-signed
//! certificate made by `openssl`, a bcrypt user made by `htpasswd -B`
//! (Debian's apache2-utils; scripts/test.sh installs both), a client
//! certificate, a bad file refused at start, by check-config and on SIGHUP.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{cairn_bin, free_port, run_bounded, tls, Proc};

fn run(cmd: &mut Command) -> String {
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A self-signed server certificate for 127.0.0.1, and a CA that signs one
/// client certificate.
fn make_certs(dir: &Path) {
    tls::make_self_signed(
        dir,
        "server",
        "/CN=127.0.0.1",
        &["-addext", "subjectAltName=IP:127.0.0.1"],
    );
    tls::make_ca(dir);
    tls::make_signed(
        dir,
        "client",
        "/CN=scraper",
        "extendedKeyUsage=clientAuth\n",
    );
}

/// `htpasswd -nbB user password` → the bcrypt hash.
fn bcrypt_hash(user: &str, password: &str) -> String {
    let out = run(Command::new("htpasswd").args(["-nbBC", "5", user, password]));
    out.trim()
        .split_once(':')
        .map(|(_, h)| h.to_owned())
        .expect("htpasswd output user:hash")
}

/// What curl got: (status code, response headers). Status 0: no HTTP
/// answer (TLS refused, connection closed).
fn curl(dir: &Path, url: &str, extra: &[&str]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.current_dir(dir).args([
        "-sS",
        "--max-time",
        "20",
        "--cacert",
        "server.crt",
        "-o",
        "/dev/null",
        "-D",
        "-",
        "-w",
        "\\n%{http_code}",
    ]);
    cmd.args(extra).arg(url);
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (headers, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    (
        code.trim().parse().unwrap_or(0),
        headers.to_ascii_lowercase(),
    )
}

fn spawn(port: u16, web: &Path) -> Proc {
    let mut cmd = Command::new(cairn_bin());
    cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--web.config.file={}", web.display()));
    Proc::spawn("cairn", &mut cmd)
}

fn wait_https(p: &mut Proc, dir: &Path, url: &str, extra: &[&str]) {
    for _ in 0..200 {
        if let Some(s) = p.exited() {
            panic!("cairn exited ({s}): {}", p.output());
        }
        if curl(dir, url, extra).0 != 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("cairn never answered on {url}: {}", p.output());
}

#[test]
fn https_with_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_certs(d);
    let hash = bcrypt_hash("prometheus", "s3cret pass");
    let web = d.join("web.yml");
    // Relative paths are relative to the file, as in exporter-toolkit.
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             basic_auth_users:\n  prometheus: {hash}\n\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let mut p = spawn(port, &web);
    let url = format!("https://127.0.0.1:{port}/metrics");
    wait_https(&mut p, d, &url, &[]);

    let (code, headers) = curl(d, &url, &[]);
    assert_eq!(code, 401);
    assert!(headers.contains("www-authenticate: basic"), "{headers}");
    assert_eq!(curl(d, &url, &["-u", "prometheus:wrong"]).0, 401);
    assert_eq!(curl(d, &url, &["-u", "nobody:s3cret pass"]).0, 401);
    let (code, headers) = curl(d, &url, &["-u", "prometheus:s3cret pass"]);
    assert_eq!(code, 200);
    assert!(headers.contains("x-frame-options: deny"), "{headers}");
    let body = run_bounded(
        Command::new("curl").current_dir(d).args([
            "-sS",
            "--cacert",
            "server.crt",
            "-u",
            "prometheus:s3cret pass",
            &url,
        ]),
        Duration::from_secs(30),
    );
    assert!(String::from_utf8_lossy(&body.stdout).contains("node_scrape_collector_success"));
    // Every route is behind the password.
    assert_eq!(
        curl(d, &format!("https://127.0.0.1:{port}/-/healthy"), &[]).0,
        401
    );

    // Plain HTTP on the TLS port is refused: no HTTP answer at all.
    let plain = common::http::get(&format!("http://127.0.0.1:{port}/metrics"));
    assert!(
        !matches!(&plain, Ok(r) if r.status == 200),
        "plain http answered: {plain:?}"
    );
    assert!(p.exited().is_none(), "{}", p.output());
}

#[test]
fn client_certificate_required() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_certs(d);
    let web = d.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {0}/server.crt\n  key_file: {0}/server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {0}/ca.crt\n  \
             min_version: TLS13\n",
            d.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let mut p = spawn(port, &web);
    let url = format!("https://127.0.0.1:{port}/metrics");
    let cert = ["--cert", "client.crt", "--key", "client.key"];
    wait_https(&mut p, d, &url, &cert);
    assert_eq!(curl(d, &url, &cert).0, 200);
    assert_eq!(
        curl(d, &url, &[]).0,
        0,
        "served without a client certificate"
    );
    // A certificate from another CA (the server's own, self-signed) is refused too.
    assert_eq!(
        curl(d, &url, &["--cert", "server.crt", "--key", "server.key"]).0,
        0
    );
}

#[test]
fn bad_web_config_is_refused_at_start_by_check_config_and_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let web = d.join("web.yml");
    std::fs::write(&web, "basic_auth_users:\n  alice: not-a-hash\n").unwrap();
    // At start: exit non-zero naming file, line and key.
    let out = run_bounded(
        Command::new(cairn_bin()).args([
            "--web.listen-address=127.0.0.1:1",
            &format!("--web.config.file={}", web.display()),
        ]),
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("{}:2:", web.display())) && err.contains("basic_auth_users.alice"),
        "{err}"
    );
    // check-config follows [web] config_file (relative to the TOML file).
    let toml = d.join("cairn.toml");
    std::fs::write(&toml, "[web]\nconfig_file = \"web.yml\"\n").unwrap();
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  clientauthtype: x\n",
    )
    .unwrap();
    let out = run_bounded(
        Command::new(cairn_bin()).arg("check-config").arg(&toml),
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("web.yml:4:") && err.contains("tls_server_config.clientauthtype"),
        "{err}"
    );

    // On SIGHUP: a bad file keeps the running configuration.
    std::fs::write(&web, "").unwrap();
    let port = free_port();
    std::fs::write(
        &toml,
        format!("[web]\nlisten_address = \"127.0.0.1:{port}\"\nconfig_file = \"web.yml\"\n"),
    )
    .unwrap();
    let mut p = Proc::spawn(
        "cairn",
        Command::new(cairn_bin()).arg("--config").arg(&toml),
    );
    let url = format!("http://127.0.0.1:{port}/-/healthy");
    p.wait_ready(&url, Duration::from_secs(20));
    std::fs::write(&web, "basic_auth_users: [\n").unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(p.pid() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(700));
    assert!(p.exited().is_none(), "{}", p.output());
    let r = common::http::get(&url).unwrap();
    assert_eq!(r.status, 200, "the old (open) configuration still serves");
    assert!(
        p.output().contains("keeping the running one"),
        "{}",
        p.output()
    );
}
