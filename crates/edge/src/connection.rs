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
pub(crate) async fn run<F: Framing>(edge: Arc<Edge>, id: u64, peer: SocketAddr, transport: F::Transport, admitted: Admitted) {
    let Some(mut framing) = F::start(transport, &edge).await else { return };
    // Boxed: negotiation's state (TLS handshake, SASL) is large and short-lived; inline, it would
    // size the task of every idle connection for its whole life.
    // A draining edge cuts streams still negotiating: nothing is bound on them yet.
    let negotiated = tokio::select! {
        bound = Box::pin(negotiation::negotiate(&edge, id, peer, &mut framing, admitted.refused)) => bound,
        () = edge.drained() => None,
    };
    let Some(bound) = negotiated else { return };
    let (receiver, sender) = framing.split();
    bound::serve(edge, receiver, sender, bound).await;
}

/// A client connection as the per-address limits saw it: counted in `starling_connections_open`,
/// and against its address when they admitted it, for as long as it lives, however it ends; or
/// why they refused it (the stream then ends with that, right after our header).
pub(crate) struct Admitted {
    edge: Arc<Edge>,
    counted_against: Option<IpAddr>,
    pub(crate) refused: Option<&'static str>,
}

impl Admitted {
    pub(crate) fn check(edge: &Arc<Edge>, address: IpAddr) -> Admitted {
        let admitted = edge.admission.admit(address);
        edge.metrics.connections_open.inc();
        Admitted { edge: edge.clone(), counted_against: admitted.is_ok().then_some(address), refused: admitted.err() }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.edge.metrics.connections_open.dec();
        if let Some(address) = self.counted_against {
            self.edge.admission.release(address);
        }
    }
}
