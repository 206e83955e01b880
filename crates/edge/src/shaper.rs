//! The per-connection read shaper (`[c2s] read_rate_bytes`, `read_burst_bytes`): a token bucket
//! on the bytes of the elements a client sends. Beyond it, the connection reads nothing more until
//! the bucket has refilled: TCP backpressure slows the client down, and the rest of the server sees
//! at most the shaped rate. Nothing is refused or closed — a legitimate burst (a login's sync, an
//! avatar) only waits — so a client that keeps pushing is held at the rate for as long as it
//! pushes; the per-user message rate and the stanza size limit refuse what must be refused. It
//! paces elements, not socket reads, so the reading-and-discarding after a stream error (RFC 6120
//! §4.9) is never slowed. Our own, a few lines: it lives in the connection's reader, where a
//! limiter crate would add a shared clock or a lock per element.

use std::time::{Duration, Instant};

pub struct ReadShaper {
    /// Bytes a second, and the most that may be read at once.
    rate: f64,
    burst: f64,
    /// What may be read now; negative: a debt, paid by waiting before the next read.
    tokens: f64,
    at: Instant,
}

impl ReadShaper {
    /// `None` for a rate of 0: no shaping.
    pub fn new(rate: u64, burst: u64) -> Option<ReadShaper> {
        (rate > 0).then(|| {
            let burst = burst as f64;
            ReadShaper { rate: rate as f64, burst, tokens: burst, at: Instant::now() }
        })
    }

    /// Counts an element of `bytes` just read.
    pub fn charge(&mut self, bytes: usize) {
        let now = Instant::now();
        let refilled = self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = refilled.min(self.burst) - bytes as f64;
        self.at = now;
    }

    /// Waits until the debt is paid, if there is one.
    pub async fn wait(&self) {
        if self.tokens < 0.0 {
            tokio::time::sleep_until((self.at + Duration::from_secs_f64(-self.tokens / self.rate)).into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn elements_beyond_the_burst_wait_for_the_rate() {
        let mut shaper = ReadShaper::new(200_000, 20_000).expect("a rate");
        let started = Instant::now();
        for _ in 0..30 {
            shaper.wait().await;
            shaper.charge(4_000);
        }
        shaper.wait().await;
        let elapsed = started.elapsed();
        // 100,000 bytes beyond the burst at 200,000 a second: at least half a second.
        assert!(elapsed >= Duration::from_millis(480), "120,000 bytes in {elapsed:?}");
        assert!(ReadShaper::new(0, 1).is_none(), "a rate of 0 is no shaping");
    }

    #[tokio::test]
    async fn the_burst_passes_at_once() {
        let mut shaper = ReadShaper::new(1_000, 50_000).expect("a rate");
        let started = Instant::now();
        for _ in 0..10 {
            shaper.wait().await;
            shaper.charge(5_000);
        }
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
