//! Where a remote domain's server is (RFC 6120 §3.2, XEP-0368): a static route from `[s2s] hosts`
//! if there is one; else the SRV records `_xmpps-server._tcp` (direct TLS) and
//! `_xmpp-server._tcp` (STARTTLS), tried by priority (direct TLS first among equals), weight
//! ignored; else the domain itself on port 5269. Names are resolved to addresses by the same
//! resolver (hickory, with the system's configuration and hosts file).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;

/// One place to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
    /// TLS from the first byte (XEP-0368) rather than STARTTLS.
    pub direct_tls: bool,
}

impl Target {
    /// `HOST:PORT` (STARTTLS) or `xmpps://HOST:PORT` (direct TLS).
    pub(crate) fn parse(route: &str) -> Option<Target> {
        let (direct_tls, address) = match route.strip_prefix("xmpps://") {
            Some(address) => (true, address),
            None => (false, route),
        };
        let (host, port) = address.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        (!host.is_empty()).then_some(())?;
        Some(Target { host: host.to_owned(), port: port.parse().ok()?, direct_tls })
    }
}

pub(crate) struct Resolver {
    routes: BTreeMap<String, Target>,
    /// `None` when the system's resolver configuration could not be read: then only static
    /// routes and literal addresses work.
    dns: Option<TokioResolver>,
}

impl Resolver {
    pub(crate) fn new(hosts: &BTreeMap<String, String>) -> Resolver {
        let routes = hosts.iter().filter_map(|(domain, route)| Some((domain.to_ascii_lowercase(), Target::parse(route)?))).collect();
        let dns = match TokioResolver::builder_tokio().and_then(|builder| builder.build()) {
            Ok(dns) => Some(dns),
            Err(error) => {
                tracing::warn!(%error, "no DNS resolver (federation uses [s2s] hosts only)");
                None
            }
        };
        Resolver { routes, dns }
    }

    /// The places to try for `domain`, in order.
    pub(crate) async fn targets(&self, domain: &str) -> Vec<Target> {
        if let Some(target) = self.routes.get(&domain.to_ascii_lowercase()) {
            return vec![target.clone()];
        }
        let Some(dns) = &self.dns else { return vec![Target { host: domain.to_owned(), port: 5269, direct_tls: false }] };
        let mut records = Vec::new();
        for (service, direct_tls) in [("_xmpps-server._tcp", true), ("_xmpp-server._tcp", false)] {
            let Ok(lookup) = dns.srv_lookup(format!("{service}.{domain}.")).await else { continue };
            for record in lookup.answers() {
                if let RData::SRV(srv) = &record.data {
                    records.push((srv.priority, !direct_tls, srv.target.clone(), srv.port));
                }
            }
        }
        if records.is_empty() {
            return vec![Target { host: domain.to_owned(), port: 5269, direct_tls: false }];
        }
        records.sort_by_key(|(priority, starttls, _, _)| (*priority, *starttls));
        records
            .into_iter()
            // A target of "." says the service is not offered there (RFC 2782).
            .filter(|(_, _, target, _)| !target.is_root())
            .map(|(_, starttls, target, port)| Target { host: target.to_ascii().trim_end_matches('.').to_owned(), port, direct_tls: !starttls })
            .collect()
    }

    /// The addresses of `target`.
    pub(crate) async fn addresses(&self, target: &Target) -> Vec<SocketAddr> {
        if let Ok(ip) = target.host.parse::<IpAddr>() {
            return vec![SocketAddr::new(ip, target.port)];
        }
        let Some(dns) = &self.dns else { return Vec::new() };
        match dns.lookup_ip(format!("{}.", target.host)).await {
            Ok(lookup) => lookup.iter().map(|ip| SocketAddr::new(ip, target.port)).collect(),
            Err(error) => {
                tracing::debug!(host = %target.host, %error, "no address");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_routes_name_starttls_or_direct_tls() {
        assert_eq!(Target::parse("127.0.0.1:5269"), Some(Target { host: "127.0.0.1".into(), port: 5269, direct_tls: false }));
        assert_eq!(Target::parse("xmpps://xmpp.example.org:5270"), Some(Target { host: "xmpp.example.org".into(), port: 5270, direct_tls: true }));
        assert_eq!(Target::parse("[::1]:5269"), Some(Target { host: "::1".into(), port: 5269, direct_tls: false }));
        assert_eq!(Target::parse("example.org"), None);
        assert_eq!(Target::parse(":5269"), None);
        assert_eq!(Target::parse("example.org:http"), None);
    }

    #[tokio::test]
    async fn a_static_route_replaces_dns() {
        let routes = BTreeMap::from([("Remote.Example".to_owned(), "127.0.0.2:5999".to_owned())]);
        let resolver = Resolver::new(&routes);
        let targets = resolver.targets("remote.example").await;
        assert_eq!(targets, vec![Target { host: "127.0.0.2".into(), port: 5999, direct_tls: false }]);
        assert_eq!(resolver.addresses(&targets[0]).await, vec!["127.0.0.2:5999".parse().expect("address")]);
    }
}
