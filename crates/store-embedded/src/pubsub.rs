//! PubSub nodes and items (`PubSubNodes`) on redb: a node's record under (service, node); its
//! items under (service, node, id), and their order under (service, node, published, id), so the
//! newest come first and the oldest go when a node holds more than its `max_items`.

use async_trait::async_trait;
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use starling_cluster::store::{PubSubItem, PubSubNodes, StoreError};

use crate::codec::{decode_pubsub_item, encode_pubsub_item};
use crate::{successor, EmbeddedStore};

/// (service, node) → the PubSub module's record of the node.
pub(crate) const NODES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("pubsub_nodes");
/// (service, node, item id) → the item (`codec::encode_pubsub_item`).
pub(crate) const ITEMS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("pubsub_items");
/// (service, node, published, item id): the items in the order they were published.
pub(crate) const ORDER: TableDefinition<(&str, &str, u64, &str), ()> = TableDefinition::new("pubsub_item_order");

fn corrupt(what: &str) -> redb::Error {
    redb::Error::Corrupted(format!("undecodable PubSub item {what}"))
}

/// Removes every item of `node` (or of every node of `service` when `node` is `None`).
fn remove_items(txn: &WriteTransaction, service: &str, node: Option<&str>) -> Result<(), redb::Error> {
    let end = successor(service);
    match node {
        Some(node) => {
            let after = successor(node);
            txn.open_table(ITEMS)?.retain_in((service, node, "")..(service, after.as_str(), ""), |_, _| false)?;
            txn.open_table(ORDER)?.retain_in((service, node, 0, "")..(service, after.as_str(), 0, ""), |_, _| false)?;
        }
        None => {
            txn.open_table(ITEMS)?.retain_in((service, "", "")..(end.as_str(), "", ""), |_, _| false)?;
            txn.open_table(ORDER)?.retain_in((service, "", 0, "")..(end.as_str(), "", 0, ""), |_, _| false)?;
        }
    }
    Ok(())
}

#[async_trait]
impl PubSubNodes for EmbeddedStore {
    async fn node(&self, service: &str, node: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (service, node) = (service.to_owned(), node.to_owned());
        self.read(move |txn| Ok(txn.open_table(NODES)?.get((service.as_str(), node.as_str()))?.map(|record| record.value().to_vec()))).await
    }

    async fn nodes(&self, service: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let service = service.to_owned();
        self.read(move |txn| {
            let end = successor(&service);
            txn.open_table(NODES)?
                .range((service.as_str(), "")..(end.as_str(), ""))?
                .map(|entry| {
                    let (key, record) = entry?;
                    Ok((key.value().1.to_owned(), record.value().to_vec()))
                })
                .collect()
        })
        .await
    }

    async fn set_node(&self, service: &str, node: &str, record: Vec<u8>) -> Result<(), StoreError> {
        let (service, node) = (service.to_owned(), node.to_owned());
        self.write(move |txn| {
            txn.open_table(NODES)?.insert((service.as_str(), node.as_str()), record.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn delete_node(&self, service: &str, node: &str) -> Result<(), StoreError> {
        let (service, node) = (service.to_owned(), node.to_owned());
        self.write(move |txn| {
            txn.open_table(NODES)?.remove((service.as_str(), node.as_str()))?;
            remove_items(txn, &service, Some(&node))
        })
        .await
    }

    async fn delete_service(&self, service: &str) -> Result<(), StoreError> {
        let service = service.to_owned();
        self.write(move |txn| {
            let end = successor(&service);
            txn.open_table(NODES)?.retain_in((service.as_str(), "")..(end.as_str(), ""), |_, _| false)?;
            remove_items(txn, &service, None)
        })
        .await
    }

    async fn publish(&self, service: &str, node: &str, item: PubSubItem, max_items: usize) -> Result<(), StoreError> {
        let (service, node) = (service.to_owned(), node.to_owned());
        self.write(move |txn| {
            let (service, node) = (service.as_str(), node.as_str());
            let mut items = txn.open_table(ITEMS)?;
            let mut order = txn.open_table(ORDER)?;
            let replaced = items.insert((service, node, item.id.as_str()), encode_pubsub_item(&item).as_slice())?.map(|old| old.value().to_vec());
            if let Some(old) = replaced {
                let old = decode_pubsub_item(&item.id, &old).ok_or_else(|| corrupt(&item.id))?;
                order.remove((service, node, old.published, item.id.as_str()))?;
            }
            order.insert((service, node, item.published, item.id.as_str()), ())?;
            let after = successor(node);
            let held: Vec<(u64, String)> = order
                .range((service, node, 0, "")..(service, after.as_str(), 0, ""))?
                .map(|entry| entry.map(|(key, _)| (key.value().2, key.value().3.to_owned())))
                .collect::<Result<_, _>>()?;
            for (published, id) in held.iter().take(held.len().saturating_sub(max_items)) {
                order.remove((service, node, *published, id.as_str()))?;
                items.remove((service, node, id.as_str()))?;
            }
            Ok(())
        })
        .await
    }

    async fn retract(&self, service: &str, node: &str, id: &str) -> Result<bool, StoreError> {
        let (service, node, id) = (service.to_owned(), node.to_owned(), id.to_owned());
        self.write(move |txn| {
            let Some(old) = txn.open_table(ITEMS)?.remove((service.as_str(), node.as_str(), id.as_str()))?.map(|old| old.value().to_vec()) else {
                return Ok(false);
            };
            let old = decode_pubsub_item(&id, &old).ok_or_else(|| corrupt(&id))?;
            txn.open_table(ORDER)?.remove((service.as_str(), node.as_str(), old.published, id.as_str()))?;
            Ok(true)
        })
        .await
    }

    async fn items(&self, service: &str, node: &str, ids: &[String], max: Option<usize>) -> Result<Vec<PubSubItem>, StoreError> {
        let (service, node, ids) = (service.to_owned(), node.to_owned(), ids.to_vec());
        self.read(move |txn| {
            let (service, node) = (service.as_str(), node.as_str());
            let items = txn.open_table(ITEMS)?;
            let read = |id: &str| -> Result<Option<PubSubItem>, redb::Error> {
                match items.get((service, node, id))? {
                    Some(bytes) => Ok(Some(decode_pubsub_item(id, bytes.value()).ok_or_else(|| corrupt(id))?)),
                    None => Ok(None),
                }
            };
            let mut found = Vec::new();
            if ids.is_empty() {
                let after = successor(node);
                for entry in txn.open_table(ORDER)?.range((service, node, 0, "")..(service, after.as_str(), 0, ""))?.rev() {
                    if max.is_some_and(|max| found.len() >= max) {
                        break;
                    }
                    found.extend(read(entry?.0.value().3)?);
                }
            } else {
                for id in &ids {
                    found.extend(read(id)?);
                }
                found.sort_by(|a: &PubSubItem, b| b.published.cmp(&a.published).then_with(|| b.id.cmp(&a.id)));
                found.truncate(max.unwrap_or(usize::MAX));
            }
            Ok(found)
        })
        .await
    }

    async fn purge(&self, service: &str, node: &str) -> Result<(), StoreError> {
        let (service, node) = (service.to_owned(), node.to_owned());
        self.write(move |txn| remove_items(txn, &service, Some(&node))).await
    }
}
