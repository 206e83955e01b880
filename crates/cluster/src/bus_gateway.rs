//! The edge's [`Gateway`] in a cluster: a bind, each client stanza and the unbind become records
//! on the owner partition of the user ([`partition_of`] its bare JID), in the order the client
//! produced them; what the owners send back arrives in this node's edge inbox and is handed to the
//! connection's queue. The edge keeps nothing else: killing it loses only its sockets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use starling_protocol::{Jid, Stanza};
use starling_xml::Element;
use tokio::sync::mpsc;

use crate::bus::{partition_of, Bus, BusError, Delivered, InFlight};
use crate::envelope::{EdgeRecord, Origin, OwnerRecord};
use crate::gateway::{server_chosen_resource, Binding, BoundSession, ClientLink, Gateway, GatewayError, StreamEnd, ToClient};

pub struct BusGateway {
    origin: Origin,
    bus: Arc<dyn Bus>,
    /// The queue of every connection bound through this gateway, by connection id.
    links: Mutex<HashMap<u64, mpsc::Sender<ToClient>>>,
}

impl BusGateway {
    /// Opens this edge node's inbox and starts handing its records to connections.
    pub async fn start(node: &str, bus: Arc<dyn Bus>) -> Result<Arc<BusGateway>, BusError> {
        let mut inbox = bus.edge_inbox(node).await?;
        let gateway = Arc::new(BusGateway { origin: Origin::new(node), bus, links: Mutex::new(HashMap::new()) });
        let weak = Arc::downgrade(&gateway);
        tokio::spawn(async move {
            loop {
                let bytes = match inbox.next().await {
                    Ok(bytes) => bytes,
                    Err(error) => {
                        tracing::error!(%error, "edge inbox failed; connections get nothing more");
                        return;
                    }
                };
                let Some(gateway) = weak.upgrade() else { return };
                gateway.hand_over(bytes);
            }
        });
        Ok(gateway)
    }

    fn links(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<ToClient>>> {
        self.links.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One inbox record to its connection. A full queue means the client reads too slowly: its
    /// sender is dropped here, which closes the queue and makes the connection end the stream
    /// with `policy-violation` — the same rule as in one process.
    fn hand_over(&self, bytes: bytes::Bytes) {
        let EdgeRecord { connection, message } = match EdgeRecord::decode(bytes) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(%error, "edge inbox record dropped");
                return;
            }
        };
        let mut links = self.links();
        let Some(sender) = links.get(&connection) else { return };
        if let Err(mpsc::error::TrySendError::Full(_) | mpsc::error::TrySendError::Closed(_)) = sender.try_send(message) {
            links.remove(&connection);
        }
    }

    /// Queues a record for the user's owner partition and returns its acknowledgement.
    async fn publish(&self, user: &Jid, record: &OwnerRecord) -> Result<Delivered, BusError> {
        let partition = partition_of(user.bare().as_str(), self.bus.partitions());
        self.bus.publish_owner(partition, record.encode(&self.origin)).await
    }

    /// [`publish`](Self::publish) and wait until the record is durable.
    async fn publish_durably(&self, user: &Jid, record: &OwnerRecord) -> Result<(), GatewayError> {
        self.publish(user, record).await.map_err(unavailable)?.await.map_err(unavailable)
    }
}

#[async_trait]
impl Gateway for Arc<BusGateway> {
    // No inline features through the bus yet: a Bind2 bind is a plain bind here.
    async fn bind(&self, user: Jid, resource: Option<String>, link: ClientLink, _inline: Vec<Element>) -> Result<Binding, GatewayError> {
        let resource = resource.unwrap_or_else(server_chosen_resource);
        let jid = user.with_resource(&resource).map_err(|_| GatewayError::Unavailable("invalid resource".into()))?;
        let connection = link.connection_id;
        self.links().insert(connection, link.sender);
        let bind = OwnerRecord::Bind { jid: jid.clone(), edge: self.origin.node().to_owned(), connection };
        // The bind is durable before the client hears it is bound.
        if let Err(error) = self.publish_durably(&jid, &bind).await {
            self.links().remove(&connection);
            return Err(error);
        }
        let session = Box::new(BusSession { gateway: self.clone(), jid, connection, in_flight: InFlight::new(SESSION_IN_FLIGHT) });
        Ok(Binding { session, inline_answers: Vec::new() })
    }
}

/// Client stanzas of one connection queued on the bus but not yet acknowledged, at most.
const SESSION_IN_FLIGHT: usize = 256;

struct BusSession {
    gateway: Arc<BusGateway>,
    jid: Jid,
    connection: u64,
    /// A client's stanzas are pipelined: queued in order, acknowledged in the background, and a
    /// failed acknowledgement ends the connection at its next stanza.
    in_flight: InFlight,
}

fn unavailable(error: BusError) -> GatewayError {
    GatewayError::Unavailable(error.to_string())
}

#[async_trait]
impl BoundSession for BusSession {
    fn jid(&self) -> &Jid {
        &self.jid
    }

    async fn submit(&mut self, stanza: Stanza, received: Instant) -> Result<(), GatewayError> {
        let from_client = OwnerRecord::FromClient { resource: self.jid.clone(), connection: self.connection, stanza, received };
        let queued = self.gateway.publish(&self.jid, &from_client).await;
        self.in_flight.push(queued, Vec::new()).await.map_err(unavailable)
    }

    // Stream management is not offered through the bus yet: every end is final.
    async fn unbind(self: Box<Self>, _: StreamEnd) {
        self.gateway.links().remove(&self.connection);
        let unbind = OwnerRecord::Unbind { jid: self.jid.clone(), connection: self.connection };
        if let Err(error) = self.gateway.publish_durably(&self.jid, &unbind).await {
            tracing::warn!(jid = %self.jid, %error, "could not tell the owner that a resource went away");
        }
    }
}
