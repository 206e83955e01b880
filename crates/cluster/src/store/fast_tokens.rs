//! FAST tokens (XEP-0484): what is kept of the tokens issued to each of a user's clients (a
//! client is its SASL2 user-agent id). Two slots per client, as XEP-0484 §5 suggests: the token
//! in use, and a newer one issued but not used yet, so that a rotation lost on the way to the
//! client does not lock it out.
//!
//! No token is stored, only its random id: the token is derived from the id with a server key
//! the store does not hold (see the edge's `fast` module), so the store alone lets nobody log in.

use async_trait::async_trait;

use super::StoreError;

/// One issued token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastToken {
    /// Random; the token is derived from it.
    pub id: [u8; 16],
    /// The SASL mechanism the token was requested for, the only one it works with.
    pub mechanism: String,
    /// Seconds since the Unix epoch.
    pub issued: u64,
    pub expires: u64,
    /// The highest XEP-0484 `count` the client used with this token (replays must go higher).
    pub count: u32,
}

/// The tokens of one client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FastTokenSlots {
    pub current: Option<FastToken>,
    pub new: Option<FastToken>,
}

impl FastTokenSlots {
    pub fn is_empty(&self) -> bool {
        self.current.is_none() && self.new.is_none()
    }

    /// When the later of the two expires (seconds since the epoch): a backend may forget the
    /// slots after it.
    pub fn expires(&self) -> u64 {
        self.current.iter().chain(&self.new).map(|token| token.expires).max().unwrap_or(0)
    }
}

const TOKEN_V1: u8 = 1;

impl FastToken {
    /// A stored token as bytes: a format byte, then id, issued, expires, count (big-endian) and
    /// the mechanism's name.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 16 + 8 + 8 + 4 + self.mechanism.len());
        out.push(TOKEN_V1);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.issued.to_be_bytes());
        out.extend_from_slice(&self.expires.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(self.mechanism.as_bytes());
        out
    }

    /// `None` if `bytes` is not what [`to_bytes`](Self::to_bytes) wrote.
    pub fn from_bytes(bytes: &[u8]) -> Option<FastToken> {
        let (&TOKEN_V1, rest) = bytes.split_first()? else { return None };
        let (id, rest) = rest.split_first_chunk::<16>()?;
        let (issued, rest) = rest.split_first_chunk::<8>()?;
        let (expires, rest) = rest.split_first_chunk::<8>()?;
        let (count, mechanism) = rest.split_first_chunk::<4>()?;
        Some(FastToken {
            id: *id,
            mechanism: std::str::from_utf8(mechanism).ok()?.to_owned(),
            issued: u64::from_be_bytes(*issued),
            expires: u64::from_be_bytes(*expires),
            count: u32::from_be_bytes(*count),
        })
    }
}

#[async_trait]
pub trait FastTokens: Send + Sync + 'static {
    /// The slots of `client` of `user` (both empty when none were issued or they were revoked).
    async fn get(&self, user: &str, client: &str) -> Result<FastTokenSlots, StoreError>;

    /// Replaces the slots of `client`; empty slots remove the client's entry.
    async fn put(&self, user: &str, client: &str, slots: &FastTokenSlots) -> Result<(), StoreError>;

    /// Revokes every token of every client of the user.
    async fn remove_user(&self, user: &str) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_and_garbage_does_not() {
        let token = FastToken { id: [7; 16], mechanism: "HT-SHA-256-NONE".into(), issued: 1, expires: u64::MAX, count: 42 };
        assert_eq!(FastToken::from_bytes(&token.to_bytes()), Some(token.clone()));
        assert_eq!(FastToken::from_bytes(&token.to_bytes()[..20]), None);
        assert_eq!(FastToken::from_bytes(b""), None);
        let mut other_format = token.to_bytes();
        other_format[0] = 9;
        assert_eq!(FastToken::from_bytes(&other_format), None);
    }
}
