//! `parity`: runs Debian's node_exporter 1.5.0 and cairn on this host with
//! the same collectors and prints every difference (missing or extra
//! families, TYPE/HELP/label-name mismatches, missing or extra series,
//! values outside node_exporter's before/after window plus a tolerance for
//! moving counters). bench/parity.sh builds and runs it; the integration
//! test tests/node_exporter_parity.rs runs the very same code
//! (tests/common/parity_run.rs).
//!
//! ```text
//! parity [--cairn PATH] [--node-exporter PATH] [--textfile-dir DIR]
//!        [--attempts N] [--min-coverage F] [--defaults | --strict | COLLECTOR...]
//! ```
//! No collector (or `--defaults`): both with their default collectors plus
//! tcpstat, processes and interrupts (node_exporter without systemd);
//! prints the family coverage and all differences, fails below
//! --min-coverage (0.98). `--strict`: the integration test's collector list.
//! COLLECTOR...: only those; fails on any difference.
//!
//! Must never: reach anything but loopback or leave node_exporter running.

// The integration test's own modules (they refer to each other as
// `super::expo` etc., which the crate root satisfies here).
#[allow(dead_code)]
#[path = "../tests/common/expo.rs"]
mod expo;
#[allow(dead_code)]
#[path = "../tests/common/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "../tests/common/parity.rs"]
mod parity;
#[allow(dead_code)]
#[path = "../tests/common/parity_run.rs"]
mod parity_run;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use parity_run::{Mode, Setup, STRICT_COLLECTORS};

const USAGE: &str = "usage: parity [--cairn PATH] [--node-exporter PATH] [--textfile-dir DIR] \
[--attempts N] [--min-coverage F] [--defaults | --strict | COLLECTOR...]";

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// $CAIRN_NODE_EXPORTER, then PATH, then where scripts/test.sh and the
/// benchmarks unpack Debian's package.
fn find_node_exporter(repo: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CAIRN_NODE_EXPORTER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let names = ["prometheus-node-exporter", "node_exporter"];
    for dir in std::env::split_paths(&path) {
        for n in names {
            if executable(&dir.join(n)) {
                return Some(dir.join(n));
            }
        }
    }
    [
        repo.join("target/deps/usr/bin/prometheus-node-exporter"),
        PathBuf::from("/tmp/deps/usr/bin/prometheus-node-exporter"),
    ]
    .into_iter()
    .find(|p| executable(p))
}

fn main() -> ExitCode {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut cairn = repo.join("target/debug/cairn");
    let mut node_exporter = None;
    let mut textfile_dir = String::new();
    let mut attempts = 3;
    let mut min_coverage = 0.98;
    let mut mode = None;
    let mut collectors = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next().unwrap_or_else(|| {
                eprintln!("parity: {name} needs a value\n{USAGE}");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--cairn" => cairn = PathBuf::from(value("--cairn")),
            "--node-exporter" => node_exporter = Some(PathBuf::from(value("--node-exporter"))),
            "--textfile-dir" => textfile_dir = value("--textfile-dir"),
            "--attempts" => attempts = value("--attempts").parse().unwrap_or(3),
            "--min-coverage" => min_coverage = value("--min-coverage").parse().unwrap_or(0.98),
            "--defaults" => mode = Some(Mode::Defaults),
            "--strict" => {
                mode = Some(Mode::Strict(
                    STRICT_COLLECTORS.iter().map(|s| s.to_string()).collect(),
                ))
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            c if c.starts_with('-') => {
                eprintln!("parity: unknown option {c}\n{USAGE}");
                return ExitCode::from(2);
            }
            c => collectors.push(c.to_owned()),
        }
    }
    let mode = match (mode, collectors.is_empty()) {
        (Some(m), true) => m,
        (None, true) => Mode::Defaults,
        (None, false) => Mode::Strict(collectors),
        (Some(_), false) => {
            eprintln!("parity: give collectors or a mode, not both\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Some(node_exporter) = node_exporter.or_else(|| find_node_exporter(&repo)) else {
        eprintln!(
            "parity: node_exporter 1.5.0 not found: set CAIRN_NODE_EXPORTER or --node-exporter, \
             or unpack Debian's prometheus-node-exporter (scripts/test.sh does, into target/deps)"
        );
        return ExitCode::from(2);
    };
    if !executable(&cairn) {
        eprintln!(
            "parity: no cairn binary at {} (cargo build first)",
            cairn.display()
        );
        return ExitCode::from(2);
    }
    let setup = Setup {
        cairn,
        node_exporter,
        mode: mode.clone(),
        textfile_dir,
        attempts,
    };
    println!(
        "node_exporter: {} {}",
        setup.node_exporter.display(),
        setup.node_exporter_args(0)[1..].join(" ")
    );
    println!(
        "cairn: {} {}",
        setup.cairn.display(),
        setup.cairn_args().join(" ")
    );
    let o = match parity_run::run(&setup) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("parity: {e}");
            return ExitCode::FAILURE;
        }
    };
    let version = o.version.as_deref().unwrap_or("unknown");
    if version != "1.5.0" {
        println!("WARNING: the reference is node_exporter {version}, not 1.5.0");
    }
    println!("attempts: {}\n", o.attempts);
    print!("{}", parity_run::report(&o));
    match mode {
        Mode::Defaults => {
            println!();
            print!("{}", o.coverage);
            if o.coverage.ratio() < min_coverage {
                println!("below the required {:.1}%", min_coverage * 100.0);
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Mode::Strict(_) if o.diffs.is_empty() => ExitCode::SUCCESS,
        Mode::Strict(_) => ExitCode::FAILURE,
    }
}
