//! PubSub nodes and items (`PubSubNodes`) in CQL: `pubsub_nodes` (a service's nodes in one
//! partition) and `pubsub_items` (a node's items in one partition, ordered by `published` when
//! read: a node holds at most its `max_items`, bounded by configuration).

use async_trait::async_trait;
use starling_cluster::store::{PubSubItem, PubSubNodes, StoreError};

use crate::{from_bigint, rows, to_bigint, ScyllaStore};

impl ScyllaStore {
    /// Every item of a node, newest first.
    async fn all_items(&self, service: &str, node: &str) -> Result<Vec<PubSubItem>, StoreError> {
        let result = self.exec(&self.st.pubsub_items_all, (service, node)).await?;
        let mut items: Vec<PubSubItem> = rows::<(String, Option<i64>, Option<String>, Option<Vec<u8>>)>(result, "pubsub_items")?
            .into_iter()
            .map(|(id, published, publisher, payload)| PubSubItem {
                id,
                published: from_bigint(published.unwrap_or_default()),
                publisher: publisher.unwrap_or_default(),
                payload: payload.unwrap_or_default(),
            })
            .collect();
        items.sort_by(|a, b| b.published.cmp(&a.published).then_with(|| b.id.cmp(&a.id)));
        Ok(items)
    }
}

#[async_trait]
impl PubSubNodes for ScyllaStore {
    async fn node(&self, service: &str, node: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let result = self.exec(&self.st.pubsub_node_get, (service, node)).await?;
        Ok(rows::<(Option<Vec<u8>>,)>(result, "pubsub_nodes")?.into_iter().next().map(|(record,)| record.unwrap_or_default()))
    }

    async fn nodes(&self, service: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let result = self.exec(&self.st.pubsub_nodes_all, (service,)).await?;
        Ok(rows::<(String, Option<Vec<u8>>)>(result, "pubsub_nodes")?.into_iter().map(|(node, record)| (node, record.unwrap_or_default())).collect())
    }

    async fn set_node(&self, service: &str, node: &str, record: Vec<u8>) -> Result<(), StoreError> {
        self.exec(&self.st.pubsub_node_set, (service, node, record)).await?;
        Ok(())
    }

    /// Items first, so that items never outlive their node.
    async fn delete_node(&self, service: &str, node: &str) -> Result<(), StoreError> {
        self.exec(&self.st.pubsub_items_purge, (service, node)).await?;
        self.exec(&self.st.pubsub_node_delete, (service, node)).await?;
        Ok(())
    }

    async fn delete_service(&self, service: &str) -> Result<(), StoreError> {
        for (node, _) in self.nodes(service).await? {
            self.exec(&self.st.pubsub_items_purge, (service, node.as_str())).await?;
        }
        self.exec(&self.st.pubsub_service_delete, (service,)).await?;
        Ok(())
    }

    async fn publish(&self, service: &str, node: &str, item: PubSubItem, max_items: usize) -> Result<(), StoreError> {
        let values = (service, node, item.id.as_str(), to_bigint(item.published), item.publisher.as_str(), item.payload.as_slice());
        self.exec(&self.st.pubsub_item_set, values).await?;
        for old in self.all_items(service, node).await?.iter().skip(max_items) {
            self.exec(&self.st.pubsub_item_delete, (service, node, old.id.as_str())).await?;
        }
        Ok(())
    }

    async fn retract(&self, service: &str, node: &str, id: &str) -> Result<bool, StoreError> {
        let result = self.exec(&self.st.pubsub_item_get, (service, node, id)).await?;
        let existed = !rows::<(String,)>(result, "pubsub_items")?.is_empty();
        self.exec(&self.st.pubsub_item_delete, (service, node, id)).await?;
        Ok(existed)
    }

    async fn items(&self, service: &str, node: &str, ids: &[String], max: Option<usize>) -> Result<Vec<PubSubItem>, StoreError> {
        let mut items = self.all_items(service, node).await?;
        if !ids.is_empty() {
            items.retain(|item| ids.contains(&item.id));
        }
        items.truncate(max.unwrap_or(usize::MAX));
        Ok(items)
    }

    async fn purge(&self, service: &str, node: &str) -> Result<(), StoreError> {
        self.exec(&self.st.pubsub_items_purge, (service, node)).await?;
        Ok(())
    }
}
