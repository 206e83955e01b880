//! The edge's [`Gateway`] in a cluster: a bind, each client stanza, what the client says about its
//! stream (stream management, client state) and the unbind become records on the owner partition
//! of the user ([`partition_of`] its bare JID), in the order the client produced them; what the
//! owners send back arrives in this node's edge inbox and is handed to the connection's queue. A
//! bind with Bind2 inline requests and a resumption wait for the owner's answer, which comes
//! first on the connection. The edge keeps nothing else: killing it loses only its sockets (a
//! stream-managed session's unacknowledged stanzas are kept by its owner).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use starling_protocol::{Jid, Stanza};
use starling_xml::Element;
use tokio::sync::{mpsc, oneshot};

use crate::bus::{partition_of, Bus, BusError, Delivered, InFlight};
use crate::envelope::{EdgeRecord, Origin, OwnerRecord};
use crate::gateway::{
    server_chosen_resource, Binding, BoundSession, ClientEvent, ClientLink, Gateway, GatewayError, ResumeFailed, Resumed, SessionAnswer,
    StreamEnd, ToClient,
};

/// How long a bind with inline requests or a resumption waits for the owner's answer (a
/// partition that is moving is served again within Kafka's session timeout).
const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// What the session nodes behind the bus do, as configured alike on every node.
#[derive(Debug, Clone, Default)]
pub struct SessionFeatures {
    /// XEP-0198 (`[sm] enabled`).
    pub stream_management: bool,
    /// The namespaces a Bind2 bind can apply inline.
    pub inline: Vec<&'static str>,
}

/// A connection bound through this gateway.
struct Connection {
    sender: mpsc::Sender<ToClient>,
    /// Waiting for the owner's answer to a bind or resumption.
    answer: Option<oneshot::Sender<SessionAnswer>>,
}

pub struct BusGateway {
    origin: Origin,
    bus: Arc<dyn Bus>,
    features: SessionFeatures,
    links: Mutex<HashMap<u64, Connection>>,
}

impl BusGateway {
    /// Opens this edge node's inbox and starts handing its records to connections.
    pub async fn start(node: &str, bus: Arc<dyn Bus>, features: SessionFeatures) -> Result<Arc<BusGateway>, BusError> {
        let mut inbox = bus.edge_inbox(node).await?;
        let gateway = Arc::new(BusGateway { origin: Origin::new(node), bus, features, links: Mutex::new(HashMap::new()) });
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

    fn links(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Connection>> {
        self.links.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One inbox record to its connection. A full queue means the client reads too slowly: its
    /// sender is dropped here, which closes the queue and makes the connection end the stream
    /// with `policy-violation` — the same rule as in one process.
    fn hand_over(self: &Arc<Self>, bytes: Bytes) {
        let EdgeRecord { connection, message } = match EdgeRecord::decode(bytes) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(%error, "edge inbox record dropped");
                return;
            }
        };
        let mut links = self.links();
        let Some(link) = links.get_mut(&connection) else {
            if let ToClient::Answer(SessionAnswer::Resumed(Ok((jid, _)))) = message {
                self.clone().resumed_too_late(jid, connection);
            }
            return;
        };
        if let ToClient::Answer(answer) = message {
            if let Some(waiting) = link.answer.take() {
                let _ = waiting.send(answer);
            }
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_) | mpsc::error::TrySendError::Closed(_)) = link.sender.try_send(message) {
            tracing::info!(connection, "a client reads too slowly (or is gone); its stream ends");
            links.remove(&connection);
        }
    }

    /// A resumption that this edge stopped waiting for happened after all: its connection is
    /// gone, so the session is told its stream broke (it waits to be resumed again, or ends).
    fn resumed_too_late(self: Arc<Self>, jid: Jid, connection: u64) {
        tokio::spawn(async move {
            let unbind = OwnerRecord::Unbind { jid: jid.clone(), connection, end: StreamEnd::Broken };
            if let Err(error) = self.publish_durably(&jid, &unbind).await {
                tracing::warn!(%jid, %error, "could not tell the owner that a late resumption found no connection");
            }
        });
    }

    /// Registers `link`'s queue, with a wait for the owner's answer when `answer` is asked.
    fn connect(&self, link: ClientLink, answer: bool) -> Option<oneshot::Receiver<SessionAnswer>> {
        let (waiting, answered) = if answer { Some(oneshot::channel()).unzip() } else { (None, None) };
        self.links().insert(link.connection_id, Connection { sender: link.sender, answer: waiting });
        answered
    }

    /// The owner's answer, or `None` when it did not come in time.
    async fn answer(answered: oneshot::Receiver<SessionAnswer>) -> Option<SessionAnswer> {
        tokio::time::timeout(ANSWER_WAIT, answered).await.ok()?.ok()
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

    fn session(self: &Arc<Self>, jid: Jid, connection: u64) -> Box<dyn BoundSession> {
        Box::new(BusSession { gateway: self.clone(), jid, connection, in_flight: InFlight::new(SESSION_IN_FLIGHT) })
    }
}

#[async_trait]
impl Gateway for Arc<BusGateway> {
    async fn bind(&self, user: Jid, resource: Option<String>, link: ClientLink, inline: Vec<Element>) -> Result<Binding, GatewayError> {
        let resource = resource.unwrap_or_else(server_chosen_resource);
        let jid = user.with_resource(&resource).map_err(|_| GatewayError::Unavailable("invalid resource".into()))?;
        let connection = link.connection_id;
        let answered = self.connect(link, !inline.is_empty());
        let bind = OwnerRecord::Bind { jid: jid.clone(), edge: self.origin.node().to_owned(), connection, inline };
        // The bind is durable before the client hears it is bound.
        if let Err(error) = self.publish_durably(&jid, &bind).await {
            self.links().remove(&connection);
            return Err(error);
        }
        let inline_answers = match answered {
            None => Vec::new(),
            Some(answered) => match BusGateway::answer(answered).await {
                Some(SessionAnswer::Bound(answers)) => answers,
                _ => {
                    self.session(jid, connection).unbind(StreamEnd::Closed).await;
                    return Err(GatewayError::Unavailable("the session node did not answer the bind".into()));
                }
            },
        };
        Ok(Binding { session: self.session(jid, connection), inline_answers })
    }

    fn inline_features(&self) -> Vec<&'static str> {
        self.features.inline.clone()
    }

    fn supports_stream_management(&self) -> bool {
        self.features.stream_management
    }

    fn supports_client_state(&self) -> bool {
        true
    }

    async fn resume(&self, user: Jid, previd: &str, h: u32, link: ClientLink) -> Result<Resumed, ResumeFailed> {
        let connection = link.connection_id;
        let answered = self.connect(link, true).expect("an answer was asked for");
        let resume = OwnerRecord::Resume { user: user.bare(), previd: previd.to_owned(), h, edge: self.origin.node().to_owned(), connection };
        let answer = match self.publish_durably(&user, &resume).await {
            Ok(()) => BusGateway::answer(answered).await,
            Err(error) => {
                tracing::warn!(%user, %error, "could not ask the owner to resume a session");
                None
            }
        };
        match answer {
            Some(SessionAnswer::Resumed(Ok((jid, handled)))) => Ok(Resumed { session: self.session(jid, connection), handled }),
            Some(SessionAnswer::Resumed(Err(failed))) => {
                self.links().remove(&connection);
                Err(failed)
            }
            // No answer in time: if the resumption happens later, its answer finds no
            // connection and the session is told its stream broke (`hand_over`).
            _ => {
                self.links().remove(&connection);
                Err(ResumeFailed { handled: None })
            }
        }
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

impl BusSession {
    /// Queues a record of this connection behind the ones before it.
    async fn pipeline(&mut self, record: OwnerRecord) -> Result<(), GatewayError> {
        let queued = self.gateway.publish(&self.jid, &record).await;
        self.in_flight.push(queued, Vec::new()).await.map_err(unavailable)
    }

    async fn event(&mut self, event: ClientEvent) -> Result<(), GatewayError> {
        self.pipeline(OwnerRecord::ClientEvent { jid: self.jid.clone(), connection: self.connection, event }).await
    }
}

#[async_trait]
impl BoundSession for BusSession {
    fn jid(&self) -> &Jid {
        &self.jid
    }

    async fn submit(&mut self, stanza: Stanza, received: Instant) -> Result<(), GatewayError> {
        self.pipeline(OwnerRecord::FromClient { resource: self.jid.clone(), connection: self.connection, stanza, received }).await
    }

    async fn enable_stream_management(&mut self, resume: bool, max: Option<u32>) -> Result<(), GatewayError> {
        self.event(ClientEvent::Enable { resume, max }).await
    }

    async fn acknowledge(&mut self, h: u32) -> Result<(), GatewayError> {
        self.event(ClientEvent::Acknowledge(h)).await
    }

    async fn answer_for_edge(&mut self, reply: Bytes) -> Result<(), GatewayError> {
        self.event(ClientEvent::AnswerForEdge(reply)).await
    }

    async fn set_client_state(&mut self, active: bool) -> Result<(), GatewayError> {
        self.event(ClientEvent::ClientState { active }).await
    }

    async fn unbind(self: Box<Self>, end: StreamEnd) {
        self.gateway.links().remove(&self.connection);
        let unbind = OwnerRecord::Unbind { jid: self.jid.clone(), connection: self.connection, end };
        if let Err(error) = self.gateway.publish_durably(&self.jid, &unbind).await {
            tracing::warn!(jid = %self.jid, %error, "could not tell the owner that a resource went away");
        }
    }
}
