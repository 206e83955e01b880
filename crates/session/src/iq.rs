//! IQ requests the server answers itself: to the server domain (disco, ping, version, uptime), to
//! the user's own account from one of its resources (roster, vCard, private XML, blocking, carbons,
//! password change), and to the user's account from others (vCard, disco, last activity, ping).

use std::time::{Instant, SystemTime};

use starling_protocol::{ns, Jid, Stanza, StanzaErrorCondition};
use starling_xml::Element;

use crate::features::{caps_node, server_features, SERVER_IDENTITY};
use crate::mam::MAM_EXTENDED;
use crate::roster::has_from;
use crate::state::UserState;

/// The single child element of an IQ request, which names what it asks for (RFC 6120 §8.2.3).
fn payload(stanza: &Stanza) -> Option<Element> {
    let element = stanza.element().ok()?;
    let mut children = element.into_children();
    match (children.next(), children.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

impl UserState {
    /// An IQ a resource addressed to its own account or to the server.
    pub async fn own_iq(&mut self, resource: Jid, stanza: Stanza, to_server: bool) {
        let responder = if to_server { self.services.domain.clone() } else { self.user.clone() };
        if !stanza.is_iq_request() {
            return; // A result or error nobody asked for: dropped (RFC 6120 §8.2.3).
        }
        let Some(payload) = payload(&stanza) else {
            return self.reply_error(&stanza, &responder, StanzaErrorCondition::BadRequest);
        };
        let get = stanza.type_is("get");
        match (payload.ns(), payload.name()) {
            (ns::ROSTER, "query") if !to_server => self.roster_iq(&resource, &stanza, &payload).await,
            (ns::BLOCKING, _) if !to_server => self.blocking_iq(&resource, &stanza, &payload).await,
            (ns::CARBONS, "enable" | "disable") if !get => {
                if let Some(index) = self.resource_index(&resource) {
                    self.resources[index].carbons = payload.name() == "enable";
                }
                self.route(stanza.iq_result(&responder, None), Instant::now());
            }
            (ns::PRIVATE, "query") if !to_server => self.private_iq(&stanza, &payload).await,
            (ns::MAM, _) if !to_server => self.mam_iq(&resource, &stanza, &payload).await,
            (ns::VCARD, "vCard") if !to_server && !get => self.vcard_set(&stanza, payload).await,
            (ns::REGISTER, "query") if !get => self.register_set(&stanza, &payload).await,
            (ns::SESSION, "session") if !get => self.route(stanza.iq_result(&responder, None), Instant::now()),
            _ if to_server => self.server_iq(&stanza, &payload),
            _ => self.account_iq(&stanza, &payload).await,
        }
    }

    /// An IQ to this user from someone else: a full JID goes to that resource, a bare JID is
    /// answered by the server on the account's behalf.
    pub async fn inbound_iq(&mut self, stanza: Stanza, received: Instant) {
        let Some(to) = stanza.to.clone() else { return };
        if !to.is_bare() {
            match self.resource_index(&to) {
                Some(index) if self.resources[index].link.is_some() => {
                    self.send_stanza(index, &stanza, Some(received));
                }
                _ => self.reply_error(&stanza, &to, StanzaErrorCondition::ServiceUnavailable),
            }
            return;
        }
        if !stanza.is_iq_request() {
            return;
        }
        match payload(&stanza) {
            Some(payload) => self.account_iq(&stanza, &payload).await,
            None => self.reply_error(&stanza, &to, StanzaErrorCondition::BadRequest),
        }
    }

    /// Requests to the account itself, from its owner or from others.
    async fn account_iq(&mut self, stanza: &Stanza, payload: &Element) {
        let me = self.user.clone();
        let get = stanza.type_is("get");
        match (payload.ns(), payload.name()) {
            (ns::VCARD, "vCard") if get => {
                let vcard = match self.services.store.vcards.get(me.as_str()).await {
                    Ok(stored) => stored.and_then(|bytes| Element::parse(&bytes).ok()),
                    Err(error) => return self.store_error(stanza, &me, error),
                };
                let vcard = vcard.unwrap_or_else(|| Element::new("vCard", ns::VCARD));
                self.route(stanza.iq_result(&me, Some(vcard)), Instant::now());
            }
            (ns::DISCO_INFO, "query") if get && payload.attr("node").is_none() => {
                let mut features = vec![ns::DISCO_INFO, ns::DISCO_ITEMS];
                if self.services.config.archive.is_some() {
                    // XEP-0313 §6 and XEP-0359 §6: the archive is the account's.
                    features.extend([ns::MAM, MAM_EXTENDED, ns::STANZA_ID]);
                }
                let info = features.into_iter().fold(
                    Element::new("query", ns::DISCO_INFO)
                        .with_child(Element::new("identity", ns::DISCO_INFO).with_attr("category", "account").with_attr("type", "registered")),
                    |info, feature| info.with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", feature)),
                );
                self.route(stanza.iq_result(&me, Some(info)), Instant::now());
            }
            (ns::DISCO_ITEMS, "query") if get => {
                self.route(stanza.iq_result(&me, Some(Element::new("query", ns::DISCO_ITEMS))), Instant::now());
            }
            (ns::PING, "ping") if get => self.route(stanza.iq_result(&me, None), Instant::now()),
            (ns::LAST, "query") if get => self.last_activity(stanza).await,
            // Only the owner reaches its archive (XEP-0313 §8.1); its own requests never get here.
            (ns::MAM, _) => self.reply_error(stanza, &me, StanzaErrorCondition::Forbidden),
            _ => self.reply_error(stanza, &me, StanzaErrorCondition::ServiceUnavailable),
        }
    }

    /// Requests to the server domain.
    fn server_iq(&mut self, stanza: &Stanza, payload: &Element) {
        let domain = self.services.domain.clone();
        let get = stanza.type_is("get");
        let reply = match (payload.ns(), payload.name()) {
            (ns::DISCO_INFO, "query") if get && payload.attr("node").is_some_and(|node| node != caps_node()) => {
                return self.reply_error(stanza, &domain, StanzaErrorCondition::ItemNotFound);
            }
            (ns::DISCO_INFO, "query") if get => {
                let (category, kind, name) = SERVER_IDENTITY;
                let mut info = Element::new("query", ns::DISCO_INFO).with_child(
                    Element::new("identity", ns::DISCO_INFO).with_attr("category", category).with_attr("type", kind).with_attr("name", name),
                );
                if let Some(node) = payload.attr("node") {
                    info.set_attr("node", node);
                }
                for feature in server_features() {
                    info.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", feature));
                }
                Some(info)
            }
            (ns::DISCO_ITEMS, "query") if get => Some(Element::new("query", ns::DISCO_ITEMS)),
            (ns::PING, "ping") if get => None,
            (ns::VERSION, "query") if get => Some(
                Element::new("query", ns::VERSION)
                    .with_child(Element::new("name", ns::VERSION).with_text("Starling"))
                    .with_child(Element::new("version", ns::VERSION).with_text(env!("CARGO_PKG_VERSION"))),
            ),
            (ns::LAST, "query") if get => {
                // XEP-0012 §5: to a server, last activity is its uptime.
                let uptime = self.services.started.elapsed().map(|d| d.as_secs()).unwrap_or_default();
                Some(Element::new("query", ns::LAST).with_attr("seconds", uptime.to_string()))
            }
            _ => return self.reply_error(stanza, &domain, StanzaErrorCondition::ServiceUnavailable),
        };
        self.route(stanza.iq_result(&domain, reply), Instant::now());
    }

    /// XEP-0012 §3: only the user and its presence subscribers may ask; an online user was last
    /// active 0 seconds ago.
    async fn last_activity(&mut self, stanza: &Stanza) {
        let me = self.user.clone();
        let asker = stanza.from.bare();
        if asker != me && !has_from(self.roster().await.subscription(&asker)) {
            return self.reply_error(stanza, &me, StanzaErrorCondition::Forbidden);
        }
        if self.resources.iter().any(|r| r.is_available()) {
            let query = Element::new("query", ns::LAST).with_attr("seconds", "0");
            return self.route(stanza.iq_result(&me, Some(query)), Instant::now());
        }
        match self.services.store.last_activity.get(me.as_str()).await {
            Ok(Some(seen)) => {
                let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
                let mut query = Element::new("query", ns::LAST).with_attr("seconds", now.saturating_sub(seen.unix_seconds).to_string());
                if !seen.status.is_empty() {
                    query.push_text(seen.status);
                }
                self.route(stanza.iq_result(&me, Some(query)), Instant::now());
            }
            Ok(None) => self.reply_error(stanza, &me, StanzaErrorCondition::ItemNotFound),
            Err(error) => self.store_error(stanza, &me, error),
        }
    }

    async fn vcard_set(&mut self, stanza: &Stanza, vcard: Element) {
        let me = self.user.clone();
        match self.services.store.vcards.set(me.as_str(), vcard.to_bytes()).await {
            Ok(()) => self.route(stanza.iq_result(&me, None), Instant::now()),
            Err(error) => self.store_error(stanza, &me, error),
        }
    }

    /// XEP-0049: one child in a namespace of the client's choosing, stored under name+namespace.
    async fn private_iq(&mut self, stanza: &Stanza, query: &Element) {
        let me = self.user.clone();
        let mut children = query.children();
        let (Some(item), None) = (children.next(), children.next()) else {
            return self.reply_error(stanza, &me, StanzaErrorCondition::NotAcceptable);
        };
        // §3: the jabber:* namespaces are reserved and may not be used for storage.
        if item.ns().is_empty() || item.ns().starts_with("jabber:") {
            return self.reply_error(stanza, &me, StanzaErrorCondition::NotAcceptable);
        }
        let key = format!("{}|{}", item.name(), item.ns());
        let store = self.services.store.private_xml.clone();
        if stanza.type_is("get") {
            match store.get(me.as_str(), &key).await {
                Ok(stored) => {
                    let found = stored.and_then(|bytes| Element::parse(&bytes).ok()).unwrap_or_else(|| item.clone());
                    let result = Element::new("query", ns::PRIVATE).with_child(found);
                    self.route(stanza.iq_result(&me, Some(result)), Instant::now());
                }
                Err(error) => self.store_error(stanza, &me, error),
            }
        } else {
            match store.set(me.as_str(), &key, item.to_bytes()).await {
                Ok(()) => self.route(stanza.iq_result(&me, None), Instant::now()),
                Err(error) => self.store_error(stanza, &me, error),
            }
        }
    }

    /// XEP-0077 §3.2 (password change) and §3.3 (cancellation), allowed when registration is on.
    async fn register_set(&mut self, stanza: &Stanza, query: &Element) {
        let me = self.user.clone();
        if !self.services.config.registration_enabled {
            return self.reply_error(stanza, &me, StanzaErrorCondition::NotAllowed);
        }
        if query.get_child("remove", ns::REGISTER).is_some() {
            match self.services.store.remove_user(me.as_str()).await {
                Ok(_) => {
                    self.route(stanza.iq_result(&me, None), Instant::now());
                    self.account_exists = Some(false);
                    let close = starling_protocol::StreamError::new(starling_protocol::StreamErrorCondition::NotAuthorized);
                    for resource in &self.resources {
                        if let Some(link) = &resource.link {
                            let _ = link.try_send(starling_cluster::gateway::ToClient::Close(close.clone()), None);
                        }
                    }
                }
                Err(error) => self.store_error(stanza, &me, error),
            }
            return;
        }
        let username = query.get_child("username", ns::REGISTER).map(|e| e.text());
        let password = query.get_child("password", ns::REGISTER).map(|e| e.text());
        match (username, password) {
            (Some(username), Some(password)) if me.node() == Some(username.as_str()) && !password.is_empty() => {
                let credentials = starling_cluster::store::ScramCredentials::derive(&password, starling_cluster::store::DEFAULT_SCRAM_ITERATIONS);
                match self.services.store.accounts.set_credentials(me.as_str(), credentials).await {
                    Ok(_) => self.route(stanza.iq_result(&me, None), Instant::now()),
                    Err(error) => self.store_error(stanza, &me, error),
                }
            }
            _ => self.reply_error(stanza, &me, StanzaErrorCondition::BadRequest),
        }
    }
}
