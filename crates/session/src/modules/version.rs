//! XEP-0092 software version of the server.

use starling_protocol::payload::SoftwareVersion;
use starling_protocol::{ns, StanzaErrorCondition};

use crate::iq::{Iq, IqTo};
use crate::registry::Registrar;
use crate::state::UserState;

pub(super) fn register(r: &mut Registrar) {
    r.iq(IqTo::Server, ns::VERSION, "query", |state, iq| Box::pin(async move { version(state, iq) }));
    r.server_feature(ns::VERSION);
}

fn version(state: &mut UserState, iq: Iq) {
    if !iq.is_get() {
        return state.refuse(&iq, StanzaErrorCondition::ServiceUnavailable);
    }
    let version = SoftwareVersion { name: "Starling".into(), version: env!("CARGO_PKG_VERSION").into(), os: None };
    state.reply(&iq, Some(version.into()));
}
