//! The session layer as the rest of the server sees it: started once, it is the edge's
//! [`Gateway`] in one process and the owner side of a session node in a cluster.

use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use actix::Addr;
use async_trait::async_trait;
use bytes::Bytes;
use starling_cluster::gateway::{
    server_chosen_resource, Binding, BoundSession, ClientEvent, ClientLink, ComponentLink, Gateway, GatewayError, ResumeFailed, Resumed, StreamEnd,
};
use starling_cluster::store::Store;
use starling_protocol::{ns, Hosts, Jid, Stanza};
use starling_telemetry::Metrics;
use starling_xml::Element;

use crate::actor::UserActor;
use crate::messages::{Bind, ConnectionEvent, FromClient, Reply, Resume, Unbind};
use crate::archive_writer::ArchiveWriter;
use crate::config::SessionConfig;
use crate::context::{Router, Services};
use crate::directory::Directory;
use crate::modules::ALL;
use crate::registry::{Modules, Register};
use crate::router::HostRouter;

/// The XEP-0115 node and verification string the server advertises in its stream features: the
/// modules a session layer with `config` registers decide them, so an edge computes them the same
/// way without running one.
pub fn server_caps(hosts: &Hosts, config: &SessionConfig) -> (String, String) {
    let modules = Modules::build(hosts, config, ALL);
    (crate::modules::CAPS_NODE.to_owned(), crate::modules::caps_ver(modules.advertised()))
}

/// The namespaces of the session features a Bind2 bind applies inline with `config`, for an edge
/// that reaches session nodes through the bus.
pub fn inline_features(hosts: &Hosts, config: &SessionConfig) -> Vec<&'static str> {
    Modules::build(hosts, config, ALL).inline_features()
}

/// The reply of an actor to a caller waiting in this process.
fn reply_to<T: Send + 'static>(waiting: tokio::sync::oneshot::Sender<T>) -> Reply<T> {
    Box::new(move |answer| {
        let _ = waiting.send(answer);
    })
}

/// The in-process session layer. Cheap to clone.
#[derive(Clone)]
pub struct SessionLayer {
    router: Arc<HostRouter>,
    /// True once a session node is to leave the owners' group ([`SessionLayer::shut_down`]).
    leave: tokio::sync::watch::Sender<bool>,
}

impl SessionLayer {
    #[cfg(test)]
    pub(crate) fn router(&self) -> &Arc<HostRouter> {
        &self.router
    }

    /// Registers the modules, starts the arbiters and the archive writer. Must run inside an
    /// actix `System` on tokio.
    pub fn start(hosts: Hosts, store: Store, config: SessionConfig, metrics: Arc<Metrics>) -> SessionLayer {
        SessionLayer::start_with_modules(hosts, store, config, metrics, ALL)
    }

    /// [`start`](Self::start) with the given modules instead of every module.
    pub(crate) fn start_with_modules(hosts: Hosts, store: Store, config: SessionConfig, metrics: Arc<Metrics>, modules: &[Register]) -> SessionLayer {
        let modules = Arc::new(Modules::build(&hosts, &config, modules));
        let archive_writer = config.archive.enabled.then(|| ArchiveWriter::start(store.archive.clone(), &(&config.archive).into(), metrics.clone()));
        let directory = Directory::new(config.arbiters(), metrics.clone());
        let services = Arc::new(Services {
            hosts,
            store,
            advertised: modules.advertised().clone(),
            config,
            metrics,
            archive_writer,
            cluster: OnceLock::new(),
            started: SystemTime::now(),
        });
        SessionLayer { router: HostRouter::new(services, modules, directory), leave: tokio::sync::watch::Sender::new(false) }
    }

    /// Stops serving, as the process stops, by `deadline` at the latest. In one process
    /// (`end_sessions`) every session ends first — what clients never acknowledged is stored
    /// offline. Then everything the archive writer holds is stored. A session node then leaves
    /// the owners' group ([`serve_owner_partitions`](Self::serve_owner_partitions) returns):
    /// what it handled is committed, the rest is replayed by the next owners at once, without
    /// waiting for the group to time this node out.
    pub async fn shut_down(&self, end_sessions: bool, deadline: tokio::time::Instant) {
        let directory = self.router.directory();
        if end_sessions {
            let users = directory.users();
            for user in &users {
                user.do_send(crate::messages::EndSessions);
            }
            let settled = futures_util::future::join_all(users.iter().map(|user| user.send(crate::messages::Settle)));
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                tracing::warn!("sessions did not all end in time");
            }
        }
        if let Some(writer) = self.router.services().archive_writer.as_ref() {
            while tokio::time::Instant::now() < deadline {
                match writer.flush().await {
                    Ok(()) => break,
                    Err(_) => tracing::warn!(queued = self.router.services().metrics.archive_queued.get(), "the archive is still storing what it holds"),
                }
            }
        }
        self.leave.send_replace(true);
    }

    /// Makes this node a session node of a cluster: joins the owners' group on `bus` as `node` and
    /// serves the records of the partitions it is given until the bus fails or it is shut down
    /// ([`shut_down`](Self::shut_down)), recording the
    /// users' routes in `registry` (from where a next owner restores them). It heartbeats there
    /// (dead after `node_ttl` of silence) and reaps the resources of edges that stopped.
    pub async fn serve_owner_partitions(
        &self,
        bus: Arc<dyn starling_cluster::bus::Bus>,
        registry: Arc<dyn starling_cluster::registry::Registry>,
        node: String,
        node_ttl: std::time::Duration,
    ) -> Result<(), starling_cluster::bus::BusError> {
        self.router.clone().serve_owner_partitions(bus, registry, node, node_ttl, self.leave.subscribe()).await
    }

    /// Routes a stanza that did not come from a bound client (e.g. the server itself).
    pub fn deliver(&self, stanza: Stanza) {
        let _ = self.router.route(stanza, Instant::now());
    }

    /// The resources of the users served here — every user in one process, the users of its
    /// partitions on a session node — asking at most `limit` users; whether some were left out.
    pub async fn sessions(&self, limit: usize) -> (Vec<ResourceSummary>, bool) {
        let users = self.router.directory().users();
        let asked = futures_util::future::join_all(users.iter().take(limit).map(|user| user.send(crate::messages::ListResources))).await;
        (asked.into_iter().flatten().flatten().collect(), users.len() > limit)
    }

    /// A headline from each user's domain to every user served here with an available resource
    /// (RFC 6121 §8.5.2.1.1: each such resource gets it), or to those of `domain` only; how many users.
    pub async fn announce(&self, subject: Option<&str>, body: &str, domain: Option<&str>) -> usize {
        let (resources, _) = self.sessions(usize::MAX).await;
        let of_domain = |jid: &Jid| domain.is_none_or(|domain| jid.domain() == domain);
        let mut users: Vec<Jid> = resources.into_iter().filter(|resource| resource.available && of_domain(&resource.jid)).map(|resource| resource.jid.bare()).collect();
        users.dedup();
        let hosts = &self.router.services().hosts;
        for user in &users {
            let mut message = Element::new("message", ns::CLIENT).with_attr("type", "headline");
            if let Some(subject) = subject {
                message.push_child(Element::new("subject", ns::CLIENT).with_text(subject));
            }
            message.push_child(Element::new("body", ns::CLIENT).with_text(body));
            self.deliver(Stanza::build(message, hosts.of(user), Some(user)));
        }
        users.len()
    }
}

/// One bound resource, as the admin API lists it.
#[derive(Debug, Clone)]
pub struct ResourceSummary {
    pub jid: Jid,
    /// False while a stream-managed session waits to be resumed.
    pub connected: bool,
    pub available: bool,
    pub priority: i8,
    /// The edge node holding its connection, in a cluster.
    pub edge: Option<String>,
}

impl ResourceSummary {
    pub(crate) fn of(resource: &crate::state::Resource) -> ResourceSummary {
        ResourceSummary {
            jid: resource.jid().clone(),
            connected: resource.is_connected(),
            available: resource.is_available(),
            priority: resource.priority(),
            edge: resource.edge().map(str::to_owned),
        }
    }
}

#[async_trait]
impl Gateway for SessionLayer {
    async fn bind(&self, user: Jid, resource: Option<String>, link: ClientLink, inline: Vec<Element>) -> Result<Binding, GatewayError> {
        let resource = resource.unwrap_or_else(server_chosen_resource);
        let jid = user.with_resource(&resource).map_err(|_| GatewayError::Unavailable("invalid resource".into()))?;
        let connection_id = link.connection_id;
        let (waiting, bound) = tokio::sync::oneshot::channel();
        let reply = reply_to(waiting);
        let addr = self
            .router
            .with_user_actor(&user, |addr| {
                addr.do_send(Bind { jid: jid.clone(), link, edge: None, inline, reply, hold: None });
                addr.clone()
            })
            .ok_or_else(|| GatewayError::Unavailable("not a user's address".into()))?;
        let inline_answers = bound.await.map_err(|_| GatewayError::Closed)?;
        Ok(Binding { session: Box::new(LocalSession { jid, addr, connection_id }), inline_answers })
    }

    fn inline_features(&self) -> Vec<&'static str> {
        self.router.modules().inline_features()
    }

    fn supports_stream_management(&self) -> bool {
        self.router.services().config.sm.enabled
    }

    fn supports_client_state(&self) -> bool {
        true
    }

    fn attach_component(&self, domain: &Jid, link: Arc<dyn ComponentLink>) -> Result<(), GatewayError> {
        self.router.attach_component(domain, link);
        Ok(())
    }

    fn detach_component(&self, domain: &Jid, link: &Arc<dyn ComponentLink>) {
        self.router.detach_component(domain, link);
    }

    fn attach_federation(&self, link: Arc<dyn ComponentLink>) -> Result<(), GatewayError> {
        self.router.attach_federation(link);
        Ok(())
    }

    fn route_vouched(&self, stanza: Stanza) -> Result<(), GatewayError> {
        self.deliver(stanza);
        Ok(())
    }

    async fn resume(&self, user: Jid, previd: &str, h: u32, link: ClientLink) -> Result<Resumed, ResumeFailed> {
        let connection_id = link.connection_id;
        let (waiting, resumed) = tokio::sync::oneshot::channel();
        let resume = Resume { previd: previd.to_owned(), h, link, edge: None, reply: reply_to(waiting), hold: None };
        let addr = self.router.with_user_actor(&user, |addr| {
            addr.do_send(resume);
            addr.clone()
        });
        let not_found = ResumeFailed { handled: None };
        let (jid, handled) = resumed.await.map_err(|_| not_found)??;
        let addr = addr.ok_or(not_found)?;
        Ok(Resumed { session: Box::new(LocalSession { jid, addr, connection_id }), handled })
    }
}

/// A resource bound to a local actor.
struct LocalSession {
    jid: Jid,
    addr: Addr<UserActor>,
    connection_id: u64,
}

#[async_trait]
impl BoundSession for LocalSession {
    fn jid(&self) -> &Jid {
        &self.jid
    }

    async fn submit(&mut self, stanza: Stanza, received: Instant) -> Result<(), GatewayError> {
        let message = FromClient { resource: self.jid.clone(), stanza, received, counted: false, hold: None };
        self.send(message).await
    }

    async fn enable_stream_management(&mut self, resume: bool, max: Option<u32>) -> Result<(), GatewayError> {
        self.client_event(ClientEvent::Enable { resume, max }).await
    }

    async fn acknowledge(&mut self, h: u32) -> Result<(), GatewayError> {
        self.client_event(ClientEvent::Acknowledge(h)).await
    }

    async fn answer_for_edge(&mut self, reply: Bytes) -> Result<(), GatewayError> {
        self.client_event(ClientEvent::AnswerForEdge(reply)).await
    }

    async fn set_client_state(&mut self, active: bool) -> Result<(), GatewayError> {
        self.client_event(ClientEvent::ClientState { active }).await
    }

    async fn unbind(self: Box<Self>, end: StreamEnd) {
        let _ = self.addr.send(Unbind { jid: self.jid, connection_id: self.connection_id, end, counted: false, hold: None }).await;
    }
}

impl LocalSession {
    /// Sends to the actor in the client's order. The mailbox is bounded: try first, and only
    /// wait (the backpressure) when full.
    async fn send<M>(&self, message: M) -> Result<(), GatewayError>
    where
        M: actix::Message<Result = ()> + Send + 'static,
        UserActor: actix::Handler<M>,
    {
        match self.addr.try_send(message) {
            Ok(()) => Ok(()),
            Err(actix::dev::SendError::Full(message)) => self.addr.send(message).await.map_err(|_| GatewayError::Closed),
            Err(actix::dev::SendError::Closed(_)) => Err(GatewayError::Closed),
        }
    }

    async fn client_event(&self, event: ClientEvent) -> Result<(), GatewayError> {
        self.send(ConnectionEvent { jid: self.jid.clone(), connection_id: self.connection_id, event, counted: false, hold: None }).await
    }
}
