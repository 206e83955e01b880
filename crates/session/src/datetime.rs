//! The clock, in the unit of archive ids and XEP-0082 dates: microseconds since the Unix epoch.
//! Formatting and parsing dates are pure and live in `starling_protocol::datetime`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> u64 {
    micros_of(SystemTime::now())
}

/// Microseconds since the Unix epoch at `time`.
pub fn micros_of(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
