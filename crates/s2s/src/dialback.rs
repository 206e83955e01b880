//! Server Dialback keys (XEP-0220, generated as XEP-0185 recommends): an HMAC of the two domains
//! and the stream id under a secret only this deployment knows, so that any of its processes can
//! confirm a key another gave out, and nobody else can make one.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use starling_protocol::ns;
use starling_xml::Element;

pub(crate) const NS_DIALBACK: &str = "jabber:server:dialback";
/// The stream feature announcing dialback (XEP-0220 §2.1).
pub(crate) const NS_DIALBACK_FEATURE: &str = "urn:xmpp:features:dialback";

pub(crate) struct DialbackSecret {
    /// Hex SHA-256 of the configured secret: the HMAC key, as XEP-0185 §3 has it.
    hmac_key: String,
}

impl DialbackSecret {
    /// From the configured secret, or a random one when it is empty.
    pub(crate) fn new(secret: &str) -> DialbackSecret {
        let secret = if secret.is_empty() { hex::encode(rand::random::<[u8; 32]>()) } else { secret.to_owned() };
        DialbackSecret { hmac_key: hex::encode(Sha256::digest(secret.as_bytes())) }
    }

    /// The key `originating` presents to `receiving` on the stream `stream_id` (which the
    /// receiving server named).
    pub(crate) fn key(&self, receiving: &str, originating: &str, stream_id: &str) -> String {
        hex::encode(self.mac(receiving, originating, stream_id).finalize().into_bytes())
    }

    /// Whether `key` is the one this deployment gave out (compared in constant time).
    pub(crate) fn confirms(&self, key: &str, receiving: &str, originating: &str, stream_id: &str) -> bool {
        hex::decode(key.trim()).is_ok_and(|key| self.mac(receiving, originating, stream_id).verify_slice(&key).is_ok())
    }

    fn mac(&self, receiving: &str, originating: &str, stream_id: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.hmac_key.as_bytes()).expect("HMAC takes a key of any length");
        for part in [receiving, " ", originating, " ", stream_id] {
            mac.update(part.as_bytes());
        }
        mac
    }
}

/// `<db:result/>` or `<db:verify/>` (`name`), with the key as text when there is one and the
/// `type` of an answer.
pub(crate) fn element(name: &str, from: &str, to: &str, id: Option<&str>, key: Option<&str>, answer: Option<&str>) -> Vec<u8> {
    let mut element = Element::new(name, NS_DIALBACK).with_attr("from", from).with_attr("to", to);
    if let Some(id) = id {
        element.set_attr("id", id);
    }
    if let Some(answer) = answer {
        element.set_attr("type", answer);
    }
    if let Some(key) = key {
        element.push_text(key);
    }
    prefixed(&element)
}

/// `<db:result type='error'/>` with a stanza error `condition` (XEP-0220 §2.4): the pair is
/// refused, or its authoritative server could not be asked (`remote-connection-failed`).
pub(crate) fn result_error(from: &str, to: &str, condition: &str) -> Vec<u8> {
    let kind = if condition == "resource-constraint" { "wait" } else { "cancel" };
    let error = Element::new("error", ns::SERVER).with_attr("type", kind).with_child(Element::new(condition, ns::STANZA_ERRORS));
    prefixed(&Element::new("result", NS_DIALBACK).with_attr("from", from).with_attr("to", to).with_attr("type", "error").with_child(error))
}

/// Written with the `db:` prefix our stream headers bind: some servers (ejabberd) recognise
/// dialback elements by that prefixed name only.
fn prefixed(element: &Element) -> Vec<u8> {
    let mut out = Vec::with_capacity(200);
    element.write_prefixed(&mut out, "db");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep0185_key_is_hmac_sha256_of_the_domains_and_id_under_hex_sha256_of_the_secret() {
        // Computed independently (Python's hashlib and hmac).
        let secret = DialbackSecret::new("s3cr3tf0rd14lb4ck");
        assert_eq!(secret.hmac_key, "a7136eb1f46c9ef18c5e78c36ca257067c69b3d518285f0b18a96c33beae9acc");
        let key = secret.key("example.net", "example.com", "D60000229F");
        assert_eq!(key, "008c689ff366b50c63d69a3e2d2c0e0e1f8404b0118eb688a0102c87cb691bdc");
        assert!(secret.confirms(&key, "example.net", "example.com", "D60000229F"));
        assert!(!secret.confirms(&key, "example.net", "example.com", "D60000229G"));
        assert!(!secret.confirms("not hex", "example.net", "example.com", "D60000229F"));
    }
}
