//! The edge's [`Gateway`] in a cluster: a bind, each client stanza and the unbind become records
//! on the owner partition of the user ([`partition_of`] its bare JID), in the order the client
//! produced them; what the owners send back arrives in this node's edge inbox and is handed to the
//! connection's queue. The edge keeps nothing else: killing it loses only its sockets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use starling_protocol::{Jid, Stanza, StreamError, StreamErrorCondition};
use starling_wire::v1::{self, envelope::Body, to_connection::Action};
use tokio::sync::mpsc;

use crate::bus::{partition_of, Bus, BusError, Delivered, InFlight};
use crate::gateway::{server_chosen_resource, BoundSession, ClientLink, Gateway, GatewayError, ToClient};

/// Microseconds since the epoch at which something that happened at `at` happened.
pub fn epoch_micros(at: Instant) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(now.saturating_sub(at.elapsed()).as_micros()).unwrap_or(u64::MAX)
}

/// Stamps envelopes with this node and an increasing sequence number.
pub struct Origin {
    node: String,
    seq: AtomicU64,
}

impl Origin {
    pub fn new(node: impl Into<String>) -> Origin {
        Origin { node: node.into(), seq: AtomicU64::new(0) }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn envelope(&self, body: Body) -> v1::Envelope {
        v1::Envelope {
            origin_node: self.node.clone(),
            origin_seq: self.seq.fetch_add(1, Ordering::Relaxed),
            traceparent: String::new(),
            body: Some(body),
        }
    }
}

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
        let envelope = match starling_wire::decode(bytes) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(%error, "undecodable edge inbox record dropped");
                return;
            }
        };
        let Some(Body::ToConnection(v1::ToConnection { connection, action: Some(action) })) = envelope.body else {
            tracing::warn!(origin = %envelope.origin_node, "edge inbox record that is not for a connection dropped");
            return;
        };
        let message = match action {
            Action::Stanza(bytes) => ToClient::Stanza(bytes),
            Action::Close(condition) => {
                ToClient::Close(StreamError::new(StreamErrorCondition::parse(&condition).unwrap_or(StreamErrorCondition::UndefinedCondition)))
            }
            Action::EndStream(_) => ToClient::EndStream,
        };
        let mut links = self.links();
        let Some(sender) = links.get(&connection) else { return };
        if let Err(mpsc::error::TrySendError::Full(_) | mpsc::error::TrySendError::Closed(_)) = sender.try_send(message) {
            links.remove(&connection);
        }
    }

    /// Queues a record for the user's owner partition and returns its acknowledgement.
    async fn publish(&self, user: &Jid, body: Body) -> Result<Delivered, BusError> {
        let partition = partition_of(user.bare().as_str(), self.bus.partitions());
        let bytes = starling_wire::encode(&self.origin.envelope(body));
        self.bus.publish_owner(partition, bytes).await
    }

    /// [`publish`](Self::publish) and wait until the record is durable.
    async fn publish_durably(&self, user: &Jid, body: Body) -> Result<(), GatewayError> {
        self.publish(user, body).await.map_err(unavailable)?.await.map_err(unavailable)
    }
}

#[async_trait]
impl Gateway for Arc<BusGateway> {
    async fn bind(&self, user: Jid, resource: Option<String>, link: ClientLink) -> Result<Box<dyn BoundSession>, GatewayError> {
        let resource = resource.unwrap_or_else(server_chosen_resource);
        let jid = user.with_resource(&resource).map_err(|_| GatewayError::Unavailable("invalid resource".into()))?;
        let connection = link.connection_id;
        self.links().insert(connection, link.sender);
        let bind = v1::Bind { full_jid: jid.to_string(), edge_node: self.origin.node().to_owned(), connection };
        // The bind is durable before the client hears it is bound.
        if let Err(error) = self.publish_durably(&jid, Body::Bind(bind)).await {
            self.links().remove(&connection);
            return Err(error);
        }
        Ok(Box::new(BusSession { gateway: self.clone(), jid, connection, in_flight: InFlight::new(SESSION_IN_FLIGHT) }))
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
        let from_client = v1::FromClient {
            full_jid: self.jid.to_string(),
            connection: self.connection,
            stanza: Some(v1::Stanza::from_routed(&stanza, epoch_micros(received))),
        };
        let queued = self.gateway.publish(&self.jid, Body::FromClient(from_client)).await;
        self.in_flight.push(queued, Vec::new()).await.map_err(unavailable)
    }

    async fn unbind(self: Box<Self>) {
        self.gateway.links().remove(&self.connection);
        let unbind = v1::Unbind { full_jid: self.jid.to_string(), connection: self.connection };
        if let Err(error) = self.gateway.publish_durably(&self.jid, Body::Unbind(unbind)).await {
            tracing::warn!(jid = %self.jid, %error, "could not tell the owner that a resource went away");
        }
    }
}
