//! Private XML storage (XEP-0049): opaque fragments a client stores for itself, one per
//! `name|namespace` key.

use async_trait::async_trait;

use super::StoreError;

#[async_trait]
pub trait PrivateXml: Send + Sync + 'static {
    /// The fragment stored under `key` (`"name|namespace"`, built by the caller and opaque here).
    async fn get(&self, user: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Replaces the fragment stored under `key`.
    async fn set(&self, user: &str, key: &str, xml: Vec<u8>) -> Result<(), StoreError>;

    /// Deletes every fragment of the user.
    async fn remove_user(&self, user: &str) -> Result<(), StoreError>;
}
