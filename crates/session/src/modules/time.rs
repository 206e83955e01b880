//! XEP-0202 entity time: the server's clock, in UTC.

use starling_protocol::StanzaErrorCondition;
use starling_xml::Element;

use crate::datetime;
use crate::registry::{Iq, IqTo, Registrar};
use crate::state::UserState;

/// XEP-0202 §3.
const NS_TIME: &str = "urn:xmpp:time";

pub(super) fn register(r: &mut Registrar) {
    r.iq(IqTo::Server, NS_TIME, "time", |state, iq| Box::pin(async move { time(state, iq) }));
    r.server_feature(NS_TIME);
}

fn time(state: &mut UserState, iq: Iq) {
    if !iq.is_get() {
        return state.refuse(&iq, StanzaErrorCondition::BadRequest);
    }
    // The server keeps UTC; whole seconds are what clients show.
    let utc = datetime::format(datetime::now_micros() / 1_000_000 * 1_000_000);
    let time = Element::new("time", NS_TIME)
        .with_child(Element::new("tzo", NS_TIME).with_text("+00:00"))
        .with_child(Element::new("utc", NS_TIME).with_text(utc));
    state.reply(&iq, Some(time));
}
