//! External components (XEP-0114) on an edge of a cluster. The edge announces each component it
//! holds to the owner of the component domain's partition (`ComponentBind`, the partition of the
//! domain as for a user's bare JID), and announces it again every [`RENEW_EVERY`]: the owner
//! treats an announcement as a lease of [`COMPONENT_LEASE`], so a new owner learns where the
//! component is within one renewal, and a component whose edge died stops being routed to once
//! its lease runs out. What the owner sends it arrives in this edge's inbox like a client's
//! stanzas (the component has a connection id of its own); what it sends goes to the owner
//! partition of each stanza's recipient as a `Deliver` record, in the order it sent them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use starling_protocol::{Jid, Stanza, StanzaError, StanzaErrorCondition};
use starling_xml::Element;
use tokio::sync::mpsc;

use super::BusGateway;
use crate::bus::InFlight;
use crate::envelope::OwnerRecord;
use crate::gateway::{ComponentLink, GatewayError, ToClient};

/// How long an owner routes to a component after its edge last announced it.
pub const COMPONENT_LEASE: Duration = Duration::from_secs(15);
/// How often an edge announces its components again.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// Stanzas from components queued toward the bus before a component is refused.
pub(super) const OWNER_OUTBOX: usize = 8192;
/// Connection ids of components: the upper half of the id space, apart from clients'.
const FIRST_COMPONENT: u64 = 1 << 63;

/// A component connected to this edge.
pub(super) struct HeldComponent {
    domain: Jid,
    link: Arc<dyn ComponentLink>,
}

impl BusGateway {
    /// Starts the publisher of what this edge hands to owners besides its clients' records —
    /// components' stanzas and fan-out stanzas for stream-managed clients — in their order, and
    /// the renewals.
    pub(super) fn start_components(self: &Arc<Self>, mut outbox: mpsc::Receiver<(u32, Bytes)>) {
        let weak = Arc::downgrade(self);
        let bus = self.bus.clone();
        tokio::spawn(async move {
            let mut in_flight = InFlight::new(OWNER_OUTBOX);
            loop {
                let result = tokio::select! {
                    next = outbox.recv() => match next {
                        Some((partition, bytes)) => in_flight.push(bus.publish_owner(partition, bytes).await, Vec::new()).await,
                        None => return,
                    },
                    done = in_flight.next_done() => done,
                };
                if let Err(error) = result {
                    tracing::warn!(%error, "a stanza for an owner was not taken by the bus");
                }
            }
        });
        tokio::spawn(async move {
            let mut renew = tokio::time::interval(RENEW_EVERY);
            loop {
                renew.tick().await;
                let Some(gateway) = weak.upgrade() else { return };
                let held: Vec<(u64, Jid)> = gateway.components().iter().map(|(connection, held)| (*connection, held.domain.clone())).collect();
                for (connection, domain) in held {
                    gateway.announce(OwnerRecord::ComponentBind { domain, edge: gateway.origin.node().to_owned(), connection });
                }
            }
        });
    }

    fn components(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, HeldComponent>> {
        self.components.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes a component's bind or unbind on its domain's partition.
    fn announce(self: &Arc<Self>, record: OwnerRecord) {
        let (OwnerRecord::ComponentBind { domain, .. } | OwnerRecord::ComponentUnbind { domain, .. }) = &record else { return };
        let domain = domain.clone();
        let gateway = self.clone();
        tokio::spawn(async move {
            if let Err(error) = gateway.publish_durably(&domain, &record).await {
                tracing::warn!(%domain, %error, "could not tell the owner about a component (the next renewal will)");
            }
        });
    }

    pub(super) fn attach(self: &Arc<Self>, domain: &Jid, link: Arc<dyn ComponentLink>) -> Result<(), GatewayError> {
        let connection = FIRST_COMPONENT + self.next_component.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.components().insert(connection, HeldComponent { domain: domain.clone(), link });
        self.announce(OwnerRecord::ComponentBind { domain: domain.clone(), edge: self.origin.node().to_owned(), connection });
        Ok(())
    }

    pub(super) fn detach(self: &Arc<Self>, domain: &Jid, link: &Arc<dyn ComponentLink>) {
        let mut components = self.components();
        let Some(connection) = components.iter().find(|(_, held)| Arc::ptr_eq(&held.link, link)).map(|(connection, _)| *connection) else { return };
        components.remove(&connection);
        drop(components);
        self.announce(OwnerRecord::ComponentUnbind { domain: domain.clone(), connection });
    }

    pub(super) fn submit(&self, stanza: Stanza) -> Result<(), GatewayError> {
        let Some(to) = stanza.to.clone() else { return Ok(()) };
        let record = OwnerRecord::Deliver { stanza, received: Instant::now(), cause: None };
        if self.queue_for_owner(&to, &record) { Ok(()) } else { Err(GatewayError::Unavailable("too many stanzas from components queued".into())) }
    }

    /// An inbox record for a component of this edge; false if `connection` is not one.
    pub(super) fn to_component(&self, connection: u64, message: &ToClient) -> bool {
        if connection < FIRST_COMPONENT {
            return false;
        }
        let components = self.components();
        // A record for a component gone from here is dropped.
        let Some(held) = components.get(&connection) else { return true };
        let ToClient::Stanza(bytes, _) = message else { return true };
        // The owner sends serialised stanzas; the component's writer needs the element to change
        // its namespace anyway.
        match Element::parse(bytes).map_err(drop).and_then(|element| Stanza::from_element(&element).map_err(drop)) {
            Ok(stanza) => {
                if let Err(refused) = held.link.send(stanza) {
                    // As in one process: the sender hears the component cannot take it now.
                    let reply = refused.error_reply(&held.domain, &StanzaError::new(StanzaErrorCondition::ResourceConstraint));
                    if let Some(reply) = reply {
                        let _ = self.submit(reply);
                    }
                }
            }
            Err(()) => tracing::warn!(domain = %held.domain, "an unparsable stanza for a component was dropped"),
        }
        true
    }
}
