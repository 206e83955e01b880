//! XEP-0049 private XML storage: one child in a namespace of the client's choosing, stored under
//! name + namespace, reachable by the account's owner only.

use starling_protocol::{ns, StanzaErrorCondition};
use starling_xml::Element;

use crate::registry::{Iq, IqTo, Registrar};
use crate::state::UserState;

pub(super) fn register(r: &mut Registrar) {
    r.iq(IqTo::OwnAccount, ns::PRIVATE, "query", |state, iq| Box::pin(private_iq(state, iq)));
    r.server_feature(ns::PRIVATE);
}

async fn private_iq(state: &mut UserState, iq: Iq) {
    let mut children = iq.payload.children();
    let (Some(item), None) = (children.next(), children.next()) else {
        return state.refuse(&iq, StanzaErrorCondition::NotAcceptable);
    };
    // §3: the jabber:* namespaces are reserved and may not be used for storage.
    if item.ns().is_empty() || item.ns().starts_with("jabber:") {
        return state.refuse(&iq, StanzaErrorCondition::NotAcceptable);
    }
    let key = format!("{}|{}", item.name(), item.ns());
    let store = state.services().store.private_xml.clone();
    let user = state.user().as_str();
    if iq.is_get() {
        match store.get(user, &key).await {
            Ok(stored) => {
                let found = stored.and_then(|bytes| Element::parse(&bytes).ok()).unwrap_or_else(|| item.clone());
                state.reply(&iq, Some(Element::new("query", ns::PRIVATE).with_child(found)));
            }
            Err(error) => state.refuse_for_store(&iq, error),
        }
    } else {
        match store.set(user, &key, item.to_bytes()).await {
            Ok(()) => state.reply(&iq, None),
            Err(error) => state.refuse_for_store(&iq, error),
        }
    }
}
