//! The bound stream: stamping, hand-off to the session, what the session writes back, nonzas,
//! and the writer's liveness and slow-reader checks.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use starling_cluster::gateway::ToClient;
use starling_protocol::{ns, Jid, StanzaKind, StreamError, StreamErrorCondition};
use starling_xml::{Element, RawElement, StreamEvent, StreamReader};

use super::stamp;
use crate::nonza::{BoundStream, NonzaHandler, NonzaHandlers};
use crate::test_support::{self, bound_client, FakeAccounts};

/// Reads the first top-level element of `xml` as the stream reader frames it.
async fn raw(xml: &str) -> RawElement {
    let stream = format!("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>{xml}");
    let mut reader = StreamReader::new(stream.as_bytes(), Default::default());
    assert!(matches!(reader.next().await, Ok(StreamEvent::Open(_))));
    match reader.next().await {
        Ok(StreamEvent::Element(element)) => element,
        other => panic!("expected an element, got {other:?}"),
    }
}

fn stanza_error(reply: &Bytes) -> String {
    let reply = Element::parse(reply).expect("the reply parses");
    assert_eq!(reply.attr("type"), Some("error"));
    let error = reply.get_child("error", ns::CLIENT).expect("an error");
    error.children().next().expect("a condition").name().to_owned()
}

#[tokio::test]
async fn rfc6120_8_1_2_1_stamp_sets_from_and_checks_addressing() {
    let jid = Jid::new("juliet@example.org/balcony").expect("jid");
    let message = raw("<message to='Romeo@Example.org' id='m1'><body>hi</body></message>").await;
    let stanza = stamp(&message, StanzaKind::Message, &jid).expect("valid");
    assert_eq!(stanza.to.as_ref().map(Jid::as_str), Some("romeo@example.org"), "to is normalised");
    let stamped = Element::parse(&stanza.bytes).expect("self-contained bytes");
    assert_eq!(stamped.attr("from"), Some("juliet@example.org/balcony"));
    assert_eq!(stamped.get_child("body", ns::CLIENT).map(Element::text).as_deref(), Some("hi"));
    // A forged `from` is replaced.
    let forged = raw("<presence from='romeo@example.org'/>").await;
    let stanza = stamp(&forged, StanzaKind::Presence, &jid).expect("valid");
    assert_eq!(Element::parse(&stanza.bytes).expect("parses").attr("from"), Some("juliet@example.org/balcony"));
    let bad_to = raw("<message to='a@b@c' id='m2'/>").await;
    assert_eq!(stanza_error(&stamp(&bad_to, StanzaKind::Message, &jid).expect_err("invalid")), "jid-malformed");
    let iq_without_id = raw("<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>").await;
    assert_eq!(stanza_error(&stamp(&iq_without_id, StanzaKind::Iq, &jid).expect_err("invalid")), "bad-request");
}

#[tokio::test]
async fn a_stanza_after_bind_is_stamped_and_submitted_and_the_session_writes_back() {
    let (edge, mut session_layer) = test_support::edge(test_support::config(), FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let mut client = bound_client(&edge, "juliet", "balcony").await;
    let link = session_layer.links.recv().await.expect("bound");
    client.send("<message to='romeo@example.org' id='m1'><body>hi</body></message>").await;
    let stanza = session_layer.submitted.recv().await.expect("submitted");
    assert_eq!((stanza.kind, stanza.from.as_str()), (StanzaKind::Message, "juliet@example.org/balcony"));
    assert_eq!(Element::parse(&stanza.bytes).expect("parses").attr("from"), Some("juliet@example.org/balcony"));
    // An invalid address is answered by the edge itself; nothing reaches the session.
    client.send("<message to='a@b@c' id='m2'/>").await;
    let error = client.element().await;
    assert_eq!((error.attr("type"), error.attr("id")), (Some("error"), Some("m2")));
    let reply = Bytes::from_static(b"<message xmlns='jabber:client' from='romeo@example.org' id='r1'><body>hello</body></message>");
    link.try_send(ToClient::Stanza(reply, None), None).expect("queued");
    assert_eq!(client.element().await.attr("id"), Some("r1"));
    // The client closes; the edge closes its side too.
    client.send("</stream:stream>").await;
    assert!(matches!(client.next().await, StreamEvent::Close));
    assert!(session_layer.submitted.try_recv().is_err());
}

#[tokio::test]
async fn the_session_closing_the_stream_sends_its_error() {
    let (edge, mut session_layer) = test_support::edge(test_support::config(), FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let mut client = bound_client(&edge, "juliet", "balcony").await;
    let link = session_layer.links.recv().await.expect("bound");
    link.try_send(ToClient::Close(StreamError::new(StreamErrorCondition::Conflict)), None).expect("queued");
    assert_eq!(client.stream_error().await, "conflict");
}

#[tokio::test]
async fn a_dropped_queue_means_too_slow_to_read() {
    let (edge, mut session_layer) = test_support::edge(test_support::config(), FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let mut client = bound_client(&edge, "juliet", "balcony").await;
    drop(session_layer.links.recv().await.expect("bound"));
    assert_eq!(client.stream_error().await, "policy-violation");
}

#[tokio::test]
async fn xep0199_a_silent_client_is_pinged_then_closed() {
    let mut config = test_support::config();
    // The shortest the configuration allows: a second of silence, a second to answer.
    config.c2s.ping_idle_seconds = 1;
    config.c2s.ping_timeout_seconds = 1;
    let (edge, _session_layer) = test_support::edge(config, FakeAccounts::with_user("juliet"), NonzaHandlers::new());
    let mut client = bound_client(&edge, "juliet", "balcony").await;
    let ping = client.element().await;
    assert_eq!((ping.attr("type"), ping.attr("to")), (Some("get"), Some("juliet@example.org/balcony")));
    assert!(ping.get_child("ping", ns::PING).is_some());
    assert_eq!(client.stream_error().await, "connection-timeout");
}

const TEST_NS: &str = "urn:example:nonza";

/// Answers `<ask/>` with `<answer/>` naming the asker; refuses `<refuse/>` with a stream error.
struct AnswerHandler;

#[async_trait]
impl NonzaHandler for AnswerHandler {
    async fn handle(&self, nonza: &RawElement, stream: &mut BoundStream<'_>) -> Result<Option<Element>, StreamError> {
        match nonza.name.as_str() {
            "ask" => Ok(Some(Element::new("answer", TEST_NS).with_attr("to", stream.jid.as_str()).with_attr("n", nonza.attr("n").unwrap_or_default()))),
            _ => Err(StreamError::new(StreamErrorCondition::PolicyViolation)),
        }
    }
}

fn nonza_handlers() -> NonzaHandlers {
    let handler: Arc<dyn NonzaHandler> = Arc::new(AnswerHandler);
    let mut handlers = NonzaHandlers::new();
    handlers.register(TEST_NS, "ask", handler.clone()).register(TEST_NS, "refuse", handler);
    handlers
}

#[tokio::test]
async fn a_registered_nonza_reaches_its_handler_and_is_answered() {
    let (edge, mut session_layer) = test_support::edge(test_support::config(), FakeAccounts::with_user("juliet"), nonza_handlers());
    let mut client = bound_client(&edge, "juliet", "balcony").await;
    client.send(&format!("<ask xmlns='{TEST_NS}' n='1'/><ask xmlns='{TEST_NS}' n='2'/>")).await;
    for n in ["1", "2"] {
        let answer = client.element().await;
        assert!(answer.is("answer", TEST_NS), "{answer:?}");
        assert_eq!((answer.attr("n"), answer.attr("to")), (Some(n), Some("juliet@example.org/balcony")));
    }
    // Stanzas still go to the session, and nonzas never do.
    client.send("<presence/>").await;
    assert_eq!(session_layer.submitted.recv().await.expect("submitted").kind, StanzaKind::Presence);
    client.send(&format!("<refuse xmlns='{TEST_NS}'/>")).await;
    assert_eq!(client.stream_error().await, "policy-violation");
}

#[tokio::test]
async fn rfc6120_4_9_3_22_a_nonza_without_handler_ends_the_stream() {
    let (edge, _session_layer) = test_support::edge(test_support::config(), FakeAccounts::with_user("juliet"), nonza_handlers());
    let mut client = bound_client(&edge, "juliet", "balcony").await;
    client.send("<r xmlns='urn:xmpp:sm:3'/>").await;
    assert_eq!(client.stream_error().await, "unsupported-stanza-type");
}
