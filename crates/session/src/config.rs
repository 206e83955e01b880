use std::time::Duration;

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
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            arbiters: std::thread::available_parallelism().map(usize::from).unwrap_or(2),
            client_queue: 1024,
            max_offline_per_user: 1000,
            idle_actor: Duration::from_secs(60),
            registration_enabled: false,
        }
    }
}
