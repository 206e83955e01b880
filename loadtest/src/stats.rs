//! Latency histograms and their summaries, error tallies. Histograms hold microseconds with three
//! significant digits: a 0.1 % error is far below run-to-run noise, and the table stays small
//! (tens of KiB) however many samples go in.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency recorded without clamping: one hour, in microseconds.
const MAX_MICROS: u64 = 3_600_000_000;

/// A histogram of durations in microseconds.
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    pub fn new() -> Latency {
        // Constant, valid bounds: this can only fail if hdrhistogram changed its rules.
        Latency(Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("1 µs .. 1 h at 3 significant digits is a valid histogram"))
    }

    pub fn record(&mut self, duration: Duration) {
        self.record_micros(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records, clamping into the histogram's range (0 → 1 µs, beyond an hour → an hour).
    pub fn record_micros(&mut self, micros: u64) {
        self.0.saturating_record(micros.clamp(1, MAX_MICROS));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so `add` cannot fail; values out of range would be dropped.
        let _ = self.0.add(&other.0);
    }

    pub fn summary(&self) -> LatencySummary {
        LatencySummary::from_histogram(&self.0)
    }
}

/// Percentiles of a latency histogram, in microseconds. All zero when empty. `hdr` carries the
/// histogram itself ([`encode`]) so that reports of several processes merge exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// The histogram, base64 of (value, count) varint pairs; empty when there are no samples.
    pub hdr: String,
}

impl LatencySummary {
    pub fn from_histogram(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            min_us: h.min(),
            mean_us: (h.mean() * 10.0).round() / 10.0,
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            hdr: encode(h),
        }
    }
}

impl fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return f.write_str("no samples");
        }
        write!(
            f,
            "p50 {} p90 {} p99 {} p99.9 {} max {} (mean {}, n={})",
            ms(self.p50_us),
            ms(self.p90_us),
            ms(self.p99_us),
            ms(self.p999_us),
            ms(self.max_us),
            ms(self.mean_us as u64),
            self.count
        )
    }
}

impl Latency {
    #[cfg(test)]
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.0
    }

    /// The histogram [`encode`]d in `text`.
    pub fn decode(text: &str) -> Option<Latency> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).ok()?;
        let mut latency = Latency::new();
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            let value = read_varint(&mut rest)?;
            let count = read_varint(&mut rest)?;
            latency.0.record_n(value.clamp(1, MAX_MICROS), count).ok()?;
        }
        Some(latency)
    }
}

/// Serialises every recorded bucket as (highest equivalent value, count) varint pairs, base64.
/// Recording those pairs into a histogram of the same bounds rebuilds it exactly, so merged
/// percentiles equal those of one histogram fed every value.
pub fn encode(h: &Histogram<u64>) -> String {
    use base64::Engine as _;
    let mut bytes = Vec::new();
    for v in h.iter_recorded() {
        write_varint(&mut bytes, h.highest_equivalent(v.value_iterated_to()));
        write_varint(&mut bytes, v.count_at_value());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(rest: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, tail) = rest.split_first()?;
        *rest = tail;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Microseconds as milliseconds with a precision that fits the magnitude.
pub fn ms(micros: u64) -> String {
    let millis = micros as f64 / 1000.0;
    if millis < 10.0 { format!("{millis:.2}ms") } else if millis < 1000.0 { format!("{millis:.1}ms") } else { format!("{:.2}s", millis / 1000.0) }
}

/// Errors counted by kind, with the first message of each kind as an example.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ErrorTally(BTreeMap<String, ErrorCount>);

#[derive(Debug, Clone, Serialize)]
pub struct ErrorCount {
    pub count: u64,
    pub example: String,
}

impl ErrorTally {
    pub fn add(&mut self, kind: String, message: impl FnOnce() -> String) {
        self.0.entry(kind).and_modify(|e| e.count += 1).or_insert_with(|| ErrorCount { count: 1, example: message() });
    }

    pub fn total(&self) -> u64 {
        self.0.values().map(|e| e.count).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &ErrorCount)> {
        self.0.iter()
    }
}

/// Events per second, zero for an empty interval.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 { count as f64 / seconds } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_percentiles() {
        let mut latency = Latency::new();
        for micros in 1..=1000 {
            latency.record_micros(micros * 10);
        }
        let s = latency.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.min_us, 10);
        // Three significant digits: values are exact to 0.1 %.
        let close = |got: u64, want: u64| got.abs_diff(want) * 1000 <= want;
        assert!(close(s.p50_us, 5000), "{}", s.p50_us);
        assert!(close(s.p90_us, 9000), "{}", s.p90_us);
        assert!(close(s.p99_us, 9900), "{}", s.p99_us);
        assert!(close(s.p999_us, 9990), "{}", s.p999_us);
        assert!(close(s.max_us, 10000), "{}", s.max_us);
        assert!((s.mean_us - 5005.0).abs() < 10.0, "{}", s.mean_us);
    }

    #[test]
    fn merge_and_clamp() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        a.record(Duration::from_millis(2));
        b.record(Duration::ZERO);
        b.record(Duration::from_secs(100_000));
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 3);
        assert_eq!(s.min_us, 1);
        assert!(s.max_us >= MAX_MICROS - MAX_MICROS / 1000);
    }

    #[test]
    fn empty_summary_is_zero_and_serialises() {
        let s = Latency::new().summary();
        assert_eq!(s, LatencySummary::default());
        assert_eq!(s.to_string(), "no samples");
        let json = serde_json::to_value(s).expect("serialises");
        for key in ["count", "min_us", "mean_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
            assert!(json.get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn summary_json_numbers() {
        let mut latency = Latency::new();
        latency.record(Duration::from_micros(1500));
        let json = serde_json::to_value(latency.summary()).expect("serialises");
        assert_eq!(json["count"], 1);
        assert_eq!(json["p50_us"], json["max_us"]);
        assert!(json["p50_us"].as_u64().is_some_and(|v| v.abs_diff(1500) <= 2));
    }

    #[test]
    fn error_tally_keeps_first_example() {
        let mut tally = ErrorTally::default();
        tally.add("timeout:tls".into(), || "first".into());
        tally.add("timeout:tls".into(), || "second".into());
        tally.add("connect:ECONNREFUSED".into(), || "refused".into());
        assert_eq!(tally.total(), 3);
        let json = serde_json::to_value(&tally).expect("serialises");
        assert_eq!(json["timeout:tls"]["count"], 2);
        assert_eq!(json["timeout:tls"]["example"], "first");
    }

    #[test]
    fn encoded_histograms_merge_exactly() {
        let mut all = Latency::new();
        let mut parts = [Latency::new(), Latency::new(), Latency::new()];
        let mut x = 12345u64;
        for i in 0..30_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let micros = 1 + (x >> 33) % 2_000_000;
            all.record_micros(micros);
            parts[(i % 3) as usize].record_micros(micros);
        }
        let mut merged = Latency::new();
        for part in &parts {
            let decoded = Latency::decode(&part.summary().hdr).expect("decodes");
            assert_eq!(decoded.summary(), part.summary());
            merged.merge(&decoded);
        }
        let (m, a) = (merged.summary(), all.summary());
        assert_eq!(m, a);
        for q in [0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
            assert_eq!(merged.histogram().value_at_quantile(q), all.histogram().value_at_quantile(q), "q={q}");
        }
        assert!(Latency::decode("").expect("empty decodes").histogram().is_empty());
        assert!(Latency::decode("!!").is_none());
    }

    #[test]
    fn formatting() {
        assert_eq!(ms(1234), "1.23ms");
        assert_eq!(ms(12_345), "12.3ms");
        assert_eq!(ms(2_500_000), "2.50s");
        assert_eq!(per_second(10, Duration::from_secs(4)), 2.5);
        assert_eq!(per_second(10, Duration::ZERO), 0.0);
    }
}
