//! External components connected to edges of a cluster, as the owner of their domain's partition
//! holds them: the edge's announcement (`ComponentBind`, repeated every few seconds) attaches a
//! link to the component's connection on that edge to the host router, for
//! [`COMPONENT_LEASE`](starling_cluster::bus_gateway::COMPONENT_LEASE); a component not announced
//! again within it (its edge died) is detached and its domain answers `service-unavailable`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use starling_cluster::bus::partition_of;
use starling_cluster::bus_gateway::COMPONENT_LEASE;
use starling_cluster::gateway::{ClientLink, ComponentLink, ToClient};
use starling_protocol::{Jid, Stanza};

use crate::hold::current_hold;
use crate::router::HostRouter;

/// Stanzas queued toward a component on an edge before senders are refused.
pub(crate) const REMOTE_COMPONENT_QUEUE: usize = 4096;

struct RemoteComponent {
    connection: u64,
    link: ClientLink,
}

impl ComponentLink for RemoteComponent {
    fn send(&self, stanza: Stanza) -> Result<(), Box<Stanza>> {
        match self.link.try_send(ToClient::Stanza(stanza.bytes.clone(), None), current_hold().as_ref()) {
            Ok(()) => Ok(()),
            Err(_) => Err(Box::new(stanza)),
        }
    }
}

/// The components this node routes to, by domain, with when each was last announced.
#[derive(Default)]
pub(crate) struct RemoteComponents(Mutex<HashMap<String, (Arc<RemoteComponent>, Instant)>>);

impl RemoteComponents {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Arc<RemoteComponent>, Instant)>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An edge announced the component of `domain` on its `connection`: renews it, or attaches
    /// a link made by `link` (a newer connection replaces an older one).
    pub fn announced(&self, router: &HostRouter, domain: &Jid, connection: u64, link: impl FnOnce() -> ClientLink) {
        let mut held = self.held();
        if let Some((component, renewed)) = held.get_mut(domain.domain())
            && component.connection == connection
        {
            *renewed = Instant::now();
            return;
        }
        let component = Arc::new(RemoteComponent { connection, link: link() });
        router.attach_component(domain, component.clone());
        held.insert(domain.domain().to_owned(), (component, Instant::now()));
        tracing::info!(%domain, connection, "component attached through its edge");
    }

    /// The component connection `connection` of `domain` ended.
    pub fn gone(&self, router: &HostRouter, domain: &Jid, connection: u64) {
        let mut held = self.held();
        if held.get(domain.domain()).is_some_and(|(component, _)| component.connection == connection)
            && let Some((component, _)) = held.remove(domain.domain())
        {
            let link: Arc<dyn ComponentLink> = component;
            router.detach_component(domain, &link);
        }
    }

    /// Detaches the components not announced within the lease, and, when partitions move away
    /// (`revoked`, of `partitions` in all), those whose domains they hold.
    pub fn expire(&self, router: &HostRouter, revoked: &[u32], partitions: u32) {
        let mut held = self.held();
        let stale: Vec<String> = held
            .iter()
            .filter(|(domain, (_, renewed))| renewed.elapsed() > COMPONENT_LEASE || revoked.contains(&partition_of(domain, partitions)))
            .map(|(domain, _)| domain.clone())
            .collect();
        for domain in stale {
            let Some((component, _)) = held.remove(&domain) else { continue };
            let Ok(jid) = Jid::new(&domain) else { continue };
            let link: Arc<dyn ComponentLink> = component;
            router.detach_component(&jid, &link);
            tracing::info!(%domain, "component detached (not announced again, or its partition moved)");
        }
    }
}
