//! One s2s XML stream during negotiation: read and written directly, upgraded to TLS in place, and
//! split into its halves once the stream carries stanzas. Stanzas change namespace at this
//! boundary: `jabber:server` on the wire, `jabber:client` inside the server (same shape).

use std::io;

use rustls::pki_types::CertificateDer;
use starling_protocol::{ns, Stanza, StanzaKind, StreamError, StreamErrorCondition};
use starling_xml::{Element, FrameError, Limits, RawElement, StreamEvent, StreamHeader, StreamReader, NS_STREAMS};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use crate::dialback::NS_DIALBACK;

pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
pub(crate) type BoxedIo = Box<dyn Io>;

pub(crate) struct S2sStream {
    pub reader: StreamReader<ReadHalf<BoxedIo>>,
    pub writer: WriteHalf<BoxedIo>,
    /// The other side's certificate chain, once TLS is on (empty if it showed none).
    pub peer_certificates: Option<Vec<CertificateDer<'static>>>,
}

/// Why a negotiation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failed {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("stream: {0}")]
    Frame(#[from] FrameError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the stream ended")]
    Ended,
    /// The other side broke the protocol, or refused: the stream error to end our side with.
    #[error("{0:?}")]
    Refused(StreamError),
}

impl Failed {
    pub(crate) fn refused(condition: StreamErrorCondition, text: &str) -> Failed {
        Failed::Refused(StreamError::new(condition).with_text(text))
    }
}

impl S2sStream {
    pub(crate) fn new(io: BoxedIo, limits: Limits, peer_certificates: Option<Vec<CertificateDer<'static>>>) -> S2sStream {
        let (read, writer) = tokio::io::split(io);
        S2sStream { reader: StreamReader::new(read, limits), writer, peer_certificates }
    }

    pub(crate) fn secure(&self) -> bool {
        self.peer_certificates.is_some()
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// The next stream header.
    pub(crate) async fn header(&mut self) -> Result<StreamHeader, Failed> {
        match self.reader.next().await? {
            StreamEvent::Open(header) => Ok(header),
            StreamEvent::Close => Err(Failed::Ended),
            StreamEvent::Element(_) => Err(Failed::refused(StreamErrorCondition::BadFormat, "a stream header first")),
        }
    }

    /// The next top-level element; the stream's end or a stream error ends the negotiation.
    pub(crate) async fn element(&mut self) -> Result<RawElement, Failed> {
        match self.reader.next().await? {
            StreamEvent::Element(element) if element.name == "error" && element.ns == NS_STREAMS => {
                tracing::debug!(error = %String::from_utf8_lossy(&element.bytes), "stream error from the other server");
                Err(Failed::Ended)
            }
            StreamEvent::Element(element) => Ok(element),
            StreamEvent::Close => Err(Failed::Ended),
            StreamEvent::Open(_) => Err(Failed::refused(StreamErrorCondition::BadFormat, "unexpected stream header")),
        }
    }

    /// The socket back, for the TLS upgrade.
    pub(crate) fn into_io(self) -> Result<BoxedIo, Failed> {
        Ok(self.reader.into_inner()?.unsplit(self.writer))
    }

    /// Expects the other side's new header (after TLS or SASL).
    pub(crate) fn restart(self) -> S2sStream {
        S2sStream { reader: self.reader.restart(), ..self }
    }
}

/// The certificate chain the other side of a TLS session showed (empty if none), kept past the
/// handshake.
pub(crate) fn peer_chain(certificates: Option<&[CertificateDer<'_>]>) -> Vec<CertificateDer<'static>> {
    certificates.map(|chain| chain.iter().map(|cert| cert.clone().into_owned()).collect()).unwrap_or_default()
}

/// Our stream header: `jabber:server`, with the dialback prefix declared; `to` left out when the
/// other side did not say who it is (RFC 6120 §4.7.2).
pub(crate) fn header(from: &str, to: Option<&str>, id: Option<&str>) -> Vec<u8> {
    let header = StreamHeader {
        from: Some(from.to_owned()),
        to: to.map(str::to_owned),
        id: id.map(str::to_owned),
        version: Some("1.0".into()),
        content_ns: ns::SERVER.to_owned(),
        prefixes: vec![("xmlns:db".into(), NS_DIALBACK.into())],
        ..StreamHeader::default()
    };
    let mut out = b"<?xml version='1.0'?>".to_vec();
    header.write_start_tag(&mut out);
    out
}

/// A top-level element as a tree, its stream's prefixes declared around it (the streams prefix
/// and `db:` are the ones s2s uses), so that `<stream:features>` and `<db:result>` parse.
pub(crate) fn parse(element: &RawElement) -> Option<Element> {
    let mut wrapped = Vec::with_capacity(element.bytes.len() + 160);
    wrapped.extend_from_slice(b"<w xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'");
    for (prefix, ns) in element.stream_prefixes.iter().filter(|(prefix, _)| prefix != "xmlns:stream") {
        wrapped.extend_from_slice(format!(" {prefix}='{}'", ns.replace('\'', "&apos;")).as_bytes());
    }
    wrapped.push(b'>');
    wrapped.extend_from_slice(&element.bytes);
    wrapped.extend_from_slice(b"</w>");
    Element::parse(&wrapped).ok()?.into_children().next()
}

/// A stanza another server sent, as the router takes it: in `jabber:client`, with valid `from`
/// and `to` (RFC 6120 §8.1.1.1, §8.1.2.1); whether the stream may carry it is the caller's check.
pub(crate) fn from_wire(element: &RawElement) -> Result<Stanza, StreamError> {
    let kind = (element.ns == ns::SERVER).then(|| StanzaKind::from_name(&element.name)).flatten();
    let Some(kind) = kind else {
        return Err(StreamError::new(StreamErrorCondition::UnsupportedStanzaType).with_text("a stanza in jabber:server, or dialback"));
    };
    let from = match element.attr("from").map(starling_protocol::Jid::new) {
        Some(Ok(from)) => from,
        _ => return Err(StreamError::new(StreamErrorCondition::InvalidFrom).with_text("a stanza between servers needs a valid 'from'")),
    };
    let to = match element.attr("to").map(starling_protocol::Jid::new) {
        Some(Ok(to)) => to,
        _ => return Err(StreamError::new(StreamErrorCondition::ImproperAddressing).with_text("a stanza between servers needs a valid 'to'")),
    };
    Ok(Stanza::from_foreign_stream(element, kind, from, to))
}

/// `</stream:stream>`, after the error if there is one.
pub(crate) fn close_bytes(error: Option<&StreamError>) -> Vec<u8> {
    let mut out = error.map(StreamError::to_bytes).unwrap_or_default();
    out.extend_from_slice(b"</stream:stream>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::Jid;

    async fn elements(wire: &str) -> Vec<RawElement> {
        let mut reader = StreamReader::new(wire.as_bytes(), Limits::default());
        let mut out = Vec::new();
        while let Ok(event) = reader.next().await {
            match event {
                StreamEvent::Element(element) => out.push(element),
                StreamEvent::Open(_) => {}
                StreamEvent::Close => break,
            }
        }
        out
    }

    #[tokio::test]
    async fn prefixed_features_and_dialback_parse_with_their_stream_prefixes() {
        let wire = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' version='1.0'>\
            <stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>\
            <db:result from='a.example' to='b.example'>abc123</db:result>\
            <message from='x@a.example/r' to='y@b.example' type='chat'><body>hi</body></message></stream:stream>";
        let elements = elements(wire).await;
        let features = parse(&elements[0]).expect("features parse");
        assert!(features.is("features", NS_STREAMS));
        assert!(features.get_child("starttls", ns::TLS).is_some());
        let result = parse(&elements[1]).expect("db:result parses");
        assert!(result.is("result", NS_DIALBACK));
        assert_eq!(result.text(), "abc123");
        let stanza = from_wire(&elements[2]).expect("a stanza");
        assert_eq!(stanza.from, Jid::new("x@a.example/r").expect("jid"));
        let inside = stanza.element().expect("parses");
        assert!(inside.is("message", ns::CLIENT) && inside.get_child("body", ns::CLIENT).is_some());
        let out = String::from_utf8(stanza.to_foreign_stream().expect("writes").to_vec()).expect("utf-8");
        // No default namespace: on the wire it is the stream's, jabber:server.
        assert!(out.starts_with("<message ") && !out.contains(" xmlns='") && out.contains("<body>hi</body>"), "{out}");
    }

    #[tokio::test]
    async fn stanzas_without_addresses_are_refused() {
        let wire = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>\
            <message to='y@b.example'/><message from='x@a.example'/><foo xmlns='jabber:server'/></stream:stream>";
        let conditions: Vec<_> = elements(wire).await.iter().map(|element| from_wire(element).expect_err("refused").condition).collect();
        assert_eq!(conditions, [StreamErrorCondition::InvalidFrom, StreamErrorCondition::ImproperAddressing, StreamErrorCondition::UnsupportedStanzaType]);
    }
}
