//! The contract of [`PubSubNodes`]: nodes and their records, items newest first and trimmed to
//! `max_items`, retraction, purge, deletion; nothing leaks between services or nodes.

use super::{large_blob, user};
use crate::store::{PubSubItem, PubSubNodes};

fn item(id: &str, published: u64, payload: &str) -> PubSubItem {
    PubSubItem { id: id.to_owned(), publisher: "crone@example.com".to_owned(), published, payload: payload.as_bytes().to_vec() }
}

fn ids(items: &[PubSubItem]) -> Vec<&str> {
    items.iter().map(|item| item.id.as_str()).collect()
}

pub async fn pubsub(nodes: &dyn PubSubNodes, prefix: &str) {
    let alice = user(prefix, "pubsub", "alice");
    // Bob's name extends alice's: a backend selecting a service by string prefix would mix them.
    let bob = format!("{alice}.au");
    let (devices, bundles) = ("eu.siacs.conversations.axolotl.devicelist", "urn:xmpp:omemo:2:bundles");

    assert_eq!(nodes.node(&alice, devices).await.expect("node"), None);
    assert_eq!(nodes.nodes(&alice).await.expect("nodes"), Vec::new());
    nodes.set_node(&alice, devices, b"<config v='1'/>".to_vec()).await.expect("set_node");
    nodes.set_node(&alice, bundles, large_blob()).await.expect("set_node");
    nodes.set_node(&bob, devices, b"<bob/>".to_vec()).await.expect("set_node");
    nodes.set_node(&alice, devices, b"<config v='2'/>".to_vec()).await.expect("replace");
    assert_eq!(nodes.node(&alice, devices).await.expect("node"), Some(b"<config v='2'/>".to_vec()), "the last record wins");
    assert_eq!(
        nodes.nodes(&alice).await.expect("nodes"),
        vec![(devices.to_owned(), b"<config v='2'/>".to_vec()), (bundles.to_owned(), large_blob())],
        "sorted by node, records byte for byte, only the service's own"
    );

    // Items: newest first, an id published again is replaced and becomes the newest.
    for (n, id) in ["a", "b", "c"].into_iter().enumerate() {
        nodes.publish(&alice, devices, item(id, 1_000 + n as u64, &format!("<list n='{n}'/>")), 10).await.expect("publish");
    }
    nodes.publish(&alice, devices, item("a", 2_000, "<list again='1'/>"), 10).await.expect("republish");
    let all = nodes.items(&alice, devices, &[], None).await.expect("items");
    assert_eq!(ids(&all), ["a", "c", "b"], "newest first");
    assert_eq!(all[0], item("a", 2_000, "<list again='1'/>"), "every field kept");
    assert_eq!(ids(&nodes.items(&alice, devices, &[], Some(2)).await.expect("items")), ["a", "c"], "at most max");
    let wanted = ["b".to_owned(), "zz".to_owned(), "a".to_owned()];
    assert_eq!(ids(&nodes.items(&alice, devices, &wanted, None).await.expect("items")), ["a", "b"], "by id, the missing one left out");
    assert!(nodes.items(&bob, devices, &[], None).await.expect("items").is_empty(), "another service's node of that name is another node");
    assert!(nodes.items(&alice, bundles, &[], None).await.expect("items").is_empty(), "another node of the service");

    // max_items keeps the newest.
    nodes.publish(&alice, devices, item("d", 3_000, "<list/>"), 2).await.expect("publish");
    assert_eq!(ids(&nodes.items(&alice, devices, &[], None).await.expect("items")), ["d", "a"], "trimmed to the newest two");
    let big = PubSubItem { payload: large_blob(), ..item("big", 4_000, "") };
    nodes.publish(&alice, bundles, big.clone(), usize::MAX).await.expect("publish");
    assert_eq!(nodes.items(&alice, bundles, &[], None).await.expect("items"), vec![big], "a 1 MiB payload round-trips");

    assert!(nodes.retract(&alice, devices, "d").await.expect("retract"));
    assert!(!nodes.retract(&alice, devices, "d").await.expect("retract"), "retracting twice");
    assert_eq!(ids(&nodes.items(&alice, devices, &[], None).await.expect("items")), ["a"]);

    nodes.publish(&bob, devices, item("x", 5_000, "<x/>"), 10).await.expect("publish");
    nodes.purge(&alice, devices).await.expect("purge");
    assert!(nodes.items(&alice, devices, &[], None).await.expect("items").is_empty(), "purged");
    assert!(nodes.node(&alice, devices).await.expect("node").is_some(), "a purged node stays");
    assert_eq!(ids(&nodes.items(&bob, devices, &[], None).await.expect("items")), ["x"], "purging leaves other services alone");

    nodes.delete_node(&alice, bundles).await.expect("delete_node");
    assert_eq!(nodes.node(&alice, bundles).await.expect("node"), None);
    assert!(nodes.items(&alice, bundles, &[], None).await.expect("items").is_empty(), "a deleted node's items go with it");
    nodes.set_node(&alice, bundles, b"<again/>".to_vec()).await.expect("set_node");
    assert!(nodes.items(&alice, bundles, &[], None).await.expect("items").is_empty(), "a node created again starts empty");

    nodes.delete_service(&alice).await.expect("delete_service");
    assert_eq!(nodes.nodes(&alice).await.expect("nodes"), Vec::new());
    assert_eq!(nodes.nodes(&bob).await.expect("nodes").len(), 1, "deleting a service leaves the others");
    nodes.delete_service(&bob).await.expect("delete_service");
}
