//! `bonding`: node_bonding_slaves{master} and node_bonding_active{master}
//! from /sys/class/net/bonding_masters and each master's slaves' MII
//! status, as node_exporter 1.5.0.
//!
//! Without the bonding driver there is no bonding_masters; 1.5.0 returns
//! ErrNoData for that (and for any other missing file on the way), which it
//! reports as node_scrape_collector_success 0, so that is an error here too.
//!
//! Owns: reading the bonding sysfs files. Must never: report a master with
//! a partial count (an unreadable slave fails the collector, as upstream),
//! or build a path out of /sys/class/net from a name in those files.

use std::ffi::OsString;
use std::path::Path;

use super::{read_into, CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

pub struct Bonding {
    masters: String,
    slaves: String,
    state: String,
    path: OsString,
    /// (master, slaves, active) of this collection, emitted only once every
    /// master was read.
    counts: Vec<(String, u32, u32)>,
}

impl Bonding {
    pub fn new(_settings: &Settings) -> Self {
        Bonding {
            masters: String::with_capacity(64),
            slaves: String::with_capacity(64),
            state: String::with_capacity(16),
            path: OsString::new(),
            counts: Vec::new(),
        }
    }
}

/// Interface names never contain '/' and are never "." or ".."; anything
/// else in these files is corruption, not a name to walk into.
fn check_name(file: &Path, name: &str) -> Result<(), CollectError> {
    if name.contains('/') || name == "." || name == ".." {
        return Err(CollectError::parse(
            file,
            format!("bad interface name {name:?}"),
        ));
    }
    Ok(())
}

fn set_path<'a>(buf: &'a mut OsString, parts: &[&str]) -> &'a Path {
    buf.clear();
    for p in parts {
        buf.push(p);
    }
    Path::new(buf)
}

impl Collector for Bonding {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let root = ctx.sys_path("class/net");
        let root = root.to_string_lossy();
        let masters_file = Path::new(&*root).join("bonding_masters");
        read_into(&masters_file, &mut self.masters)?;

        let mut n = 0;
        for master in self.masters.split_ascii_whitespace() {
            check_name(&masters_file, master)?;
            let slaves_file = set_path(&mut self.path, &[&root, "/", master, "/bonding/slaves"]);
            read_into(slaves_file, &mut self.slaves)?;
            let (mut total, mut active) = (0u32, 0u32);
            for slave in self.slaves.split_ascii_whitespace() {
                check_name(Path::new(&self.path), slave)?;
                let p = set_path(
                    &mut self.path,
                    &[
                        &root,
                        "/",
                        master,
                        "/lower_",
                        slave,
                        "/bonding_slave/mii_status",
                    ],
                );
                let res = match read_into(p, &mut self.state) {
                    // Older kernels name the link slave_<name>.
                    Err(CollectError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        let p = set_path(
                            &mut self.path,
                            &[
                                &root,
                                "/",
                                master,
                                "/slave_",
                                slave,
                                "/bonding_slave/mii_status",
                            ],
                        );
                        read_into(p, &mut self.state)
                    }
                    r => r,
                };
                res?;
                total += 1;
                if self.state.trim() == "up" {
                    active += 1;
                }
            }
            // One entry per master, reused across collections.
            if n == self.counts.len() {
                self.counts.push((String::new(), 0, 0));
            }
            let slot = &mut self.counts[n];
            slot.0.clear();
            slot.0.push_str(master);
            slot.1 = total;
            slot.2 = active;
            n += 1;
        }
        self.counts.truncate(n);

        for (master, total, active) in &self.counts {
            out.family(
                "node_bonding_slaves",
                "Number of configured slaves per bonding interface.",
                MetricType::Gauge,
            )
            .sample(&[("master", master)], f64::from(*total));
            out.family(
                "node_bonding_active",
                "Number of active slaves per bonding interface.",
                MetricType::Gauge,
            )
            .sample(&[("master", master)], f64::from(*active));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn run(case: &str) -> Result<String, CollectError> {
        render(
            &mut Bonding::new(&Settings::default()),
            &fixture_ctx(&format!("bonding/{case}")),
        )
    }

    #[test]
    fn counts_slaves_and_active_ones() {
        let text = run("basic").unwrap();
        assert_eq!(
            text,
            "# HELP node_bonding_active Number of active slaves per bonding interface.\n\
             # TYPE node_bonding_active gauge\n\
             node_bonding_active{master=\"bond0\"} 1\n\
             node_bonding_active{master=\"bond1\"} 2\n\
             node_bonding_active{master=\"int\"} 0\n\
             # HELP node_bonding_slaves Number of configured slaves per bonding interface.\n\
             # TYPE node_bonding_slaves gauge\n\
             node_bonding_slaves{master=\"bond0\"} 2\n\
             node_bonding_slaves{master=\"bond1\"} 2\n\
             node_bonding_slaves{master=\"int\"} 0\n"
        );
    }

    #[test]
    fn no_bonding_driver_is_no_data() {
        assert!(run("nobonding").is_err());
    }

    #[test]
    fn unreadable_slave_or_bad_name_fails() {
        assert!(run("missingslave").is_err());
        assert!(run("badname").is_err());
    }
}
