//! `starling user …`: account management — through a running server's admin API when one
//! answers, else on the store; `starling reports`: XEP-0377 reports.

use std::io::BufRead;

use anyhow::{bail, Context};
use clap::Subcommand;
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
    },
    /// Delete an account and everything stored for it.
    Remove { user: String },
    /// Change a password (from --password or stdin).
    Passwd {
        user: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// List accounts.
    List,
}

/// The bare JID of `user` (a localpart or a bare JID) on this server's domain.
pub fn account(config: &Config, user: &str) -> anyhow::Result<Jid> {
    let jid = if user.contains('@') {
        Jid::new(user)?
    } else {
        Jid::from_parts(Some(user), &config.server.domain, None)?
    };
    if jid.domain() != config.server.domain || jid.node().is_none() || !jid.is_bare() {
        bail!("{user}: not an account on {}", config.server.domain);
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
        if !matches!(command, UserCommand::AddBulk { .. })
            && let Some(api) = RunningServer::find(config).await
        {
            return api.run(config, command).await;
        }
        let store: Store = crate::store::open(config).await?;
        match command {
            UserCommand::Add { user, password: given } => {
                let jid = account(config, &user)?;
                let credentials = ScramCredentials::derive(&password(given)?, DEFAULT_SCRAM_ITERATIONS);
                store.accounts.create(jid.as_str(), credentials).await.with_context(|| format!("creating {jid}"))?;
                println!("created {jid}");
            }
            UserCommand::AddBulk { prefix, count, password } => {
                let credentials = ScramCredentials::derive(&password, DEFAULT_SCRAM_ITERATIONS);
                let mut created = 0;
                for n in 1..=count {
                    let jid = account(config, &format!("{prefix}{n}"))?;
                    match store.accounts.create(jid.as_str(), credentials.clone()).await {
                        Ok(()) => created += 1,
                        Err(starling_cluster::store::StoreError::Conflict) => {}
                        Err(error) => return Err(error).with_context(|| format!("creating {jid}")),
                    }
                }
                println!("created {created} accounts ({} existed)", count - created);
            }
            UserCommand::Remove { user } => {
                let jid = account(config, &user)?;
                if !store.remove_user(jid.as_str()).await? {
                    bail!("{jid}: no such account");
                }
                println!("removed {jid}");
            }
            UserCommand::Passwd { user, password: given } => {
                let jid = account(config, &user)?;
                let credentials = ScramCredentials::derive(&password(given)?, DEFAULT_SCRAM_ITERATIONS);
                if !store.accounts.set_credentials(jid.as_str(), credentials).await? {
                    bail!("{jid}: no such account");
                }
                println!("password changed for {jid}");
            }
            UserCommand::List => {
                for user in store.accounts.list().await? {
                    println!("{user}");
                }
            }
        }
        Ok(())
    })
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
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<serde_json::Value>) -> anyhow::Result<serde_json::Value> {
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

    async fn run(&self, config: &Config, command: UserCommand) -> anyhow::Result<()> {
        use reqwest::Method;
        match command {
            UserCommand::Add { user, password: given } => {
                let jid = account(config, &user)?;
                self.call(Method::POST, "/users", Some(serde_json::json!({ "user": jid.as_str(), "password": password(given)? }))).await?;
                println!("created {jid}");
            }
            UserCommand::Remove { user } => {
                let jid = account(config, &user)?;
                self.call(Method::DELETE, &format!("/users/{jid}"), None).await?;
                println!("removed {jid}");
            }
            UserCommand::Passwd { user, password: given } => {
                let jid = account(config, &user)?;
                self.call(Method::PUT, &format!("/users/{jid}/password"), Some(serde_json::json!({ "password": password(given)? }))).await?;
                println!("password changed for {jid}");
            }
            UserCommand::List => {
                for user in self.call(Method::GET, "/users", None).await?["users"].as_array().into_iter().flatten() {
                    println!("{}", user.as_str().unwrap_or_default());
                }
            }
            UserCommand::AddBulk { .. } => bail!("add-bulk writes the store directly: stop the server first"),
        }
        Ok(())
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
