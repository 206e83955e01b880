//! Which nodes live, and what happens to the resources of an edge that died: every node
//! heartbeats into the registry; session nodes reap the routes of edges whose heartbeat stopped
//! and tell each user's owner, through the user's partition, that the resource is gone — the
//! owner then announces it unavailable exactly as after a clean disconnect. The inbox of an edge
//! gone for longer ([`INBOX_GRACE`] ttls) is removed from the bus, so edges that come and go under
//! new names (no stable node id) leave no topics behind.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use starling_protocol::Jid;

use crate::bus::{partition_of, Bus, InFlight};
use crate::envelope::{Origin, OwnerRecord};
use crate::gateway::StreamEnd;
use crate::registry::Registry;

/// Unbind records of a reap waiting for the bus at most.
const REAP_IN_FLIGHT: usize = 1024;

/// How many node ttls an edge's inbox outlives its last heartbeat: long enough for a restart
/// under the same name (a StatefulSet's pod) to find its inbox still there.
pub const INBOX_GRACE: u32 = 30;

/// Keeps `node` alive in the registry with a heartbeat every third of `ttl`, forever. After each
/// heartbeat that found the registry did not know the node (the first one, and after the registry
/// lost its data) `forgotten` runs.
pub async fn keep_alive(registry: Arc<dyn Registry>, node: String, ttl: Duration, mut forgotten: impl FnMut() + Send) {
    let mut beat = tokio::time::interval(ttl / 3);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    loop {
        beat.tick().await;
        match registry.heartbeat(&node, ttl).await {
            Ok(unknown) => {
                if unknown && !first {
                    tracing::warn!(%node, "the registry had forgotten this node (restarted without its data?); writing this node's state again");
                }
                if unknown {
                    forgotten();
                }
                first = false;
            }
            Err(error) => tracing::warn!(%node, %error, "heartbeat failed; retrying"),
        }
    }
}

/// Removes every route `node` held and publishes an unbind for each on its user's partition.
/// Returns how many resources were reaped.
pub async fn reap(registry: &dyn Registry, bus: &dyn Bus, origin: &Origin, node: &str) -> usize {
    let routes = match registry.reap(node).await {
        Ok(routes) => routes,
        Err(error) => {
            tracing::warn!(%node, %error, "could not reap a dead node's routes");
            return 0;
        }
    };
    let mut in_flight = InFlight::new(REAP_IN_FLIGHT);
    for (user, route) in &routes {
        let Ok(jid) = Jid::new(user).and_then(|user| user.with_resource(&route.resource)) else {
            tracing::warn!(%node, %user, resource = %route.resource, "a reaped route that names no valid resource; its owner is not told");
            continue;
        };
        // The edge died, so its connections broke: stream-managed sessions wait to be resumed.
        let unbind = OwnerRecord::Unbind { jid, connection: route.connection, end: StreamEnd::Broken };
        let queued = bus.publish_owner(partition_of(user, bus.partitions()), unbind.encode(origin)).await;
        if let Err(error) = in_flight.push(queued, Vec::new()).await {
            tracing::warn!(%node, %user, %error, "could not tell an owner that a dead node's resource is gone");
        }
    }
    while !in_flight.is_empty() {
        if let Err(error) = in_flight.next_done().await {
            tracing::warn!(%node, %error, "could not tell an owner that a dead node's resource is gone");
        }
    }
    if !routes.is_empty() {
        tracing::info!(%node, resources = routes.len(), "reaped the resources of a dead node");
    }
    routes.len()
}

/// Reaps every node the registry has seen dead (holding routes without a live heartbeat) for at
/// least `ttl` of this node's own observation, checking every half `ttl`, forever. The wait
/// covers a registry that lost its data: its nodes look dead until their next heartbeat. Any
/// number of nodes may run this: a route is reaped once.
pub async fn reap_dead_nodes(registry: Arc<dyn Registry>, bus: Arc<dyn Bus>, origin: Arc<Origin>, ttl: Duration) {
    let mut suspects: HashMap<String, Instant> = HashMap::new();
    let mut abandoned: HashMap<String, Instant> = HashMap::new();
    let mut check = tokio::time::interval(ttl / 2);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        check.tick().await;
        let dead = match registry.dead_nodes().await {
            Ok(dead) => dead,
            Err(error) => {
                tracing::warn!(%error, "could not list dead nodes");
                continue;
            }
        };
        suspects.retain(|node, _| dead.contains(node));
        for node in dead {
            let since = *suspects.entry(node.clone()).or_insert_with(Instant::now);
            if since.elapsed() >= ttl {
                reap(registry.as_ref(), bus.as_ref(), &origin, &node).await;
                suspects.remove(&node);
            }
        }
        remove_abandoned_inboxes(registry.as_ref(), bus.as_ref(), &mut abandoned, ttl * INBOX_GRACE).await;
    }
}

/// Removes the edge inboxes no live node has had for `grace` of this node's observation (one
/// heartbeat brings an inbox back into use before that; an edge that starts again later opens
/// a new one).
async fn remove_abandoned_inboxes(registry: &dyn Registry, bus: &dyn Bus, abandoned: &mut HashMap<String, Instant>, grace: Duration) {
    let (live, inboxes) = match (registry.live_nodes().await, bus.edge_inboxes().await) {
        (Ok(live), Ok(inboxes)) => (live, inboxes),
        (Err(error), _) => return tracing::warn!(%error, "could not list live nodes"),
        (_, Err(error)) => return tracing::warn!(%error, "could not list the edges' inboxes"),
    };
    let live: std::collections::HashSet<String> = live.iter().map(|node| bus.inbox_name(node)).collect();
    abandoned.retain(|inbox, _| inboxes.contains(inbox) && !live.contains(inbox));
    for inbox in inboxes.into_iter().filter(|inbox| !live.contains(inbox)) {
        let since = *abandoned.entry(inbox.clone()).or_insert_with(Instant::now);
        if since.elapsed() >= grace {
            match bus.remove_edge_inbox(&inbox).await {
                Ok(()) => tracing::info!(%inbox, "removed the inbox of an edge gone for good"),
                Err(error) => tracing::warn!(%inbox, %error, "could not remove an abandoned edge inbox"),
            }
            abandoned.remove(&inbox);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{MemoryBus, OwnerEvent};
    use crate::registry::{MemoryRegistry, ResourceRoute};

    #[tokio::test]
    async fn a_dead_nodes_resources_are_unbound_through_their_owners_partitions() {
        let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::default());
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new(4));
        let route = |resource: &str, node: &str, connection| ResourceRoute {
            resource: resource.into(),
            node: node.into(),
            connection,
            priority: 0,
            presence: None,
            stream_management: None,
        };
        registry.put_resource("alice@example.com", &route("phone", "edge-a", 7), 1).await.unwrap();
        registry.put_resource("bob@example.com", &route("web", "edge-b", 8), 1).await.unwrap();
        registry.heartbeat("edge-b", Duration::from_secs(60)).await.unwrap();
        let origin = Arc::new(Origin::new("session-1"));
        let ttl = Duration::from_millis(40);
        let reaper = tokio::spawn(reap_dead_nodes(registry.clone(), bus.clone(), origin, ttl));

        let mut owner = bus.join_owners("session-1").await.unwrap();
        assert!(matches!(owner.next().await.unwrap(), OwnerEvent::Assigned(_)));
        let OwnerEvent::Record(record) = tokio::time::timeout(Duration::from_secs(5), owner.next()).await.expect("an unbind").unwrap() else {
            panic!("not a record")
        };
        reaper.abort();
        assert_eq!(record.partition, partition_of("alice@example.com", 4));
        let OwnerRecord::Unbind { jid, connection, end: StreamEnd::Broken } = OwnerRecord::decode(record.payload).expect("an owner record") else { panic!("not an unbind") };
        assert_eq!((jid.as_str(), connection), ("alice@example.com/phone", 7));
        assert!(registry.resources("alice@example.com").await.unwrap().is_empty());
        assert_eq!(registry.resources("bob@example.com").await.unwrap().len(), 1, "a live node keeps its routes");
    }

    #[tokio::test]
    async fn the_inbox_of_an_edge_gone_for_the_grace_period_is_removed() {
        let registry: Arc<dyn Registry> = Arc::new(MemoryRegistry::default());
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new(4));
        let _live_inbox = bus.edge_inbox("edge-live").await.unwrap();
        let _gone_inbox = bus.edge_inbox("edge-gone").await.unwrap();
        registry.heartbeat("edge-live", Duration::from_secs(60)).await.unwrap();
        let mut abandoned = HashMap::new();
        let grace = Duration::from_millis(30);
        remove_abandoned_inboxes(registry.as_ref(), bus.as_ref(), &mut abandoned, grace).await;
        assert_eq!(bus.edge_inboxes().await.unwrap().len(), 2, "first seen abandoned: kept for the grace period");
        tokio::time::sleep(grace).await;
        remove_abandoned_inboxes(registry.as_ref(), bus.as_ref(), &mut abandoned, grace).await;
        assert_eq!(bus.edge_inboxes().await.unwrap(), vec!["edge-live".to_owned()]);
    }
}
