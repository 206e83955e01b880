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
