//! The federation of one process: what its s2s streams share (configuration, TLS, trust, the
//! resolver, the dialback secret), the outgoing stream of each pair of domains, and the link the
//! host router sends stanzas for other domains through ([`Federation::link`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use starling_cluster::gateway::{ComponentLink, Gateway};
use starling_edge::Certificates;
use starling_protocol::{Hosts, Stanza, StanzaError, StanzaErrorCondition};
use starling_telemetry::Metrics;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::Semaphore;

use crate::config::S2sConfig;
use crate::dialback::{self, DialbackSecret, NS_DIALBACK};
use crate::outbound::{self, Purpose};
use crate::resolve::Resolver;
use crate::tls::{S2sTls, S2sTlsError, Trust};

/// Dialback checks running at once over all streams in; beyond it a request is answered
/// `resource-constraint` (each check is a connection out).
const DIALBACK_CHECKS: usize = 256;

/// Our domain and the remote one a stream out carries stanzas between.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Pair {
    pub local: String,
    pub remote: String,
}

pub struct Federation {
    pub(crate) config: S2sConfig,
    hosts: Hosts,
    pub(crate) gateway: Arc<dyn Gateway>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) resolver: Resolver,
    pub(crate) tls: S2sTls,
    pub(crate) trust: Trust,
    pub(crate) secret: DialbackSecret,
    /// Dialback checks (connections to other servers) running at once, from all streams in.
    pub(crate) checks: Arc<Semaphore>,
    /// The queue of each pair's stream out (closed once its stream ended).
    outbound: Mutex<HashMap<Pair, mpsc::Sender<Stanza>>>,
    /// Where streams out run: the router calls from its own threads.
    runtime: tokio::runtime::Handle,
}

/// What the dialback key's authoritative server said (XEP-0220 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Valid,
    Invalid,
    /// It could not be asked.
    Unreachable,
}

impl Federation {
    /// Federation for `hosts` (and their subdomains' services), presenting `certificates`,
    /// routing what other servers send through `gateway`. Call inside the runtime streams run on.
    pub fn new(config: S2sConfig, hosts: Hosts, certificates: Arc<Certificates>, gateway: Arc<dyn Gateway>, metrics: Arc<Metrics>) -> Result<Arc<Federation>, S2sTlsError> {
        let tls = S2sTls::new(certificates)?;
        let trust = Trust::new(&config.ca_file, tls.provider())?;
        Ok(Arc::new(Federation {
            resolver: Resolver::new(&config.hosts),
            secret: DialbackSecret::new(&config.dialback_secret),
            config,
            hosts,
            gateway,
            metrics,
            tls,
            trust,
            checks: Arc::new(Semaphore::new(DIALBACK_CHECKS)),
            outbound: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
        }))
    }

    /// The link the host router sends stanzas for other domains through.
    pub fn link(self: &Arc<Self>) -> Arc<dyn ComponentLink> {
        Arc::new(FederationLink(self.clone()))
    }

    /// Whether `domain` is ours: a served domain or one of its subdomains (its services).
    pub(crate) fn is_local(&self, domain: &str) -> bool {
        self.hosts.serves(domain)
            || self.hosts.iter().any(|host| domain.strip_suffix(host.as_str()).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')))
    }

    pub(crate) fn primary(&self) -> &str {
        self.hosts.primary().as_str()
    }

    /// Queues `stanza` on the stream out of its pair of domains, setting one up if needed; the
    /// stanza back when that queue is full.
    fn send(self: &Arc<Self>, stanza: Stanza) -> Result<(), Box<Stanza>> {
        let Some(to) = &stanza.to else { return Ok(()) };
        let pair = Pair { local: stanza.from.domain().to_ascii_lowercase(), remote: to.domain().to_ascii_lowercase() };
        if !self.config.permits(&pair.remote) {
            self.bounce(stanza, StanzaErrorCondition::NotAllowed, "federation with this domain is not allowed here");
            return Ok(());
        }
        if self.is_local(&pair.remote) {
            // A subdomain of ours that nothing here serves: not a remote server (sending it out
            // could come back to us).
            self.bounce(stanza, StanzaErrorCondition::RemoteServerNotFound, "no such service here");
            return Ok(());
        }
        if !self.is_local(&pair.local) {
            // Nothing inside the server sends from a domain it does not serve; refused, not relayed.
            self.bounce(stanza, StanzaErrorCondition::Forbidden, "not from a domain served here");
            return Ok(());
        }
        let mut outbound = self.outbound.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let stanza = match outbound.get(&pair) {
            None => stanza,
            Some(queue) => match queue.try_send(stanza) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(stanza)) => return Err(Box::new(stanza)),
                // Its stream ended: a new one.
                Err(TrySendError::Closed(stanza)) => stanza,
            },
        };
        let (queue, receiver) = mpsc::channel(self.config.queue);
        let _ = queue.try_send(stanza);
        outbound.insert(pair.clone(), queue);
        self.runtime.spawn(outbound::run(self.clone(), pair, receiver));
        Ok(())
    }

    /// The stream out of `pair` is over: closes its queue (a later stanza starts a new stream)
    /// and bounces what is still in it with `bounce`, or sends it again (on a new stream).
    pub(crate) fn give_up(self: &Arc<Self>, pair: &Pair, mut queue: mpsc::Receiver<Stanza>, bounce: Option<StanzaErrorCondition>) {
        queue.close();
        {
            let mut outbound = self.outbound.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if outbound.get(pair).is_some_and(mpsc::Sender::is_closed) {
                outbound.remove(pair);
            }
        }
        while let Ok(stanza) = queue.try_recv() {
            match bounce {
                Some(condition) => self.bounce(stanza, condition, "no stream to the other server"),
                None => {
                    if let Err(refused) = self.send(stanza) {
                        self.bounce(*refused, StanzaErrorCondition::ResourceConstraint, "too many stanzas queued for the other server");
                    }
                }
            }
        }
    }

    /// Answers `stanza` with an error from its destination's domain (errors are not answered).
    pub(crate) fn bounce(&self, stanza: Stanza, condition: StanzaErrorCondition, text: &str) {
        let Some(to) = &stanza.to else { return };
        self.metrics.s2s_bounced.inc();
        if let Some(reply) = stanza.error_reply(&to.domain_jid(), &StanzaError::new(condition).with_text(text)) {
            let _ = self.gateway.route_vouched(reply);
        }
    }

    /// Asks the authoritative server of `originating` whether `key` is the one it gave for the
    /// stream `stream_id` it opened to us, `receiving` (XEP-0220 §2.2).
    pub(crate) async fn verify(&self, receiving: &str, originating: &str, stream_id: &str, key: &str) -> Verdict {
        let asked = async {
            let (mut stream, _) = outbound::connect(self, receiving, originating, Purpose::Verify).await.ok()?;
            stream.send(&dialback::element("verify", receiving, originating, Some(stream_id), Some(key), None)).await.ok()?;
            loop {
                let element = stream.element().await.ok()?;
                let answer = element.ns == NS_DIALBACK && element.name == "verify" && element.attr("id") == Some(stream_id);
                if answer && element.attr("from") == Some(originating) && element.attr("to") == Some(receiving) {
                    let _ = stream.send(&crate::stream::close_bytes(None)).await;
                    return match element.attr("type") {
                        Some("valid") => Some(Verdict::Valid),
                        Some("invalid") => Some(Verdict::Invalid),
                        _ => Some(Verdict::Unreachable),
                    };
                }
            }
        };
        // A stream's set-up, and a moment for the one exchange on it.
        let limit = self.config.setup_timeout() + Duration::from_secs(1);
        tokio::time::timeout(limit, asked).await.ok().flatten().unwrap_or(Verdict::Unreachable)
    }
}

/// What the host router holds: stanzas for other domains go to their pair's stream out.
struct FederationLink(Arc<Federation>);

impl ComponentLink for FederationLink {
    fn send(&self, stanza: Stanza) -> Result<(), Box<Stanza>> {
        self.0.send(stanza)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_and_deny_lists() {
        let mut config = S2sConfig { deny: vec!["spam.example".into()], ..S2sConfig::default() };
        assert!(config.permits("friend.example") && !config.permits("SPAM.example"));
        config.allow = vec!["friend.example".into()];
        assert!(config.permits("friend.example") && !config.permits("other.example"));
    }
}
