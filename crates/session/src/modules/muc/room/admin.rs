//! `muc#admin`: moderators change roles by nick (kick, voice, §8), admins and owners change
//! affiliations by bare JID (ban, membership, admin and owner status, §9–§10), and read the
//! lists. Every change is checked first (a request with several items is applied all or nothing),
//! then occupants see its effect in presence.

use starling_protocol::payload::muc::{status, Affiliation, Role};
use starling_protocol::{ns, Jid, Stanza, StanzaErrorCondition};
use starling_xml::Element;

use super::{Room, RoomState};
use crate::modules::muc::refuse;
use crate::service::ServiceContext;

/// One change a `muc#admin` set asks for.
enum Change {
    Role { nick: String, role: Role, reason: Option<String> },
    Affiliation { jid: Jid, affiliation: Affiliation, reason: Option<String> },
}

/// Affiliations ordered by privilege (§5.2).
fn rank(affiliation: Affiliation) -> u8 {
    match affiliation {
        Affiliation::Owner => 4,
        Affiliation::Admin => 3,
        Affiliation::Member => 2,
        Affiliation::None => 1,
        Affiliation::Outcast => 0,
    }
}

fn parse(item: &Element) -> Result<Change, StanzaErrorCondition> {
    let reason = item.get_child("reason", ns::MUC_ADMIN).map(Element::text);
    match (item.attr("nick"), item.attr("role"), item.attr("jid"), item.attr("affiliation")) {
        (Some(nick), Some(role), _, None) => Ok(Change::Role { nick: nick.to_owned(), role: Role::parse(role).ok_or(StanzaErrorCondition::BadRequest)?, reason }),
        (_, None, Some(jid), Some(affiliation)) => Ok(Change::Affiliation {
            jid: Jid::new(jid).map_err(|_| StanzaErrorCondition::JidMalformed)?.bare(),
            affiliation: Affiliation::parse(affiliation).ok_or(StanzaErrorCondition::BadRequest)?,
            reason,
        }),
        _ => Err(StanzaErrorCondition::BadRequest),
    }
}

impl RoomState {
    /// Whether `requester` (its affiliation and role here) may make `change`.
    fn allows(&self, requester: Affiliation, requester_role: Role, change: &Change) -> Result<(), StanzaErrorCondition> {
        match change {
            Change::Role { nick, role, .. } => {
                if requester_role != Role::Moderator {
                    return Err(StanzaErrorCondition::Forbidden);
                }
                let target = self.occupants.iter().find(|o| o.nick == *nick).ok_or(StanzaErrorCondition::ItemNotFound)?;
                // §9.6, §9.7: moderator status is given and taken by admins and owners.
                let moderation = *role == Role::Moderator || target.role == Role::Moderator;
                if moderation && rank(requester) < rank(Affiliation::Admin) {
                    return Err(StanzaErrorCondition::NotAllowed);
                }
                // §5.1.3, §8.2: nobody demotes or kicks someone of a higher affiliation, nor an
                // admin or owner unless an owner or admin above them.
                let lowered = *role != Role::Moderator && rank(target.affiliation) >= rank(Affiliation::Admin);
                if lowered && rank(target.affiliation) >= rank(requester) {
                    return Err(StanzaErrorCondition::NotAllowed);
                }
                Ok(())
            }
            Change::Affiliation { jid, affiliation, .. } => {
                let current = self.affiliation(jid);
                let needed = if rank(*affiliation).max(rank(current)) >= rank(Affiliation::Admin) { Affiliation::Owner } else { Affiliation::Admin };
                if rank(requester) < rank(needed) {
                    return Err(if rank(requester) >= rank(Affiliation::Admin) { StanzaErrorCondition::NotAllowed } else { StanzaErrorCondition::Forbidden });
                }
                // §10.7: the room keeps an owner.
                let last_owner = current == Affiliation::Owner && self.affiliations.values().filter(|a| **a == Affiliation::Owner).count() == 1;
                if last_owner && *affiliation != Affiliation::Owner {
                    return Err(StanzaErrorCondition::Conflict);
                }
                Ok(())
            }
        }
    }
}

impl Room {
    pub(super) async fn admin(&mut self, context: &ServiceContext, stanza: &Stanza, payload: &Element) {
        let room = self.state.as_ref().expect("checked by the caller");
        let requester = room.affiliation(&stanza.from.bare());
        let requester_role = room.occupants.iter().find(|o| o.jid == stanza.from).map_or(Role::None, |o| o.role);
        let items: Vec<&Element> = payload.children().filter(|child| child.is("item", ns::MUC_ADMIN)).collect();
        if items.is_empty() {
            return refuse(context, stanza, StanzaErrorCondition::BadRequest);
        }
        if stanza.type_is("get") {
            return match self.list(room, requester, requester_role, items[0]) {
                Ok(list) => context.answer(stanza, Some(list)),
                Err(condition) => refuse(context, stanza, condition),
            };
        }
        let changes = match items.into_iter().map(parse).collect::<Result<Vec<_>, _>>() {
            Ok(changes) => changes,
            Err(condition) => return refuse(context, stanza, condition),
        };
        if let Some(condition) = changes.iter().find_map(|change| room.allows(requester, requester_role, change).err()) {
            return refuse(context, stanza, condition);
        }
        let affiliations = changes.iter().any(|change| matches!(change, Change::Affiliation { .. }));
        for change in changes {
            match change {
                Change::Role { nick, role, reason } => self.set_role(context, &nick, role, reason),
                Change::Affiliation { jid, affiliation, reason } => self.set_affiliation(context, &jid, affiliation, reason),
            }
        }
        if affiliations {
            self.answer_saved(context, stanza).await;
        } else {
            context.answer(stanza, None);
        }
    }

    /// §9.5, §8.5: the JIDs of one affiliation (for admins and owners), or the occupants of one
    /// role (for moderators).
    fn list(&self, room: &RoomState, requester: Affiliation, requester_role: Role, asked: &Element) -> Result<Element, StanzaErrorCondition> {
        let mut query = Element::new("query", ns::MUC_ADMIN);
        if let Some(affiliation) = asked.attr("affiliation") {
            let affiliation = Affiliation::parse(affiliation).filter(|a| *a != Affiliation::None).ok_or(StanzaErrorCondition::BadRequest)?;
            if rank(requester) < rank(Affiliation::Admin) {
                return Err(StanzaErrorCondition::Forbidden);
            }
            for (jid, _) in room.affiliations.iter().filter(|(_, a)| **a == affiliation) {
                query.push_child(Element::new("item", ns::MUC_ADMIN).with_attr("affiliation", affiliation.as_str()).with_attr("jid", jid.as_str()));
            }
        } else if let Some(role) = asked.attr("role") {
            let role = Role::parse(role).filter(|r| *r != Role::None).ok_or(StanzaErrorCondition::BadRequest)?;
            if requester_role != Role::Moderator {
                return Err(StanzaErrorCondition::Forbidden);
            }
            for occupant in room.occupants.iter().filter(|o| o.role == role) {
                query.push_child(
                    Element::new("item", ns::MUC_ADMIN)
                        .with_attr("affiliation", occupant.affiliation.as_str())
                        .with_attr("role", role.as_str())
                        .with_attr("nick", occupant.nick.as_str())
                        .with_attr("jid", occupant.jid.as_str()),
                );
            }
        } else {
            return Err(StanzaErrorCondition::BadRequest);
        }
        Ok(query)
    }

    /// §8.2 kick (role none), §8.3/§8.4 voice, §9.6/§9.7 moderator status.
    fn set_role(&mut self, context: &ServiceContext, nick: &str, role: Role, reason: Option<String>) {
        let room = self.state.as_mut().expect("a room");
        let Some(index) = room.occupants.iter().position(|o| o.nick == nick) else { return };
        self.touched.push(nick.to_owned());
        if role == Role::None {
            let kicked = room.occupants.remove(index);
            self.send_unavailable(context, &kicked, None, &[status::KICKED], reason.as_deref());
            return;
        }
        room.occupants[index].role = role;
        self.broadcast_presence(context, index);
    }

    /// §9.1 ban (outcast), §9.3/§9.4 membership, §10.3–§10.7 admin and owner status: remembered
    /// for the bare JID, and shown on (or acted on) its occupants now in the room.
    fn set_affiliation(&mut self, context: &ServiceContext, jid: &Jid, affiliation: Affiliation, reason: Option<String>) {
        let room = self.state.as_mut().expect("a room");
        if affiliation == Affiliation::None {
            room.affiliations.remove(jid);
        } else {
            room.affiliations.insert(jid.clone(), affiliation);
        }
        loop {
            let room = self.state.as_mut().expect("a room");
            let Some(index) = room.occupants.iter().position(|o| o.jid.bare() == *jid && o.affiliation != affiliation) else { return };
            self.touched.push(room.occupants[index].nick.clone());
            let removal = match affiliation {
                Affiliation::Outcast => Some(status::BANNED),
                Affiliation::None if room.config.members_only => Some(status::MEMBERSHIP_LOST),
                _ => None,
            };
            if let Some(code) = removal {
                let mut removed = room.occupants.remove(index);
                removed.affiliation = affiliation;
                self.send_unavailable(context, &removed, None, &[code], reason.as_deref());
                continue;
            }
            // §5.1.2: the role goes with the new affiliation.
            let role = room.default_role(affiliation);
            (room.occupants[index].affiliation, room.occupants[index].role) = (affiliation, role);
            self.broadcast_presence(context, index);
        }
    }

    /// Occupant `index`'s presence, as it is now, to every occupant (110 to itself).
    pub(super) fn broadcast_presence(&self, context: &ServiceContext, index: usize) {
        let count = self.state.as_ref().map_or(0, |room| room.occupants.len());
        for to in 0..count {
            self.send_presence(context, index, to, if to == index { &[status::SELF_PRESENCE] } else { &[] });
        }
    }
}
