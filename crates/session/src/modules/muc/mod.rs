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
    let config = Arc::new(r.config.muc.clone());
    let services = r.service_domains("muc", "conference", &config.domain);
    if services.is_empty() {
        return;
    }
    for (host, domain) in services {
        r.service(&host, Arc::new(Conference { domain, config: config.clone() }));
    }
    joined::register(r);
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

pub(super) use crate::allowance::Allowance;
