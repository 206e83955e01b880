//! The writer task of a bound stream: it owns the sending half, writes what the session layer
//! queues — a burst in one write — and pings a silent client (XEP-0199), closing a dead one.
//! Under stream management it also asks for acks (XEP-0198 `<r/>`) after `request_ack_every`
//! stanzas or `request_ack_after` seconds, and asks with `<r/>` instead of pinging.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use starling_cluster::gateway::{DrainReports, ToClient};
use starling_protocol::{ns, Jid, StreamError, StreamErrorCondition};
use starling_xml::Element;
use tokio::sync::mpsc;

use crate::edge::Edge;
use crate::framing::SendFrames;

/// A burst is gathered up to this size before it is written; what is queued beyond waits for the
/// next write.
const BURST_BYTES: usize = 64 * 1024;

/// What the writer needs to tell a live client from a dead one.
pub(super) struct Liveness {
    /// Bytes received so far, counted by the receiving half.
    pub activity: Arc<AtomicU64>,
    /// The id of our pings, whose answers the read loop drops.
    pub ping_id: String,
    pub jid: Jid,
    /// Set once the client enabled stream management.
    pub requesting_acks: Arc<AtomicBool>,
    /// In a cluster: where the owner's flow-control asks are answered.
    pub drain_reports: Option<DrainReports>,
}

impl Liveness {
    /// Everything queued before the owner's ask `count` is written.
    fn drained(&self, count: u64) {
        if let Some(report) = &self.drain_reports {
            report(count);
        }
    }
}

/// When to ask a stream-managed client for an ack.
struct AckRequests {
    /// Stanzas written since the last request.
    unrequested: u32,
    /// When the first of them was written.
    since: Option<Instant>,
}

/// Writes what the session queues; pings a silent client and closes a dead one.
pub(super) async fn write_loop<S: SendFrames>(mut sender: S, mut outbound: mpsc::Receiver<ToClient>, edge: Arc<Edge>, liveness: Liveness) {
    let mut last_seen = liveness.activity.load(Ordering::Relaxed);
    let mut ping_sent = false;
    let mut check = tokio::time::interval(edge.config.c2s.ping_idle());
    check.tick().await;
    let sm = &edge.config.sm;
    let mut acks = AckRequests { unrequested: 0, since: None };
    loop {
        let ack_due = acks.since.map(|since| since + sm.request_ack_after());
        let next = tokio::select! {
            message = outbound.recv() => match message {
                Some(message) => message,
                // The session dropped our queue: this client read too slowly (see ClientLink).
                None => ToClient::Close(StreamError::new(StreamErrorCondition::PolicyViolation).with_text("too slow to read")),
            },
            _ = sleep_until(ack_due) => {
                acks = AckRequests { unrequested: 0, since: None };
                ToClient::Stanza(request_ack(), None)
            }
            _ = check.tick() => {
                let seen = liveness.activity.load(Ordering::Relaxed);
                if seen != last_seen {
                    last_seen = seen;
                    ping_sent = false;
                    check.reset_after(edge.config.c2s.ping_idle());
                    continue;
                }
                if ping_sent {
                    ToClient::Close(StreamError::new(StreamErrorCondition::ConnectionTimeout))
                } else {
                    ping_sent = true;
                    check.reset_after(edge.config.c2s.ping_timeout());
                    if liveness.requesting_acks.load(Ordering::Relaxed) { ToClient::Stanza(request_ack(), None) } else { ToClient::Stanza(ping(&liveness), None) }
                }
            }
        };
        let first = match Outgoing::from(next) {
            Outgoing::Stanza(bytes) => bytes,
            Outgoing::Drained(count) => {
                liveness.drained(count);
                continue;
            }
            Outgoing::Close(error) => return sender.close(error.as_ref()).await,
        };
        let Ok(second) = outbound.try_recv() else {
            // A lone stanza is written as it is (with an ack request when one is due).
            let mut lone = [first, Bytes::new()];
            let count = if acks.count(1, &liveness, sm.request_ack_every) {
                lone[1] = request_ack();
                2
            } else {
                1
            };
            if sender.send_stanzas(&lone[..count]).await.is_err() {
                return;
            }
            continue;
        };
        // What is already queued joins the write. The list lives only for the burst: an idle
        // connection holds no write buffer.
        let mut size = first.len();
        let mut burst = vec![first];
        let mut queued = Some(second);
        let mut closing = None;
        let mut drained = None;
        while let Some(message) = queued.take() {
            match Outgoing::from(message) {
                Outgoing::Stanza(bytes) => {
                    size += bytes.len();
                    burst.push(bytes);
                }
                Outgoing::Drained(count) => drained = Some(count),
                Outgoing::Close(error) => {
                    closing = Some(error);
                    break;
                }
            }
            if size < BURST_BYTES {
                queued = outbound.try_recv().ok();
            }
        }
        if acks.count(burst.len(), &liveness, sm.request_ack_every) {
            burst.push(request_ack());
        }
        if sender.send_stanzas(&burst).await.is_err() {
            return;
        }
        if let Some(count) = drained {
            liveness.drained(count);
        }
        if let Some(error) = closing {
            return sender.close(error.as_ref()).await;
        }
    }
}

impl AckRequests {
    /// Counts `written` more stanzas; true when an ack request is to follow them now.
    fn count(&mut self, written: usize, liveness: &Liveness, every: u32) -> bool {
        if !liveness.requesting_acks.load(Ordering::Relaxed) {
            return false;
        }
        self.unrequested = self.unrequested.saturating_add(u32::try_from(written).unwrap_or(u32::MAX));
        if self.unrequested >= every {
            *self = AckRequests { unrequested: 0, since: None };
            return true;
        }
        self.since.get_or_insert_with(Instant::now);
        false
    }
}

/// Sleeps until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// XEP-0198 `<r/>`.
fn request_ack() -> Bytes {
    Bytes::from(Element::new("r", ns::SM).to_bytes())
}

/// A queued message as the writer acts on it.
enum Outgoing {
    Stanza(Bytes),
    /// Answer the owner's ask once what came before is written.
    Drained(u64),
    /// Close the stream, with this error if any.
    Close(Option<StreamError>),
}

impl From<ToClient> for Outgoing {
    fn from(message: ToClient) -> Outgoing {
        match message {
            ToClient::Stanza(bytes, _) | ToClient::Enabled(bytes) => Outgoing::Stanza(bytes),
            ToClient::Close(error) => Outgoing::Close(Some(error)),
            ToClient::EndStream => Outgoing::Close(None),
            ToClient::DrainedAsk(count) => Outgoing::Drained(count),
            // The cluster gateway takes answers and sync requests before they reach a queue; one
            // here means the stream's state is unknown, so it ends rather than guesses.
            ToClient::Answer(_) | ToClient::Sync(_) => Outgoing::Close(Some(StreamError::new(StreamErrorCondition::InternalServerError))),
        }
    }
}

/// Our XEP-0199 ping to a client that has been silent for `ping_idle`.
fn ping(liveness: &Liveness) -> Bytes {
    let ping = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("id", liveness.ping_id.as_str())
        .with_attr("from", liveness.jid.domain())
        .with_attr("to", liveness.jid.as_str())
        .with_child(Element::new("ping", ns::PING));
    Bytes::from(ping.to_bytes())
}
