//! Slots (XEP-0363 §4): the key a file is stored under and the URLs that let its owner PUT it
//! and anyone holding the link GET it. Nothing about a slot is stored: its terms (size, type,
//! expiry) travel in the URL under an HMAC of the server's key, so any node holding the key can
//! issue a slot and any can serve it.

use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Path segments keep letters, digits and `-._~` (RFC 3986 unreserved); the rest is escaped.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
/// Stored names are cut to this many characters (their extension kept).
const MAX_NAME_CHARS: usize = 100;
const MAX_CONTENT_TYPE: usize = 127;
/// Hex characters in an owner and in a file id (128 bits each).
const ID_HEX: usize = 32;

/// Where a file is stored: `{owner}/{id}/{name}`. The owner is a keyed hash of the uploader's
/// bare JID (the quota counts what is under it; the URL does not reveal who uploaded), the id is
/// random, the name is the client's file name made safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileKey {
    pub owner: String,
    pub id: String,
    pub name: String,
}

/// What a URL's signature grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The exact size a PUT must have (`None` on a GET URL).
    pub size: Option<u64>,
    pub content_type: Option<String>,
    /// Seconds since the Unix epoch.
    pub expires: u64,
}

/// Why a request's URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not an upload URL")]
    Malformed,
    #[error("the URL's signature does not match")]
    BadSignature,
    #[error("the URL has expired")]
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Put,
    Get,
}

/// Signs and checks slot URLs with the server's key.
pub struct Signer {
    key: Vec<u8>,
}

// A secret: kept out of logs.
impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    pub fn new(key: Vec<u8>) -> Signer {
        Signer { key }
    }

    /// The directory `user`'s (bare JID) files are stored under.
    pub fn owner(&self, user: &str) -> String {
        hex::encode(&self.mac(&[b"owner", user.as_bytes()])[..ID_HEX / 2])
    }

    /// A new file of `user`'s named after the client's `filename`.
    pub fn new_file(&self, user: &str, filename: &str) -> FileKey {
        FileKey { owner: self.owner(user), id: hex::encode(rand::random::<[u8; ID_HEX / 2]>()), name: safe_name(filename) }
    }

    /// The URL that grants `access` to `key` on the terms of `grant`, under `base`.
    pub fn url(&self, base: &str, key: &FileKey, access: Access, grant: &Grant) -> String {
        let mut url = format!("{}/upload/{}/{}/{}?", base.trim_end_matches('/'), key.owner, key.id, utf8_percent_encode(&key.name, SEGMENT));
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(size) = grant.size {
            query.append_pair("size", &size.to_string());
        }
        if let Some(content_type) = &grant.content_type {
            query.append_pair("type", content_type);
        }
        query.append_pair("expires", &grant.expires.to_string());
        query.append_pair("sig", &hex::encode(self.signature(key, access, grant)));
        url.push_str(&query.finish());
        url
    }

    /// The file a request for `path` (after `/upload/`) with `query` names, and what its
    /// signature grants, if it is valid for `access` at `now`.
    pub fn verify(&self, path: &str, query: Option<&str>, access: Access, now: u64) -> Result<(FileKey, Grant), Refusal> {
        let key = parse_path(path).ok_or(Refusal::Malformed)?;
        let mut grant = Grant { size: None, content_type: None, expires: 0 };
        let mut signature = None;
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*name {
                "size" => grant.size = Some(value.parse().map_err(|_| Refusal::Malformed)?),
                "type" => grant.content_type = Some(value.into_owned()),
                "expires" => grant.expires = value.parse().map_err(|_| Refusal::Malformed)?,
                "sig" => signature = Some(hex::decode(&*value).map_err(|_| Refusal::Malformed)?),
                _ => {}
            }
        }
        let signature = signature.ok_or(Refusal::Malformed)?;
        if (access == Access::Put) != grant.size.is_some() {
            return Err(Refusal::BadSignature);
        }
        self.signer(&key, access, &grant).verify_slice(&signature).map_err(|_| Refusal::BadSignature)?;
        if grant.expires < now {
            return Err(Refusal::Expired);
        }
        Ok((key, grant))
    }

    fn signature(&self, key: &FileKey, access: Access, grant: &Grant) -> Vec<u8> {
        self.signer(key, access, grant).finalize().into_bytes().to_vec()
    }

    fn signer(&self, key: &FileKey, access: Access, grant: &Grant) -> HmacSha256 {
        let method: &[u8] = match access {
            Access::Put => b"PUT",
            Access::Get => b"GET",
        };
        let size = grant.size.map(|size| size.to_string()).unwrap_or_default();
        let expires = grant.expires.to_string();
        let content_type = grant.content_type.as_deref().unwrap_or_default();
        self.mac_of(&[method, key.owner.as_bytes(), key.id.as_bytes(), key.name.as_bytes(), size.as_bytes(), content_type.as_bytes(), expires.as_bytes()])
    }

    fn mac(&self, parts: &[&[u8]]) -> Vec<u8> {
        self.mac_of(parts).finalize().into_bytes().to_vec()
    }

    /// The MAC of `parts`, each length-prefixed so that no two lists read the same.
    fn mac_of(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        for part in parts {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        mac
    }
}

/// `owner/id/name` with the name unescaped, if it is one this server could have made.
fn parse_path(path: &str) -> Option<FileKey> {
    let mut segments = path.split('/');
    let (owner, id, name) = (segments.next()?, segments.next()?, segments.next()?);
    let name = percent_decode_str(name).decode_utf8().ok()?;
    let is_id = |segment: &str| segment.len() == ID_HEX && segment.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
    (segments.next().is_none() && is_id(owner) && is_id(id) && safe_name(&name) == name).then(|| FileKey { owner: owner.into(), id: id.into(), name: name.into_owned() })
}

/// The client's file name as one safe path segment: its last component, letters, digits and
/// `.-_+()` kept and anything else `_`, no leading dot, at most 100 characters with the
/// extension kept; `file` when nothing is left.
pub fn safe_name(filename: &str) -> String {
    let last = filename.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last.chars().map(|c| if c.is_alphanumeric() || ".-_+()".contains(c) { c } else { '_' }).collect();
    let cleaned = cleaned.trim_start_matches('.');
    if cleaned.is_empty() {
        return "file".into();
    }
    let length = cleaned.chars().count();
    if length <= MAX_NAME_CHARS {
        return cleaned.into();
    }
    let extension = cleaned.rfind('.').map(|dot| &cleaned[dot..]).filter(|extension| extension.chars().count() <= 16).unwrap_or_default();
    let stem: String = cleaned.chars().take(MAX_NAME_CHARS - extension.chars().count()).collect();
    stem + extension
}

/// A content type's essence (`type/subtype`, lower case, parameters dropped), if it is one.
pub fn content_type_essence(value: &str) -> Option<String> {
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    let token = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&byte));
    let (kind, subtype) = essence.split_once('/')?;
    (essence.len() <= MAX_CONTENT_TYPE && token(kind) && token(subtype)).then_some(essence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    fn split(url: &str) -> (&str, &str) {
        let rest = url.split_once("/upload/").expect("upload path").1;
        rest.split_once('?').expect("query")
    }

    #[test]
    fn a_put_url_verifies_with_its_terms_and_nothing_else() {
        let signer = signer();
        let key = signer.new_file("juliet@example.com", "../../etc/passwd");
        assert_eq!(key.name, "passwd");
        let grant = Grant { size: Some(1234), content_type: Some("image/png".into()), expires: 1_000 };
        let url = signer.url("https://example.com:5443/", &key, Access::Put, &grant);
        assert!(url.starts_with("https://example.com:5443/upload/"), "{url}");
        let (path, query) = split(&url);
        assert_eq!(signer.verify(path, Some(query), Access::Put, 999), Ok((key.clone(), grant)));
        assert_eq!(signer.verify(path, Some(query), Access::Put, 1_001), Err(Refusal::Expired));
        assert_eq!(signer.verify(path, Some(query), Access::Get, 999), Err(Refusal::BadSignature));
        let bigger = query.replace("size=1234", "size=1235");
        assert_eq!(signer.verify(path, Some(&bigger), Access::Put, 999), Err(Refusal::BadSignature));
        let other_type = query.replace("image%2Fpng", "text%2Fhtml");
        assert_eq!(signer.verify(path, Some(&other_type), Access::Put, 999), Err(Refusal::BadSignature));
        let other_file = path.replace("passwd", "shadow");
        assert_eq!(signer.verify(&other_file, Some(query), Access::Put, 999), Err(Refusal::BadSignature));
        assert_eq!(Signer::new(b"another key".to_vec()).verify(path, Some(query), Access::Put, 999), Err(Refusal::BadSignature));
    }

    #[test]
    fn a_get_url_round_trips_a_name_that_needs_escaping() {
        let signer = signer();
        let key = signer.new_file("romeo@example.com", "Été à Paris (1).jpeg");
        let grant = Grant { size: None, content_type: None, expires: 50 };
        let url = signer.url("http://localhost", &key, Access::Get, &grant);
        let (path, query) = split(&url);
        assert_eq!(signer.verify(path, Some(query), Access::Get, 10).map(|(key, _)| key.name), Ok("Été_à_Paris_(1).jpeg".into()));
    }

    #[test]
    fn paths_it_could_not_have_made_are_malformed() {
        let signer = signer();
        let id = "0".repeat(32);
        for path in [format!("{id}/{id}/..%2Fx"), format!("{id}/{id}/.hidden"), format!("{id}/{id}"), format!("{id}/{id}/a/b"), format!("zz/{id}/a")] {
            assert_eq!(signer.verify(&path, Some("expires=5&sig=00"), Access::Get, 0), Err(Refusal::Malformed), "{path}");
        }
        assert_eq!(signer.verify(&format!("{id}/{id}/a"), None, Access::Get, 0), Err(Refusal::Malformed));
    }

    #[test]
    fn owners_differ_by_user_and_hide_the_jid() {
        let signer = signer();
        assert_ne!(signer.owner("a@example.com"), signer.owner("b@example.com"));
        assert_eq!(signer.owner("a@example.com").len(), 32);
    }

    #[test]
    fn names_are_made_safe_and_short() {
        assert_eq!(safe_name("..."), "file");
        assert_eq!(safe_name("C:\\Users\\me\\photo.jpg"), "photo.jpg");
        assert_eq!(safe_name("a b#c?.txt"), "a_b_c_.txt");
        let long = format!("{}.tar.gz", "x".repeat(300));
        let safe = safe_name(&long);
        assert_eq!(safe.chars().count(), 100);
        assert!(safe.ends_with(".gz"));
    }

    #[test]
    fn content_types_are_checked_and_reduced_to_their_essence() {
        assert_eq!(content_type_essence("Image/PNG; charset=x").as_deref(), Some("image/png"));
        assert_eq!(content_type_essence("text/html\r\nX: y"), None);
        assert_eq!(content_type_essence("nonsense"), None);
    }
}
