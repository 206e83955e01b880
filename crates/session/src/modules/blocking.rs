//! XEP-0191 blocking: the user's blocklist, its pushes, and the checks on both directions. Other
//! modules ask through [`is_blocked`] and [`outbound_blocked`].

use std::collections::HashSet;
use std::time::Instant;

use starling_cluster::store::{AbuseReport, StoreError};
use starling_protocol::payload::reporting::{reports_in, Report};
use starling_protocol::payload::{Block, Blocklist as BlocklistPayload, Unblock};
use starling_protocol::{ns, Jid, PayloadError, Stanza, StanzaError, StanzaErrorCondition, StanzaKind};
use starling_xml::Element;

use super::roster::{self, has_from};
use crate::iq::{Iq, IqTo};
use crate::registry::{Flow, Hook, Registrar};
use crate::state::UserState;

pub(super) fn register(r: &mut Registrar) {
    r.iq(IqTo::OwnAccount, ns::BLOCKING, "blocklist", |state, iq| Box::pin(blocking_iq(state, iq)));
    r.iq(IqTo::OwnAccount, ns::BLOCKING, "block", |state, iq| Box::pin(blocking_iq(state, iq)));
    r.iq(IqTo::OwnAccount, ns::BLOCKING, "unblock", |state, iq| Box::pin(blocking_iq(state, iq)));
    // Directed presence is checked by the presence module itself.
    r.outbound(&[StanzaKind::Message, StanzaKind::Iq], 10, Hook::Later(|state, _, stanza, _| Box::pin(refuse_outbound(state, stanza))));
    r.inbound(&[StanzaKind::Message, StanzaKind::Presence, StanzaKind::Iq], 10, Hook::Later(|state, stanza, _| Box::pin(refuse_inbound(state, stanza))));
    r.server_feature(ns::BLOCKING);
    r.server_feature(ns::REPORTING);
}

/// The blocklist of the user, loaded on first use.
#[derive(Default)]
struct Blocklist(HashSet<String>);

/// On a resource: it asked for the blocklist, so it gets blocklist pushes (§3.1).
struct WantsBlocklist;

async fn blocklist(state: &mut UserState) -> &HashSet<String> {
    if state.ext.get::<Blocklist>().is_none() {
        let list = match state.services().store.blocklists.list(state.user().as_str()).await {
            Ok(list) => list,
            Err(error) => {
                tracing::warn!(user = %state.user(), %error, "could not load blocklist");
                Vec::new()
            }
        };
        state.ext.insert(Blocklist(list.into_iter().collect()));
    }
    &state.ext.get_or_insert_with(Blocklist::default).0
}

/// Whether `jid` matches a blocked item: the full JID, the bare JID or the domain (§3.3 with
/// RFC 6121 §2.1 matching).
pub(crate) async fn is_blocked(state: &mut UserState, jid: &Jid) -> bool {
    let list = blocklist(state).await;
    if list.is_empty() {
        return false;
    }
    list.contains(jid.as_str()) || list.contains(jid.bare().as_str()) || list.contains(jid.domain())
}

/// A stanza the user sends to a blocked entity is refused with `not-acceptable` + `<blocked/>`
/// (§3.5); presence is dropped silently. Whether it was.
pub(crate) async fn outbound_blocked(state: &mut UserState, stanza: &Stanza) -> bool {
    let Some(to) = stanza.to.clone() else { return false };
    if !is_blocked(state, &to).await {
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
        state.route(reply, Instant::now());
    }
    true
}

async fn refuse_outbound(state: &mut UserState, stanza: Stanza) -> Flow {
    if outbound_blocked(state, &stanza).await { Flow::Stop } else { Flow::Continue(stanza) }
}

/// §3.4: nothing from a blocked entity is delivered; requests get an error.
async fn refuse_inbound(state: &mut UserState, stanza: Stanza) -> Flow {
    if stanza.from.bare() == *state.user() || !is_blocked(state, &stanza.from).await {
        return Flow::Continue(stanza);
    }
    if stanza.kind != StanzaKind::Presence {
        let me = stanza.to.clone().unwrap_or_else(|| state.user().clone());
        state.reply_error(&stanza, &me, StanzaErrorCondition::ServiceUnavailable);
    }
    Flow::Stop
}

async fn blocking_iq(state: &mut UserState, iq: Iq) {
    let payload = &iq.payload;
    match (iq.stanza.stanza_type.as_deref(), payload.name()) {
        (Some("get"), "blocklist") => {
            let mut items: Vec<Jid> = blocklist(state).await.iter().filter_map(|jid| Jid::new(jid).ok()).collect();
            items.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            if let Some(index) = iq.resource.as_ref().and_then(|resource| state.resource_index(resource)) {
                state.resource_mut(index).ext.insert(WantsBlocklist);
            }
            state.reply(&iq, Some(BlocklistPayload { items }.into()));
        }
        (Some("set"), "block" | "unblock") => {
            let blocking = payload.name() == "block";
            let items: Result<Vec<Jid>, PayloadError> =
                if blocking { Block::try_from(payload).map(|block| block.items) } else { Unblock::try_from(payload).map(|unblock| unblock.items) };
            let jids: Vec<String> = match items {
                Ok(items) => items.iter().map(Jid::to_string).collect(),
                Err(error) => return state.refuse(&iq, error.condition()),
            };
            let reports = if blocking { reports_in(payload) } else { Ok(Vec::new()) };
            let reports = match reports {
                Ok(reports) => reports,
                Err(error) => return state.refuse(&iq, error.condition()),
            };
            // XEP-0377: the reports are kept before the block, so a block never stands without
            // the report the user made with it.
            if let Err(error) = keep_reports(state, reports).await {
                return state.refuse_for_store(&iq, error);
            }
            let store = state.services().store.blocklists.clone();
            let user = state.user().as_str();
            let result = match (blocking, jids.is_empty()) {
                (true, _) => store.add(user, &jids).await,
                (false, true) => store.clear(user).await,
                (false, false) => store.remove(user, &jids).await,
            };
            if let Err(error) = result {
                return state.refuse_for_store(&iq, error);
            }
            state.ext.remove::<Blocklist>();
            state.reply(&iq, None);
            if blocking {
                // §3.3: a blocked contact that could see the user now sees it go unavailable.
                for jid in jids.iter().filter_map(|j| Jid::new(j).ok()) {
                    if has_from(roster::subscription(state, &jid.bare()).await) {
                        state.send_unavailable_to(&jid);
                    }
                }
            }
            // §3.2/§3.3: every resource that asked for the blocklist learns of the change.
            state.push_to(|resource| resource.ext.get::<WantsBlocklist>().is_some(), iq.payload.clone());
        }
        _ => state.refuse(&iq, StanzaErrorCondition::BadRequest),
    }
}

/// Stores the user's XEP-0377 reports for the moderators (`starling reports`).
async fn keep_reports(state: &UserState, reports: Vec<Report>) -> Result<(), StoreError> {
    let at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64);
    for Report { jid, reason, text, stanza_ids } in reports {
        let report = AbuseReport { at_ms, reporter: state.user().to_string(), reported: jid.bare().to_string(), reason, text, stanza_ids };
        tracing::info!(reporter = %report.reporter, reported = %report.reported, reason = %report.reason, "abuse reported (XEP-0377)");
        state.services().store.abuse_reports.add(&report).await?;
    }
    Ok(())
}
