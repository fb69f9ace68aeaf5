//! `--collector.cpu.info`: /proc/cpuinfo parsed the way procfs v0.8 does
//! for the architecture cairn runs on, into `node_cpu_info`,
//! `node_cpu_flag_info` and `node_cpu_bug_info`.
//!
//! A room of its own because it shares nothing with the /proc/stat part
//! of the collector but the `Cpu` struct that keeps its buffers. Must
//! never: crash where the Go code would index out of range (that is an
//! error for the collector), or allocate per CPU once warm.

use std::ops::Range;

use super::super::sysfs::{parse_float, parse_uint32_base0};
use super::{read_into, CollectError, Context, Cpu};
use crate::metrics::{Emitter, MetricType};

/// The procfs cpuinfo parser to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CpuinfoArch {
    X86,
    Arm,
    Riscv,
    /// procfs has parsers for MIPS, PowerPC and s390x too; cairn does not
    /// (yet), and says so instead of guessing.
    Other,
}

impl CpuinfoArch {
    pub(super) const TARGET: CpuinfoArch = if cfg!(any(target_arch = "x86", target_arch = "x86_64"))
    {
        CpuinfoArch::X86
    } else if cfg!(any(target_arch = "arm", target_arch = "aarch64")) {
        CpuinfoArch::Arm
    } else if cfg!(target_arch = "riscv64") {
        CpuinfoArch::Riscv
    } else {
        CpuinfoArch::Other
    };
}

/// One CPU of /proc/cpuinfo; text fields are ranges into the read buffer
/// (empty when absent, as procfs leaves them).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct CpuinfoEntry {
    pub(super) processor: u32,
    pub(super) vendor: Range<usize>,
    pub(super) family: Range<usize>,
    pub(super) model: Range<usize>,
    pub(super) model_name: Range<usize>,
    pub(super) microcode: Range<usize>,
    pub(super) stepping: Range<usize>,
    pub(super) cachesize: Range<usize>,
    pub(super) physical_id: Range<usize>,
    pub(super) core_id: Range<usize>,
    pub(super) flags: Range<usize>,
    pub(super) bugs: Range<usize>,
}

/// procfs' parseCPUInfo{X86,ARM,RISCV} over `text`, into `out`. Where the
/// Go code would index out of range (and crash node_exporter) this returns
/// an error instead; a missing ARM `Features` line leaves flags empty.
pub(super) fn parse_cpuinfo(
    arch: CpuinfoArch,
    text: &str,
    out: &mut Vec<CpuinfoEntry>,
) -> Result<(), String> {
    out.clear();
    let base = text.as_ptr() as usize;
    let at = |s: &str| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    // bufio.Scanner lines: split on \n, a trailing \r dropped.
    let mut lines = text
        .split_terminator('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.by_ref().find(|l| !l.trim().is_empty()).unwrap_or("");
    let invalid = || format!("invalid cpuinfo file: {first:?}");
    let bad_value = |key: &str, v: &str| format!("invalid {key} value {v:?} in cpuinfo");
    let first_value = || first.split_once(": ").map(|(_, v)| v).ok_or_else(invalid);
    match arch {
        CpuinfoArch::X86 => {
            if !first.starts_with("processor") || !first.contains(':') {
                return Err(invalid());
            }
            let v = first_value()?;
            let n = parse_uint32_base0(v).ok_or_else(|| bad_value("processor", v))?;
            out.push(CpuinfoEntry {
                processor: n,
                ..Default::default()
            });
            for line in lines {
                let Some((key, v)) = line.split_once(": ") else {
                    continue;
                };
                let key = key.trim();
                let cpu = out.len() - 1;
                match key {
                    "processor" => {
                        let n = parse_uint32_base0(v).ok_or_else(|| bad_value(key, v))?;
                        out.push(CpuinfoEntry {
                            processor: n,
                            ..Default::default()
                        });
                    }
                    "vendor" | "vendor_id" => out[cpu].vendor = at(v),
                    "cpu family" => out[cpu].family = at(v),
                    "model" => out[cpu].model = at(v),
                    "model name" => out[cpu].model_name = at(v),
                    "stepping" => out[cpu].stepping = at(v),
                    "microcode" => out[cpu].microcode = at(v),
                    "cache size" => out[cpu].cachesize = at(v),
                    "physical id" => out[cpu].physical_id = at(v),
                    "core id" => out[cpu].core_id = at(v),
                    "flags" => out[cpu].flags = at(v),
                    "bugs" => out[cpu].bugs = at(v),
                    "cpu MHz" | "bogomips" => {
                        parse_float(v).ok_or_else(|| bad_value(key, v))?;
                    }
                    "siblings" | "cpu cores" | "cpuid level" | "clflush size"
                    | "cache_alignment" => {
                        parse_uint32_base0(v).ok_or_else(|| bad_value(key, v))?;
                    }
                    _ => {}
                }
            }
        }
        CpuinfoArch::Arm => {
            let starts = first.starts_with("processor") || first.starts_with("Processor");
            if !starts || !first.contains(':') {
                return Err(invalid());
            }
            let (key0, v) = first.split_once(": ").ok_or_else(invalid)?;
            // Old 32-bit kernels: one `Processor : <model>` line for all.
            let mut common = CpuinfoEntry::default();
            if key0.trim() == "Processor" {
                common.model_name = at(v);
            } else {
                let n = parse_uint32_base0(v).ok_or_else(|| bad_value("processor", v))?;
                out.push(CpuinfoEntry {
                    processor: n,
                    ..Default::default()
                });
            }
            let mut features = 0..0;
            for line in lines {
                let Some((key, v)) = line.split_once(": ") else {
                    continue;
                };
                let key = key.trim();
                match key {
                    "processor" => {
                        let n = parse_uint32_base0(v).ok_or_else(|| bad_value(key, v))?;
                        out.push(CpuinfoEntry {
                            processor: n,
                            ..common.clone()
                        });
                    }
                    "BogoMIPS" => {
                        if out.is_empty() {
                            // There is only one processor.
                            out.push(common.clone());
                        }
                        parse_float(v).ok_or_else(|| bad_value(key, v))?;
                    }
                    "Features" => features = at(v),
                    "model name" => match out.last_mut() {
                        Some(cpu) => cpu.model_name = at(v),
                        None => return Err(format!("cpuinfo: {key:?} before any processor")),
                    },
                    _ => {}
                }
            }
            for cpu in out.iter_mut() {
                cpu.flags = features.clone();
            }
        }
        CpuinfoArch::Riscv => {
            if !first.starts_with("processor") || !first.contains(':') {
                return Err(invalid());
            }
            let v = first_value()?;
            let n = parse_uint32_base0(v).ok_or_else(|| bad_value("processor", v))?;
            out.push(CpuinfoEntry {
                processor: n,
                ..Default::default()
            });
            let mut i = 0usize;
            for line in lines {
                let Some((key, v)) = line.split_once(": ") else {
                    continue;
                };
                match key.trim() {
                    "processor" => {
                        let n = parse_uint32_base0(v).ok_or_else(|| bad_value("processor", v))?;
                        out.push(CpuinfoEntry::default());
                        i = n as usize;
                        out.get_mut(i)
                            .ok_or_else(|| format!("cpuinfo: processor {n} out of sequence"))?
                            .processor = n;
                    }
                    "hart" => out[i].core_id = at(v),
                    "isa" => out[i].model_name = at(v),
                    _ => {}
                }
            }
        }
        CpuinfoArch::Other => {
            return Err("parsing /proc/cpuinfo is not implemented for this architecture".into())
        }
    }
    Ok(())
}

impl Cpu {
    /// node_exporter's updateInfo: one `node_cpu_info` per CPU, and the
    /// first CPU's flags and bugs that match the include filters.
    pub(super) fn update_info(
        &mut self,
        ctx: &Context,
        out: &mut Emitter,
    ) -> Result<(), CollectError> {
        let path = ctx.proc_path("cpuinfo");
        read_into(&path, &mut self.info_buf)?;
        parse_cpuinfo(self.arch, &self.info_buf, &mut self.info_cpus)
            .map_err(|e| CollectError::parse(&path, e))?;
        let text = self.info_buf.as_str();
        let cpus = &self.info_cpus;
        let mut fam = out.family(
            "node_cpu_info",
            "CPU information from /proc/cpuinfo.",
            MetricType::Gauge,
        );
        for (i, c) in cpus.iter().enumerate() {
            // The same labels twice would be a duplicate series, which the
            // registry drops.
            if cpus[..i].contains(c) {
                continue;
            }
            let t = |r: &Range<usize>| &text[r.clone()];
            fam.sample_with(1.0, |l| {
                l.label("cachesize", t(&c.cachesize))
                    .label("core", t(&c.core_id))
                    .label_display("cpu", c.processor)
                    .label("family", t(&c.family))
                    .label("microcode", t(&c.microcode))
                    .label("model", t(&c.model))
                    .label("model_name", t(&c.model_name))
                    .label("package", t(&c.physical_id))
                    .label("stepping", t(&c.stepping))
                    .label("vendor", t(&c.vendor));
            });
        }
        let Some(first) = cpus.first() else {
            return Ok(());
        };
        let lists = [
            (
                &self.flags_include,
                &first.flags,
                "node_cpu_flag_info",
                "The `flags` field of CPU information from /proc/cpuinfo taken from the first core.",
                "flag",
            ),
            (
                &self.bugs_include,
                &first.bugs,
                "node_cpu_bug_info",
                "The `bugs` field of CPU information from /proc/cpuinfo taken from the first core.",
                "bug",
            ),
        ];
        for (filter, range, name, help, label) in lists {
            let Some(re) = filter else { continue };
            self.seen_words.clear();
            let mut fam = out.family(name, help, MetricType::Gauge);
            let list = &text[range.clone()];
            for word in list.split_ascii_whitespace() {
                if !re.is_match(word) || self.seen_words.iter().any(|r| &text[r.clone()] == word) {
                    continue;
                }
                let start = word.as_ptr() as usize - text.as_ptr() as usize;
                self.seen_words.push(start..start + word.len());
                fam.sample(&[(label, word)], 1.0);
            }
        }
        Ok(())
    }
}
