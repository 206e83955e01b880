//! The session layer's configuration: the `[sessions]` and `[archive]` sections of the server's
//! file, deserialised here directly, each default written once (in these `Default`s).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use starling_protocol::Jid;
use starling_cluster::gateway::{SmConfig, DEFAULT_CLIENT_QUEUE};
use starling_cluster::store::ArchiveDefault;

/// `[sessions]`: the actors.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// Threads hosting actors; 0 means one per core.
    pub arbiters: usize,
    /// Offline messages kept per user; beyond it senders get `service-unavailable`.
    pub max_offline_per_user: usize,
    /// Bytes of offline messages kept per user; beyond it senders get `service-unavailable`. 0: no
    /// limit but the count.
    pub max_offline_bytes_per_user: usize,
    /// Seconds an actor without resources stays in memory after its last stanza.
    pub idle_actor_seconds: u64,
    /// Messages a user (all resources together) may send a second, on average; beyond it they
    /// are refused with `resource-constraint` before anything is stored. 0: no limit.
    pub message_rate: u32,
    /// Messages a user may send at once above the rate.
    pub message_burst: u32,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            arbiters: 0,
            max_offline_per_user: 1000,
            max_offline_bytes_per_user: 8 << 20,
            idle_actor_seconds: 60,
            message_rate: 200,
            message_burst: 1000,
        }
    }
}

/// What is archived for users who never set preferences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveMode {
    #[default]
    Always,
    Never,
    Roster,
}

impl From<ArchiveMode> for ArchiveDefault {
    fn from(mode: ArchiveMode) -> ArchiveDefault {
        match mode {
            ArchiveMode::Always => ArchiveDefault::Always,
            ArchiveMode::Never => ArchiveDefault::Never,
            ArchiveMode::Roster => ArchiveDefault::Roster,
        }
    }
}

/// `[archive]`: message archiving (XEP-0313 MAM).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Archive messages and serve MAM queries.
    pub enabled: bool,
    /// What is archived for users without preferences.
    pub default_mode: ArchiveMode,
    /// Days a message is kept; 0 keeps it for ever (applied by the store).
    pub retention_days: u64,
    /// Archive writes waiting at most; then senders wait (backpressure).
    pub queue: usize,
    /// Messages written per store call at most.
    pub batch: usize,
    /// Milliseconds a sender waits for queue room before its message is refused.
    pub submit_timeout_ms: u64,
    /// Milliseconds a small batch waits for more messages before it is written (group commit).
    pub linger_ms: u64,
    /// Page size when a query gives no `<max/>`.
    pub default_page: usize,
    /// The largest page served, whatever `<max/>` asks for.
    pub max_page: usize,
    /// Archived messages a user may send in a day (a sliding day: the allowance refills
    /// continuously); each counts for the sender's archive and the recipient's. 0: no limit.
    pub max_sent_per_day: u64,
    /// Bytes of archived messages a user may send in a day. 0: no limit.
    pub max_sent_bytes_per_day: u64,
    /// Messages a user's archive may take in from others in a day. 0: no limit.
    pub max_received_per_day: u64,
    /// Bytes a user's archive may take in from others in a day. 0: no limit.
    pub max_received_bytes_per_day: u64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            enabled: true,
            default_mode: ArchiveMode::Always,
            retention_days: 0,
            queue: 131_072,
            batch: 16_384,
            submit_timeout_ms: 5000,
            linger_ms: 5,
            default_page: 50,
            max_page: 250,
            max_sent_per_day: 50_000,
            max_sent_bytes_per_day: 256 << 20,
            max_received_per_day: 200_000,
            max_received_bytes_per_day: 1 << 30,
        }
    }
}

impl ArchiveConfig {
    /// How long messages are kept; `None` for ever.
    pub fn retention(&self) -> Option<Duration> {
        (self.retention_days > 0).then(|| Duration::from_secs(self.retention_days.saturating_mul(86_400)))
    }
}

/// `[push]`: XEP-0357 push notifications, what a notification tells the app server (and so the
/// phone platform's push service) about the message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// Include `last-message-sender`.
    pub include_sender: bool,
    /// Include `last-message-body` (the text leaves the server: off by default).
    pub include_body: bool,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig { include_sender: true, include_body: false }
    }
}

/// `[external_services]`: XEP-0215 — the STUN/TURN servers clients are told about, e.g. to place
/// calls (Jingle between clients already routes).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExternalServicesConfig {
    /// How long the TURN credentials handed out stay valid: a day by default, long enough for a
    /// call that starts late in the day they were fetched.
    pub credential_lifetime_seconds: u64,
    pub services: Vec<ExternalServiceConfig>,
}

/// One service in `[[external_services.services]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalServiceConfig {
    /// `stun`, `turn` or `turns`.
    #[serde(rename = "type")]
    pub kind: String,
    pub host: String,
    pub port: Option<u16>,
    /// `udp` or `tcp`.
    pub transport: Option<String>,
    pub name: Option<String>,
    /// The TURN server's shared secret (coturn's `static-auth-secret`): each user gets a username
    /// `EXPIRY:user@domain` and the password HMAC-SHA1(secret, username) in base64, the TURN REST
    /// scheme the server checks without asking us. None: an open service (a public STUN server).
    pub secret: Option<String>,
}

impl Default for ExternalServicesConfig {
    fn default() -> Self {
        ExternalServicesConfig { credential_lifetime_seconds: 86_400, services: Vec::new() }
    }
}

/// `[muc]`: XEP-0045 multi-user chat.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MucConfig {
    pub enabled: bool,
    /// The service's domain; empty: `conference.` and the server's domain.
    pub domain: String,
    /// Messages a new room keeps for joiners (its `muc#roomconfig_historylength` default).
    pub history_length: usize,
    /// The most a room's history may be configured to keep.
    pub max_history_length: usize,
    /// Occupants a new room admits (its `muc#roomconfig_maxusers` default), and the most any may.
    pub max_occupants: usize,
    /// A new room is locked until its owner configures it or accepts the defaults (XEP-0045
    /// §10.1): nobody else can join meanwhile.
    pub lock_new_rooms: bool,
    /// Messages and presence changes an occupant may send a second, on average (0: no limit)…
    pub occupant_rate: f64,
    /// …and at once, after a quiet while.
    pub occupant_burst: u32,
    /// The longest subject a room takes, in characters.
    pub max_subject_length: usize,
    /// Rooms a user may be in at once, over all its resources (0: no limit).
    pub max_rooms_per_user: usize,
    /// Rooms a user may join a second, on average (0: no limit)…
    pub join_rate: f64,
    /// …and at once (a client joining its bookmarked rooms at login).
    pub join_burst: u32,
}

impl Default for MucConfig {
    fn default() -> Self {
        MucConfig {
            enabled: true,
            domain: String::new(),
            history_length: 20,
            max_history_length: 200,
            max_occupants: 1000,
            lock_new_rooms: true,
            occupant_rate: 5.0,
            occupant_burst: 20,
            max_subject_length: 1000,
            max_rooms_per_user: 100,
            join_rate: 5.0,
            join_burst: 100,
        }
    }
}

/// `[pep]`: XEP-0163 Personal Eventing Protocol (XEP-0060 nodes on every account).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PepConfig {
    pub enabled: bool,
    /// The most items a node keeps (what `pubsub#max_items` = `max` means).
    pub max_items: usize,
    /// The largest item payload, in bytes of XML.
    pub max_payload_bytes: usize,
    /// The most nodes an account has.
    pub max_nodes: usize,
}

impl Default for PepConfig {
    fn default() -> Self {
        // Avatars (XEP-0084) are the big payloads: tens of KiB of base64 each.
        PepConfig { enabled: true, max_items: 1000, max_payload_bytes: 256 * 1024, max_nodes: 100 }
    }
}

/// `[pubsub]`: the XEP-0060 PubSub service (nodes anyone may subscribe to, created by local users).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PubSubConfig {
    pub enabled: bool,
    /// The service's domain; empty: `pubsub.` and the server's domain.
    pub domain: String,
    /// The most items a node keeps (what `pubsub#max_items` = `max` means).
    pub max_items: usize,
    /// The largest item payload, in bytes of XML.
    pub max_payload_bytes: usize,
    /// The most nodes one user owns.
    pub max_nodes_per_user: usize,
    /// The most subscriptions a node has (pending ones included).
    pub max_subscriptions_per_node: usize,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        PubSubConfig { enabled: true, domain: String::new(), max_items: 1000, max_payload_bytes: 256 * 1024, max_nodes_per_user: 100, max_subscriptions_per_node: 10_000 }
    }
}

/// `[iot]`: the XEP-0347 Thing Registry, where devices register their meta tags, owners claim
/// them, and public ones are searched.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IotConfig {
    pub enabled: bool,
    /// The registry's domain; empty: `registry.` and the server's domain.
    pub domain: String,
    /// The most Things one registry holds.
    pub max_things: usize,
    /// The most Things one account registers (a concentrator registers one per node).
    pub max_things_per_account: usize,
    /// The most meta tags one Thing has.
    pub max_tags: usize,
    /// The most Things one search answers with.
    pub max_search_results: usize,
    /// How long a disown waits for the Thing's answer before the owner is told `not-allowed`.
    pub disown_timeout_seconds: u64,
}

impl Default for IotConfig {
    fn default() -> Self {
        IotConfig { enabled: true, domain: String::new(), max_things: 100_000, max_things_per_account: 100, max_tags: 32, max_search_results: 100, disown_timeout_seconds: 10 }
    }
}

/// Everything the session layer is started with.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub sessions: SessionsConfig,
    pub archive: ArchiveConfig,
    /// Stanzas queued toward one client before it counts as too slow (the edge's `[c2s]
    /// client_queue`; a session node sizes the links to remote connections with it).
    pub client_queue: usize,
    /// Whether accounts may change their password or delete themselves (XEP-0077 §3.2, §3.3):
    /// `[registration] enabled`.
    pub registration_enabled: bool,
    /// What each virtual host has of its own; a domain not here (the primary) has the above.
    pub host_policies: BTreeMap<String, SessionHostPolicy>,
    /// `[sm]`: how long a broken stream-managed session waits, how much it keeps.
    pub sm: SmConfig,
    pub push: PushConfig,
    pub muc: MucConfig,
    pub pep: PepConfig,
    pub pubsub: PubSubConfig,
    pub iot: IotConfig,
    pub external_services: ExternalServicesConfig,
    /// Services the edges answer for themselves (the XEP-0065 proxy, `[bytestreams]`), listed in
    /// the server's disco#items.
    pub edge_service_domains: Vec<Jid>,
    /// The domains external components may serve (`[components] secrets`): a stanza to one that
    /// is not connected gets `service-unavailable`; in a cluster it goes to the node owning the
    /// domain's partition, which the component's edge told.
    pub component_domains: Vec<String>,
    /// The accounts (bare JIDs) that may run the XEP-0133 administration commands.
    pub admins: Vec<Jid>,
}

/// A virtual host's own settings in the session layer (`[hosts."DOMAIN"]`, with the
/// deployment's where it sets none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHostPolicy {
    pub registration: bool,
    /// `[sessions] message_rate` and `message_burst` for this domain's users.
    pub message_rate: u32,
    pub message_burst: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig::new(SessionsConfig::default(), ArchiveConfig::default(), DEFAULT_CLIENT_QUEUE, false)
    }
}

impl SessionConfig {
    pub fn new(sessions: SessionsConfig, archive: ArchiveConfig, client_queue: usize, registration_enabled: bool) -> SessionConfig {
        SessionConfig {
            sessions,
            archive,
            client_queue,
            registration_enabled,
            host_policies: BTreeMap::new(),
            sm: SmConfig::default(),
            push: PushConfig::default(),
            muc: MucConfig::default(),
            pep: PepConfig::default(),
            pubsub: PubSubConfig::default(),
            iot: IotConfig::default(),
            external_services: ExternalServicesConfig::default(),
            edge_service_domains: Vec::new(),
            component_domains: Vec::new(),
            admins: Vec::new(),
        }
    }

    /// Whether registration (and so password change and cancellation) is on for `domain`'s accounts.
    pub fn registration_on(&self, domain: &Jid) -> bool {
        self.host_policies.get(domain.as_str()).map_or(self.registration_enabled, |policy| policy.registration)
    }

    /// The message rate (a second) and burst of each of `domain`'s users; a rate of 0 is no limit.
    pub fn message_limit(&self, domain: &Jid) -> (u32, u32) {
        match self.host_policies.get(domain.as_str()) {
            Some(policy) => (policy.message_rate, policy.message_burst),
            None => (self.sessions.message_rate, self.sessions.message_burst),
        }
    }

    /// Arbiter threads that host actors.
    pub fn arbiters(&self) -> usize {
        match self.sessions.arbiters {
            0 => std::thread::available_parallelism().map(usize::from).unwrap_or(2),
            n => n,
        }
    }

    /// How long an actor with no bound resource stays in memory after its last stanza.
    pub fn idle_actor(&self) -> Duration {
        Duration::from_secs(self.sessions.idle_actor_seconds)
    }
}
