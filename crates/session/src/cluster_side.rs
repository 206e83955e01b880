//! This node's side of the cluster, as the session layer's actors see it: which owner partitions
//! are this node's, the way to the others (a stanza for a user or service entity of a partition
//! owned elsewhere goes onto that partition), the way back to connections on edges, and the
//! registry records of users' resources ([`ClusterRoutes`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use starling_cluster::bus::{partition_of, Bus, InFlight};
use starling_cluster::envelope::{FanOut, FanOutTarget, Origin, OwnerRecord, Stamp};
use starling_cluster::gateway::{ClientLink, Window};
use starling_cluster::hold::{traceparent, Hold};
use starling_cluster::registry::{Registry, ResourceRoute};
use starling_protocol::{Jid, Stanza};
use tokio::sync::mpsc;

use crate::carrier;
use crate::context::ClusterRoutes;
use crate::hold::current_hold;
use crate::remote_components::RemoteComponents;

/// Stanzas waiting to be published to other owners' partitions before senders are refused.
const OUTBOX: usize = 8192;

/// What the session layer needs of the cluster: which partitions are this node's, and a way to
/// the others.
pub(crate) struct ClusterSide {
    pub(crate) bus: Arc<dyn Bus>,
    registry: Arc<dyn Registry>,
    pub(crate) origin: Arc<Origin>,
    /// Partitions assigned to this node and claimed in the registry.
    assigned: Vec<AtomicBool>,
    /// Assigned partitions whose users this node delivers to directly, in its own process: once
    /// nothing it forwarded to the partition through the bus is still on its way (see
    /// [`ClusterSide::take_over`]), a direct delivery cannot overtake it.
    owned: Vec<AtomicBool>,
    /// Per partition, the sequence number + 1 of the last record this node forwarded to it and
    /// has not seen come back (0: none).
    forwarded: Vec<AtomicU64>,
    /// Numbers forwarded records in the order the outbox sends them.
    forward_order: Mutex<()>,
    /// External components on edges, for the domains of the partitions this node owns.
    pub(crate) components: RemoteComponents,
    /// Per partition, the generation this node claimed it with (0 while not owned).
    generations: Vec<AtomicU64>,
    outbox: mpsc::Sender<(Destination, Bytes, Option<Hold>)>,
}

/// Where a record in the outbox goes.
enum Destination {
    Owner(u32),
    Edge(String),
}

impl ClusterSide {
    pub fn new(bus: Arc<dyn Bus>, registry: Arc<dyn Registry>, node: &str) -> Arc<ClusterSide> {
        let (outbox, mut queued) = mpsc::channel::<(Destination, Bytes, Option<Hold>)>(OUTBOX);
        let side = Arc::new(ClusterSide {
            assigned: (0..bus.partitions()).map(|_| AtomicBool::new(false)).collect(),
            owned: (0..bus.partitions()).map(|_| AtomicBool::new(false)).collect(),
            forwarded: (0..bus.partitions()).map(|_| AtomicU64::new(0)).collect(),
            forward_order: Mutex::new(()),
            components: RemoteComponents::default(),
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
                        Some((destination, bytes, hold)) => {
                            let published = match destination {
                                Destination::Owner(partition) => bus.publish_owner(partition, bytes).await,
                                Destination::Edge(edge) => bus.publish_edge(&edge, bytes).await,
                            };
                            in_flight.push(published, hold.into_iter().collect()).await
                        }
                        None => break,
                    },
                    done = in_flight.next_done() => done,
                };
                if let Err(error) = result {
                    tracing::warn!(%error, "a stanza for another owner was not taken by the bus");
                    starling_telemetry::Metrics::global().bus_publish_errors.inc();
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
        let _order = self.forward_order.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let hold = current_hold();
        let cause = hold.as_ref().map(Hold::cause);
        let (bytes, seq) = OwnerRecord::Deliver { stanza, received, cause }.encode_numbered(&self.origin, traceparent(hold.as_slice()));
        self.forwarded[partition as usize].store(seq + 1, Ordering::Release);
        slot.send((Destination::Owner(partition), bytes, hold));
        Ok(())
    }

    /// Queues one record for `edge` with `stanza` (serialised without a `to`) for each of
    /// `targets` (connection, full JID), behind what this node queued before; the targets back if
    /// the outbox is full.
    fn publish_fan_out(&self, edge: &str, stanza: Bytes, targets: Vec<(u64, Jid)>) -> Result<(), Vec<(u64, Jid)>> {
        let Ok(slot) = self.outbox.try_reserve() else { return Err(targets) };
        let hold = current_hold();
        let cause = hold.as_ref().map(Hold::cause);
        let targets = targets
            .into_iter()
            .map(|(connection, to)| {
                // The key of this delivery: a replay of the record makes the same (see ToClient::Stanza).
                let delivery = cause.map(|cause| xxhash_rust::xxh3::xxh3_64_with_seed(&[&stanza[..], to.as_str().as_bytes()].concat(), cause));
                FanOutTarget { connection, to, delivery }
            })
            .collect();
        match FanOut::new(stanza, targets) {
            Ok(fan_out) => slot.send((Destination::Edge(edge.to_owned()), fan_out.encode(&self.origin, traceparent(hold.as_slice())), hold)),
            Err(error) => tracing::error!(%error, "a fan-out stanza is not an element"),
        }
        Ok(())
    }

    /// Assigned partitions whose claim in the registry is no longer this node's: another node was
    /// given them (this one was frozen or cut off, and the group has not told it yet). A claim
    /// that cannot be read counts as still this node's: the group's revocation follows anyway.
    pub async fn claimed_elsewhere(&self) -> Vec<u32> {
        let mut taken = Vec::new();
        for partition in self.assigned_partitions() {
            let mine = self.generations[partition as usize].load(Ordering::Acquire);
            match self.registry.partition_owner(partition).await {
                Ok(Some((node, generation))) if node != self.origin.node() || generation != mine => taken.push(partition),
                Ok(_) => {}
                Err(error) => tracing::warn!(partition, %error, "cannot read a partition's claim; taken as still this node's"),
            }
        }
        taken
    }

    pub fn assigned_partitions(&self) -> Vec<u32> {
        (0..self.assigned.len() as u32).filter(|&partition| self.assigned[partition as usize].load(Ordering::Acquire)).collect()
    }

    pub fn revoke(&self, partitions: &[u32]) {
        for &partition in partitions {
            if let (Some(assigned), Some(owned)) = (self.assigned.get(partition as usize), self.owned.get(partition as usize)) {
                assigned.store(false, Ordering::Release);
                owned.store(false, Ordering::Release);
            }
        }
    }

    /// Starts serving partitions just assigned and claimed. Where this node forwarded stanzas
    /// through the bus (to the partition's previous owner, or to itself while taking over) and
    /// they may not all have been handled, delivering directly now could overtake them (RFC 6120
    /// §10.1 keeps one sender's stanzas in order): it goes on forwarding through the bus and
    /// sends a fence after them; when its last forwarded record comes back, it owns the partition.
    pub async fn take_over(&self, partitions: &[u32]) {
        for &partition in partitions {
            let index = partition as usize;
            self.assigned[index].store(true, Ordering::Release);
            if self.forwarded[index].load(Ordering::Acquire) == 0 {
                self.owned[index].store(true, Ordering::Release);
                continue;
            }
            let Ok(slot) = self.outbox.reserve().await else { return };
            let _order = self.forward_order.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let (bytes, seq) = OwnerRecord::Fence.encode_numbered(&self.origin, String::new());
            self.forwarded[index].store(seq + 1, Ordering::Release);
            slot.send((Destination::Owner(partition), bytes, None));
        }
    }

    /// A record of an assigned partition is being handled: if it is the last this node
    /// forwarded there, the partition is owned from now on.
    pub fn handling(&self, partition: u32, stamp: &Stamp) {
        let index = partition as usize;
        if stamp.node != self.origin.node() || index >= self.forwarded.len() {
            return;
        }
        if self.forwarded[index].compare_exchange(stamp.seq + 1, 0, Ordering::AcqRel, Ordering::Acquire).is_ok()
            && self.assigned[index].load(Ordering::Acquire)
            && !self.owned[index].swap(true, Ordering::AcqRel)
        {
            tracing::info!(partition, "caught up with what this node forwarded; delivering directly");
        }
    }

    /// The generation this node writes `user`'s routes with.
    fn generation(&self, user: &Jid) -> u64 {
        let partition = partition_of(user.as_str(), self.bus.partitions());
        self.generations.get(partition as usize).map_or(0, |g| g.load(Ordering::Acquire))
    }

    /// Claims newly assigned partitions in the registry, so this node's route writes for their
    /// users win over any earlier owner's; returns those claimed (a partition it cannot claim is
    /// not served here).
    pub async fn claim(&self, partitions: &[u32]) -> Vec<u32> {
        let mut claimed = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            match self.registry.claim_partition(partition, self.origin.node()).await {
                Ok(generation) => {
                    self.generations[partition as usize].store(generation, Ordering::Release);
                    claimed.push(partition);
                }
                Err(error) => tracing::error!(partition, %error, "cannot claim a partition in the registry; its users are not served here"),
            }
        }
        claimed
    }

    /// The way back to a connection on `edge`, paced to what its client reads (see
    /// [`carrier`](crate::carrier)).
    pub fn remote_link(&self, edge: String, connection: u64, client_queue: usize) -> ClientLink {
        let window = Arc::new(Window::for_client_queue(client_queue));
        carrier::carry(self.bus.clone(), self.origin.clone(), edge, connection, client_queue, Some(window))
    }

    /// The way to an external component connected to `edge`, whose edge refuses what it cannot
    /// take with an error to the sender instead.
    pub fn component_link(&self, edge: String, connection: u64, capacity: usize) -> ClientLink {
        carrier::carry(self.bus.clone(), self.origin.clone(), edge, connection, capacity, None)
    }
}

#[async_trait]
impl ClusterRoutes for ClusterSide {
    async fn record(&self, user: &Jid, route: ResourceRoute) {
        if let Err(error) = self.registry.put_resource(user.as_str(), &route, self.generation(user)).await {
            tracing::warn!(%user, %error, "could not record a route");
        }
    }

    async fn withdraw(&self, user: &Jid, resource: &str, connection: u64) {
        if let Err(error) = self.registry.remove_resource(user.as_str(), resource, connection, self.generation(user)).await {
            tracing::warn!(%user, %error, "could not remove a route");
        }
    }

    async fn restore(&self, user: &Jid, client_queue: usize) -> Vec<(ResourceRoute, ClientLink)> {
        match self.registry.resources(user.as_str()).await {
            Ok(routes) => routes
                .into_iter()
                .map(|route| {
                    let link = self.remote_link(route.node.clone(), route.connection, client_queue);
                    (route, link)
                })
                .collect(),
            Err(error) => {
                tracing::warn!(%user, %error, "could not read the user's routes; resources bound elsewhere are not known");
                Vec::new()
            }
        }
    }

    async fn routes(&self, user: &Jid) -> Option<Vec<ResourceRoute>> {
        self.registry.resources(user.as_str()).await.map_err(|error| tracing::warn!(%user, %error, "could not read a user's routes")).ok()
    }

    fn fan_out(&self, edge: &str, stanza: Bytes, targets: Vec<(u64, Jid)>) -> Result<(), Vec<(u64, Jid)>> {
        self.publish_fan_out(edge, stanza, targets)
    }

    async fn record_occupant(&self, room: &Jid, nick: &str, record: &[u8]) {
        if let Err(error) = self.registry.put_occupant(room.as_str(), nick, record, self.generation(room)).await {
            tracing::warn!(%room, nick, %error, "could not record a room's occupant");
        }
    }

    async fn withdraw_occupant(&self, room: &Jid, nick: &str) {
        if let Err(error) = self.registry.remove_occupant(room.as_str(), nick, self.generation(room)).await {
            tracing::warn!(%room, nick, %error, "could not remove a room's occupant");
        }
    }

    async fn occupants(&self, room: &Jid) -> Option<Vec<(String, Vec<u8>)>> {
        self.registry.occupants(room.as_str()).await.map_err(|error| tracing::warn!(%room, %error, "could not read a room's occupants")).ok()
    }
}

#[cfg(test)]
mod tests {
    use starling_cluster::bus::MemoryBus;
    use starling_cluster::registry::MemoryRegistry;
    use starling_xml::Element;

    use super::*;

    /// The stamps of the next `count` records published to `partition`, in order.
    async fn published(bus: &MemoryBus, partition: u32, count: usize) -> Vec<Stamp> {
        use starling_cluster::bus::OwnerEvent;
        let mut inbox = bus.join_owners("observer").await.expect("join");
        let mut stamps = Vec::new();
        while stamps.len() < count {
            if let OwnerEvent::Record(record) = tokio::time::timeout(std::time::Duration::from_secs(5), inbox.next()).await.expect("published").expect("record")
                && record.partition == partition
            {
                stamps.push(OwnerRecord::decode_stamped(record.payload).expect("record").1);
            }
        }
        stamps
    }

    #[tokio::test]
    async fn a_taken_over_partition_is_delivered_to_directly_only_once_what_this_node_forwarded_came_back() {
        let bus = Arc::new(MemoryBus::new(4));
        let side = ClusterSide::new(bus.clone(), Arc::new(MemoryRegistry::default()), "s1");
        let bob = Jid::new("bob@example.com").expect("jid");
        let partition = partition_of(bob.as_str(), 4);
        let element = Element::parse(b"<message xmlns='jabber:client' from='alice@example.com/a' to='bob@example.com'/>").expect("xml");
        // Bob's partition is another node's: forwarded (this node's first record).
        assert_eq!(side.owner_elsewhere(&bob), Some(partition));
        side.forward(partition, Stanza::from_element(&element).expect("stanza"), Instant::now()).expect("queued");
        // Then it is assigned here: a fence (its second) goes after what was forwarded.
        side.take_over(&[partition]).await;
        let [forwarded, fence] = <[Stamp; 2]>::try_from(published(&bus, partition, 2).await).expect("two records");
        assert_eq!(side.owner_elsewhere(&bob), Some(partition), "still through the bus while the forward may be ahead");
        side.handling(partition, &forwarded);
        assert_eq!(side.owner_elsewhere(&bob), Some(partition), "the fence has not come back yet");
        side.handling(partition, &Stamp { node: "s2".into(), seq: fence.seq, traceparent: String::new() });
        assert_eq!(side.owner_elsewhere(&bob), Some(partition), "another node's record with the same number is not ours");
        side.handling(partition, &fence);
        assert_eq!(side.owner_elsewhere(&bob), None, "owned once the fence came back");
        // A partition this node never forwarded to is owned at once.
        let other = (partition + 1) % 4;
        side.take_over(&[other]).await;
        assert!(side.assigned_partitions().contains(&other));
        side.revoke(&[partition]);
        assert_eq!(side.owner_elsewhere(&bob), Some(partition));
    }

    #[tokio::test]
    async fn a_partition_claimed_by_another_node_meanwhile_is_found_and_a_lost_registry_is_not_taken_for_it() {
        let registry = Arc::new(MemoryRegistry::default());
        let side = ClusterSide::new(Arc::new(MemoryBus::new(4)), registry.clone(), "s1");
        let claimed = side.claim(&[0, 1, 2]).await;
        side.take_over(&claimed).await;
        assert!(side.claimed_elsewhere().await.is_empty(), "every claim is still this node's");
        // While s1 was frozen the group gave partition 1 to s2, which claimed it.
        registry.claim_partition(1, "s2").await.expect("claim");
        assert_eq!(side.claimed_elsewhere().await, vec![1]);
        side.revoke(&[1]);
        assert!(side.claimed_elsewhere().await.is_empty(), "a partition given up is not asked about");
        // A registry that lost its data (no claim at all) is not another owner.
        let forgetful = ClusterSide::new(Arc::new(MemoryBus::new(4)), Arc::new(MemoryRegistry::default()), "s1");
        forgetful.take_over(&[0]).await;
        assert!(forgetful.claimed_elsewhere().await.is_empty());
    }
}
