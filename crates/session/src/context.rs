//! What every actor shares: the domain, the stores, configuration, metrics, the archive writer,
//! what the server advertises, and — behind traits, so that this module depends on none of them —
//! the way to route a stanza and, in a cluster, the registry of routes.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use starling_cluster::gateway::ClientLink;
use starling_cluster::registry::ResourceRoute;
use starling_cluster::store::Store;
use starling_protocol::payload::DiscoInfoResult;
use starling_protocol::{Hosts, Jid, Stanza};
use starling_telemetry::Metrics;

use crate::archive_writer::ArchiveWriter;
use crate::config::SessionConfig;

/// Where a stanza goes once it leaves an actor: a local user, a local service, an external
/// component or a remote domain, decided by its `to` (the host router).
pub(crate) trait Router: Send + Sync {
    /// Routes `stanza`; the stanza back when its destination cannot take it now (it is too far
    /// behind): the caller tells the sender to retry (RFC 6120 §8.3.3.18).
    fn route(&self, stanza: Stanza, received: Instant) -> Result<(), Box<Stanza>>;

    /// Removes the actor of `jid` whose pending counter is `pending` from the directory, if
    /// nothing is pending for it; whether it may stop. The router owns the directory, so an
    /// actor retires through it.
    fn retire(&self, jid: &Jid, pending: &Arc<AtomicUsize>) -> bool;
}

/// In a cluster: the registry's record of which edge connection each resource is on, so that a
/// next owner of the user can take the resources over.
#[async_trait]
pub(crate) trait ClusterRoutes: Send + Sync {
    /// Records (or updates) the route of one resource of `user`.
    async fn record(&self, user: &Jid, route: ResourceRoute);
    /// Removes the route of a resource that went away.
    async fn withdraw(&self, user: &Jid, resource: &str, connection: u64);
    /// The routes an earlier owner recorded, each with a link to its connection.
    async fn restore(&self, user: &Jid, client_queue: usize) -> Vec<(ResourceRoute, ClientLink)>;
    /// The routes of `user`'s resources bound now; `None` when the registry cannot tell.
    async fn routes(&self, user: &Jid) -> Option<Vec<ResourceRoute>>;
    /// Sends `stanza` (serialised without a `to`) to several connections of `edge` in one record;
    /// the targets back when the bus cannot take it now.
    fn fan_out(&self, edge: &str, stanza: Bytes, targets: Vec<(u64, Jid)>) -> Result<(), Vec<(u64, Jid)>>;
    /// Records (or updates) the occupant `nick` of `room` (a record of the MUC module's).
    async fn record_occupant(&self, room: &Jid, nick: &str, record: &[u8]);
    /// Removes the occupant `nick` of `room`.
    async fn withdraw_occupant(&self, room: &Jid, nick: &str);
    /// The occupants of `room` an earlier owner recorded, as `(nick, record)`; `None` when the
    /// registry cannot be read.
    async fn occupants(&self, room: &Jid) -> Option<Vec<(String, Vec<u8>)>>;
}

/// What disco#info answers for the server and for every account, as the registered modules
/// declared it (features sorted, as XEP-0115 §5.1 hashes them), and the service domains
/// disco#items lists.
#[derive(Debug, Clone, Default)]
pub(crate) struct Advertised {
    pub server: DiscoInfoResult,
    pub account: DiscoInfoResult,
    /// The domains of local services (`conference.example.com` …): each of a served domain, or
    /// of all of them (`None`: the edges' upload and bytestreams services).
    pub service_domains: Vec<(Option<Jid>, Jid)>,
}

impl Advertised {
    /// The local services disco#items of `host` lists.
    pub fn services_of<'a>(&'a self, host: &'a Jid) -> impl Iterator<Item = &'a Jid> {
        self.service_domains.iter().filter(move |(of, _)| of.as_ref().is_none_or(|of| of == host)).map(|(_, service)| service)
    }
}

pub(crate) struct Services {
    /// The served domains (virtual hosts).
    pub hosts: Hosts,
    pub store: Store,
    pub config: SessionConfig,
    pub metrics: Arc<Metrics>,
    /// `None` when archiving is off.
    pub archive_writer: Option<ArchiveWriter>,
    pub advertised: Advertised,
    /// Set when this node serves owner partitions of a cluster; unset in one process.
    pub cluster: OnceLock<Arc<dyn ClusterRoutes>>,
    pub started: SystemTime,
}
