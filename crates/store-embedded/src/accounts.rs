use async_trait::async_trait;
use redb::ReadableTable;
use starling_cluster::store::{Accounts, ScramCredentials, StoreError};

use crate::codec::{decode_credentials, encode_credentials};
use crate::{ACCOUNTS, EmbeddedStore, corrupt};

#[async_trait]
impl Accounts for EmbeddedStore {
    async fn create(&self, user: &str, credentials: ScramCredentials) -> Result<(), StoreError> {
        let user = user.to_owned();
        let created = self
            .write(move |txn| {
                let mut accounts = txn.open_table(ACCOUNTS)?;
                // Checked and inserted in one write transaction: two concurrent creates of the
                // same name cannot both succeed.
                if accounts.get(user.as_str())?.is_some() {
                    return Ok(false);
                }
                accounts.insert(user.as_str(), encode_credentials(&credentials).as_slice())?;
                Ok(true)
            })
            .await?;
        if created { Ok(()) } else { Err(StoreError::Conflict) }
    }

    async fn credentials(&self, user: &str) -> Result<Option<ScramCredentials>, StoreError> {
        let user = user.to_owned();
        self.read(move |txn| {
            let accounts = txn.open_table(ACCOUNTS)?;
            let Some(stored) = accounts.get(user.as_str())? else { return Ok(None) };
            decode_credentials(stored.value()).map(Some).ok_or_else(|| corrupt("credentials", &user))
        })
        .await
    }

    async fn set_credentials(&self, user: &str, credentials: ScramCredentials) -> Result<bool, StoreError> {
        let user = user.to_owned();
        self.write(move |txn| {
            let mut accounts = txn.open_table(ACCOUNTS)?;
            if accounts.get(user.as_str())?.is_none() {
                return Ok(false);
            }
            accounts.insert(user.as_str(), encode_credentials(&credentials).as_slice())?;
            Ok(true)
        })
        .await
    }

    async fn remove(&self, user: &str) -> Result<bool, StoreError> {
        let user = user.to_owned();
        self.write(move |txn| Ok(txn.open_table(ACCOUNTS)?.remove(user.as_str())?.is_some())).await
    }

    async fn list(&self) -> Result<Vec<String>, StoreError> {
        self.read(|txn| {
            let accounts = txn.open_table(ACCOUNTS)?;
            // Keys come out in byte order, which is the sorted order the trait promises.
            accounts.iter()?.map(|entry| Ok(entry?.0.value().to_owned())).collect()
        })
        .await
    }

    async fn exists(&self, user: &str) -> Result<bool, StoreError> {
        let user = user.to_owned();
        self.read(move |txn| Ok(txn.open_table(ACCOUNTS)?.get(user.as_str())?.is_some())).await
    }
}
