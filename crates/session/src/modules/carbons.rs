//! XEP-0280 message carbons: copies of a user's chat messages to the user's other resources that
//! enabled carbons, wrapped so clients can tell them from direct messages.

use std::time::Instant;

use starling_protocol::{ns, Jid, Stanza, StanzaKind};
use starling_xml::{escape_attr, Element};

use crate::iq::{Iq, IqTo};
use crate::registry::{Flow, Hook, Registrar};
use crate::state::{Resource, UserState};

pub(super) fn register(r: &mut Registrar) {
    // Enabling is addressed to the server or the user's own account, depending on the client.
    for to in [IqTo::Server, IqTo::OwnAccount] {
        r.iq(to, ns::CARBONS, "enable", |state, iq| Box::pin(enable(state, iq)));
        r.iq(to, ns::CARBONS, "disable", |state, iq| Box::pin(enable(state, iq)));
    }
    r.inline(ns::CARBONS, enable_at_bind);
    r.outbound(&[StanzaKind::Message], 60, Hook::Now(sent));
    r.delivered(received);
    r.server_feature(ns::CARBONS);
}

/// On a resource: carbons are enabled.
struct CarbonsEnabled;

async fn enable(state: &mut UserState, iq: Iq) {
    if iq.is_get() {
        return state.refuse(&iq, starling_protocol::StanzaErrorCondition::ServiceUnavailable);
    }
    if let Some(index) = iq.resource.as_ref().and_then(|resource| state.resource_index(resource)) {
        let ext = &mut state.resource_mut(index).ext;
        if iq.payload.name() == "enable" {
            ext.insert(CarbonsEnabled);
        } else {
            ext.remove::<CarbonsEnabled>();
        }
    }
    state.reply(&iq, None);
}

/// Bind2 `<enable xmlns='urn:xmpp:carbons:2'/>`: on from the start, no answer (XEP-0386 §3).
fn enable_at_bind(state: &mut UserState, index: usize, request: &Element) -> Option<Element> {
    if request.name() == "enable" {
        state.resource_mut(index).ext.insert(CarbonsEnabled);
    }
    None
}

/// A chat message one resource sent: `<sent/>` copies to the other carbons-enabled resources.
fn sent(state: &mut UserState, sender: &Jid, stanza: Stanza, _: Instant) -> Flow {
    copies(state, &stanza, "sent", |resource| resource.jid() != sender);
    Flow::Continue(stanza)
}

/// A chat message delivered to `delivered`: `<received/>` copies to the other carbons-enabled
/// resources.
fn received(state: &mut UserState, delivered: &[usize], stanza: &Stanza) {
    let delivered: Vec<Jid> = delivered.iter().map(|&i| state.resource(i).jid().clone()).collect();
    copies(state, stanza, "received", |resource| !delivered.contains(resource.jid()));
}

fn copies(state: &mut UserState, stanza: &Stanza, direction: &str, include: impl Fn(&Resource) -> bool) {
    if !stanza.type_is("chat") {
        return;
    }
    let targets: Vec<usize> = (0..state.resources().len())
        .filter(|&i| {
            let resource = state.resource(i);
            resource.ext.get::<CarbonsEnabled>().is_some() && resource.is_connected() && include(resource)
        })
        .collect();
    if targets.is_empty() || is_private(stanza) {
        return;
    }
    for index in targets {
        let copy = wrap(stanza, direction, state.user(), state.resource(index).jid());
        let _ = state.send_to(index, StanzaKind::Message, copy);
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
fn wrap(stanza: &Stanza, direction: &str, user: &Jid, to: &Jid) -> bytes::Bytes {
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
