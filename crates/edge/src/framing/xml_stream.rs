//! The XML stream of RFC 6120 §4 over TCP, plain then upgraded by STARTTLS, or TLS from the first
//! byte (XEP-0368): one `<stream:stream>` document per direction, restarted after TLS and SASL.

use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;
use starling_protocol::{ns, StreamError};
use starling_xml::{Element, FrameError, StreamEvent, StreamHeader, StreamReader, NS_STREAMS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio_rustls::TlsAcceptor;

use super::{Framing, ReceiveFrames, SendFrames, LINGER_BYTES};
use crate::edge::Edge;
use crate::shaper::ReadShaper;

/// Any byte stream a client can be on: plain TCP or TLS over it (or a test's in-memory pipe).
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
pub(crate) type BoxedIo = Box<dyn Io>;

/// A socket as the listener accepted it.
pub(crate) struct Accepted {
    pub io: BoxedIo,
    /// TLS from the first byte (XEP-0368) rather than by STARTTLS.
    pub direct_tls: bool,
}

/// The XML stream during negotiation: split from the start, since after binding the halves go
/// to different tasks and a reader cannot be split once it holds buffered bytes.
pub(crate) struct XmlStream {
    receiver: XmlReceiver,
    sender: XmlSender,
    secure: bool,
    channel_binding: Option<Vec<u8>>,
}

pub(crate) struct XmlReceiver {
    reader: StreamReader<ReadHalf<BoxedIo>>,
    shaper: Option<ReadShaper>,
}

pub(crate) struct XmlSender {
    writer: WriteHalf<BoxedIo>,
}

impl XmlStream {
    fn new(io: BoxedIo, edge: &Edge, secure: bool, channel_binding: Option<Vec<u8>>) -> XmlStream {
        let (read, writer) = tokio::io::split(io);
        XmlStream {
            receiver: XmlReceiver { reader: StreamReader::new(read, edge.config.c2s.limits()), shaper: edge.config.c2s.read_shaper() },
            sender: XmlSender { writer },
            secure,
            channel_binding,
        }
    }
}

impl Framing for XmlStream {
    type Transport = Accepted;
    type Receiver = XmlReceiver;
    type Sender = XmlSender;

    async fn start(accepted: Accepted, edge: &Edge) -> Option<XmlStream> {
        if !accepted.direct_tls {
            return Some(XmlStream::new(accepted.io, edge, false, None));
        }
        // Boxed: the handshake's state is large and short-lived; inline, it would size the
        // connection task for its whole life.
        let (io, channel_binding) = Box::pin(accept_tls(edge, &edge.tls, accepted.io)).await.ok()?;
        Some(XmlStream::new(io, edge, true, channel_binding))
    }

    fn receiver(&mut self) -> &mut XmlReceiver {
        &mut self.receiver
    }

    fn sender(&mut self) -> &mut XmlSender {
        &mut self.sender
    }

    fn restart(&mut self) {
        let reader = std::mem::replace(&mut self.receiver.reader, detached_reader());
        self.receiver.reader = reader.restart();
    }

    async fn start_tls(&mut self, edge: &Edge) -> Result<(), FrameError> {
        let read = std::mem::replace(&mut self.receiver.reader, detached_reader()).into_inner()?;
        let writer = std::mem::replace(&mut self.sender.writer, tokio::io::split(detached_io()).1);
        let (io, channel_binding) = accept_tls(edge, &edge.tls, read.unsplit(writer)).await?;
        *self = XmlStream::new(io, edge, true, channel_binding);
        Ok(())
    }

    fn is_secure(&self) -> bool {
        self.secure
    }

    fn can_start_tls(&self) -> bool {
        !self.secure
    }

    fn channel_binding(&self) -> Option<&[u8]> {
        self.channel_binding.as_deref()
    }

    fn split(self) -> (XmlReceiver, XmlSender) {
        (self.receiver, self.sender)
    }
}

impl ReceiveFrames for XmlReceiver {
    fn shape(&mut self, shaper: Option<ReadShaper>) {
        self.shaper = shaper;
    }

    async fn next(&mut self) -> Result<StreamEvent, FrameError> {
        let Some(shaper) = self.shaper.as_mut() else { return self.reader.next().await };
        shaper.wait().await;
        let event = self.reader.next().await?;
        if let StreamEvent::Element(element) = &event {
            shaper.charge(element.bytes.len());
        }
        Ok(event)
    }

    fn activity(&self) -> Arc<AtomicU64> {
        self.reader.activity()
    }

    async fn discard(&mut self) {
        let reader = self.reader.get_mut();
        let mut buffer = vec![0u8; 16 * 1024];
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => discarded += read,
            }
        }
    }
}

impl SendFrames for XmlSender {
    async fn open(&mut self, header: &StreamHeader) -> io::Result<()> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"<?xml version='1.0'?>");
        header.write_start_tag(&mut out);
        self.write_and_flush(&out).await
    }

    async fn send(&mut self, element: &Element) -> io::Result<()> {
        let mut out = Vec::with_capacity(128);
        if element.ns() == NS_STREAMS {
            // With the prefix our header bound (`StreamHeader::write_start_tag`).
            element.write_prefixed(&mut out, "stream");
        } else {
            // Inside our `jabber:client` stream: an IQ reply needs no namespace declaration.
            element.write_in_ns(&mut out, ns::CLIENT);
        }
        self.write_and_flush(&out).await
    }

    async fn send_stanzas(&mut self, stanzas: &[Bytes]) -> io::Result<()> {
        // A lone stanza is written as it is; a burst is gathered into one write, in a buffer that
        // lives only as long as the burst: an idle connection holds none.
        if let [stanza] = stanzas {
            return self.writer.write_all(stanza).await;
        }
        let mut burst = Vec::with_capacity(stanzas.iter().map(Bytes::len).sum());
        for stanza in stanzas {
            burst.extend_from_slice(stanza);
        }
        self.writer.write_all(&burst).await
    }

    async fn close(&mut self, error: Option<&StreamError>) {
        // `StreamError::to_bytes` writes `<stream:error>`, the prefix our header bound.
        let mut out = error.map(StreamError::to_bytes).unwrap_or_default();
        out.extend_from_slice(b"</stream:stream>");
        let _ = self.writer.write_all(&out).await;
        let _ = self.writer.shutdown().await;
    }
}

impl XmlSender {
    /// Over TLS, bytes not flushed may sit in the TLS layer's buffer while both sides wait.
    async fn write_and_flush(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await
    }
}

/// The TLS handshake, bounded by the negotiation timeout; returns the stream and its tls-exporter
/// channel binding (TLS 1.3 only: RFC 9266 defines none for earlier versions).
pub(crate) async fn accept_tls(edge: &Edge, acceptor: &TlsAcceptor, io: BoxedIo) -> io::Result<(BoxedIo, Option<Vec<u8>>)> {
    let tls = match tokio::time::timeout(edge.config.c2s.negotiation_timeout(), acceptor.accept(io)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            return Err(error);
        }
        Err(_) => return Err(io::ErrorKind::TimedOut.into()),
    };
    let (_, connection) = tls.get_ref();
    let channel_binding = (connection.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3))
        .then(|| connection.export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None).ok())
        .flatten();
    Ok((Box::new(tls), channel_binding))
}

/// Stands in for a half while the real one is taken out to be restarted or upgraded.
fn detached_io() -> BoxedIo {
    Box::new(tokio::io::empty())
}

fn detached_reader() -> StreamReader<ReadHalf<BoxedIo>> {
    StreamReader::new(tokio::io::split(detached_io()).0, starling_xml::Limits::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::StreamErrorCondition;
    use tokio::io::AsyncReadExt;

    fn sender() -> (XmlSender, tokio::io::DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(4096);
        (XmlSender { writer: tokio::io::split(Box::new(ours) as BoxedIo).1 }, theirs)
    }

    async fn written(mut peer: tokio::io::DuplexStream) -> String {
        let mut out = String::new();
        peer.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn writes_header_features_and_close_from_typed_values() {
        let (mut sender, peer) = sender();
        let header = StreamHeader {
            from: Some("example.org".into()),
            id: Some("0123".into()),
            version: Some("1.0".into()),
            lang: Some("en".into()),
            content_ns: ns::CLIENT.into(),
            ..StreamHeader::default()
        };
        sender.open(&header).await.expect("open");
        let features = Element::new("features", NS_STREAMS).with_child(Element::new("bind", ns::BIND));
        sender.send(&features).await.expect("features");
        sender.send(&Element::new("proceed", ns::TLS)).await.expect("nonza");
        sender.send(&Element::new("iq", ns::CLIENT).with_attr("type", "result").with_attr("id", "s1")).await.expect("iq");
        sender.close(Some(&StreamError::new(StreamErrorCondition::Conflict))).await;
        assert_eq!(
            written(peer).await,
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
             version='1.0' xml:lang='en' id='0123' from='example.org'>\
             <stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>\
             <proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\
             <iq type='result' id='s1'/>\
             <stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"
        );
    }

    #[tokio::test]
    async fn writes_a_burst_of_stanzas_in_order_and_a_clean_close() {
        let (mut sender, peer) = sender();
        let burst = [Bytes::from_static(b"<message xmlns='jabber:client'/>"), Bytes::from_static(b"<presence xmlns='jabber:client'/>")];
        sender.send_stanzas(&burst[..1]).await.expect("one");
        sender.send_stanzas(&burst).await.expect("two");
        sender.close(None).await;
        assert_eq!(
            written(peer).await,
            "<message xmlns='jabber:client'/><message xmlns='jabber:client'/><presence xmlns='jabber:client'/></stream:stream>"
        );
    }
}
