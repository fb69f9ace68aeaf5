//! Fixture tests (v1, v2, hybrid), lifecycle tests on temporary trees, and
//! the live test that makes real cgroups on this host.

use super::*;
use crate::collector::testutil::{fixture_ctx, render};
use std::fs;
use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn settings(include: Option<&str>, max: usize) -> Settings {
    let s = Settings::default().with("collector.containers.max", &max.to_string());
    match include {
        Some(r) => s.with("collector.containers.cgroup-include", r),
        None => s,
    }
}

#[test]
fn default_max_option_matches_the_constant() {
    assert_eq!(
        Settings::default().count("collector.containers.max"),
        DEFAULT_MAX
    );
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64
}

/// Rendered output without `container_last_seen` (the wall clock), after
/// checking that every container has one, close to now.
fn stable(text: &str) -> String {
    let mut out = String::new();
    let (mut seen, mut last_seen) = (0, 0);
    for line in text.lines() {
        if line.starts_with("container_start_time_seconds{") {
            seen += 1;
        }
        if line.starts_with("container_last_seen") {
            if !line.starts_with('#') {
                last_seen += 1;
                let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
                assert!((v - now()).abs() < 60.0, "{line}");
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert_eq!(seen, last_seen, "one last_seen per container");
    out
}

/// The value of the series of `metric` whose labels contain `id="<id>"`.
fn value(text: &str, metric: &str, id: &str) -> Option<f64> {
    let prefix = format!("{metric}{{");
    let id = format!("id=\"{id}\"");
    text.lines()
        .find(|l| l.starts_with(&prefix) && l.contains(&id))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

fn check_case(case: &str) -> String {
    let ctx = fixture_ctx(&format!("containers/{case}"));
    let mut c = Containers::new(&settings(None, 500));
    let text = stable(&render(&mut c, &ctx).unwrap());
    let want_path = ctx.rootfs.parent().unwrap().join("expected.prom");
    // CAIRN_BLESS=1 rewrites the expected files (review the diff!).
    if std::env::var_os("CAIRN_BLESS").is_some() {
        fs::write(&want_path, &text).unwrap();
    }
    let want = fs::read_to_string(&want_path).unwrap();
    assert_eq!(
        text,
        want,
        "{case}: output differs from {}",
        want_path.display()
    );
    // A second collection reads the same (reused buffers, cached names).
    let again = stable(&render(&mut c, &ctx).unwrap());
    assert_eq!(again, want, "{case}: second collection");
    text
}

const D1: &str = "/docker/a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";

#[test]
fn v1_fixture_cgroupfs_docker_and_service() {
    let t = check_case("v1");
    assert_eq!(
        value(&t, "container_cpu_usage_seconds_total", D1),
        Some(123.456789)
    );
    // cpuacct.stat is in USER_HZ ticks.
    assert_eq!(
        value(&t, "container_cpu_user_seconds_total", D1),
        Some(100.0)
    );
    assert_eq!(
        value(&t, "container_cpu_system_seconds_total", D1),
        Some(23.45)
    );
    assert_eq!(value(&t, "container_spec_cpu_quota", D1), Some(150000.0));
    assert_eq!(
        value(&t, "container_cpu_cfs_throttled_seconds_total", D1),
        Some(3.5)
    );
    // usage - total_inactive_file
    assert_eq!(
        value(&t, "container_memory_working_set_bytes", D1),
        Some(83886080.0)
    );
    assert!(t.contains(&format!(
        "container_blkio_device_usage_total{{device=\"/dev/sda\",id=\"{D1}\",image=\"nginx:1.25\",major=\"8\",minor=\"0\",name=\"web\",operation=\"Read\"}} 4096\n"
    )));
    let ssh = "/system.slice/ssh.service";
    // Unlimited (PAGE_COUNTER_MAX rounded) reads as 0, no quota series.
    assert_eq!(
        value(&t, "container_spec_memory_limit_bytes", ssh),
        Some(0.0)
    );
    assert_eq!(value(&t, "container_spec_cpu_quota", ssh), None);
    assert_eq!(value(&t, "container_cpu_cfs_periods_total", ssh), None);
    assert_eq!(value(&t, "container_fs_reads_bytes_total", ssh), None);
    assert!(!t.contains("user.slice"));
}

#[test]
fn v2_fixture_systemd_docker_and_k8s() {
    let t = check_case("v2");
    let db = "/system.slice/docker-d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2.scope";
    assert!(t.contains(&format!(
        "container_spec_cpu_quota{{id=\"{db}\",image=\"postgres:16\",name=\"db\"}} 50000\n"
    )));
    assert_eq!(value(&t, "container_spec_cpu_shares", db), Some(998.0)); // weight 39
    assert_eq!(value(&t, "container_memory_failcnt", db), Some(7.0));
    assert_eq!(value(&t, "container_oom_events_total", db), Some(2.0));
    assert_eq!(value(&t, "container_memory_swap", db), Some(4096.0));
    let nginx = "/system.slice/nginx.service";
    // cpu.max "max 100000": a period, no quota, no CFS counters.
    assert_eq!(
        value(&t, "container_spec_cpu_period", nginx),
        Some(100000.0)
    );
    assert_eq!(value(&t, "container_spec_cpu_quota", nginx), None);
    assert_eq!(value(&t, "container_cpu_cfs_periods_total", nginx), None);
    assert_eq!(value(&t, "container_spec_cpu_shares", nginx), Some(2597.0)); // weight 100
    assert_eq!(
        value(&t, "container_spec_memory_limit_bytes", nginx),
        Some(0.0)
    ); // "max"
    assert_eq!(
        value(&t, "container_pressure_cpu_waiting_seconds_total", nginx),
        Some(1.5)
    );
    assert_eq!(
        value(&t, "container_pressure_io_stalled_seconds_total", nginx),
        Some(1.5)
    );
    let pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234abcd_5678_90ef_1234_567890abcdef.slice";
    let app = format!("{pod}/cri-containerd-b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2.scope");
    assert!(t.contains(&format!(
        "container_memory_usage_bytes{{id=\"{app}\",image=\"registry.example/app:2\",name=\"shop/web-5d9f/app\"}} 16777216\n"
    )));
    assert_eq!(
        value(&t, "container_cpu_usage_seconds_total", pod),
        Some(7.0)
    );
    // Only a "some" line (kernels before 5.13): no stalled series.
    assert_eq!(
        value(&t, "container_pressure_cpu_stalled_seconds_total", &app),
        None
    );
    let cron = "/system.slice/cron.service";
    // No CPU used yet: cAdvisor leaves usage out; no memory controller: no memory series.
    assert_eq!(value(&t, "container_cpu_usage_seconds_total", cron), None);
    assert_eq!(value(&t, "container_memory_usage_bytes", cron), None);
    assert_eq!(value(&t, "container_processes", cron), Some(1.0));
    for not in [
        "init.scope",
        "user.slice\"",
        "kubepods-burstable.slice\"",
        "id=\"/system.slice\"",
    ] {
        assert!(!t.contains(not), "{not}");
    }
}

#[test]
fn hybrid_fixture_separate_cpu_cpuacct_and_unified_pressure() {
    let t = check_case("hybrid");
    let c = "/system.slice/docker-e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3.scope";
    assert_eq!(
        value(&t, "container_cpu_usage_seconds_total", c),
        Some(42.0)
    );
    assert_eq!(
        value(&t, "container_spec_memory_limit_bytes", c),
        Some(67108864.0)
    );
    assert_eq!(value(&t, "container_spec_cpu_quota", c), Some(50000.0));
    assert_eq!(
        value(&t, "container_pressure_cpu_stalled_seconds_total", c),
        Some(0.125)
    );
    // inactive_file > usage: working set clamps at 0.
    assert_eq!(
        value(&t, "container_memory_working_set_bytes", c),
        Some(0.0)
    );
    // BFQ's files when the throttle ones are missing.
    assert_eq!(value(&t, "container_fs_reads_total", c), Some(16.0));
    // No oom_kill line in memory.oom_control (old kernel): no series.
    assert_eq!(value(&t, "container_oom_events_total", c), None);
    let cron = "/system.slice/cron.service";
    assert_eq!(value(&t, "container_threads", cron), Some(2.0));
    assert_eq!(value(&t, "container_spec_cpu_period", cron), None);
}

#[test]
fn malformed_file_fails_the_collector() {
    let ctx = fixture_ctx("containers/malformed");
    let mut c = Containers::new(&settings(None, 500));
    let e = render(&mut c, &ctx).unwrap_err().to_string();
    assert!(e.contains("cpu.stat") && e.contains("usage_usec"), "{e}");
}

#[test]
fn default_include_matches_runtimes_not_slices() {
    let re = Regex::new(DEFAULT_CGROUP_INCLUDE).unwrap();
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let yes = [
        format!("/system.slice/docker-{id}.scope"),
        format!("/docker/{id}"),
        format!("/machine.slice/libpod-{id}.scope"),
        format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{id}.scope"),
        format!("/libpod_parent/libpod-{id}"),
        format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12_ab.slice/cri-containerd-{id}.scope"),
        format!("/kubepods.slice/kubepods-pod12_ab.slice/crio-{id}.scope"),
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12_ab.slice".into(),
        format!("/kubepods/burstable/pod12-ab/{id}"),
        format!("/kubepods/pod12-ab/crio-{id}"),
        "/kubepods/besteffort/pod12-ab".into(),
        format!("/system.slice/nerdctl-{id}.scope"),
        "/lxc/web".into(),
        "/lxc.payload.web".into(),
        "/system.slice/nginx.service".into(),
        "/system.slice/system-getty.slice/getty@tty1.service".into(),
        "/machine.slice/systemd-nspawn@deb.service".into(),
    ];
    for p in &yes {
        assert!(re.is_match(p), "should match {p}");
    }
    let no = [
        "/".to_string(),
        "/system.slice".into(),
        "/init.scope".into(),
        "/user.slice/user-1000.slice/session-2.scope".into(),
        "/kubepods.slice".into(),
        "/kubepods.slice/kubepods-burstable.slice".into(),
        "/kubepods/burstable".into(),
        format!("/kubepods.slice/kubepods-pod1.slice/crio-conmon-{id}.scope"),
        "/lxc.monitor.web".into(),
        "/docker".into(),
        "/cairn-test".into(),
    ];
    for p in &no {
        assert!(!re.is_match(p), "should not match {p}");
    }
}

#[test]
fn max_bounds_output_and_counts_the_rest() {
    let ctx = fixture_ctx("containers/v2");
    let mut c = Containers::new(&settings(None, 2));
    let t = render(&mut c, &ctx).unwrap();
    assert!(t.contains("\ncairn_containers_dropped 3\n"), "{t}");
    let ids = t
        .lines()
        .filter(|l| l.starts_with("container_start_time_seconds{"))
        .count();
    assert_eq!(ids, 2);
    // Stable: the same two are kept on the next collection.
    let t2 = render(&mut c, &ctx).unwrap();
    let starts = |t: &str| {
        t.lines()
            .filter(|l| l.starts_with("container_start_time"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(starts(&t), starts(&t2));
    let mut none = Containers::new(&settings(None, 0));
    let t = render(&mut none, &ctx).unwrap();
    assert!(
        t.contains("\ncairn_containers_dropped 5\n") && !t.contains("container_"),
        "{t}"
    );
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
fn vanished_container_is_gone_at_the_next_collection() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture_ctx("containers/v2");
    copy_tree(src.rootfs.parent().unwrap(), tmp.path());
    let ctx = Context {
        procfs: tmp.path().join("proc"),
        sysfs: tmp.path().join("sys"),
        rootfs: tmp.path().join("root"),
        udev_data: tmp.path().join("udev"),
    };
    let mut c = Containers::new(&settings(None, 500));
    let t = render(&mut c, &ctx).unwrap();
    assert!(t.contains("name=\"db\""));
    let cg = ctx.rootfs.join("sys/fs/cgroup/system.slice");
    let db = "docker-d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2.scope";
    fs::remove_dir_all(cg.join(db)).unwrap();
    let t = render(&mut c, &ctx).unwrap();
    assert!(!t.contains("docker-d2"), "{t}");
    assert!(t.contains("nginx.service"));
    // A new one appears, and a removed-then-recreated path is looked up again.
    copy_tree(&cg.join("nginx.service"), &cg.join("web.service"));
    fs::remove_dir_all(cg.join("nginx.service")).unwrap();
    copy_tree(&cg.join("web.service"), &cg.join(db));
    let t = render(&mut c, &ctx).unwrap();
    assert!(t.contains("id=\"/system.slice/web.service\""));
    assert!(!t.contains("nginx.service"));
    // The recreated cgroup is read afresh: nginx's files, no quota.
    assert!(!t.contains(&format!(
        "container_spec_cpu_quota{{id=\"/system.slice/{db}\""
    )));
    assert!(t.contains(&format!("container_cpu_usage_seconds_total{{cpu=\"total\",id=\"/system.slice/{db}\",image=\"postgres:16\",name=\"db\"}} 2.5\n")), "{t}");
}

#[test]
fn start_time_is_the_oldest_mtime_after_boot() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fs::create_dir_all(root.join("proc/self")).unwrap();
    fs::write(
        root.join("proc/self/mountinfo"),
        "1 0 0:1 / /cg rw - cgroup2 cgroup2 rw\n",
    )
    .unwrap();
    fs::write(root.join("proc/stat"), "btime 60\n").unwrap();
    let dir = root.join("root/cg/system.slice/a.service");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("cgroup.events"), "populated 0\n").unwrap();
    fs::write(
        dir.join("cpu.stat"),
        "usage_usec 5\nuser_usec 1\nsystem_usec 4\n",
    )
    .unwrap();
    let ctx = Context {
        procfs: root.join("proc"),
        sysfs: root.join("sys"),
        rootfs: root.join("root"),
        udev_data: root.join("udev"),
    };
    let mtime = fs::metadata(&dir)
        .unwrap()
        .mtime()
        .min(fs::metadata(dir.join("cgroup.events")).unwrap().mtime());
    let t = render(&mut Containers::new(&settings(None, 500)), &ctx).unwrap();
    assert_eq!(
        value(
            &t,
            "container_start_time_seconds",
            "/system.slice/a.service"
        ),
        Some(mtime as f64)
    );
    assert_eq!(
        value(
            &t,
            "container_cpu_usage_seconds_total",
            "/system.slice/a.service"
        ),
        Some(0.000005)
    );
}

// ---- live: real cgroups on this host ------------------------------------

/// Removes what the live test made, even when an assertion failed.
struct Live {
    dirs: Vec<PathBuf>,
    child: Option<Child>,
    _lock: fs::File,
}

impl Live {
    fn kill(&mut self) {
        if let Some(mut ch) = self.child.take() {
            let _ = ch.kill();
            let _ = ch.wait();
        }
    }

    fn remove(&mut self) {
        self.kill();
        for d in self.dirs.drain(..).rev() {
            // An exiting task can keep the cgroup busy for a moment.
            for _ in 0..100 {
                match fs::remove_dir(&d) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => break,
                }
            }
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.remove();
    }
}

fn write(p: &Path, v: &str) {
    fs::write(p, v).unwrap_or_else(|e| panic!("writing {v:?} to {}: {e}", p.display()));
}

#[test]
fn live_cgroup_with_limits_is_reported_then_gone() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the live cgroup test must run as root (it fails rather than skips)"
    );
    // One live test at a time on this host, across test processes.
    let lock = fs::File::create(std::env::temp_dir().join("cairn-live-cgroup.lock")).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open fd; the lock is released when `lock` is closed.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let ctx = Context::default();
    let mi = fs::read_to_string(ctx.proc_path("self/mountinfo")).unwrap();
    let layout = layout::parse(&mi, &ctx.rootfs).expect("no cgroup hierarchy mounted");

    // The contract's name, unless a leftover we cannot remove holds it.
    let mut name = "cairn-test".to_string();
    for r in layout.roots.iter().chain(&layout.unified) {
        let d = r.join(&name);
        if d.exists() && fs::remove_dir(&d).is_err() {
            name = format!("cairn-test-{}", std::process::id());
            break;
        }
    }
    let mut live = Live {
        dirs: Vec::new(),
        child: None,
        _lock: lock,
    };
    let dir = |ctrl: usize| layout.ctrl[ctrl].map(|h| layout.roots[h].join(&name));
    let mut procs_files = Vec::new();
    match layout.mode {
        Mode::V1 | Mode::Hybrid => {
            for ctrl in [MEMORY, CPU, CPUACCT, BLKIO, PIDS] {
                let d = dir(ctrl).unwrap_or_else(|| panic!("controller {ctrl} not mounted"));
                if !live.dirs.contains(&d) {
                    fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
                    live.dirs.push(d.clone());
                    procs_files.push(d.join("cgroup.procs"));
                }
            }
            write(
                &dir(MEMORY).unwrap().join("memory.limit_in_bytes"),
                "67108864",
            );
            write(&dir(CPU).unwrap().join("cpu.cfs_period_us"), "100000");
            write(&dir(CPU).unwrap().join("cpu.cfs_quota_us"), "50000");
        }
        Mode::V2 => {
            let root = &layout.roots[0];
            for c in ["+cpu", "+memory", "+io", "+pids"] {
                let _ = fs::write(root.join("cgroup.subtree_control"), c);
            }
            let d = root.join(&name);
            fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
            live.dirs.push(d.clone());
            write(&d.join("memory.max"), "67108864");
            write(&d.join("cpu.max"), "50000 100000");
            procs_files.push(d.join("cgroup.procs"));
        }
    }

    // The child waits on stdin until it is in every cgroup, then execs a
    // CPU-bound dd whose buffer is charged to the new memory cgroup.
    let mut child = Command::new("sh")
        .args(["-c", "read _ && exec dd if=/dev/zero of=/dev/null bs=1M"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let mut stdin = child.stdin.take().unwrap();
    live.child = Some(child);
    for p in &procs_files {
        write(p, &pid);
    }
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);

    let id = format!("/{name}");
    let mut c = Containers::new(&settings(
        Some(&format!("^/{}$", regex::escape(&name))),
        500,
    ));
    std::thread::sleep(Duration::from_millis(300));
    let t1 = render(&mut c, &ctx).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let t2 = render(&mut c, &ctx).unwrap();
    println!("{t2}");
    assert_eq!(
        value(&t2, "container_spec_memory_limit_bytes", &id),
        Some(67108864.0),
        "{t2}"
    );
    assert_eq!(
        value(&t2, "container_spec_cpu_quota", &id),
        Some(50000.0),
        "{t2}"
    );
    assert_eq!(
        value(&t2, "container_spec_cpu_period", &id),
        Some(100000.0),
        "{t2}"
    );
    let u1 =
        value(&t1, "container_cpu_usage_seconds_total", &id).expect("cpu usage, 1st collection");
    let u2 =
        value(&t2, "container_cpu_usage_seconds_total", &id).expect("cpu usage, 2nd collection");
    assert!(u2 > u1 && u1 > 0.0, "cpu usage did not grow: {u1} -> {u2}");
    // 50 ms per 100 ms: at most about half a CPU over the 0.5 s between.
    assert!(u2 - u1 < 0.45, "quota not enforced? {u1} -> {u2}");
    let mem = value(&t2, "container_memory_usage_bytes", &id).expect("memory usage");
    assert!(mem > 0.0, "{t2}");
    assert_eq!(value(&t2, "container_processes", &id), Some(1.0), "{t2}");
    let start = value(&t2, "container_start_time_seconds", &id).unwrap();
    assert!((start - now()).abs() < 120.0, "start time {start}");

    live.remove();
    let t3 = render(&mut c, &ctx).unwrap();
    assert!(!t3.contains(&format!("id=\"{id}\"")), "{t3}");
}
