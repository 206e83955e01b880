//! Stream negotiation (RFC 6120 §4.3): the client opens the stream, we answer with our header
//! and the features of the current state, and each element the client sends goes to the step
//! that takes it, until a step binds a resource. Every feature is a [`NegotiationStep`] in
//! [`STEPS`]: the features offered are computed from the steps, so SASL2 or Bind2 (XEP-0388,
//! XEP-0386) are added as more steps, without touching this driver or the framing.

mod authenticate;
mod bind;
mod register;
mod resume;
mod sasl2;
mod starttls;

use std::net::SocketAddr;

use async_trait::async_trait;
use starling_cluster::gateway::StreamEnd;
use starling_protocol::{ns, Jid, StreamErrorCondition};
use starling_xml::{Element, FrameError, Limits, RawElement, StreamEvent, StreamHeader, NS_STREAMS};

use crate::bound::Bound;
use crate::edge::Edge;
use crate::end::End;
use crate::framing::{Framing, ReceiveFrames, SendFrames};

/// The steps, in the order their features are offered and elements are offered to them.
static STEPS: &[&dyn NegotiationStep] =
    &[&starttls::StartTls, &authenticate::Authenticate, &sasl2::Sasl2, &register::Register, &bind::BindResource, &resume::StreamManagement];

/// One part of negotiation: a stream feature and the elements that negotiate it.
#[async_trait]
trait NegotiationStep: Sync {
    /// Adds the features this step offers in the current state to `features`, if any.
    fn offer(&self, negotiation: &Negotiation<'_>, features: &mut Element);

    /// Whether this step handles `received` in the current state.
    fn takes(&self, received: &Received, negotiation: &Negotiation<'_>) -> bool;

    /// Handles an element it takes: replies are queued with [`Negotiation::reply`] (they are sent
    /// even when the step ends the stream), the result says how negotiation goes on.
    async fn handle(&self, received: Received, negotiation: &mut Negotiation<'_>) -> Result<Next, End>;
}

/// An exchange in progress that the next element belongs to (a SASL challenge was sent).
#[async_trait]
trait Continuation: Send {
    async fn resume(self: Box<Self>, received: Received, negotiation: &mut Negotiation<'_>) -> Result<Next, End>;
}

/// How negotiation goes on after a step.
enum Next {
    Negotiate,
    /// The next element goes to this exchange, whatever it is.
    Exchange(Box<dyn Continuation>),
    /// Upgrade to TLS, then a new stream (RFC 6120 §5.4.3.3).
    StartTls,
    /// A new stream on the same transport (after SASL success, RFC 6120 §6.4.6).
    Restart,
    /// The features of the current state on the same stream (after SASL2 success, XEP-0388
    /// §2.6.1: no restart).
    Features,
    /// A resource is bound: the stream goes to the bound loop.
    Bound(Bound),
}

/// What negotiation established so far on this connection, as the steps see it.
struct Negotiation<'a> {
    edge: &'a Edge,
    /// The served domain the client's stream header named (the primary one until it did).
    host: Jid,
    connection_id: u64,
    peer: SocketAddr,
    secure: bool,
    /// Whether STARTTLS can upgrade the transport now.
    can_start_tls: bool,
    /// tls-exporter channel binding (TLS 1.3 only).
    channel_binding: Option<Vec<u8>>,
    /// The localpart authenticated on this stream.
    authenticated: Option<String>,
    /// Failed SASL exchanges on this connection (RFC 6120 §6.4.5: retries are bounded).
    failed_auths: u32,
    replies: Vec<Element>,
    /// Why the connection may not be served (a per-address limit): the stream ends with it.
    refused: Option<&'static str>,
}

impl Negotiation<'_> {
    /// Reads what the transport offers (first, and again after a TLS upgrade).
    fn take_transport_from<F: Framing>(&mut self, framing: &F) {
        self.secure = framing.is_secure();
        self.can_start_tls = framing.can_start_tls();
        self.channel_binding = framing.channel_binding().map(<[u8]>::to_vec);
    }

    /// What the authentication throttle counts failures of: the account `username` names on
    /// this stream's domain.
    fn account_name(&self, username: &str) -> String {
        format!("{username}@{}", self.host)
    }

    /// Queues an element to send once the current step is done.
    fn reply(&mut self, element: Element) {
        self.replies.push(element);
    }

    /// The bare JID authenticated on this stream.
    fn user(&self) -> Result<Jid, End> {
        match self.authenticated.as_deref().map(|node| Jid::from_parts(Some(node), self.host.as_str(), None)) {
            Some(Ok(user)) => Ok(user),
            _ => Err(End::error(StreamErrorCondition::InternalServerError, "lost the authenticated identity")),
        }
    }
}

/// A top-level element from the client, as steps receive it.
struct Received {
    element: RawElement,
    /// For a `jabber:client` IQ, the IQ parsed: steps take IQs by their payload's namespace.
    iq: Option<Element>,
}

impl Received {
    fn read(element: RawElement, limits: &Limits) -> Result<Received, End> {
        if element.ns != ns::CLIENT || element.name != "iq" {
            return Ok(Received { element, iq: None });
        }
        let iq = Element::parse_with_limits(&element.rewrite(&[]), limits).map_err(|e| End::from(FrameError::from(e)))?;
        Ok(Received { element, iq: Some(iq) })
    }

    /// Whether this is the nonza `name` in namespace `ns`.
    fn is(&self, name: &str, ns: &str) -> bool {
        self.element.name == name && self.element.ns == ns
    }

    /// The payload (first child) of an IQ.
    fn iq_payload(&self) -> Option<&Element> {
        self.iq.as_ref().and_then(|iq| iq.children().next())
    }

    /// Whether this is an IQ whose payload is `name` in namespace `ns`.
    fn is_iq_with(&self, name: &str, ns: &str) -> bool {
        self.iq_payload().is_some_and(|payload| payload.is(name, ns))
    }
}

/// Negotiates on `framing` up to a bound resource, within the negotiation timeout. On any other
/// outcome the stream is closed here and `None` returned.
pub(crate) async fn negotiate<F: Framing>(edge: &Edge, connection_id: u64, peer: SocketAddr, framing: &mut F, refused: Option<&'static str>) -> Option<Bound> {
    let mut negotiation = Negotiation {
        edge,
        host: edge.config.domain().clone(),
        connection_id,
        peer,
        secure: false,
        can_start_tls: false,
        channel_binding: None,
        authenticated: None,
        failed_auths: 0,
        replies: Vec::new(),
        refused,
    };
    negotiation.take_transport_from(framing);
    let mut stream = Stream { framing, opened: false };
    let end = match tokio::time::timeout(edge.config.c2s.negotiation_timeout(), stream.negotiate(&mut negotiation)).await {
        Ok(Ok(bound)) => return Some(bound),
        Ok(Err(end)) => end,
        Err(_) => End::error(StreamErrorCondition::ConnectionTimeout, "negotiation took too long"),
    };
    stream.finish(&negotiation.host, end).await;
    None
}

/// The framing, and whether our side of the current stream is open (a stream error must follow
/// our header, RFC 6120 §4.9.1.1).
struct Stream<'f, F> {
    framing: &'f mut F,
    opened: bool,
}

impl<F: Framing> Stream<'_, F> {
    async fn negotiate(&mut self, negotiation: &mut Negotiation<'_>) -> Result<Bound, End> {
        self.open(negotiation).await?;
        let mut exchange: Option<Box<dyn Continuation>> = None;
        loop {
            let received = Received::read(self.next_element().await?, &negotiation.edge.config.c2s.limits())?;
            let next = match exchange.take() {
                Some(exchange) => exchange.resume(received, negotiation).await,
                None => match STEPS.iter().find(|step| step.takes(&received, negotiation)) {
                    Some(step) => step.handle(received, negotiation).await,
                    None => Err(not_yet(negotiation)),
                },
            };
            let mut sent = Ok(());
            for reply in negotiation.replies.drain(..) {
                if sent.is_ok() {
                    sent = self.framing.sender().send(&reply).await;
                }
            }
            let next = next?;
            if let Err(error) = sent {
                // The client never heard it is bound: the session must not outlive the stream.
                if let Next::Bound(bound) = next {
                    bound.session.unbind(StreamEnd::Broken).await;
                }
                return Err(error.into());
            }
            match next {
                Next::Negotiate => {}
                Next::Exchange(pending) => exchange = Some(pending),
                Next::StartTls => {
                    self.framing.start_tls(negotiation.edge).await?;
                    self.opened = false;
                    negotiation.take_transport_from(self.framing);
                    self.open(negotiation).await?;
                }
                Next::Restart => {
                    self.opened = false;
                    self.framing.restart();
                    self.open(negotiation).await?;
                }
                Next::Features => self.framing.sender().send(&features(negotiation)).await?,
                Next::Bound(bound) => return Ok(bound),
            }
        }
    }

    /// Reads the client's stream header and answers with ours and the features of this state.
    async fn open(&mut self, negotiation: &mut Negotiation<'_>) -> Result<(), End> {
        let header = match self.framing.receiver().next().await? {
            StreamEvent::Open(header) => header,
            _ => return Err(End::error(StreamErrorCondition::BadFormat, "expected a stream header")),
        };
        // The domain named; our header speaks for it when it is ours (RFC 6120 §4.7.1).
        let host = header.to.as_deref().and_then(|to| Jid::new(to).ok()).and_then(|to| negotiation.edge.config.hosts.get(to.as_str()).cloned());
        let switched = host.as_ref().is_some_and(|host| *host != negotiation.host) && negotiation.authenticated.is_some();
        if let Some(host) = host.as_ref().filter(|host| !switched && **host != negotiation.host) {
            negotiation.host = host.clone();
            self.framing.receiver().shape(negotiation.edge.config.read_shaper_for(host));
        }
        self.framing.sender().open(&our_header(&negotiation.host)).await?;
        self.opened = true;
        if let Some(why) = negotiation.refused {
            return Err(End::error(StreamErrorCondition::PolicyViolation, why));
        }
        if header.content_ns != ns::CLIENT {
            return Err(End::error(StreamErrorCondition::InvalidNamespace, "this port serves jabber:client"));
        }
        if host.is_none() {
            return Err(End::error(StreamErrorCondition::HostUnknown, "this server does not serve that domain"));
        }
        if switched {
            // Authenticated on one domain, the stream may not go on as another's.
            return Err(End::error(StreamErrorCondition::HostUnknown, "a stream restart must name the domain authenticated on"));
        }
        if header.version.as_deref().is_none_or(|v| !v.starts_with('1')) {
            return Err(End::error(StreamErrorCondition::UnsupportedVersion, "version 1.0 required"));
        }
        Ok(self.framing.sender().send(&features(negotiation)).await?)
    }

    /// Reads the next top-level element; a stream close or header here is the peer's mistake.
    async fn next_element(&mut self) -> Result<RawElement, End> {
        match self.framing.receiver().next().await? {
            StreamEvent::Element(element) => Ok(element),
            StreamEvent::Close => Err(End::Closed),
            StreamEvent::Open(_) => Err(End::error(StreamErrorCondition::BadFormat, "unexpected stream header")),
        }
    }

    /// Writes the close for `end`, opening our side first if a stream error needs it.
    async fn finish(&mut self, host: &Jid, end: End) {
        match end {
            End::Gone => {}
            End::Closed => self.framing.sender().close(None).await,
            End::Error(error) => {
                if !self.opened && self.framing.sender().open(&our_header(host)).await.is_err() {
                    return;
                }
                self.framing.sender().close(Some(&error)).await;
                self.framing.receiver().linger().await;
            }
        }
    }
}

/// The stream features of the current state, from the steps.
fn features(negotiation: &Negotiation<'_>) -> Element {
    let mut features = Element::new("features", NS_STREAMS);
    for step in STEPS {
        step.offer(negotiation, &mut features);
    }
    features
}

/// Our stream header, with a fresh stream id (RFC 6120 §4.7.3).
fn our_header(host: &Jid) -> StreamHeader {
    StreamHeader {
        from: Some(host.as_str().to_owned()),
        id: Some(format!("{:016x}", rand::random::<u64>())),
        version: Some("1.0".to_owned()),
        lang: Some("en".to_owned()),
        content_ns: ns::CLIENT.to_owned(),
        ..StreamHeader::default()
    }
}

/// The stream error for an element no step takes now: only negotiation is allowed before a
/// resource is bound (RFC 6120 §4.3.2, §7.1).
fn not_yet(negotiation: &Negotiation<'_>) -> End {
    let text = if negotiation.authenticated.is_some() { "bind a resource first" } else { "authenticate and bind first" };
    End::error(StreamErrorCondition::NotAuthorized, text)
}

#[cfg(test)]
mod tests;
