//! Accounts and their SCRAM credentials (RFC 5802, RFC 7677). Only the derived keys are stored,
//! never the password: with them the server can check a SCRAM proof (and a PLAIN password, by
//! deriving again) but cannot log in as the user elsewhere.

use std::fmt;

use async_trait::async_trait;
use hmac::digest::{FixedOutput, KeyInit};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::StoreError;

/// PBKDF2 iterations for new credentials: the minimum RFC 7677 §4 asks of SCRAM-SHA-256, and what
/// clients handle without a noticeable delay.
pub const DEFAULT_SCRAM_ITERATIONS: u32 = 4096;

/// Salt length for new credentials, in bytes (RFC 5802 leaves it open; 16 is the common choice).
const SALT_LEN: usize = 16;

/// The two keys a SCRAM server keeps for one hash function.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    /// `H(ClientKey)`: verifies the client's proof.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`: signs the server's final message.
    pub server_key: Vec<u8>,
}

// The keys are password equivalents for this server (the server key lets one impersonate it), so
// they stay out of logs.
impl fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramKeys").finish_non_exhaustive()
    }
}

/// What is stored for an account: keys for both SCRAM-SHA-1 and SCRAM-SHA-256, derived from the
/// same salt and iteration count so that either mechanism can be offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub sha1: ScramKeys,
    pub sha256: ScramKeys,
}

impl ScramCredentials {
    /// Derives credentials from a password with a fresh random salt. The password is used as the
    /// UTF-8 bytes given: preparing it (SASLprep / OpaqueString) is the caller's job, exactly as
    /// the client does before computing its proof.
    pub fn derive(password: &str, iterations: u32) -> ScramCredentials {
        let salt: [u8; SALT_LEN] = rand::random();
        derive_with_salt(password, &salt, iterations)
    }

    /// Whether `password` yields these keys (SASL PLAIN checks a password this way, so no password
    /// is ever stored). The comparison does not stop at the first differing byte.
    pub fn verify_password(&self, password: &str) -> bool {
        let keys = scram_keys::<Sha256, Hmac<Sha256>>(password.as_bytes(), &self.salt, self.iterations);
        keys.stored_key.len() == self.sha256.stored_key.len()
            && keys.stored_key.iter().zip(&self.sha256.stored_key).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

fn derive_with_salt(password: &str, salt: &[u8], iterations: u32) -> ScramCredentials {
    ScramCredentials {
        iterations,
        salt: salt.to_vec(),
        sha1: scram_keys::<Sha1, Hmac<Sha1>>(password.as_bytes(), salt, iterations),
        sha256: scram_keys::<Sha256, Hmac<Sha256>>(password.as_bytes(), salt, iterations),
    }
}

/// RFC 5802 §3: SaltedPassword = Hi(password, salt, i) (PBKDF2 with HMAC-H), ClientKey and
/// ServerKey are HMACs of it, StoredKey = H(ClientKey). `M` must be HMAC over `D`.
fn scram_keys<D, M>(password: &[u8], salt: &[u8], iterations: u32) -> ScramKeys
where
    D: Digest,
    M: Mac + KeyInit + FixedOutput + Clone + Sync,
{
    let mut salted = vec![0u8; <D as Digest>::output_size()];
    pbkdf2::pbkdf2::<M>(password, salt, iterations, &mut salted).expect("HMAC takes keys of any length");
    let client_key = hmac::<M>(&salted, b"Client Key");
    ScramKeys { stored_key: D::digest(&client_key).to_vec(), server_key: hmac::<M>(&salted, b"Server Key") }
}

fn hmac<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    Mac::update(&mut mac, data);
    mac.finalize().into_bytes().to_vec()
}

/// Accounts, keyed by normalised bare JID.
#[async_trait]
pub trait Accounts: Send + Sync + 'static {
    /// Creates an account; [`StoreError::Conflict`] if it exists already.
    async fn create(&self, user: &str, credentials: ScramCredentials) -> Result<(), StoreError>;

    /// The account's credentials, `None` if there is no such account.
    async fn credentials(&self, user: &str) -> Result<Option<ScramCredentials>, StoreError>;

    /// Replaces the credentials (password change); `false` if there is no such account.
    async fn set_credentials(&self, user: &str, credentials: ScramCredentials) -> Result<bool, StoreError>;

    /// Deletes the account only (see [`Store::remove_user`](super::Store::remove_user) for its
    /// data); `false` if there was no such account.
    async fn remove(&self, user: &str) -> Result<bool, StoreError>;

    /// Every account, sorted. An admin call: it reads the whole table.
    async fn list(&self) -> Result<Vec<String>, StoreError>;

    async fn exists(&self, user: &str) -> Result<bool, StoreError>;
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::STANDARD};

    use super::*;

    fn b64(text: &str) -> Vec<u8> {
        STANDARD.decode(text).expect("test vector is valid base64")
    }

    /// Replays the server side of an RFC example with our keys: the client's proof must verify
    /// against `stored_key`, and `server_key` must reproduce the RFC's server signature.
    fn check_exchange<D: Digest, M: Mac + KeyInit>(keys: &ScramKeys, auth_message: &str, proof: &str, signature: &str) {
        let client_signature = hmac::<M>(&keys.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = b64(proof).iter().zip(&client_signature).map(|(p, s)| p ^ s).collect();
        assert_eq!(D::digest(&client_key).to_vec(), keys.stored_key, "client proof does not verify against StoredKey");
        assert_eq!(hmac::<M>(&keys.server_key, auth_message.as_bytes()), b64(signature), "ServerKey does not reproduce v=");
    }

    #[test]
    fn rfc5802_scram_sha1_example() {
        let credentials = derive_with_salt("pencil", &b64("QSXCR+Q6sek8bf92"), 4096);
        let auth_message = [
            "n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
        ]
        .join(",");
        check_exchange::<Sha1, Hmac<Sha1>>(
            &credentials.sha1,
            &auth_message,
            "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        );
    }

    #[test]
    fn rfc7677_scram_sha256_example() {
        let credentials = derive_with_salt("pencil", &b64("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096);
        let auth_message = [
            "n=user,r=rOprNGfwEbeRWgbNEkqO",
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        ]
        .join(",");
        check_exchange::<Sha256, Hmac<Sha256>>(
            &credentials.sha256,
            &auth_message,
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        );
    }

    #[test]
    fn derive_uses_one_fresh_salt_for_both_hashes() {
        let first = ScramCredentials::derive("pencil", 4096);
        let second = ScramCredentials::derive("pencil", 4096);
        assert_eq!(first.salt.len(), SALT_LEN);
        assert_ne!(first.salt, second.salt, "two derivations drew the same salt");
        assert_eq!(first, derive_with_salt("pencil", &first.salt, 4096), "SHA-1 and SHA-256 keys must share the salt");
        assert_eq!((first.sha1.stored_key.len(), first.sha256.stored_key.len()), (20, 32));
    }

    #[test]
    fn debug_output_hides_keys() {
        let credentials = derive_with_salt("pencil", b"salt", 1);
        let shown = format!("{credentials:?}");
        assert!(!shown.contains(&format!("{:?}", credentials.sha1.server_key)), "{shown}");
    }
}
