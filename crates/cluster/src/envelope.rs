//! Over 450 lines: the one adapter for every record kind, with their round-trip and hostile-input
//! tests, kept in one place on purpose (see below).
//!
//! The records nodes send each other over the bus, built and read here and nowhere else. A record
//! for a user's owner partition is an [`OwnerRecord`]; one for an edge node's inbox is an
//! [`EdgeRecord`]. On the bus both travel as the protobuf envelope of
//! `proto/starling/cluster/v1/envelope.proto` (`starling-wire`), stamped by the sending node's
//! [`Origin`]; everything else in the server sees only these typed values, so the wire format, the
//! stamp (origin node, sequence, trace context) and the clock conversion of arrival times can
//! change in this one file.
//!
//! Decoding checks what the producer guaranteed — a known stanza kind, valid addresses, a full JID
//! where a resource is meant — so a corrupt or hostile record is refused here, with a typed
//! [`EnvelopeError`], instead of being misrouted later.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use starling_protocol::{Jid, Stanza, StreamError, StreamErrorCondition};
use starling_wire::v1::{self, client_event::Event, envelope::Body, to_connection::Action};
use starling_wire::WireError;
use starling_xml::Element;

use crate::gateway::{ClientEvent, DeliveryKey, ResumeFailed, SessionAnswer, StreamCounts, StreamEnd, Synced, ToClient};

/// A record on a user's owner partition: what the owner of that user is asked to do.
#[derive(Debug, Clone)]
pub enum OwnerRecord {
    /// Edge → owner: the full JID `jid` was bound on connection `connection` of edge node `edge`,
    /// with the Bind2 requests `inline` (answered on the connection when there are any).
    Bind { jid: Jid, edge: String, connection: u64, inline: Vec<Element> },
    /// Edge → owner: a stanza the bound full JID `resource` sent, received by its edge at
    /// `received`.
    FromClient { resource: Jid, connection: u64, stanza: Stanza, received: Instant },
    /// Edge (or the reaper of a dead edge, with `Broken`) → owner: the connection of the full
    /// JID `jid` ended.
    Unbind { jid: Jid, connection: u64, end: StreamEnd },
    /// Edge → owner: what the client of `jid` on `connection` told the server about its stream.
    ClientEvent { jid: Jid, connection: u64, event: ClientEvent },
    /// Edge → owner: resume the stream-managed session `previd` of the bare JID `user` on
    /// connection `connection` of edge node `edge`, the client having handled `h` stanzas.
    Resume { user: Jid, previd: String, h: u32, edge: String, connection: u64 },
    /// Owner → owner: a stanza for one of the receiving owner's users, first received at
    /// `received`, caused by the record whose [`Stamp::cause`] is `cause` (when one is known).
    Deliver { stanza: Stanza, received: Instant, cause: Option<u64> },
    /// A session node → a partition it was just assigned (see the proto).
    Fence,
    /// Edge → owner of `domain`'s partition: an external component serving `domain` connected
    /// on `connection` of edge node `edge`.
    ComponentBind { domain: Jid, edge: String, connection: u64 },
    /// Edge → owner of `domain`'s partition: that component connection ended.
    ComponentUnbind { domain: Jid, connection: u64 },
}

/// Who produced a record, and its number among that process's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub node: String,
    pub seq: u64,
    /// The W3C trace context of a traced stanza's record (`starling_telemetry::traces`); empty
    /// for the rest.
    pub traceparent: String,
}

impl Stamp {
    /// A 64-bit name for the record, the same in every process that reads it: what the effects
    /// of a record replayed after its owner died are recognised by.
    pub fn cause(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(self.node.as_bytes(), self.seq)
    }
}

/// A record on an edge node's inbox: what to do with one of its connections.
#[derive(Debug, Clone)]
pub struct EdgeRecord {
    pub connection: u64,
    pub message: ToClient,
}

/// One stanza for several connections of an edge, in one record however many they are (a room's
/// groupchat to its occupants on that edge): the stanza without a `to`, and each connection's.
#[derive(Debug, Clone)]
pub struct FanOut {
    /// A serialised stanza without a `to` attribute.
    stanza: Bytes,
    /// Where its element's name ends: where a `to` goes in.
    name_end: usize,
    pub targets: Vec<FanOutTarget>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOutTarget {
    pub connection: u64,
    /// The full JID bound on the connection: the stanza's `to` there.
    pub to: Jid,
    pub delivery: Option<DeliveryKey>,
}

/// What an edge's inbox carries.
#[derive(Debug, Clone)]
pub enum EdgeInbound {
    Connection(EdgeRecord),
    FanOut(FanOut),
}

/// A record of an edge's inbox with who sent it and its trace context (empty: not traced).
#[derive(Debug, Clone)]
pub struct EdgeInboxRecord {
    pub inbound: EdgeInbound,
    /// The node that produced it: for a connection, its user's owner at the time.
    pub origin: String,
    pub traceparent: String,
}

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The bytes are not an envelope.
    #[error("undecodable envelope: {0}")]
    Undecodable(String),
    /// A part every record of its kind has is absent (also: a body of a kind this version does
    /// not know, which protobuf decodes as no body).
    #[error("envelope without {0}")]
    Missing(&'static str),
    /// A valid envelope, but for the other side (an edge record on an owner partition, or the
    /// reverse).
    #[error("{found} record from {origin:?} where {expected} was expected")]
    WrongKind { expected: &'static str, found: &'static str, origin: String },
    #[error("stanza of unknown kind {0}")]
    UnknownStanzaKind(i32),
    /// An address that is not a JID, or a bare JID where a resource is meant.
    #[error("invalid address {0:?}")]
    InvalidJid(String),
    /// Bytes meant to be an XML element that are not one.
    #[error("invalid element: {0}")]
    InvalidElement(String),
}

impl From<WireError> for EnvelopeError {
    fn from(error: WireError) -> EnvelopeError {
        match error {
            WireError::Decode(reason) => EnvelopeError::Undecodable(reason),
            WireError::Empty => EnvelopeError::Missing("a body"),
            WireError::Kind(kind) => EnvelopeError::UnknownStanzaKind(kind),
            WireError::Address(address) => EnvelopeError::InvalidJid(address),
        }
    }
}

/// Stamps the records a node sends: its node id and a sequence number increasing per process
/// start (so a consumer can recognise a record replayed after a crash), and the trace context.
/// The numbers start at the process's start time in microseconds, so a node restarted under the
/// same id does not number its records as its previous run did (unless that run stamped more
/// than a million records a second on average).
pub struct Origin {
    node: String,
    seq: AtomicU64,
}

impl Origin {
    pub fn new(node: impl Into<String>) -> Origin {
        let start = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_micros() as u64);
        Origin { node: node.into(), seq: AtomicU64::new(start) }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The one place an envelope is made; returns it with its sequence number. `traceparent`:
    /// the span of what caused the record, when it is traced (empty otherwise).
    fn seal_numbered(&self, body: Body, traceparent: String) -> (Bytes, u64) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let bytes = starling_wire::encode(&v1::Envelope { origin_node: self.node.clone(), origin_seq: seq, traceparent, body: Some(body) });
        (bytes, seq)
    }

    fn seal(&self, body: Body, traceparent: String) -> Bytes {
        self.seal_numbered(body, traceparent).0
    }
}

impl OwnerRecord {
    /// What this record's effects are recognised by when it is replayed ([`Stamp::cause`]): a
    /// delivery's is the record that started the chain, any other record's its own `stamp`.
    pub fn cause(&self, stamp: &Stamp) -> u64 {
        match self {
            OwnerRecord::Deliver { cause: Some(cause), .. } => *cause,
            _ => stamp.cause(),
        }
    }

    /// The bytes of this record, stamped by `origin`.
    pub fn encode(&self, origin: &Origin) -> Bytes {
        self.encode_numbered(origin, String::new()).0
    }

    /// [`encode`](Self::encode) with the trace context of its cause (empty: not traced), and the
    /// sequence number `origin` gave it.
    pub fn encode_numbered(&self, origin: &Origin, traceparent: String) -> (Bytes, u64) {
        let body = match self {
            OwnerRecord::Bind { jid, edge, connection, inline } => Body::Bind(v1::Bind {
                full_jid: jid.to_string(),
                edge_node: edge.clone(),
                connection: *connection,
                inline: inline.iter().map(|element| Bytes::from(element.to_bytes())).collect(),
            }),
            OwnerRecord::FromClient { resource, connection, stanza, received } => Body::FromClient(v1::FromClient {
                full_jid: resource.to_string(),
                connection: *connection,
                stanza: Some(v1::Stanza::from_routed(stanza, epoch_micros(*received))),
            }),
            OwnerRecord::Unbind { jid, connection, end } => {
                Body::Unbind(v1::Unbind { full_jid: jid.to_string(), connection: *connection, broken: *end == StreamEnd::Broken })
            }
            OwnerRecord::ClientEvent { jid, connection, event } => {
                let event = match event {
                    ClientEvent::Enable { resume, max } => Event::Enable(v1::EnableStreamManagement { resume: *resume, max: *max }),
                    ClientEvent::Acknowledge(h) => Event::Acknowledge(*h),
                    ClientEvent::AnswerForEdge(reply) => Event::AnswerForEdge(reply.clone()),
                    ClientEvent::Undelivered(stanza) => Event::Undelivered(stanza.clone()),
                    ClientEvent::Drained(count) => Event::Drained(*count),
                    ClientEvent::ClientState { active } => Event::ClientActive(*active),
                    ClientEvent::Synced(Synced { counts, delivered }) => Event::Synced(v1::Synced {
                        counts: counts.as_ref().map(|counts| v1::StreamCounts {
                            sent: counts.sent,
                            unacknowledged: counts.unacknowledged.clone(),
                            handled: counts.handled,
                        }),
                        delivered: delivered.clone(),
                    }),
                };
                Body::ClientEvent(v1::ClientEvent { full_jid: jid.to_string(), connection: *connection, event: Some(event) })
            }
            OwnerRecord::Resume { user, previd, h, edge, connection } => Body::Resume(v1::Resume {
                user: user.to_string(),
                previd: previd.clone(),
                h: *h,
                edge_node: edge.clone(),
                connection: *connection,
            }),
            OwnerRecord::Deliver { stanza, received, cause } => {
                Body::Deliver(v1::Deliver { stanza: Some(v1::Stanza::from_routed(stanza, epoch_micros(*received))), cause: *cause })
            }
            OwnerRecord::Fence => Body::Fence(v1::Fence {}),
            OwnerRecord::ComponentBind { domain, edge, connection } => {
                Body::ComponentBind(v1::ComponentBind { domain: domain.to_string(), edge_node: edge.clone(), connection: *connection })
            }
            OwnerRecord::ComponentUnbind { domain, connection } => {
                Body::ComponentUnbind(v1::ComponentUnbind { domain: domain.to_string(), connection: *connection })
            }
        };
        origin.seal_numbered(body, traceparent)
    }

    /// Reads a record of an owner partition.
    pub fn decode(bytes: Bytes) -> Result<OwnerRecord, EnvelopeError> {
        Self::decode_stamped(bytes).map(|(record, _)| record)
    }

    /// [`decode`](Self::decode), with who produced the record.
    pub fn decode_stamped(bytes: Bytes) -> Result<(OwnerRecord, Stamp), EnvelopeError> {
        let envelope = starling_wire::decode(bytes)?;
        let stamp = Stamp { node: envelope.origin_node, seq: envelope.origin_seq, traceparent: envelope.traceparent };
        let record = match envelope.body {
            Some(Body::Bind(v1::Bind { full_jid, edge_node, connection, inline })) => {
                let inline = inline.iter().map(|bytes| element_of(bytes)).collect::<Result<_, _>>()?;
                Ok(OwnerRecord::Bind { jid: full_jid_of(&full_jid)?, edge: edge_node_of(edge_node)?, connection, inline })
            }
            Some(Body::FromClient(v1::FromClient { full_jid, connection, stanza })) => {
                let resource = full_jid_of(&full_jid)?;
                let (stanza, received) = routed(stanza)?;
                Ok(OwnerRecord::FromClient { resource, connection, stanza, received })
            }
            Some(Body::Unbind(v1::Unbind { full_jid, connection, broken })) => {
                let end = if broken { StreamEnd::Broken } else { StreamEnd::Closed };
                Ok(OwnerRecord::Unbind { jid: full_jid_of(&full_jid)?, connection, end })
            }
            Some(Body::ClientEvent(v1::ClientEvent { full_jid, connection, event })) => {
                let event = match event.ok_or(EnvelopeError::Missing("an event"))? {
                    Event::Enable(v1::EnableStreamManagement { resume, max }) => ClientEvent::Enable { resume, max },
                    Event::Acknowledge(h) => ClientEvent::Acknowledge(h),
                    Event::AnswerForEdge(reply) => ClientEvent::AnswerForEdge(reply),
                    Event::Undelivered(stanza) => ClientEvent::Undelivered(stanza),
                    Event::Drained(count) => ClientEvent::Drained(count),
                    Event::ClientActive(active) => ClientEvent::ClientState { active },
                    Event::Synced(v1::Synced { counts, delivered }) => ClientEvent::Synced(Synced {
                        counts: counts.map(|v1::StreamCounts { sent, unacknowledged, handled }| StreamCounts { sent, unacknowledged, handled }),
                        delivered,
                    }),
                };
                Ok(OwnerRecord::ClientEvent { jid: full_jid_of(&full_jid)?, connection, event })
            }
            Some(Body::Resume(v1::Resume { user, previd, h, edge_node, connection })) => {
                let user = Jid::new(&user).ok().filter(Jid::is_bare).ok_or(EnvelopeError::InvalidJid(user))?;
                Ok(OwnerRecord::Resume { user, previd, h, edge: edge_node_of(edge_node)?, connection })
            }
            Some(Body::Deliver(v1::Deliver { stanza, cause })) => {
                let (stanza, received) = routed(stanza)?;
                Ok(OwnerRecord::Deliver { stanza, received, cause })
            }
            Some(Body::Fence(v1::Fence {})) => Ok(OwnerRecord::Fence),
            Some(Body::ComponentBind(v1::ComponentBind { domain, edge_node, connection })) => {
                Ok(OwnerRecord::ComponentBind { domain: domain_of(domain)?, edge: edge_node_of(edge_node)?, connection })
            }
            Some(Body::ComponentUnbind(v1::ComponentUnbind { domain, connection })) => {
                Ok(OwnerRecord::ComponentUnbind { domain: domain_of(domain)?, connection })
            }
            Some(body @ (Body::ToConnection(_) | Body::FanOut(_))) => {
                Err(EnvelopeError::WrongKind { expected: "an owner record", found: kind_of(&body), origin: stamp.node.clone() })
            }
            None => Err(EnvelopeError::Missing("a body")),
        }?;
        Ok((record, stamp))
    }
}

impl EdgeRecord {
    /// The bytes of this record, stamped by `origin`, with the trace context of its cause
    /// (empty: not traced).
    pub fn encode(&self, origin: &Origin, traceparent: String) -> Bytes {
        let mut delivery = None;
        let action = match &self.message {
            ToClient::Stanza(bytes, key) => {
                delivery = *key;
                Action::Stanza(bytes.clone())
            }
            ToClient::Close(error) => Action::Close(error.condition.as_str().to_owned()),
            ToClient::EndStream => Action::EndStream(true),
            ToClient::Enabled(bytes) => Action::Enabled(bytes.clone()),
            ToClient::Sync(jid) => Action::Sync(jid.to_string()),
            ToClient::DrainedAsk(count) => Action::DrainedAsk(*count),
            ToClient::Answer(SessionAnswer::Bound(answers)) => {
                Action::Bound(v1::InlineAnswers { answers: answers.iter().map(|element| Bytes::from(element.to_bytes())).collect() })
            }
            ToClient::Answer(SessionAnswer::Resumed(answer)) => Action::Resumed(match answer {
                Ok((jid, handled)) => v1::ResumeAnswer { full_jid: jid.to_string(), handled: Some(*handled) },
                Err(ResumeFailed { handled }) => v1::ResumeAnswer { full_jid: String::new(), handled: *handled },
            }),
        };
        origin.seal(Body::ToConnection(v1::ToConnection { connection: self.connection, action: Some(action), delivery }), traceparent)
    }

    /// Reads a record of an edge inbox for one connection.
    pub fn decode(bytes: Bytes) -> Result<EdgeRecord, EnvelopeError> {
        match EdgeInbound::decode(bytes)?.inbound {
            EdgeInbound::Connection(record) => Ok(record),
            EdgeInbound::FanOut(_) => Err(EnvelopeError::WrongKind { expected: "ToConnection", found: "FanOut", origin: String::new() }),
        }
    }

    /// A close with a condition this version does not know closes with `undefined-condition`.
    fn from_wire(v1::ToConnection { connection, action, delivery }: v1::ToConnection) -> Result<EdgeRecord, EnvelopeError> {
        let message = match action.ok_or(EnvelopeError::Missing("an action"))? {
            Action::Stanza(bytes) => ToClient::Stanza(bytes, delivery),
            Action::Close(condition) => {
                ToClient::Close(StreamError::new(StreamErrorCondition::parse(&condition).unwrap_or(StreamErrorCondition::UndefinedCondition)))
            }
            Action::EndStream(_) => ToClient::EndStream,
            Action::Enabled(bytes) => ToClient::Enabled(bytes),
            Action::Sync(jid) => ToClient::Sync(full_jid_of(&jid)?),
            Action::DrainedAsk(count) => ToClient::DrainedAsk(count),
            Action::Bound(v1::InlineAnswers { answers }) => {
                ToClient::Answer(SessionAnswer::Bound(answers.iter().map(|bytes| element_of(bytes)).collect::<Result<_, _>>()?))
            }
            Action::Resumed(v1::ResumeAnswer { full_jid, handled }) => ToClient::Answer(SessionAnswer::Resumed(match handled {
                Some(handled) if !full_jid.is_empty() => Ok((full_jid_of(&full_jid)?, handled)),
                _ => Err(ResumeFailed { handled }),
            })),
        };
        Ok(EdgeRecord { connection, message })
    }
}

impl EdgeInbound {
    /// Reads a record of an edge's inbox.
    pub fn decode(bytes: Bytes) -> Result<EdgeInboxRecord, EnvelopeError> {
        let envelope = starling_wire::decode(bytes)?;
        let inbound = match envelope.body.ok_or(EnvelopeError::Missing("a body"))? {
            Body::ToConnection(record) => Ok(EdgeInbound::Connection(EdgeRecord::from_wire(record)?)),
            Body::FanOut(v1::FanOut { stanza, targets }) => {
                let targets = targets
                    .into_iter()
                    .map(|target| Ok(FanOutTarget { connection: target.connection, to: full_jid_of(&target.full_jid)?, delivery: target.delivery }))
                    .collect::<Result<_, EnvelopeError>>()?;
                Ok(EdgeInbound::FanOut(FanOut::new(stanza, targets)?))
            }
            body => Err(EnvelopeError::WrongKind { expected: "an edge record", found: kind_of(&body), origin: envelope.origin_node.clone() }),
        }?;
        Ok(EdgeInboxRecord { inbound, origin: envelope.origin_node, traceparent: envelope.traceparent })
    }
}

impl FanOut {
    /// `stanza`, serialised without a `to`, for `targets`.
    pub fn new(stanza: Bytes, targets: Vec<FanOutTarget>) -> Result<FanOut, EnvelopeError> {
        let name_end = (stanza.first() == Some(&b'<'))
            .then(|| stanza.iter().skip(1).position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>')))
            .flatten()
            .filter(|&length| length > 0)
            .ok_or_else(|| EnvelopeError::InvalidElement("a fan-out stanza is not an element".into()))?;
        Ok(FanOut { stanza, name_end: name_end + 1, targets })
    }

    /// The bytes of this record, stamped by `origin`, with the trace context of its cause
    /// (empty: not traced).
    pub fn encode(&self, origin: &Origin, traceparent: String) -> Bytes {
        let targets = self
            .targets
            .iter()
            .map(|target| v1::FanOutTarget { connection: target.connection, full_jid: target.to.to_string(), delivery: target.delivery })
            .collect();
        origin.seal(Body::FanOut(v1::FanOut { stanza: self.stanza.clone(), targets }), traceparent)
    }

    /// The stanza as written to `to`: its address put in after the element's name.
    pub fn stanza_to(&self, to: &Jid) -> Bytes {
        let mut out = Vec::with_capacity(self.stanza.len() + to.as_str().len() + 7);
        out.extend_from_slice(&self.stanza[..self.name_end]);
        out.extend_from_slice(b" to='");
        starling_xml::escape_attr(&mut out, to.as_str());
        out.push(b'\'');
        out.extend_from_slice(&self.stanza[self.name_end..]);
        Bytes::from(out)
    }
}

fn kind_of(body: &Body) -> &'static str {
    match body {
        Body::Bind(_) => "Bind",
        Body::FromClient(_) => "FromClient",
        Body::Unbind(_) => "Unbind",
        Body::Deliver(_) => "Deliver",
        Body::ToConnection(_) => "ToConnection",
        Body::ClientEvent(_) => "ClientEvent",
        Body::Resume(_) => "Resume",
        Body::Fence(_) => "Fence",
        Body::ComponentBind(_) => "ComponentBind",
        Body::ComponentUnbind(_) => "ComponentUnbind",
        Body::FanOut(_) => "FanOut",
    }
}

/// A domain JID (no localpart, no resource), as components serve.
fn domain_of(domain: String) -> Result<Jid, EnvelopeError> {
    Jid::new(&domain).ok().filter(|jid| jid.node().is_none() && jid.resource().is_none()).ok_or(EnvelopeError::InvalidJid(domain))
}

fn edge_node_of(edge_node: String) -> Result<String, EnvelopeError> {
    if edge_node.is_empty() { Err(EnvelopeError::Missing("an edge node")) } else { Ok(edge_node) }
}

fn element_of(bytes: &[u8]) -> Result<Element, EnvelopeError> {
    Element::parse(bytes).map_err(|error| EnvelopeError::InvalidElement(error.to_string()))
}

/// A full JID (one naming a resource).
fn full_jid_of(text: &str) -> Result<Jid, EnvelopeError> {
    Jid::new(text).ok().filter(|jid| !jid.is_bare()).ok_or_else(|| EnvelopeError::InvalidJid(text.to_owned()))
}

/// A stanza from the bus and when its edge received it.
fn routed(stanza: Option<v1::Stanza>) -> Result<(Stanza, Instant), EnvelopeError> {
    let stanza = stanza.ok_or(EnvelopeError::Missing("a stanza"))?;
    let received = instant_of(stanza.received_us);
    Ok((stanza.into_routed()?, received))
}

/// Microseconds since the epoch at which something that happened at `at` happened. `Instant`s
/// mean nothing on another node; the wall clock does, as far as the nodes' clocks agree.
fn epoch_micros(at: Instant) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(now.saturating_sub(at.elapsed()).as_micros()).unwrap_or(u64::MAX)
}

/// The `Instant` at which something stamped `micros` since the epoch happened (now, if that is
/// later: another node's clock may be ahead).
fn instant_of(micros: u64) -> Instant {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let ago = now.saturating_sub(Duration::from_micros(micros));
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(text: &str) -> Jid {
        Jid::new(text).expect("jid")
    }

    fn chat() -> Stanza {
        let element = starling_xml::Element::parse(
            b"<message xmlns='jabber:client' from='alice@example.com/phone' to='bob@example.com' id='m1' type='chat'><body>hi</body></message>",
        )
        .expect("xml");
        Stanza::from_element(&element).expect("stanza")
    }

    fn assert_same_stanza(left: &Stanza, right: &Stanza) {
        assert_eq!(
            (left.kind, &left.from, &left.to, &left.id, &left.stanza_type, &left.bytes),
            (right.kind, &right.from, &right.to, &right.id, &right.stanza_type, &right.bytes)
        );
    }

    /// Arrival times survive to within clock-reading jitter (they travel as wall-clock micros).
    fn assert_close(left: Instant, right: Instant) {
        let apart = left.checked_duration_since(right).or_else(|| right.checked_duration_since(left)).unwrap_or_default();
        assert!(apart < Duration::from_millis(100), "{apart:?} apart");
    }

    fn raw(body: Option<Body>) -> Bytes {
        starling_wire::encode(&v1::Envelope { origin_node: "evil".into(), origin_seq: 0, traceparent: String::new(), body })
    }

    #[test]
    fn owner_records_round_trip() {
        let origin = Origin::new("edge-1");
        let received = Instant::now() - Duration::from_secs(2);
        let carbons = starling_xml::Element::new("enable", "urn:xmpp:carbons:2");
        let bind = OwnerRecord::Bind { jid: jid("alice@example.com/phone"), edge: "edge-1".into(), connection: 7, inline: vec![carbons.clone()] };
        let OwnerRecord::Bind { jid: bound, edge, connection, inline } = OwnerRecord::decode(bind.encode(&origin)).expect("bind") else { panic!("kind") };
        assert_eq!((bound, edge.as_str(), connection, inline), (jid("alice@example.com/phone"), "edge-1", 7, vec![carbons]));

        let from_client = OwnerRecord::FromClient { resource: jid("alice@example.com/phone"), connection: 7, stanza: chat(), received };
        let OwnerRecord::FromClient { resource, connection, stanza, received: at } = OwnerRecord::decode(from_client.encode(&origin)).expect("from client") else {
            panic!("kind")
        };
        assert_eq!((resource, connection), (jid("alice@example.com/phone"), 7));
        assert_same_stanza(&stanza, &chat());
        assert_close(at, received);

        for end in [StreamEnd::Closed, StreamEnd::Broken] {
            let unbind = OwnerRecord::Unbind { jid: jid("alice@example.com/phone"), connection: 7, end };
            let OwnerRecord::Unbind { jid: unbound, connection, end: ended } = OwnerRecord::decode(unbind.encode(&origin)).expect("unbind") else { panic!("kind") };
            assert_eq!((unbound, connection, ended), (jid("alice@example.com/phone"), 7, end));
        }

        let events = [
            ClientEvent::Enable { resume: true, max: Some(60) },
            ClientEvent::Enable { resume: false, max: None },
            ClientEvent::Acknowledge(0),
            ClientEvent::Acknowledge(u32::MAX),
            ClientEvent::AnswerForEdge(Bytes::from_static(b"<iq type='error'/>")),
            ClientEvent::Undelivered(Bytes::from_static(b"<message to='a@b/c'><body>x</body></message>")),
            ClientEvent::Drained(7),
            ClientEvent::ClientState { active: false },
            ClientEvent::Synced(Synced {
                counts: Some(StreamCounts { sent: u32::MAX, unacknowledged: vec![chat().bytes, Bytes::new()], handled: 3 }),
                delivered: vec![0, u64::MAX, 7],
            }),
            ClientEvent::Synced(Synced { counts: Some(StreamCounts::default()), delivered: Vec::new() }),
            ClientEvent::Synced(Synced::default()),
        ];
        for event in events {
            let record = OwnerRecord::ClientEvent { jid: jid("alice@example.com/phone"), connection: 7, event: event.clone() };
            let OwnerRecord::ClientEvent { jid: from, connection, event: decoded } = OwnerRecord::decode(record.encode(&origin)).expect("event") else { panic!("kind") };
            assert_eq!((from, connection, decoded), (jid("alice@example.com/phone"), 7, event));
        }

        let resume = OwnerRecord::Resume { user: jid("alice@example.com"), previd: "abc".into(), h: 3, edge: "edge-2".into(), connection: 8 };
        let OwnerRecord::Resume { user, previd, h, edge, connection } = OwnerRecord::decode(resume.encode(&origin)).expect("resume") else { panic!("kind") };
        assert_eq!((user, previd.as_str(), h, edge.as_str(), connection), (jid("alice@example.com"), "abc", 3, "edge-2", 8));

        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned();
        let (fence, seq) = OwnerRecord::Fence.encode_numbered(&origin, traceparent.clone());
        let (decoded, stamp) = OwnerRecord::decode_stamped(fence).expect("fence");
        assert!(matches!(decoded, OwnerRecord::Fence));
        assert_eq!(stamp, Stamp { node: origin.node().to_owned(), seq, traceparent });

        let bind = OwnerRecord::ComponentBind { domain: jid("push.example.com"), edge: "edge-1".into(), connection: 1 << 63 };
        let OwnerRecord::ComponentBind { domain, edge, connection } = OwnerRecord::decode(bind.encode(&origin)).expect("component bind") else { panic!("kind") };
        assert_eq!((domain, edge.as_str(), connection), (jid("push.example.com"), "edge-1", 1 << 63));
        let unbind = OwnerRecord::ComponentUnbind { domain: jid("push.example.com"), connection: 5 };
        let OwnerRecord::ComponentUnbind { domain, connection } = OwnerRecord::decode(unbind.encode(&origin)).expect("component unbind") else { panic!("kind") };
        assert_eq!((domain, connection), (jid("push.example.com"), 5));

        for cause in [None, Some(0), Some(u64::MAX)] {
            let deliver = OwnerRecord::Deliver { stanza: chat(), received, cause };
            let (decoded, stamp) = OwnerRecord::decode_stamped(deliver.encode(&origin)).expect("deliver");
            assert_eq!(decoded.cause(&stamp), cause.unwrap_or_else(|| stamp.cause()), "a delivery's cause is the one it carries, else its own");
            let OwnerRecord::Deliver { stanza, received: at, cause: carried } = decoded else { panic!("kind") };
            assert_same_stanza(&stanza, &chat());
            assert_close(at, received);
            assert_eq!(carried, cause);
        }
    }

    #[test]
    fn edge_records_round_trip() {
        let origin = Origin::new("session-1");
        let messages = [
            ToClient::Stanza(chat().bytes, None),
            ToClient::Stanza(chat().bytes, Some(u64::MAX)),
            ToClient::Close(StreamError::new(StreamErrorCondition::Conflict)),
            ToClient::Close(StreamError::new(StreamErrorCondition::PolicyViolation)),
            ToClient::EndStream,
            ToClient::Enabled(Bytes::from_static(b"<enabled xmlns='urn:xmpp:sm:3'/>")),
            ToClient::Sync(jid("alice@example.com/phone")),
            ToClient::DrainedAsk(u64::MAX),
            ToClient::Answer(SessionAnswer::Bound(vec![starling_xml::Element::new("enabled", "urn:xmpp:sm:3")])),
            ToClient::Answer(SessionAnswer::Resumed(Ok((jid("alice@example.com/phone"), 5)))),
            ToClient::Answer(SessionAnswer::Resumed(Err(ResumeFailed { handled: Some(4) }))),
            ToClient::Answer(SessionAnswer::Resumed(Err(ResumeFailed { handled: None }))),
        ];
        for message in messages {
            let decoded = EdgeRecord::decode(EdgeRecord { connection: 9, message: message.clone() }.encode(&origin, String::new())).expect("edge record");
            assert_eq!(decoded.connection, 9);
            match (decoded.message, message) {
                (ToClient::Stanza(left, left_key), ToClient::Stanza(right, right_key)) => assert_eq!((left, left_key), (right, right_key)),
                (ToClient::Close(left), ToClient::Close(right)) => assert_eq!(left.condition, right.condition),
                (ToClient::EndStream, ToClient::EndStream) => {}
                (ToClient::Sync(left), ToClient::Sync(right)) => assert_eq!(left, right),
                (ToClient::DrainedAsk(left), ToClient::DrainedAsk(right)) => assert_eq!(left, right),
                (ToClient::Enabled(left), ToClient::Enabled(right)) => assert_eq!(left, right),
                (ToClient::Answer(SessionAnswer::Bound(left)), ToClient::Answer(SessionAnswer::Bound(right))) => assert_eq!(left, right),
                (ToClient::Answer(SessionAnswer::Resumed(left)), ToClient::Answer(SessionAnswer::Resumed(right))) => assert_eq!(left, right),
                (left, right) => panic!("{left:?} is not {right:?}"),
            }
        }
    }

    #[test]
    fn a_fan_out_record_round_trips_and_puts_each_address_in() {
        let origin = Origin::new("s1");
        let stanza = Bytes::from_static(b"<message xmlns='jabber:client' from='coven@conference.example.com/crone' type='groupchat'><body>hi</body></message>");
        let targets = vec![
            FanOutTarget { connection: 7, to: jid("hag@example.com/o'brien"), delivery: Some(42) },
            FanOutTarget { connection: 9, to: jid("imp@example.com/a"), delivery: None },
        ];
        let EdgeInboxRecord { inbound: EdgeInbound::FanOut(read), .. } =
            EdgeInbound::decode(FanOut::new(stanza, targets.clone()).expect("element").encode(&origin, String::new())).expect("decodes")
        else {
            panic!("kind")
        };
        assert_eq!(read.targets, targets);
        let written = read.stanza_to(&targets[0].to);
        let element = starling_xml::Element::parse(&written).expect("still XML");
        assert_eq!(element.attr("to"), Some("hag@example.com/o'brien"));
        assert_eq!(element.attr("from"), Some("coven@conference.example.com/crone"));
        let empty = FanOut::new(Bytes::from_static(b"<presence/>"), Vec::new()).expect("element");
        assert_eq!(&empty.stanza_to(&targets[1].to)[..], b"<presence to='imp@example.com/a'/>");
        assert!(FanOut::new(Bytes::from_static(b"< message/>"), Vec::new()).is_err(), "no name");
    }

    #[test]
    fn the_origin_stamps_every_record_in_sequence_without_a_trace_yet() {
        let origin = Origin::new("edge-1");
        let records = [
            OwnerRecord::Unbind { jid: jid("a@x/r"), connection: 1, end: StreamEnd::Closed }.encode(&origin),
            EdgeRecord { connection: 1, message: ToClient::EndStream }.encode(&origin, String::new()),
        ];
        let envelopes: Vec<_> = records.into_iter().map(|bytes| starling_wire::decode(bytes).expect("envelope")).collect();
        for envelope in &envelopes {
            assert_eq!((envelope.origin_node.as_str(), envelope.traceparent.as_str()), ("edge-1", ""));
        }
        assert_eq!(envelopes[1].origin_seq, envelopes[0].origin_seq + 1);
        let restarted = Origin::new("edge-1");
        let (_, seq) = OwnerRecord::Fence.encode_numbered(&restarted, String::new());
        assert!(seq > envelopes[1].origin_seq, "a process started later numbers its records after an earlier one's");
    }

    #[test]
    fn corrupt_and_hostile_records_are_refused() {
        let origin = Origin::new("evil");
        let wire_stanza = || v1::Stanza::from_routed(&chat(), 0);
        let from_client = |full_jid: &str, stanza: Option<v1::Stanza>| raw(Some(Body::FromClient(v1::FromClient { full_jid: full_jid.into(), connection: 1, stanza })));

        assert!(matches!(OwnerRecord::decode(Bytes::from_static(b"\xff\xff\xff")), Err(EnvelopeError::Undecodable(_))));
        assert!(matches!(EdgeRecord::decode(Bytes::from_static(b"\x0a\x05ab")), Err(EnvelopeError::Undecodable(_))));
        assert_eq!(OwnerRecord::decode(raw(None)).err(), Some(EnvelopeError::Missing("a body")));
        assert_eq!(EdgeRecord::decode(raw(None)).err(), Some(EnvelopeError::Missing("a body")));
        // A body kind from a newer version (field 30) decodes as no body.
        assert_eq!(OwnerRecord::decode(Bytes::from_static(b"\xf2\x01\x00")).err(), Some(EnvelopeError::Missing("a body")));

        // Addresses: garbage, and a bare JID where a resource is meant.
        assert_eq!(OwnerRecord::decode(from_client("@@", Some(wire_stanza()))).err(), Some(EnvelopeError::InvalidJid("@@".into())));
        assert_eq!(
            OwnerRecord::decode(raw(Some(Body::Unbind(v1::Unbind { full_jid: "alice@example.com".into(), connection: 1, broken: false })))).err(),
            Some(EnvelopeError::InvalidJid("alice@example.com".into()))
        );
        let bind = |full_jid: &str, edge: &str, inline: &'static [u8]| {
            let inline = if inline.is_empty() { Vec::new() } else { vec![Bytes::from_static(inline)] };
            raw(Some(Body::Bind(v1::Bind { full_jid: full_jid.into(), edge_node: edge.into(), connection: 1, inline })))
        };
        assert_eq!(OwnerRecord::decode(bind("alice@example.com", "edge-1", b"")).err(), Some(EnvelopeError::InvalidJid("alice@example.com".into())));
        assert_eq!(OwnerRecord::decode(bind("alice@example.com/phone", "", b"")).err(), Some(EnvelopeError::Missing("an edge node")));
        assert!(matches!(OwnerRecord::decode(bind("alice@example.com/phone", "edge-1", b"<enable")), Err(EnvelopeError::InvalidElement(_))));
        let resume = |user: &str| raw(Some(Body::Resume(v1::Resume { user: user.into(), previd: "x".into(), h: 0, edge_node: "e".into(), connection: 1 })));
        assert_eq!(OwnerRecord::decode(resume("alice@example.com/phone")).err(), Some(EnvelopeError::InvalidJid("alice@example.com/phone".into())));
        let event = raw(Some(Body::ClientEvent(v1::ClientEvent { full_jid: "alice@example.com/phone".into(), connection: 1, event: None })));
        assert_eq!(OwnerRecord::decode(event).err(), Some(EnvelopeError::Missing("an event")));
        let mut bad_from = wire_stanza();
        bad_from.from = "a@b@c/\u{0}".into();
        assert!(matches!(OwnerRecord::decode(raw(Some(Body::Deliver(v1::Deliver { stanza: Some(bad_from), cause: None })))), Err(EnvelopeError::InvalidJid(_))));
        let mut bad_to = wire_stanza();
        bad_to.to = "@example.com".into();
        assert!(matches!(OwnerRecord::decode(from_client("alice@example.com/phone", Some(bad_to))), Err(EnvelopeError::InvalidJid(_))));

        // Missing stanza, unknown stanza kind.
        assert_eq!(OwnerRecord::decode(from_client("alice@example.com/phone", None)).err(), Some(EnvelopeError::Missing("a stanza")));
        assert_eq!(OwnerRecord::decode(raw(Some(Body::Deliver(v1::Deliver { stanza: None, cause: None })))).err(), Some(EnvelopeError::Missing("a stanza")));
        let mut unknown_kind = wire_stanza();
        unknown_kind.kind = 9;
        assert_eq!(OwnerRecord::decode(raw(Some(Body::Deliver(v1::Deliver { stanza: Some(unknown_kind), cause: None })))).err(), Some(EnvelopeError::UnknownStanzaKind(9)));

        // Records for the other side.
        let to_edge = EdgeRecord { connection: 1, message: ToClient::EndStream }.encode(&origin, String::new());
        assert_eq!(
            OwnerRecord::decode(to_edge).err(),
            Some(EnvelopeError::WrongKind { expected: "an owner record", found: "ToConnection", origin: "evil".into() })
        );
        let to_owner = OwnerRecord::Unbind { jid: jid("a@x/r"), connection: 1, end: StreamEnd::Closed }.encode(&origin);
        assert_eq!(
            EdgeRecord::decode(to_owner).err(),
            Some(EnvelopeError::WrongKind { expected: "an edge record", found: "Unbind", origin: "evil".into() })
        );
        let not_an_element = raw(Some(Body::FanOut(v1::FanOut { stanza: Bytes::from_static(b"hello"), targets: Vec::new() })));
        assert!(matches!(EdgeInbound::decode(not_an_element), Err(EnvelopeError::InvalidElement(_))));
        let bare_target = v1::FanOutTarget { connection: 1, full_jid: "a@x".into(), delivery: None };
        let bare = raw(Some(Body::FanOut(v1::FanOut { stanza: Bytes::from_static(b"<message/>"), targets: vec![bare_target] })));
        assert_eq!(EdgeInbound::decode(bare).err(), Some(EnvelopeError::InvalidJid("a@x".into())));
        assert_eq!(
            EdgeRecord::decode(raw(Some(Body::ToConnection(v1::ToConnection { connection: 1, action: None, delivery: None })))).err(),
            Some(EnvelopeError::Missing("an action"))
        );
    }

    #[test]
    fn an_unknown_close_condition_still_closes() {
        let record = raw(Some(Body::ToConnection(v1::ToConnection { connection: 3, action: Some(Action::Close("from-the-future".into())), delivery: None })));
        let EdgeRecord { connection, message: ToClient::Close(error) } = EdgeRecord::decode(record).expect("edge record") else { panic!("kind") };
        assert_eq!((connection, error.condition), (3, StreamErrorCondition::UndefinedCondition));
    }

    #[test]
    fn arrival_times_from_a_clock_ahead_are_now() {
        let ahead = epoch_micros(Instant::now()) + 60_000_000;
        let before = Instant::now();
        assert!(instant_of(ahead) >= before);
    }
}
