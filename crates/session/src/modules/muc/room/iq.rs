//! The requests a room answers: disco of the room (§6.4) and of its occupants (§6.5), the owner's
//! configuration form and destruction (§10.1, §10.2, §10.9), and self-ping (XEP-0410).

use starling_protocol::payload::muc::Affiliation;
use starling_protocol::payload::{DataForm, DiscoInfoResult, DiscoItem, DiscoItemsResult, FormType, Identity, MamQuery};
use starling_protocol::{ns, Jid, Stanza, StanzaErrorCondition, StanzaKind};
use starling_xml::Element;

use super::{Room, RoomState};
use crate::modules::mam::{answer_query, QueryRefused};
use crate::modules::muc::{refuse, request_payload};
use crate::service::ServiceContext;

impl Room {
    pub(super) async fn iq(&mut self, context: &ServiceContext, stanza: &Stanza) {
        if !stanza.is_iq_request() {
            return;
        }
        let Some(payload) = request_payload(stanza) else { return refuse(context, stanza, StanzaErrorCondition::BadRequest) };
        let get = stanza.type_is("get");
        let Some(room) = self.state.as_ref() else { return refuse(context, stanza, StanzaErrorCondition::ItemNotFound) };
        let sender = room.occupants.iter().position(|o| o.jid == stanza.from);
        if let Some(nick) = stanza.to.as_ref().and_then(Jid::resource) {
            // XEP-0410: a client asks whether it is still joined by pinging its own occupant JID.
            let disco = payload.is("query", ns::DISCO_INFO) || payload.is("query", ns::DISCO_ITEMS);
            return match sender {
                // §6.6.
                None if disco => refuse(context, stanza, StanzaErrorCondition::BadRequest),
                None => refuse(context, stanza, StanzaErrorCondition::NotAcceptable),
                Some(sender) if room.occupants[sender].nick == nick && payload.is("ping", ns::PING) => context.answer(stanza, None),
                // Requests to other occupants are not relayed yet.
                Some(_) => refuse(context, stanza, StanzaErrorCondition::ServiceUnavailable),
            };
        }
        let owner = room.affiliation(&stanza.from.bare()) == Affiliation::Owner;
        match (payload.name(), payload.ns()) {
            ("query", ns::DISCO_INFO) if get => context.answer(stanza, Some((&self.info(room, context.services.config.archive.enabled)).into())),
            ("query", ns::DISCO_ITEMS) if get => {
                // §6.5: the occupants, of a public room or to its occupants.
                let items = if sender.is_some() || room.config.public { room.occupants.iter().map(|o| DiscoItem { jid: self.occupant_jid(&o.nick), node: None, name: None }).collect() } else { Vec::new() };
                context.answer(stanza, Some((&DiscoItemsResult { items, ..DiscoItemsResult::default() }).into()));
            }
            ("query", ns::MUC_OWNER) if !owner => refuse(context, stanza, StanzaErrorCondition::Forbidden),
            ("query", ns::MUC_OWNER) if get => context.answer(stanza, Some(Element::new("query", ns::MUC_OWNER).with_child((&room.config.form()).into()))),
            ("query", ns::MUC_OWNER) => self.owner_set(context, stanza, &payload).await,
            ("query", ns::MUC_ADMIN) => self.admin(context, stanza, &payload).await,
            ("query", ns::MAM) if context.services.config.archive.enabled => {
                // The room's archive is for those who may read the room: occupants and members.
                let reader = sender.is_some() || matches!(room.affiliation(&stanza.from.bare()), Affiliation::Owner | Affiliation::Admin | Affiliation::Member);
                match (get, reader) {
                    (true, _) => context.answer(stanza, Some(MamQuery::form_template().into())),
                    (false, false) => refuse(context, stanza, StanzaErrorCondition::Forbidden),
                    (false, true) => self.archive_query(context, stanza, &payload).await,
                }
            }
            _ => refuse(context, stanza, StanzaErrorCondition::ServiceUnavailable),
        }
    }

    /// Stores the change just made (see [`stored`](super::stored)), then answers the request:
    /// with an error if the store did not take it.
    pub(super) async fn answer_saved(&mut self, context: &ServiceContext, stanza: &Stanza) {
        match self.save(context).await {
            Ok(()) => context.answer(stanza, None),
            Err(error) => {
                tracing::warn!(room = %self.jid, %error, "could not store the room");
                refuse(context, stanza, StanzaErrorCondition::InternalServerError);
            }
        }
    }

    /// XEP-0313 §4 on the room's JID: the results from the room, then the `<fin/>`.
    async fn archive_query(&self, context: &ServiceContext, stanza: &Stanza, payload: &Element) {
        match answer_query(&context.services, &self.jid, payload, &stanza.from).await {
            Ok((results, fin)) => {
                for bytes in results {
                    let result = Stanza { kind: StanzaKind::Message, from: self.jid.clone(), to: Some(stanza.from.clone()), id: None, stanza_type: None, bytes };
                    let _ = context.route(result);
                }
                context.answer(stanza, Some(fin.into()));
            }
            Err(QueryRefused::Refused(condition)) => refuse(context, stanza, condition),
            Err(QueryRefused::Store(error)) => {
                tracing::warn!(room = %self.jid, %error, "room archive query failed");
                refuse(context, stanza, StanzaErrorCondition::InternalServerError);
            }
        }
    }

    fn info(&self, room: &RoomState, archived: bool) -> DiscoInfoResult {
        let name = (!room.config.name.is_empty()).then_some(room.config.name.as_str()).or(self.jid.node());
        let mut features = room.config.features();
        features.push(ns::DISCO_INFO.to_owned());
        features.push(ns::PING.to_owned());
        if archived {
            features.push(ns::MAM.to_owned());
        }
        DiscoInfoResult {
            identities: vec![Identity::new("conference", "text", name)],
            features,
            extensions: vec![room.config.info_form(room.occupants.len(), &room.subject.1)],
            ..DiscoInfoResult::default()
        }
    }

    /// §10.1.2–§10.2: the owner submits the configuration (an empty submission accepts the
    /// defaults: an instant room), cancels the creation of a locked room, or destroys the room.
    async fn owner_set(&mut self, context: &ServiceContext, stanza: &Stanza, payload: &Element) {
        if let Some(destroy) = payload.get_child("destroy", ns::MUC_OWNER) {
            self.destroy(context, destroy);
            return self.answer_saved(context, stanza).await;
        }
        let Some(form) = payload.get_child("x", ns::DATA_FORMS).and_then(|x| DataForm::try_from(x).ok()) else {
            return refuse(context, stanza, StanzaErrorCondition::BadRequest);
        };
        let room = self.state.as_mut().expect("checked by the caller");
        match form.type_ {
            FormType::Cancel if room.locked => {
                // The creator gave up on a room it never configured: it goes (§10.1.3).
                self.destroy(context, &Element::new("destroy", ns::MUC_OWNER));
                context.answer(stanza, None);
            }
            FormType::Cancel => context.answer(stanza, None),
            FormType::Submit => match room.config.with_submitted(&form, &self.service) {
                Ok(config) => {
                    room.config = config;
                    room.locked = false;
                    self.answer_saved(context, stanza).await;
                }
                Err(condition) => refuse(context, stanza, condition),
            },
            _ => refuse(context, stanza, StanzaErrorCondition::BadRequest),
        }
    }

    /// §10.9: every occupant is told the room is gone (with the owner's alternate venue and
    /// reason), and the room forgets everything.
    fn destroy(&mut self, context: &ServiceContext, destroy: &Element) {
        let Some(room) = self.state.take() else { return };
        let mut told = Element::new("destroy", ns::MUC_USER);
        if let Some(venue) = destroy.attr("jid") {
            told.set_attr("jid", venue);
        }
        if let Some(reason) = destroy.get_child("reason", ns::MUC_OWNER) {
            told.push_child(Element::new("reason", ns::MUC_USER).with_text(reason.text()));
        }
        for occupant in &room.occupants {
            self.touched.push(occupant.nick.clone());
            let item = Element::new("item", ns::MUC_USER).with_attr("affiliation", "none").with_attr("role", "none");
            let x = Element::new("x", ns::MUC_USER).with_child(item).with_child(told.clone());
            let presence = Element::new("presence", ns::CLIENT).with_attr("type", "unavailable").with_child(x);
            self.send(context, &self.occupant_jid(&occupant.nick), presence, [occupant]);
        }
    }
}
