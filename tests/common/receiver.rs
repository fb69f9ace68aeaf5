//! A Prometheus 2.42 that only receives remote writes, on a fixed port and
//! storage directory so a test can stop it (an outage) and start it again
//! on the address cairn knows; optionally behind basic auth (its
//! `--web.config.file`), which it then asks of every request.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::http::{get_with, urlencode};
use super::{free_port, tool, Proc, Tool};

pub struct Receiver {
    pub port: u16,
    pub dir: PathBuf,
    /// The `Authorization` header value the receiver asks for, if any.
    authorization: Option<String>,
}

impl Receiver {
    pub fn new(dir: &Path) -> Receiver {
        let dir = dir.join("prometheus");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("prometheus.yml"),
            "global:\n  scrape_interval: 15s\n",
        )
        .expect("write prometheus.yml");
        Receiver {
            port: free_port(),
            dir,
            authorization: None,
        }
    }

    /// A receiver that answers 401 to any request without basic auth
    /// `user`:`password` (a bcrypt hash in its web config, as
    /// exporter-toolkit wants).
    pub fn with_basic_auth(dir: &Path, user: &str, password: &str) -> Receiver {
        let mut rx = Receiver::new(dir);
        // Cost 4 (the least bcrypt allows): every request is checked.
        let hash = bcrypt::hash(password, 4).expect("bcrypt");
        std::fs::write(
            rx.dir.join("web.yml"),
            format!("basic_auth_users:\n  {user}: '{hash}'\n"),
        )
        .expect("write web.yml");
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        rx.authorization = Some(format!("Basic {token}"));
        rx
    }

    fn get(&self, url: &str) -> std::io::Result<super::http::Response> {
        match &self.authorization {
            Some(a) => get_with(url, &[("Authorization", a)]),
            None => get_with(url, &[]),
        }
    }

    pub fn start(&self) -> Proc {
        let mut cmd = Command::new(tool(Tool::Prometheus));
        cmd.arg(format!(
            "--config.file={}",
            self.dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            self.dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
        .arg("--web.enable-remote-write-receiver")
        .current_dir(&self.dir);
        if self.authorization.is_some() {
            cmd.arg(format!(
                "--web.config.file={}",
                self.dir.join("web.yml").display()
            ));
        }
        let mut p = Proc::spawn("prometheus", &mut cmd);
        let ready = format!("http://127.0.0.1:{}/-/ready", self.port);
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = p.exited() {
                panic!("prometheus exited ({s}); its output:\n{}", p.output());
            }
            match self.get(&ready) {
                Ok(r) if r.status == 200 => return p,
                _ if Instant::now() < end => sleep(Duration::from_millis(100)),
                r => panic!(
                    "prometheus not ready within 60 s ({:?}); its output:\n{}",
                    r.map(|r| r.status),
                    p.output()
                ),
            }
        }
    }

    pub fn write_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/write", self.port)
    }

    /// The JSON `data.result` of an instant query.
    pub fn query(&self, q: &str) -> Result<Vec<serde_json::Value>, String> {
        let url = format!(
            "http://127.0.0.1:{}/api/v1/query?query={}",
            self.port,
            urlencode(q)
        );
        let r = self.get(&url).map_err(|e| e.to_string())?;
        let v: serde_json::Value =
            serde_json::from_str(&r.text()).map_err(|e| format!("{e}: {}", r.text()))?;
        if v["status"] != "success" {
            return Err(format!("status {}: {}", r.status, r.text()));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}
