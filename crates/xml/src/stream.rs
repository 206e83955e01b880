//! Framing a never-ending XMPP stream into top-level elements.
//!
//! quick-xml parses; this module adds what it lacks for XMPP (RFC 6120 §4, §11): the stream
//! wrapper, restricted XML, and bounds on size, depth and attribute count. The original bytes of
//! each top-level element are kept (a [`Tap`] under the parser records what it consumes), so a
//! stanza is forwarded as its wire bytes instead of being re-serialised from a tree.
//!
//! Over 400 lines: the reader is one state machine (wrapper, restarts, limits, byte tap) that is clearer whole than split.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

use crate::element::resolve_reference;
use crate::escape::escape_attr;
use crate::names::is_qname;
use crate::{Limits, ParseError, NS_STREAMS};

/// Why the stream cannot go on. Each maps to one stream error condition of RFC 6120 §4.9.3
/// (the mapping lives with the protocol types).
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("not well-formed: {0}")]
    NotWellFormed(String),
    #[error("restricted XML: {0}")]
    Restricted(&'static str),
    #[error("limit exceeded: {0}")]
    LimitExceeded(&'static str),
    /// The stream element is not in the streams namespace (or declares no content namespace).
    #[error("invalid namespace")]
    InvalidNamespace,
    /// Well-formed XML that is not an XMPP stream (text between stanzas, a second root…).
    #[error("bad format: {0}")]
    BadFormat(&'static str),
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection without closing the stream.
    #[error("connection closed")]
    Closed,
}

impl From<ParseError> for FrameError {
    fn from(error: ParseError) -> Self {
        match error {
            ParseError::NotWellFormed(reason) => FrameError::NotWellFormed(reason),
            ParseError::Restricted(what) => FrameError::Restricted(what),
            ParseError::LimitExceeded(what) => FrameError::LimitExceeded(what),
        }
    }
}

/// What the reader produced.
#[derive(Debug)]
pub enum StreamEvent {
    /// `<stream:stream …>` was opened (first, and after every restart).
    Open(StreamHeader),
    /// One complete top-level element.
    Element(RawElement),
    /// `</stream:stream>`.
    Close,
}

/// The attributes of a stream header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeader {
    pub to: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
    /// The default namespace declared on the stream: `jabber:client` for c2s.
    pub content_ns: String,
    /// `xmlns:p` declarations on the stream element other than the streams prefix: an element may
    /// use those prefixes, so they travel with it once it leaves the stream.
    pub prefixes: Vec<(String, String)>,
}

impl StreamHeader {
    /// Writes the header as the start tag that opens an XML stream (RFC 6120 §4.7): the content
    /// namespace as the default, the streams namespace bound to the `stream` prefix — which
    /// `<stream:features/>` and `<stream:error/>` then use (see [`Element::write_prefixed`]) — the
    /// other declared prefixes, and each attribute that is set.
    ///
    /// [`Element::write_prefixed`]: crate::Element::write_prefixed
    pub fn write_start_tag(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"<stream:stream");
        write_attr(out, "xmlns", &self.content_ns);
        write_attr(out, "xmlns:stream", NS_STREAMS);
        for (prefix, ns) in &self.prefixes {
            write_attr(out, prefix, ns);
        }
        let attributes = [("version", &self.version), ("xml:lang", &self.lang), ("id", &self.id), ("from", &self.from), ("to", &self.to)];
        for (name, value) in attributes {
            if let Some(value) = value {
                write_attr(out, name, value);
            }
        }
        out.push(b'>');
    }
}

/// A top-level element: its name, namespace and attributes, and its original bytes.
#[derive(Debug, Clone)]
pub struct RawElement {
    pub name: String,
    pub ns: String,
    /// Attributes as written (values unescaped), `xmlns:p` declarations included, the default
    /// namespace declaration excluded (it is `ns`).
    pub attrs: Vec<(String, String)>,
    /// The element exactly as received.
    pub bytes: Bytes,
    /// Where the start tag ends in `bytes` (equal to its length for `<empty/>`).
    pub body_offset: usize,
    /// Prefixes declared on the stream, needed if the element is read outside it.
    pub stream_prefixes: Arc<[(String, String)]>,
}

impl RawElement {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The element as self-contained bytes with a new start tag: its namespace declared, the
    /// stream's prefixes declared, and attributes `replace` set (a `None` value removes it). The
    /// content after the start tag is copied untouched. The edge uses this to stamp `from`.
    pub fn rewrite(&self, replace: &[(&str, Option<&str>)]) -> Bytes {
        self.rewrite_in(&self.ns, replace)
    }

    /// [`rewrite`](Self::rewrite), declaring `ns` as the element's namespace instead of its own:
    /// the element and its children that inherited the stream's default namespace move to `ns`
    /// (a component's `jabber:component:accept` stanza becomes a `jabber:client` one).
    pub fn rewrite_in(&self, ns: &str, replace: &[(&str, Option<&str>)]) -> Bytes {
        let body = &self.bytes[self.body_offset..];
        let mut out = Vec::with_capacity(self.bytes.len() + 64);
        out.push(b'<');
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(b" xmlns='");
        escape_attr(&mut out, ns);
        out.push(b'\'');
        for (prefix, ns) in self.stream_prefixes.iter() {
            if self.attr(prefix).is_none() {
                write_attr(&mut out, prefix, ns);
            }
        }
        for (name, value) in &self.attrs {
            if !replace.iter().any(|(k, _)| k == name) {
                write_attr(&mut out, name, value);
            }
        }
        for (name, value) in replace {
            if let Some(value) = value {
                write_attr(&mut out, name, value);
            }
        }
        if body.is_empty() {
            out.extend_from_slice(b"/>");
        } else {
            out.push(b'>');
            out.extend_from_slice(body);
        }
        Bytes::from(out)
    }
}

fn write_attr(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    escape_attr(out, value);
    out.push(b'\'');
}

/// Reads XMPP stream events from any byte source.
///
/// Not cancel-safe (quick-xml's async read is not): keep `next` out of `select!` branches that may
/// be dropped mid-read; run it in the connection's own loop.
pub struct StreamReader<R> {
    reader: NsReader<Tap<R>>,
    buf: Vec<u8>,
    limits: Limits,
    /// 0 outside the stream, 1 inside it, 2 inside a top-level element, and so on.
    depth: usize,
    current: Option<OpenElement>,
    stream_prefixes: Arc<[(String, String)]>,
    /// The prefix the stream header bound to the streams namespace (`stream`), if any: an element
    /// that uses it inside a stanza needs it declared once the element leaves the stream.
    streams_prefix: Option<String>,
    content_ns: String,
}

/// The top-level element being read.
struct OpenElement {
    name: String,
    ns: String,
    attrs: Vec<(String, String)>,
    start: u64,
    body_offset: usize,
    /// Whether it or a descendant uses the streams prefix (`<stream:x/>`, `stream:a='…'`).
    uses_streams_prefix: bool,
}

/// The largest parse buffer kept between stanzas; a peak above it is released after the stanza.
/// Small on purpose: most connections are idle most of the time, and each idle byte is multiplied
/// by every connection a process holds.
const RETAINED_BUFFER: usize = 512;

impl<R: AsyncRead + Unpin> StreamReader<R> {
    pub fn new(inner: R, limits: Limits) -> Self {
        StreamReader {
            reader: new_ns_reader(Tap::new(inner, limits.max_stanza_bytes)),
            buf: Vec::new(),
            limits,
            depth: 0,
            current: None,
            stream_prefixes: Arc::from(Vec::new()),
            streams_prefix: None,
            content_ns: String::new(),
        }
    }

    /// Reads top-level elements with no stream wrapper around them, as if the stream were already
    /// open: a WebSocket message (RFC 7395 §3.3) is one whole element on its own, and the framing
    /// reads each with a reader of its own. An element declaring no namespace has namespace `""`;
    /// the end of the input reads as [`FrameError::Closed`], wherever it falls.
    pub fn fragment(inner: R, limits: Limits) -> Self {
        StreamReader { depth: 1, ..StreamReader::new(inner, limits) }
    }

    /// Expects a new stream header next (after SASL success, RFC 6120 §4.3.3). Bytes the peer
    /// already sent stay buffered.
    pub fn restart(self) -> Self {
        StreamReader { reader: new_ns_reader(self.reader.into_inner()), depth: 0, current: None, ..self }
    }

    /// A counter of the bytes read from the source, shared so that another task can watch it: it
    /// shows a peer is alive even when it only sends whitespace, which the parser reports late.
    pub fn activity(&self) -> Arc<AtomicU64> {
        self.reader.get_ref().received.clone()
    }

    /// Gives back the byte source, for a TLS upgrade. Fails when the peer sent bytes after the
    /// `<starttls/>` that asked for it: those were not protected and must not be read as TLS.
    pub fn into_inner(self) -> Result<R, FrameError> {
        let tap = self.reader.into_inner();
        if tap.has_unread() {
            return Err(FrameError::BadFormat("data after starttls"));
        }
        Ok(tap.inner)
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.reader.get_mut().inner
    }

    pub fn get_ref(&self) -> &R {
        &self.reader.get_ref().inner
    }

    /// The next stream event.
    pub async fn next(&mut self) -> Result<StreamEvent, FrameError> {
        loop {
            self.buf.clear();
            let position = self.reader.get_ref().consumed;
            let (ns, event) = match self.reader.read_resolved_event_into_async(&mut self.buf).await {
                Ok(ok) => ok,
                Err(error) => return Err(map_error(error)),
            };
            let is_empty = matches!(event, Event::Empty(_));
            match event {
                Event::Decl(_) if self.depth == 0 => {}
                Event::Start(start) if self.depth == 0 => {
                    let header = stream_header(&ns, &start)?;
                    self.stream_prefixes = Arc::from(header.prefixes.clone());
                    self.streams_prefix = start.name().prefix().map(|prefix| prefix.into_inner().to_owned());
                    self.content_ns = header.content_ns.clone();
                    self.depth = 1;
                    self.reader.get_mut().discard_captured();
                    return Ok(StreamEvent::Open(header));
                }
                Event::Empty(_) if self.depth == 0 => return Err(FrameError::BadFormat("empty stream element")),
                Event::Start(start) | Event::Empty(start) if self.depth == 1 => {
                    let ns = resolved_ns(&ns)?;
                    let attrs = attributes(&start, &self.limits)?;
                    let end = self.reader.get_ref().consumed;
                    let element = OpenElement {
                        name: local_name(&start)?,
                        ns,
                        uses_streams_prefix: uses_streams_prefix(self.streams_prefix.as_deref(), None, &attrs),
                        attrs,
                        start: position,
                        body_offset: (end - position) as usize,
                    };
                    if is_empty {
                        return Ok(StreamEvent::Element(self.finish(element)));
                    }
                    self.current = Some(element);
                    self.depth = 2;
                }
                Event::Start(start) | Event::Empty(start) => {
                    // depth 2 is the top-level element itself, so its children are at nesting 2.
                    if self.depth > self.limits.max_depth {
                        return Err(FrameError::LimitExceeded("nesting depth"));
                    }
                    resolved_ns(&ns)?;
                    check_name(&start)?;
                    let attrs = attributes(&start, &self.limits)?;
                    if uses_streams_prefix(self.streams_prefix.as_deref(), Some(start.name().into_inner()), &attrs)
                        && let Some(current) = self.current.as_mut()
                    {
                        current.uses_streams_prefix = true;
                    }
                    if !is_empty {
                        self.depth += 1;
                    }
                }
                Event::End(_) if self.depth == 1 => {
                    self.depth = 0;
                    return Ok(StreamEvent::Close);
                }
                Event::End(_) if self.depth == 2 => {
                    self.depth = 1;
                    let element = self.current.take().ok_or(FrameError::BadFormat("end without start"))?;
                    return Ok(StreamEvent::Element(self.finish(element)));
                }
                Event::End(_) if self.depth > 2 => self.depth -= 1,
                Event::Text(text) if self.depth <= 1 => {
                    if !text.bytes().all(|b| b.is_ascii_whitespace()) {
                        return Err(FrameError::BadFormat("text outside stanzas"));
                    }
                    self.reader.get_mut().discard_captured();
                }
                Event::Text(_) | Event::CData(_) if self.depth >= 2 => {}
                Event::GeneralRef(reference) if self.depth >= 2 => {
                    resolve_reference(&reference)?;
                }
                Event::Comment(_) => return Err(FrameError::Restricted("comment")),
                Event::PI(_) => return Err(FrameError::Restricted("processing instruction")),
                Event::DocType(_) => return Err(FrameError::Restricted("document type declaration")),
                Event::Decl(_) => return Err(FrameError::Restricted("XML declaration inside the stream")),
                Event::Eof => return Err(FrameError::Closed),
                Event::End(_) | Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    return Err(FrameError::BadFormat("content outside the stream"));
                }
            }
        }
    }

    fn finish(&mut self, element: OpenElement) -> RawElement {
        let tap = self.reader.get_mut();
        let bytes = tap.take_captured(element.start);
        if self.buf.capacity() > RETAINED_BUFFER {
            self.buf = Vec::new();
        }
        RawElement {
            name: element.name,
            ns: element.ns,
            attrs: element.attrs,
            bytes,
            body_offset: element.body_offset,
            stream_prefixes: match (&self.streams_prefix, element.uses_streams_prefix) {
                (Some(prefix), true) => {
                    let declaration = (format!("xmlns:{prefix}"), NS_STREAMS.to_owned());
                    self.stream_prefixes.iter().cloned().chain([declaration]).collect()
                }
                _ => self.stream_prefixes.clone(),
            },
        }
    }

    /// The content namespace the current stream declared.
    pub fn content_ns(&self) -> &str {
        &self.content_ns
    }
}

/// Whether an element uses the streams prefix: in the attributes `attributes` read, or in its
/// `name` (given for an element inside a top-level one: a top-level element's own name is
/// rewritten without its prefix).
fn uses_streams_prefix(streams_prefix: Option<&str>, name: Option<&str>, attrs: &[(String, String)]) -> bool {
    let Some(prefix) = streams_prefix else { return false };
    let has_prefix = |name: &str| name.strip_prefix(prefix).is_some_and(|rest| rest.starts_with(':'));
    name.is_some_and(has_prefix) || attrs.iter().any(|(key, _)| has_prefix(key))
}

fn new_ns_reader<R: AsyncRead + Unpin>(tap: Tap<R>) -> NsReader<Tap<R>> {
    let mut reader = NsReader::from_reader(tap);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;
    config.allow_dangling_amp = false;
    config.expand_empty_elements = false;
    reader
}

fn map_error(error: quick_xml::Error) -> FrameError {
    match error {
        quick_xml::Error::Io(io) => {
            if io.get_ref().is_some_and(|inner| inner.is::<SizeLimitHit>()) {
                FrameError::LimitExceeded("stanza size")
            } else {
                FrameError::Io(io::Error::new(io.kind(), io.to_string()))
            }
        }
        quick_xml::Error::Escape(_) => FrameError::Restricted("undeclared entity reference"),
        other => FrameError::NotWellFormed(other.to_string()),
    }
}

fn resolved_ns(ns: &ResolveResult<'_>) -> Result<String, FrameError> {
    match ns {
        ResolveResult::Bound(ns) => Ok(ns.0.to_owned()),
        ResolveResult::Unbound => Ok(String::new()),
        ResolveResult::Unknown(prefix) => Err(FrameError::NotWellFormed(format!("unbound prefix {prefix}"))),
    }
}

fn local_name(start: &BytesStart<'_>) -> Result<String, FrameError> {
    check_name(start)?;
    Ok(start.local_name().into_inner().to_owned())
}

fn check_name(start: &BytesStart<'_>) -> Result<(), FrameError> {
    if is_qname(start.name().into_inner()) {
        Ok(())
    } else {
        Err(FrameError::NotWellFormed(format!("invalid element name {:?}", start.name().into_inner())))
    }
}

/// Checks every attribute of an element (count, well-formedness, entities) and returns them, the
/// default namespace declaration left out.
fn attributes(start: &BytesStart<'_>, limits: &Limits) -> Result<Vec<(String, String)>, FrameError> {
    let mut out = Vec::new();
    for (count, attr) in start.attributes().enumerate() {
        if count >= limits.max_attributes {
            return Err(FrameError::LimitExceeded("attribute count"));
        }
        let attr = attr.map_err(|e| FrameError::NotWellFormed(e.to_string()))?;
        let key = attr.key.into_inner();
        if !is_qname(key) {
            return Err(FrameError::NotWellFormed(format!("invalid attribute name {key:?}")));
        }
        let value = attr.normalized_value(quick_xml::XmlVersion::Implicit1_0).map_err(map_error)?;
        if key != "xmlns" {
            out.push((key.to_owned(), value.into_owned()));
        }
    }
    Ok(out)
}

fn stream_header(ns: &ResolveResult<'_>, start: &BytesStart<'_>) -> Result<StreamHeader, FrameError> {
    if resolved_ns(ns)? != NS_STREAMS {
        return Err(FrameError::InvalidNamespace);
    }
    check_name(start)?;
    if start.local_name().into_inner() != "stream" {
        return Err(FrameError::BadFormat("root element is not stream"));
    }
    let mut header = StreamHeader::default();
    let stream_prefix = start.name().prefix().map(|p| p.into_inner().to_owned());
    for attr in start.attributes() {
        let attr = attr.map_err(|e| FrameError::NotWellFormed(e.to_string()))?;
        let value = attr.normalized_value(quick_xml::XmlVersion::Implicit1_0).map_err(map_error)?.into_owned();
        match attr.key.into_inner() {
            "to" => header.to = Some(value),
            "from" => header.from = Some(value),
            "id" => header.id = Some(value),
            "version" => header.version = Some(value),
            "xml:lang" => header.lang = Some(value),
            "xmlns" => header.content_ns = value,
            key => {
                if let Some(prefix) = key.strip_prefix("xmlns:")
                    && Some(prefix) != stream_prefix.as_deref()
                {
                    header.prefixes.push((key.to_owned(), value));
                }
            }
        }
    }
    if header.content_ns.is_empty() {
        return Err(FrameError::InvalidNamespace);
    }
    Ok(header)
}

/// Marks the I/O error a [`Tap`] raises when a peer exceeds the size bound.
#[derive(Debug)]
struct SizeLimitHit;

impl std::fmt::Display for SizeLimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stanza size limit exceeded")
    }
}

impl std::error::Error for SizeLimitHit {}

/// The buffered byte source under the parser. It records the bytes the parser consumes since the
/// last element boundary (so an element's original bytes can be handed out) and refuses to supply
/// more than `max_pending` such bytes: quick-xml buffers a whole token before returning it, so the
/// size bound must act below it.
///
/// Reads land in a stack buffer and are kept in a heap buffer sized to what arrived, released as
/// soon as the parser has consumed it: an idle connection holds no read buffer at all.
struct Tap<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    captured: Vec<u8>,
    /// Stream offset of `captured[0]`.
    captured_from: u64,
    /// Bytes the parser consumed.
    consumed: u64,
    /// Bytes read from the source.
    received: Arc<AtomicU64>,
    max_pending: usize,
}

/// The most one read takes from the source.
const READ_CHUNK: usize = 4096;

impl<R> Tap<R> {
    fn new(inner: R, max_pending: usize) -> Self {
        Tap {
            inner,
            buf: Vec::new(),
            pos: 0,
            captured: Vec::new(),
            captured_from: 0,
            consumed: 0,
            received: Arc::new(AtomicU64::new(0)),
            max_pending,
        }
    }

    /// Whether bytes were read from the source that the parser has not consumed.
    fn has_unread(&self) -> bool {
        self.pos < self.buf.len()
    }

    /// Hands out the captured bytes from stream offset `start` to what was consumed, and forgets
    /// everything up to there.
    fn take_captured(&mut self, start: u64) -> Bytes {
        let skip = (start - self.captured_from) as usize;
        let bytes = Bytes::copy_from_slice(&self.captured[skip..]);
        self.discard_captured();
        bytes
    }

    fn discard_captured(&mut self) {
        self.captured.clear();
        if self.captured.capacity() > RETAINED_BUFFER {
            self.captured = Vec::new();
        }
        self.captured_from = self.consumed;
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Tap<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let available = match self.as_mut().poll_fill_buf(cx) {
            Poll::Ready(Ok(available)) => available,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let n = available.len().min(out.remaining());
        out.put_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(()))
    }
}

impl<R: AsyncRead + Unpin> AsyncBufRead for Tap<R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.captured.len() > this.max_pending {
            return Poll::Ready(Err(io::Error::other(SizeLimitHit)));
        }
        if !this.has_unread() {
            let mut chunk = [0u8; READ_CHUNK];
            let mut read_buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read_buf) {
                Poll::Ready(Ok(())) => {
                    let filled = read_buf.filled();
                    this.buf.clear();
                    this.buf.extend_from_slice(filled);
                    this.pos = 0;
                    this.received.fetch_add(filled.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(&this.buf[this.pos..]))
    }

    fn consume(self: Pin<&mut Self>, amount: usize) {
        let this = self.get_mut();
        let end = (this.pos + amount).min(this.buf.len());
        this.captured.extend_from_slice(&this.buf[this.pos..end]);
        this.consumed += (end - this.pos) as u64;
        this.pos = end;
        if !this.has_unread() {
            // Everything read was parsed: give the memory back while the peer is quiet.
            this.buf = Vec::new();
            this.pos = 0;
        }
    }
}
