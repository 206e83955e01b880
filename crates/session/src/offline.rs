//! XEP-0160: messages for a user with no available resource are kept and delivered, stamped with
//! XEP-0203 delay, when a resource of non-negative priority becomes available.

use std::time::SystemTime;

use starling_protocol::{ns, Stanza, StanzaErrorCondition};
use starling_xml::Element;

use crate::state::UserState;

impl UserState {
    pub async fn store_offline(&mut self, stanza: Stanza) {
        let to = stanza.to.clone().unwrap_or_else(|| self.user.clone());
        let delay = Element::new("delay", ns::DELAY).with_attr("from", self.domain().as_str()).with_attr("stamp", utc_timestamp(SystemTime::now()));
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

/// `YYYY-MM-DDThh:mm:ssZ` (XEP-0082) without a date-time dependency: civil-from-days arithmetic.
pub fn utc_timestamp(time: SystemTime) -> String {
    let seconds = time.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let days = (seconds / 86_400) as i64;
    let rem = seconds % 86_400;
    let (hour, minute, second) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_xep0082_timestamps() {
        assert_eq!(utc_timestamp(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        assert_eq!(utc_timestamp(t), "2026-11-18T11:06:40Z");
    }
}
