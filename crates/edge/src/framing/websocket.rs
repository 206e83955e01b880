//! XMPP over WebSocket (RFC 7395): every WebSocket text message is one whole element. `<open/>`
//! and `<close/>` in the framing namespace stand for the stream header and its end; stanzas and
//! nonzas each declare their namespace, since no stream element declares it for them. TLS, if
//! any, is under the WebSocket (`wss:`): there is no STARTTLS, and a restart only means that the
//! next message is a new `<open/>`.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use starling_protocol::{ns, StreamError};
use starling_xml::{Element, FrameError, Limits, RawElement, StreamEvent, StreamHeader, StreamReader, NS_STREAMS};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::xml_stream::BoxedIo;
use super::{Framing, ReceiveFrames, SendFrames, LINGER_BYTES};
use crate::edge::Edge;
use crate::shaper::ReadShaper;

type Socket = WebSocketStream<BoxedIo>;

/// A connection the HTTP listener upgraded to a WebSocket with the `xmpp` subprotocol.
pub(crate) struct Upgraded {
    pub socket: Socket,
    /// `wss:` on our TLS listener, or `https:` as a trusted proxy reported it.
    pub secure: bool,
    /// The tls-exporter channel binding of our own TLS (RFC 9266), when we terminated it.
    pub channel_binding: Option<Vec<u8>>,
}

pub(crate) struct WebSocket {
    receiver: WebSocketReceiver,
    sender: WebSocketSender,
    secure: bool,
    channel_binding: Option<Vec<u8>>,
}

pub(crate) struct WebSocketReceiver {
    messages: SplitStream<Socket>,
    limits: Limits,
    /// Bytes received, pings included: the writer's liveness check reads it.
    activity: Arc<AtomicU64>,
    shaper: Option<ReadShaper>,
}

pub(crate) struct WebSocketSender {
    messages: SplitSink<Socket, Message>,
}

impl Framing for WebSocket {
    type Transport = Upgraded;
    type Receiver = WebSocketReceiver;
    type Sender = WebSocketSender;

    async fn start(upgraded: Upgraded, edge: &Edge) -> Option<WebSocket> {
        let (sink, stream) = upgraded.socket.split();
        let receiver = WebSocketReceiver {
            messages: stream,
            limits: edge.config.c2s.limits(),
            activity: Arc::default(),
            shaper: edge.config.c2s.read_shaper(),
        };
        Some(WebSocket { receiver, sender: WebSocketSender { messages: sink }, secure: upgraded.secure, channel_binding: upgraded.channel_binding })
    }

    fn receiver(&mut self) -> &mut WebSocketReceiver {
        &mut self.receiver
    }

    fn sender(&mut self) -> &mut WebSocketSender {
        &mut self.sender
    }

    fn restart(&mut self) {}

    async fn start_tls(&mut self, _edge: &Edge) -> Result<(), FrameError> {
        // Never offered (`can_start_tls`); a client asking anyway is told so.
        Err(FrameError::BadFormat("STARTTLS over a WebSocket"))
    }

    fn is_secure(&self) -> bool {
        self.secure
    }

    fn can_start_tls(&self) -> bool {
        false
    }

    fn channel_binding(&self) -> Option<&[u8]> {
        self.channel_binding.as_deref()
    }

    fn split(self) -> (WebSocketReceiver, WebSocketSender) {
        (self.receiver, self.sender)
    }
}

impl ReceiveFrames for WebSocketReceiver {
    fn shape(&mut self, shaper: Option<ReadShaper>) {
        self.shaper = shaper;
    }

    async fn next(&mut self) -> Result<StreamEvent, FrameError> {
        loop {
            if let Some(shaper) = self.shaper.as_mut() {
                shaper.wait().await;
            }
            let text = match self.messages.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Ping(payload) | Message::Pong(payload))) => {
                    self.activity.fetch_add(payload.len() as u64 + 1, Ordering::Relaxed);
                    continue;
                }
                Some(Ok(Message::Binary(_))) => return Err(FrameError::BadFormat("binary WebSocket message (RFC 7395 §3.3.1: text only)")),
                Some(Ok(Message::Close(_) | Message::Frame(_))) | None => return Err(FrameError::Closed),
                Some(Err(error)) => return Err(frame_error(error)),
            };
            self.activity.fetch_add(text.len() as u64, Ordering::Relaxed);
            if let Some(shaper) = self.shaper.as_mut() {
                shaper.charge(text.len());
            }
            // Whitespace between elements is allowed in a stream; a message of only that is the
            // nearest thing here, and some clients send it to keep proxies from timing out.
            if text.bytes().all(|byte| byte.is_ascii_whitespace()) {
                continue;
            }
            return event(read_one(text.as_bytes(), self.limits).await?);
        }
    }

    fn activity(&self) -> Arc<AtomicU64> {
        self.activity.clone()
    }

    async fn discard(&mut self) {
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            match self.messages.next().await {
                Some(Ok(message)) => discarded += message.len(),
                Some(Err(_)) | None => break,
            }
        }
    }
}

/// The one element a message holds, read with the same checks as a stream's (restricted XML,
/// depth, attributes); half an element, or more than one, is a framing error.
async fn read_one(message: &[u8], limits: Limits) -> Result<RawElement, FrameError> {
    let mut reader = StreamReader::fragment(message, limits);
    let element = match reader.next().await {
        Ok(StreamEvent::Element(element)) => element,
        Ok(_) | Err(FrameError::Closed) => return Err(FrameError::NotWellFormed("a WebSocket message must hold one whole element (RFC 7395 §3.3.1)".into())),
        Err(error) => return Err(error),
    };
    match reader.next().await {
        Err(FrameError::Closed) => Ok(element),
        Ok(_) => Err(FrameError::BadFormat("more than one element in a WebSocket message (RFC 7395 §3.3.1)")),
        Err(error) => Err(error),
    }
}

/// What an element read from a message is in stream terms.
fn event(mut element: RawElement) -> Result<StreamEvent, FrameError> {
    if element.ns == ns::FRAMING {
        return match element.name.as_str() {
            "open" => Ok(StreamEvent::Open(StreamHeader {
                to: element.attr("to").map(str::to_owned),
                from: element.attr("from").map(str::to_owned),
                id: element.attr("id").map(str::to_owned),
                version: element.attr("version").map(str::to_owned),
                lang: element.attr("xml:lang").map(str::to_owned),
                content_ns: ns::CLIENT.to_owned(),
                prefixes: Vec::new(),
            })),
            "close" => Ok(StreamEvent::Close),
            _ => Err(FrameError::BadFormat("unknown element in the framing namespace")),
        };
    }
    if element.ns.is_empty() {
        // Each element should declare its namespace; one that does not is in the only namespace
        // a client's stanzas can be in. Forwarding rewrites the start tag, which then declares it.
        element.ns = ns::CLIENT.to_owned();
    }
    Ok(StreamEvent::Element(element))
}

fn frame_error(error: WsError) -> FrameError {
    match error {
        WsError::Capacity(_) => FrameError::LimitExceeded("stanza size"),
        WsError::Utf8(_) => FrameError::NotWellFormed("a text message that is not UTF-8".into()),
        WsError::Io(error) => FrameError::Io(error),
        WsError::ConnectionClosed | WsError::AlreadyClosed => FrameError::Closed,
        // A broken WebSocket (unmasked frame, bad opcode…): tungstenite has already failed it,
        // so there is no stream left to send an error on.
        other => FrameError::Io(io::Error::other(other.to_string())),
    }
}

impl SendFrames for WebSocketSender {
    async fn open(&mut self, header: &StreamHeader) -> io::Result<()> {
        let mut open = Element::new("open", ns::FRAMING);
        let attributes = [("from", &header.from), ("id", &header.id), ("version", &header.version), ("xml:lang", &header.lang)];
        for (name, value) in attributes {
            if let Some(value) = value {
                open.set_attr(name, value.as_str());
            }
        }
        self.send_now(open.to_bytes()).await
    }

    async fn send(&mut self, element: &Element) -> io::Result<()> {
        let bytes = if element.ns() == NS_STREAMS {
            // `<stream:features/>` as clients look for it, the prefix declared on itself.
            let mut out = Vec::with_capacity(256);
            element.clone().with_attr("xmlns:stream", NS_STREAMS).write_prefixed(&mut out, "stream");
            out
        } else {
            element.to_bytes()
        };
        self.send_now(bytes).await
    }

    async fn send_stanzas(&mut self, stanzas: &[Bytes]) -> io::Result<()> {
        for stanza in stanzas {
            self.messages.feed(Message::Text(text(stanza.clone())?)).await.map_err(io_error)?;
        }
        self.messages.flush().await.map_err(io_error)
    }

    async fn close(&mut self, error: Option<&StreamError>) {
        if let Some(error) = error.and_then(|error| text(Bytes::from(error.to_standalone_bytes())).ok()) {
            let _ = self.messages.feed(Message::Text(error)).await;
        }
        let _ = self.messages.feed(Message::Text(Utf8Bytes::from_static("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"))).await;
        // Sends the WebSocket close frame and flushes (RFC 7395 §3.6: the server closes the
        // WebSocket after its `<close/>`).
        let _ = self.messages.close().await;
    }
}

impl WebSocketSender {
    async fn send_now(&mut self, bytes: Vec<u8>) -> io::Result<()> {
        self.messages.send(Message::Text(text(Bytes::from(bytes))?)).await.map_err(io_error)
    }
}

/// A stanza as a text message: everything the server writes is UTF-8, so this only checks it.
fn text(bytes: Bytes) -> io::Result<Utf8Bytes> {
    Utf8Bytes::try_from(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "stanza is not UTF-8"))
}

fn io_error(error: WsError) -> io::Error {
    match error {
        WsError::Io(error) => error,
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn event_of(message: &str) -> Result<StreamEvent, FrameError> {
        event(read_one(message.as_bytes(), Limits::default()).await?)
    }

    #[tokio::test]
    async fn open_and_close_stand_for_the_stream_header_and_its_end() {
        let open = event_of("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.org' version='1.0' xml:lang='en'/>").await;
        let Ok(StreamEvent::Open(header)) = open else { panic!("a header expected: {open:?}") };
        assert_eq!((header.to.as_deref(), header.version.as_deref(), header.lang.as_deref()), (Some("example.org"), Some("1.0"), Some("en")));
        assert_eq!(header.content_ns, ns::CLIENT);
        assert!(matches!(event_of("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>").await, Ok(StreamEvent::Close)));
        assert!(matches!(event_of("<other xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>").await, Err(FrameError::BadFormat(_))));
    }

    #[tokio::test]
    async fn a_message_holds_exactly_one_element_and_one_without_namespace_is_a_client_stanza() {
        let presence = event_of("<presence/>").await;
        assert!(matches!(&presence, Ok(StreamEvent::Element(element)) if element.ns == ns::CLIENT), "{presence:?}");
        assert!(matches!(event_of("<presence xmlns='jabber:client'>").await, Err(FrameError::NotWellFormed(_))));
        assert!(matches!(event_of("<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>").await, Err(FrameError::BadFormat(_))));
    }
}
