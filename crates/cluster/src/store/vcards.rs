//! vCards (XEP-0054), stored as the serialised `<vCard/>` element the user set.

use async_trait::async_trait;

use super::StoreError;

#[async_trait]
pub trait VCards: Send + Sync + 'static {
    async fn get(&self, user: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Replaces the user's vCard.
    async fn set(&self, user: &str, vcard: Vec<u8>) -> Result<(), StoreError>;

    /// Deletes the user's vCard; nothing happens if there is none.
    async fn remove(&self, user: &str) -> Result<(), StoreError>;
}
