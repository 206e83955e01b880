//! Storage traits: one per kind of per-user data, so a deployment can back each by what suits it
//! (and tests can swap one out), plus [`Store`], the bundle the rest of the server is handed.
//!
//! Every method is keyed by the user's (or the room's) normalised bare JID string and is a point or per-user range
//! operation: no method scans across users except [`Accounts::list`] and [`AbuseReports::recent`],
//! which are admin calls.

mod abuse_reports;
mod accounts;
mod archive;
mod blocklists;
mod fast_tokens;
mod last_activity;
mod offline;
mod private_xml;
mod push;
mod pubsub;
mod rooms;
mod rosters;
mod things;
mod vcards;

use std::sync::Arc;

pub use abuse_reports::{AbuseReport, AbuseReports};
pub use accounts::{Accounts, DEFAULT_SCRAM_ITERATIONS, ScramCredentials, ScramKeys};
pub use archive::{Archive, ArchiveDefault, ArchiveEntry, ArchivePage, ArchivePrefs, ArchiveQuery, ArchivedMessage};
pub use blocklists::Blocklists;
pub use fast_tokens::{FastToken, FastTokenSlots, FastTokens};
pub use last_activity::{LastActivity, LastSeen};
pub use offline::OfflineMessages;
pub use private_xml::PrivateXml;
pub use pubsub::{PubSubItem, PubSubNodes};
pub use push::{PushRegistration, PushRegistrations};
pub use rooms::{service_of, Rooms};
pub use rosters::{RosterItem, Rosters, Subscription};
pub use things::Things;
pub use vcards::VCards;

/// Why a storage call failed. Absence is not an error: lookups return `Option`/`bool` for that.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend is down, overloaded or timed out. Nothing is known to have changed; the caller
    /// maps this to a retryable protocol error (e.g. `<resource-constraint/>` or `<wait/>`).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The write would overwrite something that must stay unique (e.g. the account exists).
    #[error("conflict")]
    Conflict,
    /// A per-user quota is reached (e.g. the offline queue is full).
    #[error("limit exceeded")]
    LimitExceeded,
    /// Stored data could not be decoded; retrying will not help.
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

/// Every store the server needs, each behind its trait. Cloning is cheap (reference counts only).
#[derive(Clone)]
pub struct Store {
    pub accounts: Arc<dyn Accounts>,
    pub rosters: Arc<dyn Rosters>,
    pub vcards: Arc<dyn VCards>,
    pub private_xml: Arc<dyn PrivateXml>,
    pub blocklists: Arc<dyn Blocklists>,
    pub offline: Arc<dyn OfflineMessages>,
    pub last_activity: Arc<dyn LastActivity>,
    pub archive: Arc<dyn Archive>,
    pub push: Arc<dyn PushRegistrations>,
    pub fast_tokens: Arc<dyn FastTokens>,
    pub rooms: Arc<dyn Rooms>,
    pub pubsub: Arc<dyn PubSubNodes>,
    pub abuse_reports: Arc<dyn AbuseReports>,
    pub things: Arc<dyn Things>,
}

impl Store {
    /// Deletes the account of `user` and everything stored for it (XEP-0077 cancellation).
    /// Returns whether the account existed; the user's data is wiped either way, so a call that
    /// failed half way can simply be repeated.
    ///
    /// The data goes first and the account last: if a step fails, the account is still there and
    /// the user (or an admin) can retry, instead of leaving data behind with no account to reach it.
    /// The stores are separate, so this is not atomic; a session of the user that is still running
    /// could write again in between, so the caller should end the user's sessions first.
    pub async fn remove_user(&self, user: &str) -> Result<bool, StoreError> {
        self.rosters.remove_user(user).await?;
        self.vcards.remove(user).await?;
        self.private_xml.remove_user(user).await?;
        self.blocklists.clear(user).await?;
        self.offline.remove_user(user).await?;
        self.last_activity.remove_user(user).await?;
        self.archive.remove_user(user).await?;
        self.push.remove_user(user).await?;
        self.fast_tokens.remove_user(user).await?;
        self.pubsub.delete_service(user).await?;
        self.accounts.remove(user).await
    }
}
