//! The write-ahead spool between collections and remote_write senders.
//!
//! Owns: every byte cairn writes to disk for samples, and the record
//! codec (`record`) that turns a collection into those bytes and back.
//! The engines treat records as opaque: they only frame, order, commit,
//! read back, acknowledge and drop them. Two engines implement the `Wal`
//! trait: `segment` (the default, our own CRC-framed segment log) and
//! `sled_engine` (cargo feature `sled`).
//!
//! Must never: load the whole WAL into memory; refuse to start because of
//! what is on disk (unreadable data is moved to `quarantine/`, counted and
//! logged once); hand a reader a record that is not committed; move a
//! cursor except through `ack`.
//!
//! Architecture Invariant: only this module writes samples to disk, and a
//! sample reaches a sender only through it.

pub mod stage;
pub mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod files;
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

/// Opens (creating if needed) the WAL in `dir` with the configured engine,
/// repairing what it must (see each engine's module comment). Fails only
/// on I/O errors it cannot work around, when another agent holds the
/// WAL's lock, or when the engine is not compiled in.
pub fn open(cfg: &crate::config::Wal, dir: &Path) -> Result<Arc<dyn Wal>, WalError> {
    let max_size = cfg.max_size.0;
    let max_age_ms = i64::try_from(cfg.max_age.0.as_millis()).unwrap_or(i64::MAX);
    match cfg.engine {
        crate::config::WalEngine::Segment => {
            warn_other_engine(dir, "sled", "segment");
            let opts = segment::SegmentOptions::new(max_size, max_age_ms);
            Ok(Arc::new(segment::SegmentWal::open(dir, opts)?))
        }
        #[cfg(feature = "sled")]
        crate::config::WalEngine::Sled => {
            warn_other_engine(dir, "segments", "sled");
            let opts = sled_engine::SledOptions::new(max_size, max_age_ms);
            Ok(Arc::new(sled_engine::SledWal::open(dir, opts)?))
        }
        #[cfg(not(feature = "sled"))]
        crate::config::WalEngine::Sled => Err(WalError::EngineUnavailable("sled".into())),
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
