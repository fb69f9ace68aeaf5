//! `vmstat`: the /proc/vmstat fields whose names match
//! `--collector.vmstat.fields`, each as its own untyped family
//! node_vmstat_<field>, as node_exporter.
//!
//! Must never: match the regex per line on a warm collection. The field list
//! of a running kernel does not change, so each line's name, whether it
//! matched, and its family name and HELP are remembered by position and
//! reused while the name at that position is unchanged (a different kernel
//! under a fixture root, or a line order change, just recomputes that slot).
//!
//! As node_exporter, every line's value must parse (filtered or not): a
//! garbled file fails the collector.

use regex::Regex;

use super::{read_into, CollectError, Collector, Context, Opt, OptKind, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[Opt {
    flag: "collector.vmstat.fields",
    kind: OptKind::Regex,
    default: "^(oom_kill|pgpg|pswp|pg.*fault).*",
    help: "Regexp of fields to return for vmstat collector.",
    aliases: &[],
}];

/// What one /proc/vmstat line position resolved to last time.
struct Field {
    key: String,
    wanted: bool,
    /// `node_vmstat_<key>` and its HELP, built once per field name.
    name: String,
    help: String,
}

pub struct Vmstat {
    fields: Option<Regex>,
    buf: String,
    cache: Vec<Field>,
}

impl Vmstat {
    pub fn new(settings: &Settings) -> Self {
        Vmstat {
            fields: settings.regex("collector.vmstat.fields"),
            buf: String::with_capacity(8192),
            cache: Vec::new(),
        }
    }
}

impl Collector for Vmstat {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let path = ctx.proc_path("vmstat");
        read_into(&path, &mut self.buf)?;
        for (i, line) in self.buf.lines().enumerate() {
            let mut parts = line.split_ascii_whitespace();
            let (Some(key), Some(raw)) = (parts.next(), parts.next()) else {
                return Err(CollectError::parse(&path, format!("bad line {line:?}")));
            };
            // node_exporter parses with ParseFloat before filtering.
            let value: f64 = raw
                .parse()
                .map_err(|e| CollectError::parse(&path, format!("{key}: {raw:?}: {e}")))?;
            if i == self.cache.len() {
                self.cache.push(Field {
                    key: String::new(),
                    wanted: false,
                    name: String::new(),
                    help: String::new(),
                });
            }
            let f = &mut self.cache[i];
            if f.key != key {
                // A field name not seen at this position: allocation here is
                // once per name per process lifetime.
                f.key.clear();
                f.key.push_str(key);
                // An empty regex is unset here; Go's empty regex matches all.
                f.wanted = self.fields.as_ref().map_or(true, |r| r.is_match(key));
                f.name = format!("node_vmstat_{key}");
                f.help = format!("/proc/vmstat information field {key}.");
            }
            if f.wanted {
                out.single(&f.name, &f.help, MetricType::Untyped, value);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn run(s: &Settings, case: &str) -> Result<String, CollectError> {
        render(&mut Vmstat::new(s), &fixture_ctx(&format!("vmstat/{case}")))
    }

    #[test]
    fn vmstat_default_fields() {
        assert_eq!(
            run(&Settings::default(), "normal").unwrap(),
            "# HELP node_vmstat_oom_kill /proc/vmstat information field oom_kill.\n\
             # TYPE node_vmstat_oom_kill untyped\n\
             node_vmstat_oom_kill 0\n\
             # HELP node_vmstat_pgfault /proc/vmstat information field pgfault.\n\
             # TYPE node_vmstat_pgfault untyped\n\
             node_vmstat_pgfault 459939\n\
             # HELP node_vmstat_pgmajfault /proc/vmstat information field pgmajfault.\n\
             # TYPE node_vmstat_pgmajfault untyped\n\
             node_vmstat_pgmajfault 252\n\
             # HELP node_vmstat_pgpgin /proc/vmstat information field pgpgin.\n\
             # TYPE node_vmstat_pgpgin untyped\n\
             node_vmstat_pgpgin 420621\n\
             # HELP node_vmstat_pgpgout /proc/vmstat information field pgpgout.\n\
             # TYPE node_vmstat_pgpgout untyped\n\
             node_vmstat_pgpgout 176908\n\
             # HELP node_vmstat_pswpin /proc/vmstat information field pswpin.\n\
             # TYPE node_vmstat_pswpin untyped\n\
             node_vmstat_pswpin 0\n\
             # HELP node_vmstat_pswpout /proc/vmstat information field pswpout.\n\
             # TYPE node_vmstat_pswpout untyped\n\
             node_vmstat_pswpout 0\n"
        );
    }

    #[test]
    fn vmstat_fields_flag() {
        let s = Settings::default().with("collector.vmstat.fields", "^nr_(free|dirty)");
        let t = run(&s, "normal").unwrap();
        assert!(t.contains("node_vmstat_nr_free_pages 123456\n"), "{t}");
        assert!(t.contains("node_vmstat_nr_dirty 12\n"), "{t}");
        assert!(t.contains("node_vmstat_nr_dirty_threshold 45000\n"), "{t}");
        assert!(!t.contains("pgfault"), "{t}");
        let all = run(
            &Settings::default().with("collector.vmstat.fields", ""),
            "normal",
        )
        .unwrap();
        assert_eq!(all.matches("# TYPE").count(), 12, "{all}");
    }

    /// Old kernels lack oom_kill (added in 4.13); newer ones add fields
    /// (pgfault variants, thp_*); 64-bit counters beyond 2^32 and 2^53.
    #[test]
    fn vmstat_old_and_new_kernels() {
        let old = run(&Settings::default(), "old_kernel").unwrap();
        assert!(!old.contains("oom_kill"), "{old}");
        assert!(old.contains("node_vmstat_pgfault 4294967296\n"), "{old}");
        let new = run(&Settings::default(), "new_kernel").unwrap();
        assert!(new.contains("node_vmstat_pgmajfault_file 3\n"), "{new}");
        assert!(
            new.contains("node_vmstat_pgfault 18446744073709552000\n"),
            "{new}"
        );
    }

    /// The cache is keyed by position: the same collector reading a
    /// different field list afterwards reports the new list correctly.
    #[test]
    fn vmstat_cache_follows_changed_field_list() {
        let mut c = Vmstat::new(&Settings::default());
        let a = render(&mut c, &fixture_ctx("vmstat/normal")).unwrap();
        let b = render(&mut c, &fixture_ctx("vmstat/old_kernel")).unwrap();
        let a2 = render(&mut c, &fixture_ctx("vmstat/normal")).unwrap();
        assert!(a.contains("oom_kill") && !b.contains("oom_kill"));
        assert_eq!(a, a2);
    }

    #[test]
    fn vmstat_garbled_value_fails_even_if_filtered() {
        assert!(run(&Settings::default(), "garbled").is_err());
        assert!(run(&Settings::default(), "short_line").is_err());
    }

    #[test]
    fn vmstat_unreadable_fails() {
        assert!(run(&Settings::default(), "unreadable").is_err());
    }
}
