//! `nvme`: node_nvme_info{device,firmware_revision,model,serial,state} from
//! /sys/class/nvme/<device>, as node_exporter 1.5.0 (values cut at 128
//! bytes and trimmed of the padding controllers put in model and serial).
//!
//! Must never: report a controller missing one of its four files (that
//! fails the collector, as upstream). No NVMe is reported as no data
//! (node_exporter's ErrNoData, success 0).

use std::path::PathBuf;

use super::sysfs;
use super::{CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

/// Files read, in label order after `device`.
const FILES: [&str; 4] = ["firmware_rev", "model", "serial", "state"];

pub struct Nvme {
    path: PathBuf,
    values: [String; 4],
}

impl Nvme {
    pub fn new(_settings: &Settings) -> Self {
        Nvme {
            path: PathBuf::new(),
            values: Default::default(),
        }
    }
}

impl Collector for Nvme {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let class = ctx.sys_path("class/nvme");
        // Listing allocates per entry; controllers are found by listing.
        for entry in super::list_devices(&class)? {
            let entry = entry?;
            let fname = entry.file_name();
            let device = fname.to_string_lossy();
            self.path.clear();
            self.path.push(entry.path());
            self.path.push("x");
            for (file, value) in FILES.iter().zip(self.values.iter_mut()) {
                self.path.set_file_name(file);
                sysfs::read_attr_string(&self.path, value).map_err(|source| CollectError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            }
            let [fw, model, serial, state] = &self.values;
            out.family(
                "node_nvme_info",
                "Non-numeric data from /sys/class/nvme/<device>, value is always 1.",
                MetricType::Gauge,
            )
            .sample(
                &[
                    ("device", &device),
                    ("firmware_revision", fw),
                    ("model", model),
                    ("serial", serial),
                    ("state", state),
                ],
                1.0,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::hwmon::parity::assert_parity;
    use crate::collector::testutil::{fixture_ctx, render};

    fn new() -> Nvme {
        Nvme::new(&Settings::default())
    }

    #[test]
    fn matches_node_exporter() {
        for case in ["hwmon/nuc", "hwmon/rpi4", "nvme/two", "nvme/missing_state"] {
            assert_parity(&mut new(), case, "nvme.prom");
        }
    }

    #[test]
    fn padding_trimmed_and_quotes_escaped() {
        let text = render(&mut new(), &fixture_ctx("nvme/two")).unwrap();
        assert!(text.contains("model=\"WDC WDS500G2B0C-00PXH0\",serial=\"2034AB123456\""));
        assert!(text.contains("model=\"Micron_2450 \\\"MTFD\\\"\",serial=\"ABC\\\\DEF\""));
    }

    #[test]
    fn missing_state_fails_only_this_collector() {
        assert!(render(&mut new(), &fixture_ctx("nvme/missing_state")).is_err());
    }
}
