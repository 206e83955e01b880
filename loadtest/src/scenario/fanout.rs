//! What the fan-out scenarios (`presence`, `muc`) share: the run's clock and counters, and the
//! recording of one marked delivery.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::stats::{ErrorTally, Latency};
use crate::timeseries::Series;

/// `C`: the scenario's own counters (setup progress).
pub struct FanOut<C> {
    pub run: u64,
    pub origin: Instant,
    /// Nanoseconds since origin when measuring started (u64::MAX before).
    pub measuring_since: AtomicU64,
    pub deliveries: AtomicU64,
    pub last_received: AtomicU64,
    pub errors: Mutex<ErrorTally>,
    /// What the readers measured, in shards: reader `i` records into shard `i % SHARDS`. One per
    /// reader cost ~180 KB of histograms per second of run each: 10,000 readers took 11 GB.
    received: Vec<Mutex<Received>>,
    pub counters: C,
}

const SHARDS: usize = 32;

/// What one reader measured of the deliveries it got.
#[derive(Default)]
pub struct Received {
    pub latency: Latency,
    pub series: Series,
    pub count: u64,
}

impl Received {
    pub fn merge(&mut self, other: &Received) {
        self.latency.merge(&other.latency);
        self.series.merge(&other.series);
        self.count += other.count;
    }
}

impl<C> FanOut<C> {
    pub fn new(run: u64, counters: C) -> FanOut<C> {
        FanOut {
            run,
            origin: Instant::now(),
            measuring_since: AtomicU64::new(u64::MAX),
            deliveries: AtomicU64::new(0),
            last_received: AtomicU64::new(0),
            errors: Mutex::new(ErrorTally::default()),
            received: (0..SHARDS).map(|_| Mutex::default()).collect(),
            counters,
        }
    }

    /// Nanoseconds since the run's origin: the clock of every `SENT` in a marker.
    pub fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn error(&self, kind: String, message: impl FnOnce() -> String) {
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).add(kind, message);
    }

    /// Measuring starts at `start`.
    pub fn start_measuring(&self, start: Instant) {
        self.measuring_since.store(u64::try_from((start - self.origin).as_nanos()).unwrap_or(0), Ordering::Relaxed);
    }

    /// A delivery to reader `reader` of a message sent at `sent` arrived now: its latency.
    pub fn delivered(&self, reader: u64, sent: u64) {
        let now = self.now();
        let micros = now.saturating_sub(sent) / 1000;
        let since = self.measuring_since.load(Ordering::Relaxed);
        {
            let mut received = self.received[reader as usize % SHARDS].lock().unwrap_or_else(|p| p.into_inner());
            received.latency.record_micros(micros);
            received.series.record(now.saturating_sub(since) / 1_000_000_000, micros);
            received.count += 1;
        }
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        self.last_received.fetch_max(now, Ordering::Relaxed);
    }

    /// Everything the readers measured.
    pub fn received(&self) -> Received {
        let mut total = Received::default();
        for shard in &self.received {
            total.merge(&shard.lock().unwrap_or_else(|p| p.into_inner()));
        }
        total
    }

    /// Setup: waits until `counter` reaches `target` or `timeout` since `started` ran out (false,
    /// and counted as an error naming `what`).
    pub async fn wait_for(&self, counter: &AtomicU64, target: u64, started: Instant, timeout: Duration, what: &str) -> bool {
        while counter.load(Ordering::Relaxed) < target {
            if started.elapsed() >= timeout {
                let got = counter.load(Ordering::Relaxed);
                self.error("setup:timeout".into(), || format!("after {timeout:?}: {got}/{target} {what}"));
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    pub fn errors(&self) -> ErrorTally {
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
