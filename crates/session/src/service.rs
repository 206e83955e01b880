//! Local services addressed by a domain of their own — `conference.DOMAIN`, `pubsub.DOMAIN`,
//! `upload.DOMAIN` … Each service kind is an actor kind: one [`ServiceActor`] per JID under its
//! domain (the domain itself, a room, a node), living in the same directory as user actors and
//! partitioned across a cluster by its bare JID exactly as users are, so a room is owned by one
//! node at a time and its stanzas are handled in order.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, WrapFuture};
use starling_protocol::{Jid, Stanza, StanzaError};
use starling_xml::Element;

use crate::messages::{Inbound, Stop};
use crate::context::{Router, Services};
use crate::hold::holding;

/// A kind of local service, registered by its module (`Registrar::service`).
pub(crate) trait ServiceKind: Send + Sync + 'static {
    /// The domain its entities live under.
    fn domain(&self) -> &Jid;

    /// A new entity for `jid`, a bare JID of [`domain`](Self::domain) (the domain itself, or a
    /// node under it); it loads what it keeps from the stores on its first stanza.
    fn entity(&self, jid: &Jid) -> Box<dyn ServiceEntity>;

    /// The entity `stanza` (to `to`, under the domain) is for, the key of its actor and partition:
    /// the bare JID, unless the service names its entities inside requests (PubSub nodes).
    fn address(&self, _stanza: &Stanza, to: &Jid) -> Jid {
        to.bare()
    }
}

/// One addressable entity of a service, owned by its actor.
pub(crate) trait ServiceEntity: 'static {
    /// A stanza addressed to the entity (its bare JID or a full JID under it).
    fn handle<'a>(&'a mut self, context: &'a ServiceContext, stanza: Stanza, received: Instant) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

    /// Whether the entity keeps nothing in memory that is not stored, so its actor may retire.
    fn is_idle(&self) -> bool;
}

/// What an entity is handed: its JID, the way to everyone else, and the server's services (the
/// store, the archive writer, the configuration).
pub(crate) struct ServiceContext {
    pub jid: Jid,
    router: Arc<dyn Router>,
    pub services: Arc<Services>,
}

impl ServiceContext {
    /// Routes a stanza the entity sends (its `from` is the entity's JID or a JID under it).
    pub fn route(&self, stanza: Stanza) -> Result<(), Box<Stanza>> {
        self.router.route(stanza, Instant::now())
    }

    /// Sends `stanza` (an element without addresses) from `from` to each target: in a cluster one
    /// bus record per edge for those with a direct route (`fan_out`), through their owners for the
    /// others.
    pub fn fan_out<'a>(&self, from: &Jid, stanza: Element, targets: impl IntoIterator<Item = (&'a Jid, Option<&'a crate::fan_out::Via>)>) {
        for stanza in crate::fan_out::send(&self.services, from, stanza, targets) {
            let _ = self.route(stanza);
        }
    }

    /// Routes `stanza` after `delay` (an entity's own timer: a stanza it sends itself).
    pub fn route_after(&self, delay: Duration, stanza: Stanza) {
        let router = self.router.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = router.route(stanza, Instant::now());
        });
    }

    /// Answers an IQ request with a result from where it was sent.
    pub fn answer(&self, request: &Stanza, payload: Option<Element>) {
        let responder = request.to.clone().unwrap_or_else(|| self.jid.clone());
        let _ = self.route(request.iq_result(&responder, payload));
    }

    /// Answers a stanza with an error from where it was sent.
    pub fn refuse(&self, stanza: &Stanza, error: &StanzaError) {
        let responder = stanza.to.clone().unwrap_or_else(|| self.jid.clone());
        if let Some(reply) = stanza.error_reply(&responder, error) {
            let _ = self.route(reply);
        }
    }
}

pub(crate) struct ServiceActor {
    /// `None` only while a stanza is handled (the handler owns the entity meanwhile).
    entity: Option<Box<dyn ServiceEntity>>,
    context: Arc<ServiceContext>,
    pending: Arc<AtomicUsize>,
    idle_after: Duration,
    /// A retirement check is already scheduled (one timer, however many stanzas pass).
    retirement_scheduled: bool,
}

impl ServiceActor {
    pub fn new(kind: &dyn ServiceKind, jid: Jid, services: Arc<Services>, router: Arc<dyn Router>, pending: Arc<AtomicUsize>) -> ServiceActor {
        let idle_after = services.config.idle_actor();
        let entity = Some(kind.entity(&jid));
        ServiceActor { entity, context: Arc::new(ServiceContext { jid, router, services }), pending, idle_after, retirement_scheduled: false }
    }

    fn schedule_retirement(&mut self, ctx: &mut Context<Self>) {
        if self.retirement_scheduled {
            return;
        }
        self.retirement_scheduled = true;
        ctx.run_later(self.idle_after, |actor, ctx| {
            actor.retirement_scheduled = false;
            let idle = actor.entity.as_ref().is_some_and(|entity| entity.is_idle());
            if idle && actor.context.router.retire(&actor.context.jid, &actor.pending) {
                ctx.stop();
            }
        });
    }
}

impl Actor for ServiceActor {
    type Context = Context<Self>;
}

impl Handler<Inbound> for ServiceActor {
    type Result = ();

    fn handle(&mut self, message: Inbound, ctx: &mut Context<Self>) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
        let Some(mut entity) = self.entity.take() else {
            tracing::error!("service actor handled a stanza while its entity was lent out");
            return;
        };
        let context = self.context.clone();
        let work = holding(message.hold, async move {
            entity.handle(&context, message.stanza, message.received).await;
            entity
        });
        // `wait`: the next stanza waits until this one is handled, so an entity sees its stanzas
        // in order.
        ctx.wait(work.into_actor(self).map(|entity, actor, ctx| {
            let idle = entity.is_idle();
            actor.entity = Some(entity);
            if idle {
                actor.schedule_retirement(ctx);
            }
        }));
    }
}

impl Handler<Stop> for ServiceActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
