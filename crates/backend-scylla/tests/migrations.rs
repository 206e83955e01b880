//! Schema migrations: recorded in `schema_migrations`, and harmless to run again.

mod common;

use starling_backend_scylla::schema::{self, MIGRATIONS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_recorded_and_idempotent() {
    let config = common::fresh_config();
    let all: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert!(
        all.windows(2).all(|pair| pair[0] < pair[1]),
        "migration versions must strictly increase: {all:?}"
    );

    // First start: everything is applied and recorded.
    let store = common::open(config.clone()).await;
    let session = store.session();
    assert_eq!(
        schema::applied_versions(session, &config.keyspace)
            .await
            .expect("versions"),
        all
    );

    // Running the migrations again applies nothing and records nothing twice.
    assert_eq!(
        schema::migrate(session, &config)
            .await
            .expect("migrate again"),
        Vec::<i32>::new()
    );
    assert_eq!(
        schema::applied_versions(session, &config.keyspace)
            .await
            .expect("versions"),
        all
    );

    // Even with the record lost (a crash between the DDL and the record), every statement is
    // safe to run again: the migration re-applies and is recorded once more.
    session
        .query_unpaged(
            format!("TRUNCATE {}.schema_migrations", config.keyspace),
            (),
        )
        .await
        .expect("truncate");
    assert_eq!(
        schema::migrate(session, &config)
            .await
            .expect("migrate after lost record"),
        all
    );
    assert_eq!(
        schema::applied_versions(session, &config.keyspace)
            .await
            .expect("versions"),
        all
    );

    // A second server starting on the same keyspace finds it ready.
    let second = common::open(config.clone()).await;
    assert_eq!(
        schema::applied_versions(second.session(), &config.keyspace)
            .await
            .expect("versions"),
        all
    );
    common::drop_keyspace(&store, &config.keyspace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_names_are_checked() {
    let config = starling_backend_scylla::ScyllaConfig {
        keyspace: "bad; DROP KEYSPACE x".to_owned(),
        ..common::fresh_config()
    };
    assert!(matches!(
        starling_backend_scylla::ScyllaStore::open(config).await,
        Err(starling_cluster::store::StoreError::Corrupt(_))
    ));
}

#[test]
fn keyspace_ddl_per_flavor() {
    let replication = starling_backend_scylla::DEFAULT_REPLICATION;
    let cassandra = schema::keyspace_ddl(schema::Flavor::Cassandra, "ks", replication);
    let scylla = schema::keyspace_ddl(schema::Flavor::Scylla, "ks", replication);
    assert!(!cassandra.contains("tablets"), "{cassandra}");
    assert!(scylla.contains("tablets = {'enabled': false}"), "{scylla}");
}
