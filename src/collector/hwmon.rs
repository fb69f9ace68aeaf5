//! `hwmon`: node_hwmon_* from /sys/class/hwmon, as node_exporter 1.5.0's
//! hwmon_linux.go names them: the chip label comes from the resolved
//! `hwmonN/device` path (`platform_coretemp_0`, `nvme_nvme0`,
//! `thermal_thermal_zone0`), else the `name` file, else `hwmonN`; attributes
//! are read from hwmonN and then from its device directory (older drivers
//! keep them there; a later value wins); units are converted exactly as Go
//! does (×0.001 for milli-units, ÷1e6 for micro-units) so values are
//! bit-identical.
//!
//! Also owns (tests only) `parity`, which checks a rendering against a
//! recorded node_exporter 1.5.0 exposition. The Go-compatible attribute
//! readers it uses live in `collector::sysfs`.
//!
//! Must never: fail a chip over an unreadable or unparsable sensor file (a
//! sensor that cannot be read is left out, as upstream does), or block on a
//! sensor (one read() per attribute, no retry on EAGAIN).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use regex::Regex;

use super::sysfs;
use super::{device_filtered, CollectError, Collector, Context, Opt, OptKind, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[
    Opt {
        flag: "collector.hwmon.chip-include",
        kind: OptKind::Regex,
        default: "",
        help: "Regexp of hwmon chip to include (mutually exclusive to device-exclude).",
        aliases: &[],
    },
    Opt {
        flag: "collector.hwmon.chip-exclude",
        kind: OptKind::Regex,
        default: "",
        help: "Regexp of hwmon chip to exclude (mutually exclusive to device-include).",
        aliases: &[],
    },
    Opt {
        flag: "collector.hwmon.sensor-include",
        kind: OptKind::Regex,
        default: "",
        help: "Regexp of hwmon sensor to include (mutually exclusive to sensor-exclude).",
        aliases: &[],
    },
    Opt {
        flag: "collector.hwmon.sensor-exclude",
        kind: OptKind::Regex,
        default: "",
        help: "Regexp of hwmon sensor to exclude (mutually exclusive to sensor-include).",
        aliases: &[],
    },
];

/// The sensor types node_exporter 1.5.0 reads; anything else is ignored.
const SENSOR_TYPES: [&str; 13] = [
    "vrm",
    "beep_enable",
    "update_interval",
    "in",
    "cpu",
    "fan",
    "pwm",
    "temp",
    "curr",
    "power",
    "energy",
    "humidity",
    "intrusion",
];
const T_VRM: usize = 0;
const T_BEEP_ENABLE: usize = 1;
const T_UPDATE_INTERVAL: usize = 2;
const T_IN: usize = 3;
const T_CPU: usize = 4;
const T_FAN: usize = 5;
const T_TEMP: usize = 7;
const T_CURR: usize = 8;
const T_POWER: usize = 9;
const T_ENERGY: usize = 10;
const T_HUMIDITY: usize = 11;

/// One attribute file that was read: `temp1_input` → type temp, num 1,
/// prop "input". Kept in a pool and overwritten between chips.
#[derive(Default)]
struct Attr {
    ty: usize,
    num: u64,
    prop: String,
    /// Raw value with surrounding newlines trimmed (Go: strings.Trim "\n").
    value: Vec<u8>,
    /// Later wins on a duplicate (device dir after hwmonN, then by name, as
    /// Go's sorted ReadDir into a map does).
    from_device: bool,
    file: String,
}

/// `temp` + `1` without formatting a String.
struct SensorName<'a>(&'a str, u64);

impl fmt::Display for SensorName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.0, self.1)
    }
}

pub struct Hwmon {
    chip_include: Option<Regex>,
    chip_exclude: Option<Regex>,
    sensor_include: Option<Regex>,
    sensor_exclude: Option<Regex>,
    attrs: Vec<Attr>,
    used: usize,
    order: Vec<usize>,
    path: PathBuf,
    chip: String,
    chip_name: String,
    raw: String,
    name: String,
    help: String,
    key: String,
    label: String,
}

impl Hwmon {
    pub fn new(settings: &Settings) -> Self {
        Hwmon {
            chip_include: settings.regex("collector.hwmon.chip-include"),
            chip_exclude: settings.regex("collector.hwmon.chip-exclude"),
            sensor_include: settings.regex("collector.hwmon.sensor-include"),
            sensor_exclude: settings.regex("collector.hwmon.sensor-exclude"),
            attrs: Vec::new(),
            used: 0,
            order: Vec::new(),
            path: PathBuf::new(),
            chip: String::new(),
            chip_name: String::new(),
            raw: String::new(),
            name: String::new(),
            help: String::new(),
            key: String::new(),
            label: String::new(),
        }
    }

    /// Reads every sensor attribute of one directory into the pool. Only a
    /// failure to list the directory is an error (as Go's ReadDir).
    fn collect_dir(&mut self, dir: &Path, from_device: bool) -> io::Result<()> {
        // read_dir allocates per entry; a chip's attribute set is only known
        // by listing it, and upstream lists it on every scrape too.
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let fname = entry.file_name();
            let Some(fname) = fname.to_str() else {
                continue;
            };
            let Some((ty, id, prop)) = explode(fname) else {
                continue;
            };
            let Some(ty) = SENSOR_TYPES.iter().position(|t| *t == ty) else {
                continue;
            };
            let num = if id.is_empty() {
                0
            } else {
                // Go's Atoi: a number past int64 makes the file not a sensor.
                match id.parse::<i64>() {
                    Ok(n) => n as u64,
                    Err(_) => continue,
                }
            };
            self.path.clear();
            self.path.push(dir);
            self.path.push(fname);
            let mut buf = [0u8; sysfs::ATTR_MAX];
            let Ok(raw) = sysfs::read_attr(&self.path, &mut buf) else {
                continue;
            };
            let raw = trim_newlines(raw);
            if self.used == self.attrs.len() {
                self.attrs.push(Attr::default());
            }
            let a = &mut self.attrs[self.used];
            self.used += 1;
            a.ty = ty;
            a.num = num;
            a.prop.clear();
            a.prop.push_str(prop);
            a.value.clear();
            a.value.extend_from_slice(raw);
            a.from_device = from_device;
            a.file.clear();
            a.file.push_str(fname);
        }
        Ok(())
    }

    /// node_exporter's hwmonName: `<parent>_<device>` of the resolved device
    /// link, else the cleaned `name` file, else the resolved `hwmonN`.
    /// Leaves the cleaned name file in `chip_name` (empty if none).
    fn name_chip(&mut self, dir: &Path) -> Result<(), CollectError> {
        self.chip.clear();
        self.chip_name.clear();
        self.path.clear();
        self.path.push(dir);
        self.path.push("name");
        if sysfs::read_full_lossy_bytes(&self.path, &mut self.raw).is_ok() {
            clean_metric_name(&self.raw, &mut self.chip_name);
        }
        self.path.set_file_name("device");
        // canonicalize allocates the resolved path; it runs once per chip
        // per scrape, as upstream's EvalSymlinks does.
        if let Ok(dev) = std::fs::canonicalize(&self.path) {
            let name = dev.file_name().and_then(|s| s.to_str()).unwrap_or("");
            let parent = dev
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|s| s.to_str())
                .unwrap_or("");
            clean_metric_name(parent, &mut self.chip);
            clean_metric_name(name, &mut self.label);
            if !self.label.is_empty() {
                if !self.chip.is_empty() {
                    self.chip.push('_');
                }
                self.chip.push_str(&self.label);
                return Ok(());
            }
            self.chip.clear();
        }
        if !self.chip_name.is_empty() {
            self.chip.push_str(&self.chip_name);
            return Ok(());
        }
        let real = std::fs::canonicalize(dir).map_err(|source| CollectError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let last = real.file_name().and_then(|s| s.to_str()).unwrap_or("");
        clean_metric_name(last, &mut self.chip);
        if self.chip.is_empty() {
            return Err(CollectError::Other(format!(
                "could not derive a monitoring name for {}",
                dir.display()
            )));
        }
        Ok(())
    }

    fn update_chip(&mut self, dir: &Path, out: &mut Emitter) -> Result<(), CollectError> {
        self.name_chip(dir)?;
        if device_filtered(
            &self.chip,
            self.chip_include.as_ref(),
            self.chip_exclude.as_ref(),
        ) {
            return Ok(());
        }
        self.used = 0;
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| CollectError::Io { path, source }
        };
        self.collect_dir(dir, false).map_err(io_err(dir))?;
        let device = dir.join("device");
        if std::fs::metadata(&device).is_ok() {
            self.collect_dir(&device, true).map_err(io_err(&device))?;
        }
        if !self.chip_name.is_empty() {
            out.family(
                "node_hwmon_chip_names",
                "Annotation metric for human-readable chip names",
                MetricType::Gauge,
            )
            .sample(&[("chip", &self.chip), ("chip_name", &self.chip_name)], 1.0);
        }

        // Group by sensor; among duplicates the last read wins.
        self.order.clear();
        self.order.extend(0..self.used);
        let attrs = &self.attrs;
        self.order.sort_unstable_by(|&a, &b| {
            let (a, b) = (&attrs[a], &attrs[b]);
            (a.ty, a.num, &a.prop, a.from_device, &a.file).cmp(&(
                b.ty,
                b.num,
                &b.prop,
                b.from_device,
                &b.file,
            ))
        });
        let mut start = 0;
        while start < self.order.len() {
            let first = &self.attrs[self.order[start]];
            let (ty, num) = (first.ty, first.num);
            let mut end = start + 1;
            while end < self.order.len() {
                let a = &self.attrs[self.order[end]];
                if a.ty != ty || a.num != num {
                    break;
                }
                end += 1;
            }
            self.emit_sensor(start, end, out);
            start = end;
        }
        Ok(())
    }

    /// The winning attribute among `order[i..]` with the same prop.
    fn is_shadowed(&self, i: usize, end: usize) -> bool {
        i + 1 < end && self.attrs[self.order[i + 1]].prop == self.attrs[self.order[i]].prop
    }

    fn emit_sensor(&mut self, start: usize, end: usize, out: &mut Emitter) {
        let first = &self.attrs[self.order[start]];
        let (ty, num) = (first.ty, first.num);
        let type_name = SENSOR_TYPES[ty];
        if self.sensor_include.is_some() || self.sensor_exclude.is_some() {
            // Upstream filters on "<chip>;<sensor>" so one rule can name a
            // sensor on one chip.
            use fmt::Write as _;
            self.key.clear();
            self.key.push_str(&self.chip);
            self.key.push(';');
            let _ = write!(self.key, "{}", SensorName(type_name, num));
            if device_filtered(
                &self.key,
                self.sensor_include.as_ref(),
                self.sensor_exclude.as_ref(),
            ) {
                return;
            }
        }
        let sensor = SensorName(type_name, num);
        let chip = self.chip.as_str();
        let mut empty_prop: Option<&[u8]> = None;
        for i in start..end {
            if self.is_shadowed(i, end) {
                continue;
            }
            let a = &self.attrs[self.order[i]];
            if a.prop.is_empty() {
                empty_prop = Some(&a.value);
            } else if a.prop == "label" {
                self.label.clear();
                sysfs::push_valid_utf8(&mut self.label, &a.value);
                out.family(
                    "node_hwmon_sensor_label",
                    "Label for given chip and sensor",
                    MetricType::Gauge,
                )
                .sample_with(1.0, |l| {
                    l.label("chip", chip)
                        .label("label", &self.label)
                        .label_display("sensor", &sensor);
                });
            }
        }
        let emit = |out: &mut Emitter, name: &str, help: &str, kind: MetricType, v: f64| {
            out.family(name, help, kind).sample_with(v, |l| {
                l.label("chip", chip).label_display("sensor", &sensor);
            });
        };
        let parse = |v: &[u8]| std::str::from_utf8(v).ok().and_then(sysfs::parse_float);
        match ty {
            T_BEEP_ENABLE => {
                let v = if empty_prop == Some(b"1".as_slice()) {
                    1.0
                } else {
                    0.0
                };
                emit(
                    out,
                    "node_hwmon_beep_enabled",
                    "Hardware beep enabled",
                    MetricType::Gauge,
                    v,
                );
                return;
            }
            T_VRM => {
                if let Some(v) = parse(empty_prop.unwrap_or(b"")) {
                    emit(
                        out,
                        "node_hwmon_voltage_regulator_version",
                        "Hardware voltage regulator",
                        MetricType::Gauge,
                        v,
                    );
                }
                return;
            }
            T_UPDATE_INTERVAL => {
                if let Some(v) = parse(empty_prop.unwrap_or(b"")) {
                    emit(
                        out,
                        "node_hwmon_update_interval_seconds",
                        "Hardware monitor update interval",
                        MetricType::Gauge,
                        v * 0.001,
                    );
                }
                return;
            }
            _ => {}
        }
        for i in start..end {
            if self.is_shadowed(i, end) {
                continue;
            }
            let a = &self.attrs[self.order[i]];
            let element = a.prop.as_str();
            if element == "label" {
                continue;
            }
            let Some(v) = parse(&a.value) else {
                continue;
            };
            let name = &mut self.name;
            let help = &mut self.help;
            name.clear();
            name.push_str("node_hwmon_");
            name.push_str(type_name);
            if element == "input" {
                if empty_prop.is_some() {
                    name.push_str("_input");
                }
            } else if !element.is_empty() {
                name.push('_');
                clean_metric_name(element, &mut self.raw);
                name.push_str(&self.raw);
            }
            help.clear();
            let (kind, value) = if element == "fault" || element == "alarm" {
                help.push_str("Hardware sensor ");
                help.push_str(element);
                help.push_str(" status (");
                help.push_str(type_name);
                help.push(')');
                (MetricType::Gauge, v)
            } else if element == "beep" {
                name.push_str("_enabled");
                help.push_str("Hardware monitor sensor has beeping enabled");
                (MetricType::Gauge, v)
            } else if ty == T_IN || ty == T_CPU {
                name.push_str("_volts");
                push_help(help, "Hardware monitor for voltage (", element);
                (MetricType::Gauge, v * 0.001)
            } else if ty == T_TEMP && element != "type" {
                name.push_str("_celsius");
                let shown = if element.is_empty() { "input" } else { element };
                push_help(help, "Hardware monitor for temperature (", shown);
                (MetricType::Gauge, v * 0.001)
            } else if ty == T_CURR {
                name.push_str("_amps");
                push_help(help, "Hardware monitor for current (", element);
                (MetricType::Gauge, v * 0.001)
            } else if ty == T_ENERGY {
                name.push_str("_joule_total");
                push_help(help, "Hardware monitor for joules used so far (", element);
                (MetricType::Counter, v / 1000000.0)
            } else if ty == T_POWER && element == "accuracy" {
                help.push_str("Hardware monitor power meter accuracy, as a ratio");
                (MetricType::Gauge, v / 1000000.0)
            } else if ty == T_POWER
                && matches!(
                    element,
                    "average_interval" | "average_interval_min" | "average_interval_max"
                )
            {
                name.push_str("_seconds");
                push_help(
                    help,
                    "Hardware monitor power usage update interval (",
                    element,
                );
                (MetricType::Gauge, v * 0.001)
            } else if ty == T_POWER {
                name.push_str("_watt");
                push_help(help, "Hardware monitor for power usage in watts (", element);
                (MetricType::Gauge, v / 1000000.0)
            } else if ty == T_HUMIDITY {
                push_help(
                    help,
                    "Hardware monitor for humidity, as a ratio (multiply with 100.0 to get the humidity as a percentage) (",
                    element,
                );
                (MetricType::Gauge, v / 1000000.0)
            } else if ty == T_FAN && matches!(element, "input" | "min" | "max" | "target") {
                name.push_str("_rpm");
                push_help(
                    help,
                    "Hardware monitor for fan revolutions per minute (",
                    element,
                );
                (MetricType::Gauge, v)
            } else {
                help.push_str("Hardware monitor ");
                help.push_str(type_name);
                help.push_str(" element ");
                help.push_str(element);
                (MetricType::Gauge, v)
            };
            emit(out, &self.name, &self.help, kind, value);
        }
    }
}

fn push_help(help: &mut String, prefix: &str, element: &str) {
    help.push_str(prefix);
    help.push_str(element);
    help.push(')');
}

fn trim_newlines(mut b: &[u8]) -> &[u8] {
    while let [b'\n', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b'\n'] = b {
        b = rest;
    }
    b
}

/// Splits an attribute file name the way upstream's
/// `^(?P<type>[^0-9]+)(?P<id>[0-9]*)?(_(?P<property>.+))?$` does (Go's
/// leftmost-first backtracking included): `temp1_input` → ("temp", "1",
/// "input"), `beep_enable` → ("beep_enable", "", ""), `fan_x1y` → ("fan",
/// "", "x1y").
fn explode(name: &str) -> Option<(&str, &str, &str)> {
    let b = name.as_bytes();
    let p = b.iter().position(u8::is_ascii_digit).unwrap_or(b.len());
    if p == 0 {
        return None;
    }
    let d = p + b[p..].iter().take_while(|c| c.is_ascii_digit()).count();
    let prop_ok = |from: usize| from < b.len() && !b[from..].contains(&b'\n');
    if d == b.len() {
        return Some((&name[..p], &name[p..d], ""));
    }
    if b[d] == b'_' && prop_ok(d + 1) {
        return Some((&name[..p], &name[p..d], &name[d + 1..]));
    }
    // A shorter type with no id must be followed by "_<property>".
    (1..p)
        .rev()
        .find(|&k| b[k] == b'_' && prop_ok(k + 1))
        .map(|k| (&name[..k], "", &name[k + 1..]))
}

/// node_exporter's cleanMetricName: lower-case, every rune outside
/// `[a-z0-9:_]` (and every invalid byte) becomes `_`, then `_` is trimmed
/// from both ends. Writes into `out` (cleared).
fn clean_metric_name(s: &str, out: &mut String) {
    out.clear();
    for c in s.chars() {
        let c = match c {
            'A'..='Z' => c.to_ascii_lowercase(),
            'a'..='z' | '0'..='9' | ':' | '_' => c,
            // The only non-ASCII runes Go's unicode.ToLower maps into a-z.
            '\u{130}' => 'i',
            '\u{212A}' => 'k',
            _ => '_',
        };
        out.push(c);
    }
    let trimmed_end = out.trim_end_matches('_').len();
    out.truncate(trimmed_end);
    let lead = out.len() - out.trim_start_matches('_').len();
    out.drain(..lead);
}

impl Collector for Hwmon {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let class = ctx.sys_path("class/hwmon");
        let mut last_err = None;
        // node_exporter returns ErrNoData without the class dir: not successful.
        for entry in super::list_devices(&class)? {
            let entry = entry?;
            let dir = entry.path();
            // Follow hwmonN -> ../../devices/...; a dangling link is skipped
            // (upstream master; 1.5.0 also failed the collector for it).
            match std::fs::metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                _ => continue,
            }
            if let Err(e) = self.update_chip(&dir, out) {
                last_err = Some(e);
            }
        }
        match last_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Test helper: compares a cairn rendering with node_exporter 1.5.0's
/// exposition recorded in `tests/fixtures/<case>/expected/<file>` (made by
/// `tests/fixtures/hwmon/regen-expected.sh`). Values are compared as f64
/// (Go prints 1.5e+09 where cairn prints 1500000000), series as sets.
#[cfg(test)]
pub(crate) mod parity {
    use std::collections::BTreeMap;

    use crate::collector::testutil::{fixture_ctx, render};
    use crate::collector::Collector;

    type Families = BTreeMap<String, (Vec<String>, Vec<(String, f64)>)>;

    fn parse(text: &str) -> (Families, Option<f64>) {
        let mut fams: Families = BTreeMap::new();
        let mut success = None;
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some(rest) = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
            {
                let name = rest.split(' ').next().unwrap_or_default().to_owned();
                fams.entry(name).or_default().0.push(line.to_owned());
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().expect("value"),
            };
            if series.starts_with("node_scrape_collector_success") {
                success = Some(value);
                continue;
            }
            let name = series.split('{').next().unwrap_or_default().to_owned();
            fams.entry(name)
                .or_default()
                .1
                .push((series.to_owned(), value));
        }
        fams.retain(|name, _| !name.starts_with("node_scrape_collector_success"));
        for (_, (_, series)) in fams.iter_mut() {
            series.sort_by(|a, b| a.0.cmp(&b.0));
        }
        (fams, success)
    }

    /// Asserts `c` renders fixture `case` as node_exporter did: same
    /// families, HELP, TYPE, series and values, and fails exactly when
    /// node_exporter reported the collector as not successful.
    pub fn assert_parity(c: &mut dyn Collector, case: &str, file: &str) {
        let ctx = fixture_ctx(case);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(case)
            .join("expected")
            .join(file);
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .replace("@SYSFS@", &ctx.sysfs.to_string_lossy());
        let (want, success) = parse(&expected);
        let success = success.expect("expected file records node_scrape_collector_success");
        match render(c, &ctx) {
            Ok(text) => {
                assert_eq!(
                    success, 1.0,
                    "node_exporter failed on {case}, cairn did not:\n{text}"
                );
                let (got, _) = parse(&text);
                let names = |f: &Families| f.keys().cloned().collect::<Vec<_>>();
                assert_eq!(names(&got), names(&want), "families of {case}");
                for (name, (meta, series)) in &want {
                    let (gmeta, gseries) = &got[name];
                    assert_eq!(gmeta, meta, "HELP/TYPE of {name} in {case}");
                    let gnames: Vec<_> = gseries.iter().map(|s| &s.0).collect();
                    let wnames: Vec<_> = series.iter().map(|s| &s.0).collect();
                    assert_eq!(gnames, wnames, "series of {name} in {case}");
                    for ((s, g), (_, w)) in gseries.iter().zip(series) {
                        let same = (g.is_nan() && w.is_nan()) || g.to_bits() == w.to_bits();
                        assert!(same, "{s} in {case}: cairn {g:?}, node_exporter {w:?}");
                    }
                }
            }
            Err(e) => assert_eq!(success, 0.0, "cairn failed on {case}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parity::assert_parity;
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    #[test]
    fn explode_follows_the_upstream_regex() {
        let cases = [
            ("temp1_input", Some(("temp", "1", "input"))),
            ("in0_lcrit_alarm", Some(("in", "0", "lcrit_alarm"))),
            ("pwm1", Some(("pwm", "1", ""))),
            ("beep_enable", Some(("beep_enable", "", ""))),
            ("temp", Some(("temp", "", ""))),
            ("fan_x1y", Some(("fan", "", "x1y"))),
            ("trip_point_0_temp", Some(("trip_point_", "0", "temp"))),
            ("d3cold_allowed", None),
            ("1abc", None),
            ("temp1x", None),
            ("temp1_", None),
        ];
        for (name, want) in cases {
            assert_eq!(explode(name), want, "{name}");
        }
    }

    #[test]
    fn clean_metric_name_like_go() {
        let mut s = String::new();
        for (raw, want) in [
            ("coretemp.0", "coretemp_0"),
            ("soc:firmware", "soc:firmware"),
            ("Weird Name!\n", "weird_name"),
            ("---", ""),
            ("pci0000:00", "pci0000:00"),
            ("\u{130}K\u{212A}é", "ikk"),
        ] {
            clean_metric_name(raw, &mut s);
            assert_eq!(s, want, "{raw:?}");
        }
    }

    #[test]
    fn raspberry_pi_4_matches_node_exporter() {
        assert_parity(
            &mut Hwmon::new(&Settings::default()),
            "hwmon/rpi4",
            "hwmon.prom",
        );
    }

    #[test]
    fn nuc_matches_node_exporter() {
        assert_parity(
            &mut Hwmon::new(&Settings::default()),
            "hwmon/nuc",
            "hwmon.prom",
        );
    }

    #[test]
    fn quirks_match_node_exporter() {
        assert_parity(
            &mut Hwmon::new(&Settings::default()),
            "hwmon/quirks",
            "hwmon.prom",
        );
    }

    #[test]
    fn rpi_labels_and_units() {
        let text = render(
            &mut Hwmon::new(&Settings::default()),
            &fixture_ctx("hwmon/rpi4"),
        )
        .unwrap();
        for line in [
            "node_hwmon_chip_names{chip=\"thermal_thermal_zone0\",chip_name=\"cpu_thermal\"} 1\n",
            "node_hwmon_chip_names{chip=\"soc:firmware_raspberrypi_hwmon\",chip_name=\"rpi_volt\"} 1\n",
            "node_hwmon_in_lcrit_alarm_volts{chip=\"soc:firmware_raspberrypi_hwmon\",sensor=\"in0\"} 0\n",
            "node_hwmon_temp_celsius{chip=\"thermal_thermal_zone0\",sensor=\"temp0\"} 45.277\n",
            "node_hwmon_temp_celsius{chip=\"thermal_thermal_zone0\",sensor=\"temp1\"} 45.277\n",
            "node_hwmon_fan_rpm{chip=\"platform_pwm_fan\",sensor=\"fan1\"} 3010\n",
            "node_hwmon_pwm{chip=\"platform_pwm_fan\",sensor=\"pwm1\"} 102\n",
            "# HELP node_hwmon_pwm Hardware monitor pwm element \n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn nuc_labels_keep_the_raw_text() {
        let text = render(
            &mut Hwmon::new(&Settings::default()),
            &fixture_ctx("hwmon/nuc"),
        )
        .unwrap();
        for line in [
            "node_hwmon_sensor_label{chip=\"platform_coretemp_0\",label=\"Package id 0\",sensor=\"temp1\"} 1\n",
            "node_hwmon_sensor_label{chip=\"nvme_nvme0\",label=\"Sensor 1\",sensor=\"temp2\"} 1\n",
            "node_hwmon_temp_crit_alarm_celsius{chip=\"platform_coretemp_0\",sensor=\"temp5\"} 0\n",
            "node_hwmon_in_volts{chip=\"platform_nct6775_656\",sensor=\"in3\"} 3.3280000000000003\n",
            "node_hwmon_chip_names{chip=\"pci0000:00_0000:00:14_3\",chip_name=\"iwlwifi_1\"} 1\n",
            "node_hwmon_temp_min_celsius{chip=\"nvme_nvme0\",sensor=\"temp1\"} -273.15000000000003\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        // The unreadable iwlwifi sensor is left out, its chip is not.
        assert!(!text.contains("sensor=\"temp1\"} 0\nnode_hwmon_temp_celsius{chip=\"pci"));
        assert!(!text.contains("celsius{chip=\"pci0000:00_0000:00:14_3\""));
    }

    #[test]
    fn chip_and_sensor_filters() {
        let s = Settings::default()
            .with("collector.hwmon.chip-include", "^platform_")
            .with(
                "collector.hwmon.sensor-exclude",
                "^platform_coretemp_0;temp[2-5]$",
            );
        let text = render(&mut Hwmon::new(&s), &fixture_ctx("hwmon/nuc")).unwrap();
        assert!(!text.contains("nvme_nvme0"), "{text}");
        assert!(!text.contains("thermal_thermal_zone0"), "{text}");
        assert!(text.contains("chip=\"platform_nct6775_656\""), "{text}");
        assert!(text.contains(
            "node_hwmon_temp_celsius{chip=\"platform_coretemp_0\",sensor=\"temp1\"} 46\n"
        ));
        assert!(!text.contains("chip=\"platform_coretemp_0\",sensor=\"temp2\""));
        // chip_names is per chip, not per sensor.
        assert!(text.contains("chip=\"platform_coretemp_0\",chip_name=\"coretemp\""));
        let s = Settings::default().with("collector.hwmon.chip-exclude", "coretemp|nct");
        let text = render(&mut Hwmon::new(&s), &fixture_ctx("hwmon/nuc")).unwrap();
        assert!(!text.contains("platform_"), "{text}");
        assert!(text.contains("nvme_nvme0"));
    }

    #[test]
    fn dangling_class_link_is_skipped() {
        // 1.5.0 failed the whole collector for this (its loop kept the stat
        // error); upstream master skips the link, and so do we.
        let text = render(
            &mut Hwmon::new(&Settings::default()),
            &fixture_ctx("hwmon/dangling"),
        )
        .unwrap();
        assert!(text.contains("node_hwmon_temp_celsius{chip=\"ok\",sensor=\"temp1\"} 30\n"));
    }

    #[test]
    fn unlistable_device_dir_fails_the_collector() {
        assert_parity(
            &mut Hwmon::new(&Settings::default()),
            "hwmon/bad_device",
            "hwmon.prom",
        );
        let err = render(
            &mut Hwmon::new(&Settings::default()),
            &fixture_ctx("hwmon/bad_device"),
        );
        assert!(err.is_err());
    }

    #[test]
    fn missing_class_dir_is_no_data() {
        assert!(render(
            &mut Hwmon::new(&Settings::default()),
            &fixture_ctx("hwmon/none")
        )
        .is_err());
    }

    #[test]
    fn warm_collections_reuse_buffers() {
        let ctx = fixture_ctx("hwmon/nuc");
        let mut c = Hwmon::new(&Settings::default());
        let first = render(&mut c, &ctx).unwrap();
        let cap = c.attrs.capacity();
        let second = render(&mut c, &ctx).unwrap();
        assert_eq!(first, second);
        assert_eq!(c.attrs.capacity(), cap);
    }
}
