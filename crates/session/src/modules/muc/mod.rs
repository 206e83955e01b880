//! XEP-0045 multi-user chat: a service at `conference.DOMAIN` (`[muc]`) whose rooms are service
//! entities — one actor per room, partitioned across a cluster by the room's JID like a user —
//! and whose domain answers service discovery with the public rooms listed in the store.
//!
//! A room (`room/`): creation locked until configured (§10.1), the configuration form, joining
//! with history from its archive, presence with status codes, roles and affiliations with their
//! admin IQs, groupchat with the room's stanza-ids, the subject, private messages, invitations,
//! self-ping (XEP-0410), destruction, XEP-0313 on the room; stored (persistent rooms, and temporary
//! ones while occupied) and, in a cluster, with its occupants in the registry so it survives its
//! node. The user's side (`joined`): how many rooms a user is in and joins.

mod form;
mod joined;
mod room;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use starling_protocol::payload::{DiscoInfoResult, DiscoItem, DiscoItemsResult, Identity};
use starling_protocol::{ns, Jid, Stanza, StanzaError, StanzaErrorCondition, StanzaKind};
use starling_xml::Element;

use crate::config::MucConfig;
use crate::registry::Registrar;
use crate::service::{ServiceContext, ServiceEntity, ServiceKind};

pub(super) fn register(r: &mut Registrar) {
    if !r.config.muc.enabled {
        return;
    }
    let configured = &r.config.muc.domain;
    let domain = if configured.is_empty() { format!("conference.{}", r.domain) } else { configured.clone() };
    match Jid::new(&domain) {
        Ok(domain) if domain.node().is_none() && domain.is_bare() => {
            r.service(Arc::new(Conference { domain, config: Arc::new(r.config.muc.clone()) }));
            joined::register(r);
        }
        _ => tracing::error!(%domain, "[muc] domain is not a domain; multi-user chat is off"),
    }
}

struct Conference {
    domain: Jid,
    config: Arc<MucConfig>,
}

impl ServiceKind for Conference {
    fn domain(&self) -> &Jid {
        &self.domain
    }

    fn entity(&self, jid: &Jid) -> Box<dyn ServiceEntity> {
        if *jid == self.domain { Box::new(Service) } else { Box::new(room::Room::new(jid.clone(), self.config.clone())) }
    }
}

/// The service's own JID: what it is (§6.1) and which rooms it has (§6.3): the public rooms
/// listed in the store, so every node of a cluster gives the same list.
struct Service;

impl ServiceEntity for Service {
    fn handle<'a>(&'a mut self, context: &'a ServiceContext, stanza: Stanza, _: Instant) -> Pin<Box<dyn Future<Output = ()> + 'a>> {
        Box::pin(async move {
            if stanza.kind != StanzaKind::Iq || !stanza.is_iq_request() {
                if stanza.kind == StanzaKind::Message {
                    refuse(context, &stanza, StanzaErrorCondition::ServiceUnavailable);
                }
                return;
            }
            match request_payload(&stanza) {
                Some(query) if stanza.type_is("get") && query.is("query", ns::DISCO_INFO) => {
                    let info = DiscoInfoResult {
                        identities: vec![Identity::new("conference", "text", Some("Chatrooms"))],
                        features: [ns::DISCO_INFO, ns::DISCO_ITEMS, ns::MUC].map(str::to_owned).to_vec(),
                        ..DiscoInfoResult::default()
                    };
                    context.answer(&stanza, Some((&info).into()));
                }
                Some(query) if stanza.type_is("get") && query.is("query", ns::DISCO_ITEMS) => match context.services.store.rooms.listed(context.jid.as_str()).await {
                    Ok(listed) => {
                        let items = listed
                            .into_iter()
                            .filter_map(|(room, name)| Some(DiscoItem { jid: Jid::new(&room).ok()?, node: None, name: (!name.is_empty()).then_some(name) }))
                            .collect();
                        context.answer(&stanza, Some((&DiscoItemsResult { items, ..DiscoItemsResult::default() }).into()));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not read the public rooms");
                        refuse(context, &stanza, StanzaErrorCondition::InternalServerError);
                    }
                },
                _ => refuse(context, &stanza, StanzaErrorCondition::ServiceUnavailable),
            }
        })
    }

    fn is_idle(&self) -> bool {
        true
    }
}

/// The payload of an IQ request.
fn request_payload(stanza: &Stanza) -> Option<Element> {
    stanza.element().ok()?.into_children().next()
}

/// Answers a stanza with an error from where it was sent.
fn refuse(context: &ServiceContext, stanza: &Stanza, condition: StanzaErrorCondition) {
    context.refuse(stanza, &StanzaError::new(condition));
}

/// What an occupant may send now (a token bucket refilled at `[muc] occupant_rate` a second up to
/// `occupant_burst`), or how many rooms a user may join now (`join_rate`, `join_burst`). Our own,
/// a few lines: it lives in an actor's single-threaded state beside what it limits, where a
/// limiter crate would keep a second, locked map.
#[derive(Clone)]
pub(super) struct Allowance {
    tokens: f64,
    at: Instant,
}

impl Allowance {
    pub(super) fn new(burst: u32) -> Allowance {
        Allowance { tokens: f64::from(burst), at: Instant::now() }
    }

    /// Takes one message's worth if there is one (always, when `rate` is 0: no limit).
    pub(super) fn take(&mut self, rate: f64, burst: u32, now: Instant) -> bool {
        if rate <= 0.0 {
            return true;
        }
        self.tokens = (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * rate).min(f64::from(burst));
        self.at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_allowance_lets_a_burst_through_then_the_rate() {
        let start = Instant::now();
        let mut allowance = Allowance { tokens: 3.0, at: start };
        assert_eq!((0..5).filter(|_| allowance.take(2.0, 3, start)).count(), 3, "the burst");
        assert!(!allowance.take(2.0, 3, start + Duration::from_millis(100)), "a fifth of a message refilled");
        assert!(allowance.take(2.0, 3, start + Duration::from_millis(600)), "one refilled after half a second");
        assert_eq!((0..10).filter(|_| allowance.take(2.0, 3, start + Duration::from_secs(100))).count(), 3, "never more than the burst");
        assert!((0..100).all(|_| allowance.take(0.0, 3, start)), "a rate of 0 is no limit");
    }
}

