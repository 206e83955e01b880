//! Shared by the integration tests: a fresh keyspace on the Cassandra (or ScyllaDB) at
//! `$CASSANDRA_CONTACT` (default 127.0.0.1:29042, what `scripts/infra/cassandra start` runs),
//! logged in as `$CASSANDRA_USER` / `$CASSANDRA_PASSWORD` (default cassandra / cassandra).
//!
//! An unreachable server FAILS the test, loudly: skipping would let a CI without the service go
//! green without having tested this backend at all.

#![allow(dead_code)]

use std::time::Duration;

use starling_backend_scylla::{ScyllaConfig, ScyllaStore};
use starling_cluster::store::StoreError;

pub fn contact() -> String {
    std::env::var("CASSANDRA_CONTACT").unwrap_or_else(|_| "127.0.0.1:29042".to_owned())
}

pub fn credentials() -> (String, String) {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| "cassandra".to_owned());
    (var("CASSANDRA_USER"), var("CASSANDRA_PASSWORD"))
}

pub fn fresh_config() -> ScyllaConfig {
    ScyllaConfig {
        contact_points: vec![contact()],
        credentials: Some(credentials()),
        keyspace: format!("starling_test_{:016x}", rand::random::<u64>()),
        request_timeout: Duration::from_secs(30),
        ..ScyllaConfig::default()
    }
}

pub fn unreachable(error: impl std::fmt::Display) -> ! {
    let strict = std::env::var_os("CI").is_some()
        || std::env::var("STARLING_REQUIRE_SERVICES").as_deref() == Ok("1");
    panic!(
        "\n\n*** Cassandra/ScyllaDB not reachable at {} ({error}).\n\
         *** Start it with `scripts/infra/cassandra start` (or set CASSANDRA_CONTACT).\n\
         *** This test fails rather than skips{}.\n\n",
        contact(),
        if strict {
            " (CI / STARLING_REQUIRE_SERVICES=1 is set)"
        } else {
            ""
        }
    );
}

pub async fn open(config: ScyllaConfig) -> ScyllaStore {
    match ScyllaStore::open(config).await {
        Ok(store) => store,
        Err(error) => failed_to_open(error),
    }
}

/// An unavailable store means the server is not there; anything else is a bug in the backend.
pub fn failed_to_open(error: StoreError) -> ! {
    match error {
        StoreError::Unavailable(_) => unreachable(error),
        other => panic!("opening the store failed: {other}"),
    }
}

pub async fn drop_keyspace(store: &ScyllaStore, keyspace: &str) {
    store
        .session()
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
        .await
        .expect("drop test keyspace");
}
