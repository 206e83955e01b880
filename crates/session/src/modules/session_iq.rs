//! The legacy session-establishment IQ (RFC 3921 §3), which the edge advertises as optional: old
//! clients still send it after binding and must get a result.

use starling_protocol::{ns, StanzaErrorCondition};

use crate::iq::{Iq, IqTo};
use crate::registry::Registrar;
use crate::state::UserState;

pub(super) fn register(r: &mut Registrar) {
    for to in [IqTo::Server, IqTo::OwnAccount] {
        r.iq(to, ns::SESSION, "session", |state, iq| Box::pin(async move { establish(state, iq) }));
    }
}

fn establish(state: &mut UserState, iq: Iq) {
    if iq.is_get() { state.refuse(&iq, StanzaErrorCondition::ServiceUnavailable) } else { state.reply(&iq, None) }
}
