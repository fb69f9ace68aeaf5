//! `interrupts` (off by default, as upstream): node_interrupts_total{cpu,
//! type,info,devices} from /proc/interrupts, labels and values as
//! node_exporter 1.5.0: `cpu` is the column index (0..n-1 of the header,
//! not the kernel's CPU number when some are offline); for a numbered IRQ
//! `info` is the chip column and `devices` the rest, for a named one (NMI,
//! LOC, IPI0...) `info` is the whole description and `devices` is empty;
//! lines without a description (ERR, MIS) are skipped.
//!
//! Flags from upstream master (1.5.0 has none; their defaults give 1.5.0's
//! output): `--collector.interrupts.name-include` / `-exclude`, matched
//! against `name;info;devices`, and `--[no-]collector.interrupts.include-zeros`.
//!
//! Must never: allocate per sample (descriptions are written into labels
//! straight from the read buffer with their whitespace collapsed), or emit a
//! name twice (Go keeps the last line of a duplicated name; so does this).

use std::fmt;

use regex::Regex;

use super::{device_filtered, read_into, CollectError, Collector, Context, Opt, OptKind, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[
    Opt {
        flag: "collector.interrupts.name-include",
        kind: OptKind::Regex,
        default: "",
        help: "Regexp of interrupts name to include (mutually exclusive to --collector.interrupts.name-exclude).",
        aliases: &[],
    },
    Opt {
        flag: "collector.interrupts.name-exclude",
        kind: OptKind::Regex,
        default: "",
        help: "Regexp of interrupts name to exclude (mutually exclusive to --collector.interrupts.name-include).",
        aliases: &[],
    },
    Opt {
        flag: "collector.interrupts.include-zeros",
        kind: OptKind::Bool,
        default: "true",
        help: "Include interrupts that have a zero value",
        aliases: &[],
    },
];

/// Tokens of `s` joined by single spaces, as Go's
/// `strings.Join(strings.Fields(s), " ")`, without building the string.
struct Collapsed<'a>(&'a str);

impl fmt::Display for Collapsed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.0.split_ascii_whitespace().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(t)?;
        }
        Ok(())
    }
}

/// One usable line of the file, as byte offsets into the read buffer.
#[derive(Clone, Copy)]
struct Line {
    name: (usize, usize),
    /// Where the per-CPU counts start (just after the colon).
    values: usize,
    /// Where the description starts (the token after the last count).
    desc: usize,
    end: usize,
}

pub struct Interrupts {
    include: Option<Regex>,
    exclude: Option<Regex>,
    include_zeros: bool,
    buf: String,
    lines: Vec<Line>,
    /// Indices into `lines`, sorted by name to find duplicates.
    order: Vec<usize>,
    filter_name: String,
}

impl Interrupts {
    pub fn new(settings: &Settings) -> Self {
        Interrupts {
            include: settings.regex("collector.interrupts.name-include"),
            exclude: settings.regex("collector.interrupts.name-exclude"),
            include_zeros: settings.bool("collector.interrupts.include-zeros"),
            buf: String::with_capacity(16 * 1024),
            lines: Vec::new(),
            order: Vec::new(),
            filter_name: String::new(),
        }
    }
}

/// Byte offset of `sub` (a slice of `whole`) within `whole`.
fn offset(whole: &str, sub: &str) -> usize {
    sub.as_ptr() as usize - whole.as_ptr() as usize
}

impl Collector for Interrupts {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let path = ctx.proc_path("interrupts");
        read_into(&path, &mut self.buf)?;
        let buf = self.buf.as_str();
        let mut it = buf.lines();
        let Some(header) = it.next() else {
            return Err(CollectError::parse(&path, "interrupts empty"));
        };
        // One header column per (online) CPU.
        let ncpu = header.split_ascii_whitespace().count();

        self.lines.clear();
        for line in it {
            let Some((name, rest)) = line.split_once(':') else {
                continue;
            };
            // Go: irq + one column per cpu + details; ERR and MIS have no
            // details and are ignored.
            let Some(desc) = rest.split_ascii_whitespace().nth(ncpu) else {
                continue;
            };
            let name = name.trim_start_matches(' ');
            let ns = offset(buf, name);
            self.lines.push(Line {
                name: (ns, ns + name.len()),
                values: offset(buf, rest),
                desc: offset(buf, desc),
                end: offset(buf, line) + line.len(),
            });
        }

        let lines = &self.lines;
        let name_of = |l: &Line| &buf[l.name.0..l.name.1];
        self.order.clear();
        self.order.extend(0..lines.len());
        self.order
            .sort_unstable_by(|&a, &b| name_of(&lines[a]).cmp(name_of(&lines[b])).then(a.cmp(&b)));

        let mut fam = out.family(
            "node_interrupts_total",
            "Interrupt details.",
            MetricType::Counter,
        );
        for (k, &i) in self.order.iter().enumerate() {
            let l = lines[i];
            let name = name_of(&l);
            // A later line with the same name wins, as in Go's map.
            if let Some(&next) = self.order.get(k + 1) {
                if name_of(&lines[next]) == name {
                    continue;
                }
            }
            let desc = &buf[l.desc..l.end];
            let numbered = name.parse::<i64>().is_ok();
            let (info, devices) = if numbered {
                let mut d = desc.splitn(2, |c: char| c.is_ascii_whitespace());
                let info = d.next().unwrap_or("");
                (info, d.next().unwrap_or(""))
            } else {
                (desc, "")
            };
            if self.include.is_some() || self.exclude.is_some() {
                use fmt::Write as _;
                self.filter_name.clear();
                let _ = write!(
                    self.filter_name,
                    "{name};{};{}",
                    Collapsed(info),
                    Collapsed(devices)
                );
                if device_filtered(
                    &self.filter_name,
                    self.include.as_ref(),
                    self.exclude.as_ref(),
                ) {
                    continue;
                }
            }
            let counts = buf[l.values..l.desc].split_ascii_whitespace();
            for (cpu, raw) in counts.enumerate() {
                let v: f64 = raw.parse().map_err(|e| {
                    CollectError::parse(&path, format!("invalid value {raw} in interrupts: {e}"))
                })?;
                if !self.include_zeros && v == 0.0 {
                    continue;
                }
                // Label names in client_golang's (sorted) order.
                fam.sample_with(v, |lb| {
                    lb.label_display("cpu", cpu)
                        .label_display("devices", Collapsed(devices))
                        .label_display("info", Collapsed(info))
                        .label("type", name);
                });
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
        render(
            &mut Interrupts::new(s),
            &fixture_ctx(&format!("interrupts/{case}")),
        )
    }

    /// An x86 VM (this host's shape): numbered IRQs with chip and devices,
    /// named ones with a description, ERR/MIS skipped.
    #[test]
    fn interrupts_x86() {
        assert_eq!(
            run(&Settings::default(), "x86").unwrap(),
            "# HELP node_interrupts_total Interrupt details.\n\
             # TYPE node_interrupts_total counter\n\
             node_interrupts_total{cpu=\"0\",devices=\"\",info=\"Local timer interrupts\",type=\"LOC\"} 4294967295\n\
             node_interrupts_total{cpu=\"0\",devices=\"\",info=\"Non-maskable interrupts\",type=\"NMI\"} 0\n\
             node_interrupts_total{cpu=\"0\",devices=\"0-edge virtio0-config\",info=\"PCI-MSIX-0000:00:01.0\",type=\"28\"} 0\n\
             node_interrupts_total{cpu=\"0\",devices=\"5-edge ACPI:Ged\",info=\"IO-APIC\",type=\"24\"} 1\n\
             node_interrupts_total{cpu=\"1\",devices=\"\",info=\"Local timer interrupts\",type=\"LOC\"} 12\n\
             node_interrupts_total{cpu=\"1\",devices=\"\",info=\"Non-maskable interrupts\",type=\"NMI\"} 0\n\
             node_interrupts_total{cpu=\"1\",devices=\"0-edge virtio0-config\",info=\"PCI-MSIX-0000:00:01.0\",type=\"28\"} 0\n\
             node_interrupts_total{cpu=\"1\",devices=\"5-edge ACPI:Ged\",info=\"IO-APIC\",type=\"24\"} 0\n"
        );
    }

    /// A Raspberry Pi 4 (aarch64): `IPI0:` with no space before the counts,
    /// four CPUs, GIC lines with hwirq and trigger in `devices`.
    #[test]
    fn interrupts_arm64_pi() {
        let t = run(&Settings::default(), "rpi4").unwrap();
        assert!(
            t.contains("node_interrupts_total{cpu=\"3\",devices=\"\",info=\"Rescheduling interrupts\",type=\"IPI0\"} 98765\n"),
            "{t}"
        );
        assert!(
            t.contains("node_interrupts_total{cpu=\"0\",devices=\"30 Level arch_timer\",info=\"GICv2\",type=\"11\"} 2932017\n"),
            "{t}"
        );
        assert!(!t.contains("type=\"Err\""), "{t}");
        assert_eq!(t.matches("type=\"11\"").count(), 4, "{t}");
    }

    #[test]
    fn interrupts_filters_and_zeros() {
        let s = Settings::default()
            .with("collector.interrupts.name-include", "^(LOC|24);")
            .with("collector.interrupts.include-zeros", "false");
        let t = run(&s, "x86").unwrap();
        assert_eq!(t.matches("\nnode_interrupts_total{").count(), 3, "{t}");
        assert!(t.contains("type=\"LOC\""), "{t}");
        assert!(!t.contains("{cpu=\"1\",devices=\"5-edge ACPI:Ged\""), "{t}");
        let s = Settings::default().with("collector.interrupts.name-exclude", " virtio0-config$");
        assert!(!run(&s, "x86").unwrap().contains("type=\"28\""));
        let s = Settings::default().with("collector.interrupts.name-exclude", "ACPI:Ged$");
        assert!(!run(&s, "x86").unwrap().contains("type=\"24\""));
    }

    /// Offline CPUs: the header lists only online ones and `cpu` is the
    /// column index; a duplicated name keeps its last line (Go's map).
    #[test]
    fn interrupts_offline_cpu_and_duplicates() {
        let t = run(&Settings::default(), "odd").unwrap();
        assert!(
            t.contains(
                "{cpu=\"1\",devices=\"\",info=\"Local timer interrupts\",type=\"LOC\"} 20\n"
            ),
            "{t}"
        );
        assert_eq!(t.matches("type=\"LOC\"").count(), 2, "{t}");
        assert!(!t.contains("cpu=\"2\""), "{t}");
    }

    #[test]
    fn interrupts_garbled_and_empty_fail() {
        assert!(run(&Settings::default(), "garbled").is_err());
        assert!(run(&Settings::default(), "empty").is_err());
    }

    #[test]
    fn interrupts_unreadable_fails() {
        assert!(run(&Settings::default(), "unreadable").is_err());
    }
}
