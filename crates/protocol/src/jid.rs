//! XMPP addresses (JIDs) as defined by RFC 7622.
//!
//! A [`Jid`] only exists in normalized form: every part has been through the enforcement step of
//! its RFC 7622 profile when the value was built. That makes equality, hashing and ordering plain
//! string operations, which matters because the router compares and hashes addresses on every
//! stanza, and it means two spellings of one address (`Juliet@Example.COM` and
//! `juliet@example.com`) can never end up as two roster entries, two sessions or two archive keys.
//!
//! Over 400 lines with its tests: the three RFC 7622 profiles and the parser share one type.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;

use idna::uts46::{AsciiDenyList, Hyphens, Uts46};
use precis_core::profile::{PrecisFastInvocation, stabilize};
use precis_profiles::{OpaqueString, UsernameCaseMapped};

/// The longest any part may be once normalized, in bytes (RFC 7622 §3.2, §3.3, §3.4).
pub const MAX_PART_BYTES: usize = 1023;

/// Raw parts longer than this are refused before any Unicode processing. Normalization can shrink
/// a string (width mapping turns a 3-byte fullwidth letter into 1 byte, NFC merges 3 jamo into
/// one syllable) but never by more than 3:1, so nothing this long could come out at 1023 bytes;
/// refusing early keeps a hostile `to` attribute from buying a lot of PRECIS work.
const MAX_RAW_PART_BYTES: usize = 4 * MAX_PART_BYTES;

/// Characters RFC 7622 §3.3.1 forbids in a localpart on top of the PRECIS IdentifierClass, since
/// they delimit JIDs or break the XML and URI contexts JIDs are written in. (XEP-0106 escaping
/// exists to carry them.)
const LOCALPART_EXCLUDED: &[char] = &['"', '&', '\'', '/', ':', '<', '>', '@'];

/// One of the three parts of a JID, to say which one an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JidPart {
    Localpart,
    Domainpart,
    Resourcepart,
}

impl JidPart {
    pub fn as_str(self) -> &'static str {
        match self {
            JidPart::Localpart => "localpart",
            JidPart::Domainpart => "domainpart",
            JidPart::Resourcepart => "resourcepart",
        }
    }
}

impl fmt::Display for JidPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a JID. Every variant names the part at fault so that a `jid-malformed`
/// reply or a log line can say what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    /// The part is present but empty (`@example.com`, `example.com/`, `juliet@`).
    #[error("the {0} is empty")]
    Empty(JidPart),
    /// The normalized part exceeds 1023 bytes.
    #[error("the {0} is longer than 1023 bytes")]
    TooLong(JidPart),
    /// The part contains a character its profile (or RFC 7622 §3.3.1) disallows.
    #[error("the {part} contains the disallowed character {ch:?} (U+{:04X})", u32::from(*ch))]
    DisallowedChar { part: JidPart, ch: char },
    /// The PRECIS profile refused the part for another reason (for example the bidi rule, or
    /// enforcement that does not converge).
    #[error("the {part} is rejected by its PRECIS profile: {reason}")]
    Precis { part: JidPart, reason: String },
    /// The domainpart is neither a valid (internationalized) domain name nor an IP literal.
    #[error("the domainpart is invalid: {0}")]
    InvalidDomain(&'static str),
}

impl JidError {
    /// The part the error is about.
    pub fn part(&self) -> JidPart {
        match self {
            JidError::Empty(part) | JidError::TooLong(part) => *part,
            JidError::DisallowedChar { part, .. } | JidError::Precis { part, .. } => *part,
            JidError::InvalidDomain(_) => JidPart::Domainpart,
        }
    }
}

/// A normalized XMPP address: `[localpart@]domainpart[/resourcepart]`.
///
/// The whole normalized address lives in one `Arc<str>` with the part boundaries as offsets, so
/// cloning (which the router does for every stanza it fans out) is a reference-count increment
/// and the accessors are slices, not allocations.
#[derive(Clone)]
pub struct Jid {
    full: Arc<str>,
    /// Byte offset where the domainpart starts: 0 without a localpart, else one past the `@`.
    /// Offsets fit in `u32` because a JID is at most 3 × 1023 + 2 bytes.
    domain_start: u32,
    /// Byte offset where the domainpart ends: the index of the `/`, or `full.len()` when bare.
    domain_end: u32,
}

impl Jid {
    /// Parses and normalizes a JID from its string form.
    ///
    /// Following RFC 7622 §3.1, the resourcepart starts at the first `/` (so a resourcepart may
    /// itself contain `/` and `@`), and the localpart ends at the first `@` before that.
    pub fn new(s: &str) -> Result<Jid, JidError> {
        let (rest, resource) = match s.split_once('/') {
            Some((rest, resource)) => (rest, Some(resource)),
            None => (s, None),
        };
        let (node, domain) = match rest.split_once('@') {
            Some((node, domain)) => (Some(node), domain),
            None => (None, rest),
        };
        Jid::from_parts(node, domain, resource)
    }

    /// Builds a JID from separate parts, normalizing each. Unlike [`Jid::new`] nothing is split
    /// here, so a localpart containing `@` is an error rather than a different address.
    pub fn from_parts(node: Option<&str>, domain: &str, resource: Option<&str>) -> Result<Jid, JidError> {
        let node = node.map(normalize_localpart).transpose()?;
        let domain = normalize_domainpart(domain)?;
        let resource = resource.map(normalize_resourcepart).transpose()?;
        Ok(Jid::assemble(node.as_deref(), &domain, resource.as_deref()))
    }

    /// Joins already-normalized parts.
    fn assemble(node: Option<&str>, domain: &str, resource: Option<&str>) -> Jid {
        let len = node.map_or(0, |n| n.len() + 1) + domain.len() + resource.map_or(0, |r| r.len() + 1);
        let mut full = String::with_capacity(len);
        if let Some(node) = node {
            full.push_str(node);
            full.push('@');
        }
        // Lengths are bounded by 3 × MAX_PART_BYTES + 2, far below u32::MAX.
        let domain_start = full.len() as u32;
        full.push_str(domain);
        let domain_end = full.len() as u32;
        if let Some(resource) = resource {
            full.push('/');
            full.push_str(resource);
        }
        Jid { full: Arc::from(full), domain_start, domain_end }
    }

    /// The localpart, if any.
    pub fn node(&self) -> Option<&str> {
        let start = self.domain_start as usize;
        (start > 0).then(|| &self.full[..start - 1])
    }

    /// The domainpart: a Unicode domain name, an IPv4 address or a bracketed IPv6 address.
    pub fn domain(&self) -> &str {
        &self.full[self.domain_start as usize..self.domain_end as usize]
    }

    /// The resourcepart, if any.
    pub fn resource(&self) -> Option<&str> {
        let end = self.domain_end as usize;
        (end < self.full.len()).then(|| &self.full[end + 1..])
    }

    /// True when there is no resourcepart.
    pub fn is_bare(&self) -> bool {
        self.domain_end as usize == self.full.len()
    }

    /// This address without its resourcepart. Costs only a clone when it is already bare.
    pub fn bare(&self) -> Jid {
        if self.is_bare() {
            return self.clone();
        }
        Jid {
            full: Arc::from(&self.full[..self.domain_end as usize]),
            domain_start: self.domain_start,
            domain_end: self.domain_end,
        }
    }

    /// The bare address with `resource` (normalized) as its resourcepart.
    pub fn with_resource(&self, resource: &str) -> Result<Jid, JidError> {
        let resource = normalize_resourcepart(resource)?;
        let bare = &self.full[..self.domain_end as usize];
        let mut full = String::with_capacity(bare.len() + 1 + resource.len());
        full.push_str(bare);
        full.push('/');
        full.push_str(&resource);
        Ok(Jid { full: Arc::from(full), domain_start: self.domain_start, domain_end: self.domain_end })
    }

    /// The address of the service alone (no localpart, no resourcepart): where server-level
    /// requests about this entity are addressed.
    pub fn domain_jid(&self) -> Jid {
        if self.domain_start == 0 && self.is_bare() {
            return self.clone();
        }
        let domain = self.domain();
        Jid { full: Arc::from(domain), domain_start: 0, domain_end: domain.len() as u32 }
    }

    /// The normalized string form, as written into `to`/`from` attributes.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// Whether `text` is a way of writing this address: equal to it once prepared (RFC 7622).
    /// Plain ASCII addresses, nearly all of them, are compared without running the PRECIS
    /// profiles: preparing those only lower-cases the localpart and domainpart. (Measured: the
    /// profiles were 6 % of a core when every groupchat delivery checked its stanza-ids.)
    pub fn is_written_as(&self, text: &str) -> bool {
        let (bare, resource) = match text.split_once('/') {
            Some((bare, resource)) => (bare, Some(resource)),
            None => (text, None),
        };
        let plain_bare = !bare.ends_with('.') && bare.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._@".contains(&b));
        let plain_resource = resource.is_none_or(|r| r.bytes().all(|b| b.is_ascii_graphic()));
        if plain_bare && plain_resource {
            let own_resource = (!self.is_bare()).then(|| &self.full[self.domain_end as usize + 1..]);
            return self.full[..self.domain_end as usize].eq_ignore_ascii_case(bare) && own_resource == resource;
        }
        Jid::new(text).is_ok_and(|jid| jid == *self)
    }
}

// Equality, hashing and ordering look at the normalized string only: the offsets follow from it
// (neither the localpart nor the domainpart can contain `@` or `/`), and hashing exactly like
// `str` keeps the door open for `Borrow<str>` lookups.
impl PartialEq for Jid {
    fn eq(&self, other: &Jid) -> bool {
        self.full == other.full
    }
}

impl Eq for Jid {}

impl Hash for Jid {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.full.hash(state);
    }
}

impl PartialOrd for Jid {
    fn partial_cmp(&self, other: &Jid) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Jid {
    fn cmp(&self, other: &Jid) -> Ordering {
        self.full.cmp(&other.full)
    }
}

impl fmt::Debug for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Jid").field(&&*self.full).finish()
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl FromStr for Jid {
    type Err = JidError;

    fn from_str(s: &str) -> Result<Jid, JidError> {
        Jid::new(s)
    }
}

impl TryFrom<&str> for Jid {
    type Error = JidError;

    fn try_from(s: &str) -> Result<Jid, JidError> {
        Jid::new(s)
    }
}

impl TryFrom<String> for Jid {
    type Error = JidError;

    fn try_from(s: String) -> Result<Jid, JidError> {
        Jid::new(&s)
    }
}

impl AsRef<str> for Jid {
    fn as_ref(&self) -> &str {
        &self.full
    }
}

/// Rejects empty and absurdly long raw input before doing any Unicode work on it.
fn check_raw(raw: &str, part: JidPart) -> Result<(), JidError> {
    if raw.is_empty() {
        return Err(JidError::Empty(part));
    }
    if raw.len() > MAX_RAW_PART_BYTES {
        return Err(JidError::TooLong(part));
    }
    Ok(())
}

fn check_len(normalized: &str, part: JidPart) -> Result<(), JidError> {
    if normalized.is_empty() {
        return Err(JidError::Empty(part));
    }
    if normalized.len() > MAX_PART_BYTES {
        return Err(JidError::TooLong(part));
    }
    Ok(())
}

fn precis_error(part: JidPart, error: &precis_core::Error) -> JidError {
    if let precis_core::Error::BadCodepoint(info) = error
        && let Some(ch) = char::from_u32(info.cp)
    {
        return JidError::DisallowedChar { part, ch };
    }
    JidError::Precis { part, reason: error.to_string() }
}

fn enforce_username(s: &str) -> Result<Cow<'_, str>, precis_core::Error> {
    <UsernameCaseMapped as PrecisFastInvocation>::enforce(s)
}

fn enforce_opaque(s: &str) -> Result<Cow<'_, str>, precis_core::Error> {
    <OpaqueString as PrecisFastInvocation>::enforce(s)
}

/// RFC 7622 §3.3: the UsernameCaseMapped profile of RFC 8265, plus the §3.3.1 exclusions.
/// Enforcement is repeated until stable (RFC 8264 §7) so that normalizing a normalized localpart
/// is the identity, which `Jid`'s string equality relies on.
fn normalize_localpart(raw: &str) -> Result<Cow<'_, str>, JidError> {
    let part = JidPart::Localpart;
    check_raw(raw, part)?;
    let normalized = stabilize(raw, enforce_username).map_err(|e| precis_error(part, &e))?;
    // Checked after enforcement: width mapping turns a fullwidth `＠` into `@`.
    if let Some(ch) = normalized.chars().find(|c| LOCALPART_EXCLUDED.contains(c)) {
        return Err(JidError::DisallowedChar { part, ch });
    }
    check_len(&normalized, part)?;
    Ok(normalized)
}

/// RFC 7622 §3.4: the OpaqueString profile of RFC 8265. Case and width are kept: resources are
/// opaque labels chosen by clients and may legitimately differ only in case.
fn normalize_resourcepart(raw: &str) -> Result<Cow<'_, str>, JidError> {
    let part = JidPart::Resourcepart;
    check_raw(raw, part)?;
    let normalized = stabilize(raw, enforce_opaque).map_err(|e| precis_error(part, &e))?;
    check_len(&normalized, part)?;
    Ok(normalized)
}

/// RFC 7622 §3.2: an IP literal, an IPv4 address or a domain name in its Unicode form.
///
/// Domain names go through UTS #46 (the mapping RFC 5895 suggests for IDNA2008): A-labels become
/// U-labels, case and width are mapped, the result is NFC. STD3 ASCII rules apply, so only LDH
/// characters survive in ASCII: that is what RFC 7622 asks for (NR-LDH labels or U-labels) and it
/// is what keeps `@`, `/`, `:` and whitespace (also when they come from fullwidth forms) out of
/// a domainpart. Leading and trailing hyphens are refused as RFC 1123 does, but `--` in the 3rd
/// and 4th position is allowed because real host names use it.
fn normalize_domainpart(raw: &str) -> Result<Cow<'_, str>, JidError> {
    let part = JidPart::Domainpart;
    check_raw(raw, part)?;
    if let Some(literal) = raw.strip_prefix('[') {
        let inner = literal.strip_suffix(']').ok_or(JidError::InvalidDomain("unterminated IPv6 literal"))?;
        let address: Ipv6Addr = inner.parse().map_err(|_| JidError::InvalidDomain("not an IPv6 address"))?;
        // RFC 5952 text form, so that `[2001:DB8:0::1]` and `[2001:db8::1]` are one address.
        let canonical = format!("[{address}]");
        return Ok(if canonical == raw { Cow::Borrowed(raw) } else { Cow::Owned(canonical) });
    }

    let (mapped, result) = Uts46::new().to_unicode(raw.as_bytes(), AsciiDenyList::STD3, Hyphens::CheckFirstLast);
    if result.is_err() {
        return Err(JidError::InvalidDomain("not a valid domain name (IDNA2008 / UTS #46)"));
    }
    // RFC 7622 §3.2: a trailing label separator is stripped before the JID is compared or
    // routed. Done after mapping, because UTS #46 also turns `。` and friends into `.`.
    let domain = match mapped {
        Cow::Borrowed(s) => Cow::Borrowed(s.strip_suffix('.').unwrap_or(s)),
        Cow::Owned(mut s) => {
            if s.ends_with('.') {
                s.pop();
            }
            Cow::Owned(s)
        }
    };
    if domain.is_empty() {
        return Err(JidError::Empty(part));
    }
    if domain.split('.').any(str::is_empty) {
        return Err(JidError::InvalidDomain("empty label"));
    }
    // An A-label whose decoded form starts with `xn--` again: idna 1.x accepts it once, but the
    // result would not parse a second time, and a JID must be what it prints (found by fuzzing:
    // `XN--XN--AacVM-VVVVVAacVM-nVVVVVC`).
    if domain.split('.').any(|label| label.get(..4).is_some_and(|start| start.eq_ignore_ascii_case("xn--"))) {
        return Err(JidError::InvalidDomain("a label that decodes to one starting with xn--"));
    }
    // A name whose last label is numeric is either an IPv4 address or something a resolver might
    // still read as one (`127.1`); top-level domains are never all-numeric, so refuse the latter.
    let last_label = domain.rsplit('.').next().unwrap_or_default();
    if last_label.bytes().all(|b| b.is_ascii_digit()) {
        let address: Ipv4Addr =
            domain.parse().map_err(|_| JidError::InvalidDomain("numeric name that is not an IPv4 address"))?;
        let canonical = address.to_string();
        if canonical != *domain {
            return Ok(Cow::Owned(canonical));
        }
    }
    check_len(&domain, part)?;
    Ok(domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn jid(s: &str) -> Jid {
        match Jid::new(s) {
            Ok(j) => j,
            Err(e) => panic!("{s:?} should be a valid JID: {e}"),
        }
    }

    fn parts(j: &Jid) -> (Option<&str>, &str, Option<&str>) {
        (j.node(), j.domain(), j.resource())
    }

    /// RFC 7622 §3.5.1, "Examples of Valid JIDs", with the parts each one has.
    #[test]
    fn rfc7622_valid_examples() {
        let cases: &[(&str, Option<&str>, &str, Option<&str>)] = &[
            ("juliet@example.com", Some("juliet"), "example.com", None),
            ("juliet@example.com/foo", Some("juliet"), "example.com", Some("foo")),
            ("juliet@example.com/foo bar", Some("juliet"), "example.com", Some("foo bar")),
            ("juliet@example.com/foo@bar", Some("juliet"), "example.com", Some("foo@bar")),
            ("foo\\20bar@example.com", Some("foo\\20bar"), "example.com", None),
            ("fussball@example.com", Some("fussball"), "example.com", None),
            ("fu\u{DF}ball@example.com", Some("fu\u{DF}ball"), "example.com", None),
            ("\u{3C0}@example.com", Some("\u{3C0}"), "example.com", None),
            ("\u{3A3}@example.com/foo", Some("\u{3C3}"), "example.com", Some("foo")),
            ("\u{3C3}@example.com/foo", Some("\u{3C3}"), "example.com", Some("foo")),
            ("\u{3C2}@example.com/foo", Some("\u{3C2}"), "example.com", Some("foo")),
            ("king@example.com/\u{265A}", Some("king"), "example.com", Some("\u{265A}")),
            ("example.com", None, "example.com", None),
            ("example.com/foobar", None, "example.com", Some("foobar")),
            ("a.example.com/b@example.net", None, "a.example.com", Some("b@example.net")),
        ];
        for &(input, node, domain, resource) in cases {
            let j = jid(input);
            assert_eq!(parts(&j), (node, domain, resource), "{input}");
        }
    }

    /// RFC 7622 §3.5.1 notes: sharp s is not folded to "ss", and final sigma stays distinct.
    #[test]
    fn rfc7622_distinct_examples_stay_distinct() {
        assert_ne!(jid("fussball@example.com"), jid("fu\u{DF}ball@example.com"));
        assert_eq!(jid("\u{3A3}@example.com/foo"), jid("\u{3C3}@example.com/foo"));
        assert_ne!(jid("\u{3C3}@example.com/foo"), jid("\u{3C2}@example.com/foo"));
    }

    /// RFC 7622 §3.5.2, "Examples of Invalid JIDs", with the reason the RFC gives.
    #[test]
    fn rfc7622_invalid_examples() {
        use JidPart::*;
        let cases: &[(&str, JidError)] = &[
            ("\"juliet\"@example.com", JidError::DisallowedChar { part: Localpart, ch: '"' }),
            ("foo bar@example.com", JidError::DisallowedChar { part: Localpart, ch: ' ' }),
            ("juliet@example.com/", JidError::Empty(Resourcepart)),
            ("@example.com/", JidError::Empty(Localpart)),
            ("henry\u{2163}@example.com", JidError::DisallowedChar { part: Localpart, ch: '\u{2163}' }),
            ("\u{265A}@example.com", JidError::DisallowedChar { part: Localpart, ch: '\u{265A}' }),
            ("juliet@", JidError::Empty(Domainpart)),
            ("/foobar", JidError::Empty(Domainpart)),
        ];
        for (input, expected) in cases {
            assert_eq!(Jid::new(input).as_ref(), Err(expected), "{input}");
        }
    }

    #[test]
    fn empty_parts_are_invalid() {
        assert_eq!(Jid::new(""), Err(JidError::Empty(JidPart::Domainpart)));
        assert_eq!(Jid::new("@d"), Err(JidError::Empty(JidPart::Localpart)));
        assert_eq!(Jid::new("d/"), Err(JidError::Empty(JidPart::Resourcepart)));
        assert_eq!(Jid::new("a@/r"), Err(JidError::Empty(JidPart::Domainpart)));
        assert_eq!(Jid::new("a@."), Err(JidError::Empty(JidPart::Domainpart)));
    }

    #[test]
    fn case_folds_localpart_and_domainpart_but_not_resourcepart() {
        let j = jid("Juliet@Example.COM");
        assert_eq!(j.as_str(), "juliet@example.com");
        assert_eq!(j, jid("juliet@example.com"));
        let j = jid("Juliet@Example.COM/Balcony");
        assert_eq!(j.to_string(), "juliet@example.com/Balcony");
        assert_ne!(j, jid("juliet@example.com/balcony"));
    }

    #[test]
    fn first_slash_splits_and_at_only_counts_before_it() {
        let j = jid("example.com/a@b/c");
        assert_eq!(parts(&j), (None, "example.com", Some("a@b/c")));
        let j = jid("u@example.com//x");
        assert_eq!(parts(&j), (Some("u"), "example.com", Some("/x")));
        // A second `@` before the slash ends up in the domainpart, which refuses it.
        assert!(matches!(Jid::new("a@b@example.com"), Err(JidError::InvalidDomain(_))));
    }

    #[test]
    fn fullwidth_and_compatibility_characters_follow_the_profiles() {
        // UsernameCaseMapped width-maps fullwidth forms to ASCII (RFC 8265 §3.3.1).
        assert_eq!(jid("\u{FF2A}\u{FF55}\u{FF4C}\u{FF49}\u{FF45}\u{FF54}@example.com").as_str(), "juliet@example.com");
        // ... and a fullwidth commercial at becomes `@`, which RFC 7622 then excludes.
        assert_eq!(
            Jid::new("a\u{FF20}b@example.com"),
            Err(JidError::DisallowedChar { part: JidPart::Localpart, ch: '@' })
        );
        // UTS #46 maps fullwidth letters and the ideographic full stop in domains.
        assert_eq!(
            jid("juliet@\u{FF45}\u{FF58}\u{FF41}\u{FF4D}\u{FF50}\u{FF4C}\u{FF45}\u{3002}com").as_str(),
            "juliet@example.com"
        );
        // A fullwidth solidus maps to `/`, which STD3 rules keep out of a domainpart.
        assert!(matches!(Jid::new("juliet@example\u{FF0F}com"), Err(JidError::InvalidDomain(_))));
        // OpaqueString does no width or case mapping ...
        assert_eq!(jid("juliet@example.com/\u{FF26}oo").resource(), Some("\u{FF26}oo"));
        // ... but maps non-ASCII spaces to ASCII space and normalizes to NFC (RFC 8265 §4.2.2).
        assert_eq!(jid("juliet@example.com/foo\u{A0}bar").resource(), Some("foo bar"));
        assert_eq!(jid("juliet@example.com/cafe\u{301}").resource(), Some("caf\u{E9}"));
        assert_eq!(jid("cafe\u{301}@example.com").node(), Some("caf\u{E9}"));
        // Controls are never allowed, not even in a resourcepart.
        assert_eq!(
            Jid::new("juliet@example.com/a\u{7}b"),
            Err(JidError::DisallowedChar { part: JidPart::Resourcepart, ch: '\u{7}' })
        );
    }

    #[test]
    fn internationalized_domains_are_kept_in_unicode_form() {
        assert_eq!(jid("xn--bcher-kva.example").domain(), "b\u{FC}cher.example");
        assert_eq!(jid("B\u{DC}CHER.example").domain(), "b\u{FC}cher.example");
        assert_eq!(jid("XN--BCHER-KVA.example"), jid("b\u{FC}cher.example"));
        assert!(matches!(Jid::new("xn--zz.example"), Err(JidError::InvalidDomain(_))));
        // Its decoded label starts with `xn--` and would not parse again (found by fuzzing).
        assert!(matches!(Jid::new("XN--XN--AacVM-VVVVVAacVM-nVVVVVC"), Err(JidError::InvalidDomain(_))));
    }

    #[test]
    fn trailing_dot_is_stripped() {
        assert_eq!(jid("juliet@example.com./balcony").as_str(), "juliet@example.com/balcony");
        assert_eq!(jid("example.com."), jid("example.com"));
        assert!(matches!(Jid::new("example.com.."), Err(JidError::InvalidDomain(_))));
        assert!(matches!(Jid::new(".example.com"), Err(JidError::InvalidDomain(_))));
    }

    #[test]
    fn domain_syntax() {
        assert!(matches!(Jid::new("exa mple.com"), Err(JidError::InvalidDomain(_))));
        assert!(matches!(Jid::new("ex_ample.com"), Err(JidError::InvalidDomain(_))));
        assert!(matches!(Jid::new("-example.com"), Err(JidError::InvalidDomain(_))));
        assert!(matches!(Jid::new("example-.com"), Err(JidError::InvalidDomain(_))));
        assert!(matches!(Jid::new("example.com:5222"), Err(JidError::InvalidDomain(_))));
        assert_eq!(jid("localhost").domain(), "localhost");
        assert_eq!(jid("r3---sn.example").domain(), "r3---sn.example");
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(jid("juliet@192.0.2.1/x").domain(), "192.0.2.1");
        assert_eq!(jid("juliet@[2001:db8::1]/x").domain(), "[2001:db8::1]");
        assert_eq!(jid("[2001:DB8:0:0::1]"), jid("[2001:db8::1]"));
        assert_eq!(jid("[::ffff:192.0.2.1]").domain(), "[::ffff:192.0.2.1]");
        for bad in ["[::1", "[example.com]", "[fe80::1%eth0]", "::1", "1.2.3.999", "256.1.1.1", "127.1", "1.2.3.04"] {
            assert!(matches!(Jid::new(bad), Err(JidError::InvalidDomain(_))), "{bad}");
        }
    }

    #[test]
    fn part_lengths_are_counted_in_bytes() {
        let max = "a".repeat(MAX_PART_BYTES);
        let over = "a".repeat(MAX_PART_BYTES + 1);
        assert!(Jid::from_parts(Some(&max), "example.com", Some(&max)).is_ok());
        assert_eq!(Jid::new(&format!("{over}@example.com")), Err(JidError::TooLong(JidPart::Localpart)));
        assert_eq!(Jid::new(&format!("example.com/{over}")), Err(JidError::TooLong(JidPart::Resourcepart)));
        let long_domain = format!("{}a", "a.".repeat(511));
        assert_eq!(long_domain.len(), MAX_PART_BYTES);
        assert_eq!(jid(&long_domain).domain().len(), MAX_PART_BYTES);
        assert_eq!(Jid::new(&format!("a{long_domain}")), Err(JidError::TooLong(JidPart::Domainpart)));
        // 512 × π is 512 characters but 1024 bytes.
        let pi = "\u{3C0}".repeat(512);
        assert_eq!(Jid::new(&format!("{pi}@example.com")), Err(JidError::TooLong(JidPart::Localpart)));
        // Way over the limit: refused before normalization, with the same error.
        let huge = "a".repeat(100_000);
        assert_eq!(Jid::new(&format!("{huge}@example.com")), Err(JidError::TooLong(JidPart::Localpart)));
        // The limit applies to the normalized form: 1023 fullwidth letters shrink to 1023 bytes.
        let wide = "\u{FF41}".repeat(MAX_PART_BYTES);
        assert_eq!(jid(&format!("{wide}@example.com")).node().map(str::len), Some(MAX_PART_BYTES));
    }

    #[test]
    fn accessors_and_derived_addresses() {
        let full = jid("juliet@example.com/balcony");
        assert!(!full.is_bare());
        assert_eq!(full.bare().as_str(), "juliet@example.com");
        assert!(full.bare().is_bare());
        assert_eq!(full.domain_jid().as_str(), "example.com");
        assert_eq!(full.domain_jid().node(), None);

        let bare = jid("juliet@example.com");
        assert!(Arc::ptr_eq(&bare.full, &bare.bare().full), "bare() of a bare JID must not allocate");
        let other = bare.with_resource("Orchard").expect("valid resource");
        assert_eq!(other.as_str(), "juliet@example.com/Orchard");
        assert_eq!(full.with_resource("x").map(|j| j.to_string()), Ok("juliet@example.com/x".to_owned()));
        assert_eq!(bare.with_resource(""), Err(JidError::Empty(JidPart::Resourcepart)));

        let domain = jid("example.com");
        assert!(Arc::ptr_eq(&domain.full, &domain.domain_jid().full));
        assert_eq!(domain.bare(), domain);
    }

    #[test]
    fn from_parts_normalizes_and_does_not_split() {
        let j = Jid::from_parts(Some("Juliet"), "Example.com.", Some("Balcony")).expect("valid parts");
        assert_eq!(j.as_str(), "juliet@example.com/Balcony");
        assert_eq!(
            Jid::from_parts(Some("a@b"), "example.com", None),
            Err(JidError::DisallowedChar { part: JidPart::Localpart, ch: '@' })
        );
        assert!(Jid::from_parts(None, "example.com/x", None).is_err());
        assert_eq!(
            Jid::from_parts(None, "example.com", Some("a/b")).map(|j| j.to_string()),
            Ok("example.com/a/b".to_owned())
        );
    }

    #[test]
    fn traits() {
        let j: Jid = "Juliet@Example.com/x".parse().expect("valid");
        assert_eq!(format!("{j}"), "juliet@example.com/x");
        assert_eq!(format!("{j:?}"), "Jid(\"juliet@example.com/x\")");
        assert_eq!(Jid::try_from("a@b"), Jid::try_from(String::from("A@B")));
        let mut set = std::collections::HashSet::new();
        set.insert(jid("Juliet@Example.com"));
        assert!(set.contains(&jid("juliet@example.com")));
        let mut sorted = vec![jid("b@x"), jid("a@x"), jid("x")];
        sorted.sort();
        assert_eq!(sorted, vec![jid("a@x"), jid("b@x"), jid("x")]);
    }

    #[test]
    fn errors_name_the_part() {
        assert_eq!(JidError::InvalidDomain("x").part(), JidPart::Domainpart);
        assert_eq!(
            JidError::DisallowedChar { part: JidPart::Localpart, ch: ' ' }.to_string(),
            "the localpart contains the disallowed character ' ' (U+0020)"
        );
        assert_eq!(JidError::Empty(JidPart::Resourcepart).to_string(), "the resourcepart is empty");
    }

    fn localpart() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9._+\\-]{1,24}",
            "[a-z\u{E0}-\u{F6}\u{3B1}-\u{3C9}\u{430}-\u{44F}0-9]{1,12}",
            "[\u{FF41}-\u{FF5A}]{1,8}",
        ]
    }

    fn domainpart() -> impl Strategy<Value = String> {
        let label =
            prop_oneof!["[a-zA-Z0-9]([a-zA-Z0-9\\-]{0,10}[a-zA-Z0-9])?", "[a-z\u{E0}-\u{F6}\u{430}-\u{44F}]{1,8}"]
                // An `xn--` prefix announces an A-label; random text after it is rightly invalid.
                .prop_filter("not an A-label prefix", |l| !l.to_ascii_lowercase().starts_with("xn--"));
        prop_oneof![
            prop::collection::vec(label, 1..4).prop_map(|labels| format!("{}.example", labels.join("."))),
            any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
            any::<[u16; 8]>().prop_map(|s| format!("[{}]", Ipv6Addr::from(s))),
        ]
    }

    fn resourcepart() -> impl Strategy<Value = String> {
        prop_oneof!["[ -~]{1,30}", "[a-zA-Z\u{E0}-\u{FF}\u{4E00}-\u{4E50}@/ ]{1,16}"]
            .prop_filter("non-empty", |s| !s.is_empty())
    }

    proptest! {
        #[test]
        fn generated_jids_round_trip(
            node in proptest::option::of(localpart()),
            domain in domainpart(),
            resource in proptest::option::of(resourcepart()),
        ) {
            let j = Jid::from_parts(node.as_deref(), &domain, resource.as_deref());
            let j = match j {
                Ok(j) => j,
                Err(e) => return Err(TestCaseError::fail(format!("{node:?} {domain:?} {resource:?}: {e}"))),
            };
            let displayed = j.to_string();
            let again = Jid::new(&displayed);
            prop_assert_eq!(again.as_ref(), Ok(&j));
            let rebuilt = Jid::from_parts(j.node(), j.domain(), j.resource());
            prop_assert_eq!(rebuilt.as_ref(), Ok(&j));
        }

        #[test]
        fn arbitrary_input_never_panics_and_normalizes_idempotently(s in "\\PC{0,40}|[a-zA-Z0-9@/.\\[\\]:\u{FF0E}\u{3002}\u{FF20}\u{FF0F} -]{0,40}") {
            if let Ok(j) = Jid::new(&s) {
                let again = Jid::new(j.as_str());
                prop_assert_eq!(again.as_ref(), Ok(&j));
            }
        }

        #[test]
        fn is_written_as_agrees_with_preparing_the_text(s in "[a-zA-Z0-9@/._ '&-]{0,24}|\\PC{0,24}") {
            let candidates = [Jid::new(&s), Jid::new(&s.to_ascii_lowercase()), Jid::new(&s.to_ascii_uppercase()), Jid::new("ab@c.d/E")];
            for jid in candidates.into_iter().flatten() {
                prop_assert_eq!(jid.is_written_as(&s), Jid::new(&s).is_ok_and(|prepared| prepared == jid), "{} against {:?}", jid, s);
            }
        }

        #[test]
        fn arbitrary_parts_never_panic(node in proptest::option::of("\\PC{0,12}"), domain in "\\PC{0,16}", resource in proptest::option::of(any::<String>())) {
            if let Ok(j) = Jid::from_parts(node.as_deref(), &domain, resource.as_deref()) {
                let again = Jid::new(j.as_str());
                prop_assert_eq!(again.as_ref(), Ok(&j));
            }
        }
    }
}
