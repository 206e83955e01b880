//! XEP-0077 in-band registration, the signed-in part: password change (§3.2) and cancellation
//! (§3.3), allowed when registration is on. Registering a new account happens on the edge,
//! before authentication.

use starling_cluster::store::{ScramCredentials, DEFAULT_SCRAM_ITERATIONS};
use starling_protocol::payload::RegisterQuery;
use starling_protocol::{ns, StanzaErrorCondition, StreamError, StreamErrorCondition};

use crate::iq::{Iq, IqTo};
use crate::registry::Registrar;
use crate::state::UserState;

pub(super) fn register(r: &mut Registrar) {
    for to in [IqTo::Server, IqTo::OwnAccount] {
        r.iq(to, ns::REGISTER, "query", |state, iq| Box::pin(register_set(state, iq)));
    }
    r.server_feature(ns::REGISTER);
}

async fn register_set(state: &mut UserState, iq: Iq) {
    if iq.is_get() {
        return state.refuse(&iq, StanzaErrorCondition::ServiceUnavailable);
    }
    if !state.services().config.registration_on(state.domain()) {
        return state.refuse(&iq, StanzaErrorCondition::NotAllowed);
    }
    let query = match RegisterQuery::try_from(&iq.payload) {
        Ok(query) => query,
        Err(error) => return state.refuse(&iq, error.condition()),
    };
    let user = state.user().clone();
    if query.remove {
        match state.services().store.remove_user(user.as_str()).await {
            Ok(_) => {
                state.reply(&iq, None);
                state.account_removed(StreamError::new(StreamErrorCondition::NotAuthorized));
            }
            Err(error) => state.refuse_for_store(&iq, error),
        }
        return;
    }
    match (query.username, query.password) {
        (Some(username), Some(password)) if user.node() == Some(username.as_str()) && !password.is_empty() => {
            let credentials = ScramCredentials::derive(&password, DEFAULT_SCRAM_ITERATIONS);
            match state.services().store.accounts.set_credentials(user.as_str(), credentials).await {
                Ok(_) => state.reply(&iq, None),
                Err(error) => state.refuse_for_store(&iq, error),
            }
        }
        _ => state.refuse(&iq, StanzaErrorCondition::BadRequest),
    }
}
