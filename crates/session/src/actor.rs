//! The actix glue around [`UserState`]: mailbox messages, ordered async handling, idle retirement.
//!
//! Each message's work is an async function on the state; `ctx.wait` runs it to completion before the
//! next message is taken, so a user's stanzas are handled strictly in order even when a handler waits
//! on the store, while other actors on the same arbiter keep running.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, WrapFuture};
use starling_cluster::gateway::StreamEnd;
use starling_cluster::hold::Hold;
use starling_protocol::StanzaKind;
use starling_protocol::Jid;

use crate::context::{Router, Services};
use crate::hold::holding;
use crate::messages::{Bind, ConnectionEvent, EndSessions, FromClient, Inbound, RepublishRoutes, Resume, Settle, Stop, Unbind};
use starling_cluster::gateway::ClientEvent;
use crate::pipeline;
use crate::registry::Modules;
use crate::state::{Deadline, UserState};

/// Mailbox size of a user actor; a client whose actor is this far behind waits in `submit`.
const MAILBOX: usize = 256;

pub(crate) struct UserActor {
    /// `None` only while an async handler runs (it owns the state meanwhile).
    state: Option<Box<UserState>>,
    modules: Arc<Modules>,
    router: Arc<dyn Router>,
    idle_actor: std::time::Duration,
    pending: Arc<AtomicUsize>,
    /// A retirement check is already scheduled (one timer, however many messages pass).
    retirement_scheduled: bool,
}

impl UserActor {
    pub fn new(user: Jid, services: Arc<Services>, modules: Arc<Modules>, router: Arc<dyn Router>, pending: Arc<AtomicUsize>) -> UserActor {
        let idle_actor = services.config.idle_actor();
        let state = Some(Box::new(UserState::new(user, services, router.clone())));
        UserActor { state, modules, router, idle_actor, pending, retirement_scheduled: false }
    }

    /// Runs `work` on the state to completion before the next message, with `hold` (the bus
    /// record the message came from, in a cluster) as the task's [`HOLD`].
    fn run<F, Fut>(&mut self, ctx: &mut Context<Self>, hold: Option<Hold>, work: F)
    where
        F: FnOnce(Box<UserState>, Arc<Modules>) -> Fut + 'static,
        Fut: Future<Output = Box<UserState>> + 'static,
    {
        let Some(state) = self.state.take() else {
            // Unreachable: `wait` keeps the next message out until the state is back.
            tracing::error!("user actor handled a message while its state was lent out");
            return;
        };
        // In a cluster a user's actor may start on a node that just took the user over: it first
        // restores the resources the previous owner recorded.
        let modules = self.modules.clone();
        let work = holding(hold, async move {
            let mut state = state;
            if state.restore_routes().await {
                modules.restored(&mut state).await;
            }
            work(state, modules).await
        });
        ctx.wait(work.into_actor(self).map(|mut state, actor, ctx| {
            for deadline in state.take_deadlines() {
                actor.wait_until(ctx, deadline);
            }
            let idle = state.is_idle();
            actor.state = Some(state);
            if idle {
                actor.schedule_retirement(ctx);
            }
        }));
    }

    /// A detached stream-managed session ends unless it is resumed before `deadline` (XEP-0198);
    /// a restored resource whose edge did not answer by then is given up.
    fn wait_until(&mut self, ctx: &mut Context<Self>, deadline: Deadline) {
        let Deadline { jid, wait, after } = deadline;
        ctx.run_later(after, move |actor, ctx| {
            actor.run(ctx, None, move |mut state, modules| async move {
                if let Some(connection_id) = state.still_waiting(&jid, wait).or_else(|| state.edge_did_not_answer(&jid, wait)) {
                    pipeline::unbind(&modules, &mut state, &jid, connection_id, StreamEnd::Closed).await;
                }
                state
            });
        });
    }

    /// A message that came through the directory has been taken from the mailbox.
    fn taken(&self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }

    fn schedule_retirement(&mut self, ctx: &mut Context<Self>) {
        if self.retirement_scheduled {
            return;
        }
        self.retirement_scheduled = true;
        ctx.run_later(self.idle_actor, |actor, ctx| {
            actor.retirement_scheduled = false;
            let Some(state) = actor.state.as_ref() else { return };
            if !state.is_idle() {
                return;
            }
            if state.idle_since().elapsed() >= actor.idle_actor
                && Instant::now() >= state.kept_until()
                && actor.router.retire(state.user(), &actor.pending)
            {
                ctx.stop();
                return;
            }
            actor.schedule_retirement(ctx);
        });
    }
}

impl Actor for UserActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
    }
}

impl Handler<Bind> for UserActor {
    type Result = ();

    fn handle(&mut self, message: Bind, ctx: &mut Context<Self>) {
        self.taken();
        self.run(ctx, message.hold, move |mut state, modules| async move {
            let (index, left) = state.bind(message.jid, message.link, message.edge);
            let inline_answers = modules.apply_inline(&mut state, index, &message.inline);
            (message.reply)(inline_answers);
            state.publish_route(index).await;
            pipeline::keep_unacknowledged(&modules, &mut state, left).await;
            state
        });
    }
}

impl Handler<Unbind> for UserActor {
    type Result = ();

    fn handle(&mut self, message: Unbind, ctx: &mut Context<Self>) {
        if message.counted {
            self.taken();
        }
        self.run(ctx, message.hold, move |mut state, modules| async move {
            pipeline::unbind(&modules, &mut state, &message.jid, message.connection_id, message.end).await;
            state
        });
    }
}

impl Handler<FromClient> for UserActor {
    type Result = ();

    fn handle(&mut self, message: FromClient, ctx: &mut Context<Self>) {
        if message.counted {
            self.taken();
        }
        self.run(ctx, message.hold, move |mut state, modules| async move {
            state.count_handled(&message.resource);
            pipeline::handle_own(&modules, &mut state, message.resource, message.stanza, message.received).await;
            state
        });
    }
}

impl Handler<ConnectionEvent> for UserActor {
    type Result = ();

    fn handle(&mut self, message: ConnectionEvent, ctx: &mut Context<Self>) {
        let ConnectionEvent { jid, connection_id, event, counted, hold } = message;
        if counted {
            self.taken();
        }
        self.run(ctx, hold, move |mut state, modules| async move {
            match event {
                ClientEvent::Enable { resume, max } => {
                    if let Some(index) = state.enable_stream_management(&jid, connection_id, resume, max) {
                        state.publish_route(index).await;
                    }
                }
                ClientEvent::Synced(synced) => {
                    let left = state.synchronize(&jid, connection_id, synced);
                    pipeline::keep_unacknowledged(&modules, &mut state, left).await;
                }
                ClientEvent::Acknowledge(h) => state.acknowledge(&jid, connection_id, h),
                ClientEvent::Drained(count) => state.drained(&jid, connection_id, count),
                ClientEvent::AnswerForEdge(reply) => {
                    if let Some(index) = state.bound_index(&jid, connection_id) {
                        state.count_handled(&jid);
                        let _ = state.send_to(index, StanzaKind::Iq, reply);
                    }
                }
                // The edge could not write it (a slow reader cut, a connection gone): kept as what
                // a client never acknowledged is, never dropped unseen.
                ClientEvent::Undelivered(stanza) => pipeline::keep_undelivered(&modules, &mut state, &stanza, SystemTime::now()).await,
                ClientEvent::ClientState { active } => {
                    if let Some(index) = state.bound_index(&jid, connection_id) {
                        state.set_client_state(index, active);
                    }
                }
            }
            state
        });
    }
}

impl Handler<Resume> for UserActor {
    type Result = ();

    fn handle(&mut self, message: Resume, ctx: &mut Context<Self>) {
        self.taken();
        self.run(ctx, message.hold, move |mut state, _| async move {
            match state.resume(&message.previd, message.h, message.link, message.edge) {
                Ok((index, handled)) => {
                    // The answer goes first: in a cluster it is the first thing on the connection.
                    (message.reply)(Ok((state.resources()[index].jid().clone(), handled)));
                    state.retransmit_unacknowledged(index);
                    state.publish_route(index).await;
                }
                Err(failed) => (message.reply)(Err(failed)),
            }
            state
        });
    }
}

impl Handler<Inbound> for UserActor {
    type Result = ();

    fn handle(&mut self, message: Inbound, ctx: &mut Context<Self>) {
        self.taken();
        self.run(ctx, message.hold, move |mut state, modules| async move {
            pipeline::inbound(&modules, &mut state, message.stanza, message.received).await;
            state
        });
    }
}

impl Handler<RepublishRoutes> for UserActor {
    type Result = ();

    fn handle(&mut self, _: RepublishRoutes, ctx: &mut Context<Self>) {
        self.run(ctx, None, move |mut state, _| async move {
            state.republish_routes().await;
            state
        });
    }
}

impl Handler<EndSessions> for UserActor {
    type Result = ();

    fn handle(&mut self, _: EndSessions, ctx: &mut Context<Self>) {
        self.run(ctx, None, |mut state, modules| async move {
            let bound: Vec<(Jid, u64)> = state.resources().iter().map(|resource| (resource.jid().clone(), resource.connection_id())).collect();
            for (jid, connection_id) in bound {
                pipeline::unbind(&modules, &mut state, &jid, connection_id, StreamEnd::Closed).await;
            }
            state
        });
    }
}

impl Handler<crate::messages::ListResources> for UserActor {
    type Result = Vec<crate::layer::ResourceSummary>;

    fn handle(&mut self, _: crate::messages::ListResources, _: &mut Context<Self>) -> Self::Result {
        let Some(state) = &self.state else { return Vec::new() };
        state.resources().iter().map(crate::layer::ResourceSummary::of).collect()
    }
}

impl Handler<Settle> for UserActor {
    type Result = ();

    fn handle(&mut self, _: Settle, _: &mut Context<Self>) {}
}

impl Handler<Stop> for UserActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
