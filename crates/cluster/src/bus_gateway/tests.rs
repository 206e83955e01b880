use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use starling_protocol::Jid;
use tokio::sync::mpsc;

use super::{BusGateway, SessionFeatures};
use crate::bus::{Bus, MemoryBus, OwnerEvent, OwnerInbox};
use crate::envelope::{EdgeRecord, Origin, OwnerRecord};
use crate::gateway::{ClientEvent, ClientLink, Gateway, StreamEnd, ToClient};

fn chat(to: &Jid, body: &str) -> Bytes {
    Bytes::from(format!("<message xmlns='jabber:client' to='{to}' type='chat'><body>{body}</body></message>"))
}

/// The stanzas the owners are handed back, in order, until `count` of them.
async fn handed_back(owners: &mut Box<dyn OwnerInbox>, count: usize) -> Vec<(u64, Bytes)> {
    let mut back = Vec::new();
    while back.len() < count {
        let event = tokio::time::timeout(Duration::from_secs(5), owners.next()).await.expect("a record in time").expect("record");
        if let OwnerEvent::Record(record) = event
            && let (OwnerRecord::ClientEvent { connection, event: ClientEvent::Undelivered(stanza), .. }, _) = OwnerRecord::decode_stamped(record.payload).expect("record")
        {
            back.push((connection, stanza));
        }
    }
    back
}

#[tokio::test]
async fn what_a_client_without_stream_management_cannot_take_goes_back_to_its_owner() {
    let bus = Arc::new(MemoryBus::new(4));
    let mut owners = bus.join_owners("owner").await.expect("owners");
    let gateway = BusGateway::start("edge", bus.clone(), SessionFeatures::default()).await.expect("gateway");
    let owner = Origin::new("owner");
    let send = |connection: u64, stanza: Bytes| {
        let bus = bus.clone();
        let record = EdgeRecord { connection, message: ToClient::Stanza(stanza, None) }.encode(&owner, String::new());
        async move { bus.publish_edge("edge", record).await.expect("published").await.expect("durable") }
    };

    // A client whose queue holds one stanza and never reads: the second cuts it, the third
    // arrives for a connection already cut.
    let slow = Jid::new("slow@example.org/phone").expect("jid");
    let (sender, mut slow_client) = mpsc::channel(1);
    let _slow_session = gateway.bind(slow.bare(), Some("phone".into()), ClientLink::new(7, sender), Vec::new()).await.expect("bound");
    for body in ["one", "two", "three"] {
        send(7, chat(&slow, body)).await;
    }
    assert_eq!(handed_back(&mut owners, 2).await, vec![(7, chat(&slow, "two")), (7, chat(&slow, "three"))]);
    assert!(matches!(slow_client.recv().await, Some(ToClient::Stanza(bytes, None)) if bytes == chat(&slow, "one")));

    // A client that went away while a stanza for it was on its way.
    let gone = Jid::new("gone@example.org/laptop").expect("jid");
    let (sender, _gone_client) = mpsc::channel(8);
    let binding = gateway.bind(gone.bare(), Some("laptop".into()), ClientLink::new(8, sender), Vec::new()).await.expect("bound");
    binding.session.unbind(StreamEnd::Closed).await;
    send(8, chat(&gone, "late")).await;
    assert_eq!(handed_back(&mut owners, 1).await, vec![(8, chat(&gone, "late"))]);

    // A connection this edge never bound: nothing to hand back to.
    send(9, chat(&gone, "stray")).await;
    send(8, chat(&gone, "after")).await;
    assert_eq!(handed_back(&mut owners, 1).await, vec![(8, chat(&gone, "after"))], "the stray one was dropped");
}

#[tokio::test]
async fn a_delivery_made_already_is_not_made_again() {
    let bus = Arc::new(MemoryBus::new(4));
    let _owners = bus.join_owners("owner").await.expect("owners");
    let gateway = BusGateway::start("edge", bus.clone(), SessionFeatures::default()).await.expect("gateway");
    let (old_owner, new_owner) = (Origin::new("frozen"), Origin::new("successor"));
    let send = |origin: &Origin, stanza: Bytes, key: Option<u64>| {
        let bus = bus.clone();
        let record = EdgeRecord { connection: 7, message: ToClient::Stanza(stanza, key) }.encode(origin, String::new());
        async move { bus.publish_edge("edge", record).await.expect("published").await.expect("durable") }
    };
    let bob = Jid::new("bob@example.org/phone").expect("jid");
    let (sender, mut client) = mpsc::channel(8);
    let _session = gateway.bind(bob.bare(), Some("phone".into()), ClientLink::new(7, sender), Vec::new()).await.expect("bound");
    // The successor replays records 1 and 2; the owner that was frozen wakes up and delivers its
    // copy of record 2, then the successor goes on with record 3.
    send(&new_owner, chat(&bob, "1"), Some(1)).await;
    send(&new_owner, chat(&bob, "2"), Some(2)).await;
    send(&old_owner, chat(&bob, "2"), Some(2)).await;
    send(&new_owner, chat(&bob, "3"), Some(3)).await;
    send(&new_owner, chat(&bob, "unkeyed"), None).await;
    let mut got = Vec::new();
    while got.len() < 4 {
        match tokio::time::timeout(Duration::from_secs(5), client.recv()).await.expect("in time") {
            Some(ToClient::Stanza(bytes, _)) => got.push(bytes),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, vec![chat(&bob, "1"), chat(&bob, "2"), chat(&bob, "3"), chat(&bob, "unkeyed")]);
    assert!(client.try_recv().is_err(), "nothing more");
}

#[tokio::test]
async fn once_a_new_owner_announces_itself_an_earlier_one_writes_nothing_more() {
    let bus = Arc::new(MemoryBus::new(4));
    let _owners = bus.join_owners("owner").await.expect("owners");
    let gateway = BusGateway::start("edge", bus.clone(), SessionFeatures::default()).await.expect("gateway");
    let (old_owner, new_owner) = (Origin::new("frozen"), Origin::new("successor"));
    let send = |origin: &Origin, message: ToClient| {
        let bus = bus.clone();
        let record = EdgeRecord { connection: 7, message }.encode(origin, String::new());
        async move { bus.publish_edge("edge", record).await.expect("published").await.expect("durable") }
    };
    let bob = Jid::new("bob@example.org/phone").expect("jid");
    let (sender, mut client) = mpsc::channel(8);
    let _session = gateway.bind(bob.bare(), Some("phone".into()), ClientLink::new(7, sender), Vec::new()).await.expect("bound");
    send(&old_owner, ToClient::Stanza(chat(&bob, "before"), Some(1))).await;
    // The successor took the partition over while the old owner was frozen; woken up, the old
    // owner still writes what it had read (a key the edge no longer remembers) and closes.
    send(&new_owner, ToClient::Sync(bob.clone())).await;
    send(&old_owner, ToClient::Stanza(chat(&bob, "stale"), Some(99))).await;
    send(&old_owner, ToClient::EndStream).await;
    send(&new_owner, ToClient::Stanza(chat(&bob, "after"), Some(2))).await;
    let mut got = Vec::new();
    while got.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), client.recv()).await.expect("in time") {
            Some(ToClient::Stanza(bytes, _)) => got.push(bytes),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, vec![chat(&bob, "before"), chat(&bob, "after")]);
    assert!(client.try_recv().is_err(), "nothing more");
}
