//! XEP-0012 last activity: the server's uptime, and when an account was last available. The
//! presence module calls [`record`] when a user's last resource goes unavailable.

use std::time::SystemTime;

use starling_cluster::store::LastSeen;
use starling_protocol::payload::LastActivity;
use starling_protocol::{ns, StanzaErrorCondition};

use super::roster::{self, has_from};
use crate::iq::{Iq, IqTo};
use crate::registry::Registrar;
use crate::state::UserState;

pub(super) fn register(r: &mut Registrar) {
    r.iq(IqTo::Server, ns::LAST, "query", |state, iq| Box::pin(async move { uptime(state, iq) }));
    r.iq(IqTo::Account, ns::LAST, "query", |state, iq| Box::pin(last_activity(state, iq)));
    r.server_feature(ns::LAST);
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// Records that the user went unavailable now, with the status text it left.
pub(crate) async fn record(state: &mut UserState, status: String) {
    let seen = LastSeen { unix_seconds: unix_now(), status };
    if let Err(error) = state.services().store.last_activity.set(state.user().as_str(), seen).await {
        tracing::warn!(user = %state.user(), %error, "could not record last activity");
    }
}

/// §5: to a server, last activity is its uptime.
fn uptime(state: &mut UserState, iq: Iq) {
    if !iq.is_get() {
        return state.refuse(&iq, StanzaErrorCondition::ServiceUnavailable);
    }
    let uptime = state.services().started.elapsed().map(|d| d.as_secs()).unwrap_or_default();
    state.reply(&iq, Some(LastActivity { seconds: uptime, status: None }.into()));
}

/// §3: only the user and its presence subscribers may ask; an online user was last active 0
/// seconds ago.
async fn last_activity(state: &mut UserState, iq: Iq) {
    if !iq.is_get() {
        return state.refuse(&iq, StanzaErrorCondition::ServiceUnavailable);
    }
    let asker = iq.stanza.from.bare();
    if asker != *state.user() && !has_from(roster::subscription(state, &asker).await) {
        return state.refuse(&iq, StanzaErrorCondition::Forbidden);
    }
    if state.resources().iter().any(|r| r.is_available()) {
        return state.reply(&iq, Some(LastActivity { seconds: 0, status: None }.into()));
    }
    match state.services().store.last_activity.get(state.user().as_str()).await {
        Ok(Some(seen)) => {
            let status = (!seen.status.is_empty()).then_some(seen.status);
            state.reply(&iq, Some(LastActivity { seconds: unix_now().saturating_sub(seen.unix_seconds), status }.into()));
        }
        Ok(None) => state.refuse(&iq, StanzaErrorCondition::ItemNotFound),
        Err(error) => state.refuse_for_store(&iq, error),
    }
}
