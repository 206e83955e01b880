//! The per-user message rate limit (`[sessions] message_rate`, `message_burst`, or the user's
//! virtual host's): what all of a user's resources send together, counted in the user's actor
//! before any other hook runs, so a message over the limit is refused with `resource-constraint` (RFC 6120 §8.3.3.18, "retry
//! later") before anything of it is archived, stored or routed. Errors are never refused: they
//! answer something and carry nothing to store.

use std::time::Instant;

use starling_protocol::{Jid, Stanza, StanzaError, StanzaErrorCondition, StanzaKind};

use crate::allowance::Allowance;
use crate::registry::{Flow, Hook, Registrar};
use crate::state::UserState;

pub(super) fn register(r: &mut Registrar) {
    let hosts = r.hosts.iter();
    if hosts.map(|host| r.config.message_limit(host).0).all(|rate| rate == 0) {
        return;
    }
    r.outbound(&[StanzaKind::Message], 1, Hook::Now(limit));
}

/// The user's allowance of messages.
struct Sent(Allowance);

fn limit(state: &mut UserState, _: &Jid, stanza: Stanza, received: Instant) -> Flow {
    if stanza.is_error() {
        return Flow::Continue(stanza);
    }
    let (rate, burst) = state.services().config.message_limit(state.domain());
    if rate == 0 {
        return Flow::Continue(stanza);
    }
    let rate = f64::from(rate);
    let allowance = &mut state.ext.get_or_insert_with(|| Sent(Allowance::new(burst))).0;
    if allowance.take(rate, burst, received) {
        return Flow::Continue(stanza);
    }
    state.services().metrics.quota_refusals.message_rate.inc();
    // From the addressee, as a refusal further on would be: that is where clients look.
    let responder = stanza.to.clone().unwrap_or_else(|| state.user().clone());
    let error = StanzaError::new(StanzaErrorCondition::ResourceConstraint).with_text("Too many messages: slow down and send again later.");
    state.reply_stanza_error(&stanza, &responder, &error);
    Flow::Stop
}
