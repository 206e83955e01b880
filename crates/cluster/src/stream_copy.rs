//! What the edge keeps of a connection for a new owner, in a cluster. The owner keeps the
//! stanzas a client has not acknowledged (so that the edge's death loses none); the edge keeps a
//! copy of them and of both counts, so that the owner's death loses none either, and the keys of
//! the latest deliveries, so that the owner's death repeats none: a new owner asks with
//! [`ToClient::Sync`](crate::gateway::ToClient::Sync), first on its link, and the edge answers
//! with [`Synced`] as things stood at that point of the stream.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;

use crate::gateway::{DeliveryKey, StreamCounts, Synced, DELIVERIES_REMEMBERED};

#[derive(Default)]
pub(crate) struct StreamCopy {
    outbound: Mutex<Outbound>,
    /// The client's stanzas handed to the owners since stream management began (`None` before).
    /// Held across each hand-over, so that counts published under it sit exactly behind the
    /// stanzas they count on the owner partition.
    pub(crate) handled: tokio::sync::Mutex<Option<u32>>,
}

#[derive(Default)]
struct Outbound {
    counting: bool,
    /// Stanzas queued to the client, wrapping as `h` does.
    sent: u32,
    unacked: VecDeque<Bytes>,
    /// The keys of the latest deliveries, oldest first, whether or not the stream is counted.
    delivered: VecDeque<DeliveryKey>,
}

impl StreamCopy {
    fn outbound(&self) -> std::sync::MutexGuard<'_, Outbound> {
        self.outbound.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counting starts: after `<enabled/>` at 0, after a resumption at the client's `h`.
    pub fn start(&self, sent: u32) {
        let mut outbound = self.outbound();
        (outbound.counting, outbound.sent) = (true, sent);
        outbound.unacked.clear();
    }

    /// Whether the stream counts stanzas (XEP-0198 is on): then only its owner may send to it.
    pub fn is_counting(&self) -> bool {
        self.outbound().counting
    }

    /// Whether a delivery with this key was queued lately (a replayed record repeats its keys).
    pub fn has_delivered(&self, key: DeliveryKey) -> bool {
        self.outbound().delivered.contains(&key)
    }

    /// A stanza queued to the client, with the key of its delivery. Past `limit` unacknowledged
    /// the owner ends the stream (`[sm] max_unacked`), so the copy stops rather than grow.
    pub fn queued(&self, bytes: &Bytes, key: Option<DeliveryKey>, limit: usize) {
        let mut outbound = self.outbound();
        if let Some(key) = key {
            if outbound.delivered.len() == DELIVERIES_REMEMBERED {
                outbound.delivered.pop_front();
            }
            outbound.delivered.push_back(key);
        }
        if !outbound.counting {
            return;
        }
        if outbound.unacked.len() >= limit {
            (outbound.counting, outbound.sent) = (false, 0);
            outbound.unacked = VecDeque::new();
            return;
        }
        outbound.sent = outbound.sent.wrapping_add(1);
        outbound.unacked.push_back(bytes.clone());
    }

    /// The client acknowledged `h`: forgets what it covers (an `h` beyond what was sent is the
    /// owner's to refuse).
    pub fn acknowledge(&self, h: u32) {
        let mut outbound = self.outbound();
        let acknowledged = outbound.sent.wrapping_sub(outbound.unacked.len() as u32);
        let newly = h.wrapping_sub(acknowledged) as usize;
        if newly <= outbound.unacked.len() {
            outbound.unacked.drain(..newly);
        }
    }

    /// Where the connection stands now: the outbound counts if counting (`handled` is filled in
    /// under its lock) and the latest delivery keys.
    pub fn snapshot(&self) -> Synced {
        let outbound = self.outbound();
        let counts = outbound.counting.then(|| StreamCounts { sent: outbound.sent, unacknowledged: outbound.unacked.iter().cloned().collect(), handled: 0 });
        Synced { counts, delivered: outbound.delivered.iter().copied().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(n: u8) -> Bytes {
        Bytes::from(vec![n])
    }

    #[test]
    fn counts_from_its_start_and_forgets_what_is_acknowledged_across_the_wrap() {
        let copy = StreamCopy::default();
        copy.queued(&stanza(0), None, 10);
        assert_eq!(copy.snapshot().counts, None, "nothing is counted before stream management starts");
        copy.start(u32::MAX - 1);
        for n in 1..=4 {
            copy.queued(&stanza(n), None, 10);
        }
        copy.acknowledge(u32::MAX);
        let counts = copy.snapshot().counts.expect("counting");
        assert_eq!(counts.sent, 2, "wrapped");
        assert_eq!(counts.unacknowledged, vec![stanza(2), stanza(3), stanza(4)]);
        copy.acknowledge(100);
        assert_eq!(copy.snapshot().counts.expect("counting").unacknowledged.len(), 3, "an ack beyond what was sent changes nothing");
    }

    #[test]
    fn remembers_the_latest_delivery_keys_with_or_without_stream_management() {
        let copy = StreamCopy::default();
        for key in 0..DELIVERIES_REMEMBERED as u64 + 10 {
            copy.queued(&stanza(0), Some(key), 10);
        }
        copy.queued(&stanza(0), None, 10);
        let expected: Vec<DeliveryKey> = (10..DELIVERIES_REMEMBERED as u64 + 10).collect();
        assert_eq!(copy.snapshot().delivered, expected, "the oldest are forgotten first");
        copy.start(0);
        assert_eq!(copy.snapshot().delivered, expected, "enabling stream management keeps them");
    }

    #[test]
    fn stops_instead_of_growing_past_the_limit() {
        let copy = StreamCopy::default();
        copy.start(0);
        for n in 0..3 {
            copy.queued(&stanza(n), Some(u64::from(n)), 2);
        }
        let synced = copy.snapshot();
        assert_eq!(synced.counts, None);
        assert_eq!(synced.delivered, [0, 1, 2]);
    }
}
