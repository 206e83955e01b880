//! In a cluster: not archiving a message twice when its owner record is replayed after an owner's
//! death (the way deliveries are kept from repeating is in `state::replays`). The user's actor
//! remembers, for a while ([`Recent`]), the messages it archived as received, by content and
//! cause: those are what another owner's replay repeats. A user's own messages are replayed only
//! when the user's owner died, to a new actor; it starts from the newest entries in the store,
//! whose cause it does not know: a message with the same bytes as one of them, archived moments
//! ago, is that message replayed (nothing else reached the user's archive meanwhile, its
//! partition being without an owner). A replay reuses the archived id, so the live copy carries
//! the same stanza-id as the first time — and is then recognised as a repeated delivery too.
//! Rooms (XEP-0045) keep the same memory of the groupchat messages they archived.

use starling_cluster::store::ArchivedMessage;

use crate::recent::Recent;

/// Newest entries a new actor reads to start from.
pub(crate) const SEEDS: usize = 16;

/// How old a newest entry in the store may be and still be what a replay repeats: a takeover
/// happens within seconds.
const SEED_WINDOW_MICROS: u64 = 120_000_000;

/// Archived lately.
#[derive(Default)]
pub(crate) struct RecentlyArchived {
    entries: Recent<Archived>,
}

struct Archived {
    /// XXH3 of the bytes archived.
    content: u64,
    /// Which record archived it, and in which direction ([`archived_by`]); 0 for an entry found
    /// in the store, until a replay claims it.
    by: u64,
    id: u64,
}

/// Tells apart what one record archives: a message to oneself is archived twice by the same
/// record, once sent and once received.
pub(crate) fn archived_by(cause: u64, outbound: bool) -> u64 {
    (cause ^ u64::from(outbound)).max(1)
}

pub(crate) fn content_of(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

impl RecentlyArchived {
    /// Starts from the store's newest entries that are recent at `now_micros`.
    pub(super) fn seeded(newest: &[ArchivedMessage], now_micros: u64) -> RecentlyArchived {
        RecentlyArchived::seeded_with(newest.iter().map(|message| (content_of(&message.stanza), message.id)), now_micros)
    }

    /// Starts from entries found in the store, as `(content, id)`, that are recent at `now_micros`.
    pub(crate) fn seeded_with(newest: impl IntoIterator<Item = (u64, u64)>, now_micros: u64) -> RecentlyArchived {
        let mut seeded = RecentlyArchived::default();
        for (content, id) in newest.into_iter().filter(|(_, id)| id.saturating_add(SEED_WINDOW_MICROS) >= now_micros) {
            seeded.entries.push(Archived { content, by: 0, id });
        }
        seeded
    }

    /// The id under which this record archived these bytes already, if it did.
    pub(crate) fn recall(&mut self, content: u64, by: u64) -> Option<u64> {
        let mut claimed = |wanted: u64| self.entries.iter_mut().find(|entry| entry.content == content && entry.by == wanted).map(|entry| entry.id);
        if let Some(id) = claimed(by) {
            return Some(id);
        }
        let seed = self.entries.iter_mut().find(|entry| entry.content == content && entry.by == 0)?;
        // An entry from the store answers one replay only: a second message with the same bytes is another message.
        seed.by = by;
        Some(seed.id)
    }

    pub(crate) fn remember(&mut self, content: u64, by: u64, id: u64) {
        self.entries.push(Archived { content, by, id });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: u64, body: &str) -> ArchivedMessage {
        ArchivedMessage { id, with: "bob@example.com".into(), stanza: body.as_bytes().to_vec() }
    }

    #[test]
    fn a_record_archives_the_same_bytes_once_per_direction() {
        let mut recent = RecentlyArchived::default();
        let hello = content_of(b"hello");
        recent.remember(hello, archived_by(7, true), 100);
        assert_eq!(recent.recall(hello, archived_by(7, true)), Some(100), "the replay of the same record");
        assert_eq!(recent.recall(hello, archived_by(7, false)), None, "the same record's received copy is another entry");
        assert_eq!(recent.recall(hello, archived_by(8, true)), None, "another record with the same bytes is another message");
    }

    #[test]
    fn entries_from_the_store_answer_one_replay_each_and_only_when_recent() {
        let now = 1_000_000_000_000;
        let newest = [message(now - 5_000_000, "hi"), message(now - 4_000_000, "hi"), message(now - SEED_WINDOW_MICROS - 1, "old")];
        let mut recent = RecentlyArchived::seeded(&newest, now);
        let hi = content_of(b"hi");
        assert_eq!(recent.recall(hi, archived_by(1, false)), Some(now - 5_000_000));
        assert_eq!(recent.recall(hi, archived_by(1, false)), Some(now - 5_000_000), "claimed by that record");
        assert_eq!(recent.recall(hi, archived_by(2, false)), Some(now - 4_000_000), "the second copy in the store");
        assert_eq!(recent.recall(hi, archived_by(3, false)), None, "a third message with the same bytes is new");
        assert_eq!(recent.recall(content_of(b"old"), archived_by(4, false)), None, "too old to be a replay");
    }
}
