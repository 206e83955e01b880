//! The path of a stanza through a user's actor: what one of the user's resources sent
//! ([`handle_own`]), what others sent to the user ([`inbound`]), a resource going away
//! ([`unbind`]). The core decides only what RFC 6120/6121 fix for every server — IQ dispatch,
//! unknown accounts, the delivery rules for messages (RFC 6121 §8.5) — and runs the registered
//! modules' handlers and hooks for everything else.

use std::time::{Instant, SystemTime};

use starling_cluster::gateway::StreamEnd;
use starling_protocol::{Jid, Stanza, StanzaErrorCondition, StanzaKind};
use starling_xml::{Element, ParseError};

use crate::iq::{Iq, IqTo};
use crate::registry::Modules;
use crate::state::{Unacked, UserState};

/// A stanza from one of the user's resources.
pub(crate) async fn handle_own(modules: &Modules, state: &mut UserState, resource: Jid, mut stanza: Stanza, received: Instant) {
    let to_server = stanza.to.as_ref().is_some_and(|to| to == state.domain());
    let to_self = stanza.to.as_ref().is_none_or(|to| to == state.user());
    match stanza.kind {
        // A result or error to the account goes through the hooks: a module may have asked.
        StanzaKind::Iq if (to_server || to_self) && (stanza.is_iq_request() || to_server) => {
            let (to, responder) = if to_server { (IqTo::Server, state.domain().clone()) } else { (IqTo::OwnAccount, state.user().clone()) };
            dispatch_iq(modules, state, stanza, to, responder, Some(resource)).await;
        }
        StanzaKind::Message if to_server => {
            // Nothing on the server itself takes messages (RFC 6121 §8.5.1 for the domain).
            if !stanza.type_is("headline") {
                let domain = state.domain().clone();
                state.reply_error(&stanza, &domain, StanzaErrorCondition::ServiceUnavailable);
            }
        }
        _ => {
            if stanza.kind != StanzaKind::Presence && stanza.to.is_none() {
                stanza.to = Some(state.user().clone());
            }
            if let Some(stanza) = modules.outbound(state, &resource, stanza, received).await {
                state.route(stanza, received);
            }
        }
    }
}

/// A stanza addressed to this user by someone else (or by another of the user's resources).
pub(crate) async fn inbound(modules: &Modules, state: &mut UserState, stanza: Stanza, received: Instant) {
    if !state.account_exists().await {
        refuse_for_unknown_user(state, &stanza);
        return;
    }
    let Some(stanza) = modules.inbound(state, stanza, received).await else { return };
    match stanza.kind {
        StanzaKind::Message => deliver_message(modules, state, stanza, received).await,
        StanzaKind::Iq => inbound_iq(modules, state, stanza, received).await,
        // Presence is the presence module's; without it, nothing is shown.
        StanzaKind::Presence => {}
    }
}

/// The connection of a resource ended: a resumable stream-managed session that broke waits to
/// be resumed (XEP-0198); otherwise the modules have their say, then it is removed, and what its
/// client never acknowledged is kept offline.
pub(crate) async fn unbind(modules: &Modules, state: &mut UserState, jid: &Jid, connection_id: u64, end: StreamEnd) {
    let Some(index) = state.bound_index(jid, connection_id) else { return };
    if end == StreamEnd::Broken && state.detach(index) {
        modules.detached(state, index).await;
        return;
    }
    let unacknowledged = state.end_stream_management(index);
    modules.unbinding(state, index).await;
    // A hook may have removed other resources; find this one again.
    if let Some(index) = state.bound_index(jid, connection_id) {
        state.remove_resource(index).await;
    }
    keep_unacknowledged(modules, state, unacknowledged).await;
}

/// What a client never acknowledged when its session ended (XEP-0198 §5): messages go where
/// messages nobody could take go (offline storage), stamped with the time they were first sent
/// unless they carry our stamp already (from offline storage), and with their stanza-ids;
/// requests are answered with an error so that their senders are not left waiting; the rest
/// (presence, results, errors, group chat, headlines) is dropped as it would be for an absent
/// resource.
pub(crate) async fn keep_unacknowledged(modules: &Modules, state: &mut UserState, unacknowledged: Vec<Unacked>) {
    for unacked in unacknowledged {
        keep_undelivered(modules, state, &unacked.bytes, unacked.sent_at).await;
    }
}

/// One stanza sent at `sent_at` that never reached its client (unacknowledged, or handed back
/// by an edge that could not write it), kept as [`keep_unacknowledged`] says.
pub(crate) async fn keep_undelivered(modules: &Modules, state: &mut UserState, bytes: &[u8], sent_at: SystemTime) {
    let Ok(stanza) = Element::parse(bytes).map_err(drop).and_then(|element| Stanza::from_element(&element).map_err(drop)) else { return };
    let Some(to) = stanza.to.clone() else { return };
    match stanza.kind {
        StanzaKind::Message if matches!(stanza.stanza_type.as_deref().unwrap_or("normal"), "chat" | "normal") => {
            let sent_at = crate::datetime::micros_of(sent_at) / 1_000_000 * 1_000_000;
            let stanza = if stanza.has_delay_from(state.domain()) { stanza } else { stanza.with_delay(state.domain(), sent_at) };
            if let Some(refused) = modules.undeliverable(state, stanza).await {
                state.reply_error(&refused, &to, StanzaErrorCondition::ServiceUnavailable);
            }
        }
        StanzaKind::Iq if stanza.is_iq_request() => state.reply_error(&stanza, &to, StanzaErrorCondition::ServiceUnavailable),
        _ => {}
    }
}

/// RFC 6121 §8.5.1: stanzas to a JID with no account.
fn refuse_for_unknown_user(state: &mut UserState, stanza: &Stanza) {
    let me = stanza.to.clone().unwrap_or_else(|| state.user().clone());
    match stanza.kind {
        StanzaKind::Message if stanza.type_is("headline") => {}
        StanzaKind::Presence if stanza.type_is("subscribe") => {
            let unsubscribed = Element::new("presence", starling_protocol::ns::CLIENT).with_attr("type", "unsubscribed");
            let reply = Stanza::build(unsubscribed, state.user(), Some(&stanza.from.bare()));
            state.route(reply, Instant::now());
        }
        StanzaKind::Presence => {}
        StanzaKind::Message | StanzaKind::Iq => state.reply_error(stanza, &me, StanzaErrorCondition::ServiceUnavailable),
    }
}

/// The single child element of an IQ request, which names what it asks for (RFC 6120 §8.2.3).
fn payload(stanza: &Stanza) -> Result<Option<Element>, ParseError> {
    let mut children = stanza.element()?.into_children();
    Ok(match (children.next(), children.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    })
}

/// Hands an IQ request to the handler registered for its payload and addressee; a result or
/// error nobody asked for is dropped (RFC 6120 §8.2.3), a request nobody handles gets
/// `service-unavailable`.
async fn dispatch_iq(modules: &Modules, state: &mut UserState, stanza: Stanza, to: IqTo, responder: Jid, resource: Option<Jid>) {
    if !stanza.is_iq_request() {
        return;
    }
    let Ok(Some(payload)) = payload(&stanza) else {
        return state.reply_error(&stanza, &responder, StanzaErrorCondition::BadRequest);
    };
    match modules.iq_handler(to, &payload) {
        Some(handler) => handler(state, Iq { stanza, payload, to, responder, resource }).await,
        None => state.reply_error(&stanza, &responder, StanzaErrorCondition::ServiceUnavailable),
    }
}

/// An IQ to this user from someone else: a full JID goes to that resource (unless a module
/// answers for it), a bare JID is answered by the server on the account's behalf.
async fn inbound_iq(modules: &Modules, state: &mut UserState, stanza: Stanza, received: Instant) {
    let Some(to) = stanza.to.clone() else { return };
    if to.is_bare() {
        return dispatch_iq(modules, state, stanza, IqTo::Account, to, None).await;
    }
    if stanza.is_iq_request()
        && let Ok(Some(payload)) = payload(&stanza)
        && let Some(handler) = modules.iq_handler(IqTo::Resource, &payload)
    {
        return handler(state, Iq { stanza, payload, to: IqTo::Resource, responder: to, resource: None }).await;
    }
    match state.resource_index(&to) {
        Some(index) if state.resource(index).is_connected() => {
            state.send_stanza(index, &stanza, Some(received));
        }
        _ => state.reply_error(&stanza, &to, StanzaErrorCondition::ServiceUnavailable),
    }
}

/// RFC 6121 §8.5: where a message addressed to this user goes.
async fn deliver_message(modules: &Modules, state: &mut UserState, stanza: Stanza, received: Instant) {
    let Some(to) = stanza.to.clone() else { return };
    let message_type = stanza.stanza_type.as_deref().unwrap_or("normal");
    if !to.is_bare() {
        if let Some(index) = state.resource_index(&to)
            && state.resource(index).is_connected()
        {
            // §8.5.3.1: a connected resource gets it, available or not.
            if state.send_stanza(index, &stanza, Some(received)) {
                modules.delivered(state, &[index], &stanza);
                return;
            }
        }
        // §8.5.3.2.1: no such resource: chat and normal fall back to the bare JID.
        if !matches!(message_type, "chat" | "normal") {
            if message_type == "groupchat" {
                state.reply_error(&stanza, &to, StanzaErrorCondition::ServiceUnavailable);
            }
            return;
        }
    }
    match message_type {
        "error" => {}
        "groupchat" => state.reply_error(&stanza, &to, StanzaErrorCondition::ServiceUnavailable),
        "headline" => {
            for index in non_negative_available(state) {
                state.send_stanza(index, &stanza, Some(received));
            }
        }
        _ => {
            // §8.5.2.1.1: the available resources of highest non-negative priority get it.
            let candidates = non_negative_available(state);
            let top = candidates.iter().map(|&i| state.resource(i).priority()).max();
            let targets: Vec<usize> = candidates.into_iter().filter(|&i| Some(state.resource(i).priority()) == top).collect();
            let mut delivered = Vec::new();
            for index in targets {
                if state.send_stanza(index, &stanza, Some(received)) {
                    delivered.push(index);
                }
            }
            if !delivered.is_empty() {
                modules.delivered(state, &delivered, &stanza);
            } else if let Some(refused) = modules.undeliverable(state, stanza).await {
                // §8.5.2.2.1 without offline storage: the sender learns nobody took it.
                state.reply_error(&refused, &to, StanzaErrorCondition::ServiceUnavailable);
            }
        }
    }
}

/// Whether [`deliver_message`] would find nobody for this message and hand it to the
/// `undeliverable` hooks (unless a resource's queue overflows on the way).
pub(crate) fn goes_undelivered(state: &UserState, stanza: &Stanza) -> bool {
    let Some(to) = stanza.to.as_ref() else { return false };
    if stanza.kind != StanzaKind::Message || !matches!(stanza.stanza_type.as_deref().unwrap_or("normal"), "chat" | "normal") {
        return false;
    }
    let connected = !to.is_bare() && state.resource_index(to).is_some_and(|index| state.resource(index).is_connected());
    !connected && non_negative_available(state).is_empty()
}

/// Indexes of available resources with non-negative priority.
pub(crate) fn non_negative_available(state: &UserState) -> Vec<usize> {
    (0..state.resources().len()).filter(|&i| state.resource(i).is_available() && state.resource(i).priority() >= 0).collect()
}
