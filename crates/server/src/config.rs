//! The one configuration file: TOML, every key optional with its default, and any key
//! overridable from the environment as `STARLING__SECTION__KEY=value` (value read as TOML when it
//! parses, as a string otherwise). `docs/configuration.md` shows the defaults; a test keeps the
//! two equal.
//!
//! Sections a crate owns are that crate's config struct, deserialised directly with its defaults
//! (`[c2s]`, `[registration]`, `[components]`, `[websocket]`, `[bytestreams]`: the edge; `[upload]`: `starling_upload`; `[s2s]`: `starling_s2s`; `[sessions]`, `[archive]`, `[push]`, `[muc]`, `[pep]`, `[pubsub]`, `[iot]`, `[external_services]`: the
//! session layer; `[sm]`:
//! `starling_cluster::gateway`, read by both); the
//! sections below are the server's own. The backends' defaults are read from their crates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use starling_backend_kafka::KafkaConfig;
use starling_backend_scylla::ScyllaConfig;
use starling_cluster::gateway::SmConfig;
use starling_edge::{BytestreamsConfig, C2sConfig, ComponentsConfig, FastConfig, RegistrationConfig, WebSocketConfig};
use starling_s2s::S2sConfig;
use starling_upload::UploadConfig;
pub use hosts::HostSection;
use starling_session::{ArchiveConfig, ExternalServicesConfig, IotConfig, MucConfig, PepConfig, PubSubConfig, PushConfig, SessionsConfig};

mod hosts;

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerSection,
    /// Virtual hosts: further domains served beside `[server] domain`, each with its own
    /// `[hosts."DOMAIN"]` table.
    pub hosts: BTreeMap<String, HostSection>,
    pub c2s: C2sConfig,
    pub tls: TlsSection,
    pub admin: AdminSection,
    pub registration: RegistrationConfig,
    pub sessions: SessionsConfig,
    pub store: StoreSection,
    pub archive: ArchiveConfig,
    pub sm: SmConfig,
    pub push: PushConfig,
    pub muc: MucConfig,
    pub pep: PepConfig,
    pub pubsub: PubSubConfig,
    pub iot: IotConfig,
    pub external_services: ExternalServicesConfig,
    pub components: ComponentsConfig,
    pub s2s: S2sConfig,
    pub websocket: WebSocketConfig,
    pub bytestreams: BytestreamsConfig,
    pub upload: UploadConfig,
    pub fast: FastConfig,
    pub cluster: ClusterSection,
    pub telemetry: TelemetrySection,
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
    /// Milliseconds a silent session node keeps its partitions before the group moves them: the
    /// larger part of a takeover after a crash. Unset: the shortest the brokers allow
    /// (`group.min.session.timeout.ms`, 6,000 unless lowered), at least 1,500. Kafka refuses a
    /// value outside its brokers' limits (docs/cluster.md, "Takeover time").
    pub session_timeout_ms: Option<u64>,
    /// How long the Kafka producer waits to fill a batch (`linger.ms`). Every hop of a stanza pays
    /// it; under load batches form anyway while requests are in flight.
    pub kafka_linger_ms: u64,
    /// Redis holding the routing registry (roles edge and session).
    pub redis_url: String,
    /// Seconds a node stays alive in the registry without a heartbeat (sent every third of it);
    /// the resources of an edge silent for longer are reaped and announced unavailable.
    pub node_ttl_seconds: u64,
    /// librdkafka properties for every Kafka client (SASL, TLS, … of a managed Kafka).
    pub kafka_settings: BTreeMap<String, String>,
    /// A file holding the SASL password (`sasl.password`), e.g. a mounted Secret.
    pub kafka_password_file: String,
    /// A file holding Redis' AUTH password (the URL's, if any, otherwise). `rediss://` URLs
    /// connect over TLS.
    pub redis_password_file: String,
}

impl Default for ClusterSection {
    fn default() -> Self {
        let kafka = KafkaConfig::default();
        ClusterSection {
            role: Role::All,
            node_id: String::new(),
            kafka_brokers: kafka.brokers,
            kafka_prefix: kafka.prefix,
            partitions: kafka.partitions,
            replication: kafka.replication,
            session_timeout_ms: None,
            kafka_linger_ms: u64::try_from(kafka.linger.as_millis()).unwrap_or(u64::MAX),
            redis_url: "redis://127.0.0.1:6379/".into(),
            node_ttl_seconds: 10,
            kafka_settings: BTreeMap::new(),
            kafka_password_file: String::new(),
            redis_password_file: String::new(),
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
    /// Log in with this user (PasswordAuthenticator) and the password in `scylla_password_file`.
    pub scylla_username: String,
    pub scylla_password_file: String,
    /// The data centre whose nodes are asked first (and whose replicas LOCAL_QUORUM means).
    pub scylla_local_datacenter: String,
    /// Connect over TLS, trusting the CA certificates (PEM) in this file; empty: plain CQL.
    pub scylla_tls_ca_file: String,
}

impl Default for StoreSection {
    fn default() -> Self {
        let scylla = ScyllaConfig::default();
        StoreSection {
            backend: StoreBackend::Embedded,
            scylla_contact_points: scylla.contact_points,
            scylla_keyspace: scylla.keyspace,
            scylla_replication: scylla.replication,
            scylla_username: String::new(),
            scylla_password_file: String::new(),
            scylla_local_datacenter: String::new(),
            scylla_tls_ca_file: String::new(),
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
    /// On SIGTERM: how long draining may take before the process exits regardless (below
    /// Kubernetes' default grace period of 30 s).
    pub shutdown_grace_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain; with `key_file` empty too, a self-signed one is generated.
    pub cert_file: String,
    pub key_file: String,
    /// How often the files are checked for a renewed pair (also on SIGHUP); 0: on SIGHUP only.
    pub reload_check_seconds: u64,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection { cert_file: String::new(), key_file: String::new(), reload_check_seconds: 60 }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// `/metrics`, `/healthz`, `/readyz` and the admin API. Keep it on loopback or a private network.
    pub listen: String,
    /// The admin API's bearer token (a file of at least 32 characters); empty: `admin.token` in
    /// the data directory, generated at the first start.
    pub token_file: String,
    /// Accounts (bare JIDs) that may run the XEP-0133 administration commands.
    pub jids: Vec<String>,
}

/// Traces and log lines (docs/operations.md, "Traces").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySection {
    /// The OTLP/HTTP traces endpoint (protobuf), e.g. `http://otel-collector:4318/v1/traces`;
    /// empty: no traces.
    pub otlp_endpoint: String,
    /// The share of client stanzas an edge starts a trace for, 0.0–1.0.
    pub sample_ratio: f64,
    pub log_format: LogFormatSetting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormatSetting {
    #[default]
    Text,
    Json,
}

impl From<LogFormatSetting> for starling_telemetry::LogFormat {
    fn from(setting: LogFormatSetting) -> Self {
        match setting {
            LogFormatSetting::Text => starling_telemetry::LogFormat::Text,
            LogFormatSetting::Json => starling_telemetry::LogFormat::Json,
        }
    }
}

impl Default for TelemetrySection {
    fn default() -> Self {
        TelemetrySection { otlp_endpoint: String::new(), sample_ratio: 0.01, log_format: LogFormatSetting::Text }
    }
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection { domain: "localhost".into(), data_dir: "data".into(), shutdown_grace_seconds: 25 }
    }
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection { listen: "127.0.0.1:5280".into(), token_file: String::new(), jids: Vec::new() }
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

    /// `[upload] public_url`, or the first HTTP listener's port on the server's domain.
    pub fn upload_base_url(&self) -> Option<String> {
        if !self.upload.public_url.is_empty() {
            return Some(self.upload.public_url.clone());
        }
        let websocket = &self.websocket;
        let (scheme, address) = websocket.tls_listen.first().map(|address| ("https", address)).or_else(|| websocket.listen.first().map(|address| ("http", address)))?;
        let (_, port) = address.rsplit_once(':')?;
        Some(format!("{scheme}://{}:{port}", self.server.domain))
    }

    /// What no process of this configuration could serve with, said before anything starts
    /// (`serve` and `check-config` both ask): unknown keys and bad values were refused by
    /// [`load`](Self::load) already.
    pub fn check(&self) -> anyhow::Result<()> {
        let hosts = self.hosts()?;
        self.check_hosts()?;
        if self.cluster.role != Role::All && self.store.backend == StoreBackend::Embedded {
            anyhow::bail!("[cluster] role = {:?} needs a shared store: the embedded store has one process as its writer; set [store] backend = \"scylla\"", self.cluster.role);
        }
        // Upload's files are served by the processes with client listeners (not session nodes).
        if self.upload.enabled && self.cluster.role != Role::Session && self.upload_base_url().is_none() {
            anyhow::bail!("[upload] is on but there is no HTTP listener for its files: set [websocket] listen or tls_listen");
        }
        if let Some(jid) = self.admin.jids.iter().find(|jid| starling_protocol::Jid::new(jid).map_or(true, |jid| jid.node().is_none() || !jid.is_bare() || !hosts.serves(jid.domain()))) {
            anyhow::bail!("[admin] jids: {jid} is not the bare JID of an account on a served domain");
        }
        if !(0.0..=1.0).contains(&self.telemetry.sample_ratio) {
            anyhow::bail!("[telemetry] sample_ratio must be between 0.0 and 1.0, got {}", self.telemetry.sample_ratio);
        }
        if self.s2s.enabled && self.cluster.role != Role::All {
            // The bus does not carry stanzas for other domains yet: federation runs in one process.
            anyhow::bail!("[s2s] federation is served by a single process (role = \"all\") for now; a cluster's edges do not hold s2s streams yet");
        }
        if let Some(problem) = self.s2s.problems().into_iter().next() {
            anyhow::bail!("{problem}");
        }
        if self.cluster.partitions == 0 {
            anyhow::bail!("[cluster] partitions must be at least 1");
        }
        // The secrets' files are read when the process starts (they are mounted in its pod, not
        // necessarily where the configuration is checked).
        let kafka_settings = self.cluster.kafka_settings.iter().map(|(key, value)| (key.clone(), value.clone())).collect();
        KafkaConfig { settings: kafka_settings, ..KafkaConfig::default() }.check().map_err(anyhow::Error::msg)?;
        if self.store.scylla_password_file.is_empty() != self.store.scylla_username.is_empty() {
            anyhow::bail!("[store] scylla_username and scylla_password_file go together");
        }
        Ok(())
    }
}

/// The secret in `path` (trailing whitespace and newline removed); none when `path` is empty.
pub fn secret(path: &str) -> anyhow::Result<Option<String>> {
    if path.is_empty() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the secret {path}"))?;
    Ok(Some(text.trim_end().to_owned()))
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
    fn check_refuses_what_no_process_could_serve_with() {
        let config = |toml: &str| toml::from_str::<Config>(toml).expect("parses");
        assert!(Config::default().check().is_ok());
        let refused = |toml: &str| config(toml).check().expect_err(toml).to_string();
        assert!(refused("[cluster]\nrole = 'edge'\n").contains("shared store"));
        assert!(refused("[server]\ndomain = 'alice@example.com'\n").contains("bare domain"));
        assert!(refused("[upload]\nenabled = true\n").contains("HTTP listener"));
        assert!(refused("[cluster]\nkafka_settings = { \"enable.auto.commit\" = \"true\" }\n").contains("Starling's own"));
        assert!(refused("[store]\nscylla_username = 'starling'\n").contains("go together"));
        assert!(config("[cluster]\nkafka_settings = { \"security.protocol\" = \"SASL_SSL\" }\n").check().is_ok());
        // A session node serves no files: upload's listener is the edges' business.
        let session_with_upload = "[cluster]\nrole = 'session'\n[store]\nbackend = 'scylla'\n[upload]\nenabled = true\n";
        assert!(config(session_with_upload).check().is_ok());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("[server]\ndomian = 'x'\n").is_err());
    }
}
