//! The embedded single-node store: every `starling-cluster` storage trait on one redb database
//! file, `starling.redb`, in the server's data directory. It is what a server without a cluster
//! runs on, and needs no other process.
//!
//! It knows the storage traits and redb, and nothing of XMPP: users, contacts and keys are opaque
//! strings, stanzas and vCards opaque bytes. redb is synchronous, so every call runs on tokio's
//! blocking pool in one transaction of its own; each write transaction is committed durably
//! (fsync) before the call returns, and redb lets one writer in at a time, which is what makes
//! read-modify-write calls such as an offline push with its quota check atomic.

mod accounts;
mod archive;
mod codec;
mod offline;
mod pubsub;
mod rosters;
mod user_data;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use redb::{Database, ReadTransaction, ReadableDatabase, TableDefinition, WriteTransaction};
use starling_cluster::store::{Store, StoreError};

/// The database file inside the data directory.
pub const FILE_NAME: &str = "starling.redb";

// Table layouts. Every key starts with the user, so one user's data is one contiguous key range:
// each call is a point lookup or a scan of that range, and deleting a user is a range delete.
// `&[u8]` values are stanzas and other blobs as given, or a `codec` layout.
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
const ROSTER_ITEMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("roster_items");
const ROSTER_VERSIONS: TableDefinition<&str, u64> = TableDefinition::new("roster_versions");
const PENDING_IN: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("roster_pending_in");
const VCARDS: TableDefinition<&str, &[u8]> = TableDefinition::new("vcards");
const PRIVATE_XML: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("private_xml");
const BLOCKLISTS: TableDefinition<(&str, &str), ()> = TableDefinition::new("blocklists");
const OFFLINE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("offline");
/// Per user: (last id handed out, messages queued). The last id outlives the messages, so ids keep
/// increasing when the queue empties.
const OFFLINE_QUEUES: TableDefinition<&str, (u64, u64)> = TableDefinition::new("offline_queues");
/// Per user: (unix seconds, status).
const LAST_ACTIVITY: TableDefinition<&str, (u64, &str)> = TableDefinition::new("last_activity");
/// (user, id) -> `codec` archived message.
const ARCHIVE: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("archive");
/// (user, with, id): the ids of one conversation, in order.
const ARCHIVE_WITH: TableDefinition<(&str, &str, u64), ()> = TableDefinition::new("archive_with");
const ARCHIVE_PREFS: TableDefinition<&str, &[u8]> = TableDefinition::new("archive_prefs");
/// (user, service, node) → publish-options (XEP-0357).
const PUSH: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("push_registrations");
/// The current and the new FAST token, each `FastToken::to_bytes` or empty.
type TokenSlots<'a> = (&'a [u8], &'a [u8]);
/// (user, client) → its token slots.
const FAST_TOKENS: TableDefinition<(&str, &str), TokenSlots> = TableDefinition::new("fast_tokens");
/// (time in ms, reporter, reported) → the rest of an XEP-0377 report (`codec`).
const ABUSE_REPORTS: TableDefinition<(u64, &str, &str), &[u8]> = TableDefinition::new("abuse_reports");
/// Room bare JID → the MUC module's record of the room.
const ROOMS: TableDefinition<&str, &[u8]> = TableDefinition::new("muc_rooms");
/// (service domain, room bare JID) → the name a public room is listed under.
const LISTED_ROOMS: TableDefinition<(&str, &str), &str> = TableDefinition::new("muc_listed_rooms");
/// (registry domain, Thing key) → the XEP-0347 registry's record of the Thing.
const THINGS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("iot_things");

/// How the store is run beyond where its file is.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedOptions {
    /// Archived messages older than this are deleted by a sweep every [`SWEEP_INTERVAL`];
    /// `None` keeps them for ever.
    pub archive_retention: Option<Duration>,
}

/// How often expired archived messages are looked for.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// One open database. Every storage trait is implemented on it; [`EmbeddedStore::open`] hands it
/// out as a [`Store`] bundle.
pub struct EmbeddedStore {
    db: Arc<Database>,
}

impl EmbeddedStore {
    /// Opens `dir/starling.redb`, creating the directory and the database if missing. Fails with
    /// [`StoreError::Unavailable`] if the file is already open (by this process or another) or
    /// cannot be read, and with [`StoreError::Corrupt`] if it is damaged beyond redb's repair.
    ///
    /// This blocks on file I/O (and on a repair after a crash): call it at startup.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        EmbeddedStore::open_with(dir, &EmbeddedOptions::default())
    }

    /// [`open`](Self::open) with options; with a retention, starts the sweeping thread, which
    /// ends when the store is dropped.
    pub fn open_with(dir: &Path, options: &EmbeddedOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|error| StoreError::Unavailable(format!("cannot create data directory {}: {error}", dir.display())))?;
        let db = create_tables(dir).map_err(store_error)?;
        let store = Arc::new(EmbeddedStore { db: Arc::new(db) });
        if let Some(retention) = options.archive_retention {
            start_sweeper(Arc::downgrade(&store.db), retention);
        }
        Ok(Store {
            accounts: store.clone(),
            rosters: store.clone(),
            vcards: store.clone(),
            private_xml: store.clone(),
            blocklists: store.clone(),
            offline: store.clone(),
            last_activity: store.clone(),
            archive: store.clone(),
            push: store.clone(),
            fast_tokens: store.clone(),
            rooms: store.clone(),
            things: store.clone(),
            abuse_reports: store.clone(),
            pubsub: store,
        })
    }

    /// Runs `op` in a read transaction on the calling task. Reads never wait for a writer (redb's
    /// MVCC) and hit pages that are almost always cached, so one takes microseconds; handing it to
    /// the blocking pool cost two thread switches per read, which made up a measurable share of a
    /// login's CPU (`docs/benchmarks.md`, login profile).
    async fn read<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(&ReadTransaction) -> Result<T, redb::Error>,
    {
        let txn = self.db.begin_read().map_err(|error| store_error(error.into()))?;
        op(&txn).map_err(store_error)
    }

    /// Runs `op` in a write transaction on the blocking pool (a commit syncs the file) and commits
    /// it if `op` succeeds; an error drops (aborts) the transaction, so a failed call changes
    /// nothing.
    async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, redb::Error> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        let commit = move || {
            let txn = db.begin_write()?;
            let result = op(&txn)?;
            txn.commit()?;
            Ok(result)
        };
        match tokio::task::spawn_blocking(commit).await {
            Ok(result) => result.map_err(store_error),
            // A panic is a bug in this crate: let it surface where it would have without the pool.
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Err(StoreError::Unavailable(format!("store task cancelled: {error}"))),
        }
    }
}

/// redb's page cache. Its default (1 GiB) would let every account ever read stay in memory; the
/// data read per login is a few pages, and the OS page cache keeps the file warm anyway.
const PAGE_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Opens the database and creates every table, so that read transactions (which cannot create
/// tables) never meet a missing one.
fn create_tables(dir: &Path) -> Result<Database, redb::Error> {
    let db = redb::Builder::new().set_cache_size(PAGE_CACHE_BYTES).create(dir.join(FILE_NAME))?;
    let txn = db.begin_write()?;
    txn.open_table(ACCOUNTS)?;
    txn.open_table(ROSTER_ITEMS)?;
    txn.open_table(ROSTER_VERSIONS)?;
    txn.open_table(PENDING_IN)?;
    txn.open_table(VCARDS)?;
    txn.open_table(PRIVATE_XML)?;
    txn.open_table(BLOCKLISTS)?;
    txn.open_table(OFFLINE)?;
    txn.open_table(OFFLINE_QUEUES)?;
    txn.open_table(LAST_ACTIVITY)?;
    txn.open_table(ARCHIVE)?;
    txn.open_table(ARCHIVE_WITH)?;
    txn.open_table(ARCHIVE_PREFS)?;
    txn.open_table(PUSH)?;
    txn.open_table(FAST_TOKENS)?;
    txn.open_table(ABUSE_REPORTS)?;
    txn.open_table(ROOMS)?;
    txn.open_table(LISTED_ROOMS)?;
    txn.open_table(THINGS)?;
    txn.open_table(pubsub::NODES)?;
    txn.open_table(pubsub::ITEMS)?;
    txn.open_table(pubsub::ORDER)?;
    txn.commit()?;
    Ok(db)
}

/// Sweeps expired archive messages every [`SWEEP_INTERVAL`] until the database is dropped. A plain
/// thread: the sweep is blocking I/O, and it must not depend on which runtime opened the store.
fn start_sweeper(db: Weak<Database>, retention: Duration) {
    let spawned = std::thread::Builder::new().name("archive-sweep".to_owned()).spawn(move || loop {
        let Some(db) = db.upgrade() else { return };
        match archive::sweep(&db, retention) {
            Ok(users) => tracing::debug!(users, "archive retention sweep done"),
            Err(error) => tracing::warn!(%error, "archive retention sweep failed"),
        }
        drop(db);
        std::thread::sleep(SWEEP_INTERVAL);
    });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the archive retention sweep; expired messages stay");
    }
}

/// Corruption will not go away by retrying; anything else (I/O errors, a lock held by another
/// process, a poisoned transaction) might, or needs an operator, and is reported as unavailable.
fn store_error(error: redb::Error) -> StoreError {
    match error {
        redb::Error::Corrupted(detail) => StoreError::Corrupt(detail),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// A value that does not decode is as damaged as a broken page: report it the same way.
fn corrupt(what: &str, user: &str) -> redb::Error {
    redb::Error::Corrupted(format!("undecodable {what} of {user}"))
}

/// The smallest string greater than `user`: `(user, "")..(successor(user), "")` is exactly the
/// range of keys `(user, _)`, since keys compare element by element and strings by bytes.
fn successor(user: &str) -> String {
    format!("{user}\0")
}
