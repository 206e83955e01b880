//! XEP-0049 private XML storage: one child in a namespace of the client's choosing, stored under
//! name + namespace, reachable by the account's owner only. Bookmarks stored here (XEP-0048) are
//! kept in step with the XEP-0402 PEP node (`pep::bookmarks`).

use starling_protocol::payload::PrivateQuery;
use starling_protocol::{ns, StanzaErrorCondition};
use starling_xml::Element;

use crate::iq::{Iq, IqTo};
use crate::registry::Registrar;
use crate::state::UserState;

pub(super) fn register(r: &mut Registrar) {
    r.iq(IqTo::OwnAccount, ns::PRIVATE, "query", |state, iq| Box::pin(private_iq(state, iq)));
    r.server_feature(ns::PRIVATE);
}

async fn private_iq(state: &mut UserState, iq: Iq) {
    let query = match PrivateQuery::try_from(&iq.payload) {
        Ok(query) => query,
        Err(error) => return state.refuse(&iq, error.condition()),
    };
    // One child, in a namespace that is not reserved (§3), or there is nothing to store.
    let (Some((name, namespace)), Some(item)) = (query.key(), query.payload.as_ref()) else {
        return state.refuse(&iq, StanzaErrorCondition::NotAcceptable);
    };
    let key = format!("{name}|{namespace}");
    let store = state.services().store.private_xml.clone();
    let user = state.user().as_str();
    if iq.is_get() {
        match store.get(user, &key).await {
            Ok(stored) => {
                let found = stored.and_then(|bytes| Element::parse(&bytes).ok()).unwrap_or_else(|| item.clone());
                state.reply(&iq, Some(PrivateQuery { payload: Some(found) }.into()));
            }
            Err(error) => state.refuse_for_store(&iq, error),
        }
    } else {
        match store.set(user, &key, item.to_bytes()).await {
            Ok(()) => {
                state.reply(&iq, None);
                if key == super::pep::bookmarks::PRIVATE_KEY && state.services().config.pep.enabled {
                    super::pep::bookmarks::from_private(state, item).await;
                }
            }
            Err(error) => state.refuse_for_store(&iq, error),
        }
    }
}
