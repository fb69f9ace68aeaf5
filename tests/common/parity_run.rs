//! Running the node_exporter parity comparison: Debian's node_exporter
//! 1.5.0 as a server on a free loopback port, scraped right before and
//! right after one `cairn collect --once` with the same collectors, then
//! `parity::compare` (and `parity::coverage`) over the three.
//!
//! Shared by the integration test (tests/node_exporter_parity.rs) and the
//! command-line tool (examples/parity.rs, run by bench/parity.sh), so a
//! person sees exactly what the test checks. Self-contained on purpose (std
//! only): the tool cannot use the test-only helpers of `common`.
//!
//! Must never: reach anything but loopback, leave a node_exporter running
//! (it is killed when the `Server` is dropped), or hide a difference.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::expo::{self, Families};
use super::http;
use super::parity::{compare, coverage, Coverage, Diff, DiffKind};

/// The collectors compared strictly (names, types, HELP, label names,
/// series and values) with node_exporter 1.5.0: every collector cairn has
/// that 1.5.0 also has (kernel_hung and watchdog are newer than 1.5.0,
/// which refuses their flags). A new collector is added here and nowhere
/// else.
pub const STRICT_COLLECTORS: &[&str] = &[
    "arp",
    "bonding",
    "btrfs",
    "conntrack",
    "cpu",
    "cpufreq",
    "diskstats",
    "dmi",
    "edac",
    "entropy",
    "filefd",
    "filesystem",
    "hwmon",
    "interrupts",
    "loadavg",
    "mdadm",
    "meminfo",
    "netclass",
    "netdev",
    "netstat",
    "nvme",
    "os",
    "powersupplyclass",
    "pressure",
    "processes",
    "rapl",
    "schedstat",
    "selinux",
    "sockstat",
    "softnet",
    "stat",
    "tcpstat",
    "textfile",
    "thermal_zone",
    "time",
    "timex",
    "udp_queues",
    "uname",
    "vmstat",
    "xfs",
];

/// Off-by-default outputs of the strict collectors, turned on in both so
/// they are compared too (flags both 1.5.0 and cairn know).
pub const STRICT_OPTIONS: &[&str] = &[
    "--collector.cpu.info",
    "--collector.cpu.info.flags-include=.*",
    "--collector.cpu.info.bugs-include=.*",
    "--collector.stat.softirq",
];

/// Off by default in both, but read by the Node Exporter Full dashboard:
/// the default-set comparison turns them on (and systemd off) in both.
pub const DASHBOARD_EXTRAS: &[&str] = &["tcpstat", "processes", "interrupts"];

/// Flags that give node_exporter 1.5.0 upstream master's defaults, which
/// cairn follows, where Debian's package or 1.5.0 differ. Only flags 1.5.0
/// knows: it refuses unknown ones.
pub const NODE_EXPORTER_UPSTREAM_DEFAULTS: &[&str] = &[
    r"--collector.diskstats.device-exclude=^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$",
    "--collector.netdev.device-exclude=",
    "--collector.filesystem.mount-points-exclude=^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)",
    "--collector.filesystem.fs-types-exclude=^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$",
    "--collector.netstat.fields=^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|TCPOFOQueue|TCPRcvQDrop)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$",
];

/// What to compare.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Only these collectors in both (`--collector.disable-defaults`);
    /// every difference counts.
    Strict(Vec<String>),
    /// Each exporter's default collectors, plus `DASHBOARD_EXTRAS`, minus
    /// node_exporter's systemd: what a user swapping one for the other
    /// gets. Judged by family coverage.
    Defaults,
}

#[derive(Debug, Clone)]
pub struct Setup {
    pub cairn: PathBuf,
    pub node_exporter: PathBuf,
    pub mode: Mode,
    /// `--collector.textfile.directory` for both ("" = none, upstream's
    /// default; Debian's package defaults to a directory).
    pub textfile_dir: String,
    /// Value differences can come from the host changing faster than the
    /// tolerance allows (a parallel build allocating memory); a real bug
    /// repeats. Runs again while all differences are in values.
    pub attempts: usize,
}

impl Setup {
    pub fn node_exporter_args(&self, port: u16) -> Vec<String> {
        let mut v = vec![format!("--web.listen-address=127.0.0.1:{port}")];
        match &self.mode {
            Mode::Strict(cs) => {
                v.push("--collector.disable-defaults".into());
                v.extend(cs.iter().map(|c| format!("--collector.{c}")));
                v.extend(strict_options(cs));
            }
            Mode::Defaults => {
                v.push("--no-collector.systemd".into());
                v.extend(DASHBOARD_EXTRAS.iter().map(|c| format!("--collector.{c}")));
            }
        }
        v.extend(
            NODE_EXPORTER_UPSTREAM_DEFAULTS
                .iter()
                .map(|s| s.to_string()),
        );
        v.push(format!(
            "--collector.textfile.directory={}",
            self.textfile_dir
        ));
        v
    }

    pub fn cairn_args(&self) -> Vec<String> {
        let mut v = vec!["collect".to_owned(), "--once".to_owned()];
        match &self.mode {
            Mode::Strict(cs) => {
                v.push("--collector.disable-defaults".into());
                v.extend(cs.iter().map(|c| format!("--collector.{c}")));
                v.extend(strict_options(cs));
            }
            Mode::Defaults => {
                v.extend(DASHBOARD_EXTRAS.iter().map(|c| format!("--collector.{c}")));
            }
        }
        v.push(format!(
            "--collector.textfile.directory={}",
            self.textfile_dir
        ));
        v
    }
}

/// The `STRICT_OPTIONS` of the collectors in `cs`.
fn strict_options(cs: &[String]) -> impl Iterator<Item = String> + '_ {
    STRICT_OPTIONS
        .iter()
        .filter(|o| {
            let collector = o.trim_start_matches("--collector.").split('.').next();
            cs.iter().any(|c| Some(c.as_str()) == collector)
        })
        .map(|o| o.to_string())
}

/// A child process killed and reaped when dropped; its output goes to a
/// file (an unread pipe could block it).
pub struct Server {
    child: Child,
    log: PathBuf,
    pub port: u16,
}

impl Server {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A loopback port free right now (closed again before returning).
pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

/// Starts node_exporter and waits until /metrics answers.
pub fn start_node_exporter(bin: &Path, args: &[String], port: u16) -> Result<Server, String> {
    let log = std::env::temp_dir().join(format!(
        "cairn-parity-node-exporter-{}-{port}.log",
        std::process::id()
    ));
    let f = File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
    let f2 = f.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(f))
        .stderr(Stdio::from(f2))
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let mut server = Server { child, log, port };
    let url = format!("http://127.0.0.1:{port}/metrics");
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!(
                "node_exporter exited ({status}) before {url} answered; its output:\n{}",
                server.output()
            ));
        }
        let last = match http::get(&url) {
            Ok(r) if r.status == 200 => return Ok(server),
            Ok(r) => format!("status {}", r.status),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= end {
            return Err(format!(
                "node_exporter did not answer 200 on {url} within 20s (last: {last}); its output:\n{}",
                server.output()
            ));
        }
        sleep(Duration::from_millis(100));
    }
}

/// GET and parse one exposition.
pub fn scrape(url: &str) -> Result<Families, String> {
    let r = http::get(url).map_err(|e| format!("GET {url}: {e}"))?;
    if r.status != 200 {
        return Err(format!("GET {url}: status {}: {}", r.status, r.text()));
    }
    expo::parse(&r.text()).map_err(|e| format!("{url} does not parse: {e}"))
}

/// Runs `cairn collect --once ...` (bounded: a hung cairn is an error, not
/// a hang) and parses what it printed.
pub fn cairn_once(bin: &Path, args: &[String]) -> Result<(Families, String), String> {
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.map_err(|e| format!("waiting for cairn: {e}"))?,
        Err(_) => {
            // SAFETY: kill(2) on the pid of our own still-unreaped child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            return Err(format!("cairn {args:?} did not finish within 60s"));
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!(
            "cairn {args:?} failed ({}); stderr:\n{stderr}",
            out.status
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let fams = expo::parse(&text)
        .map_err(|e| format!("cairn's output does not parse: {e}\nstderr:\n{stderr}"))?;
    Ok((fams, stderr))
}

/// One comparison's result.
pub struct Outcome {
    /// node_exporter's `version` label (the reference must be 1.5.0).
    pub version: Option<String>,
    pub before: Families,
    pub cairn: Families,
    pub after: Families,
    pub diffs: Vec<Diff>,
    pub coverage: Coverage,
    pub attempts: usize,
    pub cairn_stderr: String,
}

/// Starts node_exporter, compares, stops it.
pub fn run(setup: &Setup) -> Result<Outcome, String> {
    let port = free_port()?;
    let ne = start_node_exporter(&setup.node_exporter, &setup.node_exporter_args(port), port)?;
    let url = format!("http://127.0.0.1:{}/metrics", ne.port);
    let first = scrape(&url)?;
    let version = first
        .get("node_exporter_build_info")
        .and_then(|f| f.samples.first())
        .and_then(|s| s.labels.get("version"))
        .cloned();
    let cairn_args = setup.cairn_args();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let before = scrape(&url)?;
        let (cairn, cairn_stderr) = cairn_once(&setup.cairn, &cairn_args)?;
        let after = scrape(&url)?;
        let diffs = compare(&before, &cairn, &after);
        let only_values = !diffs.is_empty() && diffs.iter().all(|d| d.kind == DiffKind::Value);
        if only_values && attempt < setup.attempts.max(1) {
            continue;
        }
        let coverage = coverage(&before, &cairn, &after);
        return Ok(Outcome {
            version,
            before,
            cairn,
            after,
            diffs,
            coverage,
            attempts: attempt,
            cairn_stderr,
        });
    }
}

fn kind_title(k: DiffKind) -> &'static str {
    match k {
        DiffKind::MissingFamily => "families node_exporter has and cairn does not",
        DiffKind::ExtraFamily => "families only cairn has",
        DiffKind::Type => "TYPE differs",
        DiffKind::Help => "HELP differs",
        DiffKind::LabelNames => "label names differ",
        DiffKind::MissingSeries => "series missing in cairn",
        DiffKind::ExtraSeries => "series only in cairn",
        DiffKind::Value => "values outside node_exporter's before/after window (+ tolerance)",
    }
}

/// Every difference, grouped by kind, for a person to read.
pub fn report(o: &Outcome) -> String {
    let mut s = String::new();
    let mut last = None;
    for d in &o.diffs {
        if last != Some(d.kind) {
            let n = o.diffs.iter().filter(|x| x.kind == d.kind).count();
            s.push_str(&format!("{} ({n}):\n", kind_title(d.kind)));
            last = Some(d.kind);
        }
        s.push_str(&format!("  {d}\n"));
    }
    if o.diffs.is_empty() {
        s.push_str("no differences\n");
    }
    s
}
