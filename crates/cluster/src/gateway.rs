//! The hand-off between a client connection (edge) and the session layer: the edge binds a
//! resource, submits the client's stanzas, and receives what the session layer sends back through
//! a bounded queue. In one process the session layer is the local actor system; in a cluster it
//! is a remote session node reached through the bus.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;
use starling_protocol::{Jid, Stanza, StreamError};
use starling_xml::Element;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::hold::{Hold, LinkHolds};
pub use crate::window::Window;

/// What the session layer sends down to one client connection.
#[derive(Debug, Clone)]
pub enum ToClient {
    /// Bytes to write as they are (a complete stanza), with the key of the delivery in a cluster
    /// (see [`DeliveryKey`]).
    Stanza(Bytes, Option<DeliveryKey>),
    /// Close the stream with this error (e.g. `conflict` when another login took the resource).
    Close(StreamError),
    /// Close the stream without an error (the client closed its side).
    EndStream,
    /// XEP-0198 `<enabled/>`, written as it is: the stanzas after it are counted.
    Enabled(Bytes),
    /// In a cluster, where the edge's requests are records: the owner's answer to a bind with
    /// inline requests or to a resumption, queued before anything else for the connection.
    Answer(SessionAnswer),
    /// In a cluster: a new owner asks the edge where the connection of this resource stands,
    /// which the edge answers with [`ClientEvent::Synced`] (or, if the connection is gone, with an
    /// unbind). Queued first on the new owner's link.
    Sync(Jid),
    /// In a cluster, flow control: once what the owner's link sent before this is written to the
    /// client, the edge tells the owner [`ClientEvent::Drained`] with this number.
    DrainedAsk(u64),
}

/// Identifies one delivery to one connection in a cluster: a hash of what caused it (the edge
/// record that started the chain, see `envelope::Stamp::cause`) and of the bytes delivered. A
/// record replayed after its owner died causes the same deliveries with the same keys, so the
/// edge's latest keys tell a new owner what its predecessor already delivered.
pub type DeliveryKey = u64;

/// Delivery keys an edge keeps per connection. A new owner replays what its predecessor handled
/// but had not committed — about one commit interval (100 ms) of the partition's records — and
/// nothing reaches the connection between its predecessor's death and its `sync`, so the last few
/// deliveries to a connection are what a replay repeats.
pub const DELIVERIES_REMEMBERED: usize = 64;

/// The owner's answer to a request of the edge that waits for one.
#[derive(Debug, Clone)]
pub enum SessionAnswer {
    /// The answers to a Bind2 bind's inline requests.
    Bound(Vec<Element>),
    /// The resumed resource and the count of the client's stanzas handled, or why not.
    Resumed(Result<(Jid, u32), ResumeFailed>),
}

/// What a client tells the server about its stream that its session acts on, in the order of
/// its stanzas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// `<enable/>`, with `resume` and `max` as the client asked (XEP-0198).
    Enable { resume: bool, max: Option<u32> },
    /// `<a h='…'/>`.
    Acknowledge(u32),
    /// The edge answered a stanza of the client itself: count it handled and send this.
    AnswerForEdge(Bytes),
    /// XEP-0352 `<active/>` (true) or `<inactive/>`.
    ClientState { active: bool },
    /// The edge's answer to [`ToClient::Sync`].
    Synced(Synced),
    /// In a cluster: a stanza the edge could not write to a connection without stream
    /// management (it cut a slow reader, or the connection is gone), handed back to the owner.
    Undelivered(Bytes),
    /// The answer to a [`ToClient::DrainedAsk`]: the owner's link may send that many items
    /// more than it has before the client falls behind (see [`Window`]).
    Drained(u64),
}

/// Where a connection stood when a new owner's [`ToClient::Sync`] reached its edge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Synced {
    /// The counts of a stream-managed stream; `None` without stream management.
    pub counts: Option<StreamCounts>,
    /// The keys of the latest deliveries written to the connection, oldest first.
    pub delivered: Vec<DeliveryKey>,
}

/// What an edge counted on a stream-managed stream when a new owner's [`ToClient::Sync`] reached
/// it, for the new owner to go on from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamCounts {
    /// Stanzas queued to the client since `<enabled/>`, wrapping at 2^32.
    pub sent: u32,
    /// What of it the client has not acknowledged, oldest first.
    pub unacknowledged: Vec<Bytes>,
    /// The client's stanzas handed to the owners, wrapping.
    pub handled: u32,
}

/// Stanzas queued toward one client by default before it counts as too slow (`[c2s]
/// client_queue`): the edge sizes its connection queues with it, a session node its links to
/// connections on edges. A login is a burst the client cannot have read yet: its contacts'
/// presence, each contact's last PEP items (a few nodes each), up to `max_offline_per_user`
/// offline messages. Measured (loadtest `pep-login`): with 1,000 contacts one node each, 1,024
/// cut off one login in twenty; 8,192 holds a user with 1,000 contacts and three wanted nodes
/// each plus a full offline queue, at a few MB for a client that really stopped reading.
pub const DEFAULT_CLIENT_QUEUE: usize = 8192;

/// The way back to one client connection. The queue is bounded: a client that reads slower than it
/// is written to fills it, and the session layer then closes that connection (`policy-violation`)
/// instead of buffering without end.
#[derive(Clone)]
pub struct ClientLink {
    /// Unique per process; tells a stale unbind from the current connection's.
    pub connection_id: u64,
    /// Read by the edge (or, in a cluster, by the carrier to the edge's inbox); the session layer
    /// queues through [`try_send`](Self::try_send).
    pub sender: mpsc::Sender<ToClient>,
    /// In a cluster: the holds of the records whose stanzas on this link are not yet on the
    /// edge's inbox.
    holds: Option<Arc<LinkHolds>>,
    /// In a cluster: how far ahead of what the client has read the link's carrier may send.
    window: Option<Arc<Window>>,
}

impl ClientLink {
    pub fn new(connection_id: u64, sender: mpsc::Sender<ToClient>) -> ClientLink {
        ClientLink { connection_id, sender, holds: None, window: None }
    }

    /// A link whose carrier keeps what `holds` counts until the items are durable, and sends no
    /// further ahead of the client than `window` lets it (a component's link has none).
    pub fn held(connection_id: u64, sender: mpsc::Sender<ToClient>, holds: Arc<LinkHolds>, window: Option<Arc<Window>>) -> ClientLink {
        ClientLink { connection_id, sender, holds: Some(holds), window }
    }

    /// The edge wrote the link's items up to `count` to the client ([`ClientEvent::Drained`]).
    pub fn drained(&self, count: u64) {
        if let Some(window) = &self.window {
            window.drained(count);
        }
    }

    /// Queues `message` without waiting. In a cluster, `hold` (the record being handled) stays
    /// due until the carrier has the message on the edge's inbox.
    pub fn try_send(&self, message: ToClient, hold: Option<&Hold>) -> Result<(), TrySendError<ToClient>> {
        match &self.holds {
            Some(holds) => holds.queue(hold, || self.sender.try_send(message)),
            None => self.sender.try_send(message),
        }
    }
}

impl ClientLink {
    /// Gives the connection up as too slow to read. Dropping a local link closes the queue the
    /// edge reads, which ends the stream; a link to another node's edge is told so explicitly
    /// by its carrier once the queue drains.
    pub fn abandon(self) {
        if let Some(holds) = &self.holds {
            holds.abandon();
        }
    }
}

impl std::fmt::Debug for ClientLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLink").field("connection_id", &self.connection_id).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GatewayError {
    /// The session is gone (its owner stopped or the resource was taken over).
    #[error("session closed")]
    Closed,
    /// The session layer cannot take the request now; the client may retry.
    #[error("session layer unavailable: {0}")]
    Unavailable(String),
}

/// A resource name for a client that asked the server to choose (RFC 6120 §7.6): unique in this
/// process by a counter, and across processes by a random suffix.
pub fn server_chosen_resource() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("starling-{n:x}{:08x}", rand::random::<u32>())
}

/// `[sm]`: XEP-0198 stream management, read by the edge (what it offers, when it asks for
/// acks) and the session layer (how long a broken stream's session waits to be resumed, how many
/// unacknowledged stanzas it keeps).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmConfig {
    pub enabled: bool,
    /// Seconds a session whose stream broke waits for the client to resume it; also the most a
    /// client may ask for with `max`.
    pub resume_timeout_seconds: u64,
    /// Stanzas sent and not yet acknowledged that a session keeps; beyond it the stream is closed
    /// (`policy-violation`) and they go to offline storage.
    pub max_unacked: usize,
    /// The server asks for an ack (`<r/>`) after this many stanzas since the last ack…
    pub request_ack_every: u32,
    /// …or this many seconds after an unacknowledged stanza was sent.
    pub request_ack_after_seconds: u64,
}

impl Default for SmConfig {
    fn default() -> Self {
        SmConfig { enabled: true, resume_timeout_seconds: 300, max_unacked: 5000, request_ack_every: 10, request_ack_after_seconds: 30 }
    }
}

impl SmConfig {
    /// How long a broken stream's session waits when the client asked for `max` seconds.
    pub fn resume_timeout(&self, max: Option<u32>) -> Duration {
        let seconds = max.map_or(self.resume_timeout_seconds, |max| u64::from(max).min(self.resume_timeout_seconds));
        Duration::from_secs(seconds)
    }

    pub fn request_ack_after(&self) -> Duration {
        Duration::from_secs(self.request_ack_after_seconds)
    }
}

/// The way to an external component (XEP-0114) serving a domain of its own.
pub trait ComponentLink: Send + Sync {
    /// The stanza back when the component cannot take it now.
    fn send(&self, stanza: Stanza) -> Result<(), Box<Stanza>>;
}

/// Binds client resources to sessions, and connects external components to the router.
#[async_trait]
pub trait Gateway: Send + Sync + 'static {
    /// Binds `resource` (or a server-chosen one when `None`) for the bare JID `user`. An existing
    /// session with the same resource is closed with `conflict` (RFC 6120 §7.7.2.2, "override").
    /// `inline` are the session features a Bind2 client asks to have from the start (XEP-0386),
    /// each its request element (`<enable xmlns='urn:xmpp:carbons:2'/>` …); they are applied
    /// with the bind, before anything else reaches the session, and those not in
    /// [`inline_features`](Self::inline_features) are ignored.
    async fn bind(&self, user: Jid, resource: Option<String>, link: ClientLink, inline: Vec<Element>) -> Result<Binding, GatewayError>;

    /// The namespaces of the session features [`bind`](Self::bind) can apply inline, as Bind2
    /// advertises them.
    fn inline_features(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Whether sessions keep what they send until it is acknowledged, so that the edge may offer
    /// stream management (XEP-0198).
    fn supports_stream_management(&self) -> bool {
        false
    }

    /// Whether sessions act on client state indication (XEP-0352).
    fn supports_client_state(&self) -> bool {
        false
    }

    /// Whether sessions live on when this process stops (on session nodes of a cluster): then a
    /// stream the edge ends as it drains can be resumed elsewhere (XEP-0198); in one process
    /// its session ends with it.
    fn sessions_outlive_the_edge(&self) -> bool {
        false
    }

    /// An external component (XEP-0114) now serves `domain`: stanzas to it go to `link`,
    /// instead of to an earlier connection's.
    fn attach_component(&self, _domain: &Jid, _link: Arc<dyn ComponentLink>) -> Result<(), GatewayError> {
        Err(GatewayError::Unavailable("external components are not supported".into()))
    }

    /// The component connection `link` for `domain` ended; a newer connection for it stays.
    fn detach_component(&self, _domain: &Jid, _link: &Arc<dyn ComponentLink>) {}

    /// Federation (s2s) now carries stanzas for every domain that is not served here, nor a
    /// component's: they go to `link` instead of being answered `remote-server-not-found`.
    fn attach_federation(&self, _link: Arc<dyn ComponentLink>) -> Result<(), GatewayError> {
        Err(GatewayError::Unavailable("federation is not supported by this gateway".into()))
    }

    /// Routes a stanza whose `from` the caller vouches for: a component's (checked to be the
    /// component's domain), or the server's own (the admin API's orders and messages).
    fn route_vouched(&self, _stanza: Stanza) -> Result<(), GatewayError> {
        Err(GatewayError::Unavailable("external components are not supported".into()))
    }

    /// Resumes the stream-managed session `previd` of `user` on a new connection (XEP-0198 §5):
    /// the session acknowledges up to `h`, then queues every stanza the client has not
    /// acknowledged to `link` (the edge writes `<resumed/>` before them).
    async fn resume(&self, _user: Jid, _previd: &str, _h: u32, _link: ClientLink) -> Result<Resumed, ResumeFailed> {
        Err(ResumeFailed { handled: None })
    }
}

/// A bound resource, and the answers to the inline requests of its bind (for Bind2's
/// `<bound/>`, e.g. stream management's `<enabled/>`).
pub struct Binding {
    pub session: Box<dyn BoundSession>,
    pub inline_answers: Vec<Element>,
}

/// A resumed session, and the count of the client's stanzas it had handled (where the edge's
/// count goes on from).
pub struct Resumed {
    pub session: Box<dyn BoundSession>,
    pub handled: u32,
}

/// No session to resume (unknown, another user's, or expired): `item-not-found`, with the count
/// of the client's stanzas handled when the session is still remembered (XEP-0198 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeFailed {
    pub handled: Option<u32>,
}

/// How a bound stream ended, as its session needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// Closed on purpose (by the client or with a stream error): the session ends.
    Closed,
    /// The connection broke: a stream-managed session waits to be resumed.
    Broken,
}

/// One bound resource, as seen from its connection.
#[async_trait]
pub trait BoundSession: Send {
    /// The full JID that was bound.
    fn jid(&self) -> &Jid;

    /// Hands over a stanza the client sent (its `from` already stamped). Waits when the session is
    /// busy: that wait is the backpressure that slows a fast sender down.
    async fn submit(&mut self, stanza: Stanza, received: Instant) -> Result<(), GatewayError>;

    /// Turns stream management on (XEP-0198 §3): the session queues `<enabled/>` and from then
    /// on counts the client's stanzas it handles and keeps what it sends until acknowledged.
    /// `resume` asks for a resumable session, `max` for the seconds it may wait.
    async fn enable_stream_management(&mut self, _resume: bool, _max: Option<u32>) -> Result<(), GatewayError> {
        Err(GatewayError::Unavailable("stream management is not supported".into()))
    }

    /// The client acknowledged `h` stanzas (`<a/>`). One more than were sent closes the stream
    /// (`undefined-condition`, XEP-0198 §4).
    async fn acknowledge(&mut self, _h: u32) -> Result<(), GatewayError> {
        Ok(())
    }

    /// Under stream management: the edge answered one of the client's stanzas itself (an
    /// addressing error). The session counts it as handled and sends `reply` as it sends
    /// everything, so that both counts stay true.
    async fn answer_for_edge(&mut self, _reply: Bytes) -> Result<(), GatewayError> {
        Err(GatewayError::Unavailable("stream management is not supported".into()))
    }

    /// The client said it is active (`true`) or inactive (XEP-0352): while inactive, what can
    /// wait is held.
    async fn set_client_state(&mut self, _active: bool) -> Result<(), GatewayError> {
        Err(GatewayError::Unavailable("client state indication is not supported".into()))
    }

    /// The connection ended: the resource goes unavailable, unless the stream broke and its
    /// session waits to be resumed.
    async fn unbind(self: Box<Self>, end: StreamEnd);

    /// In a cluster: what the connection's writer calls with the number of a
    /// [`ToClient::DrainedAsk`] once it has written everything queued before it.
    fn drain_reports(&self) -> Option<DrainReports> {
        None
    }
}

/// Tells a connection's owner how far its writer got (see [`BoundSession::drain_reports`]).
pub type DrainReports = Arc<dyn Fn(u64) + Send + Sync>;
