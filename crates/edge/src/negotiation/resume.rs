//! XEP-0198 stream management during negotiation: the `<sm/>` feature offered after
//! authentication, resumption of a session whose stream broke (`<resume/>`, instead of binding),
//! and `<enable/>` sent before binding (refused: it belongs to a bound stream).

use async_trait::async_trait;
use starling_cluster::gateway::{ClientLink, ResumeFailed, Resumed};
use starling_protocol::{ns, Jid};
use starling_xml::Element;
use tokio::sync::mpsc;

use super::{Negotiation, NegotiationStep, Next, Received};
use crate::bound::{failed, Bound};
use crate::end::End;

pub(super) struct StreamManagement;

/// Whether stream management can be offered on this stream.
pub(super) fn offered(negotiation: &Negotiation<'_>) -> bool {
    let edge = negotiation.edge;
    negotiation.authenticated.is_some() && edge.config.sm.enabled && edge.gateway.supports_stream_management()
}

#[async_trait]
impl NegotiationStep for StreamManagement {
    fn offer(&self, negotiation: &Negotiation<'_>, features: &mut Element) {
        if offered(negotiation) {
            features.push_child(Element::new("sm", ns::SM));
        }
    }

    fn takes(&self, received: &Received, negotiation: &Negotiation<'_>) -> bool {
        negotiation.authenticated.is_some() && (received.is("resume", ns::SM) || received.is("enable", ns::SM))
    }

    async fn handle(&self, received: Received, negotiation: &mut Negotiation<'_>) -> Result<Next, End> {
        if received.is("enable", ns::SM) {
            // XEP-0198 §3: enabling comes after binding.
            negotiation.reply(failed("unexpected-request"));
            return Ok(Next::Negotiate);
        }
        if !offered(negotiation) {
            negotiation.reply(failed("feature-not-implemented"));
            return Ok(Next::Negotiate);
        }
        let resume = &received.element;
        let (Some(previd), Some(Ok(h))) = (resume.attr("previd"), resume.attr("h").map(str::parse::<u32>)) else {
            negotiation.reply(failed("bad-request"));
            return Ok(Next::Negotiate);
        };
        let user = negotiation.user()?;
        match resume_session(negotiation, user, previd, h).await {
            Ok((bound, resumed)) => {
                negotiation.reply(resumed);
                Ok(Next::Bound(bound))
            }
            Err(failure) => {
                negotiation.reply(failure);
                Ok(Next::Negotiate)
            }
        }
    }
}

/// Resumes `user`'s session `previd` on this connection, the client having handled `h` of its
/// stanzas: the bound stream and `<resumed/>` (written before the retransmissions the session
/// queued), or `<failed/>`.
pub(super) async fn resume_session(negotiation: &Negotiation<'_>, user: Jid, previd: &str, h: u32) -> Result<(Bound, Element), Element> {
    let edge = negotiation.edge;
    // Room for everything unacknowledged, retransmitted at once, on top of the usual queue.
    let (sender, outbound) = mpsc::channel(edge.config.c2s.client_queue + edge.config.sm.max_unacked);
    let own_end = sender.downgrade();
    match edge.gateway.resume(user, previd, h, ClientLink::new(negotiation.connection_id, sender)).await {
        Ok(Resumed { session, handled }) => {
            let resumed = Element::new("resumed", ns::SM).with_attr("previd", previd).with_attr("h", handled.to_string());
            Ok((Bound { session, outbound, own_end, sm_handled: Some(handled) }, resumed))
        }
        Err(ResumeFailed { handled }) => {
            let mut failure = failed("item-not-found");
            if let Some(handled) = handled {
                failure.set_attr("h", handled.to_string());
            }
            Err(failure)
        }
    }
}
