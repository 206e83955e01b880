//! XEP-0082 date-times, as delay stamps, archive timestamps and entity time use them: UTC,
//! microsecond precision (the precision of archive ids), fractional seconds only when there are
//! any. Pure conversions; the caller supplies the time (this crate has no clock).

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// `YYYY-MM-DDThh:mm:ss[.ffffff]Z` for microseconds since the Unix epoch (XEP-0082 §3.2).
pub fn format(micros: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// A XEP-0082 DateTime (any offset) as microseconds since the Unix epoch; before 1970 counts as 0.
/// `None` when the text is not a DateTime.
pub fn parse(text: &str) -> Option<u64> {
    let time = OffsetDateTime::parse(text.trim(), &Rfc3339).ok()?;
    Some(u64::try_from(time.unix_timestamp_nanos().div_euclid(1000)).unwrap_or(0))
}

/// The XEP-0082 §3.2 time zone definition for an offset from UTC in seconds: `Z` for UTC, else
/// `(+|-)hh:mm` (seconds are dropped: the TZD has none). `None` beyond ±23:59:59.
pub fn format_offset(offset_seconds: i32) -> Option<String> {
    let offset = UtcOffset::from_whole_seconds(offset_seconds).ok()?;
    if offset.is_utc() {
        return Some("Z".to_owned());
    }
    let sign = if offset_seconds < 0 { '-' } else { '+' };
    Some(format!("{sign}{:02}:{:02}", offset.whole_hours().unsigned_abs(), offset.minutes_past_hour().unsigned_abs()))
}

/// Reads a XEP-0082 §3.2 time zone definition (`Z` or `(+|-)hh:mm`) as seconds east of UTC.
pub fn parse_offset(text: &str) -> Option<i32> {
    let text = text.trim();
    if text == "Z" {
        return Some(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':')?;
    let two_digits =
        |s: &str| (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<i32>().ok()).flatten();
    let (hours, minutes) = (two_digits(hours)?, two_digits(minutes)?);
    (hours < 24 && minutes < 60).then_some(sign * (hours * 3600 + minutes * 60))
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

    /// XEP-0082 §3.2's examples: the same instant in UTC and in Houston time (both before 1970,
    /// so both clamp to 0), and offsets move the instant.
    #[test]
    fn reads_the_xep_0082_datetime_examples() {
        assert_eq!(parse("1969-07-21T02:56:15Z"), Some(0));
        assert_eq!(parse("1969-07-20T21:56:15-05:00"), Some(0));
        assert_eq!(parse("2010-07-07T13:23:54.5+02:00"), Some(1_278_501_834_500_000));
        assert_eq!(parse("2010-07-07T11:23:54.5Z"), Some(1_278_501_834_500_000));
        assert_eq!(parse("yesterday"), None);
        assert_eq!(parse("2010-07-07"), None, "a Date is not a DateTime");
    }

    #[test]
    fn formats_and_parses_time_zone_definitions() {
        assert_eq!(format_offset(0).as_deref(), Some("Z"));
        assert_eq!(format_offset(-6 * 3600).as_deref(), Some("-06:00"));
        assert_eq!(format_offset(5 * 3600 + 30 * 60).as_deref(), Some("+05:30"));
        assert_eq!(format_offset(-(9 * 3600 + 30 * 60)).as_deref(), Some("-09:30"));
        assert_eq!(format_offset(100_000), None);
        assert_eq!(parse_offset("-06:00"), Some(-6 * 3600));
        assert_eq!(parse_offset("+05:30"), Some(5 * 3600 + 30 * 60));
        assert_eq!(parse_offset("Z"), Some(0));
        for bad in ["", "06:00", "+6:00", "+24:00", "+05:60", "UTC", "+05:3O"] {
            assert_eq!(parse_offset(bad), None, "{bad:?}");
        }
    }
}
