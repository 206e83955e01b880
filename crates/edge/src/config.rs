use std::time::Duration;

use starling_protocol::Jid;
use starling_xml::Limits;

/// Options of the client edge, read once at start.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// The XMPP domain served.
    pub domain: Jid,
    /// Refuse authentication before STARTTLS on the plain port.
    pub require_tls: bool,
    pub limits: Limits,
    /// Time allowed from connect to a bound resource.
    pub negotiation_timeout: Duration,
    /// Silence after which the server pings the client (XEP-0199).
    pub ping_idle: Duration,
    /// Silence after the ping after which the connection counts as dead.
    pub ping_timeout: Duration,
    /// Stanzas queued toward one client (see `ClientLink`).
    pub client_queue: usize,
    /// Failed SASL attempts on one connection before it is closed.
    pub max_auth_attempts: u32,
    /// Failures per address or account within `auth_throttle_window` before attempts are refused.
    pub auth_throttle_failures: u32,
    pub auth_throttle_window: Duration,
    /// XEP-0077 in-band registration.
    pub registration_enabled: bool,
    /// Minimum time between two registrations from one address.
    pub registration_interval: Duration,
    /// XEP-0115 verification string of the server's features, advertised in stream features.
    pub caps_ver: String,
    /// XEP-0115 node the caps name.
    pub caps_node: String,
}

impl EdgeConfig {
    pub fn new(domain: Jid) -> EdgeConfig {
        EdgeConfig {
            domain,
            require_tls: true,
            limits: Limits::default(),
            negotiation_timeout: Duration::from_secs(60),
            ping_idle: Duration::from_secs(120),
            ping_timeout: Duration::from_secs(30),
            client_queue: 1024,
            max_auth_attempts: 3,
            auth_throttle_failures: 5,
            auth_throttle_window: Duration::from_secs(60),
            registration_enabled: false,
            registration_interval: Duration::from_secs(60),
            caps_ver: String::new(),
            caps_node: String::new(),
        }
    }
}
