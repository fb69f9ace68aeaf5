//! The engine test suite: every test here runs once per engine (the
//! `both_engines!` list at the bottom), through the `Wal` trait only.

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

use super::segment::{SegmentOptions, SegmentWal};
use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    Segment,
    #[cfg(feature = "sled")]
    Sled,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Lim {
    pub max_size: u64,
    pub max_age_ms: i64,
    /// Segment engine only.
    pub segment_bytes: u64,
}

/// Small segments, so a few records roll.
pub(crate) const SMALL: Lim = Lim {
    max_size: 0,
    max_age_ms: 0,
    segment_bytes: 4096,
};

pub(crate) fn open_wal(e: Engine, dir: &Path, l: Lim) -> Arc<dyn Wal> {
    match e {
        Engine::Segment => {
            let opts = SegmentOptions {
                max_size: l.max_size,
                max_age_ms: l.max_age_ms,
                segment_bytes: l.segment_bytes,
            };
            Arc::new(SegmentWal::open(dir, opts).expect("open segment WAL"))
        }
        #[cfg(feature = "sled")]
        Engine::Sled => {
            let mut o = super::sled_engine::SledOptions::new(l.max_size, l.max_age_ms);
            o.cache_bytes = 1 << 20;
            Arc::new(super::sled_engine::SledWal::open(dir, o).expect("open sled WAL"))
        }
    }
}

/// Deterministic, incompressible-looking bytes: record `i` of `len`.
pub(crate) fn payload(i: u64, len: usize) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub(crate) fn meta(ts: i64, samples: u32) -> RecordMeta {
    RecordMeta {
        min_ts: ts,
        max_ts: ts,
        samples,
    }
}

/// What a reader handed over, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Got {
    pub kind: RecordKind,
    pub replayed: bool,
    pub data: Vec<u8>,
    pub start: Position,
    pub end: Position,
}

pub(crate) fn read_all(w: &dyn Wal, from: Position) -> Vec<Got> {
    let mut r = w.reader(from).expect("reader");
    let mut rec = Record::default();
    let mut out = Vec::new();
    while r.next(&mut rec).expect("next") {
        out.push(Got {
            kind: rec.kind.expect("kind"),
            replayed: rec.replayed,
            data: rec.data.clone(),
            start: rec.start,
            end: rec.end,
        });
    }
    out
}

/// Only the records a reader delivered as new (not replayed context).
fn fresh(v: &[Got]) -> Vec<Vec<u8>> {
    v.iter()
        .filter(|g| !g.replayed)
        .map(|g| g.data.clone())
        .collect()
}

/// Appends set 0 and `n` Samples records (10 samples each, ts = 1000·i).
fn fill(w: &dyn Wal, n: u64, len: usize) -> Vec<Vec<u8>> {
    let mut all = vec![payload(0, 64)];
    w.append(RecordKind::SeriesSet, RecordMeta::default(), &all[0])
        .expect("append set");
    for i in 1..=n {
        let p = payload(i, len);
        w.append(RecordKind::Samples, meta(1000 * i as i64, 10), &p)
            .expect("append");
        all.push(p);
    }
    w.commit().expect("commit");
    all
}

fn append_commit_read_ack_reopen(e: Engine) {
    let d = tempfile::tempdir().unwrap();
    let all = {
        let w = open_wal(e, d.path(), SMALL);
        w.register_remotes(&["a".into()]).unwrap();
        let all = fill(&*w, 20, 300);
        let got = read_all(&*w, w.cursor("a"));
        assert_eq!(fresh(&got), all);
        // Ack the first 8 records (set + 7 samples).
        w.ack("a", got[7].end).unwrap();
        assert_eq!(w.cursor("a"), normal(&*w, got[7].end));
        all
    };
    let w = open_wal(e, d.path(), SMALL);
    let got = read_all(&*w, w.cursor("a"));
    assert_eq!(fresh(&got), all[8..].to_vec());
    assert!(
        got[0].replayed && got[0].data == all[0],
        "the set is handed over first as context"
    );
    let s = w.stats();
    assert_eq!(s.remotes["a"].backlog_samples, 13 * 10);
    assert_eq!(s.remotes["a"].oldest_ts, Some(8000));
    assert_eq!(s.corruptions, 0);
}

/// The cursor as the engine stores it (a segment's end is the next one's
/// start).
fn normal(w: &dyn Wal, p: Position) -> Position {
    let got = read_all(w, p);
    match got.iter().find(|g| !g.replayed) {
        Some(g) if g.start.segment != p.segment => g.start,
        _ => p,
    }
}

fn uncommitted_records_are_invisible(e: Engine) {
    let d = tempfile::tempdir().unwrap();
    let w = open_wal(e, d.path(), SMALL);
    let before = w.committed();
    let mut sub = w.subscribe();
    let mut r = w.reader(Position::default()).unwrap();
    let mut rec = Record::default();
    w.append(RecordKind::SeriesSet, RecordMeta::default(), b"set")
        .unwrap();
    for i in 0..30 {
        // Enough to roll segments while uncommitted.
        w.append(RecordKind::Samples, meta(i, 1), &payload(i as u64, 500))
            .unwrap();
    }
    assert!(!r.next(&mut rec).unwrap(), "nothing committed yet");
    assert!(read_all(&*w, Position::default()).is_empty());
    assert_eq!(w.committed(), before);
    assert!(!sub.has_changed().unwrap());
    let c = w.commit().unwrap();
    assert!(sub.has_changed().unwrap());
    assert_eq!(*sub.borrow_and_update(), c);
    assert_eq!(w.committed(), c);
    let mut n = 0;
    while r.next(&mut rec).unwrap() {
        n += 1;
    }
    assert_eq!(n, 31);
    // The reader follows later commits.
    w.append(RecordKind::Samples, meta(99, 1), b"late").unwrap();
    assert!(!r.next(&mut rec).unwrap());
    w.commit().unwrap();
    assert!(r.next(&mut rec).unwrap());
    assert_eq!(rec.data, b"late");
    assert!(!r.next(&mut rec).unwrap());
}

fn sticky_series_set_replayed(e: Engine) {
    let d = tempfile::tempdir().unwrap();
    let w = open_wal(e, d.path(), SMALL);
    let mut pos = Vec::new();
    w.append(RecordKind::SeriesSet, RecordMeta::default(), b"set A")
        .unwrap();
    for i in 0..40u64 {
        if i == 20 {
            w.append(RecordKind::SeriesSet, RecordMeta::default(), b"set B")
                .unwrap();
        }
        pos.push(
            w.append(RecordKind::Samples, meta(i as i64, 1), &payload(i, 400))
                .unwrap(),
        );
        if i % 3 == 0 {
            w.commit().unwrap();
        }
    }
    w.commit().unwrap();
    for (i, p) in pos.iter().enumerate() {
        let got = read_all(&*w, *p);
        assert!(got[0].replayed, "record {i}: context first");
        assert_eq!(got[0].kind, RecordKind::SeriesSet);
        let want: &[u8] = if i < 20 { b"set A" } else { b"set B" };
        assert_eq!(got[0].data, want, "record {i}");
        assert_eq!(got[1].data, payload(i as u64, 400), "record {i}");
        assert!(!got[1].replayed);
        // No other replayed record, and set B exactly once when crossing.
        assert_eq!(got.iter().filter(|g| g.replayed).count(), 1);
        let b = got
            .iter()
            .filter(|g| !g.replayed && g.data == b"set B")
            .count();
        assert_eq!(b, usize::from(i < 20), "record {i}");
        assert_eq!(fresh(&got).len(), 40 - i + usize::from(i < 20));
    }
}

fn cursors_survive_reopen(e: Engine) {
    let d = tempfile::tempdir().unwrap();
    let (ca, cb) = {
        let w = open_wal(e, d.path(), SMALL);
        w.register_remotes(&["a".into(), "b/c".into()]).unwrap();
        fill(&*w, 10, 700);
        let got = read_all(&*w, Position::default());
        w.ack("a", got[3].end).unwrap();
        w.ack("b/c", got[9].end).unwrap();
        (w.cursor("a"), w.cursor("b/c"))
    };
    let w = open_wal(e, d.path(), SMALL);
    assert_eq!(w.cursor("a"), ca);
    assert_eq!(w.cursor("b/c"), cb);
    assert_eq!(fresh(&read_all(&*w, ca)).len(), 7);
    assert_eq!(fresh(&read_all(&*w, cb)).len(), 1);
}

fn acked_data_is_deleted(e: Engine) {
    let d = tempfile::tempdir().unwrap();
    let w = open_wal(e, d.path(), SMALL);
    w.register_remotes(&["a".into(), "b".into()]).unwrap();
    fill(&*w, 30, 700);
    let full = w.stats();
    let got = read_all(&*w, Position::default());
    let end = got.last().unwrap().end;
    w.ack("a", end).unwrap();
    assert_eq!(w.stats().samples, full.samples, "b has not acked yet");
    w.ack("b", got[15].end).unwrap();
    let mid = w.stats();
    assert!(
        mid.samples < full.samples && mid.samples >= 15 * 10,
        "{} of {}",
        mid.samples,
        full.samples
    );
    assert_eq!(fresh(&read_all(&*w, w.cursor("b"))).len(), 15);
    w.ack("b", end).unwrap();
    let s = w.stats();
    assert!(
        s.samples <= 10 * 5,
        "all acked: at most the open segment left, {}",
        s.samples
    );
    if e == Engine::Segment {
        assert_eq!(s.segments, 1);
        assert_eq!(
            std::fs::read_dir(d.path().join("segments"))
                .unwrap()
                .count(),
            1
        );
    }
    assert_eq!(s.remotes["a"].backlog_samples, 0);
    assert_eq!(s.remotes["b"].backlog_samples, 0);
    // Appending goes on, and readers see only the new data.
    w.append(RecordKind::Samples, meta(1, 1), b"new").unwrap();
    w.commit().unwrap();
    let got = read_all(&*w, w.cursor("a"));
    assert_eq!(fresh(&got).last().unwrap(), b"new");
    assert_eq!(got.iter().filter(|g| !g.replayed).count(), 1);
}

fn new_remote_starts_at_oldest(e: Engine) {
    let d = tempfile::tempdir().unwrap();
    let w = open_wal(e, d.path(), SMALL);
    let all = fill(&*w, 12, 900);
    assert_eq!(w.stats().samples, 120, "no remote: everything is kept");
    w.register_remotes(&["late".into()]).unwrap();
    assert_eq!(fresh(&read_all(&*w, w.cursor("late"))), all);
    assert_eq!(w.stats().remotes["late"].backlog_samples, 120);
    assert_eq!(w.stats().remotes["late"].oldest_ts, Some(1000));
}

fn forgotten_remote_releases_data(e: Engine) {
    let d = tempfile::tempdir().unwrap();
    let w = open_wal(e, d.path(), SMALL);
    w.register_remotes(&["a".into(), "b".into()]).unwrap();
    fill(&*w, 30, 700);
    let end = w.committed();
    w.ack("a", end).unwrap();
    assert_eq!(w.stats().samples, 300);
    w.register_remotes(&["a".into()]).unwrap();
    assert!(w.stats().samples <= 50);
    assert!(!w.stats().remotes.contains_key("b"));
    drop(w);
    let w = open_wal(e, d.path(), SMALL);
    assert!(!w.stats().remotes.contains_key("b"), "forgotten durably");
    assert!(w.ack("b", end).is_err(), "unknown remote");
}

fn ack_is_clamped_and_never_backwards(e: Engine) {
    let d = tempfile::tempdir().unwrap();
    let w = open_wal(e, d.path(), SMALL);
    w.register_remotes(&["a".into()]).unwrap();
    fill(&*w, 5, 100);
    let got = read_all(&*w, Position::default());
    w.ack("a", got[3].end).unwrap();
    let c = w.cursor("a");
    w.ack("a", got[1].end).unwrap();
    assert_eq!(w.cursor("a"), c, "never backwards");
    w.append(RecordKind::Samples, meta(9, 1), b"uncommitted")
        .unwrap();
    w.ack(
        "a",
        Position {
            segment: u64::MAX,
            offset: u64::MAX,
        },
    )
    .unwrap();
    assert!(
        w.cursor("a") <= w.committed(),
        "never past the committed end"
    );
    w.commit().unwrap();
    assert_eq!(
        fresh(&read_all(&*w, w.cursor("a"))),
        vec![b"uncommitted".to_vec()]
    );
}

fn max_size_drops_oldest_counted(e: Engine) {
    let d = tempfile::tempdir().unwrap();
    let lim = Lim {
        max_size: 40_000,
        max_age_ms: 0,
        segment_bytes: 8192,
    };
    let w = open_wal(e, d.path(), lim);
    w.register_remotes(&["a".into()]).unwrap();
    let all = fill(&*w, 100, 1000);
    let got0 = read_all(&*w, Position::default());
    w.ack("a", got0[5].end).unwrap(); // 5 samples records sent
    let dropped = w.enforce_limits(0).unwrap();
    let s = w.stats();
    let kept = fresh(&read_all(&*w, w.cursor("a")));
    // What is left is a suffix of what was written, and the drop count is
    // exactly the unsent samples that are gone.
    let k = kept.len();
    assert!(k > 0 && k < 95);
    assert_eq!(kept[..], all[all.len() - k..]);
    let gone_unsent = (95 - kept.iter().filter(|p| p.len() == 1000).count()) as u64 * 10;
    assert_eq!(dropped.get("max_size").copied(), Some(gone_unsent));
    assert_eq!(s.dropped.get("max_size").copied(), Some(gone_unsent));
    if e == Engine::Segment {
        assert!(s.bytes <= 40_000, "{}", s.bytes);
    }
    let got = read_all(&*w, w.cursor("a"));
    assert!(
        got[0].replayed && got[0].data == all[0],
        "context survives the drop"
    );
    // Idempotent.
    assert!(w.enforce_limits(0).unwrap().values().all(|v| *v == 0));
}

fn max_age_drops_oldest_counted(e: Engine) {
    let d = tempfile::tempdir().unwrap();
    let lim = Lim {
        max_size: 0,
        max_age_ms: 50_000,
        segment_bytes: 4096,
    };
    let w = open_wal(e, d.path(), lim);
    let all = fill(&*w, 100, 500); // ts 1000..=100_000
    let now = 120_000; // cutoff 70_000: records 1..=69 are too old
    let dropped = w.enforce_limits(now).unwrap();
    w.register_remotes(&["a".into()]).unwrap();
    let got = read_all(&*w, w.cursor("a"));
    let kept = fresh(&got);
    let k = kept.len();
    assert_eq!(kept[..], all[all.len() - k..]);
    // Every record young enough is kept; whole segments may keep a few
    // older ones (segment engine: up to one segment's worth).
    assert!(k >= 31, "{k}");
    if e == Engine::Segment {
        assert!(k <= 31 + 8, "{k}");
    } else {
        assert_eq!(k, 31);
    }
    assert_eq!(dropped.get("max_age").copied(), Some((100 - k as u64) * 10));
    assert_eq!(w.stats().samples, k as u64 * 10);
    assert!(got[0].replayed && got[0].data == all[0]);
}

fn limits_move_cursors_forward(e: Engine) {
    let d = tempfile::tempdir().unwrap();
    let lim = Lim {
        max_size: 0,
        max_age_ms: 10_000,
        segment_bytes: 4096,
    };
    let w = open_wal(e, d.path(), lim);
    w.register_remotes(&["slow".into()]).unwrap();
    fill(&*w, 50, 500); // ts 1000..=50_000
    let mut r = w.reader(w.cursor("slow")).unwrap();
    let mut rec = Record::default();
    assert!(r.next(&mut rec).unwrap());
    assert!(r.next(&mut rec).unwrap());
    let stale = rec.end;
    w.enforce_limits(55_000).unwrap(); // cutoff 45_000
    let c = w.cursor("slow");
    assert!(c > stale);
    // An ack from before the drop does not move the cursor back.
    w.ack("slow", stale).unwrap();
    assert_eq!(w.cursor("slow"), c);
    // A reader that was inside the dropped data carries on with what is
    // left, given the SeriesSet again as context.
    assert!(r.next(&mut rec).unwrap());
    assert!(rec.replayed && rec.kind == Some(RecordKind::SeriesSet));
    let mut rest = Vec::new();
    while r.next(&mut rec).unwrap() {
        assert!(!rec.replayed);
        rest.push(rec.meta.max_ts);
    }
    assert!(rest.len() >= 6 && rest[0] >= 45_000 - 8_000, "{rest:?}");
    assert_eq!(rest.last(), Some(&50_000));
    assert!(rest.windows(2).all(|p| p[1] == p[0] + 1000), "{rest:?}");
}

both_engines!(
    append_commit_read_ack_reopen,
    uncommitted_records_are_invisible,
    sticky_series_set_replayed,
    cursors_survive_reopen,
    acked_data_is_deleted,
    new_remote_starts_at_oldest,
    forgotten_remote_releases_data,
    ack_is_clamped_and_never_backwards,
    max_size_drops_oldest_counted,
    max_age_drops_oldest_counted,
    limits_move_cursors_forward,
    model_matches_after_random_ops,
    window_mark_survives_reopen,
    boundary_after_window_mark_reads_back_plain,
);

fn window_mark_survives_reopen(e: Engine) {
    let d = tempfile::tempdir().unwrap();
    let saved = {
        let w = open_wal(e, d.path(), SMALL);
        w.register_remotes(&["a".into()]).unwrap();
        fill(&*w, 10, 700);
        let got = read_all(&*w, Position::default());
        let p = Progress {
            at: got[2].end,
            window: Some(WindowMark {
                end: got[6].end,
                total: 40,
                sent: 12,
                next: 20,
                last_ts: 1_700_000_000_000,
            }),
        };
        assert!(p.valid_window());
        w.ack_progress("a", p).unwrap();
        assert_eq!(w.progress("a"), p);
        p
    };
    let w = open_wal(e, d.path(), SMALL);
    assert_eq!(w.progress("a"), saved);
    assert_eq!(w.cursor("a"), saved.at);
}

fn boundary_after_window_mark_reads_back_plain(e: Engine) {
    let d = tempfile::tempdir().unwrap();
    let at = {
        let w = open_wal(e, d.path(), SMALL);
        w.register_remotes(&["a".into()]).unwrap();
        fill(&*w, 10, 700);
        let got = read_all(&*w, Position::default());
        w.ack_progress(
            "a",
            Progress {
                at: got[1].end,
                window: Some(WindowMark {
                    end: got[5].end,
                    total: 30,
                    sent: 5,
                    next: 9,
                    last_ts: i64::MIN,
                }),
            },
        )
        .unwrap();
        w.ack_progress("a", Progress::at(got[5].end)).unwrap();
        // A boundary at a segment's end may read back as the next
        // segment's start: the same place, so compare what it reads.
        assert_eq!(w.progress("a").window, None);
        assert_eq!(fresh(&read_all(&*w, w.cursor("a"))).len(), 5);
        w.progress("a")
    };
    let w = open_wal(e, d.path(), SMALL);
    assert_eq!(w.progress("a"), at);
    assert_eq!(fresh(&read_all(&*w, w.cursor("a"))).len(), 5);
}

macro_rules! both_engines {
    ($($t:ident),* $(,)?) => {
        mod on_segment {
            $( #[test] fn $t() { super::$t(super::Engine::Segment) } )*
        }
        #[cfg(feature = "sled")]
        mod on_sled {
            $( #[test] fn $t() { super::$t(super::Engine::Sled) } )*
        }
    };
}
use both_engines;

// ---------------------------------------------------------------------------
// Model-based: random operations against a simple in-memory queue.

#[derive(Debug, Clone)]
enum Op {
    Append {
        set: bool,
        len: usize,
    },
    Commit,
    /// Ack remote `r` after the `k`-th unacked committed record.
    Ack {
        r: usize,
        k: usize,
    },
    /// Read from remote `r`'s cursor and compare with the model.
    Read {
        r: usize,
    },
    Reopen,
    /// Segment engine only: the power fails. The newest segment loses what
    /// was not committed and gets `garbage` bytes of junk instead.
    PowerCut {
        garbage: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<bool>(), 1usize..1500).prop_map(|(s, len)| Op::Append { set: s && len % 5 == 0, len }),
        3 => Just(Op::Commit),
        3 => (0usize..2, 0usize..8).prop_map(|(r, k)| Op::Ack { r, k }),
        2 => (0usize..2).prop_map(|r| Op::Read { r }),
        1 => Just(Op::Reopen),
        1 => (0usize..200).prop_map(|garbage| Op::PowerCut { garbage }),
    ]
}

#[derive(Default)]
struct Model {
    /// Every committed record ever, with its kind (true = set).
    committed: Vec<(bool, Vec<u8>)>,
    pending: Vec<(bool, Vec<u8>)>,
    /// Per remote: index into `committed` of its first unacked record.
    cursor: [usize; 2],
}

impl Model {
    fn latest_set_before(&self, i: usize) -> Option<&Vec<u8>> {
        self.committed[..i]
            .iter()
            .rev()
            .find(|(s, _)| *s)
            .map(|(_, d)| d)
    }
}

const REMOTES: [&str; 2] = ["r0", "r1"];

fn run_model(e: Engine, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let d = tempfile::tempdir().unwrap();
    let lim = Lim {
        max_size: 0,
        max_age_ms: 0,
        segment_bytes: 6000,
    };
    let names: Vec<String> = REMOTES.iter().map(|s| s.to_string()).collect();
    let mut w = Some(open_wal(e, d.path(), lim));
    w.as_ref().unwrap().register_remotes(&names).unwrap();
    let mut m = Model::default();
    let mut n = 0u64;
    for op in ops {
        let wal = w.as_ref().unwrap().clone();
        match op {
            Op::Append { set, len } => {
                n += 1;
                let p = payload(n, len);
                let kind = if set {
                    RecordKind::SeriesSet
                } else {
                    RecordKind::Samples
                };
                wal.append(kind, meta(n as i64, u32::from(!set)), &p)
                    .unwrap();
                m.pending.push((set, p));
            }
            Op::Commit => {
                wal.commit().unwrap();
                m.committed.append(&mut m.pending);
            }
            Op::Ack { r, k } => {
                let got = read_all(&*wal, wal.cursor(REMOTES[r]));
                let fresh: Vec<&Got> = got.iter().filter(|g| !g.replayed).collect();
                if let Some(g) = fresh.get(k) {
                    wal.ack(REMOTES[r], g.end).unwrap();
                    m.cursor[r] += k + 1;
                }
            }
            Op::Read { r } => {
                let got = read_all(&*wal, wal.cursor(REMOTES[r]));
                let want: Vec<Vec<u8>> = m.committed[m.cursor[r]..]
                    .iter()
                    .map(|(_, d)| d.clone())
                    .collect();
                prop_assert_eq!(fresh(&got), want);
                let replayed: Vec<&Got> = got.iter().filter(|g| g.replayed).collect();
                prop_assert!(replayed.len() <= 1);
                if let Some(g) = replayed.first() {
                    prop_assert_eq!(Some(&g.data), m.latest_set_before(m.cursor[r]));
                } else if m.cursor[r] < m.committed.len() && !m.committed[m.cursor[r]].0 {
                    prop_assert_eq!(m.latest_set_before(m.cursor[r]), None);
                }
            }
            Op::Reopen => {
                // A clean stop (or kill -9): appended records are on disk.
                drop(wal);
                w.take();
                w = Some(open_wal(e, d.path(), lim));
                m.committed.append(&mut m.pending);
            }
            Op::PowerCut { garbage } => {
                if e != Engine::Segment {
                    continue;
                }
                let committed = wal.committed();
                drop(wal);
                w.take();
                let p = d
                    .path()
                    .join("segments")
                    .join(format!("{:020}.seg", committed.segment));
                // Segments created after the commit never reached the disk.
                for ent in std::fs::read_dir(d.path().join("segments"))
                    .unwrap()
                    .flatten()
                {
                    let name = ent.file_name().into_string().unwrap();
                    if name > format!("{:020}.seg", committed.segment) {
                        std::fs::remove_file(ent.path()).unwrap();
                    }
                }
                // Limits may have deleted the segment of the last commit
                // (a newer one was open, uncommitted): nothing to tear.
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&p) {
                    f.set_len(committed.offset).unwrap();
                    use std::os::unix::fs::FileExt;
                    f.write_all_at(&payload(9999, garbage), committed.offset)
                        .unwrap();
                }
                w = Some(open_wal(e, d.path(), lim));
                m.pending.clear();
            }
        }
    }
    Ok(())
}

fn model_matches_after_random_ops(e: Engine) {
    let cases = if e == Engine::Segment { 48 } else { 16 };
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        ..ProptestConfig::default()
    });
    runner
        .run(&proptest::collection::vec(op(), 1..40), |ops| {
            run_model(e, ops)
        })
        .unwrap();
}

#[test]
fn open_uses_the_configured_engine() {
    let d = tempfile::tempdir().unwrap();
    let cfg = Options {
        engine: crate::Engine::Segment,
        max_size: 512 << 20,
        max_age_ms: 72 * 3600 * 1000,
    };
    let w = open(&cfg, d.path()).unwrap();
    w.append(RecordKind::Samples, meta(1, 3), b"x").unwrap();
    w.commit().unwrap();
    assert!(d.path().join("segments").is_dir());
    let s = status(d.path()).unwrap();
    assert_eq!((s.records, s.samples), (1, 3));
    drop(w);
    let d2 = tempfile::tempdir().unwrap();
    let sled_cfg = Options {
        engine: crate::Engine::Sled,
        ..cfg
    };
    #[cfg(feature = "sled")]
    {
        let w = open(&sled_cfg, d2.path()).unwrap();
        w.append(RecordKind::Samples, meta(1, 3), b"x").unwrap();
        w.commit().unwrap();
        assert!(d2.path().join("sled").is_dir());
        // Read-only status of sled: sizes only.
        assert!(status(d2.path()).unwrap().bytes > 0);
    }
    #[cfg(not(feature = "sled"))]
    assert!(matches!(
        open(&sled_cfg, d2.path()),
        Err(WalError::EngineUnavailable(_))
    ));
    assert!(status(&d2.path().join("nothing here")).is_err());
}
