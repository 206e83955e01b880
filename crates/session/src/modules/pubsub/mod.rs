//! XEP-0060 Publish-Subscribe as a service at `pubsub.DOMAIN` (`[pubsub]`): nodes that local users
//! create and configure, that anyone the node's access model lets in subscribes to explicitly, and
//! whose publications are sent to the subscribers.
//!
//! Requests all go to the service's domain and name their node inside (`<publish node='…'/>`), so
//! the service tells the router which entity a stanza is for ([`ServiceKind::address`]): a node
//! *shard* (`shard`), `{hash of the node}@pubsub.DOMAIN`, whose actor owns every node hashing
//! there — partitioned across a cluster like rooms and users, so each node has one writer and its
//! requests are handled in order wherever they arrive. What names no node (service discovery,
//! the default configuration, the requester's subscriptions and affiliations over all nodes, an
//! instant node's creation) goes to the domain's own entity here.
//!
//! Nodes are stored in the `PubSubNodes` store under the service's domain, with their
//! configuration, affiliations and subscriptions in the node's record (`node`). Two indexes in the
//! same store, one "service" per user and role, list the nodes a user owns and those it is
//! subscribed to, so neither the per-user node limit nor a user's list needs a scan.

pub(crate) mod node;
mod owner;
mod shard;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use starling_protocol::payload::pubsub::{self, SubscriptionState};
use starling_protocol::payload::{DataForm, DiscoInfoResult, DiscoItem, DiscoItemsResult, Identity};
use starling_protocol::{ns, Jid, Stanza, StanzaError, StanzaErrorCondition, StanzaKind};
use starling_xml::Element;

use self::node::{AccessModel, Limits, Node, NodeConfig, SendLast};
use crate::config::PubSubConfig;
use crate::registry::Registrar;
use crate::service::{ServiceContext, ServiceEntity, ServiceKind};

const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/pubsub#access-authorize",
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-roster",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#config-node",
    "http://jabber.org/protocol/pubsub#create-and-configure",
    "http://jabber.org/protocol/pubsub#create-nodes",
    "http://jabber.org/protocol/pubsub#delete-items",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#get-pending",
    "http://jabber.org/protocol/pubsub#instant-nodes",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#manage-subscriptions",
    "http://jabber.org/protocol/pubsub#meta-data",
    "http://jabber.org/protocol/pubsub#modify-affiliations",
    "http://jabber.org/protocol/pubsub#outcast-affiliation",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#publisher-affiliation",
    "http://jabber.org/protocol/pubsub#purge-nodes",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-affiliations",
    "http://jabber.org/protocol/pubsub#retrieve-default",
    "http://jabber.org/protocol/pubsub#retrieve-items",
    "http://jabber.org/protocol/pubsub#retrieve-subscriptions",
    "http://jabber.org/protocol/pubsub#subscribe",
];

/// The longest node id taken, in bytes: ids are keys in the store and in every notification.
const MAX_NODE_ID_BYTES: usize = 1024;

pub(super) fn register(r: &mut Registrar) {
    if !r.config.pubsub.enabled {
        return;
    }
    let config = Arc::new(r.config.pubsub.clone());
    for (host, domain) in r.service_domains("pubsub", "pubsub", &config.domain) {
        r.service(&host, Arc::new(PubSub { domain, config: config.clone() }));
    }
}

struct PubSub {
    domain: Jid,
    config: Arc<PubSubConfig>,
}

impl ServiceKind for PubSub {
    fn domain(&self) -> &Jid {
        &self.domain
    }

    fn entity(&self, jid: &Jid) -> Box<dyn ServiceEntity> {
        if *jid == self.domain { Box::new(Domain { config: self.config.clone() }) } else { Box::new(shard::Shard::new(self.config.clone())) }
    }

    fn address(&self, stanza: &Stanza, to: &Jid) -> Jid {
        if *to != self.domain {
            return to.bare();
        }
        match node_named(stanza) {
            Some(node) => shard_of(&self.domain, &node),
            None => to.bare(),
        }
    }
}

/// The shard that owns `node` (a hash every node of every version agrees on).
fn shard_of(domain: &Jid, node: &str) -> Jid {
    let hash = starling_cluster::bus::stable_hash(node.as_bytes());
    Jid::new(&format!("{hash:016x}@{}", domain.domain())).unwrap_or_else(|_| domain.clone())
}

/// The node a stanza to the service is about, if it names one: the action of a `pubsub` or
/// `pubsub#owner` request, a disco query on a node, or an owner's answer to a subscription
/// approval form (§8.6). Read only for stanzas to the service's domain.
fn node_named(stanza: &Stanza) -> Option<String> {
    let element = stanza.element().ok()?;
    let node = match stanza.kind {
        StanzaKind::Iq => {
            let payload = element.children().next()?;
            if payload.is("pubsub", ns::PUBSUB) {
                // `<publish-options/>` and `<configure/>` go beside an action (`create` included).
                let action = payload.children().find(|c| c.ns() == ns::PUBSUB && !matches!(c.name(), "publish-options" | "configure"))?;
                action.attr("node")
            } else if payload.is("pubsub", ns::PUBSUB_OWNER) {
                payload.children().next()?.attr("node")
            } else if payload.is("query", ns::DISCO_INFO) || payload.is("query", ns::DISCO_ITEMS) {
                payload.attr("node")
            } else {
                None
            }
        }
        StanzaKind::Message => {
            let form = element.get_child("x", ns::DATA_FORMS).and_then(|x| DataForm::try_from(x).ok())?;
            return (form.form_type() == Some(ns::PUBSUB_SUBSCRIBE_AUTHORIZATION)).then(|| form.field("pubsub#node")?.value().map(str::to_owned)).flatten();
        }
        StanzaKind::Presence => None,
    };
    node.filter(|node| !node.is_empty()).map(str::to_owned)
}

/// What bounds a service node's configuration.
fn node_limits(config: &PubSubConfig) -> Limits {
    Limits { max_items: config.max_items, access_models: AccessModel::SERVICE }
}

/// A new node's configuration before the creator's form: open, keeping ten items, sending the
/// last one to each new subscriber (XEP-0060 §16.4.4's usual defaults for a service).
fn default_config() -> NodeConfig {
    NodeConfig { access: AccessModel::Open, max_items: 10, send_last: SendLast::OnSubscription, ..NodeConfig::new() }
}

/// The indexes: under which "service" in the store the nodes `user` owns, or is subscribed to,
/// are listed.
fn index(domain: &Jid, role: &str, user: &Jid) -> String {
    format!("{}/{role}/{}", domain.domain(), user.bare())
}

const OWNED: &str = "owned";
const SUBSCRIBED: &str = "subscribed";

/// The service's domain: what it is, which nodes it has, the default configuration, and a user's
/// subscriptions and affiliations over every node.
struct Domain {
    config: Arc<PubSubConfig>,
}

impl ServiceEntity for Domain {
    fn handle<'a>(&'a mut self, context: &'a ServiceContext, stanza: Stanza, _: Instant) -> Pin<Box<dyn Future<Output = ()> + 'a>> {
        Box::pin(async move {
            if stanza.kind != StanzaKind::Iq || !stanza.is_iq_request() {
                if stanza.kind == StanzaKind::Message && !stanza.is_error() && !stanza.type_is("headline") {
                    context.refuse(&stanza, &StanzaError::new(StanzaErrorCondition::ServiceUnavailable));
                }
                return;
            }
            let Some(payload) = stanza.element().ok().and_then(|element| element.into_children().next()) else {
                return context.refuse(&stanza, &StanzaError::new(StanzaErrorCondition::BadRequest));
            };
            let get = stanza.type_is("get");
            if get && payload.is("query", ns::DISCO_INFO) {
                let info = DiscoInfoResult {
                    identities: vec![Identity::new("pubsub", "service", Some("Publish-Subscribe"))],
                    features: [ns::DISCO_INFO, ns::DISCO_ITEMS, ns::PUBSUB].iter().chain(FEATURES).map(|f| (*f).to_owned()).collect(),
                    ..DiscoInfoResult::default()
                };
                context.answer(&stanza, Some((&info).into()));
            } else if get && payload.is("query", ns::DISCO_ITEMS) {
                self.nodes(context, &stanza).await;
            } else if payload.is("pubsub", ns::PUBSUB_OWNER) && payload.get_child("default", ns::PUBSUB_OWNER).is_some() && get {
                context.answer(&stanza, Some(pubsub::configure_result(None, &default_config().form(&node_limits(&self.config)))));
            } else if payload.is("pubsub", ns::PUBSUB) {
                self.request(context, stanza, payload).await;
            } else {
                context.refuse(&stanza, &StanzaError::new(StanzaErrorCondition::ServiceUnavailable));
            }
        })
    }

    fn is_idle(&self) -> bool {
        true
    }
}

impl Domain {
    /// §5.2: the nodes, as stored.
    async fn nodes(&self, context: &ServiceContext, stanza: &Stanza) {
        match context.services.store.pubsub.nodes(context.jid.as_str()).await {
            Ok(nodes) => {
                let limits = node_limits(&self.config);
                let items = nodes
                    .into_iter()
                    .map(|(name, record)| {
                        let title = Node::decode(&record, &limits).map(|node| node.config.title).filter(|title| !title.is_empty());
                        DiscoItem { jid: context.jid.clone(), node: Some(name), name: title }
                    })
                    .collect();
                context.answer(stanza, Some((&DiscoItemsResult { items, ..DiscoItemsResult::default() }).into()));
            }
            Err(error) => {
                tracing::warn!(%error, "could not read the PubSub nodes");
                context.refuse(stanza, &StanzaError::new(StanzaErrorCondition::InternalServerError));
            }
        }
    }

    /// A `pubsub` request naming no node: an instant node (§8.1.2), or the requester's
    /// subscriptions (§5.6) or affiliations (§5.7) over every node.
    async fn request(&self, context: &ServiceContext, mut stanza: Stanza, payload: Element) {
        let get = stanza.type_is("get");
        let requester = stanza.from.bare();
        let store = &context.services.store.pubsub;
        if !get && payload.get_child("create", ns::PUBSUB).is_some() {
            // The service picks the id, then the node's shard creates it as if it had been asked.
            let Ok(mut element) = stanza.element() else { return };
            let id = format!("{:032x}", rand::random::<u128>());
            if let Some(create) = element.get_child_mut("pubsub", ns::PUBSUB).and_then(|p| p.get_child_mut("create", ns::PUBSUB)) {
                create.set_attr("node", id.as_str());
            }
            if let Ok(named) = Stanza::from_element(&element) {
                stanza = named;
                let _ = context.route(stanza);
            }
            return;
        }
        let limits = node_limits(&self.config);
        let requester_ref = &requester;
        let listing = |role| async move {
            let names = store.nodes(&index(&context.jid, role, requester_ref)).await?;
            let mut nodes = Vec::new();
            for (name, _) in names {
                if let Some(node) = store.node(context.jid.as_str(), &name).await?.and_then(|record| Node::decode(&record, &limits)) {
                    nodes.push((name, node));
                }
            }
            Ok::<_, starling_cluster::store::StoreError>(nodes)
        };
        let result = if get && payload.get_child("subscriptions", ns::PUBSUB).is_some() {
            listing(SUBSCRIBED).await.map(|nodes| {
                let states: Vec<(String, Jid, String, &'static str)> = nodes
                    .iter()
                    .flat_map(|(name, node)| {
                        node.subscriptions.iter().filter(|(jid, _)| jid.bare() == requester).map(move |(jid, sub)| (name.clone(), jid.clone(), sub.subid.clone(), shard::state_of(sub)))
                    })
                    .collect();
                let list: Vec<SubscriptionState<'_>> =
                    states.iter().map(|(node, jid, subid, state)| SubscriptionState { node, jid, state, subid: Some(subid) }).collect();
                pubsub::subscriptions_result(ns::PUBSUB, None, &list)
            })
        } else if get && payload.get_child("affiliations", ns::PUBSUB).is_some() {
            listing(OWNED).await.map(|nodes| {
                let owned: Vec<(String, &'static str)> = nodes
                    .iter()
                    .filter_map(|(name, node)| Some((name.clone(), node.affiliation(&requester)?.as_str())))
                    .collect();
                pubsub::affiliations_result(ns::PUBSUB, None, owned.iter().map(|(name, affiliation)| (name.as_str(), *affiliation)))
            })
        } else {
            return context.refuse(&stanza, &pubsub::pubsub_error(StanzaErrorCondition::BadRequest, "nodeid-required", None));
        };
        match result {
            Ok(payload) => context.answer(&stanza, Some(payload)),
            Err(error) => {
                tracing::warn!(%error, "could not read a user's PubSub nodes");
                context.refuse(&stanza, &StanzaError::new(StanzaErrorCondition::InternalServerError));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iq(xml: &str) -> Stanza {
        Stanza::from_element(&Element::parse(xml.as_bytes()).expect("xml")).expect("stanza")
    }

    #[test]
    fn requests_go_to_the_shard_of_the_node_they_name() {
        let service = PubSub { domain: Jid::new("pubsub.example.com").expect("jid"), config: Arc::default() };
        let to = service.domain.clone();
        let publish = iq("<iq xmlns='jabber:client' type='set' id='1' from='hag@example.com/broom' to='pubsub.example.com'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
                          <publish node='princely_musings'><item/></publish></pubsub></iq>");
        let configure = iq("<iq xmlns='jabber:client' type='set' id='2' from='hag@example.com/broom' to='pubsub.example.com'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>\
                            <configure node='princely_musings'/></pubsub></iq>");
        let create_and_configure = iq("<iq xmlns='jabber:client' type='set' id='3' from='hag@example.com/broom' to='pubsub.example.com'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
                                       <create node='princely_musings'/><configure/></pubsub></iq>");
        let shard = service.address(&publish, &to);
        assert_ne!(shard, to);
        assert_eq!(service.address(&configure, &to), shard);
        assert_eq!(service.address(&create_and_configure, &to), shard);
        let instant = iq("<iq xmlns='jabber:client' type='set' id='4' from='hag@example.com/broom' to='pubsub.example.com'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create/></pubsub></iq>");
        let disco = iq("<iq xmlns='jabber:client' type='get' id='5' from='hag@example.com/broom' to='pubsub.example.com'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
        assert_eq!(service.address(&instant, &to), to, "an instant node is named by the domain first");
        assert_eq!(service.address(&disco, &to), to);
        let approval = iq("<message xmlns='jabber:client' from='hag@example.com/broom' to='pubsub.example.com'><x xmlns='jabber:x:data' type='submit'>\
                           <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#subscribe_authorization</value></field>\
                           <field var='pubsub#node'><value>princely_musings</value></field></x></message>");
        assert_eq!(service.address(&approval, &to), shard, "an owner's approval goes to the node");
    }
}
