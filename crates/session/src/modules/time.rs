//! XEP-0202 entity time: the server's clock, in UTC.

use starling_protocol::payload::EntityTime;
use starling_protocol::{ns, StanzaErrorCondition};

use crate::datetime;
use crate::iq::{Iq, IqTo};
use crate::registry::Registrar;
use crate::state::UserState;

pub(super) fn register(r: &mut Registrar) {
    r.iq(IqTo::Server, ns::TIME, "time", |state, iq| Box::pin(async move { time(state, iq) }));
    r.server_feature(ns::TIME);
}

fn time(state: &mut UserState, iq: Iq) {
    if !iq.is_get() {
        return state.refuse(&iq, StanzaErrorCondition::BadRequest);
    }
    // The server keeps UTC; whole seconds are what clients show.
    let time = EntityTime::new(datetime::now_micros() / 1_000_000 * 1_000_000, 0);
    state.reply(&iq, time.map(Into::into));
}
