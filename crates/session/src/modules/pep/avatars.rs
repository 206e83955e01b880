//! XEP-0398: the account's avatar is the same in its vCard (XEP-0054 `PHOTO`, what older clients
//! and XEP-0153 read) and on PEP (XEP-0084: the image on `urn:xmpp:avatar:data`, its description
//! on `urn:xmpp:avatar:metadata`, both under the SHA-1 of the image). A vCard set with a photo
//! publishes the image and its metadata (notifying who asked); metadata published through PubSub
//! writes the vCard's photo from the data item it names, or removes it when the metadata is empty
//! (the avatar was disabled, XEP-0084 §4.5).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};
use starling_protocol::payload::pubsub::Event;
use starling_protocol::ns;
use starling_xml::Element;

use super::{notify, publish_item, Refusal};
use crate::state::UserState;

pub(crate) const DATA: &str = "urn:xmpp:avatar:data";
pub(crate) const METADATA: &str = "urn:xmpp:avatar:metadata";

/// The account set its vCard (`vcard`): its photo, if any, becomes the PEP avatar.
pub(crate) async fn from_vcard(state: &mut UserState, vcard: &Element) {
    let Some(photo) = vcard.get_child("PHOTO", ns::VCARD) else { return };
    let Some(encoded) = photo.get_child("BINVAL", ns::VCARD).map(|binval| binval.text().split_whitespace().collect::<String>()) else { return };
    let Ok(image) = BASE64.decode(&encoded) else { return };
    let media_type = photo.get_child("TYPE", ns::VCARD).map_or_else(|| "image/png".to_owned(), Element::text);
    let id: String = Sha1::digest(&image).iter().map(|byte| format!("{byte:02x}")).collect();
    let data = Element::new("data", DATA).with_text(encoded);
    let info = Element::new("info", METADATA).with_attr("id", id.as_str()).with_attr("bytes", image.len().to_string()).with_attr("type", media_type);
    let metadata = Element::new("metadata", METADATA).with_child(info);
    for (node, payload) in [(DATA, &data), (METADATA, &metadata)] {
        match publish_item(state, node, Some(id.clone()), payload, None).await {
            Ok((id, config)) => {
                let shown = config.config.deliver_payloads.then_some(payload);
                notify(state, node, &config, &Event::Published { node, items: vec![(&id, shown)] }).await;
            }
            Err(Refusal::Stanza(error)) => return tracing::warn!(user = %state.user(), %error, "the vCard's photo was not published as an avatar"),
            Err(Refusal::Store(error)) => return tracing::warn!(user = %state.user(), %error, "the vCard's photo was not published as an avatar"),
        }
    }
}

/// The account published avatar metadata (`metadata`) through PubSub: the vCard's photo follows.
pub(crate) async fn to_vcard(state: &mut UserState, metadata: &Element) {
    let user = state.user().to_string();
    let store = state.services().store.clone();
    let photo = match metadata.get_child("info", METADATA).and_then(|info| Some((info.attr("id")?.to_owned(), info.attr("type").unwrap_or("image/png").to_owned()))) {
        Some((id, media_type)) => {
            let Ok(found) = store.pubsub.items(&user, DATA, std::slice::from_ref(&id), Some(1)).await else { return };
            let Some(data) = found.first().and_then(|item| Element::parse(&item.payload).ok()) else {
                // The image is not (yet) here: a client may point at one hosted elsewhere.
                return;
            };
            Some(Element::new("PHOTO", ns::VCARD).with_child(Element::new("TYPE", ns::VCARD).with_text(media_type)).with_child(Element::new("BINVAL", ns::VCARD).with_text(data.text())))
        }
        None => None,
    };
    let current = match store.vcards.get(&user).await {
        Ok(stored) => stored.and_then(|bytes| Element::parse(&bytes).ok()).unwrap_or_else(|| Element::new("vCard", ns::VCARD)),
        Err(error) => return tracing::warn!(%user, %error, "could not read the vCard to put the avatar in"),
    };
    let mut vcard = current;
    vcard.remove_children(|child| child.is("PHOTO", ns::VCARD));
    if let Some(photo) = photo {
        vcard.push_child(photo);
    }
    if let Err(error) = store.vcards.set(&user, vcard.to_bytes()).await {
        tracing::warn!(%user, %error, "could not write the avatar into the vCard");
    }
}
