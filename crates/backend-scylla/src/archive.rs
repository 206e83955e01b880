//! The message archive, laid out for its one read pattern: a page of one user's messages, newest
//! or oldest first from some id, optionally with one contact.
//!
//! - `archive`: partition `(user, bucket)`, rows clustered by id, newest first. A bucket is
//!   2^41 µs (about 25 days) of ids, so a partition stays bounded however long a user chats.
//! - `archive_with`: the same rows again under `(user, with, bucket)`, so a conversation query
//!   reads only that conversation. Denormalised instead of a secondary index: ScyllaDB and
//!   Cassandra would scan every node for an index, this is one partition read.
//! - `archive_buckets`: per user, which buckets hold messages, overall (`with_jid = ''`) and per
//!   contact, so a query visits only non-empty buckets and knows where the archive ends.
//!
//! Markers are idempotent, so rewriting them per message would be correct but would make every
//! message cost three requests instead of two; this process remembers the markers it wrote in the
//! last [`MARKER_MEMORY`] and skips those. The one case this can hide messages: another node
//! removes the account (deleting its markers) and the JID is registered and messaged again within
//! that time — then the new messages of that bucket stay invisible until the memory lapses and
//! the next message rewrites the marker.
//!
//! A page is read bucket by bucket from the end it starts at, each read asking for just the rows
//! still missing, and one more than the page to learn whether the range goes on. Retention is a
//! TTL on every row; bucket markers live one bucket longer than the rows they point at.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::try_join_all;
use starling_cluster::store::{
    Archive, ArchiveDefault, ArchiveEntry, ArchivePage, ArchivePrefs, ArchiveQuery, ArchivedMessage, StoreError,
};

use crate::{ScyllaStore, from_bigint, rows, to_bigint};

/// log2 of a bucket's span in microseconds.
const BUCKET_BITS: u32 = 41;

/// The bucket of an id. Ids are microseconds since 1970, far below 2^63, so the bucket fits an
/// `int` for the next 290,000 years.
fn bucket(id: u64) -> i32 {
    i32::try_from(id >> BUCKET_BITS).unwrap_or(i32::MAX)
}

/// Where the bucket markers for all of a user's messages live (`with_jid` of no contact).
const ALL: &str = "";

/// How long a written marker is trusted to exist.
const MARKER_MEMORY: Duration = Duration::from_secs(600);

/// Remembered markers at most; beyond it the memory starts over.
const MARKER_CAPACITY: usize = 200_000;

/// Hashes of `(user, with, bucket)` whose marker this process wrote, and when. A hash collision
/// would skip a needed marker for at most [`MARKER_MEMORY`]; with 64 bits it does not happen.
#[derive(Default)]
pub(crate) struct RecentMarkers {
    written: Mutex<HashMap<u64, Instant>>,
    hasher: RandomState,
}

impl RecentMarkers {
    fn key(&self, user: &str, with: &str, bucket: i32) -> u64 {
        self.hasher.hash_one((user, with, bucket))
    }

    fn is_fresh(&self, key: u64) -> bool {
        let written = self.written.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        written.get(&key).is_some_and(|at| at.elapsed() < MARKER_MEMORY)
    }

    fn remember(&self, keys: &[u64]) {
        let mut written = self.written.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if written.len() + keys.len() > MARKER_CAPACITY {
            written.clear();
        }
        let now = Instant::now();
        written.extend(keys.iter().map(|&key| (key, now)));
    }

    fn forget_all(&self) {
        self.written.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }
}

impl ScyllaStore {
    /// The buckets of `user` (with `with`) that may hold ids in `low..=high`, oldest first.
    async fn archive_buckets(&self, user: &str, with: &str, low: u64, high: u64) -> Result<Vec<i32>, StoreError> {
        let result = self
            .exec(&self.st.archive_buckets, (user, with, bucket(low), bucket(high)))
            .await?;
        Ok(rows::<(i32,)>(result, "archive_buckets")?.into_iter().map(|(b,)| b).collect())
    }

    async fn archive_rows(
        &self,
        user: &str,
        with: Option<&str>,
        bucket: i32,
        (low, high): (u64, u64),
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<ArchivedMessage>, StoreError> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let (low, high) = (to_bigint(low), to_bigint(high));
        match with {
            None => {
                let statement = if newest_first { &self.st.archive_page_desc } else { &self.st.archive_page_asc };
                let result = self.exec(statement, (user, bucket, low, high, limit)).await?;
                Ok(rows::<(i64, String, Vec<u8>)>(result, "archive")?
                    .into_iter()
                    .map(|(id, with, stanza)| ArchivedMessage { id: from_bigint(id), with, stanza })
                    .collect())
            }
            Some(with) => {
                let statement = if newest_first { &self.st.archive_with_page_desc } else { &self.st.archive_with_page_asc };
                let result = self.exec(statement, (user, with, bucket, low, high, limit)).await?;
                Ok(rows::<(i64, Vec<u8>)>(result, "archive_with")?
                    .into_iter()
                    .map(|(id, stanza)| ArchivedMessage { id: from_bigint(id), with: with.to_owned(), stanza })
                    .collect())
            }
        }
    }

    async fn archive_insert(&self, entry: &ArchiveEntry) -> Result<(), StoreError> {
        let ArchiveEntry { user, message } = entry;
        let (id, b, ttl) = (to_bigint(message.id), bucket(message.id), self.archive_ttl);
        let row = self.exec(&self.st.archive_insert, (user, b, id, &message.with, &message.stanza, ttl));
        let by_with = self.exec(&self.st.archive_with_insert, (user, &message.with, b, id, &message.stanza, ttl));
        let marker_ttl = if ttl == 0 { 0 } else { ttl.saturating_add(BUCKET_SECONDS) };
        let needed: Vec<(&str, u64)> = [ALL, message.with.as_str()]
            .into_iter()
            .map(|with| (with, self.markers.key(user, with, b)))
            .filter(|(_, key)| !self.markers.is_fresh(*key))
            .collect();
        let markers = async {
            if needed.is_empty() {
                return Ok(());
            }
            let statements = vec![self.st.archive_bucket_insert.clone(); needed.len()];
            let values: Vec<(&str, &str, i32, i32)> = needed.iter().map(|(with, _)| (user.as_str(), *with, b, marker_ttl)).collect();
            self.batch(statements, values).await?;
            // Remembered only once written: a failed batch is retried with its markers.
            self.markers.remember(&needed.iter().map(|(_, key)| *key).collect::<Vec<_>>());
            Ok::<_, StoreError>(())
        };
        futures_util::try_join!(row, by_with, markers)?;
        Ok(())
    }
}

/// A bucket's span in seconds, rounded up.
const BUCKET_SECONDS: i32 = ((1u64 << BUCKET_BITS) / 1_000_000 + 1) as i32;

/// Rows written at once by one `append`: enough to keep a cluster busy, few enough that a batch
/// of a few hundred entries does not flood the driver's per-connection request slots.
const APPEND_CONCURRENCY: usize = 64;

#[async_trait]
impl Archive for ScyllaStore {
    async fn append(&self, entries: &[ArchiveEntry]) -> Result<(), StoreError> {
        for chunk in entries.chunks(APPEND_CONCURRENCY) {
            try_join_all(chunk.iter().map(|entry| self.archive_insert(entry))).await?;
        }
        Ok(())
    }

    async fn query(&self, user: &str, query: &ArchiveQuery) -> Result<ArchivePage, StoreError> {
        let empty = ArchivePage { messages: Vec::new(), complete: true };
        // Ids are stored as signed bigints: nothing lies above i64::MAX.
        let Some((low, high)) = query.id_range().map(|ids| (*ids.start(), (*ids.end()).min(i64::MAX as u64))) else { return Ok(empty) };
        if low > high {
            return Ok(empty);
        }
        let with = query.with.as_deref();
        let mut buckets = self.archive_buckets(user, with.unwrap_or(ALL), low, high).await?;
        if query.from_newest {
            buckets.reverse();
        }
        let wanted = query.limit.saturating_add(1);
        let mut messages = Vec::new();
        for b in buckets {
            let missing = wanted - messages.len();
            messages.extend(self.archive_rows(user, with, b, (low, high), missing, query.from_newest).await?);
            if messages.len() >= wanted {
                break;
            }
        }
        let complete = messages.len() <= query.limit;
        messages.truncate(query.limit);
        if query.from_newest {
            messages.reverse();
        }
        Ok(ArchivePage { messages, complete })
    }

    async fn get(&self, user: &str, ids: &[u64]) -> Result<Vec<ArchivedMessage>, StoreError> {
        let ids: BTreeSet<u64> = ids.iter().copied().filter(|&id| id <= i64::MAX as u64).collect();
        let found = try_join_all(ids.into_iter().map(|id| async move {
            let result = self.exec(&self.st.archive_get, (user, bucket(id), to_bigint(id))).await?;
            Ok::<_, StoreError>(
                rows::<(String, Vec<u8>)>(result, "archive")?
                    .into_iter()
                    .next()
                    .map(|(with, stanza)| ArchivedMessage { id, with, stanza }),
            )
        }))
        .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn remove(&self, user: &str, ids: &[u64]) -> Result<(), StoreError> {
        // The conversation index is keyed by the peer, which only the message row knows.
        for message in self.get(user, ids).await? {
            let (b, id) = (bucket(message.id), to_bigint(message.id));
            self.exec(&self.st.archive_with_delete, (user, message.with.as_str(), b, id)).await?;
            // The message row last: if the first delete failed, a retry still finds the peer.
            self.exec(&self.st.archive_delete, (user, b, id)).await?;
        }
        Ok(())
    }

    async fn prefs(&self, user: &str) -> Result<Option<ArchivePrefs>, StoreError> {
        let result = self.exec(&self.st.archive_prefs_get, (user,)).await?;
        let Some((mode, always, never)) =
            rows::<(i8, Option<BTreeSet<String>>, Option<BTreeSet<String>>)>(result, "archive_prefs")?.into_iter().next()
        else {
            return Ok(None);
        };
        let default = match mode {
            0 => ArchiveDefault::Always,
            1 => ArchiveDefault::Never,
            2 => ArchiveDefault::Roster,
            other => return Err(StoreError::Corrupt(format!("archive prefs of {user}: unknown default {other}"))),
        };
        // An empty CQL set reads back as null.
        Ok(Some(ArchivePrefs { default, always: always.unwrap_or_default(), never: never.unwrap_or_default() }))
    }

    async fn set_prefs(&self, user: &str, prefs: ArchivePrefs) -> Result<(), StoreError> {
        let mode: i8 = match prefs.default {
            ArchiveDefault::Always => 0,
            ArchiveDefault::Never => 1,
            ArchiveDefault::Roster => 2,
        };
        self.exec(&self.st.archive_prefs_set, (user, mode, &prefs.always, &prefs.never)).await?;
        Ok(())
    }

    async fn remove_user(&self, user: &str) -> Result<(), StoreError> {
        let result = self.exec(&self.st.archive_markers, (user,)).await?;
        let markers = rows::<(String, i32)>(result, "archive_buckets")?;
        try_join_all(markers.iter().map(|(with, b)| async move {
            if with == ALL {
                self.exec(&self.st.archive_delete_bucket, (user, *b)).await
            } else {
                self.exec(&self.st.archive_with_delete_bucket, (user, with, *b)).await
            }
        }))
        .await?;
        // Markers last: if a delete above failed, a retry still finds what is left.
        self.exec(&self.st.archive_markers_delete, (user,)).await?;
        // The user's markers are gone: none of those remembered may be trusted (rare enough to
        // forget every user's rather than index the memory by user).
        self.markers.forget_all();
        self.exec(&self.st.archive_prefs_delete, (user,)).await?;
        Ok(())
    }
}
