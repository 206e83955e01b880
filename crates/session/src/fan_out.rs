//! In a cluster, one stanza to many connections as **one bus record per edge** (`FanOut`, which
//! the edge writes to each connection): what a room sends its occupants, what a PEP account
//! notifies its contacts' resources. A target reached this way has a *direct route* — a bound
//! connection without stream management, whose owner would otherwise have to count every stanza
//! for XEP-0198 — read from the registry and kept by the caller while the resource's presence
//! stands. The others go through their owners, as any stanza does. What the owner would do and
//! the direct path skips: the recipient's block list and holding for an inactive client (CSI);
//! mobile clients, which use stream management, keep both.
//!
//! Rooms and PEP keep the routes they read while the presence they hear stands; the PubSub
//! service hears no presence of its subscribers, so it reads them for each notification
//! (`reach_subscribers`: one registry read per subscriber, concurrently).

use std::collections::BTreeMap;

use futures_util::stream::{self, StreamExt};
use starling_cluster::registry::ResourceRoute;
use starling_protocol::{Jid, Stanza};
use starling_xml::Element;

use crate::context::{ClusterRoutes, Services};

/// The edge connection a resource is reached on directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Via {
    pub edge: String,
    pub connection: u64,
}

/// Registry reads a notification has in flight at once.
const READS_AT_ONCE: usize = 64;

impl Via {
    /// A route the stanza may take directly: bound without stream management.
    fn of(route: ResourceRoute) -> Option<Via> {
        route.stream_management.is_none().then_some(Via { edge: route.node, connection: route.connection })
    }
}

/// The route of the full JID `resource` if it is bound now; `None` when the registry cannot tell.
pub(crate) async fn route_of(cluster: &dyn ClusterRoutes, resource: &Jid) -> Option<Option<ResourceRoute>> {
    let name = resource.resource()?;
    Some(cluster.routes(&resource.bare()).await?.into_iter().find(|route| route.resource == name))
}

/// The direct route of `resource` (a full JID), if it has one: bound, without stream management.
pub(crate) async fn direct_route(cluster: &dyn ClusterRoutes, resource: &Jid) -> Option<Via> {
    Via::of(route_of(cluster, resource).await??)
}

/// How to reach each subscriber of a service's notification (a headline), bare or full JID. A
/// full JID: its direct route if it has one. A bare JID: each available resource of
/// non-negative priority (RFC 6121 §8.5.2.1.1), directly, when every one of them has a direct
/// route; otherwise (a stream-managed one, none available, the registry unreadable) the bare JID
/// through its owner, which applies the delivery rules. In one process everyone goes through the
/// owners.
pub(crate) async fn reach_subscribers(services: &Services, subscribers: Vec<Jid>) -> Vec<(Jid, Option<Via>)> {
    let Some(cluster) = services.cluster.get() else { return subscribers.into_iter().map(|subscriber| (subscriber, None)).collect() };
    let reads = subscribers.into_iter().map(|subscriber| async move {
        if subscriber.resource().is_some() {
            let via = direct_route(cluster.as_ref(), &subscriber).await;
            return vec![(subscriber, via)];
        }
        let routes = cluster.routes(&subscriber).await.unwrap_or_default();
        let shown: Vec<ResourceRoute> = routes.into_iter().filter(|route| route.is_available() && route.priority >= 0).collect();
        let count = shown.len();
        let direct: Vec<(Jid, Option<Via>)> = shown
            .into_iter()
            .filter_map(|route| {
                let resource = subscriber.with_resource(&route.resource).ok()?;
                Some((resource, Some(Via::of(route)?)))
            })
            .collect();
        if count == 0 || direct.len() < count { vec![(subscriber, None)] } else { direct }
    });
    stream::iter(reads).buffer_unordered(READS_AT_ONCE).flat_map(stream::iter).collect().await
}

/// Sends `stanza` (an element without addresses) from `from` to each target: one bus record per
/// edge for those with a direct route, in a cluster. Returns the stanzas for the others (and for
/// those a bus that is behind refused), for the caller to route through their owners.
#[must_use]
pub(crate) fn send<'a>(services: &Services, from: &Jid, stanza: Element, targets: impl IntoIterator<Item = (&'a Jid, Option<&'a Via>)>) -> Vec<Stanza> {
    let cluster = services.cluster.get();
    let mut by_edge: BTreeMap<&str, Vec<(u64, Jid)>> = BTreeMap::new();
    let mut through_owners = Vec::new();
    for (to, via) in targets {
        match (via, cluster) {
            (Some(via), Some(_)) => by_edge.entry(via.edge.as_str()).or_default().push((via.connection, to.clone())),
            _ => through_owners.push(Stanza::build(stanza.clone(), from, Some(to))),
        }
    }
    let Some(cluster) = cluster.filter(|_| !by_edge.is_empty()) else { return through_owners };
    let bytes = Stanza::build(stanza.clone(), from, None).bytes;
    for (edge, targets) in by_edge {
        let count = targets.len() as u64;
        match cluster.fan_out(edge, bytes.clone(), targets) {
            Ok(()) => {
                services.metrics.fan_out_records.inc();
                services.metrics.fan_out_deliveries.inc_by(count);
            }
            // The bus is behind: through the owners, which refuse what they cannot take.
            Err(targets) => through_owners.extend(targets.into_iter().map(|(_, to)| Stanza::build(stanza.clone(), from, Some(&to)))),
        }
    }
    through_owners
}
