//! Push registrations (XEP-0357): the app servers a user's clients asked to be woken through,
//! each a PubSub service JID and node, with the publish-options the client gave (an opaque
//! data form, sent back with every notification).

use async_trait::async_trait;

use super::StoreError;

/// One registration of a user's client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRegistration {
    /// The app server's PubSub service JID.
    pub service: String,
    pub node: String,
    /// The XEP-0004 form of publish-options, serialised; empty when the client gave none.
    pub options: Vec<u8>,
}

#[async_trait]
pub trait PushRegistrations: Send + Sync + 'static {
    /// Every registration of the user, by service then node.
    async fn list(&self, user: &str) -> Result<Vec<PushRegistration>, StoreError>;

    /// Adds a registration, replacing one with the same service and node.
    async fn add(&self, user: &str, registration: PushRegistration) -> Result<(), StoreError>;

    /// Removes the registration for `node` at `service`, or every one at `service` when `node`
    /// is `None` (XEP-0357 §6).
    async fn remove(&self, user: &str, service: &str, node: Option<&str>) -> Result<(), StoreError>;

    /// Removes every registration of the user.
    async fn remove_user(&self, user: &str) -> Result<(), StoreError>;
}
