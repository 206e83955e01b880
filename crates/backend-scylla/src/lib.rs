//! Every `starling-cluster` storage trait on CQL, for ScyllaDB or Apache Cassandra, with the
//! `scylla` driver.
//!
//! One keyspace holds the tables; [`ScyllaStore::connect`] creates it if missing, applies the
//! versioned schema migrations ([`schema`]) and prepares every statement once. Every read is by
//! partition key (the user), except [`Accounts::list`](starling_cluster::store::Accounts::list),
//! the admin call the trait allows to scan. Writes that must be atomic with a check (account
//! creation, roster versions, the offline queue's quota and id sequence) are lightweight
//! transactions (Paxos) kept inside one partition; of an LWT result only the `[applied]` column
//! is read, because Cassandra and ScyllaDB return different extra columns. See
//! `docs/storage.md` for the data model and the reasons behind it.
//!
//! Over 400 lines: connecting, preparing every statement once and the store bundle are one step; each trait's queries live in their own module.

mod accounts;
mod archive;
mod offline;
mod pubsub;
mod rosters;
pub mod schema;
mod tls;
mod user_data;

use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::errors::{DbError, ExecutionError, PrepareError, RequestAttemptError};
use scylla::response::query_result::QueryResult;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlValue, Row};
use starling_cluster::store::{Store, StoreError};

pub use schema::Flavor;

/// How to reach the cluster and how to use it.
#[derive(Debug, Clone)]
pub struct ScyllaConfig {
    /// `host:port` of one or more nodes; the driver discovers the rest of the cluster.
    pub contact_points: Vec<String>,
    /// The keyspace holding Starling's tables: letters, digits and `_`, at most 48 characters,
    /// starting with a letter (it is written into DDL, so it is checked, not quoted).
    pub keyspace: String,
    /// The keyspace's CQL replication map, used only when the keyspace is created, e.g.
    /// `{'class': 'NetworkTopologyStrategy', 'dc1': 3}` in production.
    pub replication: String,
    /// Which server it is, for the keyspace DDL (the table DDL is the same for both).
    pub flavor: Flavor,
    /// Consistency of every read and write.
    ///
    /// The default is `LOCAL_QUORUM`: a write is acknowledged by a majority of the replicas in
    /// the local data centre and a read consults a majority, so every read sees every
    /// acknowledged write (R + W > RF) without waiting on a remote data centre, and one replica
    /// per data centre may be down (RF = 3). `ONE` would let a login miss a password change or a
    /// roster read miss an acknowledged push; `QUORUM`/`ALL` would add cross-DC latency and fail
    /// when a DC is cut off. The LWT steps use `LOCAL_SERIAL` for the same reasons.
    pub consistency: Consistency,
    /// Per-request timeout on the client side (the server has its own, shorter ones).
    pub request_timeout: Duration,
    /// Archived messages expire (CQL TTL) this long after they were written; `None` keeps them.
    pub archive_retention: Option<Duration>,
    /// User and password to log in with (PasswordAuthenticator); `None`: no login.
    pub credentials: Option<(String, String)>,
    /// The data centre whose nodes the driver asks first (token-aware within it); `None`: any.
    pub local_datacenter: Option<String>,
    /// Connect over TLS, trusting the CA certificates (PEM) in this file; `None`: plain CQL.
    /// The driver checks each node's certificate against the node's IP address.
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl Default for ScyllaConfig {
    fn default() -> Self {
        ScyllaConfig {
            contact_points: vec!["127.0.0.1:9042".to_owned()],
            keyspace: "starling".to_owned(),
            replication: DEFAULT_REPLICATION.to_owned(),
            flavor: Flavor::Auto,
            consistency: Consistency::LocalQuorum,
            request_timeout: Duration::from_secs(10),
            archive_retention: None,
            credentials: None,
            local_datacenter: None,
            tls_ca_file: None,
        }
    }
}

/// Replication for a single-node development or test cluster.
pub const DEFAULT_REPLICATION: &str = "{'class': 'SimpleStrategy', 'replication_factor': 1}";

/// The longest TTL CQL accepts (20 years), less a bucket so that bucket markers fit too.
const MAX_TTL_SECONDS: u64 = 20 * 365 * 86_400 - 30 * 86_400;

/// How often a compare-and-set loop retries after losing a race before it reports the store as
/// unavailable (each loss means another writer of the same user went first).
const CAS_ATTEMPTS: usize = 32;

/// A connected session with every statement prepared. Every storage trait is implemented on it;
/// [`ScyllaStore::connect`] hands it out as a [`Store`] bundle.
pub struct ScyllaStore {
    session: Session,
    st: Statements,
    consistency: Consistency,
    /// TTL of archive rows in seconds; 0 for none (CQL's own meaning of `USING TTL 0`).
    archive_ttl: i32,
    /// Archive bucket markers this process wrote lately (see `archive.rs`).
    markers: archive::RecentMarkers,
}

impl ScyllaStore {
    /// Connects, creates the keyspace if missing, applies pending schema migrations and prepares
    /// every statement. [`StoreError::Unavailable`] if the cluster cannot be reached or the
    /// schema cannot be applied; [`StoreError::Corrupt`] for an invalid configuration.
    pub async fn connect(config: ScyllaConfig) -> Result<Store, StoreError> {
        let store = Arc::new(ScyllaStore::open(config).await?);
        Ok(Store {
            accounts: store.clone(),
            rosters: store.clone(),
            vcards: store.clone(),
            private_xml: store.clone(),
            blocklists: store.clone(),
            offline: store.clone(),
            last_activity: store.clone(),
            archive: store.clone(),
            push: store.clone(),
            fast_tokens: store.clone(),
            rooms: store.clone(),
            things: store.clone(),
            abuse_reports: store.clone(),
            pubsub: store,
        })
    }

    /// [`connect`](Self::connect), returning the store itself rather than the bundle.
    pub async fn open(config: ScyllaConfig) -> Result<ScyllaStore, StoreError> {
        schema::check_keyspace_name(&config.keyspace)?;
        if config.contact_points.is_empty() {
            return Err(StoreError::Corrupt(
                "no contact points configured".to_owned(),
            ));
        }
        let mut builder = SessionBuilder::new().known_nodes(&config.contact_points).connection_timeout(Duration::from_secs(5));
        if let Some((user, password)) = &config.credentials {
            builder = builder.user(user, password);
        }
        if let Some(datacenter) = &config.local_datacenter {
            let policy = DefaultPolicy::builder().prefer_datacenter(datacenter.clone()).token_aware(true).permit_dc_failover(false).build();
            let profile = ExecutionProfile::builder().load_balancing_policy(policy).build();
            builder = builder.default_execution_profile_handle(profile.into_handle());
        }
        if let Some(ca_file) = &config.tls_ca_file {
            builder = builder.tls_context(Some(tls::client_config(ca_file)?));
        }
        let session = builder
            .build()
            .await
            .map_err(|error| {
                StoreError::Unavailable(format!(
                    "cannot connect to {}: {error}",
                    config.contact_points.join(", ")
                ))
            })?;
        schema::migrate(&session, &config).await?;
        let archive_ttl = match config.archive_retention {
            None => 0,
            // CQL caps a TTL at 20 years; a zero retention would mean "keep for ever" in CQL.
            Some(retention) => i32::try_from(retention.as_secs().clamp(1, MAX_TTL_SECONDS)).unwrap_or(i32::MAX),
        };
        let st = Statements::prepare(&session, &config).await?;
        Ok(ScyllaStore {
            session,
            st,
            consistency: config.consistency,
            archive_ttl,
            markers: archive::RecentMarkers::default(),
        })
    }

    /// The driver session, for callers that need more (e.g. tests).
    pub fn session(&self) -> &Session {
        &self.session
    }

    async fn exec(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<QueryResult, StoreError> {
        self.session
            .execute_unpaged(statement, values)
            .await
            .map_err(execution_error)
    }

    /// Runs a batch of prepared statements (one partition) with the configured consistency.
    async fn batch(
        &self,
        statements: Vec<PreparedStatement>,
        values: impl scylla::serialize::batch::BatchValues,
    ) -> Result<QueryResult, StoreError> {
        let mut batch = Batch::new(BatchType::Unlogged);
        for statement in statements {
            batch.append_statement(statement);
        }
        batch.set_consistency(self.consistency);
        batch.set_serial_consistency(Some(SerialConsistency::LocalSerial));
        self.session
            .batch(&batch, values)
            .await
            .map_err(execution_error)
    }
}

/// Every statement, prepared once at startup.
struct Statements {
    // accounts
    account_insert: PreparedStatement,
    account_get: PreparedStatement,
    account_exists: PreparedStatement,
    account_update: PreparedStatement,
    account_delete: PreparedStatement,
    account_list: PreparedStatement,
    // rosters
    roster_all: PreparedStatement,
    roster_item: PreparedStatement,
    roster_version: PreparedStatement,
    roster_item_serial: PreparedStatement,
    roster_version_serial: PreparedStatement,
    roster_bump_first: PreparedStatement,
    roster_bump: PreparedStatement,
    roster_item_put: PreparedStatement,
    roster_item_delete: PreparedStatement,
    roster_delete_user: PreparedStatement,
    pending_put: PreparedStatement,
    pending_get: PreparedStatement,
    pending_delete: PreparedStatement,
    pending_all: PreparedStatement,
    pending_delete_user: PreparedStatement,
    // persistent rooms
    room_get: PreparedStatement,
    room_set: PreparedStatement,
    room_delete: PreparedStatement,
    room_list: PreparedStatement,
    room_unlist: PreparedStatement,
    rooms_listed: PreparedStatement,
    // XEP-0347 Things
    thing_set: PreparedStatement,
    thing_delete: PreparedStatement,
    things_all: PreparedStatement,
    // PubSub nodes and items
    pubsub_node_get: PreparedStatement,
    pubsub_nodes_all: PreparedStatement,
    pubsub_node_set: PreparedStatement,
    pubsub_node_delete: PreparedStatement,
    pubsub_service_delete: PreparedStatement,
    pubsub_item_set: PreparedStatement,
    pubsub_item_get: PreparedStatement,
    pubsub_item_delete: PreparedStatement,
    pubsub_items_all: PreparedStatement,
    pubsub_items_purge: PreparedStatement,
    // vcards
    vcard_get: PreparedStatement,
    vcard_set: PreparedStatement,
    vcard_delete: PreparedStatement,
    // private xml
    private_get: PreparedStatement,
    private_set: PreparedStatement,
    private_delete_user: PreparedStatement,
    // blocklists
    block_list: PreparedStatement,
    block_add: PreparedStatement,
    block_remove: PreparedStatement,
    block_clear: PreparedStatement,
    block_get: PreparedStatement,
    // offline
    offline_state: PreparedStatement,
    offline_state_serial: PreparedStatement,
    offline_fetch: PreparedStatement,
    offline_seq_first: PreparedStatement,
    offline_seq: PreparedStatement,
    offline_insert: PreparedStatement,
    offline_floor: PreparedStatement,
    offline_delete_upto: PreparedStatement,
    // last activity
    last_get: PreparedStatement,
    last_set: PreparedStatement,
    last_delete: PreparedStatement,
    // push registrations
    push_list: PreparedStatement,
    push_add: PreparedStatement,
    push_remove: PreparedStatement,
    push_remove_service: PreparedStatement,
    push_delete_user: PreparedStatement,
    // FAST tokens
    fast_get: PreparedStatement,
    fast_put: PreparedStatement,
    fast_delete: PreparedStatement,
    fast_delete_user: PreparedStatement,
    // abuse reports
    reports_add: PreparedStatement,
    reports_of_day: PreparedStatement,
    // archive
    archive_insert: PreparedStatement,
    archive_with_insert: PreparedStatement,
    archive_bucket_insert: PreparedStatement,
    archive_buckets: PreparedStatement,
    archive_page_asc: PreparedStatement,
    archive_page_desc: PreparedStatement,
    archive_with_page_asc: PreparedStatement,
    archive_with_page_desc: PreparedStatement,
    archive_get: PreparedStatement,
    archive_delete: PreparedStatement,
    archive_with_delete: PreparedStatement,
    archive_markers: PreparedStatement,
    archive_delete_bucket: PreparedStatement,
    archive_with_delete_bucket: PreparedStatement,
    archive_markers_delete: PreparedStatement,
    archive_prefs_get: PreparedStatement,
    archive_prefs_set: PreparedStatement,
    archive_prefs_delete: PreparedStatement,
}

impl Statements {
    async fn prepare(session: &Session, config: &ScyllaConfig) -> Result<Statements, StoreError> {
        let ks = &config.keyspace;
        let p = |cql: String, serial_read: bool| async move {
            let mut statement = session
                .prepare(cql.as_str())
                .await
                .map_err(|error| prepare_error(&cql, error))?;
            statement.set_consistency(if serial_read {
                Consistency::LocalSerial
            } else {
                config.consistency
            });
            statement.set_serial_consistency(Some(SerialConsistency::LocalSerial));
            statement.set_request_timeout(Some(config.request_timeout));
            Ok::<_, StoreError>(statement)
        };
        // One bucket partition of the archive (or of one conversation), an id range, one direction.
        let archive_page = |columns: &str, table: &str, with: &str, order: &str| {
            format!(
                "SELECT {columns} FROM {ks}.{table} WHERE user_jid = ? {with}AND bucket = ? AND id >= ? AND id <= ? \
                 ORDER BY id {order} LIMIT ?"
            )
        };
        const ACCOUNT_COLUMNS: &str = "iterations, salt, sha1_stored_key, sha1_server_key, sha256_stored_key, sha256_server_key";
        const ITEM_COLUMNS: &str = "contact, name, groups, subscription, ask_out, approved";
        Ok(Statements {
            account_insert: p(
                format!("INSERT INTO {ks}.accounts (user_jid, {ACCOUNT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"),
                false,
            )
            .await?,
            account_get: p(format!("SELECT {ACCOUNT_COLUMNS} FROM {ks}.accounts WHERE user_jid = ?"), false).await?,
            account_exists: p(format!("SELECT user_jid FROM {ks}.accounts WHERE user_jid = ?"), false).await?,
            account_update: p(
                format!(
                    "UPDATE {ks}.accounts SET iterations = ?, salt = ?, sha1_stored_key = ?, sha1_server_key = ?, \
                     sha256_stored_key = ?, sha256_server_key = ? WHERE user_jid = ? IF EXISTS"
                ),
                false,
            )
            .await?,
            account_delete: p(format!("DELETE FROM {ks}.accounts WHERE user_jid = ? IF EXISTS"), false).await?,
            account_list: p(format!("SELECT user_jid FROM {ks}.accounts"), false).await?,

            roster_all: p(format!("SELECT version, {ITEM_COLUMNS} FROM {ks}.roster_items WHERE user_jid = ?"), false).await?,
            roster_item: p(format!("SELECT {ITEM_COLUMNS} FROM {ks}.roster_items WHERE user_jid = ? AND contact = ?"), false).await?,
            roster_version: p(format!("SELECT version FROM {ks}.roster_items WHERE user_jid = ? LIMIT 1"), false).await?,
            roster_item_serial: p(format!("SELECT version, contact FROM {ks}.roster_items WHERE user_jid = ? AND contact = ?"), true).await?,
            roster_version_serial: p(format!("SELECT version FROM {ks}.roster_items WHERE user_jid = ? LIMIT 1"), true).await?,
            roster_bump_first: p(format!("UPDATE {ks}.roster_items SET version = ? WHERE user_jid = ? IF version = null"), false).await?,
            roster_bump: p(format!("UPDATE {ks}.roster_items SET version = ? WHERE user_jid = ? IF version = ?"), false).await?,
            roster_item_put: p(
                format!("INSERT INTO {ks}.roster_items (user_jid, {ITEM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                false,
            )
            .await?,
            roster_item_delete: p(format!("DELETE FROM {ks}.roster_items WHERE user_jid = ? AND contact = ?"), false).await?,
            roster_delete_user: p(format!("DELETE FROM {ks}.roster_items WHERE user_jid = ?"), false).await?,
            pending_put: p(format!("INSERT INTO {ks}.pending_in (user_jid, contact, stanza) VALUES (?, ?, ?)"), false).await?,
            pending_get: p(format!("SELECT contact FROM {ks}.pending_in WHERE user_jid = ? AND contact = ?"), false).await?,
            pending_delete: p(format!("DELETE FROM {ks}.pending_in WHERE user_jid = ? AND contact = ?"), false).await?,
            pending_all: p(format!("SELECT contact, stanza FROM {ks}.pending_in WHERE user_jid = ?"), false).await?,
            pending_delete_user: p(format!("DELETE FROM {ks}.pending_in WHERE user_jid = ?"), false).await?,

            room_get: p(format!("SELECT record FROM {ks}.muc_rooms WHERE room_jid = ?"), false).await?,
            room_set: p(format!("INSERT INTO {ks}.muc_rooms (room_jid, record) VALUES (?, ?)"), false).await?,
            room_delete: p(format!("DELETE FROM {ks}.muc_rooms WHERE room_jid = ?"), false).await?,
            room_list: p(format!("INSERT INTO {ks}.muc_listed_rooms (service, room_jid, name) VALUES (?, ?, ?)"), false).await?,
            room_unlist: p(format!("DELETE FROM {ks}.muc_listed_rooms WHERE service = ? AND room_jid = ?"), false).await?,
            rooms_listed: p(format!("SELECT room_jid, name FROM {ks}.muc_listed_rooms WHERE service = ?"), false).await?,
            thing_set: p(format!("INSERT INTO {ks}.iot_things (registry, thing, record) VALUES (?, ?, ?)"), false).await?,
            thing_delete: p(format!("DELETE FROM {ks}.iot_things WHERE registry = ? AND thing = ?"), false).await?,
            things_all: p(format!("SELECT thing, record FROM {ks}.iot_things WHERE registry = ?"), false).await?,
            pubsub_node_get: p(format!("SELECT record FROM {ks}.pubsub_nodes WHERE service = ? AND node = ?"), false).await?,
            pubsub_nodes_all: p(format!("SELECT node, record FROM {ks}.pubsub_nodes WHERE service = ?"), false).await?,
            pubsub_node_set: p(format!("INSERT INTO {ks}.pubsub_nodes (service, node, record) VALUES (?, ?, ?)"), false).await?,
            pubsub_node_delete: p(format!("DELETE FROM {ks}.pubsub_nodes WHERE service = ? AND node = ?"), false).await?,
            pubsub_service_delete: p(format!("DELETE FROM {ks}.pubsub_nodes WHERE service = ?"), false).await?,
            pubsub_item_set: p(
                format!("INSERT INTO {ks}.pubsub_items (service, node, item_id, published, publisher, payload) VALUES (?, ?, ?, ?, ?, ?)"),
                false,
            )
            .await?,
            pubsub_item_get: p(format!("SELECT item_id FROM {ks}.pubsub_items WHERE service = ? AND node = ? AND item_id = ?"), false).await?,
            pubsub_item_delete: p(format!("DELETE FROM {ks}.pubsub_items WHERE service = ? AND node = ? AND item_id = ?"), false).await?,
            pubsub_items_all: p(format!("SELECT item_id, published, publisher, payload FROM {ks}.pubsub_items WHERE service = ? AND node = ?"), false).await?,
            pubsub_items_purge: p(format!("DELETE FROM {ks}.pubsub_items WHERE service = ? AND node = ?"), false).await?,
            vcard_get: p(format!("SELECT vcard FROM {ks}.vcards WHERE user_jid = ?"), false).await?,
            vcard_set: p(format!("INSERT INTO {ks}.vcards (user_jid, vcard) VALUES (?, ?)"), false).await?,
            vcard_delete: p(format!("DELETE FROM {ks}.vcards WHERE user_jid = ?"), false).await?,

            private_get: p(format!("SELECT xml FROM {ks}.private_xml WHERE user_jid = ? AND item_key = ?"), false).await?,
            private_set: p(format!("INSERT INTO {ks}.private_xml (user_jid, item_key, xml) VALUES (?, ?, ?)"), false).await?,
            private_delete_user: p(format!("DELETE FROM {ks}.private_xml WHERE user_jid = ?"), false).await?,

            block_list: p(format!("SELECT blocked FROM {ks}.blocklist WHERE user_jid = ?"), false).await?,
            block_add: p(format!("INSERT INTO {ks}.blocklist (user_jid, blocked) VALUES (?, ?)"), false).await?,
            block_remove: p(format!("DELETE FROM {ks}.blocklist WHERE user_jid = ? AND blocked = ?"), false).await?,
            block_clear: p(format!("DELETE FROM {ks}.blocklist WHERE user_jid = ?"), false).await?,
            block_get: p(format!("SELECT blocked FROM {ks}.blocklist WHERE user_jid = ? AND blocked = ?"), false).await?,

            offline_state: p(format!("SELECT last_id, floor FROM {ks}.offline WHERE user_jid = ? LIMIT 1"), false).await?,
            offline_state_serial: p(format!("SELECT last_id, floor FROM {ks}.offline WHERE user_jid = ? LIMIT 1"), true).await?,
            // Serial: a push whose writer died mid-LWT is completed first, so it is seen (read
            // otherwise, it would be missed and then stored twice by the next owner).
            offline_fetch: p(format!("SELECT floor, id, stanza FROM {ks}.offline WHERE user_jid = ?"), true).await?,
            offline_seq_first: p(
                format!("UPDATE {ks}.offline SET last_id = ?, floor = 0 WHERE user_jid = ? IF last_id = null"),
                false,
            )
            .await?,
            offline_seq: p(format!("UPDATE {ks}.offline SET last_id = ? WHERE user_jid = ? IF last_id = ?"), false).await?,
            offline_insert: p(format!("INSERT INTO {ks}.offline (user_jid, id, stanza) VALUES (?, ?, ?)"), false).await?,
            offline_floor: p(format!("UPDATE {ks}.offline SET floor = ? WHERE user_jid = ? IF floor = ?"), false).await?,
            offline_delete_upto: p(format!("DELETE FROM {ks}.offline WHERE user_jid = ? AND id <= ?"), false).await?,

            last_get: p(format!("SELECT seen, status FROM {ks}.last_activity WHERE user_jid = ?"), false).await?,
            last_set: p(format!("INSERT INTO {ks}.last_activity (user_jid, seen, status) VALUES (?, ?, ?)"), false).await?,
            last_delete: p(format!("DELETE FROM {ks}.last_activity WHERE user_jid = ?"), false).await?,
            push_list: p(format!("SELECT service, node, options FROM {ks}.push_registrations WHERE user_jid = ?"), false).await?,
            push_add: p(format!("INSERT INTO {ks}.push_registrations (user_jid, service, node, options) VALUES (?, ?, ?, ?)"), false).await?,
            push_remove: p(format!("DELETE FROM {ks}.push_registrations WHERE user_jid = ? AND service = ? AND node = ?"), false).await?,
            push_remove_service: p(format!("DELETE FROM {ks}.push_registrations WHERE user_jid = ? AND service = ?"), false).await?,
            push_delete_user: p(format!("DELETE FROM {ks}.push_registrations WHERE user_jid = ?"), false).await?,
            fast_get: p(format!("SELECT current_token, new_token FROM {ks}.fast_tokens WHERE user_jid = ? AND client = ?"), false).await?,
            fast_put: p(format!("INSERT INTO {ks}.fast_tokens (user_jid, client, current_token, new_token) VALUES (?, ?, ?, ?) USING TTL ?"), false)
                .await?,
            fast_delete: p(format!("DELETE FROM {ks}.fast_tokens WHERE user_jid = ? AND client = ?"), false).await?,
            fast_delete_user: p(format!("DELETE FROM {ks}.fast_tokens WHERE user_jid = ?"), false).await?,
            reports_add: p(
                format!("INSERT INTO {ks}.abuse_reports (day, at, reporter, reported, reason, report_text, stanza_ids) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                false,
            )
            .await?,
            reports_of_day: p(format!("SELECT at, reporter, reported, reason, report_text, stanza_ids FROM {ks}.abuse_reports WHERE day = ? LIMIT ?"), false).await?,

            archive_insert: p(
                format!("INSERT INTO {ks}.archive (user_jid, bucket, id, with_jid, stanza) VALUES (?, ?, ?, ?, ?) USING TTL ?"),
                false,
            )
            .await?,
            archive_with_insert: p(
                format!("INSERT INTO {ks}.archive_with (user_jid, with_jid, bucket, id, stanza) VALUES (?, ?, ?, ?, ?) USING TTL ?"),
                false,
            )
            .await?,
            archive_bucket_insert: p(format!("INSERT INTO {ks}.archive_buckets (user_jid, with_jid, bucket) VALUES (?, ?, ?) USING TTL ?"), false)
                .await?,
            archive_buckets: p(
                format!("SELECT bucket FROM {ks}.archive_buckets WHERE user_jid = ? AND with_jid = ? AND bucket >= ? AND bucket <= ?"),
                false,
            )
            .await?,
            archive_page_asc: p(archive_page("id, with_jid, stanza", "archive", "", "ASC"), false).await?,
            archive_page_desc: p(archive_page("id, with_jid, stanza", "archive", "", "DESC"), false).await?,
            archive_with_page_asc: p(archive_page("id, stanza", "archive_with", "AND with_jid = ? ", "ASC"), false).await?,
            archive_with_page_desc: p(archive_page("id, stanza", "archive_with", "AND with_jid = ? ", "DESC"), false).await?,
            archive_get: p(format!("SELECT with_jid, stanza FROM {ks}.archive WHERE user_jid = ? AND bucket = ? AND id = ?"), false).await?,
            archive_delete: p(format!("DELETE FROM {ks}.archive WHERE user_jid = ? AND bucket = ? AND id = ?"), false).await?,
            archive_with_delete: p(format!("DELETE FROM {ks}.archive_with WHERE user_jid = ? AND with_jid = ? AND bucket = ? AND id = ?"), false)
                .await?,
            archive_markers: p(format!("SELECT with_jid, bucket FROM {ks}.archive_buckets WHERE user_jid = ?"), false).await?,
            archive_delete_bucket: p(format!("DELETE FROM {ks}.archive WHERE user_jid = ? AND bucket = ?"), false).await?,
            archive_with_delete_bucket: p(format!("DELETE FROM {ks}.archive_with WHERE user_jid = ? AND with_jid = ? AND bucket = ?"), false)
                .await?,
            archive_markers_delete: p(format!("DELETE FROM {ks}.archive_buckets WHERE user_jid = ?"), false).await?,
            archive_prefs_get: p(format!("SELECT default_mode, always, never FROM {ks}.archive_prefs WHERE user_jid = ?"), false).await?,
            archive_prefs_set: p(
                format!("INSERT INTO {ks}.archive_prefs (user_jid, default_mode, always, never) VALUES (?, ?, ?, ?)"),
                false,
            )
            .await?,
            archive_prefs_delete: p(format!("DELETE FROM {ks}.archive_prefs WHERE user_jid = ?"), false).await?,
        })
    }
}

/// Maps a driver error: anything about reaching or hearing from the cluster in time is
/// [`StoreError::Unavailable`] (retryable); a request the server rejects as invalid, or a value
/// that cannot be (de)serialised, is [`StoreError::Corrupt`] (retrying will not help).
pub(crate) fn execution_error(error: ExecutionError) -> StoreError {
    match &error {
        ExecutionError::BadQuery(_) => StoreError::Corrupt(error.to_string()),
        ExecutionError::LastAttemptError(attempt) => attempt_error(attempt, &error),
        _ => StoreError::Unavailable(error.to_string()),
    }
}

/// Like [`execution_error`], for preparing: a statement the server rejects is a bug (Corrupt),
/// no connection is Unavailable.
fn prepare_error(cql: &str, error: PrepareError) -> StoreError {
    let message = format!("cannot prepare `{cql}`: {error}");
    match &error {
        PrepareError::AllAttemptsFailed { first_attempt } => {
            match attempt_error(first_attempt, &message) {
                StoreError::Corrupt(_) => StoreError::Corrupt(message),
                _ => StoreError::Unavailable(message),
            }
        }
        _ => StoreError::Unavailable(message),
    }
}

fn attempt_error(attempt: &RequestAttemptError, error: &dyn std::fmt::Display) -> StoreError {
    match attempt {
        RequestAttemptError::SerializationError(_)
        | RequestAttemptError::CqlRequestSerialization(_)
        | RequestAttemptError::CqlResultParseError(_) => StoreError::Corrupt(error.to_string()),
        RequestAttemptError::DbError(
            DbError::SyntaxError
            | DbError::Invalid
            | DbError::AlreadyExists { .. }
            | DbError::FunctionFailure { .. }
            | DbError::ConfigError
            | DbError::ProtocolError,
            _,
        ) => StoreError::Corrupt(error.to_string()),
        // Other server errors (Unavailable, Overloaded, IsBootstrapping, Read/WriteTimeout,
        // Read/WriteFailure, TruncateError, ServerError, rate limits, ...) and connection
        // trouble: the cluster did not do the work now; it may later.
        _ => StoreError::Unavailable(error.to_string()),
    }
}

/// A result that cannot be decoded into the expected row type.
pub(crate) fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {error}"))
}

/// Decodes the rows of a result as `R`.
pub(crate) fn rows<R>(result: QueryResult, what: &str) -> Result<Vec<R>, StoreError>
where
    R: for<'f> scylla::deserialize::row::DeserializeRow<'f, 'f>,
{
    let rows = result
        .into_rows_result()
        .map_err(|error| corrupt(what, error))?;
    let typed = rows.rows::<R>().map_err(|error| corrupt(what, error))?;
    typed
        .map(|row| row.map_err(|error| corrupt(what, error)))
        .collect()
}

/// Whether a lightweight transaction applied. Only the `[applied]` column is read: Cassandra
/// returns just it on success and the current values on failure, ScyllaDB always returns the old
/// row; the rest of the columns differ between the two and is ignored.
pub(crate) fn applied(result: QueryResult) -> Result<bool, StoreError> {
    let rows = result
        .into_rows_result()
        .map_err(|error| corrupt("LWT result", error))?;
    let (index, _) = rows
        .column_specs()
        .get_by_name("[applied]")
        .ok_or_else(|| StoreError::Corrupt("LWT result has no [applied] column".to_owned()))?;
    let first = rows
        .maybe_first_row::<Row>()
        .map_err(|error| corrupt("LWT result", error))?;
    match first.and_then(|row| row.columns.into_iter().nth(index).flatten()) {
        Some(CqlValue::Boolean(applied)) => Ok(applied),
        other => Err(StoreError::Corrupt(format!(
            "LWT result: [applied] is {other:?}"
        ))),
    }
}

/// u64 values (ids, versions, timestamps) are stored in CQL `bigint` bit for bit: values above
/// `i64::MAX` come back as they went in.
pub(crate) fn to_bigint(value: u64) -> i64 {
    value as i64
}

pub(crate) fn from_bigint(value: i64) -> u64 {
    value as u64
}

#[cfg(test)]
mod tests {
    use scylla::errors::BadQuery;

    use super::*;

    #[test]
    fn server_rejections_are_corrupt_and_trouble_reaching_it_is_unavailable() {
        let db = |error: DbError| {
            ExecutionError::LastAttemptError(RequestAttemptError::DbError(
                error,
                "message".to_owned(),
            ))
        };
        assert!(matches!(
            execution_error(db(DbError::Invalid)),
            StoreError::Corrupt(_)
        ));
        assert!(matches!(
            execution_error(db(DbError::SyntaxError)),
            StoreError::Corrupt(_)
        ));
        assert!(matches!(
            execution_error(db(DbError::Overloaded)),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            execution_error(db(DbError::IsBootstrapping)),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            execution_error(ExecutionError::RequestTimeout(Duration::from_secs(1))),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            execution_error(ExecutionError::EmptyPlan),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            execution_error(ExecutionError::BadQuery(
                BadQuery::TooManyQueriesInBatchStatement(70000)
            )),
            StoreError::Corrupt(_)
        ));
    }

    #[test]
    fn bigints_round_trip_every_u64() {
        for value in [0, 1, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
            assert_eq!(from_bigint(to_bigint(value)), value);
        }
    }
}
