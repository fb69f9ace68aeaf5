//! `xfs`: per-filesystem XFS runtime counters from
//! /sys/fs/xfs/<device>/stats/stats (kernel 4.4+), as node_exporter 1.5.0
//! reports them (`node_xfs_*_total{device}`). The host-wide
//! /sys/fs/xfs/stats/stats and /proc/fs/xfs/stat are not read, as upstream.
//!
//! Must never: emit part of a device's counters when any line of any
//! device's file is malformed (procfs' parser fails the whole collection,
//! and so do we), or treat a host without XFS as an error.

use std::path::{Path, PathBuf};

use super::{read_into, CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

/// The lines node_exporter exports, with the number of values procfs
/// insists on; every other line must still be whole numbers that fit 32 bits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Line {
    ExtentAlloc,
    Abt,
    BlkMap,
    Bmbt,
    Dir,
    Ig,
    Rw,
    Vnodes,
}

const LINES: &[(&str, Line, usize)] = &[
    ("extent_alloc", Line::ExtentAlloc, 4),
    ("abt", Line::Abt, 4),
    ("blk_map", Line::BlkMap, 7),
    ("bmbt", Line::Bmbt, 4),
    ("dir", Line::Dir, 4),
    ("ig", Line::Ig, 7),
    ("rw", Line::Rw, 2),
    ("vnodes", Line::Vnodes, 7),
];

/// Parsed but not exported: only their value counts are checked.
const CHECKED: &[(&str, usize)] = &[
    ("trans", 3),
    ("log", 5),
    ("attr", 4),
    ("icluster", 3),
    ("buf", 9),
];

/// Slot of each line's first value in a device's value array.
const fn base(line: Line) -> usize {
    match line {
        Line::ExtentAlloc => 0,
        Line::Abt => 4,
        Line::BlkMap => 8,
        Line::Bmbt => 15,
        Line::Dir => 19,
        Line::Ig => 23,
        Line::Rw => 30,
        Line::Vnodes => 32,
    }
}
const SLOTS: usize = 39;

type Metric = (&'static str, &'static str, Line, usize);

/// node_exporter 1.5.0's families, in its order: name, HELP, line, index.
const METRICS: &[Metric] = &[
    ("node_xfs_extent_allocation_extents_allocated_total", "Number of extents allocated for a filesystem.", Line::ExtentAlloc, 0),
    ("node_xfs_extent_allocation_blocks_allocated_total", "Number of blocks allocated for a filesystem.", Line::ExtentAlloc, 1),
    ("node_xfs_extent_allocation_extents_freed_total", "Number of extents freed for a filesystem.", Line::ExtentAlloc, 2),
    ("node_xfs_extent_allocation_blocks_freed_total", "Number of blocks freed for a filesystem.", Line::ExtentAlloc, 3),
    ("node_xfs_allocation_btree_lookups_total", "Number of allocation B-tree lookups for a filesystem.", Line::Abt, 0),
    ("node_xfs_allocation_btree_compares_total", "Number of allocation B-tree compares for a filesystem.", Line::Abt, 1),
    ("node_xfs_allocation_btree_records_inserted_total", "Number of allocation B-tree records inserted for a filesystem.", Line::Abt, 2),
    ("node_xfs_allocation_btree_records_deleted_total", "Number of allocation B-tree records deleted for a filesystem.", Line::Abt, 3),
    ("node_xfs_block_mapping_reads_total", "Number of block map for read operations for a filesystem.", Line::BlkMap, 0),
    ("node_xfs_block_mapping_writes_total", "Number of block map for write operations for a filesystem.", Line::BlkMap, 1),
    ("node_xfs_block_mapping_unmaps_total", "Number of block unmaps (deletes) for a filesystem.", Line::BlkMap, 2),
    ("node_xfs_block_mapping_extent_list_insertions_total", "Number of extent list insertions for a filesystem.", Line::BlkMap, 3),
    ("node_xfs_block_mapping_extent_list_deletions_total", "Number of extent list deletions for a filesystem.", Line::BlkMap, 4),
    ("node_xfs_block_mapping_extent_list_lookups_total", "Number of extent list lookups for a filesystem.", Line::BlkMap, 5),
    ("node_xfs_block_mapping_extent_list_compares_total", "Number of extent list compares for a filesystem.", Line::BlkMap, 6),
    ("node_xfs_block_map_btree_lookups_total", "Number of block map B-tree lookups for a filesystem.", Line::Bmbt, 0),
    ("node_xfs_block_map_btree_compares_total", "Number of block map B-tree compares for a filesystem.", Line::Bmbt, 1),
    ("node_xfs_block_map_btree_records_inserted_total", "Number of block map B-tree records inserted for a filesystem.", Line::Bmbt, 2),
    ("node_xfs_block_map_btree_records_deleted_total", "Number of block map B-tree records deleted for a filesystem.", Line::Bmbt, 3),
    ("node_xfs_directory_operation_lookup_total", "Number of file name directory lookups which miss the operating systems directory name lookup cache.", Line::Dir, 0),
    ("node_xfs_directory_operation_create_total", "Number of times a new directory entry was created for a filesystem.", Line::Dir, 1),
    ("node_xfs_directory_operation_remove_total", "Number of times an existing directory entry was created for a filesystem.", Line::Dir, 2),
    ("node_xfs_directory_operation_getdents_total", "Number of times the directory getdents operation was performed for a filesystem.", Line::Dir, 3),
    ("node_xfs_inode_operation_attempts_total", "Number of times the OS looked for an XFS inode in the inode cache.", Line::Ig, 0),
    ("node_xfs_inode_operation_found_total", "Number of times the OS looked for and found an XFS inode in the inode cache.", Line::Ig, 1),
    ("node_xfs_inode_operation_recycled_total", "Number of times the OS found an XFS inode in the cache, but could not use it as it was being recycled.", Line::Ig, 2),
    ("node_xfs_inode_operation_missed_total", "Number of times the OS looked for an XFS inode in the cache, but did not find it.", Line::Ig, 3),
    ("node_xfs_inode_operation_duplicates_total", "Number of times the OS tried to add a missing XFS inode to the inode cache, but found it had already been added by another process.", Line::Ig, 4),
    ("node_xfs_inode_operation_reclaims_total", "Number of times the OS reclaimed an XFS inode from the inode cache to free memory for another purpose.", Line::Ig, 5),
    ("node_xfs_inode_operation_attribute_changes_total", "Number of times the OS explicitly changed the attributes of an XFS inode.", Line::Ig, 6),
    // The kernel writes `rw <write calls> <read calls>`.
    ("node_xfs_read_calls_total", "Number of read(2) system calls made to files in a filesystem.", Line::Rw, 1),
    ("node_xfs_write_calls_total", "Number of write(2) system calls made to files in a filesystem.", Line::Rw, 0),
    ("node_xfs_vnode_active_total", "Number of vnodes not on free lists for a filesystem.", Line::Vnodes, 0),
    ("node_xfs_vnode_allocate_total", "Number of times vn_alloc called for a filesystem.", Line::Vnodes, 1),
    ("node_xfs_vnode_get_total", "Number of times vn_get called for a filesystem.", Line::Vnodes, 2),
    ("node_xfs_vnode_hold_total", "Number of times vn_hold called for a filesystem.", Line::Vnodes, 3),
    ("node_xfs_vnode_release_total", "Number of times vn_rele called for a filesystem.", Line::Vnodes, 4),
    ("node_xfs_vnode_reclaim_total", "Number of times vn_reclaim called for a filesystem.", Line::Vnodes, 5),
    ("node_xfs_vnode_remove_total", "Number of times vn_remove called for a filesystem.", Line::Vnodes, 6),
];

struct Device {
    name: String,
    values: [u32; SLOTS],
}

pub struct Xfs {
    buf: String,
    path: PathBuf,
    /// `devices[..used]` is this collection; the rest keep their buffers.
    devices: Vec<Device>,
    used: usize,
}

impl Xfs {
    pub fn new(_settings: &Settings) -> Self {
        Xfs {
            buf: String::with_capacity(2048),
            path: PathBuf::new(),
            devices: Vec::new(),
            used: 0,
        }
    }

    fn next_device(&mut self, name: &str) -> &mut Device {
        if self.used == self.devices.len() {
            self.devices.push(Device {
                name: String::new(),
                values: [0; SLOTS],
            });
        }
        let d = &mut self.devices[self.used];
        self.used += 1;
        d.name.clear();
        d.name.push_str(name);
        d.values = [0; SLOTS];
        d
    }
}

/// procfs' xfs.ParseStats, keeping the exported values in `values`.
fn parse_stats(path: &Path, text: &str, values: &mut [u32; SLOTS]) -> Result<(), CollectError> {
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let Some(label) = f.next() else { continue };
        let rest = f.clone();
        if rest.clone().next().is_none() {
            continue;
        }
        let count = rest.clone().count();
        if label == "xpc" {
            for tok in rest {
                tok.parse::<u64>()
                    .map_err(|e| CollectError::parse(path, format!("xpc value {tok:?}: {e}")))?;
            }
            if count != 3 {
                return Err(CollectError::parse(
                    path,
                    format!("incorrect number of values for XFS extended precision stats: {count}"),
                ));
            }
            continue;
        }
        // Every other line is 32-bit counters, known to node_exporter or not.
        let known = LINES.iter().find(|(l, _, _)| *l == label);
        let want = known
            .map(|&(_, _, n)| n)
            .or_else(|| CHECKED.iter().find(|(l, _)| *l == label).map(|&(_, n)| n));
        for (i, tok) in rest.enumerate() {
            let v: u32 = tok
                .parse()
                .map_err(|e| CollectError::parse(path, format!("{label} value {tok:?}: {e}")))?;
            if let Some(&(_, line, n)) = known {
                if i < n {
                    values[base(line) + i] = v;
                }
            }
        }
        if let Some(n) = want {
            // Older kernels lack the vnodes "free" count.
            let ok = count == n || (label == "vnodes" && count == 8);
            if !ok {
                return Err(CollectError::parse(
                    path,
                    format!("incorrect number of values for XFS {label} stats: {count}"),
                ));
            }
        }
    }
    Ok(())
}

impl Collector for Xfs {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        self.used = 0;
        let dir = ctx.sys_path("fs/xfs");
        // No XFS module or no XFS mounted: nothing to report, as upstream's
        // empty glob.
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        // One small allocation per mounted XFS filesystem per collection
        // (std's directory entry names); there are few and they come and go.
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort_unstable();
        for name in &names {
            self.path.clear();
            self.path.push(&dir);
            self.path.push(name);
            self.path.push("stats/stats");
            if !self.path.is_file() {
                continue;
            }
            let path = std::mem::take(&mut self.path);
            let res = read_into(&path, &mut self.buf).and_then(|()| {
                let mut values = [0; SLOTS];
                parse_stats(&path, &self.buf, &mut values)?;
                Ok(values)
            });
            self.path = path;
            let values = res?;
            self.next_device(name).values = values;
        }
        for &(fam, help, line, i) in METRICS {
            let mut f = out.family(fam, help, MetricType::Counter);
            for d in &self.devices[..self.used] {
                f.sample(&[("device", &d.name)], f64::from(d.values[base(line) + i]));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn xfs() -> Xfs {
        Xfs::new(&Settings::default())
    }

    #[test]
    fn two_filesystems_as_node_exporter() {
        // node_exporter 1.5.0's output for this fixture, values as cairn
        // writes them. nvme0n1p2 is an older kernel (7 vnodes values, no
        // xpc) with a 32-bit counter at its maximum; the host-wide
        // fs/xfs/stats/stats is not a device.
        let want = include_str!("../../tests/fixtures/xfs/normal/expected.prom");
        let text = render(&mut xfs(), &fixture_ctx("xfs/normal")).unwrap();
        assert_eq!(text, want);
    }

    #[test]
    fn rw_line_is_write_then_read() {
        let text = render(&mut xfs(), &fixture_ctx("xfs/normal")).unwrap();
        assert!(text.contains("node_xfs_read_calls_total{device=\"sda1\"} 94045\n"));
        assert!(text.contains("node_xfs_write_calls_total{device=\"sda1\"} 107739\n"));
    }

    #[test]
    fn no_xfs_is_success_without_series() {
        let text = render(&mut xfs(), &fixture_ctx("xfs/none")).unwrap();
        assert_eq!(text, "");
    }

    #[test]
    fn malformed_stats_fail_the_collector() {
        for case in ["xfs/short_line", "xfs/overflow", "xfs/garbage_unknown_line"] {
            let r = render(&mut xfs(), &fixture_ctx(case));
            assert!(r.is_err(), "{case}: {r:?}");
        }
    }

    #[test]
    fn devices_that_go_away_are_dropped() {
        let mut c = xfs();
        render(&mut c, &fixture_ctx("xfs/normal")).unwrap();
        let text = render(&mut c, &fixture_ctx("xfs/none")).unwrap();
        assert_eq!(text, "");
    }
}
