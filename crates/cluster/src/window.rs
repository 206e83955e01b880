//! Flow control from a session node to a connection on an edge. The carrier of an owner's link
//! ([`ClientLink::held`](crate::gateway::ClientLink::held)) sends at most a window of items
//! beyond what the edge reported written to the client: every quarter window it asks
//! ([`ToClient::DrainedAsk`](crate::gateway::ToClient::DrainedAsk)), the connection's writer
//! answers once it got that far ([`ClientEvent::Drained`](crate::gateway::ClientEvent::Drained)),
//! and the window moves on. A burst — a takeover's replay, a login's backlog — therefore waits at
//! the owner, which sees its link's queue fill and decides, instead of overrunning the edge's
//! queue. The window is half the edge's queue, so what the owner sends always fits there beside
//! what rooms fan out to the connection directly.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

pub struct Window {
    size: u64,
    /// Items the carrier has sent.
    sent: AtomicU64,
    /// Items the edge reported written to the client.
    drained: AtomicU64,
    moved: Notify,
}

impl Window {
    /// A window for a connection whose edge queues `client_queue` items.
    pub fn for_client_queue(client_queue: usize) -> Window {
        Window { size: (client_queue as u64 / 2).max(1), sent: AtomicU64::new(0), drained: AtomicU64::new(0), moved: Notify::new() }
    }

    /// The carrier sent one more item; returns its number when the edge is to report it
    /// written (every quarter window).
    pub fn sent_one(&self) -> Option<u64> {
        let sent = self.sent.fetch_add(1, Ordering::AcqRel) + 1;
        (sent % self.ask_every() == 0).then_some(sent)
    }

    /// The carrier's items so far, to ask about when the edge has not answered for a while (an
    /// answer lost with an edge's full queue to the owners).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Acquire)
    }

    fn ask_every(&self) -> u64 {
        (self.size / 4).max(1)
    }

    /// The edge wrote the items up to `count` to the client. A count beyond what this carrier
    /// sent (an answer to an earlier owner's link) moves the window no further than that.
    pub fn drained(&self, count: u64) {
        let count = count.min(self.sent());
        if self.drained.fetch_max(count, Ordering::AcqRel) < count {
            self.moved.notify_one();
        }
    }

    /// Whether the carrier may send another item now.
    pub fn is_open(&self) -> bool {
        self.sent() - self.drained.load(Ordering::Acquire) < self.size
    }

    /// Completes when the edge reports progress (at once if it did since the last call).
    pub async fn moved(&self) {
        self.moved.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closes_half_an_edge_queue_ahead_and_opens_as_the_edge_reports() {
        let window = Window::for_client_queue(16);
        let asks: Vec<u64> = (0..8).filter_map(|_| window.sent_one()).collect();
        assert_eq!(asks, vec![2, 4, 6, 8], "asks every quarter window");
        assert!(!window.is_open(), "eight sent, none written: closed");
        window.drained(2);
        tokio::time::timeout(std::time::Duration::from_secs(1), window.moved()).await.expect("woken");
        assert!(window.is_open());
        window.drained(100);
        assert_eq!(window.sent() - window.drained.load(Ordering::Acquire), 0, "a report beyond what was sent counts only that");
        window.drained(1);
        assert!(window.is_open(), "an older report moves nothing back");
    }
}
