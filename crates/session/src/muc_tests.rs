//! Multi-user chat (XEP-0045) through the session layer: a room is a service entity that users'
//! presence and messages reach through the host router.

use starling_protocol::{ns, Hosts, Jid};
use starling_telemetry::Metrics;
use starling_xml::Element;

use crate::layer_tests::{login, store};
use crate::modules::ALL;
use crate::{SessionConfig, SessionLayer};

fn statuses(presence: &Element) -> Vec<String> {
    let x = presence.get_child("x", ns::MUC_USER).expect("muc#user");
    x.children().filter(|c| c.is("status", ns::MUC_USER)).filter_map(|c| c.attr("code").map(str::to_owned)).collect()
}

#[actix::test]
async fn a_join_creates_the_room_and_groupchat_reaches_every_occupant() {
    let (_dir, store) = store();
    let layer = SessionLayer::start_with_modules(Hosts::single(Jid::new("localhost").expect("domain")), store.clone(), SessionConfig::default(), Metrics::global(), ALL);
    let mut alice = login(&layer, &store, "alice").await;
    let mut bob = login(&layer, &store, "bob").await;
    alice.send("<presence xmlns='jabber:client' to='coven@conference.localhost/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>").await;
    let own = alice.next().await;
    assert_eq!(own.attr("from"), Some("coven@conference.localhost/alice"), "{own:?}");
    assert_eq!(statuses(&own), ["110", "201"]);
    let subject = alice.next().await;
    assert!(subject.get_child("subject", ns::CLIENT).is_some(), "{subject:?}");
    alice.send("<iq xmlns='jabber:client' type='set' id='c1' to='coven@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>").await;
    assert_eq!(alice.next().await.attr("type"), Some("result"));

    bob.send("<presence xmlns='jabber:client' to='coven@conference.localhost/bob'/>").await;
    assert_eq!(bob.next().await.attr("from"), Some("coven@conference.localhost/alice"), "the others first");
    let own = bob.next().await;
    assert_eq!((own.attr("from"), statuses(&own)), (Some("coven@conference.localhost/bob"), vec!["110".to_owned()]));
    assert_eq!(alice.next().await.attr("from"), Some("coven@conference.localhost/bob"), "the occupants see the joiner");
    assert!(bob.next().await.get_child("subject", ns::CLIENT).is_some());

    bob.send("<message xmlns='jabber:client' to='coven@conference.localhost' type='groupchat'><body>hi</body></message>").await;
    for client in [&mut alice, &mut bob] {
        let message = client.next().await;
        assert_eq!((message.attr("from"), message.attr("type")), (Some("coven@conference.localhost/bob"), Some("groupchat")));
        assert_eq!(message.get_child("stanza-id", ns::STANZA_ID).and_then(|id| id.attr("by")), Some("coven@conference.localhost"));
    }
}
