//! STARTTLS (RFC 6120 §5): offered before authentication on a transport the framing can upgrade,
//! required unless the configuration allows authenticating without TLS.

use async_trait::async_trait;
use starling_protocol::ns;
use starling_xml::Element;

use super::{Negotiation, NegotiationStep, Next, Received};
use crate::end::End;

pub(super) struct StartTls;

#[async_trait]
impl NegotiationStep for StartTls {
    fn offer(&self, negotiation: &Negotiation<'_>, features: &mut Element) {
        if !negotiation.can_start_tls || negotiation.authenticated.is_some() {
            return;
        }
        let mut starttls = Element::new("starttls", ns::TLS);
        if negotiation.edge.config.c2s.require_tls {
            starttls.push_child(Element::new("required", ns::TLS));
        }
        features.push_child(starttls);
    }

    fn takes(&self, received: &Received, _: &Negotiation<'_>) -> bool {
        received.is("starttls", ns::TLS)
    }

    async fn handle(&self, _: Received, negotiation: &mut Negotiation<'_>) -> Result<Next, End> {
        // RFC 6120 §5.4.2.2: a request we cannot honour gets <failure/> and the stream is closed.
        if !negotiation.can_start_tls || negotiation.authenticated.is_some() {
            negotiation.reply(Element::new("failure", ns::TLS));
            return Err(End::Closed);
        }
        negotiation.reply(Element::new("proceed", ns::TLS));
        Ok(Next::StartTls)
    }
}
