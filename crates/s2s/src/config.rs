//! `[s2s]`: federation with other servers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use starling_xml::Limits;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S2sConfig {
    /// Stanzas to other domains go out over s2s streams, and other servers are accepted on the
    /// listeners; off, every other domain is `remote-server-not-found`.
    pub enabled: bool,
    /// Listeners offering STARTTLS (port 5269 style). Dialback needs one: the other server
    /// connects back to check the key it was given.
    pub listen: Vec<String>,
    /// Listeners with TLS from the first byte (XEP-0368, `_xmpps-server._tcp`).
    pub direct_tls_listen: Vec<String>,
    /// The secret dialback keys are made from (XEP-0185). Empty: a random one per process, which
    /// only works while this process is the only one federating for its domains.
    pub dialback_secret: String,
    /// Servers whose certificates do not verify are authenticated by Server Dialback (XEP-0220)
    /// instead of being refused; certificates that verify are used with SASL EXTERNAL either way.
    pub dialback: bool,
    /// Other servers must use TLS, in and out.
    pub require_tls: bool,
    /// PEM certificates trusted besides the operating system's (a private federation's CA).
    pub ca_file: String,
    /// Static routes that replace DNS: `"example.org" = "10.0.0.5:5269"` (STARTTLS), or
    /// `"xmpps://10.0.0.5:5270"` (direct TLS).
    pub hosts: BTreeMap<String, String>,
    /// When not empty, the only remote domains federated with.
    pub allow: Vec<String>,
    /// Remote domains never federated with.
    pub deny: Vec<String>,
    /// Stanzas queued toward one remote domain while its stream is being set up or written;
    /// beyond it senders get `resource-constraint`.
    pub queue: usize,
    pub connect_timeout_seconds: u64,
    /// Time for TLS and authentication on a new stream, in or out.
    pub negotiation_timeout_seconds: u64,
    /// A stream that carried nothing for this long is closed; the next stanza opens a new one.
    pub idle_timeout_seconds: u64,
    pub max_stanza_bytes: usize,
    /// Stanzas per second read from one incoming stream (with `stanza_burst`); a faster server is
    /// read more slowly (TCP backpressure).
    pub stanza_rate: u32,
    pub stanza_burst: u32,
}

impl Default for S2sConfig {
    fn default() -> Self {
        S2sConfig {
            enabled: false,
            listen: vec!["0.0.0.0:5269".into()],
            direct_tls_listen: Vec::new(),
            dialback_secret: String::new(),
            dialback: true,
            require_tls: true,
            ca_file: String::new(),
            hosts: BTreeMap::new(),
            allow: Vec::new(),
            deny: Vec::new(),
            queue: 1000,
            connect_timeout_seconds: 10,
            negotiation_timeout_seconds: 30,
            idle_timeout_seconds: 600,
            max_stanza_bytes: 262_144,
            stanza_rate: 1000,
            stanza_burst: 2000,
        }
    }
}

impl S2sConfig {
    /// Whether stanzas may be exchanged with `domain` (allow and deny lists).
    pub fn permits(&self, domain: &str) -> bool {
        let listed = |list: &[String]| list.iter().any(|entry| entry.eq_ignore_ascii_case(domain));
        !listed(&self.deny) && (self.allow.is_empty() || listed(&self.allow))
    }

    /// What `starling check-config` refuses.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (domain, route) in &self.hosts {
            if crate::resolve::Target::parse(route).is_none() {
                problems.push(format!("[s2s] hosts.\"{domain}\" = \"{route}\": expected HOST:PORT or xmpps://HOST:PORT"));
            }
        }
        if self.queue == 0 || self.stanza_rate == 0 || self.stanza_burst == 0 {
            problems.push("[s2s] queue, stanza_rate and stanza_burst must be at least 1".into());
        }
        problems
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits { max_stanza_bytes: self.max_stanza_bytes, ..Limits::default() }
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_seconds)
    }

    pub(crate) fn negotiation_timeout(&self) -> Duration {
        Duration::from_secs(self.negotiation_timeout_seconds)
    }

    /// The most a stream out may take to be set up, whatever DNS names (it may name many places).
    pub(crate) fn setup_timeout(&self) -> Duration {
        self.connect_timeout() + self.negotiation_timeout()
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds)
    }
}
