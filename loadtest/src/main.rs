//! `starling-loadtest`: a load generator speaking real c2s XMPP to any standards-compliant server.
//! See docs/loadtest.md for what each scenario measures and how to read its output.

mod addr;
mod cli;
mod logins;
mod procstat;
mod rate;
mod report;
mod sasl;
mod sasl2;
mod scenario;
mod sm;
mod scenario_file;
mod stats;
mod timeseries;
mod html;
mod kube;
mod merge;
mod tls;
mod websocket;
mod xmpp;

use clap::Parser;

use crate::cli::{Cli, KubeCommand, Scenario};

fn main() -> anyhow::Result<()> {
    // The Kubernetes client builds its TLS from the process default; built beside the server, the
    // tree holds two providers (ring, and aws-lc-rs from the server's object_store): name one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    run(Cli::parse())
}

/// Runs one command line (also a Kubernetes worker's scenario, `kube worker`).
fn run(cli: Cli) -> anyhow::Result<()> {
    let threads = match &cli.scenario {
        Scenario::Connect(args) => args.common.threads,
        Scenario::Chat(args) => args.common.threads,
        Scenario::Presence(args) => args.common.threads,
        Scenario::Mam(args) => args.common.threads,
        Scenario::Muc(args) => args.common.threads,
        Scenario::Pep(args) => args.common.threads,
        Scenario::PepLogin(args) => args.common.threads,
        Scenario::Mobile(args) => args.common.threads,
        Scenario::Devices(args) => args.common.threads,
        Scenario::Run(_) => None,
        Scenario::Merge(args) => return merge::run(args),
        Scenario::Report(args) => return html::run(args),
        Scenario::Kube(KubeCommand::Worker(args)) => return kube::worker(args.clone()),
        Scenario::Kube(KubeCommand::Run(_)) => None,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime.build()?;
    let result = runtime.block_on(async {
        match cli.scenario {
            Scenario::Connect(args) => scenario::connect::run(args).await,
            Scenario::Chat(args) => scenario::chat::run(args).await,
            Scenario::Presence(args) => scenario::presence::run(args).await,
            Scenario::Mam(args) => scenario::mam::run(args).await,
            Scenario::Muc(args) => scenario::muc::run(args).await,
            Scenario::Pep(args) => scenario::pep::run(args).await,
            Scenario::PepLogin(args) => scenario::pep_login::run(args).await,
            Scenario::Mobile(args) => scenario::mobile::run(args).await,
            Scenario::Devices(args) => scenario::devices::run(args).await,
            Scenario::Run(args) => scenario_file::run(args).await,
            Scenario::Kube(KubeCommand::Run(args)) => kube::run(args).await,
            Scenario::Merge(_) | Scenario::Report(_) | Scenario::Kube(KubeCommand::Worker(_)) => Ok(()),
        }
    });
    // Tasks still blocked on dead peers must not hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}
