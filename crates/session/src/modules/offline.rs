//! XEP-0160: messages for a user with no available resource are kept and delivered, stamped with
//! XEP-0203 delay, when a resource of non-negative priority becomes available ([`deliver`], which
//! the presence module calls). In a cluster, a message the archive recognised as replayed after an
//! owner's death is looked for in the queue before it is stored again (by its stanza id).
//!
//! The queue is bounded per user in messages (`[sessions] max_offline_per_user`, which the store
//! enforces atomically) and bytes (`max_offline_bytes_per_user`, counted here: the user's actor is
//! the queue's only writer). A message that would go to a full queue is refused before the
//! archive takes it (hook order 45, the archive's is 50): a refused message leaves nothing stored.

use starling_protocol::{Stanza, StanzaError, StanzaErrorCondition, StanzaKind};

use crate::datetime;
use crate::pipeline::goes_undelivered;
use crate::registry::{Flow, Hook, Registrar};
use crate::state::UserState;

pub(super) fn register(r: &mut Registrar) {
    r.inbound(&[StanzaKind::Message], 45, Hook::Later(|state, stanza, _| Box::pin(refuse_when_full(state, stanza))));
    r.undeliverable(|state, stanza| Box::pin(store(state, stanza)));
    // XEP-0160 §5: offline storage is advertised with this plain string.
    r.server_feature("msgoffline");
}

/// What the user's queue holds, read once from the store and then kept up to date.
#[derive(Clone, Copy)]
struct Queued {
    messages: usize,
    bytes: usize,
}

async fn queued(state: &mut UserState) -> Option<Queued> {
    if let Some(queued) = state.ext.get::<Queued>() {
        return Some(*queued);
    }
    let messages = match state.services().store.offline.fetch(state.user().as_str()).await {
        Ok(messages) => messages,
        Err(error) => {
            tracing::warn!(user = %state.user(), %error, "could not read the offline queue");
            return None;
        }
    };
    let queued = Queued { messages: messages.len(), bytes: messages.iter().map(|(_, bytes)| bytes.len()).sum() };
    Some(*state.ext.get_or_insert_with(|| queued))
}

/// Whether a message of `bytes` still fits in the queue (`true` if the queue could not be read:
/// the store's own count still bounds it).
async fn fits(state: &mut UserState, bytes: usize) -> bool {
    let sessions = &state.services().config.sessions;
    let (max_messages, max_bytes) = (sessions.max_offline_per_user, sessions.max_offline_bytes_per_user);
    queued(state).await.is_none_or(|queued| queued.messages < max_messages && (max_bytes == 0 || queued.bytes.saturating_add(bytes) <= max_bytes))
}

fn refuse_full(state: &mut UserState, stanza: &Stanza) {
    state.services().metrics.quota_refusals.offline_full.inc();
    let to = stanza.to.clone().unwrap_or_else(|| state.user().clone());
    let error = StanzaError::new(StanzaErrorCondition::ServiceUnavailable).with_text("The recipient is offline and can keep no more messages.");
    state.reply_stanza_error(stanza, &to, &error);
}

/// A message that would go to a full queue is refused before anything of it is stored.
async fn refuse_when_full(state: &mut UserState, stanza: Stanza) -> Flow {
    if !goes_undelivered(state, &stanza) || fits(state, stanza.bytes.len()).await {
        return Flow::Continue(stanza);
    }
    refuse_full(state, &stanza);
    Flow::Stop
}

/// Keeps a message nobody could take; the sender gets `service-unavailable` if the queue is full
/// or the store refuses (and the archive forgets the message). A message the server stamped
/// already (one sent to a stream-managed session and never acknowledged) keeps that first stamp.
async fn store(state: &mut UserState, stanza: Stanza) -> Flow {
    if let Some(id) = super::mam::replayed_archive_id(state)
        && stored_already(state, id).await
    {
        state.services().metrics.replayed_offline_messages_skipped.inc();
        return Flow::Stop;
    }
    // Whole seconds, as offline stamps have always been.
    let now = datetime::now_micros() / 1_000_000 * 1_000_000;
    let stamped = if stanza.has_delay_from(state.domain()) { stanza.clone() } else { stanza.with_delay(state.domain(), now) };
    let bytes = stamped.bytes.len();
    if !fits(state, bytes).await {
        refuse_full(state, &stanza);
        super::mam::withdraw_received(state, &stanza).await;
        return Flow::Stop;
    }
    let limit = state.services().config.sessions.max_offline_per_user;
    match state.services().store.offline.push(state.user().as_str(), stamped.bytes.to_vec(), limit).await {
        Ok(_) => {
            state.services().metrics.offline_stored.inc();
            if let Some(queued) = state.ext.get_mut::<Queued>() {
                queued.messages += 1;
                queued.bytes += bytes;
            }
        }
        Err(error) => {
            tracing::warn!(user = %state.user(), %error, "offline storage refused a message");
            let to = stanza.to.clone().unwrap_or_else(|| state.user().clone());
            state.reply_error(&stanza, &to, StanzaErrorCondition::ServiceUnavailable);
            super::mam::withdraw_received(state, &stanza).await;
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
    // Read again when next needed.
    state.ext.remove::<Queued>();
}
