use std::time::Duration;

use starling_cluster::store::ArchiveDefault;

pub use crate::archive_writer::ArchiveWriterConfig;

/// Options of the session layer, read once at start.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Arbiter threads that host user actors.
    pub arbiters: usize,
    /// Stanzas queued toward one client before it counts as too slow and is disconnected.
    pub client_queue: usize,
    /// Messages kept for one offline user; beyond it senders get `service-unavailable`.
    pub max_offline_per_user: usize,
    /// How long an actor with no bound resource stays in memory after its last stanza.
    pub idle_actor: Duration,
    /// Whether accounts may change their password or delete themselves (XEP-0077 §3.2, §3.3).
    pub registration_enabled: bool,
    /// Message archiving (XEP-0313); `None` archives nothing and offers no MAM.
    pub archive: Option<ArchiveConfig>,
}

/// How messages are archived and queried.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    pub writer: ArchiveWriterConfig,
    /// Page size of a query that gives no `<max/>`.
    pub default_page: usize,
    /// The largest page served, whatever `<max/>` asks for.
    pub max_page: usize,
    /// What is archived for users who never set preferences.
    pub default_mode: ArchiveDefault,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig { writer: ArchiveWriterConfig::default(), default_page: 50, max_page: 250, default_mode: ArchiveDefault::Always }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            arbiters: std::thread::available_parallelism().map(usize::from).unwrap_or(2),
            client_queue: 1024,
            max_offline_per_user: 1000,
            idle_actor: Duration::from_secs(60),
            registration_enabled: false,
            archive: Some(ArchiveConfig::default()),
        }
    }
}
