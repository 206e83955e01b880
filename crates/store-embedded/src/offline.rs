use async_trait::async_trait;
use redb::ReadableTable;
use starling_cluster::store::{OfflineMessages, StoreError};

use crate::{EmbeddedStore, OFFLINE, OFFLINE_QUEUES, corrupt};

#[async_trait]
impl OfflineMessages for EmbeddedStore {
    async fn push(&self, user: &str, stanza: Vec<u8>, max_per_user: usize) -> Result<u64, StoreError> {
        let user = user.to_owned();
        // A limit beyond u64 is no limit.
        let max = u64::try_from(max_per_user).unwrap_or(u64::MAX);
        let id = self
            .write(move |txn| {
                let mut queues = txn.open_table(OFFLINE_QUEUES)?;
                let (last_id, count) = queues.get(user.as_str())?.map_or((0, 0), |queue| queue.value());
                if count >= max {
                    return Ok(None);
                }
                let id = last_id.checked_add(1).ok_or_else(|| corrupt("offline message id", &user))?;
                txn.open_table(OFFLINE)?.insert((user.as_str(), id), stanza.as_slice())?;
                queues.insert(user.as_str(), (id, count + 1))?;
                Ok(Some(id))
            })
            .await?;
        id.ok_or(StoreError::LimitExceeded)
    }

    async fn fetch(&self, user: &str) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let user = user.to_owned();
        self.read(move |txn| {
            let messages = txn.open_table(OFFLINE)?;
            messages
                .range((user.as_str(), 0)..=(user.as_str(), u64::MAX))?
                .map(|entry| {
                    let (key, value) = entry?;
                    Ok((key.value().1, value.value().to_vec()))
                })
                .collect()
        })
        .await
    }

    async fn remove_upto(&self, user: &str, id: u64) -> Result<(), StoreError> {
        let user = user.to_owned();
        self.write(move |txn| {
            let mut removed = 0u64;
            for entry in txn.open_table(OFFLINE)?.extract_from_if((user.as_str(), 0)..=(user.as_str(), id), |_, _| true)? {
                entry?;
                removed += 1;
            }
            if removed > 0 {
                let mut queues = txn.open_table(OFFLINE_QUEUES)?;
                let (last_id, count) = queues.get(user.as_str())?.map_or((0, 0), |queue| queue.value());
                let count = count.checked_sub(removed).ok_or_else(|| corrupt("offline message count", &user))?;
                queues.insert(user.as_str(), (last_id, count))?;
            }
            Ok(())
        })
        .await
    }

    async fn count(&self, user: &str) -> Result<usize, StoreError> {
        let user = user.to_owned();
        self.read(move |txn| {
            let count = txn.open_table(OFFLINE_QUEUES)?.get(user.as_str())?.map_or(0, |queue| queue.value().1);
            usize::try_from(count).map_err(|_| corrupt("offline message count", &user))
        })
        .await
    }

    async fn remove_user(&self, user: &str) -> Result<(), StoreError> {
        let user = user.to_owned();
        self.write(move |txn| {
            txn.open_table(OFFLINE)?.retain_in((user.as_str(), 0)..=(user.as_str(), u64::MAX), |_, _| false)?;
            txn.open_table(OFFLINE_QUEUES)?.remove(user.as_str())?;
            Ok(())
        })
        .await
    }
}
