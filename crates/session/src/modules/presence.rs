//! RFC 6121 §4: presence broadcast, probes, directed presence and unavailable on disconnect.
//! Subscription stanzas never get here: the roster module takes them first.

use std::collections::HashSet;
use std::time::Instant;

use starling_protocol::{ns, Jid, Stanza, StanzaKind};
use starling_xml::Element;

use super::roster::{has_from, has_to};
use super::{blocking, last_activity, offline, roster};
use crate::registry::{Flow, Hook, Registrar};
use crate::state::UserState;

pub(super) fn register(r: &mut Registrar) {
    r.outbound(&[StanzaKind::Presence], 20, Hook::Later(|state, sender, stanza, received| Box::pin(outbound_presence(state, sender, stanza, received))));
    r.inbound(&[StanzaKind::Presence], 20, Hook::Later(|state, stanza, received| Box::pin(inbound_presence(state, stanza, received))));
    r.unbinding(|state, index| Box::pin(unbinding(state, index)));
}

/// On a resource: the entities it sent directed presence to, told when it goes unavailable
/// (§4.6).
#[derive(Default)]
struct Directed(HashSet<Jid>);

/// Presence one of the user's resources sent.
async fn outbound_presence(state: &mut UserState, sender: &Jid, stanza: Stanza, received: Instant) -> Flow {
    let Some(index) = state.resource_index(sender) else { return Flow::Stop };
    match stanza.stanza_type.as_deref() {
        Some("error") => state.route(stanza, received),
        None | Some("unavailable") if stanza.to.is_some() => {
            // §4.6: directed presence; remembered so that unavailable reaches it too.
            let to = stanza.to.clone().unwrap_or_else(|| state.user().clone());
            let directed = &mut state.resource_mut(index).ext.get_or_insert_with(Directed::default).0;
            if stanza.type_is("unavailable") {
                directed.remove(&to);
            } else {
                directed.insert(to);
            }
            if !blocking::outbound_blocked(state, &stanza).await {
                state.route(stanza, received);
            }
        }
        None => broadcast_available(state, index, stanza, received).await,
        Some("unavailable") => broadcast_unavailable(state, index, stanza).await,
        // Probes come from servers, not clients; other types are not presence.
        Some(_) => {}
    }
    Flow::Stop
}

/// §4.2 initial presence and §4.4 updates.
async fn broadcast_available(state: &mut UserState, index: usize, stanza: Stanza, received: Instant) {
    let initial = state.resource(index).presence().is_none();
    let priority = priority_of(&stanza);
    state.set_availability(index, Some(stanza.clone()), priority).await;
    let contacts = roster::contacts(state).await;
    for (contact, subscription) in &contacts {
        if has_from(*subscription) && !blocking::is_blocked(state, contact).await {
            state.route(stanza.readdressed(contact), received);
        }
    }
    // Every available resource of the user sees it, the sender included (RFC 6121 §4.2.2, as
    // clients expect their own presence reflected), and a new resource sees the others'.
    for other in 0..state.resources().len() {
        if !state.resource(other).is_available() {
            continue;
        }
        let copy = stanza.readdressed(state.resource(other).jid());
        state.send_stanza(other, &copy, Some(received));
        if initial && other != index && let Some(theirs) = state.resource(other).presence() {
            let theirs = theirs.readdressed(state.resource(index).jid());
            state.send_stanza(index, &theirs, None);
        }
    }
    if !initial {
        return;
    }
    for (contact, subscription) in &contacts {
        if has_to(*subscription) {
            let probe = Element::new("presence", ns::CLIENT).with_attr("type", "probe");
            let probe = Stanza::build(probe, state.user(), Some(contact));
            state.route(probe, received);
        }
    }
    roster::deliver_pending_subscriptions(state, index).await;
    if priority >= 0 {
        offline::deliver(state, index).await;
    }
}

/// §4.5: the resource goes unavailable: contacts, the user's other resources and every
/// directed-presence recipient are told.
async fn broadcast_unavailable(state: &mut UserState, index: usize, stanza: Stanza) {
    let now = Instant::now();
    let priority = state.resource(index).priority();
    state.set_availability(index, None, priority).await;
    let directed: Vec<Jid> = state.resource_mut(index).ext.remove::<Directed>().map(|d| d.0.into_iter().collect()).unwrap_or_default();
    let contacts: Vec<Jid> = roster::contacts(state).await.into_iter().filter(|(_, s)| has_from(*s)).map(|(jid, _)| jid).collect();
    for contact in contacts.iter().chain(directed.iter().filter(|d| !contacts.contains(&d.bare()))) {
        state.route(stanza.readdressed(contact), now);
    }
    if !state.resources().iter().any(|r| r.is_available()) {
        last_activity::record(state, status_of(&stanza)).await;
    }
    // The user's other resources, and the sender itself while still connected, see it.
    for other in 0..state.resources().len() {
        if (other == index && state.resource(other).is_connected()) || state.resource(other).is_available() {
            let copy = stanza.readdressed(state.resource(other).jid());
            state.send_stanza(other, &copy, Some(now));
        }
    }
}

/// A resource whose connection ended goes unavailable if it was available.
async fn unbinding(state: &mut UserState, index: usize) {
    if state.resource(index).presence().is_some() {
        let unavailable = Element::new("presence", ns::CLIENT).with_attr("type", "unavailable");
        let unavailable = Stanza::build(unavailable, state.resource(index).jid(), None);
        broadcast_unavailable(state, index, unavailable).await;
    }
}

/// Presence addressed to this user by someone else.
async fn inbound_presence(state: &mut UserState, stanza: Stanza, received: Instant) -> Flow {
    if stanza.type_is("probe") {
        answer_probe(state, &stanza).await;
        return Flow::Stop;
    }
    let Some(to) = stanza.to.clone() else { return Flow::Stop };
    if to.is_bare() {
        for index in 0..state.resources().len() {
            if state.resource(index).is_available() {
                state.send_stanza(index, &stanza, Some(received));
            }
        }
    } else if let Some(index) = state.resource_index(&to) {
        state.send_stanza(index, &stanza, Some(received));
    }
    Flow::Stop
}

/// §4.3.2: a subscriber's probe gets the presence of every available resource (or one
/// unavailable presence); anyone else learns nothing.
async fn answer_probe(state: &mut UserState, probe: &Stanza) {
    let prober = probe.from.bare();
    if prober != *state.user() && !has_from(roster::subscription(state, &prober).await) {
        return;
    }
    let available: Vec<Stanza> = state.resources().iter().filter(|r| r.is_available()).filter_map(|r| r.presence().cloned()).collect();
    if available.is_empty() {
        let unavailable = Element::new("presence", ns::CLIENT).with_attr("type", "unavailable");
        state.route(Stanza::build(unavailable, state.user(), Some(&probe.from)), Instant::now());
    }
    for presence in available {
        state.route(presence.readdressed(&probe.from), Instant::now());
    }
}

/// `<priority/>`, an integer from -128 to 127, 0 when absent (RFC 6121 §4.7.2.3).
fn priority_of(stanza: &Stanza) -> i8 {
    if !stanza.mentions("<priority") {
        return 0;
    }
    stanza
        .element()
        .ok()
        .and_then(|e| e.get_child("priority", ns::CLIENT).and_then(|p| p.text().trim().parse().ok()))
        .unwrap_or(0)
}

/// The `<status/>` text of a presence, empty when it has none.
fn status_of(stanza: &Stanza) -> String {
    if !stanza.mentions("<status") {
        return String::new();
    }
    stanza.element().ok().and_then(|e| e.get_child("status", ns::CLIENT).map(|s| s.text())).unwrap_or_default()
}
