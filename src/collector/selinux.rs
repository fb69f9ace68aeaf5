//! `selinux`: node_selinux_enabled, and when enabled
//! node_selinux_config_mode (SELINUX= in /etc/selinux/config) and
//! node_selinux_current_mode (selinuxfs `enforce`), as node_exporter 1.5.0
//! (through go-selinux): 1 enforcing, 0 permissive, -1 disabled/unknown.
//!
//! Must never: fail on a host without SELinux (that is node_selinux_enabled
//! 0 and nothing else, success 1), or change the SELinux state.
//!
//! Enabled means what go-selinux's GetEnabled means: selinuxfs is mounted
//! (here: sysfs `fs/selinux/enforce` exists) and this process' context
//! (/proc/self/attr/current) is not `kernel`.
//! Known difference: upstream master adds AVC cache families; 1.5.0 does
//! not, so neither does cairn.

use super::{read_optional, CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

pub struct Selinux {
    buf: String,
}

impl Selinux {
    pub fn new(_settings: &Settings) -> Self {
        Selinux {
            buf: String::with_capacity(256),
        }
    }

    /// go-selinux' DefaultEnforceMode: the SELINUX= key of the config file.
    fn config_mode(&mut self, ctx: &Context) -> f64 {
        let path = ctx.root_path("/etc/selinux/config");
        if !matches!(read_optional(&path, &mut self.buf), Ok(true)) {
            return -1.0;
        }
        for line in self.buf.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            if k.trim() == "SELINUX" {
                return match v.trim().trim_matches('"') {
                    "enforcing" => 1.0,
                    "permissive" => 0.0,
                    _ => -1.0,
                };
            }
        }
        -1.0
    }
}

impl Collector for Selinux {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let enforce = ctx.sys_path("fs/selinux/enforce");
        let mounted = read_optional(&enforce, &mut self.buf).unwrap_or(false);
        // go-selinux: a missing or unparsable enforce file is mode -1.
        let current = if mounted {
            self.buf.trim().parse::<i64>().map_or(-1.0, |v| v as f64)
        } else {
            -1.0
        };
        let enabled = mounted && {
            let ok =
                read_optional(&ctx.proc_path("self/attr/current"), &mut self.buf).unwrap_or(false);
            !ok || self.buf.trim_end_matches(['\0', '\n']) != "kernel"
        };
        out.single(
            "node_selinux_enabled",
            "SELinux is enabled, 1 is true, 0 is false",
            MetricType::Gauge,
            if enabled { 1.0 } else { 0.0 },
        );
        if !enabled {
            return Ok(());
        }
        let config = self.config_mode(ctx);
        out.single(
            "node_selinux_config_mode",
            "Configured SELinux enforcement mode",
            MetricType::Gauge,
            config,
        );
        out.single(
            "node_selinux_current_mode",
            "Current SELinux enforcement mode",
            MetricType::Gauge,
            current,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn run(case: &str) -> String {
        render(
            &mut Selinux::new(&Settings::default()),
            &fixture_ctx(&format!("selinux/{case}")),
        )
        .unwrap()
    }

    #[test]
    fn selinux_absent_is_enabled_zero_only() {
        assert_eq!(
            run("absent"),
            "# HELP node_selinux_enabled SELinux is enabled, 1 is true, 0 is false\n\
             # TYPE node_selinux_enabled gauge\n\
             node_selinux_enabled 0\n"
        );
    }

    #[test]
    fn selinux_enforcing() {
        assert_eq!(
            run("enforcing"),
            "# HELP node_selinux_config_mode Configured SELinux enforcement mode\n\
             # TYPE node_selinux_config_mode gauge\n\
             node_selinux_config_mode 1\n\
             # HELP node_selinux_current_mode Current SELinux enforcement mode\n\
             # TYPE node_selinux_current_mode gauge\n\
             node_selinux_current_mode 1\n\
             # HELP node_selinux_enabled SELinux is enabled, 1 is true, 0 is false\n\
             # TYPE node_selinux_enabled gauge\n\
             node_selinux_enabled 1\n"
        );
    }

    /// Booted enforcing, switched to permissive with `setenforce 0`; the
    /// config quotes its value.
    #[test]
    fn selinux_permissive_now() {
        let t = run("permissive");
        assert!(t.contains("node_selinux_config_mode 1\n"), "{t}");
        assert!(t.contains("node_selinux_current_mode 0\n"), "{t}");
    }

    /// A garbled enforce file and no config: -1 for both, never a failure.
    #[test]
    fn selinux_garbled_is_unknown_mode() {
        let t = run("garbled");
        assert!(t.contains("node_selinux_enabled 1\n"), "{t}");
        assert!(t.contains("node_selinux_config_mode -1\n"), "{t}");
        assert!(t.contains("node_selinux_current_mode -1\n"), "{t}");
    }

    /// selinuxfs mounted but this process runs in the `kernel` context
    /// (policy not loaded): disabled, as go-selinux says.
    #[test]
    fn selinux_kernel_context_is_disabled() {
        assert!(run("kernel_context").contains("node_selinux_enabled 0\n"));
    }
}
