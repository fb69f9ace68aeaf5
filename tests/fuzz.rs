//! Fuzz targets that stay: proptest properties over everything cairn reads
//! from outside the process, run on stable Rust (cargo-fuzz needs nightly).
//! Each target feeds arbitrary bytes and structure-aware mutations of real
//! inputs (the fixture trees, the shipped config, encoded WAL records) and
//! asserts no panic and bounded output.
//!
//! The number of cases comes from `PROPTEST_CASES` (proptest's default,
//! 256, when unset); scripts/test.sh runs a bounded smoke of each target.
//! A longer run: `PROPTEST_CASES=100000 cargo nextest run --release --test
//! fuzz`. A crash found here gets a regression test named after it, beside
//! the code it broke.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;

use cairn::collector::textfile::parser;
use cairn::collector::{self, Context, Settings};
use cairn::config::Config;
use cairn::metrics::{render_text, Emitter};
use cairn::scrape::parse as scrape_parse;
use cairn::wal::record;

/// Tokens that tend to reach new code paths in line- and number-oriented
/// formats (procfs, sysfs, the text exposition, TOML).
const DICT: &[&[u8]] = &[
    b"0",
    b"-1",
    b" ",
    b"\t",
    b"\n",
    b":",
    b"=",
    b",",
    b".",
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b"#",
    b"\0",
    b"\xff",
    b"\xc3",
    b"NaN",
    b"+Inf",
    b"1e308",
    b"18446744073709551616",
    b"99999999999999999999999999",
    b"-9223372036854775809",
    b"0x",
    b"# HELP x ",
    b"# TYPE x summary\n",
    b"# TYPE x histogram\n",
    b"_bucket{le=\"",
    b"_count",
    b"_sum",
    b"[[remote_write]]\n",
    b"\"0s\"",
    b"# EOF",
    b"# EOF\n",
    b"# UNIT x ",
    b"# TYPE x stateset\n",
    b" # {",
    b"_total",
    b"Inf",
    b"\r\n",
    b"\\u0000",
    b"'''",
    b"\"\"\"",
];

#[derive(Debug, Clone)]
enum Op {
    Set(usize, u8),
    Insert(usize, usize),
    Delete(usize, usize),
    Truncate(usize),
    DupLine(usize, u8),
    Bytes(usize, Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Op::Set(p, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(p, d)| Op::Insert(p, d)),
        (any::<usize>(), 0usize..64).prop_map(|(p, n)| Op::Delete(p, n)),
        any::<usize>().prop_map(Op::Truncate),
        (any::<usize>(), 1u8..16).prop_map(|(p, n)| Op::DupLine(p, n)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(p, b)| Op::Bytes(p, b)),
    ]
}

fn mutate(data: &mut Vec<u8>, ops: &[Op]) {
    for op in ops {
        let len = data.len();
        let at = |p: usize| if len == 0 { 0 } else { p % (len + 1) };
        match op {
            Op::Set(p, b) if len > 0 => data[p % len] = *b,
            Op::Set(..) => data.push(0),
            Op::Insert(p, d) => {
                let p = at(*p);
                let tok = DICT[d % DICT.len()];
                data.splice(p..p, tok.iter().copied());
            }
            Op::Delete(p, n) => {
                let p = at(*p);
                let end = (p + n).min(data.len());
                data.drain(p..end);
            }
            Op::Truncate(p) => data.truncate(at(*p)),
            Op::DupLine(p, n) => {
                let p = at(*p).min(len);
                let start = data[..p]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                let end = data[p..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(len, |i| p + i + 1);
                let line = data[start..end].to_vec();
                for _ in 0..*n {
                    data.splice(end..end, line.iter().copied());
                }
            }
            Op::Bytes(p, b) => {
                let p = at(*p);
                data.splice(p..p, b.iter().copied());
            }
        }
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A copy of the fixture trees (symlinks kept) that cases may overwrite,
/// and every regular file in it, with the collectors that read its tree.
struct Trees {
    _dir: tempfile::TempDir,
    /// (file, fixture root holding proc/ sys/ root/ udev/, collectors)
    files: Vec<(PathBuf, PathBuf, Vec<&'static str>)>,
}

fn trees() -> &'static std::sync::Mutex<Trees> {
    static T: OnceLock<std::sync::Mutex<Trees>> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let st = std::process::Command::new("cp")
            .arg("-a")
            .arg(fixtures())
            .arg(dir.path())
            .status()
            .expect("cp -a");
        assert!(st.success(), "cp -a of the fixtures failed");
        let base = dir.path().join("fixtures");
        let all: Vec<&'static str> = collector::KNOWN
            .iter()
            .filter(|k| k.build.is_some() && k.name != "textfile")
            .map(|k| k.name)
            .collect();
        let mut files = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
            entries.sort();
            for p in entries {
                let Ok(m) = std::fs::symlink_metadata(&p) else {
                    continue;
                };
                if m.is_dir() {
                    stack.push(p);
                } else if m.is_file() {
                    // The fixture root: the directory above proc/, sys/, ...
                    let rel = p.strip_prefix(&base).expect("under base");
                    let comps: Vec<_> = rel.components().collect();
                    let Some(i) = comps.iter().position(|c| {
                        matches!(
                            c.as_os_str().to_str(),
                            Some("proc" | "sys" | "root" | "udev")
                        )
                    }) else {
                        continue;
                    };
                    let root: PathBuf = base.join(comps[..i].iter().collect::<PathBuf>());
                    let name = comps[0].as_os_str().to_str().unwrap_or("");
                    let which = match collector::find(name) {
                        Some(k) if k.build.is_some() && name != "textfile" => vec![k.name],
                        _ => all.clone(),
                    };
                    files.push((p, root, which));
                }
            }
        }
        assert!(files.len() > 500, "fixture files found: {}", files.len());
        std::sync::Mutex::new(Trees { _dir: dir, files })
    })
}

/// Runs `names` against the tree at `root`; panics propagate (a failure).
fn collect(root: &Path, names: &[&'static str]) -> usize {
    let ctx = Context {
        procfs: root.join("proc"),
        sysfs: root.join("sys"),
        rootfs: root.join("root"),
        udev_data: root.join("udev"),
    };
    let settings = Settings::default();
    let mut series = 0;
    for name in names {
        let k = collector::find(name).expect("known");
        let mut c = (k.build.expect("built"))(&settings);
        let mut out = Emitter::new();
        let _ = c.update(&ctx, &mut out);
        series += out.series_count();
    }
    series
}

fn check_exposition_invariants(text: &str) {
    let mut names = std::collections::HashSet::new();
    let mut series = std::collections::HashSet::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or("");
            assert!(
                names.insert(name.to_owned()),
                "family {name} twice:\n{text}"
            );
        } else if !l.starts_with('#') {
            let key = l.rsplit_once(' ').map_or(l, |(k, _)| k);
            assert!(series.insert(key.to_owned()), "series {key} twice:\n{text}");
        }
    }
}

proptest! {
    /// /proc and /sys: one fixture file mutated, its collectors run.
    #[test]
    fn fuzz_proc_sys_parsers(pick in any::<usize>(), ops in proptest::collection::vec(op(), 1..8), raw in any::<bool>(), bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let t = trees().lock().unwrap_or_else(|p| p.into_inner());
        let (file, root, names) = &t.files[pick % t.files.len()];
        let orig = std::fs::read(file).expect("read fixture");
        let mut data = if raw { bytes } else { orig.clone() };
        mutate(&mut data, &ops);
        std::fs::write(file, &data).expect("write fixture");
        let res = std::panic::catch_unwind(|| collect(root, names));
        std::fs::write(file, &orig).expect("restore fixture");
        let series = match res {
            Ok(n) => n,
            Err(e) => std::panic::resume_unwind(e),
        };
        // Bounded: no collector turns a few KiB into an unbounded output.
        prop_assert!(series < 200_000 + 64 * data.len(), "{series} series from {file:?}");
    }

    /// The textfile parser alone: arbitrary bytes and mutated fixtures.
    #[test]
    fn fuzz_textfile_parser(pick in any::<usize>(), ops in proptest::collection::vec(op(), 1..12), raw in any::<bool>(), bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut data = if raw { bytes } else { textfile_seed(pick) };
        mutate(&mut data, &ops);
        if let Ok(fams) = parser::parse(&data) {
            let lines = data.iter().filter(|&&b| b == b'\n').count();
            let metrics: usize = fams.iter().map(|f| f.metrics.len()).sum();
            prop_assert!(metrics <= lines, "{metrics} metrics from {lines} lines");
        }
    }

    /// The whole textfile collector over two mutated files: what it emits
    /// has one family per name and one series per label set.
    #[test]
    fn fuzz_textfile_collector(a in any::<usize>(), b in any::<usize>(), ops_a in proptest::collection::vec(op(), 0..8), ops_b in proptest::collection::vec(op(), 0..8)) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, pick, ops) in [("a.prom", a, &ops_a), ("b.prom", b, &ops_b)] {
            let mut data = textfile_seed(pick);
            mutate(&mut data, ops);
            std::fs::write(dir.path().join(name), &data).expect("write");
        }
        let settings = Settings::default().with("collector.textfile.directory", dir.path().to_str().expect("utf-8"));
        let k = collector::find("textfile").expect("textfile");
        let mut c = (k.build.expect("built"))(&settings);
        let mut out = Emitter::new();
        c.update(&Context::default(), &mut out).expect("textfile never fails");
        for f in out.families_mut() {
            f.sort_series();
        }
        let mut fams: Vec<_> = out.families().collect();
        fams.sort_by(|x, y| x.name().cmp(y.name()));
        let mut text = Vec::new();
        render_text(fams, &mut text);
        let text = String::from_utf8(text).expect("utf-8 exposition");
        check_exposition_invariants(&text);
    }

    /// The scrape parsers (text 0.0.4 and OpenMetrics): arbitrary bytes
    /// and mutations of real expositions never panic; what they accept has
    /// at most one sample per line, no forged NaN, and an error names a
    /// line of the body.
    #[test]
    fn fuzz_scrape_parsers(pick in any::<usize>(), ops in proptest::collection::vec(op(), 1..12), raw in any::<bool>(), bytes in proptest::collection::vec(any::<u8>(), 0..4096), om in any::<bool>()) {
        let mut data = if raw { bytes } else { scrape_seed(pick) };
        mutate(&mut data, &ops);
        let ct = if om { Some("application/openmetrics-text; version=1.0.0") } else { None };
        // Reused as a scrape loop reuses it: leftovers must never leak.
        let mut out = vec![cairn::scrape::ParsedSample { name: "old".into(), labels: vec![("a".into(), "b".into())], value: 1.0, timestamp_ms: None }; 3];
        let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
        match scrape_parse::parse(&data, ct, &mut out) {
            Ok(_) => {
                prop_assert!(out.len() <= lines, "{} samples from {lines} lines", out.len());
                for s in &out {
                    prop_assert!(!s.value.is_nan() || s.value.to_bits() == scrape_parse::NORMAL_NAN_BITS);
                    prop_assert!(s.labels.iter().all(|(n, _)| n != "__name__"));
                }
            }
            Err(scrape_parse::ParseError::Syntax { line, .. }) => {
                prop_assert!(out.is_empty());
                prop_assert!(line >= 1 && line <= lines, "line {line} of {lines}");
            }
        }
    }

    /// The config loader: arbitrary bytes and mutations of real configs.
    #[test]
    fn fuzz_config_loader(pick in any::<usize>(), ops in proptest::collection::vec(op(), 1..10), raw in any::<bool>(), bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let mut data = if raw { bytes } else { config_seed(pick) };
        mutate(&mut data, &ops);
        // A mutated host name would be looked up in DNS; only loopback
        // may be reached, so listen addresses are left to the unit tests.
        if data.windows(7).any(|w| w == b"listen_") {
            return Ok(());
        }
        if let Err(e) = Config::parse_bytes(&data, "f.toml") {
            let msg = e.to_string();
            let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
            if let Some(line) = msg.strip_prefix("f.toml:").and_then(|r| r.split(':').next()).and_then(|n| n.parse::<usize>().ok()) {
                prop_assert!(line >= 1 && line <= lines, "line {line} of {lines}: {msg}");
            }
            prop_assert!(msg.len() < 4096 + data.len(), "{msg}");
        }
    }

    /// WAL records: valid SeriesSet and Samples records with bytes flipped,
    /// cut or spliced, and raw bytes behind a valid frame.
    #[test]
    fn fuzz_wal_record_decoder(n in 1usize..40, cols in 1usize..6, ops in proptest::collection::vec(op(), 1..8), which in any::<bool>()) {
        let series: Vec<record::LabelSet> = (0..n)
            .map(|i| record::LabelSet::from_pairs([("__name__", "m"), ("i", &*i.to_string())]))
            .collect();
        let mut rec = Vec::new();
        if which {
            record::encode_series_set(7, &series, &mut rec);
        } else {
            let mut enc = record::SamplesEncoder::new();
            enc.begin(7, n);
            for c in 0..cols {
                let vals: Vec<f64> = (0..n).map(|i| (i * c) as f64 / 10.0).collect();
                enc.push_collection(1_700_000_000_000 + c as i64 * 15_000, &vals);
            }
            enc.finish(&mut rec);
        }
        mutate(&mut rec, &ops);
        if let Ok(set) = record::decode_series_set(&rec) {
            prop_assert!(set.len() <= rec.len() * 64, "{} series from {} bytes", set.len(), rec.len());
        }
        let mut samples = 0usize;
        let _ = record::decode_samples(&rec, |_, _, _, _| samples += 1);
        // Snappy expands at most 32x (checked before decompressing), and
        // each sample takes at least one byte of the decompressed body.
        prop_assert!(samples <= rec.len() * 32 + 64, "{samples} samples from {} bytes", rec.len());
    }
}

fn textfile_seed(pick: usize) -> Vec<u8> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let seeds = SEEDS.get_or_init(|| {
        let mut v = Vec::new();
        for case in ["good", "bad", "conflict", "histograms"] {
            let dir = fixtures().join("textfile").join(case);
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut paths: Vec<_> = rd.flatten().map(|e| e.path()).collect();
            paths.sort();
            for p in paths {
                if let Ok(b) = std::fs::read(&p) {
                    v.push(b);
                }
            }
        }
        assert!(!v.is_empty(), "no textfile seeds");
        v
    });
    seeds[pick % seeds.len()].clone()
}

fn scrape_seed(pick: usize) -> Vec<u8> {
    const SEEDS: &[&str] = &[
        "# HELP a_total Requests.\n# TYPE a_total counter\na_total{code=\"200\",path=\"/x\\\"y\"} 3 1700000000000\n\n# c\nb NaN\n",
        "# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2\n",
        "# TYPE a counter\n# UNIT a_seconds seconds\na_total{b=\"c\"} 1 1.5 # {t=\"x\"} 0.5 2\na_created 1.7e9\n# EOF\n",
        "# TYPE s stateset\ns{s=\"a\"} 1\n# TYPE i info\ni_info{v=\"1\"} 1\n# EOF",
    ];
    SEEDS[pick % SEEDS.len()].as_bytes().to_vec()
}

fn config_seed(pick: usize) -> Vec<u8> {
    // Listen addresses are dropped (see fuzz_config_loader).
    let full = r#"[global]
scrape_interval = "15s"
scrape_timeout = "10s"
external_labels = { site = "depot-7", "quoted key" = "v" }
[web]
telemetry_path = "/metrics"
[paths]
procfs = "/proc"
sysfs = "/sys"
[collectors]
disable = ["hwmon", "nvme"]
enable = ["textfile"]
[collectors.textfile]
directory = "/var/lib/cairn/textfile"
max_bytes = 1048576
[collectors.diskstats]
device_include = "^sd"
[wal]
engine = "segment"
max_size = "512MiB"
max_age = "72h"
[[remote_write]]
name = "central"
url = "https://metrics.example.com/api/v1/write"
headers = { "X-Scope-OrgID" = "depot-7" }
basic_auth = { username = "cairn", password_file = "/etc/cairn/password" }
queue_config = {
  max_samples_per_send = 2000,
  batch_send_deadline = "5s",
  min_backoff = "30ms",
  max_backoff = "5m"
}
[[remote_write]]
url = "http://127.0.0.1:9090/api/v1/write"
bearer_token_file = "/etc/cairn/token"
"#;
    let shipped: String = cairn::config::EXAMPLE
        .lines()
        .filter(|l| !l.contains("listen_"))
        .map(|l| format!("{l}\n"))
        .collect();
    if pick % 2 == 0 {
        full.as_bytes().to_vec()
    } else {
        shipped.into_bytes()
    }
}
