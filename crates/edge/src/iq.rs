//! The IQ replies the edge writes itself (registration during negotiation, the bytestreams proxy).

use starling_protocol::{ns, StanzaError};
use starling_xml::Element;

/// A `result` with `payload` (if any), or an `error`, to the request `id`.
pub(crate) fn reply(id: &str, payload: Result<Option<Element>, StanzaError>) -> Element {
    let mut iq = Element::new("iq", ns::CLIENT).with_attr("id", id);
    match payload {
        Ok(payload) => {
            iq.set_attr("type", "result");
            if let Some(payload) = payload {
                iq.push_child(payload);
            }
        }
        Err(error) => {
            iq.set_attr("type", "error");
            iq.push_child(error.to_element());
        }
    }
    iq
}
