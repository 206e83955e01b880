//! XEP-0402 bookmarks (`urn:xmpp:bookmarks:1`, one PEP item per room, its JID the item id) kept
//! in step with XEP-0048 bookmarks in XEP-0049 private storage (`storage:bookmarks`), so clients
//! of either kind see the same rooms (XEP-0402 §5.3 `#compat`, the conversion of XEP-0411): a
//! client writing private storage has its rooms published (what changed) and retracted (what went)
//! on the PEP node, and its resources that asked for the node are notified; a client publishing
//! or retracting on the node has private storage written again from the node's items.

use std::collections::BTreeMap;

use starling_protocol::payload::pubsub::Event;
use starling_protocol::payload::DataForm;
use starling_protocol::{ns, Jid};
use starling_xml::Element;

use super::{notify, publish_item, retract_items, Refusal};
use crate::state::UserState;

pub(crate) const NODE: &str = "urn:xmpp:bookmarks:1";
const LEGACY: &str = "storage:bookmarks";
/// Where the private_xml module keeps `<storage xmlns='storage:bookmarks'/>` (`name|namespace`).
pub(crate) const PRIVATE_KEY: &str = "storage|storage:bookmarks";

/// The node's configuration, as XEP-0402 §3 has clients ask for it.
fn options() -> DataForm {
    DataForm::submit(&[
        ("FORM_TYPE", ns::PUBSUB_PUBLISH_OPTIONS),
        ("pubsub#persist_items", "true"),
        ("pubsub#max_items", "max"),
        ("pubsub#send_last_published_item", "never"),
        ("pubsub#access_model", "whitelist"),
    ])
}

/// A client stored `storage` (`<storage xmlns='storage:bookmarks'/>`) in private XML.
pub(crate) async fn from_private(state: &mut UserState, storage: &Element) {
    let wanted: BTreeMap<String, Element> = storage
        .children()
        .filter(|child| child.is("conference", LEGACY))
        .filter_map(|conference| Some((Jid::new(conference.attr("jid")?).ok()?.bare().to_string(), native(conference))))
        .collect();
    let user = state.user().to_string();
    let existing: BTreeMap<String, Vec<u8>> = match state.services().store.pubsub.items(&user, NODE, &[], None).await {
        Ok(items) => items.into_iter().map(|item| (item.id, item.payload)).collect(),
        Err(error) => return tracing::warn!(%user, %error, "could not read the bookmarks node; private storage not converted"),
    };
    let exists = super::nodes(state).await.is_some_and(|pep| pep.nodes.contains_key(NODE));
    let options = (!exists).then(options);
    for (room, conference) in &wanted {
        if existing.get(room).is_some_and(|bytes| *bytes == conference.to_bytes()) {
            continue;
        }
        match publish_item(state, NODE, Some(room.clone()), conference, options.as_ref()).await {
            Ok((id, node)) => notify(state, NODE, &node, &Event::Published { node: NODE, items: vec![(&id, Some(conference))] }).await,
            Err(Refusal::Stanza(error)) => tracing::warn!(%user, room, %error, "a bookmark from private storage was not published"),
            Err(Refusal::Store(error)) => tracing::warn!(%user, room, %error, "a bookmark from private storage was not published"),
        }
    }
    let gone: Vec<String> = existing.keys().filter(|room| !wanted.contains_key(*room)).cloned().collect();
    if !gone.is_empty()
        && let Ok(node) = retract_items(state, NODE, &gone).await
    {
        notify(state, NODE, &node, &Event::Retracted { node: NODE, ids: gone.iter().map(String::as_str).collect() }).await;
    }
}

/// The node changed through PubSub: private storage is written again from its items.
pub(crate) async fn to_private(state: &mut UserState) {
    let user = state.user().to_string();
    let store = state.services().store.clone();
    let items = match store.pubsub.items(&user, NODE, &[], None).await {
        Ok(items) => items,
        Err(error) => return tracing::warn!(%user, %error, "could not read the bookmarks node; private storage not converted"),
    };
    let mut storage = Element::new("storage", LEGACY);
    for item in items.iter().rev() {
        if let Ok(conference) = Element::parse(&item.payload) {
            storage.push_child(legacy(&item.id, &conference));
        }
    }
    if let Err(error) = store.private_xml.set(&user, PRIVATE_KEY, storage.to_bytes()).await {
        tracing::warn!(%user, %error, "could not write the bookmarks to private storage");
    }
}

/// `<conference jid=… name=… autojoin=…><nick/><password/></conference>` of XEP-0048 as XEP-0402's.
fn native(conference: &Element) -> Element {
    let mut out = Element::new("conference", NODE);
    if let Some(name) = conference.attr("name") {
        out.set_attr("name", name);
    }
    if matches!(conference.attr("autojoin"), Some("true" | "1")) {
        out.set_attr("autojoin", "true");
    }
    for child in ["nick", "password"] {
        if let Some(value) = conference.get_child(child, LEGACY) {
            out.push_child(Element::new(child, NODE).with_text(value.text()));
        }
    }
    out
}

/// XEP-0402's `<conference/>` (item `room`) as XEP-0048's.
fn legacy(room: &str, conference: &Element) -> Element {
    let mut out = Element::new("conference", LEGACY).with_attr("jid", room);
    if let Some(name) = conference.attr("name") {
        out.set_attr("name", name);
    }
    out.set_attr("autojoin", if matches!(conference.attr("autojoin"), Some("true" | "1")) { "true" } else { "false" });
    for child in ["nick", "password"] {
        if let Some(value) = conference.get_child(child, NODE) {
            out.push_child(Element::new(child, LEGACY).with_text(value.text()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bookmark_converts_both_ways_as_xep_0402_shows() {
        let stored = Element::parse(
            b"<conference xmlns='storage:bookmarks' jid='theplay@conference.shakespeare.lit' name='The Play' autojoin='1'><nick>JC</nick></conference>",
        )
        .expect("xml");
        let converted = native(&stored);
        let expected = Element::parse(b"<conference xmlns='urn:xmpp:bookmarks:1' name='The Play' autojoin='true'><nick>JC</nick></conference>").expect("xml");
        assert_eq!(converted, expected);
        let back = legacy("theplay@conference.shakespeare.lit", &converted);
        assert_eq!(back.attr("jid"), Some("theplay@conference.shakespeare.lit"));
        assert_eq!((back.attr("autojoin"), back.get_child("nick", LEGACY).map(Element::text)), (Some("true"), Some("JC".to_owned())));
    }
}
