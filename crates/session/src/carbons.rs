//! XEP-0280 message carbons: copies of a user's chat messages to the user's other resources that
//! enabled carbons, wrapped so clients can tell them from direct messages.

use starling_protocol::{ns, Stanza, StanzaKind};
use starling_xml::escape_attr;

use crate::state::UserState;

impl UserState {
    /// A chat message one resource sent: `<sent/>` copies to the other carbons-enabled resources.
    pub fn carbon_sent(&mut self, sender: &starling_protocol::Jid, stanza: &Stanza) {
        self.carbon_copies(stanza, "sent", |resource| resource.jid != *sender);
    }

    /// A chat message delivered to `delivered`: `<received/>` copies to the other carbons-enabled
    /// resources.
    pub fn carbon_received(&mut self, delivered: &[usize], stanza: &Stanza) {
        let delivered: Vec<_> = delivered.iter().map(|&i| self.resources[i].jid.clone()).collect();
        self.carbon_copies(stanza, "received", |resource| !delivered.contains(&resource.jid));
    }

    fn carbon_copies(&mut self, stanza: &Stanza, direction: &str, include: impl Fn(&crate::state::Resource) -> bool) {
        if !stanza.type_is("chat") {
            return;
        }
        let targets: Vec<usize> = (0..self.resources.len())
            .filter(|&i| self.resources[i].carbons && self.resources[i].link.is_some() && include(&self.resources[i]))
            .collect();
        if targets.is_empty() || is_private(stanza) {
            return;
        }
        for index in targets {
            let to = self.resources[index].jid.clone();
            let copy = wrap(stanza, direction, &self.user, &to);
            let _ = self.send_to(index, StanzaKind::Message, copy);
        }
    }
}

/// `<private/>` (XEP-0280 §6) or `<no-copy/>` (XEP-0334) opt a message out. The bytes are searched
/// first so that ordinary messages are never parsed here.
fn is_private(stanza: &Stanza) -> bool {
    if !stanza.mentions(ns::CARBONS) && !stanza.mentions(ns::HINTS) {
        return false;
    }
    stanza.element().is_ok_and(|e| e.get_child("private", ns::CARBONS).is_some() || e.get_child("no-copy", ns::HINTS).is_some())
}

/// The carbon copy: the original bytes inside `<forwarded/>`, not re-serialised.
fn wrap(stanza: &Stanza, direction: &str, user: &starling_protocol::Jid, to: &starling_protocol::Jid) -> bytes::Bytes {
    let mut out = Vec::with_capacity(stanza.bytes.len() + 192);
    out.extend_from_slice(b"<message xmlns='jabber:client' type='chat' from='");
    escape_attr(&mut out, user.as_str());
    out.extend_from_slice(b"' to='");
    escape_attr(&mut out, to.as_str());
    out.extend_from_slice(b"'><");
    out.extend_from_slice(direction.as_bytes());
    out.extend_from_slice(b" xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>");
    out.extend_from_slice(&stanza.bytes);
    out.extend_from_slice(b"</forwarded></");
    out.extend_from_slice(direction.as_bytes());
    out.extend_from_slice(b"></message>");
    out.into()
}
