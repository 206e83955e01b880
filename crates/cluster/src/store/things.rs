//! The Things of XEP-0347 Thing Registries: one record per Thing — its registration, owner and
//! meta tags, encoded by the registry module and opaque here — under the registry's domain and the
//! Thing's key (its bare JID and node information). A registry's actor is its only writer, and
//! reads its Things whole when it starts (registries are partitioned like users).

use async_trait::async_trait;

use super::StoreError;

#[async_trait]
pub trait Things: Send + Sync + 'static {
    /// Every Thing of `registry` with its record, sorted by key.
    async fn list(&self, registry: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Creates or replaces the record of `thing`.
    async fn set(&self, registry: &str, thing: &str, record: Vec<u8>) -> Result<(), StoreError>;

    /// Forgets `thing`.
    async fn remove(&self, registry: &str, thing: &str) -> Result<(), StoreError>;
}
