//! Where each user's actor lives, and the gateway the edge binds through.
//!
//! Every delivery to a user goes through [`Directory::deliver`], which holds the shard lock while it
//! enqueues and counts the message as pending for that actor. An idle actor removes itself only under
//! the same lock and only with nothing pending, so no message can reach an actor that is stopping and
//! there is never more than one actor per bare JID.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use actix::{Actor, Addr, Arbiter, ArbiterHandle};
use async_trait::async_trait;
use starling_cluster::gateway::{server_chosen_resource, BoundSession, ClientLink, Gateway, GatewayError};
use starling_cluster::store::Store;
use starling_protocol::{Jid, Stanza, StanzaKind};
use starling_telemetry::Metrics;

use crate::actor::{Bind, FromClient, Inbound, UserActor};
use crate::archive_writer::ArchiveWriter;
use crate::owner::ClusterSide;
use crate::config::SessionConfig;

const SHARDS: usize = 64;

/// Messages that may wait for one actor before further deliveries to it are refused.
pub(crate) const MAX_PENDING: usize = 4096;

/// A live actor and the number of messages enqueued for it but not yet taken.
#[derive(Clone)]
pub(crate) struct Entry {
    pub addr: Addr<UserActor>,
    pub pending: Arc<AtomicUsize>,
}

/// What every actor shares: configuration, stores, metrics and the directory itself.
pub(crate) struct Services {
    pub domain: Jid,
    pub store: Store,
    pub config: SessionConfig,
    pub metrics: Arc<Metrics>,
    /// `None` when archiving is off.
    pub archive_writer: Option<ArchiveWriter>,
    /// Set when this node serves owner partitions of a cluster; unset in one process.
    pub cluster: OnceLock<Arc<ClusterSide>>,
    pub started: SystemTime,
    shards: Vec<Mutex<HashMap<Jid, Entry>>>,
    arbiters: Vec<ArbiterHandle>,
    hasher: std::collections::hash_map::RandomState,
}

impl Services {
    fn shard_of(&self, user: &Jid) -> usize {
        self.hasher.hash_one(user) as usize
    }

    /// Enqueues `stanza` for the user `to.bare()`, starting that user's actor if needed. Presence
    /// broadcasts to a user without an actor are dropped: no actor means no resource to show them
    /// to, and starting one per offline contact would make every broadcast cost a store read each.
    ///
    /// Refused when the recipient already has [`MAX_PENDING`] messages waiting: its mailbox is the
    /// one queue a fast sender could otherwise grow without end. The caller answers the sender.
    ///
    /// In a cluster, a stanza for a user of a partition another node owns goes onto the bus.
    pub fn deliver(self: &Arc<Self>, stanza: Stanza, received: Instant) -> Result<(), Box<Stanza>> {
        let Some(to) = stanza.to.as_ref() else { return Ok(()) };
        if let Some(cluster) = self.cluster.get()
            && let Some(partition) = cluster.owner_elsewhere(&to.bare())
        {
            return cluster.forward(partition, stanza, received);
        }
        self.deliver_here(stanza, received)
    }

    /// [`deliver`](Self::deliver) to an actor of this node.
    pub fn deliver_here(self: &Arc<Self>, stanza: Stanza, received: Instant) -> Result<(), Box<Stanza>> {
        let Some(to) = stanza.to.as_ref() else { return Ok(()) };
        let user = to.bare();
        let broadcast = stanza.kind == StanzaKind::Presence && (stanza.stanza_type.is_none() || stanza.type_is("unavailable"));
        let mut shard = self.shard(&user);
        let entry = match shard.get(&user) {
            Some(entry) => entry,
            None if broadcast => return Ok(()),
            None => shard.entry(user.clone()).or_insert_with(|| self.spawn(&user)),
        };
        if entry.pending.load(Ordering::Acquire) >= MAX_PENDING {
            self.metrics.deliveries_refused.inc();
            return Err(Box::new(stanza));
        }
        entry.pending.fetch_add(1, Ordering::AcqRel);
        entry.addr.do_send(Inbound { stanza, received, hold: crate::owner::current_hold() });
        Ok(())
    }

    fn shard(&self, user: &Jid) -> std::sync::MutexGuard<'_, HashMap<Jid, Entry>> {
        self.shards[self.shard_of(user) % SHARDS].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `send` with the user's actor under the shard lock, counting one pending message.
    pub fn with_actor<R>(self: &Arc<Self>, user: &Jid, send: impl FnOnce(&Entry) -> R) -> R {
        let mut shard = self.shard(user);
        let entry = shard.entry(user.clone()).or_insert_with(|| self.spawn(user));
        entry.pending.fetch_add(1, Ordering::AcqRel);
        send(entry)
    }

    /// Starts the actor of `user` on the arbiter its hash picks.
    fn spawn(self: &Arc<Self>, user: &Jid) -> Entry {
        let services = self.clone();
        let pending = Arc::new(AtomicUsize::new(0));
        let actor_pending = pending.clone();
        let owner = user.clone();
        let arbiter = &self.arbiters[(self.shard_of(user) / SHARDS) % self.arbiters.len()];
        let addr = UserActor::start_in_arbiter(arbiter, move |_| UserActor::new(owner, services, actor_pending));
        Entry { addr, pending }
    }

    /// Stops the actors of every user whose partition (of `partitions` in all) is in `moved`.
    pub fn stop_partitions(&self, moved: &[u32], partitions: u32) {
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            shard.retain(|user, entry| {
                let keep = !moved.contains(&starling_cluster::bus::partition_of(user.as_str(), partitions));
                if !keep {
                    entry.addr.do_send(crate::actor::Stop);
                }
                keep
            });
        }
    }

    /// Asks every actor to record its resources' routes again.
    pub fn republish_routes(&self) {
        for shard in &self.shards {
            for entry in shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).values() {
                entry.addr.do_send(crate::actor::RepublishRoutes);
            }
        }
    }

    /// Removes the user's actor if it is `addr` and nothing is pending for it. Returns whether the
    /// actor may stop.
    pub fn retire(&self, user: &Jid, addr: &Addr<UserActor>) -> bool {
        let mut shard = self.shard(user);
        match shard.get(user) {
            Some(entry) if entry.addr == *addr && entry.pending.load(Ordering::Acquire) == 0 => {
                shard.remove(user);
                true
            }
            _ => false,
        }
    }
}

/// The in-process session layer. Cheap to clone.
#[derive(Clone)]
pub struct SessionLayer {
    services: Arc<Services>,
}

impl SessionLayer {
    /// Starts the arbiters and the archive writer. Must run inside an actix `System` on tokio.
    pub fn start(domain: Jid, store: Store, config: SessionConfig, metrics: Arc<Metrics>) -> SessionLayer {
        let arbiters = (0..config.arbiters.max(1)).map(|_| Arbiter::new().handle()).collect();
        let shards = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        let archive_writer = config.archive.as_ref().map(|archive| ArchiveWriter::start(store.archive.clone(), &archive.writer, metrics.clone()));
        let services = Services {
            domain,
            store,
            config,
            metrics,
            archive_writer,
            cluster: OnceLock::new(),
            started: SystemTime::now(),
            shards,
            arbiters,
            hasher: Default::default(),
        };
        SessionLayer { services: Arc::new(services) }
    }

    /// Makes this node a session node of a cluster: joins the owners' group on `bus` as `node` and
    /// serves the records of the partitions it is given until the bus fails, recording the
    /// users' routes in `registry` (from where a next owner restores them). It heartbeats there
    /// (dead after `node_ttl` of silence) and reaps the resources of edges that stopped.
    pub async fn serve_owner_partitions(
        &self,
        bus: Arc<dyn starling_cluster::bus::Bus>,
        registry: Arc<dyn starling_cluster::registry::Registry>,
        node: String,
        node_ttl: std::time::Duration,
    ) -> Result<(), starling_cluster::bus::BusError> {
        self.services.clone().serve_owner_partitions(bus, registry, node, node_ttl).await
    }

    /// Routes a stanza that did not come from a bound client (e.g. the server itself).
    pub fn deliver(&self, stanza: Stanza) {
        let _ = self.services.deliver(stanza, Instant::now());
    }
}

#[async_trait]
impl Gateway for SessionLayer {
    async fn bind(&self, user: Jid, resource: Option<String>, link: ClientLink) -> Result<Box<dyn BoundSession>, GatewayError> {
        let resource = resource.unwrap_or_else(server_chosen_resource);
        let jid = user.with_resource(&resource).map_err(|_| GatewayError::Unavailable("invalid resource".into()))?;
        let connection_id = link.connection_id;
        let (reply, bound) = tokio::sync::oneshot::channel();
        let addr = self.services.with_actor(&user, |entry| {
            entry.addr.do_send(Bind { jid: jid.clone(), link, edge: None, reply, hold: None });
            entry.addr.clone()
        });
        bound.await.map_err(|_| GatewayError::Closed)?;
        Ok(Box::new(LocalSession { jid, addr, connection_id }))
    }
}

/// A resource bound to a local actor.
struct LocalSession {
    jid: Jid,
    addr: Addr<UserActor>,
    connection_id: u64,
}

#[async_trait]
impl BoundSession for LocalSession {
    fn jid(&self) -> &Jid {
        &self.jid
    }

    async fn submit(&mut self, stanza: Stanza, received: Instant) -> Result<(), GatewayError> {
        let message = FromClient { resource: self.jid.clone(), stanza, received, counted: false, hold: None };
        // The actor's mailbox is bounded: try first, and only wait (the backpressure) when full.
        match self.addr.try_send(message) {
            Ok(()) => Ok(()),
            Err(actix::dev::SendError::Full(message)) => self.addr.send(message).await.map_err(|_| GatewayError::Closed),
            Err(actix::dev::SendError::Closed(_)) => Err(GatewayError::Closed),
        }
    }

    async fn unbind(self: Box<Self>) {
        let _ = self.addr.send(crate::actor::Unbind { jid: self.jid, connection_id: self.connection_id, counted: false, hold: None }).await;
    }
}
