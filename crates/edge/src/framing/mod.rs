//! Framing: how one XMPP stream is carried on a connection. Negotiation and the bound loop see
//! only stream events in and typed values out; a framing turns those into bytes. The framings
//! are the XML stream over TCP or TLS (RFC 6120 §4, [`xml_stream`]) and XMPP over WebSocket (RFC
//! 7395, [`websocket`]: `<open/>`/`<close/>` in `urn:ietf:params:xml:ns:xmpp-framing`, one element
//! per message); negotiation and the bound loop are the same code for both.
//!
//! After binding, a framing splits into a receiving half (kept by the connection task) and a
//! sending half (owned by the writer task), so reading never waits for writing.

pub(crate) mod websocket;
pub(crate) mod xml_stream;

use std::future::Future;
use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use starling_protocol::StreamError;
use starling_xml::{Element, FrameError, StreamEvent, StreamHeader};

use crate::edge::Edge;
use crate::shaper::ReadShaper;

/// The receiving side of a stream.
pub(crate) trait ReceiveFrames: Send + 'static {
    /// The next event: the peer's stream header, one top-level element, or the peer's close. Not
    /// cancel-safe (a partly read element would be lost): await it in the connection's own loop.
    fn next(&mut self) -> impl Future<Output = Result<StreamEvent, FrameError>> + Send;

    /// Shapes what is read from now on with `shaper` (the stream's domain has limits of its own).
    fn shape(&mut self, shaper: Option<ReadShaper>);

    /// A counter of bytes received, shared with the writer task: it shows a peer is alive even
    /// when it sends only whitespace, which the parser reports late.
    fn activity(&self) -> Arc<AtomicU64>;

    /// Reads and discards what the client sends, up to `LINGER_BYTES`, until it closes or the
    /// connection fails: after a stream error, while our close goes out (a client that writes
    /// without reading would otherwise block both ends).
    fn discard(&mut self) -> impl Future<Output = ()> + Send;

    /// After a stream error was sent and our side shut (RFC 6120 §4.9): [`discard`](Self::discard)
    /// for at most `LINGER_TIME`, so the socket is not closed with unread bytes — the kernel would
    /// answer them with a reset and drop whatever of the error it had not sent yet.
    fn linger(&mut self) -> impl Future<Output = ()> + Send {
        async {
            let _ = tokio::time::timeout(LINGER_TIME, self.discard()).await;
        }
    }
}

/// How long, and how much, a stream that ended in an error is still read after it (`linger`):
/// enough for the error to reach a client that was writing, little enough that a hostile client
/// cannot hold the connection. Time is what counts: a client writing over loopback sends a
/// megabyte in milliseconds; the byte bound only caps the decryption a client can make us do.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(2);
pub(crate) const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// The sending side of a stream. Negotiation sends typed values; the bound writer sends stanzas
/// that are already bytes.
pub(crate) trait SendFrames: Send + 'static {
    /// Opens our side of the stream with `header` (first, and after every restart).
    fn open(&mut self, header: &StreamHeader) -> impl Future<Output = io::Result<()>> + Send;

    /// Sends one top-level element built by the server — stream features, a negotiation nonza, an
    /// IQ reply — and flushes it, since during negotiation every write is followed by a wait for
    /// the peer. Elements in the streams namespace (`features`) are framed as this framing frames
    /// them (`<stream:features>` in the XML stream).
    fn send(&mut self, element: &Element) -> impl Future<Output = io::Result<()>> + Send;

    /// Sends stanzas, each a whole top-level element declaring its namespace, in order: one burst
    /// from the session layer's queue.
    fn send_stanzas(&mut self, stanzas: &[Bytes]) -> impl Future<Output = io::Result<()>> + Send;

    /// Ends our side: `error` if any (RFC 6120 §4.9), then the close, then shuts the transport.
    /// Failures are ignored: the connection is going away either way.
    fn close(&mut self, error: Option<&StreamError>) -> impl Future<Output = ()> + Send;
}

/// A whole stream during negotiation: both sides plus what only negotiation needs — restarts,
/// the TLS upgrade and the channel-binding data of the transport.
pub(crate) trait Framing: Send + Sized + 'static {
    /// What a listener accepted and this framing starts on (a socket, or for WebSocket an
    /// upgraded HTTP connection).
    type Transport: Send;
    type Receiver: ReceiveFrames;
    type Sender: SendFrames;

    /// Starts on a freshly accepted transport (a direct-TLS handshake happens here); `None` when
    /// the peer went away before a stream could start.
    fn start(transport: Self::Transport, edge: &Edge) -> impl Future<Output = Option<Self>> + Send;

    fn receiver(&mut self) -> &mut Self::Receiver;

    fn sender(&mut self) -> &mut Self::Sender;

    /// Expects a new stream header from the peer: after SASL success (RFC 6120 §6.4.6) the old
    /// stream is replaced without being closed. Bytes already received stay buffered.
    fn restart(&mut self);

    /// Upgrades the transport to TLS after `<proceed/>` was sent (RFC 6120 §5.4.3.3), then expects
    /// a new stream header. Fails with `bad-format` when the peer sent data after `<starttls/>`
    /// (it was not protected and must not be read as TLS), or with an I/O error when the
    /// handshake fails.
    fn start_tls(&mut self, edge: &Edge) -> impl Future<Output = Result<(), FrameError>> + Send;

    /// Whether the transport is encrypted.
    fn is_secure(&self) -> bool;

    /// Whether [`start_tls`](Self::start_tls) can upgrade this transport now: a plain XML
    /// stream, never a WebSocket (RFC 7395 leaves TLS to the WebSocket layer, `wss:`).
    fn can_start_tls(&self) -> bool;

    /// The tls-exporter channel binding (RFC 9266), on TLS 1.3 only.
    fn channel_binding(&self) -> Option<&[u8]>;

    /// Splits into the halves the bound loop and its writer task own.
    fn split(self) -> (Self::Receiver, Self::Sender);
}
