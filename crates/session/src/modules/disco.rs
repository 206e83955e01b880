//! XEP-0030 service discovery for the server and for every account, answered from what the
//! modules registered, and the XEP-0115 verification string computed from the same lists — so
//! disco and caps can never disagree.

use starling_protocol::payload::{DiscoInfoResult, DiscoItem, DiscoItemsResult, Identity};
use starling_protocol::{ns, Jid, StanzaErrorCondition};

use crate::context::Advertised;
use crate::iq::{Iq, IqTo};
use crate::registry::Registrar;
use crate::state::UserState;

/// The XEP-0115 node the server's caps name.
pub(crate) const CAPS_NODE: &str = "https://github.com/starling-xmpp/starling";

pub(super) fn register(r: &mut Registrar) {
    r.iq(IqTo::Server, ns::DISCO_INFO, "query", |state, iq| Box::pin(async move { server_info(state, iq) }));
    r.iq(IqTo::Server, ns::DISCO_ITEMS, "query", |state, iq| Box::pin(async move { server_items(state, iq) }));
    r.iq(IqTo::Account, ns::DISCO_INFO, "query", |state, iq| Box::pin(async move { account_info(state, iq) }));
    r.iq(IqTo::Account, ns::DISCO_ITEMS, "query", |state, iq| Box::pin(async move { account_items(state, iq) }));
    r.server_identity(Identity::new("server", "im", Some("Starling")));
    r.account_identity(Identity::new("account", "registered", None));
    for feature in [ns::DISCO_INFO, ns::DISCO_ITEMS] {
        r.server_feature(feature);
        r.account_feature(feature);
    }
    for domain in r.config.edge_service_domains.clone() {
        r.service_domain(domain);
    }
}

/// XEP-0115 §5.1 verification string of the server's identities and features.
pub(crate) fn caps_ver(advertised: &Advertised) -> String {
    advertised.server.caps_ver()
}

fn server_info(state: &mut UserState, iq: Iq) {
    if !iq.is_get() {
        return state.refuse(&iq, StanzaErrorCondition::ServiceUnavailable);
    }
    let advertised = &state.services().advertised;
    // XEP-0115 §6.2: the node the caps point at is answered like the server itself.
    let node = iq.payload.attr("node").map(str::to_owned);
    if node.as_ref().is_some_and(|node| *node != format!("{CAPS_NODE}#{}", caps_ver(advertised))) {
        return state.refuse(&iq, StanzaErrorCondition::ItemNotFound);
    }
    let answer = DiscoInfoResult { node, ..advertised.server.clone() };
    state.reply(&iq, Some(answer.into()));
}

/// The local services (`conference.DOMAIN` …).
fn server_items(state: &mut UserState, iq: Iq) {
    if !iq.is_get() {
        return state.refuse(&iq, StanzaErrorCondition::ServiceUnavailable);
    }
    if iq.payload.attr("node") == Some(super::admin::COMMANDS) {
        return super::admin::command_items(state, &iq);
    }
    let items = server_items_of(&state.services().advertised, state.domain());
    state.reply(&iq, Some(items.into()));
}

/// A served domain's disco#items: its local services (also what anyone else asking gets,
/// through the router).
pub(crate) fn server_items_of(advertised: &Advertised, domain: &Jid) -> DiscoItemsResult {
    let items = advertised.services_of(domain).map(|service| DiscoItem { jid: service.clone(), node: None, name: None }).collect();
    DiscoItemsResult { node: None, items, rsm: None }
}

fn account_info(state: &mut UserState, iq: Iq) {
    if !iq.is_get() || iq.payload.attr("node").is_some() {
        return state.refuse(&iq, StanzaErrorCondition::ServiceUnavailable);
    }
    let answer = state.services().advertised.account.clone();
    state.reply(&iq, Some(answer.into()));
}

fn account_items(state: &mut UserState, iq: Iq) {
    if !iq.is_get() {
        return state.refuse(&iq, StanzaErrorCondition::ServiceUnavailable);
    }
    state.reply(&iq, Some(DiscoItemsResult::default().into()));
}
