//! Stream management through the session layer, where the limits and the ends are decided.

use std::time::Duration;

use starling_cluster::gateway::{StreamEnd, ToClient};
use starling_protocol::{ns, Hosts, Jid};
use starling_telemetry::Metrics;

use crate::layer_tests::{login, store};
use crate::modules::ALL;
use crate::{SessionConfig, SessionLayer};

#[actix::test]
async fn over_max_unacked_the_stream_closes_and_the_messages_go_offline() {
    let (_dir, store) = store();
    let mut config = SessionConfig::default();
    config.sm.max_unacked = 3;
    let layer = SessionLayer::start_with_modules(Hosts::single(Jid::new("localhost").expect("domain")), store.clone(), config, Metrics::global(), ALL);
    let mut phone = login(&layer, &store, "phone").await;
    let mut friend = login(&layer, &store, "friend").await;
    phone.session.enable_stream_management(true, None).await.expect("enabled");
    let enabled = phone.next().await;
    assert!(enabled.is("enabled", ns::SM) && enabled.attr("id").is_some(), "{enabled:?}");
    for n in 0..4 {
        friend.send(&format!("<message xmlns='jabber:client' to='phone@localhost/test' type='chat'><body>m{n}</body></message>")).await;
    }
    // Three are queued to the client; the fourth is over the limit: the stream is closed.
    let mut closed = None;
    for _ in 0..5 {
        match tokio::time::timeout(Duration::from_secs(5), phone.inbox.recv()).await {
            Ok(Some(ToClient::Close(error))) => {
                closed = Some(error);
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("expected the stream to close, got {other:?}"),
        }
    }
    let closed = closed.expect("closed");
    assert_eq!(closed.condition.as_str(), "policy-violation", "{closed:?}");
    // The edge unbinds the broken stream; the session is not resumable any more and ends: all
    // four unacknowledged messages are kept offline.
    phone.session.unbind(StreamEnd::Broken).await;
    for _ in 0..50 {
        if store.offline.count("phone@localhost").await.expect("count") == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.offline.count("phone@localhost").await.expect("count"), 4);
    drop(friend);
}

/// In a cluster an edge hands back what it could not write to a connection without stream
/// management (a slow reader it cut, a connection gone): the owner keeps it as it keeps what a
/// client never acknowledged — a message offline, a request answered with an error.
#[actix::test]
async fn what_an_edge_hands_back_is_kept_offline_or_answered() {
    use starling_cluster::gateway::ClientEvent;

    use crate::messages::ConnectionEvent;

    let (_dir, store) = store();
    let layer = SessionLayer::start_with_modules(Hosts::single(Jid::new("localhost").expect("domain")), store.clone(), SessionConfig::default(), Metrics::global(), ALL);
    let phone = login(&layer, &store, "phone").await;
    let mut friend = login(&layer, &store, "friend").await;
    let hand_back = |stanza: &str| {
        let event = ConnectionEvent {
            jid: phone.session.jid().clone(),
            connection_id: 0,
            event: ClientEvent::Undelivered(bytes::Bytes::from(stanza.to_owned())),
            counted: false,
            hold: None,
        };
        layer.router().with_user_actor(&phone.session.jid().bare(), |addr| addr.do_send(event)).expect("the user's actor");
    };
    hand_back("<message xmlns='jabber:client' from='friend@localhost/test' to='phone@localhost/test' type='chat' id='m1'><body>kept</body></message>");
    hand_back("<iq xmlns='jabber:client' from='friend@localhost/test' to='phone@localhost/test' type='get' id='q1'><query xmlns='jabber:iq:version'/></iq>");
    let answer = friend.next().await;
    assert_eq!((answer.attr("type"), answer.attr("id")), (Some("error"), Some("q1")), "{answer:?}");
    assert_eq!(store.offline.count("phone@localhost").await.expect("count"), 1);
}
