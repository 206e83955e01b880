//! Publish-subscribe nodes (XEP-0060) of a service: an account's (PEP, XEP-0163: the service is
//! the account's bare JID) or a PubSub service's (`pubsub.DOMAIN`). Each node is one record — its
//! configuration, affiliations and subscriptions, encoded by the PubSub module and opaque here —
//! and its items, newest first, at most the node's `max_items`. A node's only writer is one actor
//! (a PEP node's is its account's), so no call here needs to be atomic with another.

use async_trait::async_trait;

use super::StoreError;

/// One published item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubItem {
    pub id: String,
    /// The bare JID that published it.
    pub publisher: String,
    /// When, in microseconds since the epoch: the order of a node's items.
    pub published: u64,
    /// The item's payload element, serialised (empty for an item without one).
    pub payload: Vec<u8>,
}

#[async_trait]
pub trait PubSubNodes: Send + Sync + 'static {
    /// The record of `node` of `service`, if the node exists.
    async fn node(&self, service: &str, node: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every node of `service` with its record, sorted by node.
    async fn nodes(&self, service: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Creates or replaces the record of `node` (its items stay).
    async fn set_node(&self, service: &str, node: &str, record: Vec<u8>) -> Result<(), StoreError>;

    /// Deletes `node` and its items.
    async fn delete_node(&self, service: &str, node: &str) -> Result<(), StoreError>;

    /// Deletes every node of `service` and their items (the account is removed).
    async fn delete_service(&self, service: &str) -> Result<(), StoreError>;

    /// Stores `item` — replacing the item with the same id, which it makes the newest — then
    /// keeps only the newest `max_items` of the node.
    async fn publish(&self, service: &str, node: &str, item: PubSubItem, max_items: usize) -> Result<(), StoreError>;

    /// Removes the item `id`; whether it was there.
    async fn retract(&self, service: &str, node: &str, id: &str) -> Result<bool, StoreError>;

    /// Items newest first: those of `ids` that exist (every item when `ids` is empty), at most `max`.
    async fn items(&self, service: &str, node: &str, ids: &[String], max: Option<usize>) -> Result<Vec<PubSubItem>, StoreError>;

    /// Removes every item of `node`.
    async fn purge(&self, service: &str, node: &str) -> Result<(), StoreError>;
}
