//! Offline message storage (XEP-0160): stanzas kept for a user with no available resource, handed
//! over at the next initial presence.

use async_trait::async_trait;

use super::StoreError;

/// Per-user offline queues. Each message gets an id that strictly increases per user, also across
/// restarts, so a reader can acknowledge "everything up to what I delivered" without removing a
/// message pushed after its fetch.
#[async_trait]
pub trait OfflineMessages: Send + Sync + 'static {
    /// Appends a stanza and returns its id; [`StoreError::LimitExceeded`] (and nothing stored) if
    /// the user already has `max_per_user` messages. The check and the append are atomic.
    async fn push(&self, user: &str, stanza: Vec<u8>, max_per_user: usize) -> Result<u64, StoreError>;

    /// Every queued message as `(id, stanza)`, oldest first.
    async fn fetch(&self, user: &str) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// Removes every message with an id up to and including `id`.
    async fn remove_upto(&self, user: &str, id: u64) -> Result<(), StoreError>;

    async fn count(&self, user: &str) -> Result<usize, StoreError>;

    /// Deletes the user's queue.
    async fn remove_user(&self, user: &str) -> Result<(), StoreError>;
}
