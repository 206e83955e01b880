//! XEP-0160: messages for a user with no available resource are kept and delivered, stamped with
//! XEP-0203 delay, when a resource of non-negative priority becomes available.

use starling_protocol::{ns, Stanza, StanzaErrorCondition};
use starling_xml::Element;

use crate::datetime;
use crate::state::UserState;

impl UserState {
    pub async fn store_offline(&mut self, stanza: Stanza) {
        let to = stanza.to.clone().unwrap_or_else(|| self.user.clone());
        // Whole seconds, as offline stamps have always been.
        let delay = Element::new("delay", ns::DELAY).with_attr("from", self.domain().as_str()).with_attr("stamp", datetime::format(datetime::now_micros() / 1_000_000 * 1_000_000));
        let stamped = stanza.with_appended_child(&delay);
        let limit = self.services.config.max_offline_per_user;
        match self.services.store.offline.push(self.user.as_str(), stamped.bytes.to_vec(), limit).await {
            Ok(_) => self.services.metrics.offline_stored.inc(),
            Err(error) => {
                tracing::warn!(user = %self.user, %error, "offline storage refused a message");
                self.reply_error(&stanza, &to, StanzaErrorCondition::ServiceUnavailable);
            }
        }
    }

    /// Sends the stored messages to the resource at `index` and forgets those that were queued.
    pub async fn deliver_offline(&mut self, index: usize) {
        let messages = match self.services.store.offline.fetch(self.user.as_str()).await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(user = %self.user, %error, "could not read offline messages");
                return;
            }
        };
        let mut delivered_upto = None;
        for (id, bytes) in messages {
            if self.send_to(index, starling_protocol::StanzaKind::Message, bytes.into()).is_err() {
                break;
            }
            delivered_upto = Some(id);
        }
        if let Some(id) = delivered_upto
            && let Err(error) = self.services.store.offline.remove_upto(self.user.as_str(), id).await
        {
            tracing::warn!(user = %self.user, %error, "could not remove delivered offline messages");
        }
    }
}
