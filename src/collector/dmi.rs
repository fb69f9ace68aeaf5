//! `dmi`: node_dmi_info from /sys/class/dmi/id, as node_exporter 1.5.0: one
//! label per DMI file present (`sys_vendor` is `system_vendor`), values cut
//! at 128 bytes and trimmed; files only root may read (product_serial,
//! product_uuid, board_serial, chassis_serial) are simply left out for
//! anyone else.
//!
//! Must never: re-read DMI every scrape. It cannot change before a reboot,
//! so the first successful read is kept (node_exporter reads it once at
//! start); only a failed read is retried.

use std::io;

use super::sysfs;
use super::{CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

const HELP: &str = "A metric with a constant '1' value labeled by bios_date, bios_release, bios_vendor, bios_version, board_asset_tag, board_name, board_serial, board_vendor, board_version, chassis_asset_tag, chassis_serial, chassis_vendor, chassis_version, product_family, product_name, product_serial, product_sku, product_uuid, product_version, system_vendor if provided by DMI.";

/// DMI file → label, in label order (labels render sorted, as client_golang
/// does).
const FIELDS: [(&str, &str); 20] = [
    ("bios_date", "bios_date"),
    ("bios_release", "bios_release"),
    ("bios_vendor", "bios_vendor"),
    ("bios_version", "bios_version"),
    ("board_asset_tag", "board_asset_tag"),
    ("board_name", "board_name"),
    ("board_serial", "board_serial"),
    ("board_vendor", "board_vendor"),
    ("board_version", "board_version"),
    ("chassis_asset_tag", "chassis_asset_tag"),
    ("chassis_serial", "chassis_serial"),
    ("chassis_vendor", "chassis_vendor"),
    ("chassis_version", "chassis_version"),
    ("product_family", "product_family"),
    ("product_name", "product_name"),
    ("product_serial", "product_serial"),
    ("product_sku", "product_sku"),
    ("product_uuid", "product_uuid"),
    ("product_version", "product_version"),
    ("sys_vendor", "system_vendor"),
];

pub struct Dmi {
    /// `Some` once read: the value of each present field.
    values: Option<[Option<String>; 20]>,
}

impl Dmi {
    pub fn new(_settings: &Settings) -> Self {
        Dmi { values: None }
    }

    fn read(ctx: &Context) -> Result<[Option<String>; 20], CollectError> {
        let dir = ctx.sys_path("class/dmi/id");
        let mut values: [Option<String>; 20] = Default::default();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // No DMI on this platform (most ARM boards): nothing to report.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(values),
            Err(source) => return Err(CollectError::Io { path: dir, source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| CollectError::Io {
                path: dir.clone(),
                source,
            })?;
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let fname = entry.file_name();
            let Some(slot) = FIELDS
                .iter()
                .position(|(file, _)| fname.to_str() == Some(file))
            else {
                continue;
            };
            let path = entry.path();
            let mut value = String::new();
            match sysfs::read_attr_string(&path, &mut value) {
                Ok(()) => values[slot] = Some(value),
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
                Err(source) => return Err(CollectError::Io { path, source }),
            }
        }
        Ok(values)
    }
}

impl Collector for Dmi {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        if self.values.is_none() {
            self.values = Some(Self::read(ctx)?);
        }
        let values = self.values.as_ref().into_iter().flatten();
        if values.clone().all(Option::is_none) {
            return Err(CollectError::NoData(
                "no DMI information in class/dmi/id".into(),
            ));
        }
        out.family("node_dmi_info", HELP, MetricType::Gauge)
            .sample_with(1.0, |l| {
                for ((_, label), value) in FIELDS.iter().zip(values) {
                    if let Some(v) = value {
                        l.label(label, v);
                    }
                }
            });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::hwmon::parity::assert_parity;
    use crate::collector::testutil::{fixture_ctx, render};

    fn new() -> Dmi {
        Dmi::new(&Settings::default())
    }

    #[test]
    fn matches_node_exporter() {
        assert_parity(&mut new(), "hwmon/nuc", "dmi.prom");
        assert_parity(&mut new(), "hwmon/rpi4", "dmi.prom");
        assert_parity(&mut new(), "dmi/odd", "dmi.prom");
        assert_parity(&mut new(), "dmi/empty_dir", "dmi.prom");
    }

    #[test]
    fn read_once_then_kept() {
        let mut c = new();
        let first = render(&mut c, &fixture_ctx("hwmon/nuc")).unwrap();
        // A second scrape does not look at the tree again.
        let second = render(&mut c, &fixture_ctx("hwmon/none")).unwrap();
        assert_eq!(first, second);
        assert!(first.contains("system_vendor=\"Intel(R) Client Systems\""));
        assert!(first.contains("board_asset_tag=\"\""));
        assert!(!first.contains("chassis_type"));
    }

    #[test]
    fn root_only_files_are_left_out_for_other_users() {
        // Permission bits do not survive git, so make a tree here; as root
        // the file stays readable and the label is present.
        let dir = tempfile::tempdir().unwrap();
        let id = dir.path().join("sys/class/dmi/id");
        std::fs::create_dir_all(&id).unwrap();
        std::fs::write(id.join("sys_vendor"), "ACME\n").unwrap();
        std::fs::write(id.join("product_serial"), "SECRET\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            id.join("product_serial"),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();
        let ctx = Context {
            sysfs: dir.path().join("sys"),
            ..Context::default()
        };
        let text = render(&mut new(), &ctx).unwrap();
        let root = unsafe { libc::geteuid() } == 0;
        assert_eq!(text.contains("product_serial=\"SECRET\""), root, "{text}");
        assert!(text.contains("system_vendor=\"ACME\""));
    }

    #[test]
    fn no_dmi_is_no_data() {
        assert!(render(&mut new(), &fixture_ctx("hwmon/rpi4")).is_err());
    }
}
