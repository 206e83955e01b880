//! XEP-0484 FAST: tokens a client gets after a full login, to log in again in one round trip
//! with the HT SASL mechanisms (draft-schmaus-kitten-sasl-ht): the client sends
//! `authcid NUL HMAC-SHA-256(token, "Initiator" || channel-binding data)`, the server answers with
//! `HMAC-SHA-256(token, "Responder" || …)`. `HT-SHA-256-EXPR` binds to the TLS channel
//! (tls-exporter, TLS 1.3); `HT-SHA-256-NONE` does not, and is only offered over TLS.
//!
//! Each token is bound to one client (its SASL2 user-agent id) and to the mechanism it was
//! requested for. The store keeps only a random id per token: the token is
//! `HMAC-SHA-256(server key, user, client, id, mechanism)`, so neither a copy of the store nor the
//! key alone lets anyone log in. Two slots per client (XEP-0484 §5): a rotated token goes to
//! `new` and becomes `current` when the client first uses it.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use starling_cluster::store::{FastToken, FastTokenSlots, FastTokens, StoreError};

type HmacSha256 = Hmac<Sha256>;

/// The HT mechanisms, channel-bound first.
pub const MECHANISMS: &[&str] = &["HT-SHA-256-EXPR", "HT-SHA-256-NONE"];

/// Longest user-agent id a token is bound to (XEP-0388 suggests a UUID).
pub const MAX_CLIENT_ID: usize = 128;

/// `[fast]`: XEP-0484 tokens.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FastConfig {
    pub enabled: bool,
    /// Seconds a token is valid after it is issued.
    pub token_lifetime_seconds: u64,
    /// A token older than this gets a successor at its next use.
    pub rotate_after_seconds: u64,
    /// The file holding the key tokens are derived from (32 bytes or more); empty means
    /// `fast-token.key` in the data directory, created at first start. Every edge of a cluster
    /// needs the same key, or a token works only on the edge that issued it.
    pub key_file: String,
}

impl Default for FastConfig {
    fn default() -> Self {
        FastConfig { enabled: true, token_lifetime_seconds: 14 * 86_400, rotate_after_seconds: 86_400, key_file: String::new() }
    }
}

/// The server key tokens are derived from.
#[derive(Clone)]
pub struct FastKey(Vec<u8>);

// A secret: kept out of logs.
impl std::fmt::Debug for FastKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FastKey(..)")
    }
}

impl FastKey {
    /// A fresh random key (tests, and a node that does not persist one).
    pub fn random() -> FastKey {
        FastKey(rand::random::<[u8; 32]>().to_vec())
    }

    /// Reads the key from `key_file`, or from (creating it first) `fast-token.key` in `data_dir`.
    pub fn load(key_file: &str, data_dir: &std::path::Path) -> std::io::Result<FastKey> {
        load_secret_key(key_file, data_dir, "fast-token.key", "FAST key").map(FastKey)
    }

    /// The token `stored` stands for, for `user`'s `client`.
    fn token(&self, user: &str, client: &str, stored: &FastToken) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        for part in [user.as_bytes(), client.as_bytes(), &stored.id, stored.mechanism.as_bytes()] {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// A server secret (32 bytes or more) from `key_file`, or from `default_name` in `data_dir`,
/// made there with a random key on first start. `what` names it in errors.
pub fn load_secret_key(key_file: &str, data_dir: &std::path::Path, default_name: &str, what: &str) -> std::io::Result<Vec<u8>> {
    let annotate = |path: &std::path::Path| {
        let context = format!("{what} {}", path.display());
        move |error: std::io::Error| std::io::Error::new(error.kind(), format!("{context}: {error}"))
    };
    if !key_file.is_empty() {
        let path = std::path::Path::new(key_file);
        let key = std::fs::read(path).map_err(annotate(path))?;
        if key.len() < 32 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{what} {key_file}: shorter than 32 bytes")));
        }
        return Ok(key);
    }
    let path = data_dir.join(default_name);
    if let Ok(key) = std::fs::read(&path) {
        return Ok(key);
    }
    let key = rand::random::<[u8; 32]>().to_vec();
    write_private(&path, &key).map_err(annotate(&path))?;
    Ok(key)
}

/// Writes a new file only its owner can read (a key, a token); fails if it exists.
pub fn write_private(path: &std::path::Path, key: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(key)
}

/// A token issued to the client, for SASL2's `<success/>`.
pub struct Issued {
    pub token: String,
    /// Seconds since the Unix epoch.
    pub expires: u64,
}

/// What the client's HT message proved.
pub struct Verified {
    /// `HMAC(token, "Responder" || cb)`, the server's final message.
    pub responder: Vec<u8>,
    /// A successor when the token was due for rotation.
    pub rotated: Option<Issued>,
}

/// Why a FAST login failed, as a SASL condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No token of this client matches (wrong, revoked, replaced, other mechanism, replayed count).
    NotAuthorized,
    /// The token matched but has expired (XEP-0484 §6.2: `credentials-expired`).
    Expired,
    /// The store could not be read or written.
    Unavailable,
}

impl Refused {
    pub fn condition(self) -> &'static str {
        match self {
            Refused::NotAuthorized => "not-authorized",
            Refused::Expired => "credentials-expired",
            Refused::Unavailable => "temporary-auth-failure",
        }
    }
}

/// The client's `<fast/>` element: the XEP-0484 replay counter and whether to invalidate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Use {
    pub count: Option<u32>,
    pub invalidate: bool,
}

/// FAST on one edge: the key and the store.
pub struct Fast<'a> {
    pub config: &'a FastConfig,
    pub key: &'a FastKey,
    pub tokens: &'a dyn FastTokens,
}

impl Fast<'_> {
    /// Checks an HT `proof` (`HMAC(token, "Initiator" || cb)`) for `user`'s `client` with
    /// `mechanism`, and updates the slots: the token used becomes current, a counted use is
    /// remembered, an invalidated one forgotten, an old one gets a successor. A login with the
    /// current token that changes none of that writes nothing (the usual reconnect).
    pub async fn verify(&self, user: &str, client: &str, mechanism: &str, proof: &[u8], cb: &[u8], used: Use) -> Result<Verified, Refused> {
        let mut slots = self.tokens.get(user, client).await.map_err(unavailable)?;
        let matches = |stored: &Option<FastToken>| {
            stored.as_ref().is_some_and(|stored| stored.mechanism == mechanism && self.mac(user, client, stored, "Initiator", cb).verify_slice(proof).is_ok())
        };
        // The new slot first: using it retires the current one.
        let mut changed = false;
        let stored = if matches(&slots.new) {
            let new = slots.new.take();
            slots.current = new;
            changed = true;
            slots.current.clone()
        } else if matches(&slots.current) {
            slots.current.clone()
        } else {
            return Err(Refused::NotAuthorized);
        };
        let mut stored = stored.expect("matched");
        let now = now();
        if stored.expires <= now {
            return Err(Refused::Expired);
        }
        if let Some(count) = used.count {
            if count <= stored.count {
                return Err(Refused::NotAuthorized);
            }
            stored.count = count;
            slots.current = Some(stored.clone());
            changed = true;
        }
        let responder = self.mac(user, client, &stored, "Responder", cb).finalize().into_bytes().to_vec();
        let rotated = if used.invalidate {
            slots = FastTokenSlots::default();
            changed = true;
            None
        } else if now >= stored.issued.saturating_add(self.config.rotate_after_seconds) {
            changed = true;
            Some(self.place_new(user, client, mechanism, &mut slots))
        } else {
            None
        };
        if changed {
            self.tokens.put(user, client, &slots).await.map_err(unavailable)?;
        }
        Ok(Verified { responder, rotated })
    }

    /// Issues a token for `mechanism` to `user`'s `client` (after a full login that asked for
    /// one, XEP-0484 §3.2); an earlier token not used yet is replaced.
    pub async fn issue(&self, user: &str, client: &str, mechanism: &str) -> Result<Issued, StoreError> {
        let mut slots = self.tokens.get(user, client).await?;
        let issued = self.place_new(user, client, mechanism, &mut slots);
        self.tokens.put(user, client, &slots).await?;
        Ok(issued)
    }

    fn place_new(&self, user: &str, client: &str, mechanism: &str, slots: &mut FastTokenSlots) -> Issued {
        let now = now();
        let stored = FastToken {
            id: rand::random(),
            mechanism: mechanism.to_owned(),
            issued: now,
            expires: now.saturating_add(self.config.token_lifetime_seconds),
            count: 0,
        };
        let issued = Issued { token: self.key.token(user, client, &stored), expires: stored.expires };
        slots.new = Some(stored);
        issued
    }

    /// `HMAC(token, label || cb)` for the token `stored` stands for.
    fn mac(&self, user: &str, client: &str, stored: &FastToken, label: &str, cb: &[u8]) -> HmacSha256 {
        let token = self.key.token(user, client, stored);
        let mut mac = HmacSha256::new_from_slice(token.as_bytes()).expect("HMAC takes any key length");
        mac.update(label.as_bytes());
        mac.update(cb);
        mac
    }
}

fn unavailable(error: StoreError) -> Refused {
    tracing::warn!(%error, "FAST token store failed");
    Refused::Unavailable
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

/// The HT initial response: the authentication id and the initiator's proof.
pub fn parse_initial(initial: &[u8]) -> Option<(String, &[u8])> {
    let split = initial.iter().position(|&b| b == 0)?;
    let (name, proof) = (&initial[..split], &initial[split + 1..]);
    Some((String::from_utf8(name.to_vec()).ok()?, proof))
}

/// XEP-0082 date-time of a Unix time in seconds.
pub fn timestamp(unix_seconds: u64) -> String {
    starling_protocol::datetime::format(unix_seconds.saturating_mul(1_000_000))
}
