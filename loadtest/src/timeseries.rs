//! Per-second buckets of latency samples: throughput and percentiles over time.

use serde::Serialize;

use crate::stats::{Latency, LatencySummary};

/// One histogram per second of the run, counted from the start of the measured phase.
#[derive(Default)]
pub struct Series(Vec<Latency>);

/// One second of a run: events completed in it and their latency.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Seconds since the start of the measured phase (this point covers [second, second + 1)).
    pub second: u64,
    /// Events completed in this second (= events/s).
    pub count: u64,
    pub latency: LatencySummary,
}

impl Series {
    pub fn record(&mut self, second: u64, micros: u64) {
        let index = usize::try_from(second).unwrap_or(usize::MAX).min(86_400);
        if self.0.len() <= index {
            self.0.resize_with(index + 1, Latency::new);
        }
        self.0[index].record_micros(micros);
    }

    pub fn merge(&mut self, other: &Series) {
        if self.0.len() < other.0.len() {
            self.0.resize_with(other.0.len(), Latency::new);
        }
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            mine.merge(theirs);
        }
    }

    pub fn points(&self) -> Vec<Point> {
        (0u64..)
            .zip(&self.0)
            .map(|(second, latency)| {
                let latency = latency.summary();
                Point { second, count: latency.count, latency }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_merge() {
        let mut a = Series::default();
        let mut b = Series::default();
        a.record(0, 100);
        a.record(0, 200);
        b.record(2, 300);
        a.merge(&b);
        let points = a.points();
        assert_eq!(points.len(), 3);
        assert_eq!(points[0].count, 2);
        assert_eq!(points[1].count, 0);
        assert_eq!(points[2].count, 1);
        assert_eq!(points[2].second, 2);
    }
}
