//! The cluster's message bus. The user space is cut into a fixed number of partitions
//! ([`partition_of`] a bare JID); session nodes join the owners' group and are each given some
//! partitions — a node owns every user of the partitions it holds, and records for those users
//! come to it in order. Edge nodes each have an inbox for the bytes their connections must write.
//!
//! Delivery is at least once: a record stays due until the owner [commits](OwnerInbox::commit)
//! its offset (after it delivered, stored offline or archived what the record asked), so a crash
//! or a move replays instead of losing. In a cluster the bus is Kafka (`starling-backend-kafka`);
//! in one process it is [`MemoryBus`]. Both pass `contract::bus`.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::FutureExt;
use tokio::sync::{mpsc, Notify};

use crate::hold::Hold;

/// The partition of `bare_jid` among `partitions`: its [`stable_hash`], modulo.
pub fn partition_of(bare_jid: &str, partitions: u32) -> u32 {
    (stable_hash(bare_jid.as_bytes()) % u64::from(partitions.max(1))) as u32
}

/// FNV-1a (64 bit). Our own few lines rather than std's hasher, because every node of every
/// version must agree on it for as long as what it places (partitions, PubSub node shards) exists.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// One record of an owner partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: u32,
    pub offset: u64,
    pub payload: Bytes,
}

/// What an owner hears from the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerEvent {
    /// These partitions are now this node's (in addition to those it had).
    Assigned(Vec<u32>),
    /// These partitions are no longer this node's: forget their users. Records of them not yet
    /// committed go to the next owner.
    Revoked(Vec<u32>),
    Record(Record),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The bus cannot be reached or did not confirm in time; nothing is known to have happened.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// This inbox was closed (its node left the group or was replaced).
    #[error("inbox closed")]
    Closed,
    #[error("bus misconfigured: {0}")]
    Config(String),
}

/// Resolves once the bus holds a published record durably (or failed to).
pub type Delivered = Pin<Box<dyn Future<Output = Result<(), BusError>> + Send>>;

/// A record that is already durable.
fn delivered() -> Delivered {
    Box::pin(std::future::ready(Ok(())))
}

/// Acknowledgements a publisher waits for, at most `limit` at a time and in the order it
/// published: publishing stays pipelined (records are queued in order without waiting for each
/// round trip) yet bounded, a failure surfaces at the publisher's next step, and the [`Hold`]s
/// given with a record are dropped once it is durable (failed if it could not be).
pub struct InFlight {
    acks: VecDeque<(Delivered, Vec<Hold>)>,
    limit: usize,
}

impl InFlight {
    pub fn new(limit: usize) -> InFlight {
        InFlight { acks: VecDeque::new(), limit: limit.max(1) }
    }

    /// Adds the acknowledgement of a record just queued (or the error of queuing it), first
    /// collecting finished ones and waiting while `limit` are outstanding. Returns the first
    /// failure seen.
    pub async fn push(&mut self, queued: Result<Delivered, BusError>, holds: Vec<Hold>) -> Result<(), BusError> {
        let mut failed = Ok(());
        while let Some(Some(result)) = self.acks.front_mut().map(|(ack, _)| ack.now_or_never()) {
            failed = failed.and(self.finish(result));
        }
        let ack = match queued {
            Ok(ack) => ack,
            Err(error) => {
                holds.iter().for_each(Hold::fail);
                return failed.and(Err(error));
            }
        };
        while self.acks.len() >= self.limit {
            failed = failed.and(self.next_done().await);
        }
        self.acks.push_back((ack, holds));
        failed
    }

    /// Waits for the oldest outstanding acknowledgement; never resolves while none is (so it can
    /// sit in a `select!` beside the publisher's queue).
    pub async fn next_done(&mut self) -> Result<(), BusError> {
        let Some((ack, _)) = self.acks.front_mut() else { return std::future::pending().await };
        let result = ack.await;
        self.finish(result)
    }

    /// The oldest record's acknowledgement came: its holds go.
    fn finish(&mut self, result: Result<(), BusError>) -> Result<(), BusError> {
        if let Some((_, holds)) = self.acks.pop_front()
            && result.is_err()
        {
            holds.iter().for_each(Hold::fail);
        }
        result
    }

    pub fn is_empty(&self) -> bool {
        self.acks.is_empty()
    }
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// The number of owner partitions, fixed for the life of the cluster.
    fn partitions(&self) -> u32;

    /// Queues a record for an owner partition. Returns once it is queued — after every record
    /// the same caller queued before, so one publisher's records keep their order — waiting while
    /// the bus is full (the backpressure on whoever publishes). The returned future resolves when
    /// the record is durable; dropping it does not withdraw the record.
    async fn publish_owner(&self, partition: u32, payload: Bytes) -> Result<Delivered, BusError>;

    /// Queues a record for an edge node's inbox, as [`publish_owner`](Self::publish_owner) does.
    /// The node must have opened its inbox before (an edge does so before it accepts a client,
    /// and records only ever go to edges that bound a client).
    async fn publish_edge(&self, node: &str, payload: Bytes) -> Result<Delivered, BusError>;

    /// Joins the owners' group as `node`.
    async fn join_owners(&self, node: &str) -> Result<Box<dyn OwnerInbox>, BusError>;

    /// Opens `node`'s inbox: every record published to it from now on, in order.
    async fn edge_inbox(&self, node: &str) -> Result<Box<dyn EdgeInbox>, BusError>;

    /// The names of the edge inboxes that exist ([`inbox_name`](Self::inbox_name) of their nodes).
    async fn edge_inboxes(&self) -> Result<Vec<String>, BusError>;

    /// The name of `node`'s inbox (what [`edge_inboxes`](Self::edge_inboxes) lists).
    fn inbox_name(&self, node: &str) -> String {
        node.to_owned()
    }

    /// Removes the inbox called `name`: its edge is gone for good.
    async fn remove_edge_inbox(&self, name: &str) -> Result<(), BusError>;
}

#[async_trait]
pub trait OwnerInbox: Send {
    /// The next event. An owner must keep calling this: on Kafka, the group's rebalances (a
    /// cooperative one takes two rounds) progress only while every member polls.
    async fn next(&mut self) -> Result<OwnerEvent, BusError>;

    /// For each `(partition, offset)`: every record of the partition up to and including the
    /// offset is handled, and whoever owns the partition next (this node after a restart, or
    /// another) resumes after it. Returns once that is recorded — one round trip to the bus for
    /// the lot, so commit batches, not single records.
    async fn commit(&mut self, points: &[(u32, u64)]) -> Result<(), BusError>;

    /// As [`commit`](Self::commit), without the round trip: recorded at the latest when the
    /// partition is taken from this node, before the next owner starts. (On Kafka a commit made
    /// after the revocation was announced is refused: the group is rebalancing by then.)
    fn stage(&mut self, partition: u32, offset: u64);
}

#[async_trait]
pub trait EdgeInbox: Send {
    async fn next(&mut self) -> Result<Bytes, BusError>;
}

/// Uncommitted records one partition of [`MemoryBus`] holds before publishers wait.
const MEMORY_PARTITION_CAPACITY: usize = 65_536;

/// Records one edge inbox of [`MemoryBus`] holds before publishers wait.
const MEMORY_EDGE_CAPACITY: usize = 65_536;

/// The bus of a single process: every partition belongs to the one member of the group (a new
/// member takes over from the previous, as a restarted node would). Committed records are
/// dropped, uncommitted ones are replayed to the next member.
pub struct MemoryBus {
    shared: Arc<MemoryShared>,
}

struct MemoryShared {
    partitions: Vec<Mutex<PartitionLog>>,
    /// Wakes the member when a record arrives, publishers when records are committed.
    appended: Notify,
    committed: Notify,
    /// Incremented per join; a member whose number is not current has been replaced.
    member: Mutex<u64>,
    edges: Mutex<HashMap<String, EdgeChannel>>,
}

#[derive(Default)]
struct PartitionLog {
    /// Offset of `records[0]`; everything below it is committed and dropped.
    base: u64,
    records: VecDeque<Bytes>,
}

struct EdgeChannel {
    sender: mpsc::Sender<Bytes>,
    receiver: Option<mpsc::Receiver<Bytes>>,
}

impl MemoryBus {
    pub fn new(partitions: u32) -> MemoryBus {
        let partitions = (0..partitions.max(1)).map(|_| Mutex::new(PartitionLog::default())).collect();
        MemoryBus {
            shared: Arc::new(MemoryShared {
                partitions,
                appended: Notify::new(),
                committed: Notify::new(),
                member: Mutex::new(0),
                edges: Mutex::new(HashMap::new()),
            }),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryShared {
    fn partition(&self, partition: u32) -> Result<&Mutex<PartitionLog>, BusError> {
        self.partitions.get(partition as usize).ok_or_else(|| BusError::Config(format!("no partition {partition}")))
    }

    fn edge_sender(&self, node: &str) -> mpsc::Sender<Bytes> {
        let mut edges = lock(&self.edges);
        edges
            .entry(node.to_owned())
            .or_insert_with(|| {
                let (sender, receiver) = mpsc::channel(MEMORY_EDGE_CAPACITY);
                EdgeChannel { sender, receiver: Some(receiver) }
            })
            .sender
            .clone()
    }
}

#[async_trait]
impl Bus for MemoryBus {
    fn partitions(&self) -> u32 {
        self.shared.partitions.len() as u32
    }

    async fn publish_owner(&self, partition: u32, payload: Bytes) -> Result<Delivered, BusError> {
        let log = self.shared.partition(partition)?;
        loop {
            let committed = self.shared.committed.notified();
            {
                let mut log = lock(log);
                if log.records.len() < MEMORY_PARTITION_CAPACITY {
                    log.records.push_back(payload);
                    break;
                }
            }
            committed.await;
        }
        self.shared.appended.notify_waiters();
        Ok(delivered())
    }

    async fn publish_edge(&self, node: &str, payload: Bytes) -> Result<Delivered, BusError> {
        self.shared.edge_sender(node).send(payload).await.map_err(|_| BusError::Closed)?;
        Ok(delivered())
    }

    async fn join_owners(&self, _node: &str) -> Result<Box<dyn OwnerInbox>, BusError> {
        let member = {
            let mut current = lock(&self.shared.member);
            *current += 1;
            *current
        };
        // The previous member (if any) sees its inbox closed at its next call.
        self.shared.appended.notify_waiters();
        let cursors = self.shared.partitions.iter().map(|log| lock(log).base).collect();
        Ok(Box::new(MemoryOwnerInbox { shared: self.shared.clone(), member, cursors, assigned: false, next_partition: 0 }))
    }

    async fn edge_inbox(&self, node: &str) -> Result<Box<dyn EdgeInbox>, BusError> {
        self.shared.edge_sender(node);
        let receiver = lock(&self.shared.edges).get_mut(node).and_then(|channel| channel.receiver.take());
        let receiver = receiver.ok_or_else(|| BusError::Config(format!("the inbox of {node} is already open")))?;
        Ok(Box::new(MemoryEdgeInbox { receiver }))
    }

    async fn edge_inboxes(&self) -> Result<Vec<String>, BusError> {
        Ok(lock(&self.shared.edges).keys().cloned().collect())
    }

    async fn remove_edge_inbox(&self, name: &str) -> Result<(), BusError> {
        lock(&self.shared.edges).remove(name);
        Ok(())
    }
}

struct MemoryOwnerInbox {
    shared: Arc<MemoryShared>,
    member: u64,
    /// Next offset to hand out, per partition.
    cursors: Vec<u64>,
    assigned: bool,
    /// Where the round-robin over partitions resumes, so one busy partition starves none.
    next_partition: usize,
}

impl MemoryOwnerInbox {
    fn current(&self) -> bool {
        *lock(&self.shared.member) == self.member
    }

    fn take_record(&mut self) -> Option<Record> {
        let count = self.cursors.len();
        for step in 0..count {
            let partition = (self.next_partition + step) % count;
            let log = lock(&self.shared.partitions[partition]);
            let cursor = self.cursors[partition].max(log.base);
            if let Some(payload) = log.records.get((cursor - log.base) as usize) {
                self.cursors[partition] = cursor + 1;
                self.next_partition = (partition + 1) % count;
                return Some(Record { partition: partition as u32, offset: cursor, payload: payload.clone() });
            }
        }
        None
    }
}

#[async_trait]
impl OwnerInbox for MemoryOwnerInbox {
    async fn next(&mut self) -> Result<OwnerEvent, BusError> {
        if !self.assigned {
            self.assigned = true;
            return Ok(OwnerEvent::Assigned((0..self.cursors.len() as u32).collect()));
        }
        let shared = self.shared.clone();
        loop {
            let appended = shared.appended.notified();
            if !self.current() {
                return Err(BusError::Closed);
            }
            if let Some(record) = self.take_record() {
                return Ok(OwnerEvent::Record(record));
            }
            appended.await;
        }
    }

    /// Nothing to do: this bus never takes a partition from a member that stays.
    fn stage(&mut self, _partition: u32, _offset: u64) {}

    async fn commit(&mut self, points: &[(u32, u64)]) -> Result<(), BusError> {
        if !self.current() {
            return Err(BusError::Closed);
        }
        for &(partition, offset) in points {
            let mut log = lock(self.shared.partition(partition)?);
            while log.base <= offset && log.records.pop_front().is_some() {
                log.base += 1;
            }
        }
        self.shared.committed.notify_waiters();
        Ok(())
    }
}

struct MemoryEdgeInbox {
    receiver: mpsc::Receiver<Bytes>,
}

#[async_trait]
impl EdgeInbox for MemoryEdgeInbox {
    async fn next(&mut self) -> Result<Bytes, BusError> {
        self.receiver.recv().await.ok_or(BusError::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_across_builds() {
        // FNV-1a test vectors (the empty string and "a"), then the modulo.
        assert_eq!(partition_of("", u32::MAX), (0xcbf2_9ce4_8422_2325u64 % u64::from(u32::MAX)) as u32);
        assert_eq!(partition_of("a", u32::MAX), (0xaf63_dc4c_8601_ec8cu64 % u64::from(u32::MAX)) as u32);
        assert_eq!(partition_of("alice@example.com", 1), 0);
        assert!((0..1000).map(|n| partition_of(&format!("user{n}@example.com"), 16)).all(|p| p < 16));
    }

    #[tokio::test]
    async fn memory_bus_passes_the_contract() {
        crate::contract::bus(&MemoryBus::new(4), &crate::contract::unique_prefix()).await;
    }
}
