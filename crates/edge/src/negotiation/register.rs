//! XEP-0077 in-band registration before authentication: off unless configured, only over TLS, and
//! at most one account per address per interval.

use std::net::IpAddr;

use async_trait::async_trait;
use starling_cluster::store::{ScramCredentials, StoreError, DEFAULT_SCRAM_ITERATIONS};
use starling_protocol::payload::RegisterQuery;
use starling_protocol::{ns, ErrorType, Jid, StanzaError, StanzaErrorCondition};
use starling_xml::Element;

use super::{Negotiation, NegotiationStep, Next, Received};
use crate::edge::Edge;
use crate::end::End;

pub(super) struct Register;

#[async_trait]
impl NegotiationStep for Register {
    fn offer(&self, negotiation: &Negotiation<'_>, features: &mut Element) {
        let config = &negotiation.edge.config;
        let allowed_here = negotiation.secure || !config.c2s.require_tls;
        if config.registration_on(&negotiation.host) && allowed_here && negotiation.authenticated.is_none() {
            features.push_child(Element::new("register", ns::REGISTER_FEATURE));
        }
    }

    fn takes(&self, received: &Received, negotiation: &Negotiation<'_>) -> bool {
        negotiation.authenticated.is_none() && received.is_iq_with("query", ns::REGISTER)
    }

    async fn handle(&self, received: Received, negotiation: &mut Negotiation<'_>) -> Result<Next, End> {
        let edge = negotiation.edge;
        let payload = if !edge.config.registration_on(&negotiation.host) || !negotiation.secure {
            Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable))
        } else {
            match received.element.attr("type") {
                Some("get") => Ok(Some(form())),
                Some("set") => register(edge, &negotiation.host, negotiation.peer.ip(), &received).await.map(|()| None),
                _ => Err(StanzaError::new(StanzaErrorCondition::BadRequest)),
            }
        };
        negotiation.reply(crate::iq::reply(received.element.attr("id").unwrap_or_default(), payload));
        Ok(Next::Negotiate)
    }
}

/// The registration form: the fields this server asks for (XEP-0077 §3.1).
fn form() -> Element {
    let asked = Some(String::new());
    let query = RegisterQuery {
        instructions: Some("Choose a username and password.".into()),
        username: asked.clone(),
        password: asked,
        ..RegisterQuery::default()
    };
    query.into()
}


async fn register(edge: &Edge, host: &Jid, address: IpAddr, received: &Received) -> Result<(), StanzaError> {
    let query = match received.iq_payload().map(RegisterQuery::try_from) {
        Some(Ok(query)) => query,
        Some(Err(error)) => return Err(StanzaError::new(error.condition())),
        None => return Err(StanzaError::new(StanzaErrorCondition::BadRequest)),
    };
    let (username, password) = (query.username.unwrap_or_default(), query.password.unwrap_or_default());
    if username.is_empty() || password.is_empty() {
        return Err(StanzaError::new(StanzaErrorCondition::NotAcceptable));
    }
    let Ok(jid) = Jid::from_parts(Some(&username), host.as_str(), None) else {
        return Err(StanzaError::new(StanzaErrorCondition::JidMalformed));
    };
    let counts = edge.throttle.counts();
    let key = registration_key(address);
    match counts.get(&[&key]).await {
        Ok(registered) if registered[0] >= edge.config.registration.max_per_address => {
            return Err(StanzaError::new(StanzaErrorCondition::ResourceConstraint).with_text("too many accounts registered from your address; try again later"));
        }
        Ok(_) => {}
        Err(error) => {
            // Closed, not open: an outage must not become a window for mass registration.
            tracing::warn!(%error, "registration counts unreadable; refusing registration");
            return Err(StanzaError::new(StanzaErrorCondition::InternalServerError).with_type(ErrorType::Wait));
        }
    }
    let credentials = ScramCredentials::derive(&password, DEFAULT_SCRAM_ITERATIONS);
    match edge.accounts.create(jid.as_str(), credentials).await {
        Ok(()) => {
            tracing::info!(%jid, %address, "account registered in-band");
            // Only registrations that happened count: a name already taken costs nothing.
            if let Err(error) = counts.add(&key, edge.config.registration.interval()).await {
                tracing::warn!(%error, "registration not counted");
            }
            Ok(())
        }
        Err(StoreError::Conflict) => Err(StanzaError::new(StanzaErrorCondition::Conflict)),
        Err(error) => {
            tracing::warn!(%error, "registration failed");
            Err(StanzaError::new(StanzaErrorCondition::InternalServerError))
        }
    }
}

/// What registrations are counted under: the address, or an IPv6 address's /64 (one host's
/// share of a network, which it can fill with addresses at will).
fn registration_key(address: IpAddr) -> String {
    match address.to_canonical() {
        IpAddr::V4(v4) => format!("register:{v4}"),
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            format!("register:{:x}:{:x}:{:x}:{:x}::/64", segments[0], segments[1], segments[2], segments[3])
        }
    }
}
