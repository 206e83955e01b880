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
            let scylla = scylla_config(config)?;
            let contacts = scylla.contact_points.join(", ");
            ScyllaStore::connect(scylla).await.with_context(|| format!("connecting to ScyllaDB/Cassandra at {contacts}"))
        }
    }
}

fn embedded_options(config: &Config) -> EmbeddedOptions {
    EmbeddedOptions { archive_retention: config.archive.retention() }
}

fn scylla_config(config: &Config) -> anyhow::Result<ScyllaConfig> {
    let store = &config.store;
    let password = crate::config::secret(&store.scylla_password_file)?;
    let optional = |value: &str| (!value.is_empty()).then(|| value.to_owned());
    Ok(ScyllaConfig {
        contact_points: store.scylla_contact_points.clone(),
        keyspace: store.scylla_keyspace.clone(),
        replication: store.scylla_replication.clone(),
        archive_retention: config.archive.retention(),
        credentials: password.map(|password| (store.scylla_username.clone(), password)),
        local_datacenter: optional(&store.scylla_local_datacenter),
        tls_ca_file: optional(&store.scylla_tls_ca_file).map(Into::into),
        ..ScyllaConfig::default()
    })
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
