//! The bound stream: stanzas from the client are stamped with its full JID and handed to the
//! session; other top-level elements (nonzas: stream management, client state indication…) go to
//! the handler registered for them on the [`Edge`]. A writer task ([`writer`]) sends what the
//! session queues and checks that the client is alive.

mod sm;
mod writer;

pub(crate) use sm::failed;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use starling_cluster::gateway::{BoundSession, StreamEnd, ToClient};
use starling_protocol::{ns, Jid, Stanza, StanzaError, StanzaErrorCondition, StanzaKind, StreamErrorCondition};
use starling_xml::{Element, RawElement, StreamEvent};
use tokio::sync::mpsc::{self, WeakSender};

use crate::edge::Edge;
use crate::end::End;
use crate::framing::{ReceiveFrames, SendFrames};
use crate::nonza::BoundStream;

/// What binding hands to the bound stream.
pub(crate) struct Bound {
    pub session: Box<dyn BoundSession>,
    /// The queue the session layer writes to this client through.
    pub outbound: mpsc::Receiver<ToClient>,
    /// The edge's own way into that queue: weak, so that the session dropping its end still
    /// closes the queue (see [`ClientLink`](starling_cluster::gateway::ClientLink)).
    pub own_end: WeakSender<ToClient>,
    /// With stream management on from the start (XEP-0198: resumed, or enabled by Bind2): the
    /// client's stanzas the session had handled.
    pub sm_handled: Option<u32>,
}

/// Serves a bound stream until it ends, then unbinds the session.
pub(crate) async fn serve<R: ReceiveFrames, S: SendFrames>(edge: Arc<Edge>, mut receiver: R, sender: S, bound: Bound) {
    let Bound { mut session, outbound, own_end, sm_handled } = bound;
    let jid = session.jid().clone();
    let ping_id = format!("ping-{:x}", rand::random::<u64>());
    let mut sm = sm::StreamManagement::new(sm_handled);
    let liveness = writer::Liveness { activity: receiver.activity(), ping_id: ping_id.clone(), jid: jid.clone(), requesting_acks: sm.requesting_acks(), drain_reports: session.drain_reports() };
    let mut writer_task = tokio::spawn(writer::write_loop(sender, outbound, edge.clone(), liveness));
    // The writer ends first when the client is dead (ping timeout), too slow, or gone: then the
    // read is abandoned mid-way, which is fine since the stream is not read again.
    let mut stream = Stream { session: session.as_mut(), jid: &jid, ping_id: &ping_id, own_end: &own_end, sm: &mut sm };
    let mut drained = false;
    let (end, writer_done) = tokio::select! {
        end = read_loop(&mut receiver, &edge, &mut stream) => (end, false),
        _ = &mut writer_task => (End::Gone, true),
        () = edge.drained() => {
            drained = true;
            (End::error(StreamErrorCondition::SystemShutdown, "this server is restarting: connect again"), false)
        }
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
    // A stream that broke (rather than was closed) may be resumed (XEP-0198); so may one the
    // edge drained, where the session lives on elsewhere (in a cluster).
    let stream_end = match (&end, writer_done) {
        (End::Gone, _) | (_, true) => StreamEnd::Broken,
        _ if drained && edge.gateway.sessions_outlive_the_edge() => StreamEnd::Broken,
        _ => StreamEnd::Closed,
    };
    session.unbind(stream_end).await;
    // A finished task must not be awaited again (its handle panics).
    if !writer_done {
        if matches!(end, End::Error(_)) {
            // The client is to read the error (RFC 6120 §4.9): read what it still sends while the
            // writer sends what was queued and the error (bounded, should the client read nothing),
            // then linger a little after our side is shut.
            let closed = tokio::time::timeout(CLOSE_WAIT, async {
                tokio::select! {
                    _ = &mut writer_task => {}
                    () = receiver.discard() => {
                        let _ = (&mut writer_task).await;
                    }
                }
            })
            .await;
            match closed {
                Ok(()) => receiver.linger().await,
                Err(_) => writer_task.abort(),
            }
        } else {
            let _ = writer_task.await;
        }
    }
}

/// The longest a stream that ended in an error waits for its writer to send the error.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the read loop works with.
struct Stream<'a> {
    session: &'a mut dyn BoundSession,
    jid: &'a Jid,
    /// The id of the writer's liveness pings.
    ping_id: &'a str,
    own_end: &'a WeakSender<ToClient>,
    sm: &'a mut sm::StreamManagement,
}

/// Reads the client's elements until the stream ends: stanzas go to the session, nonzas to their
/// handlers.
async fn read_loop<R: ReceiveFrames>(receiver: &mut R, edge: &Edge, stream: &mut Stream<'_>) -> End {
    let counters = edge.metrics.stanzas_in();
    loop {
        let element = match receiver.next().await {
            Ok(StreamEvent::Element(element)) => element,
            Ok(StreamEvent::Close) => return End::Closed,
            Ok(StreamEvent::Open(_)) => return End::error(StreamErrorCondition::BadFormat, "unexpected stream header"),
            Err(error) => return End::from(error),
        };
        let received = Instant::now();
        let Some(kind) = (element.ns == ns::CLIENT).then(|| StanzaKind::from_name(&element.name)).flatten() else {
            let handled = if element.ns == ns::SM {
                stream.sm.handle(&element, stream.session, stream.own_end).await
            } else {
                handle_nonza(edge, &element, stream).await
            };
            match handled {
                Ok(()) => continue,
                Err(end) => return end,
            }
        };
        match kind {
            StanzaKind::Message => counters.message.inc(),
            StanzaKind::Presence => counters.presence.inc(),
            StanzaKind::Iq => counters.iq.inc(),
        }
        // The answer to our own liveness ping (XEP-0199) ends here, unless stream management
        // counts it: then the session counts it too (and drops it, as a result nobody waits for).
        if !stream.sm.is_enabled() && kind == StanzaKind::Iq && element.attr("type") == Some("result") && element.attr("id") == Some(stream.ping_id) {
            continue;
        }
        let stamped = match stamp(&element, kind, stream.jid) {
            Ok(stanza) => answered_on_the_edge(edge, stanza).await,
            Err(error) => Err(error),
        };
        let handed = match stamped {
            Ok(stanza) => stream.session.submit(stanza, received).await.is_ok(),
            // Under stream management the session sends the edge's answer, so that both sides
            // count it.
            Err(reply) if stream.sm.is_enabled() => stream.session.answer_for_edge(reply).await.is_ok(),
            Err(reply) => queue_to_client(stream.own_end, ToClient::Stanza(reply, None)).await,
        };
        if !handed {
            return End::Gone;
        }
        stream.sm.count_handled();
    }
}

/// The answer when `stanza` is a request to a service the edge serves itself (the bytestreams
/// proxy: its SOCKS5 connections are on this edge; upload: its HTTP listeners serve the files),
/// else the stanza, for the session.
async fn answered_on_the_edge(edge: &Edge, stanza: Stanza) -> Result<Stanza, Bytes> {
    let is_request = stanza.kind == StanzaKind::Iq && matches!(stanza.stanza_type.as_deref(), Some("get" | "set"));
    let Some(to) = stanza.to.as_ref().filter(|_| is_request) else { return Ok(stanza) };
    if let Some(proxy) = edge.proxy.as_ref().filter(|proxy| &proxy.jid == to) {
        return match Element::parse(&stanza.bytes) {
            Ok(iq) => Err(Bytes::from(proxy.answer(&iq, &stanza.from).to_bytes())),
            Err(_) => Ok(stanza),
        };
    }
    if let Some(upload) = edge.upload.as_ref().filter(|upload| upload.jid() == to) {
        return Err(upload.answer(&stanza).await.bytes);
    }
    Ok(stanza)
}

/// Hands a nonza to its handler and queues the handler's answer; with no handler, the stream
/// ends as it did before any was registered (RFC 6120 §4.9.3.22).
async fn handle_nonza(edge: &Edge, nonza: &RawElement, stream: &mut Stream<'_>) -> Result<(), End> {
    let Some(handler) = edge.nonzas.find(&nonza.ns, &nonza.name) else {
        return Err(End::error(StreamErrorCondition::UnsupportedStanzaType, "not a jabber:client stanza"));
    };
    let answer = match handler.handle(nonza, &mut BoundStream { jid: stream.jid, session: &mut *stream.session }).await {
        Ok(Some(answer)) => answer,
        Ok(None) => return Ok(()),
        Err(error) => return Err(End::Error(error)),
    };
    // `to_bytes` declares the answer's namespace: it stands alone in any framing.
    if queue_to_client(stream.own_end, ToClient::Stanza(Bytes::from(answer.to_bytes()), None)).await { Ok(()) } else { Err(End::Gone) }
}

/// Queues something from the edge itself (an error, a nonza's answer, the close); false when the
/// session already dropped the queue.
async fn queue_to_client(own_end: &WeakSender<ToClient>, message: ToClient) -> bool {
    match own_end.upgrade() {
        Some(sender) => sender.send(message).await.is_ok(),
        None => false,
    }
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
            let mut reply = Element::new(kind.as_str(), ns::CLIENT).with_attr("type", "error").with_child(StanzaError::new(condition).to_element());
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

#[cfg(test)]
mod tests;
