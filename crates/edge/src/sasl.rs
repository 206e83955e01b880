//! SASL (RFC 6120 §6) on `rsasl`: SCRAM-SHA-256, SCRAM-SHA-1 (with -PLUS over TLS 1.3 using
//! tls-exporter channel binding, RFC 9266) and PLAIN over TLS. Credentials are the stored SCRAM keys
//! only; PLAIN is checked by deriving those keys from the offered password.
//!
//! rsasl's callbacks are synchronous, so the account's keys are fetched before the exchange starts,
//! from the username read out of the client's first message.

use std::io::Cursor;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rsasl::callback::{Context, Request, SessionCallback, SessionData};
use rsasl::mechanisms::plain::PLAIN;
use rsasl::mechanisms::scram::properties::ScramStoredPassword;
use rsasl::mechanisms::scram::{SCRAM_SHA1, SCRAM_SHA1_PLUS, SCRAM_SHA256, SCRAM_SHA256_PLUS};
use rsasl::prelude::{ChannelBindingCallback, Mechanism, Mechname, Registry, SASLConfig, SASLServer, Session, SessionError, State, Validation};
use rsasl::property::{AuthId, AuthzId, Password};
use rsasl::validate::{Validate, ValidationError};
use starling_cluster::failure_counts::FailureCounts;
use starling_cluster::store::ScramCredentials;

static WITH_BINDING: &[Mechanism] = &[SCRAM_SHA256_PLUS, SCRAM_SHA256, SCRAM_SHA1_PLUS, SCRAM_SHA1, PLAIN];
static WITHOUT_BINDING: &[Mechanism] = &[SCRAM_SHA256, SCRAM_SHA1, PLAIN];

/// Mechanisms in order of preference.
pub fn mechanisms(channel_binding: bool, plain_allowed: bool) -> Vec<&'static str> {
    let mut list = Vec::new();
    if channel_binding {
        list.extend(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"]);
    }
    list.extend(["SCRAM-SHA-256", "SCRAM-SHA-1"]);
    if plain_allowed {
        list.push("PLAIN");
    }
    list
}

/// The authentication id a client's first message names, so its keys can be fetched first.
pub fn initial_username(mechanism: &str, initial: &[u8]) -> Option<String> {
    if mechanism == "PLAIN" {
        let mut parts = initial.split(|&b| b == 0);
        let (_authzid, authcid) = (parts.next()?, parts.next()?);
        return String::from_utf8(authcid.to_vec()).ok();
    }
    // SCRAM client-first: gs2-header "n,," / "y,," / "p=cb,," then "n=saslname,r=…" (RFC 5802 §7).
    let text = std::str::from_utf8(initial).ok()?;
    let mut fields = text.splitn(4, ',');
    let (_cb, _authzid, name) = (fields.next()?, fields.next()?, fields.next()?);
    let name = name.strip_prefix("n=")?;
    Some(name.replace("=2C", ",").replace("=3D", "="))
}

struct Outcome;

impl Validation for Outcome {
    type Value = bool;
}

/// Answers rsasl's requests with the keys fetched for `username`.
struct StoredKeys {
    username: String,
    credentials: Option<ScramCredentials>,
}

impl SessionCallback for StoredKeys {
    fn callback(&self, session: &SessionData, context: &Context, request: &mut Request) -> Result<(), SessionError> {
        let (Some(credentials), Some(authid)) = (&self.credentials, context.get_ref::<AuthId>()) else { return Ok(()) };
        if authid != self.username {
            return Ok(());
        }
        let keys = if session.mechanism().mechanism.as_str().starts_with("SCRAM-SHA-1") { &credentials.sha1 } else { &credentials.sha256 };
        request.satisfy::<ScramStoredPassword>(&ScramStoredPassword::new(
            credentials.iterations,
            &credentials.salt,
            &keys.stored_key,
            &keys.server_key,
        ))?;
        Ok(())
    }

    fn validate(&self, session: &SessionData, context: &Context, validate: &mut Validate<'_>) -> Result<(), ValidationError> {
        let authid_ok = context.get_ref::<AuthId>() == Some(self.username.as_str());
        // An authorization identity other than the user's own is not supported (RFC 6120 §6.3.8).
        let authzid_ok = context.get_ref::<AuthzId>().is_none_or(|z| z.is_empty() || z.split('@').next() == Some(self.username.as_str()));
        let ok = authid_ok
            && authzid_ok
            && match (session.mechanism().mechanism.as_str(), &self.credentials) {
                ("PLAIN", Some(credentials)) => context
                    .get_ref::<Password>()
                    .and_then(|p| std::str::from_utf8(p).ok())
                    .is_some_and(|password| credentials.verify_password(password)),
                ("PLAIN", None) => false,
                // SCRAM reaches validation only after the client proof was verified.
                _ => self.credentials.is_some(),
            };
        validate.with::<Outcome, _>(|| Ok(ok))?;
        Ok(())
    }
}

/// tls-exporter channel binding data of this connection.
struct ExporterBinding(Option<Vec<u8>>);

impl ChannelBindingCallback for ExporterBinding {
    fn get_cb_data(&self, cbname: &str) -> Option<&[u8]> {
        (cbname == "tls-exporter").then_some(self.0.as_deref()).flatten()
    }
}

/// One exchange in progress.
pub struct Exchange {
    session: Session<Outcome, ExporterBinding>,
    /// What the session was started from, to start it again (see [`Exchange::step`]).
    config: Arc<SASLConfig>,
    exporter: Option<Vec<u8>>,
    mechanism: String,
    plus: bool,
    started: bool,
}

/// Server-first messages tried at most until one has a nonce without `"` or `\` (see
/// [`Exchange::step`]).
const NONCE_ATTEMPTS: usize = 16;

/// What to tell the client after a step.
pub enum Step {
    Challenge(Vec<u8>),
    Success(Vec<u8>),
    Failure(&'static str),
}

impl Exchange {
    pub fn start(mechanism: &str, username: String, credentials: Option<ScramCredentials>, exporter: Option<Vec<u8>>) -> Result<Exchange, &'static str> {
        // The registry lists -PLUS only when this connection has channel-binding data: rsasl's
        // SCRAM server takes its presence as "channel binding offered", and refuses a client that
        // says it could bind but was not offered the chance (downgrade protection, RFC 5802 §6).
        let registry = if exporter.is_some() { Registry::with_mechanisms(WITH_BINDING) } else { Registry::with_mechanisms(WITHOUT_BINDING) };
        let config: Arc<SASLConfig> = SASLConfig::builder()
            .with_registry(registry)
            .with_callback(StoredKeys { username, credentials })
            .map_err(|_| "temporary-auth-failure")?;
        let session = Exchange::session(&config, &exporter, mechanism)?;
        Ok(Exchange { session, config, exporter, mechanism: mechanism.to_owned(), plus: mechanism.ends_with("-PLUS"), started: false })
    }

    fn session(config: &Arc<SASLConfig>, exporter: &Option<Vec<u8>>, mechanism: &str) -> Result<Session<Outcome, ExporterBinding>, &'static str> {
        let server = SASLServer::<Outcome, ExporterBinding>::with_cb(config.clone(), ExporterBinding(exporter.clone()));
        let name = Mechname::parse(mechanism.as_bytes()).map_err(|_| "invalid-mechanism")?;
        server.start_suggested(name).map_err(|_| "invalid-mechanism")
    }

    pub fn step(&mut self, input: &[u8]) -> Step {
        let first = !self.started;
        self.started = true;
        // A -PLUS mechanism must bind (RFC 5802 §6: gs2 flag "p="); rsasl would accept "n"/"y" here.
        if self.plus && first && !input.starts_with(b"p=") {
            return Step::Failure("malformed-request");
        }
        if self.mechanism.starts_with("SCRAM-") && !scram_attributes_sliceable(input, first) {
            return Step::Failure("malformed-request");
        }
        let mut out = Cursor::new(Vec::new());
        let mut stepped = self.session.step(Some(input), &mut out);
        // rsasl draws the server nonce from all printable characters, as RFC 5802 allows; some
        // clients (xmpp.js's SCRAM, measured: ~18 % of its logins failed) split the message with a
        // quote-aware parser and break on `"`. The first step costs no key derivation, so a fresh
        // session is cheap: the exchange starts again until the nonce has neither `"` nor `\`.
        let mut attempts = 1;
        while first && self.mechanism.starts_with("SCRAM-") && attempts < NONCE_ATTEMPTS && matches!(stepped, Ok(State::Running)) {
            if !out.get_ref().iter().any(|&b| b == b'"' || b == b'\\') {
                break;
            }
            let Ok(session) = Exchange::session(&self.config, &self.exporter, &self.mechanism) else { break };
            self.session = session;
            out = Cursor::new(Vec::new());
            stepped = self.session.step(Some(input), &mut out);
            attempts += 1;
        }
        match stepped {
            Ok(State::Running) => Step::Challenge(out.into_inner()),
            Ok(State::Finished(_)) => match self.session.validation() {
                Some(true) => Step::Success(out.into_inner()),
                _ => Step::Failure("not-authorized"),
            },
            Err(SessionError::InputDataRequired) => Step::Failure("malformed-request"),
            Err(_) => Step::Failure("not-authorized"),
        }
    }
}

/// Whether every attribute of a SCRAM client message is at least `x=` long. rsasl 2.3.1's parser
/// slices each attribute's first two bytes unchecked and panics on a shorter one (`n,a,…`,
/// `n,,n,…`, `c=biws,r`: found by the `sasl` fuzz target within seconds); RFC 5802 §7 makes such
/// a message malformed anyway. The first message's gs2 flag is exempt (rsasl checks it), and its
/// authorization identity may be empty.
fn scram_attributes_sliceable(message: &[u8], first: bool) -> bool {
    let mut fields = message.split(|&byte| byte == b',');
    if first {
        let _flag = fields.next();
        if fields.next().is_some_and(|authzid| authzid.len() == 1) {
            return false;
        }
    }
    fields.all(|field| field.len() >= 2)
}

/// Slows down password guessing without locking out people who did nothing wrong. Within `window`:
/// after `max_failures` failures for one account *from one address*, that address may not try that
/// account again — even with the right password — until the window passes; after
/// `max_address_failures` failures from one address over any accounts (a spray), the address may
/// not try at all. The address bound is high because one address is often many people (a mobile
/// carrier's NAT); an account is never locked for everyone, so nobody can lock a user out by
/// guessing wrong from elsewhere. Refusals are `temporary-auth-failure`. Before that, each
/// further failure for the account from the address is answered later than the one before
/// (`first_delay`, doubling, at most [`MOST_DELAY`]): a guesser's attempts slow down, while a
/// person who mistyped once is answered at once. The counts are the cluster's (in Redis), so
/// spreading guesses over edges does not help; if they cannot be read, nobody is refused.
pub struct Throttle {
    max_failures: u32,
    max_address_failures: u32,
    window: Duration,
    first_delay: Duration,
    counts: Arc<dyn FailureCounts>,
}

/// The longest a failure's answer waits.
const MOST_DELAY: Duration = Duration::from_secs(4);

impl Throttle {
    pub fn new(max_failures: u32, max_address_failures: u32, window: Duration, first_delay: Duration, counts: Arc<dyn FailureCounts>) -> Throttle {
        Throttle { max_failures, max_address_failures, window, first_delay, counts }
    }

    /// The counts the throttle keeps (the cluster's, in a cluster), for other per-address limits.
    pub fn counts(&self) -> &dyn FailureCounts {
        self.counts.as_ref()
    }

    fn address_key(address: IpAddr) -> String {
        format!("auth:{address}")
    }

    fn account_key(address: IpAddr, account: &str) -> String {
        format!("auth:{address}:{account}")
    }

    pub async fn is_blocked(&self, address: IpAddr, account: &str) -> bool {
        let (by_address, by_account) = (Self::address_key(address), Self::account_key(address, account));
        match self.counts.get(&[&by_address, &by_account]).await {
            Ok(counts) => counts[0] >= self.max_address_failures || counts[1] >= self.max_failures,
            Err(error) => {
                tracing::warn!(%error, "authentication failure counts unreadable; not throttling");
                false
            }
        }
    }

    /// Counts a failure and returns how long its answer waits: nothing for the first failure
    /// for this account from this address in the window, then `first_delay`, doubling.
    pub async fn record_failure(&self, address: IpAddr, account: &str) -> Duration {
        let counted = async {
            self.counts.add(&Self::address_key(address), self.window).await?;
            self.counts.add(&Self::account_key(address, account), self.window).await
        };
        match counted.await {
            Ok(0 | 1) => Duration::ZERO,
            Ok(n) => self.first_delay.saturating_mul(1 << (n - 2).min(16)).min(MOST_DELAY),
            Err(error) => {
                tracing::warn!(%error, "could not count an authentication failure");
                Duration::ZERO
            }
        }
    }

    /// A success forgets the failures for that account from that address, not the address's: a
    /// guesser holding one valid account must not be able to reset its spray count.
    pub async fn record_success(&self, address: IpAddr, account: &str) {
        if let Err(error) = self.counts.clear(&Self::account_key(address, account)).await {
            tracing::warn!(%error, "could not clear authentication failures");
        }
    }
}

#[cfg(test)]
#[path = "sasl_tests.rs"]
mod tests;
