//! The edge's configuration: the `[c2s]` and `[registration]` sections of the server's file,
//! deserialised here directly, each default written once (in these `Default`s; the stanza limits'
//! in `starling_xml::Limits`, the queue's in `starling_cluster::gateway`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use starling_cluster::gateway::{SmConfig, DEFAULT_CLIENT_QUEUE};
use starling_protocol::{Hosts, Jid};
use starling_xml::Limits;

use crate::fast::{FastConfig, FastKey};

/// `[c2s]`: client connections.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct C2sConfig {
    /// Plain TCP listeners offering STARTTLS.
    pub starttls_listen: Vec<String>,
    /// Listeners speaking TLS from the first byte (XEP-0368).
    pub direct_tls_listen: Vec<String>,
    /// Refuse authentication before STARTTLS.
    pub require_tls: bool,
    /// Largest stanza accepted, in bytes; larger ones close the stream (`policy-violation`).
    pub max_stanza_bytes: usize,
    /// Deepest element nesting in a stanza.
    pub max_depth: usize,
    /// Most attributes on one element.
    pub max_attributes: usize,
    /// Seconds of silence before the server pings a client (XEP-0199).
    pub ping_idle_seconds: u64,
    /// Seconds to wait for any answer to that ping before the connection counts as dead.
    pub ping_timeout_seconds: u64,
    /// Seconds allowed from connect to a bound resource.
    pub negotiation_timeout_seconds: u64,
    /// Stanzas queued toward one client before it counts as too slow (see `ClientLink`).
    pub client_queue: usize,
    /// Failed SASL attempts on one connection before it is closed.
    pub max_auth_attempts: u32,
    /// Failures for one account from one address within the window before that address may not
    /// try that account…
    pub auth_throttle_failures: u32,
    /// …and failures from one address over any accounts before it may not try at all (high: one
    /// address is often many people behind a NAT).
    pub auth_throttle_address_failures: u32,
    pub auth_throttle_window_seconds: u64,
    /// Milliseconds the answer to the second failure for one account from one address in the
    /// window waits, doubling for each further one (at most 4 s). 0: none.
    pub auth_failure_delay_ms: u64,
    /// Connections one IP address may hold open at once. 0: no limit (the default: many people
    /// share an address behind a NAT).
    pub max_connections_per_address: u32,
    /// New connections one address may open a second, and at once. 0: no limit.
    pub connection_rate_per_address: u32,
    pub connection_burst_per_address: u32,
    /// Bytes of elements a second read from one connection at most; beyond, reading pauses (TCP
    /// backpressure). 0: no shaping.
    pub read_rate_bytes: u64,
    /// Bytes one connection may send at once above the rate.
    pub read_burst_bytes: u64,
}

impl Default for C2sConfig {
    fn default() -> Self {
        let limits = Limits::default();
        C2sConfig {
            starttls_listen: vec!["0.0.0.0:5222".into()],
            direct_tls_listen: vec!["0.0.0.0:5223".into()],
            require_tls: true,
            max_stanza_bytes: limits.max_stanza_bytes,
            max_depth: limits.max_depth,
            max_attributes: limits.max_attributes,
            ping_idle_seconds: 120,
            ping_timeout_seconds: 30,
            negotiation_timeout_seconds: 60,
            client_queue: DEFAULT_CLIENT_QUEUE,
            max_auth_attempts: 3,
            auth_throttle_failures: 5,
            auth_throttle_address_failures: 100,
            auth_throttle_window_seconds: 60,
            auth_failure_delay_ms: 250,
            max_connections_per_address: 0,
            connection_rate_per_address: 0,
            connection_burst_per_address: 0,
            read_rate_bytes: 256 << 10,
            read_burst_bytes: 4 << 20,
        }
    }
}

impl C2sConfig {
    pub fn limits(&self) -> Limits {
        Limits { max_stanza_bytes: self.max_stanza_bytes, max_depth: self.max_depth, max_attributes: self.max_attributes }
    }

    pub(crate) fn read_shaper(&self) -> Option<crate::shaper::ReadShaper> {
        crate::shaper::ReadShaper::new(self.read_rate_bytes, self.read_burst_bytes)
    }

    pub fn negotiation_timeout(&self) -> Duration {
        Duration::from_secs(self.negotiation_timeout_seconds)
    }

    pub fn ping_idle(&self) -> Duration {
        Duration::from_secs(self.ping_idle_seconds)
    }

    pub fn ping_timeout(&self) -> Duration {
        Duration::from_secs(self.ping_timeout_seconds)
    }

    pub fn auth_throttle_window(&self) -> Duration {
        Duration::from_secs(self.auth_throttle_window_seconds)
    }
}

/// `[registration]`: XEP-0077 in-band registration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationConfig {
    pub enabled: bool,
    /// The window over which registrations from one address are counted, in seconds.
    pub interval_seconds: u64,
    /// Accounts one address (an IPv6 address: its /64) may register within the window, counted
    /// across the cluster (in Redis, as authentication failures are).
    pub max_per_address: u32,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig { enabled: false, interval_seconds: 60, max_per_address: 1 }
    }
}

impl RegistrationConfig {
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_seconds)
    }
}

/// `[components]`: external components (XEP-0114), e.g. push app servers and gateways.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComponentsConfig {
    /// Listeners for components; none by default. Components authenticate with a shared secret
    /// over a plain stream (XEP-0114 has no TLS): listen on loopback or a private network.
    pub listen: Vec<String>,
    /// The domains components may serve, each with its shared secret.
    pub secrets: BTreeMap<String, String>,
}

/// `[websocket]`: XMPP over WebSocket (RFC 7395) and XEP-0156 discovery, on HTTP listeners of
/// their own. None by default: a deployment names its ports (browsers usually reach them through a
/// TLS-terminating proxy or on 443).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// Plain HTTP listeners (`ws://`): behind a TLS-terminating proxy, or on loopback. SASL is
    /// offered on them only when `[c2s] require_tls` is off or a trusted proxy says the client
    /// came over HTTPS (`X-Forwarded-Proto: https`).
    pub listen: Vec<String>,
    /// HTTPS listeners (`wss://`), with the c2s certificate.
    pub tls_listen: Vec<String>,
    /// Where the WebSocket endpoint is; `/.well-known/host-meta` and `host-meta.json` are served
    /// beside it.
    pub path: String,
    /// The URL host-meta announces; by default built from the request (`wss://` + its `Host` +
    /// `path`), which is right unless a proxy rewrites the path.
    pub public_url: Option<String>,
    /// When set, every WebSocket stream is sent there instead of being served: the client's
    /// `<open/>` is answered with `<close see-other-uri='…'/>` (RFC 7395 §3.6.1), e.g. while this
    /// endpoint is retired or moved. Set `public_url` to it too, for host-meta.
    pub see_other_uri: Option<String>,
    /// `Origin`s a browser may connect from, e.g. `https://chat.example.com`; empty allows any.
    /// Clients that send no `Origin` (not browsers) are always allowed.
    pub allowed_origins: Vec<String>,
    /// Proxies (addresses or networks, e.g. `10.0.0.0/8`) whose `X-Forwarded-For` and
    /// `X-Forwarded-Proto` are believed: the client's address then counts for the per-address
    /// limits and the authentication throttle, not the proxy's.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How long a client may take to send a request's headers (slowloris).
    pub header_timeout_seconds: u64,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            listen: Vec::new(),
            tls_listen: Vec::new(),
            path: "/xmpp-websocket".into(),
            public_url: None,
            see_other_uri: None,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            header_timeout_seconds: 10,
        }
    }
}

impl WebSocketConfig {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_seconds)
    }

    pub(crate) fn is_trusted_proxy(&self, address: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|network| network.contains(&address))
    }
}

/// `[bytestreams]`: the XEP-0065 SOCKS5 proxy (see `bytestreams.rs`). Off until it has a listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BytestreamsConfig {
    /// The SOCKS5 listener, e.g. `["0.0.0.0:7777"]` (the first is the one announced).
    pub listen: Vec<String>,
    /// The address clients are told to connect to; empty: the listener's. Each edge of a cluster
    /// names its own (reachable from clients).
    pub host: String,
    /// The proxy's JID; empty: `proxy.` and the server's domain.
    pub domain: String,
    /// Streams one user may relay at once.
    pub max_streams_per_user: u32,
    /// Bytes a second each direction of a stream may carry (0: no limit), and at once.
    pub rate_bytes: u64,
    pub burst_bytes: u64,
    /// How long a connection waits to be paired and activated before it is closed.
    pub activation_timeout_seconds: u64,
}

impl Default for BytestreamsConfig {
    fn default() -> Self {
        BytestreamsConfig {
            listen: Vec::new(),
            host: String::new(),
            domain: String::new(),
            max_streams_per_user: 4,
            rate_bytes: 2 << 20,
            burst_bytes: 4 << 20,
            activation_timeout_seconds: 60,
        }
    }
}

impl BytestreamsConfig {
    /// The proxy's domain for a server serving `domain`.
    pub fn domain_for(&self, domain: &Jid) -> String {
        if self.domain.is_empty() { format!("proxy.{domain}") } else { self.domain.clone() }
    }
}

/// Everything the edge is started with.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// The XMPP domains served (a stream names one in its header).
    pub hosts: Hosts,
    pub c2s: C2sConfig,
    pub registration: RegistrationConfig,
    /// What each virtual host has of its own; a domain not here (the primary) has the above.
    pub host_policies: BTreeMap<String, HostPolicy>,
    /// `[sm]`: whether stream management is offered (when the session layer supports it) and
    /// when the edge asks for acks.
    pub sm: SmConfig,
    /// `[components]`: who may connect as an external component.
    pub components: ComponentsConfig,
    pub websocket: WebSocketConfig,
    pub bytestreams: BytestreamsConfig,
    /// `[fast]`: XEP-0484 tokens, and the key they are derived from.
    pub fast: FastConfig,
    pub fast_key: FastKey,
    /// XEP-0115 verification string of the server's features, advertised in stream features.
    pub caps_ver: String,
    /// XEP-0115 node the caps name.
    pub caps_node: String,
}

impl EdgeConfig {
    /// The defaults for `domain` alone, with no caps advertised.
    pub fn new(domain: Jid) -> EdgeConfig {
        EdgeConfig {
            hosts: Hosts::single(domain),
            c2s: C2sConfig::default(),
            registration: RegistrationConfig::default(),
            host_policies: BTreeMap::new(),
            sm: SmConfig::default(),
            components: ComponentsConfig::default(),
            websocket: WebSocketConfig::default(),
            bytestreams: BytestreamsConfig::default(),
            fast: FastConfig::default(),
            fast_key: FastKey::random(),
            caps_ver: String::new(),
            caps_node: String::new(),
        }
    }

    /// The primary domain: the edge's own services (components, the bytestreams proxy) are its.
    pub fn domain(&self) -> &Jid {
        self.hosts.primary()
    }

    /// Whether accounts may be registered in band on `domain`.
    pub fn registration_on(&self, domain: &Jid) -> bool {
        self.host_policies.get(domain.as_str()).map_or(self.registration.enabled, |policy| policy.registration)
    }

    /// The read shaper of a stream to `domain`.
    pub(crate) fn read_shaper_for(&self, domain: &Jid) -> Option<crate::shaper::ReadShaper> {
        match self.host_policies.get(domain.as_str()) {
            Some(policy) => crate::shaper::ReadShaper::new(policy.read_rate_bytes, policy.read_burst_bytes),
            None => self.c2s.read_shaper(),
        }
    }
}

/// A virtual host's own settings at the edge (`[hosts."DOMAIN"]`, with the deployment's where it
/// sets none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPolicy {
    pub registration: bool,
    /// `[c2s] read_rate_bytes` and `read_burst_bytes` for streams to this domain.
    pub read_rate_bytes: u64,
    pub read_burst_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_virtual_host_has_its_own_registration_and_read_shaping() {
        let jid = |text: &str| Jid::new(text).expect("a domain");
        let mut config = EdgeConfig::new(jid("a.example"));
        config.hosts = Hosts::new(jid("a.example"), [jid("b.example")]);
        config.host_policies.insert("b.example".into(), HostPolicy { registration: true, read_rate_bytes: 0, read_burst_bytes: 0 });
        assert!(config.registration_on(&jid("b.example")) && !config.registration_on(&jid("a.example")));
        assert!(config.read_shaper_for(&jid("b.example")).is_none(), "a rate of 0 is no shaping");
        assert!(config.read_shaper_for(&jid("a.example")).is_some(), "the deployment's [c2s] shaping");
    }
}
