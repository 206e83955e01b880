//! The user's side of multi-user chat: which rooms each of the user's resources is in, so that a
//! user is in at most `[muc] max_rooms_per_user` rooms and joins new ones at most at `join_rate`
//! a second (`join_burst` at once: a client autojoining its bookmarks at login). Counted on the
//! user's actor, the one place that sees all of a user's joins, whichever rooms they are in, on
//! this server or another. A join beyond either limit gets `resource-constraint` from the room's
//! JID, as ejabberd does for its `max_user_conferences`; nobody else is limited by it.
//!
//! A resource is in a room from its join presence (`<x xmlns='…muc'/>` to `room/nick`) until it
//! sends unavailable presence to the room, the room tells it it is out (unavailable with status
//! 110 and no new nick: left, kicked, banned; or with `<destroy/>`), the room refuses the join
//! (an error before the room confirmed it with 110), or the resource goes away.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use starling_protocol::payload::muc::status;
use starling_protocol::{ns, Jid, Stanza, StanzaError, StanzaErrorCondition, StanzaKind};

use super::Allowance;
use crate::registry::{Flow, Hook, Registrar};
use crate::state::UserState;

pub(super) fn register(r: &mut Registrar) {
    // Before the presence module (20) routes it.
    r.outbound(&[StanzaKind::Presence], 18, Hook::Now(outbound));
    r.inbound(&[StanzaKind::Presence], 18, Hook::Now(inbound));
}

/// On a resource: the rooms (bare JIDs) it is in, each with whether the room confirmed the join
/// (its own presence, 110) — an error after that refuses a nick change, not the stay.
#[derive(Default)]
struct Rooms(HashMap<Jid, bool>);

/// On the user: how many more rooms it may join now.
struct Joins(Allowance);

fn outbound(state: &mut UserState, sender: &Jid, stanza: Stanza, _: Instant) -> Flow {
    let Some(room) = stanza.to.as_ref().filter(|to| !to.is_bare()).map(Jid::bare) else {
        if let (Some(to), true) = (&stanza.to, stanza.type_is("unavailable")) {
            leave(state, sender, to);
        }
        return Flow::Continue(stanza);
    };
    let Some(index) = state.resource_index(sender) else { return Flow::Continue(stanza) };
    if stanza.type_is("unavailable") {
        leave(state, sender, &room);
        return Flow::Continue(stanza);
    }
    let joining = stanza.stanza_type.is_none() && stanza.mentions(ns::MUC) && !in_room(state, index, &room);
    if !joining {
        return Flow::Continue(stanza);
    }
    let config = &state.services().config.muc;
    let (max_rooms, rate, burst) = (config.max_rooms_per_user, config.join_rate, config.join_burst);
    let mut rooms: HashSet<&Jid> = HashSet::new();
    for resource in state.resources() {
        rooms.extend(resource.ext.get::<Rooms>().into_iter().flat_map(|r| r.0.keys()));
    }
    let refusal = if max_rooms > 0 && rooms.len() >= max_rooms {
        Some("You are in too many rooms: leave one first.")
    } else if !state.ext.get_or_insert_with(|| Joins(Allowance::new(burst))).0.take(rate, burst, Instant::now()) {
        Some("Too many rooms joined at once: try again in a moment.")
    } else {
        None
    };
    if let Some(text) = refusal {
        let responder = stanza.to.clone().expect("addressed to an occupant JID");
        if let Some(reply) = stanza.error_reply(&responder, &StanzaError::new(StanzaErrorCondition::ResourceConstraint).with_text(text)) {
            state.route(reply, Instant::now());
        }
        return Flow::Stop;
    }
    state.resource_mut(index).ext.get_or_insert_with(Rooms::default).0.insert(room, false);
    Flow::Continue(stanza)
}

fn inbound(state: &mut UserState, stanza: Stanza, _: Instant) -> Flow {
    let Some(to) = stanza.to.clone() else { return Flow::Continue(stanza) };
    let room = stanza.from.bare();
    let statuses = own_statuses(&stanza);
    match stanza.stanza_type.as_deref() {
        None if statuses.as_ref().is_some_and(|(codes, _)| codes.contains(&status::SELF_PRESENCE)) => confirm(state, &to, &room),
        Some("error") if !is_confirmed(state, &to, &room) => leave(state, &to, &room),
        Some("unavailable") if statuses.as_ref().is_some_and(|(codes, destroyed)| *destroyed || (codes.contains(&status::SELF_PRESENCE) && !codes.contains(&status::NEW_NICK))) => {
            leave(state, &to, &room)
        }
        _ => {}
    }
    Flow::Continue(stanza)
}

/// The `muc#user` status codes of a presence from a room, and whether it says the room is
/// destroyed; `None` without `muc#user`.
fn own_statuses(stanza: &Stanza) -> Option<(Vec<u16>, bool)> {
    if !stanza.mentions(ns::MUC_USER) {
        return None;
    }
    let element = stanza.element().ok()?;
    let x = element.get_child("x", ns::MUC_USER)?;
    let codes = x.children().filter(|c| c.is("status", ns::MUC_USER)).filter_map(|c| c.attr("code")?.parse().ok()).collect();
    Some((codes, x.get_child("destroy", ns::MUC_USER).is_some()))
}

fn confirm(state: &mut UserState, resource: &Jid, room: &Jid) {
    if let Some(index) = state.resource_index(resource)
        && let Some(confirmed) = state.resource_mut(index).ext.get_mut::<Rooms>().and_then(|rooms| rooms.0.get_mut(room))
    {
        *confirmed = true;
    }
}

fn is_confirmed(state: &UserState, resource: &Jid, room: &Jid) -> bool {
    state.resource_index(resource).and_then(|index| state.resource(index).ext.get::<Rooms>()).and_then(|rooms| rooms.0.get(room)).copied().unwrap_or(false)
}

fn in_room(state: &UserState, index: usize, room: &Jid) -> bool {
    state.resource(index).ext.get::<Rooms>().is_some_and(|rooms| rooms.0.contains_key(room))
}

fn leave(state: &mut UserState, resource: &Jid, room: &Jid) {
    if let Some(index) = state.resource_index(resource)
        && let Some(rooms) = state.resource_mut(index).ext.get_mut::<Rooms>()
    {
        rooms.0.remove(&room.bare());
    }
}
