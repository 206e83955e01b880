//! Messages to a room (§7.4–§7.5, §7.8, §8.1): groupchat reflected to every occupant with the
//! room's stanza-id and kept for joiners, the subject, private messages through the room, and
//! mediated invitations; and what a joiner gets after its presence: history and the subject.

use starling_cluster::store::{ArchiveEntry, ArchivedMessage};
use starling_protocol::payload::muc::{Affiliation, HistoryRequest, Role};
use starling_protocol::{datetime, ns, Jid, Stanza, StanzaError, StanzaErrorCondition};
use starling_xml::Element;

use super::{Past, Room};
use crate::hold::{current_cause, current_hold};
use crate::modules::mam::replays::{archived_by, content_of};
use crate::modules::muc::refuse;
use crate::service::ServiceContext;

impl Room {
    pub(super) async fn message(&mut self, context: &ServiceContext, stanza: &Stanza) {
        if stanza.is_error() {
            return;
        }
        let Some(room) = self.state.as_ref() else { return refuse(context, stanza, StanzaErrorCondition::ItemNotFound) };
        let sender = room.occupants.iter().position(|o| o.jid == stanza.from);
        let to_nick = stanza.to.as_ref().and_then(Jid::resource).map(str::to_owned);
        let groupchat = stanza.type_is("groupchat");
        if to_nick.is_none() && !groupchat && stanza.mentions(ns::MUC_USER) {
            return self.invitation(context, sender, stanza);
        }
        if let Some(sender) = sender {
            let room = self.state.as_mut().expect("the sender's room");
            if !room.occupants[sender].allowance.take(self.service.occupant_rate, self.service.occupant_burst, std::time::Instant::now()) {
                let error = StanzaError::new(StanzaErrorCondition::ResourceConstraint).with_text("Too many messages: slow down.");
                return context.refuse(stanza, &error);
            }
        }
        match (to_nick, sender) {
            (_, None) => refuse(context, stanza, StanzaErrorCondition::NotAcceptable),
            (None, Some(sender)) if groupchat => self.groupchat(context, sender, stanza).await,
            // §7.5: groupchat is for the room, not an occupant.
            (Some(_), Some(_)) if groupchat => refuse(context, stanza, StanzaErrorCondition::BadRequest),
            (Some(nick), Some(sender)) => self.private_message(context, sender, &nick, stanza),
            (None, Some(_)) => refuse(context, stanza, StanzaErrorCondition::BadRequest),
        }
    }

    async fn groupchat(&mut self, context: &ServiceContext, sender: usize, stanza: &Stanza) {
        let Ok(mut message) = stanza.element() else { return };
        let room = self.state.as_mut().expect("the sender's room");
        let occupant = &room.occupants[sender];
        if occupant.role == Role::Visitor {
            return refuse(context, stanza, StanzaErrorCondition::Forbidden);
        }
        let subject = message.get_child("subject", ns::CLIENT).map(Element::text);
        let body = message.get_child("body", ns::CLIENT).is_some();
        if let (Some(subject), false) = (&subject, body) {
            // §8.1: the subject, by a moderator or anyone if the room allows.
            if occupant.role != Role::Moderator && !room.config.occupants_change_subject {
                return refuse(context, stanza, StanzaErrorCondition::Forbidden);
            }
            if subject.chars().count() > self.service.max_subject_length {
                return refuse(context, stanza, StanzaErrorCondition::NotAcceptable);
            }
            room.subject = (occupant.nick.clone(), subject.clone());
        }
        let nick = occupant.nick.clone();
        if subject.is_some() && !body
            && let Err(error) = self.save(context).await
        {
            tracing::warn!(room = %self.jid, %error, "could not store the subject");
        }
        // XEP-0359: the room's stanza-id, no other claiming to be the room's.
        let room_jid = self.jid.clone();
        message.remove_children(|child| child.is("stanza-id", ns::STANZA_ID) && child.attr("by") == Some(room_jid.as_str()));
        for attribute in ["from", "to"] {
            message.remove_attr(attribute);
        }
        let from = room_jid.with_resource(&nick).expect("an occupant's nick is a valid resource");
        let archived = subject.is_none() && body;
        // In a cluster: the same bus record sending the same message again is a replay (its
        // sender's or this room's owner died), broadcast again under the id it had: each
        // occupant's owner recognises it as a repeated delivery.
        let replay = current_cause().filter(|_| archived).map(|cause| (groupchat_content(&nick, &message), archived_by(cause, false)));
        let replayed = replay.and_then(|(content, by)| self.recent.recall(content, by));
        let room = self.state.as_mut().expect("the sender's room");
        let id = replayed.unwrap_or_else(|| {
            room.last_id = crate::datetime::now_micros().max(room.last_id + 1);
            room.last_id
        });
        message.push_child(Element::new("stanza-id", ns::STANZA_ID).with_attr("by", room_jid.as_str()).with_attr("id", id.to_string()));
        if replayed.is_some() {
            context.services.metrics.replayed_archive_entries_skipped.inc();
        } else if archived {
            if !self.archive(context, &message, &from, id).await {
                return refuse(context, stanza, StanzaErrorCondition::ResourceConstraint);
            }
            if let Some((content, by)) = replay {
                self.recent.remember(content, by, id);
            }
            let room = self.state.as_mut().expect("the sender's room");
            if room.history.len() >= room.config.history_length.max(1) {
                room.history.pop_front();
            }
            if room.config.history_length > 0 {
                room.history.push_back(Past { nick: nick.clone(), message: message.clone(), at: id });
            }
        }
        let room = self.state.as_ref().expect("the sender's room");
        self.send(context, &from, message, &room.occupants);
    }

    /// XEP-0313 on the room: the message as broadcast, under its stanza-id, through the archive
    /// writer with the record's hold (in a cluster). False when the archive queue stayed full:
    /// the message is refused rather than sent unarchived.
    async fn archive(&self, context: &ServiceContext, message: &Element, from: &Jid, id: u64) -> bool {
        let Some(writer) = context.services.archive_writer.as_ref() else { return true };
        let stanza = Stanza::build(message.clone(), from, None);
        let entry = ArchiveEntry { user: self.jid.to_string(), message: ArchivedMessage { id, with: self.jid.to_string(), stanza: stanza.bytes.to_vec() } };
        let stored = writer.submit(entry, current_hold()).await.is_ok();
        if !stored {
            context.services.metrics.archive_refused.inc();
        }
        stored
    }

    /// §7.8.2: an occupant invites someone (the room passes the invitation on, from itself, with
    /// the password; in a members-only room the invitee becomes a member), or an invitee declines
    /// (the room tells the inviter).
    fn invitation(&mut self, context: &ServiceContext, sender: Option<usize>, stanza: &Stanza) {
        let Ok(message) = stanza.element() else { return };
        let Some(x) = message.get_child("x", ns::MUC_USER) else { return refuse(context, stanza, StanzaErrorCondition::BadRequest) };
        let room = self.state.as_mut().expect("a room");
        if let Some(decline) = x.get_child("decline", ns::MUC_USER) {
            let Some(to) = decline.attr("to").and_then(|to| Jid::new(to).ok()) else { return refuse(context, stanza, StanzaErrorCondition::JidMalformed) };
            let mut told = Element::new("decline", ns::MUC_USER).with_attr("from", stanza.from.bare().as_str());
            if let Some(reason) = decline.get_child("reason", ns::MUC_USER) {
                told.push_child(reason.clone());
            }
            let notice = Element::new("message", ns::CLIENT).with_child(Element::new("x", ns::MUC_USER).with_child(told));
            let _ = context.route(Stanza::build(notice, &self.jid, Some(&to)));
            return;
        }
        let Some(sender) = sender else { return refuse(context, stanza, StanzaErrorCondition::NotAcceptable) };
        let inviter = &room.occupants[sender];
        let privileged = matches!(inviter.affiliation, Affiliation::Owner | Affiliation::Admin);
        if room.config.members_only && !room.config.allow_invites && !privileged {
            return refuse(context, stanza, StanzaErrorCondition::Forbidden);
        }
        let inviter_jid = inviter.jid.clone();
        for invite in x.children().filter(|child| child.is("invite", ns::MUC_USER)) {
            let Some(invitee) = invite.attr("to").and_then(|to| Jid::new(to).ok()) else { return refuse(context, stanza, StanzaErrorCondition::JidMalformed) };
            if room.config.members_only && room.affiliation(&invitee.bare()) == Affiliation::None {
                room.affiliations.insert(invitee.bare(), Affiliation::Member);
            }
            let mut passed = Element::new("invite", ns::MUC_USER).with_attr("from", inviter_jid.as_str());
            if let Some(reason) = invite.get_child("reason", ns::MUC_USER) {
                passed.push_child(reason.clone());
            }
            let mut x = Element::new("x", ns::MUC_USER).with_child(passed);
            if let Some(password) = &room.config.password {
                x.push_child(Element::new("password", ns::MUC_USER).with_text(password.as_str()));
            }
            let body = Element::new("body", ns::CLIENT).with_text(format!("{inviter_jid} invites you to the room {}", self.jid));
            let notice = Element::new("message", ns::CLIENT).with_child(x).with_child(body);
            let _ = context.route(Stanza::build(notice, &self.jid, Some(&invitee)));
        }
    }

    /// §7.5: to one occupant, from the sender's occupant JID, marked as from the room.
    fn private_message(&mut self, context: &ServiceContext, sender: usize, nick: &str, stanza: &Stanza) {
        let room = self.state.as_ref().expect("the sender's room");
        if !room.config.allow_private_messages && room.occupants[sender].role != Role::Moderator {
            return refuse(context, stanza, StanzaErrorCondition::Forbidden);
        }
        let Some(target) = room.occupants.iter().find(|o| o.nick == nick) else { return refuse(context, stanza, StanzaErrorCondition::ItemNotFound) };
        let Ok(mut message) = stanza.element() else { return };
        for attribute in ["from", "to"] {
            message.remove_attr(attribute);
        }
        message.push_child(Element::new("x", ns::MUC_USER));
        self.send(context, &self.occupant_jid(&room.occupants[sender].nick), message, [target]);
    }

    /// §7.2.13: what the joiner asked for of the history, oldest first, stamped with when it
    /// was sent.
    pub(super) fn send_history(&self, context: &ServiceContext, to: usize, request: &HistoryRequest) {
        let room = self.state.as_ref().expect("a room");
        let now = crate::datetime::now_micros();
        let since = [request.since, request.seconds.map(|s| now.saturating_sub(s.saturating_mul(1_000_000)))].into_iter().flatten().max().unwrap_or(0);
        let mut picked: Vec<&Past> = room.history.iter().rev().filter(|past| past.at >= since).take(request.max_stanzas.unwrap_or(usize::MAX)).collect();
        if let Some(max_chars) = request.max_chars {
            let mut total = 0;
            picked.retain(|past| {
                total += past.message.to_bytes().len();
                total <= max_chars
            });
        }
        let recipient = &room.occupants[to];
        for past in picked.into_iter().rev() {
            let delay = Element::new("delay", ns::DELAY).with_attr("from", self.jid.as_str()).with_attr("stamp", datetime::format(past.at));
            self.send(context, &self.occupant_jid(&past.nick), past.message.clone().with_child(delay), [recipient]);
        }
    }

    /// §7.2.15: the subject, always, after the history (empty when there is none).
    pub(super) fn send_subject(&self, context: &ServiceContext, to: usize) {
        let room = self.state.as_ref().expect("a room");
        let (nick, text) = &room.subject;
        let message = Element::new("message", ns::CLIENT).with_attr("type", "groupchat").with_child(Element::new("subject", ns::CLIENT).with_text(text.as_str()));
        let from = if nick.is_empty() { self.jid.clone() } else { self.occupant_jid(nick) };
        self.send(context, &from, message, [&room.occupants[to]]);
    }
}

/// What tells a groupchat message apart for [`RecentlyArchived`](crate::modules::mam::replays::RecentlyArchived):
/// its sender's nick and the message as the room broadcasts it, without addresses or stanza-id.
pub(super) fn groupchat_content(nick: &str, message: &Element) -> u64 {
    let bytes = message.to_bytes();
    content_of(&[nick.as_bytes(), b"\0", &bytes].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_groupchat_message_is_told_apart_the_same_way_live_and_read_back_from_the_archive() {
        let room = Jid::new("coven@conference.example.com").expect("jid");
        let sent = b"<message xmlns='jabber:client' from='crone@example.com/a' to='coven@conference.example.com' type='groupchat' id='m1' xml:lang='en'>\
            <body>Fire &amp; cauldron</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>";
        let mut live = Element::parse(sent).expect("xml");
        for attribute in ["from", "to"] {
            live.remove_attr(attribute);
        }
        let content = groupchat_content("crone", &live);
        live.push_child(Element::new("stanza-id", ns::STANZA_ID).with_attr("by", room.as_str()).with_attr("id", "17"));
        let archived = Stanza::build(live, &room.with_resource("crone").expect("jid"), None);
        let mut read = Element::parse(&archived.bytes).expect("xml");
        read.remove_attr("from");
        read.remove_children(|child| child.is("stanza-id", ns::STANZA_ID) && child.attr("by") == Some(room.as_str()));
        assert_eq!(groupchat_content("crone", &read), content);
        assert_ne!(groupchat_content("hag", &read), content, "the sender is part of it");
    }
}
