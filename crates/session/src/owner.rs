//! A session node in a cluster. It joins the owners' group on the bus and, for the partitions it is
//! given, feeds each record to the user's actor as the local gateway would: binds, client stanzas,
//! unbinds, deliveries from other owners. The way back to a connection is a [`ClientLink`] whose
//! queue is drained onto the edge's inbox; a stanza for a user of a partition owned elsewhere goes
//! onto that partition ([`Services::deliver`] asks [`ClusterSide::owner_elsewhere`]).
//!
//! When a partition moves, the new owner claims it in the registry (a generation greater than the
//! previous owner's) and rebuilds each user's resources from the routes the previous owner recorded
//! there ([`UserState::publish_route`]); the old owner stops those users' actors.
//!
//! A record's offset is committed once everything it caused is durable: each record travels with
//! a [`Hold`] (in [`HOLD`] while an actor handles it) that every stanza it produced takes along
//! to the bus or the archive (`starling_cluster::hold`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use starling_cluster::bus::{partition_of, Bus, BusError, InFlight, OwnerEvent, OwnerInbox};
use starling_cluster::hold::{Hold, LinkHolds, RecordHolds};
use starling_cluster::liveness;
use starling_cluster::envelope::{EdgeRecord, Origin, OwnerRecord};
use starling_cluster::gateway::{ClientLink, ToClient};
use starling_cluster::registry::{Registry, ResourceRoute};
use starling_protocol::{Jid, Stanza, StanzaError, StanzaErrorCondition, StanzaKind, StreamError, StreamErrorCondition};
use tokio::sync::{mpsc, oneshot};

use crate::actor::{Bind, FromClient, Unbind};
use crate::directory::Services;
use crate::state::{Resource, UserState};

/// Stanzas waiting to be published to other owners' partitions before senders are refused.
const OUTBOX: usize = 8192;

/// How often handled offsets are committed (one round trip to the bus for all partitions).
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

tokio::task_local! {
    /// The hold of the owner record being handled, while an actor handles it.
    pub(crate) static HOLD: Option<Hold>;
}

/// The hold of the record the current task handles, if any.
pub(crate) fn current_hold() -> Option<Hold> {
    HOLD.try_with(Clone::clone).ok().flatten()
}

/// What the session layer needs of the cluster: which partitions are this node's, and a way to
/// the others.
pub(crate) struct ClusterSide {
    bus: Arc<dyn Bus>,
    registry: Arc<dyn Registry>,
    origin: Arc<Origin>,
    owned: Vec<AtomicBool>,
    /// Per partition, the generation this node claimed it with (0 while not owned).
    generations: Vec<AtomicU64>,
    outbox: mpsc::Sender<(u32, Bytes, Option<Hold>)>,
}

impl ClusterSide {
    fn new(bus: Arc<dyn Bus>, registry: Arc<dyn Registry>, node: &str) -> Arc<ClusterSide> {
        let (outbox, mut queued) = mpsc::channel::<(u32, Bytes, Option<Hold>)>(OUTBOX);
        let side = Arc::new(ClusterSide {
            owned: (0..bus.partitions()).map(|_| AtomicBool::new(false)).collect(),
            generations: (0..bus.partitions()).map(|_| AtomicU64::new(0)).collect(),
            registry,
            bus: bus.clone(),
            origin: Arc::new(Origin::new(node)),
            outbox,
        });
        // One publisher in queue order: stanzas from one sender to one recipient stay in order.
        tokio::spawn(async move {
            let mut in_flight = InFlight::new(OUTBOX);
            loop {
                let result = tokio::select! {
                    next = queued.recv() => match next {
                        Some((partition, bytes, hold)) => in_flight.push(bus.publish_owner(partition, bytes).await, hold.into_iter().collect()).await,
                        None => break,
                    },
                    done = in_flight.next_done() => done,
                };
                if let Err(error) = result {
                    tracing::warn!(%error, "a stanza for another owner was not taken by the bus");
                }
            }
        });
        side
    }

    /// The partition of `user` if another node owns it, `None` if this node does.
    pub fn owner_elsewhere(&self, user: &Jid) -> Option<u32> {
        let partition = partition_of(user.as_str(), self.bus.partitions());
        let here = self.owned.get(partition as usize).is_some_and(|owned| owned.load(Ordering::Acquire));
        (!here).then_some(partition)
    }

    /// Queues `stanza` for its owner's partition; the stanza back if the outbox is full (the
    /// caller tells the sender to retry).
    pub fn forward(&self, partition: u32, stanza: Stanza, received: Instant) -> Result<(), Box<Stanza>> {
        let Ok(slot) = self.outbox.try_reserve() else { return Err(Box::new(stanza)) };
        slot.send((partition, OwnerRecord::Deliver { stanza, received }.encode(&self.origin), current_hold()));
        Ok(())
    }

    fn owned_partitions(&self) -> Vec<u32> {
        (0..self.owned.len() as u32).filter(|&partition| self.owned[partition as usize].load(Ordering::Acquire)).collect()
    }

    fn set_owned(&self, partitions: &[u32], owned: bool) {
        for &partition in partitions {
            if let Some(flag) = self.owned.get(partition as usize) {
                flag.store(owned, Ordering::Release);
            }
        }
    }

    /// The generation this node writes `user`'s routes with.
    fn generation(&self, user: &Jid) -> u64 {
        let partition = partition_of(user.as_str(), self.bus.partitions());
        self.generations.get(partition as usize).map_or(0, |g| g.load(Ordering::Acquire))
    }

    /// Claims newly assigned partitions in the registry, so this node's route writes for their
    /// users win over any earlier owner's, and refuses ownership of a partition it cannot claim.
    async fn claim(&self, partitions: &[u32]) {
        for &partition in partitions {
            match self.registry.claim_partition(partition, self.origin.node()).await {
                Ok(generation) => {
                    self.generations[partition as usize].store(generation, Ordering::Release);
                    self.set_owned(&[partition], true);
                }
                Err(error) => tracing::error!(partition, %error, "cannot claim a partition in the registry; its users are not served here"),
            }
        }
    }

    /// The way back to a connection on `edge`: a bounded queue drained in order onto the edge's
    /// inbox. When the connection's queue on the edge is full the edge closes it; here the queue
    /// only waits for the bus. The holds of what it carries go once the bus has each item.
    fn remote_link(&self, edge: String, connection: u64, capacity: usize) -> ClientLink {
        let (sender, mut queued) = mpsc::channel::<ToClient>(capacity);
        let holds = Arc::new(LinkHolds::default());
        let link = ClientLink::held(connection, sender, holds.clone());
        let (bus, origin) = (self.bus.clone(), self.origin.clone());
        tokio::spawn(async move {
            let mut in_flight = InFlight::new(capacity);
            loop {
                let result = tokio::select! {
                    next = queued.recv() => {
                        let Some(message) = next else { break };
                        let bytes = EdgeRecord { connection, message }.encode(&origin);
                        in_flight.push(bus.publish_edge(&edge, bytes).await, holds.take()).await
                    }
                    done = in_flight.next_done() => done,
                };
                if let Err(error) = result {
                    tracing::warn!(%edge, connection, %error, "could not reach a connection's edge");
                }
            }
            if holds.abandoned() {
                // The session gave the connection up as too slow: the edge ends its stream, as it
                // does itself when its own queue to the client overflows.
                let close = ToClient::Close(StreamError::new(StreamErrorCondition::PolicyViolation));
                let bytes = EdgeRecord { connection, message: close }.encode(&origin);
                let _ = in_flight.push(bus.publish_edge(&edge, bytes).await, Vec::new()).await;
            }
            while !in_flight.is_empty() {
                let _ = in_flight.next_done().await;
            }
        });
        link
    }
}

impl Services {
    /// Joins the owners' group as `node` and serves the records of the partitions it is given,
    /// until the bus fails.
    pub(crate) async fn serve_owner_partitions(
        self: Arc<Self>,
        bus: Arc<dyn Bus>,
        registry: Arc<dyn Registry>,
        node: String,
        node_ttl: Duration,
    ) -> Result<(), BusError> {
        let side = ClusterSide::new(bus.clone(), registry.clone(), &node);
        if self.cluster.set(side.clone()).is_err() {
            return Err(BusError::Config("this session layer already serves owner partitions".into()));
        }
        let (forgotten, mut rewrite) = mpsc::channel::<()>(1);
        tokio::spawn(liveness::keep_alive(registry.clone(), node.clone(), node_ttl, move || {
            let _ = forgotten.try_send(());
        }));
        tokio::spawn(liveness::reap_dead_nodes(registry, bus.clone(), side.origin.clone(), node_ttl));
        let mut inbox = bus.join_owners(&node).await?;
        let (mut holds, mut releases) = RecordHolds::new();
        let mut commit = tokio::time::interval(COMMIT_INTERVAL);
        loop {
            tokio::select! {
                event = inbox.next() => match event? {
                    OwnerEvent::Assigned(partitions) => {
                        side.claim(&partitions).await;
                        holds.assign(&partitions);
                        tracing::info!(?partitions, "owner partitions assigned");
                    }
                    OwnerEvent::Revoked(partitions) => {
                        // What was handled was committed by the bus as it revoked them (staged).
                        tracing::info!(?partitions, "owner partitions revoked");
                        holds.revoke(&partitions);
                        side.set_owned(&partitions, false);
                        self.stop_partitions(&partitions, bus.partitions());
                    }
                    OwnerEvent::Record(record) if holds.handled_before(record.partition, record.offset) => {
                        tracing::debug!(partition = record.partition, offset = record.offset, "record handled before; skipped");
                    }
                    OwnerEvent::Record(record) => {
                        let hold = holds.hold(record.partition, record.offset);
                        self.dispatch(&side, record.payload, hold);
                    }
                },
                Some(release) = releases.recv() => match holds.release(release) {
                    Ok(Some((partition, offset))) => inbox.stage(partition, offset),
                    Ok(None) => {}
                    Err(failed) => {
                        // Committing past it would lose what it caused; stopping lets the group
                        // replay it (and what followed) on the next owner.
                        return Err(BusError::Unavailable(format!(
                            "the effects of record {} of partition {} could not be made durable",
                            failed.offset, failed.partition
                        )));
                    }
                },
                _ = commit.tick() => commit_released(inbox.as_mut(), &mut holds).await,
                Some(()) = rewrite.recv() => {
                    // The registry lost what this node wrote: claim the partitions again (so a
                    // later owner's claim is newer than ours) and write every route again.
                    let owned = side.owned_partitions();
                    side.claim(&owned).await;
                    self.republish_routes();
                }
            }
        }
    }

    /// One owner record to the user's actor.
    fn dispatch(self: &Arc<Self>, side: &ClusterSide, payload: Bytes, hold: Option<Hold>) {
        let record = match OwnerRecord::decode(payload) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(%error, "owner record dropped");
                return;
            }
        };
        match record {
            OwnerRecord::Bind { jid, edge, connection } => {
                let link = side.remote_link(edge.clone(), connection, self.config.client_queue);
                // The edge does not wait for the bind: records after it are ordered behind it.
                let (reply, _) = oneshot::channel();
                self.with_actor(&jid.bare(), |entry| entry.addr.do_send(Bind { jid, link, edge: Some(edge), reply, hold }));
            }
            OwnerRecord::FromClient { resource, connection: _, stanza, received } => {
                self.with_actor(&resource.bare(), |entry| entry.addr.do_send(FromClient { resource, stanza, received, counted: true, hold }));
            }
            OwnerRecord::Unbind { jid, connection } => {
                self.with_actor(&jid.bare(), |entry| entry.addr.do_send(Unbind { jid, connection_id: connection, counted: true, hold }));
            }
            OwnerRecord::Deliver { stanza, received } => {
                HOLD.sync_scope(hold, || {
                    if let Err(refused) = self.deliver_here(stanza, received) {
                        self.refuse(&refused);
                    }
                });
            }
        }
    }
}

impl Services {
    /// Tells the sender of a stanza this node could not take that it should retry (RFC 6120
    /// §8.3.3.18); presence is dropped silently, as in one process.
    fn refuse(self: &Arc<Self>, stanza: &Stanza) {
        let Some(to) = stanza.to.as_ref() else { return };
        if stanza.kind == StanzaKind::Presence {
            return;
        }
        if let Some(reply) = stanza.error_reply(to, &StanzaError::new(StanzaErrorCondition::ResourceConstraint)) {
            let _ = self.deliver(reply, Instant::now());
        }
    }
}

/// Commits every record whose holds are all gone.
async fn commit_released(inbox: &mut dyn OwnerInbox, holds: &mut RecordHolds) {
    let points = holds.commit_points();
    if !points.is_empty()
        && let Err(error) = inbox.commit(&points).await
    {
        tracing::warn!(partitions = points.len(), %error, "commit failed; those records will be replayed elsewhere if the partitions move");
    }
}

impl UserState {
    /// Records every resource's route again (the registry lost them).
    pub async fn republish_routes(&mut self) {
        for index in 0..self.resources.len() {
            self.publish_route(index).await;
        }
    }

    /// Records resource `index`'s route (edge, connection, priority, availability) in the
    /// registry, if this is a cluster resource.
    pub async fn publish_route(&mut self, index: usize) {
        let Some(cluster) = self.services.cluster.get().cloned() else { return };
        let resource = &self.resources[index];
        let Some(edge) = resource.edge.clone() else { return };
        let route = ResourceRoute {
            resource: resource.jid.resource().unwrap_or_default().to_owned(),
            node: edge,
            connection: resource.connection_id,
            priority: resource.priority,
            presence: resource.presence.as_ref().map(|presence| String::from_utf8_lossy(&presence.bytes).into_owned()),
        };
        if let Err(error) = cluster.registry.put_resource(self.user.as_str(), &route, cluster.generation(&self.user)).await {
            tracing::warn!(user = %self.user, %error, "could not record a route");
        }
    }

    /// Removes the route of a resource that went away, if it was a cluster resource.
    pub async fn withdraw_route(&mut self, removed: &Resource) {
        let Some(cluster) = self.services.cluster.get().cloned() else { return };
        if removed.edge.is_none() {
            return;
        }
        let resource = removed.jid.resource().unwrap_or_default();
        let generation = cluster.generation(&self.user);
        if let Err(error) = cluster.registry.remove_resource(self.user.as_str(), resource, removed.connection_id, generation).await {
            tracing::warn!(user = %self.user, %error, "could not remove a route");
        }
    }

    /// Once per actor, in a cluster: takes over the resources a previous owner recorded, an
    /// available one with the presence stanza it last broadcast.
    pub async fn restore_routes(&mut self) {
        if self.routes_restored {
            return;
        }
        self.routes_restored = true;
        let Some(cluster) = self.services.cluster.get().cloned() else { return };
        let routes = match cluster.registry.resources(self.user.as_str()).await {
            Ok(routes) => routes,
            Err(error) => {
                tracing::warn!(user = %self.user, %error, "could not read the user's routes; resources bound elsewhere are not known");
                return;
            }
        };
        for route in routes {
            let Ok(jid) = self.user.with_resource(&route.resource) else { continue };
            if self.resource_index(&jid).is_some() {
                continue;
            }
            let link = cluster.remote_link(route.node.clone(), route.connection, self.services.config.client_queue);
            let presence = route.presence.as_deref().map(|text| {
                // The stanza the resource broadcast; one that does not parse still means available.
                let element = starling_xml::Element::parse(text.as_bytes())
                    .unwrap_or_else(|_| starling_xml::Element::new("presence", starling_protocol::ns::CLIENT));
                Stanza::build(element, &jid, None)
            });
            self.services.metrics.sessions_bound.inc();
            self.resources.push(Resource::restored(jid, link, route, presence));
        }
    }
}
