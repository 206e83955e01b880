//! A session node in a cluster. It joins the owners' group on the bus and, for the partitions it is
//! given, feeds each record to the user's actor as the local gateway would: binds, client stanzas,
//! unbinds, deliveries from other owners. The way back to a connection is a link whose queue is
//! drained onto the edge's inbox; a stanza for a user of a partition owned elsewhere goes onto
//! that partition (the host router asks [`ClusterSide::owner_elsewhere`]).
//!
//! When a partition moves, the new owner claims it in the registry (a generation greater than the
//! previous owner's) and rebuilds each user's resources from the routes the previous owner recorded
//! there; the old owner stops those users' actors.
//!
//! A record's offset is committed once everything it caused is durable: each record travels with
//! a [`Hold`] (in [`HOLD`] while an actor handles it) that every stanza it produced takes along
//! to the bus or the archive (`starling_cluster::hold`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use starling_cluster::bus::{partition_of, Bus, BusError, OwnerEvent, OwnerInbox};
use starling_cluster::hold::{Hold, RecordHolds, Release};
use starling_cluster::bus_gateway::RENEW_EVERY;
use starling_cluster::liveness;
use starling_cluster::registry::Registry;
use starling_protocol::{Stanza, StanzaError, StanzaErrorCondition, StanzaKind};
use starling_cluster::envelope::{OwnerRecord, Stamp};
use starling_cluster::gateway::{ClientLink, SessionAnswer, ToClient};
use starling_telemetry::traces::{KeyValue, StanzaSpan};
use tokio::sync::{mpsc, watch};

use crate::messages::{Bind, ConnectionEvent, FromClient, Reply, Resume, Unbind};
use crate::cluster_side::ClusterSide;
use crate::context::{ClusterRoutes, Router};
use crate::hold::HOLD;
use crate::remote_components::REMOTE_COMPONENT_QUEUE;
use crate::router::HostRouter;

/// How often handled offsets are committed (one round trip to the bus for all partitions).
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// A gap this long between two turns of the commit ticker means the process was frozen (SIGSTOP,
/// a VM paused, a starved runtime): long enough, perhaps, for the group to have given its
/// partitions away. Before handling another record the node asks the registry whose they are.
const FROZEN_AFTER: Duration = Duration::from_millis(500);

impl HostRouter {
    /// Joins the owners' group as `node` and serves the records of the partitions it is given,
    /// until the bus fails or `leave` turns true: then what was handled is committed and the
    /// group is left (the inbox dropped), so the partitions move at once.
    pub(crate) async fn serve_owner_partitions(
        self: Arc<Self>,
        bus: Arc<dyn Bus>,
        registry: Arc<dyn Registry>,
        node: String,
        node_ttl: Duration,
        mut leave: watch::Receiver<bool>,
    ) -> Result<(), BusError> {
        let side = ClusterSide::new(bus.clone(), registry.clone(), &node);
        let routes: Arc<dyn ClusterRoutes> = side.clone();
        if !self.join_cluster(side.clone()) || self.services().cluster.set(routes).is_err() {
            return Err(BusError::Config("this session layer already serves owner partitions".into()));
        }
        let (forgotten, mut rewrite) = mpsc::channel::<()>(1);
        tokio::spawn(liveness::keep_alive(registry.clone(), node.clone(), node_ttl, move || {
            let _ = forgotten.try_send(());
        }));
        tokio::spawn(liveness::reap_dead_nodes(registry, bus.clone(), side.origin.clone(), node_ttl));
        let mut inbox = bus.join_owners(&node).await?;
        let (mut holds, mut releases) = RecordHolds::new();
        let mut commit = tokio::time::interval(COMMIT_INTERVAL);
        let mut last_tick = tokio::time::Instant::now();
        let mut maybe_frozen = false;
        let mut component_leases = tokio::time::interval(RENEW_EVERY);
        loop {
            tokio::select! {
                event = inbox.next() => match event? {
                    OwnerEvent::Assigned(partitions) => {
                        let claimed = side.claim(&partitions).await;
                        side.take_over(&claimed).await;
                        holds.assign(&partitions);
                        tracing::info!(?partitions, "owner partitions assigned");
                        self.count_moved(&side, &partitions, true);
                    }
                    OwnerEvent::Revoked(partitions) => {
                        // What was handled was committed by the bus as it revoked them (staged).
                        tracing::info!(?partitions, "owner partitions revoked");
                        self.give_up(&side, &mut holds, &partitions, bus.partitions());
                    }
                    OwnerEvent::Record(record) if holds.handled_before(record.partition, record.offset) => {
                        tracing::debug!(partition = record.partition, offset = record.offset, "record handled before; skipped");
                    }
                    OwnerEvent::Record(record) if (maybe_frozen || last_tick.elapsed() > FROZEN_AFTER) && {
                        maybe_frozen = false;
                        last_tick = tokio::time::Instant::now();
                        self.give_up_what_was_taken(&side, &mut holds, bus.partitions()).await;
                        !holds.serves(record.partition)
                    } => {
                        tracing::debug!(partition = record.partition, offset = record.offset, "record of a partition taken while frozen; skipped");
                    }
                    OwnerEvent::Record(record) if !holds.serves(record.partition) => {
                        tracing::debug!(partition = record.partition, offset = record.offset, "record of a partition given up; skipped");
                    }
                    OwnerEvent::Record(record) => match OwnerRecord::decode_stamped(record.payload) {
                        Ok((decoded, stamp)) => {
                            let trace = StanzaSpan::continued("starling.session.handle", &stamp.traceparent, || {
                                vec![KeyValue::new("starling.partition", i64::from(record.partition)), KeyValue::new("starling.offset", record.offset as i64)]
                            });
                            let log = trace.log_scope();
                            let hold = holds.hold_traced(record.partition, record.offset, decoded.cause(&stamp), trace);
                            let _traced = log.enter();
                            if !log.is_none() {
                                tracing::debug!(partition = record.partition, offset = record.offset, "handling a traced record");
                            }
                            self.dispatch(&side, record.partition, decoded, &stamp, hold);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "owner record dropped");
                            // Taken and released at once: the commit point moves past it.
                            drop(holds.hold(record.partition, record.offset, 0));
                        }
                    },
                },
                Some(release) = releases.recv() => {
                    if let Err(failed) = take_release(inbox.as_mut(), &mut holds, release) {
                        // Committing past it would lose what it caused; stopping lets the group
                        // replay it (and what followed) on the next owner.
                        return Err(BusError::Unavailable(format!(
                            "the effects of record {} of partition {} could not be made durable",
                            failed.offset, failed.partition
                        )));
                    }
                }
                _ = commit.tick() => {
                    maybe_frozen |= last_tick.elapsed() > FROZEN_AFTER;
                    last_tick = tokio::time::Instant::now();
                    commit_released(inbox.as_mut(), &mut holds).await;
                }
                true = asked_to_leave(&mut leave) => {
                    // A failed one stays outstanding: nothing is committed past it.
                    while let Ok(release) = releases.try_recv() {
                        let _ = take_release(inbox.as_mut(), &mut holds, release);
                    }
                    commit_released(inbox.as_mut(), &mut holds).await;
                    tracing::info!("leaving the owners' group");
                    return Ok(());
                }
                _ = component_leases.tick() => side.components.expire(&self, &[], bus.partitions()),
                Some(()) = rewrite.recv() => {
                    // The registry lost what this node wrote: claim the partitions again (so a
                    // later owner's claim is newer than ours) and write every route again. It
                    // also forgets a node frozen past its ttl, whose partitions may have moved
                    // meanwhile: those are not claimed back.
                    self.give_up_what_was_taken(&side, &mut holds, bus.partitions()).await;
                    side.claim(&side.assigned_partitions()).await;
                    self.directory().republish_routes();
                }
            }
        }
    }

    /// Stops serving `partitions`: their holds no longer count, their users' actors stop.
    fn give_up(&self, side: &ClusterSide, holds: &mut RecordHolds, partitions: &[u32], count: u32) {
        holds.revoke(partitions);
        side.revoke(partitions);
        self.count_moved(side, partitions, false);
        side.components.expire(self, partitions, count);
        self.directory().stop_where(|jid| partitions.contains(&partition_of(jid.as_str(), count)));
    }

    /// After this node may have been frozen: gives up at once the partitions another node claimed
    /// meanwhile, before the group's own revocation reaches it (records it had already taken
    /// would otherwise be delivered by two owners).
    async fn give_up_what_was_taken(&self, side: &ClusterSide, holds: &mut RecordHolds, count: u32) {
        let taken = side.claimed_elsewhere().await;
        if !taken.is_empty() {
            tracing::warn!(partitions = ?taken, "partitions claimed by another node while this one was frozen; given up");
            self.give_up(side, holds, &taken, count);
        }
    }

    /// Counts partitions given to (`assigned`) or taken from this node, and how many it owns now.
    fn count_moved(&self, side: &ClusterSide, moved: &[u32], assigned: bool) {
        let metrics = &self.services().metrics;
        let counter = if assigned { &metrics.partitions_assigned } else { &metrics.partitions_revoked };
        counter.inc_by(moved.len() as u64);
        metrics.owned_partitions.set(side.assigned_partitions().len() as i64);
    }

    /// One owner record to the user's actor.
    fn dispatch(self: &Arc<Self>, side: &ClusterSide, partition: u32, record: OwnerRecord, stamp: &Stamp, hold: Option<Hold>) {
        match record {
            OwnerRecord::Bind { jid, edge, connection, inline } => {
                let link = side.remote_link(edge.clone(), connection, self.services().config.client_queue);
                // The edge waits for an answer only to inline requests; records after the bind are
                // ordered behind it anyway.
                let reply = if inline.is_empty() { Box::new(|_| {}) } else { answer_on(&link, SessionAnswer::Bound) };
                self.with_user_actor(&jid.bare(), |addr| addr.do_send(Bind { jid, link, edge: Some(edge), inline, reply, hold }));
            }
            OwnerRecord::FromClient { resource, connection: _, stanza, received } => {
                self.with_user_actor(&resource.bare(), |addr| addr.do_send(FromClient { resource, stanza, received, counted: true, hold }));
            }
            OwnerRecord::Unbind { jid, connection, end } => {
                self.with_user_actor(&jid.bare(), |addr| addr.do_send(Unbind { jid, connection_id: connection, end, counted: true, hold }));
            }
            OwnerRecord::ClientEvent { jid, connection, event } => {
                let event = ConnectionEvent { jid: jid.clone(), connection_id: connection, event, counted: true, hold };
                self.with_user_actor(&jid.bare(), |addr| addr.do_send(event));
            }
            OwnerRecord::Resume { user, previd, h, edge, connection } => {
                let link = side.remote_link(edge.clone(), connection, self.services().config.client_queue);
                let reply = answer_on(&link, SessionAnswer::Resumed);
                self.with_user_actor(&user, |addr| addr.do_send(Resume { previd, h, link, edge: Some(edge), reply, hold }));
            }
            // It does its work by coming back (`handling` below).
            OwnerRecord::Fence => {}
            OwnerRecord::ComponentBind { domain, edge, connection } => {
                let queue = REMOTE_COMPONENT_QUEUE;
                side.components.announced(self, &domain, connection, || side.component_link(edge, connection, queue));
            }
            OwnerRecord::ComponentUnbind { domain, connection } => side.components.gone(self, &domain, connection),
            OwnerRecord::Deliver { stanza, received, cause: _ } => {
                HOLD.sync_scope(hold, || {
                    if let Err(refused) = self.deliver_here(stanza, received) {
                        self.refuse(&refused);
                    }
                });
            }
        }
        // After the record is in its actor's mailbox: a direct delivery from now on queues behind it.
        side.handling(partition, stamp);
    }
}

impl HostRouter {
    /// Tells the sender of a stanza this node could not take that it should retry (RFC 6120
    /// §8.3.3.18); presence is dropped silently, as in one process.
    fn refuse(self: &Arc<Self>, stanza: &Stanza) {
        let Some(to) = stanza.to.as_ref() else { return };
        if stanza.kind == StanzaKind::Presence {
            return;
        }
        if let Some(reply) = stanza.error_reply(to, &StanzaError::new(StanzaErrorCondition::ResourceConstraint)) {
            let _ = self.route(reply, Instant::now());
        }
    }
}

/// An actor's answer to an edge waiting for it: the first thing queued on the connection's link.
fn answer_on<T: 'static>(link: &ClientLink, answer: fn(T) -> SessionAnswer) -> Reply<T> {
    let link = link.clone();
    Box::new(move |value| {
        let _ = link.try_send(ToClient::Answer(answer(value)), None);
    })
}

/// Takes a record's release: where the partition's commit point moved, it is staged for the
/// bus; a failed release comes back (the record stays outstanding).
fn take_release(inbox: &mut dyn OwnerInbox, holds: &mut RecordHolds, release: Release) -> Result<(), Release> {
    if let Some((partition, offset)) = holds.release(release)? {
        inbox.stage(partition, offset);
    }
    Ok(())
}

/// Whether `leave` turned true (false: nobody can ask any more).
async fn asked_to_leave(leave: &mut watch::Receiver<bool>) -> bool {
    leave.wait_for(|leaving| *leaving).await.is_ok()
}

/// Commits every record whose holds are all gone.
async fn commit_released(inbox: &mut dyn OwnerInbox, holds: &mut RecordHolds) {
    let points = holds.commit_points();
    if !points.is_empty()
        && let Err(error) = inbox.commit(&points).await
    {
        tracing::warn!(partitions = points.len(), %error, "commit failed; those records will be replayed elsewhere if the partitions move");
    }
}

