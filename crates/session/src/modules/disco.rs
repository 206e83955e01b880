//! XEP-0030 service discovery for the server and for every account, answered from what the
//! modules registered, and the XEP-0115 verification string computed from the same lists — so
//! disco and caps can never disagree.

use base64::Engine;
use sha1::{Digest, Sha1};
use starling_protocol::{ns, StanzaErrorCondition};
use starling_xml::Element;

use crate::context::{Advertised, Identity};
use crate::registry::{Iq, IqTo, Registrar};
use crate::state::UserState;

/// The XEP-0115 node the server's caps name.
pub(crate) const CAPS_NODE: &str = "https://github.com/starling-xmpp/starling";

pub(super) fn register(r: &mut Registrar) {
    r.iq(IqTo::Server, ns::DISCO_INFO, "query", |state, iq| Box::pin(async move { server_info(state, iq) }));
    r.iq(IqTo::Server, ns::DISCO_ITEMS, "query", |state, iq| Box::pin(async move { server_items(state, iq) }));
    r.iq(IqTo::Account, ns::DISCO_INFO, "query", |state, iq| Box::pin(async move { account_info(state, iq) }));
    r.iq(IqTo::Account, ns::DISCO_ITEMS, "query", |state, iq| Box::pin(async move { account_items(state, iq) }));
    r.server_identity(Identity { category: "server", kind: "im", name: Some("Starling") });
    r.account_identity(Identity { category: "account", kind: "registered", name: None });
    for feature in [ns::DISCO_INFO, ns::DISCO_ITEMS] {
        r.server_feature(feature);
        r.account_feature(feature);
    }
}

/// XEP-0115 §5.1 verification string over the server's identities and features.
pub(crate) fn caps_ver(advertised: &Advertised) -> String {
    let mut identities: Vec<String> = advertised
        .server_identities
        .iter()
        .map(|identity| format!("{}/{}//{}<", identity.category, identity.kind, identity.name.unwrap_or_default()))
        .collect();
    identities.sort();
    let mut input = identities.concat();
    for feature in &advertised.server_features {
        input.push_str(feature);
        input.push('<');
    }
    base64::engine::general_purpose::STANDARD.encode(Sha1::digest(input.as_bytes()))
}

fn info(identities: &[Identity], features: &[&str]) -> Element {
    let mut info = Element::new("query", ns::DISCO_INFO);
    for identity in identities {
        let mut element = Element::new("identity", ns::DISCO_INFO).with_attr("category", identity.category).with_attr("type", identity.kind);
        if let Some(name) = identity.name {
            element.set_attr("name", name);
        }
        info.push_child(element);
    }
    for feature in features {
        info.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", *feature));
    }
    info
}

fn server_info(state: &mut UserState, iq: Iq) {
    if !iq.is_get() {
        return state.refuse(&iq, StanzaErrorCondition::ServiceUnavailable);
    }
    let advertised = &state.services().advertised;
    let mut answer = info(&advertised.server_identities, &advertised.server_features);
    // XEP-0115 §6.2: the node the caps point at is answered like the server itself.
    if let Some(node) = iq.payload.attr("node") {
        if node != format!("{CAPS_NODE}#{}", caps_ver(advertised)) {
            return state.refuse(&iq, StanzaErrorCondition::ItemNotFound);
        }
        answer.set_attr("node", node);
    }
    state.reply(&iq, Some(answer));
}

/// The local services (`conference.DOMAIN` …).
fn server_items(state: &mut UserState, iq: Iq) {
    if !iq.is_get() {
        return state.refuse(&iq, StanzaErrorCondition::ServiceUnavailable);
    }
    let mut items = Element::new("query", ns::DISCO_ITEMS);
    for domain in &state.services().advertised.service_domains {
        items.push_child(Element::new("item", ns::DISCO_ITEMS).with_attr("jid", domain.as_str()));
    }
    state.reply(&iq, Some(items));
}

fn account_info(state: &mut UserState, iq: Iq) {
    if !iq.is_get() || iq.payload.attr("node").is_some() {
        return state.refuse(&iq, StanzaErrorCondition::ServiceUnavailable);
    }
    let advertised = &state.services().advertised;
    let answer = info(&advertised.account_identities, &advertised.account_features);
    state.reply(&iq, Some(answer));
}

fn account_items(state: &mut UserState, iq: Iq) {
    if !iq.is_get() {
        return state.refuse(&iq, StanzaErrorCondition::ServiceUnavailable);
    }
    state.reply(&iq, Some(Element::new("query", ns::DISCO_ITEMS)));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XEP-0115 §5.2's worked example, through the same hashing steps.
    #[test]
    fn hashes_like_the_xep_example() {
        let advertised = Advertised {
            server_identities: vec![Identity { category: "client", kind: "pc", name: Some("Exodus 0.9.1") }],
            server_features: vec![
                "http://jabber.org/protocol/caps",
                "http://jabber.org/protocol/disco#info",
                "http://jabber.org/protocol/disco#items",
                "http://jabber.org/protocol/muc",
            ],
            ..Advertised::default()
        };
        assert_eq!(caps_ver(&advertised), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }
}
