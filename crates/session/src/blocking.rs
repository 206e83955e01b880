//! XEP-0191 blocking: the user's blocklist, its pushes, and the checks on both directions.

use std::collections::HashSet;
use std::time::Instant;

use starling_protocol::{ns, Jid, Stanza, StanzaError, StanzaErrorCondition, StanzaKind};
use starling_xml::Element;

use crate::roster::has_from;
use crate::state::UserState;

impl UserState {
    async fn blocklist(&mut self) -> &HashSet<String> {
        if self.blocklist.is_none() {
            let list = match self.services.store.blocklists.list(self.user.as_str()).await {
                Ok(list) => list,
                Err(error) => {
                    tracing::warn!(user = %self.user, %error, "could not load blocklist");
                    Vec::new()
                }
            };
            self.blocklist = Some(list.into_iter().collect());
        }
        self.blocklist.get_or_insert_default()
    }

    /// Whether `jid` matches a blocked item: the full JID, the bare JID or the domain (XEP-0191 §3.3
    /// with RFC 6121 §2.1 matching).
    pub async fn is_blocked(&mut self, jid: &Jid) -> bool {
        let list = self.blocklist().await;
        if list.is_empty() {
            return false;
        }
        list.contains(jid.as_str()) || list.contains(jid.bare().as_str()) || list.contains(jid.domain())
    }

    /// A stanza the user sends to a blocked entity is refused with `not-acceptable` +
    /// `<blocked/>` (XEP-0191 §3.5). Presence is dropped silently.
    pub async fn outbound_blocked(&mut self, stanza: &Stanza) -> bool {
        let Some(to) = stanza.to.clone() else { return false };
        if !self.is_blocked(&to).await {
            return false;
        }
        if stanza.kind != StanzaKind::Presence {
            let mut error = StanzaError::new(StanzaErrorCondition::NotAcceptable).to_element();
            error.push_child(Element::new("blocked", ns::BLOCKING_ERRORS));
            let mut reply = Element::new(stanza.kind.as_str(), ns::CLIENT).with_attr("type", "error").with_child(error);
            if let Some(id) = &stanza.id {
                reply.set_attr("id", id.as_str());
            }
            let reply = Stanza::build(reply, &to, Some(&stanza.from));
            self.route(reply, Instant::now());
        }
        true
    }

    pub async fn blocking_iq(&mut self, resource: &Jid, stanza: &Stanza, payload: &Element) {
        let me = self.user.clone();
        match (stanza.stanza_type.as_deref(), payload.name()) {
            (Some("get"), "blocklist") => {
                let mut items: Vec<String> = self.blocklist().await.iter().cloned().collect();
                items.sort();
                let mut list = Element::new("blocklist", ns::BLOCKING);
                for jid in items {
                    list.push_child(Element::new("item", ns::BLOCKING).with_attr("jid", jid));
                }
                if let Some(index) = self.resource_index(resource) {
                    self.resources[index].wants_blocklist = true;
                }
                self.route(stanza.iq_result(&me, Some(list)), Instant::now());
            }
            (Some("set"), "block" | "unblock") => {
                let mut jids = Vec::new();
                for item in payload.children().filter(|c| c.is("item", ns::BLOCKING)) {
                    match item.attr("jid").map(Jid::new) {
                        Some(Ok(jid)) => jids.push(jid.to_string()),
                        _ => return self.reply_error(stanza, &me, StanzaErrorCondition::JidMalformed),
                    }
                }
                let blocking = payload.name() == "block";
                if blocking && jids.is_empty() {
                    return self.reply_error(stanza, &me, StanzaErrorCondition::BadRequest);
                }
                let result = match (blocking, jids.is_empty()) {
                    (true, _) => self.services.store.blocklists.add(self.user.as_str(), &jids).await,
                    (false, true) => self.services.store.blocklists.clear(self.user.as_str()).await,
                    (false, false) => self.services.store.blocklists.remove(self.user.as_str(), &jids).await,
                };
                if let Err(error) = result {
                    return self.store_error(stanza, &me, error);
                }
                self.blocklist = None;
                self.route(stanza.iq_result(&me, None), Instant::now());
                if blocking {
                    // §3.3: a blocked contact that could see the user now sees it go unavailable.
                    for jid in jids.iter().filter_map(|j| Jid::new(j).ok()) {
                        if has_from(self.roster().await.subscription(&jid.bare())) {
                            self.send_unavailable_to(&jid);
                        }
                    }
                }
                self.push_blocklist_change(payload.clone());
            }
            _ => self.reply_error(stanza, &me, StanzaErrorCondition::BadRequest),
        }
    }

    /// XEP-0191 §3.2/§3.3: every resource that asked for the blocklist learns of the change.
    fn push_blocklist_change(&mut self, change: Element) {
        self.push_to(|resource| resource.wants_blocklist, change);
    }
}
