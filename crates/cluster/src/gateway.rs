//! The hand-off between a client connection (edge) and the session layer: the edge binds a
//! resource, submits the client's stanzas, and receives what the session layer sends back through
//! a bounded queue. In one process the session layer is the local actor system; in a cluster it
//! is a remote session node reached through the bus.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use starling_protocol::{Jid, Stanza, StreamError};
use tokio::sync::mpsc;

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

/// The way back to one client connection. The queue is bounded: a client that reads slower than it
/// is written to fills it, and the session layer then closes that connection (`policy-violation`)
/// instead of buffering without end.
#[derive(Debug, Clone)]
pub struct ClientLink {
    /// Unique per process; tells a stale unbind from the current connection's.
    pub connection_id: u64,
    pub sender: mpsc::Sender<ToClient>,
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
