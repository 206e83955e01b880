//! A token bucket: what an occupant may send now (`[muc] occupant_rate` a second up to
//! `occupant_burst`), how many rooms a user may join now, how many messages a user may send now
//! (`[sessions] message_rate`) and how much of the archive a user may fill in a day. Our own, a
//! few lines: it lives in an actor's single-threaded state beside what it limits, where a limiter
//! crate would keep a second, locked map.

use std::time::Instant;

#[derive(Clone)]
pub(crate) struct Allowance {
    tokens: f64,
    at: Instant,
}

impl Allowance {
    /// A full bucket of `burst` tokens.
    pub(crate) fn new(burst: u32) -> Allowance {
        Allowance::full(f64::from(burst))
    }

    pub(crate) fn full(burst: f64) -> Allowance {
        Allowance { tokens: burst, at: Instant::now() }
    }

    /// Takes one message's worth if there is one (always, when `rate` is 0: no limit).
    pub(crate) fn take(&mut self, rate: f64, burst: u32, now: Instant) -> bool {
        self.take_amount(1.0, rate, f64::from(burst), now)
    }

    /// Takes `amount` tokens if there are that many (always, when `rate` is 0: no limit).
    pub(crate) fn take_amount(&mut self, amount: f64, rate: f64, burst: f64, now: Instant) -> bool {
        if !self.has(amount, rate, burst, now) {
            return false;
        }
        if rate > 0.0 {
            self.tokens -= amount;
        }
        true
    }

    /// Whether `amount` tokens are there at `now` (always, when `rate` is 0), taking nothing.
    pub(crate) fn has(&mut self, amount: f64, rate: f64, burst: f64, now: Instant) -> bool {
        if rate <= 0.0 {
            return true;
        }
        self.tokens = (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * rate).min(burst);
        self.at = now;
        self.tokens >= amount
    }

    /// When the bucket holds `level` tokens again, at the rate it refills (now, if it does).
    pub(crate) fn back_to(&self, level: f64, rate: f64) -> Instant {
        if rate <= 0.0 || self.tokens >= level {
            return self.at;
        }
        self.at + std::time::Duration::from_secs_f64((level - self.tokens) / rate)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_allowance_lets_a_burst_through_then_the_rate() {
        let start = Instant::now();
        let mut allowance = Allowance { tokens: 3.0, at: start };
        assert_eq!((0..5).filter(|_| allowance.take(2.0, 3, start)).count(), 3, "the burst");
        assert!(!allowance.take(2.0, 3, start + Duration::from_millis(100)), "a fifth of a message refilled");
        assert!(allowance.take(2.0, 3, start + Duration::from_millis(600)), "one refilled after half a second");
        assert_eq!((0..10).filter(|_| allowance.take(2.0, 3, start + Duration::from_secs(100))).count(), 3, "never more than the burst");
        assert!((0..100).all(|_| allowance.take(0.0, 3, start)), "a rate of 0 is no limit");
    }

    #[test]
    fn amounts_are_taken_whole_or_not_at_all() {
        let start = Instant::now();
        let mut bytes = Allowance { tokens: 1000.0, at: start };
        assert!(bytes.take_amount(600.0, 10.0, 1000.0, start));
        assert!(!bytes.take_amount(600.0, 10.0, 1000.0, start), "400 left: nothing taken");
        assert!(bytes.has(400.0, 10.0, 1000.0, start));
        assert_eq!(bytes.back_to(1000.0, 10.0), start + Duration::from_secs(60), "600 refill in a minute");
    }
}
