//! What actors are sent: the edge-side events of a user's resources, stanzas for any actor, and
//! the cluster's orders.

use std::time::Instant;

use actix::Message;
use starling_cluster::gateway::{ClientEvent, ClientLink, ResumeFailed, StreamEnd};
use starling_cluster::hold::Hold;
use starling_protocol::{Jid, Stanza};
use starling_xml::Element;

/// Where an actor's answer to the edge goes: to the waiting caller in one process, onto the
/// connection (before anything else for it) in a cluster.
pub(crate) type Reply<T> = Box<dyn FnOnce(T) + Send>;

/// Bind a resource, with the Bind2 inline requests to apply at once; `reply` gets their answers
/// once it is bound.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Bind {
    pub jid: Jid,
    pub link: ClientLink,
    /// The edge node holding the connection, in a cluster.
    pub edge: Option<String>,
    pub inline: Vec<Element>,
    pub reply: Reply<Vec<Element>>,
    /// The bus record it came from, in a cluster.
    pub hold: Option<Hold>,
}

/// The connection of a resource ended.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Unbind {
    pub jid: Jid,
    /// Which connection ended: a resource taken over by a newer login is not unbound by the old one.
    pub connection_id: u64,
    pub end: StreamEnd,
    /// Sent through the directory (counted as pending), as records from the bus are.
    pub counted: bool,
    /// The bus record it came from, in a cluster.
    pub hold: Option<Hold>,
}

/// What the client of the resource bound on `connection_id` told the edge about its stream.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ConnectionEvent {
    pub jid: Jid,
    pub connection_id: u64,
    pub event: ClientEvent,
    /// Sent through the directory (counted as pending), as records from the bus are.
    pub counted: bool,
    /// The bus record it came from, in a cluster.
    pub hold: Option<Hold>,
}

/// Resume the stream-managed session `previd` of this user on `link`; `reply` gets the resource
/// and the count of the client's stanzas handled.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Resume {
    pub previd: String,
    pub h: u32,
    pub link: ClientLink,
    /// The edge holding the new stream, in a cluster: the route names it from now on.
    pub edge: Option<String>,
    pub reply: Reply<Result<(Jid, u32), ResumeFailed>>,
    /// The bus record it came from, in a cluster.
    pub hold: Option<Hold>,
}

/// A stanza one of this user's resources sent.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct FromClient {
    pub resource: Jid,
    pub stanza: Stanza,
    pub received: Instant,
    /// Sent through the directory (counted as pending), as records from the bus are.
    pub counted: bool,
    /// The bus record it came from, in a cluster.
    pub hold: Option<Hold>,
}

/// A stanza addressed to this user (bare or full JID).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Inbound {
    pub stanza: Stanza,
    pub received: Instant,
    /// The bus record whose handling sent it, in a cluster.
    pub hold: Option<Hold>,
}

/// Record every resource's route in the registry again (it lost them).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct RepublishRoutes;

/// The process stops and nothing lives on (one process): every resource, bound or detached, ends
/// as if its stream closed, so what its client never acknowledged is kept offline.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct EndSessions;

/// The user's resources as they stand (for the admin API).
#[derive(Message)]
#[rtype(result = "Vec<crate::layer::ResourceSummary>")]
pub(crate) struct ListResources;

/// Answered once the work of every message the actor took before it is done (an actor's work
/// runs in turn).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Settle;

/// Stop now: the user's partition moved to another node, which rebuilds the state from the stores
/// and the registry.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Stop;
