//! XEP-0198 stream management, the edge's half of a bound stream: it relays `<enable/>` and the
//! client's acks to the session (which counts and keeps what it sends, see the session layer's
//! `state::sm`), counts the client's stanzas as the session does, answers `<r/>` with that count,
//! and tells the writer to ask for acks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use starling_cluster::gateway::{BoundSession, ToClient};
use starling_protocol::{ns, StreamErrorCondition};
use starling_xml::{Element, RawElement};
use tokio::sync::mpsc::WeakSender;

use super::queue_to_client;
use crate::end::End;

/// Stream management on one bound stream.
pub(super) struct StreamManagement {
    /// Once enabled (or resumed): the client's stanzas handled, wrapping at 2^32.
    handled: Option<u32>,
    /// The last `h` the client acknowledged, so that a repeated `<a/>` is not relayed.
    last_ack: Option<u32>,
    /// Shared with the writer: ask the client for acks (and ask with `<r/>` instead of a ping
    /// when it is silent, since a ping would be a stanza the session did not count).
    requesting_acks: Arc<AtomicBool>,
}

impl StreamManagement {
    /// For a new stream, or one with stream management on from the start (resumed, or enabled
    /// inline by Bind2) with `handled` of the client's stanzas counted.
    pub fn new(handled: Option<u32>) -> StreamManagement {
        StreamManagement { handled, last_ack: None, requesting_acks: Arc::new(AtomicBool::new(handled.is_some())) }
    }

    pub fn is_enabled(&self) -> bool {
        self.handled.is_some()
    }

    pub fn requesting_acks(&self) -> Arc<AtomicBool> {
        self.requesting_acks.clone()
    }

    /// One of the client's stanzas was handed to the session.
    pub fn count_handled(&mut self) {
        if let Some(handled) = self.handled.as_mut() {
            *handled = handled.wrapping_add(1);
        }
    }

    /// Handles `<enable/>`, `<r/>` or `<a/>`.
    pub async fn handle(&mut self, nonza: &RawElement, session: &mut dyn BoundSession, own_end: &WeakSender<ToClient>) -> Result<(), End> {
        match (nonza.name.as_str(), self.handled) {
            ("enable", Some(_)) => answer(own_end, failed("unexpected-request")).await,
            ("enable", None) => {
                let resume = matches!(nonza.attr("resume"), Some("true" | "1"));
                let max = nonza.attr("max").and_then(|max| max.parse().ok());
                // The session queues `<enabled/>` itself, so that it is written before the
                // first stanza it counts.
                if session.enable_stream_management(resume, max).await.is_err() {
                    return answer(own_end, failed("feature-not-implemented")).await;
                }
                self.handled = Some(0);
                self.requesting_acks.store(true, Ordering::Relaxed);
                Ok(())
            }
            ("r", Some(handled)) => answer(own_end, Element::new("a", ns::SM).with_attr("h", handled.to_string())).await,
            ("a", Some(_)) => {
                let Some(h) = nonza.attr("h").and_then(|h| h.parse::<u32>().ok()) else {
                    return Err(End::error(StreamErrorCondition::BadFormat, "an ack needs h, a count from 0 to 2^32-1"));
                };
                if self.last_ack != Some(h) {
                    self.last_ack = Some(h);
                    session.acknowledge(h).await.map_err(|_| End::Gone)?;
                }
                Ok(())
            }
            _ => Err(End::error(StreamErrorCondition::UnsupportedStanzaType, "enable stream management first")),
        }
    }
}

/// `<failed/>` with a stanza error condition (XEP-0198 §3).
pub(crate) fn failed(condition: &str) -> Element {
    Element::new("failed", ns::SM).with_child(Element::new(condition, ns::STANZA_ERRORS))
}

async fn answer(own_end: &WeakSender<ToClient>, element: Element) -> Result<(), End> {
    if queue_to_client(own_end, ToClient::Stanza(Bytes::from(element.to_bytes()), None)).await { Ok(()) } else { Err(End::Gone) }
}
