//! `starling`: the XMPP server binary. Reads the configuration, wires the embedded backends, the
//! session layer and the edge together, and serves the admin HTTP port; or manages accounts.

mod admin;
mod admin_api;
mod config;
mod serve;
mod store;
mod users;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "starling", version, about = "Starling XMPP server")]
struct Cli {
    /// Configuration file (TOML). Without it, defaults plus STARLING__SECTION__KEY overrides.
    #[arg(long, short, global = true, env = "STARLING_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: every role in one process by default, or one role of a cluster.
    Serve {
        /// Overrides `[cluster] role`.
        #[arg(long, value_enum)]
        role: Option<config::Role>,
    },
    /// Manage accounts: through the admin API of the server running with this configuration when
    /// it answers, else in the store directly (add-bulk always: stop a server on the embedded store).
    #[command(subcommand)]
    User(users::UserCommand),
    /// The latest XEP-0377 spam and abuse reports users made with their blocks, newest first, one
    /// JSON object a line (stop the server first on the embedded store).
    Reports {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Database schema.
    #[command(subcommand)]
    Db(DbCommand),
    /// Reads the configuration (file and STARLING__ variables) as `serve` would and says whether
    /// a process could serve with it; exits non-zero with the reason if not. Starts nothing.
    CheckConfig {
        /// Overrides `[cluster] role`.
        #[arg(long, value_enum)]
        role: Option<config::Role>,
        /// Also reach the cluster's Kafka and Redis as `serve` would: the logins, and the owners
        /// topic's partition count against `[cluster] partitions`.
        #[arg(long)]
        connect: bool,
    },
    /// Where a user is in a cluster (from the registry in Redis): the owner partition, the session
    /// node serving it and each bound resource's edge, connection, priority and presence.
    Where {
        /// Localpart (`alice`) or bare JID on this server's domain.
        user: String,
    },
}

#[derive(Subcommand)]
enum DbCommand {
    /// Create the keyspace if needed and apply pending schema migrations (also done by `serve`).
    Migrate,
}

// mimalloc instead of glibc's allocator: archive batches allocate and free tens of thousands of
// buffers at once, and glibc's consolidation of them cost ~20 % of chat throughput with archiving
// (docs/benchmarks.md, "Issue 5: profiles").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Libraries that build their own TLS client (rediss:// in the Redis client) take the process
    // default, and the tree holds two providers (ring, and aws-lc-rs from object_store): ring,
    // as the edge uses, named once here.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = config::Config::load(cli.config.as_deref())?;
    starling_telemetry::init_logging(config.telemetry.log_format.into());
    match cli.command {
        Command::Serve { role } => {
            let mut config = config;
            if let Some(role) = role {
                config.cluster.role = role;
            }
            config.check()?;
            serve::run(config)
        }
        Command::CheckConfig { role, connect } => {
            let mut config = config;
            if let Some(role) = role {
                config.cluster.role = role;
            }
            config.check()?;
            if connect {
                serve::check_services(&config)?;
            }
            println!("configuration ok: role {:?}, domain {}, store {:?}", config.cluster.role, config.server.domain, config.store.backend);
            Ok(())
        }
        Command::User(command) => users::run(&config, command),
        Command::Reports { limit } => users::reports(&config, limit),
        Command::Db(DbCommand::Migrate) => store::migrate(&config),
        Command::Where { user } => serve::locate(&config, &users::account(&config, &user)?),
    }
}
