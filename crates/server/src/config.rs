//! The one configuration file: TOML, every key optional with the defaults below, and any key
//! overridable from the environment as `STARLING__SECTION__KEY=value` (value read as TOML when it
//! parses, as a string otherwise). `docs/configuration.md` shows these defaults; a test keeps the
//! two equal.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerSection,
    pub c2s: C2sSection,
    pub tls: TlsSection,
    pub admin: AdminSection,
    pub registration: RegistrationSection,
    pub sessions: SessionsSection,
    pub store: StoreSection,
    pub archive: ArchiveSection,
    pub cluster: ClusterSection,
}

/// Which parts of the server this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in one process, with in-process routing: the single-node default.
    #[default]
    All,
    /// Client connections only; users' sessions are reached over Kafka.
    Edge,
    /// Session actors for the owner partitions the Kafka group gives this node.
    Session,
}

/// Running as part of a cluster (docs/cluster.md).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSection {
    /// "all", "edge" or "session"; `starling serve --role` overrides it.
    pub role: Role,
    /// This node's id, unique in the cluster; empty picks one at start.
    pub node_id: String,
    /// Kafka bootstrap servers (roles edge and session).
    pub kafka_brokers: String,
    /// Prefix of the cluster's Kafka topics and group.
    pub kafka_prefix: String,
    /// Owner partitions: fixed when the cluster is created, the same on every node.
    pub partitions: u32,
    /// Replication factor of the topics the cluster creates.
    pub replication: i32,
    /// Seconds a silent session node keeps its partitions before the group moves them.
    pub session_timeout_seconds: u64,
    /// How long the Kafka producer waits to fill a batch (`linger.ms`). Every hop of a stanza pays
    /// it; under load batches form anyway while requests are in flight.
    pub kafka_linger_ms: u64,
    /// Redis holding the routing registry (roles edge and session).
    pub redis_url: String,
    /// Seconds a node stays alive in the registry without a heartbeat (sent every third of it);
    /// the resources of an edge silent for longer are reaped and announced unavailable.
    pub node_ttl_seconds: u64,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            role: Role::All,
            node_id: String::new(),
            kafka_brokers: "127.0.0.1:9092".into(),
            kafka_prefix: "starling".into(),
            partitions: 64,
            replication: 3,
            session_timeout_seconds: 10,
            kafka_linger_ms: 0,
            redis_url: "redis://127.0.0.1:6379/".into(),
            node_ttl_seconds: 10,
        }
    }
}

/// Message archiving (XEP-0313 MAM).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveSection {
    /// Archive messages and serve MAM queries.
    pub enabled: bool,
    /// What is archived for users without preferences: "always", "never" or "roster".
    pub default_mode: ArchiveMode,
    /// Days a message is kept; 0 keeps it for ever.
    pub retention_days: u64,
    /// Archive writes waiting at most; then senders wait (backpressure).
    pub queue: usize,
    /// Messages written per store call at most.
    pub batch: usize,
    /// Milliseconds a sender waits for queue room before its message is refused.
    pub submit_timeout_ms: u64,
    /// Milliseconds a small batch waits for more messages before it is written (group commit).
    pub linger_ms: u64,
    /// Page size when a query gives no `<max/>`.
    pub default_page: usize,
    /// Largest page served.
    pub max_page: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveMode {
    #[default]
    Always,
    Never,
    Roster,
}

impl Default for ArchiveSection {
    fn default() -> Self {
        ArchiveSection {
            enabled: true,
            default_mode: ArchiveMode::Always,
            retention_days: 0,
            queue: 131_072,
            batch: 16_384,
            submit_timeout_ms: 5000,
            linger_ms: 5,
            default_page: 50,
            max_page: 250,
        }
    }
}

/// Which backend holds accounts, rosters and the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// redb in `server.data_dir`: one node, nothing to run beside it.
    #[default]
    Embedded,
    /// ScyllaDB (or Apache Cassandra) over CQL: the cluster store.
    Scylla,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    pub backend: StoreBackend,
    /// `host:port` of one or more CQL nodes (backend = "scylla").
    pub scylla_contact_points: Vec<String>,
    /// Keyspace holding Starling's tables, created if missing.
    pub scylla_keyspace: String,
    /// CQL replication map used when the keyspace is created.
    pub scylla_replication: String,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            backend: StoreBackend::Embedded,
            scylla_contact_points: vec!["127.0.0.1:9042".into()],
            scylla_keyspace: "starling".into(),
            scylla_replication: starling_backend_scylla::DEFAULT_REPLICATION.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// The XMPP domain this server serves.
    pub domain: String,
    /// Where the embedded store and the generated certificate live.
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct C2sSection {
    /// Plain TCP listeners offering STARTTLS.
    pub starttls_listen: Vec<String>,
    /// Listeners speaking TLS from the first byte (XEP-0368).
    pub direct_tls_listen: Vec<String>,
    /// Refuse authentication before STARTTLS.
    pub require_tls: bool,
    /// Largest stanza accepted, in bytes; larger ones close the stream (`policy-violation`).
    pub max_stanza_bytes: usize,
    /// Deepest element nesting in a stanza.
    pub max_depth: usize,
    /// Most attributes on one element.
    pub max_attributes: usize,
    /// Seconds of silence before the server pings a client.
    pub ping_idle_seconds: u64,
    /// Seconds to wait for any answer to that ping.
    pub ping_timeout_seconds: u64,
    /// Seconds allowed from connect to a bound resource.
    pub negotiation_timeout_seconds: u64,
    /// Stanzas queued toward one client before it counts as too slow.
    pub client_queue: usize,
    /// Failed SASL attempts per connection before it is closed.
    pub max_auth_attempts: u32,
    /// Failures per address or account within the window before attempts are refused.
    pub auth_throttle_failures: u32,
    pub auth_throttle_window_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain; with `key_file` empty too, a self-signed one is generated.
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// `/metrics`, `/healthz`, `/readyz`. Keep it on loopback or a private network.
    pub listen: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationSection {
    /// XEP-0077 in-band registration.
    pub enabled: bool,
    /// Seconds between two registrations from one address.
    pub interval_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsSection {
    /// Threads hosting user actors; 0 means one per core.
    pub arbiters: usize,
    /// Offline messages kept per user.
    pub max_offline_per_user: usize,
    /// Seconds an actor without resources stays in memory.
    pub idle_actor_seconds: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection { domain: "localhost".into(), data_dir: "data".into() }
    }
}

impl Default for C2sSection {
    fn default() -> Self {
        C2sSection {
            starttls_listen: vec!["0.0.0.0:5222".into()],
            direct_tls_listen: vec!["0.0.0.0:5223".into()],
            require_tls: true,
            max_stanza_bytes: 262_144,
            max_depth: 32,
            max_attributes: 64,
            ping_idle_seconds: 120,
            ping_timeout_seconds: 30,
            negotiation_timeout_seconds: 60,
            client_queue: 1024,
            max_auth_attempts: 3,
            auth_throttle_failures: 5,
            auth_throttle_window_seconds: 60,
        }
    }
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection { listen: "127.0.0.1:5280".into() }
    }
}

impl Default for RegistrationSection {
    fn default() -> Self {
        RegistrationSection { enabled: false, interval_seconds: 60 }
    }
}

impl Default for SessionsSection {
    fn default() -> Self {
        SessionsSection { arbiters: 0, max_offline_per_user: 1000, idle_actor_seconds: 60 }
    }
}

impl Config {
    /// Reads `path` (if given; a missing default file is fine) and applies environment overrides.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                text.parse::<toml::Table>().with_context(|| format!("parsing {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, std::env::vars())?;
        Config::deserialize(toml::Value::Table(table)).context("invalid configuration")
    }
}

/// `STARLING__SECTION__KEY=value` sets `[section] key = value`.
fn apply_env(table: &mut toml::Table, vars: impl Iterator<Item = (String, String)>) -> anyhow::Result<()> {
    for (name, value) in vars {
        let Some(path) = name.strip_prefix("STARLING__") else { continue };
        let Some((section, key)) = path.split_once("__") else {
            anyhow::bail!("{name}: expected STARLING__SECTION__KEY");
        };
        let value = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value));
        let section = table
            .entry(section.to_lowercase())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("{name}: [{section}] is not a table"))?;
        section.insert(key.to_lowercase(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_defaults_match_the_code() {
        let doc = include_str!("../../../docs/configuration.md");
        let start = doc.find("```toml\n").expect("docs/configuration.md has a toml block") + "```toml\n".len();
        let end = start + doc[start..].find("```").expect("closed toml block");
        let documented: Config = toml::from_str(&doc[start..end]).expect("documented config parses with unknown keys denied");
        assert_eq!(documented, Config::default(), "docs/configuration.md must show the defaults");
    }

    #[test]
    fn environment_overrides_file_values() {
        let mut table: toml::Table = "[server]\ndomain = 'a.example'\n".parse().expect("toml");
        let vars = [
            ("STARLING__SERVER__DOMAIN".to_owned(), "b.example".to_owned()),
            ("STARLING__C2S__REQUIRE_TLS".to_owned(), "false".to_owned()),
            ("STARLING__C2S__STARTTLS_LISTEN".to_owned(), "['127.0.0.1:1']".to_owned()),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        apply_env(&mut table, vars.into_iter()).expect("applies");
        let config = Config::deserialize(toml::Value::Table(table)).expect("valid");
        assert_eq!(config.server.domain, "b.example");
        assert!(!config.c2s.require_tls);
        assert_eq!(config.c2s.starttls_listen, vec!["127.0.0.1:1".to_owned()]);
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("[server]\ndomian = 'x'\n").is_err());
    }
}
