//! A message is archived before it goes on (for its sender, before it is routed; for its
//! recipient, before delivery or offline storage), so one refused further on is already stored.
//! But the sender was told it was refused, and a message the sender was told was refused must not
//! stay in anyone's archive (it would also let a refused flood fill the disk). Refusals known in
//! advance (full offline queue, quotas, rate) come before archiving; the others withdraw here:
//! - the sender's copy, when the error comes back: the error carries the message's `id` and comes
//!   from the addressee, so what the user sent lately is remembered by (addressee, id) for a
//!   minute. A message sent without an `id` cannot be matched and stays archived.
//! - the recipient's copy, when offline storage refuses the message after it was archived.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use starling_protocol::{Jid, Stanza, StanzaError, StanzaErrorCondition};

use super::ArchiveState;
use crate::state::UserState;

/// How long a refusal of a sent message is looked for, and for how many messages at most.
const REMEMBERED_FOR: Duration = Duration::from_secs(60);
const REMEMBERED_AT_MOST: usize = 4096;

/// What the user sent and archived lately, oldest first.
#[derive(Default)]
pub(super) struct SentLately(VecDeque<Sent>);

struct Sent {
    to: Jid,
    id: Box<str>,
    archive_id: u64,
    at: Instant,
}

impl SentLately {
    pub(super) fn remember(&mut self, to: Jid, id: &str, archive_id: u64, now: Instant) {
        while self.0.front().is_some_and(|sent| now.saturating_duration_since(sent.at) > REMEMBERED_FOR) || self.0.len() >= REMEMBERED_AT_MOST {
            self.0.pop_front();
        }
        self.0.push_back(Sent { to: to.bare(), id: id.into(), archive_id, at: now });
    }

    fn position(&self, to: &Jid, id: &str) -> Option<usize> {
        self.0.iter().rposition(|sent| &*sent.id == id && sent.to == *to)
    }

    fn take(&mut self, at: usize) -> Option<u64> {
        self.0.remove(at).map(|sent| sent.archive_id)
    }
}

/// Whether an error says the message was refused rather than that a client could not use it.
fn is_refusal(error: &Stanza) -> bool {
    use StanzaErrorCondition::*;
    let Ok(element) = error.element() else { return false };
    let condition = StanzaError::from_element(&element).map(|error| error.condition);
    matches!(condition, Some(ServiceUnavailable | ResourceConstraint | PolicyViolation | RecipientUnavailable | NotAllowed | Forbidden))
}

/// An error message for the user: if it refuses a message the user sent and archived lately,
/// that archive entry is removed.
pub(super) async fn withdraw_refused_sent(state: &mut UserState, error: &Stanza) {
    let Some(id) = error.id.as_deref() else { return };
    let from = error.from.bare();
    let Some(archive) = state.ext.get_mut::<ArchiveState>() else { return };
    let Some(at) = archive.sent_lately.position(&from, id) else { return };
    // Parsed only for an error that matches something sent.
    if !is_refusal(error) {
        return;
    }
    let Some(archive_id) = archive.sent_lately.take(at) else { return };
    withdraw(state, archive_id).await;
}

/// Offline storage refused `message`: if it is the one just archived for the user (it carries
/// that archive id), its entry goes.
pub(crate) async fn withdraw_received(state: &mut UserState, message: &Stanza) {
    let Some(archive_id) = state.ext.get_mut::<ArchiveState>().and_then(|archive| archive.received.take()) else { return };
    if super::carries_archive_id(state.user(), &message.bytes, archive_id) {
        withdraw(state, archive_id).await;
    }
}

async fn withdraw(state: &mut UserState, archive_id: u64) {
    let services = state.services().clone();
    // The entry may still wait in the writer's queue: written after the removal, it would stay.
    if let Some(writer) = services.archive_writer.as_ref()
        && writer.flush().await.is_err()
    {
        tracing::warn!(user = %state.user(), "archive busy: a refused message stays archived");
        return;
    }
    match services.store.archive.remove(state.user().as_str(), &[archive_id]).await {
        Ok(()) => services.metrics.archive_withdrawn.inc(),
        Err(error) => tracing::warn!(user = %state.user(), %error, "could not remove a refused message from the archive"),
    }
}
