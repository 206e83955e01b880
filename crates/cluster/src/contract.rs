//! The behaviour every storage backend must show, as a test suite a backend crate runs against a
//! fresh instance of itself: `starling_cluster::contract::run_all(&store, &unique_prefix()).await`.
//!
//! Every function names its users `{prefix}-{function}-{name}@example.com` and leaves the data of
//! other users alone (it only asserts that theirs did not change), so the suite can also run
//! against a long-lived shared database as long as each run gets a fresh prefix.
//!
//! Over 400 lines: one contract suite, one function per required behaviour, that every backend runs whole.

mod pubsub;
mod things;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;

use crate::bus::{Bus, OwnerEvent, OwnerInbox, Record};
use crate::registry::{Fenced, ManagedStream, Registry, ResourceRoute};
use crate::store::{
    AbuseReport, AbuseReports, Accounts, Archive, ArchiveDefault, ArchiveEntry, ArchivePage, ArchivePrefs, ArchiveQuery, ArchivedMessage, Blocklists, FastToken, FastTokenSlots, FastTokens, LastActivity, LastSeen, OfflineMessages, PrivateXml, PushRegistration, PushRegistrations, Rooms, RosterItem, Rosters, ScramCredentials, ScramKeys,
    Store, StoreError, Subscription, VCards,
};

/// A prefix no earlier run used (with overwhelming probability).
pub fn unique_prefix() -> String {
    format!("contract{:016x}", rand::random::<u64>())
}

/// Runs every check of this module.
pub async fn run_all(store: &Store, prefix: &str) {
    accounts(store.accounts.as_ref(), prefix).await;
    rosters(store.rosters.as_ref(), prefix).await;
    vcards(store.vcards.as_ref(), prefix).await;
    private_xml(store.private_xml.as_ref(), prefix).await;
    blocklists(store.blocklists.as_ref(), prefix).await;
    offline(store.offline.as_ref(), prefix).await;
    last_activity(store.last_activity.as_ref(), prefix).await;
    archive(store.archive.as_ref(), prefix).await;
    push(store.push.as_ref(), prefix).await;
    fast_tokens(store.fast_tokens.as_ref(), prefix).await;
    rooms(store.rooms.as_ref(), prefix).await;
    things::things(store.things.as_ref(), prefix).await;
    pubsub::pubsub(store.pubsub.as_ref(), prefix).await;
    abuse_reports(store.abuse_reports.as_ref(), prefix).await;
    remove_user(store, prefix).await;
}

fn user(prefix: &str, scope: &str, name: &str) -> String {
    format!("{prefix}-{scope}-{name}@example.com")
}

/// 1 MiB in which every byte value occurs, to catch truncation and text conversions of blobs.
fn large_blob() -> Vec<u8> {
    (0..1usize << 20).map(|i| (i.wrapping_mul(31) % 256) as u8).collect()
}

/// Credentials with recognisable, non-UTF-8 bytes, so that a backend mixing fields up shows it.
fn fake_credentials(seed: u8) -> ScramCredentials {
    let bytes = |tag: u8, len: usize| (0..len).map(|i| tag ^ seed ^ (i as u8).wrapping_mul(37)).collect::<Vec<u8>>();
    ScramCredentials {
        iterations: 4096 + u32::from(seed),
        salt: bytes(0x00, 16),
        sha1: ScramKeys { stored_key: bytes(0x11, 20), server_key: bytes(0x22, 20) },
        sha256: ScramKeys { stored_key: bytes(0xee, 32), server_key: bytes(0xff, 32) },
    }
}

pub async fn accounts(accounts: &dyn Accounts, prefix: &str) {
    let alice = user(prefix, "accounts", "alice");
    let bob = user(prefix, "accounts", "bob");
    let first = fake_credentials(1);
    let second = ScramCredentials::derive("pencil", 1);

    assert!(!accounts.exists(&alice).await.expect("exists"), "a new user must not exist");
    assert_eq!(accounts.credentials(&alice).await.expect("credentials"), None, "a new user has no credentials");
    assert!(!accounts.set_credentials(&alice, first.clone()).await.expect("set_credentials"), "set_credentials must not create an account");
    assert!(!accounts.exists(&alice).await.expect("exists"), "set_credentials created an account");
    assert!(!accounts.remove(&alice).await.expect("remove"), "removing a missing account must report false");

    accounts.create(&alice, first.clone()).await.expect("create");
    assert!(accounts.exists(&alice).await.expect("exists"), "created account must exist");
    assert_eq!(accounts.credentials(&alice).await.expect("credentials"), Some(first.clone()), "credentials must round-trip exactly");
    assert_eq!(accounts.create(&alice, second.clone()).await, Err(StoreError::Conflict), "creating an existing account must conflict");
    assert_eq!(accounts.credentials(&alice).await.expect("credentials"), Some(first.clone()), "a conflicting create must not overwrite");
    assert!(!accounts.exists(&bob).await.expect("exists"), "creating alice must not create bob");

    accounts.create(&bob, fake_credentials(2)).await.expect("create");
    let listed = accounts.list().await.expect("list");
    assert!(listed.windows(2).all(|pair| pair[0] < pair[1]), "list must be sorted and without duplicates: {listed:?}");
    let mine: Vec<&String> = listed.iter().filter(|name| name.starts_with(&format!("{prefix}-accounts-"))).collect();
    assert_eq!(mine, [&alice, &bob], "list must hold exactly the created accounts");

    assert!(accounts.set_credentials(&alice, second.clone()).await.expect("set_credentials"), "set_credentials on an account must succeed");
    assert_eq!(accounts.credentials(&alice).await.expect("credentials"), Some(second), "set_credentials must replace the credentials");
    assert_eq!(accounts.credentials(&bob).await.expect("credentials"), Some(fake_credentials(2)), "changing alice must not change bob");

    assert!(accounts.remove(&alice).await.expect("remove"), "removing an account must report true");
    assert!(!accounts.exists(&alice).await.expect("exists"), "a removed account must not exist");
    assert_eq!(accounts.credentials(&alice).await.expect("credentials"), None, "a removed account has no credentials");
    assert!(!accounts.remove(&alice).await.expect("remove"), "removing twice must report false");
    assert!(!accounts.list().await.expect("list").contains(&alice), "a removed account must not be listed");
    assert!(accounts.exists(&bob).await.expect("exists"), "removing alice must not remove bob");

    accounts.create(&alice, first.clone()).await.expect("an account can be created again after removal");
    assert_eq!(accounts.credentials(&alice).await.expect("credentials"), Some(first), "a re-created account has its new credentials");
    assert!(accounts.remove(&alice).await.expect("remove"));
    assert!(accounts.remove(&bob).await.expect("remove"));
}

pub async fn rosters(rosters: &dyn Rosters, prefix: &str) {
    let alice = user(prefix, "rosters", "alice");
    let bob = user(prefix, "rosters", "bob");
    let carol = user(prefix, "rosters", "carol");
    let dave = user(prefix, "rosters", "dave");
    let erin = user(prefix, "rosters", "erin");

    assert_eq!(rosters.version(&alice).await.expect("version"), 0, "a user with no roster is at version 0");
    assert_eq!(rosters.roster(&alice).await.expect("roster"), (0, Vec::new()), "a user with no roster has an empty one");
    assert_eq!(rosters.item(&alice, &carol).await.expect("item"), None);
    assert_eq!(rosters.remove(&alice, &carol).await.expect("remove"), None, "removing a missing item must report None");
    assert_eq!(rosters.version(&alice).await.expect("version"), 0, "removing a missing item must not bump the version");

    let carol_item = RosterItem {
        jid: carol.clone(),
        name: Some("Carol ☕ \"C\" <c>".to_owned()),
        groups: vec!["Friends".to_owned(), "Wörk".to_owned(), String::new()],
        subscription: Subscription::Both,
        ask_out: true,
        approved: true,
    };
    let dave_item = RosterItem {
        jid: dave.clone(),
        name: None,
        groups: Vec::new(),
        subscription: Subscription::None,
        ask_out: false,
        approved: false,
    };
    // Stored in reverse order, so that a sorted result shows the store sorts.
    let v1 = rosters.put(&alice, dave_item.clone()).await.expect("put");
    assert!(v1 > 0, "the first put must leave version 0 behind");
    let v2 = rosters.put(&alice, carol_item.clone()).await.expect("put");
    assert!(v2 > v1, "versions must strictly increase: {v1} then {v2}");
    assert_eq!(rosters.version(&alice).await.expect("version"), v2, "version must report the last put's version");
    assert_eq!(
        rosters.roster(&alice).await.expect("roster"),
        (v2, vec![carol_item.clone(), dave_item.clone()]),
        "roster must hold every item, sorted by JID, with every field intact"
    );
    assert_eq!(rosters.item(&alice, &carol).await.expect("item"), Some(carol_item.clone()));
    assert_eq!(rosters.item(&alice, &dave).await.expect("item"), Some(dave_item.clone()));

    let mut last = v2;
    for subscription in [Subscription::To, Subscription::From, Subscription::None, Subscription::Both] {
        let changed = RosterItem { subscription, ask_out: !matches!(subscription, Subscription::Both), ..carol_item.clone() };
        let version = rosters.put(&alice, changed.clone()).await.expect("put");
        assert!(version > last, "replacing an item must bump the version: {last} then {version}");
        last = version;
        assert_eq!(rosters.item(&alice, &carol).await.expect("item"), Some(changed), "put must replace the item");
    }
    assert_eq!(rosters.roster(&alice).await.expect("roster").1.len(), 2, "replacing must not duplicate an item");

    assert_eq!(rosters.version(&bob).await.expect("version"), 0, "alice's writes must not touch bob's version");
    assert_eq!(rosters.item(&bob, &carol).await.expect("item"), None, "alice's items must not show in bob's roster");
    let bob_version = rosters.put(&bob, dave_item.clone()).await.expect("put");
    assert!(bob_version > 0);
    assert_eq!(rosters.version(&alice).await.expect("version"), last, "bob's writes must not touch alice's version");

    let removed = rosters.remove(&alice, &carol).await.expect("remove").expect("carol was in the roster");
    assert!(removed > last, "removing an item must bump the version: {last} then {removed}");
    assert_eq!(rosters.item(&alice, &carol).await.expect("item"), None, "a removed item must be gone");
    assert_eq!(rosters.remove(&alice, &carol).await.expect("remove"), None, "removing twice must report None");
    let emptied = rosters.remove(&alice, &dave).await.expect("remove").expect("dave was in the roster");
    assert!(emptied > removed, "versions must strictly increase: {removed} then {emptied}");
    assert_eq!(rosters.roster(&alice).await.expect("roster"), (emptied, Vec::new()), "an emptied roster keeps its version");
    assert!(rosters.put(&alice, dave_item.clone()).await.expect("put") > emptied, "versions must not restart when a roster empties");
    assert_eq!(rosters.item(&bob, &dave).await.expect("item"), Some(dave_item.clone()), "alice's removals must not touch bob");

    // Pending inbound requests live apart from the roster: erin is in nobody's roster.
    assert_eq!(rosters.pending_in(&alice).await.expect("pending_in"), Vec::new());
    assert!(!rosters.remove_pending_in(&alice, &erin).await.expect("remove_pending_in"), "removing a missing request must report false");
    rosters.add_pending_in(&alice, &erin, b"<presence type='subscribe'/>".to_vec()).await.expect("add_pending_in");
    rosters.add_pending_in(&alice, &carol, Vec::new()).await.expect("add_pending_in");
    rosters.add_pending_in(&alice, &erin, b"<presence type='subscribe'><status>hi</status></presence>".to_vec()).await.expect("add_pending_in");
    assert_eq!(
        rosters.pending_in(&alice).await.expect("pending_in"),
        vec![(carol.clone(), Vec::new()), (erin.clone(), b"<presence type='subscribe'><status>hi</status></presence>".to_vec())],
        "pending_in must hold one request per contact, the latest, sorted by contact"
    );
    assert_eq!(rosters.pending_in(&bob).await.expect("pending_in"), Vec::new(), "alice's requests must not show for bob");
    assert!(rosters.remove_pending_in(&alice, &erin).await.expect("remove_pending_in"), "removing a request must report true");
    assert!(!rosters.remove_pending_in(&alice, &erin).await.expect("remove_pending_in"), "removing twice must report false");
    assert_eq!(rosters.pending_in(&alice).await.expect("pending_in"), vec![(carol.clone(), Vec::new())]);

    rosters.add_pending_in(&bob, &erin, b"bob's".to_vec()).await.expect("add_pending_in");
    rosters.remove_user(&alice).await.expect("remove_user");
    assert_eq!(rosters.roster(&alice).await.expect("roster"), (0, Vec::new()), "remove_user must delete items and version");
    assert_eq!(rosters.pending_in(&alice).await.expect("pending_in"), Vec::new(), "remove_user must delete pending requests");
    assert_eq!(rosters.roster(&bob).await.expect("roster"), (bob_version, vec![dave_item]), "remove_user(alice) must not touch bob");
    assert_eq!(rosters.pending_in(&bob).await.expect("pending_in"), vec![(erin, b"bob's".to_vec())]);
    rosters.remove_user(&alice).await.expect("remove_user of a user without data must succeed");
    rosters.remove_user(&bob).await.expect("remove_user");
}

pub async fn vcards(vcards: &dyn VCards, prefix: &str) {
    let alice = user(prefix, "vcards", "alice");
    let bob = user(prefix, "vcards", "bob");

    assert_eq!(vcards.get(&alice).await.expect("get"), None);
    vcards.remove(&alice).await.expect("removing a missing vCard must succeed");
    vcards.set(&alice, b"<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>".to_vec()).await.expect("set");
    vcards.set(&bob, b"<vCard xmlns='vcard-temp'/>".to_vec()).await.expect("set");
    vcards.set(&alice, b"<vCard xmlns='vcard-temp'><FN>Al</FN></vCard>".to_vec()).await.expect("set");
    assert_eq!(vcards.get(&alice).await.expect("get"), Some(b"<vCard xmlns='vcard-temp'><FN>Al</FN></vCard>".to_vec()), "set must replace");
    assert_eq!(vcards.get(&bob).await.expect("get"), Some(b"<vCard xmlns='vcard-temp'/>".to_vec()), "users must not share a vCard");

    vcards.set(&alice, Vec::new()).await.expect("set");
    assert_eq!(vcards.get(&alice).await.expect("get"), Some(Vec::new()), "an empty vCard must differ from none");
    let large = large_blob();
    vcards.set(&alice, large.clone()).await.expect("set");
    assert!(vcards.get(&alice).await.expect("get") == Some(large), "a 1 MiB binary value must round-trip");

    vcards.remove(&alice).await.expect("remove");
    assert_eq!(vcards.get(&alice).await.expect("get"), None, "a removed vCard must be gone");
    assert!(vcards.get(&bob).await.expect("get").is_some(), "removing alice's vCard must not remove bob's");
    vcards.remove(&bob).await.expect("remove");
}

pub async fn rooms(rooms: &dyn Rooms, prefix: &str) {
    // A service of this run's own, so that listings from other runs sharing the store don't show.
    let service = format!("conference.{prefix}.example.com");
    let coven = format!("coven@{service}");
    let other = format!("other@{service}");
    let elsewhere = format!("{prefix}-elsewhere@chat.example.com");
    assert_eq!(rooms.get(&coven).await.expect("get"), None);
    assert_eq!(rooms.listed(&service).await.expect("listed"), Vec::new());
    rooms.set(&coven, b"<room/>".to_vec(), Some("Coven")).await.expect("set");
    rooms.set(&other, large_blob(), None).await.expect("set");
    rooms.set(&elsewhere, b"<room/>".to_vec(), Some("")).await.expect("set");
    let listing = |entries: &[(&str, &str)]| entries.iter().map(|(room, name)| (room.to_string(), name.to_string())).collect::<Vec<_>>();
    assert_eq!(rooms.listed(&service).await.expect("listed"), listing(&[(&coven, "Coven")]), "only public rooms of the service");
    rooms.set(&coven, b"<room version='2'/>".to_vec(), Some("Coven of Three")).await.expect("replace");
    rooms.set(&other, large_blob(), Some("")).await.expect("list");
    assert_eq!(rooms.listed(&service).await.expect("listed"), listing(&[(&coven, "Coven of Three"), (&other, "")]), "sorted, renamed");
    assert_eq!(rooms.get(&coven).await.expect("get"), Some(b"<room version='2'/>".to_vec()), "the last record wins");
    assert_eq!(rooms.get(&other).await.expect("get"), Some(large_blob()), "records are kept byte for byte");
    rooms.set(&other, large_blob(), None).await.expect("unlist");
    assert_eq!(rooms.listed(&service).await.expect("listed"), listing(&[(&coven, "Coven of Three")]), "no longer public");
    rooms.remove(&coven).await.expect("remove");
    assert_eq!(rooms.get(&coven).await.expect("get"), None);
    assert_eq!(rooms.listed(&service).await.expect("listed"), Vec::new(), "a removed room is no longer listed");
    assert!(rooms.get(&other).await.expect("get").is_some(), "removing a room leaves the others");
    rooms.remove(&coven).await.expect("removing again is fine");
    for room in [&other, &elsewhere] {
        rooms.remove(room).await.expect("remove");
    }
}

pub async fn private_xml(private_xml: &dyn PrivateXml, prefix: &str) {
    let alice = user(prefix, "private", "alice");
    let bob = user(prefix, "private", "bob");
    let bookmarks = "storage|storage:bookmarks";
    let other_ns = "storage|storage:rosternotes";

    assert_eq!(private_xml.get(&alice, bookmarks).await.expect("get"), None);
    private_xml.set(&alice, bookmarks, b"<storage xmlns='storage:bookmarks'/>".to_vec()).await.expect("set");
    private_xml.set(&alice, other_ns, b"<storage xmlns='storage:rosternotes'/>".to_vec()).await.expect("set");
    private_xml.set(&bob, bookmarks, b"bob's".to_vec()).await.expect("set");
    assert_eq!(
        private_xml.get(&alice, bookmarks).await.expect("get"),
        Some(b"<storage xmlns='storage:bookmarks'/>".to_vec()),
        "keys that share the element name must be kept apart"
    );
    assert_eq!(private_xml.get(&alice, other_ns).await.expect("get"), Some(b"<storage xmlns='storage:rosternotes'/>".to_vec()));
    assert_eq!(private_xml.get(&bob, bookmarks).await.expect("get"), Some(b"bob's".to_vec()), "users must not share fragments");
    assert_eq!(private_xml.get(&alice, "storage|").await.expect("get"), None, "keys must match exactly");

    private_xml.set(&alice, bookmarks, Vec::new()).await.expect("set");
    assert_eq!(private_xml.get(&alice, bookmarks).await.expect("get"), Some(Vec::new()), "an empty fragment must differ from none");
    let large = large_blob();
    private_xml.set(&alice, bookmarks, large.clone()).await.expect("set");
    assert!(private_xml.get(&alice, bookmarks).await.expect("get") == Some(large), "a 1 MiB binary value must round-trip");

    private_xml.remove_user(&alice).await.expect("remove_user");
    assert_eq!(private_xml.get(&alice, bookmarks).await.expect("get"), None, "remove_user must delete every fragment");
    assert_eq!(private_xml.get(&alice, other_ns).await.expect("get"), None, "remove_user must delete every fragment");
    assert_eq!(private_xml.get(&bob, bookmarks).await.expect("get"), Some(b"bob's".to_vec()), "remove_user(alice) must not touch bob");
    private_xml.remove_user(&bob).await.expect("remove_user");
}

pub async fn blocklists(blocklists: &dyn Blocklists, prefix: &str) {
    let alice = user(prefix, "blocking", "alice");
    let bob = user(prefix, "blocking", "bob");
    let jids = |names: &[&str]| names.iter().map(|name| (*name).to_owned()).collect::<Vec<String>>();

    assert_eq!(blocklists.list(&alice).await.expect("list"), Vec::<String>::new());
    assert!(!blocklists.is_blocked(&alice, "spam@example.org").await.expect("is_blocked"));
    blocklists.add(&alice, &jids(&["spam@example.org/bot", "example.net", "spam@example.org"])).await.expect("add");
    blocklists.add(&alice, &jids(&["example.net"])).await.expect("adding a blocked JID again must succeed");
    blocklists.add(&alice, &[]).await.expect("adding nothing must succeed");
    assert_eq!(
        blocklists.list(&alice).await.expect("list"),
        jids(&["example.net", "spam@example.org", "spam@example.org/bot"]),
        "list must be sorted and without duplicates"
    );
    assert!(blocklists.is_blocked(&alice, "spam@example.org").await.expect("is_blocked"));
    assert!(blocklists.is_blocked(&alice, "spam@example.org/bot").await.expect("is_blocked"));
    assert!(!blocklists.is_blocked(&alice, "spam@example.org/other").await.expect("is_blocked"), "matching must be exact");
    assert!(!blocklists.is_blocked(&alice, "x@example.net").await.expect("is_blocked"), "the store must not match domains itself");
    assert!(!blocklists.is_blocked(&bob, "example.net").await.expect("is_blocked"), "alice's list must not apply to bob");

    blocklists.add(&bob, &jids(&["example.net"])).await.expect("add");
    blocklists.remove(&alice, &jids(&["spam@example.org", "never@example.org"])).await.expect("remove");
    assert_eq!(blocklists.list(&alice).await.expect("list"), jids(&["example.net", "spam@example.org/bot"]));
    assert!(!blocklists.is_blocked(&alice, "spam@example.org").await.expect("is_blocked"), "a removed JID must not be blocked");

    blocklists.clear(&alice).await.expect("clear");
    assert_eq!(blocklists.list(&alice).await.expect("list"), Vec::<String>::new(), "clear must empty the list");
    assert!(!blocklists.is_blocked(&alice, "example.net").await.expect("is_blocked"));
    blocklists.clear(&alice).await.expect("clearing an empty list must succeed");
    assert_eq!(blocklists.list(&bob).await.expect("list"), jids(&["example.net"]), "clearing alice's list must not touch bob's");
    blocklists.clear(&bob).await.expect("clear");
}

pub async fn offline(offline: &dyn OfflineMessages, prefix: &str) {
    let alice = user(prefix, "offline", "alice");
    let bob = user(prefix, "offline", "bob");
    let message = |n: u32| format!("<message><body>{n}</body></message>").into_bytes();

    assert_eq!(offline.count(&alice).await.expect("count"), 0);
    assert_eq!(offline.fetch(&alice).await.expect("fetch"), Vec::new());
    assert_eq!(offline.push(&alice, message(0), 0).await, Err(StoreError::LimitExceeded), "a limit of 0 must refuse everything");
    offline.remove_upto(&alice, u64::MAX).await.expect("remove_upto on an empty queue must succeed");

    let id1 = offline.push(&alice, message(1), 3).await.expect("push");
    let id2 = offline.push(&alice, message(2), 3).await.expect("push");
    let bob1 = offline.push(&bob, message(100), 3).await.expect("push");
    let id3 = offline.push(&alice, message(3), 3).await.expect("push");
    assert!(id1 < id2 && id2 < id3, "ids must strictly increase: {id1}, {id2}, {id3}");
    assert_eq!(offline.push(&alice, message(4), 3).await, Err(StoreError::LimitExceeded), "a full queue must refuse");
    assert_eq!(offline.count(&alice).await.expect("count"), 3, "a refused push must store nothing");
    assert_eq!(offline.count(&bob).await.expect("count"), 1, "queues must be per user");
    assert_eq!(
        offline.fetch(&alice).await.expect("fetch"),
        vec![(id1, message(1)), (id2, message(2)), (id3, message(3))],
        "fetch must return every message, oldest first"
    );

    offline.remove_upto(&alice, id2).await.expect("remove_upto");
    assert_eq!(offline.fetch(&alice).await.expect("fetch"), vec![(id3, message(3))], "remove_upto must remove ids <= its argument only");
    assert_eq!(offline.count(&alice).await.expect("count"), 1);
    offline.remove_upto(&alice, 0).await.expect("remove_upto");
    assert_eq!(offline.count(&alice).await.expect("count"), 1, "remove_upto below every id must remove nothing");
    assert_eq!(offline.fetch(&bob).await.expect("fetch"), vec![(bob1, message(100))], "alice's removal must not touch bob");

    let id5 = offline.push(&alice, Vec::new(), 3).await.expect("push");
    let large = large_blob();
    let id6 = offline.push(&alice, large.clone(), 3).await.expect("push");
    assert!(id3 < id5 && id5 < id6, "ids must keep increasing after removals: {id3}, {id5}, {id6}");
    assert!(offline.fetch(&alice).await.expect("fetch") == vec![(id3, message(3)), (id5, Vec::new()), (id6, large)], "empty and 1 MiB stanzas must round-trip");

    offline.remove_upto(&alice, id6).await.expect("remove_upto");
    assert_eq!(offline.count(&alice).await.expect("count"), 0);
    let id7 = offline.push(&alice, message(7), 3).await.expect("push");
    assert!(id7 > id6, "ids must not be reused once the queue is empty: {id6} then {id7}");

    offline.remove_user(&alice).await.expect("remove_user");
    assert_eq!(offline.count(&alice).await.expect("count"), 0, "remove_user must empty the queue");
    assert_eq!(offline.fetch(&alice).await.expect("fetch"), Vec::new(), "remove_user must empty the queue");
    assert_eq!(offline.count(&bob).await.expect("count"), 1, "remove_user(alice) must not touch bob");
    offline.remove_user(&bob).await.expect("remove_user");
}

pub async fn last_activity(last_activity: &dyn LastActivity, prefix: &str) {
    let alice = user(prefix, "last", "alice");
    let bob = user(prefix, "last", "bob");
    let seen = |unix_seconds: u64, status: &str| LastSeen { unix_seconds, status: status.to_owned() };

    assert_eq!(last_activity.get(&alice).await.expect("get"), None);
    last_activity.set(&alice, seen(1_700_000_000, "Gone fishing 🎣")).await.expect("set");
    last_activity.set(&bob, seen(0, "")).await.expect("set");
    assert_eq!(last_activity.get(&alice).await.expect("get"), Some(seen(1_700_000_000, "Gone fishing 🎣")));
    assert_eq!(last_activity.get(&bob).await.expect("get"), Some(seen(0, "")), "zero time and empty status must round-trip");
    last_activity.set(&alice, seen(u64::MAX, "")).await.expect("set");
    assert_eq!(last_activity.get(&alice).await.expect("get"), Some(seen(u64::MAX, "")), "set must replace");

    last_activity.remove_user(&alice).await.expect("remove_user");
    assert_eq!(last_activity.get(&alice).await.expect("get"), None, "remove_user must delete the last activity");
    assert_eq!(last_activity.get(&bob).await.expect("get"), Some(seen(0, "")), "remove_user(alice) must not touch bob");
    last_activity.remove_user(&bob).await.expect("remove_user");
}

/// About 25 days in microseconds: ids this far apart fall into different time buckets of any
/// backend that partitions by a bucket of a day or more.
const DAYS_APART: u64 = 1 << 41;

pub async fn archive(archive: &dyn Archive, prefix: &str) {
    let alice = user(prefix, "archive", "alice");
    let bob = user(prefix, "archive", "bob");
    let carol = user(prefix, "archive", "carol");
    // Ids a real archive would hand out (microseconds around 2026), some close together and some
    // many buckets apart, plus the extremes a backend must not mangle.
    let base = 1_795_000_000_000_000u64;
    let ids = [1, base, base + 1, base + 2, base + DAYS_APART, base + 3 * DAYS_APART + 5, base + 3 * DAYS_APART + 6, 1 << 62];
    let message = |id: u64, with: &str| ArchivedMessage { id, with: with.to_owned(), stanza: format!("<message><body>{id}</body></message>").into_bytes() };
    let with_of = |i: usize| if i % 3 == 0 { &carol } else { &bob };
    let mine: Vec<ArchivedMessage> = ids.iter().enumerate().map(|(i, &id)| message(id, with_of(i))).collect();
    let page = |messages: &[ArchivedMessage], complete: bool| ArchivePage { messages: messages.to_vec(), complete };
    let range = |with: Option<&String>, after: Option<u64>, before: Option<u64>, limit: usize, from_newest: bool| ArchiveQuery {
        with: with.cloned(),
        after,
        before,
        limit,
        from_newest,
    };

    let everything = range(None, None, None, 100, false);
    assert_eq!(archive.query(&alice, &everything).await.expect("query"), page(&[], true), "a new archive is empty and complete");
    assert_eq!(archive.get(&alice, &[base]).await.expect("get"), Vec::new());
    assert_eq!(archive.prefs(&alice).await.expect("prefs"), None);

    // Appended out of order and in two batches mixed with another user's messages.
    let (first, second) = mine.split_at(4);
    let mut batch: Vec<ArchiveEntry> = second.iter().rev().map(|m| ArchiveEntry { user: alice.clone(), message: m.clone() }).collect();
    batch.push(ArchiveEntry { user: bob.clone(), message: message(base + 1, &alice) });
    archive.append(&batch).await.expect("append");
    archive.append(&first.iter().map(|m| ArchiveEntry { user: alice.clone(), message: m.clone() }).collect::<Vec<_>>()).await.expect("append");
    archive.append(&first[1..3].iter().map(|m| ArchiveEntry { user: alice.clone(), message: m.clone() }).collect::<Vec<_>>()).await.expect("append again");

    assert_eq!(archive.query(&alice, &everything).await.expect("query"), page(&mine, true), "everything, oldest first, once");
    assert_eq!(archive.query(&alice, &range(None, None, None, 3, false)).await.expect("query"), page(&mine[..3], false), "oldest page");
    assert_eq!(archive.query(&alice, &range(None, None, None, 3, true)).await.expect("query"), page(&mine[5..], false), "newest page, oldest first");
    assert_eq!(archive.query(&alice, &range(None, None, None, 8, true)).await.expect("query"), page(&mine, true), "a page of exactly everything is complete");
    assert_eq!(archive.query(&alice, &range(None, None, None, 0, false)).await.expect("query"), page(&[], false), "limit 0 of a non-empty range");
    assert_eq!(
        archive.query(&alice, &range(None, Some(base), Some(base + 3 * DAYS_APART + 6), 100, false)).await.expect("query"),
        page(&mine[2..6], true),
        "after and before are exclusive bounds"
    );
    assert_eq!(
        archive.query(&alice, &range(None, Some(base), None, 2, false)).await.expect("query"),
        page(&mine[2..4], false),
        "paging forward across buckets"
    );
    assert_eq!(
        archive.query(&alice, &range(None, None, Some(base + 3 * DAYS_APART + 5), 2, true)).await.expect("query"),
        page(&mine[3..5], false),
        "paging backward across buckets"
    );
    assert_eq!(archive.query(&alice, &range(None, Some(base + 2), Some(base + 3), 5, true)).await.expect("query"), page(&[], true), "empty range");

    let with_bob: Vec<ArchivedMessage> = mine.iter().filter(|m| m.with == bob).cloned().collect();
    let with_carol: Vec<ArchivedMessage> = mine.iter().filter(|m| m.with == carol).cloned().collect();
    assert_eq!(archive.query(&alice, &range(Some(&bob), None, None, 100, false)).await.expect("query"), page(&with_bob, true), "filter by with");
    assert_eq!(archive.query(&alice, &range(Some(&carol), None, None, 100, true)).await.expect("query"), page(&with_carol, true));
    assert_eq!(
        archive.query(&alice, &range(Some(&bob), Some(1), Some(1 << 62), 2, true)).await.expect("query"),
        page(&with_bob[2..4], false),
        "with, bounds and a limit together"
    );
    assert_eq!(archive.query(&alice, &range(Some(&alice), None, None, 100, false)).await.expect("query"), page(&[], true), "no message with alice herself");

    assert_eq!(
        archive.get(&alice, &[1 << 62, base + 1, 7, base + 1, base + DAYS_APART]).await.expect("get"),
        vec![mine[2].clone(), mine[4].clone(), mine[7].clone()],
        "get returns the existing ones, oldest first, once each"
    );
    assert_eq!(archive.get(&bob, &[base, base + 1]).await.expect("get"), vec![message(base + 1, &alice)], "archives are per user");

    archive.remove(&alice, &[base + 1, base + 1, 7]).await.expect("remove");
    assert_eq!(archive.get(&alice, &[base + 1]).await.expect("get"), Vec::new(), "remove deletes the message");
    assert_eq!(
        archive.query(&alice, &range(Some(&bob), None, None, 100, false)).await.expect("query"),
        page(&with_bob.iter().filter(|m| m.id != base + 1).cloned().collect::<Vec<_>>(), true),
        "and its place in the conversation index"
    );
    assert_eq!(archive.get(&bob, &[base + 1]).await.expect("get").len(), 1, "remove is per user");
    archive.append(&[ArchiveEntry { user: alice.clone(), message: mine[2].clone() }]).await.expect("append");

    let large = ArchivedMessage { id: base + 4, with: bob.clone(), stanza: large_blob() };
    archive.append(&[ArchiveEntry { user: carol.clone(), message: large.clone() }]).await.expect("append");
    assert!(archive.get(&carol, &[base + 4]).await.expect("get") == vec![large], "a 1 MiB stanza must round-trip");

    let prefs = ArchivePrefs {
        default: ArchiveDefault::Roster,
        always: BTreeSet::from([bob.clone(), "example.net".to_owned()]),
        never: BTreeSet::from([carol.clone()]),
    };
    archive.set_prefs(&alice, prefs.clone()).await.expect("set_prefs");
    assert_eq!(archive.prefs(&alice).await.expect("prefs"), Some(prefs), "prefs must round-trip");
    let never = ArchivePrefs { default: ArchiveDefault::Never, ..ArchivePrefs::default() };
    archive.set_prefs(&alice, never.clone()).await.expect("set_prefs");
    assert_eq!(archive.prefs(&alice).await.expect("prefs"), Some(never), "set_prefs must replace, lists included");
    assert_eq!(archive.prefs(&bob).await.expect("prefs"), None, "prefs are per user");

    archive.remove_user(&alice).await.expect("remove_user");
    assert_eq!(archive.query(&alice, &everything).await.expect("query"), page(&[], true), "remove_user must empty the archive");
    assert_eq!(archive.query(&alice, &range(Some(&bob), None, None, 10, true)).await.expect("query"), page(&[], true), "and its with index");
    assert_eq!(archive.get(&alice, &ids).await.expect("get"), Vec::new());
    assert_eq!(archive.prefs(&alice).await.expect("prefs"), None, "remove_user must delete the prefs");
    assert_eq!(archive.get(&bob, &[base + 1]).await.expect("get").len(), 1, "remove_user(alice) must not touch bob");
    archive.remove_user(&bob).await.expect("remove_user");
    archive.remove_user(&carol).await.expect("remove_user");
}

pub async fn push(push: &dyn PushRegistrations, prefix: &str) {
    let alice = user(prefix, "push", "alice");
    let bob = user(prefix, "push", "bob");
    let registration = |service: &str, node: &str, options: &[u8]| PushRegistration { service: service.into(), node: node.into(), options: options.to_vec() };
    assert_eq!(push.list(&alice).await.expect("list"), Vec::new());
    push.add(&alice, registration("push.b.example", "n2", b"")).await.expect("add");
    push.add(&alice, registration("push.a.example", "n1", b"<x xmlns='jabber:x:data'/>")).await.expect("add");
    push.add(&alice, registration("push.b.example", "n1", b"first")).await.expect("add");
    push.add(&alice, registration("push.b.example", "n1", &large_blob())).await.expect("add the same service and node again");
    push.add(&bob, registration("push.b.example", "n1", b"bob's")).await.expect("add");
    assert_eq!(
        push.list(&alice).await.expect("list"),
        vec![registration("push.a.example", "n1", b"<x xmlns='jabber:x:data'/>"), registration("push.b.example", "n1", &large_blob()), registration("push.b.example", "n2", b"")],
        "by service then node, the same service and node replaced, options round-tripped"
    );
    push.remove(&alice, "push.b.example", Some("n1")).await.expect("remove");
    assert_eq!(push.list(&alice).await.expect("list").len(), 2, "one node removed");
    push.add(&alice, registration("push.b.example", "n3", b"")).await.expect("add");
    push.remove(&alice, "push.b.example", None).await.expect("remove the service");
    assert_eq!(push.list(&alice).await.expect("list"), vec![registration("push.a.example", "n1", b"<x xmlns='jabber:x:data'/>")], "every node of the service removed");
    push.remove(&alice, "push.unknown.example", None).await.expect("removing what is not there succeeds");
    assert_eq!(push.list(&bob).await.expect("list"), vec![registration("push.b.example", "n1", b"bob's")], "users must not share registrations");
    push.remove_user(&alice).await.expect("remove_user");
    assert_eq!(push.list(&alice).await.expect("list"), Vec::new(), "remove_user must delete every registration");
    push.remove_user(&bob).await.expect("remove_user");
}

pub async fn fast_tokens(tokens: &dyn FastTokens, prefix: &str) {
    let alice = user(prefix, "fast", "alice");
    let bob = user(prefix, "fast", "bob");
    let far = 4_000_000_000;
    let token = |id: u8, count: u32| FastToken { id: [id; 16], mechanism: "HT-SHA-256-NONE".into(), issued: 1_700_000_000, expires: far, count };
    assert_eq!(tokens.get(&alice, "phone").await.expect("get"), FastTokenSlots::default(), "no tokens at first");
    let both = FastTokenSlots { current: Some(token(1, 0)), new: Some(token(2, 0)) };
    tokens.put(&alice, "phone", &both).await.expect("put");
    tokens.put(&alice, "laptop", &FastTokenSlots { current: None, new: Some(token(3, 7)) }).await.expect("put");
    tokens.put(&bob, "phone", &FastTokenSlots { current: Some(token(4, 0)), new: None }).await.expect("put");
    assert_eq!(tokens.get(&alice, "phone").await.expect("get"), both, "both slots round-trip");
    assert_eq!(tokens.get(&alice, "laptop").await.expect("get").new, Some(token(3, 7)), "per client, the count kept");
    let promoted = FastTokenSlots { current: Some(token(2, 5)), new: None };
    tokens.put(&alice, "phone", &promoted).await.expect("put replaces");
    assert_eq!(tokens.get(&alice, "phone").await.expect("get"), promoted, "put replaces both slots");
    tokens.put(&alice, "laptop", &FastTokenSlots::default()).await.expect("put nothing");
    assert_eq!(tokens.get(&alice, "laptop").await.expect("get"), FastTokenSlots::default(), "empty slots remove the client");
    tokens.remove_user(&alice).await.expect("remove_user");
    assert_eq!(tokens.get(&alice, "phone").await.expect("get"), FastTokenSlots::default(), "remove_user revokes every client");
    assert_eq!(tokens.get(&bob, "phone").await.expect("get").current, Some(token(4, 0)), "users must not share tokens");
    tokens.remove_user(&bob).await.expect("remove_user");
}

/// Reports come back newest first, across days, with every field; two at the same moment by one
/// reporter about different users are both kept. (Other runs may have reported in the same
/// store: only this run's reporter is looked at.)
pub async fn abuse_reports(reports: &dyn AbuseReports, prefix: &str) {
    let reporter = user(prefix, "reports", "alice");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
    let report = |at_ms: u64, reported: &str, text: Option<&str>| AbuseReport {
        at_ms,
        reporter: reporter.clone(),
        reported: user(prefix, "reports", reported),
        reason: "urn:xmpp:reporting:spam".into(),
        text: text.map(str::to_owned),
        stanza_ids: if text.is_some() { vec!["id-1".into(), "id-2".into()] } else { Vec::new() },
    };
    let two_days_ago = report(now - 2 * 86_400_000, "old", Some("first"));
    let an_hour_ago = report(now - 3_600_000, "spammer", Some("Buy now ✓"));
    let same_moment = report(now - 3_600_000, "other", None);
    let just_now = report(now - 1_000, "spammer", None);
    for added in [&an_hour_ago, &just_now, &two_days_ago, &same_moment] {
        reports.add(added).await.expect("add");
    }
    let recent: Vec<AbuseReport> = reports.recent(1_000).await.expect("recent").into_iter().filter(|report| report.reporter == reporter).collect();
    assert_eq!(recent.len(), 4, "{recent:?}");
    assert_eq!(recent[0], just_now, "newest first");
    assert_eq!(recent[3], two_days_ago, "older days are read too, every field kept");
    assert!(recent[1..3].contains(&an_hour_ago) && recent[1..3].contains(&same_moment), "one reporter, one moment, two users: both kept");
    assert_eq!(reports.recent(2).await.expect("recent").len(), 2, "the limit holds");
}

/// `Store::remove_user` wipes every kind of data of one user and nothing of another.
pub async fn remove_user(store: &Store, prefix: &str) {
    let alice = user(prefix, "remove", "alice");
    // Bob's name extends alice's: a backend that selects a user's data by string prefix would
    // show or delete bob's data with alice's.
    let bob = format!("{alice}.au");
    let orphan = user(prefix, "remove", "orphan");
    let contact = user(prefix, "remove", "contact");

    for who in [&alice, &bob, &orphan] {
        if who != &orphan {
            store.accounts.create(who, fake_credentials(3)).await.expect("create");
        }
        let item = RosterItem { jid: contact.clone(), name: None, groups: Vec::new(), subscription: Subscription::To, ask_out: false, approved: false };
        store.rosters.put(who, item).await.expect("put");
        store.rosters.add_pending_in(who, &contact, b"<presence type='subscribe'/>".to_vec()).await.expect("add_pending_in");
        store.vcards.set(who, b"<vCard/>".to_vec()).await.expect("set");
        store.private_xml.set(who, "a|b", b"<a xmlns='b'/>".to_vec()).await.expect("set");
        store.blocklists.add(who, std::slice::from_ref(&contact)).await.expect("add");
        store.offline.push(who, b"<message/>".to_vec(), 10).await.expect("push");
        store.last_activity.set(who, LastSeen { unix_seconds: 42, status: String::new() }).await.expect("set");
        let message = ArchivedMessage { id: 1_795_000_000_000_000, with: contact.clone(), stanza: b"<message/>".to_vec() };
        store.archive.append(&[ArchiveEntry { user: who.clone(), message }]).await.expect("append");
        store.archive.set_prefs(who, ArchivePrefs::default()).await.expect("set_prefs");
        store.push.add(who, PushRegistration { service: "push.example.com".into(), node: "n".into(), options: Vec::new() }).await.expect("add");
        let token = FastToken { id: [1; 16], mechanism: "HT-SHA-256-NONE".into(), issued: 1, expires: 4_000_000_000, count: 0 };
        store.fast_tokens.put(who, "phone", &FastTokenSlots { current: Some(token), new: None }).await.expect("put");
        store.pubsub.set_node(who, "urn:xmpp:avatar:data", b"<config/>".to_vec()).await.expect("set_node");
        let avatar = crate::store::PubSubItem { id: "a1".into(), publisher: who.clone(), published: 1, payload: b"<data/>".to_vec() };
        store.pubsub.publish(who, "urn:xmpp:avatar:data", avatar, 1).await.expect("publish");
    }

    assert!(store.remove_user(&alice).await.expect("remove_user"), "removing an existing user must report true");
    assert_user_empty(store, &alice, &contact).await;
    assert!(!store.remove_user(&alice).await.expect("remove_user"), "removing a removed user must report false");
    assert!(!store.remove_user(&orphan).await.expect("remove_user"), "data without an account must report false");
    assert_user_empty(store, &orphan, &contact).await;

    assert!(store.accounts.exists(&bob).await.expect("exists"), "removing alice must keep bob's account");
    assert_eq!(store.rosters.roster(&bob).await.expect("roster").1.len(), 1, "removing alice must keep bob's roster");
    assert_eq!(store.rosters.pending_in(&bob).await.expect("pending_in").len(), 1, "removing alice must keep bob's requests");
    assert!(store.vcards.get(&bob).await.expect("get").is_some(), "removing alice must keep bob's vCard");
    assert!(store.private_xml.get(&bob, "a|b").await.expect("get").is_some(), "removing alice must keep bob's private XML");
    assert!(store.blocklists.is_blocked(&bob, &contact).await.expect("is_blocked"), "removing alice must keep bob's block list");
    assert_eq!(store.offline.count(&bob).await.expect("count"), 1, "removing alice must keep bob's offline messages");
    assert!(store.last_activity.get(&bob).await.expect("get").is_some(), "removing alice must keep bob's last activity");
    assert_eq!(store.archive.get(&bob, &[1_795_000_000_000_000]).await.expect("get").len(), 1, "removing alice must keep bob's archive");
    assert!(store.archive.prefs(&bob).await.expect("prefs").is_some(), "removing alice must keep bob's archive prefs");
    assert_eq!(store.push.list(&bob).await.expect("list").len(), 1, "removing alice must keep bob's push registrations");
    assert!(!store.fast_tokens.get(&bob, "phone").await.expect("get").is_empty(), "removing alice must keep bob's FAST tokens");
    assert_eq!(store.pubsub.nodes(&bob).await.expect("nodes").len(), 1, "removing alice must keep bob's PEP nodes");
    assert!(store.remove_user(&bob).await.expect("remove_user"));
}

async fn assert_user_empty(store: &Store, who: &str, contact: &str) {
    assert!(!store.accounts.exists(who).await.expect("exists"), "account of {who} left behind");
    assert_eq!(store.rosters.roster(who).await.expect("roster"), (0, Vec::new()), "roster of {who} left behind");
    assert_eq!(store.rosters.pending_in(who).await.expect("pending_in"), Vec::new(), "requests of {who} left behind");
    assert_eq!(store.vcards.get(who).await.expect("get"), None, "vCard of {who} left behind");
    assert_eq!(store.private_xml.get(who, "a|b").await.expect("get"), None, "private XML of {who} left behind");
    assert_eq!(store.blocklists.list(who).await.expect("list"), Vec::<String>::new(), "block list of {who} left behind");
    assert!(!store.blocklists.is_blocked(who, contact).await.expect("is_blocked"), "block list of {who} left behind");
    assert_eq!(store.offline.count(who).await.expect("count"), 0, "offline messages of {who} left behind");
    assert_eq!(store.last_activity.get(who).await.expect("get"), None, "last activity of {who} left behind");
    let everything = ArchiveQuery { limit: 10, ..ArchiveQuery::default() };
    assert!(store.archive.query(who, &everything).await.expect("query").messages.is_empty(), "archive of {who} left behind");
    assert_eq!(store.archive.prefs(who).await.expect("prefs"), None, "archive prefs of {who} left behind");
    assert_eq!(store.push.list(who).await.expect("list"), Vec::new(), "push registrations of {who} left behind");
    assert!(store.fast_tokens.get(who, "phone").await.expect("get").is_empty(), "FAST tokens of {who} left behind");
    assert_eq!(store.pubsub.nodes(who).await.expect("nodes"), Vec::new(), "PEP nodes of {who} left behind");
    assert!(store.pubsub.items(who, "urn:xmpp:avatar:data", &[], None).await.expect("items").is_empty(), "PEP items of {who} left behind");
}

/// Failure counts: per key, within a window from the first failure, then from zero again.
pub async fn failure_counts(counts: &dyn crate::failure_counts::FailureCounts, prefix: &str) {
    let (a, b) = (format!("{prefix}-failures-a"), format!("{prefix}-failures-b"));
    let window = Duration::from_millis(400);
    assert_eq!(counts.get(&[&a, &b]).await.expect("get"), vec![0, 0], "unknown keys count 0");
    for expected in 1..=3 {
        assert_eq!(counts.add(&a, window).await.expect("add"), expected);
    }
    assert_eq!(counts.add(&b, window).await.expect("add"), 1, "keys count apart");
    assert_eq!(counts.get(&[&a, &b]).await.expect("get"), vec![3, 1]);
    counts.clear(&b).await.expect("clear");
    assert_eq!(counts.get(&[&a, &b]).await.expect("get"), vec![3, 0], "clear forgets one key");
    tokio::time::sleep(window + Duration::from_millis(100)).await;
    assert_eq!(counts.get(&[&a]).await.expect("get"), vec![0], "a window past its first failure is over");
    assert_eq!(counts.add(&a, window).await.expect("add"), 1, "and counting starts again");
    counts.clear(&a).await.expect("clear");
}

/// The behaviour every [`Registry`] must show. Node names carry the prefix too, so the suite can
/// share a Redis with other runs; it only asserts about its own users and nodes.
pub async fn registry(registry: &dyn Registry, prefix: &str) {
    let alice = user(prefix, "registry", "alice");
    let bob = user(prefix, "registry", "bob");
    let (edge1, edge2) = (format!("{prefix}-edge1"), format!("{prefix}-edge2"));
    // An available resource carries its presence stanza, newlines and all.
    let route = |resource: &str, node: &str, connection: u64, priority: i8, available: bool| ResourceRoute {
        resource: resource.to_owned(),
        node: node.to_owned(),
        connection,
        priority,
        presence: available.then(|| format!("<presence xmlns='jabber:client'>\n<priority>{priority}</priority><status>ü ☕</status></presence>")),
        // The phone's stream is stream-managed and resumable: the id survives the round trip.
        stream_management: (resource == "phone").then(|| ManagedStream { resumption_id: Some("5f0c9a".into()) }),
    };
    let mine = |nodes: Vec<String>| nodes.into_iter().filter(|n| n.starts_with(prefix)).collect::<Vec<_>>();

    assert_eq!(registry.resources(&alice).await.expect("resources"), Vec::new());
    let phone = route("phone", &edge1, 1, 5, true);
    let laptop = route("laptop ☕", &edge2, 7, -1, false);
    assert_eq!(registry.put_resource(&alice, &phone, 1).await.expect("put"), Fenced::Applied);
    assert_eq!(registry.put_resource(&alice, &laptop, 1).await.expect("put"), Fenced::Applied);
    assert_eq!(registry.put_resource(&bob, &route("web", &edge2, 9, 0, true), 1).await.expect("put"), Fenced::Applied);
    assert_eq!(registry.resources(&alice).await.expect("resources"), vec![laptop.clone(), phone.clone()], "sorted by resource, fields intact");

    let phone2 = route("phone", &edge1, 2, 0, true);
    registry.put_resource(&alice, &phone2, 1).await.expect("put");
    assert_eq!(registry.resources(&alice).await.expect("resources"), vec![laptop.clone(), phone2.clone()], "a put replaces the resource's route");
    registry.remove_resource(&alice, "phone", 1, 1).await.expect("remove");
    assert_eq!(registry.resources(&alice).await.expect("resources").len(), 2, "the old connection must not remove the new login");

    assert_eq!(registry.put_resource(&alice, &phone, 3).await.expect("put"), Fenced::Applied, "a newer generation takes over");
    assert_eq!(registry.put_resource(&alice, &phone2, 2).await.expect("put"), Fenced::Stale, "an older generation is refused");
    assert_eq!(registry.remove_resource(&alice, "laptop ☕", 7, 2).await.expect("remove"), Fenced::Stale);
    assert_eq!(registry.resources(&alice).await.expect("resources"), vec![laptop.clone(), phone.clone()], "refused writes change nothing");
    assert_eq!(registry.put_resource(&bob, &route("web", &edge2, 9, 0, true), 1).await.expect("put"), Fenced::Applied, "generations are per user");

    assert!(registry.heartbeat(&edge1, Duration::from_secs(60)).await.expect("heartbeat"), "a first heartbeat is news");
    assert!(!registry.heartbeat(&edge1, Duration::from_secs(60)).await.expect("heartbeat"), "a node the registry knows");
    registry.heartbeat(&edge2, Duration::from_millis(100)).await.expect("heartbeat");
    assert_eq!(mine(registry.live_nodes().await.expect("live")), [edge1.clone(), edge2.clone()]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(mine(registry.live_nodes().await.expect("live")), [edge1.clone()], "an expired heartbeat is not alive");
    assert_eq!(mine(registry.dead_nodes().await.expect("dead")), [edge2.clone()], "a node with routes and no heartbeat is dead");

    let reaped = registry.reap(&edge2).await.expect("reap");
    assert_eq!(reaped, vec![(alice.clone(), laptop.clone()), (bob.clone(), route("web", &edge2, 9, 0, true))], "reap returns what it removed");
    assert_eq!(registry.resources(&alice).await.expect("resources"), vec![phone.clone()], "reap removes only the dead node's routes");
    assert_eq!(registry.resources(&bob).await.expect("resources"), Vec::new());
    assert_eq!(mine(registry.dead_nodes().await.expect("dead")), Vec::<String>::new(), "a reaped node holds nothing");
    assert_eq!(registry.reap(&edge2).await.expect("reap"), Vec::new(), "reaping twice is harmless");

    // Partitions are not prefixed: earlier runs on the same database may have claimed them.
    let (node_a, node_b) = (format!("{prefix}-session-a"), format!("{prefix}-session-b"));
    let first = registry.claim_partition(7, &node_a).await.expect("claim");
    let second = registry.claim_partition(7, &node_b).await.expect("claim");
    assert!(second > first && first > 0, "claims of a partition increase: {first}, {second}");
    assert_eq!(registry.partition_owner(7).await.expect("owner"), Some((node_b.clone(), second)), "the latest claim owns it");
    assert!(registry.claim_partition(8, &node_a).await.expect("claim") > 0);
    assert_eq!(registry.partition_owner(8).await.expect("owner").map(|(node, _)| node), Some(node_a));

    assert_eq!(registry.remove_resource(&alice, "phone", 1, 3).await.expect("remove"), Fenced::Applied);
    assert_eq!(registry.resources(&alice).await.expect("resources"), Vec::new());
    assert_eq!(mine(registry.dead_nodes().await.expect("dead")), Vec::<String>::new());
    occupants(registry, prefix).await;
}

async fn occupants(registry: &dyn Registry, prefix: &str) {
    let room = format!("{prefix}-coven@conference.example.com");
    let other = format!("{prefix}-other@conference.example.com");
    let record = |text: &str| text.as_bytes().to_vec();
    assert_eq!(registry.occupants(&room).await.expect("occupants"), Vec::new());
    for (nick, text) in [("witch ☕", "<o a='1'/>"), ("crone", "<o/>")] {
        assert_eq!(registry.put_occupant(&room, nick, &record(text), 1).await.expect("put"), Fenced::Applied);
    }
    registry.put_occupant(&other, "crone", &large_blob(), 1).await.expect("put");
    registry.put_occupant(&room, "crone", &record("<o b='2'/>"), 1).await.expect("replace");
    let expected = vec![("crone".to_owned(), record("<o b='2'/>")), ("witch ☕".to_owned(), record("<o a='1'/>"))];
    assert_eq!(registry.occupants(&room).await.expect("occupants"), expected, "sorted by nick, the last record wins");
    assert_eq!(registry.occupants(&other).await.expect("occupants"), vec![("crone".to_owned(), large_blob())], "records kept byte for byte");
    assert_eq!(registry.put_occupant(&room, "hag", &record("<o/>"), 2).await.expect("put"), Fenced::Applied, "a new owner");
    assert_eq!(registry.remove_occupant(&room, "crone", 1).await.expect("remove"), Fenced::Stale, "the old owner is fenced off");
    assert_eq!(registry.put_occupant(&room, "imp", &record("<o/>"), 1).await.expect("put"), Fenced::Stale);
    assert_eq!(registry.occupants(&room).await.expect("occupants").len(), 3, "refused writes change nothing");
    for nick in ["crone", "witch ☕", "hag", "nobody"] {
        assert_eq!(registry.remove_occupant(&room, nick, 2).await.expect("remove"), Fenced::Applied);
    }
    assert_eq!(registry.occupants(&room).await.expect("occupants"), Vec::new());
    registry.remove_occupant(&other, "crone", 1).await.expect("remove");
}

/// The behaviour every [`Bus`] must show. The bus must be fresh (nothing published to it before)
/// except by earlier runs of this function with other prefixes, which it ignores by payload.
pub async fn bus(bus: &dyn Bus, prefix: &str) {
    let partitions = bus.partitions();
    assert!(partitions >= 2, "the suite needs at least two partitions");
    let payload = |name: &str| Bytes::from(format!("{prefix}/{name}"));
    let mine = |record: &Record| record.payload.starts_with(prefix.as_bytes());

    let mut owner = bus.join_owners(&format!("{prefix}-session1")).await.expect("join");
    // Everything assigned before anything else: a lone member gets every partition.
    let mut assigned = BTreeSet::new();
    while assigned.len() < partitions as usize {
        match tokio::time::timeout(Duration::from_secs(60), owner.next()).await.expect("assignment in time").expect("next") {
            OwnerEvent::Assigned(more) => assigned.extend(more),
            OwnerEvent::Revoked(less) => less.iter().for_each(|p| {
                assigned.remove(p);
            }),
            OwnerEvent::Record(_) => {}
        }
    }

    for name in ["a1", "a2", "a3"] {
        bus.publish_owner(0, payload(name)).await.expect("publish").await.expect("durable");
    }
    for name in ["b1", "b2"] {
        bus.publish_owner(1, payload(name)).await.expect("publish").await.expect("durable");
    }
    let received = receive_mine(owner.as_mut(), 5, &mine).await;
    let in_partition = |p: u32| received.iter().filter(|r| r.partition == p).map(|r| r.payload.clone()).collect::<Vec<_>>();
    assert_eq!(in_partition(0), [payload("a1"), payload("a2"), payload("a3")], "order within a partition");
    assert_eq!(in_partition(1), [payload("b1"), payload("b2")]);
    let offsets = |p: u32| received.iter().filter(|r| r.partition == p).map(|r| r.offset).collect::<Vec<_>>();
    assert!(offsets(0).windows(2).all(|w| w[0] < w[1]), "offsets increase: {:?}", offsets(0));

    // Handled: a1 and a2. A new member (a restart) gets exactly what was not committed.
    let a2 = received.iter().find(|r| r.payload == payload("a2")).expect("a2").clone();
    owner.commit(&[(0, a2.offset)]).await.expect("commit");
    drop(owner);
    let mut restarted = bus.join_owners(&format!("{prefix}-session1")).await.expect("rejoin");
    let replayed = receive_mine(restarted.as_mut(), 3, &mine).await;
    for record in &replayed {
        restarted.commit(&[(record.partition, record.offset)]).await.expect("commit");
    }
    let mut replayed: Vec<Bytes> = replayed.into_iter().map(|r| r.payload).collect();
    replayed.sort();
    assert_eq!(replayed, [payload("a3"), payload("b1"), payload("b2")], "uncommitted records replay, committed ones do not");

    let edge = format!("{prefix}-edge1");
    let mut inbox = bus.edge_inbox(&edge).await.expect("edge inbox");
    for name in ["e1", "e2", "e3"] {
        bus.publish_edge(&edge, payload(name)).await.expect("publish edge").await.expect("durable");
    }
    for name in ["e1", "e2", "e3"] {
        let got = tokio::time::timeout(Duration::from_secs(30), inbox.next()).await.expect("edge record in time").expect("next");
        assert_eq!(got, payload(name), "edge records in order");
    }
}

/// The next `count` records of this run (by payload prefix), skipping events and other runs.
async fn receive_mine(owner: &mut dyn OwnerInbox, count: usize, mine: &dyn Fn(&Record) -> bool) -> Vec<Record> {
    let mut records = Vec::new();
    while records.len() < count {
        let event = tokio::time::timeout(Duration::from_secs(60), owner.next()).await.expect("record in time").expect("next");
        if let OwnerEvent::Record(record) = event
            && mine(&record)
        {
            records.push(record);
        }
    }
    records
}
