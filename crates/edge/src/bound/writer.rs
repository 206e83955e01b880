//! The writer task of a bound stream: it owns the sending half, writes what the session layer
//! queues — a burst in one write — and pings a silent client (XEP-0199), closing a dead one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use starling_cluster::gateway::ToClient;
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
}

/// Writes what the session queues; pings a silent client and closes a dead one.
pub(super) async fn write_loop<S: SendFrames>(mut sender: S, mut outbound: mpsc::Receiver<ToClient>, edge: Arc<Edge>, liveness: Liveness) {
    let mut last_seen = liveness.activity.load(Ordering::Relaxed);
    let mut ping_sent = false;
    let mut check = tokio::time::interval(edge.config.c2s.ping_idle());
    check.tick().await;
    loop {
        let next = tokio::select! {
            message = outbound.recv() => match message {
                Some(message) => message,
                // The session dropped our queue: this client read too slowly (see ClientLink).
                None => ToClient::Close(StreamError::new(StreamErrorCondition::PolicyViolation).with_text("too slow to read")),
            },
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
                    ToClient::Stanza(ping(&edge, &liveness))
                }
            }
        };
        let first = match Outgoing::from(next) {
            Outgoing::Stanza(bytes) => bytes,
            Outgoing::Close(error) => return sender.close(error.as_ref()).await,
        };
        let Ok(second) = outbound.try_recv() else {
            // A lone stanza is written as it is.
            if sender.send_stanzas(std::slice::from_ref(&first)).await.is_err() {
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
        while let Some(message) = queued.take() {
            match Outgoing::from(message) {
                Outgoing::Stanza(bytes) => {
                    size += bytes.len();
                    burst.push(bytes);
                }
                Outgoing::Close(error) => {
                    closing = Some(error);
                    break;
                }
            }
            if size < BURST_BYTES {
                queued = outbound.try_recv().ok();
            }
        }
        if sender.send_stanzas(&burst).await.is_err() {
            return;
        }
        if let Some(error) = closing {
            return sender.close(error.as_ref()).await;
        }
    }
}

/// A queued message as the writer acts on it.
enum Outgoing {
    Stanza(Bytes),
    /// Close the stream, with this error if any.
    Close(Option<StreamError>),
}

impl From<ToClient> for Outgoing {
    fn from(message: ToClient) -> Outgoing {
        match message {
            ToClient::Stanza(bytes) => Outgoing::Stanza(bytes),
            ToClient::Close(error) => Outgoing::Close(Some(error)),
            ToClient::EndStream => Outgoing::Close(None),
        }
    }
}

/// Our XEP-0199 ping to a client that has been silent for `ping_idle`.
fn ping(edge: &Edge, liveness: &Liveness) -> Bytes {
    let ping = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("id", liveness.ping_id.as_str())
        .with_attr("from", edge.config.domain.as_str())
        .with_attr("to", liveness.jid.as_str())
        .with_child(Element::new("ping", ns::PING));
    Bytes::from(ping.to_bytes())
}
