//! What an actor remembers of its latest effects so that a replayed owner record does not repeat
//! them (`state::replays`, `modules::mam::replays`): the sender's owner may die and its records
//! be handled again by the next owner seconds later — its session timeout plus a rebalance — while
//! the recipient's actor goes on. So entries are kept for a while, not only a count of them: up to
//! [`HORIZON`], at most [`CAPACITY`] (a user receiving more than that within the horizon may see a
//! repeated delivery after an owner's death).

use std::collections::VecDeque;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// How long an entry is kept: well beyond a takeover (Kafka's session timeout, 10 s by default).
pub(crate) const HORIZON: Duration = Duration::from_secs(60);

/// The most entries kept.
pub(crate) const CAPACITY: usize = 256;

/// Entries oldest first, each with when it was added.
pub(crate) struct Recent<T> {
    entries: VecDeque<(u32, T)>,
}

impl<T> Default for Recent<T> {
    fn default() -> Self {
        Recent { entries: VecDeque::new() }
    }
}

/// Seconds since this process started: four bytes per entry instead of an `Instant`'s sixteen.
fn now_seconds() -> u32 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    START.elapsed().as_secs() as u32
}

impl<T> Recent<T> {
    /// Adds `value`, forgetting what is past the horizon or beyond the capacity.
    pub(crate) fn push(&mut self, value: T) {
        self.push_at(now_seconds(), value);
    }

    fn push_at(&mut self, now: u32, value: T) {
        let horizon = HORIZON.as_secs() as u32;
        while self.entries.front().is_some_and(|(at, _)| now.saturating_sub(*at) > horizon) || self.entries.len() >= CAPACITY {
            self.entries.pop_front();
        }
        if self.entries.is_empty() && self.entries.capacity() > 16 {
            // A burst is over: give its memory back.
            self.entries.shrink_to(16);
        }
        self.entries.push_back((now, value));
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|(_, value)| value)
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.entries.iter_mut().map(|(_, value)| value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_the_capacity_newest_last() {
        let mut recent = Recent::default();
        for n in 0..CAPACITY + 5 {
            recent.push(n);
        }
        let kept: Vec<usize> = recent.iter().copied().collect();
        assert_eq!(kept.len(), CAPACITY);
        assert_eq!((kept[0], kept[CAPACITY - 1]), (5, CAPACITY + 4));
    }

    #[test]
    fn forgets_what_is_past_the_horizon() {
        let mut recent = Recent::default();
        let horizon = HORIZON.as_secs() as u32;
        recent.push_at(100, 1);
        recent.push_at(101, 2);
        recent.push_at(100 + horizon, 3);
        assert_eq!(recent.iter().copied().collect::<Vec<_>>(), [1, 2, 3], "at the horizon, still kept");
        recent.push_at(101 + horizon, 4);
        assert_eq!(recent.iter().copied().collect::<Vec<_>>(), [2, 3, 4]);
    }
}
