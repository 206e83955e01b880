//! A user's state and the entry points of its handling: what one of the user's own resources sent
//! ([`UserState::handle_own`]) and what others sent to the user ([`UserState::inbound`]). The
//! rules for each stanza kind live in their own modules as further `impl UserState` blocks.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use starling_cluster::gateway::{ClientLink, ToClient};
use starling_cluster::store::{ArchivePrefs, StoreError};
use starling_protocol::{ns, Jid, Stanza, StanzaError, StanzaErrorCondition, StanzaKind, StreamError, StreamErrorCondition};
use starling_xml::Element;
use tokio::sync::mpsc::error::TrySendError;

use crate::directory::Services;
use crate::roster::Roster;

/// One bound resource of the user.
pub(crate) struct Resource {
    pub jid: Jid,
    pub connection_id: u64,
    /// `None` once the connection was dropped for reading too slowly; the edge then unbinds it.
    pub link: Option<ClientLink>,
    /// The last available presence it broadcast; `None` while it is not available.
    pub presence: Option<Stanza>,
    pub priority: i8,
    /// It asked for the roster, so it gets roster pushes and subscription requests (RFC 6121 §2.1.6).
    pub wants_roster: bool,
    /// It asked for the blocklist, so it gets blocklist pushes (XEP-0191 §3.1).
    pub wants_blocklist: bool,
    /// XEP-0280 carbons enabled.
    pub carbons: bool,
    /// The edge node holding the connection, in a cluster (routes are recorded in the registry).
    pub edge: Option<String>,
    /// Entities it sent directed presence to, told when it goes unavailable (RFC 6121 §4.6).
    pub directed: HashSet<Jid>,
}

impl Resource {
    /// A newly bound resource: not yet available, no roster or blocklist requested, carbons off.
    pub fn new(jid: Jid, link: ClientLink, edge: Option<String>) -> Resource {
        Resource {
            jid,
            connection_id: link.connection_id,
            link: Some(link),
            presence: None,
            priority: 0,
            wants_roster: false,
            wants_blocklist: false,
            carbons: false,
            edge,
            directed: HashSet::new(),
        }
    }

    /// A resource another owner bound, rebuilt from its registry route.
    pub fn restored(jid: Jid, link: ClientLink, route: starling_cluster::registry::ResourceRoute, presence: Option<Stanza>) -> Resource {
        Resource { presence, priority: route.priority, ..Resource::new(jid, link, Some(route.node)) }
    }

    pub fn is_available(&self) -> bool {
        self.presence.is_some() && self.link.is_some()
    }
}

pub(crate) struct UserState {
    pub user: Jid,
    pub services: Arc<Services>,
    pub resources: Vec<Resource>,
    /// Loaded on first use, then kept in step with the store.
    pub roster: Option<Roster>,
    pub blocklist: Option<HashSet<String>>,
    /// Whether an account exists for this JID, checked once.
    pub account_exists: Option<bool>,
    /// The status text of the last unavailable presence, kept for XEP-0012.
    pub last_status: String,
    /// The last archive id handed out; 0 until the first message is archived.
    pub archive_last_id: u64,
    /// Archiving preferences, loaded on first use.
    pub archive_prefs: Option<ArchivePrefs>,
    /// In a cluster: the resources recorded by a previous owner were restored.
    pub routes_restored: bool,
    idle_since: Instant,
}

impl UserState {
    pub fn new(user: Jid, services: Arc<Services>) -> UserState {
        UserState {
            user,
            services,
            resources: Vec::new(),
            roster: None,
            blocklist: None,
            account_exists: None,
            last_status: String::new(),
            archive_last_id: 0,
            archive_prefs: None,
            routes_restored: false,
            idle_since: Instant::now(),
        }
    }

    pub fn user(&self) -> &Jid {
        &self.user
    }

    pub fn is_idle(&self) -> bool {
        self.resources.is_empty()
    }

    pub fn idle_since(&self) -> Instant {
        self.idle_since
    }

    pub fn domain(&self) -> &Jid {
        &self.services.domain
    }

    /// Binds a resource and returns its index.
    pub fn bind(&mut self, jid: Jid, link: ClientLink, edge: Option<String>) -> usize {
        if let Some(index) = self.resources.iter().position(|r| r.jid == jid) {
            // The same connection bound again is a bind replayed from the bus after an ownership
            // move, not a second login: it keeps its state (presence, carbons, …) and its link.
            if self.resources[index].connection_id == link.connection_id && self.resources[index].edge == edge {
                return index;
            }
            // RFC 6120 §7.7.2.2: the new session wins; the old connection is closed with `conflict`.
            let old = self.resources.remove(index);
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
        self.resources.len() - 1
    }

    pub async fn unbind(&mut self, jid: &Jid, connection_id: u64) {
        let Some(index) = self.resources.iter().position(|r| r.jid == *jid && r.connection_id == connection_id) else { return };
        self.services.metrics.sessions_bound.dec();
        if self.resources[index].presence.is_some() {
            let unavailable = Stanza::build(
                starling_xml::Element::new("presence", starling_protocol::ns::CLIENT).with_attr("type", "unavailable"),
                jid,
                None,
            );
            self.broadcast_unavailable(index, unavailable).await;
        }
        let removed = self.resources.remove(index);
        self.withdraw_route(&removed).await;
        if self.resources.is_empty() {
            self.idle_since = Instant::now();
        }
    }

    pub fn resource_index(&self, jid: &Jid) -> Option<usize> {
        self.resources.iter().position(|r| r.jid == *jid)
    }

    /// Queues bytes to one resource. A full queue means the client reads too slowly: its link is
    /// dropped (the edge closes that stream) and the bytes are handed back for the caller to keep.
    pub fn send_to(&mut self, index: usize, kind: StanzaKind, bytes: Bytes) -> Result<(), Bytes> {
        let Some(link) = self.resources[index].link.as_ref() else { return Err(bytes) };
        match link.try_send(ToClient::Stanza(bytes), crate::owner::current_hold().as_ref()) {
            Ok(()) => {
                let counters = &self.services.metrics;
                match kind {
                    StanzaKind::Message => counters.stanzas_out().message.inc(),
                    StanzaKind::Presence => counters.stanzas_out().presence.inc(),
                    StanzaKind::Iq => counters.stanzas_out().iq.inc(),
                }
                Ok(())
            }
            Err(TrySendError::Full(ToClient::Stanza(bytes))) => {
                tracing::info!(jid = %self.resources[index].jid, "outbound queue full, disconnecting slow client");
                self.services.metrics.slow_consumer_disconnects.inc();
                if let Some(link) = self.resources[index].link.take() {
                    link.abandon();
                }
                Err(bytes)
            }
            Err(TrySendError::Full(_)) => Ok(()),
            Err(TrySendError::Closed(ToClient::Stanza(bytes))) => {
                self.resources[index].link = None;
                Err(bytes)
            }
            Err(TrySendError::Closed(_)) => Ok(()),
        }
    }

    /// Sends a stanza to one resource, counting routing latency.
    pub fn send_stanza(&mut self, index: usize, stanza: &Stanza, received: Option<Instant>) -> bool {
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

    /// Sends to another entity: local users through their actor, this user's own full JIDs
    /// directly, remote domains not at all (no federation yet: `remote-server-not-found`).
    pub fn route(&mut self, stanza: Stanza, received: Instant) {
        let Some(to) = stanza.to.clone() else { return };
        if to.domain() != self.domain().domain() {
            let error = StanzaError::new(StanzaErrorCondition::RemoteServerNotFound);
            if let Some(reply) = stanza.error_reply(&to.domain_jid(), &error) {
                self.route(reply, received);
            }
            return;
        }
        if to.bare() == self.user
            && !to.is_bare()
            && let Some(index) = self.resource_index(&to)
        {
            self.send_stanza(index, &stanza, Some(received));
            return;
        }
        if let Err(refused) = self.services.deliver(stanza, received) {
            // The recipient is far behind: the sender is told to retry later (RFC 6120 §8.3.3.18).
            if refused.kind != StanzaKind::Presence {
                self.reply_error(&refused, &to, StanzaErrorCondition::ResourceConstraint);
            }
        }
    }

    /// Answers `stanza` with an error from `responder`, unless it is itself an error.
    pub fn reply_error(&mut self, stanza: &Stanza, responder: &Jid, condition: StanzaErrorCondition) {
        if let Some(reply) = stanza.error_reply(responder, &StanzaError::new(condition)) {
            self.route(reply, Instant::now());
        }
    }

    /// Maps a store failure to the stanza error a client may retry on.
    pub fn store_error(&mut self, stanza: &Stanza, responder: &Jid, error: StoreError) {
        tracing::warn!(user = %self.user, %error, "store operation failed");
        let condition = match error {
            StoreError::LimitExceeded => StanzaErrorCondition::ResourceConstraint,
            StoreError::Conflict => StanzaErrorCondition::Conflict,
            _ => StanzaErrorCondition::InternalServerError,
        };
        self.reply_error(stanza, responder, condition);
    }

    /// A stanza from one of this user's resources.
    pub async fn handle_own(&mut self, resource: Jid, mut stanza: Stanza, received: Instant) {
        let to_server = stanza.to.as_ref().is_some_and(|to| *to == self.services.domain);
        let to_self = stanza.to.as_ref().is_none_or(|to| *to == self.user);
        match stanza.kind {
            StanzaKind::Iq if to_server || to_self => self.own_iq(resource, stanza, to_server).await,
            StanzaKind::Presence => self.outbound_presence(resource, stanza, received).await,
            StanzaKind::Message if to_server => {
                if !stanza.type_is("headline") {
                    let domain = self.services.domain.clone();
                    self.reply_error(&stanza, &domain, StanzaErrorCondition::ServiceUnavailable);
                }
            }
            StanzaKind::Message | StanzaKind::Iq => {
                if stanza.to.is_none() {
                    stanza.to = Some(self.user.clone());
                }
                if self.outbound_blocked(&stanza).await {
                    return;
                }
                if stanza.kind == StanzaKind::Message {
                    if !self.archive_outbound(&stanza).await {
                        return;
                    }
                    self.carbon_sent(&resource, &stanza);
                }
                self.route(stanza, received);
            }
        }
    }

    /// A stanza addressed to this user by someone else (or by another of the user's resources).
    pub async fn inbound(&mut self, stanza: Stanza, received: Instant) {
        if !self.account_exists().await {
            self.refuse_for_unknown_user(&stanza);
            return;
        }
        if stanza.from.bare() != self.user && self.is_blocked(&stanza.from).await {
            // XEP-0191 §3.4: nothing from a blocked entity is delivered; requests get an error.
            if stanza.kind != StanzaKind::Presence {
                let me = stanza.to.clone().unwrap_or_else(|| self.user.clone());
                self.reply_error(&stanza, &me, StanzaErrorCondition::ServiceUnavailable);
            }
            return;
        }
        match stanza.kind {
            StanzaKind::Message => self.inbound_message(stanza, received).await,
            StanzaKind::Presence => self.inbound_presence(stanza, received).await,
            StanzaKind::Iq => self.inbound_iq(stanza, received).await,
        }
    }

    /// RFC 6121 §8.5.1: stanzas to a JID with no account.
    fn refuse_for_unknown_user(&mut self, stanza: &Stanza) {
        let me = stanza.to.clone().unwrap_or_else(|| self.user.clone());
        match stanza.kind {
            StanzaKind::Message if stanza.type_is("headline") => {}
            StanzaKind::Presence if stanza.type_is("subscribe") => {
                let unsubscribed = starling_xml::Element::new("presence", starling_protocol::ns::CLIENT).with_attr("type", "unsubscribed");
                let reply = Stanza::build(unsubscribed, &self.user, Some(&stanza.from.bare()));
                self.route(reply, Instant::now());
            }
            StanzaKind::Presence => {}
            StanzaKind::Message | StanzaKind::Iq => self.reply_error(stanza, &me, StanzaErrorCondition::ServiceUnavailable),
        }
    }

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

    pub async fn record_last_activity(&mut self) {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let seen = starling_cluster::store::LastSeen { unix_seconds: seconds, status: self.last_status.clone() };
        if let Err(error) = self.services.store.last_activity.set(self.user.as_str(), seen).await {
            tracing::warn!(user = %self.user, %error, "could not record last activity");
        }
    }
}
