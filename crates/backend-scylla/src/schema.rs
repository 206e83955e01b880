//! Versioned, idempotent schema migrations.
//!
//! The keyspace is created first with DDL that depends on the server ([`Flavor`]); then the
//! `schema_migrations` table, which records each applied migration's version. Each migration is a
//! list of CQL statements, every one of them `CREATE ... IF NOT EXISTS` (or otherwise safe to run
//! again), so a migration that failed half way, or that two servers start at once, can simply
//! be run again. A migration's version is recorded only after all its statements succeeded and
//! the cluster agreed on the schema.
//!
//! Table DDL is shared by ScyllaDB and Cassandra, so it uses only what both accept: no tablets,
//! no `USING TIMEOUT`, no SAI or secondary indexes, size-tiered or levelled compaction only, no
//! Scylla-only table options (`cdc = {...}`, `tombstone_gc`, `per_partition_rate_limit`).
//! Never edit a released migration: add a new one.

use scylla::client::session::Session;
use starling_cluster::store::StoreError;

use crate::{ScyllaConfig, execution_error, rows};

/// Which server the keyspace DDL is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// Ask the server: ScyllaDB has a `system.scylla_local` table, Cassandra does not.
    #[default]
    Auto,
    Cassandra,
    /// ScyllaDB: the keyspace is created with `tablets = {'enabled': false}`, because ScyllaDB
    /// does not support lightweight transactions (which this backend uses) in tablet keyspaces.
    /// Needs ScyllaDB 6.0 or later (older ones reject the unknown `tablets` option and use
    /// vnodes anyway: set [`Flavor::Cassandra`] for them).
    Scylla,
}

/// One migration: a version (strictly increasing), a description, and its statements, with
/// `{ks}` standing for the keyspace.
pub struct Migration {
    pub version: i32,
    pub description: &'static str,
    pub statements: &'static [&'static str],
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
Migration {
    version: 1,
    description: "accounts, rosters, pending requests, vCards, private XML, block lists, offline queues, last activity",
    statements: &[
        // One row per account; SCRAM keys only, never a password. Read-mostly: levelled
        // compaction keeps a login's read to one SSTable.
        "CREATE TABLE IF NOT EXISTS {ks}.accounts (
            user_jid text PRIMARY KEY,
            iterations bigint,
            salt blob,
            sha1_stored_key blob,
            sha1_server_key blob,
            sha256_stored_key blob,
            sha256_server_key blob
        ) WITH compaction = {'class': 'LeveledCompactionStrategy'}",
        // One partition per user: the items (clustered by contact, so sorted) and the roster
        // version as a static column, so one read returns both consistently and one
        // single-partition conditional batch changes an item and bumps the version atomically.
        "CREATE TABLE IF NOT EXISTS {ks}.roster_items (
            user_jid text,
            contact text,
            version bigint static,
            name text,
            groups list<text>,
            subscription tinyint,
            ask_out boolean,
            approved boolean,
            PRIMARY KEY ((user_jid), contact)
        ) WITH compaction = {'class': 'LeveledCompactionStrategy'}",
        "CREATE TABLE IF NOT EXISTS {ks}.pending_in (
            user_jid text,
            contact text,
            stanza blob,
            PRIMARY KEY ((user_jid), contact)
        )",
        "CREATE TABLE IF NOT EXISTS {ks}.vcards (
            user_jid text PRIMARY KEY,
            vcard blob
        )",
        "CREATE TABLE IF NOT EXISTS {ks}.private_xml (
            user_jid text,
            item_key text,
            xml blob,
            PRIMARY KEY ((user_jid), item_key)
        )",
        "CREATE TABLE IF NOT EXISTS {ks}.blocklist (
            user_jid text,
            blocked text,
            PRIMARY KEY ((user_jid), blocked)
        )",
        // One partition per user. `last_id` is the last id handed out, `floor` the highest id
        // removed: the queue is exactly the ids in (floor, last_id], because ids are handed out
        // one by one and removal always takes a prefix. Both are static and change only by LWT.
        "CREATE TABLE IF NOT EXISTS {ks}.offline (
            user_jid text,
            id bigint,
            last_id bigint static,
            floor bigint static,
            stanza blob,
            PRIMARY KEY ((user_jid), id)
        )",
        "CREATE TABLE IF NOT EXISTS {ks}.last_activity (
            user_jid text PRIMARY KEY,
            seen bigint,
            status text
        )",
    ],
},
Migration {
    version: 2,
    description: "message archive (XEP-0313): messages by user and time bucket, by conversation, bucket markers, preferences",
    statements: &[
        // A bucket is 2^41 µs of ids (about 25 days): a partition holds one user's messages of
        // that span, newest first, so the usual query (the newest page) reads the partition's head.
        "CREATE TABLE IF NOT EXISTS {ks}.archive (
            user_jid text,
            bucket int,
            id bigint,
            with_jid text,
            stanza blob,
            PRIMARY KEY ((user_jid, bucket), id)
        ) WITH CLUSTERING ORDER BY (id DESC)",
        // The same rows per conversation, instead of a secondary index.
        "CREATE TABLE IF NOT EXISTS {ks}.archive_with (
            user_jid text,
            with_jid text,
            bucket int,
            id bigint,
            stanza blob,
            PRIMARY KEY ((user_jid, with_jid, bucket), id)
        ) WITH CLUSTERING ORDER BY (id DESC)",
        // Which buckets hold messages, overall (with_jid = '') and per contact: one small
        // partition per user, read once per query.
        "CREATE TABLE IF NOT EXISTS {ks}.archive_buckets (
            user_jid text,
            with_jid text,
            bucket int,
            PRIMARY KEY ((user_jid), with_jid, bucket)
        )",
        // default_mode: 0 always, 1 never, 2 roster (XEP-0441).
        "CREATE TABLE IF NOT EXISTS {ks}.archive_prefs (
            user_jid text PRIMARY KEY,
            default_mode tinyint,
            always set<text>,
            never set<text>
        )",
    ],
},
Migration {
    version: 3,
    description: "push registrations (XEP-0357)",
    statements: &[
        // One small partition per user: read when a notification may be due.
        "CREATE TABLE IF NOT EXISTS {ks}.push_registrations (
            user_jid text,
            service text,
            node text,
            options blob,
            PRIMARY KEY ((user_jid), service, node)
        )",
    ],
},
Migration {
    version: 4,
    description: "FAST tokens (XEP-0484)",
    statements: &[
        // Per user, one row per client (its SASL2 user-agent id); written with a TTL up to the
        // later token's expiry, so that forgotten clients' rows go away by themselves.
        "CREATE TABLE IF NOT EXISTS {ks}.fast_tokens (
            user_jid text,
            client text,
            current_token blob,
            new_token blob,
            PRIMARY KEY ((user_jid), client)
        )",
    ],
},
Migration {
    version: 5,
    description: "persistent MUC rooms (XEP-0045)",
    statements: &[
        // One row per persistent room: its configuration and affiliations, read when its actor
        // starts, written when an owner or admin changes them.
        "CREATE TABLE IF NOT EXISTS {ks}.muc_rooms (
            room_jid text PRIMARY KEY,
            record blob
        )",
    ],
},
Migration {
    version: 6,
    description: "the public MUC rooms of each service, and temporary rooms",
    statements: &[
        // One partition per service: what its disco#items lists, cluster-wide. Small (public
        // rooms only) and read whole.
        "CREATE TABLE IF NOT EXISTS {ks}.muc_listed_rooms (
            service text,
            room_jid text,
            name text,
            PRIMARY KEY ((service), room_jid)
        )",
    ],
},
Migration {
    version: 7,
    description: "PubSub and PEP nodes and items (XEP-0060, XEP-0163)",
    statements: &[
        // A service's nodes (an account's PEP nodes: a handful) in one partition.
        "CREATE TABLE IF NOT EXISTS {ks}.pubsub_nodes (
            service text,
            node text,
            record blob,
            PRIMARY KEY ((service), node)
        )",
        // A node's items in one partition, at most its max_items (read whole, ordered by
        // `published` when read).
        "CREATE TABLE IF NOT EXISTS {ks}.pubsub_items (
            service text,
            node text,
            item_id text,
            published bigint,
            publisher text,
            payload blob,
            PRIMARY KEY ((service, node), item_id)
        )",
    ],
},
Migration {
    version: 8,
    description: "XEP-0377 spam and abuse reports, for moderators",
    statements: &[
        // One partition per UTC day (days since the epoch), newest first: listing the latest
        // reads today's partition, then yesterday's, … Reports are rare, so a day is small.
        "CREATE TABLE IF NOT EXISTS {ks}.abuse_reports (
            day int,
            at bigint,
            reporter text,
            reported text,
            reason text,
            report_text text,
            stanza_ids list<text>,
            PRIMARY KEY ((day), at, reporter, reported)
        ) WITH CLUSTERING ORDER BY (at DESC, reporter ASC, reported ASC)",
    ],
},
Migration {
    version: 9,
    description: "the Things of XEP-0347 Thing Registries",
    statements: &[
        // One partition per registry, read whole when its actor starts (a registry of 100,000
        // small Things is a few tens of MB: split it by a bucket when registries outgrow that).
        "CREATE TABLE IF NOT EXISTS {ks}.iot_things (
            registry text,
            thing text,
            record blob,
            PRIMARY KEY ((registry), thing)
        )",
    ],
}];

/// Keyspace names go into DDL unquoted, so they are checked (CQL's own rule for unquoted names).
pub(crate) fn check_keyspace_name(name: &str) -> Result<(), StoreError> {
    let valid = !name.is_empty()
        && name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!(
            "invalid keyspace name {name:?}"
        )))
    }
}

/// The keyspace DDL for a server.
pub fn keyspace_ddl(flavor: Flavor, keyspace: &str, replication: &str) -> String {
    match flavor {
        Flavor::Scylla => format!(
            "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication} AND durable_writes = true \
             AND tablets = {{'enabled': false}}"
        ),
        Flavor::Cassandra | Flavor::Auto => {
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication} AND durable_writes = true"
            )
        }
    }
}

async fn detect(session: &Session) -> Flavor {
    match session
        .query_unpaged("SELECT key FROM system.scylla_local LIMIT 1", ())
        .await
    {
        Ok(_) => Flavor::Scylla,
        Err(_) => Flavor::Cassandra,
    }
}

async fn ddl(session: &Session, cql: &str) -> Result<(), StoreError> {
    session
        .query_unpaged(cql, ())
        .await
        .map_err(|error| match execution_error(error) {
            StoreError::Corrupt(message) => {
                StoreError::Corrupt(format!("schema statement failed: {message}\n{cql}"))
            }
            other => other,
        })?;
    session.await_schema_agreement().await.map_err(|error| {
        StoreError::Unavailable(format!("no schema agreement after `{cql}`: {error}"))
    })?;
    Ok(())
}

/// The versions recorded in `schema_migrations`, sorted.
pub async fn applied_versions(session: &Session, keyspace: &str) -> Result<Vec<i32>, StoreError> {
    let result = session
        .query_unpaged(
            format!("SELECT version FROM {keyspace}.schema_migrations"),
            (),
        )
        .await
        .map_err(execution_error)?;
    let mut versions: Vec<i32> = rows::<(i32,)>(result, "schema_migrations")?
        .into_iter()
        .map(|(v,)| v)
        .collect();
    versions.sort_unstable();
    Ok(versions)
}

/// Creates the keyspace if missing and applies every migration not yet recorded. Returns the
/// versions applied by this call.
pub async fn migrate(session: &Session, config: &ScyllaConfig) -> Result<Vec<i32>, StoreError> {
    let ks = &config.keyspace;
    check_keyspace_name(ks)?;
    let flavor = match config.flavor {
        Flavor::Auto => detect(session).await,
        other => other,
    };
    ddl(session, &keyspace_ddl(flavor, ks, &config.replication)).await?;
    ddl(
        session,
        &format!(
            "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (version int PRIMARY KEY, description text, applied_at timestamp)"
        ),
    )
    .await?;
    let done = applied_versions(session, ks).await?;
    if let Some(newest) = done
        .last()
        .filter(|newest| **newest > MIGRATIONS.last().map_or(0, |m| m.version))
    {
        tracing::warn!(keyspace = %ks, newest, "the schema is newer than this build knows; running anyway");
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
        tracing::info!(keyspace = %ks, version = migration.version, description = migration.description, "applying schema migration");
        for statement in migration.statements {
            ddl(session, &statement.replace("{ks}", ks)).await?;
        }
        let mut record = scylla::statement::Statement::new(format!(
            "INSERT INTO {ks}.schema_migrations (version, description, applied_at) VALUES (?, ?, toTimestamp(now()))"
        ));
        record.set_consistency(config.consistency);
        session
            .query_unpaged(record, (migration.version, migration.description))
            .await
            .map_err(execution_error)?;
        applied.push(migration.version);
    }
    Ok(applied)
}
