//! Cost of the `containers` collector with many containers: CPU and wall
//! time per collection, heap allocations per warm collection, and RSS.
//!
//! cargo run --example containers_bench -- [v1|v2|live] [N] [ITERS]
//!   v1, v2: a synthetic cgroup tree of N Docker containers in a temp dir
//!           (page-cache reads; no kernel work to produce the files).
//!   live:   N real, empty cgroups made on this host (root, v1 or hybrid:
//!           memory, cpu, cpuacct, blkio, pids) under /cairn-bench, removed
//!           at the end; the kernel generates every file as it is read.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cairn::collector::containers::Containers;
use cairn::collector::{Collector, Context, Settings};
use cairn::metrics::Emitter;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}
#[global_allocator]
static A: Counting = Counting;

fn cpu_secs() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn status(key: &str) -> String {
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l[key.len()..].trim().to_string())
        .unwrap_or_default()
}

fn w(p: PathBuf, s: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, s).unwrap();
}

fn memstat_v1() -> String {
    let keys = [
        "cache",
        "rss",
        "rss_huge",
        "shmem",
        "mapped_file",
        "dirty",
        "writeback",
        "swap",
        "pgpgin",
        "pgpgout",
        "pgfault",
        "pgmajfault",
        "inactive_anon",
        "active_anon",
        "inactive_file",
        "active_file",
        "unevictable",
        "hierarchical_memory_limit",
        "hierarchical_memsw_limit",
    ];
    let mut s = String::new();
    for k in keys {
        s += &format!("{k} 123456\n");
    }
    for k in &keys[..17] {
        s += &format!("total_{k} 123456\n");
    }
    s
}

fn synth(root: &Path, v2: bool, n: usize) -> Context {
    let cg = "sys/fs/cgroup";
    if v2 {
        w(
            root.join("proc/self/mountinfo"),
            &format!("30 24 0:26 / /{cg} rw - cgroup2 cgroup2 rw\n"),
        );
    } else {
        let mut mi = String::new();
        for (i, c) in ["cpu,cpuacct", "memory", "blkio", "pids"]
            .iter()
            .enumerate()
        {
            mi += &format!(
                "{} 25 0:{} / /{cg}/{c} rw - cgroup cgroup rw,{c}\n",
                26 + i,
                22 + i
            );
        }
        w(root.join("proc/self/mountinfo"), &mi);
    }
    w(root.join("proc/stat"), "btime 1700000000\n");
    w(
        root.join("sys/dev/block/8:0/uevent"),
        "MAJOR=8\nMINOR=0\nDEVNAME=sda\n",
    );
    let base = root.join("root").join(cg);
    // Non-container cgroups too, as on a real host.
    for i in 0..40 {
        fs::create_dir_all(base.join(format!("user.slice/user-{i}.slice/session-{i}.scope")))
            .unwrap();
    }
    for i in 0..n {
        let id = format!("{:064x}", i + 1);
        let rel = format!("system.slice/docker-{id}.scope");
        w(
            root.join(format!(
                "root/var/lib/docker/containers/{id}/config.v2.json"
            )),
            &format!("{{\"Name\":\"/c{i}\",\"Config\":{{\"Image\":\"img:{i}\"}}}}"),
        );
        if v2 {
            let d = base.join(&rel);
            w(d.join("cpu.stat"), "usage_usec 123456789\nuser_usec 100000000\nsystem_usec 23456789\nnr_periods 1000\nnr_throttled 10\nthrottled_usec 5000\nnr_bursts 0\nburst_usec 0\n");
            w(d.join("cpu.max"), "50000 100000\n");
            w(d.join("cpu.weight"), "100\n");
            w(d.join("memory.max"), "268435456\n");
            w(d.join("memory.current"), "134217728\n");
            let mut ms = String::new();
            for k in [
                "anon",
                "file",
                "kernel",
                "kernel_stack",
                "pagetables",
                "sec_pagetables",
                "percpu",
                "sock",
                "vmalloc",
                "shmem",
                "zswap",
                "zswapped",
                "file_mapped",
                "file_dirty",
                "file_writeback",
                "swapcached",
                "anon_thp",
                "file_thp",
                "shmem_thp",
                "inactive_anon",
                "active_anon",
                "inactive_file",
                "active_file",
                "unevictable",
                "slab_reclaimable",
                "slab_unreclaimable",
                "slab",
                "workingset_refault_anon",
                "workingset_refault_file",
                "workingset_activate_anon",
                "workingset_activate_file",
                "workingset_restore_anon",
                "workingset_restore_file",
                "workingset_nodereclaim",
                "pgscan",
                "pgsteal",
                "pgscan_kswapd",
                "pgscan_direct",
                "pgsteal_kswapd",
                "pgsteal_direct",
                "pgfault",
                "pgmajfault",
                "pgrefill",
                "pgactivate",
                "pgdeactivate",
                "pglazyfree",
                "pglazyfreed",
                "thp_fault_alloc",
                "thp_collapse_alloc",
            ] {
                ms += &format!("{k} 123456\n");
            }
            w(d.join("memory.stat"), &ms);
            w(d.join("memory.swap.current"), "0\n");
            w(
                d.join("memory.events"),
                "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
            );
            w(
                d.join("io.stat"),
                "8:0 rbytes=1048576 wbytes=2097152 rios=10 wios=20 dbytes=0 dios=0\n",
            );
            w(d.join("pids.current"), "3\n");
            w(d.join("cgroup.procs"), "100\n101\n102\n");
            w(d.join("cgroup.events"), "populated 1\nfrozen 0\n");
            for r in ["cpu", "memory", "io"] {
                w(d.join(format!("{r}.pressure")), "some avg10=0.00 avg60=0.00 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=2345\n");
            }
        } else {
            let c = base.join("cpu,cpuacct").join(&rel);
            w(c.join("cpuacct.usage"), "123456789000\n");
            w(c.join("cpuacct.stat"), "user 10000\nsystem 2345\n");
            w(c.join("cpu.shares"), "1024\n");
            w(c.join("cpu.cfs_period_us"), "100000\n");
            w(c.join("cpu.cfs_quota_us"), "50000\n");
            w(
                c.join("cpu.stat"),
                "nr_periods 500\nnr_throttled 20\nthrottled_time 3500000000\n",
            );
            w(c.join("cgroup.clone_children"), "0\n");
            let m = base.join("memory").join(&rel);
            w(m.join("memory.limit_in_bytes"), "268435456\n");
            w(m.join("memory.usage_in_bytes"), "134217728\n");
            w(m.join("memory.failcnt"), "0\n");
            w(
                m.join("memory.oom_control"),
                "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
            );
            w(m.join("memory.stat"), &memstat_v1());
            let b = base.join("blkio").join(&rel);
            w(b.join("blkio.throttle.io_service_bytes_recursive"), "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 12288\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 12288\nTotal 12288\n");
            w(b.join("blkio.throttle.io_serviced_recursive"), "8:0 Read 1\n8:0 Write 2\n8:0 Sync 3\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 3\nTotal 3\n");
            let p = base.join("pids").join(&rel);
            w(p.join("pids.current"), "3\n");
            w(p.join("cgroup.procs"), "100\n101\n102\n");
        }
    }
    Context {
        procfs: root.join("proc"),
        sysfs: root.join("sys"),
        rootfs: root.join("root"),
        udev_data: root.join("udev"),
    }
}

/// Real cgroups; removed on drop.
struct Live(Vec<PathBuf>);
impl Drop for Live {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

fn live(n: usize) -> Live {
    let mut made = Live(Vec::new());
    for ctrl in ["memory", "cpu", "cpuacct", "blkio", "pids"] {
        let top = Path::new("/sys/fs/cgroup").join(ctrl).join("cairn-bench");
        fs::create_dir(&top).unwrap_or_else(|e| panic!("mkdir {}: {e}", top.display()));
        made.0.push(top.clone());
        for i in 0..n {
            let d = top.join(format!("c{i}"));
            fs::create_dir(&d).unwrap();
            made.0.push(d);
        }
    }
    made
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("v2", String::as_str).to_string();
    let n: usize = args.get(2).map_or(200, |s| s.parse().unwrap());
    let iters: usize = args.get(3).map_or(200, |s| s.parse().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let mut settings = Settings::default();
    let (ctx, _live) = match mode.as_str() {
        "v1" => (synth(tmp.path(), false, n), None),
        "v2" => (synth(tmp.path(), true, n), None),
        "live" => {
            settings = settings.with(
                "collector.containers.cgroup-include",
                r"^/cairn-bench/c\d+$",
            );
            (Context::default(), Some(live(n)))
        }
        m => panic!("unknown mode {m}"),
    };
    let rss0 = status("VmRSS:");
    let mut c = Containers::new(&settings);
    let mut e = Emitter::new();
    let t0 = Instant::now();
    e.clear();
    c.update(&ctx, &mut e).unwrap();
    let first = t0.elapsed();
    for _ in 0..2 {
        e.clear();
        c.update(&ctx, &mut e).unwrap();
    }
    let series = e.series_count();
    let (a0, cpu0, t0) = (ALLOCS.load(Ordering::Relaxed), cpu_secs(), Instant::now());
    for _ in 0..iters {
        e.clear();
        c.update(&ctx, &mut e).unwrap();
    }
    let wall = t0.elapsed().as_secs_f64() / iters as f64;
    let cpu = (cpu_secs() - cpu0) / iters as f64;
    let allocs = (ALLOCS.load(Ordering::Relaxed) - a0) as f64 / iters as f64;
    println!(
        "{mode}: {n} containers, {series} series; first collection {:.1} ms; warm: {:.2} ms CPU, {:.2} ms wall, {allocs:.1} allocations per collection; RSS {rss0} before, {} after (peak {})",
        first.as_secs_f64() * 1e3,
        cpu * 1e3,
        wall * 1e3,
        status("VmRSS:"),
        status("VmHWM:"),
    );
}
