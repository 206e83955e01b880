//! XEP-0045 multi-user chat: a service at `conference.DOMAIN` (`[muc]`) whose rooms are service
//! entities — one actor per room, partitioned across a cluster by the room's JID like a user —
//! and whose domain answers service discovery.
//!
//! Built so far: rooms created by joining (locked until their owner configures them or accepts
//! the defaults, §10.1), the configuration form, joining with history, presence with status
//! codes, nick changes, leaving, groupchat messages with stanza-ids by the room, the subject,
//! private messages through the room, self-ping (XEP-0410), and disco of the service and of each
//! room. Rooms live in memory: persistence, affiliations beyond the owner, the admin IQs, invites,
//! the room archive and the cluster fan-out are still to come (issue 14).

mod form;
mod room;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
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
            r.service(Arc::new(Conference { domain, config: Arc::new(r.config.muc.clone()), public: Arc::default() }))
        }
        _ => tracing::error!(%domain, "[muc] domain is not a domain; multi-user chat is off"),
    }
}

struct Conference {
    domain: Jid,
    config: Arc<MucConfig>,
    public: Arc<PublicRooms>,
}

/// The public rooms this node hosts, by JID, with their names: what the service lists (§6.3).
/// In a cluster each node lists the rooms it hosts, until rooms are stored.
#[derive(Default)]
pub(super) struct PublicRooms(Mutex<BTreeMap<Jid, String>>);

impl PublicRooms {
    /// Lists `room` under `name`, or stops listing it (`None`).
    pub(super) fn set(&self, room: &Jid, name: Option<String>) {
        let mut rooms = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match name {
            Some(name) => rooms.insert(room.clone(), name),
            None => rooms.remove(room),
        };
    }

    fn items(&self) -> Vec<DiscoItem> {
        let rooms = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        rooms.iter().map(|(jid, name)| DiscoItem { jid: jid.clone(), node: None, name: (!name.is_empty()).then(|| name.clone()) }).collect()
    }
}

impl ServiceKind for Conference {
    fn domain(&self) -> &Jid {
        &self.domain
    }

    fn entity(&self, jid: &Jid) -> Box<dyn ServiceEntity> {
        if *jid == self.domain { Box::new(Service(self.public.clone())) } else { Box::new(room::Room::new(jid.clone(), self.config.clone(), self.public.clone())) }
    }
}

/// The service's own JID: what it is (§6.1) and which rooms it has (§6.3).
struct Service(Arc<PublicRooms>);

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
                    answer(context, &stanza, Some((&info).into()));
                }
                Some(query) if stanza.type_is("get") && query.is("query", ns::DISCO_ITEMS) => {
                    let items = DiscoItemsResult { items: self.0.items(), ..DiscoItemsResult::default() };
                    answer(context, &stanza, Some((&items).into()));
                }
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

/// Answers an IQ request with a result from where it was sent.
fn answer(context: &ServiceContext, request: &Stanza, payload: Option<Element>) {
    let responder = request.to.clone().unwrap_or_else(|| context.jid.clone());
    let _ = context.route(request.iq_result(&responder, payload));
}

/// Answers a stanza with an error from where it was sent.
fn refuse(context: &ServiceContext, stanza: &Stanza, condition: StanzaErrorCondition) {
    refuse_with(context, stanza, StanzaError::new(condition));
}

fn refuse_with(context: &ServiceContext, stanza: &Stanza, error: StanzaError) {
    let responder = stanza.to.clone().unwrap_or_else(|| context.jid.clone());
    if let Some(reply) = stanza.error_reply(&responder, &error) {
        let _ = context.route(reply);
    }
}
