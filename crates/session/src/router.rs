//! The host router: a stanza goes, by its `to` domain, to the server itself, to a local user, to a
//! local service entity (each service kind an actor kind, as users are), to an external component,
//! or to a remote domain (through federation, when it is attached). In a cluster, a user, service
//! entity or component domain whose partition another node owns is reached through that node (the
//! owner side, `owner.rs`).

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::Instant;

use actix::Actor;
use starling_cluster::gateway::ComponentLink;
use starling_protocol::{ns, Jid, Stanza, StanzaError, StanzaErrorCondition, StanzaKind};

use crate::actor::UserActor;
use crate::cluster_side::ClusterSide;
use crate::context::{Router, Services};
use crate::directory::{ActorRef, Directory};
use crate::registry::Modules;
use crate::service::{ServiceActor, ServiceKind};

/// Where a `to` address leads.
enum Destination<'a> {
    /// The server's own domain (with or without a resource).
    Server,
    User,
    Service(&'a Arc<dyn ServiceKind>),
    Component(Arc<dyn ComponentLink>),
    /// A domain a component may serve (`[components] secrets`), none connected (here).
    AbsentComponent,
    Remote,
}

pub(crate) struct HostRouter {
    me: Weak<HostRouter>,
    services: Arc<Services>,
    modules: Arc<Modules>,
    directory: Directory,
    service_kinds: HashMap<String, Arc<dyn ServiceKind>>,
    components: RwLock<HashMap<String, Arc<dyn ComponentLink>>>,
    /// Where stanzas for other domains go (s2s); without it they are `remote-server-not-found`.
    federation: RwLock<Option<Arc<dyn ComponentLink>>>,
    /// Set when this node serves owner partitions of a cluster.
    cluster: OnceLock<Arc<ClusterSide>>,
}

impl HostRouter {
    pub fn new(services: Arc<Services>, modules: Arc<Modules>, directory: Directory) -> Arc<HostRouter> {
        let service_kinds = modules.services().iter().map(|kind| (kind.domain().domain().to_owned(), kind.clone())).collect();
        Arc::new_cyclic(|me| HostRouter {
            me: me.clone(),
            services,
            modules,
            directory,
            service_kinds,
            components: RwLock::new(HashMap::new()),
            federation: RwLock::new(None),
            cluster: OnceLock::new(),
        })
    }

    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    pub fn modules(&self) -> &Modules {
        &self.modules
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Makes this router forward stanzas for partitions other nodes own; false if it already does.
    pub fn join_cluster(&self, cluster: Arc<ClusterSide>) -> bool {
        self.cluster.set(cluster).is_ok()
    }

    /// An external component now serves `domain`.
    pub fn attach_component(&self, domain: &Jid, link: Arc<dyn ComponentLink>) {
        self.components.write().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(domain.domain().to_owned(), link);
    }

    /// Forgets `link` for `domain`, unless a newer connection replaced it.
    pub fn detach_component(&self, domain: &Jid, link: &Arc<dyn ComponentLink>) {
        let mut components = self.components.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if components.get(domain.domain()).is_some_and(|current| Arc::ptr_eq(current, link)) {
            components.remove(domain.domain());
        }
    }

    /// Federation now carries stanzas for other domains.
    pub fn attach_federation(&self, link: Arc<dyn ComponentLink>) {
        *self.federation.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(link);
    }

    fn destination(&self, to: &Jid) -> Destination<'_> {
        let domain = to.domain();
        if self.services.hosts.serves(domain) {
            return if to.node().is_some() { Destination::User } else { Destination::Server };
        }
        if let Some(kind) = self.service_kinds.get(domain) {
            return Destination::Service(kind);
        }
        if let Some(link) = self.components.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(domain) {
            return Destination::Component(link.clone());
        }
        if self.services.config.component_domains.iter().any(|component| component == domain) {
            return Destination::AbsentComponent;
        }
        Destination::Remote
    }

    fn router(&self) -> Arc<dyn Router> {
        // `self` is only reachable through its `Arc`, so the upgrade succeeds while it is used.
        self.me.upgrade().expect("the host router is alive while it routes")
    }

    /// Starts a user actor.
    fn spawn_user(&self, user: &Jid, arbiter: &actix::ArbiterHandle, pending: Arc<AtomicUsize>) -> ActorRef {
        let (user, services, modules, router) = (user.clone(), self.services.clone(), self.modules.clone(), self.router());
        ActorRef::User(UserActor::start_in_arbiter(arbiter, move |_| UserActor::new(user, services, modules, router, pending)))
    }

    /// Runs `send` with the actor of `user` (started if needed), counting one pending message.
    pub fn with_user_actor<R>(&self, user: &Jid, send: impl FnOnce(&actix::Addr<UserActor>) -> R) -> Option<R> {
        self.directory.with_user(user, &|arbiter, pending| self.spawn_user(user, arbiter, pending), send)
    }

    /// Delivers to a local user or service entity on this node, whoever owns its partition.
    pub fn deliver_here(&self, stanza: Stanza, received: Instant) -> Result<(), Box<Stanza>> {
        let Some(to) = stanza.to.as_ref() else { return Ok(()) };
        match self.destination(to) {
            Destination::User => {
                let bare = to.bare();
                self.directory.deliver(&bare, stanza, received, &|arbiter, pending| self.spawn_user(&bare, arbiter, pending), false)
            }
            Destination::Service(kind) => {
                let bare = kind.address(&stanza, to);
                let spawn = |arbiter: &actix::ArbiterHandle, pending| {
                    let (kind, jid, services, router) = (kind.clone(), bare.clone(), self.services.clone(), self.router());
                    ActorRef::Service(ServiceActor::start_in_arbiter(arbiter, move |_| ServiceActor::new(kind.as_ref(), jid, services, router, pending)))
                };
                self.directory.deliver(&bare, stanza, received, &spawn, true)
            }
            // A component's domain is served where its partition is owned: here.
            Destination::Component(link) => link.send(stanza),
            Destination::AbsentComponent => {
                self.bounce(stanza, StanzaErrorCondition::ServiceUnavailable);
                Ok(())
            }
            // Not local: route it as anyone would.
            _ => self.route(stanza, received),
        }
    }

    /// What reaches the server's own domain from elsewhere (a component, another server's
    /// users): its disco#info and disco#items and ping are answered; other requests get
    /// `service-unavailable` (a user's own requests to the server are answered, with more, in
    /// its actor); results, errors, presence and headlines are dropped.
    fn to_server(&self, stanza: Stanza) {
        if let Some(reply) = self.public_answer(&stanza) {
            let _ = self.route(reply, Instant::now());
            return;
        }
        let answer = match stanza.kind {
            StanzaKind::Iq => stanza.is_iq_request(),
            StanzaKind::Message => !stanza.type_is("headline") && !stanza.is_error(),
            StanzaKind::Presence => false,
        };
        if answer {
            self.bounce(stanza, StanzaErrorCondition::ServiceUnavailable);
        }
    }

    /// The result of an IQ get anyone may ask the server: disco#info (no node), disco#items of
    /// its services, ping.
    fn public_answer(&self, stanza: &Stanza) -> Option<Stanza> {
        if stanza.kind != StanzaKind::Iq || !stanza.type_is("get") {
            return None;
        }
        let domain = stanza.to.as_ref()?.domain_jid();
        let iq = stanza.element().ok()?;
        let query = iq.children().next()?;
        let advertised = &self.services.advertised;
        let payload = match (query.name(), query.ns()) {
            ("query", ns::DISCO_INFO) if query.attr("node").is_none() => Some(advertised.server.clone().into()),
            ("query", ns::DISCO_ITEMS) if query.attr("node").is_none() => Some(crate::modules::server_items_of(advertised, &domain).into()),
            ("ping", ns::PING) => None,
            _ => return None,
        };
        Some(stanza.iq_result(&domain, payload))
    }

    /// Answers `stanza` with an error from its destination's domain.
    fn bounce(&self, stanza: Stanza, condition: StanzaErrorCondition) {
        let Some(to) = stanza.to.as_ref() else { return };
        if let Some(reply) = stanza.error_reply(&to.domain_jid(), &StanzaError::new(condition)) {
            let _ = self.route(reply, Instant::now());
        }
    }
}

impl Router for HostRouter {
    fn route(&self, stanza: Stanza, received: Instant) -> Result<(), Box<Stanza>> {
        let Some(to) = stanza.to.as_ref() else { return Ok(()) };
        match self.destination(to) {
            Destination::Server => {
                self.to_server(stanza);
                Ok(())
            }
            destination @ (Destination::User | Destination::Service(_) | Destination::Component(_) | Destination::AbsentComponent) => {
                // A component is reached where its domain's partition is owned (it connected
                // through an edge, which told that owner).
                let key = match destination {
                    Destination::Component(_) | Destination::AbsentComponent => to.domain_jid(),
                    Destination::Service(kind) => kind.address(&stanza, to),
                    _ => to.bare(),
                };
                if let Some(cluster) = self.cluster.get()
                    && let Some(partition) = cluster.owner_elsewhere(&key)
                {
                    return cluster.forward(partition, stanza, received);
                }
                self.deliver_here(stanza, received)
            }
            Destination::Remote => {
                let federation = self.federation.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
                match federation {
                    Some(federation) => {
                        // Its queue toward that domain is full.
                        if let Err(refused) = federation.send(stanza) {
                            self.bounce(*refused, StanzaErrorCondition::ResourceConstraint);
                        }
                    }
                    None => self.bounce(stanza, StanzaErrorCondition::RemoteServerNotFound),
                }
                Ok(())
            }
        }
    }

    fn retire(&self, jid: &Jid, pending: &Arc<AtomicUsize>) -> bool {
        self.directory.retire(jid, pending)
    }
}
