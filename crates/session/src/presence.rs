//! RFC 6121 §4: presence broadcast, probes, directed presence and unavailable on disconnect.

use std::time::Instant;

use starling_protocol::{ns, Jid, Stanza};
use starling_xml::Element;

use crate::roster::{has_from, has_to};
use crate::state::UserState;

impl UserState {
    /// Presence one of the user's resources sent.
    pub async fn outbound_presence(&mut self, resource: Jid, stanza: Stanza, received: Instant) {
        let Some(index) = self.resource_index(&resource) else { return };
        match stanza.stanza_type.as_deref() {
            Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed") => self.outbound_subscription(stanza).await,
            Some("probe") => {}
            Some("error") => self.route(stanza, received),
            None | Some("unavailable") if stanza.to.is_some() => {
                // §4.6: directed presence; remembered so that unavailable reaches it too.
                let to = stanza.to.clone().unwrap_or_else(|| self.user.clone());
                if stanza.type_is("unavailable") {
                    self.resources[index].directed.remove(&to);
                } else {
                    self.resources[index].directed.insert(to);
                }
                if !self.outbound_blocked(&stanza).await {
                    self.route(stanza, received);
                }
            }
            None => self.broadcast_available(index, stanza, received).await,
            Some("unavailable") => self.broadcast_unavailable(index, stanza).await,
            Some(_) => {}
        }
    }

    /// §4.2 initial presence and §4.4 updates.
    async fn broadcast_available(&mut self, index: usize, stanza: Stanza, received: Instant) {
        let initial = self.resources[index].presence.is_none();
        let priority = priority_of(&stanza);
        self.resources[index].priority = priority;
        self.resources[index].presence = Some(stanza.clone());
        self.publish_route(index).await;
        let contacts: Vec<(Jid, bool, bool)> = {
            let roster = self.roster().await;
            roster.items.iter().map(|(jid, item)| (jid.clone(), has_from(item.subscription), has_to(item.subscription))).collect()
        };
        for (contact, from, _) in &contacts {
            if *from && !self.is_blocked(contact).await {
                self.route(stanza.readdressed(contact), received);
            }
        }
        // Every available resource of the user sees it, the sender included (RFC 6121 §4.2.2, as
        // clients expect their own presence reflected), and a new resource sees the others'.
        for other in 0..self.resources.len() {
            if !self.resources[other].is_available() {
                continue;
            }
            let copy = stanza.readdressed(&self.resources[other].jid.clone());
            self.send_stanza(other, &copy, Some(received));
            if initial && other != index && let Some(theirs) = self.resources[other].presence.clone() {
                let theirs = theirs.readdressed(&self.resources[index].jid.clone());
                self.send_stanza(index, &theirs, None);
            }
        }
        if !initial {
            return;
        }
        for (contact, _, to) in &contacts {
            if *to {
                let probe = Element::new("presence", ns::CLIENT).with_attr("type", "probe");
                let probe = Stanza::build(probe, &self.user.clone(), Some(contact));
                self.route(probe, received);
            }
        }
        self.deliver_pending_subscriptions(index).await;
        if priority >= 0 {
            self.deliver_offline(index).await;
        }
    }

    /// §3.1.3: subscription requests that arrived while the user was away.
    async fn deliver_pending_subscriptions(&mut self, index: usize) {
        match self.services.store.rosters.pending_in(self.user.as_str()).await {
            Ok(pending) => {
                for (_, bytes) in pending {
                    let _ = self.send_to(index, starling_protocol::StanzaKind::Presence, bytes.into());
                }
            }
            Err(error) => tracing::warn!(user = %self.user, %error, "could not read pending subscriptions"),
        }
    }

    /// §4.5: the resource goes unavailable: contacts, the user's other resources and every
    /// directed-presence recipient are told.
    pub async fn broadcast_unavailable(&mut self, index: usize, stanza: Stanza) {
        let now = Instant::now();
        self.resources[index].presence = None;
        self.publish_route(index).await;
        self.last_status = status_of(&stanza);
        let directed: Vec<Jid> = self.resources[index].directed.drain().collect();
        let contacts: Vec<Jid> = {
            let roster = self.roster().await;
            roster.items.iter().filter(|(_, item)| has_from(item.subscription)).map(|(jid, _)| jid.clone()).collect()
        };
        for contact in contacts.iter().chain(directed.iter().filter(|d| !contacts.contains(&d.bare()))) {
            self.route(stanza.readdressed(contact), now);
        }
        if !self.resources.iter().any(|r| r.is_available()) {
            self.record_last_activity().await;
        }
        // The user's other resources, and the sender itself while still connected, see it.
        for other in 0..self.resources.len() {
            if (other == index && self.resources[other].link.is_some()) || self.resources[other].is_available() {
                let copy = stanza.readdressed(&self.resources[other].jid.clone());
                self.send_stanza(other, &copy, Some(now));
            }
        }
    }

    /// After approving a subscription, the contact gets the user's current presence (§3.1.5).
    pub fn send_current_presence(&mut self, contact: &Jid) {
        let presences: Vec<Stanza> = self.resources.iter().filter(|r| r.is_available()).filter_map(|r| r.presence.clone()).collect();
        for presence in presences {
            self.route(presence.readdressed(contact), Instant::now());
        }
    }

    /// After cancelling a contact's subscription, it learns the user is unavailable (§3.2.1).
    pub fn send_unavailable_to(&mut self, contact: &Jid) {
        let senders: Vec<Jid> = self.resources.iter().filter(|r| r.is_available()).map(|r| r.jid.clone()).collect();
        for sender in senders {
            let unavailable = Element::new("presence", ns::CLIENT).with_attr("type", "unavailable");
            self.route(Stanza::build(unavailable, &sender, Some(contact)), Instant::now());
        }
    }

    /// Presence addressed to this user by someone else.
    pub async fn inbound_presence(&mut self, stanza: Stanza, received: Instant) {
        match stanza.stanza_type.as_deref() {
            Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed") => self.inbound_subscription(stanza, received).await,
            Some("probe") => self.answer_probe(&stanza).await,
            _ => {
                let Some(to) = stanza.to.clone() else { return };
                if to.is_bare() {
                    for index in 0..self.resources.len() {
                        if self.resources[index].is_available() {
                            self.send_stanza(index, &stanza, Some(received));
                        }
                    }
                } else if let Some(index) = self.resource_index(&to) {
                    self.send_stanza(index, &stanza, Some(received));
                }
            }
        }
    }

    /// §4.3.2: a subscriber's probe gets the presence of every available resource (or one
    /// unavailable presence); anyone else learns nothing.
    async fn answer_probe(&mut self, probe: &Stanza) {
        let prober = probe.from.bare();
        if prober != self.user && !has_from(self.roster().await.subscription(&prober)) {
            return;
        }
        let available: Vec<Stanza> = self.resources.iter().filter(|r| r.is_available()).filter_map(|r| r.presence.clone()).collect();
        if available.is_empty() {
            let unavailable = Element::new("presence", ns::CLIENT).with_attr("type", "unavailable");
            self.route(Stanza::build(unavailable, &self.user.clone(), Some(&probe.from)), Instant::now());
        }
        for presence in available {
            self.route(presence.readdressed(&probe.from), Instant::now());
        }
    }
}

/// `<priority/>`, an integer from -128 to 127, 0 when absent (RFC 6121 §4.7.2.3).
fn priority_of(stanza: &Stanza) -> i8 {
    if !stanza.bytes.windows(9).any(|w| w == b"<priority") {
        return 0;
    }
    stanza
        .element()
        .ok()
        .and_then(|e| e.get_child("priority", ns::CLIENT).and_then(|p| p.text().trim().parse().ok()))
        .unwrap_or(0)
}

/// The `<status/>` text of a presence, empty when it has none.
fn status_of(stanza: &Stanza) -> String {
    if !stanza.bytes.windows(7).any(|w| w == b"<status") {
        return String::new();
    }
    stanza.element().ok().and_then(|e| e.get_child("status", ns::CLIENT).map(|s| s.text())).unwrap_or_default()
}
