//! XEP-0357 push notifications. A client registers an app server's PubSub node (`<enable/>`);
//! when a message with a body arrives while the user cannot get it live — every resource it went
//! to is detached (XEP-0198, the phone's connection broke) or no resource is available (it goes
//! to offline storage) — the server publishes a notification with the `urn:xmpp:push:summary`
//! form to each registered node, from the user's bare JID. The app server (usually an external
//! component, XEP-0114) wakes the phone through its platform's push service.
//!
//! An app server answering `item-not-found` (the node is gone) disables that registration; an
//! error of type `wait` is retried, at most [`ATTEMPTS`] times in all. Registrations are kept in
//! the store and cached in the user's actor once read.

use std::collections::VecDeque;
use std::time::Instant;

use starling_cluster::store::PushRegistration;
use starling_protocol::payload::push::{notification, PushDisable, PushEnable, PushSummary};
use starling_protocol::{ns, Jid, Stanza, StanzaErrorCondition, StanzaKind};
use starling_xml::Element;

use crate::iq::{Iq, IqTo};
use crate::registry::{Flow, Hook, Registrar};
use crate::state::UserState;

/// Sends of one notification at most (the first and the retries).
const ATTEMPTS: u8 = 2;
/// Notifications awaiting the app server's answer, per user; the oldest is forgotten beyond.
const MAX_PENDING: usize = 32;
const ID_PREFIX: &str = "push-";

pub(super) fn register(r: &mut Registrar) {
    for to in [IqTo::OwnAccount, IqTo::Server] {
        r.iq(to, ns::PUSH, "enable", |state, iq| Box::pin(enable(state, iq)));
        r.iq(to, ns::PUSH, "disable", |state, iq| Box::pin(disable(state, iq)));
    }
    // Offline storage registers its hook after this one: a notification goes out, then the
    // message is stored.
    r.undeliverable(|state, stanza| Box::pin(going_offline(state, stanza)));
    r.detached(|state, _| Box::pin(async move { registrations(state).await; }));
    r.delivered(kept_for_detached);
    r.inbound(&[StanzaKind::Iq], 5, Hook::Later(|state, stanza, _| Box::pin(app_server_answer(state, stanza))));
    r.account_feature(ns::PUSH);
}

/// What the user's actor keeps about push.
#[derive(Default)]
struct PushState {
    /// The user's registrations, once read from the store.
    registrations: Option<Vec<PushRegistration>>,
    /// Messages notified since the user last enabled push (`message-count`).
    count: u64,
    /// Notifications sent and not yet answered.
    pending: VecDeque<PendingNotification>,
}

struct PendingNotification {
    id: String,
    service: Jid,
    node: String,
    payload: Element,
    attempts: u8,
}

async fn enable(state: &mut UserState, iq: Iq) {
    if iq.is_get() {
        return state.refuse(&iq, StanzaErrorCondition::BadRequest);
    }
    let enable = match PushEnable::try_from(&iq.payload) {
        Ok(enable) => enable,
        Err(error) => return state.refuse(&iq, error.condition()),
    };
    let options = enable.publish_options.as_ref().map(|form| Element::from(form).to_bytes()).unwrap_or_default();
    let registration = PushRegistration { service: enable.service.as_str().to_owned(), node: enable.node, options };
    let user = state.user().as_str().to_owned();
    if let Err(error) = state.services().store.push.add(&user, registration).await {
        return state.refuse_for_store(&iq, error);
    }
    let push = state.ext.get_or_insert_with(PushState::default);
    push.registrations = None;
    push.count = 0;
    state.reply(&iq, None);
}

async fn disable(state: &mut UserState, iq: Iq) {
    if iq.is_get() {
        return state.refuse(&iq, StanzaErrorCondition::BadRequest);
    }
    let disable = match PushDisable::try_from(&iq.payload) {
        Ok(disable) => disable,
        Err(error) => return state.refuse(&iq, error.condition()),
    };
    let user = state.user().as_str().to_owned();
    if let Err(error) = state.services().store.push.remove(&user, disable.service.as_str(), disable.node.as_deref()).await {
        return state.refuse_for_store(&iq, error);
    }
    state.ext.get_or_insert_with(PushState::default).registrations = None;
    state.reply(&iq, None);
}

/// The user's registrations, read once per actor (and again after a change).
async fn registrations(state: &mut UserState) -> usize {
    if let Some(known) = state.ext.get::<PushState>().and_then(|push| push.registrations.as_ref()) {
        return known.len();
    }
    let user = state.user().as_str().to_owned();
    let read = match state.services().store.push.list(&user).await {
        Ok(read) => read,
        Err(error) => {
            tracing::warn!(%user, %error, "could not read push registrations");
            return 0;
        }
    };
    let count = read.len();
    state.ext.get_or_insert_with(PushState::default).registrations = Some(read);
    count
}

/// A message on its way to offline storage: notify, unless it was stored before (it carries our
/// delay stamp: it was notified then).
async fn going_offline(state: &mut UserState, stanza: Stanza) -> Flow {
    if wakes(&stanza) && !stanza.has_delay_from(state.domain()) && registrations(state).await > 0 {
        notify(state, &stanza);
    }
    Flow::Continue(stanza)
}

/// A message kept for resources whose streams broke, and reaching nobody live: notify.
fn kept_for_detached(state: &mut UserState, delivered: &[usize], stanza: &Stanza) {
    if delivered.iter().all(|&index| state.resource(index).is_detached()) && wakes(stanza) {
        notify(state, stanza);
    }
}

/// Messages worth waking a phone for: chat or normal, with a body (an encrypted message carries
/// a fallback body).
fn wakes(stanza: &Stanza) -> bool {
    stanza.kind == StanzaKind::Message && matches!(stanza.stanza_type.as_deref().unwrap_or("normal"), "chat" | "normal") && stanza.mentions("<body")
}

/// Publishes a notification about `message` to every known registration.
fn notify(state: &mut UserState, message: &Stanza) {
    let config = state.services().config.push.clone();
    let body = config.include_body.then(|| body_of(message)).flatten();
    let Some(push) = state.ext.get_mut::<PushState>() else { return };
    let Some(registrations) = push.registrations.clone() else { return };
    push.count += 1;
    let summary = PushSummary {
        message_count: Some(push.count),
        last_message_sender: config.include_sender.then(|| message.from.clone()),
        last_message_body: body,
    };
    for registration in registrations {
        let Ok(service) = Jid::new(&registration.service) else { continue };
        let options = (!registration.options.is_empty()).then(|| Element::parse(&registration.options).ok()).flatten();
        let payload = notification(&registration.node, &summary, options.as_ref());
        let pending = PendingNotification { id: format!("{ID_PREFIX}{:x}", rand::random::<u64>()), service, node: registration.node, payload, attempts: 0 };
        send(state, pending);
    }
}

fn body_of(message: &Stanza) -> Option<String> {
    Some(message.element().ok()?.get_child("body", ns::CLIENT)?.text())
}

/// Sends one attempt of a notification and remembers it until answered.
fn send(state: &mut UserState, mut pending: PendingNotification) {
    pending.attempts += 1;
    let iq = Element::new("iq", ns::CLIENT).with_attr("type", "set").with_attr("id", pending.id.as_str()).with_child(pending.payload.clone());
    let iq = Stanza::build(iq, state.user(), Some(&pending.service));
    state.services().metrics.push_notifications.inc();
    state.route(iq, Instant::now());
    let push = state.ext.get_or_insert_with(PushState::default);
    if push.pending.len() == MAX_PENDING {
        push.pending.pop_front();
    }
    push.pending.push_back(pending);
}

/// The app server's answer to a notification: a result settles it, `item-not-found` disables the
/// registration, a `wait` error is retried while attempts remain.
async fn app_server_answer(state: &mut UserState, stanza: Stanza) -> Flow {
    let ours = stanza.to.as_ref().is_some_and(Jid::is_bare) && stanza.id.as_deref().is_some_and(|id| id.starts_with(ID_PREFIX));
    if !ours || !(stanza.type_is("result") || stanza.type_is("error")) {
        return Flow::Continue(stanza);
    }
    let Some(push) = state.ext.get_mut::<PushState>() else { return Flow::Continue(stanza) };
    let Some(position) = push.pending.iter().position(|p| Some(p.id.as_str()) == stanza.id.as_deref() && p.service == stanza.from) else {
        return Flow::Continue(stanza);
    };
    let Some(pending) = push.pending.remove(position) else { return Flow::Stop };
    if stanza.type_is("result") {
        return Flow::Stop;
    }
    let error = stanza.element().ok().and_then(|element| element.get_child("error", ns::CLIENT).cloned());
    let condition = error.as_ref().and_then(|error| error.children().find(|c| c.ns() == ns::STANZA_ERRORS).map(|c| c.name().to_owned()));
    let retry = error.as_ref().and_then(|error| error.attr("type")) == Some("wait");
    if condition.as_deref() == Some("item-not-found") {
        let user = state.user().as_str().to_owned();
        tracing::info!(%user, service = %pending.service, node = %pending.node, "push node gone, registration disabled");
        if let Err(error) = state.services().store.push.remove(&user, pending.service.as_str(), Some(&pending.node)).await {
            tracing::warn!(%user, %error, "could not disable a push registration");
        }
        if let Some(push) = state.ext.get_mut::<PushState>() {
            push.registrations = None;
        }
    } else if retry && pending.attempts < ATTEMPTS {
        send(state, pending);
    } else {
        state.services().metrics.push_failures.inc();
    }
    Flow::Stop
}
