//! XEP-0163 Personal Eventing Protocol: XEP-0060 nodes on every account, published to by the
//! account's own resources and read by others as each node's access model allows (open,
//! presence, roster, whitelist). What OMEMO (XEP-0384), avatars (XEP-0084), bookmarks (XEP-0402),
//! mood, tune and geolocation need: publish with item ids and publish-options (XEP-0060 §7.1.5,
//! `precondition-not-met`), auto-create on publish, retract, items by id or count, create,
//! configure, delete, purge; notifications with or without payloads to the account's resources
//! and to contacts subscribed to its presence whose clients asked for the node (`+notify` in
//! their entity capabilities, `interest`), and the last item when such a resource comes online.
//!
//! Bookmarks (XEP-0402) are kept in step with XEP-0048 private storage (`bookmarks`), the avatar
//! (XEP-0084) with the vCard's photo (XEP-0398, `avatars`).
//!
//! A node lives in the `PubSubNodes` store under the account's bare JID; the account's actor is
//! its only writer, so in a cluster a PEP node moves with its account. The actor keeps its nodes
//! and their last items once read (`Pep`).

pub(crate) mod avatars;
pub(crate) mod bookmarks;
mod interest;

use std::collections::BTreeMap;
use std::time::Instant;

use starling_cluster::store::{PubSubItem, StoreError};
use starling_protocol::payload::pubsub::{self, Event, Item, PubSubOwnerRequest, PubSubRequest};
use starling_protocol::payload::{DataForm, Identity};
use starling_protocol::{ns, Jid, Stanza, StanzaError, StanzaErrorCondition};
use starling_xml::Element;

use super::pubsub::node::{AccessModel, Limits, Node, NodeConfig, SendLast};
use super::roster;
use crate::config::PepConfig;
use crate::iq::{Iq, IqTo};
use crate::registry::Registrar;
use crate::state::UserState;

const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-roster",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#auto-create",
    // Contacts are subscribed by their presence subscription (XEP-0163 §4).
    "http://jabber.org/protocol/pubsub#auto-subscribe",
    "http://jabber.org/protocol/pubsub#config-node",
    "http://jabber.org/protocol/pubsub#create-and-configure",
    "http://jabber.org/protocol/pubsub#create-nodes",
    "http://jabber.org/protocol/pubsub#delete-items",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#filtered-notifications",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#purge-nodes",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-items",
];

pub(super) fn register(r: &mut Registrar) {
    if !r.config.pep.enabled {
        return;
    }
    r.iq(IqTo::OwnAccount, ns::PUBSUB, "pubsub", |state, iq| Box::pin(own_request(state, iq)));
    r.iq(IqTo::OwnAccount, ns::PUBSUB_OWNER, "pubsub", |state, iq| Box::pin(owner_request(state, iq)));
    r.iq(IqTo::Account, ns::PUBSUB, "pubsub", |state, iq| Box::pin(contact_request(state, iq)));
    // On the account (XEP-0163 §5), and on the server as Prosody does: clients (Smack's OMEMO
    // among them) look for PubSub on the server's domain.
    let identity = Identity::new("pubsub", "pep", None);
    r.account_identity(identity.clone());
    r.server_identity(identity);
    for feature in std::iter::once(&ns::PUBSUB).chain(FEATURES) {
        r.account_feature(feature);
        r.server_feature(feature);
    }
    // XEP-0402 §5.3 and XEP-0411: bookmarks in private storage and on PEP are the same.
    r.account_feature("urn:xmpp:bookmarks:1#compat");
    r.account_feature("urn:xmpp:bookmarks-conversion:0");
    // XEP-0398: the vCard's photo and the PEP avatar are the same (`avatars`).
    r.account_feature("urn:xmpp:pep-vcard-conversion:0");
    interest::register(r);
}

/// On the user: its nodes and their last items, read from the store once.
#[derive(Default)]
struct Pep {
    nodes: BTreeMap<String, Node>,
    last: BTreeMap<String, PubSubItem>,
    /// The last publication's time, microseconds since the epoch: each is later.
    published: u64,
}

/// The user's nodes, loaded on first use; `None` (and the caller answers with an error the
/// client may retry on) when the store cannot be read.
async fn nodes(state: &mut UserState) -> Option<&mut Pep> {
    if state.ext.get::<Pep>().is_none() {
        let store = state.services().store.pubsub.clone();
        let user = state.user().to_string();
        let limits = state.services().config.pep.clone();
        let mut pep = Pep::default();
        for (name, record) in store.nodes(&user).await.map_err(|error| tracing::warn!(%user, %error, "could not read PEP nodes")).ok()? {
            let Some(node) = Node::decode(&record, &node_limits(&limits)) else {
                tracing::warn!(%user, node = name, "a stored PEP node does not decode; it is left out");
                continue;
            };
            if let Ok(Some(last)) = store.items(&user, &name, &[], Some(1)).await.map(|items| items.into_iter().next()) {
                pep.last.insert(name.clone(), last);
            }
            pep.nodes.insert(name, node);
        }
        state.ext.insert(pep);
    }
    state.ext.get_mut::<Pep>()
}

/// What bounds a PEP node's configuration.
fn node_limits(config: &PepConfig) -> Limits {
    Limits { max_items: config.max_items, access_models: AccessModel::PEP }
}

fn error(condition: StanzaErrorCondition, app: &str) -> StanzaError {
    pubsub::pubsub_error(condition, app, None)
}

fn refuse(state: &mut UserState, iq: &Iq, error: StanzaError) {
    if let Some(reply) = iq.stanza.error_reply(&iq.responder, &error) {
        state.route(reply, Instant::now());
    }
}

/// A request of the account's owner in `pubsub`.
async fn own_request(state: &mut UserState, iq: Iq) {
    let request = match PubSubRequest::try_from(&iq.payload) {
        Ok(request) => request,
        Err(problem) => return state.refuse(&iq, problem.condition()),
    };
    let get = iq.is_get();
    match request {
        PubSubRequest::Publish { node, item, options } if !get => publish(state, &iq, node, item, options).await,
        PubSubRequest::Retract { node, ids, notify } if !get => retract(state, &iq, &node, ids, notify).await,
        PubSubRequest::Items { node, ids, max } if get => items(state, &iq, &node, &ids, max).await,
        PubSubRequest::Create { node, config } if !get => create(state, &iq, node, config).await,
        PubSubRequest::Subscribe { .. } | PubSubRequest::Unsubscribe { .. } | PubSubRequest::Subscriptions { .. } | PubSubRequest::Affiliations { .. } => {
            // PEP subscriptions are implicit: presence subscription and +notify (XEP-0163 §4).
            refuse(state, &iq, pubsub::pubsub_error(StanzaErrorCondition::FeatureNotImplemented, "unsupported", Some("subscribe")))
        }
        _ => state.refuse(&iq, StanzaErrorCondition::BadRequest),
    }
}

/// Why a publication did not happen.
enum Refusal {
    Stanza(StanzaError),
    Store(StoreError),
}

impl Refusal {
    fn answer(self, state: &mut UserState, iq: &Iq) {
        match self {
            Refusal::Stanza(error) => refuse(state, iq, error),
            Refusal::Store(error) => state.refuse_for_store(iq, error),
        }
    }
}

async fn publish(state: &mut UserState, iq: &Iq, name: String, item: Item, options: Option<DataForm>) {
    let Some(payload) = item.payload else { return refuse(state, iq, error(StanzaErrorCondition::BadRequest, "item-required")) };
    match publish_item(state, &name, item.id, &payload, options.as_ref()).await {
        Ok((id, node)) => {
            state.reply(iq, Some(pubsub::publish_result(&name, &id)));
            let shown = node.config.deliver_payloads.then_some(&payload);
            notify(state, &name, &node, &Event::Published { node: &name, items: vec![(&id, shown)] }).await;
            match name.as_str() {
                bookmarks::NODE => bookmarks::to_private(state).await,
                avatars::METADATA => avatars::to_vcard(state, &payload).await,
                _ => {}
            }
        }
        Err(refusal) => refusal.answer(state, iq),
    }
}

/// Stores an item of the account's node `name` (created on first publish, XEP-0163 §3, as the
/// publish-options say); its id and the node. Nobody is notified yet.
async fn publish_item(state: &mut UserState, name: &str, id: Option<String>, payload: &Element, options: Option<&DataForm>) -> Result<(String, Node), Refusal> {
    let limits = state.services().config.pep.clone();
    let bytes = payload.to_bytes();
    if bytes.len() > limits.max_payload_bytes {
        return Err(Refusal::Stanza(error(StanzaErrorCondition::NotAcceptable, "payload-too-big")));
    }
    let Some(pep) = nodes(state).await else { return Err(Refusal::Stanza(StanzaError::new(StanzaErrorCondition::ResourceConstraint))) };
    let node = match (pep.nodes.get(name).cloned(), options) {
        (Some(node), Some(options)) if !node.config.meets(options, &node_limits(&limits)) => {
            return Err(Refusal::Stanza(error(StanzaErrorCondition::Conflict, "precondition-not-met")));
        }
        (Some(node), _) => node,
        (None, _) if pep.nodes.len() >= limits.max_nodes => {
            return Err(Refusal::Stanza(StanzaError::new(StanzaErrorCondition::NotAllowed).with_text("Too many PEP nodes on this account.")));
        }
        (None, options) => {
            let config = match options.map(|form| NodeConfig::new().with_submitted(form, &node_limits(&limits))).transpose() {
                Ok(config) => config.unwrap_or_else(NodeConfig::new),
                Err(condition) => return Err(Refusal::Stanza(StanzaError::new(condition))),
            };
            let node = Node::new(config);
            state.services().store.pubsub.set_node(state.user().as_str(), name, node.encode(&node_limits(&limits))).await.map_err(Refusal::Store)?;
            node
        }
    };
    let pep = state.ext.get_or_insert_with(Pep::default);
    pep.published = crate::datetime::now_micros().max(pep.published + 1);
    let published = pep.published;
    let id = id.unwrap_or_else(|| format!("{published:x}"));
    let stored = PubSubItem { id: id.clone(), publisher: state.user().to_string(), published, payload: bytes };
    if node.config.persist_items {
        state.services().store.pubsub.publish(state.user().as_str(), name, stored.clone(), node.config.max_items).await.map_err(Refusal::Store)?;
    }
    let pep = state.ext.get_or_insert_with(Pep::default);
    pep.nodes.insert(name.to_owned(), node.clone());
    pep.last.insert(name.to_owned(), stored);
    Ok((id, node))
}

async fn retract(state: &mut UserState, iq: &Iq, name: &str, ids: Vec<String>, notify_requested: bool) {
    if ids.is_empty() {
        return refuse(state, iq, error(StanzaErrorCondition::BadRequest, "item-required"));
    }
    match retract_items(state, name, &ids).await {
        Ok(node) => {
            state.reply(iq, None);
            if notify_requested || node.config.notify_retract {
                notify(state, name, &node, &Event::Retracted { node: name, ids: ids.iter().map(String::as_str).collect() }).await;
            }
            if name == bookmarks::NODE {
                bookmarks::to_private(state).await;
            }
        }
        Err(refusal) => refusal.answer(state, iq),
    }
}

/// Removes items of the account's node `name`; the node. Nobody is notified yet.
async fn retract_items(state: &mut UserState, name: &str, ids: &[String]) -> Result<Node, Refusal> {
    let Some(pep) = nodes(state).await else { return Err(Refusal::Stanza(StanzaError::new(StanzaErrorCondition::ResourceConstraint))) };
    let Some(node) = pep.nodes.get(name).cloned() else { return Err(Refusal::Stanza(StanzaError::new(StanzaErrorCondition::ItemNotFound))) };
    let store = state.services().store.pubsub.clone();
    for id in ids {
        if !store.retract(state.user().as_str(), name, id).await.map_err(Refusal::Store)? {
            return Err(Refusal::Stanza(StanzaError::new(StanzaErrorCondition::ItemNotFound)));
        }
    }
    let newest = store.items(state.user().as_str(), name, &[], Some(1)).await.ok().and_then(|items| items.into_iter().next());
    let pep = state.ext.get_or_insert_with(Pep::default);
    match newest {
        Some(item) => pep.last.insert(name.to_owned(), item),
        None => pep.last.remove(name),
    };
    Ok(node)
}

/// §6.5: the items of a node, to whoever may see them.
async fn items(state: &mut UserState, iq: &Iq, name: &str, ids: &[String], max: Option<usize>) {
    let requester = iq.stanza.from.bare();
    let Some(pep) = nodes(state).await else { return state.refuse(iq, StanzaErrorCondition::ResourceConstraint) };
    let Some(node) = pep.nodes.get(name).cloned() else { return state.refuse(iq, StanzaErrorCondition::ItemNotFound) };
    if let Err(error) = access(state, &node, &requester).await {
        return refuse(state, iq, error);
    }
    match state.services().store.pubsub.items(state.user().as_str(), name, ids, max).await {
        Ok(found) => {
            let parsed: Vec<(String, Option<Element>)> = found.iter().map(|item| (item.id.clone(), Element::parse(&item.payload).ok())).collect();
            state.reply(iq, Some(pubsub::items_result(name, parsed.iter().map(|(id, payload)| (id.as_str(), payload.as_ref())))));
        }
        Err(error) => state.refuse_for_store(iq, error),
    }
}

async fn create(state: &mut UserState, iq: &Iq, name: Option<String>, config: Option<DataForm>) {
    let limits = state.services().config.pep.clone();
    let Some(name) = name else { return refuse(state, iq, error(StanzaErrorCondition::NotAcceptable, "nodeid-required")) };
    let Some(pep) = nodes(state).await else { return state.refuse(iq, StanzaErrorCondition::ResourceConstraint) };
    if pep.nodes.contains_key(&name) {
        return state.refuse(iq, StanzaErrorCondition::Conflict);
    }
    if pep.nodes.len() >= limits.max_nodes {
        return refuse(state, iq, StanzaError::new(StanzaErrorCondition::NotAllowed).with_text("Too many PEP nodes on this account."));
    }
    let config = match config.as_ref().map(|form| NodeConfig::new().with_submitted(form, &node_limits(&limits))).transpose() {
        Ok(config) => config.unwrap_or_else(NodeConfig::new),
        Err(condition) => return state.refuse(iq, condition),
    };
    save(state, iq, name, Node::new(config), None).await;
}

/// Stores a node's record, keeps it, and answers `iq` with `answer`.
async fn save(state: &mut UserState, iq: &Iq, name: String, node: Node, answer: Option<Element>) {
    let limits = state.services().config.pep.clone();
    if let Err(error) = state.services().store.pubsub.set_node(state.user().as_str(), &name, node.encode(&node_limits(&limits))).await {
        return state.refuse_for_store(iq, error);
    }
    state.ext.get_or_insert_with(Pep::default).nodes.insert(name, node);
    state.reply(iq, answer);
}

/// A request of the account's owner in `pubsub#owner`.
async fn owner_request(state: &mut UserState, iq: Iq) {
    let request = match PubSubOwnerRequest::try_from(&iq.payload) {
        Ok(request) => request,
        Err(problem) => return state.refuse(&iq, problem.condition()),
    };
    let limits = state.services().config.pep.clone();
    if let PubSubOwnerRequest::Default = request {
        return state.reply(&iq, Some(pubsub::configure_result(None, &NodeConfig::new().form(&node_limits(&limits)))));
    }
    let (PubSubOwnerRequest::Configure { node: name, .. } | PubSubOwnerRequest::Delete { node: name } | PubSubOwnerRequest::Purge { node: name }) = &request else {
        return state.refuse(&iq, StanzaErrorCondition::BadRequest);
    };
    let name = name.clone();
    let Some(pep) = nodes(state).await else { return state.refuse(&iq, StanzaErrorCondition::ResourceConstraint) };
    let Some(node) = pep.nodes.get(&name).cloned() else { return state.refuse(&iq, StanzaErrorCondition::ItemNotFound) };
    let store = state.services().store.pubsub.clone();
    match request {
        PubSubOwnerRequest::Configure { form: None, .. } if iq.is_get() => state.reply(&iq, Some(pubsub::configure_result(Some(&name), &node.config.form(&node_limits(&limits))))),
        PubSubOwnerRequest::Configure { form: Some(form), .. } if !iq.is_get() => match node.config.with_submitted(&form, &node_limits(&limits)) {
            Ok(config) => save(state, &iq, name, Node { config, ..node }, None).await,
            Err(condition) => state.refuse(&iq, condition),
        },
        PubSubOwnerRequest::Delete { .. } if !iq.is_get() => {
            if let Err(error) = store.delete_node(state.user().as_str(), &name).await {
                return state.refuse_for_store(&iq, error);
            }
            let pep = state.ext.get_or_insert_with(Pep::default);
            pep.nodes.remove(&name);
            pep.last.remove(&name);
            state.reply(&iq, None);
            if node.config.notify_delete {
                notify(state, &name, &node, &Event::Deleted { node: &name }).await;
            }
        }
        PubSubOwnerRequest::Purge { .. } if !iq.is_get() => {
            if let Err(error) = store.purge(state.user().as_str(), &name).await {
                return state.refuse_for_store(&iq, error);
            }
            state.ext.get_or_insert_with(Pep::default).last.remove(&name);
            state.reply(&iq, None);
            notify(state, &name, &node, &Event::Purged { node: &name }).await;
        }
        _ => state.refuse(&iq, StanzaErrorCondition::BadRequest),
    }
}

/// A request of someone else to the account: reading items, as the node's access model allows.
async fn contact_request(state: &mut UserState, iq: Iq) {
    match PubSubRequest::try_from(&iq.payload) {
        Ok(PubSubRequest::Items { node, ids, max }) if iq.is_get() => items(state, &iq, &node, &ids, max).await,
        Ok(PubSubRequest::Subscribe { .. } | PubSubRequest::Unsubscribe { .. }) => {
            refuse(state, &iq, pubsub::pubsub_error(StanzaErrorCondition::FeatureNotImplemented, "unsupported", Some("subscribe")))
        }
        // Only the account publishes to its own nodes (XEP-0163 §3).
        Ok(_) => state.refuse(&iq, StanzaErrorCondition::Forbidden),
        Err(problem) => state.refuse(&iq, problem.condition()),
    }
}

/// Whether `requester` (a bare JID) may see `node` (XEP-0060 §4.5, §6.5.8 errors).
async fn access(state: &mut UserState, node: &Node, requester: &Jid) -> Result<(), StanzaError> {
    if requester == state.user() {
        return Ok(());
    }
    match node.config.access {
        AccessModel::Open => Ok(()),
        AccessModel::Presence if roster::has_from(roster::subscription(state, requester).await) => Ok(()),
        AccessModel::Presence => Err(error(StanzaErrorCondition::NotAuthorized, "presence-subscription-required")),
        AccessModel::Roster => {
            let groups = roster::groups(state, requester).await;
            if groups.iter().any(|group| node.config.roster_groups.contains(group)) {
                Ok(())
            } else {
                Err(error(StanzaErrorCondition::NotAuthorized, "not-in-roster-group"))
            }
        }
        AccessModel::Whitelist if node.whitelisted(requester) => Ok(()),
        AccessModel::Whitelist | AccessModel::Authorize => Err(error(StanzaErrorCondition::NotAllowed, "closed-node")),
    }
}

/// Tells the account's resources and its contacts (presence-subscribed, allowed by the node)
/// whose clients asked for `name` what happened to it: a headline from the account to each such
/// resource (XEP-0163 §4.3); in a cluster, one bus record per edge for contacts' resources
/// reached directly (`fan_out`).
async fn notify(state: &mut UserState, name: &str, node: &Node, event: &Event<'_>) {
    let mut allowed = Vec::new();
    for recipient in interest::interested(state, name) {
        let bare = recipient.bare();
        if bare != *state.user() && (!roster::has_from(roster::subscription(state, &bare).await) || access(state, node, &bare).await.is_err()) {
            continue;
        }
        allowed.push(recipient);
    }
    let targets = interest::reach(state, allowed).await;
    let message = Element::new("message", ns::CLIENT).with_attr("type", "headline").with_child(event.to_element());
    let through_owners = crate::fan_out::send(state.services(), state.user(), message, targets.iter().map(|(jid, via)| (jid, via.as_ref())));
    for stanza in through_owners {
        state.route(stanza, Instant::now());
    }
}

fn send_event(state: &mut UserState, to: &Jid, event: Element) {
    let message = Element::new("message", ns::CLIENT).with_attr("type", "headline").with_child(event);
    let stanza = Stanza::build(message, state.user(), Some(to));
    state.route(stanza, Instant::now());
}

/// The account approved `contact`'s subscription to its presence: what its resources asked for.
pub(crate) async fn contact_approved(state: &mut UserState, contact: &Jid) {
    interest::contact_approved(state, contact).await;
}

/// The last items `resource` (a full JID that just came online, or whose interests just became
/// known) should get: every node it asked for whose access lets it see it and that sends its last
/// item on presence (XEP-0163 §4.3.3).
pub(super) async fn send_last_items(state: &mut UserState, resource: &Jid, wanted: &dyn Fn(&str) -> bool) {
    let bare = resource.bare();
    let own = bare == *state.user();
    if !own && !roster::has_from(roster::subscription(state, &bare).await) {
        return;
    }
    let Some(pep) = nodes(state).await else { return };
    let candidates: Vec<(String, Node, PubSubItem)> = pep
        .nodes
        .iter()
        .filter(|(name, node)| node.config.send_last == SendLast::OnSubscriptionAndPresence && wanted(name))
        .filter_map(|(name, node)| Some((name.clone(), node.clone(), pep.last.get(name)?.clone())))
        .collect();
    for (name, node, item) in candidates {
        if !own && access(state, &node, &bare).await.is_err() {
            continue;
        }
        let payload = Element::parse(&item.payload).ok();
        let shown = payload.as_ref().filter(|_| node.config.deliver_payloads);
        let event = Event::Published { node: &name, items: vec![(&item.id, shown)] }.to_element();
        send_event(state, resource, event);
    }
}
