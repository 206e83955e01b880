//! XEP-0215 external service discovery: the STUN/TURN servers of `[external_services]`, each
//! restricted one with credentials for this user that the TURN server checks on its own (the TURN
//! REST shared-secret scheme: username `EXPIRY:user@domain`, password base64 HMAC-SHA1(secret,
//! username)). Offered only when services are configured.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use starling_protocol::payload::{ExternalService, ExternalServices, ExternalServicesQuery};
use starling_protocol::{datetime, ns, StanzaErrorCondition};

use crate::config::ExternalServiceConfig;
use crate::iq::{Iq, IqTo};
use crate::registry::Registrar;
use crate::state::UserState;

pub(super) fn register(r: &mut Registrar) {
    if r.config.external_services.services.is_empty() {
        return;
    }
    r.iq(IqTo::Server, ns::EXTDISCO, "services", |state, iq| Box::pin(async move { answer(state, iq) }));
    r.iq(IqTo::Server, ns::EXTDISCO, "credentials", |state, iq| Box::pin(async move { answer(state, iq) }));
    r.server_feature(ns::EXTDISCO);
}

fn answer(state: &mut UserState, iq: Iq) {
    if !iq.is_get() {
        return state.refuse(&iq, StanzaErrorCondition::BadRequest);
    }
    let query = match ExternalServicesQuery::try_from(&iq.payload) {
        Ok(query) => query,
        Err(error) => return state.refuse(&iq, error.condition()),
    };
    let config = &state.services().config.external_services;
    let expiry_seconds = crate::datetime::now_micros() / 1_000_000 + config.credential_lifetime_seconds;
    let user = state.user().to_string();
    let wanted = |service: &&ExternalServiceConfig| match &query {
        ExternalServicesQuery::Services { kind } => kind.as_deref().is_none_or(|kind| kind == service.kind),
        ExternalServicesQuery::Credentials { host, kind, port } => {
            *host == service.host && kind.as_deref().is_none_or(|kind| kind == service.kind) && port.is_none_or(|port| service.port == Some(port))
        }
    };
    let services: Vec<ExternalService> = config.services.iter().filter(wanted).map(|service| describe(service, &user, expiry_seconds)).collect();
    let answer = match query {
        ExternalServicesQuery::Services { kind } => ExternalServices { credentials: false, kind, services },
        // §3.3: credentials for a service we do not know of.
        ExternalServicesQuery::Credentials { .. } if services.is_empty() => return state.refuse(&iq, StanzaErrorCondition::ItemNotFound),
        ExternalServicesQuery::Credentials { .. } => ExternalServices { credentials: true, kind: None, services },
    };
    state.reply(&iq, Some((&answer).into()));
}

/// A configured service as this user sees it: with time-limited credentials when it has a secret.
fn describe(service: &ExternalServiceConfig, user: &str, expiry_seconds: u64) -> ExternalService {
    let mut described = ExternalService {
        kind: service.kind.clone(),
        host: service.host.clone(),
        port: service.port,
        transport: service.transport.clone(),
        name: service.name.clone(),
        ..ExternalService::default()
    };
    if let Some(password) = service.secret.as_deref().and_then(|secret| turn_password(secret, &format!("{expiry_seconds}:{user}"))) {
        described.username = Some(format!("{expiry_seconds}:{user}"));
        described.password = Some(password);
        described.expires = Some(datetime::format(expiry_seconds * 1_000_000));
        described.restricted = true;
    }
    described
}

/// The TURN REST password: what a TURN server configured with the same secret computes itself.
fn turn_password(secret: &str, username: &str) -> Option<String> {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(username.as_bytes());
    Some(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::turn_password;

    #[test]
    fn the_turn_password_is_the_one_coturn_computes() {
        // echo -n "1700000000:alice@example.com" | openssl dgst -binary -sha1 -hmac "north" | base64
        assert_eq!(turn_password("north", "1700000000:alice@example.com"), Some("3celanHA8Lk9Pxu1ukG8ouF3i3g=".into()));
    }
}
