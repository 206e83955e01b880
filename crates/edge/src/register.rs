//! XEP-0077 in-band registration before authentication: off unless configured, only over TLS, and
//! at most one account per address per interval.

use std::net::IpAddr;
use std::time::Instant;

use starling_cluster::store::{ScramCredentials, StoreError, DEFAULT_SCRAM_ITERATIONS};
use starling_protocol::{ns, Jid, StanzaError, StanzaErrorCondition};
use starling_xml::{Element, RawElement};

use crate::listener::Edge;

/// Answers a `jabber:iq:register` IQ sent before authentication; returns the reply bytes.
pub async fn handle(edge: &Edge, address: IpAddr, secure: bool, iq: &RawElement) -> Vec<u8> {
    let id = iq.attr("id").unwrap_or_default().to_owned();
    let reply = |payload: Result<Option<Element>, StanzaError>| {
        let mut out = Element::new("iq", ns::CLIENT).with_attr("id", id.as_str());
        match payload {
            Ok(payload) => {
                out.set_attr("type", "result");
                if let Some(payload) = payload {
                    out.push_child(payload);
                }
            }
            Err(error) => {
                out.set_attr("type", "error");
                out.push_child(error.to_element());
            }
        }
        let mut bytes = Vec::new();
        out.write_in_ns(&mut bytes, ns::CLIENT);
        bytes
    };
    if !edge.config.registration_enabled || !secure {
        return reply(Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable)));
    }
    let Ok(element) = Element::parse(&iq.rewrite(&[])) else {
        return reply(Err(StanzaError::new(StanzaErrorCondition::BadRequest)));
    };
    let Some(query) = element.get_child("query", ns::REGISTER) else {
        return reply(Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable)));
    };
    match element.attr("type") {
        Some("get") => reply(Ok(Some(
            Element::new("query", ns::REGISTER)
                .with_child(Element::new("instructions", ns::REGISTER).with_text("Choose a username and password."))
                .with_child(Element::new("username", ns::REGISTER))
                .with_child(Element::new("password", ns::REGISTER)),
        ))),
        Some("set") => reply(register(edge, address, query).await.map(|()| None)),
        _ => reply(Err(StanzaError::new(StanzaErrorCondition::BadRequest))),
    }
}

async fn register(edge: &Edge, address: IpAddr, query: &Element) -> Result<(), StanzaError> {
    let username = query.get_child("username", ns::REGISTER).map(|e| e.text()).unwrap_or_default();
    let password = query.get_child("password", ns::REGISTER).map(|e| e.text()).unwrap_or_default();
    if username.is_empty() || password.is_empty() {
        return Err(StanzaError::new(StanzaErrorCondition::NotAcceptable));
    }
    let Ok(jid) = Jid::from_parts(Some(&username), edge.config.domain.as_str(), None) else {
        return Err(StanzaError::new(StanzaErrorCondition::JidMalformed));
    };
    {
        let mut recent = edge.registrations.lock().unwrap_or_else(|p| p.into_inner());
        let interval = edge.config.registration_interval;
        if recent.get(&address).is_some_and(|at| at.elapsed() < interval) {
            return Err(StanzaError::new(StanzaErrorCondition::ResourceConstraint).with_text("registering too fast; try again later"));
        }
        recent.retain(|_, at| at.elapsed() < interval);
        recent.insert(address, Instant::now());
    }
    let credentials = ScramCredentials::derive(&password, DEFAULT_SCRAM_ITERATIONS);
    match edge.accounts.create(jid.as_str(), credentials).await {
        Ok(()) => {
            tracing::info!(%jid, %address, "account registered in-band");
            Ok(())
        }
        Err(StoreError::Conflict) => Err(StanzaError::new(StanzaErrorCondition::Conflict)),
        Err(error) => {
            tracing::warn!(%error, "registration failed");
            Err(StanzaError::new(StanzaErrorCondition::InternalServerError))
        }
    }
}
