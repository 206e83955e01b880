//! Open-loop pacing. Messages are due on a fixed schedule whatever the server does: a sender
//! that waited for answers would slow down with the server and hide its latency (coordinated
//! omission). The aggregate schedule is one message every 1/R seconds; sender `k` of `n` owns
//! slots `k, k+n, k+2n, …`, so the senders interleave evenly instead of bursting together.

use std::time::Duration;

/// The schedule of one sender.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacer {
    rate: f64,
    senders: u64,
    index: u64,
    /// Number of aggregate slots in the run: ceil(rate × duration).
    slots: u64,
}

impl Pacer {
    /// Sender `index` of `senders` sharing `rate` messages/s for `duration`. `None` when the
    /// rate is not a positive finite number or the index is out of range.
    pub fn new(rate: f64, senders: u64, index: u64, duration: Duration) -> Option<Pacer> {
        if !(rate.is_finite() && rate > 0.0) || index >= senders {
            return None;
        }
        let slots = (rate * duration.as_secs_f64()).ceil();
        if !slots.is_finite() || slots > u64::MAX as f64 {
            return None;
        }
        Some(Pacer { rate, senders, index, slots: slots as u64 })
    }

    /// When this sender's `i`-th message is due, from the start of the run; `None` past the end.
    /// Computed from the slot number rather than accumulated, so no drift builds up.
    pub fn due(&self, i: u64) -> Option<Duration> {
        let slot = i.checked_mul(self.senders)?.checked_add(self.index)?;
        if slot >= self.slots {
            return None;
        }
        Some(Duration::from_secs_f64(slot as f64 / self.rate))
    }

    /// Messages this sender sends in the whole run.
    pub fn count(&self) -> u64 {
        if self.index >= self.slots { 0 } else { (self.slots - self.index).div_ceil(self.senders) }
    }

    /// How many of this sender's messages are due by `elapsed` (the index of the first not yet
    /// due), so a late wake-up sends everything it owes in one batch.
    pub fn due_by(&self, elapsed: Duration) -> u64 {
        let count = self.count();
        // Estimate from slot <= elapsed × rate, then settle against `due` itself so the two can
        // never disagree by a rounding step.
        let last_slot = (elapsed.as_secs_f64() * self.rate).floor();
        let mut owed = if last_slot < self.index as f64 {
            0
        } else if last_slot >= self.slots as f64 {
            count
        } else {
            ((last_slot as u64 - self.index) / self.senders + 1).min(count)
        };
        while owed > 0 && self.due(owed - 1).is_none_or(|d| d > elapsed) {
            owed -= 1;
        }
        while owed < count && self.due(owed).is_some_and(|d| d <= elapsed) {
            owed += 1;
        }
        owed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_schedule_is_evenly_spaced() {
        let (rate, senders, duration) = (1000.0, 7, Duration::from_secs(2));
        let mut all: Vec<Duration> = Vec::new();
        for k in 0..senders {
            let pacer = Pacer::new(rate, senders, k, duration).expect("valid");
            let mut i = 0;
            while let Some(due) = pacer.due(i) {
                all.push(due);
                i += 1;
            }
            assert_eq!(i, pacer.count(), "sender {k}");
        }
        assert_eq!(all.len(), 2000);
        all.sort();
        for (n, due) in all.iter().enumerate() {
            let expected = Duration::from_secs_f64(n as f64 / rate);
            let error = due.abs_diff(expected);
            assert!(error < Duration::from_micros(1), "slot {n}: {due:?} vs {expected:?}");
        }
        assert!(all.last().is_some_and(|d| *d < duration));
    }

    #[test]
    fn one_sender_spacing_and_offset() {
        let pacer = Pacer::new(100.0, 4, 1, Duration::from_secs(1)).expect("valid");
        assert_eq!(pacer.due(0), Some(Duration::from_millis(10)));
        assert_eq!(pacer.due(1), Some(Duration::from_millis(50)));
        assert_eq!(pacer.due(2), Some(Duration::from_millis(90)));
        assert_eq!(pacer.count(), 25);
        assert_eq!(pacer.due(24), Some(Duration::from_millis(970)));
        assert_eq!(pacer.due(25), None);
    }

    #[test]
    fn fractional_totals_round_up() {
        // 2.5 slots: slots 0, 1 and 2 exist (at 0, 0.4 s and 0.8 s).
        let total: u64 = (0..2).map(|k| Pacer::new(2.5, 2, k, Duration::from_secs(1)).expect("valid").count()).sum();
        assert_eq!(total, 3);
    }

    #[test]
    fn due_by_counts_what_is_owed() {
        let pacer = Pacer::new(100.0, 4, 1, Duration::from_secs(1)).expect("valid");
        assert_eq!(pacer.due_by(Duration::from_millis(5)), 0);
        assert_eq!(pacer.due_by(Duration::from_millis(10)), 1);
        assert_eq!(pacer.due_by(Duration::from_millis(49)), 1);
        assert_eq!(pacer.due_by(Duration::from_millis(90)), 3);
        assert_eq!(pacer.due_by(Duration::from_secs(60)), 25);
        for ms in 0..1100 {
            let elapsed = Duration::from_millis(ms);
            let owed = pacer.due_by(elapsed);
            // Everything before `owed` is due, the message at `owed` is not.
            if owed > 0 {
                assert!(pacer.due(owed - 1).is_some_and(|d| d <= elapsed), "{ms} ms");
            }
            assert!(pacer.due(owed).is_none_or(|d| d > elapsed), "{ms} ms");
        }
    }

    #[test]
    fn rejects_nonsense() {
        assert!(Pacer::new(0.0, 1, 0, Duration::from_secs(1)).is_none());
        assert!(Pacer::new(f64::NAN, 1, 0, Duration::from_secs(1)).is_none());
        assert!(Pacer::new(10.0, 2, 2, Duration::from_secs(1)).is_none());
        assert_eq!(Pacer::new(1.0, 4, 3, Duration::from_secs(1)).map(|p| p.count()), Some(0));
    }
}
