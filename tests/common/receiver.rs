//! A Prometheus 2.42 that only receives remote writes, on a fixed port and
//! storage directory so a test can stop it (an outage) and start it again
//! on the address cairn knows.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::http::{get, urlencode};
use super::{free_port, tool, Proc, Tool};

pub struct Receiver {
    pub port: u16,
    pub dir: PathBuf,
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
        let mut p = Proc::spawn("prometheus", &mut cmd);
        p.wait_ready(
            &format!("http://127.0.0.1:{}/-/ready", self.port),
            Duration::from_secs(60),
        );
        p
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
        let r = get(&url).map_err(|e| e.to_string())?;
        let v: serde_json::Value =
            serde_json::from_str(&r.text()).map_err(|e| format!("{e}: {}", r.text()))?;
        if v["status"] != "success" {
            return Err(format!("status {}: {}", r.status, r.text()));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}
