//! XEP-0082 DateTime, as offline delay stamps and the message archive use it: UTC, microsecond
//! precision (the precision of archive ids), fractional seconds only when there are any.

use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// `YYYY-MM-DDThh:mm:ss[.ffffff]Z` for microseconds since the epoch.
pub fn format(micros: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// A DateTime as microseconds since the epoch (before 1970 counts as 0).
pub fn parse(text: &str) -> Option<u64> {
    let time = OffsetDateTime::parse(text.trim(), &Rfc3339).ok()?;
    Some(u64::try_from(time.unix_timestamp_nanos().div_euclid(1000)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_to_the_microsecond() {
        assert_eq!(format(0), "1970-01-01T00:00:00Z");
        assert_eq!(format(1_795_000_000_000_000), "2026-11-18T11:06:40Z", "whole seconds have no fraction");
        let id = 1_795_000_000_123_456;
        assert_eq!(format(id), "2026-11-18T11:06:40.123456Z");
        assert_eq!(parse(&format(id)), Some(id));
        assert_eq!(parse("1969-12-31T23:59:59Z"), Some(0));
    }
}
