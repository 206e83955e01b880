//! Command line: one subcommand per scenario, each flattening the options every scenario shares.
//! One file past 450 lines on purpose: every scenario's options side by side, read as one page.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::addr::parse_source_addresses;

/// Load generator for XMPP servers: speaks real c2s XMPP (STARTTLS or direct TLS, SASL, resource
/// binding) to any standards-compliant server.
#[derive(Parser, Debug)]
#[command(name = "starling-loadtest", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Subcommand, Debug)]
pub enum Scenario {
    /// Log in N users with bounded concurrency (logins/s, login latency), then hold the sessions
    /// idle while sampling the server's RSS (bytes per session).
    Connect(ConnectArgs),
    /// M pairs exchange one-to-one messages, open-loop at a fixed aggregate rate or closed-loop at
    /// saturation (throughput, latency percentiles, loss).
    Chat(ChatArgs),
    /// N users with K mutual contacts each (built in a measured setup phase) change their
    /// presence at an aggregate rate (fan-out latency at each contact, deliveries/s).
    Presence(PresenceArgs),
    /// N users fill their partners' archives, then query the newest page of their own archive
    /// (XEP-0313 + XEP-0059) at an aggregate rate (query latency, pages/s, results per page).
    Mam(MamArgs),
    /// N users in R rooms (XEP-0045, built in a measured setup phase) send groupchat messages at
    /// an aggregate rate (fan-out latency at every occupant, deliveries/s).
    Muc(MucArgs),
    /// One publisher and N contacts whose clients ask for its PEP node (XEP-0163, +notify in
    /// their caps): the publisher publishes at a rate (notification latency at every contact,
    /// notifications/s).
    Pep(PepArgs),
    /// User 0 with N contacts that each published on PEP logs in again and again: the login and
    /// the time until every contact's last item arrived (XEP-0163 §4.3.3), server CPU per login.
    PepLogin(PepLoginArgs),
    /// M pairs exchange messages as in chat, every session with XEP-0198 stream management; the
    /// receivers' connections drop and resume (a fraction at a time, or all at once: --storm)
    /// (resumptions, resume latency, messages lost and duplicated, server RSS detached).
    Mobile(MobileArgs),
    /// N small device sessions publish sensor readings (XEP-0323-shaped messages, no body) to
    /// their owners (the first K users) at an aggregate rate spread evenly over the devices
    /// (reading latency at the owner, server RSS per device session, server CPU per reading).
    Devices(DevicesArgs),
    /// Run the steps of a TOML scenario file in order (see docs/loadtest.md).
    Run(RunArgs),
    /// Merge the JSON reports of several harness processes that split the user space.
    Merge(MergeArgs),
    /// Render JSON reports as one HTML page with inline SVG charts.
    Report(ReportArgs),
    /// The harness spread over a Kubernetes Job: worker pods started together, reports merged.
    #[command(subcommand)]
    Kube(KubeCommand),
}

#[derive(Subcommand, Debug)]
pub enum KubeCommand {
    /// Create the Job of workers (in the namespace of the kubeconfig, or of this pod), release
    /// them together once all are ready, merge their reports, delete what the run created.
    Run(KubeRunArgs),
    /// What each worker pod runs (the coordinator writes this command into the Job).
    Worker(KubeWorkerArgs),
}

#[derive(Args, Debug, Clone)]
pub struct KubeRunArgs {
    /// The image of the worker pods: it must have starling-loadtest on its PATH.
    #[arg(long)]
    pub image: String,
    /// Worker pods.
    #[arg(long, default_value_t = 2)]
    pub workers: u32,
    /// Accounts each worker drives: worker i gets 1 + i*U … (i+1)*U.
    #[arg(long)]
    pub users_per_worker: u64,
    /// The run's name (the Job, its ServiceAccount, Role and ConfigMaps) [default: starling-loadtest-RANDOM].
    #[arg(long)]
    pub name: Option<String>,
    /// [default: the kubeconfig's namespace, or this pod's]
    #[arg(long)]
    pub namespace: Option<String>,
    /// A Secret whose `password` key the workers use (as STARLING_LOADTEST_PASSWORD).
    #[arg(long)]
    pub password_secret: Option<String>,
    /// CPU each worker pod requests.
    #[arg(long, default_value = "1")]
    pub cpu: String,
    /// Seconds for the whole run, pods started to reports merged.
    #[arg(long, default_value_t = 900)]
    pub timeout_seconds: u64,
    /// The merged report.
    #[arg(short = 'o', long, default_value = "merged.json")]
    pub output: PathBuf,
    /// Leave the Job, its pods and ConfigMaps for inspection.
    #[arg(long)]
    pub keep: bool,
    /// The scenario and its options as for a local run, after `--` (e.g. `-- chat --host … --rate 5000`);
    /// each worker adds --first-user, --users and --json-out.
    #[arg(last = true, required = true)]
    pub scenario: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct KubeWorkerArgs {
    #[arg(long)]
    pub run: String,
    #[arg(long)]
    pub users_per_worker: u64,
    #[arg(last = true, required = true)]
    pub scenario: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The scenario file.
    pub file: PathBuf,
    /// Password shared by all test accounts (overrides the file's).
    #[arg(long, env = "STARLING_LOADTEST_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Directory for each step's JSON report (STEP-NAME.json) [default: the file's json_dir, else none].
    #[arg(long)]
    pub json_dir: Option<PathBuf>,
    /// Only parse the file and list its steps.
    #[arg(long)]
    pub check: bool,
}

#[derive(Args, Debug, Clone)]
pub struct MergeArgs {
    /// Reports of the same scenario written with --json-out.
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// Where to write the merged report.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// Reports written with --json-out (or by merge).
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// The HTML file to write.
    #[arg(long)]
    pub html: PathBuf,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct PresenceArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Contacts in each user's roster (mutual subscriptions); odd values need an even --users.
    #[arg(long, default_value_t = 10)]
    pub contacts: u64,
    /// Aggregate presence updates per second over all users.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of updates.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait after the last update for deliveries still in flight.
    #[arg(long, default_value_t = 5.0)]
    pub drain_seconds: f64,
    /// Seconds allowed for the roster and subscription setup.
    #[arg(long, default_value_t = 60.0)]
    pub setup_timeout: f64,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct MucArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Rooms; user i joins room i mod R.
    #[arg(long, default_value_t = 10)]
    pub rooms: u64,
    /// Aggregate groupchat messages per second over all users.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of messages.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait after the last message for deliveries still in flight.
    #[arg(long, default_value_t = 5.0)]
    pub drain_seconds: f64,
    /// Seconds allowed for creating and joining the rooms.
    #[arg(long, default_value_t = 60.0)]
    pub setup_timeout: f64,
    /// The MUC service's domain (default: conference.DOMAIN).
    #[arg(long)]
    pub service: Option<String>,
    /// Roles whose presence the rooms broadcast (`muc#roomconfig_presencebroadcast`, e.g.
    /// `moderator`: joins in a big room cost one presence each, not one per occupant); default:
    /// the server's room default.
    #[arg(long, value_delimiter = ',')]
    pub presence_broadcast: Vec<String>,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct DevicesArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Owners: users 0..K; user i ≥ K is a device of owner i mod K [default: --users / 100, at least 1].
    #[arg(long)]
    pub owners: Option<u64>,
    /// Aggregate readings per second over all devices.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of readings.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait after the last reading for those still in flight.
    #[arg(long, default_value_t = 5.0)]
    pub drain_seconds: f64,
    /// Seconds the sessions stay idle after logging in before the server's RSS is sampled.
    #[arg(long, default_value_t = 5.0)]
    pub idle_seconds: f64,
}

impl DevicesArgs {
    pub fn owners(&self) -> u64 {
        self.owners.unwrap_or(self.common.users / 100).clamp(1, self.common.users.saturating_sub(1).max(1))
    }
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct PepArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Items the publisher (user 0) publishes a second; users 1..N are its contacts.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait after the last item for notifications still in flight.
    #[arg(long, default_value_t = 5.0)]
    pub drain_seconds: f64,
    /// Seconds allowed for subscriptions, caps and the warm-up item.
    #[arg(long, default_value_t = 120.0)]
    pub setup_timeout: f64,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct PepLoginArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Logins of user 0, one after another.
    #[arg(long, default_value_t = 20)]
    pub logins: u64,
    /// The longest a login waits for every contact's item.
    #[arg(long, default_value_t = 10.0)]
    pub wait_seconds: f64,
    /// Milliseconds between a logout and the next login.
    #[arg(long, default_value_t = 300)]
    pub pause_ms: u64,
    /// Seconds allowed for subscriptions, caps and the contacts' items.
    #[arg(long, default_value_t = 120.0)]
    pub setup_timeout: f64,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct MamArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Chat messages each user sends its partner (user 2k <-> 2k+1) before the queries; 0 queries
    /// whatever the archives already hold.
    #[arg(long, default_value_t = 20)]
    pub seed_messages: u64,
    /// Aggregate archive queries per second over all users.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Messages per page (RSM `<max/>`); each query asks for the newest page.
    #[arg(long, default_value_t = 50)]
    pub page: u32,
    /// Seconds of queries.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait after the last query for answers still in flight.
    #[arg(long, default_value_t = 5.0)]
    pub drain_seconds: f64,
    /// Seconds allowed for the seeding.
    #[arg(long, default_value_t = 60.0)]
    pub setup_timeout: f64,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct MobileArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Receivers (the phones whose connections drop) [default: --users / 2].
    #[arg(long)]
    pub pairs: Option<u64>,
    /// Users that send (never dropping): users 0..S; receiver k (user S+k) hears from sender
    /// k mod S. Fewer senders than receivers makes a storm of many phones fit in the fd limits
    /// [default: --pairs].
    #[arg(long)]
    pub senders: Option<u64>,
    /// Aggregate messages per second over all senders.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Seconds between two rounds of drops.
    #[arg(long, default_value_t = 5.0)]
    pub drop_every: f64,
    /// Fraction of the receivers that drop in each round.
    #[arg(long, default_value_t = 0.1)]
    pub drop_fraction: f64,
    /// Milliseconds between a drop and the new connection.
    #[arg(long, default_value_t = 200)]
    pub reconnect_delay_ms: u64,
    /// Instead of rounds, every receiver drops at once half-way through.
    #[arg(long)]
    pub storm: bool,
    /// Seconds to wait after sending stops for messages still in flight.
    #[arg(long, default_value_t = 5.0)]
    pub drain_seconds: f64,
    /// Every other resumption of a receiver goes through the server at this port of --host (in
    /// a cluster: another edge), the rest through --port.
    #[arg(long)]
    pub resume_elsewhere_port: Option<u16>,
}

/// SASL mechanism used for every login. Only one is tried: a load test should measure one known
/// code path, not whatever the negotiation happens to pick.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Mechanism {
    #[value(name = "SCRAM-SHA-256")]
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-1")]
    #[serde(rename = "SCRAM-SHA-1")]
    ScramSha1,
    #[value(name = "PLAIN")]
    #[serde(rename = "PLAIN")]
    Plain,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoginMethod {
    Rfc6120,
    Sasl2,
    Fast,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }
}

/// Options every scenario shares: where to connect, which accounts, how to log in.
#[derive(Args, Debug, Clone, Serialize)]
pub struct Common {
    /// Server host name or IP address to connect to.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// TCP port [default: 5222, or 5223 with --direct-tls].
    #[arg(long)]
    pub port: Option<u16>,
    /// XMPP domain of the accounts (stream `to`, TLS SNI, JIDs).
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// Accounts are PREFIX<n>@DOMAIN.
    #[arg(long, default_value = "user")]
    pub user_prefix: String,
    /// Password shared by all test accounts.
    #[arg(long, env = "STARLING_LOADTEST_PASSWORD", hide_env_values = true)]
    #[serde(skip)]
    pub password: String,
    /// Number of the first account used.
    #[arg(long, default_value_t = 1)]
    pub first_user: u64,
    /// Accounts are the names in FILE, one localpart per line in order (chat pairs lines 2k+1 and
    /// 2k+2), instead of PREFIX<n>; --first-user counts lines from 1. For runs that need a chosen
    /// set of users, e.g. pairs whose two sides a cluster places on the same or on different nodes.
    #[arg(long, value_parser = parse_user_list)]
    pub user_list: Option<UserList>,
    /// Accounts to log in (connect, presence); chat uses 2 x --pairs, --pairs defaulting to users / 2.
    #[arg(long, default_value_t = 100)]
    pub users: u64,
    /// SASL mechanism (case-insensitive).
    #[arg(long, value_enum, ignore_case = true, default_value = "SCRAM-SHA-256")]
    pub mechanism: Mechanism,
    /// How a client logs in: RFC 6120 SASL, a stream restart and a bind; XEP-0388 SASL2 with a
    /// XEP-0386 Bind2 bind in the same round trip; or `fast`, SASL2 with a XEP-0484 FAST token
    /// (HT-SHA-256-NONE) — each user first gets one in an unmeasured SASL2 login with --mechanism.
    #[arg(long, value_enum, default_value = "rfc6120")]
    pub login: LoginMethod,
    /// Local addresses to connect from, round-robin: a range "127.0.0.2-127.0.0.20" and/or a
    /// comma-separated list. Each source address has its own ~28k ephemeral ports.
    #[arg(long, value_parser = parse_source_addresses)]
    pub source_addresses: Option<SourceAddresses>,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// PID of the server, to sample its RSS (/proc/PID/status) and CPU time (/proc/PID/stat).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Write every number of the run as a JSON document to FILE.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// TLS from the first byte (XEP-0368) instead of STARTTLS.
    #[arg(long)]
    pub direct_tls: bool,
    /// XMPP over WebSocket (RFC 7395) on TLS, at this path (`wss://HOST:PORT/xmpp-websocket`),
    /// instead of the XML stream over TCP.
    #[arg(long, num_args = 0..=1, default_missing_value = "/xmpp-websocket")]
    pub websocket: Option<String>,
    /// Resource requested at bind (the server may assign another; the bound JID is used).
    #[arg(long, default_value = "loadtest")]
    pub resource: String,
    /// Send initial presence after binding (chat always does).
    #[arg(long)]
    pub presence: bool,
    /// Time allowed for one login, TCP connect to bound resource.
    #[arg(long, default_value_t = 30.0)]
    pub login_timeout: f64,
    /// Runtime worker threads [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Parsed `--user-list`: the account names, in order. Reports record how many there were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserList(pub Arc<Vec<String>>);

impl Serialize for UserList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0.len() as u64)
    }
}

fn parse_user_list(path: &str) -> Result<UserList, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("cannot read {path}: {error}"))?;
    let names: Vec<String> = text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')).map(str::to_owned).collect();
    if names.is_empty() {
        return Err(format!("{path} names no account"));
    }
    Ok(UserList(Arc::new(names)))
}

/// Parsed `--source-addresses`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceAddresses(pub Vec<IpAddr>);

impl Common {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(if self.websocket.is_some() { 5443 } else if self.direct_tls { 5223 } else { 5222 })
    }

    pub fn login_timeout(&self) -> anyhow::Result<Duration> {
        Duration::try_from_secs_f64(self.login_timeout)
            .map_err(|_| anyhow::anyhow!("--login-timeout must be a non-negative number of seconds"))
    }

    /// Account name of the `index`-th user of the run (0-based); `None` beyond the end of
    /// `--user-list`.
    pub fn username(&self, index: u64) -> Option<String> {
        let number = self.first_user + index;
        match &self.user_list {
            Some(list) => usize::try_from(number).ok().and_then(|n| list.0.get(n.checked_sub(1)?)).cloned(),
            None => Some(format!("{}{number}", self.user_prefix)),
        }
    }

    pub fn source_list(&self) -> &[IpAddr] {
        self.source_addresses.as_ref().map(|s| s.0.as_slice()).unwrap_or(&[])
    }
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct ConnectArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Seconds to hold the sessions idle after the last login.
    #[arg(long, default_value_t = 10)]
    pub hold_seconds: u64,
    /// Milliseconds between server RSS samples while holding.
    #[arg(long, default_value_t = 1000)]
    pub sample_interval_ms: u64,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct ChatArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Sender/receiver pairs: user 2k sends to user 2k+1 [default: --users / 2].
    #[arg(long)]
    pub pairs: Option<u64>,
    /// Aggregate messages per second over all senders; 0 = closed loop (saturation).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Closed loop: messages each sender keeps in flight.
    #[arg(long, default_value_t = 16)]
    pub window: u32,
    /// Seconds to wait after sending stops for messages still in flight.
    #[arg(long, default_value_t = 5.0)]
    pub drain_seconds: f64,
    /// Extra bytes of padding in each message body.
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
    /// Messages sent in the first SECONDS are counted but kept out of the latency percentiles
    /// (the per-second series still shows them): the server's first contact with each user.
    #[arg(long, default_value_t = 0.0)]
    pub warmup_seconds: f64,
    /// Federation: the receivers log in to the server at HOST:PORT instead, as users
    /// PREFIX1..PREFIX<pairs> of --receivers-domain (the senders are PREFIX1..PREFIX<pairs> of
    /// --domain), so that every message crosses from one server to the other over s2s.
    #[arg(long, requires = "receivers_domain")]
    pub receivers_at: Option<String>,
    #[arg(long, requires = "receivers_at")]
    pub receivers_domain: Option<String>,
}

impl ChatArgs {
    pub fn pairs(&self) -> u64 {
        self.pairs.unwrap_or(self.common.users / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_come_from_the_prefix_or_the_user_list() {
        let path = std::env::temp_dir().join(format!("starling-user-list-{}", std::process::id()));
        std::fs::write(&path, "# pairs on different nodes\nalice\n\n  bob \ncarol\n").expect("write");
        let cli = Cli::try_parse_from(["starling-loadtest", "connect", "--password", "x", "--first-user", "2"]).expect("parse");
        let Scenario::Connect(plain) = cli.scenario else { panic!("connect") };
        assert_eq!(plain.common.username(0).as_deref(), Some("user2"));
        let list = path.to_str().expect("utf-8 path");
        let cli = Cli::try_parse_from(["starling-loadtest", "connect", "--password", "x", "--first-user", "2", "--user-list", list]).expect("parse");
        let Scenario::Connect(listed) = cli.scenario else { panic!("connect") };
        assert_eq!(listed.common.username(0).as_deref(), Some("bob"));
        assert_eq!(listed.common.username(1).as_deref(), Some("carol"));
        assert_eq!(listed.common.username(2), None, "beyond the list");
        std::fs::write(&path, "# nothing\n").expect("write");
        assert!(Cli::try_parse_from(["starling-loadtest", "connect", "--password", "x", "--user-list", list]).is_err());
        let _ = std::fs::remove_file(path);
    }
}
