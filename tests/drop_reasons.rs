//! README's "Drop reasons" table lists exactly the reasons the code counts:
//! the WAL's (`cairn::wal::DROP_REASONS`) and the senders'
//! (`cairn::remote_write::metrics::DropReason::ALL`) and the scrape
//! limits' (`cairn::scrape::target::Failure::LIMITS`).

use std::collections::BTreeSet;

/// (metric, reason) rows of the table under "### Drop reasons".
fn readme_rows() -> BTreeSet<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split("### Drop reasons")
        .nth(1)
        .expect("README has a \"### Drop reasons\" section");
    let section = section.split("\n#").next().unwrap_or(section);
    let mut rows = BTreeSet::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "| `metric` | `reason` | text |" → ["", metric, reason, text, ""]
        if cells.len() < 4 {
            continue;
        }
        let (m, r) = (cells[1], cells[2]);
        if let (Some(m), Some(r)) = (
            m.strip_prefix('`').and_then(|m| m.strip_suffix('`')),
            r.strip_prefix('`').and_then(|r| r.strip_suffix('`')),
        ) {
            rows.insert((m.to_owned(), r.to_owned()));
        }
    }
    rows
}

#[test]
fn readme_lists_every_drop_reason_of_the_code_and_no_other() {
    let mut code = BTreeSet::new();
    for r in cairn::wal::DROP_REASONS {
        code.insert(("cairn_wal_dropped_samples_total".to_owned(), r.to_owned()));
    }
    for r in cairn::remote_write::metrics::DropReason::ALL {
        code.insert((
            "cairn_remote_write_samples_dropped_total".to_owned(),
            r.as_str().to_owned(),
        ));
    }
    for r in cairn::scrape::target::Failure::LIMITS {
        code.insert((
            "cairn_scrape_samples_dropped_total".to_owned(),
            r.as_str().to_owned(),
        ));
    }
    let readme = readme_rows();
    assert!(!readme.is_empty(), "no rows parsed from README");
    let missing: Vec<_> = code.difference(&readme).collect();
    let extra: Vec<_> = readme.difference(&code).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "README lacks {missing:?}; README lists reasons the code does not have: {extra:?}"
    );
}
