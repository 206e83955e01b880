//! The storage contract (`starling_cluster::contract`) against a real Cassandra/ScyllaDB, plus
//! what the contract cannot check on one connection: concurrent writers.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use starling_backend_scylla::ScyllaStore;
use starling_cluster::contract;
use starling_cluster::store::{OfflineMessages, RosterItem, Rosters, StoreError, Subscription};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_suite() {
    let config = common::fresh_config();
    let keyspace = config.keyspace.clone();
    let store = match ScyllaStore::connect(config).await {
        Ok(store) => store,
        Err(error) => common::failed_to_open(error),
    };
    let started = std::time::Instant::now();
    contract::run_all(&store, &contract::unique_prefix()).await;
    eprintln!("contract suite: {:?}", started.elapsed());
    // The same keyspace again with another prefix: the suite must not depend on a fresh keyspace.
    contract::run_all(&store, &contract::unique_prefix()).await;
    drop(store);
    let admin = common::open(starling_backend_scylla::ScyllaConfig {
        keyspace: keyspace.clone(),
        ..common::fresh_config()
    })
    .await;
    common::drop_keyspace(&admin, &keyspace).await;
}

/// Concurrent pushes (separate sessions, as separate servers would be) never overshoot the quota
/// and never hand out an id twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_quota_and_ids_hold_under_concurrent_pushes() {
    let config = common::fresh_config();
    let keyspace = config.keyspace.clone();
    let first = Arc::new(common::open(config.clone()).await);
    let second = Arc::new(common::open(config).await);
    let user = format!("{}-race@example.com", contract::unique_prefix());

    let mut tasks = Vec::new();
    for n in 0..16u32 {
        let store = if n % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let user = user.clone();
        tasks.push(tokio::spawn(async move {
            store.push(&user, n.to_be_bytes().to_vec(), 5).await
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(id) => ids.push(id),
            Err(StoreError::LimitExceeded) => {}
            Err(other) => panic!("push failed: {other}"),
        }
    }
    assert_eq!(ids.len(), 5, "exactly the quota must be accepted: {ids:?}");
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        5,
        "ids must be distinct: {ids:?}"
    );
    assert_eq!(first.count(&user).await.expect("count"), 5);
    let fetched: Vec<u64> = first
        .fetch(&user)
        .await
        .expect("fetch")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    ids.sort_unstable();
    assert_eq!(
        fetched, ids,
        "fetch must return every accepted message in id order"
    );

    // Concurrent removal and pushes: the quota frees up exactly by what was removed.
    first.remove_upto(&user, ids[1]).await.expect("remove_upto");
    assert_eq!(second.count(&user).await.expect("count"), 3);
    let id = second
        .push(&user, b"later".to_vec(), 5)
        .await
        .expect("push");
    assert!(id > ids[4], "ids keep increasing: {id} after {ids:?}");
    OfflineMessages::remove_user(first.as_ref(), &user)
        .await
        .expect("remove_user");
    assert_eq!(second.count(&user).await.expect("count"), 0);
    assert!(
        second.push(&user, Vec::new(), 5).await.expect("push") > id,
        "ids are not reused after remove_user"
    );
    common::drop_keyspace(&first, &keyspace).await;
}

/// Concurrent roster writes from two sessions each get their own, strictly increasing version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_versions_are_unique_under_concurrent_writers() {
    let config = common::fresh_config();
    let keyspace = config.keyspace.clone();
    let first = Arc::new(common::open(config.clone()).await);
    let second = Arc::new(common::open(config).await);
    let user = format!("{}-race@example.com", contract::unique_prefix());

    let mut tasks = Vec::new();
    for n in 0..12u32 {
        let store = if n % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let user = user.clone();
        let item = RosterItem {
            jid: format!("contact{n}@example.com"),
            name: None,
            groups: Vec::new(),
            subscription: Subscription::None,
            ask_out: false,
            approved: false,
        };
        tasks.push(tokio::spawn(async move { store.put(&user, item).await }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.expect("task").expect("put"));
    }
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(
        versions.len(),
        12,
        "every write must get its own version: {versions:?}"
    );
    let (version, items) = first.roster(&user).await.expect("roster");
    assert_eq!(
        version,
        *versions.last().expect("versions"),
        "the roster reports the last version"
    );
    assert_eq!(items.len(), 12);
    Rosters::remove_user(first.as_ref(), &user)
        .await
        .expect("remove_user");
    common::drop_keyspace(&first, &keyspace).await;
}
