//! The domains one deployment serves (virtual hosts): users, rooms and every stored record are
//! already keyed by full JIDs, so serving another domain is a matter of knowing it is ours.

use crate::Jid;

/// The served domains, the first the primary one (`[server] domain`): what an address with no
/// domain of its own means, and whose name a process speaks in when no stream chose one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosts {
    domains: Vec<Jid>,
}

impl Hosts {
    /// `primary` and the others; a domain given twice is served once.
    pub fn new(primary: Jid, others: impl IntoIterator<Item = Jid>) -> Hosts {
        let mut domains = vec![primary];
        for domain in others {
            if !domains.contains(&domain) {
                domains.push(domain);
            }
        }
        Hosts { domains }
    }

    /// Only `primary`.
    pub fn single(primary: Jid) -> Hosts {
        Hosts { domains: vec![primary] }
    }

    pub fn primary(&self) -> &Jid {
        &self.domains[0]
    }

    /// The served domain named `domain`, if it is one of ours. A linear scan: deployments serve
    /// a handful of domains, and the common case (the primary) is found first.
    pub fn get(&self, domain: &str) -> Option<&Jid> {
        self.domains.iter().find(|served| served.as_str() == domain)
    }

    pub fn serves(&self, domain: &str) -> bool {
        self.get(domain).is_some()
    }

    /// The served domain of `jid` (an account, or the domain itself), or the primary one for an
    /// address elsewhere.
    pub fn of(&self, jid: &Jid) -> &Jid {
        self.get(jid.domain()).unwrap_or_else(|| self.primary())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Jid> {
        self.domains.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(text: &str) -> Jid {
        Jid::new(text).expect("a JID")
    }

    #[test]
    fn each_domain_is_found_and_others_fall_back_to_the_primary() {
        let hosts = Hosts::new(jid("a.example"), [jid("b.example"), jid("a.example")]);
        assert_eq!(hosts.iter().count(), 2);
        assert!(hosts.serves("b.example"));
        assert!(!hosts.serves("c.example"));
        assert_eq!(hosts.of(&jid("bob@b.example/phone")), &jid("b.example"));
        assert_eq!(hosts.of(&jid("eve@c.example")), &jid("a.example"));
    }
}
