use async_trait::async_trait;
use redb::{ReadableTable, WriteTransaction};
use starling_cluster::store::{RosterItem, Rosters, StoreError};

use crate::codec::{decode_roster_item, encode_roster_item};
use crate::{EmbeddedStore, PENDING_IN, ROSTER_ITEMS, ROSTER_VERSIONS, corrupt, successor};

/// Bumps and returns the user's roster version, inside the transaction that changes the roster so
/// the version and the items never disagree.
fn bump_version(txn: &WriteTransaction, user: &str) -> Result<u64, redb::Error> {
    let mut versions = txn.open_table(ROSTER_VERSIONS)?;
    let current = versions.get(user)?.map_or(0, |version| version.value());
    let next = current.checked_add(1).ok_or_else(|| corrupt("roster version", user))?;
    versions.insert(user, next)?;
    Ok(next)
}

#[async_trait]
impl Rosters for EmbeddedStore {
    async fn roster(&self, user: &str) -> Result<(u64, Vec<RosterItem>), StoreError> {
        let user = user.to_owned();
        self.read(move |txn| {
            let version = txn.open_table(ROSTER_VERSIONS)?.get(user.as_str())?.map_or(0, |version| version.value());
            let items = txn.open_table(ROSTER_ITEMS)?;
            let end = successor(&user);
            let items = items
                .range((user.as_str(), "")..(end.as_str(), ""))?
                .map(|entry| {
                    let (key, value) = entry?;
                    decode_roster_item(key.value().1, value.value()).ok_or_else(|| corrupt("roster item", &user))
                })
                .collect::<Result<Vec<RosterItem>, redb::Error>>()?;
            Ok((version, items))
        })
        .await
    }

    async fn item(&self, user: &str, contact: &str) -> Result<Option<RosterItem>, StoreError> {
        let (user, contact) = (user.to_owned(), contact.to_owned());
        self.read(move |txn| {
            let items = txn.open_table(ROSTER_ITEMS)?;
            let Some(stored) = items.get((user.as_str(), contact.as_str()))? else { return Ok(None) };
            decode_roster_item(&contact, stored.value()).map(Some).ok_or_else(|| corrupt("roster item", &user))
        })
        .await
    }

    async fn put(&self, user: &str, item: RosterItem) -> Result<u64, StoreError> {
        let user = user.to_owned();
        self.write(move |txn| {
            txn.open_table(ROSTER_ITEMS)?.insert((user.as_str(), item.jid.as_str()), encode_roster_item(&item).as_slice())?;
            bump_version(txn, &user)
        })
        .await
    }

    async fn remove(&self, user: &str, contact: &str) -> Result<Option<u64>, StoreError> {
        let (user, contact) = (user.to_owned(), contact.to_owned());
        self.write(move |txn| {
            if txn.open_table(ROSTER_ITEMS)?.remove((user.as_str(), contact.as_str()))?.is_none() {
                return Ok(None);
            }
            bump_version(txn, &user).map(Some)
        })
        .await
    }

    async fn version(&self, user: &str) -> Result<u64, StoreError> {
        let user = user.to_owned();
        self.read(move |txn| Ok(txn.open_table(ROSTER_VERSIONS)?.get(user.as_str())?.map_or(0, |version| version.value())))
            .await
    }

    async fn add_pending_in(&self, user: &str, contact: &str, stanza: Vec<u8>) -> Result<(), StoreError> {
        let (user, contact) = (user.to_owned(), contact.to_owned());
        self.write(move |txn| {
            txn.open_table(PENDING_IN)?.insert((user.as_str(), contact.as_str()), stanza.as_slice())?;
            Ok(())
        })
        .await
    }

    async fn remove_pending_in(&self, user: &str, contact: &str) -> Result<bool, StoreError> {
        let (user, contact) = (user.to_owned(), contact.to_owned());
        self.write(move |txn| Ok(txn.open_table(PENDING_IN)?.remove((user.as_str(), contact.as_str()))?.is_some()))
            .await
    }

    async fn pending_in(&self, user: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let user = user.to_owned();
        self.read(move |txn| {
            let pending = txn.open_table(PENDING_IN)?;
            let end = successor(&user);
            pending
                .range((user.as_str(), "")..(end.as_str(), ""))?
                .map(|entry| {
                    let (key, value) = entry?;
                    Ok((key.value().1.to_owned(), value.value().to_vec()))
                })
                .collect()
        })
        .await
    }

    async fn remove_user(&self, user: &str) -> Result<(), StoreError> {
        let user = user.to_owned();
        self.write(move |txn| {
            let end = successor(&user);
            txn.open_table(ROSTER_ITEMS)?.retain_in((user.as_str(), "")..(end.as_str(), ""), |_, _| false)?;
            txn.open_table(PENDING_IN)?.retain_in((user.as_str(), "")..(end.as_str(), ""), |_, _| false)?;
            txn.open_table(ROSTER_VERSIONS)?.remove(user.as_str())?;
            Ok(())
        })
        .await
    }
}
