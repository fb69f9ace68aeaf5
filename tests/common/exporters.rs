//! Real services from Debian for the agent-mode tests, started on loopback
//! in temporary directories: redis-server (no persistence) and PostgreSQL
//! 15 (its own cluster from `initdb`, run as an unprivileged user, since
//! postgres refuses to run as root), and the exporters Debian ships for
//! them.
//!
//! Must never: listen on anything but 127.0.0.1, use the host's own
//! clusters, configuration or default ports, or leave a server running
//! (every process is ended when its guard drops, also on panic).

use std::ffi::CString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::agent::wait_for;
use super::{free_port, is_executable, repo_path, run_bounded, tool, Proc, Tool};

/// How long a server gets to accept connections after it was started.
const START: Duration = Duration::from_secs(30);

/// The environment variable naming PostgreSQL's bin directory.
const POSTGRES_BIN_VAR: &str = "CAIRN_POSTGRES_BIN";
/// Where Debian puts PostgreSQL 15's programs (under / or target/deps).
const POSTGRES_BIN: &str = "usr/lib/postgresql/15/bin";

/// PostgreSQL's bin directory (`initdb`, `postgres`): `$CAIRN_POSTGRES_BIN`
/// if set, else Debian's installed one, else the one scripts/test.sh
/// unpacked in target/deps. Panics (never skips) when there is none.
pub fn postgres_bin_dir() -> PathBuf {
    let has_both =
        |d: &Path| is_executable(&d.join("postgres")) && is_executable(&d.join("initdb"));
    if let Some(v) = std::env::var_os(POSTGRES_BIN_VAR) {
        let d = PathBuf::from(v);
        assert!(
            has_both(&d),
            "{POSTGRES_BIN_VAR}={} holds no executable postgres and initdb; run scripts/test.sh, \
             which unpacks postgresql-15 into target/deps",
            d.display()
        );
        return d;
    }
    for d in [
        Path::new("/").join(POSTGRES_BIN),
        repo_path("target/deps").join(POSTGRES_BIN),
    ] {
        if has_both(&d) {
            return d;
        }
    }
    panic!(
        "PostgreSQL 15 not found: ${POSTGRES_BIN_VAR} is unset and neither /{POSTGRES_BIN} nor \
         target/deps/{POSTGRES_BIN} has postgres and initdb. Run scripts/test.sh, which unpacks \
         Debian's postgresql-15 into target/deps and runs the tests."
    );
}

/// The (uid, gid) postgres runs as: as root (which postgres refuses),
/// `nobody`'s; otherwise the test's own (None).
fn unprivileged() -> Option<(u32, u32)> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = CString::new("nobody").expect("no NUL");
    // SAFETY: a NUL-terminated name; the entry is read at once, before any
    // other getpw* call could overwrite it.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "running as root, and there is no user nobody to run postgres as"
    );
    // SAFETY: pw is a valid entry (checked above).
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// The first directory above `path` that users other than its owner
/// cannot enter, if any.
fn closed_to_others(path: &Path) -> Option<(PathBuf, u32)> {
    path.ancestors().skip(1).find_map(|dir| {
        let mode = dir.metadata().ok()?.permissions().mode();
        (mode & 0o001 == 0).then(|| (dir.to_owned(), mode & 0o7777))
    })
}

/// Copies the PostgreSQL installation around `bin` (Debian's layout:
/// `<prefix>/lib/postgresql/15/{bin,lib}` and `<prefix>/share/postgresql/15`)
/// into `to` with the same layout, which postgres finds its files by, and
/// returns the copy's bin directory. Only the two programs the tests run,
/// and no JIT bitcode.
fn copy_install(bin: &Path, to: &Path) -> PathBuf {
    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for e in std::fs::read_dir(from).expect("read_dir") {
            let e = e.expect("dir entry");
            let (src, dst) = (e.path(), to.join(e.file_name()));
            if e.file_type().expect("file type").is_dir() {
                if e.file_name() != "bitcode" {
                    copy_tree(&src, &dst);
                }
            } else {
                std::fs::copy(&src, &dst).expect("copy");
            }
        }
    }
    let prefix = bin
        .ancestors()
        .nth(4)
        .expect("bin is <prefix>/lib/postgresql/15/bin");
    let to_bin = to.join(POSTGRES_BIN);
    std::fs::create_dir_all(&to_bin).expect("mkdir");
    for prog in ["postgres", "initdb"] {
        std::fs::copy(bin.join(prog), to_bin.join(prog)).expect("copy");
    }
    for rel in ["lib/postgresql/15/lib", "share/postgresql/15"] {
        copy_tree(&prefix.join(rel), &to.join("usr").join(rel));
    }
    to_bin
}

/// A PostgreSQL 15 cluster of its own on 127.0.0.1:`port`, trust
/// authentication, superuser `postgres`; shut down (immediate) and deleted
/// when dropped.
pub struct Postgres {
    pub port: u16,
    // Before `_dir`: the server stops before its files are removed.
    proc: Proc,
    _dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Postgres {
        let mut bin = postgres_bin_dir();
        let user = unprivileged();
        let dir = tempfile::Builder::new()
            .prefix("cairn-pg")
            .tempdir()
            .expect("tempdir");
        let as_user = |cmd: &mut Command| {
            if let Some((uid, gid)) = user {
                cmd.uid(uid).gid(gid);
            }
        };
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the tempdir");
            if let Some((d, mode)) = closed_to_others(dir.path()) {
                panic!(
                    "the temporary directory {} is under {} (mode {mode:o}), which the user \
                     postgres runs as cannot enter; set TMPDIR to a directory others may search",
                    dir.path().display(),
                    d.display()
                );
            }
            // As in a checkout under /root: the unprivileged user cannot
            // reach the unpacked programs, so it runs a copy of them.
            if closed_to_others(&bin).is_some() {
                bin = copy_install(&bin, &dir.path().join("install"));
            }
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("--pgdata")
            .arg(&data)
            .args(["--auth=trust", "--username=postgres", "--no-locale"])
            .args(["--encoding=UTF8", "--no-sync"]);
        as_user(&mut initdb);
        let out = run_bounded(&mut initdb, Duration::from_secs(120));
        assert!(
            out.status.success(),
            "initdb failed ({}):\n{}{}",
            out.status,
            super::text(&out.stdout),
            super::text(&out.stderr)
        );
        let port = free_port();
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            // The unix socket in the cluster's own directory, TCP on
            // loopback only.
            .arg("-k")
            .arg(dir.path())
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            // A throwaway cluster: no durability wanted.
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"]);
        as_user(&mut cmd);
        let mut proc = Proc::spawn("postgres", &mut cmd);
        let end = Instant::now() + START;
        while !proc
            .output()
            .contains("database system is ready to accept connections")
        {
            if let Some(s) = proc.exited() {
                panic!("postgres exited ({s}):\n{}", proc.output());
            }
            assert!(
                Instant::now() < end,
                "postgres not ready within {START:?}:\n{}",
                proc.output()
            );
            sleep(Duration::from_millis(50));
        }
        Postgres {
            port,
            proc,
            _dir: dir,
        }
    }

    /// The connection string postgres_exporter reads from
    /// `DATA_SOURCE_NAME`.
    pub fn dsn(&self) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown, which ends every backend and frees
        // the shared memory; the Proc's SIGKILL is the fallback.
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.proc.pid() as libc::pid_t, libc::SIGQUIT);
        }
        let _ = self.proc.wait_exit(Duration::from_secs(10));
    }
}

/// A redis-server on 127.0.0.1:`port` that writes nothing to disk; killed
/// when dropped.
pub struct Redis {
    pub port: u16,
    // Before `_dir`: the server stops before its directory is removed.
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut cmd = Command::new(tool(Tool::RedisServer));
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            // No RDB snapshots, no AOF: nothing on disk.
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .args(["--daemonize", "no", "--loglevel", "warning"]);
        let mut proc = Proc::spawn("redis-server", &mut cmd);
        wait_for(START, "redis-server answers PING", || {
            if let Some(s) = proc.exited() {
                panic!("redis-server exited ({s}):\n{}", proc.output());
            }
            match redis_commands(port, &[&["PING"]])?.as_slice() {
                [p] if p == "+PONG" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
        Redis {
            port,
            _proc: proc,
            _dir: dir,
        }
    }

    /// Sends `cmds` on one connection (so `SELECT` holds for the commands
    /// after it) and returns each reply's line. Only for commands whose
    /// reply is one line (status, integer, error); an error reply is an
    /// `Err`.
    pub fn commands(&self, cmds: &[&[&str]]) -> Result<Vec<String>, String> {
        redis_commands(self.port, cmds)
    }
}

/// `Redis::commands` on 127.0.0.1:`port`.
fn redis_commands(port: u16, cmds: &[&[&str]]) -> Result<Vec<String>, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut req = Vec::new();
    for c in cmds {
        req.extend_from_slice(format!("*{}\r\n", c.len()).as_bytes());
        for arg in *c {
            req.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
    }
    s.write_all(&req).map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut b = [0u8; 512];
    while got.windows(2).filter(|w| w == b"\r\n").count() < cmds.len() {
        match s.read(&mut b) {
            Ok(0) => return Err(format!("connection closed after {got:?}")),
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
    let replies: Vec<String> = String::from_utf8_lossy(&got)
        .split("\r\n")
        .take(cmds.len())
        .map(str::to_owned)
        .collect();
    match replies.iter().find(|r| r.starts_with('-')) {
        Some(e) => Err(format!("redis: {e}")),
        None => Ok(replies),
    }
}

/// Debian's redis_exporter on 127.0.0.1:`port` for `redis`; waits until
/// it serves /metrics.
pub fn spawn_redis_exporter(port: u16, redis: &Redis) -> Proc {
    let mut cmd = Command::new(tool(Tool::RedisExporter));
    cmd.arg(format!("--redis.addr=redis://127.0.0.1:{}", redis.port))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let mut p = Proc::spawn("redis_exporter", &mut cmd);
    p.wait_ready(&format!("http://127.0.0.1:{port}/metrics"), START);
    p
}

/// Debian's postgres_exporter on 127.0.0.1:`port` for `pg`; waits until it
/// serves /metrics.
pub fn spawn_postgres_exporter(port: u16, pg: &Postgres) -> Proc {
    let mut cmd = Command::new(tool(Tool::PostgresExporter));
    cmd.env("DATA_SOURCE_NAME", pg.dsn())
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let mut p = Proc::spawn("postgres_exporter", &mut cmd);
    p.wait_ready(&format!("http://127.0.0.1:{port}/metrics"), START);
    p
}
