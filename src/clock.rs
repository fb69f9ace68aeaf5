//! Wall-clock time as the rest of cairn stores it: milliseconds since the
//! Unix epoch, the unit of remote_write timestamps and WAL record headers.
//! Must never panic: a clock before 1970 reads as 0.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
