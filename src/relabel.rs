//! Prometheus relabeling: `write_relabel_configs` (and any later
//! `*relabel_configs`) with Prometheus' semantics, rule for rule.
//!
//! Owns: the rule schema with Prometheus' key names and defaults
//! (`RelabelConfig`), the validation Prometheus does when it loads a
//! config (`Rule::new`, errors naming the key at fault), fully anchored
//! regexes compiled once, Go's `regexp.Expand` rules for `$1`, `${1}` and
//! `$name`, every action (replace, keep, drop, keepequal, dropequal,
//! hashmod, labelmap, labeldrop, labelkeep, lowercase, uppercase) and the
//! label set they work on (`Labels`: sorted, no empty values).
//!
//! Must never: compile a regex while processing (only `Rule::new` does),
//! panic on any label set, or know where label sets come from (the
//! remote_write sender applies rules once per series set, not per sample).
//!
//! Known differences from Prometheus, all on inputs no real config meets:
//! `lowercase`/`uppercase` use Rust's full Unicode case mapping where Go
//! maps rune by rune (they differ for a handful of characters such as
//! `İ`); `labelmap` skips a mapped name that comes out empty (Prometheus
//! would set a label with an empty name, which every receiver refuses).

use md5::{Digest, Md5};
use regex::{CaptureLocations, Regex};
use serde::Deserialize;

/// One rule as written in the config, Prometheus' keys; unset keys take
/// Prometheus' defaults in `Rule::new`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    pub source_labels: Option<Vec<String>>,
    pub separator: Option<String>,
    pub target_label: Option<String>,
    pub regex: Option<String>,
    pub modulus: Option<u64>,
    pub replacement: Option<String>,
    pub action: Option<String>,
}

const DEFAULT_SEPARATOR: &str = ";";
const DEFAULT_REGEX: &str = "(.*)";
const DEFAULT_REPLACEMENT: &str = "$1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl Action {
    pub const ALL: [(&'static str, Action); 11] = [
        ("replace", Action::Replace),
        ("keep", Action::Keep),
        ("drop", Action::Drop),
        ("keepequal", Action::KeepEqual),
        ("dropequal", Action::DropEqual),
        ("hashmod", Action::HashMod),
        ("labelmap", Action::LabelMap),
        ("labeldrop", Action::LabelDrop),
        ("labelkeep", Action::LabelKeep),
        ("lowercase", Action::Lowercase),
        ("uppercase", Action::Uppercase),
    ];

    /// Case-insensitive, as Prometheus reads it.
    pub fn parse(s: &str) -> Option<Action> {
        let lower = s.to_ascii_lowercase();
        Self::ALL
            .iter()
            .find(|(name, _)| *name == lower)
            .map(|(_, a)| *a)
    }

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("replace", |(name, _)| name)
    }
}

/// Why a rule is invalid, and which of its keys to point at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct RuleError {
    /// The key at fault (`target_label`, `regex`, ...), as the config
    /// spells it.
    pub field: &'static str,
    pub msg: String,
}

fn fail<T>(field: &'static str, msg: String) -> Result<T, RuleError> {
    Err(RuleError { field, msg })
}

/// A validated rule with its regex compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    action: Action,
    source_labels: Vec<String>,
    separator: String,
    target_label: String,
    /// Whether `target_label` / `replacement` hold `$` references (else
    /// they are used as they are, without expanding).
    target_expands: bool,
    replacement_expands: bool,
    regex: Regex,
    /// Capture group names by index (`None` for unnamed groups).
    names: Vec<Option<String>>,
    modulus: u64,
    replacement: String,
}

/// Prometheus' (legacy) label name rule: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Prometheus' pattern for a target label (or labelmap replacement) with
/// references: `^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$` with Go's
/// ASCII `\w`. In words: a non-empty sequence of pieces, each a letter,
/// `_`, `$word` or `${word}`, optionally followed by word characters.
/// Equivalently: the string is made of word characters and `$word` /
/// `${word}` references, and does not start with a digit.
fn is_valid_target_pattern(s: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = s.as_bytes();
    if b.is_empty() || b[0].is_ascii_digit() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if word(b[i]) {
            i += 1;
        } else if b[i] == b'$' {
            i += 1;
            if i < b.len() && b[i] == b'{' {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && word(b[j]) {
                    j += 1;
                }
                if j == start || j >= b.len() || b[j] != b'}' {
                    return false;
                }
                i = j + 1;
            } else {
                let start = i;
                while i < b.len() && word(b[i]) {
                    i += 1;
                }
                if i == start {
                    return false;
                }
            }
        } else {
            return false;
        }
    }
    true
}

impl Rule {
    /// Applies Prometheus' defaults and checks what Prometheus checks when
    /// it loads a config.
    pub fn new(c: &RelabelConfig) -> Result<Rule, RuleError> {
        let action = match c.action.as_deref() {
            None => Action::Replace,
            Some(s) => match Action::parse(s) {
                Some(a) => a,
                None if s.is_empty() => {
                    return fail("action", "relabel action cannot be empty".into())
                }
                None => {
                    let known: Vec<&str> = Action::ALL.iter().map(|(n, _)| *n).collect();
                    return fail(
                        "action",
                        format!(
                            "unknown relabel action {s:?} (one of: {})",
                            known.join(", ")
                        ),
                    );
                }
            },
        };
        let source_labels = c.source_labels.clone().unwrap_or_default();
        if let Some(bad) = source_labels.iter().find(|l| !is_valid_label_name(l)) {
            return fail(
                "source_labels",
                format!("{bad:?} is not a valid label name"),
            );
        }
        let separator = c
            .separator
            .clone()
            .unwrap_or_else(|| DEFAULT_SEPARATOR.into());
        let target_label = c.target_label.clone().unwrap_or_default();
        let replacement = c
            .replacement
            .clone()
            .unwrap_or_else(|| DEFAULT_REPLACEMENT.into());
        let modulus = c.modulus.unwrap_or(0);
        let source = c.regex.as_deref().unwrap_or(DEFAULT_REGEX);
        let regex = Regex::new(&format!("^(?:{source})$")).map_err(|e| RuleError {
            field: "regex",
            msg: format!("invalid regex {source:?}: {e}"),
        })?;

        let name = action.as_str();
        use Action::*;
        if action == HashMod && modulus == 0 {
            return fail(
                "modulus",
                "relabel configuration for hashmod requires non-zero modulus".into(),
            );
        }
        let needs_target = matches!(
            action,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        );
        if needs_target && target_label.is_empty() {
            return fail(
                "target_label",
                format!("relabel configuration for {name} action requires 'target_label' value"),
            );
        }
        let invalid_target = || {
            fail(
                "target_label",
                format!("{target_label:?} is invalid 'target_label' for {name} action"),
            )
        };
        let target_expands = target_label.contains('$');
        match action {
            Replace if !target_expands && !is_valid_label_name(&target_label) => {
                return invalid_target()
            }
            Replace if target_expands && !is_valid_target_pattern(&target_label) => {
                return invalid_target()
            }
            Lowercase | Uppercase | KeepEqual | DropEqual | HashMod
                if !is_valid_label_name(&target_label) =>
            {
                return invalid_target()
            }
            _ => {}
        }
        if matches!(action, Lowercase | Uppercase | KeepEqual | DropEqual)
            && replacement != DEFAULT_REPLACEMENT
        {
            return fail(
                "replacement",
                format!("'replacement' can not be set for {name} action"),
            );
        }
        if action == LabelMap && !is_valid_target_pattern(&replacement) {
            return fail(
                "replacement",
                format!("{replacement:?} is invalid 'replacement' for {name} action"),
            );
        }
        if matches!(action, KeepEqual | DropEqual) {
            let extra = [
                ("regex", c.regex.is_some()),
                ("modulus", modulus != 0),
                ("separator", separator != DEFAULT_SEPARATOR),
            ];
            if let Some((field, _)) = extra.iter().find(|(_, set)| *set) {
                return fail(
                    field,
                    format!(
                        "{name} action requires only 'source_labels' and 'target_label', and no other fields"
                    ),
                );
            }
        }
        if matches!(action, LabelDrop | LabelKeep) {
            let extra = [
                ("source_labels", c.source_labels.is_some()),
                ("target_label", !target_label.is_empty()),
                ("modulus", modulus != 0),
                ("separator", separator != DEFAULT_SEPARATOR),
                ("replacement", replacement != DEFAULT_REPLACEMENT),
            ];
            if let Some((field, _)) = extra.iter().find(|(_, set)| *set) {
                return fail(
                    field,
                    format!("{name} action requires only 'regex', and no other fields"),
                );
            }
        }
        let names = regex
            .capture_names()
            .map(|n| n.map(str::to_owned))
            .collect();
        Ok(Rule {
            action,
            source_labels,
            separator,
            target_expands,
            replacement_expands: replacement.contains('$'),
            target_label,
            regex,
            names,
            modulus,
            replacement,
        })
    }

    pub fn action(&self) -> Action {
        self.action
    }
}

/// A label set: sorted by name, unique names, no empty values (setting a
/// label to "" deletes it, as in Prometheus).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// From pairs in any order; of duplicate names the first is kept,
    /// empty values are left out.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut v: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|later, earlier| later.0 == earlier.0);
        Labels(v)
    }

    /// Replaces the content with `pairs`, reusing the allocations.
    pub fn assign<'a>(&mut self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let mut n = 0;
        for (k, v) in pairs {
            if v.is_empty() {
                continue;
            }
            if let Some(slot) = self.0.get_mut(n) {
                slot.0.clear();
                slot.0.push_str(k);
                slot.1.clear();
                slot.1.push_str(v);
            } else {
                self.0.push((k.to_owned(), v.to_owned()));
            }
            n += 1;
        }
        self.0.truncate(n);
        if !self.0.windows(2).all(|w| w[0].0 < w[1].0) {
            self.0.sort_by(|a, b| a.0.cmp(&b.0));
            self.0.dedup_by(|later, earlier| later.0 == earlier.0);
        }
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(name))
    }

    /// The value of `name`, "" when absent (Prometheus does not tell the two apart).
    pub fn get(&self, name: &str) -> &str {
        self.find(name).map_or("", |i| self.0[i].1.as_str())
    }

    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            self.del(name);
            return;
        }
        match self.find(name) {
            Ok(i) => {
                let v = &mut self.0[i].1;
                v.clear();
                v.push_str(value);
            }
            Err(i) => self.0.insert(i, (name.to_owned(), value.to_owned())),
        }
    }

    pub fn del(&mut self, name: &str) {
        if let Ok(i) = self.find(name) {
            self.0.remove(i);
        }
    }
}

/// Reusable buffers for `Rules::process`, so processing a series
/// allocates only for labels it adds.
#[derive(Debug, Default)]
pub struct Scratch {
    val: String,
    target: String,
    out: String,
    locs: Vec<Option<CaptureLocations>>,
    mapped: Vec<(String, String)>,
}

/// An ordered list of rules, compiled once at config load.
#[derive(Debug, Clone, Default)]
pub struct Rules(Vec<Rule>);

impl Rules {
    pub fn new(rules: Vec<Rule>) -> Self {
        Rules(rules)
    }

    /// Validates and compiles `configs`; the error carries the index of the
    /// rule at fault.
    pub fn compile(configs: &[RelabelConfig]) -> Result<Self, (usize, RuleError)> {
        configs
            .iter()
            .enumerate()
            .map(|(i, c)| Rule::new(c).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()
            .map(Rules)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Applies the rules in order to `labels`; false when a rule drops
    /// the set (then `labels` holds what it was at that point).
    pub fn process(&self, labels: &mut Labels, scratch: &mut Scratch) -> bool {
        if scratch.locs.len() < self.0.len() {
            scratch.locs.resize_with(self.0.len(), || None);
        }
        for (i, rule) in self.0.iter().enumerate() {
            if !apply(rule, labels, scratch, i) {
                return false;
            }
        }
        true
    }
}

fn apply(rule: &Rule, labels: &mut Labels, s: &mut Scratch, i: usize) -> bool {
    s.val.clear();
    for (n, name) in rule.source_labels.iter().enumerate() {
        if n > 0 {
            s.val.push_str(&rule.separator);
        }
        s.val.push_str(labels.get(name));
    }
    match rule.action {
        Action::Drop => return !rule.regex.is_match(&s.val),
        Action::Keep => return rule.regex.is_match(&s.val),
        Action::DropEqual => return labels.get(&rule.target_label) != s.val,
        Action::KeepEqual => return labels.get(&rule.target_label) == s.val,
        Action::Replace => {
            let locs = s.locs[i].get_or_insert_with(|| rule.regex.capture_locations());
            if rule.regex.captures_read(locs, &s.val).is_none() {
                return true;
            }
            s.target.clear();
            if rule.target_expands {
                expand(&rule.target_label, &s.val, locs, &rule.names, &mut s.target);
            } else {
                s.target.push_str(&rule.target_label);
            }
            if !is_valid_label_name(&s.target) {
                return true;
            }
            s.out.clear();
            if rule.replacement_expands {
                expand(&rule.replacement, &s.val, locs, &rule.names, &mut s.out);
            } else {
                s.out.push_str(&rule.replacement);
            }
            labels.set(&s.target, &s.out);
        }
        Action::Lowercase => {
            let v = s.val.to_lowercase();
            labels.set(&rule.target_label, &v);
        }
        Action::Uppercase => {
            let v = s.val.to_uppercase();
            labels.set(&rule.target_label, &v);
        }
        Action::HashMod => {
            let digest = Md5::digest(s.val.as_bytes());
            let mut last = [0u8; 8];
            last.copy_from_slice(&digest[8..16]);
            let m = u64::from_be_bytes(last) % rule.modulus;
            labels.set(&rule.target_label, &m.to_string());
        }
        Action::LabelMap => {
            // Every name is matched against the set as it was before the
            // rule (Prometheus ranges over a snapshot), then the copies land.
            let locs = s.locs[i].get_or_insert_with(|| rule.regex.capture_locations());
            s.mapped.clear();
            for (name, value) in labels.pairs() {
                if rule.regex.captures_read(locs, name).is_none() {
                    continue;
                }
                let mut to = String::new();
                expand(&rule.replacement, name, locs, &rule.names, &mut to);
                if !to.is_empty() {
                    s.mapped.push((to, value.clone()));
                }
            }
            for (to, value) in s.mapped.drain(..) {
                labels.set(&to, &value);
            }
        }
        Action::LabelDrop => labels.0.retain(|(k, _)| !rule.regex.is_match(k)),
        Action::LabelKeep => labels.0.retain(|(k, _)| rule.regex.is_match(k)),
    }
    true
}

/// Go's `regexp.Expand`: `$name` or `${name}`, a name being the longest run
/// of letters, digits and `_` (so `$1x` is the group named `1x`); a number
/// is a group index; an unknown or unmatched group expands to nothing;
/// `$$` is a `$`; a `$` that starts no valid reference stays as it is.
fn expand(
    template: &str,
    src: &str,
    locs: &CaptureLocations,
    names: &[Option<String>],
    out: &mut String,
) {
    let group = |i: usize, out: &mut String| {
        if let Some((a, b)) = locs.get(i) {
            out.push_str(&src[a..b]);
        }
    };
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let Some((name, after)) = reference(rest) else {
            out.push('$');
            continue;
        };
        rest = after;
        match group_number(name) {
            Some(n) => group(n, out),
            None => {
                if let Some(i) = names.iter().position(|n| n.as_deref() == Some(name)) {
                    group(i, out);
                }
            }
        }
    }
    out.push_str(rest);
}

/// The name of a reference at the start of `s` (just after its `$`) and
/// what follows it; None when malformed.
fn reference(s: &str) -> Option<(&str, &str)> {
    let (body, brace) = match s.strip_prefix('{') {
        Some(b) => (b, true),
        None => (s, false),
    };
    let end = body
        .char_indices()
        .find(|&(_, c)| !(c.is_alphabetic() || c.is_numeric() || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let name = &body[..end];
    let after = &body[end..];
    if brace {
        let after = after.strip_prefix('}')?;
        return Some((name, after));
    }
    Some((name, after))
}

/// A group index as Go reads one: ASCII digits, no leading zero, below 1e8.
fn group_number(name: &str) -> Option<usize> {
    if !name.bytes().all(|b| b.is_ascii_digit()) || (name.len() > 1 && name.starts_with('0')) {
        return None;
    }
    let mut n: usize = 0;
    for b in name.bytes() {
        if n >= 100_000_000 {
            return None;
        }
        n = n * 10 + usize::from(b - b'0');
    }
    Some(n)
}

#[cfg(test)]
mod tests;
