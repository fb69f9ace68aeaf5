//! README stays true: its collector lists match the registry, every TOML
//! example passes `cairn check-config`, every flag it shows for cairn
//! exists, and it speaks only of the product.

mod common;

use std::collections::BTreeSet;

use common::{repo_path, run_cairn, text};

fn readme() -> String {
    std::fs::read_to_string(repo_path("README.md")).expect("README.md")
}

/// The `names` in backticks of the paragraph starting with `prefix`.
fn listed(readme: &str, prefix: &str) -> BTreeSet<String> {
    let start = readme
        .find(prefix)
        .unwrap_or_else(|| panic!("README has no paragraph starting {prefix:?}"));
    let para = readme[start + prefix.len()..]
        .split("\n\n")
        .next()
        .unwrap_or("");
    let re = regex::Regex::new(r"`([a-z0-9_]+)`").expect("regex");
    re.captures_iter(para).map(|c| c[1].to_owned()).collect()
}

#[test]
fn collector_lists_match_the_registry() {
    let r = readme();
    let set = |f: &dyn Fn(&cairn::collector::Known) -> bool| -> BTreeSet<String> {
        cairn::collector::KNOWN
            .iter()
            .filter(|k| f(k))
            .map(|k| k.name.to_owned())
            .collect()
    };
    assert_eq!(
        listed(&r, "On by default:"),
        set(&|k| k.build.is_some() && k.default_enabled),
        "README's \"On by default\" list"
    );
    assert_eq!(
        listed(&r, "Off by default (enable with `--collector.NAME`):"),
        set(&|k| k.build.is_some() && !k.default_enabled),
        "README's \"Off by default\" list"
    );
    assert_eq!(
        listed(
            &r,
            "Accepted but not implemented in this version (enabling one logs a warning and skips it):"
        ),
        set(&|k| k.build.is_none()),
        "README's not-implemented list"
    );
}

/// Fenced blocks of `lang`.
fn fenced(readme: &str, lang: &str) -> Vec<String> {
    let open = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = readme;
    while let Some(i) = rest.find(&open) {
        let body = &rest[i + open.len()..];
        let end = body.find("```").expect("unclosed code block");
        out.push(body[..end].to_owned());
        rest = &body[end..];
    }
    out
}

#[test]
fn every_toml_example_passes_check_config() {
    let blocks = fenced(&readme(), "toml");
    assert!(!blocks.is_empty(), "README shows no TOML example");
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, b) in blocks.iter().enumerate() {
        let p = dir.path().join(format!("example-{i}.toml"));
        std::fs::write(&p, b).expect("write example");
        let out = run_cairn(&["check-config", p.to_str().expect("utf-8 path")]);
        assert!(
            out.status.success(),
            "README's TOML example {i} fails check-config:\n{b}\n{}",
            text(&out.stderr)
        );
    }
}

/// Flags README shows for cairn: those in `cairn ...` command lines and
/// inline spans, and every flag in the "Command-line flags" section.
fn flags_shown(readme: &str) -> BTreeSet<String> {
    let flag = regex::Regex::new(r"--[a-z][a-z0-9._-]*").expect("regex");
    let mut texts: Vec<&str> = Vec::new();
    for l in readme.lines() {
        let t = l.trim_start();
        if t.starts_with("cairn ") || t.starts_with("sudo cairn ") {
            texts.push(t);
        }
    }
    let span = regex::Regex::new(r"`(cairn [^`]*)`").expect("regex");
    for c in span.captures_iter(readme) {
        texts.push(c.get(1).map_or("", |m| m.as_str()));
    }
    let start = readme.find("## Command-line flags").expect("flags section");
    let end = readme[start..]
        .find("\n### ")
        .map_or(readme.len(), |e| start + e);
    texts.push(&readme[start..end]);
    let mut out = BTreeSet::new();
    for t in texts {
        // A comment after a command is prose, not flags.
        let t = t.split(" # ").next().unwrap_or(t);
        for m in flag.find_iter(t) {
            out.insert(m.as_str().trim_end_matches(['.', ',']).to_owned());
        }
    }
    out
}

#[test]
fn every_flag_readme_shows_exists() {
    let mut help = String::new();
    for args in [
        &["--help"][..],
        &["wal", "status", "--help"],
        &["collect", "--help"],
        &["check-config", "--help"],
    ] {
        let out = run_cairn(args);
        assert!(out.status.success(), "cairn {args:?}");
        help.push_str(&text(&out.stdout));
    }
    let known: BTreeSet<String> = regex::Regex::new(r"--[a-z][a-z0-9._-]*")
        .expect("regex")
        .find_iter(&help)
        .map(|m| m.as_str().to_owned())
        .collect();
    let shown = flags_shown(&readme());
    assert!(shown.len() >= 15, "too few flags found: {shown:?}");
    for f in &shown {
        // --no-X is the hidden negation of every boolean --X.
        let f = f.replacen("--no-", "--", 1);
        // `--collector.NAME`: a placeholder; some flag must extend it.
        let ok = known.contains(&f)
            || (f.ends_with('.') || f == "--collector") && known.iter().any(|k| k.starts_with(&f));
        assert!(ok, "README shows {f}, which `cairn --help` does not know");
    }
}

#[test]
fn readme_speaks_only_of_the_product() {
    let re = regex::Regex::new(
        r"\bissues?\b|#\d+|\bthe lead\b|design card|\bhelpers?\b|\btodo\b|\bfixme\b|\bplanned\b|\broadmap\b",
    )
    .expect("regex");
    let r = readme();
    let hits: Vec<&str> = r
        .lines()
        .filter(|l| re.is_match(&l.to_lowercase()))
        .collect();
    assert!(
        hits.is_empty(),
        "README lines about process, not product:\n{}",
        hits.join("\n")
    );
    assert!(r.contains("## Monitoring cairn itself"));
    for f in [
        "mixin/cairn-dashboard.json",
        "mixin/cairn-alerts.yml",
        "node-mixin",
        "/status.json",
    ] {
        assert!(r.contains(f), "the monitoring section names {f}");
    }
}
