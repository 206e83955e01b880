//! XEP-0054 vCard-temp: the account's vCard, set by its owner and read by anyone. Its photo is
//! the account's PEP avatar too (XEP-0398, `pep::avatars`).

use starling_protocol::{ns, StanzaErrorCondition};
use starling_xml::Element;

use crate::iq::{Iq, IqTo};
use crate::registry::Registrar;
use crate::state::UserState;

pub(super) fn register(r: &mut Registrar) {
    r.iq(IqTo::OwnAccount, ns::VCARD, "vCard", |state, iq| Box::pin(vcard(state, iq)));
    r.iq(IqTo::Account, ns::VCARD, "vCard", |state, iq| Box::pin(vcard(state, iq)));
    r.server_feature(ns::VCARD);
}

async fn vcard(state: &mut UserState, iq: Iq) {
    let store = state.services().store.vcards.clone();
    let user = state.user().as_str();
    if iq.is_get() {
        match store.get(user).await {
            Ok(stored) => {
                let vcard = stored.and_then(|bytes| Element::parse(&bytes).ok()).unwrap_or_else(|| Element::new("vCard", ns::VCARD));
                state.reply(&iq, Some(vcard));
            }
            Err(error) => state.refuse_for_store(&iq, error),
        }
    } else if iq.to == IqTo::OwnAccount {
        match store.set(user, iq.payload.to_bytes()).await {
            Ok(()) => {
                state.reply(&iq, None);
                if state.services().config.pep.enabled {
                    super::pep::avatars::from_vcard(state, &iq.payload).await;
                }
            }
            Err(error) => state.refuse_for_store(&iq, error),
        }
    } else {
        // Only the owner changes its vCard.
        state.refuse(&iq, StanzaErrorCondition::ServiceUnavailable);
    }
}
