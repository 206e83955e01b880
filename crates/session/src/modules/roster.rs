//! RFC 6121 §2 roster management with XEP-0237 versioning, and the subscription state machine of
//! §3 and Appendix A, both directions. Other modules ask about contacts through [`subscription`],
//! [`contacts`] and [`is_contact`]; the cached roster itself is this module's.

use std::collections::HashMap;
use std::time::Instant;

use starling_cluster::store::{RosterItem, Subscription};
use starling_protocol::payload::{self, RosterQuery};
use starling_protocol::{ns, Jid, Stanza, StanzaErrorCondition, StanzaKind};
use starling_xml::Element;

use crate::iq::{Iq, IqTo};
use crate::registry::{Flow, Hook, Registrar};
use crate::state::UserState;

pub(super) fn register(r: &mut Registrar) {
    r.iq(IqTo::OwnAccount, ns::ROSTER, "query", |state, iq| Box::pin(roster_iq(state, iq)));
    // Subscription stanzas are roster state changes: taken before presence sees them, after
    // blocking refused what a blocked contact sent.
    r.outbound(&[StanzaKind::Presence], 15, Hook::Later(|state, _, stanza, _| Box::pin(outbound_subscription(state, stanza))));
    r.inbound(&[StanzaKind::Presence], 15, Hook::Later(|state, stanza, received| Box::pin(inbound_subscription(state, stanza, received))));
    r.server_feature(ns::ROSTER_VER);
    r.server_feature(ns::PRE_APPROVAL);
}

/// The cached roster of one user, in step with the store.
#[derive(Default)]
struct Roster {
    version: u64,
    items: HashMap<Jid, RosterItem>,
}

impl Roster {
    fn subscription(&self, contact: &Jid) -> Subscription {
        self.items.get(contact).map_or(Subscription::None, |item| item.subscription)
    }
}

/// On a resource: it asked for the roster, so it gets roster pushes and subscription requests
/// (RFC 6121 §2.1.6).
struct WantsRoster;

/// The subscription the user has with `contact` (a bare JID).
pub(crate) async fn subscription(state: &mut UserState, contact: &Jid) -> Subscription {
    cached(state).await.subscription(contact)
}

/// Whether `contact` (a bare JID) is in the user's roster.
pub(crate) async fn is_contact(state: &mut UserState, contact: &Jid) -> bool {
    cached(state).await.items.contains_key(contact)
}

/// The roster groups `contact` (a bare JID) is in.
pub(crate) async fn groups(state: &mut UserState, contact: &Jid) -> Vec<String> {
    cached(state).await.items.get(contact).map(|item| item.groups.clone()).unwrap_or_default()
}

/// Every contact with the user's subscription to it.
pub(crate) async fn contacts(state: &mut UserState) -> Vec<(Jid, Subscription)> {
    cached(state).await.items.iter().map(|(jid, item)| (jid.clone(), item.subscription)).collect()
}

/// Whether the contact receives this user's presence.
pub(crate) fn has_from(subscription: Subscription) -> bool {
    matches!(subscription, Subscription::From | Subscription::Both)
}

/// Whether this user receives the contact's presence.
pub(crate) fn has_to(subscription: Subscription) -> bool {
    matches!(subscription, Subscription::To | Subscription::Both)
}

/// An item as the protocol writes it (RFC 6121 §2.1.2).
fn payload_item(jid: &Jid, item: &RosterItem) -> payload::RosterItem {
    let subscription = match item.subscription {
        Subscription::None => payload::Subscription::None,
        Subscription::To => payload::Subscription::To,
        Subscription::From => payload::Subscription::From,
        Subscription::Both => payload::Subscription::Both,
    };
    payload::RosterItem {
        jid: jid.clone(),
        name: item.name.clone(),
        subscription,
        ask: item.ask_out,
        approved: item.approved,
        groups: item.groups.clone(),
    }
}

fn new_item(contact: &Jid) -> RosterItem {
    RosterItem {
        jid: contact.to_string(),
        name: None,
        groups: Vec::new(),
        subscription: Subscription::None,
        ask_out: false,
        approved: false,
    }
}

/// The roster, loaded from the store on first use.
async fn cached(state: &mut UserState) -> &mut Roster {
    if state.ext.get::<Roster>().is_none() {
        let (version, items) = match state.services().store.rosters.roster(state.user().as_str()).await {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::warn!(user = %state.user(), %error, "could not load roster");
                (0, Vec::new())
            }
        };
        let items = items.into_iter().filter_map(|item| Some((Jid::new(&item.jid).ok()?, item))).collect();
        state.ext.insert(Roster { version, items });
    }
    state.ext.get_or_insert_with(Roster::default)
}

/// §3.1.3: subscription requests that arrived while the user was away, to the resource at
/// `index` when it becomes available.
pub(crate) async fn deliver_pending_subscriptions(state: &mut UserState, index: usize) {
    match state.services().store.rosters.pending_in(state.user().as_str()).await {
        Ok(pending) => {
            for (_, bytes) in pending {
                let _ = state.send_to(index, StanzaKind::Presence, bytes.into());
            }
        }
        Err(error) => tracing::warn!(user = %state.user(), %error, "could not read pending subscriptions"),
    }
}

/// Stores an item (or removes it when `item` is `None`) and pushes the change to every
/// interested resource (RFC 6121 §2.1.6).
async fn commit_item(state: &mut UserState, contact: &Jid, item: Option<RosterItem>) {
    let store = state.services().store.rosters.clone();
    let result = match &item {
        Some(item) => store.put(state.user().as_str(), item.clone()).await.map(Some),
        None => store.remove(state.user().as_str(), contact.as_str()).await,
    };
    let version = match result {
        Ok(Some(version)) => version,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(user = %state.user(), %error, "roster write failed");
            return;
        }
    };
    let roster = cached(state).await;
    roster.version = version;
    let pushed = match item {
        Some(item) => {
            let pushed = payload_item(contact, &item);
            roster.items.insert(contact.clone(), item);
            pushed
        }
        None => {
            roster.items.remove(contact);
            payload::RosterItem::removed(contact.clone())
        }
    };
    let push = RosterQuery { ver: Some(version.to_string()), items: vec![pushed] };
    state.push_to(|resource| resource.ext.get::<WantsRoster>().is_some(), push.into());
}

async fn roster_iq(state: &mut UserState, iq: Iq) {
    let (stanza, query) = (&iq.stanza, &iq.payload);
    let me = state.user().clone();
    match stanza.stanza_type.as_deref() {
        Some("get") => {
            if let Some(index) = iq.resource.as_ref().and_then(|resource| state.resource_index(resource)) {
                state.resource_mut(index).ext.insert(WantsRoster);
            }
            let roster = cached(state).await;
            let version = roster.version.to_string();
            // XEP-0237 §4: the client's version is current, so pushes will bring it up to date.
            if query.attr("ver") == Some(version.as_str()) {
                state.route(stanza.iq_result(&me, None), Instant::now());
                return;
            }
            let mut items: Vec<payload::RosterItem> = roster.items.iter().map(|(jid, item)| payload_item(jid, item)).collect();
            items.sort_by(|a, b| a.jid.as_str().cmp(b.jid.as_str()));
            let result = RosterQuery { ver: Some(version), items };
            state.route(stanza.iq_result(&me, Some(result.into())), Instant::now());
        }
        Some("set") => roster_set(state, stanza, query).await,
        _ => state.reply_error(stanza, &me, StanzaErrorCondition::BadRequest),
    }
}

/// RFC 6121 §2.3–§2.5: add, update or remove one item.
async fn roster_set(state: &mut UserState, stanza: &Stanza, query: &Element) {
    let me = state.user().clone();
    let requested = match RosterQuery::parse_set(query) {
        Ok(item) => item,
        Err(error) => return state.reply_error(stanza, &me, error.condition()),
    };
    let contact = requested.jid;
    if requested.subscription == payload::Subscription::Remove {
        let Some(existing) = cached(state).await.items.get(&contact).cloned() else {
            return state.reply_error(stanza, &me, StanzaErrorCondition::ItemNotFound);
        };
        // §2.5.2: the push goes out before the result, so a client that waits for the result
        // sees the roster already changed.
        commit_item(state, &contact, None).await;
        state.route(stanza.iq_result(&me, None), Instant::now());
        // §2.5.2: removing an item cancels both subscriptions.
        if has_to(existing.subscription) || existing.ask_out {
            send_subscription(state, &contact, "unsubscribe");
        }
        if has_from(existing.subscription) {
            send_subscription(state, &contact, "unsubscribed");
        }
        let _ = state.services().store.rosters.remove_pending_in(state.user().as_str(), contact.as_str()).await;
        return;
    }
    let mut item = cached(state).await.items.get(&contact).cloned().unwrap_or_else(|| new_item(&contact));
    item.name = requested.name;
    item.groups = requested.groups;
    commit_item(state, &contact, Some(item)).await;
    state.route(stanza.iq_result(&me, None), Instant::now());
}

/// Sends a subscription stanza from this user's bare JID to the contact.
fn send_subscription(state: &mut UserState, contact: &Jid, kind: &str) {
    let presence = Element::new("presence", ns::CLIENT).with_attr("type", kind);
    let stanza = Stanza::build(presence, state.user(), Some(contact));
    state.route(stanza, Instant::now());
}

/// Whether a presence stanza is a subscription request or answer (RFC 6121 §3).
fn is_subscription(stanza: &Stanza) -> bool {
    matches!(stanza.stanza_type.as_deref(), Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed"))
}

/// RFC 6121 §3, the user's side: the user (un)subscribes or (un)approves.
async fn outbound_subscription(state: &mut UserState, stanza: Stanza) -> Flow {
    if !is_subscription(&stanza) {
        return Flow::Continue(stanza);
    }
    let Some(contact) = stanza.to.as_ref().map(Jid::bare) else { return Flow::Stop };
    let kind = stanza.stanza_type.clone().unwrap_or_default();
    let existing = cached(state).await.items.get(&contact).cloned();
    let mut item = existing.clone().unwrap_or_else(|| new_item(&contact));
    let mut route = true;
    match kind.as_str() {
        "subscribe" => {
            if !has_to(item.subscription) {
                item.ask_out = true;
            }
        }
        "subscribed" => {
            let pending = state.services().store.rosters.remove_pending_in(state.user().as_str(), contact.as_str()).await.unwrap_or(false);
            if has_from(item.subscription) {
                route = false;
            } else if pending {
                item.subscription = match item.subscription {
                    Subscription::To => Subscription::Both,
                    _ => Subscription::From,
                };
                item.approved = false;
            } else {
                // §3.4: approving before being asked is a pre-approval, kept on the item.
                item.approved = true;
                route = false;
            }
        }
        "unsubscribe" => {
            item.ask_out = false;
            item.subscription = match item.subscription {
                Subscription::Both => Subscription::From,
                Subscription::To => Subscription::None,
                other => other,
            };
        }
        "unsubscribed" => {
            let _ = state.services().store.rosters.remove_pending_in(state.user().as_str(), contact.as_str()).await;
            item.approved = false;
            item.subscription = match item.subscription {
                Subscription::Both => Subscription::To,
                Subscription::From => Subscription::None,
                other => other,
            };
        }
        _ => return Flow::Stop,
    }
    // An item is created only when it carries some state (§3.1.2, §3.1.5, §3.4); a no-op on a
    // contact that is not in the roster leaves the roster alone.
    let carries_state = item.subscription != Subscription::None || item.ask_out || item.approved;
    if existing.as_ref() != Some(&item) && (existing.is_some() || carries_state) {
        commit_item(state, &contact, Some(item.clone())).await;
    }
    if route {
        // §3.1.2: the server stamps the user's bare JID and routes to the contact's bare JID.
        send_subscription(state, &contact, &kind);
    }
    match kind.as_str() {
        "subscribed" if route => {
            state.send_current_presence(&contact);
            // The contact may now see the account's PEP nodes (XEP-0163 §4.3.3).
            super::pep::contact_approved(state, &contact).await;
        }
        "unsubscribed" if existing.is_some_and(|e| has_from(e.subscription)) => state.send_unavailable_to(&contact),
        _ => {}
    }
    Flow::Stop
}

/// RFC 6121 §3, the contact's side: a subscription stanza arrives for this user.
async fn inbound_subscription(state: &mut UserState, stanza: Stanza, received: Instant) -> Flow {
    if !is_subscription(&stanza) {
        return Flow::Continue(stanza);
    }
    take_inbound_subscription(state, stanza, received).await;
    Flow::Stop
}

async fn take_inbound_subscription(state: &mut UserState, stanza: Stanza, received: Instant) {
    let contact = stanza.from.bare();
    let kind = stanza.stanza_type.clone().unwrap_or_default();
    let existing = cached(state).await.items.get(&contact).cloned();
    let mut item = existing.clone().unwrap_or_else(|| new_item(&contact));
    match kind.as_str() {
        "subscribe" => {
            if has_from(item.subscription) {
                // §3.1.3: already subscribed: answer for the user.
                send_subscription(state, &contact, "subscribed");
                return;
            }
            if item.approved {
                item.approved = false;
                item.subscription = match item.subscription {
                    Subscription::To => Subscription::Both,
                    _ => Subscription::From,
                };
                commit_item(state, &contact, Some(item)).await;
                send_subscription(state, &contact, "subscribed");
                state.send_current_presence(&contact);
                return;
            }
            let stored = stanza.bytes.to_vec();
            if let Err(error) = state.services().store.rosters.add_pending_in(state.user().as_str(), contact.as_str(), stored).await {
                tracing::warn!(user = %state.user(), %error, "could not store subscription request");
            }
            deliver_to_available(state, &stanza, received);
            return;
        }
        "subscribed" => {
            if !item.ask_out {
                return;
            }
            item.ask_out = false;
            item.subscription = match item.subscription {
                Subscription::From => Subscription::Both,
                _ => Subscription::To,
            };
        }
        "unsubscribe" => {
            let _ = state.services().store.rosters.remove_pending_in(state.user().as_str(), contact.as_str()).await;
            if !has_from(item.subscription) {
                deliver_to_available(state, &stanza, received);
                return;
            }
            item.subscription = match item.subscription {
                Subscription::Both => Subscription::To,
                _ => Subscription::None,
            };
            // §3.3.3: the former subscriber no longer sees this user.
            state.send_unavailable_to(&contact);
        }
        "unsubscribed" => {
            if !has_to(item.subscription) && !item.ask_out {
                return;
            }
            item.ask_out = false;
            item.subscription = match item.subscription {
                Subscription::Both => Subscription::From,
                _ => Subscription::None,
            };
        }
        _ => return,
    }
    if existing.is_some() {
        commit_item(state, &contact, Some(item)).await;
    }
    deliver_to_available(state, &stanza, received);
}

/// Subscription stanzas go to every available resource (RFC 6121 §3.1.3).
fn deliver_to_available(state: &mut UserState, stanza: &Stanza, received: Instant) {
    for index in 0..state.resources().len() {
        if state.resource(index).is_available() {
            state.send_stanza(index, stanza, Some(received));
        }
    }
}
