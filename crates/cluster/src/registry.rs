//! Routing state shared by a cluster: which resources of a user are bound, on which edge node and
//! connection, with what priority and availability, who is in each multi-user chat room, and
//! which nodes are alive. In one process it
//! is [`MemoryRegistry`]; in a cluster it lives in Redis (`starling-backend-redis`). Both pass
//! the suite in `contract::registry`.
//!
//! Writes for a user carry the **generation** of the owner that makes them (the consumer-group
//! generation at which its session node was assigned the user's partition, docs/cluster.md). A
//! write with an older generation than one already seen for that user is refused, so an owner
//! that lost the user (paused, partitioned away) cannot overwrite what the new owner wrote.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::store::StoreError;

/// Where one bound resource of a user is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRoute {
    /// The resource part of the full JID.
    pub resource: String,
    /// The edge node holding the connection.
    pub node: String,
    /// The connection on that node (unique per node and process lifetime).
    pub connection: u64,
    pub priority: i8,
    /// The last available presence it broadcast (RFC 6121 §4.2), as sent; `None` while it is not
    /// available. A new owner shows contacts the same presence.
    pub presence: Option<String>,
    /// The stream has XEP-0198 on: a new owner takes its counts and unacknowledged stanzas over
    /// from the edge (docs/cluster.md, "Stream management, client state and Bind2 through the bus").
    pub stream_management: Option<ManagedStream>,
}

/// A stream-managed resource's route: the resumption id if the client can resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedStream {
    pub resumption_id: Option<String>,
}

impl ResourceRoute {
    pub fn is_available(&self) -> bool {
        self.presence.is_some()
    }
}

/// Whether a generation-fenced write was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    Applied,
    /// A newer owner has written for this user; nothing changed.
    Stale,
}

#[async_trait]
pub trait Registry: Send + Sync + 'static {
    /// Adds or replaces the route of `route.resource` for `user`.
    async fn put_resource(&self, user: &str, route: &ResourceRoute, generation: u64) -> Result<Fenced, StoreError>;

    /// Removes the route of `resource` if it is still the one of `connection` (a newer login of
    /// the same resource is left alone).
    async fn remove_resource(&self, user: &str, resource: &str, connection: u64, generation: u64) -> Result<Fenced, StoreError>;

    /// Every route of `user`, sorted by resource.
    async fn resources(&self, user: &str) -> Result<Vec<ResourceRoute>, StoreError>;

    /// Adds or replaces the occupant `nick` of `room` (a record of the MUC module's, opaque
    /// here), fenced like a user's routes by the generation of the room's owner: the next owner
    /// of the room's partition reads who is in it.
    async fn put_occupant(&self, room: &str, nick: &str, record: &[u8], generation: u64) -> Result<Fenced, StoreError>;

    /// Removes the occupant `nick` of `room`.
    async fn remove_occupant(&self, room: &str, nick: &str, generation: u64) -> Result<Fenced, StoreError>;

    /// Every occupant of `room` as `(nick, record)`, sorted by nick.
    async fn occupants(&self, room: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Marks `node` alive for `ttl` from now. Returns `true` when the registry did not know the
    /// node (its first heartbeat, or the registry lost its data, e.g. a Redis restart without
    /// persistence): an owner then writes its partitions' claims and routes again.
    async fn heartbeat(&self, node: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Nodes whose last heartbeat has not expired, sorted.
    async fn live_nodes(&self) -> Result<Vec<String>, StoreError>;

    /// Nodes that hold routes but whose heartbeat expired (or never came), sorted.
    async fn dead_nodes(&self) -> Result<Vec<String>, StoreError>;

    /// Removes every route held by `node` and returns them as `(user, route)`, so the owners can
    /// announce the resources as gone. Not fenced: a dead node's routes are wrong whoever wrote them.
    async fn reap(&self, node: &str) -> Result<Vec<(String, ResourceRoute)>, StoreError>;

    /// Session node `node` takes `partition` over: returns a generation greater than any handed
    /// out for that partition before, for the owner to write its users' routes with, and records
    /// `node` as the partition's owner.
    async fn claim_partition(&self, partition: u32, node: &str) -> Result<u64, StoreError>;

    /// The session node that claimed `partition` last, and the generation it got: with
    /// [`partition_of`](crate::bus::partition_of), which node serves a user.
    async fn partition_owner(&self, partition: u32) -> Result<Option<(String, u64)>, StoreError>;
}

/// The registry of a single process: a map under a lock.
#[derive(Default)]
pub struct MemoryRegistry {
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    routes: HashMap<String, Vec<ResourceRoute>>,
    occupants: HashMap<String, BTreeMap<String, Vec<u8>>>,
    generations: HashMap<String, u64>,
    heartbeats: HashMap<String, Instant>,
    /// Per partition: the latest generation and the node that claimed it.
    claims: HashMap<u32, (u64, String)>,
}

impl MemoryState {
    /// Records `generation` for `user` unless a newer one was seen.
    fn admit(&mut self, user: &str, generation: u64) -> bool {
        let seen = self.generations.entry(user.to_owned()).or_default();
        if generation < *seen {
            return false;
        }
        *seen = generation;
        true
    }
}

impl MemoryRegistry {
    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Registry for MemoryRegistry {
    async fn put_resource(&self, user: &str, route: &ResourceRoute, generation: u64) -> Result<Fenced, StoreError> {
        let mut state = self.state();
        if !state.admit(user, generation) {
            return Ok(Fenced::Stale);
        }
        let routes = state.routes.entry(user.to_owned()).or_default();
        routes.retain(|r| r.resource != route.resource);
        routes.push(route.clone());
        routes.sort_by(|a, b| a.resource.cmp(&b.resource));
        Ok(Fenced::Applied)
    }

    async fn remove_resource(&self, user: &str, resource: &str, connection: u64, generation: u64) -> Result<Fenced, StoreError> {
        let mut state = self.state();
        if !state.admit(user, generation) {
            return Ok(Fenced::Stale);
        }
        if let Some(routes) = state.routes.get_mut(user) {
            routes.retain(|r| r.resource != resource || r.connection != connection);
            if routes.is_empty() {
                state.routes.remove(user);
            }
        }
        Ok(Fenced::Applied)
    }

    async fn resources(&self, user: &str) -> Result<Vec<ResourceRoute>, StoreError> {
        Ok(self.state().routes.get(user).cloned().unwrap_or_default())
    }

    async fn put_occupant(&self, room: &str, nick: &str, record: &[u8], generation: u64) -> Result<Fenced, StoreError> {
        let mut state = self.state();
        if !state.admit(room, generation) {
            return Ok(Fenced::Stale);
        }
        state.occupants.entry(room.to_owned()).or_default().insert(nick.to_owned(), record.to_vec());
        Ok(Fenced::Applied)
    }

    async fn remove_occupant(&self, room: &str, nick: &str, generation: u64) -> Result<Fenced, StoreError> {
        let mut state = self.state();
        if !state.admit(room, generation) {
            return Ok(Fenced::Stale);
        }
        if let Some(occupants) = state.occupants.get_mut(room) {
            occupants.remove(nick);
            if occupants.is_empty() {
                state.occupants.remove(room);
            }
        }
        Ok(Fenced::Applied)
    }

    async fn occupants(&self, room: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self.state().occupants.get(room).map(|occupants| occupants.iter().map(|(nick, record)| (nick.clone(), record.clone())).collect()).unwrap_or_default())
    }

    async fn heartbeat(&self, node: &str, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self.state().heartbeats.insert(node.to_owned(), Instant::now() + ttl).is_none())
    }

    async fn live_nodes(&self) -> Result<Vec<String>, StoreError> {
        let now = Instant::now();
        let mut nodes: Vec<String> = self.state().heartbeats.iter().filter(|(_, until)| **until > now).map(|(node, _)| node.clone()).collect();
        nodes.sort();
        Ok(nodes)
    }

    async fn dead_nodes(&self) -> Result<Vec<String>, StoreError> {
        let now = Instant::now();
        let state = self.state();
        let alive = |node: &str| state.heartbeats.get(node).is_some_and(|until| *until > now);
        let mut dead: Vec<String> = state.routes.values().flatten().map(|r| r.node.clone()).filter(|node| !alive(node)).collect();
        dead.sort();
        dead.dedup();
        Ok(dead)
    }

    async fn reap(&self, node: &str) -> Result<Vec<(String, ResourceRoute)>, StoreError> {
        let mut state = self.state();
        let mut reaped = Vec::new();
        state.routes.retain(|user, routes| {
            routes.retain(|route| {
                if route.node == node {
                    reaped.push((user.clone(), route.clone()));
                    false
                } else {
                    true
                }
            });
            !routes.is_empty()
        });
        reaped.sort_by(|a, b| (&a.0, &a.1.resource).cmp(&(&b.0, &b.1.resource)));
        Ok(reaped)
    }

    async fn claim_partition(&self, partition: u32, node: &str) -> Result<u64, StoreError> {
        let mut state = self.state();
        let claim = state.claims.entry(partition).or_default();
        claim.0 += 1;
        node.clone_into(&mut claim.1);
        Ok(claim.0)
    }

    async fn partition_owner(&self, partition: u32) -> Result<Option<(String, u64)>, StoreError> {
        Ok(self.state().claims.get(&partition).map(|(generation, node)| (node.clone(), *generation)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unclaimed_partition_has_no_owner() {
        assert_eq!(MemoryRegistry::default().partition_owner(3).await.expect("owner"), None);
    }

    #[tokio::test]
    async fn memory_registry_passes_the_contract() {
        crate::contract::registry(&MemoryRegistry::default(), &crate::contract::unique_prefix()).await;
    }
}
