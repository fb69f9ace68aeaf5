//! The node_exporter parity comparison: cairn's output against node_exporter
//! 1.5.0 scraped right before and right after it, as a list of readable
//! differences (so one assertion shows them all).
//!
//! Must never: accept a difference in names, types, HELP, label names or
//! series; values are compared exactly for what cannot change between the
//! two scrapes, within the before/after window (plus a tolerance) for what
//! moves, and not at all only for instantaneous scheduler/I/O state and
//! scrape durations.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::expo::{Families, Family, Labels};

/// Families neither side is expected to share: each exporter's own runtime
/// and build metrics.
pub const IGNORED_PREFIXES: &[&str] = &["go_", "promhttp_", "node_exporter_", "process_", "cairn_"];

/// Families whose values cannot change between two scrapes a second apart:
/// compared exactly.
pub const STATIC_FAMILIES: &[&str] = &[
    "node_boot_time_seconds",
    "node_disk_info",
    "node_filesystem_device_error",
    "node_filesystem_files",
    "node_filesystem_readonly",
    "node_filesystem_size_bytes",
    "node_memory_Hugepagesize_bytes",
    "node_memory_MemTotal_bytes",
    "node_memory_SwapTotal_bytes",
    "node_memory_VmallocTotal_bytes",
    "node_os_info",
    "node_os_version",
    "node_scrape_collector_success",
    "node_time_clocksource_available_info",
    "node_time_clocksource_current_info",
    "node_time_zone_offset_seconds",
    "node_uname_info",
];

/// Families whose values are not compared: how long each exporter took, and
/// instantaneous counts of running/blocked processes and in-flight I/O,
/// which the test's own processes (and parallel tests) change from one
/// instant to the next by more than any fair tolerance.
pub const UNCOMPARED_VALUES: &[&str] = &[
    "node_disk_io_now",
    "node_procs_blocked",
    "node_procs_running",
    "node_scrape_collector_duration_seconds",
];

/// Families whose series come and go with the observer itself: node_exporter
/// is scraped over a TCP connection (an `established` socket that exists
/// only while it answers) and is itself running (`R`) when it reads
/// /proc; `cairn collect --once` has neither. Their label names and the
/// series both sides have are still compared.
pub const OBSERVER_SERIES: &[&str] = &[
    "node_processes_state",
    "node_processes_threads_state",
    "node_tcp_connection_states",
];

/// Absolute tolerances for particular families (instead of the default).
pub const ABSOLUTE_TOLERANCE: &[(&str, f64)] = &[("node_time_seconds", 5.0)];

/// Absolute tolerances by name prefix (first match wins): instantaneous
/// counts of things the test's own processes and parallel tests open and
/// close between two scrapes (sockets and their memory, connections,
/// processes and threads, open files, conntrack entries). Wide enough for a
/// busy test host, far below what a wrong field or unit produces.
pub const ABSOLUTE_TOLERANCE_PREFIXES: &[(&str, f64)] = &[
    ("node_sockstat_TCP_mem_bytes", 64.0 * 1024.0 * 1024.0),
    ("node_sockstat_UDP_mem_bytes", 64.0 * 1024.0 * 1024.0),
    ("node_sockstat_", 128.0),
    ("node_tcp_connection_states", 128.0),
    ("node_netstat_Tcp_CurrEstab", 128.0),
    ("node_udp_queues", 1024.0 * 1024.0),
    ("node_processes_", 512.0),
    ("node_filefd_allocated", 1024.0),
    ("node_nf_conntrack_entries", 128.0),
];

/// Memory gauges of a few MiB (Mapped, Inactive(anon), Shmem) move by more
/// than 5% between two scrapes while parallel tests start processes; what
/// this test must catch there is a wrong field or unit (×1024), which this
/// still does.
pub const MEMORY_BYTES_TOLERANCE: f64 = 64.0 * 1024.0 * 1024.0;

/// Default tolerance for moving values: the larger of this fraction of the
/// value and `MIN_TOLERANCE`.
pub const RELATIVE_TOLERANCE: f64 = 0.05;
pub const MIN_TOLERANCE: f64 = 1.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DiffKind {
    MissingFamily,
    ExtraFamily,
    Type,
    Help,
    LabelNames,
    MissingSeries,
    ExtraSeries,
    Value,
}

#[derive(Debug, Clone)]
pub struct Diff {
    pub kind: DiffKind,
    pub family: String,
    pub msg: String,
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.family, self.msg)
    }
}

pub fn ignored(name: &str) -> bool {
    IGNORED_PREFIXES.iter().any(|p| name.starts_with(p))
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

type Key = (String, Labels);

fn fmt_key((name, labels): &Key) -> String {
    if labels.is_empty() {
        return name.clone();
    }
    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", l.join(","))
}

fn series(f: Option<&Family>) -> BTreeMap<Key, f64> {
    f.map(|f| {
        f.samples
            .iter()
            .map(|s| ((s.name.clone(), s.labels.clone()), s.value))
            .collect()
    })
    .unwrap_or_default()
}

/// Lists up to a few keys, then how many more.
fn list_keys<'a>(keys: impl Iterator<Item = &'a Key>) -> String {
    const SHOWN: usize = 6;
    let all: Vec<&Key> = keys.collect();
    let mut s: Vec<String> = all.iter().take(SHOWN).map(|k| fmt_key(k)).collect();
    if all.len() > SHOWN {
        s.push(format!("… and {} more", all.len() - SHOWN));
    }
    s.join(", ")
}

/// Compares cairn's families with node_exporter's scraped `before` and
/// `after` cairn's collection. Returns every difference found, sorted by
/// kind and family.
pub fn compare(before: &Families, cairn: &Families, after: &Families) -> Vec<Diff> {
    let mut diffs = Vec::new();
    let mut push = |kind, family: &str, msg: String| {
        diffs.push(Diff {
            kind,
            family: family.to_owned(),
            msg,
        })
    };
    let names =
        |f: &Families| -> BTreeSet<String> { f.keys().filter(|n| !ignored(n)).cloned().collect() };
    let (nb, nc, na) = (names(before), names(cairn), names(after));
    let ne_any: BTreeSet<&String> = nb.union(&na).collect();

    for name in nb.intersection(&na).filter(|n| !nc.contains(*n)) {
        let f = &before[name];
        push(
            DiffKind::MissingFamily,
            name,
            format!(
                "missing: node_exporter has this {} family ({} series), cairn does not",
                f.kind,
                f.samples.len()
            ),
        );
    }
    for name in nc.iter().filter(|n| !ne_any.contains(n)) {
        push(
            DiffKind::ExtraFamily,
            name,
            format!(
                "extra: cairn emits this {} family ({} series), node_exporter does not",
                cairn[name].kind,
                cairn[name].samples.len()
            ),
        );
    }

    for name in nc.iter().filter(|n| ne_any.contains(n)) {
        let c = &cairn[name];
        let (b, a) = (before.get(name), after.get(name));
        let r = b.or(a).expect("in one of the two scrapes");
        if c.kind != r.kind {
            push(
                DiffKind::Type,
                name,
                format!("TYPE is {} in cairn, {} in node_exporter", c.kind, r.kind),
            );
        }
        if c.help != r.help {
            push(
                DiffKind::Help,
                name,
                format!(
                    "HELP is {:?} in cairn, {:?} in node_exporter",
                    c.help, r.help
                ),
            );
        }
        let mut ne_labels = r.label_name_sets();
        if let Some(a) = a {
            ne_labels.extend(a.label_name_sets());
        }
        let c_labels = c.label_name_sets();
        if c_labels != ne_labels {
            push(
                DiffKind::LabelNames,
                name,
                format!("label names are {c_labels:?} in cairn, {ne_labels:?} in node_exporter"),
            );
            // Every series would differ too; one message says it.
            continue;
        }

        let (sb, sc, sa) = (series(b), series(Some(c)), series(a));
        // A series that came or went between the two scrapes (a mount, an
        // interface) may or may not be in cairn's collection.
        let missing: Vec<&Key> = sb
            .keys()
            .filter(|k| sa.contains_key(*k) && !sc.contains_key(*k))
            .collect();
        let observer = OBSERVER_SERIES.contains(&name.as_str());
        if !missing.is_empty() && !observer {
            push(
                DiffKind::MissingSeries,
                name,
                format!(
                    "{} series missing in cairn: {}",
                    missing.len(),
                    list_keys(missing.iter().copied())
                ),
            );
        }
        let extra: Vec<&Key> = sc
            .keys()
            .filter(|k| !sb.contains_key(*k) && !sa.contains_key(*k))
            .collect();
        if !extra.is_empty() && !observer {
            push(
                DiffKind::ExtraSeries,
                name,
                format!(
                    "{} series only in cairn: {}",
                    extra.len(),
                    list_keys(extra.iter().copied())
                ),
            );
        }

        if UNCOMPARED_VALUES.contains(&name.as_str()) {
            continue;
        }
        let exact = STATIC_FAMILIES.contains(&name.as_str());
        let abs_tol = ABSOLUTE_TOLERANCE
            .iter()
            .find(|(n, _)| n == name)
            .or_else(|| {
                ABSOLUTE_TOLERANCE_PREFIXES
                    .iter()
                    .find(|(p, _)| name.starts_with(p))
            })
            .map(|(_, t)| *t);
        let min_tol = if name.starts_with("node_memory_") && name.ends_with("_bytes") {
            MEMORY_BYTES_TOLERANCE
        } else {
            MIN_TOLERANCE
        };
        for (key, &cv) in &sc {
            let refs: Vec<f64> = [sb.get(key), sa.get(key)]
                .into_iter()
                .flatten()
                .copied()
                .collect();
            if refs.is_empty() {
                continue; // reported as an extra series
            }
            let ne = refs
                .iter()
                .map(|v| fmt_value(*v))
                .collect::<Vec<_>>()
                .join(" then ");
            if exact || refs.iter().any(|v| !v.is_finite()) || !cv.is_finite() {
                if !refs.iter().any(|v| same(*v, cv)) {
                    push(
                        DiffKind::Value,
                        name,
                        format!(
                            "{} = {} in cairn, {ne} in node_exporter (must be equal)",
                            fmt_key(key),
                            fmt_value(cv)
                        ),
                    );
                }
                continue;
            }
            let lo = refs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = refs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let tol = abs_tol
                .unwrap_or_else(|| (RELATIVE_TOLERANCE * lo.abs().max(hi.abs())).max(min_tol));
            if cv < lo - tol || cv > hi + tol {
                push(
                    DiffKind::Value,
                    name,
                    format!(
                        "{} = {} in cairn, outside [{}, {}] (node_exporter {ne}, tolerance {})",
                        fmt_key(key),
                        fmt_value(cv),
                        fmt_value(lo - tol),
                        fmt_value(hi + tol),
                        fmt_value(tol)
                    ),
                );
            }
        }
    }
    diffs.sort_by(|x, y| (x.kind, &x.family).cmp(&(y.kind, &y.family)));
    diffs
}

/// How much of node_exporter's output cairn covers, family by family: a
/// family counts when cairn emits it with the same TYPE and the same label
/// names. Families in only one of the two node_exporter scrapes are left
/// out (they came or went meanwhile).
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    pub total: usize,
    pub covered: usize,
    /// node_exporter families cairn does not emit: "name (type, N series)".
    pub missing: Vec<String>,
    pub type_mismatch: Vec<String>,
    pub label_mismatch: Vec<String>,
}

impl Coverage {
    pub fn ratio(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.covered as f64 / self.total as f64
        }
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "cairn covers {} of node_exporter's {} families ({:.1}%)",
            self.covered,
            self.total,
            100.0 * self.ratio()
        )?;
        for (title, list) in [
            ("missing", &self.missing),
            ("different TYPE", &self.type_mismatch),
            ("different label names", &self.label_mismatch),
        ] {
            if !list.is_empty() {
                writeln!(f, "  {} {title}:", list.len())?;
                for l in list {
                    writeln!(f, "    {l}")?;
                }
            }
        }
        Ok(())
    }
}

pub fn coverage(before: &Families, cairn: &Families, after: &Families) -> Coverage {
    let mut c = Coverage::default();
    for (name, b) in before.iter().filter(|(n, _)| !ignored(n)) {
        let Some(a) = after.get(name) else { continue };
        c.total += 1;
        let Some(mine) = cairn.get(name) else {
            c.missing
                .push(format!("{name} ({}, {} series)", b.kind, b.samples.len()));
            continue;
        };
        if mine.kind != b.kind {
            c.type_mismatch.push(format!(
                "{name}: {} in cairn, {} in node_exporter",
                mine.kind, b.kind
            ));
            continue;
        }
        let mut ne_labels = b.label_name_sets();
        ne_labels.extend(a.label_name_sets());
        let c_labels = mine.label_name_sets();
        if c_labels != ne_labels {
            c.label_mismatch.push(format!(
                "{name}: {c_labels:?} in cairn, {ne_labels:?} in node_exporter"
            ));
            continue;
        }
        c.covered += 1;
    }
    c
}
