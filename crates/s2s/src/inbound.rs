//! Streams from other servers. A stream names one of our domains (or a subdomain of one, a
//! service) in its header — `host-unknown` otherwise — is offered STARTTLS, then SASL EXTERNAL
//! when the other side's certificate verifies for the domain it names, and dialback. Every pair
//! of domains (theirs, ours) it authenticates — by SASL, or by a dialback key its authoritative
//! server confirmed — may then carry stanzas; a stanza from any other domain ends the stream with
//! `invalid-from` (spoofing). Stanzas are read at most at `[s2s] stanza_rate`.

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use starling_edge::ReadShaper;
use starling_protocol::{ns, Jid, StreamError, StreamErrorCondition};
use starling_xml::{Element, RawElement, StreamEvent, NS_STREAMS};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::dialback::{self, NS_DIALBACK, NS_DIALBACK_FEATURE};
use crate::federation::{Federation, Verdict};
use crate::stream::{self, BoxedIo, Failed, S2sStream};

impl Federation {
    /// Accepts other servers on `listener` (TLS from the first byte when `direct_tls`).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, direct_tls: bool) {
        loop {
            match listener.accept().await {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    tokio::spawn(run(self.clone(), socket, peer, direct_tls));
                }
                Err(error) => {
                    tracing::warn!(%error, "s2s accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// A stream in, once negotiated.
struct Incoming {
    stream_id: String,
    /// The domain the other side's certificate verified for, if any.
    certified: Option<String>,
    /// (theirs, ours) pairs that may carry stanzas.
    authenticated: Arc<Mutex<HashSet<(String, String)>>>,
}

async fn run(federation: Arc<Federation>, socket: TcpStream, peer: SocketAddr, direct_tls: bool) {
    let negotiated = tokio::time::timeout(federation.config.negotiation_timeout(), negotiate(&federation, Box::new(socket), direct_tls)).await;
    let Ok(Some((stream, incoming, first))) = negotiated else {
        tracing::debug!(%peer, "s2s stream in not negotiated");
        return;
    };
    federation.metrics.s2s_streams.inbound.inc();
    serve_stream(&federation, stream, incoming, first).await;
    federation.metrics.s2s_streams.inbound.dec();
}

async fn accept_tls(federation: &Federation, io: BoxedIo, direct_tls: bool) -> Result<S2sStream, Failed> {
    let config = if direct_tls { federation.tls.direct_server.clone() } else { federation.tls.server.clone() };
    let tls = TlsAcceptor::from(config).accept(io).await?;
    let chain = stream::peer_chain(tls.get_ref().1.peer_certificates());
    Ok(S2sStream::new(Box::new(tls), federation.config.limits(), Some(chain)))
}

/// Headers, STARTTLS and SASL EXTERNAL, up to the first element that is none of them (a dialback
/// request, or a stanza after SASL); `None` when the stream ended or was refused (the error sent).
async fn negotiate(federation: &Federation, io: BoxedIo, direct_tls: bool) -> Option<(S2sStream, Incoming, Option<RawElement>)> {
    let mut stream = if direct_tls { accept_tls(federation, io, true).await.ok()? } else { S2sStream::new(io, federation.config.limits(), None) };
    let mut sasl: Option<(String, String)> = None;
    loop {
        let header = stream.header().await.ok()?;
        tracing::debug!(from = ?header.from, to = ?header.to, secure = stream.secure(), "s2s in: stream header");
        let stream_id = format!("{:032x}", rand::random::<u128>());
        let local = header.to.as_deref().unwrap_or_default().to_ascii_lowercase();
        let remote = header.from.as_deref().map(str::to_ascii_lowercase);
        let ours = if federation.is_local(&local) { local.as_str() } else { federation.primary() };
        stream.send(&stream::header(ours, remote.as_deref(), Some(&stream_id))).await.ok()?;
        let refusal = if header.content_ns != ns::SERVER {
            Some((StreamErrorCondition::InvalidNamespace, "this port serves jabber:server"))
        } else if !federation.is_local(&local) {
            Some((StreamErrorCondition::HostUnknown, "that domain is not served here"))
        } else if remote.as_deref().is_some_and(|remote| !federation.config.permits(remote)) {
            Some((StreamErrorCondition::PolicyViolation, "federation with your domain is not allowed here"))
        } else {
            None
        };
        if let Some((condition, text)) = refusal {
            return close(stream, StreamError::new(condition).with_text(text)).await;
        }
        let certified = remote.clone().filter(|remote| stream.peer_certificates.as_deref().is_some_and(|chain| federation.trust.verifies(chain, remote)));
        let mut features = Element::new("features", NS_STREAMS);
        if sasl.is_none() {
            if !stream.secure() {
                let mut starttls = Element::new("starttls", ns::TLS);
                if federation.config.require_tls {
                    starttls.push_child(Element::new("required", ns::TLS));
                }
                features.push_child(starttls);
            } else if certified.is_some() {
                features.push_child(Element::new("mechanisms", ns::SASL).with_child(Element::new("mechanism", ns::SASL).with_text("EXTERNAL")));
            }
            if federation.config.dialback && (stream.secure() || !federation.config.require_tls) {
                features.push_child(Element::new("dialback", NS_DIALBACK_FEATURE).with_child(Element::new("errors", NS_DIALBACK_FEATURE)));
            }
        }
        let mut out = Vec::new();
        features.write_prefixed(&mut out, "stream");
        stream.send(&out).await.ok()?;
        let incoming = Incoming { stream_id, certified, authenticated: Arc::new(Mutex::new(HashSet::new())) };
        if let Some(pair) = sasl.take() {
            incoming.authenticated.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(pair);
            return Some((stream, incoming, None));
        }
        loop {
            let element = match stream.element().await {
                Ok(element) => element,
                Err(Failed::Refused(error)) => return close(stream, error).await,
                Err(_) => return None,
            };
            if element.ns == ns::TLS && element.name == "starttls" && !stream.secure() {
                stream.send(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await.ok()?;
                stream = accept_tls(federation, stream.into_io().ok()?, false).await.ok()?;
                break;
            }
            if !stream.secure() && federation.config.require_tls {
                return close(stream, StreamError::new(StreamErrorCondition::PolicyViolation).with_text("STARTTLS first")).await;
            }
            if element.ns == ns::SASL && element.name == "auth" {
                match sasl_external(&element, incoming.certified.as_deref()) {
                    Some(remote) => {
                        stream.send(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>").await.ok()?;
                        sasl = Some((remote, local.clone()));
                        stream = stream.restart();
                        break;
                    }
                    None => {
                        stream.send(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>").await.ok()?;
                        continue;
                    }
                }
            }
            return Some((stream, incoming, Some(element)));
        }
    }
}

/// The domain a SASL EXTERNAL `<auth/>` authenticates (XEP-0178 §4): the one the certificate
/// verified for, named again (or `=`, or nothing) as authorization identity.
fn sasl_external(auth: &RawElement, certified: Option<&str>) -> Option<String> {
    let certified = certified?;
    if auth.attr("mechanism") != Some("EXTERNAL") {
        return None;
    }
    let text = stream::parse(auth).map(|element| element.text()).unwrap_or_default();
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return Some(certified.to_owned());
    }
    let authzid = base64::engine::general_purpose::STANDARD.decode(text).ok()?;
    (authzid.eq_ignore_ascii_case(certified.as_bytes())).then(|| certified.to_owned())
}

async fn close<T>(mut stream: S2sStream, error: StreamError) -> Option<T> {
    let _ = stream.send(&stream::close_bytes(Some(&error))).await;
    let _ = stream.writer.shutdown().await;
    None
}

/// Dialback checks one stream may have running at once.
const CHECKS_PER_STREAM: usize = 8;
/// Pairs of domains one stream may authenticate.
const PAIRS_PER_STREAM: usize = 1000;

/// Reads dialback requests and stanzas until the stream ends; answers go through a writer task,
/// since a dialback check may take a while and the stream goes on meanwhile. A stream that has
/// authenticated no pair of domains within the negotiation timeout is closed.
async fn serve_stream(federation: &Arc<Federation>, stream: S2sStream, incoming: Incoming, mut next: Option<RawElement>) {
    let S2sStream { mut reader, mut writer, .. } = stream;
    let write_limit = federation.config.negotiation_timeout();
    let (answers, mut to_write) = mpsc::channel::<Vec<u8>>(64);
    let writing = tokio::spawn(async move {
        while let Some(bytes) = to_write.recv().await {
            if !matches!(tokio::time::timeout(write_limit, writer.write_all(&bytes)).await, Ok(Ok(()))) {
                break;
            }
        }
        let _ = tokio::time::timeout(write_limit, writer.shutdown()).await;
    });
    let mut checks = JoinSet::new();
    let mut shaper = ReadShaper::new(federation.config.stanza_rate.into(), federation.config.stanza_burst.into());
    let started = Instant::now();
    let end = loop {
        let unauthenticated = incoming.authenticated.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).is_empty();
        let wait = if unauthenticated { federation.config.negotiation_timeout().saturating_sub(started.elapsed()) } else { federation.config.idle_timeout() };
        let element = match next.take() {
            Some(element) => element,
            None => match tokio::time::timeout(wait, reader.next()).await {
                Ok(Ok(StreamEvent::Element(element))) => element,
                Ok(Ok(StreamEvent::Close)) => break None,
                Err(_) if unauthenticated => break Some(StreamError::new(StreamErrorCondition::ConnectionTimeout).with_text("nothing authenticated in time")),
                Err(_) => break None,
                Ok(Ok(StreamEvent::Open(_))) => break Some(StreamError::new(StreamErrorCondition::BadFormat).with_text("unexpected stream header")),
                Ok(Err(error)) => break StreamError::for_frame_error(&error),
            },
        };
        // Dialback requests are paced with stanzas: each may cost a connection out.
        if let Some(shaper) = shaper.as_mut() {
            shaper.charge(1);
            shaper.wait().await;
        }
        if element.ns == NS_DIALBACK {
            while checks.try_join_next().is_some() {}
            match dialback_request(federation, &incoming, &element, checks.len()) {
                Ok(Request::Answer(answer)) => {
                    if !matches!(tokio::time::timeout(write_limit, answers.send(answer)).await, Ok(Ok(()))) {
                        break None;
                    }
                }
                Ok(Request::Check(check)) => {
                    let answers = answers.clone();
                    checks.spawn(async move {
                        let _ = answers.send(check.await).await;
                    });
                }
                Ok(Request::Ignored) => {}
                Err(error) => break Some(error),
            }
            continue;
        }
        let stanza = match stream::from_wire(&element) {
            Ok(stanza) => stanza,
            Err(error) => break Some(error),
        };
        let pair = (stanza.from.domain().to_owned(), stanza.to.as_ref().map(|to| to.domain().to_owned()).unwrap_or_default());
        let refusal = {
            let authenticated = incoming.authenticated.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match (authenticated.contains(&pair), authenticated.is_empty()) {
                (true, _) => None,
                (false, true) => Some(StreamErrorCondition::NotAuthorized),
                (false, false) => Some(StreamErrorCondition::InvalidFrom),
            }
        };
        if let Some(condition) = refusal {
            break Some(StreamError::new(condition).with_text("'from' and 'to' are not a pair of domains this stream authenticated"));
        }
        if federation.gateway.route_vouched(stanza).is_err() {
            break Some(StreamError::new(StreamErrorCondition::InternalServerError));
        }
    };
    // Answers still being worked out would follow the close.
    checks.abort_all();
    let _ = tokio::time::timeout(write_limit, answers.send(stream::close_bytes(end.as_ref()))).await;
    drop(answers);
    let _ = tokio::time::timeout(write_limit * 2, writing).await;
}

/// What to do about a dialback element.
enum Request {
    /// Answer at once.
    Answer(Vec<u8>),
    /// Answer when the other domain's authoritative server has said whether the key is its own.
    Check(Pin<Box<dyn Future<Output = Vec<u8>> + Send>>),
    /// Nothing (an answer to a request we did not make here).
    Ignored,
}

/// A domain named in a dialback element, as JIDs compare it; `None` if it is not a domain name
/// (an address literal would let the other side choose what we connect to).
fn domain(name: &str) -> Option<String> {
    let jid = Jid::new(name).ok().filter(|jid| jid.node().is_none() && jid.resource().is_none())?;
    jid.domain().parse::<IpAddr>().is_err().then(|| jid.domain().to_owned())
}

/// `<db:result/>` with a key (the other side asks to be authenticated for a pair of domains) or
/// `<db:verify/>` (another server asks whether a key is one we gave out, XEP-0220 §2.2). `checks`
/// are this stream's checks running now. Errors about one pair are answered for that pair
/// (XEP-0220 §2.4, we offer `<errors/>`); a stream error only for what breaks the protocol.
fn dialback_request(federation: &Arc<Federation>, incoming: &Incoming, element: &RawElement, checks: usize) -> Result<Request, StreamError> {
    let (Some(from), Some(to)) = (element.attr("from").and_then(domain), element.attr("to").and_then(domain)) else {
        return Err(StreamError::new(StreamErrorCondition::ImproperAddressing).with_text("dialback needs a domain in 'from' and in 'to'"));
    };
    let (remote, local) = (from, to);
    let key = stream::parse(element).map(|element| element.text()).unwrap_or_default();
    let refused = |condition: &str| Ok(Request::Answer(dialback::result_error(&local, &remote, condition)));
    match element.name.as_str() {
        "verify" if element.attr("type").is_some() => Ok(Request::Ignored),
        "verify" => {
            let Some(id) = element.attr("id") else { return Err(StreamError::new(StreamErrorCondition::BadFormat).with_text("db:verify needs an 'id'")) };
            let valid = federation.is_local(&local) && federation.secret.confirms(&key, &remote, &local, id);
            tracing::debug!(%remote, %local, valid, "s2s in: dialback key checked for the other server");
            Ok(Request::Answer(dialback::element("verify", &local, &remote, Some(id), None, Some(if valid { "valid" } else { "invalid" }))))
        }
        "result" if !key.trim().is_empty() => {
            let certified = incoming.certified.as_deref() == Some(remote.as_str());
            if !federation.is_local(&local) {
                return refused("item-not-found");
            }
            if !federation.config.permits(&remote) || federation.is_local(&remote) {
                return refused("forbidden");
            }
            if !federation.config.dialback && !certified {
                return refused("not-authorized");
            }
            let pairs = incoming.authenticated.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len();
            if checks >= CHECKS_PER_STREAM || pairs >= PAIRS_PER_STREAM {
                return refused("resource-constraint");
            }
            let Ok(permit) = federation.checks.clone().try_acquire_owned() else { return refused("resource-constraint") };
            let (federation, authenticated) = (federation.clone(), incoming.authenticated.clone());
            let stream_id = incoming.stream_id.clone();
            Ok(Request::Check(Box::pin(async move {
                let _permit = permit;
                // A certificate that verifies for the domain proves it without asking back
                // (XEP-0344 §2.3).
                let verdict = if certified { Verdict::Valid } else { federation.verify(&local, &remote, &stream_id, key.trim()).await };
                tracing::info!(%remote, %local, ?verdict, "s2s dialback");
                match verdict {
                    Verdict::Valid => {
                        authenticated.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert((remote.clone(), local.clone()));
                        dialback::element("result", &local, &remote, None, None, Some("valid"))
                    }
                    Verdict::Invalid => dialback::element("result", &local, &remote, None, None, Some("invalid")),
                    Verdict::Unreachable => dialback::result_error(&local, &remote, "remote-connection-failed"),
                }
            })))
        }
        _ => Err(StreamError::new(StreamErrorCondition::UnsupportedStanzaType).with_text("db:result with a key, or db:verify")),
    }
}
