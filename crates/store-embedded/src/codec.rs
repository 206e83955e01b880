//! The byte layout of the values that are more than one string or number. Each value starts with
//! a format byte so that a later layout can be told from this one (and migrated) instead of being
//! misread; fields follow in a fixed order, variable-length ones prefixed with their length as an
//! unsigned LEB128 varint (one byte for anything under 128 bytes, and no length limit to check).

use starling_cluster::store::{AbuseReport, ArchiveDefault, ArchivePrefs, PubSubItem, RosterItem, ScramCredentials, ScramKeys, Subscription};

const CREDENTIALS_V1: u8 = 1;
const ROSTER_ITEM_V1: u8 = 1;
const ARCHIVED_V1: u8 = 1;
const ARCHIVE_PREFS_V1: u8 = 1;
const PUBSUB_ITEM_V1: u8 = 1;
const ABUSE_REPORT_V1: u8 = 1;

const ASK_OUT: u8 = 1;
const APPROVED: u8 = 1 << 1;
const HAS_NAME: u8 = 1 << 2;

/// What a report holds besides its key (time, reporter, reported): the reason, a presence byte
/// and the text, the stanza ids.
pub fn encode_abuse_report(report: &AbuseReport) -> Vec<u8> {
    let mut out = Writer::default();
    out.byte(ABUSE_REPORT_V1);
    out.bytes(report.reason.as_bytes());
    out.byte(u8::from(report.text.is_some()));
    out.bytes(report.text.as_deref().unwrap_or_default().as_bytes());
    out.bytes(&(report.stanza_ids.len() as u32).to_le_bytes());
    for id in &report.stanza_ids {
        out.bytes(id.as_bytes());
    }
    out.0
}

/// `None` if `bytes` is not a value `encode_abuse_report` wrote.
pub fn decode_abuse_report(at_ms: u64, reporter: &str, reported: &str, bytes: &[u8]) -> Option<AbuseReport> {
    let mut input = Reader(bytes);
    if input.byte()? != ABUSE_REPORT_V1 {
        return None;
    }
    let reason = input.string()?;
    let has_text = input.byte()? == 1;
    let text = Some(input.string()?).filter(|_| has_text);
    let count = u32::from_le_bytes(input.bytes()?.try_into().ok()?);
    let stanza_ids = (0..count).map(|_| input.string()).collect::<Option<Vec<_>>>()?;
    input.finish()?;
    Some(AbuseReport { at_ms, reporter: reporter.to_owned(), reported: reported.to_owned(), reason, text, stanza_ids })
}

pub fn encode_credentials(credentials: &ScramCredentials) -> Vec<u8> {
    let mut out = Writer::default();
    out.byte(CREDENTIALS_V1);
    out.bytes(&credentials.iterations.to_le_bytes());
    out.bytes(&credentials.salt);
    for keys in [&credentials.sha1, &credentials.sha256] {
        out.bytes(&keys.stored_key);
        out.bytes(&keys.server_key);
    }
    out.0
}

/// `None` if `bytes` is not a value `encode_credentials` wrote.
pub fn decode_credentials(bytes: &[u8]) -> Option<ScramCredentials> {
    let mut input = Reader(bytes);
    if input.byte()? != CREDENTIALS_V1 {
        return None;
    }
    let iterations = u32::from_le_bytes(input.bytes()?.try_into().ok()?);
    let salt = input.bytes()?.to_vec();
    let mut keys = || Some(ScramKeys { stored_key: input.bytes()?.to_vec(), server_key: input.bytes()?.to_vec() });
    let (sha1, sha256) = (keys()?, keys()?);
    input.finish()?;
    Some(ScramCredentials { iterations, salt, sha1, sha256 })
}

/// Everything but the contact's JID, which is the key the item is stored under.
pub fn encode_roster_item(item: &RosterItem) -> Vec<u8> {
    let mut out = Writer::default();
    out.byte(ROSTER_ITEM_V1);
    let flags = [(item.ask_out, ASK_OUT), (item.approved, APPROVED), (item.name.is_some(), HAS_NAME)]
        .into_iter()
        .filter(|(set, _)| *set)
        .fold(0, |flags, (_, bit)| flags | bit);
    out.byte(flags);
    out.byte(match item.subscription {
        Subscription::None => 0,
        Subscription::To => 1,
        Subscription::From => 2,
        Subscription::Both => 3,
    });
    if let Some(name) = &item.name {
        out.bytes(name.as_bytes());
    }
    out.length(item.groups.len());
    for group in &item.groups {
        out.bytes(group.as_bytes());
    }
    out.0
}

/// `None` if `bytes` is not a value `encode_roster_item` wrote.
pub fn decode_roster_item(jid: &str, bytes: &[u8]) -> Option<RosterItem> {
    let mut input = Reader(bytes);
    if input.byte()? != ROSTER_ITEM_V1 {
        return None;
    }
    let flags = input.byte()?;
    if flags & !(ASK_OUT | APPROVED | HAS_NAME) != 0 {
        return None;
    }
    let subscription = match input.byte()? {
        0 => Subscription::None,
        1 => Subscription::To,
        2 => Subscription::From,
        3 => Subscription::Both,
        _ => return None,
    };
    let name = if flags & HAS_NAME != 0 { Some(input.string()?) } else { None };
    let count = input.length()?;
    // Every group takes at least its length byte: a count beyond that is corrupt, and checking it
    // first keeps a corrupt count from reserving a huge vector.
    if count > input.0.len() {
        return None;
    }
    let groups = (0..count).map(|_| input.string()).collect::<Option<Vec<String>>>()?;
    input.finish()?;
    Some(RosterItem { jid: jid.to_owned(), name, groups, subscription, ask_out: flags & ASK_OUT != 0, approved: flags & APPROVED != 0 })
}

/// An archived message without its id, which is part of its key: the peer and the stanza.
pub fn encode_archived(with: &str, stanza: &[u8]) -> Vec<u8> {
    let mut out = Writer(Vec::with_capacity(stanza.len() + with.len() + 8));
    out.byte(ARCHIVED_V1);
    out.bytes(with.as_bytes());
    out.bytes(stanza);
    out.0
}

/// `(with, stanza)`; `None` if `bytes` is not a value `encode_archived` wrote.
pub fn decode_archived(bytes: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut input = Reader(bytes);
    if input.byte()? != ARCHIVED_V1 {
        return None;
    }
    let with = input.string()?;
    let stanza = input.bytes()?.to_vec();
    input.finish()?;
    Some((with, stanza))
}

pub fn encode_archive_prefs(prefs: &ArchivePrefs) -> Vec<u8> {
    let mut out = Writer::default();
    out.byte(ARCHIVE_PREFS_V1);
    out.byte(match prefs.default {
        ArchiveDefault::Always => 0,
        ArchiveDefault::Never => 1,
        ArchiveDefault::Roster => 2,
    });
    for list in [&prefs.always, &prefs.never] {
        out.length(list.len());
        for jid in list {
            out.bytes(jid.as_bytes());
        }
    }
    out.0
}

/// `None` if `bytes` is not a value `encode_archive_prefs` wrote.
pub fn decode_archive_prefs(bytes: &[u8]) -> Option<ArchivePrefs> {
    let mut input = Reader(bytes);
    if input.byte()? != ARCHIVE_PREFS_V1 {
        return None;
    }
    let default = match input.byte()? {
        0 => ArchiveDefault::Always,
        1 => ArchiveDefault::Never,
        2 => ArchiveDefault::Roster,
        _ => return None,
    };
    let mut list = || {
        let count = input.length()?;
        // As for roster groups: every entry takes at least its length byte.
        if count > input.0.len() {
            return None;
        }
        (0..count).map(|_| input.string()).collect::<Option<_>>()
    };
    let (always, never) = (list()?, list()?);
    input.finish()?;
    Some(ArchivePrefs { default, always, never })
}

/// A PubSub item without its id (the key holds it).
pub fn encode_pubsub_item(item: &PubSubItem) -> Vec<u8> {
    let mut out = Writer::default();
    out.byte(PUBSUB_ITEM_V1);
    out.bytes(&item.published.to_le_bytes());
    out.bytes(item.publisher.as_bytes());
    out.bytes(&item.payload);
    out.0
}

/// `None` if `bytes` is not a value `encode_pubsub_item` wrote.
pub fn decode_pubsub_item(id: &str, bytes: &[u8]) -> Option<PubSubItem> {
    let mut input = Reader(bytes);
    if input.byte()? != PUBSUB_ITEM_V1 {
        return None;
    }
    let published = u64::from_le_bytes(input.bytes()?.try_into().ok()?);
    let publisher = input.string()?;
    let payload = input.bytes()?.to_vec();
    input.finish()?;
    Some(PubSubItem { id: id.to_owned(), publisher, published, payload })
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn byte(&mut self, byte: u8) {
        self.0.push(byte);
    }

    fn length(&mut self, mut value: usize) {
        while value >= 0x80 {
            // Truncation is the point: the low seven bits, with the continuation bit set.
            self.0.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.length(bytes.len());
        self.0.extend_from_slice(bytes);
    }
}

/// Reads what `Writer` wrote; every method returns `None` on truncated or malformed input.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn length(&mut self) -> Option<usize> {
        let mut value: usize = 0;
        for shift in (0..usize::BITS).step_by(7) {
            let byte = self.byte()?;
            let bits = usize::from(byte & 0x7f);
            // Bits shifted out of a usize would be silently lost: reject instead.
            if (bits << shift) >> shift != bits {
                return None;
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.length()?;
        if len > self.0.len() {
            return None;
        }
        let (bytes, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(bytes)
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }

    /// Trailing bytes mean the value is not what we think it is.
    fn finish(self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: Option<&str>, groups: &[&str], subscription: Subscription, ask_out: bool, approved: bool) -> RosterItem {
        RosterItem {
            jid: "carol@example.com".to_owned(),
            name: name.map(str::to_owned),
            groups: groups.iter().map(|group| (*group).to_owned()).collect(),
            subscription,
            ask_out,
            approved,
        }
    }

    #[test]
    fn roster_items_round_trip() {
        let long = "g".repeat(300);
        for original in [
            item(None, &[], Subscription::None, false, false),
            item(Some(""), &[""], Subscription::To, true, false),
            item(Some("Carol ☕"), &["Friends", &long], Subscription::From, false, true),
            item(Some("C"), &["a", "b", "c"], Subscription::Both, true, true),
        ] {
            let bytes = encode_roster_item(&original);
            assert_eq!(decode_roster_item(&original.jid, &bytes), Some(original));
        }
    }

    #[test]
    fn credentials_round_trip() {
        let credentials = ScramCredentials::derive("pencil", 1);
        assert_eq!(decode_credentials(&encode_credentials(&credentials)), Some(credentials));
    }

    #[test]
    fn truncated_or_extended_values_are_rejected() {
        let credentials = encode_credentials(&ScramCredentials::derive("pencil", 1));
        let roster = encode_roster_item(&item(Some("Carol"), &["Friends"], Subscription::Both, true, true));
        for len in 0..credentials.len() {
            assert_eq!(decode_credentials(&credentials[..len]), None, "credentials cut at {len}");
        }
        for len in 0..roster.len() {
            assert_eq!(decode_roster_item("c", &roster[..len]), None, "roster item cut at {len}");
        }
        assert_eq!(decode_credentials(&[credentials.as_slice(), &[0]].concat()), None);
        assert_eq!(decode_roster_item("c", &[roster.as_slice(), &[0]].concat()), None);
    }

    #[test]
    fn unknown_formats_and_values_are_rejected() {
        assert_eq!(decode_roster_item("c", &[2, 0, 0, 0]), None, "unknown format byte");
        assert_eq!(decode_roster_item("c", &[ROSTER_ITEM_V1, 0x80, 0, 0]), None, "unknown flag");
        assert_eq!(decode_roster_item("c", &[ROSTER_ITEM_V1, 0, 4, 0]), None, "unknown subscription");
        assert_eq!(decode_roster_item("c", &[ROSTER_ITEM_V1, HAS_NAME, 0, 1, 0xff, 0]), None, "name is not UTF-8");
        assert_eq!(decode_roster_item("c", &[ROSTER_ITEM_V1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]), None, "group count beyond the data");
        let overlong = [&[ROSTER_ITEM_V1, 0, 0][..], &[0xff; 11], &[0x01]].concat();
        assert_eq!(decode_roster_item("c", &overlong), None, "varint longer than a usize");
    }

    #[test]
    fn archive_values_round_trip_and_reject_truncation() {
        let archived = encode_archived("bob@example.com", b"<message><body>hi</body></message>");
        assert_eq!(decode_archived(&archived), Some(("bob@example.com".to_owned(), b"<message><body>hi</body></message>".to_vec())));
        let prefs = ArchivePrefs {
            default: ArchiveDefault::Roster,
            always: ["a@example.com".to_owned(), "example.net".to_owned()].into(),
            never: ["b@example.com".to_owned()].into(),
        };
        let encoded = encode_archive_prefs(&prefs);
        assert_eq!(decode_archive_prefs(&encoded), Some(prefs));
        for len in 0..archived.len() {
            assert_eq!(decode_archived(&archived[..len]), None, "archived message cut at {len}");
        }
        for len in 0..encoded.len() {
            assert_eq!(decode_archive_prefs(&encoded[..len]), None, "prefs cut at {len}");
        }
        assert_eq!(decode_archive_prefs(&[ARCHIVE_PREFS_V1, 3, 0, 0]), None, "unknown default");
    }

    #[test]
    fn lengths_use_leb128() {
        let mut out = Writer::default();
        for value in [0, 127, 128, 300, usize::MAX] {
            out.length(value);
        }
        let mut input = Reader(&out.0);
        for value in [0, 127, 128, 300, usize::MAX] {
            assert_eq!(input.length(), Some(value));
        }
        assert_eq!(&out.0[..4], &[0, 127, 0x80, 0x01], "128 is two bytes, low group first");
    }
}
