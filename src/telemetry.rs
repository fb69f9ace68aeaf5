//! The one seam through which the agent's own stages report about themselves.
//!
//! Owns: the `Telemetry` trait, implemented by the WAL writer, the
//! remote_write senders, the scheduler and the supervisor, and read by the
//! collection (`collect.rs`) which renders every registered source into each
//! collection's `cairn_*` families. `wal/`, `remote_write/` and `collector/`
//! all depend on this module, so the spool and the sender never import
//! collector code; it depends on none of them, only on the exposition
//! format's `Emitter`. Must never: grow beyond the trait (no registry, no
//! state), or pull in any stage of the data path.

use crate::metrics::Emitter;

/// Something that adds its own `cairn_*` families to every collection
/// (the WAL, the senders, the scheduler). Must be cheap and never block:
/// it reads counters, it does not do I/O.
pub trait Telemetry: Send + Sync {
    fn render(&self, out: &mut Emitter);
}
