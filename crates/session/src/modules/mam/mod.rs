//! The user's message archive (XEP-0313): what gets archived (§7.1.1, XEP-0441 preferences,
//! XEP-0334 hints), the XEP-0359 stanza id stamped on the live copy, and the MAM requests:
//! queries, the form, preferences, metadata (their payloads in [`query`]).
//!
//! Archive ids are microseconds since the Unix epoch, handed out by the user's actor (the only
//! writer of the user's archive), strictly increasing even when the clock stalls or steps back.

mod query;
mod quota;
mod refusals;
pub(crate) mod replays;

use std::time::Instant;

use bytes::Bytes;
use starling_cluster::store::{ArchiveDefault, ArchiveEntry, ArchivePrefs, ArchiveQuery, ArchivedMessage, StoreError};
use starling_protocol::payload::{ArchiveEnd, MamFin, MamMetadata, MamQuery, RsmFirst, RsmSet};
use starling_protocol::{ns, Jid, Stanza, StanzaError, StanzaErrorCondition, StanzaKind};
use starling_xml::Element;

use self::query::{parse_prefs, parse_query, prefs_payload, result_message, run_query};
use self::quota::Direction;
pub(crate) use self::refusals::withdraw_received;
use self::refusals::SentLately;
use self::replays::{archived_by, content_of, RecentlyArchived};
use super::roster;
use crate::context::Services;
use crate::datetime;
use crate::hold::{current_cause, current_hold};
use crate::iq::{Iq, IqTo};
use crate::registry::{Flow, Hook, Registrar};
use crate::state::UserState;

/// OMEMO (legacy and v2) payloads: encrypted messages carry no (or only a fallback) body.
const OMEMO: [&str; 2] = ["eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2"];

pub(super) fn register(r: &mut Registrar) {
    if !r.config.archive.enabled {
        return;
    }
    for name in ["query", "prefs", "metadata"] {
        r.iq(IqTo::OwnAccount, ns::MAM, name, |state, iq| Box::pin(mam_iq(state, iq)));
        // Only the owner reaches its archive (§8.1).
        r.iq(IqTo::Account, ns::MAM, name, |state, iq| Box::pin(async move { state.refuse(&iq, StanzaErrorCondition::Forbidden) }));
    }
    r.outbound(&[StanzaKind::Message], 50, Hook::Later(|state, _, stanza, received| Box::pin(archive_outbound(state, stanza, received))));
    r.inbound(&[StanzaKind::Message], 50, Hook::Later(|state, stanza, received| Box::pin(archive_inbound(state, stanza, received))));
    // §6 and XEP-0359 §6: the archive is the account's.
    // `#extended`: before-id/after-id/ids, flipped pages, metadata.
    for feature in [ns::MAM, ns::MAM_EXTENDED, ns::STANZA_ID] {
        r.account_feature(feature);
    }
}

/// What the archive keeps about the user between messages.
#[derive(Default)]
struct ArchiveState {
    /// The last archive id handed out; 0 until the first message is archived.
    last_id: u64,
    /// Archiving preferences, loaded on first use.
    prefs: Option<ArchivePrefs>,
    /// In a cluster, what was archived lately (see [`replays`]); loaded with the first id.
    recent: Option<RecentlyArchived>,
    /// The archive id of the message being handled, if it is a replay of one archived before.
    replayed: Option<u64>,
    /// The archive id under which the message being handled was archived for the user as its
    /// recipient, just now.
    received: Option<u64>,
    /// What the user sent and archived lately, until a refusal comes back (see [`refusals`]).
    sent_lately: SentLately,
}

/// The archive id of the message being handled, if the archive recognised it as a replay of one
/// it archived before (an owner died): offline storage then looks for it before storing it again.
pub(super) fn replayed_archive_id(state: &UserState) -> Option<u64> {
    state.ext.get::<ArchiveState>().and_then(|archive| archive.replayed)
}

/// The XEP-0359 stanza id the user's archive stamps on a message it archived under `id`.
fn stanza_id(user: &Jid, id: u64) -> Element {
    Element::new("stanza-id", ns::STANZA_ID).with_attr("by", user.as_str()).with_attr("id", id.to_string())
}

/// Whether `bytes` (a message as delivered or stored) carry the stanza id of archive entry `id`.
pub(super) fn carries_archive_id(user: &Jid, bytes: &[u8], id: u64) -> bool {
    let mut needle = Vec::new();
    stanza_id(user, id).write_in_ns(&mut needle, ns::CLIENT);
    bytes.windows(needle.len()).any(|window| window == needle.as_slice())
}

/// Whether a message is conversation content a user archive keeps: chat or normal, with a body or
/// an encrypted payload or a `<store/>` hint, and no `<no-store/>`/`<no-permanent-store/>` hint.
/// Byte searches first, so chat states and receipts cost no parse.
fn archivable(stanza: &Stanza) -> bool {
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

/// Reads where the user's archive stands, once per actor: after a restart (or a move to another
/// node) the archive may hold ids ahead of this clock, so ids continue after the newest; in a
/// cluster, the newest entries are what a replay may repeat.
async fn load_archive_state(state: &mut UserState, in_cluster: bool) {
    if state.ext.get::<ArchiveState>().is_some_and(|archive| archive.last_id != 0) {
        return;
    }
    let limit = if in_cluster { replays::SEEDS } else { 1 };
    let newest = ArchiveQuery { limit, from_newest: true, ..ArchiveQuery::default() };
    let page = match state.services().store.archive.query(state.user().as_str(), &newest).await {
        Ok(page) => page,
        Err(error) => {
            tracing::warn!(user = %state.user(), %error, "could not read the newest archive entries");
            Default::default()
        }
    };
    let archive = state.ext.get_or_insert_with(ArchiveState::default);
    archive.last_id = page.messages.last().map_or(0, |m| m.id);
    if in_cluster && archive.recent.is_none() {
        archive.recent = Some(RecentlyArchived::seeded(&page.messages, datetime::now_micros()));
    }
}

/// The next id of this user's archive.
fn next_archive_id(state: &mut UserState) -> u64 {
    let archive = state.ext.get_or_insert_with(ArchiveState::default);
    archive.last_id = datetime::now_micros().max(archive.last_id + 1);
    archive.last_id
}

async fn archive_prefs(state: &mut UserState) -> ArchivePrefs {
    if let Some(prefs) = state.ext.get::<ArchiveState>().and_then(|archive| archive.prefs.clone()) {
        return prefs;
    }
    let default_mode = state.services().config.archive.default_mode.into();
    let stored = match state.services().store.archive.prefs(state.user().as_str()).await {
        Ok(stored) => stored,
        Err(error) => {
            tracing::warn!(user = %state.user(), %error, "could not read archive preferences; using the default");
            None
        }
    };
    let prefs = stored.unwrap_or(ArchivePrefs { default: default_mode, ..ArchivePrefs::default() });
    state.ext.get_or_insert_with(ArchiveState::default).prefs = Some(prefs.clone());
    prefs
}

/// Whether the preferences archive messages with `peer` (XEP-0441 §4).
async fn archives_with(state: &mut UserState, peer: &Jid) -> bool {
    let prefs = archive_prefs(state).await;
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
        ArchiveDefault::Roster => roster::is_contact(state, &bare).await,
    }
}

/// Why a message the archive should take was not archived: the caller refuses it.
enum NotArchived {
    /// The archive queue stayed full (rather than lose the message).
    Busy,
    /// The user's daily allowance in that direction is spent.
    OverAllowance,
}

/// Archives `stanza` (exchanged with `peer`, received at `now`) if it should be, returning its id.
async fn archive(state: &mut UserState, stanza: &Stanza, peer: &Jid, outbound: bool, now: Instant) -> Result<Option<u64>, NotArchived> {
    if let Some(archive) = state.ext.get_mut::<ArchiveState>() {
        archive.replayed = None;
        archive.received = None;
    }
    if !archivable(stanza) {
        return Ok(None);
    }
    // Before the preferences: what a user sends stands for the recipient's copy too.
    let direction = if outbound { Direction::Sent } else { Direction::Received };
    if !quota::charge(state, direction, stanza.bytes.len(), now) {
        return Err(NotArchived::OverAllowance);
    }
    if !archives_with(state, peer).await {
        return Ok(None);
    }
    let cause = current_cause();
    load_archive_state(state, cause.is_some()).await;
    // In a cluster: the same record archiving the same bytes again is a replay.
    let replay = cause.map(|cause| (content_of(&stanza.bytes), archived_by(cause, outbound)));
    let recent = state.ext.get_mut::<ArchiveState>().and_then(|archive| archive.recent.as_mut());
    if let (Some((content, by)), Some(recent)) = (replay, recent)
        && let Some(id) = recent.recall(content, by)
    {
        state.services().metrics.replayed_archive_entries_skipped.inc();
        state.ext.get_or_insert_with(ArchiveState::default).replayed = Some(id);
        return Ok(Some(id));
    }
    let id = next_archive_id(state);
    let entry = ArchiveEntry {
        user: state.user().to_string(),
        message: ArchivedMessage { id, with: peer.bare().to_string(), stanza: stanza.bytes.to_vec() },
    };
    let Some(writer) = state.services().archive_writer.as_ref() else { return Ok(None) };
    match writer.submit(entry, current_hold()).await {
        Ok(()) => {
            // What the user sent is replayed only to a new actor, which starts from the store.
            let archive = state.ext.get_or_insert_with(ArchiveState::default);
            if !outbound {
                archive.received = Some(id);
            }
            if let (Some((content, by)), Some(recent), false) = (replay, archive.recent.as_mut(), outbound) {
                recent.remember(content, by, id);
            }
            Ok(Some(id))
        }
        Err(_) => {
            state.services().metrics.archive_refused.inc();
            Err(NotArchived::Busy)
        }
    }
}

/// A message one of the user's resources sent: archived before it is routed; refused (the sender
/// gets an error) when the archive cannot take it or the user's daily allowance is spent.
async fn archive_outbound(state: &mut UserState, stanza: Stanza, received: Instant) -> Flow {
    let Some(peer) = stanza.to.clone() else { return Flow::Continue(stanza) };
    match archive(state, &stanza, &peer, true, received).await {
        Ok(Some(archive_id)) => {
            if let Some(id) = stanza.id.as_deref() {
                state.ext.get_or_insert_with(ArchiveState::default).sent_lately.remember(peer, id, archive_id, Instant::now());
            }
        }
        Ok(None) => {}
        Err(NotArchived::OverAllowance) => {
            let error = StanzaError::new(StanzaErrorCondition::ResourceConstraint).with_text("Today's allowance of messages is used up: send again later.");
            state.reply_stanza_error(&stanza, &peer, &error);
            return Flow::Stop;
        }
        Err(NotArchived::Busy) => {
            let me = state.user().clone();
            state.reply_error(&stanza, &me, StanzaErrorCondition::ResourceConstraint);
            return Flow::Stop;
        }
    }
    Flow::Continue(stanza)
}

/// A message for the user: archived, and stamped with its archive id (XEP-0359) for delivery and
/// offline storage, so a client can match the live copy with the archived one. Any stanza-id
/// claiming to be from this archive is removed first (XEP-0359 §5). Refused (the sender gets an
/// error) when the archive cannot take it or the user's daily allowance is spent. An error may
/// refuse a message the user sent: that one leaves the user's archive.
async fn archive_inbound(state: &mut UserState, stanza: Stanza, received: Instant) -> Flow {
    let stanza = strip_forged_stanza_ids(state.user(), stanza);
    if stanza.is_error() {
        refusals::withdraw_refused_sent(state, &stanza).await;
        return Flow::Continue(stanza);
    }
    let peer = stanza.from.clone();
    match archive(state, &stanza, &peer, false, received).await {
        Ok(None) => Flow::Continue(stanza),
        Ok(Some(id)) => {
            Flow::Continue(stanza.with_appended_child(&stanza_id(state.user(), id)))
        }
        Err(refused) => {
            let me = stanza.to.clone().unwrap_or_else(|| state.user().clone());
            let error = match refused {
                NotArchived::OverAllowance => StanzaError::new(StanzaErrorCondition::ResourceConstraint).with_text("The recipient takes no more messages today."),
                NotArchived::Busy => StanzaError::new(StanzaErrorCondition::ResourceConstraint),
            };
            state.reply_stanza_error(&stanza, &me, &error);
            Flow::Stop
        }
    }
}

fn strip_forged_stanza_ids(user: &Jid, stanza: Stanza) -> Stanza {
    if !stanza.mentions(ns::STANZA_ID) {
        return stanza;
    }
    let Ok(mut element) = stanza.element() else { return stanza };
    let before = element.children().count();
    element.remove_children(|c| c.is("stanza-id", ns::STANZA_ID) && c.attr("by").is_some_and(|by| user.is_written_as(by)));
    if element.children().count() == before {
        return stanza;
    }
    Stanza::from_element(&element).unwrap_or(stanza)
}

/// An IQ of `urn:xmpp:mam:2` from one of the user's own resources, to the user's archive.
async fn mam_iq(state: &mut UserState, iq: Iq) {
    let get = iq.is_get();
    match iq.payload.name() {
        "query" if get => state.reply(&iq, Some(MamQuery::form_template().into())),
        "query" => mam_query(state, &iq).await,
        "prefs" if get => {
            let prefs = archive_prefs(state).await;
            state.reply(&iq, Some(prefs_payload(&prefs).into()));
        }
        "prefs" => match parse_prefs(&iq.payload) {
            Ok(prefs) => match state.services().store.archive.set_prefs(state.user().as_str(), prefs.clone()).await {
                Ok(()) => {
                    let reply = Element::from(prefs_payload(&prefs));
                    state.ext.get_or_insert_with(ArchiveState::default).prefs = Some(prefs);
                    state.reply(&iq, Some(reply));
                }
                Err(error) => state.refuse_for_store(&iq, error),
            },
            Err(condition) => state.refuse(&iq, condition),
        },
        "metadata" if get => mam_metadata(state, &iq).await,
        _ => state.refuse(&iq, StanzaErrorCondition::FeatureNotImplemented),
    }
}

/// Why an archive query got no page.
pub(crate) enum QueryRefused {
    /// A protocol error, for the requester.
    Refused(StanzaErrorCondition),
    Store(StoreError),
}

/// One query of the archive of `archive` (a user's or a room's bare JID) from `to`: the result
/// messages, in the order to send them, and the `<fin/>` that ends them.
pub(crate) async fn answer_query(services: &Services, archive: &Jid, payload: &Element, to: &Jid) -> Result<(Vec<Bytes>, MamFin), QueryRefused> {
    if payload.attr("node").is_some() {
        // Pubsub node archives (XEP-0442) are not served here.
        return Err(QueryRefused::Refused(StanzaErrorCondition::FeatureNotImplemented));
    }
    let query = parse_query(payload, &services.config.archive).map_err(QueryRefused::Refused)?;
    // Read-your-writes: what was queued must be stored before the query reads. If the store is
    // too far behind, answer anyway and say the result may change (§4.3.2).
    let stable = match services.archive_writer.as_ref() {
        Some(writer) => writer.flush().await.is_ok(),
        None => true,
    };
    let page = match run_query(services.store.archive.as_ref(), archive.as_str(), &query).await {
        Ok(Ok(page)) => page,
        Ok(Err(condition)) => return Err(QueryRefused::Refused(condition)),
        Err(error) => return Err(QueryRefused::Store(error)),
    };
    services.metrics.mam_queries.inc();
    let query_id = payload.attr("queryid");
    let order: Box<dyn Iterator<Item = &ArchivedMessage>> =
        if query.flip { Box::new(page.messages.iter().rev()) } else { Box::new(page.messages.iter()) };
    let results = order.map(|message| result_message(to, archive, query_id, message)).collect();
    let set = match (page.messages.first(), page.messages.last()) {
        (Some(first), Some(last)) => {
            RsmSet { first: Some(RsmFirst { id: first.id.to_string(), index: None }), last: Some(last.id.to_string()), ..RsmSet::default() }
        }
        _ => RsmSet { count: page.complete.then_some(0), ..RsmSet::default() },
    };
    Ok((results, MamFin { complete: page.complete, stable, set }))
}

async fn mam_query(state: &mut UserState, iq: &Iq) {
    let Some(resource) = iq.resource.clone() else { return };
    let me = state.user().clone();
    let (results, fin) = match answer_query(state.services(), &me, &iq.payload, &resource).await {
        Ok(answer) => answer,
        Err(QueryRefused::Refused(condition)) => return state.refuse(iq, condition),
        Err(QueryRefused::Store(error)) => return state.refuse_for_store(iq, error),
    };
    let Some(index) = state.resource_index(&resource) else { return };
    for message in results {
        if state.send_to(index, StanzaKind::Message, message).is_err() {
            return;
        }
    }
    state.reply(iq, Some(fin.into()));
}

/// Archive metadata (§5): the first and last message.
async fn mam_metadata(state: &mut UserState, iq: &Iq) {
    let user = state.user().as_str();
    let ends = async {
        let archive = &state.services().store.archive;
        let oldest = archive.query(user, &ArchiveQuery { limit: 1, ..ArchiveQuery::default() }).await?;
        let newest = archive.query(user, &ArchiveQuery { limit: 1, from_newest: true, ..ArchiveQuery::default() }).await?;
        Ok::<_, StoreError>((oldest.messages.into_iter().next(), newest.messages.into_iter().next()))
    };
    match ends.await {
        Ok((oldest, newest)) => {
            let end = |message: Option<ArchivedMessage>| message.map(|m| ArchiveEnd::at(m.id.to_string(), m.id));
            let metadata = MamMetadata { start: end(oldest), end: end(newest) };
            state.reply(iq, Some(metadata.into()));
        }
        Err(error) => state.refuse_for_store(iq, error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(xml: &str) -> Stanza {
        Stanza::from_element(&Element::parse(xml.as_bytes()).expect("xml")).expect("stanza")
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

}
