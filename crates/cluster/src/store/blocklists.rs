//! Block lists (XEP-0191 blocking command).

use async_trait::async_trait;

use super::StoreError;

/// Each user's set of blocked JIDs. Entries are whatever JID strings the caller stores (full, bare
/// or domain); matching one form against another is the caller's job.
#[async_trait]
pub trait Blocklists: Send + Sync + 'static {
    /// Every blocked JID, sorted.
    async fn list(&self, user: &str) -> Result<Vec<String>, StoreError>;

    /// Adds the JIDs; those already blocked stay as they are.
    async fn add(&self, user: &str, jids: &[String]) -> Result<(), StoreError>;

    /// Removes the JIDs; those not blocked are ignored.
    async fn remove(&self, user: &str, jids: &[String]) -> Result<(), StoreError>;

    /// Empties the list (an unblock without items; also how the user's list is deleted).
    async fn clear(&self, user: &str) -> Result<(), StoreError>;

    /// Whether exactly this string is in the list.
    async fn is_blocked(&self, user: &str, jid: &str) -> Result<bool, StoreError>;
}
