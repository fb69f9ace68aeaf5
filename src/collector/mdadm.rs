//! `mdadm`: Linux software RAID state from /proc/mdstat (`node_md_disks`,
//! `node_md_disks_required`, `node_md_state`, `node_md_blocks`,
//! `node_md_blocks_synced`), parsed as node_exporter 1.5.0's procfs does it,
//! oddities included (an `(auto-read-only)` array has no state set; a sync
//! line that cannot be read fails the whole file).
//!
//! Must never: report a partial set of arrays from a file that failed to
//! parse, or report success when /proc/mdstat is missing (node_exporter
//! returns ErrNoData there, which it reports as `success 0`).

use std::ops::Range;
use std::path::Path;

use super::sysfs::parse_float;
use super::{read_into, CollectError, Collector, Context, Opt, Settings};
use crate::metrics::{Emitter, MetricType};

pub const OPTIONS: &[Opt] = &[];

/// One array, its name a range into the collector's read buffer.
#[derive(Debug, Clone, PartialEq)]
struct Md {
    name: Range<usize>,
    /// The third word of the device line, or the sync state that replaced it.
    state: State,
    active: i64,
    total: i64,
    failed: i64,
    spare: i64,
    blocks: i64,
    synced: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Active,
    Inactive,
    Recovering,
    Resyncing,
    Checking,
    /// Anything else in the state column (`(auto-read-only)`, `(read-only)`):
    /// node_exporter sets none of its state series for it.
    Other,
}

pub struct Mdadm {
    buf: String,
    lines: Vec<Range<usize>>,
    mds: Vec<Md>,
}

impl Mdadm {
    pub fn new(_settings: &Settings) -> Self {
        Mdadm {
            buf: String::with_capacity(2048),
            lines: Vec::new(),
            mds: Vec::new(),
        }
    }
}

/// `(\d+)/\d+` inside parentheses, first occurrence: the synced blocks of a
/// recovery/resync/check line.
fn synced_blocks(line: &str) -> Option<Option<i64>> {
    let b = line.as_bytes();
    let mut from = 0;
    while let Some(off) = line[from..].find('(') {
        let start = from + off + 1;
        let d1 = digits_len(&b[start..]);
        if d1 > 0 && b.get(start + d1) == Some(&b'/') {
            let s2 = start + d1 + 1;
            let d2 = digits_len(&b[s2..]);
            if d2 > 0 && b.get(s2 + d2) == Some(&b')') {
                return Some(line[start..start + d1].parse().ok());
            }
        }
        from = start;
    }
    None
}

fn digits_len(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_digit()).count()
}

/// The text captured by `<open>(.+)<close>` (greedy, leftmost `open`), where
/// `close` is matched by `is_close` at the last possible place.
fn greedy_between<'a>(line: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = line.find(open)? + open.len();
    let rest = &line[start..];
    let end = rest.rfind(close)?;
    (end > 0).then(|| &rest[..end])
}

/// procfs' evalRecoveryLine: the synced blocks, after checking that the
/// percentage, finish time and speed parse too (a failure fails the file).
fn eval_recovery_line(line: &str) -> Result<i64, String> {
    let bad = |what: &str| format!("unexpected recoveryLine {what}: {line}");
    let synced = synced_blocks(line)
        .ok_or_else(|| bad("blocks"))?
        .ok_or_else(|| bad("blocks value"))?;
    let pct = greedy_between(line, "= ", "%").ok_or_else(|| bad("matching percentage"))?;
    parse_float(pct.trim()).ok_or_else(|| bad("percentage value"))?;
    let finish = greedy_between(line, "finish=", "min").ok_or_else(|| bad("finish time"))?;
    parse_float(finish).ok_or_else(|| bad("finish time value"))?;
    // `speed=(.+)[A-Z]`: greedy up to the last capital letter.
    let speed_start = line.find("speed=").ok_or_else(|| bad("speed"))? + "speed=".len();
    let rest = &line[speed_start..];
    let cap = rest
        .bytes()
        .rposition(|c| c.is_ascii_uppercase())
        .filter(|&i| i > 0)
        .ok_or_else(|| bad("speed"))?;
    parse_float(&rest[..cap]).ok_or_else(|| bad("speed value"))?;
    Ok(synced)
}

/// `(\d+) blocks .*\[(\d+)/(\d+)\] \[([U_]+)\]`: (total, active, down) from
/// the last `[n/m] [UU_]` after the first `<digits> blocks `.
fn eval_status_regex(status: &str) -> Option<(Option<i64>, Option<i64>, i64)> {
    let b = status.as_bytes();
    let mut blocks_end = None;
    let mut from = 0;
    while let Some(off) = status[from..].find(" blocks ") {
        let at = from + off;
        if at > 0 && b[at - 1].is_ascii_digit() {
            blocks_end = Some(at + " blocks ".len());
            break;
        }
        from = at + 1;
    }
    let mut i = blocks_end?;
    let mut found = None;
    while let Some(off) = status[i..].find('[') {
        let s = i + off + 1;
        if let Some(m) = counts_at(b, s) {
            found = Some(m);
        }
        i = s;
    }
    let (t, a, down) = found?;
    Some((status[t].parse().ok(), status[a].parse().ok(), down))
}

/// Parses `n/m] [U_...]` starting at `s` (just past a `[`).
fn counts_at(b: &[u8], s: usize) -> Option<(Range<usize>, Range<usize>, i64)> {
    let d1 = digits_len(&b[s..]);
    if d1 == 0 || b.get(s + d1) != Some(&b'/') {
        return None;
    }
    let s2 = s + d1 + 1;
    let d2 = digits_len(&b[s2..]);
    if d2 == 0 || b.get(s2 + d2..s2 + d2 + 3) != Some(b"] [") {
        return None;
    }
    let s3 = s2 + d2 + 3;
    let n = b[s3..]
        .iter()
        .take_while(|&&c| c == b'U' || c == b'_')
        .count();
    if n == 0 || b.get(s3 + n) != Some(&b']') {
        return None;
    }
    let down = b[s3..s3 + n].iter().filter(|&&c| c == b'_').count() as i64;
    Some((s..s + d1, s2..s2 + d2, down))
}

/// procfs' parseMDStat over `text`; names are ranges into `text`.
fn parse_mdstat(
    text: &str,
    lines: &mut Vec<Range<usize>>,
    out: &mut Vec<Md>,
) -> Result<(), String> {
    out.clear();
    lines.clear();
    // Go's strings.Split: a trailing newline gives a last empty line, which
    // counts in the "enough lines follow" check below.
    let mut off = 0;
    for l in text.split('\n') {
        lines.push(off..off + l.len());
        off += l.len() + 1;
    }
    let line_at = |i: usize| &text[lines[i].clone()];
    for i in 0..lines.len() {
        let start = lines[i].start;
        let line = line_at(i);
        if line.trim().is_empty()
            || line.starts_with(' ')
            || line.starts_with("Personalities")
            || line.starts_with("unused")
        {
            continue;
        }
        let mut fields = line.split_ascii_whitespace();
        let (Some(name), Some(_), Some(state)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(format!(
                "not enough fields in mdline (expected at least 3): {line}"
            ));
        };
        if lines.len() <= i + 3 {
            return Err(format!(
                "error parsing {name:?}: too few lines for md device"
            ));
        }
        let name_at = start + (name.as_ptr() as usize - line.as_ptr() as usize);
        let failed = line.matches("(F)").count() as i64;
        let spare = line.matches("(S)").count() as i64;

        let status = line_at(i + 1);
        let size_str = status
            .split_ascii_whitespace()
            .next()
            .ok_or_else(|| format!("unexpected statusLine {status:?}"))?;
        let blocks: i64 = size_str
            .parse()
            .map_err(|e| format!("unexpected statusLine {status:?}: {e}"))?;
        let (active, total) = if line.contains("raid0") || line.contains("linear") {
            // Only member disks carry a `[n]` on the device line.
            let n = line.matches('[').count() as i64;
            (n, n)
        } else if line.contains("inactive") {
            (0, 0)
        } else {
            let (t, a, _down) = eval_status_regex(status)
                .ok_or_else(|| format!("couldn't find all the substring matches: {status}"))?;
            let t = t.ok_or_else(|| format!("unexpected statusLine {status:?}"))?;
            let a = a.ok_or_else(|| format!("unexpected statusLine {status:?}"))?;
            (a, t)
        };

        let mut sync_idx = i + 2;
        if line_at(i + 2).contains("bitmap") {
            sync_idx += 1;
        }
        let sync = line_at(sync_idx);
        let recovering = sync.contains("recovery");
        let resyncing = sync.contains("resync");
        let checking = sync.contains("check");
        let mut synced = blocks;
        let state = if recovering || resyncing || checking {
            if sync.contains("PENDING") || sync.contains("DELAYED") {
                synced = 0;
            } else {
                synced = eval_recovery_line(sync)
                    .map_err(|e| format!("error parsing sync line in md device {name:?}: {e}"))?;
            }
            if recovering {
                State::Recovering
            } else if checking {
                State::Checking
            } else {
                State::Resyncing
            }
        } else {
            match state {
                "active" => State::Active,
                "inactive" => State::Inactive,
                // procfs would only ever put these there from a sync line,
                // but the column is copied as is.
                "recovering" => State::Recovering,
                "resyncing" => State::Resyncing,
                "checking" => State::Checking,
                _ => State::Other,
            }
        };
        out.push(Md {
            name: name_at..name_at + name.len(),
            state,
            active,
            total,
            failed,
            spare,
            blocks,
            synced,
        });
    }
    Ok(())
}

impl Collector for Mdadm {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        let path = ctx.proc_path("mdstat");
        // A missing file is node_exporter's ErrNoData: success 0, no series.
        read_into(&path, &mut self.buf)?;
        parse_mdstat(&self.buf, &mut self.lines, &mut self.mds)
            .map_err(|e| CollectError::parse(Path::new(&path), e))?;
        let buf = &self.buf;
        let mds = &self.mds;

        let mut f = out.family(
            "node_md_disks_required",
            "Total number of disks of device.",
            MetricType::Gauge,
        );
        for md in mds {
            f.sample(&[("device", &buf[md.name.clone()])], md.total as f64);
        }
        let mut f = out.family(
            "node_md_disks",
            "Number of active/failed/spare disks of device.",
            MetricType::Gauge,
        );
        for md in mds {
            let dev = &buf[md.name.clone()];
            f.sample(&[("device", dev), ("state", "active")], md.active as f64);
            f.sample(&[("device", dev), ("state", "failed")], md.failed as f64);
            f.sample(&[("device", dev), ("state", "spare")], md.spare as f64);
        }
        let mut f = out.family(
            "node_md_state",
            "Indicates the state of md-device.",
            MetricType::Gauge,
        );
        for md in mds {
            let dev = &buf[md.name.clone()];
            for (label, st) in [
                ("active", State::Active),
                ("inactive", State::Inactive),
                ("recovering", State::Recovering),
                ("resync", State::Resyncing),
                ("check", State::Checking),
            ] {
                let v = if md.state == st { 1.0 } else { 0.0 };
                f.sample(&[("device", dev), ("state", label)], v);
            }
        }
        let mut f = out.family(
            "node_md_blocks",
            "Total number of blocks on device.",
            MetricType::Gauge,
        );
        for md in mds {
            f.sample(&[("device", &buf[md.name.clone()])], md.blocks as f64);
        }
        let mut f = out.family(
            "node_md_blocks_synced",
            "Number of blocks synced on device.",
            MetricType::Gauge,
        );
        for md in mds {
            f.sample(&[("device", &buf[md.name.clone()])], md.synced as f64);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn mdadm() -> Mdadm {
        Mdadm::new(&Settings::default())
    }

    /// node_exporter 1.5.0's output for tests/fixtures/mdadm/normal
    /// (`--path.procfs` pointed at it), values reformatted as cairn writes
    /// integers.
    const NORMAL: &str = include_str!("../../tests/fixtures/mdadm/normal/expected.prom");

    #[test]
    fn degraded_resyncing_inactive_and_friends_as_node_exporter() {
        let text = render(&mut mdadm(), &fixture_ctx("mdadm/normal")).unwrap();
        assert_eq!(text, NORMAL);
    }

    #[test]
    fn degraded_raid1_is_visible_to_the_mixin_alerts() {
        let text = render(&mut mdadm(), &fixture_ctx("mdadm/normal")).unwrap();
        // NodeRAIDDegraded: disks_required - disks{state="active"} > 0.
        assert!(text.contains("node_md_disks_required{device=\"md127\"} 2\n"));
        assert!(text.contains("node_md_disks{device=\"md127\",state=\"active\"} 1\n"));
        assert!(text.contains("node_md_disks{device=\"md127\",state=\"failed\"} 1\n"));
    }

    #[test]
    fn missing_mdstat_is_no_data_which_is_a_failure() {
        let err = render(&mut mdadm(), &fixture_ctx("mdadm/missing")).unwrap_err();
        assert!(err.to_string().contains("mdstat"), "{err}");
    }

    #[test]
    fn empty_mdstat_has_no_arrays() {
        let text = render(&mut mdadm(), &fixture_ctx("mdadm/empty")).unwrap();
        assert_eq!(text, "");
    }

    #[test]
    fn malformed_files_fail_the_collector() {
        for case in [
            "mdadm/bad_status",
            "mdadm/truncated",
            "mdadm/bad_sync",
            "mdadm/short_line",
        ] {
            let r = render(&mut mdadm(), &fixture_ctx(case));
            assert!(r.is_err(), "{case}: {r:?}");
        }
    }

    #[test]
    fn status_regex_takes_the_last_counts() {
        assert_eq!(
            eval_status_regex("123 blocks super 1.2 [2/1] [U_]"),
            Some((Some(2), Some(1), 1))
        );
        assert_eq!(
            eval_status_regex("1 blocks [3/3] [UUU] x [4/2] [U__U]"),
            Some((Some(4), Some(2), 2))
        );
        assert_eq!(eval_status_regex("blocks [2/2] [UU]"), None);
        assert_eq!(eval_status_regex("12 blocks [2/2] [UX]"), None);
    }

    #[test]
    fn recovery_line_needs_every_field() {
        let ok =
            "[==>....]  resync = 12.6% (246856704/1953382400) finish=140.2min speed=202756K/sec";
        assert_eq!(eval_recovery_line(ok), Ok(246856704));
        assert!(eval_recovery_line("resync = 12.6% (1/2) finish=1.0min").is_err());
        assert!(eval_recovery_line("resync = x% (1/2) finish=1min speed=1K/sec").is_err());
        assert!(eval_recovery_line("resync = 1% finish=1min speed=1K/sec").is_err());
    }
}
