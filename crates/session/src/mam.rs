//! The user's message archive: what gets archived (XEP-0313 §7.1.1, XEP-0441 preferences,
//! XEP-0334 hints), the XEP-0359 stanza id stamped on the live copy, and the MAM protocol itself:
//! queries with the `urn:xmpp:mam:2` form and XEP-0059 paging, the form, preferences, metadata.
//!
//! Archive ids are microseconds since the Unix epoch, handed out by the user's actor (the only
//! writer of the user's archive), strictly increasing even when the clock stalls or steps back.

use std::time::Instant;

use starling_cluster::store::{ArchiveDefault, ArchiveEntry, ArchivePage, ArchivePrefs, ArchiveQuery, ArchivedMessage, StoreError};
use starling_protocol::{ns, Jid, Stanza, StanzaErrorCondition, StanzaKind};
use starling_xml::{escape_attr, Element};

use crate::config::ArchiveConfig;
use crate::datetime;
use crate::state::UserState;

/// Advertised with `urn:xmpp:mam:2`: before-id/after-id/ids, flipped pages, metadata.
pub(crate) const MAM_EXTENDED: &str = "urn:xmpp:mam:2#extended";

/// OMEMO (legacy and v2) payloads: encrypted messages carry no (or only a fallback) body.
const OMEMO: [&str; 2] = ["eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2"];

/// Whether a message is conversation content a user archive keeps: chat or normal, with a body or
/// an encrypted payload or a `<store/>` hint, and no `<no-store/>`/`<no-permanent-store/>` hint.
/// Byte searches first, so chat states and receipts cost no parse.
pub(crate) fn archivable(stanza: &Stanza) -> bool {
    if stanza.kind != StanzaKind::Message || !matches!(stanza.stanza_type.as_deref(), None | Some("chat" | "normal")) {
        return false;
    }
    let content = stanza.mentions("<body>") || stanza.mentions("<body ") || OMEMO.iter().any(|ns| stanza.mentions(ns));
    if !stanza.mentions(ns::HINTS) {
        return content;
    }
    let Ok(element) = stanza.element() else { return false };
    let hint = |name| element.get_child(name, ns::HINTS).is_some();
    !hint("no-store") && !hint("no-permanent-store") && (content || hint("store"))
}

/// An archive id as clients see it: opaque, here the decimal number.
fn parse_id(text: &str) -> Option<u64> {
    text.parse().ok()
}

/// A parsed archive query.
#[derive(Debug, Default, PartialEq, Eq)]
struct MamQuery {
    range: ArchiveQuery,
    /// A `with` that names a resource: the store filters by its bare JID, this by the full one.
    with_full: Option<Jid>,
    /// The `ids` field: exactly these messages.
    ids: Option<Vec<u64>>,
    /// Ids the query refers to (after/before, both kinds): each must exist (§4.1.3, §4.3.2).
    referenced: Vec<u64>,
    flip: bool,
}

type Refusal = StanzaErrorCondition;

/// Parses a `<query/>` of `urn:xmpp:mam:2`. Errors are the conditions XEP-0313 names: unknown
/// fields `feature-not-implemented` (§4.1.5), unknown ids `item-not-found`, the rest
/// `bad-request`.
fn parse_query(query: &Element, config: &ArchiveConfig) -> Result<MamQuery, Refusal> {
    let mut parsed = MamQuery::default();
    let mut after: Vec<u64> = Vec::new();
    let mut before: Vec<u64> = Vec::new();
    let mut max = None;
    if let Some(form) = query.get_child("x", ns::DATA_FORMS) {
        if form.attr("type") != Some("submit") {
            return Err(Refusal::BadRequest);
        }
        for field in form.children().filter(|c| c.is("field", ns::DATA_FORMS)) {
            let values: Vec<String> = field.children().filter(|c| c.is("value", ns::DATA_FORMS)).map(Element::text).collect();
            let single = || match values.as_slice() {
                [] => Ok(None),
                [one] if one.trim().is_empty() => Ok(None),
                [one] => Ok(Some(one.trim())),
                _ => Err(Refusal::BadRequest),
            };
            let id = |text: &str| parse_id(text).ok_or(Refusal::ItemNotFound);
            match field.attr("var").unwrap_or_default() {
                "FORM_TYPE" => {
                    if single()? != Some(ns::MAM) {
                        return Err(Refusal::BadRequest);
                    }
                }
                "with" => {
                    if let Some(with) = single()? {
                        let with = Jid::new(with).map_err(|_| Refusal::JidMalformed)?;
                        parsed.range.with = Some(with.bare().to_string());
                        parsed.with_full = (!with.is_bare()).then_some(with);
                    }
                }
                "start" => {
                    if let Some(start) = single()? {
                        after.push(datetime::parse(start).ok_or(Refusal::BadRequest)?.saturating_sub(1));
                    }
                }
                "end" => {
                    if let Some(end) = single()? {
                        before.push(datetime::parse(end).ok_or(Refusal::BadRequest)?.saturating_add(1));
                    }
                }
                "after-id" => {
                    if let Some(text) = single()? {
                        let id = id(text)?;
                        after.push(id);
                        parsed.referenced.push(id);
                    }
                }
                "before-id" => {
                    if let Some(text) = single()? {
                        let id = id(text)?;
                        before.push(id);
                        parsed.referenced.push(id);
                    }
                }
                "ids" => parsed.ids = Some(values.iter().map(|v| id(v.trim())).collect::<Result<_, _>>()?),
                _ => return Err(Refusal::FeatureNotImplemented),
            }
        }
    }
    if let Some(set) = query.get_child("set", ns::RSM) {
        for child in set.children() {
            match child.name() {
                "max" => max = Some(child.text().trim().parse::<usize>().map_err(|_| Refusal::BadRequest)?),
                "after" => {
                    let id = parse_id(child.text().trim()).ok_or(Refusal::ItemNotFound)?;
                    after.push(id);
                    parsed.referenced.push(id);
                }
                "before" => {
                    parsed.range.from_newest = true;
                    let text = child.text();
                    if !text.trim().is_empty() {
                        let id = parse_id(text.trim()).ok_or(Refusal::ItemNotFound)?;
                        before.push(id);
                        parsed.referenced.push(id);
                    }
                }
                "index" => return Err(Refusal::FeatureNotImplemented),
                _ => return Err(Refusal::BadRequest),
            }
        }
    }
    parsed.flip = query.get_child("flip-page", ns::MAM).is_some();
    parsed.range.after = after.into_iter().max();
    parsed.range.before = before.into_iter().min();
    parsed.range.limit = max.unwrap_or(config.default_page).min(config.max_page);
    Ok(parsed)
}

/// Whether a stored message was exchanged with exactly this full JID.
fn involves(message: &ArchivedMessage, jid: &Jid) -> bool {
    Element::parse(&message.stanza).is_ok_and(|m| [m.attr("from"), m.attr("to")].into_iter().flatten().any(|a| Jid::new(a).is_ok_and(|a| a == *jid)))
}

fn prefs_element(prefs: &ArchivePrefs) -> Element {
    let default = match prefs.default {
        ArchiveDefault::Always => "always",
        ArchiveDefault::Never => "never",
        ArchiveDefault::Roster => "roster",
    };
    let list = |name: &str, jids: &std::collections::BTreeSet<String>| {
        jids.iter().fold(Element::new(name, ns::MAM), |list, jid| list.with_child(Element::new("jid", ns::MAM).with_text(jid.as_str())))
    };
    Element::new("prefs", ns::MAM).with_attr("default", default).with_child(list("always", &prefs.always)).with_child(list("never", &prefs.never))
}

fn parse_prefs(element: &Element) -> Result<ArchivePrefs, Refusal> {
    let default = match element.attr("default") {
        Some("always") => ArchiveDefault::Always,
        Some("never") => ArchiveDefault::Never,
        Some("roster") => ArchiveDefault::Roster,
        _ => return Err(Refusal::BadRequest),
    };
    let list = |name: &str| -> Result<std::collections::BTreeSet<String>, Refusal> {
        let Some(list) = element.get_child(name, ns::MAM) else { return Ok(Default::default()) };
        list.children()
            .filter(|c| c.is("jid", ns::MAM))
            .map(|jid| Jid::new(jid.text().trim()).map(|jid| jid.bare().to_string()).map_err(|_| Refusal::JidMalformed))
            .collect()
    };
    Ok(ArchivePrefs { default, always: list("always")?, never: list("never")? })
}

/// The query form (§4.1.5): what this server accepts.
fn query_form() -> Element {
    let field = |var: &str, kind: &str| Element::new("field", ns::DATA_FORMS).with_attr("var", var).with_attr("type", kind);
    let validate = Element::new("validate", "http://jabber.org/protocol/xdata-validate")
        .with_attr("datatype", "xs:string")
        .with_child(Element::new("open", "http://jabber.org/protocol/xdata-validate"));
    let form = Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "form")
        .with_child(field("FORM_TYPE", "hidden").with_child(Element::new("value", ns::DATA_FORMS).with_text(ns::MAM)))
        .with_child(field("with", "jid-single"))
        .with_child(field("start", "text-single"))
        .with_child(field("end", "text-single"))
        .with_child(field("before-id", "text-single"))
        .with_child(field("after-id", "text-single"))
        .with_child(field("ids", "list-multi").with_child(validate));
    Element::new("query", ns::MAM).with_child(form)
}

/// One result message (§4.2): the stored bytes inside `<forwarded/>`, not re-serialised.
fn result_message(to: &Jid, archive: &Jid, query_id: Option<&str>, message: &ArchivedMessage) -> bytes::Bytes {
    let mut out = Vec::with_capacity(message.stanza.len() + 320);
    out.extend_from_slice(b"<message xmlns='jabber:client' to='");
    escape_attr(&mut out, to.as_str());
    out.extend_from_slice(b"' from='");
    escape_attr(&mut out, archive.as_str());
    out.extend_from_slice(b"'><result xmlns='urn:xmpp:mam:2'");
    if let Some(query_id) = query_id {
        out.extend_from_slice(b" queryid='");
        escape_attr(&mut out, query_id);
        out.push(b'\'');
    }
    out.extend_from_slice(format!(" id='{}'><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='{}'/>", message.id, datetime::format(message.id)).as_bytes());
    out.extend_from_slice(&message.stanza);
    out.extend_from_slice(b"</forwarded></result></message>");
    out.into()
}

impl UserState {
    /// The next id of this user's archive.
    async fn next_archive_id(&mut self) -> u64 {
        if self.archive_last_id == 0 {
            // After a restart (or a move to another node) the archive may hold ids ahead of this
            // clock: continue after the newest.
            let newest = ArchiveQuery { limit: 1, from_newest: true, ..ArchiveQuery::default() };
            match self.services.store.archive.query(self.user.as_str(), &newest).await {
                Ok(page) => self.archive_last_id = page.messages.last().map_or(0, |m| m.id),
                Err(error) => tracing::warn!(user = %self.user, %error, "could not read the newest archive id"),
            }
        }
        self.archive_last_id = datetime::now_micros().max(self.archive_last_id + 1);
        self.archive_last_id
    }

    async fn archive_prefs(&mut self) -> ArchivePrefs {
        if self.archive_prefs.is_none() {
            let default = ArchivePrefs { default: self.archive_config().map_or(ArchiveDefault::Never, |c| c.default_mode), ..ArchivePrefs::default() };
            let stored = match self.services.store.archive.prefs(self.user.as_str()).await {
                Ok(stored) => stored,
                Err(error) => {
                    tracing::warn!(user = %self.user, %error, "could not read archive preferences; using the default");
                    None
                }
            };
            self.archive_prefs = Some(stored.unwrap_or(default));
        }
        self.archive_prefs.clone().unwrap_or_default()
    }

    fn archive_config(&self) -> Option<&ArchiveConfig> {
        self.services.config.archive.as_ref()
    }

    /// Whether the preferences archive messages with `peer` (XEP-0441 §4).
    async fn archives_with(&mut self, peer: &Jid) -> bool {
        let prefs = self.archive_prefs().await;
        let bare = peer.bare();
        if prefs.never.contains(bare.as_str()) {
            return false;
        }
        if prefs.always.contains(bare.as_str()) {
            return true;
        }
        match prefs.default {
            ArchiveDefault::Always => true,
            ArchiveDefault::Never => false,
            ArchiveDefault::Roster => self.roster().await.items.contains_key(&bare),
        }
    }

    /// Archives `stanza` (exchanged with `peer`) if it should be, returning its id. `Err` when
    /// the archive queue stayed full: the caller refuses the message rather than lose it.
    async fn archive(&mut self, stanza: &Stanza, peer: &Jid) -> Result<Option<u64>, ()> {
        if self.archive_config().is_none() || !archivable(stanza) || !self.archives_with(peer).await {
            return Ok(None);
        }
        let id = self.next_archive_id().await;
        let entry = ArchiveEntry {
            user: self.user.to_string(),
            message: ArchivedMessage { id, with: peer.bare().to_string(), stanza: stanza.bytes.to_vec() },
        };
        let Some(writer) = self.services.archive_writer.as_ref() else { return Ok(None) };
        match writer.submit(entry, crate::owner::current_hold()).await {
            Ok(()) => Ok(Some(id)),
            Err(_) => {
                self.services.metrics.archive_refused.inc();
                Err(())
            }
        }
    }

    /// A message one of the user's resources sent: archived before it is routed. `false` if it
    /// was refused (the sender got an error) and must not be routed.
    pub async fn archive_outbound(&mut self, stanza: &Stanza) -> bool {
        let Some(peer) = stanza.to.clone() else { return true };
        if self.archive(stanza, &peer).await.is_err() {
            let me = self.user.clone();
            self.reply_error(stanza, &me, StanzaErrorCondition::ResourceConstraint);
            return false;
        }
        true
    }

    /// A message for the user: archived, and stamped with its archive id (XEP-0359) for delivery
    /// and offline storage, so a client can match the live copy with the archived one. Any
    /// stanza-id claiming to be from this archive is removed first (XEP-0359 §5). `None` if it
    /// was refused (the sender got an error).
    pub async fn archive_inbound(&mut self, stanza: Stanza) -> Option<Stanza> {
        if self.archive_config().is_none() {
            return Some(stanza);
        }
        let stanza = self.strip_forged_stanza_ids(stanza);
        let peer = stanza.from.clone();
        match self.archive(&stanza, &peer).await {
            Ok(None) => Some(stanza),
            Ok(Some(id)) => {
                let stanza_id = Element::new("stanza-id", ns::STANZA_ID).with_attr("by", self.user.as_str()).with_attr("id", id.to_string());
                Some(stanza.with_appended_child(&stanza_id))
            }
            Err(()) => {
                let me = stanza.to.clone().unwrap_or_else(|| self.user.clone());
                self.reply_error(&stanza, &me, StanzaErrorCondition::ResourceConstraint);
                None
            }
        }
    }

    fn strip_forged_stanza_ids(&self, stanza: Stanza) -> Stanza {
        if !stanza.mentions(ns::STANZA_ID) {
            return stanza;
        }
        let Ok(mut element) = stanza.element() else { return stanza };
        let before = element.children().count();
        let user = self.user.as_str();
        element.remove_children(|c| c.is("stanza-id", ns::STANZA_ID) && c.attr("by").is_some_and(|by| Jid::new(by).is_ok_and(|by| by.as_str() == user)));
        if element.children().count() == before {
            return stanza;
        }
        Stanza::from_element(&element).unwrap_or(stanza)
    }

    /// An IQ of `urn:xmpp:mam:2` from one of the user's own resources, to the user's archive.
    pub async fn mam_iq(&mut self, resource: &Jid, stanza: &Stanza, payload: &Element) {
        let me = self.user.clone();
        if self.archive_config().is_none() {
            return self.reply_error(stanza, &me, StanzaErrorCondition::ServiceUnavailable);
        }
        let get = stanza.type_is("get");
        match payload.name() {
            "query" if get => self.route(stanza.iq_result(&me, Some(query_form())), Instant::now()),
            "query" => self.mam_query(resource, stanza, payload).await,
            "prefs" if get => {
                let prefs = self.archive_prefs().await;
                self.route(stanza.iq_result(&me, Some(prefs_element(&prefs))), Instant::now());
            }
            "prefs" => match parse_prefs(payload) {
                Ok(prefs) => match self.services.store.archive.set_prefs(me.as_str(), prefs.clone()).await {
                    Ok(()) => {
                        let reply = prefs_element(&prefs);
                        self.archive_prefs = Some(prefs);
                        self.route(stanza.iq_result(&me, Some(reply)), Instant::now());
                    }
                    Err(error) => self.store_error(stanza, &me, error),
                },
                Err(condition) => self.reply_error(stanza, &me, condition),
            },
            "metadata" if get => self.mam_metadata(stanza).await,
            _ => self.reply_error(stanza, &me, StanzaErrorCondition::FeatureNotImplemented),
        }
    }

    async fn mam_query(&mut self, resource: &Jid, stanza: &Stanza, payload: &Element) {
        let me = self.user.clone();
        let Some(config) = self.archive_config().cloned() else { return };
        if payload.attr("node").is_some() {
            // Pubsub node archives (XEP-0442) are not served by a user archive.
            return self.reply_error(stanza, &me, StanzaErrorCondition::FeatureNotImplemented);
        }
        let query = match parse_query(payload, &config) {
            Ok(query) => query,
            Err(condition) => return self.reply_error(stanza, &me, condition),
        };
        // Read-your-writes: what this user's actor queued must be stored before the query reads.
        // If the store is too far behind, answer anyway and say the result may change (§4.3.2).
        let stable = match self.services.archive_writer.as_ref() {
            Some(writer) => writer.flush().await.is_ok(),
            None => true,
        };
        let page = match self.run_query(&query).await {
            Ok(Ok(page)) => page,
            Ok(Err(condition)) => return self.reply_error(stanza, &me, condition),
            Err(error) => return self.store_error(stanza, &me, error),
        };
        self.services.metrics.mam_queries.inc();
        let Some(index) = self.resource_index(resource) else { return };
        let query_id = payload.attr("queryid");
        let order: Box<dyn Iterator<Item = &ArchivedMessage>> =
            if query.flip { Box::new(page.messages.iter().rev()) } else { Box::new(page.messages.iter()) };
        for message in order {
            if self.send_to(index, StanzaKind::Message, result_message(resource, &me, query_id, message)).is_err() {
                return;
            }
        }
        let mut set = Element::new("set", ns::RSM);
        if let (Some(first), Some(last)) = (page.messages.first(), page.messages.last()) {
            set.push_child(Element::new("first", ns::RSM).with_text(first.id.to_string()));
            set.push_child(Element::new("last", ns::RSM).with_text(last.id.to_string()));
        } else if page.complete {
            set.push_child(Element::new("count", ns::RSM).with_text("0"));
        }
        let mut fin = Element::new("fin", ns::MAM).with_child(set);
        if page.complete {
            fin.set_attr("complete", "true");
        }
        if !stable {
            fin.set_attr("stable", "false");
        }
        self.route(stanza.iq_result(&me, Some(fin)), Instant::now());
    }

    /// The archived messages with these ids, oldest first; `None` if any of them is not in the
    /// archive (XEP-0313 then answers `item-not-found`).
    async fn all_archived(&self, ids: &[u64]) -> Result<Option<Vec<ArchivedMessage>>, StoreError> {
        let found = self.services.store.archive.get(self.user.as_str(), ids).await?;
        let mut wanted = ids.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        Ok((found.len() == wanted.len()).then_some(found))
    }

    /// The page `query` selects; the inner `Err` is a protocol refusal (an unknown id).
    async fn run_query(&self, query: &MamQuery) -> Result<Result<ArchivePage, Refusal>, StoreError> {
        let archive = &self.services.store.archive;
        let user = self.user.as_str();
        if !query.referenced.is_empty() && self.all_archived(&query.referenced).await?.is_none() {
            return Ok(Err(Refusal::ItemNotFound));
        }
        let range = &query.range;
        let keep = |m: &ArchivedMessage| {
            range.after.is_none_or(|a| m.id > a)
                && range.before.is_none_or(|b| m.id < b)
                && range.with.as_ref().is_none_or(|w| m.with == *w)
                && query.with_full.as_ref().is_none_or(|full| involves(m, full))
        };
        if let Some(ids) = &query.ids {
            let Some(found) = self.all_archived(ids).await? else { return Ok(Err(Refusal::ItemNotFound)) };
            let mut messages: Vec<ArchivedMessage> = found.into_iter().filter(keep).collect();
            let complete = messages.len() <= range.limit;
            messages.truncate(range.limit);
            return Ok(Ok(ArchivePage { messages, complete }));
        }
        let Some(full) = &query.with_full else { return Ok(Ok(archive.query(user, range).await?)) };
        // A full-JID `with`: read the bare JID's conversation page by page and keep that resource.
        let mut window = range.clone();
        let mut kept: Vec<ArchivedMessage> = Vec::new();
        loop {
            let page = archive.query(user, &window).await?;
            let (oldest, newest) = (page.messages.first().map(|m| m.id), page.messages.last().map(|m| m.id));
            let matching = page.messages.into_iter().filter(|m| involves(m, full));
            if range.from_newest {
                let mut older: Vec<ArchivedMessage> = matching.collect();
                older.append(&mut kept);
                kept = older;
            } else {
                kept.extend(matching);
            }
            if kept.len() > range.limit || page.complete {
                let complete = page.complete && kept.len() <= range.limit;
                if range.from_newest {
                    let excess = kept.len().saturating_sub(range.limit);
                    kept.drain(..excess);
                } else {
                    kept.truncate(range.limit);
                }
                return Ok(Ok(ArchivePage { messages: kept, complete }));
            }
            if range.from_newest {
                window.before = oldest;
            } else {
                window.after = newest;
            }
        }
    }

    /// Archive metadata (§5): the first and last message.
    async fn mam_metadata(&mut self, stanza: &Stanza) {
        let me = self.user.clone();
        let ends = async {
            let archive = &self.services.store.archive;
            let oldest = archive.query(me.as_str(), &ArchiveQuery { limit: 1, ..ArchiveQuery::default() }).await?;
            let newest = archive.query(me.as_str(), &ArchiveQuery { limit: 1, from_newest: true, ..ArchiveQuery::default() }).await?;
            Ok::<_, StoreError>((oldest.messages.into_iter().next(), newest.messages.into_iter().next()))
        };
        match ends.await {
            Ok((oldest, newest)) => {
                let mut metadata = Element::new("metadata", ns::MAM);
                for (name, message) in [("start", oldest), ("end", newest)] {
                    if let Some(message) = message {
                        metadata.push_child(Element::new(name, ns::MAM).with_attr("id", message.id.to_string()).with_attr("timestamp", datetime::format(message.id)));
                    }
                }
                self.route(stanza.iq_result(&me, Some(metadata)), Instant::now());
            }
            Err(error) => self.store_error(stanza, &me, error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(xml: &str) -> Stanza {
        Stanza::from_element(&Element::parse(xml.as_bytes()).expect("xml")).expect("stanza")
    }

    fn query(xml: &str) -> Result<MamQuery, Refusal> {
        parse_query(&Element::parse(xml.as_bytes()).expect("xml"), &ArchiveConfig::default())
    }

    fn form(fields: &str) -> String {
        format!(
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>{fields}</x></query>"
        )
    }

    #[test]
    fn archives_conversation_content_only() {
        let m = |attrs: &str, body: &str| stanza(&format!("<message xmlns='jabber:client' from='a@x' to='b@x' {attrs}>{body}</message>"));
        assert!(archivable(&m("type='chat'", "<body>hi</body>")));
        assert!(archivable(&m("", "<body xml:lang='en'>hi</body>")));
        assert!(archivable(&m("type='chat'", "<encrypted xmlns='eu.siacs.conversations.axolotl'/>")));
        assert!(archivable(&m("type='chat'", "<store xmlns='urn:xmpp:hints'/><received xmlns='urn:xmpp:receipts'/>")));
        assert!(!archivable(&m("type='chat'", "<active xmlns='http://jabber.org/protocol/chatstates'/>")));
        assert!(!archivable(&m("type='chat'", "<body>x</body><no-store xmlns='urn:xmpp:hints'/>")));
        assert!(!archivable(&m("type='chat'", "<body>x</body><no-permanent-store xmlns='urn:xmpp:hints'/>")));
        assert!(!archivable(&m("type='headline'", "<body>x</body>")));
        assert!(!archivable(&m("type='groupchat'", "<body>x</body>")));
        assert!(!archivable(&m("type='error'", "<body>x</body>")));
    }

    #[test]
    fn form_fields_become_an_id_range() {
        let parsed = query(&form(
            "<field var='with'><value>Juliet@Capulet.lit/balcony</value></field>\
             <field var='start'><value>2010-06-07T00:00:00Z</value></field>\
             <field var='end'><value>2010-07-07T13:23:54.5+02:00</value></field>\
             <field var='after-id'><value>1275868800000000</value></field>",
        ))
        .expect("query");
        assert_eq!(parsed.range.with.as_deref(), Some("juliet@capulet.lit"));
        assert_eq!(parsed.with_full.as_ref().map(Jid::as_str), Some("juliet@capulet.lit/balcony"));
        assert_eq!(parsed.range.after, Some(1_275_868_800_000_000), "the later of start-1 and after-id");
        assert_eq!(parsed.range.before, Some(1_278_501_834_500_001), "end is inclusive, in UTC, to the microsecond");
        assert_eq!(parsed.referenced, [1_275_868_800_000_000]);
        assert_eq!(parsed.range.limit, 50);
        assert!(!parsed.range.from_newest);
    }

    #[test]
    fn rsm_pages_and_caps() {
        let parsed = query("<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>100000</max><before/></set><flip-page/></query>")
            .expect("query");
        assert_eq!(parsed.range.limit, 250, "max is capped");
        assert!(parsed.range.from_newest && parsed.flip);
        assert_eq!(parsed.range.before, None, "an empty before is the last page");
        let parsed = query("<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>0</max><after>5</after><before>9</before></set></query>")
            .expect("query");
        assert_eq!((parsed.range.limit, parsed.range.after, parsed.range.before), (0, Some(5), Some(9)));
        assert_eq!(parsed.referenced, [5, 9]);
    }

    #[test]
    fn bad_forms_get_the_conditions_xep_0313_names() {
        assert_eq!(query(&form("<field var='x-unknown'><value>1</value></field>")), Err(Refusal::FeatureNotImplemented));
        assert_eq!(query(&form("<field var='start'><value>yesterday</value></field>")), Err(Refusal::BadRequest));
        assert_eq!(query(&form("<field var='with'><value>@@</value></field>")), Err(Refusal::JidMalformed));
        assert_eq!(query(&form("<field var='after-id'><value>not-an-id</value></field>")), Err(Refusal::ItemNotFound));
        assert_eq!(query(&form("<field var='with'><value>a@x</value><value>b@x</value></field>")), Err(Refusal::BadRequest));
        let wrong_type = "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:1</value></field></x></query>";
        assert_eq!(query(wrong_type), Err(Refusal::BadRequest));
        let not_submit = "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='form'/></query>";
        assert_eq!(query(not_submit), Err(Refusal::BadRequest));
        let bad_max = "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>-1</max></set></query>";
        assert_eq!(query(bad_max), Err(Refusal::BadRequest));
        let index = "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><index>3</index></set></query>";
        assert_eq!(query(index), Err(Refusal::FeatureNotImplemented));
    }

    proptest::proptest! {
        /// Whatever a client puts in the form or the RSM set, parsing answers (a query or an
        /// error condition) and never panics; a query it accepts never pages beyond the cap.
        #[test]
        fn any_query_is_answered(
            vars in proptest::collection::vec("[a-z_-]{0,10}|with|start|end|after-id|before-id|ids|FORM_TYPE", 0..5),
            values in proptest::collection::vec(".{0,30}", 0..5),
            rsm_max in ".{0,12}",
            rsm_id in ".{0,24}",
        ) {
            let escaped = |text: &str| {
                let mut out = Vec::new();
                starling_xml::escape_attr(&mut out, text);
                String::from_utf8(out).unwrap_or_default()
            };
            let fields: String = vars
                .iter()
                .zip(values.iter().cycle())
                .map(|(var, value)| format!("<field var='{}'><value>{}</value></field>", escaped(var), escaped(value)))
                .collect();
            let (max, id) = (escaped(&rsm_max), escaped(&rsm_id));
            let xml = format!(
                "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>{fields}</x>\
                 <set xmlns='http://jabber.org/protocol/rsm'><max>{max}</max><after>{id}</after><before>{id}</before></set></query>"
            );
            if let Ok(element) = Element::parse(xml.as_bytes())
                && let Ok(parsed) = parse_query(&element, &ArchiveConfig::default())
            {
                proptest::prop_assert!(parsed.range.limit <= 250);
            }
        }
    }

    #[test]
    fn prefs_parse_and_render() {
        let element = Element::parse(
            b"<prefs xmlns='urn:xmpp:mam:2' default='roster'><always><jid>Romeo@Montague.lit/orchard</jid></always><never><jid>x@y</jid></never></prefs>",
        )
        .expect("xml");
        let prefs = parse_prefs(&element).expect("prefs");
        assert_eq!(prefs.default, ArchiveDefault::Roster);
        assert_eq!(prefs.always.iter().collect::<Vec<_>>(), ["romeo@montague.lit"]);
        assert_eq!(parse_prefs(&prefs_element(&prefs)), Ok(prefs));
        assert_eq!(parse_prefs(&Element::parse(b"<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>").expect("xml")), Err(Refusal::BadRequest));
    }
}
