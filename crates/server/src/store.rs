//! Opens the configured storage backend: the only place that names a concrete store.

use anyhow::Context;
use starling_backend_scylla::{ScyllaConfig, ScyllaStore};
use starling_cluster::store::Store;
use starling_store_embedded::EmbeddedOptions;

use crate::config::{Config, StoreBackend};

pub async fn open(config: &Config) -> anyhow::Result<Store> {
    match config.store.backend {
        StoreBackend::Embedded => starling_store_embedded::EmbeddedStore::open_with(&config.server.data_dir, &embedded_options(config))
            .with_context(|| format!("opening the embedded store in {} (is another starling using it?)", config.server.data_dir.display())),
        StoreBackend::Scylla => {
            let scylla = scylla_config(config);
            let contacts = scylla.contact_points.join(", ");
            ScyllaStore::connect(scylla).await.with_context(|| format!("connecting to ScyllaDB/Cassandra at {contacts}"))
        }
    }
}

fn embedded_options(config: &Config) -> EmbeddedOptions {
    EmbeddedOptions { archive_retention: config.archive.retention() }
}

fn scylla_config(config: &Config) -> ScyllaConfig {
    ScyllaConfig {
        contact_points: config.store.scylla_contact_points.clone(),
        keyspace: config.store.scylla_keyspace.clone(),
        replication: config.store.scylla_replication.clone(),
        archive_retention: config.archive.retention(),
        ..ScyllaConfig::default()
    }
}

/// `starling db migrate`: opening the CQL store applies pending migrations; the embedded store has
/// no schema to migrate.
pub fn migrate(config: &Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        match config.store.backend {
            StoreBackend::Embedded => println!("embedded store: no schema migrations"),
            StoreBackend::Scylla => {
                open(config).await?;
                println!("schema of keyspace {} is up to date", config.store.scylla_keyspace);
            }
        }
        Ok(())
    })
}
