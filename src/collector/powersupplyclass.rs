//! `powersupplyclass`: node_power_supply_* from /sys/class/power_supply, as
//! node_exporter 1.5.0 (procfs' PowerSupplyClass): integers parsed as Go's
//! ParseInt(s, 0, 64) (so `010` is octal), µA/µV/µWh/µAh → A/V/Wh/Ah by
//! ÷1e6, tenths of °C ÷10, and one node_power_supply_info per supply with
//! a label per non-empty string attribute.
//!
//! Must never: report a supply with a malformed number (that fails the
//! collector, as upstream; an ignored supply is still parsed, as upstream),
//! or fail over an attribute the driver says it cannot give (ENOENT,
//! EOPNOTSUPP, ENODEV).

use std::io;
use std::path::PathBuf;

use regex::Regex;

use super::sysfs;
use super::{CollectError, Collector, Context, Opt, OptKind, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[Opt {
    // Upstream's flag names the collector "powersupply" (its config key
    // stays under [collectors.powersupplyclass]).
    flag: "collector.powersupply.ignored-supplies",
    kind: OptKind::Regex,
    default: "^$",
    help: "Regexp of power supplies to ignore for powersupplyclass collector.",
    aliases: &[],
}];

macro_rules! field {
    ($file:literal) => {
        ($file, None)
    };
    ($file:literal, $name:literal, $div:expr) => {
        (
            $file,
            Some((
                concat!("node_power_supply_", $name),
                concat!($name, " value of /sys/class/power_supply/<power_supply>."),
                $div,
            )),
        )
    };
}

type Export = Option<(&'static str, &'static str, f64)>;

/// Every integer attribute procfs parses (a malformed one fails it), with
/// the family it is exported as, if any, and the divisor.
const INTS: [(&str, Export); 56] = [
    field!("authentic", "authentic", 1.0),
    field!("calibrate", "calibrate", 1.0),
    field!("capacity", "capacity", 1.0),
    field!("capacity_alert_max", "capacity_alert_max", 1.0),
    field!("capacity_alert_min", "capacity_alert_min", 1.0),
    field!("cycle_count", "cyclecount", 1.0),
    field!("online", "online", 1.0),
    field!("present", "present", 1.0),
    field!("time_to_empty_now", "time_to_empty_seconds", 1.0),
    field!("time_to_full_now", "time_to_full_seconds", 1.0),
    field!("current_boot", "current_boot", 1e6),
    field!("current_max", "current_max", 1e6),
    field!("current_now", "current_ampere", 1e6),
    field!("energy_empty", "energy_empty", 1e6),
    field!("energy_empty_design", "energy_empty_design", 1e6),
    field!("energy_full", "energy_full", 1e6),
    field!("energy_full_design", "energy_full_design", 1e6),
    field!("energy_now", "energy_watthour", 1e6),
    field!("voltage_boot", "voltage_boot", 1e6),
    field!("voltage_max", "voltage_max", 1e6),
    field!("voltage_max_design", "voltage_max_design", 1e6),
    field!("voltage_min", "voltage_min", 1e6),
    field!("voltage_min_design", "voltage_min_design", 1e6),
    field!("voltage_now", "voltage_volt", 1e6),
    field!("voltage_ocv", "voltage_ocv", 1e6),
    field!("charge_control_limit", "charge_control_limit", 1e6),
    field!("charge_control_limit_max", "charge_control_limit_max", 1e6),
    field!("charge_counter", "charge_counter", 1e6),
    field!("charge_empty", "charge_empty", 1e6),
    field!("charge_empty_design", "charge_empty_design", 1e6),
    field!("charge_full", "charge_full", 1e6),
    field!("charge_full_design", "charge_full_design", 1e6),
    field!("charge_now", "charge_ampere", 1e6),
    field!("charge_term_current", "charge_term_current", 1e6),
    field!("constant_charge_current", "constant_charge_current", 1e6),
    field!(
        "constant_charge_current_max",
        "constant_charge_current_max",
        1e6
    ),
    field!("constant_charge_voltage", "constant_charge_voltage", 1e6),
    field!(
        "constant_charge_voltage_max",
        "constant_charge_voltage_max",
        1e6
    ),
    field!("precharge_current", "precharge_current", 1e6),
    field!("input_current_limit", "input_current_limit", 1e6),
    field!("power_now", "power_watt", 1e6),
    field!("temp", "temp_celsius", 10.0),
    field!("temp_alert_max", "temp_alert_max_celsius", 10.0),
    field!("temp_alert_min", "temp_alert_min_celsius", 10.0),
    field!("temp_ambient", "temp_ambient_celsius", 10.0),
    field!("temp_ambient_max", "temp_ambient_max_celsius", 10.0),
    field!("temp_ambient_min", "temp_ambient_min_celsius", 10.0),
    field!("temp_max", "temp_max_celsius", 10.0),
    field!("temp_min", "temp_min_celsius", 10.0),
    field!("charge_avg"),
    field!("current_avg"),
    field!("energy_avg"),
    field!("power_avg"),
    field!("time_to_empty_avg"),
    field!("time_to_full_avg"),
    field!("voltage_avg"),
];

/// String attributes (file, label), in label order; `power_supply` sorts
/// between model_name and scope.
const STRINGS: [(&str, &str); 11] = [
    ("capacity_level", "capacity_level"),
    ("charge_type", "charge_type"),
    ("health", "health"),
    ("manufacturer", "manufacturer"),
    ("model_name", "model_name"),
    ("scope", "scope"),
    ("serial_number", "serial_number"),
    ("status", "status"),
    ("technology", "technology"),
    ("type", "type"),
    ("usb_type", "usb_type"),
];
const FIRST_AFTER_NAME: usize = 5;

pub struct Powersupplyclass {
    ignored: Option<Regex>,
    ints: [Option<i64>; 56],
    strings: [String; 11],
    path: PathBuf,
    buf: String,
}

impl Powersupplyclass {
    pub fn new(settings: &Settings) -> Self {
        Powersupplyclass {
            ignored: settings.regex("collector.powersupply.ignored-supplies"),
            ints: [None; 56],
            strings: Default::default(),
            path: PathBuf::new(),
            buf: String::new(),
        }
    }

    fn parse_supply(&mut self) -> Result<(), CollectError> {
        self.ints = [None; 56];
        for s in &mut self.strings {
            s.clear();
        }
        let dir = self.path.clone();
        let entries = std::fs::read_dir(&dir).map_err(|source| CollectError::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| CollectError::Io {
                path: dir.clone(),
                source,
            })?;
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let fname = entry.file_name();
            let Some(fname) = fname.to_str() else {
                continue;
            };
            let int = INTS.iter().position(|(f, _)| *f == fname);
            let string = STRINGS.iter().position(|(f, _)| *f == fname);
            if int.is_none() && string.is_none() {
                continue;
            }
            self.path.push(fname);
            let res = sysfs::read_attr_string(&self.path, &mut self.buf);
            self.path.pop();
            match res {
                Ok(()) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        || matches!(sysfs::errno(&e), libc::EOPNOTSUPP | libc::ENODEV) =>
                {
                    continue
                }
                Err(source) => {
                    return Err(CollectError::Io {
                        path: dir.join(fname),
                        source,
                    })
                }
            }
            if let Some(i) = int {
                self.ints[i] = Some(sysfs::parse_int_base0(&self.buf).ok_or_else(|| {
                    CollectError::parse(&dir.join(fname), format!("{:?}: not an integer", self.buf))
                })?);
            } else if let Some(i) = string {
                self.strings[i].push_str(&self.buf);
            }
        }
        Ok(())
    }
}

impl Collector for Powersupplyclass {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let class = ctx.sys_path("class/power_supply");
        // Listing allocates per entry; supplies come and go (USB, docks).
        for entry in super::list_devices(&class)? {
            let entry = entry?;
            let fname = entry.file_name();
            let name = fname.to_string_lossy();
            self.path.clear();
            self.path.push(entry.path());
            self.parse_supply()?;
            if self.ignored.as_ref().is_some_and(|r| r.is_match(&name)) {
                continue;
            }
            for ((_, export), value) in INTS.iter().zip(&self.ints) {
                if let (Some((metric, help, div)), Some(v)) = (export, value) {
                    let v = if *div == 1.0 {
                        *v as f64
                    } else {
                        *v as f64 / div
                    };
                    out.family(metric, help, MetricType::Gauge)
                        .sample(&[("power_supply", &name)], v);
                }
            }
            let strings = &self.strings;
            out.family(
                "node_power_supply_info",
                "info of /sys/class/power_supply/<power_supply>.",
                MetricType::Gauge,
            )
            .sample_with(1.0, |l| {
                for (i, ((_, label), value)) in STRINGS.iter().zip(strings).enumerate() {
                    if i == FIRST_AFTER_NAME {
                        l.label("power_supply", &name);
                    }
                    if !value.is_empty() {
                        l.label(label, value);
                    }
                }
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::hwmon::parity::assert_parity;
    use crate::collector::testutil::{fixture_ctx, render};

    fn new() -> Powersupplyclass {
        Powersupplyclass::new(&Settings::default())
    }

    #[test]
    fn matches_node_exporter() {
        for case in [
            "powersupplyclass/laptop",
            "powersupplyclass/bad",
            "hwmon/nuc",
        ] {
            assert_parity(&mut new(), case, "powersupplyclass.prom");
        }
        let s =
            Settings::default().with("collector.powersupply.ignored-supplies", "^(hidpp_.*|AC)$");
        assert_parity(
            &mut Powersupplyclass::new(&s),
            "powersupplyclass/laptop",
            "powersupplyclass.ignored.prom",
        );
    }

    #[test]
    fn go_integer_syntax_and_units() {
        let text = render(&mut new(), &fixture_ctx("powersupplyclass/laptop")).unwrap();
        for line in [
            // "010" is octal to Go's ParseInt(s, 0, 64).
            "node_power_supply_time_to_full_seconds{power_supply=\"BAT0\"} 8\n",
            "node_power_supply_temp_celsius{power_supply=\"BAT0\"} 31.5\n",
            "node_power_supply_temp_alert_min_celsius{power_supply=\"BAT0\"} -10\n",
            "node_power_supply_energy_watthour{power_supply=\"BAT0\"} 39.15\n",
            "node_power_supply_info{power_supply=\"AC\",type=\"Mains\"} 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn malformed_value_fails_only_this_collector() {
        assert!(render(&mut new(), &fixture_ctx("powersupplyclass/bad")).is_err());
    }

    #[test]
    fn upstream_flag_name_is_accepted() {
        let s = Settings::default().with("collector.powersupply.ignored-supplies", "BAT");
        let text = render(
            &mut Powersupplyclass::new(&s),
            &fixture_ctx("powersupplyclass/laptop"),
        )
        .unwrap();
        assert!(!text.contains("BAT0"));
        let cmd = crate::cli::command();
        let a = cmd.try_get_matches_from(["cairn", "--collector.powersupply.ignored-supplies=x"]);
        assert!(a.is_ok(), "upstream flag name not accepted: {a:?}");
    }
}
