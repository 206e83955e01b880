//! Virtual hosts (`[hosts."DOMAIN"]`): the domains served beside `[server] domain` and what each
//! has of its own.

use std::collections::BTreeMap;

use serde::Deserialize;
use starling_edge::HostPolicy;
use starling_protocol::{Hosts, Jid};
use starling_session::SessionHostPolicy;

use super::Config;

/// `[hosts."DOMAIN"]`: what a virtual host has of its own (docs/configuration.md, "Virtual
/// hosts"); everything else is the deployment's.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostSection {
    /// Its certificate (PEM chain and key), served to clients that name it (SNI); both empty: a
    /// self-signed one generated for it.
    pub cert_file: String,
    pub key_file: String,
    /// In-band registration (XEP-0077) on this domain; unset: `[registration] enabled`.
    pub registration: Option<bool>,
    /// Its administrators (bare JIDs on it): the XEP-0133 commands, on its accounts only.
    pub admins: Vec<String>,
    /// Its users' message rate limit; unset: `[sessions] message_rate` and `message_burst`.
    pub message_rate: Option<u32>,
    pub message_burst: Option<u32>,
    /// The read shaping of streams to it; unset: `[c2s] read_rate_bytes` and `read_burst_bytes`.
    pub read_rate_bytes: Option<u64>,
    pub read_burst_bytes: Option<u64>,
}

impl Config {
    /// The served domains: `[server] domain` first, then the virtual hosts (checked by
    /// [`check`](Self::check)).
    pub fn hosts(&self) -> anyhow::Result<Hosts> {
        let primary = bare_domain("server.domain", &self.server.domain)?;
        let others = self.hosts.keys().map(|domain| bare_domain("[hosts]", domain)).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Hosts::new(primary, others))
    }

    /// Every account allowed the XEP-0133 commands: `[admin] jids` and each host's admins (an
    /// administrator acts on the accounts of its own domain).
    pub fn admins(&self) -> impl Iterator<Item = &String> {
        self.admin.jids.iter().chain(self.hosts.values().flat_map(|host| &host.admins))
    }

    /// Whether in-band registration is open on `domain`.
    pub fn registration_on(&self, domain: &str) -> bool {
        self.hosts.get(domain).and_then(|host| host.registration).unwrap_or(self.registration.enabled)
    }

    /// Each virtual host's settings for the edge, the deployment's where it sets none.
    pub fn edge_host_policies(&self) -> BTreeMap<String, HostPolicy> {
        let c2s = &self.c2s;
        self.hosts
            .iter()
            .map(|(domain, host)| {
                let policy = HostPolicy {
                    registration: self.registration_on(domain),
                    read_rate_bytes: host.read_rate_bytes.unwrap_or(c2s.read_rate_bytes),
                    read_burst_bytes: host.read_burst_bytes.unwrap_or(c2s.read_burst_bytes),
                };
                (domain.clone(), policy)
            })
            .collect()
    }

    /// Each virtual host's settings for the session layer, the deployment's where it sets none.
    pub fn session_host_policies(&self) -> BTreeMap<String, SessionHostPolicy> {
        let sessions = &self.sessions;
        self.hosts
            .iter()
            .map(|(domain, host)| {
                let policy = SessionHostPolicy {
                    registration: self.registration_on(domain),
                    message_rate: host.message_rate.unwrap_or(sessions.message_rate),
                    message_burst: host.message_burst.unwrap_or(sessions.message_burst),
                };
                (domain.clone(), policy)
            })
            .collect()
    }

    /// What the virtual hosts' tables must hold (called by [`Config::check`]).
    pub(super) fn check_hosts(&self) -> anyhow::Result<()> {
        for (domain, host) in &self.hosts {
            if domain == &self.server.domain {
                anyhow::bail!("[hosts.\"{domain}\"] is [server] domain: its settings belong in the main sections");
            }
            if host.cert_file.is_empty() != host.key_file.is_empty() {
                anyhow::bail!("[hosts.\"{domain}\"] cert_file and key_file go together");
            }
            if let Some(admin) = host.admins.iter().find(|admin| Jid::new(admin).map_or(true, |jid| jid.node().is_none() || !jid.is_bare() || jid.domain() != domain)) {
                anyhow::bail!("[hosts.\"{domain}\"] admins: {admin} is not the bare JID of an account on {domain}");
            }
        }
        Ok(())
    }
}

/// `text` (the value of `key`) as a bare domain.
fn bare_domain(key: &str, text: &str) -> anyhow::Result<Jid> {
    let domain = Jid::new(text).map_err(|why| anyhow::anyhow!("{key}: {text} is not a valid domain ({why})"))?;
    if domain.node().is_some() || !domain.is_bare() {
        anyhow::bail!("{key} must be a bare domain, got {text}");
    }
    Ok(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosts_are_served_with_their_own_policy_and_checked() {
        let config = |toml: &str| toml::from_str::<Config>(toml).expect("parses");
        let served = config("[sessions]\nmessage_rate = 7\n[hosts.\"b.example\"]\nregistration = true\nadmins = ['boss@b.example']\nmessage_burst = 3\nread_rate_bytes = 1000\n");
        served.check().expect("valid");
        let hosts = served.hosts().expect("hosts");
        assert_eq!(hosts.iter().map(Jid::as_str).collect::<Vec<_>>(), ["localhost", "b.example"]);
        assert!(served.registration_on("b.example") && !served.registration_on("localhost"));
        assert_eq!(served.admins().collect::<Vec<_>>(), ["boss@b.example"]);
        let session = &served.session_host_policies()["b.example"];
        assert_eq!((session.registration, session.message_rate, session.message_burst), (true, 7, 3));
        let edge = &served.edge_host_policies()["b.example"];
        assert_eq!((edge.read_rate_bytes, edge.read_burst_bytes), (1000, served.c2s.read_burst_bytes));
        let refused = |toml: &str| config(toml).check().expect_err(toml).to_string();
        assert!(refused("[hosts.\"localhost\"]\n").contains("is [server] domain"));
        assert!(refused("[hosts.\"b.example\"]\nadmins = ['boss@localhost']\n").contains("not the bare JID of an account on b.example"));
        assert!(refused("[hosts.\"b.example\"]\ncert_file = 'b.pem'\n").contains("go together"));
        assert!(refused("[hosts.\"not a domain\"]\n").contains("not a domain"));
        assert!(refused("[admin]\njids = ['ops@c.example']\n").contains("served domain"));
    }
}
