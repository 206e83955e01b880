//! The message archive: messages under `(user, id)`, and an index `(user, with, id)` so a query
//! for one conversation reads only that conversation. A batch of appends is one transaction, so
//! one commit (one fsync) covers all of it: that is what makes archiving every message affordable
//! here. Expired messages are removed by [`sweep`], which the store runs on a thread of its own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redb::{ReadTransaction, ReadableDatabase, WriteTransaction};
use starling_cluster::store::{Archive, ArchiveEntry, ArchivePage, ArchivePrefs, ArchiveQuery, ArchivedMessage, StoreError};

use crate::codec::{decode_archive_prefs, decode_archived, encode_archive_prefs, encode_archived};
use crate::{corrupt, successor, EmbeddedStore, ARCHIVE, ARCHIVE_PREFS, ARCHIVE_WITH};

fn read_message(txn: &ReadTransaction, user: &str, id: u64) -> Result<Option<ArchivedMessage>, redb::Error> {
    let Some(value) = txn.open_table(ARCHIVE)?.get((user, id))? else { return Ok(None) };
    let (with, stanza) = decode_archived(value.value()).ok_or_else(|| corrupt("archived message", user))?;
    Ok(Some(ArchivedMessage { id, with, stanza }))
}

#[async_trait]
impl Archive for EmbeddedStore {
    async fn append(&self, entries: &[ArchiveEntry]) -> Result<(), StoreError> {
        // Encoded here, so the blocking task owns its values without a further copy.
        let rows: Vec<(String, u64, String, Vec<u8>)> = entries
            .iter()
            .map(|ArchiveEntry { user, message }| (user.clone(), message.id, message.with.clone(), encode_archived(&message.with, &message.stanza)))
            .collect();
        self.write(move |txn| {
            let mut messages = txn.open_table(ARCHIVE)?;
            let mut index = txn.open_table(ARCHIVE_WITH)?;
            for (user, id, with, value) in &rows {
                messages.insert((user.as_str(), *id), value.as_slice())?;
                index.insert((user.as_str(), with.as_str(), *id), ())?;
            }
            Ok(())
        })
        .await
    }

    async fn query(&self, user: &str, query: &ArchiveQuery) -> Result<ArchivePage, StoreError> {
        let Some(range) = query.id_range() else { return Ok(ArchivePage { messages: Vec::new(), complete: true }) };
        let (user, query) = (user.to_owned(), query.clone());
        self.read(move |txn| {
            // One more than asked tells whether the range goes on beyond the page.
            let wanted = query.limit.saturating_add(1);
            let mut messages = Vec::new();
            match &query.with {
                None => {
                    let table = txn.open_table(ARCHIVE)?;
                    let rows = table.range((user.as_str(), *range.start())..=(user.as_str(), *range.end()))?;
                    let rows: Box<dyn Iterator<Item = _>> = if query.from_newest { Box::new(rows.rev()) } else { Box::new(rows) };
                    for row in rows.take(wanted) {
                        let (key, value) = row?;
                        let (with, stanza) = decode_archived(value.value()).ok_or_else(|| corrupt("archived message", &user))?;
                        messages.push(ArchivedMessage { id: key.value().1, with, stanza });
                    }
                }
                Some(with) => {
                    let index = txn.open_table(ARCHIVE_WITH)?;
                    let keys = index.range((user.as_str(), with.as_str(), *range.start())..=(user.as_str(), with.as_str(), *range.end()))?;
                    let keys: Box<dyn Iterator<Item = _>> = if query.from_newest { Box::new(keys.rev()) } else { Box::new(keys) };
                    for key in keys.take(wanted) {
                        let id = key?.0.value().2;
                        let message = read_message(txn, &user, id)?.ok_or_else(|| corrupt("archive index", &user))?;
                        messages.push(message);
                    }
                }
            }
            let complete = messages.len() <= query.limit;
            messages.truncate(query.limit);
            if query.from_newest {
                messages.reverse();
            }
            Ok(ArchivePage { messages, complete })
        })
        .await
    }

    async fn get(&self, user: &str, ids: &[u64]) -> Result<Vec<ArchivedMessage>, StoreError> {
        let user = user.to_owned();
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        self.read(move |txn| Ok(ids.into_iter().map(|id| read_message(txn, &user, id)).collect::<Result<Vec<_>, _>>()?.into_iter().flatten().collect()))
            .await
    }

    async fn remove(&self, user: &str, ids: &[u64]) -> Result<(), StoreError> {
        let (user, ids) = (user.to_owned(), ids.to_vec());
        self.write(move |txn| {
            let mut messages = txn.open_table(ARCHIVE)?;
            let mut index = txn.open_table(ARCHIVE_WITH)?;
            for id in ids {
                let with = messages.remove((user.as_str(), id))?.and_then(|value| decode_archived(value.value()).map(|(with, _)| with));
                if let Some(with) = with {
                    index.remove((user.as_str(), with.as_str(), id))?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn prefs(&self, user: &str) -> Result<Option<ArchivePrefs>, StoreError> {
        let user = user.to_owned();
        self.read(move |txn| {
            let Some(value) = txn.open_table(ARCHIVE_PREFS)?.get(user.as_str())? else { return Ok(None) };
            decode_archive_prefs(value.value()).map(Some).ok_or_else(|| corrupt("archive preferences", &user))
        })
        .await
    }

    async fn set_prefs(&self, user: &str, prefs: ArchivePrefs) -> Result<(), StoreError> {
        let user = user.to_owned();
        self.write(move |txn| {
            txn.open_table(ARCHIVE_PREFS)?.insert(user.as_str(), encode_archive_prefs(&prefs).as_slice())?;
            Ok(())
        })
        .await
    }

    async fn remove_user(&self, user: &str) -> Result<(), StoreError> {
        let user = user.to_owned();
        self.write(move |txn| {
            remove_older(txn, &user, u64::MAX)?;
            txn.open_table(ARCHIVE_PREFS)?.remove(user.as_str())?;
            Ok(())
        })
        .await
    }
}

/// Removes the user's messages with ids below `cutoff` (all of them for `u64::MAX`).
fn remove_older(txn: &WriteTransaction, user: &str, cutoff: u64) -> Result<(), redb::Error> {
    txn.open_table(ARCHIVE)?.retain_in((user, 0)..=(user, cutoff.saturating_sub(1)), |_, _| false)?;
    let next = successor(user);
    txn.open_table(ARCHIVE_WITH)?.retain_in((user, "", 0)..(next.as_str(), "", 0), |key, _| key.2 >= cutoff)?;
    Ok(())
}

/// Users swept per transaction: bounds how long the sweep holds redb's single writer.
const SWEEP_USERS_PER_COMMIT: usize = 64;

/// Deletes every archived message older than `retention`, a few users per transaction, and
/// returns how many users it visited.
pub(crate) fn sweep(db: &redb::Database, retention: Duration) -> Result<usize, redb::Error> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let cutoff = u64::try_from(now.saturating_sub(retention).as_micros()).unwrap_or(u64::MAX);
    let mut next_user = String::new();
    let mut visited = 0;
    loop {
        let users = {
            let txn = db.begin_read()?;
            let table = txn.open_table(ARCHIVE)?;
            let mut users: Vec<String> = Vec::new();
            let mut from = next_user.clone();
            while users.len() < SWEEP_USERS_PER_COMMIT {
                let Some(row) = table.range((from.as_str(), 0)..)?.next() else { break };
                let user = row?.0.value().0.to_owned();
                from = successor(&user);
                users.push(user);
            }
            next_user = from;
            users
        };
        if users.is_empty() {
            return Ok(visited);
        }
        visited += users.len();
        let txn = db.begin_write()?;
        for user in &users {
            remove_older(&txn, user, cutoff)?;
        }
        txn.commit()?;
    }
}
