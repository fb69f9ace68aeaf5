//! cairn against node_exporter 1.5.0 on this very host, through the same
//! code as `bench/parity.sh` (tests/common/parity_run.rs):
//!
//! - `default_collectors_cover_node_exporter`: both with their default
//!   collectors plus tcpstat, processes and interrupts (node_exporter
//!   without systemd): cairn must emit at least 98% of node_exporter's
//!   families with the same TYPE and label names; the missing ones are
//!   listed.
//! - `same_metrics_as_node_exporter_1_5_0`: only the collectors of
//!   `STRICT_COLLECTORS`, in both: same families, types, HELP, label names,
//!   series and (within a before/after window) values. All differences are
//!   printed by one assertion.

mod common;

use common::parity_run::{self, Mode, Setup, STRICT_COLLECTORS};

/// The share of node_exporter's families cairn must cover with its
/// defaults.
const MIN_COVERAGE: f64 = 0.98;

const ATTEMPTS: usize = 3;

fn setup(mode: Mode) -> Setup {
    Setup {
        cairn: common::cairn_bin(),
        node_exporter: common::tool(common::Tool::NodeExporter),
        mode,
        // Real files in both, so textfile is compared too.
        textfile_dir: common::repo_path("tests/fixtures/textfile/good")
            .to_str()
            .expect("UTF-8 repository path")
            .to_owned(),
        attempts: ATTEMPTS,
    }
}

fn run(mode: Mode) -> parity_run::Outcome {
    let o = parity_run::run(&setup(mode)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        o.version.as_deref(),
        Some("1.5.0"),
        "the reference must be node_exporter 1.5.0 (Debian 12's); run scripts/test.sh"
    );
    // Guard against comparing nothing (a flag node_exporter ignored, say).
    let shared = o
        .before
        .keys()
        .filter(|n| !common::parity::ignored(n))
        .count();
    assert!(
        shared > 10,
        "node_exporter returned only {shared} node_ families"
    );
    o
}

#[test]
fn default_collectors_cover_node_exporter() {
    let o = run(Mode::Defaults);
    let c = &o.coverage;
    assert!(
        c.ratio() >= MIN_COVERAGE,
        "{c}(needs {:.0}%; cairn's stderr:\n{})",
        MIN_COVERAGE * 100.0,
        o.cairn_stderr
    );
}

#[test]
fn same_metrics_as_node_exporter_1_5_0() {
    let collectors = STRICT_COLLECTORS.iter().map(|s| s.to_string()).collect();
    let o = run(Mode::Strict(collectors));
    assert!(
        o.diffs.is_empty(),
        "cairn differs from node_exporter 1.5.0 in {} place(s) (attempt {} of {ATTEMPTS}; collectors {STRICT_COLLECTORS:?}):\n{}",
        o.diffs.len(),
        o.attempts,
        parity_run::report(&o)
    );
}
