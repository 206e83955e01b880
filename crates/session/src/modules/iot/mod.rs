//! XEP-0347 Internet of Things — Discovery: a Thing Registry at `registry.DOMAIN` for each
//! served domain. Things register their meta tags; an owner claims a Thing by presenting exactly
//! those tags (the KEY among them is the shared secret); claimed public Things are found by
//! searches; owners remove or disown, Things update or unregister. One entity per registry (its
//! actor the only writer), holding its Things in memory, loaded from the `Things` store on its
//! first stanza; every change is stored before it is answered. Only accounts of the registry's
//! own domain use it (no Thing crosses tenants).
//!
//! A disown asks the Thing first (§3.17): the owner's answer waits for the Thing's, or for a
//! timer the registry sets itself (a message from itself), and is `not-allowed` without it.

mod things;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use starling_protocol::payload::iot_discovery::{about_node, claimed, found, MetaTag, NodeInfo, RegistryRequest, TagValue};
use starling_protocol::payload::{DiscoInfoResult, DiscoItemsResult, Identity};
use starling_protocol::{ns, Jid, Stanza, StanzaError, StanzaErrorCondition, StanzaKind};
use starling_xml::Element;

use crate::config::IotConfig;
use crate::registry::Registrar;
use crate::service::{ServiceContext, ServiceEntity, ServiceKind};
use things::{claim_match, key_text, ClaimMatch, Thing, ThingKey};

pub(super) fn register(r: &mut Registrar) {
    if !r.config.iot.enabled {
        return;
    }
    let config = Arc::new(r.config.iot.clone());
    for (host, domain) in r.service_domains("iot", "registry", &config.domain) {
        r.service(&host, Arc::new(RegistryKind { host: host.clone(), domain, config: config.clone() }));
    }
}

struct RegistryKind {
    host: Jid,
    domain: Jid,
    config: Arc<IotConfig>,
}

impl ServiceKind for RegistryKind {
    fn domain(&self) -> &Jid {
        &self.domain
    }

    fn entity(&self, _: &Jid) -> Box<dyn ServiceEntity> {
        Box::new(Registry { host: self.host.clone(), config: self.config.clone(), things: None, disowning: HashMap::new() })
    }

    /// Everything under the domain is the registry's.
    fn address(&self, _: &Stanza, _: &Jid) -> Jid {
        self.domain.clone()
    }
}

/// A disown waiting for the Thing's answer.
struct Disowning {
    request: Stanza,
    key: ThingKey,
    since: Instant,
}

struct Registry {
    host: Jid,
    config: Arc<IotConfig>,
    /// Loaded on the first request.
    things: Option<BTreeMap<ThingKey, Thing>>,
    /// By the id of the `<disowned/>` sent to the Thing.
    disowning: HashMap<String, Disowning>,
}

impl ServiceEntity for Registry {
    fn handle<'a>(&'a mut self, context: &'a ServiceContext, stanza: Stanza, _: Instant) -> Pin<Box<dyn Future<Output = ()> + 'a>> {
        Box::pin(async move {
            match stanza.kind {
                StanzaKind::Presence => presence(context, &stanza),
                // The registry's own timer.
                StanzaKind::Message if stanza.from == context.jid => self.expire_disowns(context),
                StanzaKind::Message if !stanza.is_error() && !stanza.type_is("headline") => refuse(context, &stanza, StanzaErrorCondition::ServiceUnavailable),
                StanzaKind::Message => {}
                StanzaKind::Iq if stanza.is_iq_request() => self.request(context, stanza).await,
                StanzaKind::Iq => self.answered(context, &stanza).await,
            }
        })
    }

    fn is_idle(&self) -> bool {
        self.disowning.is_empty()
    }
}

impl Registry {
    async fn request(&mut self, context: &ServiceContext, stanza: Stanza) {
        let Some(payload) = stanza.element().ok().and_then(|iq| iq.into_children().next()) else {
            return refuse(context, &stanza, StanzaErrorCondition::BadRequest);
        };
        if payload.is("query", ns::DISCO_INFO) && stanza.type_is("get") {
            let info = DiscoInfoResult {
                identities: vec![Identity::new("component", "generic", Some("Thing Registry"))],
                features: [ns::DISCO_INFO, ns::DISCO_ITEMS, ns::IOT_DISCOVERY].map(str::to_owned).to_vec(),
                ..DiscoInfoResult::default()
            };
            return context.answer(&stanza, Some((&info).into()));
        }
        if payload.is("query", ns::DISCO_ITEMS) && stanza.type_is("get") {
            return context.answer(&stanza, Some((&DiscoItemsResult::default()).into()));
        }
        if payload.ns() != ns::IOT_DISCOVERY {
            return refuse(context, &stanza, StanzaErrorCondition::ServiceUnavailable);
        }
        // No Thing crosses tenants: only the registry's own domain's accounts use it.
        if stanza.from.domain() != self.host.as_str() || stanza.from.node().is_none() {
            return refuse(context, &stanza, StanzaErrorCondition::Forbidden);
        }
        let request = match RegistryRequest::read(&payload, self.config.max_tags) {
            Ok(request) => request,
            Err(error) => return refuse(context, &stanza, error.condition()),
        };
        if self.loaded(context).await.is_none() {
            return refuse(context, &stanza, StanzaErrorCondition::InternalServerError);
        }
        let sender = stanza.from.bare();
        let answer = match request {
            RegistryRequest::Register { node, self_owned, tags } => self.register(context, &stanza, (sender, node), self_owned, tags).await,
            RegistryRequest::Mine { public, tags } => self.claim(context, &sender, public, &tags).await,
            RegistryRequest::Update { jid, node, tags } => self.update(context, &sender, (jid.unwrap_or_else(|| sender.clone()), node), tags).await,
            RegistryRequest::Remove { jid, node } => self.remove(context, &sender, (jid, node)).await,
            RegistryRequest::Unregister { node } => self.forget(context, &(sender, node)).await.map(|()| None),
            RegistryRequest::Disown { jid, node } => return self.disown(context, stanza, (jid, node)),
            RegistryRequest::Search(search) => {
                let (hits, more) = things::search(self.things(), &search, self.config.max_search_results);
                Ok(Some(found(&hits, more)))
            }
        };
        match answer {
            Ok(payload) => context.answer(&stanza, payload),
            Err(condition) => refuse(context, &stanza, condition),
        }
    }

    /// The Things, read from the store if they are not in memory yet; `None` if unreadable.
    async fn loaded(&mut self, context: &ServiceContext) -> Option<&mut BTreeMap<ThingKey, Thing>> {
        if self.things.is_none() {
            let records = context.services.store.things.list(context.jid.as_str()).await.inspect_err(|error| tracing::warn!(%error, "could not read the registry's Things")).ok()?;
            let read: BTreeMap<ThingKey, Thing> = records.iter().filter_map(|(_, record)| Thing::read(record)).collect();
            if read.len() < records.len() {
                tracing::warn!(registry = %context.jid, unreadable = records.len() - read.len(), "Thing records that do not parse were left out");
            }
            self.things = Some(read);
        }
        self.things.as_mut()
    }

    fn things(&self) -> &BTreeMap<ThingKey, Thing> {
        self.things.as_ref().expect("loaded before a request is handled")
    }

    /// Stores `thing` under `key`, then keeps it in memory.
    async fn store(&mut self, context: &ServiceContext, key: ThingKey, thing: Thing) -> Result<(), StanzaErrorCondition> {
        let stored = context.services.store.things.set(context.jid.as_str(), &key_text(&key), thing.record(&key)).await;
        stored.map_err(|error| {
            tracing::warn!(%error, "could not store a Thing");
            StanzaErrorCondition::InternalServerError
        })?;
        self.things.get_or_insert_default().insert(key, thing);
        Ok(())
    }

    async fn forget(&mut self, context: &ServiceContext, key: &ThingKey) -> Result<(), StanzaErrorCondition> {
        if !self.things().contains_key(key) {
            return Ok(());
        }
        context.services.store.things.remove(context.jid.as_str(), &key_text(key)).await.map_err(|error| {
            tracing::warn!(%error, "could not remove a Thing");
            StanzaErrorCondition::InternalServerError
        })?;
        self.things.get_or_insert_default().remove(key);
        Ok(())
    }

    /// §3.6–3.8: a registration replaces the Thing's record, unless an owner claimed it.
    async fn register(&mut self, context: &ServiceContext, stanza: &Stanza, key: ThingKey, self_owned: bool, tags: Vec<MetaTag>) -> Result<Option<Element>, StanzaErrorCondition> {
        if let Some(thing) = self.things().get(&key)
            && let Some(owner) = thing.owner.as_ref().filter(|owner| **owner != key.0)
        {
            return Ok(Some(claimed(owner, &key.1, None)));
        }
        let things = self.things();
        if !things.contains_key(&key) {
            // An account's Things are adjacent in key order, the one without node information first.
            let of_account = things.range((key.0.clone(), NodeInfo::default())..).take_while(|((jid, _), _)| *jid == key.0).count();
            if things.len() >= self.config.max_things || of_account >= self.config.max_things_per_account {
                return Err(StanzaErrorCondition::ResourceConstraint);
            }
        }
        let owner = self_owned.then(|| key.0.clone());
        self.store(context, key, Thing { full: stanza.from.clone(), tags, owner, public: true }).await?;
        Ok(None)
    }

    /// §3.9: the claimant presents exactly the tags of one unclaimed Thing; the Thing is told.
    async fn claim(&mut self, context: &ServiceContext, claimant: &Jid, public: bool, tags: &[MetaTag]) -> Result<Option<Element>, StanzaErrorCondition> {
        let key = match claim_match(self.things(), claimant, tags) {
            ClaimMatch::Unclaimed(key) => key,
            ClaimMatch::AlreadyTheirs(key) => return Ok(Some(claimed(&key.0, &key.1, None))),
            ClaimMatch::NotFound => return Err(StanzaErrorCondition::ItemNotFound),
        };
        let mut thing = self.things()[&key].clone();
        thing.owner = Some(claimant.clone());
        thing.public = public;
        let to = thing.full.clone();
        self.store(context, key.clone(), thing).await?;
        send_request(context, &to, claimed(claimant, &key.1, Some(public)), &new_id());
        Ok(Some(claimed(&key.0, &key.1, None)))
    }

    /// §3.14: by the Thing (claimed ones only: an unclaimed one is told it was disowned) or by
    /// its owner.
    async fn update(&mut self, context: &ServiceContext, sender: &Jid, key: ThingKey, tags: Vec<MetaTag>) -> Result<Option<Element>, StanzaErrorCondition> {
        let Some(thing) = self.things().get(&key) else { return Err(StanzaErrorCondition::ItemNotFound) };
        let by_thing = *sender == key.0;
        if !by_thing && thing.owner.as_ref() != Some(sender) {
            return Err(StanzaErrorCondition::ItemNotFound);
        }
        if by_thing && thing.owner.is_none() {
            return Ok(Some(about_node("disowned", &key.1)));
        }
        let mut updated = thing.clone();
        if !updated.update(tags, self.config.max_tags) {
            return Err(StanzaErrorCondition::NotAcceptable);
        }
        self.store(context, key, updated).await?;
        Ok(None)
    }

    /// §3.10: the owner removes its Thing, which is told after.
    async fn remove(&mut self, context: &ServiceContext, sender: &Jid, key: ThingKey) -> Result<Option<Element>, StanzaErrorCondition> {
        let Some(thing) = self.things().get(&key).filter(|thing| thing.owner.as_ref() == Some(sender)) else {
            return Err(StanzaErrorCondition::ItemNotFound);
        };
        let to = thing.full.clone();
        self.forget(context, &key).await?;
        send_request(context, &to, about_node("removed", &key.1), &new_id());
        Ok(None)
    }

    /// §3.17: the owner's answer waits for the Thing's to `<disowned/>`.
    fn disown(&mut self, context: &ServiceContext, request: Stanza, key: ThingKey) {
        let Some(thing) = self.things().get(&key).filter(|thing| thing.owner.as_ref() == Some(&request.from.bare())) else {
            return refuse(context, &request, StanzaErrorCondition::ItemNotFound);
        };
        let (id, to) = (new_id(), thing.full.clone());
        send_request(context, &to, about_node("disowned", &key.1), &id);
        self.disowning.insert(id, Disowning { request, key, since: Instant::now() });
        let timer = Stanza::build(Element::new("message", ns::CLIENT).with_attr("type", "normal"), &context.jid, Some(&context.jid));
        context.route_after(self.disown_timeout(), timer);
    }

    fn disown_timeout(&self) -> Duration {
        Duration::from_secs(self.config.disown_timeout_seconds)
    }

    /// A result or error to a request the registry sent: a Thing's answer to `<disowned/>` (the
    /// others need none).
    async fn answered(&mut self, context: &ServiceContext, answer: &Stanza) {
        let Some(disowning) = answer.id.as_ref().and_then(|id| self.disowning.remove(id)) else { return };
        if answer.from.bare() != disowning.key.0 || answer.is_error() {
            return refuse(context, &disowning.request, StanzaErrorCondition::NotAllowed);
        }
        // Unclaimed again, its tags gone but a KEY nobody can guess: it registers anew.
        let key_tag = MetaTag { name: "KEY".into(), value: TagValue::Str(format!("{:032x}", rand::random::<u128>())) };
        let Some(mut thing) = self.things().get(&disowning.key).cloned() else { return refuse(context, &disowning.request, StanzaErrorCondition::ItemNotFound) };
        (thing.owner, thing.tags) = (None, vec![key_tag]);
        match self.store(context, disowning.key, thing).await {
            Ok(()) => context.answer(&disowning.request, None),
            Err(condition) => refuse(context, &disowning.request, condition),
        }
    }

    /// Disowns whose Thing did not answer in time: the owner is told `not-allowed`.
    fn expire_disowns(&mut self, context: &ServiceContext) {
        let timeout = self.disown_timeout();
        let expired: Vec<String> = self.disowning.iter().filter(|(_, waiting)| waiting.since.elapsed() >= timeout).map(|(id, _)| id.clone()).collect();
        for id in expired {
            if let Some(disowning) = self.disowning.remove(&id) {
                refuse(context, &disowning.request, StanzaErrorCondition::NotAllowed);
            }
        }
    }
}

/// Things and owners befriend the registry (§3.5): a subscription is approved, a probe answered.
fn presence(context: &ServiceContext, stanza: &Stanza) {
    let to = stanza.from.bare();
    let reply = |kind: Option<&str>| {
        let presence = Element::new("presence", ns::CLIENT);
        let presence = match kind {
            Some(kind) => presence.with_attr("type", kind),
            None => presence,
        };
        let _ = context.route(Stanza::build(presence, &context.jid, Some(&to)));
    };
    match stanza.stanza_type.as_deref() {
        Some("subscribe") => {
            reply(Some("subscribed"));
            reply(None);
        }
        Some("probe") => reply(None),
        Some("unsubscribe") => reply(Some("unsubscribed")),
        _ => {}
    }
}

fn send_request(context: &ServiceContext, to: &Jid, payload: Element, id: &str) {
    let iq = Element::new("iq", ns::CLIENT).with_attr("type", "set").with_attr("id", id).with_child(payload);
    let _ = context.route(Stanza::build(iq, &context.jid, Some(to)));
}

fn new_id() -> String {
    format!("iot-{:016x}", rand::random::<u64>())
}

fn refuse(context: &ServiceContext, stanza: &Stanza, condition: StanzaErrorCondition) {
    context.refuse(stanza, &StanzaError::new(condition));
}
