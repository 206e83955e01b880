//! Nonzas on a bound stream: top-level elements that are not `jabber:client` stanzas, such as
//! client state indication's `<active/>`/`<inactive/>` (XEP-0352). A feature registers a handler
//! per (namespace, element name) when the edge is built; the bound loop hands each nonza to its
//! handler, and ends the stream with `unsupported-stanza-type` when there is none. Stream
//! management (XEP-0198) is not one of them: it counts the stream's stanzas, so it is part of the
//! bound loop itself (`bound::sm`).

use std::sync::Arc;

use async_trait::async_trait;
use starling_cluster::gateway::BoundSession;
use starling_protocol::{Jid, StreamError};
use starling_xml::{Element, RawElement};

/// Handles nonzas of one or more kinds, for every bound stream.
#[async_trait]
pub trait NonzaHandler: Send + Sync + 'static {
    /// Handles `nonza`, sent on `stream`. `Ok(Some(answer))` is written to the client, after
    /// what the session layer already queued to it; an error ends the stream with it.
    async fn handle(&self, nonza: &RawElement, stream: &mut BoundStream<'_>) -> Result<Option<Element>, StreamError>;

    /// The stream feature that tells clients about these nonzas, offered after authentication.
    fn feature(&self) -> Option<Element> {
        None
    }
}

/// The bound stream a nonza arrived on, as a handler sees it. Non-exhaustive: what later
/// handlers need joins here without breaking earlier ones.
#[non_exhaustive]
pub struct BoundStream<'a> {
    /// The full JID bound on the stream.
    pub jid: &'a Jid,
    /// Its session, for handlers that tell it something (client state indication).
    pub session: &'a mut dyn BoundSession,
}

/// The handlers, by the namespace and name of the element each takes.
#[derive(Default)]
pub struct NonzaHandlers {
    // A list rather than a map: a handful of entries, looked up by borrowed names.
    handlers: Vec<(&'static str, &'static str, Arc<dyn NonzaHandler>)>,
}

impl NonzaHandlers {
    pub fn new() -> NonzaHandlers {
        NonzaHandlers::default()
    }

    /// Hands `<name xmlns='ns'/>` to `handler`, replacing any handler registered for it before.
    pub fn register(&mut self, ns: &'static str, name: &'static str, handler: Arc<dyn NonzaHandler>) -> &mut NonzaHandlers {
        self.handlers.retain(|(registered_ns, registered_name, _)| (*registered_ns, *registered_name) != (ns, name));
        self.handlers.push((ns, name, handler));
        self
    }

    /// The stream features of the registered handlers, each once.
    pub(crate) fn features(&self) -> Vec<Element> {
        let mut features: Vec<Element> = Vec::new();
        for (_, _, handler) in &self.handlers {
            if let Some(feature) = handler.feature()
                && !features.contains(&feature)
            {
                features.push(feature);
            }
        }
        features
    }

    /// The handler for `<name xmlns='ns'/>`, if one is registered.
    pub(crate) fn find(&self, ns: &str, name: &str) -> Option<&dyn NonzaHandler> {
        self.handlers.iter().find(|(registered_ns, registered_name, _)| *registered_ns == ns && *registered_name == name).map(|(_, _, handler)| handler.as_ref())
    }
}
