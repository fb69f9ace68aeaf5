//! `processes` (off by default, as upstream): node_processes_{pids,threads,
//! max_processes,max_threads} and node_processes_state{state},
//! node_processes_threads_state{thread_state}, as node_exporter 1.5.0, from
//! /proc/[pid]/stat, /proc/[pid]/task/[tid]/stat and
//! /proc/sys/kernel/{pid_max,threads-max}.
//!
//! Must never: allocate per process or per thread. Directories are listed
//! with getdents64 into one reused buffer (std's read_dir allocates a name
//! per entry, glibc's opendir a 32 KiB block per directory), stat files are
//! read with one read(2) into a reused buffer and only the state character
//! and num_threads are parsed. A process or thread that exits while being
//! walked (ENOENT, ESRCH) is skipped, as in node_exporter; any other error
//! or a stat line without `(comm)` fails the collector.
//!
//! A process whose stat says num_threads is 1 is not listed: its only task
//! is itself, which node_exporter counts with the process' own state, so
//! the result is the same without opening its task directory (this is most
//! of the saving on a host full of single-threaded daemons).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::Path;

use super::{read_into, CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

pub struct Processes {
    rd: Reader,
    pids: Vec<u32>,
    tids: Vec<u32>,
    small: String,
    proc_states: [u32; 128],
    thread_states: [u32; 128],
}

/// The reusable buffers of one walk over /proc.
struct Reader {
    /// getdents64 buffer.
    dents: Vec<u8>,
    /// Path of the file or directory being read, rebuilt in place.
    path: String,
    /// stat contents.
    stat: Vec<u8>,
}

impl Processes {
    pub fn new(_settings: &Settings) -> Self {
        Processes {
            rd: Reader {
                dents: vec![0; 32 * 1024],
                path: String::with_capacity(128),
                stat: vec![0; 1024],
            },
            pids: Vec::with_capacity(1024),
            tids: Vec::with_capacity(256),
            small: String::with_capacity(32),
            proc_states: [0; 128],
            thread_states: [0; 128],
        }
    }

    fn read_u64(&mut self, ctx: &Context, rel: &str) -> Result<u64, CollectError> {
        let path = ctx.proc_path(rel);
        read_into(&path, &mut self.small)?;
        self.small
            .trim()
            .parse()
            .map_err(|e: std::num::ParseIntError| CollectError::parse(&path, e.to_string()))
    }
}

fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// The all-digit entry names of `dir`, via getdents64 into `dents`.
fn list_numeric(dir: &Path, dents: &mut [u8], out: &mut Vec<u32>) -> io::Result<()> {
    out.clear();
    let f = File::open(dir)?;
    loop {
        // SAFETY: `dents` is a live, writable buffer of the length passed,
        // and the fd stays open (owned by `f`) for the call.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                f.as_raw_fd(),
                dents.as_mut_ptr(),
                dents.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n == 0 {
            return Ok(());
        }
        // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen;
        // u8 d_type; char d_name[]; }
        let mut off = 0;
        while off < n {
            let rec = &dents[off..n];
            let reclen = match rec.get(16..18) {
                Some(b) => usize::from(u16::from_ne_bytes([b[0], b[1]])),
                None => 0,
            };
            if reclen < 20 || reclen > rec.len() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bad dirent"));
            }
            let name = &rec[19..reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if !name.is_empty() && name.iter().all(u8::is_ascii_digit) {
                if let Some(id) = std::str::from_utf8(name).ok().and_then(|s| s.parse().ok()) {
                    out.push(id);
                }
            }
            off += reclen;
        }
    }
}

/// Reads a /proc stat file with one read(2): procfs answers a read at least
/// as large as the record with all of it, so a short read is the whole
/// file (the buffer grows for the rare record longer than it).
fn read_stat(path: &str, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut f = File::open(path)?;
    let mut n = 0;
    loop {
        let r = f.read(&mut buf[n..])?;
        n += r;
        if r == 0 || n < buf.len() {
            return Ok(n);
        }
        buf.resize(buf.len() * 2, 0);
    }
}

/// The state character and num_threads of a stat record: the fields after
/// the last `)` are `state ppid pgrp ... num_threads` (the 1st and 18th).
fn parse_stat(data: &[u8]) -> Option<(u8, u64)> {
    data.iter().position(|&b| b == b'(')?;
    let r = data.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(data.get(r + 1..)?).ok()?;
    let mut f = rest.split_ascii_whitespace();
    let state = f.next()?.as_bytes();
    let &[s] = state else { return None };
    if !s.is_ascii_graphic() {
        return None;
    }
    let threads = f.nth(16)?.parse().ok()?;
    Some((s, threads))
}

impl Reader {
    /// `<proc>/<pid>` plus `tail` into `self.path`. proc roots are UTF-8 in
    /// practice; a lossy root only makes the open fail (reported), never a
    /// wrong read.
    fn set_path(&mut self, proc: &Path, pid: u32, tid: Option<u32>, tail: &str) {
        self.path.clear();
        let _ = write!(self.path, "{}/{pid}", proc.display());
        if let Some(tid) = tid {
            let _ = write!(self.path, "/task/{tid}");
        }
        self.path.push_str(tail);
    }

    fn io_err(&self, source: io::Error) -> CollectError {
        CollectError::Io {
            path: self.path.clone().into(),
            source,
        }
    }

    /// One task's state and thread count; Ok(None) if it is gone.
    fn task(
        &mut self,
        proc: &Path,
        pid: u32,
        tid: Option<u32>,
    ) -> Result<Option<(u8, u64)>, CollectError> {
        self.set_path(proc, pid, tid, "/stat");
        match read_stat(&self.path, &mut self.stat) {
            Ok(n) => parse_stat(&self.stat[..n])
                .map(Some)
                .ok_or_else(|| CollectError::parse(Path::new(&self.path), "unexpected format")),
            Err(e) if vanished(&e) => Ok(None),
            Err(e) => Err(self.io_err(e)),
        }
    }

    /// The thread ids of `pid` into `out`; Ok(false) if it is gone.
    fn tasks(&mut self, proc: &Path, pid: u32, out: &mut Vec<u32>) -> Result<bool, CollectError> {
        self.set_path(proc, pid, None, "/task");
        match list_numeric(Path::new(&self.path), &mut self.dents, out) {
            Ok(()) => Ok(true),
            Err(e) if vanished(&e) => Ok(false),
            Err(e) => Err(self.io_err(e)),
        }
    }
}

fn state_label(s: usize) -> &'static str {
    const ASCII: &str = "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0 !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";
    ASCII.get(s..s + 1).unwrap_or("?")
}

impl Collector for Processes {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let proc = ctx.procfs.as_path();
        list_numeric(proc, &mut self.rd.dents, &mut self.pids).map_err(|source| {
            CollectError::Io {
                path: proc.to_owned(),
                source,
            }
        })?;
        self.proc_states = [0; 128];
        self.thread_states = [0; 128];
        let (mut pids, mut threads) = (0u64, 0u64);
        for &pid in &self.pids {
            let Some((state, nthreads)) = self.rd.task(proc, pid, None)? else {
                continue;
            };
            pids += 1;
            threads += nthreads;
            self.proc_states[usize::from(state)] += 1;
            if nthreads <= 1 {
                self.thread_states[usize::from(state)] += 1;
                continue;
            }
            if !self.rd.tasks(proc, pid, &mut self.tids)? {
                continue;
            }
            for &tid in &self.tids {
                // The main thread counts with the process' own state.
                let ts = if tid == pid {
                    state
                } else if let Some((ts, _)) = self.rd.task(proc, pid, Some(tid))? {
                    ts
                } else {
                    continue;
                };
                self.thread_states[usize::from(ts)] += 1;
            }
        }

        let max_threads = self.read_u64(ctx, "sys/kernel/threads-max")?;
        let max_pids = self.read_u64(ctx, "sys/kernel/pid_max")?;

        out.single(
            "node_processes_threads",
            "Allocated threads in system",
            MetricType::Gauge,
            threads as f64,
        );
        out.single(
            "node_processes_max_threads",
            "Limit of threads in the system",
            MetricType::Gauge,
            max_threads as f64,
        );
        let mut st = out.family(
            "node_processes_state",
            "Number of processes in each state.",
            MetricType::Gauge,
        );
        for (s, &n) in self.proc_states.iter().enumerate() {
            if n > 0 {
                st.sample(&[("state", state_label(s))], f64::from(n));
            }
        }
        let mut ts = out.family(
            "node_processes_threads_state",
            "Number of threads in each state.",
            MetricType::Gauge,
        );
        for (s, &n) in self.thread_states.iter().enumerate() {
            if n > 0 {
                ts.sample(&[("thread_state", state_label(s))], f64::from(n));
            }
        }
        out.single(
            "node_processes_pids",
            "Number of PIDs",
            MetricType::Gauge,
            pids as f64,
        );
        out.single(
            "node_processes_max_processes",
            "Number of max PIDs limit",
            MetricType::Gauge,
            max_pids as f64,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn run(case: &str) -> Result<String, CollectError> {
        render(
            &mut Processes::new(&Settings::default()),
            &fixture_ctx(&format!("processes/{case}")),
        )
    }

    /// init (S), a kernel thread (I), a zombie (Z), a 3-thread daemon whose
    /// threads are R, D and S, a pid whose stat vanished, a comm with
    /// spaces and parentheses, and non-pid entries in /proc.
    #[test]
    fn processes_normal() {
        assert_eq!(
            run("normal").unwrap(),
            "# HELP node_processes_max_processes Number of max PIDs limit\n\
             # TYPE node_processes_max_processes gauge\n\
             node_processes_max_processes 4194304\n\
             # HELP node_processes_max_threads Limit of threads in the system\n\
             # TYPE node_processes_max_threads gauge\n\
             node_processes_max_threads 63376\n\
             # HELP node_processes_pids Number of PIDs\n\
             # TYPE node_processes_pids gauge\n\
             node_processes_pids 5\n\
             # HELP node_processes_state Number of processes in each state.\n\
             # TYPE node_processes_state gauge\n\
             node_processes_state{state=\"I\"} 1\n\
             node_processes_state{state=\"S\"} 3\n\
             node_processes_state{state=\"Z\"} 1\n\
             # HELP node_processes_threads Allocated threads in system\n\
             # TYPE node_processes_threads gauge\n\
             node_processes_threads 7\n\
             # HELP node_processes_threads_state Number of threads in each state.\n\
             # TYPE node_processes_threads_state gauge\n\
             node_processes_threads_state{thread_state=\"D\"} 1\n\
             node_processes_threads_state{thread_state=\"I\"} 1\n\
             node_processes_threads_state{thread_state=\"R\"} 1\n\
             node_processes_threads_state{thread_state=\"S\"} 3\n\
             node_processes_threads_state{thread_state=\"Z\"} 1\n"
        );
    }

    #[test]
    fn processes_bad_stat_fails() {
        let e = run("garbled").unwrap_err();
        assert!(e.to_string().contains("unexpected format"), "{e}");
    }

    #[test]
    fn processes_missing_limit_fails() {
        assert!(run("no_limits").is_err());
    }

    #[test]
    fn stat_parsing() {
        let line = b"42 (a) b (c)) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 5 0 1 2 3";
        assert_eq!(parse_stat(line), Some((b'S', 5)));
        assert_eq!(parse_stat(b"42 (x) S 1"), None);
        assert_eq!(parse_stat(b""), None);
        assert_eq!(
            parse_stat(b"42 x S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17"),
            None
        );
    }

    /// The live /proc: this test process itself is counted, with its
    /// threads, and nothing fails.
    #[test]
    fn processes_live_proc() {
        let t = render(
            &mut Processes::new(&Settings::default()),
            &Context::default(),
        )
        .unwrap();
        assert!(t.contains("node_processes_pids "), "{t}");
        assert!(t.contains("thread_state=\"R\""), "{t}");
    }
}
