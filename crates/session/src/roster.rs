//! RFC 6121 §2 roster management with XEP-0237 versioning, and the subscription state machine of
//! §3 and Appendix A, both directions.

use std::collections::HashMap;
use std::time::Instant;

use starling_cluster::store::{RosterItem, Subscription};
use starling_protocol::{ns, Jid, Stanza, StanzaErrorCondition};
use starling_xml::Element;

use crate::state::UserState;

/// The cached roster of one user, in step with the store.
pub(crate) struct Roster {
    pub version: u64,
    pub items: HashMap<Jid, RosterItem>,
}

impl Roster {
    pub fn subscription(&self, contact: &Jid) -> Subscription {
        self.items.get(contact).map_or(Subscription::None, |item| item.subscription)
    }
}

/// Whether the contact receives this user's presence.
pub(crate) fn has_from(subscription: Subscription) -> bool {
    matches!(subscription, Subscription::From | Subscription::Both)
}

/// Whether this user receives the contact's presence.
pub(crate) fn has_to(subscription: Subscription) -> bool {
    matches!(subscription, Subscription::To | Subscription::Both)
}

fn subscription_name(subscription: Subscription) -> &'static str {
    match subscription {
        Subscription::None => "none",
        Subscription::To => "to",
        Subscription::From => "from",
        Subscription::Both => "both",
    }
}

fn item_element(item: &RosterItem) -> Element {
    let mut element = Element::new("item", ns::ROSTER)
        .with_attr("jid", item.jid.as_str())
        .with_attr("subscription", subscription_name(item.subscription));
    if let Some(name) = &item.name {
        element.set_attr("name", name.as_str());
    }
    if item.ask_out {
        element.set_attr("ask", "subscribe");
    }
    if item.approved {
        element.set_attr("approved", "true");
    }
    for group in &item.groups {
        element.push_child(Element::new("group", ns::ROSTER).with_text(group.as_str()));
    }
    element
}

fn new_item(contact: &Jid) -> RosterItem {
    RosterItem {
        jid: contact.to_string(),
        name: None,
        groups: Vec::new(),
        subscription: Subscription::None,
        ask_out: false,
        approved: false,
    }
}

impl UserState {
    /// The roster, loaded from the store on first use.
    pub async fn roster(&mut self) -> &mut Roster {
        if self.roster.is_none() {
            let (version, items) = match self.services.store.rosters.roster(self.user.as_str()).await {
                Ok(loaded) => loaded,
                Err(error) => {
                    tracing::warn!(user = %self.user, %error, "could not load roster");
                    (0, Vec::new())
                }
            };
            let items = items.into_iter().filter_map(|item| Some((Jid::new(&item.jid).ok()?, item))).collect();
            self.roster = Some(Roster { version, items });
        }
        self.roster.get_or_insert_with(|| Roster { version: 0, items: HashMap::new() })
    }

    /// Stores an item (or removes it when `item` is `None`) and pushes the change to every
    /// interested resource (RFC 6121 §2.1.6).
    async fn commit_item(&mut self, contact: &Jid, item: Option<RosterItem>) {
        let store = self.services.store.rosters.clone();
        let result = match &item {
            Some(item) => store.put(self.user.as_str(), item.clone()).await.map(Some),
            None => store.remove(self.user.as_str(), contact.as_str()).await,
        };
        let version = match result {
            Ok(Some(version)) => version,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(user = %self.user, %error, "roster write failed");
                return;
            }
        };
        let roster = self.roster().await;
        roster.version = version;
        let pushed = match item {
            Some(item) => {
                let element = item_element(&item);
                roster.items.insert(contact.clone(), item);
                element
            }
            None => {
                roster.items.remove(contact);
                Element::new("item", ns::ROSTER).with_attr("jid", contact.as_str()).with_attr("subscription", "remove")
            }
        };
        self.push_roster(pushed, version);
    }

    fn push_roster(&mut self, item: Element, version: u64) {
        let query = Element::new("query", ns::ROSTER).with_attr("ver", version.to_string()).with_child(item);
        self.push_to(|resource| resource.wants_roster, query);
    }

    pub async fn roster_iq(&mut self, resource: &Jid, stanza: &Stanza, query: &Element) {
        let me = self.user.clone();
        match stanza.stanza_type.as_deref() {
            Some("get") => {
                if let Some(index) = self.resource_index(resource) {
                    self.resources[index].wants_roster = true;
                }
                let roster = self.roster().await;
                let version = roster.version.to_string();
                // XEP-0237 §4: the client's version is current, so pushes will bring it up to date.
                if query.attr("ver") == Some(version.as_str()) {
                    self.route(stanza.iq_result(&me, None), Instant::now());
                    return;
                }
                let mut items: Vec<&RosterItem> = roster.items.values().collect();
                items.sort_by(|a, b| a.jid.cmp(&b.jid));
                let mut result = Element::new("query", ns::ROSTER).with_attr("ver", version);
                for item in items {
                    result.push_child(item_element(item));
                }
                self.route(stanza.iq_result(&me, Some(result)), Instant::now());
            }
            Some("set") => self.roster_set(stanza, query).await,
            _ => self.reply_error(stanza, &me, StanzaErrorCondition::BadRequest),
        }
    }

    /// RFC 6121 §2.3–§2.5: add, update or remove one item.
    async fn roster_set(&mut self, stanza: &Stanza, query: &Element) {
        let me = self.user.clone();
        let mut items = query.children().filter(|c| c.is("item", ns::ROSTER));
        let (Some(element), None) = (items.next(), items.next()) else {
            return self.reply_error(stanza, &me, StanzaErrorCondition::BadRequest);
        };
        let Some(Ok(contact)) = element.attr("jid").map(Jid::new) else {
            return self.reply_error(stanza, &me, StanzaErrorCondition::JidMalformed);
        };
        if !contact.is_bare() {
            return self.reply_error(stanza, &me, StanzaErrorCondition::BadRequest);
        }
        if element.attr("subscription") == Some("remove") {
            let Some(existing) = self.roster().await.items.get(&contact).cloned() else {
                return self.reply_error(stanza, &me, StanzaErrorCondition::ItemNotFound);
            };
            // §2.5.2: the push goes out before the result, so a client that waits for the result
            // sees the roster already changed.
            self.commit_item(&contact, None).await;
            self.route(stanza.iq_result(&me, None), Instant::now());
            // §2.5.2: removing an item cancels both subscriptions.
            if has_to(existing.subscription) || existing.ask_out {
                self.send_subscription(&contact, "unsubscribe");
            }
            if has_from(existing.subscription) {
                self.send_subscription(&contact, "unsubscribed");
            }
            let _ = self.services.store.rosters.remove_pending_in(self.user.as_str(), contact.as_str()).await;
            return;
        }
        let mut groups: Vec<String> = Vec::new();
        for group in element.children().filter(|c| c.is("group", ns::ROSTER)) {
            let name = group.text();
            if name.is_empty() {
                return self.reply_error(stanza, &me, StanzaErrorCondition::NotAcceptable);
            }
            if groups.contains(&name) {
                return self.reply_error(stanza, &me, StanzaErrorCondition::BadRequest);
            }
            groups.push(name);
        }
        let mut item = self.roster().await.items.get(&contact).cloned().unwrap_or_else(|| new_item(&contact));
        item.name = element.attr("name").filter(|n| !n.is_empty()).map(str::to_owned);
        item.groups = groups;
        self.commit_item(&contact, Some(item)).await;
        self.route(stanza.iq_result(&me, None), Instant::now());
    }

    /// Sends a subscription stanza from this user's bare JID to the contact.
    fn send_subscription(&mut self, contact: &Jid, kind: &str) {
        let presence = Element::new("presence", ns::CLIENT).with_attr("type", kind);
        let stanza = Stanza::build(presence, &self.user.clone(), Some(contact));
        self.route(stanza, Instant::now());
    }

    /// RFC 6121 §3, the user's side: the user (un)subscribes or (un)approves.
    pub async fn outbound_subscription(&mut self, stanza: Stanza) {
        let Some(contact) = stanza.to.as_ref().map(Jid::bare) else { return };
        let kind = stanza.stanza_type.clone().unwrap_or_default();
        let existing = self.roster().await.items.get(&contact).cloned();
        let mut item = existing.clone().unwrap_or_else(|| new_item(&contact));
        let mut route = true;
        match kind.as_str() {
            "subscribe" => {
                if !has_to(item.subscription) {
                    item.ask_out = true;
                }
            }
            "subscribed" => {
                let pending = self.services.store.rosters.remove_pending_in(self.user.as_str(), contact.as_str()).await.unwrap_or(false);
                if has_from(item.subscription) {
                    route = false;
                } else if pending {
                    item.subscription = match item.subscription {
                        Subscription::To => Subscription::Both,
                        _ => Subscription::From,
                    };
                    item.approved = false;
                } else {
                    // §3.4: approving before being asked is a pre-approval, kept on the item.
                    item.approved = true;
                    route = false;
                }
            }
            "unsubscribe" => {
                item.ask_out = false;
                item.subscription = match item.subscription {
                    Subscription::Both => Subscription::From,
                    Subscription::To => Subscription::None,
                    other => other,
                };
            }
            "unsubscribed" => {
                let _ = self.services.store.rosters.remove_pending_in(self.user.as_str(), contact.as_str()).await;
                item.approved = false;
                item.subscription = match item.subscription {
                    Subscription::Both => Subscription::To,
                    Subscription::From => Subscription::None,
                    other => other,
                };
            }
            _ => return,
        }
        // An item is created only when it carries some state (§3.1.2, §3.1.5, §3.4); a no-op on a
        // contact that is not in the roster leaves the roster alone.
        let carries_state = item.subscription != Subscription::None || item.ask_out || item.approved;
        if existing.as_ref() != Some(&item) && (existing.is_some() || carries_state) {
            self.commit_item(&contact, Some(item.clone())).await;
        }
        if route {
            // §3.1.2: the server stamps the user's bare JID and routes to the contact's bare JID.
            self.send_subscription(&contact, &kind);
        }
        match kind.as_str() {
            "subscribed" if route => self.send_current_presence(&contact),
            "unsubscribed" if existing.is_some_and(|e| has_from(e.subscription)) => self.send_unavailable_to(&contact),
            _ => {}
        }
    }

    /// RFC 6121 §3, the contact's side: a subscription stanza arrives for this user.
    pub async fn inbound_subscription(&mut self, stanza: Stanza, received: Instant) {
        let contact = stanza.from.bare();
        let kind = stanza.stanza_type.clone().unwrap_or_default();
        let existing = self.roster().await.items.get(&contact).cloned();
        let mut item = existing.clone().unwrap_or_else(|| new_item(&contact));
        match kind.as_str() {
            "subscribe" => {
                if has_from(item.subscription) {
                    // §3.1.3: already subscribed: answer for the user.
                    self.send_subscription(&contact, "subscribed");
                    return;
                }
                if item.approved {
                    item.approved = false;
                    item.subscription = match item.subscription {
                        Subscription::To => Subscription::Both,
                        _ => Subscription::From,
                    };
                    self.commit_item(&contact, Some(item)).await;
                    self.send_subscription(&contact, "subscribed");
                    self.send_current_presence(&contact);
                    return;
                }
                let stored = stanza.bytes.to_vec();
                if let Err(error) = self.services.store.rosters.add_pending_in(self.user.as_str(), contact.as_str(), stored).await {
                    tracing::warn!(user = %self.user, %error, "could not store subscription request");
                }
                self.deliver_to_available(&stanza, received);
                return;
            }
            "subscribed" => {
                if !item.ask_out {
                    return;
                }
                item.ask_out = false;
                item.subscription = match item.subscription {
                    Subscription::From => Subscription::Both,
                    _ => Subscription::To,
                };
            }
            "unsubscribe" => {
                let _ = self.services.store.rosters.remove_pending_in(self.user.as_str(), contact.as_str()).await;
                if !has_from(item.subscription) {
                    self.deliver_to_available(&stanza, received);
                    return;
                }
                item.subscription = match item.subscription {
                    Subscription::Both => Subscription::To,
                    _ => Subscription::None,
                };
                // §3.3.3: the former subscriber no longer sees this user.
                self.send_unavailable_to(&contact);
            }
            "unsubscribed" => {
                if !has_to(item.subscription) && !item.ask_out {
                    return;
                }
                item.ask_out = false;
                item.subscription = match item.subscription {
                    Subscription::Both => Subscription::From,
                    _ => Subscription::None,
                };
            }
            _ => return,
        }
        if existing.is_some() {
            self.commit_item(&contact, Some(item)).await;
        }
        self.deliver_to_available(&stanza, received);
    }

    /// Subscription stanzas go to every available resource (RFC 6121 §3.1.3).
    fn deliver_to_available(&mut self, stanza: &Stanza, received: Instant) {
        for index in 0..self.resources.len() {
            if self.resources[index].is_available() {
                self.send_stanza(index, stanza, Some(received));
            }
        }
    }
}
