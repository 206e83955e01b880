//! A shard of the PubSub service: the actor of every node whose id hashes to it (`address`), the
//! only writer of those nodes. It keeps the nodes it read; items stay in the store. Who may do
//! what follows XEP-0060 §4.1 (affiliations) and §4.5 (access models); owners' requests are in
//! `owner.rs`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use starling_cluster::store::{PubSubItem, StoreError};
use starling_protocol::payload::pubsub::{self, Event, Item, PubSubRequest, SubscriptionState};
use starling_protocol::payload::{DataForm, DiscoInfoResult, DiscoItem, DiscoItemsResult, Field, FormType, Identity};
use starling_protocol::{ns, Jid, Stanza, StanzaError, StanzaErrorCondition, StanzaKind};
use starling_xml::Element;

use super::node::{AccessModel, Affiliation, Node, PublishModel, SendLast, Subscription};
use super::{default_config, index, node_limits, MAX_NODE_ID_BYTES, OWNED, SUBSCRIBED};
use crate::config::PubSubConfig;
use crate::modules::roster;
use crate::service::{ServiceContext, ServiceEntity};

pub(super) struct Shard {
    pub(super) config: Arc<PubSubConfig>,
    /// Nodes read from the store; `None`: not there.
    pub(super) nodes: HashMap<String, Option<Node>>,
    /// The last publication's time, microseconds since the epoch: each is later.
    published: u64,
}

/// What a request ends with: the result's payload, or the error.
pub(super) type Outcome = Result<Option<Element>, StanzaError>;

/// `pubsub#errors` condition.
pub(super) fn error(condition: StanzaErrorCondition, app: &str) -> StanzaError {
    pubsub::pubsub_error(condition, app, None)
}

pub(super) fn store_failed(error: StoreError) -> StanzaError {
    tracing::warn!(%error, "PubSub store operation failed");
    StanzaError::new(match error {
        StoreError::LimitExceeded => StanzaErrorCondition::ResourceConstraint,
        _ => StanzaErrorCondition::InternalServerError,
    })
}

pub(super) fn state_of(subscription: &Subscription) -> &'static str {
    if subscription.pending { "pending" } else { "subscribed" }
}

impl ServiceEntity for Shard {
    fn handle<'a>(&'a mut self, context: &'a ServiceContext, stanza: Stanza, _: Instant) -> Pin<Box<dyn Future<Output = ()> + 'a>> {
        Box::pin(async move {
            // The shard's own JID is no address anyone should use.
            let to_shard = stanza.to.as_ref().is_some_and(|to| to.node().is_some());
            match stanza.kind {
                StanzaKind::Iq if stanza.is_iq_request() && to_shard => context.refuse(&stanza, &StanzaError::new(StanzaErrorCondition::ItemNotFound)),
                StanzaKind::Iq if stanza.is_iq_request() => {
                    let outcome = self.iq(context, &stanza).await;
                    match outcome {
                        Ok(payload) => context.answer(&stanza, payload),
                        Err(error) => context.refuse(&stanza, &error),
                    }
                }
                StanzaKind::Message if !to_shard && !stanza.is_error() => self.approval(context, &stanza).await,
                _ => {}
            }
        })
    }

    fn is_idle(&self) -> bool {
        true
    }
}

impl Shard {
    pub fn new(config: Arc<PubSubConfig>) -> Shard {
        Shard { config, nodes: HashMap::new(), published: 0 }
    }

    /// The node `name`, read once.
    async fn node(&mut self, context: &ServiceContext, name: &str) -> Result<Option<Node>, StanzaError> {
        if let Some(node) = self.nodes.get(name) {
            return Ok(node.clone());
        }
        let record = context.services.store.pubsub.node(context.jid.domain(), name).await.map_err(store_failed)?;
        let node = record.and_then(|record| {
            let node = Node::decode(&record, &node_limits(&self.config));
            if node.is_none() {
                tracing::warn!(node = name, "a stored PubSub node does not decode; it is left out");
            }
            node
        });
        self.nodes.insert(name.to_owned(), node.clone());
        Ok(node)
    }

    pub(super) async fn existing(&mut self, context: &ServiceContext, name: &str) -> Result<Node, StanzaError> {
        self.node(context, name).await?.ok_or_else(|| StanzaError::new(StanzaErrorCondition::ItemNotFound))
    }

    pub(super) async fn save(&mut self, context: &ServiceContext, name: &str, node: Node) -> Result<(), StanzaError> {
        let record = node.encode(&node_limits(&self.config));
        context.services.store.pubsub.set_node(context.jid.domain(), name, record).await.map_err(store_failed)?;
        self.nodes.insert(name.to_owned(), Some(node));
        Ok(())
    }

    async fn iq(&mut self, context: &ServiceContext, stanza: &Stanza) -> Outcome {
        let payload = stanza.element().ok().and_then(|element| element.into_children().next()).ok_or_else(|| StanzaError::new(StanzaErrorCondition::BadRequest))?;
        let from = stanza.from.clone();
        let get = stanza.type_is("get");
        if payload.is("pubsub", ns::PUBSUB_OWNER) {
            let request = pubsub::PubSubOwnerRequest::try_from(&payload).map_err(|problem| StanzaError::new(problem.condition()))?;
            return self.owner_request(context, &from, get, request).await;
        }
        if get && (payload.is("query", ns::DISCO_INFO) || payload.is("query", ns::DISCO_ITEMS)) {
            let name = payload.attr("node").unwrap_or_default().to_owned();
            return self.disco(context, &from, &name, payload.is("query", ns::DISCO_INFO)).await;
        }
        if !payload.is("pubsub", ns::PUBSUB) {
            return Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable));
        }
        match PubSubRequest::try_from(&payload).map_err(|problem| StanzaError::new(problem.condition()))? {
            PubSubRequest::Create { node: Some(name), config } if !get => self.create(context, &from, name, config).await,
            PubSubRequest::Publish { node, item, options } if !get => self.publish(context, &from, node, item, options).await,
            PubSubRequest::Retract { node, ids, notify } if !get => self.retract(context, &from, &node, ids, notify).await,
            PubSubRequest::Items { node, ids, max } if get => self.items(context, &from, &node, &ids, max).await,
            PubSubRequest::Subscribe { node, jid } if !get => self.subscribe(context, &from, &node, jid).await,
            PubSubRequest::Unsubscribe { node, jid } if !get => self.unsubscribe(context, &from, &node, &jid).await,
            PubSubRequest::Subscriptions { node: Some(name) } if get => {
                let node = self.existing(context, &name).await?;
                let mine: Vec<(&Jid, &Subscription)> = node.subscriptions.iter().filter(|(jid, _)| jid.bare() == from.bare()).collect();
                let list: Vec<SubscriptionState<'_>> =
                    mine.iter().map(|(jid, sub)| SubscriptionState { node: &name, jid, state: state_of(sub), subid: Some(&sub.subid) }).collect();
                Ok(Some(pubsub::subscriptions_result(ns::PUBSUB, None, &list)))
            }
            PubSubRequest::Affiliations { node: Some(name) } if get => {
                let node = self.existing(context, &name).await?;
                let mine = node.affiliation(&from.bare()).map(|affiliation| (name.as_str(), affiliation.as_str()));
                Ok(Some(pubsub::affiliations_result(ns::PUBSUB, None, mine)))
            }
            _ => Err(StanzaError::new(StanzaErrorCondition::BadRequest)),
        }
    }

    /// §8.1: a local user creates a node and owns it.
    async fn create(&mut self, context: &ServiceContext, from: &Jid, name: String, config: Option<DataForm>) -> Outcome {
        let creator = from.bare();
        if !context.services.hosts.serves(creator.domain()) || creator.node().is_none() {
            return Err(StanzaError::new(StanzaErrorCondition::Forbidden).with_text("Only this server's users create nodes."));
        }
        if name.len() > MAX_NODE_ID_BYTES {
            return Err(StanzaError::new(StanzaErrorCondition::NotAcceptable).with_text("The node id is too long."));
        }
        if self.node(context, &name).await?.is_some() {
            return Err(StanzaError::new(StanzaErrorCondition::Conflict));
        }
        let store = &context.services.store.pubsub;
        let owned = store.nodes(&index(&context.jid, OWNED, &creator)).await.map_err(store_failed)?;
        if owned.len() >= self.config.max_nodes_per_user {
            return Err(StanzaError::new(StanzaErrorCondition::NotAllowed).with_text("You own too many nodes: delete one first."));
        }
        let config = match config {
            Some(form) => default_config().with_submitted(&form, &node_limits(&self.config)).map_err(StanzaError::new)?,
            None => default_config(),
        };
        let mut node = Node::new(config);
        node.affiliations.insert(creator.clone(), Affiliation::Owner);
        store.set_node(&index(&context.jid, OWNED, &creator), &name, Vec::new()).await.map_err(store_failed)?;
        self.save(context, &name, node).await?;
        Ok(Some(pubsub::create_result(&name)))
    }

    /// §7.1: owners and publishers publish (and others, as the publish model allows).
    async fn publish(&mut self, context: &ServiceContext, from: &Jid, name: String, item: Item, options: Option<DataForm>) -> Outcome {
        let node = self.existing(context, &name).await?;
        let publisher = from.bare();
        let allowed = match node.affiliation(&publisher) {
            Some(Affiliation::Owner | Affiliation::Publisher) => true,
            Some(Affiliation::Outcast) => false,
            _ => match node.config.publish {
                PublishModel::Publishers => false,
                PublishModel::Subscribers => node.subscriptions.iter().any(|(jid, sub)| jid.bare() == publisher && !sub.pending),
                PublishModel::Open => self.access(context, &node, from).await.is_ok(),
            },
        };
        if !allowed {
            return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
        }
        if let Some(options) = &options
            && !node.config.meets(options, &node_limits(&self.config))
        {
            return Err(error(StanzaErrorCondition::Conflict, "precondition-not-met"));
        }
        // §7.1.3.6: a transient notification-only node takes no item; the others need a payload.
        let notification_only = !node.config.persist_items && !node.config.deliver_payloads;
        let payload = match (item.payload, notification_only) {
            (None, true) if item.id.is_none() => None,
            (_, true) => return Err(error(StanzaErrorCondition::BadRequest, "item-forbidden")),
            (None, false) if item.id.is_none() => return Err(error(StanzaErrorCondition::BadRequest, "item-required")),
            (None, false) => return Err(error(StanzaErrorCondition::BadRequest, "payload-required")),
            (Some(payload), false) => Some(payload),
        };
        let bytes = payload.as_ref().map(Element::to_bytes).unwrap_or_default();
        if bytes.len() > self.config.max_payload_bytes {
            return Err(error(StanzaErrorCondition::NotAcceptable, "payload-too-big"));
        }
        self.published = crate::datetime::now_micros().max(self.published + 1);
        let id = item.id.unwrap_or_else(|| format!("{:x}", self.published));
        if node.config.persist_items {
            let stored = PubSubItem { id: id.clone(), publisher: publisher.to_string(), published: self.published, payload: bytes };
            context.services.store.pubsub.publish(context.jid.domain(), &name, stored, node.config.max_items).await.map_err(store_failed)?;
        }
        let shown = payload.as_ref().filter(|_| node.config.deliver_payloads);
        notify(context, &node, &Event::Published { node: &name, items: vec![(&id, shown)] }).await;
        Ok(Some(pubsub::publish_result(&name, &id)))
    }

    /// §7.2: owners and publishers retract any item; a publisher its own.
    async fn retract(&mut self, context: &ServiceContext, from: &Jid, name: &str, ids: Vec<String>, notify_requested: bool) -> Outcome {
        if ids.is_empty() {
            return Err(error(StanzaErrorCondition::BadRequest, "item-required"));
        }
        let node = self.existing(context, name).await?;
        let requester = from.bare();
        let store = &context.services.store.pubsub;
        if !matches!(node.affiliation(&requester), Some(Affiliation::Owner | Affiliation::Publisher)) {
            let items = store.items(context.jid.domain(), name, &ids, None).await.map_err(store_failed)?;
            if items.is_empty() || items.iter().any(|item| item.publisher != requester.as_str()) {
                return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
            }
        }
        for id in &ids {
            if !store.retract(context.jid.domain(), name, id).await.map_err(store_failed)? {
                return Err(StanzaError::new(StanzaErrorCondition::ItemNotFound));
            }
        }
        if notify_requested || node.config.notify_retract {
            notify(context, &node, &Event::Retracted { node: name, ids: ids.iter().map(String::as_str).collect() }).await;
        }
        Ok(None)
    }

    /// §6.5: items, to whoever the access model lets in.
    async fn items(&mut self, context: &ServiceContext, from: &Jid, name: &str, ids: &[String], max: Option<usize>) -> Outcome {
        let node = self.existing(context, name).await?;
        self.access(context, &node, from).await?;
        let found = context.services.store.pubsub.items(context.jid.domain(), name, ids, max).await.map_err(store_failed)?;
        let parsed: Vec<(String, Option<Element>)> = found.iter().map(|item| (item.id.clone(), Element::parse(&item.payload).ok())).collect();
        Ok(Some(pubsub::items_result(name, parsed.iter().map(|(id, payload)| (id.as_str(), payload.as_ref())))))
    }

    /// Whether `who` may see the node's items (§4.5, the §6.1.3 and §6.5.8 errors).
    async fn access(&self, context: &ServiceContext, node: &Node, who: &Jid) -> Result<(), StanzaError> {
        let bare = who.bare();
        match node.affiliation(&bare) {
            Some(Affiliation::Outcast) => return Err(StanzaError::new(StanzaErrorCondition::Forbidden)),
            Some(Affiliation::Owner | Affiliation::Publisher) => return Ok(()),
            _ => {}
        }
        let owners = node.affiliations.iter().filter(|(_, affiliation)| **affiliation == Affiliation::Owner).map(|(jid, _)| jid);
        match node.config.access {
            AccessModel::Open => Ok(()),
            AccessModel::Presence | AccessModel::Roster => {
                let rosters = &context.services.store.rosters;
                for owner in owners {
                    let Ok(Some(item)) = rosters.item(owner.as_str(), bare.as_str()).await else { continue };
                    let allowed = match node.config.access {
                        AccessModel::Presence => roster::has_from(item.subscription),
                        _ => item.groups.iter().any(|group| node.config.roster_groups.contains(group)),
                    };
                    if allowed {
                        return Ok(());
                    }
                }
                Err(match node.config.access {
                    AccessModel::Presence => error(StanzaErrorCondition::NotAuthorized, "presence-subscription-required"),
                    _ => error(StanzaErrorCondition::NotAuthorized, "not-in-roster-group"),
                })
            }
            AccessModel::Whitelist if node.whitelisted(&bare) => Ok(()),
            AccessModel::Whitelist => Err(error(StanzaErrorCondition::NotAllowed, "closed-node")),
            AccessModel::Authorize if node.whitelisted(&bare) || node.subscriptions.iter().any(|(jid, sub)| jid.bare() == bare && !sub.pending) => Ok(()),
            AccessModel::Authorize => Err(error(StanzaErrorCondition::NotAuthorized, "not-subscribed")),
        }
    }

    /// §6.1: a subscription for the requester's own JID; waiting for an owner on an authorize
    /// node, where the owners get the approval form (§8.6).
    async fn subscribe(&mut self, context: &ServiceContext, from: &Jid, name: &str, jid: Jid) -> Outcome {
        if jid.bare() != from.bare() {
            return Err(error(StanzaErrorCondition::BadRequest, "invalid-jid"));
        }
        let mut node = self.existing(context, name).await?;
        if let Some(existing) = node.subscriptions.get(&jid) {
            let state = SubscriptionState { node: name, jid: &jid, state: state_of(existing), subid: Some(&existing.subid) };
            return Ok(Some(pubsub::subscription_result(&state)));
        }
        let pending = match node.config.access {
            AccessModel::Authorize if node.affiliation(&jid.bare()) == Some(Affiliation::Outcast) => return Err(StanzaError::new(StanzaErrorCondition::Forbidden)),
            AccessModel::Authorize => !node.whitelisted(&jid.bare()),
            _ => {
                self.access(context, &node, &jid).await?;
                false
            }
        };
        if node.subscriptions.len() >= self.config.max_subscriptions_per_node {
            return Err(error(StanzaErrorCondition::NotAllowed, "too-many-subscriptions"));
        }
        let subscription = Subscription { subid: format!("{:x}", rand::random::<u64>()), pending };
        node.subscriptions.insert(jid.clone(), subscription.clone());
        context.services.store.pubsub.set_node(&index(&context.jid, SUBSCRIBED, &jid), name, Vec::new()).await.map_err(store_failed)?;
        self.save(context, name, node.clone()).await?;
        if pending {
            ask_owners(context, name, &node, &jid, &subscription.subid);
        } else {
            self.send_last(context, name, &node, &jid).await;
        }
        let state = SubscriptionState { node: name, jid: &jid, state: state_of(&subscription), subid: Some(&subscription.subid) };
        Ok(Some(pubsub::subscription_result(&state)))
    }

    /// §6.2: the requester's own subscription (an owner's, anyone's).
    async fn unsubscribe(&mut self, context: &ServiceContext, from: &Jid, name: &str, jid: &Jid) -> Outcome {
        let mut node = self.existing(context, name).await?;
        if jid.bare() != from.bare() && node.affiliation(&from.bare()) != Some(Affiliation::Owner) {
            return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
        }
        if node.subscriptions.remove(jid).is_none() {
            return Err(error(StanzaErrorCondition::UnexpectedRequest, "not-subscribed"));
        }
        self.forget_subscriber(context, name, &node, jid).await?;
        self.save(context, name, node).await?;
        Ok(None)
    }

    /// Drops `jid`'s entry in its user's index unless another of its JIDs is still subscribed.
    pub(super) async fn forget_subscriber(&self, context: &ServiceContext, name: &str, node: &Node, jid: &Jid) -> Result<(), StanzaError> {
        if node.subscriptions.keys().any(|other| other.bare() == jid.bare()) {
            return Ok(());
        }
        context.services.store.pubsub.delete_node(&index(&context.jid, SUBSCRIBED, jid), name).await.map_err(store_failed)
    }

    /// The last item, to a new subscriber, as the node says (§6.1.7).
    async fn send_last(&self, context: &ServiceContext, name: &str, node: &Node, to: &Jid) {
        if node.config.send_last == SendLast::Never {
            return;
        }
        let Ok(Some(item)) = context.services.store.pubsub.items(context.jid.domain(), name, &[], Some(1)).await.map(|items| items.into_iter().next()) else { return };
        let payload = Element::parse(&item.payload).ok();
        let shown = payload.as_ref().filter(|_| node.config.deliver_payloads);
        send_event(context, to, &Event::Published { node: name, items: vec![(&item.id, shown)] }.to_element());
    }

    /// An owner's answer to the approval form (§8.6.2): the subscription is approved, or removed.
    async fn approval(&mut self, context: &ServiceContext, stanza: &Stanza) {
        let Some(form) = stanza.element().ok().and_then(|element| element.get_child("x", ns::DATA_FORMS).and_then(|x| DataForm::try_from(x).ok())) else { return };
        let value = |var: &str| form.field(var).and_then(Field::value).map(str::to_owned);
        let (Some(name), Some(subscriber), Some(allow)) = (value("pubsub#node"), value("pubsub#subscriber_jid"), value("pubsub#allow")) else { return };
        let Ok(subscriber) = Jid::new(&subscriber) else { return };
        let Ok(Some(mut node)) = self.node(context, &name).await else { return };
        if node.affiliation(&stanza.from.bare()) != Some(Affiliation::Owner) || !node.subscriptions.get(&subscriber).is_some_and(|sub| sub.pending) {
            return;
        }
        let approved = starling_protocol::payload::data_form::parse_boolean(&allow).unwrap_or(false);
        let subid = node.subscriptions.get(&subscriber).map(|sub| sub.subid.clone()).unwrap_or_default();
        if approved {
            node.subscriptions.insert(subscriber.clone(), Subscription { subid: subid.clone(), pending: false });
        } else {
            node.subscriptions.remove(&subscriber);
            let _ = self.forget_subscriber(context, &name, &node, &subscriber).await;
        }
        if self.save(context, &name, node.clone()).await.is_err() {
            return;
        }
        let state = SubscriptionState { node: &name, jid: &subscriber, state: if approved { "subscribed" } else { "none" }, subid: Some(&subid) };
        send_event(context, &subscriber, &Event::Subscription(state).to_element());
        if approved {
            self.send_last(context, &name, &node, &subscriber).await;
        }
    }

    /// §5.3 and §5.5: what a node is, and its items' ids.
    async fn disco(&mut self, context: &ServiceContext, from: &Jid, name: &str, info: bool) -> Outcome {
        let node = self.existing(context, name).await?;
        if info {
            let mut meta = vec![
                Field::hidden("FORM_TYPE", ns::PUBSUB_META_DATA),
                Field::text_single("pubsub#title").with_value(node.config.title.as_str()),
                Field::text_single("pubsub#type").with_value(node.config.payload_type.as_str()),
                Field::text_single("pubsub#access_model").with_value(node.config.access.as_str()),
            ];
            for (owner, _) in node.affiliations.iter().filter(|(_, affiliation)| **affiliation == Affiliation::Owner) {
                meta.push(Field::jid_single("pubsub#owner").with_value(owner.as_str()));
            }
            let info = DiscoInfoResult {
                node: Some(name.to_owned()),
                identities: vec![Identity::new("pubsub", "leaf", None)],
                features: vec![ns::DISCO_INFO.to_owned(), ns::DISCO_ITEMS.to_owned(), ns::PUBSUB.to_owned()],
                extensions: vec![DataForm::new(FormType::Result, meta)],
            };
            return Ok(Some((&info).into()));
        }
        self.access(context, &node, from).await?;
        let found = context.services.store.pubsub.items(context.jid.domain(), name, &[], None).await.map_err(store_failed)?;
        let items = found.into_iter().map(|item| DiscoItem { jid: context.jid.domain_jid(), node: None, name: Some(item.id) }).collect();
        Ok(Some((&DiscoItemsResult { node: Some(name.to_owned()), items, ..DiscoItemsResult::default() }).into()))
    }
}

/// Sends `event` to every approved subscriber (§7.1.2.1), from the service: in a cluster, one
/// bus record per edge for the subscribers' resources reached directly (`fan_out`).
pub(super) async fn notify(context: &ServiceContext, node: &Node, event: &Event<'_>) {
    let subscribers = node.subscriptions.iter().filter(|(_, sub)| !sub.pending).map(|(jid, _)| jid.clone()).collect();
    let targets = crate::fan_out::reach_subscribers(&context.services, subscribers).await;
    context.fan_out(&context.jid.domain_jid(), headline(event.to_element()), targets.iter().map(|(jid, via)| (jid, via.as_ref())));
}

pub(super) fn send_event(context: &ServiceContext, to: &Jid, event: &Element) {
    let _ = context.route(Stanza::build(headline(event.clone()), &context.jid.domain_jid(), Some(to)));
}

/// A notification: `event` in a headline message (§7.1.2.1).
fn headline(event: Element) -> Element {
    Element::new("message", ns::CLIENT).with_attr("type", "headline").with_child(event)
}

/// §8.6.1: each owner gets the form to approve `subscriber`.
fn ask_owners(context: &ServiceContext, name: &str, node: &Node, subscriber: &Jid, subid: &str) {
    let form: Element = (&pubsub::authorization_request(name, subscriber, subid)).into();
    for (owner, _) in node.affiliations.iter().filter(|(_, affiliation)| **affiliation == Affiliation::Owner) {
        let message = Element::new("message", ns::CLIENT).with_child(form.clone());
        let _ = context.route(Stanza::build(message, &context.jid.domain_jid(), Some(owner)));
    }
}
