//! XEP-0199 ping, answered for the server and for every account.

use starling_protocol::{ns, StanzaErrorCondition};

use crate::iq::{Iq, IqTo};
use crate::registry::Registrar;
use crate::state::UserState;

pub(super) fn register(r: &mut Registrar) {
    for to in [IqTo::Server, IqTo::Account] {
        r.iq(to, ns::PING, "ping", |state, iq| Box::pin(async move { pong(state, iq) }));
    }
    r.server_feature(ns::PING);
}

fn pong(state: &mut UserState, iq: Iq) {
    if iq.is_get() { state.reply(&iq, None) } else { state.refuse(&iq, StanzaErrorCondition::ServiceUnavailable) }
}
