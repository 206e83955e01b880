//! `starling user …`: account management — through a running server's admin API when one
//! answers, else on the store; `starling reports`: XEP-0377 reports.

use std::io::BufRead;

use anyhow::{bail, Context};
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;
use starling_cluster::store::{ScramCredentials, Store, DEFAULT_SCRAM_ITERATIONS};
use starling_protocol::Jid;

use crate::config::Config;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create an account. The password comes from --password or the first line of stdin.
    Add {
        /// Localpart (`alice`) or bare JID on this server's domain.
        user: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Create COUNT accounts PREFIX1..PREFIXn sharing one password (for load tests: the keys are
    /// derived once and reused, so this takes seconds, not minutes).
    AddBulk {
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        count: u32,
        #[arg(long)]
        password: String,
        /// The served domain they are created on [default: `[server] domain`].
        #[arg(long)]
        domain: Option<String>,
    },
    /// Delete an account and everything stored for it.
    Remove { user: String },
    /// Change a password (from --password or stdin).
    Passwd {
        user: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// List accounts (of one served domain, with --domain).
    List {
        #[arg(long)]
        domain: Option<String>,
    },
}

/// The bare JID of `user`: a localpart (on `[server] domain`) or a bare JID on a served domain.
pub fn account(config: &Config, user: &str) -> anyhow::Result<Jid> {
    let hosts = config.hosts()?;
    let jid = if user.contains('@') {
        Jid::new(user)?
    } else {
        Jid::from_parts(Some(user), hosts.primary().as_str(), None)?
    };
    if !hosts.serves(jid.domain()) || jid.node().is_none() || !jid.is_bare() {
        let served: Vec<&str> = hosts.iter().map(Jid::as_str).collect();
        bail!("{user}: not an account on a served domain ({})", served.join(", "));
    }
    Ok(jid)
}

fn password(given: Option<String>) -> anyhow::Result<String> {
    let password = match given {
        Some(password) => password,
        None => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    if password.is_empty() {
        bail!("empty password");
    }
    Ok(password)
}

pub fn run(config: &Config, command: UserCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        if let UserCommand::AddBulk { prefix, count, password, domain } = command {
            return add_bulk(config, &prefix, count, &password, domain.as_deref()).await;
        }
        let accounts = match RunningServer::find(config).await {
            Some(server) => AccountsAt::Server(server),
            None => AccountsAt::Store(crate::store::open(config).await?),
        };
        match command {
            UserCommand::Add { user, password: given } => {
                let jid = account(config, &user)?;
                accounts.create(&jid, &password(given)?).await?;
                println!("created {jid}");
            }
            UserCommand::Remove { user } => {
                let jid = account(config, &user)?;
                accounts.remove(&jid).await?;
                println!("removed {jid}");
            }
            UserCommand::Passwd { user, password: given } => {
                let jid = account(config, &user)?;
                accounts.set_password(&jid, &password(given)?).await?;
                println!("password changed for {jid}");
            }
            UserCommand::List { domain } => {
                let domain = domain.map(|domain| served(config, &domain)).transpose()?;
                for user in accounts.list().await? {
                    if domain.as_ref().is_none_or(|domain| on_domain(&user, domain.as_str())) {
                        println!("{user}");
                    }
                }
            }
            UserCommand::AddBulk { .. } => unreachable!("handled above"),
        }
        Ok(())
    })
}

/// `add-bulk`: one key derivation for every account, written to the store directly.
/// `domain` if this configuration serves it.
pub fn served(config: &Config, domain: &str) -> anyhow::Result<Jid> {
    match config.hosts()?.get(domain) {
        Some(domain) => Ok(domain.clone()),
        None => bail!("{domain}: not a served domain ([server] domain or a [hosts] table)"),
    }
}

/// Whether the account `user` (a bare JID) is on `domain`.
pub fn on_domain(user: &str, domain: &str) -> bool {
    user.rsplit_once('@').is_some_and(|(_, on)| on == domain)
}

async fn add_bulk(config: &Config, prefix: &str, count: u32, password: &str, domain: Option<&str>) -> anyhow::Result<()> {
    let domain = match domain {
        Some(domain) => served(config, domain)?,
        None => config.hosts()?.primary().clone(),
    };
    let store: Store = crate::store::open(config).await?;
    let credentials = ScramCredentials::derive(password, DEFAULT_SCRAM_ITERATIONS);
    let mut created = 0;
    for n in 1..=count {
        let jid = account(config, &format!("{prefix}{n}@{domain}"))?;
        match store.accounts.create(jid.as_str(), credentials.clone()).await {
            Ok(()) => created += 1,
            Err(starling_cluster::store::StoreError::Conflict) => {}
            Err(error) => return Err(error).with_context(|| format!("creating {jid}")),
        }
    }
    println!("created {created} accounts ({} existed)", count - created);
    Ok(())
}

/// Where accounts are managed: through a running server, or in the store itself.
enum AccountsAt {
    Server(RunningServer),
    Store(Store),
}

impl AccountsAt {
    async fn create(&self, jid: &Jid, password: &str) -> anyhow::Result<()> {
        match self {
            AccountsAt::Server(server) => server.call(Method::POST, "/users", Some(json!({ "user": jid.as_str(), "password": password }))).await.map(drop),
            AccountsAt::Store(store) => {
                let credentials = ScramCredentials::derive(password, DEFAULT_SCRAM_ITERATIONS);
                store.accounts.create(jid.as_str(), credentials).await.with_context(|| format!("creating {jid}"))
            }
        }
    }

    async fn remove(&self, jid: &Jid) -> anyhow::Result<()> {
        match self {
            AccountsAt::Server(server) => server.call(Method::DELETE, &format!("/users/{jid}"), None).await.map(drop),
            AccountsAt::Store(store) if store.remove_user(jid.as_str()).await? => Ok(()),
            AccountsAt::Store(_) => bail!("{jid}: no such account"),
        }
    }

    async fn set_password(&self, jid: &Jid, password: &str) -> anyhow::Result<()> {
        match self {
            AccountsAt::Server(server) => server.call(Method::PUT, &format!("/users/{jid}/password"), Some(json!({ "password": password }))).await.map(drop),
            AccountsAt::Store(store) => {
                let credentials = ScramCredentials::derive(password, DEFAULT_SCRAM_ITERATIONS);
                if !store.accounts.set_credentials(jid.as_str(), credentials).await? {
                    bail!("{jid}: no such account");
                }
                Ok(())
            }
        }
    }

    async fn list(&self) -> anyhow::Result<Vec<String>> {
        match self {
            AccountsAt::Server(server) => {
                let answer = server.call(Method::GET, "/users", None).await?;
                Ok(answer["users"].as_array().into_iter().flatten().filter_map(|user| user.as_str().map(str::to_owned)).collect())
            }
            AccountsAt::Store(store) => Ok(store.accounts.list().await?),
        }
    }
}

/// A server running with this configuration, reached through its admin API: while it runs it is
/// the store's writer (the embedded store has exactly one), so the CLI asks it instead of opening
/// the store itself. Found when `[admin] listen` answers `/api/v1/status` with this
/// configuration's token.
struct RunningServer {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl RunningServer {
    async fn find(config: &Config) -> Option<RunningServer> {
        let token = std::fs::read_to_string(crate::admin_api::token_path(config)).ok()?.trim().to_owned();
        let listen = config.admin.listen.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]");
        let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build().ok()?;
        let server = RunningServer { base: format!("http://{listen}/api/v1"), token, http };
        let answer = server.http.get(format!("{}/status", server.base)).bearer_auth(&server.token).send().await.ok()?;
        answer.status().is_success().then_some(server)
    }

    /// One request; the answer's JSON, or why it was refused.
    async fn call(&self, method: Method, path: &str, body: Option<serde_json::Value>) -> anyhow::Result<serde_json::Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let answer = request.send().await.context("asking the running server")?;
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            bail!("the running server refused ({status}): {}", json["error"].as_str().unwrap_or(&text));
        }
        Ok(json)
    }
}

/// `starling reports`: what moderators act on, as JSON lines (for `jq` and log pipelines).
pub fn reports(config: &Config, limit: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let store: Store = crate::store::open(config).await?;
        for report in store.abuse_reports.recent(limit).await? {
            let line = serde_json::json!({
                "at_ms": report.at_ms,
                "reporter": report.reporter,
                "reported": report.reported,
                "reason": report.reason,
                "text": report.text,
                "stanza_ids": report.stanza_ids,
            });
            println!("{line}");
        }
        Ok(())
    })
}
