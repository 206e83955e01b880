//! `run FILE.toml`: a scenario file composing steps (connect, chat, presence, mam) that share
//! connection options. Every key is the long option of the same name (underscores for dashes) of
//! the step's subcommand, so a file accepts exactly what the command line does, with the same
//! defaults; unknown keys are refused.
//!
//! ```toml
//! name = "smoke"                    # optional
//! json_dir = "results"              # optional: each step writes results/NN-NAME.json
//! [connection]                      # options shared by every step (a step may override them)
//! host = "127.0.0.1"
//! port = 5222
//! [[step]]
//! kind = "connect"                  # required: connect | chat | presence | mam
//! name = "logins"                   # optional, names the JSON file
//! users = 100
//! hold_seconds = 5
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Parser as _;
use toml::{Table, Value};

use crate::cli::{Cli, RunArgs, Scenario};

/// Keys allowed in `[connection]`: the options every scenario shares.
const CONNECTION_KEYS: &[&str] = &[
    "host",
    "port",
    "domain",
    "user_prefix",
    "password",
    "first_user",
    "user_list",
    "users",
    "mechanism",
    "source_addresses",
    "concurrency",
    "server_pid",
    "direct_tls",
    "resource",
    "presence",
    "login_timeout",
    "quiet",
];
const TOP_KEYS: &[&str] = &["name", "description", "json_dir", "connection", "step"];
const KINDS: &[&str] = &["connect", "chat", "presence", "mam"];

/// One step, parsed into the same arguments as its subcommand.
#[derive(Debug)]
pub struct Step {
    pub name: String,
    pub scenario: Scenario,
}

#[derive(Debug)]
pub struct ScenarioFile {
    pub name: Option<String>,
    pub json_dir: Option<PathBuf>,
    pub steps: Vec<Step>,
}

fn value_arg(key: &str, value: &Value) -> anyhow::Result<Option<String>> {
    Ok(Some(match value {
        Value::String(s) => s.clone(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(_) => return Ok(None),
        other => anyhow::bail!("{key}: unsupported value {other}"),
    }))
}

/// Parses a scenario file's text. `password` (from the command line or the environment) is used
/// when neither `[connection]` nor the step gives one.
pub fn parse(text: &str, password: Option<&str>) -> anyhow::Result<ScenarioFile> {
    let table: Table = text.parse().context("not valid TOML")?;
    for key in table.keys() {
        if !TOP_KEYS.contains(&key.as_str()) {
            anyhow::bail!("unknown key {key:?} (allowed: {})", TOP_KEYS.join(", "));
        }
    }
    let connection = match table.get("connection") {
        None => Table::new(),
        Some(Value::Table(t)) => t.clone(),
        Some(_) => anyhow::bail!("[connection] must be a table"),
    };
    for key in connection.keys() {
        if !CONNECTION_KEYS.contains(&key.as_str()) {
            anyhow::bail!("unknown key {key:?} in [connection]");
        }
    }
    let steps = match table.get("step") {
        Some(Value::Array(steps)) if !steps.is_empty() => steps,
        Some(_) => anyhow::bail!("`step` must be a non-empty array of tables ([[step]])"),
        None => anyhow::bail!("missing required [[step]]: a scenario needs at least one step"),
    };
    let mut parsed = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        let Value::Table(step) = step else { anyhow::bail!("step {} is not a table", n + 1) };
        let kind = match step.get("kind") {
            Some(Value::String(kind)) if KINDS.contains(&kind.as_str()) => kind.clone(),
            Some(other) => anyhow::bail!("step {}: kind {other} is not one of {}", n + 1, KINDS.join(", ")),
            None => anyhow::bail!("step {}: missing required field `kind` ({})", n + 1, KINDS.join(", ")),
        };
        let name = match step.get("name") {
            Some(Value::String(name)) => name.clone(),
            Some(_) => anyhow::bail!("step {}: name must be a string", n + 1),
            None => kind.clone(),
        };
        let mut merged = connection.clone();
        for (key, value) in step {
            if key != "kind" && key != "name" {
                merged.insert(key.clone(), value.clone());
            }
        }
        if !merged.contains_key("password")
            && let Some(password) = password
        {
            merged.insert("password".into(), Value::String(password.into()));
        }
        let mut argv = vec!["starling-loadtest".to_string(), kind.clone()];
        for (key, value) in &merged {
            if key.contains('-') {
                anyhow::bail!("step {} ({name}): write {key:?} with underscores", n + 1);
            }
            let flag = format!("--{}", key.replace('_', "-"));
            match (value, value_arg(key, value)?) {
                (Value::Boolean(true), _) => argv.push(flag),
                (Value::Boolean(false), _) => {}
                (_, Some(v)) => {
                    argv.push(flag);
                    argv.push(v);
                }
                (_, None) => {}
            }
        }
        let cli = Cli::try_parse_from(&argv).map_err(|e| {
            let text = e.to_string().replace("--", "").replace('-', "_");
            let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("Usage") && !l.starts_with("For more")).collect();
            let first = lines.join(" ").trim_start_matches("error: ").to_string();
            anyhow::anyhow!("step {} ({name}): {first}", n + 1)
        })?;
        parsed.push(Step { name, scenario: cli.scenario });
    }
    let name = table.get("name").and_then(Value::as_str).map(str::to_string);
    let json_dir = table.get("json_dir").and_then(Value::as_str).map(PathBuf::from);
    Ok(ScenarioFile { name, json_dir, steps: parsed })
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let file = parse(&text, args.password.as_deref()).with_context(|| format!("{}", args.file.display()))?;
    let json_dir = args.json_dir.clone().or(file.json_dir.clone());
    if args.check {
        for (n, step) in file.steps.iter().enumerate() {
            // JSON, not Debug: the password is never serialised.
            let options = match &step.scenario {
                Scenario::Connect(a) => serde_json::to_string(a)?,
                Scenario::Chat(a) => serde_json::to_string(a)?,
                Scenario::Presence(a) => serde_json::to_string(a)?,
                Scenario::Mam(a) => serde_json::to_string(a)?,
                Scenario::Mobile(a) => serde_json::to_string(a)?,
                _ => String::new(),
            };
            println!("step {}: {} {options}", n + 1, step.name);
        }
        return Ok(());
    }
    if let Some(dir) = &json_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let total = file.steps.len();
    if let Some(name) = &file.name {
        println!("scenario {name}: {total} steps");
    }
    for (n, step) in file.steps.into_iter().enumerate() {
        println!("== step {}/{total}: {}", n + 1, step.name);
        let json = |dir: &Path| Some(dir.join(format!("{:02}-{}.json", n + 1, step.name)));
        match step.scenario {
            Scenario::Connect(mut a) => {
                if let Some(dir) = &json_dir {
                    a.common.json_out = a.common.json_out.or(json(dir));
                }
                crate::scenario::connect::run(a).await?
            }
            Scenario::Chat(mut a) => {
                if let Some(dir) = &json_dir {
                    a.common.json_out = a.common.json_out.or(json(dir));
                }
                crate::scenario::chat::run(a).await?
            }
            Scenario::Presence(mut a) => {
                if let Some(dir) = &json_dir {
                    a.common.json_out = a.common.json_out.or(json(dir));
                }
                crate::scenario::presence::run(a).await?
            }
            Scenario::Mam(mut a) => {
                if let Some(dir) = &json_dir {
                    a.common.json_out = a.common.json_out.or(json(dir));
                }
                crate::scenario::mam::run(a).await?
            }
            Scenario::Mobile(mut a) => {
                if let Some(dir) = &json_dir {
                    a.common.json_out = a.common.json_out.or(json(dir));
                }
                crate::scenario::mobile::run(a).await?
            }
            _ => anyhow::bail!("step {}: not a scenario", n + 1),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
name = "smoke"
json_dir = "out"
[connection]
host = "10.0.0.1"
port = 5333
password = "pw"
direct_tls = true
[[step]]
kind = "connect"
users = 40
hold_seconds = 2
[[step]]
kind = "chat"
name = "chat-fast"
pairs = 10
rate = 500.5
duration = 3
[[step]]
kind = "presence"
users = 20
contacts = 4
port = 6000
"#;

    #[test]
    fn valid_file() {
        let file = parse(VALID, None).expect("parses");
        assert_eq!(file.name.as_deref(), Some("smoke"));
        assert_eq!(file.json_dir, Some(PathBuf::from("out")));
        assert_eq!(file.steps.len(), 3);
        let Scenario::Connect(c) = &file.steps[0].scenario else { panic!("connect") };
        assert_eq!((c.common.users, c.hold_seconds, c.common.port, c.common.direct_tls), (40, 2, Some(5333), true));
        assert_eq!(c.common.host, "10.0.0.1");
        assert_eq!(c.common.password, "pw");
        let Scenario::Chat(c) = &file.steps[1].scenario else { panic!("chat") };
        assert_eq!(file.steps[1].name, "chat-fast");
        assert_eq!((c.pairs, c.rate, c.duration, c.window), (Some(10), 500.5, 3.0, 16));
        let Scenario::Presence(p) = &file.steps[2].scenario else { panic!("presence") };
        assert_eq!((p.common.users, p.contacts, p.common.port), (20, 4, Some(6000)));
    }

    #[test]
    fn unknown_keys_refused() {
        let err = parse("[[step]]\nkind = \"chat\"\npairs = 2\npassword = \"x\"\nbogus = 1\n", None).expect_err("unknown step key");
        assert!(err.to_string().contains("bogus"), "{err}");
        let err = parse("colour = 1\n[[step]]\nkind = \"connect\"\n", Some("x")).expect_err("unknown top key");
        assert!(err.to_string().contains("colour"), "{err}");
        let err = parse("[connection]\npairs = 3\n[[step]]\nkind = \"chat\"\n", Some("x")).expect_err("step key in connection");
        assert!(err.to_string().contains("pairs"), "{err}");
        // A key of another scenario is unknown to this one.
        let err = parse("[[step]]\nkind = \"connect\"\ncontacts = 3\n", Some("x")).expect_err("presence key in connect");
        assert!(err.to_string().contains("contacts"), "{err}");
    }

    #[test]
    fn missing_required_fields() {
        let err = parse("[[step]]\nusers = 3\n", Some("x")).expect_err("no kind");
        assert!(err.to_string().contains("kind"), "{err}");
        let err = parse("name = \"x\"\n", Some("x")).expect_err("no steps");
        assert!(err.to_string().contains("step"), "{err}");
        let err = parse("[[step]]\nkind = \"connect\"\n", None).expect_err("no password");
        assert!(err.to_string().contains("password"), "{err}");
        let err = parse("[[step]]\nkind = \"dance\"\n", Some("x")).expect_err("bad kind");
        assert!(err.to_string().contains("dance"), "{err}");
    }
}
