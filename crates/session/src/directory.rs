//! Where each actor lives: users and local-service entities alike, by bare JID.
//!
//! Every delivery goes through [`Directory::deliver`], which holds the shard lock while it
//! enqueues and counts the message as pending for that actor. An idle actor removes itself only
//! under the same lock and only with nothing pending ([`Directory::retire`]), so no message can
//! reach an actor that is stopping and there is never more than one actor per JID.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use actix::{Addr, Arbiter, ArbiterHandle};
use starling_protocol::{Jid, Stanza, StanzaKind};
use starling_telemetry::Metrics;

use crate::actor::UserActor;
use crate::messages::{Inbound, RepublishRoutes, Stop};
use crate::hold::current_hold;
use crate::service::ServiceActor;

const SHARDS: usize = 64;

/// Messages that may wait for one actor before further deliveries to it are refused.
pub(crate) const MAX_PENDING: usize = 4096;

/// A live actor of either kind.
#[derive(Clone)]
pub(crate) enum ActorRef {
    User(Addr<UserActor>),
    Service(Addr<ServiceActor>),
}

impl ActorRef {
    fn inbound(&self, message: Inbound) {
        match self {
            ActorRef::User(addr) => addr.do_send(message),
            ActorRef::Service(addr) => addr.do_send(message),
        }
    }

    fn stop(&self) {
        match self {
            ActorRef::User(addr) => addr.do_send(Stop),
            ActorRef::Service(addr) => addr.do_send(Stop),
        }
    }
}

/// A live actor and the number of messages enqueued for it but not yet taken.
struct Entry {
    actor: ActorRef,
    pending: Arc<AtomicUsize>,
}

/// Starts an actor on the arbiter given, with its pending counter.
pub(crate) type Spawn<'a> = &'a dyn Fn(&ArbiterHandle, Arc<AtomicUsize>) -> ActorRef;

pub(crate) struct Directory {
    shards: Vec<Mutex<HashMap<Jid, Entry>>>,
    arbiters: Vec<ArbiterHandle>,
    hasher: std::collections::hash_map::RandomState,
    metrics: Arc<Metrics>,
}

impl Directory {
    /// Starts `arbiters` threads that host the actors. Must run inside an actix `System`.
    pub fn new(arbiters: usize, metrics: Arc<Metrics>) -> Directory {
        Directory {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            arbiters: (0..arbiters.max(1)).map(|_| Arbiter::new().handle()).collect(),
            hasher: Default::default(),
            metrics,
        }
    }

    fn hash(&self, jid: &Jid) -> usize {
        self.hasher.hash_one(jid) as usize
    }

    fn shard(&self, jid: &Jid) -> MutexGuard<'_, HashMap<Jid, Entry>> {
        self.shards[self.hash(jid) % SHARDS].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The entry of `jid`, started with `spawn` on the arbiter its hash picks if there is none.
    fn entry<'s>(&self, shard: &'s mut HashMap<Jid, Entry>, jid: &Jid, spawn: Spawn) -> &'s mut Entry {
        shard.entry(jid.clone()).or_insert_with(|| {
            let pending = Arc::new(AtomicUsize::new(0));
            let arbiter = &self.arbiters[(self.hash(jid) / SHARDS) % self.arbiters.len()];
            Entry { actor: spawn(arbiter, pending.clone()), pending }
        })
    }

    /// Enqueues `stanza` for the actor of `jid` (a bare JID), starting it with `spawn` if needed.
    /// Presence broadcasts to a *user* without an actor are dropped (`presence_starts` false): no
    /// actor means no resource to show them to, and starting one per offline contact would cost a
    /// store read each. A service entity starts for presence: joining a room is presence.
    ///
    /// Refused when the actor already has [`MAX_PENDING`] messages waiting: its mailbox is the
    /// one queue a fast sender could otherwise grow without end. The caller answers the sender.
    pub fn deliver(&self, jid: &Jid, stanza: Stanza, received: Instant, spawn: Spawn, presence_starts: bool) -> Result<(), Box<Stanza>> {
        let broadcast = !presence_starts && stanza.kind == StanzaKind::Presence && (stanza.stanza_type.is_none() || stanza.type_is("unavailable"));
        let mut shard = self.shard(jid);
        let entry = match shard.get_mut(jid) {
            Some(entry) => entry,
            None if broadcast => return Ok(()),
            None => self.entry(&mut shard, jid, spawn),
        };
        if entry.pending.load(Ordering::Acquire) >= MAX_PENDING {
            self.metrics.deliveries_refused.inc();
            return Err(Box::new(stanza));
        }
        entry.pending.fetch_add(1, Ordering::AcqRel);
        entry.actor.inbound(Inbound { stanza, received, hold: current_hold() });
        Ok(())
    }

    /// Runs `send` with the actor of the user `user` under the shard lock, counting one pending
    /// message; `None` if that JID is held by an actor of another kind.
    pub fn with_user<R>(&self, user: &Jid, spawn: Spawn, send: impl FnOnce(&Addr<UserActor>) -> R) -> Option<R> {
        let mut shard = self.shard(user);
        let entry = self.entry(&mut shard, user, spawn);
        let ActorRef::User(addr) = &entry.actor else { return None };
        entry.pending.fetch_add(1, Ordering::AcqRel);
        Some(send(addr))
    }

    /// Removes the actor of `jid` if its counter is `pending` and nothing is pending. Returns
    /// whether the actor may stop.
    pub fn retire(&self, jid: &Jid, pending: &Arc<AtomicUsize>) -> bool {
        let mut shard = self.shard(jid);
        match shard.get(jid) {
            Some(entry) if Arc::ptr_eq(&entry.pending, pending) && pending.load(Ordering::Acquire) == 0 => {
                shard.remove(jid);
                true
            }
            _ => false,
        }
    }

    /// Stops (and forgets) every actor whose JID `moved` selects.
    pub fn stop_where(&self, moved: impl Fn(&Jid) -> bool) {
        for shard in &self.shards {
            shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).retain(|jid, entry| {
                let keep = !moved(jid);
                if !keep {
                    entry.actor.stop();
                }
                keep
            });
        }
    }

    /// Every live user actor.
    pub fn users(&self) -> Vec<Addr<UserActor>> {
        let mut users = Vec::new();
        for shard in &self.shards {
            for entry in shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).values() {
                if let ActorRef::User(addr) = &entry.actor {
                    users.push(addr.clone());
                }
            }
        }
        users
    }

    /// Asks every user actor to record its resources' routes again.
    pub fn republish_routes(&self) {
        for user in self.users() {
            user.do_send(RepublishRoutes);
        }
    }
}
