//! The edge's [`Gateway`] in a cluster: a bind, each client stanza, what the client says about its
//! stream (stream management, client state) and the unbind become records on the owner partition
//! of the user ([`partition_of`] its bare JID), in the order the client produced them; what the
//! owners send back arrives in this node's edge inbox and is handed to the connection's queue. A
//! bind with Bind2 inline requests and a resumption wait for the owner's answer, which comes
//! first on the connection. Killing an edge loses only its sockets: a stream-managed session's
//! unacknowledged stanzas are kept by its owner. The edge keeps a copy of them and of the counts
//! ([`StreamCopy`]) for a new owner to take over after the owner's death. External components
//! connected to the edge are announced to their domain's owner (`components`). What cannot be
//! written to a connection without stream management — a slow reader cut, or a connection gone
//! while records for it were on their way — goes back to its owner (`cut`), never vanishes.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use starling_protocol::{ns, Jid, Stanza};
use starling_xml::Element;
use tokio::sync::{mpsc, oneshot};

use crate::bus::{partition_of, Bus, BusError, Delivered};
use crate::envelope::{EdgeInboxRecord, EdgeInbound, EdgeRecord, FanOut, Origin, OwnerRecord};
use crate::stream_copy::StreamCopy;

mod components;
mod cut;
mod session;
pub use components::{COMPONENT_LEASE, RENEW_EVERY};
use cut::CutConnections;
use starling_telemetry::traces::StanzaSpan;
use starling_telemetry::Metrics;
use crate::gateway::{
    server_chosen_resource, Binding, BoundSession, ClientEvent, ClientLink, ComponentLink, Gateway, GatewayError, ResumeFailed, Resumed, SessionAnswer,
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
    /// `[sm] max_unacked`: past it the owner ends a stream, and the edge's copy stops.
    pub max_unacked: usize,
}

/// A connection bound through this gateway.
struct Connection {
    sender: mpsc::Sender<ToClient>,
    /// The full JID bound on it (`None` while a resumption waits for its answer).
    jid: Option<Jid>,
    /// Waiting for the owner's answer to a bind or resumption.
    answer: Option<oneshot::Sender<SessionAnswer>>,
    /// A resumption's `h`, where the copy's count starts when it succeeds.
    resumed_from: Option<u32>,
    copy: Arc<StreamCopy>,
    /// The session node that announced itself as the connection's owner (with a sync or an
    /// answer); `None` until one has.
    owner: Option<String>,
}

/// Whether a Bind2 bind's answers turned stream management on (`<enabled/>` among them).
fn enables_stream_management(answers: &[Element]) -> bool {
    answers.iter().any(|answer| answer.is("enabled", ns::SM))
}

pub struct BusGateway {
    origin: Origin,
    bus: Arc<dyn Bus>,
    features: SessionFeatures,
    links: Mutex<HashMap<u64, Connection>>,
    components: Mutex<HashMap<u64, components::HeldComponent>>,
    next_component: AtomicU64,
    owner_outbox: mpsc::Sender<(u32, Bytes)>,
    cut: Mutex<CutConnections>,
    metrics: Arc<Metrics>,
    /// Why the inbox stopped, once it has: nothing reaches this edge's connections any more.
    inbox_failed: tokio::sync::watch::Sender<Option<String>>,
}

impl BusGateway {
    /// Opens this edge node's inbox and starts handing its records to connections.
    pub async fn start(node: &str, bus: Arc<dyn Bus>, features: SessionFeatures) -> Result<Arc<BusGateway>, BusError> {
        let mut inbox = bus.edge_inbox(node).await?;
        let (owner_outbox, outbox) = mpsc::channel(components::OWNER_OUTBOX);
        let gateway = Arc::new(BusGateway {
            origin: Origin::new(node),
            bus,
            features,
            links: Mutex::new(HashMap::new()),
            components: Mutex::new(HashMap::new()),
            next_component: AtomicU64::new(0),
            owner_outbox,
            cut: Mutex::default(),
            metrics: Metrics::global(),
            inbox_failed: tokio::sync::watch::Sender::new(None),
        });
        gateway.start_components(outbox);
        let weak = Arc::downgrade(&gateway);
        tokio::spawn(async move {
            loop {
                let bytes = match inbox.next().await {
                    Ok(bytes) => bytes,
                    Err(error) => {
                        tracing::error!(%error, "edge inbox failed; connections get nothing more");
                        if let Some(gateway) = weak.upgrade() {
                            gateway.inbox_failed.send_replace(Some(error.to_string()));
                        }
                        return;
                    }
                };
                let Some(gateway) = weak.upgrade() else { return };
                gateway.hand_over(bytes);
            }
        });
        Ok(gateway)
    }

    /// Completes, with why, if this edge's inbox stops: the process cannot serve its clients.
    pub async fn inbox_failure(&self) -> String {
        let mut failed = self.inbox_failed.subscribe();
        match failed.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }

    fn links(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Connection>> {
        self.links.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn hand_over(self: &Arc<Self>, bytes: Bytes) {
        let EdgeInboxRecord { inbound, origin, traceparent } = match EdgeInbound::decode(bytes) {
            Ok(decoded) => decoded,
            Err(error) => return tracing::warn!(%error, "edge inbox record dropped"),
        };
        // A traced stanza's last hop: until it is on its connection's queue.
        let span = StanzaSpan::continued("starling.edge.deliver", &traceparent, Vec::new);
        let _log = span.log_scope().entered();
        match inbound {
            EdgeInbound::Connection(record) => self.to_connection(record, origin),
            EdgeInbound::FanOut(fan_out) => self.fan_out(&fan_out),
        }
    }

    /// One inbox record to its connection. A full queue means the client reads too slowly: its
    /// sender is dropped here, which closes the queue and makes the connection end the stream
    /// with `policy-violation` — the same rule as in one process.
    fn to_connection(self: &Arc<Self>, EdgeRecord { connection, message }: EdgeRecord, origin: String) {
        if self.to_component(connection, &message) {
            return;
        }
        let mut links = self.links();
        let Some(link) = links.get_mut(&connection) else {
            drop(links);
            match message {
                ToClient::Answer(SessionAnswer::Resumed(Ok((jid, _)))) => self.clone().unbind_gone(jid, connection, StreamEnd::Broken),
                // A new owner took over a route whose stream is gone: it is unbound for good.
                ToClient::Sync(jid) => self.clone().unbind_gone(jid, connection, StreamEnd::Closed),
                ToClient::Stanza(bytes, _) => self.return_undelivered(connection, bytes),
                _ => {}
            }
            return;
        };
        if matches!(message, ToClient::Sync(_) | ToClient::Answer(_)) {
            link.owner = Some(origin);
        } else if link.owner.as_ref().is_some_and(|owner| *owner != origin) {
            // From an owner that lost the partition (frozen past its session timeout, woken up
            // before it learnt so) after the new owner announced itself: the new owner replays
            // whatever the earlier one had not committed, so nothing is lost here; written, it
            // would come twice and out of order.
            tracing::debug!(connection, %origin, "a record from an earlier owner is dropped");
            self.metrics.replayed_deliveries_dropped.inc();
            return;
        }
        if let ToClient::Answer(answer) = message {
            match &answer {
                SessionAnswer::Bound(answers) if enables_stream_management(answers) => link.copy.start(0),
                SessionAnswer::Resumed(Ok(_)) => link.copy.start(link.resumed_from.unwrap_or(0)),
                _ => {}
            }
            if let Some(waiting) = link.answer.take() {
                let _ = waiting.send(answer);
            }
            return;
        }
        match &message {
            // Made already: a record handled by two owners (one frozen past its session timeout
            // that woke up before it learnt it lost the partition) is delivered once. A counted
            // stream is left to its owner, whose numbering the client acknowledges.
            ToClient::Stanza(_, Some(key)) if !link.copy.is_counting() && link.copy.has_delivered(*key) => {
                self.metrics.replayed_deliveries_dropped.inc();
                return;
            }
            ToClient::Stanza(bytes, key) => link.copy.queued(bytes, *key, self.features.max_unacked),
            ToClient::Enabled(_) => link.copy.start(0),
            ToClient::Sync(jid) => return self.send_synced(link, connection, jid.clone()),
            _ => {}
        }
        if let Err(mpsc::error::TrySendError::Full(message) | mpsc::error::TrySendError::Closed(message)) = link.sender.try_send(message) {
            self.cut_off(&mut links, connection);
            drop(links);
            if let ToClient::Stanza(bytes, _) = message {
                self.return_undelivered(connection, bytes);
            }
        }
    }

    /// A client reads too slowly (or is gone): its queue is dropped, which ends its stream with
    /// `policy-violation`. Without stream management, what still comes for it goes back to its
    /// owner from now on.
    fn cut_off(&self, links: &mut HashMap<u64, Connection>, connection: u64) {
        tracing::info!(connection, "a client reads too slowly (or is gone); its stream ends");
        if let Some(link) = links.remove(&connection) {
            self.forget(connection, &link);
        }
    }

    /// `link` is gone: a connection without stream management is remembered as cut.
    fn forget(&self, connection: u64, link: &Connection) {
        if let Some(jid) = link.jid.clone().filter(|_| !link.copy.is_counting()) {
            self.cut.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(connection, jid);
        }
    }

    /// A stanza for a cut connection goes back to its user's owner, which keeps it as it keeps
    /// what a client never acknowledged; one for a connection never bound here is dropped.
    fn return_undelivered(&self, connection: u64, bytes: Bytes) {
        let jid = self.cut.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(connection).cloned();
        let Some(jid) = jid else {
            tracing::debug!(connection, "a stanza for an unknown connection is dropped");
            return self.metrics.edge_undelivered.dropped.inc();
        };
        let record = OwnerRecord::ClientEvent { jid: jid.clone(), connection, event: ClientEvent::Undelivered(bytes) };
        if self.queue_for_owner(&jid, &record) {
            self.metrics.edge_undelivered.returned.inc();
        } else {
            tracing::warn!(connection, "too many stanzas queued for owners; one a client could not take is dropped");
            self.metrics.edge_undelivered.dropped.inc();
        }
    }

    /// Queues `record` for the owner partition of `user`, in order with everything else this
    /// edge hands its owners without waiting; false when that queue is full.
    fn queue_for_owner(&self, user: &Jid, record: &OwnerRecord) -> bool {
        let partition = partition_of(user.bare().as_str(), self.bus.partitions());
        self.owner_outbox.try_send((partition, record.encode(&self.origin))).is_ok()
    }

    /// One stanza to each of several connections. A delivery already made (a replayed record)
    /// is not made again. A stream-managed connection gets it through its owner, which keeps
    /// what the client has not acknowledged and counts it: the edge alone would lose it to a
    /// resumption and break the counts.
    fn fan_out(self: &Arc<Self>, fan_out: &FanOut) {
        let mut links = self.links();
        for target in &fan_out.targets {
            let Some(link) = links.get_mut(&target.connection) else { continue };
            if target.delivery.is_some_and(|key| link.copy.has_delivered(key)) {
                continue;
            }
            let bytes = fan_out.stanza_to(&target.to);
            if link.copy.is_counting() {
                self.deliver_through_owner(&target.to, &bytes);
                continue;
            }
            link.copy.queued(&bytes, target.delivery, self.features.max_unacked);
            if link.sender.try_send(ToClient::Stanza(bytes, target.delivery)).is_err() {
                // A room's groupchat or a PEP headline: nothing an absent resource keeps.
                self.metrics.edge_undelivered.dropped.inc();
                self.cut_off(&mut links, target.connection);
            }
        }
    }

    /// Hands a stanza for a stream-managed connection to the owner of its user, in order with
    /// the others this edge hands over.
    fn deliver_through_owner(&self, to: &Jid, bytes: &[u8]) {
        let Some(stanza) = Element::parse(bytes).ok().and_then(|element| Stanza::from_element(&element).ok()) else { return };
        let record = OwnerRecord::Deliver { stanza, received: Instant::now(), cause: None };
        if !self.queue_for_owner(to, &record) {
            tracing::warn!(%to, "too many stanzas queued for owners; a room's stanza for a stream-managed client is dropped");
        }
    }

    /// The owner acts on a connection this edge no longer has: a resumption answered after the
    /// edge stopped waiting (the stream broke again: the session waits to be resumed, or ends),
    /// or a route a new owner took over (it ends).
    fn unbind_gone(self: Arc<Self>, jid: Jid, connection: u64, end: StreamEnd) {
        tokio::spawn(async move {
            let unbind = OwnerRecord::Unbind { jid: jid.clone(), connection, end };
            if let Err(error) = self.publish_durably(&jid, &unbind).await {
                tracing::warn!(%jid, %error, "could not tell the owner that a connection is gone");
            }
        });
    }

    /// A new owner asked where a connection it took over stands: the counts and delivery keys
    /// are taken here, at this point of the stream, and published behind the client's stanzas
    /// counted so far.
    fn send_synced(self: &Arc<Self>, link: &Connection, connection: u64, jid: Jid) {
        let mut synced = link.copy.snapshot();
        let (gateway, copy) = (self.clone(), link.copy.clone());
        tokio::spawn(async move {
            let handled = copy.handled.lock().await;
            if let Some(counts) = synced.counts.as_mut() {
                let Some(handled) = *handled else { return };
                counts.handled = handled;
            }
            let record = OwnerRecord::ClientEvent { jid: jid.clone(), connection, event: ClientEvent::Synced(synced) };
            if let Err(error) = gateway.publish_durably(&jid, &record).await {
                tracing::warn!(%jid, %error, "could not tell a new owner where a connection stands");
            }
        });
    }

    /// Registers `link`'s queue, with a wait for the owner's answer when `answer` is asked.
    fn connect(&self, link: ClientLink, jid: Option<Jid>, answer: bool, resumed_from: Option<u32>) -> (Option<oneshot::Receiver<SessionAnswer>>, Arc<StreamCopy>) {
        let (waiting, answered) = if answer { Some(oneshot::channel()).unzip() } else { (None, None) };
        let copy = Arc::new(StreamCopy::default());
        let connection = Connection { sender: link.sender, jid, answer: waiting, resumed_from, copy: copy.clone(), owner: None };
        self.links().insert(link.connection_id, connection);
        (answered, copy)
    }

    /// The owner's answer, or `None` when it did not come in time.
    async fn answer(answered: oneshot::Receiver<SessionAnswer>) -> Option<SessionAnswer> {
        tokio::time::timeout(ANSWER_WAIT, answered).await.ok()?.ok()
    }

    /// Queues a record for the user's owner partition and returns its acknowledgement.
    /// `traceparent`: the span of a traced client stanza (empty otherwise).
    async fn publish(&self, user: &Jid, record: &OwnerRecord, traceparent: String) -> Result<Delivered, BusError> {
        let partition = partition_of(user.bare().as_str(), self.bus.partitions());
        self.bus.publish_owner(partition, record.encode_numbered(&self.origin, traceparent).0).await
    }

    /// [`publish`](Self::publish) and wait until the record is durable.
    async fn publish_durably(&self, user: &Jid, record: &OwnerRecord) -> Result<(), GatewayError> {
        self.publish(user, record, String::new()).await.map_err(unavailable)?.await.map_err(unavailable)
    }

    fn session(self: &Arc<Self>, jid: Jid, connection: u64, copy: Arc<StreamCopy>) -> Box<dyn BoundSession> {
        session::BusSession::boxed(self.clone(), jid, connection, copy)
    }
}

#[async_trait]
impl Gateway for Arc<BusGateway> {
    async fn bind(&self, user: Jid, resource: Option<String>, link: ClientLink, inline: Vec<Element>) -> Result<Binding, GatewayError> {
        let resource = resource.unwrap_or_else(server_chosen_resource);
        let jid = user.with_resource(&resource).map_err(|_| GatewayError::Unavailable("invalid resource".into()))?;
        let connection = link.connection_id;
        let (answered, copy) = self.connect(link, Some(jid.clone()), !inline.is_empty(), None);
        let bind = OwnerRecord::Bind { jid: jid.clone(), edge: self.origin.node().to_owned(), connection, inline };
        // The bind is durable before the client hears it is bound.
        if let Err(error) = self.publish_durably(&jid, &bind).await {
            self.links().remove(&connection);
            return Err(error);
        }
        let inline_answers = match answered {
            None => Vec::new(),
            Some(answered) => match BusGateway::answer(answered).await {
                Some(SessionAnswer::Bound(answers)) => {
                    if enables_stream_management(&answers) {
                        *copy.handled.lock().await = Some(0);
                    }
                    answers
                }
                _ => {
                    self.session(jid, connection, copy).unbind(StreamEnd::Closed).await;
                    return Err(GatewayError::Unavailable("the session node did not answer the bind".into()));
                }
            },
        };
        Ok(Binding { session: self.session(jid, connection, copy), inline_answers })
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

    fn sessions_outlive_the_edge(&self) -> bool {
        true
    }

    fn attach_component(&self, domain: &Jid, link: Arc<dyn ComponentLink>) -> Result<(), GatewayError> {
        self.attach(domain, link)
    }

    fn detach_component(&self, domain: &Jid, link: &Arc<dyn ComponentLink>) {
        self.detach(domain, link);
    }

    fn route_vouched(&self, stanza: Stanza) -> Result<(), GatewayError> {
        self.submit(stanza)
    }

    async fn resume(&self, user: Jid, previd: &str, h: u32, link: ClientLink) -> Result<Resumed, ResumeFailed> {
        let connection = link.connection_id;
        let (answered, copy) = self.connect(link, None, true, Some(h));
        let answered = answered.expect("an answer was asked for");
        let resume = OwnerRecord::Resume { user: user.bare(), previd: previd.to_owned(), h, edge: self.origin.node().to_owned(), connection };
        let answer = match self.publish_durably(&user, &resume).await {
            Ok(()) => BusGateway::answer(answered).await,
            Err(error) => {
                tracing::warn!(%user, %error, "could not ask the owner to resume a session");
                None
            }
        };
        match answer {
            Some(SessionAnswer::Resumed(Ok((jid, handled)))) => {
                *copy.handled.lock().await = Some(handled);
                Ok(Resumed { session: self.session(jid, connection, copy), handled })
            }
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

fn unavailable(error: BusError) -> GatewayError {
    Metrics::global().bus_publish_errors.inc();
    GatewayError::Unavailable(error.to_string())
}

#[cfg(test)]
mod tests;
