//! In a cluster, one stanza to many connections as **one bus record per edge** (`FanOut`, which
//! the edge writes to each connection): what a room sends its occupants, what a PEP account
//! notifies its contacts' resources. A target reached this way has a *direct route* — a bound
//! connection without stream management, whose owner would otherwise have to count every stanza
//! for XEP-0198 — read from the registry and kept by the caller while the resource's presence
//! stands. The others go through their owners, as any stanza does. What the owner would do and
//! the direct path skips: the recipient's block list and holding for an inactive client (CSI);
//! mobile clients, which use stream management, keep both.

use std::collections::BTreeMap;

use starling_protocol::{Jid, Stanza};
use starling_xml::Element;

use crate::context::{ClusterRoutes, Services};

/// The edge connection a resource is reached on directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Via {
    pub edge: String,
    pub connection: u64,
}

/// The direct route of `resource` (a full JID), if it has one: bound, without stream management.
pub(crate) async fn direct_route(cluster: &dyn ClusterRoutes, resource: &Jid) -> Option<Via> {
    let route = cluster.route_of(resource).await??;
    route.stream_management.is_none().then_some(Via { edge: route.node, connection: route.connection })
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
