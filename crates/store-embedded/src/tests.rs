use std::collections::BTreeSet;

use starling_cluster::contract;
use starling_cluster::store::{LastSeen, RosterItem, ScramCredentials, Subscription};
use tokio::task::JoinSet;

use super::*;

fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_contract() {
    let dir = data_dir();
    let store = EmbeddedStore::open(dir.path()).expect("open");
    contract::run_all(&store, &contract::unique_prefix()).await;
}

#[tokio::test]
async fn creates_the_data_directory_and_file() {
    let dir = data_dir();
    let nested = dir.path().join("a").join("b");
    let _store = EmbeddedStore::open(&nested).expect("open");
    assert!(nested.join(FILE_NAME).is_file());
}

#[tokio::test]
async fn data_survives_a_reopen() {
    let dir = data_dir();
    let alice = "alice@example.com";
    let credentials = ScramCredentials::derive("pencil", 1);
    let item = RosterItem {
        jid: "bob@example.com".to_owned(),
        name: Some("Bob".to_owned()),
        groups: vec!["Friends".to_owned()],
        subscription: Subscription::Both,
        ask_out: false,
        approved: true,
    };
    let seen = LastSeen { unix_seconds: 1_700_000_000, status: "away".to_owned() };

    let (version, last_id) = {
        let store = EmbeddedStore::open(dir.path()).expect("open");
        store.accounts.create(alice, credentials.clone()).await.expect("create");
        let version = store.rosters.put(alice, item.clone()).await.expect("put");
        store.rosters.add_pending_in(alice, "carol@example.com", b"<presence/>".to_vec()).await.expect("add_pending_in");
        store.vcards.set(alice, b"<vCard/>".to_vec()).await.expect("set");
        store.private_xml.set(alice, "a|b", b"<a xmlns='b'/>".to_vec()).await.expect("set");
        store.blocklists.add(alice, &["spam@example.org".to_owned()]).await.expect("add");
        let first = store.offline.push(alice, b"one".to_vec(), 10).await.expect("push");
        let last_id = store.offline.push(alice, b"two".to_vec(), 10).await.expect("push");
        store.offline.remove_upto(alice, first).await.expect("remove_upto");
        store.last_activity.set(alice, seen.clone()).await.expect("set");
        (version, last_id)
    };

    let store = EmbeddedStore::open(dir.path()).expect("reopen after the store was dropped");
    assert_eq!(store.accounts.credentials(alice).await.expect("credentials"), Some(credentials));
    assert_eq!(store.rosters.roster(alice).await.expect("roster"), (version, vec![item.clone()]));
    assert_eq!(store.rosters.pending_in(alice).await.expect("pending_in"), vec![("carol@example.com".to_owned(), b"<presence/>".to_vec())]);
    assert_eq!(store.vcards.get(alice).await.expect("get"), Some(b"<vCard/>".to_vec()));
    assert_eq!(store.private_xml.get(alice, "a|b").await.expect("get"), Some(b"<a xmlns='b'/>".to_vec()));
    assert_eq!(store.blocklists.list(alice).await.expect("list"), vec!["spam@example.org".to_owned()]);
    assert_eq!(store.offline.fetch(alice).await.expect("fetch"), vec![(last_id, b"two".to_vec())]);
    assert_eq!(store.offline.count(alice).await.expect("count"), 1);
    assert_eq!(store.last_activity.get(alice).await.expect("get"), Some(seen));

    // Counters continue where they were, so clients' cached versions and acknowledged ids stay meaningful.
    assert!(store.rosters.put(alice, item).await.expect("put") > version, "roster version went back after a restart");
    assert!(store.offline.push(alice, b"three".to_vec(), 10).await.expect("push") > last_id, "offline id reused after a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_offline_pushes_get_distinct_increasing_ids() {
    let dir = data_dir();
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let user = "alice@example.com";
    let mut pushes = JoinSet::new();
    for n in 0..64u32 {
        let offline = store.offline.clone();
        pushes.spawn(async move { (offline.push(user, n.to_be_bytes().to_vec(), 1000).await.expect("push"), n) });
    }
    let mut pushed = Vec::new();
    while let Some(result) = pushes.join_next().await {
        pushed.push(result.expect("push task"));
    }
    let ids: BTreeSet<u64> = pushed.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 64, "ids must be distinct");

    let fetched = store.offline.fetch(user).await.expect("fetch");
    assert!(fetched.windows(2).all(|pair| pair[0].0 < pair[1].0), "fetch must return increasing ids");
    let mut expected: Vec<(u64, Vec<u8>)> = pushed.into_iter().map(|(id, n)| (id, n.to_be_bytes().to_vec())).collect();
    expected.sort();
    assert_eq!(fetched, expected, "every message must be stored under the id its push returned");
    assert_eq!(store.offline.count(user).await.expect("count"), 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_offline_pushes_respect_the_limit() {
    let dir = data_dir();
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let mut pushes = JoinSet::new();
    for _ in 0..40 {
        let offline = store.offline.clone();
        pushes.spawn(async move { offline.push("alice@example.com", b"m".to_vec(), 25).await });
    }
    let mut stored = 0;
    while let Some(result) = pushes.join_next().await {
        match result.expect("push task") {
            Ok(_) => stored += 1,
            Err(error) => assert_eq!(error, StoreError::LimitExceeded),
        }
    }
    assert_eq!(stored, 25, "exactly the limit must be stored");
    assert_eq!(store.offline.count("alice@example.com").await.expect("count"), 25);
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_is_refused() {
    let dir = data_dir();
    let _store = EmbeddedStore::open(dir.path()).expect("open");
    match EmbeddedStore::open(dir.path()) {
        Err(StoreError::Unavailable(_)) => {}
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("the same database was opened twice"),
    }
}

#[tokio::test]
async fn undecodable_values_are_reported_as_corrupt() {
    let dir = data_dir();
    drop(EmbeddedStore::open(dir.path()).expect("open"));
    {
        let db = Database::create(dir.path().join(FILE_NAME)).expect("raw open");
        let txn = db.begin_write().expect("begin_write");
        txn.open_table(ACCOUNTS).expect("accounts").insert("alice@example.com", [9u8, 9, 9].as_slice()).expect("insert");
        txn.open_table(ROSTER_ITEMS).expect("roster items").insert(("alice@example.com", "bob@example.com"), [].as_slice()).expect("insert");
        txn.commit().expect("commit");
    }
    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    assert!(matches!(store.accounts.credentials("alice@example.com").await, Err(StoreError::Corrupt(_))));
    assert!(matches!(store.rosters.roster("alice@example.com").await, Err(StoreError::Corrupt(_))));
    assert!(matches!(store.rosters.item("alice@example.com", "bob@example.com").await, Err(StoreError::Corrupt(_))));
    // The damage stays with the value: other users are unaffected.
    assert_eq!(store.rosters.roster("bob@example.com").await.expect("roster"), (0, Vec::new()));
}

#[tokio::test]
async fn the_retention_sweep_deletes_only_expired_messages() {
    use starling_cluster::store::{ArchiveEntry, ArchiveQuery, ArchivedMessage};

    let dir = data_dir();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_micros() as u64;
    let day = 86_400_000_000u64;
    let entry = |user: &str, id: u64| ArchiveEntry { user: user.to_owned(), message: ArchivedMessage { id, with: "bob@example.com".to_owned(), stanza: b"<message/>".to_vec() } };
    {
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let users = (0..150).map(|n| format!("user{n}@example.com"));
        let entries: Vec<ArchiveEntry> = users.flat_map(|user| [entry(&user, now - 10 * day), entry(&user, now - 3 * day), entry(&user, now - 1000)]).collect();
        store.archive.append(&entries).await.expect("append");
    }
    let db = create_tables(dir.path()).expect("open");
    let visited = archive::sweep(&db, Duration::from_secs(5 * 86_400)).expect("sweep");
    assert_eq!(visited, 150, "every user with an archive is visited, across several commits");
    drop(db);

    let store = EmbeddedStore::open(dir.path()).expect("reopen");
    for user in ["user0@example.com", "user149@example.com"] {
        for with in [None, Some("bob@example.com".to_owned())] {
            let page = store.archive.query(user, &ArchiveQuery { with, limit: 10, ..ArchiveQuery::default() }).await.expect("query");
            let ids: Vec<u64> = page.messages.iter().map(|m| m.id).collect();
            assert_eq!(ids, [now - 3 * day, now - 1000], "only the message older than the retention goes");
        }
    }
}
