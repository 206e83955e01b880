//! XEP-0352 client state indication: `<active/>` and `<inactive/>` on a bound stream go to the
//! session, which holds what can wait while the client is inactive. Advertised with
//! `<csi xmlns='urn:xmpp:csi:0'/>`.

use std::sync::Arc;

use async_trait::async_trait;
use starling_protocol::{ns, StreamError};
use starling_xml::{Element, RawElement};

use crate::nonza::{BoundStream, NonzaHandler, NonzaHandlers};

struct ClientStateIndication;

pub(crate) fn register(handlers: &mut NonzaHandlers) {
    let handler: Arc<dyn NonzaHandler> = Arc::new(ClientStateIndication);
    handlers.register(ns::CSI, "active", handler.clone()).register(ns::CSI, "inactive", handler);
}

#[async_trait]
impl NonzaHandler for ClientStateIndication {
    async fn handle(&self, nonza: &RawElement, stream: &mut BoundStream<'_>) -> Result<Option<Element>, StreamError> {
        // A session that is gone ends the stream at the client's next stanza, as without CSI.
        let _ = stream.session.set_client_state(nonza.name == "active").await;
        Ok(None)
    }

    fn feature(&self) -> Option<Element> {
        Some(Element::new("csi", ns::CSI))
    }
}
