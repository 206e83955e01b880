//! Client side of SASL on `rsasl`, with a cache of SCRAM salted passwords.
//!
//! A SCRAM client runs PBKDF2 with the server's iteration count on every login: thousands of HMACs.
//! On a load-test box shared with the server that would bill the harness's key derivation to the
//! server's logins/s. Test accounts share one password, and accounts created together often share
//! a salt, so the salted password is derived once per (mechanism, salt, iterations) and reused.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use rsasl::callback::{Context, Request, SessionCallback, SessionData};
use rsasl::mechanisms::scram::properties::{Iterations, Salt, SaltedPassword};
use rsasl::prelude::{Mechname, SASLClient, SASLConfig, SASLError, Session, SessionError, State};
use rsasl::property::{AuthId, Password};

use crate::cli::Mechanism;

type CacheKey = (&'static str, Vec<u8>, u32);

/// Salted passwords by (mechanism, salt, iterations), for the run's one password.
#[derive(Default)]
pub struct SaltedPasswordCache {
    entries: Mutex<HashMap<CacheKey, Arc<[u8]>>>,
}

/// Distinct salts remembered: enough for any sane account set, bounded against a server that
/// hands out a fresh salt per login.
const MAX_CACHED_SALTS: usize = 100_000;

impl SaltedPasswordCache {
    fn get_or_derive(&self, mechanism: &'static str, password: &[u8], salt: &[u8], iterations: u32) -> Option<Arc<[u8]>> {
        let key = (mechanism, salt.to_vec(), iterations);
        if let Some(found) = self.entries.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Some(found.clone());
        }
        let derived: Arc<[u8]> = match mechanism {
            "SCRAM-SHA-256" => Arc::from(pbkdf2::pbkdf2_hmac_array::<sha2::Sha256, 32>(password, salt, iterations).as_slice()),
            "SCRAM-SHA-1" => Arc::from(pbkdf2::pbkdf2_hmac_array::<sha1::Sha1, 20>(password, salt, iterations).as_slice()),
            _ => return None,
        };
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() < MAX_CACHED_SALTS {
            entries.insert(key, derived.clone());
        }
        Some(derived)
    }
}

/// Answers rsasl's requests for one login.
struct Credentials {
    authid: String,
    password: Arc<str>,
    cache: Arc<SaltedPasswordCache>,
}

impl SessionCallback for Credentials {
    fn callback(&self, session: &SessionData, context: &Context, request: &mut Request) -> Result<(), SessionError> {
        if request.is::<SaltedPassword>() {
            let mechanism = match session.mechanism().mechanism.as_str() {
                "SCRAM-SHA-256" => "SCRAM-SHA-256",
                "SCRAM-SHA-1" => "SCRAM-SHA-1",
                _ => return Ok(()),
            };
            // SCRAM hashes the SASLprep-ed password; printable ASCII is its own SASLprep, anything
            // else is left to rsasl's own derivation from the plain password.
            if !self.password.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
                return Ok(());
            }
            let (Some(salt), Some(iterations)) = (context.get_ref::<Salt>(), context.get_ref::<Iterations>()) else {
                return Ok(());
            };
            if let Some(salted) = self.cache.get_or_derive(mechanism, self.password.as_bytes(), salt, *iterations) {
                request.satisfy::<SaltedPassword>(&salted)?;
            }
            return Ok(());
        }
        request.satisfy::<AuthId>(&self.authid)?.satisfy::<Password>(self.password.as_bytes())?;
        Ok(())
    }
}

/// Why an exchange failed on our side.
#[derive(Debug, thiserror::Error)]
pub enum SaslError {
    #[error("setup: {0}")]
    Setup(#[from] SASLError),
    #[error("{0}")]
    Session(#[from] SessionError),
}

/// One authentication exchange in progress.
pub struct Exchange {
    session: Session,
    finished: bool,
}

/// What to send next.
pub enum Next {
    /// Send this response and wait for the server.
    Respond(Vec<u8>),
    /// The exchange is complete on our side.
    Done,
}

impl Exchange {
    /// Starts an exchange and returns the initial response (all supported mechanisms are
    /// client-first).
    pub fn start(mechanism: Mechanism, authid: &str, password: Arc<str>, cache: Arc<SaltedPasswordCache>) -> Result<(Exchange, Vec<u8>), SaslError> {
        let config: Arc<SASLConfig> =
            SASLConfig::builder().with_defaults().with_callback(Credentials { authid: authid.to_owned(), password, cache })?;
        let name = Mechname::parse(mechanism.name().as_bytes()).map_err(|_| SASLError::NoSharedMechanism)?;
        let session = SASLClient::new(config).start_suggested(&[name])?;
        let mut exchange = Exchange { session, finished: false };
        let initial = match exchange.step(None)? {
            Next::Respond(bytes) => bytes,
            Next::Done => Vec::new(),
        };
        Ok((exchange, initial))
    }

    /// Feeds a challenge (or the additional data of `<success/>`) to the mechanism.
    pub fn step(&mut self, input: Option<&[u8]>) -> Result<Next, SaslError> {
        let mut out = Cursor::new(Vec::new());
        match self.session.step(input, &mut out)? {
            State::Running => Ok(Next::Respond(out.into_inner())),
            State::Finished(_) => {
                self.finished = true;
                let out = out.into_inner();
                if out.is_empty() { Ok(Next::Done) } else { Ok(Next::Respond(out)) }
            }
        }
    }

    /// True once the mechanism has verified everything it needs from the server (for SCRAM, the
    /// server signature: a `<success/>` before that is not trusted).
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_derives_once_per_salt() {
        let cache = SaltedPasswordCache::default();
        let a = cache.get_or_derive("SCRAM-SHA-256", b"secret", b"salt", 16).expect("scram");
        let b = cache.get_or_derive("SCRAM-SHA-256", b"secret", b"salt", 16).expect("scram");
        assert!(Arc::ptr_eq(&a, &b));
        let c = cache.get_or_derive("SCRAM-SHA-1", b"secret", b"salt", 16).expect("scram");
        assert_eq!(c.len(), 20);
        assert!(cache.get_or_derive("PLAIN", b"secret", b"salt", 16).is_none());
    }

    #[test]
    fn plain_initial_response() {
        let cache = Arc::new(SaltedPasswordCache::default());
        let (exchange, initial) = Exchange::start(Mechanism::Plain, "user1", Arc::from("secret"), cache).expect("start");
        assert_eq!(initial, b"\0user1\0secret");
        assert!(exchange.is_finished());
    }

    #[test]
    fn scram_client_first() {
        let cache = Arc::new(SaltedPasswordCache::default());
        let (exchange, initial) = Exchange::start(Mechanism::ScramSha256, "user1", Arc::from("secret"), cache).expect("start");
        let text = String::from_utf8(initial).expect("ascii");
        assert!(text.starts_with("n,,n=user1,r="), "{text}");
        assert!(!exchange.is_finished());
    }
}
