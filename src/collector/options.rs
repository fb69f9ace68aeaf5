//! Per-collector options, declared next to the collector that reads them.
//!
//! A collector file lists its options (`OPTIONS`) the way node_exporter's
//! collector files declare their kingpin flags; `cli` turns each into a
//! `--collector.NAME.OPTION` flag and `config` into a `[collectors.NAME]`
//! key, so adding an option is a one-file change. Must never: be read on the
//! collection hot path (collectors copy what they need when built).

use std::collections::BTreeMap;

use regex::Regex;

/// What kind of value an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptKind {
    /// `--collector.X.opt` / `--no-collector.X.opt`; TOML boolean.
    Bool,
    /// A regular expression; the empty string means "not set".
    Regex,
    /// Free text (a directory, a list).
    Text,
    /// A non-negative whole number.
    Count,
}

/// One option: its full flag name (`collector.diskstats.device-exclude`),
/// kind, default (written as it would be on the command line) and help.
#[derive(Debug)]
pub struct Opt {
    pub flag: &'static str,
    pub kind: OptKind,
    pub default: &'static str,
    pub help: &'static str,
    /// Older flag names node_exporter still accepts.
    pub aliases: &'static [&'static str],
}

impl Opt {
    /// The key in the collector's `[collectors.NAME]` table:
    /// `collector.cpu.info.flags-include` → `info_flags_include`.
    pub fn toml_key(&self) -> String {
        let rest = self.flag.splitn(3, '.').nth(2).unwrap_or(self.flag);
        rest.replace(['-', '.'], "_")
    }
}

#[derive(Debug, Clone)]
pub enum OptValue {
    Bool(bool),
    Regex(Option<Regex>),
    Text(String),
    Count(usize),
}

/// A value as it arrives from the command line or the config file.
pub enum Raw<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
}

fn parse(opt: &Opt, raw: Raw<'_>) -> Result<OptValue, String> {
    match (opt.kind, raw) {
        (OptKind::Bool, Raw::Bool(b)) => Ok(OptValue::Bool(b)),
        (OptKind::Bool, Raw::Str(s)) => match s {
            "true" => Ok(OptValue::Bool(true)),
            "false" => Ok(OptValue::Bool(false)),
            _ => Err(format!("expected true or false, got {s:?}")),
        },
        (OptKind::Regex, Raw::Str("")) => Ok(OptValue::Regex(None)),
        (OptKind::Regex, Raw::Str(s)) => Regex::new(s)
            .map(|r| OptValue::Regex(Some(r)))
            .map_err(|e| format!("invalid regex: {e}")),
        (OptKind::Text, Raw::Str(s)) => Ok(OptValue::Text(s.to_owned())),
        (OptKind::Count, Raw::Int(n)) => usize::try_from(n)
            .map(OptValue::Count)
            .map_err(|_| format!("expected a whole number >= 0, got {n}")),
        (OptKind::Count, Raw::Str(s)) => s
            .parse()
            .map(OptValue::Count)
            .map_err(|_| format!("expected a whole number >= 0, got {s:?}")),
        (OptKind::Bool, _) => Err("expected true or false".into()),
        (OptKind::Count, _) => Err("expected a whole number".into()),
        (OptKind::Regex | OptKind::Text, _) => Err("expected a string".into()),
    }
}

/// The values of every declared option: upstream defaults, then the config
/// file, then flags.
#[derive(Debug, Clone)]
pub struct Settings {
    values: BTreeMap<&'static str, OptValue>,
}

impl Default for Settings {
    fn default() -> Self {
        let mut values = BTreeMap::new();
        for opt in all() {
            // Defaults are constants checked by a unit test.
            if let Ok(v) = parse(opt, Raw::Str(opt.default)) {
                values.insert(opt.flag, v);
            }
        }
        Settings { values }
    }
}

/// Every option of every collector in the registry.
pub fn all() -> impl Iterator<Item = &'static Opt> {
    super::KNOWN.iter().flat_map(|k| k.options.iter())
}

pub fn find(flag: &str) -> Option<&'static Opt> {
    all().find(|o| o.flag == flag)
}

impl Settings {
    /// Sets `flag` from a raw value; the error says what was expected.
    pub fn set(&mut self, flag: &str, raw: Raw<'_>) -> Result<(), String> {
        let opt = find(flag).ok_or_else(|| format!("unknown option {flag}"))?;
        let v = parse(opt, raw)?;
        self.values.insert(opt.flag, v);
        Ok(())
    }

    /// Test and builder convenience: `Settings::default().with(flag, "^sd")`.
    /// Panics on an invalid value, so keep it to constants.
    pub fn with(mut self, flag: &str, value: &str) -> Self {
        if let Err(e) = self.set(flag, Raw::Str(value)) {
            panic!("{flag}={value:?}: {e}");
        }
        self
    }

    fn get(&self, flag: &str) -> Option<&OptValue> {
        let v = self.values.get(flag);
        debug_assert!(
            v.is_some(),
            "option {flag} is not declared by any collector"
        );
        v
    }

    pub fn bool(&self, flag: &str) -> bool {
        matches!(self.get(flag), Some(OptValue::Bool(true)))
    }

    pub fn regex(&self, flag: &str) -> Option<Regex> {
        match self.get(flag) {
            Some(OptValue::Regex(r)) => r.clone(),
            _ => None,
        }
    }

    pub fn text(&self, flag: &str) -> &str {
        match self.get(flag) {
            Some(OptValue::Text(s)) => s,
            _ => "",
        }
    }

    pub fn count(&self, flag: &str) -> usize {
        match self.get(flag) {
            Some(OptValue::Count(n)) => *n,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_parses_and_flags_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for opt in all() {
            parse(opt, Raw::Str(opt.default)).unwrap_or_else(|e| panic!("{}: {e}", opt.flag));
            assert!(seen.insert(opt.flag), "duplicate option {}", opt.flag);
            assert!(opt.flag.starts_with("collector."), "{}", opt.flag);
        }
    }

    #[test]
    fn toml_keys() {
        let o = Opt {
            flag: "collector.cpu.info.flags-include",
            kind: OptKind::Regex,
            default: "",
            help: "",
            aliases: &[],
        };
        assert_eq!(o.toml_key(), "info_flags_include");
    }

    #[test]
    fn values_parse_by_kind() {
        let mut s = Settings::default();
        assert!(s.set("collector.cpu.guest", Raw::Str("maybe")).is_err());
        assert!(s.set("collector.cpu.guest", Raw::Bool(false)).is_ok());
        assert!(!s.bool("collector.cpu.guest"));
        assert!(s
            .set("collector.diskstats.device-include", Raw::Str("("))
            .is_err());
        assert!(s
            .set("collector.diskstats.device-include", Raw::Int(3))
            .is_err());
        s.set("collector.diskstats.device-include", Raw::Str(""))
            .unwrap();
        assert!(s.regex("collector.diskstats.device-include").is_none());
        assert!(s.set("collector.nope.x", Raw::Str("")).is_err());
    }
}
