//! One client connection, from the first byte to the close: stream negotiation (RFC 6120 §4–§7),
//! then the stanza loop. The reading side runs here; after binding, a writer task owns the socket's
//! write half, the outbound queue and the XEP-0199 liveness check.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use bytes::Bytes;
use starling_cluster::gateway::{BoundSession, ClientLink, ToClient};
use starling_protocol::{ns, Jid, Stanza, StanzaError, StanzaErrorCondition, StanzaKind, StreamError, StreamErrorCondition};
use starling_xml::{escape_attr, Element, FrameError, RawElement, StreamEvent, StreamReader};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{self, WeakSender};

use crate::listener::Edge;
use crate::sasl::{self, Exchange, Step};

/// Any byte stream a client can be on: plain TCP or TLS over it.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
type BoxedIo = Box<dyn Io>;

/// Why negotiation or the session ended early.
enum End {
    /// Send this stream error, then close.
    Error(StreamError),
    /// The peer closed or the socket failed: nothing more to send.
    Gone,
    /// The peer closed the stream cleanly: answer with our close tag.
    Closed,
}

impl From<FrameError> for End {
    fn from(error: FrameError) -> End {
        match StreamError::for_frame_error(&error) {
            Some(stream_error) => End::Error(stream_error),
            None => End::Gone,
        }
    }
}

impl From<std::io::Error> for End {
    fn from(_: std::io::Error) -> End {
        End::Gone
    }
}

fn stream_error(condition: StreamErrorCondition, text: &str) -> End {
    End::Error(StreamError::new(condition).with_text(text))
}

pub(crate) struct Connection {
    edge: Arc<Edge>,
    id: u64,
    peer: SocketAddr,
    reader: StreamReader<ReadHalf<BoxedIo>>,
    writer: WriteHalf<BoxedIo>,
    secure: bool,
    /// tls-exporter channel binding (TLS 1.3 only).
    exporter: Option<Vec<u8>>,
    header_sent: bool,
    /// The localpart authenticated on this stream.
    authenticated: Option<String>,
    failed_auths: u32,
}

impl Connection {
    pub async fn run(edge: Arc<Edge>, id: u64, socket: TcpStream, peer: SocketAddr, direct_tls: bool) {
        let _open = OpenConnection::count(&edge);
        let limits = edge.config.limits;
        let (io, secure, exporter) = if direct_tls {
            match Box::pin(accept_tls(&edge, Box::new(socket))).await {
                Some((io, exporter)) => (io, true, exporter),
                None => return,
            }
        } else {
            (Box::new(socket) as BoxedIo, false, None)
        };
        let (read, writer) = tokio::io::split(io);
        let mut connection = Connection {
            edge: edge.clone(),
            id,
            peer,
            reader: StreamReader::new(read, limits),
            writer,
            secure,
            exporter,
            header_sent: false,
            authenticated: None,
            failed_auths: 0,
        };
        // Boxed: negotiation's state (TLS handshake, SASL) is large and short-lived; inline, it
        // would size the task of every idle connection for its whole life.
        let negotiated = tokio::time::timeout(edge.config.negotiation_timeout, Box::pin(connection.negotiate())).await;
        let end = match negotiated {
            Ok(Ok(bound)) => return connection.serve(bound).await,
            Ok(Err(end)) => end,
            Err(_) => stream_error(StreamErrorCondition::ConnectionTimeout, "negotiation took too long"),
        };
        connection.finish(end).await;
    }

    /// Writes the closing of the stream for `end` and shuts the socket.
    async fn finish(&mut self, end: End) {
        let mut out = Vec::new();
        match end {
            End::Gone => return,
            End::Closed => {}
            End::Error(error) => {
                if !self.header_sent {
                    out.extend_from_slice(&self.stream_header(None));
                }
                out.extend_from_slice(&error.to_bytes());
            }
        }
        out.extend_from_slice(b"</stream:stream>");
        let _ = self.writer.write_all(&out).await;
        let _ = self.writer.shutdown().await;
    }

    fn stream_header(&self, stream_id: Option<&str>) -> Vec<u8> {
        let id = stream_id.map(str::to_owned).unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en' id='");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"' from='");
        escape_attr(&mut out, self.edge.config.domain.as_str());
        out.extend_from_slice(b"'>");
        out
    }

    /// Writes and flushes: during negotiation every write is followed by a wait for the peer, and
    /// over TLS bytes not flushed may sit in the TLS layer's buffer while both sides wait.
    async fn send(&mut self, bytes: &[u8]) -> Result<(), End> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// Reads the next top-level element; a stream close or restart here is the peer's mistake.
    async fn next_element(&mut self) -> Result<RawElement, End> {
        match self.reader.next().await? {
            StreamEvent::Element(element) => Ok(element),
            StreamEvent::Close => Err(End::Closed),
            StreamEvent::Open(_) => Err(stream_error(StreamErrorCondition::BadFormat, "unexpected stream header")),
        }
    }

    /// Reads the client's stream header and answers with ours and the features for this stage.
    async fn open_stream(&mut self) -> Result<(), End> {
        let header = match self.reader.next().await? {
            StreamEvent::Open(header) => header,
            _ => return Err(stream_error(StreamErrorCondition::BadFormat, "expected a stream header")),
        };
        let ours = self.stream_header(None);
        self.send(&ours).await?;
        self.header_sent = true;
        if header.content_ns != ns::CLIENT {
            return Err(stream_error(StreamErrorCondition::InvalidNamespace, "this port serves jabber:client"));
        }
        let to_ok = header.to.as_deref().and_then(|to| Jid::new(to).ok()).is_some_and(|to| to == self.edge.config.domain);
        if !to_ok {
            return Err(stream_error(StreamErrorCondition::HostUnknown, "this server does not serve that domain"));
        }
        if header.version.as_deref().is_none_or(|v| !v.starts_with('1')) {
            return Err(stream_error(StreamErrorCondition::UnsupportedVersion, "version 1.0 required"));
        }
        let features = self.features();
        self.send(&features).await
    }

    fn features(&self) -> Vec<u8> {
        let config = &self.edge.config;
        let mut features = Element::new("features", starling_xml::NS_STREAMS);
        if self.authenticated.is_some() {
            features.push_child(Element::new("bind", ns::BIND));
            features.push_child(Element::new("session", ns::SESSION).with_child(Element::new("optional", ns::SESSION)));
            features.push_child(Element::new("ver", ns::ROSTER_VER));
            features.push_child(Element::new("sub", ns::PRE_APPROVAL));
            features.push_child(
                Element::new("c", ns::CAPS)
                    .with_attr("hash", "sha-1")
                    .with_attr("node", config.caps_node.as_str())
                    .with_attr("ver", config.caps_ver.as_str()),
            );
        } else {
            if !self.secure {
                let mut starttls = Element::new("starttls", ns::TLS);
                if config.require_tls {
                    starttls.push_child(Element::new("required", ns::TLS));
                }
                features.push_child(starttls);
            }
            if self.secure || !config.require_tls {
                let mut mechanisms = Element::new("mechanisms", ns::SASL);
                for mechanism in sasl::mechanisms(self.exporter.is_some(), self.secure) {
                    mechanisms.push_child(Element::new("mechanism", ns::SASL).with_text(mechanism));
                }
                features.push_child(mechanisms);
                if config.registration_enabled {
                    features.push_child(Element::new("register", ns::REGISTER_FEATURE));
                }
            }
        }
        // `stream:` is declared on our header; each feature declares its own namespace.
        let mut out = b"<stream:features>".to_vec();
        for feature in features.children() {
            feature.write_in_ns(&mut out, "");
        }
        out.extend_from_slice(b"</stream:features>");
        out
    }

    /// Everything up to a bound resource.
    async fn negotiate(&mut self) -> Result<Bound, End> {
        self.open_stream().await?;
        loop {
            let element = self.next_element().await?;
            match (element.ns.as_str(), element.name.as_str()) {
                (ns::TLS, "starttls") => self.starttls().await?,
                (ns::SASL, "auth") => {
                    if self.authenticate(&element).await? {
                        self.reader = std::mem::replace(&mut self.reader, placeholder_reader()).restart();
                        self.open_stream().await?;
                    }
                }
                (ns::CLIENT, "iq") if self.authenticated.is_some() => {
                    if let Some(bound) = self.bind_or_answer(&element).await? {
                        return Ok(bound);
                    }
                }
                (ns::CLIENT, "iq") if element.bytes.windows(ns::REGISTER.len()).any(|w| w == ns::REGISTER.as_bytes()) => {
                    let reply = crate::register::handle(&self.edge, self.peer.ip(), self.secure, &element).await;
                    self.send(&reply).await?;
                }
                _ => return Err(stream_error(StreamErrorCondition::NotAuthorized, "authenticate and bind first")),
            }
        }
    }

    async fn starttls(&mut self) -> Result<(), End> {
        if self.secure || self.authenticated.is_some() {
            self.send(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await?;
            return Err(End::Closed);
        }
        self.send(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await?;
        let reader = std::mem::replace(&mut self.reader, placeholder_reader());
        let read = reader.into_inner()?;
        let writer = std::mem::replace(&mut self.writer, tokio::io::split(Box::new(tokio::io::empty()) as BoxedIo).1);
        let io = read.unsplit(writer);
        let Some((io, exporter)) = accept_tls(&self.edge, io).await else { return Err(End::Gone) };
        let (read, writer) = tokio::io::split(io);
        self.reader = StreamReader::new(read, self.edge.config.limits);
        self.writer = writer;
        self.secure = true;
        self.exporter = exporter;
        self.header_sent = false;
        self.open_stream().await
    }

    /// Runs one SASL exchange. `Ok(true)` when the client is authenticated.
    async fn authenticate(&mut self, auth: &RawElement) -> Result<bool, End> {
        let mechanism = auth.attr("mechanism").unwrap_or_default().to_owned();
        let offered = sasl::mechanisms(self.exporter.is_some(), self.secure);
        if !self.secure && self.edge.config.require_tls {
            return self.sasl_failure("encryption-required").await.map(|_| false);
        }
        if self.authenticated.is_some() || !offered.contains(&mechanism.as_str()) {
            let condition = if mechanism == "PLAIN" { "encryption-required" } else { "invalid-mechanism" };
            return self.sasl_failure(condition).await.map(|_| false);
        }
        let Some(initial) = decode_sasl(&auth.bytes[auth.body_offset..]) else {
            return self.sasl_failure("incorrect-encoding").await.map(|_| false);
        };
        let Some(username) = sasl::initial_username(&mechanism, &initial) else {
            return self.sasl_failure("malformed-request").await.map(|_| false);
        };
        let ip = self.peer.ip();
        if self.edge.throttle.is_blocked(ip, &username) {
            self.edge.metrics.login(&mechanism, false);
            return self.sasl_failure("temporary-auth-failure").await.map(|_| false);
        }
        let account = Jid::from_parts(Some(&username), self.edge.config.domain.as_str(), None).ok();
        let credentials = match &account {
            Some(jid) => self.edge.accounts.credentials(jid.as_str()).await.unwrap_or_else(|error| {
                tracing::warn!(%error, "credential lookup failed");
                None
            }),
            None => None,
        };
        let exchange = Exchange::start(&mechanism, username.clone(), credentials, self.exporter.clone());
        let mut exchange = match exchange {
            Ok(exchange) => exchange,
            Err(condition) => return self.sasl_failure(condition).await.map(|_| false),
        };
        let mut input = initial;
        loop {
            match exchange.step(&input) {
                Step::Challenge(data) => {
                    let challenge = sasl_element("challenge", &data);
                    self.send(&challenge).await?;
                    let response = self.next_element().await?;
                    match (response.ns.as_str(), response.name.as_str()) {
                        (ns::SASL, "response") => match decode_sasl(&response.bytes[response.body_offset..]) {
                            Some(data) => input = data,
                            None => return self.sasl_failure("incorrect-encoding").await.map(|_| false),
                        },
                        (ns::SASL, "abort") => return self.sasl_failure("aborted").await.map(|_| false),
                        _ => return Err(stream_error(StreamErrorCondition::NotAuthorized, "SASL exchange interrupted")),
                    }
                }
                Step::Success(data) => {
                    self.edge.metrics.login(&mechanism, true);
                    self.edge.throttle.record_success(ip, &username);
                    let success = sasl_element("success", &data);
                    self.send(&success).await?;
                    self.authenticated = account.and_then(|j| j.node().map(str::to_owned));
                    return Ok(self.authenticated.is_some());
                }
                Step::Failure(condition) => {
                    self.edge.metrics.login(&mechanism, false);
                    self.edge.throttle.record_failure(ip, &username);
                    self.sasl_failure(condition).await?;
                    self.failed_auths += 1;
                    if self.failed_auths >= self.edge.config.max_auth_attempts {
                        return Err(stream_error(StreamErrorCondition::PolicyViolation, "too many failed authentication attempts"));
                    }
                    return Ok(false);
                }
            }
        }
    }

    async fn sasl_failure(&mut self, condition: &str) -> Result<(), End> {
        let failure = format!("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><{condition}/></failure>");
        self.send(failure.as_bytes()).await
    }

    /// After authentication: binds a resource (RFC 6120 §7), or answers the legacy session IQ.
    async fn bind_or_answer(&mut self, iq: &RawElement) -> Result<Option<Bound>, End> {
        let id = iq.attr("id").unwrap_or_default().to_owned();
        let element = Element::parse(&iq.rewrite(&[])).map_err(|e| End::Error(StreamError::for_frame_error(&FrameError::from(e)).unwrap_or(StreamError::new(StreamErrorCondition::BadFormat))))?;
        let Some(bind) = element.get_child("bind", ns::BIND) else {
            if element.get_child("session", ns::SESSION).is_some() {
                self.send(format!("<iq type='result' id='{}'/>", xml_attr(&id)).as_bytes()).await?;
                return Ok(None);
            }
            return Err(stream_error(StreamErrorCondition::NotAuthorized, "bind a resource first"));
        };
        if iq.attr("type") != Some("set") {
            self.send(&iq_error(&id, StanzaErrorCondition::BadRequest)).await?;
            return Ok(None);
        }
        let requested = bind.get_child("resource", ns::BIND).map(|r| r.text()).filter(|r| !r.is_empty());
        let user = match self.authenticated.as_deref().map(|node| Jid::from_parts(Some(node), self.edge.config.domain.as_str(), None)) {
            Some(Ok(user)) => user,
            _ => return Err(stream_error(StreamErrorCondition::InternalServerError, "lost the authenticated identity")),
        };
        if let Some(resource) = &requested
            && user.with_resource(resource).is_err()
        {
            self.send(&iq_error(&id, StanzaErrorCondition::BadRequest)).await?;
            return Ok(None);
        }
        let (sender, receiver) = mpsc::channel(self.edge.config.client_queue);
        let own_end = sender.downgrade();
        let link = ClientLink::new(self.id, sender);
        let session = match self.edge.gateway.bind(user, requested, link).await {
            Ok(session) => session,
            Err(error) => {
                tracing::warn!(%error, "bind failed");
                self.send(&iq_error(&id, StanzaErrorCondition::InternalServerError)).await?;
                return Ok(None);
            }
        };
        let mut result = b"<iq type='result' id='".to_vec();
        escape_attr(&mut result, &id);
        result.extend_from_slice(b"'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>");
        starling_xml::escape_text(&mut result, session.jid().as_str());
        result.extend_from_slice(b"</jid></bind></iq>");
        self.send(&result).await?;
        Ok(Some(Bound { session, outbound: receiver, own_end }))
    }

    /// The bound stream: stanzas from the client go to the session; a writer task sends what the
    /// session queues and checks the client is alive.
    async fn serve(mut self, bound: Bound) {
        let Bound { mut session, outbound, own_end } = bound;
        let jid = session.jid().clone();
        let activity = self.reader.activity();
        let ping_id = format!("ping-{:x}", rand::random::<u64>());
        let writer = std::mem::replace(&mut self.writer, tokio::io::split(Box::new(tokio::io::empty()) as BoxedIo).1);
        let mut writer_task = tokio::spawn(write_loop(writer, outbound, activity, self.edge.clone(), jid.clone(), ping_id.clone()));
        // The writer ends first when the client is dead (ping timeout), too slow, or gone: then the
        // read is abandoned mid-way, which is fine since the stream is not read again.
        let (end, writer_done) = tokio::select! {
            end = self.read_loop(session.as_mut(), &jid, &ping_id, &own_end) => (end, false),
            _ = &mut writer_task => (End::Gone, true),
        };
        // The close is queued before unbinding, behind whatever the session already queued: after
        // unbinding the session's end of the queue is gone, and an empty, closed queue is how the
        // writer learns that a client read too slowly.
        match (&end, writer_done) {
            (_, true) | (End::Gone, _) => writer_task.abort(),
            (End::Error(error), false) => {
                queue_to_client(&own_end, ToClient::Close(error.clone())).await;
            }
            (End::Closed, false) => {
                queue_to_client(&own_end, ToClient::EndStream).await;
            }
        }
        session.unbind().await;
        // A finished task must not be awaited again (its handle panics).
        if !writer_done {
            let _ = writer_task.await;
        }
    }

    /// Reads the client's stanzas and hands them to the session until the stream ends.
    async fn read_loop(&mut self, session: &mut dyn BoundSession, jid: &Jid, ping_id: &str, own_end: &WeakSender<ToClient>) -> End {
        let counters = self.edge.metrics.stanzas_in();
        loop {
            let element = match self.reader.next().await {
                Ok(StreamEvent::Element(element)) => element,
                Ok(StreamEvent::Close) => return End::Closed,
                Ok(StreamEvent::Open(_)) => return stream_error(StreamErrorCondition::BadFormat, "unexpected stream header"),
                Err(error) => return End::from(error),
            };
            let received = Instant::now();
            let Some(kind) = (element.ns == ns::CLIENT).then(|| StanzaKind::from_name(&element.name)).flatten() else {
                return stream_error(StreamErrorCondition::UnsupportedStanzaType, "not a jabber:client stanza");
            };
            match kind {
                StanzaKind::Message => counters.message.inc(),
                StanzaKind::Presence => counters.presence.inc(),
                StanzaKind::Iq => counters.iq.inc(),
            }
            if kind == StanzaKind::Iq && element.attr("type") == Some("result") && element.attr("id") == Some(ping_id) {
                continue;
            }
            match stamp(&element, kind, jid) {
                Ok(stanza) => {
                    if session.submit(stanza, received).await.is_err() {
                        return End::Gone;
                    }
                }
                Err(reply) => {
                    if !queue_to_client(own_end, ToClient::Stanza(reply)).await {
                        return End::Gone;
                    }
                }
            }
        }
    }
}

/// Counts a connection in `starling_connections_open` for as long as it lives, however it ends.
struct OpenConnection(Arc<Edge>);

impl OpenConnection {
    fn count(edge: &Arc<Edge>) -> OpenConnection {
        edge.metrics.connections_open.inc();
        OpenConnection(edge.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.metrics.connections_open.dec();
    }
}

/// What binding hands to the bound stream.
struct Bound {
    session: Box<dyn BoundSession>,
    outbound: mpsc::Receiver<ToClient>,
    /// The edge's own way into the queue: weak, so that the session dropping its end still closes
    /// the queue (see [`ClientLink`]).
    own_end: WeakSender<ToClient>,
}

/// Queues something from the edge itself (a stanza error, the close); false when the session
/// already dropped the queue.
async fn queue_to_client(own_end: &WeakSender<ToClient>, message: ToClient) -> bool {
    match own_end.upgrade() {
        Some(sender) => sender.send(message).await.is_ok(),
        None => false,
    }
}

/// Writes what the session queues; pings a silent client and closes a dead one.
async fn write_loop(
    mut writer: WriteHalf<BoxedIo>,
    mut outbound: mpsc::Receiver<ToClient>,
    activity: Arc<AtomicU64>,
    edge: Arc<Edge>,
    jid: Jid,
    ping_id: String,
) {
    let mut last_seen = activity.load(Ordering::Relaxed);
    let mut ping_sent = false;
    let mut check = tokio::time::interval(edge.config.ping_idle);
    check.tick().await;
    loop {
        let next = tokio::select! {
            message = outbound.recv() => match message {
                Some(message) => message,
                // The session dropped our queue: this client read too slowly (see ClientLink).
                None => ToClient::Close(StreamError::new(StreamErrorCondition::PolicyViolation).with_text("too slow to read")),
            },
            _ = check.tick() => {
                let seen = activity.load(Ordering::Relaxed);
                if seen != last_seen {
                    last_seen = seen;
                    ping_sent = false;
                    check.reset_after(edge.config.ping_idle);
                    continue;
                }
                if ping_sent {
                    ToClient::Close(StreamError::new(StreamErrorCondition::ConnectionTimeout))
                } else {
                    ping_sent = true;
                    check.reset_after(edge.config.ping_timeout);
                    let ping = format!(
                        "<iq type='get' id='{ping_id}' from='{}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
                        xml_attr(edge.config.domain.as_str()),
                        xml_attr(jid.as_str())
                    );
                    ToClient::Stanza(Bytes::from(ping))
                }
            }
        };
        let first = match next {
            ToClient::Stanza(bytes) => bytes,
            closing => return close_stream(&mut writer, Vec::new(), closing).await,
        };
        // Gather what is already queued into one write; a lone stanza is written as it is. No
        // buffer is kept between bursts: an idle connection holds none.
        let written = match outbound.try_recv() {
            Err(_) => writer.write_all(&first).await,
            Ok(second) => {
                let mut batch = first.to_vec();
                let mut next = Some(second);
                while let Some(message) = next.take() {
                    match message {
                        ToClient::Stanza(bytes) => batch.extend_from_slice(&bytes),
                        closing => return close_stream(&mut writer, batch, closing).await,
                    }
                    if batch.len() < 64 * 1024 {
                        next = outbound.try_recv().ok();
                    }
                }
                writer.write_all(&batch).await
            }
        };
        if written.is_err() {
            return;
        }
    }
}

/// Writes what is pending, the stream error if any, and the closing tag; then shuts the socket.
async fn close_stream(writer: &mut WriteHalf<BoxedIo>, mut pending: Vec<u8>, closing: ToClient) {
    match closing {
        ToClient::Stanza(bytes) => pending.extend_from_slice(&bytes),
        ToClient::Close(error) => pending.extend_from_slice(&error.to_bytes()),
        ToClient::EndStream => {}
    }
    pending.extend_from_slice(b"</stream:stream>");
    let _ = writer.write_all(&pending).await;
    let _ = writer.shutdown().await;
}

/// Turns a client's element into a stanza with the sender stamped (RFC 6120 §8.1.2.1), or the error
/// to send back when its addressing is invalid.
fn stamp(element: &RawElement, kind: StanzaKind, jid: &Jid) -> Result<Stanza, Bytes> {
    // RFC 6120 §8.2.3: an IQ needs an id and one of the four types.
    let iq_valid = kind != StanzaKind::Iq
        || (element.attr("id").is_some() && matches!(element.attr("type"), Some("get" | "set" | "result" | "error")));
    let to = match element.attr("to").map(Jid::new) {
        None if iq_valid => None,
        Some(Ok(to)) if iq_valid => Some(to),
        invalid => {
            let condition = if matches!(invalid, Some(Err(_))) { StanzaErrorCondition::JidMalformed } else { StanzaErrorCondition::BadRequest };
            let error = StanzaError::new(condition);
            let reply = Element::new(kind.as_str(), ns::CLIENT).with_attr("type", "error").with_child(error.to_element());
            let mut reply = reply;
            if let Some(id) = element.attr("id") {
                reply.set_attr("id", id);
            }
            return Err(Bytes::from(reply.to_bytes()));
        }
    };
    let bytes = element.rewrite(&[("from", Some(jid.as_str())), ("to", to.as_ref().map(Jid::as_str))]);
    Ok(Stanza {
        kind,
        from: jid.clone(),
        to,
        id: element.attr("id").map(str::to_owned),
        stanza_type: element.attr("type").map(str::to_owned),
        bytes,
    })
}

fn iq_error(id: &str, condition: StanzaErrorCondition) -> Vec<u8> {
    let iq = Element::new("iq", ns::CLIENT)
        .with_attr("type", "error")
        .with_attr("id", id)
        .with_child(StanzaError::new(condition).to_element());
    let mut out = Vec::new();
    iq.write_in_ns(&mut out, ns::CLIENT);
    out
}

fn xml_attr(value: &str) -> String {
    let mut out = Vec::new();
    escape_attr(&mut out, value);
    String::from_utf8(out).unwrap_or_default()
}

fn sasl_element(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = format!("<{name} xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>").into_bytes();
    if data.is_empty() {
        out.push(b'=');
    } else {
        out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(data).as_bytes());
    }
    out.extend_from_slice(format!("</{name}>").as_bytes());
    out
}

/// The base64 payload of `<auth>`/`<response>` after the start tag; `=` is an empty response
/// (RFC 6120 §6.4.2).
fn decode_sasl(body: &[u8]) -> Option<Vec<u8>> {
    let end = body.iter().rposition(|&b| b == b'<').unwrap_or(body.len());
    let text: Vec<u8> = body[..end].iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    if text.is_empty() || text == b"=" {
        return Some(Vec::new());
    }
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

async fn accept_tls(edge: &Edge, io: BoxedIo) -> Option<(BoxedIo, Option<Vec<u8>>)> {
    let tls = match tokio::time::timeout(edge.config.negotiation_timeout, edge.tls.accept(io)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            return None;
        }
        Err(_) => return None,
    };
    let (_, connection) = tls.get_ref();
    let exporter = (connection.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3))
        .then(|| connection.export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None).ok())
        .flatten();
    Some((Box::new(tls), exporter))
}

fn placeholder_reader() -> StreamReader<ReadHalf<BoxedIo>> {
    StreamReader::new(tokio::io::split(Box::new(tokio::io::empty()) as BoxedIo).0, starling_xml::Limits::default())
}
