//! cairn's own `process_*` metrics, as client_golang's process collector
//! names them, so the same "exporter health" panels work.
//!
//! Reads the real /proc/self (not the configured procfs root: this is about
//! the agent, not the host it watches). Must never fail a collection: a file
//! it cannot read just leaves that metric out.

use std::io::Read;

use crate::metrics::{Emitter, MetricType};

pub struct ProcessMetrics {
    buf: String,
    ticks_per_sec: f64,
    page_size: f64,
    boot_time: Option<f64>,
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessMetrics {
    pub fn new() -> Self {
        // SAFETY: sysconf has no memory-safety preconditions.
        let (tck, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let mut p = ProcessMetrics {
            buf: String::with_capacity(1024),
            ticks_per_sec: if tck > 0 { tck as f64 } else { 100.0 },
            page_size: if page > 0 { page as f64 } else { 4096.0 },
            boot_time: None,
        };
        p.boot_time = p.read_boot_time();
        p
    }

    fn read(&mut self, path: &str) -> bool {
        self.buf.clear();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_string(&mut self.buf))
            .is_ok()
    }

    fn read_boot_time(&mut self) -> Option<f64> {
        if !self.read("/proc/stat") {
            return None;
        }
        self.buf
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
    }

    pub fn update(&mut self, out: &mut Emitter) {
        if self.read("/proc/self/stat") {
            // Fields after the parenthesised command name, which may itself
            // contain spaces and parentheses.
            let fields = self.buf.rfind(')').map(|i| &self.buf[i + 1..]);
            let mut f = [0.0f64; 22];
            let mut n = 0;
            for (slot, x) in f
                .iter_mut()
                .zip(fields.unwrap_or("").split_ascii_whitespace())
            {
                *slot = x.parse().unwrap_or(0.0);
                n += 1;
            }
            // f[0] is the state (field 3 of stat(5)); utime is field 14 → f[11].
            if n == f.len() {
                let (utime, stime, start, vsize, rss) = (f[11], f[12], f[19], f[20], f[21]);
                out.single(
                    "process_cpu_seconds_total",
                    "Total user and system CPU time spent in seconds.",
                    MetricType::Counter,
                    (utime + stime) / self.ticks_per_sec,
                );
                out.single(
                    "process_virtual_memory_bytes",
                    "Virtual memory size in bytes.",
                    MetricType::Gauge,
                    vsize,
                );
                out.single(
                    "process_resident_memory_bytes",
                    "Resident memory size in bytes.",
                    MetricType::Gauge,
                    rss * self.page_size,
                );
                if let Some(bt) = self.boot_time {
                    out.single(
                        "process_start_time_seconds",
                        "Start time of the process since unix epoch in seconds.",
                        MetricType::Gauge,
                        bt + start / self.ticks_per_sec,
                    );
                }
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            out.single(
                "process_open_fds",
                "Number of open file descriptors.",
                MetricType::Gauge,
                dir.count() as f64,
            );
        }
        let limit = |res| {
            let mut r = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: `r` is a valid, writable rlimit.
            let rc = unsafe { libc::getrlimit(res, &mut r) };
            let v = if r.rlim_cur == libc::RLIM_INFINITY {
                // client_golang reports "unlimited" as the largest uint64.
                18446744073709551615.0
            } else {
                r.rlim_cur as f64
            };
            (rc == 0).then_some(v)
        };
        if let Some(v) = limit(libc::RLIMIT_NOFILE) {
            out.single(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                MetricType::Gauge,
                v,
            );
        }
        if let Some(v) = limit(libc::RLIMIT_AS) {
            out.single(
                "process_virtual_memory_max_bytes",
                "Maximum amount of virtual memory available in bytes.",
                MetricType::Gauge,
                v,
            );
        }
    }
}
