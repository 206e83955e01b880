//! The user's side of multi-user chat: which rooms each of the user's resources is in, so that a
//! user is in at most `[muc] max_rooms_per_user` rooms and joins new ones at most at `join_rate`
//! a second (`join_burst` at once: a client autojoining its bookmarks at login). Counted on the
//! user's actor, the one place that sees all of a user's joins, whichever rooms they are in, on
//! this server or another. A join beyond either limit gets `resource-constraint` from the room's
//! JID, as ejabberd does for its `max_user_conferences`; nobody else is limited by it.
//!
//! A resource is in a room from its join presence (`<x xmlns='…muc'/>` to `room/nick`) until it
//! sends unavailable presence to the room, the room tells it it is out (unavailable with status
//! 110 and no new nick: left, kicked, banned, destroyed), the room refuses the join (an error),
//! or the resource goes away.

use std::collections::HashSet;
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

/// On a resource: the rooms (bare JIDs) it is in.
#[derive(Default)]
struct Rooms(HashSet<Jid>);

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
        rooms.extend(resource.ext.get::<Rooms>().into_iter().flat_map(|r| r.0.iter()));
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
    state.resource_mut(index).ext.get_or_insert_with(Rooms::default).0.insert(room);
    Flow::Continue(stanza)
}

fn inbound(state: &mut UserState, stanza: Stanza, _: Instant) -> Flow {
    let Some(to) = stanza.to.clone() else { return Flow::Continue(stanza) };
    let out = match stanza.stanza_type.as_deref() {
        Some("error") => true,
        Some("unavailable") => is_own_exit(&stanza),
        _ => false,
    };
    if out {
        leave(state, &to, &stanza.from.bare());
    }
    Flow::Continue(stanza)
}

/// Unavailable presence about the recipient itself (110) that is not a nick change (303).
fn is_own_exit(stanza: &Stanza) -> bool {
    let Ok(element) = stanza.element() else { return false };
    let Some(x) = element.get_child("x", ns::MUC_USER) else { return false };
    let codes: Vec<u16> = x.children().filter(|c| c.is("status", ns::MUC_USER)).filter_map(|c| c.attr("code")?.parse().ok()).collect();
    codes.contains(&status::SELF_PRESENCE) && !codes.contains(&status::NEW_NICK)
}

fn in_room(state: &UserState, index: usize, room: &Jid) -> bool {
    state.resource(index).ext.get::<Rooms>().is_some_and(|rooms| rooms.0.contains(room))
}

fn leave(state: &mut UserState, resource: &Jid, room: &Jid) {
    if let Some(index) = state.resource_index(resource)
        && let Some(rooms) = state.resource_mut(index).ext.get_mut::<Rooms>()
    {
        rooms.0.remove(&room.bare());
    }
}
