//! XEP-0388 SASL2, offered beside RFC 6120 SASL with the same mechanisms: `<authenticate/>` with
//! an `<initial-response/>`, challenges and responses in `urn:xmpp:sasl:2`, and on success the
//! features of the authenticated stream at once, without a stream restart. With it, XEP-0440
//! says which channel bindings the `-PLUS` mechanisms can use. A `<user-agent/>` is accepted (FAST
//! tokens will be bound to its id); inline Bind2 and stream resumption are not offered yet.

use async_trait::async_trait;
use starling_protocol::ns;
use starling_xml::Element;

use super::authenticate::{self, decode_text, Profile};
use super::{Negotiation, NegotiationStep, Next, Received};
use crate::end::End;

pub(super) struct Sasl2;

#[async_trait]
impl NegotiationStep for Sasl2 {
    fn offer(&self, negotiation: &Negotiation<'_>, features: &mut Element) {
        let Some(authentication) = authenticate::offered(negotiation, "authentication", ns::SASL2) else { return };
        features.push_child(authentication);
        if negotiation.channel_binding.is_some() {
            let binding = Element::new("channel-binding", ns::SASL_CHANNEL_BINDING).with_attr("type", "tls-exporter");
            features.push_child(Element::new("sasl-channel-binding", ns::SASL_CHANNEL_BINDING).with_child(binding));
        }
    }

    fn takes(&self, received: &Received, _: &Negotiation<'_>) -> bool {
        received.is("authenticate", ns::SASL2)
    }

    async fn handle(&self, received: Received, negotiation: &mut Negotiation<'_>) -> Result<Next, End> {
        // Small and rare: parsed whole for its children.
        let Ok(authenticate) = Element::parse(&received.element.rewrite(&[])) else {
            return authenticate::start(Profile::Sasl2, "", None, negotiation).await;
        };
        let mechanism = authenticate.attr("mechanism").unwrap_or_default();
        // No initial response is an empty one (XEP-0388 §2.2).
        let initial = match authenticate.get_child("initial-response", ns::SASL2) {
            Some(response) => decode_text(&response.text()),
            None => Some(Vec::new()),
        };
        authenticate::start(Profile::Sasl2, mechanism, initial, negotiation).await
    }
}
