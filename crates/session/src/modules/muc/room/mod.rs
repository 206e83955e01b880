//! One room (XEP-0045): its occupants, configuration, subject and recent history, and what it does
//! with the stanzas addressed to it (its bare JID, or `room@service/nick` for an occupant).
//! Everything the room sends goes from `room@service/nick` (or the room's JID) to occupants' real
//! full JIDs, one stanza per occupant.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use starling_protocol::payload::muc::{status, Affiliation, MucItem, MucJoin, MucUser, Role};
use starling_protocol::{ns, Jid, Stanza, StanzaErrorCondition, StanzaKind};
use starling_xml::Element;

mod admin;
mod iq;
mod messages;
mod occupancy;
mod stored;

/// Owners and admins joining a full room beyond its maximum, at most (§7.2.9).
const PRIVILEGED_EXTRA: usize = 16;

use super::form::{RoomConfig, Whois};
use super::{refuse, Allowance};
use crate::config::MucConfig;
use crate::fan_out::Via;
use crate::modules::mam::replays::RecentlyArchived;
use crate::service::{ServiceContext, ServiceEntity};

pub(super) struct Room {
    jid: Jid,
    service: Arc<MucConfig>,
    /// `None` until a join creates it, and again once it is destroyed.
    state: Option<RoomState>,
    /// The store was read for it (see [`stored`]).
    loaded: bool,
    /// What the store holds for it, as this actor last read or wrote it: no record (`None`), or
    /// a record listed among the public rooms under a name or not.
    stored: Option<Option<String>>,
    /// Nicks of occupants who joined, left or changed since the registry was told (in a
    /// cluster, see [`occupancy`]).
    touched: Vec<String>,
    /// Groupchat messages archived lately, so that a replayed bus record is neither broadcast
    /// nor archived as a new message (in a cluster).
    recent: RecentlyArchived,
}

struct RoomState {
    config: RoomConfig,
    /// Created and not yet configured by its owner: nobody else may join (§10.1).
    locked: bool,
    /// Affiliations by bare JID (§5.2); absent means none. The creator is its first owner.
    affiliations: HashMap<Jid, Affiliation>,
    /// In the order they joined.
    occupants: Vec<Occupant>,
    /// Who set the subject (a nick; empty for the room) and the text.
    subject: (String, String),
    /// The latest groupchat messages.
    history: VecDeque<Past>,
    /// The last stanza-id given, microseconds since the epoch, strictly increasing.
    last_id: u64,
}

/// A groupchat message kept for joiners: as broadcast (without addresses), by whom, and when
/// (its stanza-id, microseconds since the epoch).
struct Past {
    nick: String,
    message: Element,
    at: u64,
}

#[derive(Clone)]
struct Occupant {
    nick: String,
    /// The real full JID.
    jid: Jid,
    affiliation: Affiliation,
    role: Role,
    /// Its last presence without the MUC extensions: `<show/>`, `<status/>`, caps…
    presence: Element,
    allowance: Allowance,
    /// In a cluster, the edge connection the room writes to directly (see [`occupancy`]);
    /// `None`: through the occupant's owner.
    via: Option<Via>,
}


impl Room {
    pub fn new(jid: Jid, service: Arc<MucConfig>) -> Room {
        Room { jid, service, state: None, loaded: false, stored: None, touched: Vec::new(), recent: RecentlyArchived::default() }
    }

    fn occupant_jid(&self, nick: &str) -> Jid {
        self.jid.with_resource(nick).expect("a nick was a valid resource when it was taken")
    }
}

impl ServiceEntity for Room {
    fn handle<'a>(&'a mut self, context: &'a ServiceContext, stanza: Stanza, _: Instant) -> Pin<Box<dyn Future<Output = ()> + 'a>> {
        Box::pin(async move {
            self.load(context).await;
            match stanza.kind {
                StanzaKind::Presence => self.presence(context, &stanza).await,
                StanzaKind::Message => self.message(context, &stanza).await,
                StanzaKind::Iq => self.iq(context, &stanza).await,
            }
            self.settle(context).await;
        })
    }

    /// Nothing to keep in memory: no room, or a persistent one (stored) that nobody is in.
    fn is_idle(&self) -> bool {
        self.state.as_ref().is_none_or(|room| room.occupants.is_empty())
    }
}

impl RoomState {
    fn affiliation(&self, bare: &Jid) -> Affiliation {
        self.affiliations.get(bare).copied().unwrap_or(Affiliation::None)
    }

    /// §5.1.2: the role an occupant gets on joining.
    fn default_role(&self, affiliation: Affiliation) -> Role {
        match affiliation {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::Member => Role::Participant,
            _ if self.config.moderated => Role::Visitor,
            _ => Role::Participant,
        }
    }
}

/// What the room says of an occupant in the `muc#user` item to `viewer`: its real JID only where
/// the viewer may see it (§7.2.3, §7.2.4).
fn item_for(room: &RoomState, occupant: &Occupant, viewer: &Occupant) -> MucItem {
    let sees_jid = room.config.whois == Whois::Anyone || viewer.role == Role::Moderator;
    MucItem { jid: sees_jid.then(|| occupant.jid.clone()), ..MucItem::new(occupant.affiliation, occupant.role) }
}

impl Room {
    async fn presence(&mut self, context: &ServiceContext, stanza: &Stanza) {
        let Some(nick) = stanza.to.as_ref().and_then(Jid::resource).map(str::to_owned) else {
            // §7.2.1: joining needs a nick.
            if stanza.stanza_type.is_none() {
                refuse(context, stanza, StanzaErrorCondition::JidMalformed);
            }
            return;
        };
        let current = self.state.as_ref().and_then(|room| room.occupants.iter().position(|o| o.jid == stanza.from));
        match (stanza.stanza_type.as_deref(), current) {
            // Gone: left, or its server says it cannot be reached.
            (Some("unavailable" | "error"), Some(index)) => self.leave(context, index),
            (None, Some(index)) => self.change_presence(context, index, &nick, stanza),
            (None, None) => self.join(context, &nick, stanza).await,
            _ => {}
        }
    }

    async fn join(&mut self, context: &ServiceContext, nick: &str, stanza: &Stanza) {
        let Ok(element) = stanza.element() else { return };
        let join = match element.get_child("x", ns::MUC).map(MucJoin::try_from).transpose() {
            Ok(join) => join.unwrap_or_default(),
            Err(_) => return refuse(context, stanza, StanzaErrorCondition::BadRequest),
        };
        let created = self.state.is_none();
        let bare = stanza.from.bare();
        let room = self.state.get_or_insert_with(|| RoomState {
            config: RoomConfig::new(&self.service),
            locked: self.service.lock_new_rooms,
            affiliations: HashMap::from([(bare.clone(), Affiliation::Owner)]),
            occupants: Vec::new(),
            subject: (String::new(), String::new()),
            history: VecDeque::new(),
            last_id: 0,
        });
        let affiliation = room.affiliation(&bare);
        let privileged = matches!(affiliation, Affiliation::Owner | Affiliation::Admin);
        let refusal = if room.locked && affiliation != Affiliation::Owner {
            Some(StanzaErrorCondition::ItemNotFound)
        } else if affiliation == Affiliation::Outcast {
            Some(StanzaErrorCondition::Forbidden)
        } else if room.occupants.iter().any(|o| o.nick == nick) {
            Some(StanzaErrorCondition::Conflict)
        } else if affiliation != Affiliation::Owner && room.config.password.is_some() && join.password != room.config.password {
            Some(StanzaErrorCondition::NotAuthorized)
        } else if affiliation == Affiliation::None && room.config.members_only {
            Some(StanzaErrorCondition::RegistrationRequired)
        } else if room.occupants.len() >= room.config.max_occupants + if privileged { PRIVILEGED_EXTRA } else { 0 } {
            // §7.2.9: owners and admins may still join a full room, up to a few more.
            Some(StanzaErrorCondition::ServiceUnavailable)
        } else {
            None
        };
        if let Some(condition) = refusal {
            return refuse(context, stanza, condition);
        }
        let role = room.default_role(affiliation);
        let allowance = Allowance::new(self.service.occupant_burst);
        let via = self.direct_route(context, &stanza.from).await;
        let room = self.state.as_mut().expect("joining");
        room.occupants.push(Occupant { nick: nick.to_owned(), jid: stanza.from.clone(), affiliation, role, presence: without_muc(element), allowance, via });
        self.touched.push(nick.to_owned());
        let joined = room.occupants.len() - 1;
        // §7.2.3: the others' presence first, then the joiner's own, which everyone gets.
        for index in 0..joined {
            self.send_presence(context, index, joined, &[]);
        }
        let mut own = vec![status::SELF_PRESENCE];
        let room = self.state.as_ref().expect("joined");
        if room.config.whois == Whois::Anyone {
            own.push(status::NON_ANONYMOUS);
        }
        if created {
            own.push(status::ROOM_CREATED);
        }
        for index in 0..=joined {
            self.send_presence(context, joined, index, if index == joined { &own } else { &[] });
        }
        self.send_history(context, joined, &join.history);
        self.send_subject(context, joined);
    }

    /// The presence of occupant `about` (available) to occupant `to`.
    fn send_presence(&self, context: &ServiceContext, about: usize, to: usize, statuses: &[u16]) {
        let room = self.state.as_ref().expect("a room with occupants");
        let (about, to) = (&room.occupants[about], &room.occupants[to]);
        if about.jid != to.jid && !room.config.broadcasts(about.role) {
            return;
        }
        let user = MucUser { item: item_for(room, about, to), statuses: statuses.to_vec() };
        let mut presence = about.presence.clone();
        presence.push_child((&user).into());
        self.send(context, &self.occupant_jid(&about.nick), presence, [to]);
    }

    /// Occupant `about` left, was removed (with `reason`), or changed its nick to `new_nick`:
    /// everyone, itself included, gets its unavailable presence.
    fn send_unavailable(&self, context: &ServiceContext, about: &Occupant, new_nick: Option<&str>, extra: &[u16], reason: Option<&str>) {
        let room = self.state.as_ref().expect("a room");
        let others = room.occupants.iter().filter(|o| o.jid != about.jid && room.config.broadcasts(about.role));
        let everyone = others.chain(std::iter::once(about));
        for to in everyone {
            let mut statuses = extra.to_vec();
            if to.jid == about.jid {
                statuses.push(status::SELF_PRESENCE);
            }
            let mut item = item_for(room, about, to);
            if new_nick.is_none() {
                item.role = Role::None;
            }
            item.nick = new_nick.map(str::to_owned);
            item.reason = reason.map(str::to_owned);
            let user = MucUser { item, statuses };
            let presence = Element::new("presence", ns::CLIENT).with_attr("type", "unavailable").with_child((&user).into());
            self.send(context, &self.occupant_jid(&about.nick), presence, [to]);
        }
    }

    fn leave(&mut self, context: &ServiceContext, index: usize) {
        let Some(room) = self.state.as_mut() else { return };
        let gone = room.occupants.remove(index);
        self.touched.push(gone.nick.clone());
        self.send_unavailable(context, &gone, None, &[], None);
        let room = self.state.as_ref().expect("a room");
        if room.occupants.is_empty() && !room.config.persistent {
            self.state = None;
        }
    }

    /// An occupant sent presence again: under a new nick (§7.6) or with a new status (§7.7).
    fn change_presence(&mut self, context: &ServiceContext, index: usize, nick: &str, stanza: &Stanza) {
        let Ok(element) = stanza.element() else { return };
        let room = self.state.as_mut().expect("an occupant's room");
        if !room.occupants[index].allowance.take(self.service.occupant_rate, self.service.occupant_burst, Instant::now()) {
            // Over its rate: dropped (an error presence would read as having left the room).
            return;
        }
        if room.occupants[index].nick != nick {
            if room.occupants.iter().any(|o| o.nick == nick) {
                return refuse(context, stanza, StanzaErrorCondition::Conflict);
            }
            let old = room.occupants[index].clone();
            self.touched.push(old.nick.clone());
            room.occupants[index].nick = nick.to_owned();
            room.occupants[index].presence = without_muc(element);
            self.send_unavailable(context, &old, Some(nick), &[status::NEW_NICK], None);
        } else {
            room.occupants[index].presence = without_muc(element);
        }
        self.touched.push(nick.to_owned());
        self.broadcast_presence(context, index);
    }
}

/// A client's presence as the room shows it: without the `muc` and `muc#user` extensions, and
/// without addresses (the room sets its own).
fn without_muc(mut presence: Element) -> Element {
    presence.remove_children(|child| child.is("x", ns::MUC) || child.is("x", ns::MUC_USER));
    for attribute in ["from", "to", "id", "type"] {
        presence.remove_attr(attribute);
    }
    presence
}
