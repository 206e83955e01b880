//! The per-user message archive behind XEP-0313 (MAM): every archived message of a user under an
//! id that is unique in that user's archive, increases in archive order and doubles as the time
//! the message was archived, in microseconds since the Unix epoch. Time filters are therefore id
//! ranges, and a backend can derive a message's time bucket from its id alone.
//!
//! How long messages are kept is the backend's configuration (a TTL, a sweep), not part of a call.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use async_trait::async_trait;

use super::StoreError;

/// One archived message of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedMessage {
    /// Unique in the user's archive; microseconds since the Unix epoch at archiving.
    pub id: u64,
    /// The bare JID of the other party; the user's own for a message to itself.
    pub with: String,
    /// The message as it was routed (`jabber:client`, with `from` and `to`).
    pub stanza: Vec<u8>,
}

/// A message to add to `user`'s archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveEntry {
    pub user: String,
    pub message: ArchivedMessage,
}

/// A range of one user's archive and which end of it to take a page from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    /// Only messages with this bare JID.
    pub with: Option<String>,
    /// Only ids strictly greater than this.
    pub after: Option<u64>,
    /// Only ids strictly smaller than this.
    pub before: Option<u64>,
    /// At most this many messages.
    pub limit: usize,
    /// Take the newest `limit` messages of the range (paging backwards) instead of the oldest.
    pub from_newest: bool,
}

impl ArchiveQuery {
    /// The ids the query selects, as an inclusive range; `None` if it selects none.
    pub fn id_range(&self) -> Option<RangeInclusive<u64>> {
        let low = match self.after {
            Some(after) => after.checked_add(1)?,
            None => 0,
        };
        let high = match self.before {
            Some(before) => before.checked_sub(1)?,
            None => u64::MAX,
        };
        (low <= high).then_some(low..=high)
    }
}

/// The answer to an [`ArchiveQuery`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchivePage {
    /// Oldest first, whichever end of the range they were taken from.
    pub messages: Vec<ArchivedMessage>,
    /// The range holds no message beyond `messages` (it was not cut by `limit`).
    pub complete: bool,
}

/// What is archived when a contact is in neither list of [`ArchivePrefs`] (XEP-0441).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveDefault {
    #[default]
    Always,
    Never,
    /// Only messages with contacts in the user's roster.
    Roster,
}

/// A user's archiving preferences (XEP-0441): bare JIDs always or never archived, and the rule
/// for everyone else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchivePrefs {
    pub default: ArchiveDefault,
    pub always: BTreeSet<String>,
    pub never: BTreeSet<String>,
}

/// Per-user archives.
#[async_trait]
pub trait Archive: Send + Sync + 'static {
    /// Stores messages, possibly of many users, and returns once all of them are durable.
    /// Idempotent: storing a `(user, id)` again overwrites it with the same data, so a batch that
    /// failed part way can be stored again whole.
    async fn append(&self, entries: &[ArchiveEntry]) -> Result<(), StoreError>;

    /// One page of the range `query` selects.
    async fn query(&self, user: &str, query: &ArchiveQuery) -> Result<ArchivePage, StoreError>;

    /// The messages with these ids that exist, oldest first, each once.
    async fn get(&self, user: &str, ids: &[u64]) -> Result<Vec<ArchivedMessage>, StoreError>;

    /// Deletes the messages with these ids (a message the recipient refused after it was
    /// archived for its sender); ids not stored are ignored.
    async fn remove(&self, user: &str, ids: &[u64]) -> Result<(), StoreError>;

    /// `None` until the user stored preferences.
    async fn prefs(&self, user: &str) -> Result<Option<ArchivePrefs>, StoreError>;

    async fn set_prefs(&self, user: &str, prefs: ArchivePrefs) -> Result<(), StoreError>;

    /// Deletes the user's archive and preferences.
    async fn remove_user(&self, user: &str) -> Result<(), StoreError>;
}
