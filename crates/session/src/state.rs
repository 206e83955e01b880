//! A user's core state: the bound resources with their links and availability, and the ways to
//! reach them and everyone else. Feature modules build on these methods; what each feature keeps
//! about the user or a resource lives in that feature's own type in the [`Extensions`].

mod csi;
mod replays;
mod sm;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use starling_cluster::gateway::{ClientLink, DeliveryKey, ToClient};
use starling_cluster::hold::Hold;
use starling_cluster::registry::ResourceRoute;
use starling_cluster::store::StoreError;
use starling_protocol::{ns, Jid, Stanza, StanzaError, StanzaErrorCondition, StanzaKind, StreamError, StreamErrorCondition};
use starling_xml::Element;
use tokio::sync::mpsc::error::TrySendError;

use crate::context::{Router, Services};
use crate::extensions::Extensions;
use crate::hold::current_hold;
use crate::iq::Iq;
pub(crate) use sm::{Deadline, StreamManagement, Unacked};

/// One bound resource of the user.
pub(crate) struct Resource {
    jid: Jid,
    connection_id: u64,
    /// `None` once the connection was dropped for reading too slowly; the edge then unbinds it.
    link: Option<ClientLink>,
    /// The last available presence it broadcast; `None` while it is not available.
    presence: Option<Stanza>,
    priority: i8,
    /// The edge node holding the connection, in a cluster (routes are recorded in the registry).
    edge: Option<String>,
    /// XEP-0198, once the client enabled it (see [`sm`]).
    sm: Option<Box<StreamManagement>>,
    /// XEP-0352: what is held while the client is inactive (see [`csi`]); `None` while active.
    held: Option<Box<csi::Held>>,
    /// In a cluster: its latest deliveries, not to be repeated by a replay (see [`replays`]).
    replays: Option<Box<replays::Replays>>,
    /// What feature modules keep about this resource.
    pub ext: Extensions,
}

impl Resource {
    fn new(jid: Jid, link: ClientLink, edge: Option<String>) -> Resource {
        Resource { jid, connection_id: link.connection_id, link: Some(link), presence: None, priority: 0, edge, sm: None, held: None, replays: None, ext: Extensions::default() }
    }

    pub fn jid(&self) -> &Jid {
        &self.jid
    }

    pub fn connection_id(&self) -> u64 {
        self.connection_id
    }

    pub fn edge(&self) -> Option<&str> {
        self.edge.as_deref()
    }

    /// Still connected (its link was not given up), or detached and waiting to be resumed: what
    /// is sent to it is kept for the client.
    pub fn is_connected(&self) -> bool {
        self.link.is_some() || self.sm.is_some()
    }

    /// Its stream broke and its stream-managed session waits to be resumed.
    pub fn is_detached(&self) -> bool {
        self.link.is_none() && self.sm.is_some()
    }

    pub fn presence(&self) -> Option<&Stanza> {
        self.presence.as_ref()
    }

    pub fn priority(&self) -> i8 {
        self.priority
    }

    pub fn is_available(&self) -> bool {
        self.presence.is_some() && self.is_connected()
    }
}

pub(crate) struct UserState {
    user: Jid,
    services: Arc<Services>,
    router: Arc<dyn Router>,
    resources: Vec<Resource>,
    /// Whether an account exists for this JID, checked once.
    account_exists: Option<bool>,
    /// In a cluster: the resources recorded by a previous owner were restored.
    routes_restored: bool,
    idle_since: Instant,
    /// A module keeps what it counts (a quota being refilled) in memory until then.
    kept_until: Instant,
    /// Deadlines of waits (resumption, an edge's answer) begun since the actor last looked.
    deadlines: Vec<Deadline>,
    /// Ids and counts of the latest stream-managed sessions that ended.
    ended_sessions: VecDeque<(String, u32)>,
    /// What feature modules keep about the user.
    pub ext: Extensions,
}

impl UserState {
    pub fn new(user: Jid, services: Arc<Services>, router: Arc<dyn Router>) -> UserState {
        UserState {
            user,
            services,
            router,
            resources: Vec::new(),
            account_exists: None,
            routes_restored: false,
            idle_since: Instant::now(),
            kept_until: Instant::now(),
            deadlines: Vec::new(),
            ended_sessions: VecDeque::new(),
            ext: Extensions::default(),
        }
    }

    pub fn user(&self) -> &Jid {
        &self.user
    }

    /// The user's own domain: the server it speaks to, of the hosts served.
    pub fn domain(&self) -> &Jid {
        self.services.hosts.of(&self.user)
    }

    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    pub fn resource(&self, index: usize) -> &Resource {
        &self.resources[index]
    }

    pub fn resource_mut(&mut self, index: usize) -> &mut Resource {
        &mut self.resources[index]
    }

    pub fn resource_index(&self, jid: &Jid) -> Option<usize> {
        self.resources.iter().position(|r| r.jid == *jid)
    }

    pub fn is_idle(&self) -> bool {
        self.resources.is_empty()
    }

    pub fn idle_since(&self) -> Instant {
        self.idle_since
    }

    /// The actor stays in memory, idle or not, until `at` (what a quota counted must not be
    /// forgotten by logging out for a minute).
    pub fn keep_until(&mut self, at: Instant) {
        self.kept_until = self.kept_until.max(at);
    }

    pub fn kept_until(&self) -> Instant {
        self.kept_until
    }

    /// Binds a resource and returns its index, and what a stream-managed session it replaced
    /// left unacknowledged.
    pub fn bind(&mut self, jid: Jid, link: ClientLink, edge: Option<String>) -> (usize, Vec<Unacked>) {
        let mut left = Vec::new();
        if let Some(index) = self.resource_index(&jid) {
            // The same connection bound again is a bind replayed from the bus after an ownership
            // move, not a second login: it keeps its state (presence, carbons, …) and its link.
            if self.resources[index].connection_id == link.connection_id && self.resources[index].edge == edge {
                return (index, left);
            }
            // RFC 6120 §7.7.2.2: the new session wins; the old connection is closed with `conflict`.
            left = self.end_stream_management(index);
            let old = self.resources.remove(index);
            self.forget_client_state(&old);
            self.services.metrics.sessions_bound.dec();
            if let Some(link) = old.link {
                let _ = link.try_send(ToClient::Close(StreamError::new(StreamErrorCondition::Conflict)), None);
            }
        }
        self.account_exists = Some(true);
        self.services.metrics.sessions_bound.inc();
        // Most users have one resource: grow one at a time instead of Vec's default of four.
        self.resources.reserve_exact(1);
        self.resources.push(Resource::new(jid, link, edge));
        (self.resources.len() - 1, left)
    }

    /// The index of the resource `jid` bound on `connection_id`, if it is still that one.
    pub fn bound_index(&self, jid: &Jid, connection_id: u64) -> Option<usize> {
        self.resources.iter().position(|r| r.jid == *jid && r.connection_id == connection_id)
    }

    /// The edge wrote what the link of `jid` on `connection_id` carried up to `count` to the
    /// client: its carrier may send further.
    pub fn drained(&self, jid: &Jid, connection_id: u64, count: u64) {
        if let Some(link) = self.bound_index(jid, connection_id).and_then(|index| self.resources[index].link.as_ref()) {
            link.drained(count);
        }
    }

    /// Removes a resource whose connection ended (its feature modules had their say first).
    pub async fn remove_resource(&mut self, index: usize) {
        self.services.metrics.sessions_bound.dec();
        let removed = self.resources.remove(index);
        self.forget_client_state(&removed);
        self.withdraw_route(&removed).await;
        if self.resources.is_empty() {
            self.idle_since = Instant::now();
        }
    }

    /// Makes a resource available with `presence` and `priority`, or unavailable with `None`, and
    /// records it in the cluster's registry.
    pub async fn set_availability(&mut self, index: usize, presence: Option<Stanza>, priority: i8) {
        self.resources[index].presence = presence;
        self.resources[index].priority = priority;
        self.publish_route(index).await;
    }

    /// Queues bytes to one resource. A full queue means the client reads too slowly: its link is
    /// dropped (the edge closes that stream) and the bytes are handed back for the caller to keep.
    /// A stream-managed resource keeps what it is sent (see [`sm`]): then the bytes are never
    /// handed back. What an inactive client's resource held goes out first (see [`csi`]).
    pub fn send_to(&mut self, index: usize, kind: StanzaKind, bytes: Bytes) -> Result<(), Bytes> {
        self.flush_held(index);
        self.write(index, kind, bytes)
    }

    fn write(&mut self, index: usize, kind: StanzaKind, bytes: Bytes) -> Result<(), Bytes> {
        let key = replays::delivery_key(kind, &bytes);
        if !self.screen_delivery(index, kind, &bytes, key) {
            return Ok(());
        }
        self.write_now(index, kind, bytes, key, current_hold().as_ref())
    }

    /// Writes a delivery screened by [`screen_delivery`](Self::screen_delivery), which `hold`
    /// keeps from being committed until the edge has it.
    fn write_now(&mut self, index: usize, kind: StanzaKind, bytes: Bytes, key: Option<DeliveryKey>, hold: Option<&Hold>) -> Result<(), Bytes> {
        let kept = self.keep_unacknowledged(index, &bytes);
        let Some(link) = self.resources[index].link.as_ref() else { return if kept { Ok(()) } else { Err(bytes) } };
        match link.try_send(ToClient::Stanza(bytes, key), hold) {
            Ok(()) => {
                let counters = self.services.metrics.stanzas_out();
                match kind {
                    StanzaKind::Message => counters.message.inc(),
                    StanzaKind::Presence => counters.presence.inc(),
                    StanzaKind::Iq => counters.iq.inc(),
                }
                Ok(())
            }
            Err(TrySendError::Full(ToClient::Stanza(bytes, _))) => {
                tracing::info!(jid = %self.resources[index].jid, "outbound queue full, disconnecting slow client");
                self.services.metrics.slow_consumer_disconnects.inc();
                if let Some(link) = self.resources[index].link.take() {
                    link.abandon();
                }
                if kept { Ok(()) } else { Err(bytes) }
            }
            Err(TrySendError::Full(_)) => Ok(()),
            Err(TrySendError::Closed(ToClient::Stanza(bytes, _))) => {
                self.resources[index].link = None;
                if kept { Ok(()) } else { Err(bytes) }
            }
            Err(TrySendError::Closed(_)) => Ok(()),
        }
    }

    /// Sends a stanza to one resource, counting routing latency.
    pub fn send_stanza(&mut self, index: usize, stanza: &Stanza, received: Option<Instant>) -> bool {
        if self.hold_while_inactive(index, stanza) {
            return true;
        }
        let ok = self.send_to(index, stanza.kind, stanza.bytes.clone()).is_ok();
        if let (true, Some(received)) = (ok, received) {
            self.services.metrics.routing_latency.observe(received.elapsed().as_secs_f64());
        }
        ok
    }

    /// Sends a server push (`<iq type='set'>` from the user's bare JID carrying `payload`) to every
    /// resource that `interested` selects: roster pushes (RFC 6121 §2.1.6), blocklist pushes
    /// (XEP-0191 §3.2).
    pub fn push_to(&mut self, interested: impl Fn(&Resource) -> bool, payload: Element) {
        for index in 0..self.resources.len() {
            if !interested(&self.resources[index]) {
                continue;
            }
            let to = self.resources[index].jid.clone();
            let push = Element::new("iq", ns::CLIENT)
                .with_attr("type", "set")
                .with_attr("id", format!("push-{:x}", rand::random::<u64>()))
                .with_child(payload.clone());
            let push = Stanza::build(push, &self.user, Some(&to));
            self.send_stanza(index, &push, None);
        }
    }

    /// Sends to another entity: this user's own full JIDs directly, everything else through the
    /// host router.
    pub fn route(&mut self, stanza: Stanza, received: Instant) {
        let Some(to) = stanza.to.as_ref() else { return };
        if to.bare() == self.user
            && !to.is_bare()
            && let Some(index) = self.resource_index(to)
        {
            self.send_stanza(index, &stanza, Some(received));
            return;
        }
        if let Err(refused) = self.router.route(stanza, received) {
            // The recipient is far behind: the sender is told to retry later (RFC 6120 §8.3.3.18).
            // The error comes back through this actor's mailbox, so that the inbound hooks see it
            // as they see a refusal from elsewhere (the archive forgets the refused message).
            if refused.kind != StanzaKind::Presence
                && let Some(to) = refused.to.clone()
                && let Some(reply) = refused.error_reply(&to, &StanzaError::new(StanzaErrorCondition::ResourceConstraint))
                && let Err(reply) = self.router.route(reply, Instant::now())
                && let Some(index) = reply.to.as_ref().and_then(|to| self.resource_index(to))
            {
                self.send_stanza(index, &reply, None);
            }
        }
    }

    /// Answers `stanza` with an error from `responder`, unless it is itself an error.
    pub fn reply_error(&mut self, stanza: &Stanza, responder: &Jid, condition: StanzaErrorCondition) {
        self.reply_stanza_error(stanza, responder, &StanzaError::new(condition));
    }

    pub fn reply_stanza_error(&mut self, stanza: &Stanza, responder: &Jid, error: &StanzaError) {
        if let Some(reply) = stanza.error_reply(responder, error) {
            self.route(reply, Instant::now());
        }
    }

    /// Answers an IQ request with a result carrying `payload`.
    pub fn reply(&mut self, iq: &Iq, payload: Option<Element>) {
        let result = iq.stanza.iq_result(&iq.responder, payload);
        self.route(result, Instant::now());
    }

    /// Answers an IQ request with an error.
    pub fn refuse(&mut self, iq: &Iq, condition: StanzaErrorCondition) {
        let responder = iq.responder.clone();
        self.reply_error(&iq.stanza, &responder, condition);
    }

    /// Answers an IQ request whose store operation failed with the error a client may retry on.
    pub fn refuse_for_store(&mut self, iq: &Iq, error: StoreError) {
        self.refuse(iq, store_condition(error));
    }

    /// After approving a subscription, the contact gets the user's current presence (RFC 6121
    /// §3.1.5).
    pub fn send_current_presence(&mut self, contact: &Jid) {
        let presences: Vec<Stanza> = self.resources.iter().filter(|r| r.is_available()).filter_map(|r| r.presence.clone()).collect();
        for presence in presences {
            self.route(presence.readdressed(contact), Instant::now());
        }
    }

    /// After cancelling a contact's subscription (or blocking it), it learns the user is
    /// unavailable (RFC 6121 §3.2.1, XEP-0191 §3.3).
    pub fn send_unavailable_to(&mut self, contact: &Jid) {
        let senders: Vec<Jid> = self.resources.iter().filter(|r| r.is_available()).map(|r| r.jid.clone()).collect();
        for sender in senders {
            let unavailable = Element::new("presence", ns::CLIENT).with_attr("type", "unavailable");
            self.route(Stanza::build(unavailable, &sender, Some(contact)), Instant::now());
        }
    }

    /// Whether an account exists for this JID (asked of the store once).
    pub async fn account_exists(&mut self) -> bool {
        if let Some(exists) = self.account_exists {
            return exists;
        }
        match self.services.store.accounts.exists(self.user.as_str()).await {
            Ok(exists) => {
                self.account_exists = Some(exists);
                exists
            }
            Err(error) => {
                tracing::warn!(user = %self.user, %error, "account lookup failed");
                // Unknown is treated as existing so that nothing is refused for a transient fault.
                true
            }
        }
    }

    /// The account was deleted: nothing more is delivered and every stream is closed with `error`.
    pub fn account_removed(&mut self, error: StreamError) {
        self.account_exists = Some(false);
        self.end_streams(|_| true, &error);
    }

    /// Closes with `error` the streams of the resources `which` picks (by full JID).
    pub fn end_streams(&mut self, which: impl Fn(&Jid) -> bool, error: &StreamError) {
        for resource in self.resources.iter().filter(|resource| which(&resource.jid)) {
            if let Some(link) = &resource.link {
                let _ = link.try_send(ToClient::Close(error.clone()), None);
            }
        }
    }
}

/// The error a client may retry on for a store operation that failed (logged here).
pub(crate) fn store_condition(error: StoreError) -> StanzaErrorCondition {
    tracing::warn!(%error, "store operation failed");
    match error {
        StoreError::LimitExceeded => StanzaErrorCondition::ResourceConstraint,
        StoreError::Conflict => StanzaErrorCondition::Conflict,
        _ => StanzaErrorCondition::InternalServerError,
    }
}

/// In a cluster, every resource's route (edge, connection, priority, availability) is recorded
/// in the registry, from where a next owner of the user restores it.
impl UserState {
    /// Records every resource's route again (the registry lost them).
    pub async fn republish_routes(&mut self) {
        for index in 0..self.resources.len() {
            self.publish_route(index).await;
        }
    }

    pub async fn publish_route(&mut self, index: usize) {
        let Some(cluster) = self.services.cluster.get() else { return };
        let resource = &self.resources[index];
        let Some(edge) = resource.edge.clone() else { return };
        let route = ResourceRoute {
            resource: resource.jid.resource().unwrap_or_default().to_owned(),
            node: edge,
            connection: resource.connection_id,
            priority: resource.priority,
            presence: resource.presence.as_ref().map(|presence| String::from_utf8_lossy(&presence.bytes).into_owned()),
            stream_management: self.managed_stream(index),
        };
        cluster.record(&self.user, route).await;
    }

    async fn withdraw_route(&self, removed: &Resource) {
        let Some(cluster) = self.services.cluster.get() else { return };
        if removed.edge.is_some() {
            cluster.withdraw(&self.user, removed.jid.resource().unwrap_or_default(), removed.connection_id).await;
        }
    }
}
