//! Stored rooms: the configuration, affiliations and subject of a persistent room
//! (`muc#roomconfig_persistentroom`), and of a temporary room while it has occupants, are stored
//! (the `Rooms` store, both backends) whenever they change, and read by the room's actor when it
//! starts — after the room emptied and its actor retired, after a restart, and on the node that
//! takes the room's partition over in a cluster, where its occupants come back from the registry
//! ([`occupancy`](super::occupancy)). A public room is listed with its record, so the service's
//! room list is the same on every node. A temporary room found without occupants (its node
//! stopped) is forgotten.
//!
//! The record is an element of our own namespace holding the room's configuration as a submitted
//! `muc#roomconfig` form, so it is read back through the same checks as an owner's submission.
//! A stored room's history for joiners is read back from its archive (XEP-0313 on the room), and
//! its stanza-ids go on after the newest archived.

use std::collections::{HashMap, VecDeque};

use starling_cluster::store::{ArchiveQuery, StoreError};
use starling_protocol::payload::muc::Affiliation;
use starling_protocol::payload::{DataForm, FormType};
use starling_protocol::{ns, Jid};
use starling_xml::Element;

use super::messages::groupchat_content;
use super::{Past, Room, RoomState};
use crate::modules::mam::replays::{RecentlyArchived, SEEDS};
use crate::modules::muc::form::RoomConfig;
use crate::service::ServiceContext;

const RECORD: &str = "urn:starling:muc:room:0";

impl Room {
    /// Reads the room from the store, once per actor, before its first stanza.
    pub(super) async fn load(&mut self, context: &ServiceContext) {
        if self.loaded {
            return;
        }
        match context.services.store.rooms.get(self.jid.as_str()).await {
            Ok(Some(record)) => match decode(&record, &self.service) {
                Some(mut state) => {
                    self.stored = Some(listing(&state));
                    self.recall_history(context, &mut state).await;
                    self.state = Some(state);
                }
                None => tracing::warn!(room = %self.jid, "stored room record does not decode; the room starts anew"),
            },
            Ok(None) => {}
            Err(error) => {
                // Not marked loaded: the next stanza tries again rather than start a stored room empty.
                tracing::warn!(room = %self.jid, %error, "could not read the stored room");
                return;
            }
        }
        self.loaded = true;
        self.restore_occupants(context).await;
        if self.state.as_ref().is_some_and(|room| !room.config.persistent && room.occupants.is_empty()) {
            // A temporary room whose node stopped with it: gone ([`Room::settle`] forgets it).
            self.state = None;
        }
    }

    /// The newest archived messages, as many as the room keeps for joiners, and enough to tell
    /// a replayed message from a new one.
    async fn recall_history(&mut self, context: &ServiceContext, room: &mut RoomState) {
        let newest = ArchiveQuery { limit: room.config.history_length.max(SEEDS), from_newest: true, ..ArchiveQuery::default() };
        let page = match context.services.store.archive.query(self.jid.as_str(), &newest).await {
            Ok(page) => page,
            Err(error) => return tracing::warn!(room = %self.jid, %error, "could not read the room's archive; joiners get no history"),
        };
        room.last_id = page.messages.last().map_or(0, |message| message.id);
        let mut seeds = Vec::with_capacity(page.messages.len());
        for archived in &page.messages {
            let Ok(mut message) = Element::parse(&archived.stanza) else { continue };
            let Some(nick) = message.attr("from").and_then(|from| Jid::new(from).ok()).and_then(|from| from.resource().map(str::to_owned)) else { continue };
            message.remove_attr("from");
            let mut sent = message.clone();
            sent.remove_children(|child| child.is("stanza-id", ns::STANZA_ID) && child.attr("by") == Some(self.jid.as_str()));
            seeds.push((groupchat_content(&nick, &sent), archived.id));
            room.history.push_back(Past { nick, message, at: archived.id });
        }
        while room.history.len() > room.config.history_length {
            room.history.pop_front();
        }
        self.recent = RecentlyArchived::seeded_with(seeds, crate::datetime::now_micros());
    }

    /// After each stanza: the registry told of occupants who changed, and the store of a room
    /// that came to be, went, or changed its listing.
    pub(super) async fn settle(&mut self, context: &ServiceContext) {
        self.publish_occupants(context).await;
        if self.wanted_record() != self.stored
            && let Err(error) = self.save(context).await
        {
            tracing::warn!(room = %self.jid, %error, "could not store the room");
        }
    }

    /// What the store should hold: a record of a configured room that is persistent or has
    /// occupants, listed or not.
    fn wanted_record(&self) -> Option<Option<String>> {
        let room = self.state.as_ref().filter(|room| !room.locked && (room.config.persistent || !room.occupants.is_empty()))?;
        Some(listing(room))
    }

    /// Stores the room as it is now, or forgets it.
    pub(super) async fn save(&mut self, context: &ServiceContext) -> Result<(), StoreError> {
        let rooms = &context.services.store.rooms;
        let wanted = self.wanted_record();
        match (&wanted, self.state.as_ref()) {
            (Some(listed), Some(room)) => rooms.set(self.jid.as_str(), encode(room), listed.as_deref()).await?,
            _ => rooms.remove(self.jid.as_str()).await?,
        }
        self.stored = wanted;
        Ok(())
    }
}

/// The name a room is listed under among the service's public rooms, if it is listed.
fn listing(room: &RoomState) -> Option<String> {
    room.config.public.then(|| room.config.name.clone())
}

fn encode(room: &RoomState) -> Vec<u8> {
    let mut form = room.config.form();
    form.type_ = FormType::Submit;
    let mut record = Element::new("room", RECORD).with_child((&form).into());
    let mut affiliations: Vec<_> = room.affiliations.iter().collect();
    affiliations.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    for (jid, affiliation) in affiliations {
        record.push_child(Element::new("affiliation", RECORD).with_attr("jid", jid.as_str()).with_attr("value", affiliation.as_str()));
    }
    let (nick, subject) = &room.subject;
    record.push_child(Element::new("subject", RECORD).with_attr("nick", nick.as_str()).with_text(subject.as_str()));
    record.to_bytes()
}

fn decode(bytes: &[u8], service: &crate::config::MucConfig) -> Option<RoomState> {
    let record = Element::parse(bytes).ok().filter(|record| record.is("room", RECORD))?;
    let form = DataForm::try_from(record.get_child("x", ns::DATA_FORMS)?).ok()?;
    let config = RoomConfig::new(service).with_submitted(&form, service).ok()?;
    let affiliations: HashMap<Jid, Affiliation> = record
        .children()
        .filter(|child| child.is("affiliation", RECORD))
        .filter_map(|child| Some((Jid::new(child.attr("jid")?).ok()?.bare(), Affiliation::parse(child.attr("value")?)?)))
        .collect();
    let subject = record.get_child("subject", RECORD).map(|s| (s.attr("nick").unwrap_or_default().to_owned(), s.text())).unwrap_or_default();
    Some(RoomState { config, locked: false, affiliations, occupants: Vec::new(), subject, history: VecDeque::new(), last_id: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MucConfig;

    #[test]
    fn a_room_record_reads_back_as_it_was_written() {
        let service = MucConfig::default();
        let mut config = RoomConfig::new(&service);
        (config.name, config.persistent, config.members_only, config.password) = ("Coven".into(), true, true, Some("cauldron".into()));
        let room = RoomState {
            config: config.clone(),
            locked: false,
            affiliations: HashMap::from([
                (Jid::new("crone@example.com").expect("jid"), Affiliation::Owner),
                (Jid::new("hag@example.com").expect("jid"), Affiliation::Outcast),
            ]),
            occupants: Vec::new(),
            subject: ("crone".into(), "Fire burn".into()),
            history: VecDeque::new(),
            last_id: 0,
        };
        let read = decode(&encode(&room), &service).expect("decodes");
        assert_eq!(read.config, config);
        assert_eq!(read.affiliations, room.affiliations);
        assert_eq!(read.subject, room.subject);
        assert!(decode(b"<room xmlns='elsewhere'/>", &service).is_none());
    }
}
