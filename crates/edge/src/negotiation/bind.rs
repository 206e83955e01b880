//! Resource binding (RFC 6120 §7) and the legacy session IQ, answered as a no-op since the
//! session exists once bound (RFC 3921 §3, advertised as optional). Binding hands the client to
//! the session layer and ends negotiation. Offered after authentication, together with the
//! features that tell the client what the session layer supports.

use async_trait::async_trait;
use starling_cluster::gateway::{Binding, ClientLink};
use starling_protocol::{ns, Jid, StanzaError, StanzaErrorCondition};
use starling_xml::Element;
use tokio::sync::mpsc;

use super::{Negotiation, NegotiationStep, Next, Received};
use crate::bound::Bound;
use crate::end::End;

pub(super) struct BindResource;

#[async_trait]
impl NegotiationStep for BindResource {
    fn offer(&self, negotiation: &Negotiation<'_>, features: &mut Element) {
        if negotiation.authenticated.is_none() {
            return;
        }
        let config = &negotiation.edge.config;
        features.push_child(Element::new("bind", ns::BIND));
        features.push_child(Element::new("session", ns::SESSION).with_child(Element::new("optional", ns::SESSION)));
        // Informational: roster versioning and pre-approval (RFC 6121 §2.6, §3.4) and the
        // server's caps (XEP-0115 §6.3) are served by the session layer once bound.
        features.push_child(Element::new("ver", ns::ROSTER_VER));
        features.push_child(Element::new("sub", ns::PRE_APPROVAL));
        for feature in negotiation.edge.nonzas.features() {
            features.push_child(feature);
        }
        features.push_child(
            Element::new("c", ns::CAPS)
                .with_attr("hash", "sha-1")
                .with_attr("node", config.caps_node.as_str())
                .with_attr("ver", config.caps_ver.as_str()),
        );
    }

    fn takes(&self, received: &Received, negotiation: &Negotiation<'_>) -> bool {
        negotiation.authenticated.is_some() && (received.is_iq_with("bind", ns::BIND) || received.is_iq_with("session", ns::SESSION))
    }

    async fn handle(&self, received: Received, negotiation: &mut Negotiation<'_>) -> Result<Next, End> {
        let iq = &received.element;
        let id = iq.attr("id").unwrap_or_default();
        if received.is_iq_with("session", ns::SESSION) {
            negotiation.reply(Element::new("iq", ns::CLIENT).with_attr("type", "result").with_attr("id", id));
            return Ok(Next::Negotiate);
        }
        if iq.attr("type") != Some("set") {
            negotiation.reply(iq_error(id, StanzaErrorCondition::BadRequest));
            return Ok(Next::Negotiate);
        }
        let requested = received
            .iq_payload()
            .and_then(|bind| bind.get_child("resource", ns::BIND))
            .map(Element::text)
            .filter(|resource| !resource.is_empty());
        let user = negotiation.user()?;
        if let Some(resource) = &requested
            && user.with_resource(resource).is_err()
        {
            negotiation.reply(iq_error(id, StanzaErrorCondition::BadRequest));
            return Ok(Next::Negotiate);
        }
        let Some((bound, _)) = bind(negotiation, user, requested, Vec::new()).await else {
            negotiation.reply(iq_error(id, StanzaErrorCondition::InternalServerError));
            return Ok(Next::Negotiate);
        };
        let jid = Element::new("jid", ns::BIND).with_text(bound.session.jid().as_str());
        negotiation.reply(
            Element::new("iq", ns::CLIENT)
                .with_attr("type", "result")
                .with_attr("id", id)
                .with_child(Element::new("bind", ns::BIND).with_child(jid)),
        );
        Ok(Next::Bound(bound))
    }
}

/// Binds `resource` (server-chosen when `None`) of `user` to this connection, applying Bind2's
/// `inline` requests (XEP-0386); returns the bound stream and the answers to those requests, or
/// `None` when the session layer could not bind.
pub(super) async fn bind(negotiation: &Negotiation<'_>, user: Jid, resource: Option<String>, inline: Vec<Element>) -> Option<(Bound, Vec<Element>)> {
    let edge = negotiation.edge;
    // The one queue toward this client, bounded by `client_queue` (see `ClientLink`).
    let (sender, outbound) = mpsc::channel(edge.config.c2s.client_queue);
    let own_end = sender.downgrade();
    let Binding { session, inline_answers } = match edge.gateway.bind(user, resource, ClientLink::new(negotiation.connection_id, sender), inline).await {
        Ok(binding) => binding,
        Err(error) => {
            tracing::warn!(%error, "bind failed");
            return None;
        }
    };
    // Stream management enabled inline counts from zero on this stream.
    let sm_handled = inline_answers.iter().any(|answer| answer.is("enabled", ns::SM)).then_some(0);
    Some((Bound { session, outbound, own_end, sm_handled }, inline_answers))
}

fn iq_error(id: &str, condition: StanzaErrorCondition) -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "error")
        .with_attr("id", id)
        .with_child(StanzaError::new(condition).to_element())
}
