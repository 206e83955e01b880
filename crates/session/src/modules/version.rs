//! XEP-0092 software version of the server.

use starling_protocol::{ns, StanzaErrorCondition};
use starling_xml::Element;

use crate::registry::{Iq, IqTo, Registrar};
use crate::state::UserState;

pub(super) fn register(r: &mut Registrar) {
    r.iq(IqTo::Server, ns::VERSION, "query", |state, iq| Box::pin(async move { version(state, iq) }));
    r.server_feature(ns::VERSION);
}

fn version(state: &mut UserState, iq: Iq) {
    if !iq.is_get() {
        return state.refuse(&iq, StanzaErrorCondition::ServiceUnavailable);
    }
    let query = Element::new("query", ns::VERSION)
        .with_child(Element::new("name", ns::VERSION).with_text("Starling"))
        .with_child(Element::new("version", ns::VERSION).with_text(env!("CARGO_PKG_VERSION")));
    state.reply(&iq, Some(query));
}
