//! Connections without stream management this edge cut (a slow reader) or lost while records
//! for them may still be on their way from their owner, which sends until it has read the
//! unbind. What arrives for one goes back to the owner (`ClientEvent::Undelivered`) instead of
//! vanishing. Stream-managed connections are not kept here: their owner keeps what their
//! client did not acknowledge.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use starling_protocol::Jid;

/// How long records for a cut connection are still expected: an owner's backlog after a
/// takeover takes seconds to drain, never minutes.
const KEPT_FOR: Duration = Duration::from_secs(600);

/// Cut connections remembered at most (the oldest is forgotten first): ~100 bytes each.
const KEPT_MOST: usize = 65_536;

#[derive(Default)]
pub(super) struct CutConnections {
    jids: HashMap<u64, Jid>,
    order: VecDeque<(Instant, u64)>,
}

impl CutConnections {
    /// Remembers that `connection`, bound to `jid`, is gone.
    pub fn insert(&mut self, connection: u64, jid: Jid) {
        let now = Instant::now();
        while let Some(&(at, oldest)) = self.order.front() {
            if now.duration_since(at) < KEPT_FOR && self.order.len() < KEPT_MOST {
                break;
            }
            self.order.pop_front();
            self.jids.remove(&oldest);
        }
        if self.jids.insert(connection, jid).is_none() {
            self.order.push_back((now, connection));
        }
    }

    /// The full JID a cut connection was bound to.
    pub fn get(&self, connection: u64) -> Option<&Jid> {
        self.jids.get(&connection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_a_bounded_number_oldest_forgotten_first() {
        let mut cut = CutConnections::default();
        let jid = Jid::new("a@example.org/r").expect("jid");
        for connection in 0..(KEPT_MOST as u64 + 10) {
            cut.insert(connection, jid.clone());
        }
        assert_eq!(cut.jids.len(), KEPT_MOST);
        assert!(cut.get(0).is_none() && cut.get(9).is_none());
        assert_eq!(cut.get(10), Some(&jid));
        assert_eq!(cut.get(KEPT_MOST as u64 + 9), Some(&jid));
    }
}
