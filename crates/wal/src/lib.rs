//! cairn-wal: the write-ahead spool between cairn's collections and its
//! remote_write senders. A design document first, the API after it.
//!
//! # What it is for
//! A host collects every few seconds and a receiver may be away for hours.
//! Whatever was collected must reach the receiver once it returns, across
//! kill -9, power cuts, full disks and damaged files, on SD cards that
//! wear out with every write, in a few MiB of memory. The spool is a
//! log: the agent appends records, each remote reads from its own cursor
//! and acknowledges what the receiver accepted; what every remote is past
//! is deleted, and `max_size`/`max_age` bound the rest.
//!
//! # Parts
//! - `Wal` / `WalReader` (below): the contract every engine keeps.
//! - `segment`: the default engine, our own CRC-framed log of size-rolled
//!   segment files. Its module comment is the on-disk format, byte by byte,
//!   and what recovery does with every kind of damage.
//! - `sled_engine` (feature `sled`): the same contract over sled 0.34.
//! - `record`: the codec of what records hold (series sets, and samples
//!   as per-series deltas). Engines never look inside a record.
//! - `stage`: records held on a tmpfs for `flush_interval` before they
//!   reach the disk (its module comment gives its format).
//! - `files`: lock file, quarantine, directory fsync: what both engines need.
//!
//! # On-disk layout (segment engine, format version 1)
//! ```text
//! <wal>/LOCK                 flock: one process per WAL
//! <wal>/segments/*.seg       24-byte file header, then records
//!                            (36-byte CRC'd header + payload), then zeros
//! <wal>/cursors/<remote>.pos two 512-byte CRC'd slots, newest generation wins
//! <wal>/quarantine/          damaged bytes moved aside, never read again
//! ```
//!
//! # Invariants
//! 1. A record is handed to a reader only after `commit` made it durable.
//! 2. Records are read back in the order they were appended; a reader that
//!    starts mid-log is first handed the latest series set before it
//!    (`replayed`), so every samples record it gets can be decoded.
//! 3. A cursor moves only through `ack` (forward, never past the committed
//!    end) or `enforce_limits` (which counts what it skips).
//! 4. Data is deleted only when every registered remote is past it, or by
//!    `enforce_limits`, which counts every sample under a `DROP_REASONS`
//!    reason.
//! 5. What is on disk never stops a start: unreadable bytes are moved to
//!    `quarantine/`, counted once (`corruption`) and logged once.
//! 6. Nothing loads the whole log into memory: the index is one small entry
//!    per segment, readers stream one record at a time.
//! 7. A failed `append` or `commit` (ENOSPC, EIO) discards everything since
//!    the last good commit, so the caller appends it again with no duplicate.
//! 8. This crate knows nothing of the agent: no collectors, no senders, no
//!    configuration file. The agent converts `[wal]` into `Options`.
//! 9. Every block the segment engine's writer and cursors send to the
//!    device is counted in `WalStats::device_bytes` (what users read as
//!    SD-card wear), once per sync that writes it. Not counted: repairs at
//!    open, and the file system's journal, which is not ours to see.
//!
//! # Recovery
//! `open` takes the lock, checks every segment's record headers (the
//! newest segment's payloads too), neutralises or truncates bad regions
//! after copying them to quarantine, and puts every cursor on a record
//! start at or before where its last `ack` returned. Every committed
//! record survives kill -9 and power loss; a record appended but not
//! committed may or may not. Cursors make delivery at-least-once: a
//! duplicate is only ever the request in flight at the stop, and a
//! `WindowMark` lets a sender resume inside a window with the same
//! requests. The details, damage by damage, are in `segment`'s comment.
//!
//! # How it is tested
//! `tests.rs` runs one suite over both engines: a model-based proptest of
//! appends, reads, acks and limits against a plain `Vec`, and damage put
//! on purpose into the files (bad CRC, torn record, garbage header, a
//! cursor past the end) with exactly what must survive asserted.
//! `segment/tests.rs` adds the segment engine's own faults (a failing
//! fdatasync, a full disk, a crash while zeroing or rolling).
//!
//! Must never: load the whole WAL into memory; refuse to start because of
//! what is on disk; hand a reader a record that is not committed; move a
//! cursor except through `ack` and `enforce_limits`; depend on the agent.

pub mod stage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod files;
/// What a WAL directory holds on disk (bytes, files): `wal_bench` and
/// status pages measure with the same walk as the engines.
pub use files::dir_usage;
pub mod record;
pub mod segment;
#[cfg(feature = "sled")]
pub mod sled_engine;
#[cfg(test)]
mod tests;

/// Where a record starts or ends. Ordered: later records have larger
/// positions. `segment` is the segment file's sequence number (always 0 for
/// engines without segments); `offset` a byte offset or sequence number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// How far a remote got inside the window of records its sender was
/// sending when it recorded progress.
///
/// A sender cuts the records `[Progress::at, end)` into requests in an
/// order fixed by those records alone; `sent` counts the window's samples,
/// in that order, the receiver accepted (or refused for good). A restarted
/// sender rebuilds the same window from the same immutable records and
/// carries on at `sent`, so it re-sends nothing it recorded as delivered,
/// and the request in flight at a kill is re-sent with the same content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowMark {
    /// Where the window's last record ends (a record boundary).
    pub end: Position,
    /// Samples the window held when it was built; a rebuild that finds
    /// another count is not the same window and is sent whole.
    pub total: u64,
    /// Samples of the window done, in the sender's order.
    pub sent: u64,
    /// End of the request that follows `sent` (`sent < next <= total`):
    /// the one in flight if the process dies, so the next run sends
    /// exactly that request first, with the same content.
    pub next: u64,
    /// The newest collection timestamp the sender had passed before the
    /// window (`i64::MIN`: none), so a rebuild drops the same collections.
    pub last_ts: i64,
}

/// A remote's durable position: every record before `at` is done; with a
/// `window`, so is its first `sent` samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub at: Position,
    pub window: Option<WindowMark>,
}

impl Progress {
    /// Whole records only, no window.
    pub fn at(p: Position) -> Self {
        Progress {
            at: p,
            window: None,
        }
    }

    /// Whether a window mark is self-consistent (engines drop one that is
    /// not, and the window is sent again whole).
    pub fn valid_window(&self) -> bool {
        self.window
            .is_some_and(|w| w.end > self.at && w.sent < w.next && w.next <= w.total)
    }
}

/// What a record holds, so a reader can be given the context it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// A series-set definition: samples records refer to the latest one
    /// before them. "Sticky": a reader opened after it is handed the latest
    /// one first (flagged `replayed`), so every reader can decode.
    SeriesSet = 1,
    /// One or more collections of samples.
    Samples = 2,
}

impl RecordKind {
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(RecordKind::SeriesSet),
            2 => Some(RecordKind::Samples),
            _ => None,
        }
    }
}

/// Kept in each record's header so limits and status need no decoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordMeta {
    /// Oldest and newest sample timestamp in the record (ms since epoch);
    /// 0 for records without samples.
    pub min_ts: i64,
    pub max_ts: i64,
    /// Number of samples in the record.
    pub samples: u32,
}

/// A record read back. `data` is reused between reads.
#[derive(Debug, Default, Clone)]
pub struct Record {
    pub kind: Option<RecordKind>,
    /// True when this record comes before the reader's start position and
    /// is handed over only as context (the latest `SeriesSet`).
    pub replayed: bool,
    pub start: Position,
    /// Where the next record starts: what to `ack` once this one is sent.
    pub end: Position,
    pub meta: RecordMeta,
    pub data: Vec<u8>,
}

/// Samples dropped on purpose, by reason (one of `DROP_REASONS`), as
/// counted into `cairn_wal_dropped_samples_total{reason}`.
pub type Dropped = BTreeMap<&'static str, u64>;

/// Every `reason` of `cairn_wal_dropped_samples_total`, always exported:
/// past `wal.max_age`, pushed out by `wal.max_size`, on a damaged part of
/// the WAL, or dropped from the writer's in-memory queue while the disk
/// refused writes. README lists each (a test holds the two lists equal).
pub const DROP_REASONS: [&str; 4] = ["max_age", "max_size", "corruption", "queue_full"];

#[derive(Debug, Clone, Default)]
pub struct RemoteStatus {
    pub cursor: Position,
    /// Committed samples after the cursor, less what the remote recorded
    /// as done inside its current window.
    pub backlog_samples: u64,
    /// Oldest sample timestamp after the cursor (ms), if any.
    pub oldest_ts: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct WalStats {
    pub bytes: u64,
    pub segments: u64,
    pub records: u64,
    pub samples: u64,
    pub oldest_ts: Option<i64>,
    pub newest_ts: Option<i64>,
    pub committed: Position,
    pub remotes: BTreeMap<String, RemoteStatus>,
    /// Totals since this process opened the WAL.
    pub corruptions: u64,
    pub dropped: Dropped,
    /// Bytes moved to `quarantine/` (a corrupt region whose header is
    /// unreadable has no sample count; this says how big it was).
    pub quarantined_bytes: u64,
    /// Bytes of file-system blocks this engine's writes sent to the device
    /// since it opened: each block dirtied between two syncs of a file
    /// counts once per sync, as the device writes it (a record of 300
    /// bytes costs a whole block; the zeros written ahead count too). Not
    /// the file system's journal and metadata, which depend on the file
    /// system. `None` where the engine cannot tell (sled).
    pub device_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The disk is full: the caller keeps the data and retries later.
    #[error("WAL disk full at {path}")]
    DiskFull { path: PathBuf },
    #[error("WAL engine {0:?} is not built into this binary (cargo feature)")]
    EngineUnavailable(String),
    #[error("WAL: {0}")]
    Other(String),
}

/// The spool. One writer (the scheduler), any number of readers (one per
/// remote). Methods take `&self`: engines synchronise inside.
pub trait Wal: Send + Sync {
    /// Appends a record; it is readable only after `commit`.
    ///
    /// If `append` or `commit` returns an error, every record appended
    /// since the last successful `commit` is discarded (as if never
    /// appended): the caller keeps those collections and appends them
    /// again, SeriesSet first, once the disk accepts writes. Blocking I/O:
    /// call from a blocking thread.
    fn append(&self, kind: RecordKind, meta: RecordMeta, data: &[u8])
        -> Result<Position, WalError>;
    /// Makes every appended record durable (fdatasync) and visible to
    /// readers; returns the committed end.
    fn commit(&self) -> Result<Position, WalError>;
    /// The committed end.
    fn committed(&self) -> Position;
    /// A receiver that changes whenever the committed end moves.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<Position>;
    /// A reader from `from` (inclusive), seeing committed records only.
    /// Corrupt data met while reading is quarantined, counted and skipped:
    /// `next` never fails because of what is on disk, only on I/O errors.
    fn reader(&self, from: Position) -> Result<Box<dyn WalReader>, WalError>;
    /// Makes sure each named remote has a cursor (new ones start at the
    /// oldest record) and forgets cursors of remotes no longer configured.
    fn register_remotes(&self, names: &[String]) -> Result<(), WalError>;
    /// The remote's durable cursor: the first record it has not acked.
    fn cursor(&self, remote: &str) -> Position;
    /// The remote's durable progress: its cursor, and how far it got
    /// inside the window starting there (none after `enforce_limits` moved
    /// the cursor, or when the stored mark was inconsistent). The default
    /// is for a test double without marks; both engines keep them.
    fn progress(&self, remote: &str) -> Progress {
        Progress::at(self.cursor(remote))
    }
    /// Durably moves the remote's cursor to `upto` (atomic rename for the
    /// segment engine) and deletes whatever every remote is past. `upto` is
    /// clamped to the committed end; a cursor never moves backwards (an
    /// ack behind it, e.g. after `enforce_limits` moved it on, is a no-op).
    fn ack(&self, remote: &str, upto: Position) -> Result<(), WalError>;
    /// `ack` that can also record progress inside the window starting at
    /// `p.at`. Never backwards: behind the cursor, or at it with less of
    /// the same window done (or the very same mark), it is a no-op. An inconsistent mark (see
    /// `Progress::valid_window`) or one past the committed end is dropped
    /// (only `p.at` is recorded). Small and crash-safe like a cursor.
    /// The default (a test double without marks) records `p.at` only.
    fn ack_progress(&self, remote: &str, p: Progress) -> Result<(), WalError> {
        self.ack(remote, p.at)
    }
    /// Drops the oldest records past `max_age` (relative to `now_ms`) or
    /// `max_size`, moving cursors forward; returns what was dropped.
    fn enforce_limits(&self, now_ms: i64) -> Result<Dropped, WalError>;
    fn stats(&self) -> WalStats;
}

pub trait WalReader: Send {
    /// Reads the next committed record into `rec`; `Ok(false)` at the
    /// committed end (call again after the committed end moves).
    fn next(&mut self, rec: &mut Record) -> Result<bool, WalError>;
}

/// Which engine `open` uses (the agent's `wal.engine`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Engine {
    #[default]
    Segment,
    Sled,
}

/// What `open` needs to know: the engine and the retention limits
/// (`enforce_limits` applies them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub engine: Engine,
    /// Bytes on disk, zeroed tails included.
    pub max_size: u64,
    /// Age of the oldest sample, relative to `enforce_limits`' `now_ms`.
    pub max_age_ms: i64,
}

/// Opens (creating if needed) the WAL in `dir` with the chosen engine,
/// repairing what it must (see each engine's module comment). Fails only
/// on I/O errors it cannot work around, when another agent holds the
/// WAL's lock, or when the engine is not compiled in.
pub fn open(opts: &Options, dir: &Path) -> Result<Arc<dyn Wal>, WalError> {
    match opts.engine {
        Engine::Segment => {
            warn_other_engine(dir, "sled", "segment");
            let o = segment::SegmentOptions::new(opts.max_size, opts.max_age_ms);
            Ok(Arc::new(segment::SegmentWal::open(dir, o)?))
        }
        #[cfg(feature = "sled")]
        Engine::Sled => {
            warn_other_engine(dir, "segments", "sled");
            let o = sled_engine::SledOptions::new(opts.max_size, opts.max_age_ms);
            Ok(Arc::new(sled_engine::SledWal::open(dir, o)?))
        }
        #[cfg(not(feature = "sled"))]
        Engine::Sled => Err(WalError::EngineUnavailable("sled".into())),
    }
}

/// Data left by the other engine is not read: say so once.
fn warn_other_engine(dir: &Path, sub: &str, engine: &str) {
    let (bytes, files) = files::dir_usage(&dir.join(sub));
    if files > 0 {
        tracing::warn!(
            "WAL: {} holds {bytes} bytes of the other engine's data ({sub}/), which wal.engine = {engine:?} does not read; \
             switch the engine back to deliver it, or delete it",
            dir.display()
        );
    }
}

/// What `cairn wal status` prints: read-only (no lock taken, nothing
/// written), so it works while the agent runs. Segment engine: full
/// statistics, per-remote backlog included. sled engine: sled cannot be
/// opened read-only (opening it writes, and it is locked while the agent
/// runs), so only `bytes` and `segments` (its file count) are filled in.
pub fn status(dir: &Path) -> Result<WalStats, WalError> {
    if dir.join("segments").is_dir() {
        return segment::status(dir);
    }
    if dir.join("sled").is_dir() {
        let (bytes, files) = files::dir_usage(&dir.join("sled"));
        return Ok(WalStats {
            bytes,
            segments: files,
            ..WalStats::default()
        });
    }
    if dir.is_dir() {
        return Ok(WalStats::default());
    }
    Err(WalError::Other(format!("no WAL at {}", dir.display())))
}
