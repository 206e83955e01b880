//! External components (XEP-0114, "jabber:component:accept"): a push app server, a gateway or a
//! bot connects, names the domain it serves in its stream header, proves it knows that domain's
//! shared secret (`<handshake>` = hex SHA-1 of our stream id and the secret), and from then on the
//! router sends it every stanza addressed to its domain, and routes what it sends — from its own
//! domain only (`invalid-from` otherwise).
//!
//! Stanzas change namespace at this boundary: a component's are in `jabber:component:accept`,
//! everything inside the server in `jabber:client`. Both have the same shape, so only the
//! top-level namespace is written differently (`Stanza::to_foreign_stream` and
//! `Stanza::from_foreign_stream`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use sha1::{Digest, Sha1};
use starling_cluster::gateway::ComponentLink;
use starling_protocol::{ns, Jid, Stanza, StanzaKind, StreamError, StreamErrorCondition};
use starling_xml::{Element, RawElement, StreamEvent, StreamHeader, StreamReader};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::edge::Edge;

/// Stanzas queued toward one component before it counts as too slow: senders then get
/// `resource-constraint` back (the router's answer to a refused stanza).
const COMPONENT_QUEUE: usize = 4096;

impl Edge {
    /// Serves external components (XEP-0114). Runs until the listener fails.
    pub async fn serve_components(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (socket, peer) = crate::listener::accept(&listener).await;
            tokio::spawn(serve_component(self.clone(), socket, peer));
        }
    }
}

/// The link the router sends a component's stanzas through.
struct ComponentQueue(mpsc::Sender<Bytes>);

impl ComponentLink for ComponentQueue {
    fn send(&self, stanza: Stanza) -> Result<(), Box<Stanza>> {
        match stanza.to_foreign_stream() {
            Some(bytes) => self.0.try_send(bytes).map_err(|_| Box::new(stanza)),
            // Unparsable bytes never come from inside the server; nothing to send.
            None => Ok(()),
        }
    }
}

async fn serve_component(edge: Arc<Edge>, socket: TcpStream, peer: SocketAddr) {
    let (read, mut writer) = tokio::io::split(socket);
    let mut reader = StreamReader::new(read, edge.config.c2s.limits());
    let stream_id = format!("{:016x}", rand::random::<u64>());
    let negotiated = tokio::time::timeout(edge.config.c2s.negotiation_timeout(), handshake(&edge, &mut reader, &mut writer, &stream_id)).await;
    let domain = match negotiated {
        Ok(Ok(domain)) => domain,
        Ok(Err(Refused { error, opened })) => return close(&mut writer, &edge, &stream_id, opened, error).await,
        Err(_) => {
            let error = StreamError::new(StreamErrorCondition::ConnectionTimeout).with_text("no handshake in time");
            return close(&mut writer, &edge, &stream_id, true, Some(error)).await;
        }
    };
    let (sender, mut outbound) = mpsc::channel::<Bytes>(COMPONENT_QUEUE);
    let link: Arc<dyn ComponentLink> = Arc::new(ComponentQueue(sender));
    if let Err(error) = edge.gateway.attach_component(&domain, link.clone()) {
        tracing::warn!(%domain, %error, "component refused");
        let error = StreamError::new(StreamErrorCondition::InternalServerError).with_text("components are not served here");
        return close(&mut writer, &edge, &stream_id, true, Some(error)).await;
    }
    tracing::info!(%domain, %peer, "component connected");
    // The writer writes what the router queues until the read side ends, then the close.
    let (closing, mut close) = oneshot::channel::<Option<StreamError>>();
    let write_loop = async {
        if writer.write_all(b"<handshake/>").await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                bytes = outbound.recv() => match bytes {
                    Some(bytes) if writer.write_all(&bytes).await.is_ok() => {}
                    _ => return,
                },
                error = &mut close => {
                    let error = error.unwrap_or(None);
                    let mut out = error.as_ref().map(StreamError::to_bytes).unwrap_or_default();
                    out.extend_from_slice(b"</stream:stream>");
                    let _ = writer.write_all(&out).await;
                    let _ = writer.shutdown().await;
                    return;
                }
            }
        }
    };
    let read = async {
        let _ = closing.send(read_loop(&edge, &mut reader, &domain).await);
    };
    tokio::join!(write_loop, read);
    edge.gateway.detach_component(&domain, &link);
    tracing::info!(%domain, "component disconnected");
}

/// Why the handshake ended the stream: the error to send, and whether our header went out.
struct Refused {
    error: Option<StreamError>,
    opened: bool,
}

/// Reads the component's header, answers with ours, and checks its `<handshake/>`; returns the
/// domain it serves.
async fn handshake(edge: &Edge, reader: &mut StreamReader<ReadHalf<TcpStream>>, writer: &mut WriteHalf<TcpStream>, stream_id: &str) -> Result<Jid, Refused> {
    let refused = |condition, text: &str, opened| Refused { error: Some(StreamError::new(condition).with_text(text)), opened };
    let header = match reader.next().await {
        Ok(StreamEvent::Open(header)) => header,
        _ => return Err(Refused { error: None, opened: false }),
    };
    let domain = header.to.as_deref().and_then(|to| Jid::new(to).ok()).filter(|to| to.node().is_none() && to.resource().is_none());
    let mut ours = Vec::with_capacity(200);
    ours.extend_from_slice(b"<?xml version='1.0'?>");
    our_header(domain.as_ref().map_or(edge.config.domain().as_str(), Jid::as_str), stream_id).write_start_tag(&mut ours);
    if writer.write_all(&ours).await.is_err() {
        return Err(Refused { error: None, opened: true });
    }
    if header.content_ns != ns::COMPONENT_ACCEPT {
        return Err(refused(StreamErrorCondition::InvalidNamespace, "this port serves jabber:component:accept", true));
    }
    let Some(domain) = domain else { return Err(refused(StreamErrorCondition::ImproperAddressing, "name the domain you serve in 'to'", true)) };
    let Some(secret) = edge.config.components.secrets.get(domain.as_str()) else {
        return Err(refused(StreamErrorCondition::HostUnknown, "no component may serve this domain", true));
    };
    let proof = match reader.next().await {
        Ok(StreamEvent::Element(element)) if element.name == "handshake" && element.ns == ns::COMPONENT_ACCEPT => element,
        Ok(StreamEvent::Element(_)) => return Err(refused(StreamErrorCondition::NotAuthorized, "handshake first", true)),
        _ => return Err(Refused { error: None, opened: true }),
    };
    let text = Element::parse(&proof.rewrite(&[])).map(|element| element.text()).unwrap_or_default();
    if !text.trim().eq_ignore_ascii_case(&handshake_digest(stream_id, secret)) {
        tracing::info!(%domain, "component handshake refused");
        return Err(refused(StreamErrorCondition::NotAuthorized, "wrong handshake", true));
    }
    Ok(domain)
}

/// XEP-0114 §3: lowercase hex SHA-1 of the stream id followed by the secret.
fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let digest = Sha1::new().chain_update(stream_id.as_bytes()).chain_update(secret.as_bytes()).finalize();
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn our_header(from: &str, stream_id: &str) -> StreamHeader {
    StreamHeader { from: Some(from.to_owned()), id: Some(stream_id.to_owned()), content_ns: ns::COMPONENT_ACCEPT.to_owned(), ..StreamHeader::default() }
}

/// Routes what the component sends until its stream ends; returns the error to end it with.
async fn read_loop(edge: &Edge, reader: &mut StreamReader<ReadHalf<TcpStream>>, domain: &Jid) -> Option<StreamError> {
    loop {
        let element = match reader.next().await {
            Ok(StreamEvent::Element(element)) => element,
            Ok(StreamEvent::Close) => return None,
            Ok(StreamEvent::Open(_)) => return Some(StreamError::new(StreamErrorCondition::BadFormat).with_text("unexpected stream header")),
            Err(error) => return StreamError::for_frame_error(&error),
        };
        match from_component(&element, domain) {
            Ok(stanza) => {
                if edge.gateway.route_vouched(stanza).is_err() {
                    return Some(StreamError::new(StreamErrorCondition::InternalServerError));
                }
            }
            Err(error) => return Some(error),
        }
    }
}

/// A component's stanza as the router takes it: in `jabber:client`, its `from` checked to be the
/// component's domain (or a JID at it), and addressed.
fn from_component(element: &RawElement, domain: &Jid) -> Result<Stanza, StreamError> {
    let kind = (element.ns == ns::COMPONENT_ACCEPT).then(|| StanzaKind::from_name(&element.name)).flatten();
    let Some(kind) = kind else {
        return Err(StreamError::new(StreamErrorCondition::UnsupportedStanzaType).with_text("only stanzas after the handshake"));
    };
    let from = element.attr("from").map(Jid::new);
    let Some(Ok(from)) = from else {
        return Err(StreamError::new(StreamErrorCondition::InvalidFrom).with_text("a component's stanza needs a valid 'from'"));
    };
    if from.domain() != domain.domain() {
        return Err(StreamError::new(StreamErrorCondition::InvalidFrom).with_text("'from' is not at the component's domain"));
    }
    let to = match element.attr("to").map(Jid::new) {
        Some(Ok(to)) => to,
        _ => return Err(StreamError::new(StreamErrorCondition::ImproperAddressing).with_text("a component's stanza needs a valid 'to'")),
    };
    Ok(Stanza::from_foreign_stream(element, kind, from, to))
}

/// Ends the stream with `error`, opening our side first when the error must follow our header.
async fn close(writer: &mut WriteHalf<TcpStream>, edge: &Edge, stream_id: &str, opened: bool, error: Option<StreamError>) {
    let mut out = Vec::new();
    if !opened {
        if error.is_none() {
            return;
        }
        out.extend_from_slice(b"<?xml version='1.0'?>");
        our_header(edge.config.domain().as_str(), stream_id).write_start_tag(&mut out);
    }
    if let Some(error) = error {
        out.extend_from_slice(&error.to_bytes());
    }
    out.extend_from_slice(b"</stream:stream>");
    let _ = writer.write_all(&out).await;
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep0114_handshake_is_hex_sha1_of_id_and_secret() {
        // sha1("3BF96D75sesame"), computed independently (Python's hashlib).
        assert_eq!(handshake_digest("3BF96D75", "sesame"), "7d9ebd743a486205e137f8c168c192e3495856d2");
    }

    #[test]
    fn stanzas_change_namespace_at_the_boundary() {
        let inside = Stanza::build(
            Element::new("message", ns::CLIENT).with_attr("type", "chat").with_child(Element::new("body", ns::CLIENT).with_text("hi")),
            &Jid::new("alice@example.org/phone").expect("jid"),
            Some(&Jid::new("push.example.org").expect("jid")),
        );
        let out = String::from_utf8(inside.to_foreign_stream().expect("parses").to_vec()).expect("utf-8");
        assert!(out.starts_with("<message ") && !out.contains("xmlns"), "{out}");
        assert!(out.contains("<body>hi</body>"), "{out}");
    }
}
