//! What the server advertises: its disco#info identity and features (XEP-0030) and the XEP-0115
//! verification string computed from them, so the two can never disagree.

use base64::Engine;
use sha1::{Digest, Sha1};
use starling_protocol::ns;

/// The XEP-0115 node the server's caps name.
pub const CAPS_NODE: &str = "https://github.com/starling-xmpp/starling";

/// `node#ver`, the disco#info node the advertised caps point at (XEP-0115 §6.2).
pub fn caps_node() -> String {
    format!("{CAPS_NODE}#{}", caps_ver())
}

/// The server's identity: category, type, name.
pub const SERVER_IDENTITY: (&str, &str, &str) = ("server", "im", "Starling");

/// Features of the server domain, sorted as XEP-0115 §5.1 requires for hashing.
pub fn server_features() -> Vec<&'static str> {
    let mut features = vec![
        ns::DISCO_INFO,
        ns::DISCO_ITEMS,
        ns::PING,
        ns::VERSION,
        ns::LAST,
        ns::BLOCKING,
        ns::CARBONS,
        ns::VCARD,
        ns::PRIVATE,
        ns::ROSTER_VER,
        ns::PRE_APPROVAL,
        ns::REGISTER,
        // XEP-0160 §5: offline storage is advertised with this plain string.
        "msgoffline",
    ];
    features.sort_unstable();
    features
}

/// XEP-0115 §5.1 verification string over the identity and features.
pub fn caps_ver() -> String {
    let (category, kind, name) = SERVER_IDENTITY;
    let mut input = format!("{category}/{kind}//{name}<");
    for feature in server_features() {
        input.push_str(feature);
        input.push('<');
    }
    base64::engine::general_purpose::STANDARD.encode(Sha1::digest(input.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XEP-0115 §5.2's worked example, through the same hashing steps.
    #[test]
    fn hashes_like_the_xep_example() {
        let input = "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<";
        let ver = base64::engine::general_purpose::STANDARD.encode(Sha1::digest(input.as_bytes()));
        assert_eq!(ver, "QgayPKawpkPSDYmwT/WM94uAlu0=");
        assert_eq!(caps_ver().len(), 28);
    }
}
