//! Rosters (RFC 6121 §2) with versioning (§2.6), and the inbound subscription requests a user has
//! not answered yet (§3.1.3).

use async_trait::async_trait;

use super::StoreError;

/// The subscription state of a roster item (RFC 6121 §2.1.2.5), from the user's point of view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Subscription {
    #[default]
    None,
    /// The user receives the contact's presence.
    To,
    /// The contact receives the user's presence.
    From,
    Both,
}

/// One contact in a user's roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterItem {
    /// The contact's normalised bare JID; the item's key within the roster.
    pub jid: String,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub subscription: Subscription,
    /// Pending-out: the user sent a subscribe request the contact has not answered.
    pub ask_out: bool,
    /// Pre-approved: a subscribe request from the contact will be approved at once (RFC 6121 §3.4).
    pub approved: bool,
}

/// Per-user rosters. Each write bumps the user's roster version, so a client that cached an older
/// version can tell it is stale. Versions strictly increase for as long as the user exists.
#[async_trait]
pub trait Rosters: Send + Sync + 'static {
    /// The current version and every item, sorted by contact JID; `(0, [])` for a user with no
    /// roster. Both come from one consistent read.
    async fn roster(&self, user: &str) -> Result<(u64, Vec<RosterItem>), StoreError>;

    async fn item(&self, user: &str, contact: &str) -> Result<Option<RosterItem>, StoreError>;

    /// Inserts or replaces the item keyed by `item.jid`; returns the new roster version.
    async fn put(&self, user: &str, item: RosterItem) -> Result<u64, StoreError>;

    /// Removes the item; returns the new roster version, or `None` (and changes nothing) if the
    /// contact was not in the roster.
    async fn remove(&self, user: &str, contact: &str) -> Result<Option<u64>, StoreError>;

    /// The current roster version; 0 for a user with no roster.
    async fn version(&self, user: &str) -> Result<u64, StoreError>;

    /// Remembers an inbound subscription request from `contact`, replacing an earlier one, so it
    /// can be presented again at the user's next login (RFC 6121 §3.1.3). `stanza` is the request
    /// as it should be redelivered.
    async fn add_pending_in(&self, user: &str, contact: &str, stanza: Vec<u8>) -> Result<(), StoreError>;

    /// Forgets the request from `contact`; `false` if there was none.
    async fn remove_pending_in(&self, user: &str, contact: &str) -> Result<bool, StoreError>;

    /// Every unanswered request as `(contact, stanza)`, sorted by contact.
    async fn pending_in(&self, user: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Deletes the user's roster items, roster version and pending requests.
    async fn remove_user(&self, user: &str) -> Result<(), StoreError>;
}
