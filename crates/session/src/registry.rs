//! The module registry: what each feature module registers, and the tables the session core
//! dispatches through. A feature (an RFC area or a XEP) is one module under `modules/` with one
//! `register` function; it registers
//! - IQ handlers, keyed by payload namespace, element name and addressee ([`IqTo`]);
//! - ordered stanza hooks per stanza kind: on what the user's resources send ([`Registrar::outbound`])
//!   and on what reaches the user ([`Registrar::inbound`]), after a delivery
//!   ([`Registrar::delivered`]), when nothing could take a message ([`Registrar::undeliverable`]),
//!   when a resource goes away ([`Registrar::unbinding`]), and when an actor restored the resources
//!   an earlier owner recorded, in a cluster ([`Registrar::restored`]);
//! - disco identities and features, from which disco#info answers and the XEP-0115 caps hash are
//!   computed, so the two never disagree;
//! - local service kinds (`conference.DOMAIN` …) the host router addresses;
//! - session features a Bind2 client may ask for inline at bind ([`Registrar::inline`], XEP-0386).
//!
//! Its per-user state is a private type kept in [`Extensions`](crate::extensions::Extensions), so
//! other modules reach it only through the functions the module exports. The Prosody shape
//! (`module:hook`), with Rust types.
//!
//! Hooks run in ascending order; the numbers in use: message rate 1, PEP caps answers 5 (IQ),
//! blocking 10, roster (subscriptions) 15, MUC joins 18, PEP interests 19, presence 20, full
//! offline queue 45, archive 50, carbons 60. A hook returns [`Flow::Stop`] when it took the stanza
//! (handled, refused, stored).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use starling_protocol::payload::Identity;
use starling_protocol::{Hosts, Jid, Stanza, StanzaKind};
use starling_xml::Element;

use crate::config::SessionConfig;
use crate::iq::{Iq, IqTo};
use crate::context::Advertised;
use crate::service::ServiceKind;
use crate::state::UserState;

/// A handler's future: it borrows the user's state for as long as it runs.
pub(crate) type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

pub(crate) type IqHandler = for<'a> fn(&'a mut UserState, Iq) -> Pending<'a, ()>;

/// What a stanza hook decided.
pub(crate) enum Flow {
    /// Go on with the next hook (and then the core), with this stanza (possibly changed).
    Continue(Stanza),
    /// The hook took the stanza: nothing after it runs.
    Stop,
}

/// A stanza hook. Most hooks await a store at times; one that never does is registered as
/// `Now` and costs no allocation per stanza.
#[derive(Clone, Copy)]
pub(crate) enum Hook<Now, Later> {
    Now(Now),
    Later(Later),
}

/// On a stanza one of the user's resources (`sender`) sends to someone, received by the edge at
/// the instant given.
pub(crate) type OutboundHook =
    Hook<for<'a> fn(&'a mut UserState, &'a Jid, Stanza, Instant) -> Flow, for<'a> fn(&'a mut UserState, &'a Jid, Stanza, Instant) -> Pending<'a, Flow>>;
/// On a stanza someone sends to the user (after the account check).
pub(crate) type InboundHook = Hook<for<'a> fn(&'a mut UserState, Stanza, Instant) -> Flow, for<'a> fn(&'a mut UserState, Stanza, Instant) -> Pending<'a, Flow>>;
/// After a message reached the resources at these indexes.
pub(crate) type DeliveredHook = for<'a> fn(&'a mut UserState, &'a [usize], &'a Stanza);
/// A message no resource could take; `Stop` once stored (else the sender gets an error).
pub(crate) type UndeliverableHook = for<'a> fn(&'a mut UserState, Stanza) -> Pending<'a, Flow>;
/// The resource at this index is about to be removed.
pub(crate) type UnbindingHook = for<'a> fn(&'a mut UserState, usize) -> Pending<'a, ()>;
/// The stream of the resource at this index broke; its stream-managed session waits to be
/// resumed (XEP-0198), and what is sent to it is kept.
pub(crate) type DetachedHook = for<'a> fn(&'a mut UserState, usize) -> Pending<'a, ()>;
/// In a cluster, the actor took its user over from a node that died or left and restored the
/// resources that node recorded: what a module kept in memory of them is to be found again.
pub(crate) type RestoredHook = for<'a> fn(&'a mut UserState) -> Pending<'a, ()>;
/// A Bind2 inline request (its element) for the resource just bound at this index; the answer,
/// if the feature has one, goes into `<bound/>`.
pub(crate) type InlineHandler = for<'a> fn(&'a mut UserState, usize, &'a Element) -> Option<Element>;

struct IqRoute {
    to: IqTo,
    ns: &'static str,
    name: &'static str,
    handler: IqHandler,
}

/// Hooks of one point, per stanza kind, in running order.
struct PerKind<H> {
    message: Vec<(i16, H)>,
    presence: Vec<(i16, H)>,
    iq: Vec<(i16, H)>,
}

impl<H> Default for PerKind<H> {
    fn default() -> Self {
        PerKind { message: Vec::new(), presence: Vec::new(), iq: Vec::new() }
    }
}

impl<H: Copy> PerKind<H> {
    fn of(&self, kind: StanzaKind) -> &[(i16, H)] {
        match kind {
            StanzaKind::Message => &self.message,
            StanzaKind::Presence => &self.presence,
            StanzaKind::Iq => &self.iq,
        }
    }

    fn add(&mut self, kinds: &[StanzaKind], order: i16, hook: H) {
        for &kind in kinds {
            let list = match kind {
                StanzaKind::Message => &mut self.message,
                StanzaKind::Presence => &mut self.presence,
                StanzaKind::Iq => &mut self.iq,
            };
            list.push((order, hook));
            list.sort_by_key(|(order, _)| *order);
        }
    }
}

/// Everything the modules registered; built once at start, shared by every actor.
#[derive(Default)]
pub(crate) struct Modules {
    iq: Vec<IqRoute>,
    outbound: PerKind<OutboundHook>,
    inbound: PerKind<InboundHook>,
    delivered: Vec<DeliveredHook>,
    undeliverable: Vec<UndeliverableHook>,
    unbinding: Vec<UnbindingHook>,
    detached: Vec<DetachedHook>,
    restored: Vec<RestoredHook>,
    inline: Vec<(&'static str, InlineHandler)>,
    advertised: Advertised,
    services: Vec<Arc<dyn ServiceKind>>,
}

/// What a module's `register` function is handed.
pub(crate) struct Registrar<'a> {
    modules: &'a mut Modules,
    /// The served domains (a service's domain is usually a subdomain of one).
    pub hosts: &'a Hosts,
    pub config: &'a SessionConfig,
}

impl Registrar<'_> {
    pub fn iq(&mut self, to: IqTo, ns: &'static str, name: &'static str, handler: IqHandler) {
        self.modules.iq.push(IqRoute { to, ns, name, handler });
    }

    pub fn outbound(&mut self, kinds: &[StanzaKind], order: i16, hook: OutboundHook) {
        self.modules.outbound.add(kinds, order, hook);
    }

    pub fn inbound(&mut self, kinds: &[StanzaKind], order: i16, hook: InboundHook) {
        self.modules.inbound.add(kinds, order, hook);
    }

    pub fn delivered(&mut self, hook: DeliveredHook) {
        self.modules.delivered.push(hook);
    }

    pub fn undeliverable(&mut self, hook: UndeliverableHook) {
        self.modules.undeliverable.push(hook);
    }

    pub fn unbinding(&mut self, hook: UnbindingHook) {
        self.modules.unbinding.push(hook);
    }

    pub fn detached(&mut self, hook: DetachedHook) {
        self.modules.detached.push(hook);
    }

    pub fn restored(&mut self, hook: RestoredHook) {
        self.modules.restored.push(hook);
    }

    /// A session feature Bind2 can enable at bind: requests in namespace `ns` go to `handler`.
    pub fn inline(&mut self, ns: &'static str, handler: InlineHandler) {
        self.modules.inline.push((ns, handler));
    }

    pub fn server_identity(&mut self, identity: Identity) {
        self.modules.advertised.server.identities.push(identity);
    }

    pub fn account_identity(&mut self, identity: Identity) {
        self.modules.advertised.account.identities.push(identity);
    }

    pub fn server_feature(&mut self, feature: &str) {
        self.modules.advertised.server.features.push(feature.to_owned());
    }

    pub fn account_feature(&mut self, feature: &str) {
        self.modules.advertised.account.features.push(feature.to_owned());
    }

    /// A service some other part of the server answers for (the edges' bytestreams proxy):
    /// disco#items of every served domain lists it.
    pub fn service_domain(&mut self, domain: Jid) {
        self.modules.advertised.service_domains.push((None, domain));
    }

    /// The domain of a service (`prefix` as `conference`) for each served domain: `configured`
    /// (the section's `domain` key) for the primary one when set, `PREFIX.HOST` for the others.
    /// A configured value that is not a domain is logged and that service is left out.
    pub fn service_domains(&self, section: &str, prefix: &str, configured: &str) -> Vec<(Jid, Jid)> {
        let primary = self.hosts.primary();
        self.hosts
            .iter()
            .filter_map(|host| {
                let domain = if configured.is_empty() || host != primary { format!("{prefix}.{host}") } else { configured.to_owned() };
                match Jid::new(&domain) {
                    Ok(domain) if domain.node().is_none() && domain.is_bare() => Some((host.clone(), domain)),
                    _ => {
                        tracing::error!(%domain, "[{section}] domain is not a domain; that service is off");
                        None
                    }
                }
            })
            .collect()
    }

    /// A local service kind at its own domain, the service of the served domain `host`, whose
    /// disco#items lists it.
    pub fn service(&mut self, host: &Jid, kind: Arc<dyn ServiceKind>) {
        self.modules.advertised.service_domains.push((Some(host.clone()), kind.domain().clone()));
        self.modules.services.push(kind);
    }
}

/// A module's entry point.
pub(crate) type Register = fn(&mut Registrar);

impl Modules {
    /// Runs every module's `register`, in the order given.
    pub fn build(hosts: &Hosts, config: &SessionConfig, modules: &[Register]) -> Modules {
        let mut built = Modules::default();
        let mut registrar = Registrar { modules: &mut built, hosts, config };
        for register in modules {
            register(&mut registrar);
        }
        let advertised = &mut built.advertised;
        for features in [&mut advertised.server.features, &mut advertised.account.features] {
            features.sort_unstable();
            features.dedup();
        }
        built
    }

    pub fn advertised(&self) -> &Advertised {
        &self.advertised
    }

    pub fn services(&self) -> &[Arc<dyn ServiceKind>] {
        &self.services
    }

    /// The namespaces of the features Bind2 can enable inline.
    pub fn inline_features(&self) -> Vec<&'static str> {
        self.inline.iter().map(|(ns, _)| *ns).collect()
    }

    /// Applies the Bind2 inline requests to the resource just bound at `index`, in the client's
    /// order; requests for features not registered are ignored. Returns the answers.
    pub fn apply_inline(&self, state: &mut UserState, index: usize, requests: &[Element]) -> Vec<Element> {
        requests
            .iter()
            .filter_map(|request| {
                let (_, handler) = self.inline.iter().find(|(ns, _)| *ns == request.ns())?;
                handler(state, index, request)
            })
            .collect()
    }

    /// The handler registered for a payload and addressee. The user's own requests to its
    /// account fall back to what anyone may ask of it (a vCard, disco, last activity …).
    pub fn iq_handler(&self, to: IqTo, payload: &Element) -> Option<IqHandler> {
        let find = |to| self.iq.iter().find(|route| route.to == to && route.name == payload.name() && route.ns == payload.ns()).map(|route| route.handler);
        match to {
            IqTo::OwnAccount => find(IqTo::OwnAccount).or_else(|| find(IqTo::Account)),
            other => find(other),
        }
    }

    /// Runs the outbound hooks of the stanza's kind; `None` once one took it.
    pub async fn outbound(&self, state: &mut UserState, sender: &Jid, mut stanza: Stanza, received: Instant) -> Option<Stanza> {
        for (_, hook) in self.outbound.of(stanza.kind) {
            let flow = match hook {
                Hook::Now(hook) => hook(state, sender, stanza, received),
                Hook::Later(hook) => hook(state, sender, stanza, received).await,
            };
            match flow {
                Flow::Continue(next) => stanza = next,
                Flow::Stop => return None,
            }
        }
        Some(stanza)
    }

    /// Runs the inbound hooks of the stanza's kind; `None` once one took it.
    pub async fn inbound(&self, state: &mut UserState, mut stanza: Stanza, received: Instant) -> Option<Stanza> {
        for (_, hook) in self.inbound.of(stanza.kind) {
            let flow = match hook {
                Hook::Now(hook) => hook(state, stanza, received),
                Hook::Later(hook) => hook(state, stanza, received).await,
            };
            match flow {
                Flow::Continue(next) => stanza = next,
                Flow::Stop => return None,
            }
        }
        Some(stanza)
    }

    pub fn delivered(&self, state: &mut UserState, targets: &[usize], stanza: &Stanza) {
        for hook in &self.delivered {
            hook(state, targets, stanza);
        }
    }

    /// Offers an undeliverable message to the hooks; `Some` if none took it.
    pub async fn undeliverable(&self, state: &mut UserState, mut stanza: Stanza) -> Option<Stanza> {
        for hook in &self.undeliverable {
            match hook(state, stanza).await {
                Flow::Continue(next) => stanza = next,
                Flow::Stop => return None,
            }
        }
        Some(stanza)
    }

    pub async fn unbinding(&self, state: &mut UserState, index: usize) {
        for hook in &self.unbinding {
            hook(state, index).await;
        }
    }

    pub async fn detached(&self, state: &mut UserState, index: usize) {
        for hook in &self.detached {
            hook(state, index).await;
        }
    }

    pub async fn restored(&self, state: &mut UserState) {
        for hook in &self.restored {
            hook(state).await;
        }
    }
}
