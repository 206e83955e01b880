//! Last activity (XEP-0012): when the user's last resource went unavailable, and with what status.

use async_trait::async_trait;

use super::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastSeen {
    /// When the user was last seen, in seconds since the Unix epoch (the caller's clock).
    pub unix_seconds: u64,
    /// The status text of the last unavailable presence; empty if it had none.
    pub status: String,
}

#[async_trait]
pub trait LastActivity: Send + Sync + 'static {
    /// Replaces the user's last activity.
    async fn set(&self, user: &str, seen: LastSeen) -> Result<(), StoreError>;

    async fn get(&self, user: &str) -> Result<Option<LastSeen>, StoreError>;

    async fn remove_user(&self, user: &str) -> Result<(), StoreError>;
}
