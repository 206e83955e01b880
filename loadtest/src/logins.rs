//! Logging many users in with bounded concurrency, shared by the scenarios.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rustls::pki_types::ServerName;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

use crate::cli::Common;
use crate::sasl::SaltedPasswordCache;
use crate::stats::{ErrorTally, Latency, LatencySummary, per_second};
use crate::xmpp::{LoginConfig, PhaseTimes, Session};

/// What every login of a run needs.
pub struct Setup {
    pub login: Arc<LoginConfig>,
    pub common: Arc<Common>,
    sources: Arc<[IpAddr]>,
}

impl Setup {
    pub async fn new(common: &Common) -> anyhow::Result<Setup> {
        Setup::build(common, false).await
    }

    /// Logins that enable XEP-0198 stream management with resumption after binding.
    pub async fn with_stream_management(common: &Common) -> anyhow::Result<Setup> {
        Setup::build(common, true).await
    }

    async fn build(common: &Common, stream_management: bool) -> anyhow::Result<Setup> {
        let port = common.port();
        let server: SocketAddr = tokio::net::lookup_host((common.host.as_str(), port))
            .await
            .with_context(|| format!("resolving {}", common.host))?
            .next()
            .with_context(|| format!("{} has no address", common.host))?;
        let server_name = ServerName::try_from(common.domain.clone()).with_context(|| format!("{:?} is not a valid TLS server name", common.domain))?;
        if common.concurrency == 0 {
            anyhow::bail!("--concurrency must be at least 1");
        }
        if common.password.is_empty() {
            anyhow::bail!("--password is empty");
        }
        let login = LoginConfig {
            server,
            domain: common.domain.clone(),
            server_name,
            tls: TlsConnector::from(crate::tls::client_config(common.direct_tls, common.websocket.is_some())?),
            direct_tls: common.direct_tls,
            websocket: common.websocket.clone(),
            mechanism: common.mechanism,
            password: Arc::from(common.password.as_str()),
            resource: common.resource.clone(),
            presence: common.presence,
            stream_management,
            method: common.login,
            tokens: Default::default(),
            cache: Arc::new(SaltedPasswordCache::default()),
            timeout: common.login_timeout()?,
        };
        Ok(Setup { login: Arc::new(login), common: Arc::new(common.clone()), sources: Arc::from(common.source_list()) })
    }

    pub fn server(&self) -> SocketAddr {
        self.login.server
    }

    /// The local address user `index` connects from, when --source-addresses gives some.
    pub fn source_for(&self, index: u64) -> Option<IpAddr> {
        source_for(&self.sources, index)
    }
}

/// Login latencies by phase.
#[derive(Default)]
struct PhaseHistograms {
    tcp: Latency,
    tls: Latency,
    sasl: Latency,
    bind: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseSummaries {
    pub tcp: LatencySummary,
    /// Stream header + STARTTLS + TLS handshake (TLS handshake only with --direct-tls).
    pub tls: LatencySummary,
    pub sasl: LatencySummary,
    /// Restart, bind, legacy session if required, initial presence if sent.
    pub bind: LatencySummary,
}

/// The login phase of a run.
#[derive(Debug, Clone, Serialize)]
pub struct LoginReport {
    pub attempted: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub concurrency: usize,
    /// From the first login started to the last one finished.
    pub elapsed_seconds: f64,
    /// Successful logins per second over `elapsed_seconds`.
    pub logins_per_second: f64,
    /// One login, TCP connect to bound resource, timed from when it got a concurrency slot.
    pub latency: LatencySummary,
    pub phases: PhaseSummaries,
    pub errors: ErrorTally,
}

impl LoginReport {
    pub fn print(&self) {
        println!(
            "logins: {} ok, {} failed of {} in {:.2}s = {:.1} logins/s (concurrency {})",
            self.succeeded, self.failed, self.attempted, self.elapsed_seconds, self.logins_per_second, self.concurrency
        );
        println!("  login latency: {}", self.latency);
        if self.succeeded == 0 {
            print_errors("  login errors", &self.errors);
            return;
        }
        println!(
            "  phases p50/p99: tcp {}/{}  tls {}/{}  sasl {}/{}  bind {}/{}",
            crate::stats::ms(self.phases.tcp.p50_us),
            crate::stats::ms(self.phases.tcp.p99_us),
            crate::stats::ms(self.phases.tls.p50_us),
            crate::stats::ms(self.phases.tls.p99_us),
            crate::stats::ms(self.phases.sasl.p50_us),
            crate::stats::ms(self.phases.sasl.p99_us),
            crate::stats::ms(self.phases.bind.p50_us),
            crate::stats::ms(self.phases.bind.p99_us),
        );
        print_errors("  login errors", &self.errors);
    }
}

pub fn print_errors(title: &str, errors: &ErrorTally) {
    if errors.is_empty() {
        return;
    }
    println!("{title} ({}):", errors.total());
    for (kind, count) in errors.iter() {
        println!("    {kind}: {} (e.g. {})", count.count, count.example);
    }
}

enum Done {
    Ok { latency: Duration, times: PhaseTimes },
    Err { kind: String, message: String },
}

/// Logs in users `indices` (0-based within the run), at most `--concurrency` at a time. Each
/// session that comes up is handed to `handler`, which runs in the login's task for as long as it
/// likes (the returned set holds those tasks). Returns once every login has succeeded or failed.
pub async fn login_many<H, F>(setup: &Setup, indices: Range<u64>, handler: H) -> (LoginReport, JoinSet<()>)
where
    H: Fn(u64, Session) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let handler = Arc::new(handler);
    let slots = Arc::new(Semaphore::new(setup.common.concurrency));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    let attempted = indices.end.saturating_sub(indices.start);
    let started = Instant::now();
    for index in indices {
        let (login, common, sources, slots, done, handler) =
            (setup.login.clone(), setup.common.clone(), setup.sources.clone(), slots.clone(), done_tx.clone(), handler.clone());
        tasks.spawn(async move {
            let Ok(slot) = slots.acquire_owned().await else { return };
            let Some(user) = common.username(index) else {
                let message = format!("--user-list has no account number {}", common.first_user + index);
                let _ = done.send(Done::Err { kind: "user-list".into(), message });
                return;
            };
            let source = source_for(&sources, index);
            let begun = Instant::now();
            let result = login.login(&user, source).await;
            let latency = begun.elapsed();
            drop(slot);
            match result {
                Ok(session) => {
                    let _ = done.send(Done::Ok { latency, times: session.times });
                    handler(index, session).await;
                }
                Err(error) => {
                    let _ = done.send(Done::Err { kind: error.kind(), message: format!("{user}: {error}") });
                }
            }
        });
    }
    drop(done_tx);

    let mut latency = Latency::new();
    let mut phases = PhaseHistograms::default();
    let mut errors = ErrorTally::default();
    let (mut succeeded, mut failed) = (0u64, 0u64);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    while succeeded + failed < attempted {
        tokio::select! {
            done = done_rx.recv() => match done {
                Some(Done::Ok { latency: l, times }) => {
                    succeeded += 1;
                    latency.record(l);
                    phases.tcp.record(times.tcp);
                    phases.tls.record(times.tls);
                    phases.sasl.record(times.sasl);
                    phases.bind.record(times.bind);
                }
                Some(Done::Err { kind, message }) => {
                    failed += 1;
                    errors.add(kind, || message);
                }
                // Every task ended without reporting (cannot happen unless one panicked).
                None => break,
            },
            _ = ticker.tick(), if !setup.common.quiet => {
                eprintln!(
                    "[{:>6.1}s] logins {}/{}: {} ok, {} failed",
                    started.elapsed().as_secs_f64(), succeeded + failed, attempted, succeeded, failed
                );
            }
        }
    }
    let elapsed = started.elapsed();
    let report = LoginReport {
        attempted,
        succeeded,
        failed,
        concurrency: setup.common.concurrency,
        elapsed_seconds: elapsed.as_secs_f64(),
        logins_per_second: per_second(succeeded, elapsed),
        latency: latency.summary(),
        phases: PhaseSummaries { tcp: phases.tcp.summary(), tls: phases.tls.summary(), sasl: phases.sasl.summary(), bind: phases.bind.summary() },
        errors,
    };
    (report, tasks)
}

fn source_for(sources: &[IpAddr], index: u64) -> Option<IpAddr> {
    if sources.is_empty() { None } else { usize::try_from(index).ok().map(|i| sources[i % sources.len()]) }
}
