//! RFC 6121 §8.5: where a message addressed to this user goes.

use std::time::Instant;

use starling_protocol::{Stanza, StanzaErrorCondition};

use crate::state::UserState;

impl UserState {
    pub async fn inbound_message(&mut self, stanza: Stanza, received: Instant) {
        let Some(to) = stanza.to.clone() else { return };
        // Archived (and stamped with its archive id) before any copy leaves: live, carbon and
        // offline copies all carry the same stanza-id.
        let Some(stanza) = self.archive_inbound(stanza).await else { return };
        let message_type = stanza.stanza_type.as_deref().unwrap_or("normal");
        if !to.is_bare() {
            if let Some(index) = self.resource_index(&to)
                && self.resources[index].link.is_some()
            {
                // §8.5.3.1: a connected resource gets it, available or not.
                if self.send_stanza(index, &stanza, Some(received)) {
                    self.carbon_received(&[index], &stanza);
                    return;
                }
            }
            // §8.5.3.2.1: no such resource: chat and normal fall back to the bare JID.
            if !matches!(message_type, "chat" | "normal") {
                if message_type == "groupchat" {
                    self.reply_error(&stanza, &to, StanzaErrorCondition::ServiceUnavailable);
                }
                return;
            }
        }
        match message_type {
            "error" => {}
            "groupchat" => self.reply_error(&stanza, &to, StanzaErrorCondition::ServiceUnavailable),
            "headline" => {
                for index in self.non_negative_available() {
                    self.send_stanza(index, &stanza, Some(received));
                }
            }
            _ => {
                // §8.5.2.1.1: the available resources of highest non-negative priority get it.
                let candidates = self.non_negative_available();
                let top = candidates.iter().map(|&i| self.resources[i].priority).max();
                let targets: Vec<usize> = candidates.into_iter().filter(|&i| Some(self.resources[i].priority) == top).collect();
                let mut delivered = Vec::new();
                for &index in &targets {
                    if self.send_stanza(index, &stanza, Some(received)) {
                        delivered.push(index);
                    }
                }
                if delivered.is_empty() {
                    self.store_offline(stanza).await;
                } else {
                    self.carbon_received(&delivered, &stanza);
                }
            }
        }
    }

    /// Indexes of available resources with non-negative priority.
    pub fn non_negative_available(&self) -> Vec<usize> {
        (0..self.resources.len())
            .filter(|&i| self.resources[i].is_available() && self.resources[i].priority >= 0)
            .collect()
    }
}
