//! Spam and abuse reports (XEP-0377) users attach to blocks, kept for the server's moderators
//! (`starling reports`). A report outlives both accounts: it is a moderation record.

use async_trait::async_trait;

use super::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbuseReport {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Bare JIDs.
    pub reporter: String,
    pub reported: String,
    /// `urn:xmpp:reporting:spam`, `urn:xmpp:reporting:abuse`, or another URI.
    pub reason: String,
    pub text: Option<String>,
    /// XEP-0359 ids of the stanzas reported.
    pub stanza_ids: Vec<String>,
}

#[async_trait]
pub trait AbuseReports: Send + Sync + 'static {
    async fn add(&self, report: &AbuseReport) -> Result<(), StoreError>;

    /// The latest `limit` reports, newest first (at most the last 90 days on stores that keep
    /// them by day).
    async fn recent(&self, limit: usize) -> Result<Vec<AbuseReport>, StoreError>;
}
