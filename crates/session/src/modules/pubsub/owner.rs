//! A node owner's requests (XEP-0060 §8): configure, delete, purge, and manage subscriptions
//! (§8.8) and affiliations (§8.9).

use starling_protocol::payload::pubsub::{self, Event, PubSubOwnerRequest, SubscriptionState};
use starling_protocol::{ns, Jid, StanzaError, StanzaErrorCondition};

use super::node::{Affiliation, Subscription};
use super::shard::{error, notify, send_event, state_of, store_failed, Outcome, Shard};
use super::{index, node_limits, OWNED, SUBSCRIBED};
use crate::service::ServiceContext;

impl Shard {
    pub(super) async fn owner_request(&mut self, context: &ServiceContext, from: &Jid, get: bool, request: PubSubOwnerRequest) -> Outcome {
        let name = match &request {
            PubSubOwnerRequest::Configure { node, .. }
            | PubSubOwnerRequest::Delete { node }
            | PubSubOwnerRequest::Purge { node }
            | PubSubOwnerRequest::Subscriptions { node, .. }
            | PubSubOwnerRequest::Affiliations { node, .. } => node.clone(),
            // Named no node: the domain answers it.
            PubSubOwnerRequest::Default => return Err(StanzaError::new(StanzaErrorCondition::BadRequest)),
        };
        let mut node = self.existing(context, &name).await?;
        if node.affiliation(&from.bare()) != Some(Affiliation::Owner) {
            return Err(StanzaError::new(StanzaErrorCondition::Forbidden));
        }
        let limits = node_limits(&self.config);
        let store = &context.services.store.pubsub;
        let service = context.jid.domain();
        match request {
            PubSubOwnerRequest::Configure { form: None, .. } if get => Ok(Some(pubsub::configure_result(Some(&name), &node.config.form(&limits)))),
            PubSubOwnerRequest::Configure { form: Some(form), .. } if !get => {
                node.config = node.config.with_submitted(&form, &limits).map_err(StanzaError::new)?;
                self.save(context, &name, node).await?;
                Ok(None)
            }
            PubSubOwnerRequest::Delete { .. } if !get => {
                store.delete_node(service, &name).await.map_err(store_failed)?;
                self.nodes.insert(name.clone(), None);
                for (jid, affiliation) in &node.affiliations {
                    if *affiliation == Affiliation::Owner {
                        let _ = store.delete_node(&index(&context.jid, OWNED, jid), &name).await;
                    }
                }
                for jid in node.subscriptions.keys() {
                    let _ = store.delete_node(&index(&context.jid, SUBSCRIBED, jid), &name).await;
                }
                if node.config.notify_delete {
                    notify(context, &node, &Event::Deleted { node: &name }).await;
                }
                Ok(None)
            }
            PubSubOwnerRequest::Purge { .. } if !get => {
                store.purge(service, &name).await.map_err(store_failed)?;
                notify(context, &node, &Event::Purged { node: &name }).await;
                Ok(None)
            }
            PubSubOwnerRequest::Subscriptions { changes, .. } if get && changes.is_empty() => {
                let list: Vec<SubscriptionState<'_>> =
                    node.subscriptions.iter().map(|(jid, sub)| SubscriptionState { node: &name, jid, state: state_of(sub), subid: Some(&sub.subid) }).collect();
                Ok(Some(pubsub::subscriptions_result(ns::PUBSUB_OWNER, Some(&name), &list)))
            }
            PubSubOwnerRequest::Subscriptions { changes, .. } if !get => {
                for (jid, state) in &changes {
                    match state.as_str() {
                        "none" => {
                            node.subscriptions.remove(jid);
                        }
                        "subscribed" => {
                            let subid = node.subscriptions.get(jid).map_or_else(|| format!("{:x}", rand::random::<u64>()), |sub| sub.subid.clone());
                            node.subscriptions.insert(jid.clone(), Subscription { subid, pending: false });
                        }
                        _ => return Err(StanzaError::new(StanzaErrorCondition::NotAcceptable)),
                    }
                }
                if node.subscriptions.len() > self.config.max_subscriptions_per_node {
                    return Err(error(StanzaErrorCondition::NotAllowed, "too-many-subscriptions"));
                }
                for (jid, state) in &changes {
                    let key = index(&context.jid, SUBSCRIBED, jid);
                    let written = if state == "none" { self.forget_subscriber(context, &name, &node, jid).await } else { store.set_node(&key, &name, Vec::new()).await.map_err(store_failed) };
                    written?;
                }
                self.save(context, &name, node.clone()).await?;
                // §8.8.2.3: each subscriber is told its new state.
                for (jid, state) in &changes {
                    let subid = node.subscriptions.get(jid).map(|sub| sub.subid.as_str());
                    send_event(context, jid, &Event::Subscription(SubscriptionState { node: &name, jid, state, subid }).to_element());
                }
                Ok(None)
            }
            PubSubOwnerRequest::Affiliations { changes, .. } if get && changes.is_empty() => {
                let list: Vec<(&str, &str)> = node.affiliations.iter().map(|(jid, affiliation)| (jid.as_str(), affiliation.as_str())).collect();
                Ok(Some(pubsub::affiliations_result(ns::PUBSUB_OWNER, Some(&name), list)))
            }
            PubSubOwnerRequest::Affiliations { changes, .. } if !get => {
                for (jid, affiliation) in &changes {
                    let bare = jid.bare();
                    match affiliation.as_str() {
                        "none" => {
                            node.affiliations.remove(&bare);
                        }
                        other => {
                            let affiliation = Affiliation::parse(other).ok_or_else(|| StanzaError::new(StanzaErrorCondition::NotAcceptable))?;
                            node.affiliations.insert(bare, affiliation);
                        }
                    }
                }
                // §8.9.2.4: a node keeps an owner.
                if !node.affiliations.values().any(|affiliation| *affiliation == Affiliation::Owner) {
                    return Err(StanzaError::new(StanzaErrorCondition::NotAcceptable).with_text("A node keeps at least one owner."));
                }
                // An outcast loses its subscriptions (§4.1).
                let outcasts: Vec<Jid> = node.subscriptions.keys().filter(|jid| node.affiliation(&jid.bare()) == Some(Affiliation::Outcast)).cloned().collect();
                for jid in &outcasts {
                    node.subscriptions.remove(jid);
                    self.forget_subscriber(context, &name, &node, jid).await?;
                }
                for (jid, affiliation) in &changes {
                    let key = index(&context.jid, OWNED, jid);
                    if affiliation == "owner" {
                        store.set_node(&key, &name, Vec::new()).await.map_err(store_failed)?;
                    } else {
                        store.delete_node(&key, &name).await.map_err(store_failed)?;
                    }
                }
                self.save(context, &name, node).await?;
                Ok(None)
            }
            _ => Err(StanzaError::new(StanzaErrorCondition::BadRequest)),
        }
    }
}
