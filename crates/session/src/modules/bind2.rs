//! XEP-0386 Bind2 inline requests for the session core's own features, stream management
//! (XEP-0198, kept in `state::sm`) and client state (XEP-0352, `state::csi`): a Bind2 client
//! asks for them in its bind and has them from the session's first stanza on.

use starling_protocol::ns;
use starling_xml::Element;

use crate::registry::Registrar;
use crate::state::UserState;

pub(super) fn register(r: &mut Registrar) {
    if r.config.sm.enabled {
        r.inline(ns::SM, enable_stream_management);
    }
    r.inline(ns::CSI, client_state);
}

/// `<enable xmlns='urn:xmpp:sm:3'/>`: answered with `<enabled/>` inside `<bound/>`.
fn enable_stream_management(state: &mut UserState, index: usize, request: &Element) -> Option<Element> {
    if request.name() != "enable" {
        return None;
    }
    let resume = matches!(request.attr("resume"), Some("true" | "1"));
    let max = request.attr("max").and_then(|max| max.parse().ok());
    Some(state.start_stream_management(index, resume, max))
}

/// `<active/>` or `<inactive/>`: the state the session starts in.
fn client_state(state: &mut UserState, index: usize, request: &Element) -> Option<Element> {
    match request.name() {
        "active" => state.set_client_state(index, true),
        "inactive" => state.set_client_state(index, false),
        _ => {}
    }
    None
}
