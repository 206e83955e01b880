//! One client connection, from the first byte to the close: the framing starts on the accepted
//! transport, negotiation runs up to a bound resource (RFC 6120 §4–§7), then the bound loop serves
//! the session. Generic over the [`Framing`], so each transport is served by the same code.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::bound;
use crate::edge::Edge;
use crate::framing::Framing;
use crate::negotiation;

/// Serves one connection. Spawned as it is (see the listener): everything large is created
/// inside, not passed in, since an async fn keeps its arguments for its whole life.
pub(crate) async fn run<F: Framing>(edge: Arc<Edge>, id: u64, peer: SocketAddr, transport: F::Transport) {
    let admitted = edge.admission.admit(peer.ip());
    let _open = OpenConnection::count(&edge, admitted.is_ok().then_some(peer.ip()));
    let Some(mut framing) = F::start(transport, &edge).await else { return };
    // Boxed: negotiation's state (TLS handshake, SASL) is large and short-lived; inline, it would
    // size the task of every idle connection for its whole life.
    let Some(bound) = Box::pin(negotiation::negotiate(&edge, id, peer, &mut framing, admitted.err())).await else { return };
    let (receiver, sender) = framing.split();
    bound::serve(edge, receiver, sender, bound).await;
}

/// Counts a connection in `starling_connections_open`, and against its address when it was
/// admitted, for as long as it lives, however it ends.
struct OpenConnection(Arc<Edge>, Option<IpAddr>);

impl OpenConnection {
    fn count(edge: &Arc<Edge>, admitted_from: Option<IpAddr>) -> OpenConnection {
        edge.metrics.connections_open.inc();
        OpenConnection(edge.clone(), admitted_from)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.metrics.connections_open.dec();
        if let Some(address) = self.1 {
            self.0.admission.release(address);
        }
    }
}
