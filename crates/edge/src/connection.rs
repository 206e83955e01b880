//! One client connection, from the first byte to the close: the framing starts on the accepted
//! transport, negotiation runs up to a bound resource (RFC 6120 §4–§7), then the bound loop serves
//! the session. Generic over the [`Framing`], so each transport is served by the same code.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::bound;
use crate::edge::Edge;
use crate::framing::Framing;
use crate::negotiation;

/// Serves one connection. Spawned as it is (see the listener): everything large is created
/// inside, not passed in, since an async fn keeps its arguments for its whole life.
pub(crate) async fn run<F: Framing>(edge: Arc<Edge>, id: u64, peer: SocketAddr, transport: F::Transport) {
    let _open = OpenConnection::count(&edge);
    let Some(mut framing) = F::start(transport, &edge).await else { return };
    // Boxed: negotiation's state (TLS handshake, SASL) is large and short-lived; inline, it would
    // size the task of every idle connection for its whole life.
    let Some(bound) = Box::pin(negotiation::negotiate(&edge, id, peer, &mut framing)).await else { return };
    let (receiver, sender) = framing.split();
    bound::serve(edge, receiver, sender, bound).await;
}

/// Counts a connection in `starling_connections_open` for as long as it lives, however it ends.
struct OpenConnection(Arc<Edge>);

impl OpenConnection {
    fn count(edge: &Arc<Edge>) -> OpenConnection {
        edge.metrics.connections_open.inc();
        OpenConnection(edge.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.metrics.connections_open.dec();
    }
}
