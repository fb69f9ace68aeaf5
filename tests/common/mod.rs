//! Helpers shared by the whole-binary tests: finding the cairn, node_exporter
//! and Prometheus binaries, running them as child processes that die with the
//! test, a minimal HTTP client, a text-format parser and the node_exporter
//! parity comparison.
//!
//! Must never: skip a test because a tool is missing (a skipped end-to-end
//! test is a defect: panic and say to run scripts/test.sh), or reach any
//! address but loopback.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

pub mod agent;
pub mod agent_mode;
pub mod expo;
pub mod exporters;
pub mod http;
pub mod parity;
pub mod parity_run;
pub mod receiver;
pub mod tls;

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The cairn binary cargo built for this test run.
pub fn cairn_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cairn"))
}

/// The crate root (for fixtures and packaging files).
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// External programs the end-to-end tests run.
#[derive(Debug, Clone, Copy)]
pub enum Tool {
    NodeExporter,
    Prometheus,
    Promtool,
    VictoriaMetrics,
    RedisServer,
    RedisExporter,
    PostgresExporter,
}

impl Tool {
    fn env_var(self) -> &'static str {
        match self {
            Tool::NodeExporter => "CAIRN_NODE_EXPORTER",
            Tool::Prometheus => "CAIRN_PROMETHEUS",
            Tool::Promtool => "CAIRN_PROMTOOL",
            Tool::VictoriaMetrics => "CAIRN_VICTORIA_METRICS",
            Tool::RedisServer => "CAIRN_REDIS_SERVER",
            Tool::RedisExporter => "CAIRN_REDIS_EXPORTER",
            Tool::PostgresExporter => "CAIRN_POSTGRES_EXPORTER",
        }
    }

    /// Names on PATH, Debian's first.
    fn names(self) -> &'static [&'static str] {
        match self {
            Tool::NodeExporter => &["prometheus-node-exporter", "node_exporter"],
            Tool::Prometheus => &["prometheus"],
            Tool::Promtool => &["promtool"],
            Tool::VictoriaMetrics => &["victoria-metrics"],
            Tool::RedisServer => &["redis-server"],
            Tool::RedisExporter => &["prometheus-redis-exporter", "redis_exporter"],
            Tool::PostgresExporter => &["prometheus-postgres-exporter", "postgres_exporter"],
        }
    }
}

pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Where `tool` is: `$CAIRN_*` if set, else on PATH, else unpacked by
/// scripts/test.sh in target/deps. Panics (never skips) when it is nowhere.
pub fn tool(t: Tool) -> PathBuf {
    if let Some(v) = std::env::var_os(t.env_var()) {
        let p = PathBuf::from(v);
        assert!(
            is_executable(&p),
            "{}={} is not an executable file; run scripts/test.sh, which unpacks it into target/deps",
            t.env_var(),
            p.display()
        );
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in t.names() {
            let p = dir.join(name);
            if is_executable(&p) {
                return p;
            }
        }
    }
    for name in t.names() {
        let p = repo_path("target/deps/usr/bin").join(name);
        if is_executable(&p) {
            return p;
        }
    }
    panic!(
        "{:?} not found: ${} is unset, none of {:?} is on PATH or in target/deps/usr/bin. \
         Run scripts/test.sh, which unpacks it from Debian's packages into target/deps and \
         runs the tests.",
        t,
        t.env_var(),
        t.names()
    );
}

/// The host's name as the kernel reports it: what cairn sends as
/// `instance` unless the configuration says otherwise.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read /proc/sys/kernel/hostname")
        .trim_end()
        .to_owned()
}

/// A loopback port nobody listens on right now. The listener is closed
/// before returning, so there is a small window for another process to take
/// it; the kernel hands out ephemeral ports round-robin, which keeps that
/// unlikely.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing
/// test never leaves servers behind. Its stdout and stderr go to a file,
/// which cannot fill up and block the child the way an unread pipe can.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("output.log");
        let f = File::create(&log).expect("create log file");
        let f2 = f.try_clone().expect("clone log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(f))
            .stderr(Stdio::from(f2))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_owned(),
            child,
            log,
            _dir: dir,
        }
    }

    /// What the process wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits up to `timeout` for the process to end.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            if Instant::now() >= end {
                return None;
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Polls `url` until it answers 200, for at most `timeout`. Panics with
    /// the process' output if it exits first or never answers.
    pub fn wait_ready(&mut self, url: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exited() {
                panic!(
                    "{} exited ({s}) before {url} answered; its output:\n{}",
                    self.name,
                    self.output()
                );
            }
            let last = match http::get(url) {
                Ok(r) if r.status == 200 => return,
                Ok(r) => format!("status {}", r.status),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= end {
                panic!(
                    "{} did not answer 200 on {url} within {timeout:?} (last: {last}); its output:\n{}",
                    self.name,
                    self.output()
                );
            }
            sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cairn` serving on 127.0.0.1:`port` with `args`, and waits until
/// /-/healthy answers.
pub fn spawn_cairn(port: u16, args: &[&str]) -> Proc {
    let mut cmd = Command::new(cairn_bin());
    cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(args);
    let mut p = Proc::spawn("cairn", &mut cmd);
    p.wait_ready(
        &format!("http://127.0.0.1:{port}/-/healthy"),
        Duration::from_secs(20),
    );
    p
}

/// Starts node_exporter on 127.0.0.1:`port` with `args`, and waits until
/// /metrics answers.
pub fn spawn_node_exporter(port: u16, args: &[&str]) -> Proc {
    let mut cmd = Command::new(tool(Tool::NodeExporter));
    cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(args);
    let mut p = Proc::spawn("node_exporter", &mut cmd);
    p.wait_ready(
        &format!("http://127.0.0.1:{port}/metrics"),
        Duration::from_secs(20),
    );
    p
}

/// Runs cairn to completion with `args` (bounded: a hung cairn fails the
/// test instead of hanging it).
pub fn run_cairn(args: &[&str]) -> Output {
    run_bounded(
        Command::new(cairn_bin()).args(args),
        Duration::from_secs(60),
    )
}

/// Runs `cmd` to completion, killing it and panicking after `timeout`.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("wait for child"),
        Err(_) => {
            // SAFETY: kill(2) on the pid of our own still-unreaped child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
    }
}

/// Runs `cmd` with `input` on its standard input (bounded).
pub fn run_with_stdin(cmd: &mut Command, input: &[u8], timeout: Duration) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    // Write from a thread: the child may fill its output pipes before it
    // has read all of its input.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("wait for child"),
        Err(_) => {
            // SAFETY: kill(2) on the pid of our own still-unreaped child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
    };
    let _ = writer.join();
    out
}

/// Lossy UTF-8 of a byte buffer, for messages and assertions.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
