//! The hand-off between a client connection (edge) and the session layer: the edge binds a
//! resource, submits the client's stanzas, and receives what the session layer sends back through
//! a bounded queue. In one process the session layer is the local actor system; in a cluster it
//! is a remote session node reached through the bus.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use starling_protocol::{Jid, Stanza, StreamError};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::hold::{Hold, LinkHolds};

/// What the session layer sends down to one client connection.
#[derive(Debug, Clone)]
pub enum ToClient {
    /// Bytes to write as they are (a complete stanza).
    Stanza(Bytes),
    /// Close the stream with this error (e.g. `conflict` when another login took the resource).
    Close(StreamError),
    /// Close the stream without an error (the client closed its side).
    EndStream,
}

/// Stanzas queued toward one client by default before it counts as too slow (`[c2s]
/// client_queue`): the edge sizes its connection queues with it, a session node its links to
/// connections on edges.
pub const DEFAULT_CLIENT_QUEUE: usize = 1024;

/// The way back to one client connection. The queue is bounded: a client that reads slower than it
/// is written to fills it, and the session layer then closes that connection (`policy-violation`)
/// instead of buffering without end.
#[derive(Clone)]
pub struct ClientLink {
    /// Unique per process; tells a stale unbind from the current connection's.
    pub connection_id: u64,
    /// Read by the edge (or, in a cluster, by the carrier to the edge's inbox); the session layer
    /// queues through [`try_send`](Self::try_send).
    pub sender: mpsc::Sender<ToClient>,
    /// In a cluster: the holds of the records whose stanzas on this link are not yet on the
    /// edge's inbox.
    holds: Option<Arc<LinkHolds>>,
}

impl ClientLink {
    pub fn new(connection_id: u64, sender: mpsc::Sender<ToClient>) -> ClientLink {
        ClientLink { connection_id, sender, holds: None }
    }

    /// A link whose carrier keeps what `holds` counts until the items are durable.
    pub fn held(connection_id: u64, sender: mpsc::Sender<ToClient>, holds: Arc<LinkHolds>) -> ClientLink {
        ClientLink { connection_id, sender, holds: Some(holds) }
    }

    /// Queues `message` without waiting. In a cluster, `hold` (the record being handled) stays
    /// due until the carrier has the message on the edge's inbox.
    pub fn try_send(&self, message: ToClient, hold: Option<&Hold>) -> Result<(), TrySendError<ToClient>> {
        match &self.holds {
            Some(holds) => holds.queue(hold, || self.sender.try_send(message)),
            None => self.sender.try_send(message),
        }
    }
}

impl ClientLink {
    /// Gives the connection up as too slow to read. Dropping a local link closes the queue the
    /// edge reads, which ends the stream; a link to another node's edge is told so explicitly
    /// by its carrier once the queue drains.
    pub fn abandon(self) {
        if let Some(holds) = &self.holds {
            holds.abandon();
        }
    }
}

impl std::fmt::Debug for ClientLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLink").field("connection_id", &self.connection_id).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GatewayError {
    /// The session is gone (its owner stopped or the resource was taken over).
    #[error("session closed")]
    Closed,
    /// The session layer cannot take the request now; the client may retry.
    #[error("session layer unavailable: {0}")]
    Unavailable(String),
}

/// A resource name for a client that asked the server to choose (RFC 6120 §7.6): unique in this
/// process by a counter, and across processes by a random suffix.
pub fn server_chosen_resource() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("starling-{n:x}{:08x}", rand::random::<u32>())
}

/// Binds client resources to sessions.
#[async_trait]
pub trait Gateway: Send + Sync + 'static {
    /// Binds `resource` (or a server-chosen one when `None`) for the bare JID `user`. An existing
    /// session with the same resource is closed with `conflict` (RFC 6120 §7.7.2.2, "override").
    async fn bind(&self, user: Jid, resource: Option<String>, link: ClientLink) -> Result<Box<dyn BoundSession>, GatewayError>;
}

/// One bound resource, as seen from its connection.
#[async_trait]
pub trait BoundSession: Send {
    /// The full JID that was bound.
    fn jid(&self) -> &Jid;

    /// Hands over a stanza the client sent (its `from` already stamped). Waits when the session is
    /// busy: that wait is the backpressure that slows a fast sender down.
    async fn submit(&mut self, stanza: Stanza, received: Instant) -> Result<(), GatewayError>;

    /// The connection ended (cleanly or not): the resource goes unavailable.
    async fn unbind(self: Box<Self>);
}
