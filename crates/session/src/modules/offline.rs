//! XEP-0160: messages for a user with no available resource are kept and delivered, stamped with
//! XEP-0203 delay, when a resource of non-negative priority becomes available ([`deliver`], which
//! the presence module calls). In a cluster, a message the archive recognised as replayed after an
//! owner's death is looked for in the queue before it is stored again (by its stanza id).

use starling_protocol::{Stanza, StanzaErrorCondition, StanzaKind};

use crate::datetime;
use crate::registry::{Flow, Registrar};
use crate::state::UserState;

pub(super) fn register(r: &mut Registrar) {
    r.undeliverable(|state, stanza| Box::pin(store(state, stanza)));
    // XEP-0160 §5: offline storage is advertised with this plain string.
    r.server_feature("msgoffline");
}

/// Keeps a message nobody could take; the sender gets `service-unavailable` if the store refuses.
/// A message the server stamped already (one sent to a stream-managed session and never
/// acknowledged) keeps that first stamp.
async fn store(state: &mut UserState, stanza: Stanza) -> Flow {
    if let Some(id) = super::mam::replayed_archive_id(state)
        && stored_already(state, id).await
    {
        state.services().metrics.replayed_offline_messages_skipped.inc();
        return Flow::Stop;
    }
    let to = stanza.to.clone().unwrap_or_else(|| state.user().clone());
    // Whole seconds, as offline stamps have always been.
    let now = datetime::now_micros() / 1_000_000 * 1_000_000;
    let stamped = if stanza.has_delay_from(state.domain()) { stanza.clone() } else { stanza.with_delay(state.domain(), now) };
    let limit = state.services().config.sessions.max_offline_per_user;
    match state.services().store.offline.push(state.user().as_str(), stamped.bytes.to_vec(), limit).await {
        Ok(_) => state.services().metrics.offline_stored.inc(),
        Err(error) => {
            tracing::warn!(user = %state.user(), %error, "offline storage refused a message");
            state.reply_error(&stanza, &to, StanzaErrorCondition::ServiceUnavailable);
        }
    }
    Flow::Stop
}

/// Whether the queue holds the message archived under `id` (read only for a replayed message).
async fn stored_already(state: &UserState, id: u64) -> bool {
    match state.services().store.offline.fetch(state.user().as_str()).await {
        Ok(messages) => messages.iter().any(|(_, bytes)| super::mam::carries_archive_id(state.user(), bytes, id)),
        // Stored again rather than risk losing it.
        Err(_) => false,
    }
}

/// Sends the stored messages to the resource at `index` and forgets those that were queued.
pub(crate) async fn deliver(state: &mut UserState, index: usize) {
    let messages = match state.services().store.offline.fetch(state.user().as_str()).await {
        Ok(messages) => messages,
        Err(error) => {
            tracing::warn!(user = %state.user(), %error, "could not read offline messages");
            return;
        }
    };
    let mut delivered_upto = None;
    for (id, bytes) in messages {
        if state.send_to(index, StanzaKind::Message, bytes.into()).is_err() {
            break;
        }
        delivered_upto = Some(id);
    }
    if let Some(id) = delivered_upto
        && let Err(error) = state.services().store.offline.remove_upto(state.user().as_str(), id).await
    {
        tracing::warn!(user = %state.user(), %error, "could not remove delivered offline messages");
    }
}
