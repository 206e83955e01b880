//! The edge's copy of a stream-managed stream's counts, in a cluster. The owner keeps the
//! stanzas a client has not acknowledged (so that the edge's death loses none); the edge keeps a
//! copy of them and of both counts, so that the owner's death loses none either: a new owner asks
//! with [`ToClient::Sync`](crate::gateway::ToClient::Sync), first on its link, and the edge
//! answers with [`StreamCounts`] as they stood at that point of the stream.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;

use crate::gateway::StreamCounts;

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
}

impl StreamCopy {
    fn outbound(&self) -> std::sync::MutexGuard<'_, Outbound> {
        self.outbound.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counting starts: after `<enabled/>` at 0, after a resumption at the client's `h`.
    pub fn start(&self, sent: u32) {
        *self.outbound() = Outbound { counting: true, sent, unacked: VecDeque::new() };
    }

    /// A stanza queued to the client. Past `limit` unacknowledged the owner ends the stream
    /// (`[sm] max_unacked`), so the copy stops rather than grow.
    pub fn queued(&self, bytes: &Bytes, limit: usize) {
        let mut outbound = self.outbound();
        if !outbound.counting {
            return;
        }
        if outbound.unacked.len() >= limit {
            *outbound = Outbound::default();
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

    /// The outbound counts now, if counting; `handled` is filled in under its lock.
    pub fn snapshot(&self) -> Option<StreamCounts> {
        let outbound = self.outbound();
        outbound.counting.then(|| StreamCounts { sent: outbound.sent, unacknowledged: outbound.unacked.iter().cloned().collect(), handled: 0 })
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
        copy.queued(&stanza(0), 10);
        assert_eq!(copy.snapshot(), None, "nothing is counted before stream management starts");
        copy.start(u32::MAX - 1);
        for n in 1..=4 {
            copy.queued(&stanza(n), 10);
        }
        copy.acknowledge(u32::MAX);
        let counts = copy.snapshot().expect("counting");
        assert_eq!(counts.sent, 2, "wrapped");
        assert_eq!(counts.unacknowledged, vec![stanza(2), stanza(3), stanza(4)]);
        copy.acknowledge(100);
        assert_eq!(copy.snapshot().expect("counting").unacknowledged.len(), 3, "an ack beyond what was sent changes nothing");
    }

    #[test]
    fn stops_instead_of_growing_past_the_limit() {
        let copy = StreamCopy::default();
        copy.start(0);
        for n in 0..3 {
            copy.queued(&stanza(n), 2);
        }
        assert_eq!(copy.snapshot(), None);
    }
}
