//! Counts of failures (authentication failures, for the edge's throttle) that every edge of a
//! cluster must see: spreading guesses over edges must not help. Counted in Redis in a cluster
//! (`starling-backend-redis`), in this process otherwise ([`LocalFailureCounts`]).
//!
//! A count lives for a fixed window from its first failure, then starts again from zero.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::store::StoreError;

#[async_trait]
pub trait FailureCounts: Send + Sync + 'static {
    /// Counts one failure under `key` and returns how many there are within its window.
    async fn add(&self, key: &str, window: Duration) -> Result<u32, StoreError>;

    /// The failures under each key within their windows (0 for an unknown key), in order.
    async fn get(&self, keys: &[&str]) -> Result<Vec<u32>, StoreError>;

    async fn clear(&self, key: &str) -> Result<(), StoreError>;
}

/// Failure counts in this process's memory.
#[derive(Default)]
pub struct LocalFailureCounts {
    counts: Mutex<HashMap<String, (u32, Instant, Duration)>>,
}

/// Entries kept before expired ones are swept, bounding the table under a spray of keys.
const SWEEP_AT: usize = 100_000;

impl LocalFailureCounts {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant, Duration)>> {
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl FailureCounts for LocalFailureCounts {
    async fn add(&self, key: &str, window: Duration) -> Result<u32, StoreError> {
        let mut counts = self.counts();
        if counts.len() > SWEEP_AT {
            counts.retain(|_, (_, since, window)| since.elapsed() < *window);
        }
        let entry = counts.entry(key.to_owned()).or_insert((0, Instant::now(), window));
        if entry.1.elapsed() >= entry.2 {
            *entry = (0, Instant::now(), window);
        }
        entry.0 += 1;
        Ok(entry.0)
    }

    async fn get(&self, keys: &[&str]) -> Result<Vec<u32>, StoreError> {
        let counts = self.counts();
        Ok(keys.iter().map(|key| counts.get(*key).filter(|(_, since, window)| since.elapsed() < *window).map_or(0, |(count, _, _)| *count)).collect())
    }

    async fn clear(&self, key: &str) -> Result<(), StoreError> {
        self.counts().remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn contract_suite() {
        crate::contract::failure_counts(&LocalFailureCounts::default(), &crate::contract::unique_prefix()).await;
    }
}
