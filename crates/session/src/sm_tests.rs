//! Stream management through the session layer, where the limits and the ends are decided.

use std::time::Duration;

use starling_cluster::gateway::{StreamEnd, ToClient};
use starling_protocol::{ns, Jid};
use starling_telemetry::Metrics;

use crate::layer_tests::{login, store};
use crate::modules::ALL;
use crate::{SessionConfig, SessionLayer};

#[actix::test]
async fn over_max_unacked_the_stream_closes_and_the_messages_go_offline() {
    let (_dir, store) = store();
    let mut config = SessionConfig::default();
    config.sm.max_unacked = 3;
    let layer = SessionLayer::start_with_modules(Jid::new("localhost").expect("domain"), store.clone(), config, Metrics::global(), ALL);
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
