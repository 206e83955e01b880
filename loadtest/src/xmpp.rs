//! A minimal c2s XMPP client: TCP (from a chosen source address), STARTTLS or direct TLS, SASL,
//! resource binding, optional initial presence (RFC 6120, RFC 6121 §4.2). It speaks only what a
//! load test needs, but nothing server-specific, so any compliant server can be measured.
//!
//! Each connection keeps the stream reader's 4 KiB buffer and rustls' state, nothing else: tens of
//! thousands of them must fit beside the server on one machine.
//!
//! Over 400 lines: one minimal client (connect, TLS, SASL, bind, read loop) with its tests.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::pki_types::ServerName;
use starling_xml::{Element, FrameError, Limits, RawElement, StreamEvent, StreamReader, escape_attr, escape_text};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Mutex as AsyncMutex, watch};
use tokio_rustls::TlsConnector;

use crate::cli::{LoginMethod, Mechanism};
use crate::sasl::{Exchange, Next, SaltedPasswordCache, SaslError};

pub const NS_STREAMS: &str = starling_xml::NS_STREAMS;
const NS_CLIENT: &str = "jabber:client";
const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
const NS_STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
const NS_PING: &str = "urn:xmpp:ping";

/// The connection a stream runs on: TLS, or a WebSocket over TLS (`--websocket`).
pub trait Connection: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Connection for T {}
pub type Tls = Box<dyn Connection>;
pub type Reader = StreamReader<ReadHalf<Tls>>;
pub type Writer = WriteHalf<Tls>;

/// Everything needed to log in, shared by all connections of a run.
pub struct LoginConfig {
    pub server: SocketAddr,
    pub domain: String,
    pub server_name: ServerName<'static>,
    pub tls: TlsConnector,
    pub direct_tls: bool,
    /// The WebSocket path, when the stream goes over a WebSocket (RFC 7395) on TLS.
    pub websocket: Option<String>,
    pub mechanism: Mechanism,
    pub password: Arc<str>,
    pub resource: String,
    pub presence: bool,
    /// Enable XEP-0198 stream management with resumption after binding.
    pub stream_management: bool,
    /// RFC 6120 SASL then a bind, or XEP-0388 SASL2 with Bind2 (and FAST tokens).
    pub method: LoginMethod,
    /// FAST tokens the server issued, by user (`--login fast`).
    pub tokens: crate::sasl2::Tokens,
    pub cache: Arc<SaltedPasswordCache>,
    pub timeout: Duration,
}

/// Where a login was when it failed or timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Tcp,
    StartTls,
    Tls,
    Sasl,
    Bind,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Tcp => "tcp",
            Phase::StartTls => "starttls",
            Phase::Tls => "tls",
            Phase::Sasl => "sasl",
            Phase::Bind => "bind",
        }
    }
}

/// How long each step of a successful login took.
#[derive(Debug, Default, Clone, Copy)]
pub struct PhaseTimes {
    /// TCP connect.
    pub tcp: Duration,
    /// Stream header and STARTTLS exchange plus the TLS handshake.
    pub tls: Duration,
    /// Stream restart and the SASL exchange.
    pub sasl: Duration,
    /// Stream restart, resource binding and initial presence.
    pub bind: Duration,
}

/// An authenticated, bound session.
pub struct Session {
    /// The full JID the server bound.
    pub jid: String,
    pub reader: Reader,
    pub writer: Writer,
    pub times: PhaseTimes,
    /// The id to resume with, when stream management was enabled.
    pub sm_id: Option<String>,
}

/// Why a login failed. [`LoginError::kind`] groups them for the report.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("TCP connect: {0}")]
    Connect(io::Error),
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    #[error("stream: {0}")]
    Frame(#[from] FrameError),
    #[error("stream error from server: {0}")]
    StreamError(String),
    #[error("server closed the stream")]
    StreamClosed,
    #[error("server offers no STARTTLS")]
    NoStartTls,
    #[error("STARTTLS refused")]
    StartTlsFailure,
    #[error("server does not offer {0}")]
    MechanismNotOffered(&'static str),
    #[error("SASL failure from server: {0}")]
    SaslFailure(String),
    #[error("SASL client: {0}")]
    Sasl(#[from] SaslError),
    #[error("bind failed: {0}")]
    Bind(String),
    #[error("timed out in {}", .0.name())]
    Timeout(Phase),
    #[error("unexpected {0}")]
    Unexpected(String),
}

impl LoginError {
    /// A short, stable label: errors are counted by it.
    pub fn kind(&self) -> String {
        match self {
            LoginError::Connect(e) => format!("connect:{}", io_kind(e)),
            LoginError::Tls(e) => format!("tls:{}", io_kind(e)),
            LoginError::Io(e) => format!("io:{}", io_kind(e)),
            LoginError::Frame(FrameError::Io(e)) => format!("io:{}", io_kind(e)),
            LoginError::Frame(FrameError::Closed) => "connection-closed".into(),
            LoginError::Frame(_) => "bad-xml".into(),
            LoginError::StreamError(condition) => format!("stream-error:{condition}"),
            LoginError::StreamClosed => "stream-closed".into(),
            LoginError::NoStartTls => "no-starttls".into(),
            LoginError::StartTlsFailure => "starttls-failure".into(),
            LoginError::MechanismNotOffered(_) => "mechanism-not-offered".into(),
            LoginError::SaslFailure(condition) => format!("sasl-failure:{condition}"),
            LoginError::Sasl(_) => "sasl-client".into(),
            LoginError::Bind(condition) => format!("bind:{condition}"),
            LoginError::Timeout(phase) => format!("timeout:{}", phase.name()),
            LoginError::Unexpected(_) => "unexpected".into(),
        }
    }
}

/// The errno name when there is one (EADDRNOTAVAIL says "out of ports", EMFILE "out of fds"),
/// else the portable kind.
pub fn io_kind(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => format!("{:?}", nix::errno::Errno::from_raw(code)),
        None => format!("{:?}", error.kind()),
    }
}

impl LoginConfig {
    /// Logs `user` in, from `source` when given, within the configured timeout.
    pub async fn login(&self, user: &str, source: Option<IpAddr>) -> Result<Session, LoginError> {
        let mut phase = Phase::Tcp;
        let mut times = PhaseTimes::default();
        match tokio::time::timeout(self.timeout, self.negotiate(user, source, &mut phase, &mut times)).await {
            Ok(result) => result,
            Err(_) => Err(LoginError::Timeout(phase)),
        }
    }

    async fn negotiate(&self, user: &str, source: Option<IpAddr>, phase: &mut Phase, times: &mut PhaseTimes) -> Result<Session, LoginError> {
        if self.method != LoginMethod::Rfc6120 {
            return crate::sasl2::login(self, user, source, phase, times).await;
        }
        let (mut reader, mut writer, features) = self.authenticated_stream(user, source, phase, times).await?;
        let mut mark = Instant::now();
        if features.get_child("bind", NS_BIND).is_none() {
            return Err(LoginError::Bind("not offered".into()));
        }
        let jid = self.bind(&mut reader, &mut writer).await?;
        // RFC 3921 session establishment, for servers that still require it (RFC 6121 dropped it).
        if let Some(session) = features.get_child("session", NS_SESSION)
            && session.get_child("optional", NS_SESSION).is_none()
        {
            send(&mut writer, format!("<iq type='set' id='sess1'><session xmlns='{NS_SESSION}'/></iq>").as_bytes()).await?;
            expect_iq_result(&mut reader, &mut writer, "sess1").await.map_err(|e| match e {
                LoginError::Bind(condition) => LoginError::Bind(format!("session:{condition}")),
                other => other,
            })?;
        }
        // Enabled before the presence, so that its echo is the first stanza counted.
        let sm_id = match self.stream_management {
            true => Some(crate::sm::enable(&features, &mut reader, &mut writer).await?),
            false => None,
        };
        if self.presence {
            send(&mut writer, b"<presence/>").await?;
        }
        times.bind = lap(&mut mark);
        Ok(Session { jid, reader, writer, times: *times, sm_id })
    }

    /// Connects, secures and authenticates a stream for `user`, and opens the stream that follows:
    /// its reader, writer and features (binding, stream management …).
    pub(crate) async fn authenticated_stream(
        &self,
        user: &str,
        source: Option<IpAddr>,
        phase: &mut Phase,
        times: &mut PhaseTimes,
    ) -> Result<(Reader, Writer, Element), LoginError> {
        let (mut reader, mut writer, features) = self.secured_stream(source, phase, times).await?;
        let mut mark = Instant::now();
        self.authenticate(user, &features, &mut reader, &mut writer).await?;
        times.sasl = lap(&mut mark);

        *phase = Phase::Bind;
        let mut reader = reader.restart();
        let features = self.open_stream(&mut reader, &mut writer).await?;
        Ok((reader, writer, features))
    }

    /// Connects, secures the stream (STARTTLS or direct TLS) and opens it: its reader, writer and
    /// features (the SASL mechanisms).
    pub(crate) async fn secured_stream(&self, source: Option<IpAddr>, phase: &mut Phase, times: &mut PhaseTimes) -> Result<(Reader, Writer, Element), LoginError> {
        let mut mark = Instant::now();
        let tcp = connect(self.server, source).await.map_err(LoginError::Connect)?;
        times.tcp = lap(&mut mark);

        let tcp = if self.direct_tls || self.websocket.is_some() {
            tcp
        } else {
            *phase = Phase::StartTls;
            self.starttls(tcp).await?
        };
        *phase = Phase::Tls;
        let tls = self.tls.connect(self.server_name.clone(), tcp).await.map_err(LoginError::Tls)?;
        let tls: Tls = match &self.websocket {
            Some(path) => Box::new(crate::websocket::open(tls, self.server, path, &self.domain).await.map_err(LoginError::Tls)?),
            None => Box::new(tls),
        };
        let (read, mut writer) = tokio::io::split(tls);
        let mut reader = StreamReader::new(read, Limits::default());
        times.tls = lap(&mut mark);

        *phase = Phase::Sasl;
        let features = self.open_stream(&mut reader, &mut writer).await?;
        Ok((reader, writer, features))
    }

    /// Plain stream up to `<proceed/>`; gives the socket back for the TLS handshake.
    async fn starttls(&self, tcp: TcpStream) -> Result<TcpStream, LoginError> {
        let mut reader = StreamReader::new(tcp, Limits::default());
        send(reader.get_mut(), &stream_header(&self.domain)).await?;
        expect_open(&mut reader).await?;
        let features = expect_features(&mut reader).await?;
        if features.get_child("starttls", NS_TLS).is_none() {
            return Err(LoginError::NoStartTls);
        }
        send(reader.get_mut(), format!("<starttls xmlns='{NS_TLS}'/>").as_bytes()).await?;
        let answer = next_element(&mut reader).await?;
        match (answer.name.as_str(), answer.ns.as_str()) {
            ("proceed", NS_TLS) => Ok(reader.into_inner()?),
            ("failure", NS_TLS) => Err(LoginError::StartTlsFailure),
            (name, _) => Err(LoginError::Unexpected(format!("<{name}/> after <starttls/>"))),
        }
    }

    /// Sends our header, reads the server's header and features.
    async fn open_stream(&self, reader: &mut Reader, writer: &mut Writer) -> Result<Element, LoginError> {
        send(writer, &stream_header(&self.domain)).await?;
        expect_open(reader).await?;
        expect_features(reader).await
    }

    async fn authenticate(&self, user: &str, features: &Element, reader: &mut Reader, writer: &mut Writer) -> Result<(), LoginError> {
        let wanted = self.mechanism.name();
        let offered = features
            .get_child("mechanisms", NS_SASL)
            .is_some_and(|m| m.children().any(|c| c.is("mechanism", NS_SASL) && c.text().trim() == wanted));
        if !offered {
            return Err(LoginError::MechanismNotOffered(wanted));
        }
        let (mut exchange, initial) = Exchange::start(self.mechanism, user, self.password.clone(), self.cache.clone())?;
        let mut auth = format!("<auth xmlns='{NS_SASL}' mechanism='{wanted}'>").into_bytes();
        // An empty initial response is sent as "=" (RFC 6120 §6.4.2).
        if initial.is_empty() {
            auth.push(b'=');
        } else {
            auth.extend_from_slice(BASE64.encode(&initial).as_bytes());
        }
        auth.extend_from_slice(b"</auth>");
        send(writer, &auth).await?;
        loop {
            let element = next_element(reader).await?;
            if element.ns != NS_SASL {
                return Err(LoginError::Unexpected(format!("<{}/> during SASL", element.name)));
            }
            match element.name.as_str() {
                "challenge" => {
                    let data = sasl_payload(&element)?;
                    let response = match exchange.step(Some(&data))? {
                        Next::Respond(bytes) => bytes,
                        Next::Done => Vec::new(),
                    };
                    let mut out = format!("<response xmlns='{NS_SASL}'>").into_bytes();
                    out.extend_from_slice(BASE64.encode(&response).as_bytes());
                    out.extend_from_slice(b"</response>");
                    send(writer, &out).await?;
                }
                "success" => {
                    let data = sasl_payload(&element)?;
                    if !exchange.is_finished() {
                        if data.is_empty() {
                            return Err(LoginError::Unexpected("<success/> without the SCRAM server signature".into()));
                        }
                        exchange.step(Some(&data))?;
                    }
                    if !exchange.is_finished() {
                        return Err(LoginError::Unexpected("<success/> before the exchange finished".into()));
                    }
                    return Ok(());
                }
                "failure" => {
                    let condition = tree(&element)?.children().next().map(|c| c.name().to_owned()).unwrap_or_else(|| "unspecified".into());
                    return Err(LoginError::SaslFailure(condition));
                }
                other => return Err(LoginError::Unexpected(format!("<{other}/> during SASL"))),
            }
        }
    }

    async fn bind(&self, reader: &mut Reader, writer: &mut Writer) -> Result<String, LoginError> {
        let mut request = format!("<iq type='set' id='bind1'><bind xmlns='{NS_BIND}'><resource>").into_bytes();
        escape_text(&mut request, &self.resource);
        request.extend_from_slice(b"</resource></bind></iq>");
        send(writer, &request).await?;
        let result = expect_iq_result(reader, writer, "bind1").await?;
        result
            .get_child("bind", NS_BIND)
            .and_then(|b| b.get_child("jid", NS_BIND))
            .map(|j| j.text().trim().to_owned())
            .filter(|j| !j.is_empty())
            .ok_or_else(|| LoginError::Bind("result without a JID".into()))
    }
}

pub(crate) fn lap(mark: &mut Instant) -> Duration {
    let now = Instant::now();
    let elapsed = now - *mark;
    *mark = now;
    elapsed
}

/// Connects, binding the local end to `source` first when given. Nagle is off: stanzas are small
/// and latency is measured.
pub async fn connect(server: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if server.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn stream_header(domain: &str) -> Vec<u8> {
    let mut out = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en' to='".to_vec();
    escape_attr(&mut out, domain);
    out.extend_from_slice(b"'>");
    out
}

/// Writes and flushes (TLS buffers records until flushed).
pub async fn send<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

/// Ends the stream politely and closes the connection (TLS close_notify, then FIN).
pub async fn close<W: AsyncWrite + Unpin>(writer: &mut W) -> io::Result<()> {
    send(writer, b"</stream:stream>").await?;
    writer.shutdown().await
}

async fn expect_open<R: AsyncRead + Unpin>(reader: &mut StreamReader<R>) -> Result<(), LoginError> {
    match reader.next().await? {
        StreamEvent::Open(_) => Ok(()),
        StreamEvent::Close => Err(LoginError::StreamClosed),
        StreamEvent::Element(element) => Err(LoginError::Unexpected(format!("<{}/> before the stream header", element.name))),
    }
}

async fn expect_features<R: AsyncRead + Unpin>(reader: &mut StreamReader<R>) -> Result<Element, LoginError> {
    let element = next_element(reader).await?;
    if element.name != "features" || element.ns != NS_STREAMS {
        return Err(LoginError::Unexpected(format!("<{}/> instead of stream features", element.name)));
    }
    tree(&element)
}

/// The next element of a session's stream during a run; `None` once `shutdown` is set or the stream
/// ended, after telling `failed` why it ended (kind, message). Stream errors are elements here: each
/// scenario reports them itself.
pub async fn next_in_run(reader: &mut Reader, shutdown: &mut watch::Receiver<bool>, failed: impl FnOnce(String, String)) -> Option<RawElement> {
    loop {
        if *shutdown.borrow() {
            return None;
        }
        let event = tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return None;
                }
                continue;
            }
            // Dropping this read mid-element on shutdown is fine: the stream is not read again.
            event = reader.next() => event,
        };
        let (kind, message) = match event {
            Ok(StreamEvent::Element(element)) => return Some(element),
            Ok(StreamEvent::Close) => ("stream-closed".to_owned(), "server closed the stream".to_owned()),
            Ok(StreamEvent::Open(_)) => ("unexpected".to_owned(), "second stream header".to_owned()),
            Err(failure) => {
                let failure = LoginError::from(failure);
                (failure.kind(), failure.to_string())
            }
        };
        failed(kind, message);
        return None;
    }
}

/// What a run's reader does with an element its scenario does not measure: answers the server's
/// IQs and reports a stream error. `false` when the stream is over (after telling `failed` why).
pub async fn handle_other(writer: &AsyncMutex<Writer>, element: &RawElement, failed: impl FnOnce(String, String)) -> bool {
    match element.name.as_str() {
        "iq" => match answer_iq(&mut *writer.lock().await, element).await {
            Ok(()) => true,
            Err(failure) => {
                failed(format!("io:{}", io_kind(&failure)), failure.to_string());
                false
            }
        },
        "error" if element.ns == NS_STREAMS => {
            let condition = stream_error_condition(element);
            failed(format!("stream-error:{condition}"), format!("stream error {condition}"));
            false
        }
        _ => true,
    }
}

/// The next top-level element; a stream error or the end of the stream is an error.
pub(crate) async fn next_element<R: AsyncRead + Unpin>(reader: &mut StreamReader<R>) -> Result<RawElement, LoginError> {
    match reader.next().await? {
        StreamEvent::Element(element) if element.name == "error" && element.ns == NS_STREAMS => {
            Err(LoginError::StreamError(stream_error_condition(&element)))
        }
        StreamEvent::Element(element) => Ok(element),
        StreamEvent::Open(_) => Err(LoginError::Unexpected("second stream header".into())),
        StreamEvent::Close => Err(LoginError::StreamClosed),
    }
}

/// Waits for the answer to IQ `id`, answering the server's own IQs meanwhile. Returns the result
/// element; an error result becomes [`LoginError::Bind`] with the stanza error condition.
async fn expect_iq_result(reader: &mut Reader, writer: &mut Writer, id: &str) -> Result<Element, LoginError> {
    loop {
        let element = next_element(reader).await?;
        if element.name != "iq" {
            continue;
        }
        if element.attr("id") != Some(id) {
            answer_iq(writer, &element).await?;
            continue;
        }
        return match element.attr("type") {
            Some("result") => tree(&element),
            Some("error") => Err(LoginError::Bind(stanza_error_condition(&tree(&element)?))),
            other => Err(LoginError::Unexpected(format!("iq type {other:?} answering {id}"))),
        };
    }
}

/// Answers an IQ request from the server: pings (XEP-0199) with a result, anything else with
/// `service-unavailable` (RFC 6120 §8.2.3 requires an answer to every get/set). Results and errors
/// are ignored.
pub async fn answer_iq<W: AsyncWrite + Unpin>(writer: &mut W, iq: &RawElement) -> io::Result<()> {
    let Some(reply) = iq_reply(iq) else { return Ok(()) };
    send(writer, &reply).await
}

/// The reply [`answer_iq`] sends, if any.
pub fn iq_reply(iq: &RawElement) -> Option<Vec<u8>> {
    if iq.name != "iq" || !matches!(iq.attr("type"), Some("get" | "set")) {
        return None;
    }
    let is_ping = tree(iq).is_ok_and(|t| t.get_child("ping", NS_PING).is_some());
    let mut out = b"<iq id='".to_vec();
    escape_attr(&mut out, iq.attr("id").unwrap_or_default());
    out.push(b'\'');
    if let Some(from) = iq.attr("from") {
        out.extend_from_slice(b" to='");
        escape_attr(&mut out, from);
        out.push(b'\'');
    }
    if is_ping {
        out.extend_from_slice(b" type='result'/>");
    } else {
        out.extend_from_slice(
            format!(" type='error'><error type='cancel'><service-unavailable xmlns='{NS_STANZA_ERRORS}'/></error></iq>").as_bytes(),
        );
    }
    Some(out)
}

/// Builds a tree of a top-level element. Its bytes may use prefixes declared on the stream
/// element (`stream:features`), so they are parsed inside a wrapper declaring those.
pub fn tree(raw: &RawElement) -> Result<Element, LoginError> {
    let mut doc = Vec::with_capacity(raw.bytes.len() + 160);
    doc.extend_from_slice(format!("<w xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}'").as_bytes());
    for (declaration, ns) in raw.stream_prefixes.iter() {
        if declaration != "xmlns:stream" {
            doc.push(b' ');
            doc.extend_from_slice(declaration.as_bytes());
            doc.extend_from_slice(b"='");
            escape_attr(&mut doc, ns);
            doc.push(b'\'');
        }
    }
    // The element's own prefix, in case the server named the streams prefix otherwise.
    if let Some(prefix) = element_prefix(&raw.bytes)
        && prefix != "stream"
        && !raw.stream_prefixes.iter().any(|(d, _)| d.strip_prefix("xmlns:") == Some(prefix))
    {
        doc.extend_from_slice(format!(" xmlns:{prefix}='").as_bytes());
        escape_attr(&mut doc, &raw.ns);
        doc.push(b'\'');
    }
    doc.push(b'>');
    doc.extend_from_slice(&raw.bytes);
    doc.extend_from_slice(b"</w>");
    let wrapper = Element::parse(&doc).map_err(|e| LoginError::Unexpected(format!("unparsable <{}/>: {e}", raw.name)))?;
    wrapper.into_children().next().ok_or_else(|| LoginError::Unexpected(format!("empty <{}/>", raw.name)))
}

fn element_prefix(bytes: &[u8]) -> Option<&str> {
    let rest = bytes.strip_prefix(b"<")?;
    let end = rest.iter().position(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/')?;
    let qname = std::str::from_utf8(&rest[..end]).ok()?;
    qname.split_once(':').map(|(prefix, _)| prefix)
}

/// Base64 text of a SASL element; empty or "=" is no data.
pub(crate) fn sasl_payload(raw: &RawElement) -> Result<Vec<u8>, LoginError> {
    let text = tree(raw)?.text();
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return Ok(Vec::new());
    }
    BASE64.decode(text).map_err(|_| LoginError::Unexpected(format!("bad base64 in <{}/>", raw.name)))
}

/// The defined condition of a stream error (RFC 6120 §4.9.3).
pub fn stream_error_condition(raw: &RawElement) -> String {
    tree(raw)
        .ok()
        .and_then(|t| t.children().find(|c| c.ns() == NS_STREAM_ERRORS && c.name() != "text").map(|c| c.name().to_owned()))
        .unwrap_or_else(|| "undefined-condition".into())
}

/// The defined condition of a stanza error (RFC 6120 §8.3.3).
fn stanza_error_condition(stanza: &Element) -> String {
    stanza
        .children()
        .find(|c| c.name() == "error")
        .and_then(|e| e.children().find(|c| c.ns() == NS_STANZA_ERRORS && c.name() != "text").map(|c| c.name().to_owned()))
        .unwrap_or_else(|| "undefined-condition".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn elements(wire: &str) -> Vec<RawElement> {
        let mut reader = StreamReader::new(wire.as_bytes(), Limits::default());
        let mut out = Vec::new();
        while let Ok(event) = reader.next().await {
            if let StreamEvent::Element(e) = event {
                out.push(e);
            }
        }
        out
    }

    const HEADER: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

    #[tokio::test]
    async fn features_parse_with_stream_prefix() {
        let wire = format!(
            "{HEADER}<stream:features><mechanisms xmlns='{NS_SASL}'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
        );
        let parsed = elements(&wire).await;
        let features = tree(&parsed[0]).expect("parses");
        assert!(features.is("features", NS_STREAMS));
        let mechanisms = features.get_child("mechanisms", NS_SASL).expect("mechanisms");
        assert_eq!(mechanisms.children().next().map(|m| m.text()), Some("PLAIN".to_owned()));
    }

    #[tokio::test]
    async fn ping_gets_result_other_gets_error() {
        let wire = format!(
            "{HEADER}<iq type='get' id='p1' from='localhost'><ping xmlns='{NS_PING}'/></iq><iq type='get' id='v1'><query xmlns='jabber:iq:version'/></iq><iq type='result' id='r'/>"
        );
        let parsed = elements(&wire).await;
        let ping = String::from_utf8(iq_reply(&parsed[0]).expect("reply")).expect("utf8");
        assert_eq!(ping, "<iq id='p1' to='localhost' type='result'/>");
        let other = String::from_utf8(iq_reply(&parsed[1]).expect("reply")).expect("utf8");
        assert!(other.contains("service-unavailable"));
        assert!(iq_reply(&parsed[2]).is_none());
    }

    #[tokio::test]
    async fn stream_error_condition_is_read() {
        let wire = format!("{HEADER}<stream:error><policy-violation xmlns='{NS_STREAM_ERRORS}'/><text xmlns='{NS_STREAM_ERRORS}'>x</text></stream:error>");
        let parsed = elements(&wire).await;
        assert_eq!(stream_error_condition(&parsed[0]), "policy-violation");
    }
}
