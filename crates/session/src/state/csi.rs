//! XEP-0352 client state indication. While a client says it is inactive (a phone in a pocket),
//! presence updates and chat states to it are held, only the latest per contact (and kind), and
//! go out together with the next thing that cannot wait — a message with a body, an IQ,
//! anything else — or when the client is active again. Held stanzas are not yet sent: stream
//! management counts them when they go out.

use bytes::Bytes;
use starling_protocol::{ns, Jid, Stanza, StanzaKind};

use super::UserState;

/// Held stanzas beyond this many (a user with a huge roster) go out rather than grow the queue.
const MAX_HELD: usize = 500;

/// What an inactive client's resource holds back.
#[derive(Default)]
pub(crate) struct Held {
    /// Oldest first; at most one per (kind, sender).
    stanzas: Vec<HeldStanza>,
}

struct HeldStanza {
    kind: StanzaKind,
    from: Jid,
    bytes: Bytes,
}

/// Whether a stanza to an inactive client may wait: availability presence and bodiless chat
/// states may; subscription requests, messages with content and IQs may not.
fn may_wait(stanza: &Stanza) -> bool {
    match stanza.kind {
        StanzaKind::Presence => stanza.stanza_type.as_deref().is_none_or(|kind| kind == "unavailable"),
        StanzaKind::Message => !stanza.mentions("<body") && stanza.mentions(ns::CHAT_STATES),
        StanzaKind::Iq => false,
    }
}

impl UserState {
    /// The client of the resource at `index` says it is active (`true`) or inactive.
    pub fn set_client_state(&mut self, index: usize, active: bool) {
        if active {
            if self.resources[index].held.is_some() {
                self.flush_held(index);
                self.resources[index].held = None;
                self.services.metrics.clients_inactive.dec();
            }
        } else if self.resources[index].held.is_none() {
            self.resources[index].held = Some(Box::default());
            self.services.metrics.clients_inactive.inc();
        }
    }

    /// Holds `stanza` if the resource's client is inactive and it may wait; true when held.
    pub(super) fn hold_while_inactive(&mut self, index: usize, stanza: &Stanza) -> bool {
        let Some(held) = self.resources[index].held.as_mut() else { return false };
        if !may_wait(stanza) {
            return false;
        }
        let superseded = held.stanzas.iter().position(|h| h.kind == stanza.kind && h.from == stanza.from);
        if let Some(position) = superseded {
            held.stanzas.remove(position);
            self.services.metrics.csi_superseded.inc();
        }
        held.stanzas.push(HeldStanza { kind: stanza.kind, from: stanza.from.clone(), bytes: stanza.bytes.clone() });
        self.services.metrics.csi_held.inc();
        if held.stanzas.len() > MAX_HELD {
            self.flush_held(index);
        }
        true
    }

    /// Sends what the resource holds, in order, before anything else goes to it.
    pub(super) fn flush_held(&mut self, index: usize) {
        let Some(held) = self.resources[index].held.as_mut().filter(|held| !held.stanzas.is_empty()) else { return };
        let stanzas = std::mem::take(&mut held.stanzas);
        for HeldStanza { kind, bytes, .. } in stanzas {
            let _ = self.write(index, kind, bytes);
        }
    }

    /// A resource that goes away leaves nothing held behind in the count of inactive clients.
    pub(super) fn forget_client_state(&mut self, resource: &super::Resource) {
        if resource.held.is_some() {
            self.services.metrics.clients_inactive.dec();
        }
    }
}
