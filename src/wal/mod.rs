//! The agent's side of the spool: the writer task between the scheduler
//! and the WAL, and the glue from `[wal]` in cairn.toml to the engine.
//!
//! The spool itself (both engines, the record codec, the stage, their
//! on-disk formats and recovery) is the `cairn-wal` crate in `crates/wal`,
//! re-exported here whole, so `crate::wal::…` names the same items as
//! before the split. That crate depends on nothing of the agent: the
//! compiler keeps the engines from reaching into collectors, senders or
//! the configuration.
//!
//! Must never: write to disk other than through `cairn-wal`, or make a
//! caller of `writer` wait on the disk.
//!
//! Architecture Invariant: only `cairn-wal` writes samples to disk (the
//! writer here is its one caller that appends), and a sample reaches a
//! sender only through it.

pub use cairn_wal::*;

pub mod writer;

use std::path::Path;
use std::sync::Arc;

use crate::config::{Wal as WalConfig, WalEngine};

/// Opens (creating if needed) the WAL in `dir` with the configured engine
/// and limits (see `cairn_wal::open`).
pub fn open(cfg: &WalConfig, dir: &Path) -> Result<Arc<dyn Wal>, WalError> {
    cairn_wal::open(&options(cfg), dir)
}

/// `[wal]` as the engine sees it.
pub fn options(cfg: &WalConfig) -> Options {
    Options {
        engine: match cfg.engine {
            WalEngine::Segment => Engine::Segment,
            WalEngine::Sled => Engine::Sled,
        },
        max_size: cfg.max_size.0,
        max_age_ms: i64::try_from(cfg.max_age.0.as_millis()).unwrap_or(i64::MAX),
    }
}
