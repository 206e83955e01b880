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
mod tests {
    use starling_cluster::failure_counts::LocalFailureCounts;

    use super::*;

    #[test]
    fn reads_the_username_from_first_messages() {
        assert_eq!(initial_username("SCRAM-SHA-256", b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").as_deref(), Some("user"));
        assert_eq!(initial_username("SCRAM-SHA-1-PLUS", b"p=tls-exporter,,n=a=2Cb=3D,r=x").as_deref(), Some("a,b="));
        assert_eq!(initial_username("PLAIN", b"\0juliet\0pencil").as_deref(), Some("juliet"));
        assert_eq!(initial_username("SCRAM-SHA-1", b"garbage"), None);
    }

    fn throttle(max_failures: u32, max_address_failures: u32, window: Duration, first_delay: Duration) -> Throttle {
        Throttle::new(max_failures, max_address_failures, window, first_delay, Arc::new(LocalFailureCounts::default()))
    }

    #[tokio::test]
    async fn throttle_blocks_an_account_from_one_address_and_a_spraying_address() {
        let throttle = throttle(3, 5, Duration::from_millis(50), Duration::ZERO);
        let ip: IpAddr = [127, 0, 0, 1].into();
        for _ in 0..3 {
            assert!(!throttle.is_blocked(ip, "bob").await);
            throttle.record_failure(ip, "bob").await;
        }
        assert!(throttle.is_blocked(ip, "bob").await, "bob from the guessing address");
        assert!(!throttle.is_blocked([127, 0, 0, 2].into(), "bob").await, "bob from elsewhere is not locked out");
        assert!(!throttle.is_blocked(ip, "carol").await, "others behind the same address are not either");
        throttle.record_failure(ip, "carol").await;
        throttle.record_failure(ip, "dave").await;
        assert!(throttle.is_blocked(ip, "erin").await, "five failures over any accounts: the address sprays");
        throttle.record_success(ip, "carol").await;
        assert!(throttle.is_blocked(ip, "erin").await, "a success does not reset the address");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(!throttle.is_blocked(ip, "bob").await && !throttle.is_blocked(ip, "erin").await);
    }

    #[tokio::test]
    async fn each_further_failure_is_answered_later() {
        let throttle = throttle(100, 1000, Duration::from_secs(60), Duration::from_millis(250));
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut delays = Vec::new();
        for _ in 0..7 {
            delays.push(throttle.record_failure(ip, "bob").await.as_millis());
        }
        assert_eq!(delays, [0, 250, 500, 1000, 2000, 4000, 4000], "the first at once, then doubling up to the cap");
        assert_eq!(throttle.record_failure(ip, "carol").await, Duration::ZERO, "another account's first failure from the same address");
        assert_eq!(throttle.record_failure([127, 0, 0, 2].into(), "bob").await, Duration::ZERO, "bob's first from elsewhere");
    }

    #[test]
    fn scram_sha_256_exchange_with_stored_keys() {
        let credentials = ScramCredentials::derive("pencil", 4096);
        let client_first = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        let mut exchange = Exchange::start("SCRAM-SHA-256", "user".into(), Some(credentials), None).expect("mechanism");
        assert!(matches!(exchange.step(client_first), Step::Challenge(_)));
        // A wrong proof fails.
        let Step::Failure(condition) = exchange.step(b"c=biws,r=rOprNGfwEbeRWgbNEkqO,p=AAAA") else { panic!("expected failure") };
        assert_eq!(condition, "not-authorized");
    }

    #[test]
    fn scram_messages_with_attributes_shorter_than_their_name_are_malformed_not_a_panic() {
        for (first, later) in [
            (&b"n,a,n=user,r=abc"[..], None),
            (b"n,,n,r=abc", None),
            (b"n,,n=user,r", None),
            (b"n,,n=user,r=abc", Some(&b"c=biws,r"[..])),
            (b"n,,n=user,r=abc", Some(b"c,r=abc,p=AAAA")),
        ] {
            let credentials = ScramCredentials::derive("pencil", 1);
            let mut exchange = Exchange::start("SCRAM-SHA-256", "user".into(), Some(credentials), None).expect("mechanism");
            let outcome = match later {
                None => exchange.step(first),
                Some(later) => {
                    assert!(matches!(exchange.step(first), Step::Challenge(_)));
                    exchange.step(later)
                }
            };
            assert!(matches!(outcome, Step::Failure("malformed-request")), "{:?}", String::from_utf8_lossy(later.unwrap_or(first)));
        }
    }

    #[test]
    fn server_nonces_never_carry_quotes_or_backslashes() {
        // Without the retry ~18 % of first messages had one; 500 tries would all but surely show it.
        for _ in 0..500 {
            let credentials = ScramCredentials::derive("pencil", 1);
            let mut exchange = Exchange::start("SCRAM-SHA-1", "user".into(), Some(credentials), None).expect("mechanism");
            let Step::Challenge(server_first) = exchange.step(b"n,,n=user,r=abc") else { panic!("expected a challenge") };
            assert!(!server_first.iter().any(|&b| b == b'"' || b == b'\\'), "{}", String::from_utf8_lossy(&server_first));
        }
    }

    /// A real rsasl client against our server side, with and without channel binding.
    fn client_exchange(mechanism: &str, password: &str, client_cb: Option<&[u8]>, server_cb: Option<Vec<u8>>) -> bool {
        use rsasl::prelude::SASLClient;
        struct Binding(Vec<u8>);
        impl ChannelBindingCallback for Binding {
            fn get_cb_data(&self, cbname: &str) -> Option<&[u8]> {
                (cbname == "tls-exporter").then_some(self.0.as_slice())
            }
        }
        let credentials = ScramCredentials::derive("pencil", 4096);
        /// rsasl's `with_credentials` registry has no -PLUS mechanisms, so the client gets ours.
        struct ClientCredentials(String, bool);
        impl SessionCallback for ClientCredentials {
            fn enable_channel_binding(&self) -> bool {
                self.1
            }

            fn callback(&self, _: &SessionData, _: &Context, request: &mut Request) -> Result<(), SessionError> {
                request.satisfy::<AuthId>("user")?.satisfy::<Password>(self.0.as_bytes())?;
                Ok(())
            }
        }
        let config = SASLConfig::builder()
            .with_registry(Registry::with_mechanisms(WITH_BINDING))
            .with_callback(ClientCredentials(password.to_owned(), client_cb.is_some()))
            .expect("client config");
        // Offered as a server offers them: -PLUS beside the plain variant.
        let plain = mechanism.trim_end_matches("-PLUS");
        let offered = [Mechname::parse(mechanism.as_bytes()).expect("name"), Mechname::parse(plain.as_bytes()).expect("name")];
        let client = match client_cb {
            Some(data) => SASLClient::with_cb(config, Binding(data.to_vec())).start_suggested_iter(offered),
            None => SASLClient::with_cb(config, Binding(Vec::new())).start_suggested_iter(offered[1..].iter().copied()),
        };
        let mut client = client.expect("client mechanism");
        let mut server = Exchange::start(mechanism, "user".into(), Some(credentials), server_cb).expect("server mechanism");
        let mut to_server = Cursor::new(Vec::new());
        client.step(None, &mut to_server).expect("client first");
        for _ in 0..4 {
            match server.step(to_server.get_ref()) {
                Step::Challenge(data) => {
                    to_server = Cursor::new(Vec::new());
                    if client.step(Some(&data), &mut to_server).is_err() {
                        return false;
                    }
                }
                Step::Success(data) => return client.step(Some(&data), &mut Cursor::new(Vec::new())).is_ok(),
                Step::Failure(_) => return false,
            }
        }
        false
    }

    #[test]
    fn scram_succeeds_with_the_right_password_only() {
        for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-1"] {
            assert!(client_exchange(mechanism, "pencil", None, None), "{mechanism}");
            assert!(!client_exchange(mechanism, "pencil2", None, None), "{mechanism} with a wrong password");
        }
    }

    #[test]
    fn scram_plus_binds_to_the_tls_exporter() {
        let exporter = vec![7u8; 32];
        for mechanism in ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"] {
            assert!(client_exchange(mechanism, "pencil", Some(&exporter), Some(exporter.clone())), "{mechanism}");
            // A man in the middle terminates TLS itself, so the client sees another exporter value.
            assert!(!client_exchange(mechanism, "pencil", Some(&[8u8; 32]), Some(exporter.clone())), "{mechanism} with a different channel");
            // Choosing -PLUS and then not binding is refused.
            let credentials = ScramCredentials::derive("pencil", 4096);
            let mut exchange = Exchange::start(mechanism, "user".into(), Some(credentials), Some(exporter.clone())).expect("mechanism");
            assert!(matches!(exchange.step(b"n,,n=user,r=abc"), Step::Failure("malformed-request")));
        }
    }

    #[test]
    fn plain_checks_the_password_against_stored_keys() {
        let credentials = ScramCredentials::derive("pencil", 4096);
        let mut exchange = Exchange::start("PLAIN", "juliet".into(), Some(credentials.clone()), None).expect("mechanism");
        assert!(matches!(exchange.step(b"\0juliet\0pencil"), Step::Success(_)));
        let mut exchange = Exchange::start("PLAIN", "juliet".into(), Some(credentials), None).expect("mechanism");
        assert!(matches!(exchange.step(b"\0juliet\0wrong"), Step::Failure("not-authorized")));
        let mut exchange = Exchange::start("PLAIN", "juliet".into(), None, None).expect("mechanism");
        assert!(matches!(exchange.step(b"\0juliet\0pencil"), Step::Failure("not-authorized")));
    }
}
