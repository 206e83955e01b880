//! `mam`: N users query their message archives (XEP-0313 over XEP-0059) at an aggregate rate; the
//! latency of a query is from sending the IQ to its answer, after the server has streamed the
//! page's result messages.
//!
//! Setup (measured separately): every user logs in with presence and sends `--seed-messages` chat
//! messages to its partner (user 2k ↔ 2k+1), then pings the server; once every ping is answered the
//! archives hold at least that many messages each (a server that archives asynchronously must
//! still answer a query with what the user sent before it — read-your-writes).
//!
//! Measured phase: each query asks for the newest page of `--page` messages
//! (`<set><max>PAGE</max><before/></set>`), what a client asks after logging in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use starling_xml::escape_attr;
use tokio::sync::{Mutex as AsyncMutex, mpsc, watch};
use tokio::task::JoinSet;

use crate::cli::MamArgs;
use crate::logins::{LoginReport, Setup, print_errors};
use crate::procstat::raise_nofile_limit;
use crate::rate::Pacer;
use crate::report::{RunInfo, Usage, Window, write_json};
use crate::stats::{ErrorTally, Latency, LatencySummary, per_second};
use crate::xmpp::{self, Reader, Writer, io_kind};

const NS_MAM: &str = "urn:xmpp:mam:2";
const SETTLE: Duration = Duration::from_millis(300);
/// Query ids are `mam-N`, seed pings `seed-N`.
const QUERY_ID: &str = "mam-";

#[derive(Debug, Serialize)]
struct MamReport {
    run: RunInfo,
    options: MamArgs,
    logins: LoginReport,
    setup: SetupResults,
    mam: MamResults,
    usage: Usage,
}

#[derive(Debug, Serialize)]
struct SetupResults {
    seconds: f64,
    messages_sent: u64,
    users_ready: u64,
    timed_out: bool,
}

#[derive(Debug, Serialize)]
struct MamResults {
    users_active: u64,
    target_rate: f64,
    page: u32,
    duration_seconds: f64,
    queries_sent: u64,
    /// Answered with `<iq type='result'/>`.
    answered: u64,
    /// Answered with `<iq type='error'/>`.
    refused: u64,
    /// Sent but not answered by the end of the drain.
    unanswered: u64,
    /// Result messages (`<result xmlns='urn:xmpp:mam:2'/>`) received over all queries.
    results: u64,
    results_per_answer: f64,
    queries_per_second: f64,
    drain_seconds: f64,
    /// From sending the query to its `<iq type='result'/>`.
    latency: LatencySummary,
    errors: ErrorTally,
}

struct Shared {
    origin: Instant,
    sent: AtomicU64,
    answered: AtomicU64,
    refused: AtomicU64,
    results: AtomicU64,
    errors: Mutex<ErrorTally>,
}

impl Shared {
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn error(&self, kind: String, message: impl FnOnce() -> String) {
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).add(kind, message);
    }
}

/// Queries one user sent and not yet seen answered: id → nanoseconds since `origin`.
type Outstanding = Arc<Mutex<HashMap<u64, u64>>>;

pub async fn run(args: MamArgs) -> anyhow::Result<()> {
    if let Err(error) = raise_nofile_limit() {
        eprintln!("warning: could not raise the fd limit: {error}");
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        anyhow::bail!("--rate must be a positive number of queries per second");
    }
    let duration = super::positive_seconds(args.duration, "--duration")?;
    let drain = super::seconds(args.drain_seconds, "--drain-seconds")?;
    let setup_timeout = super::seconds(args.setup_timeout, "--setup-timeout")?;
    let mut common = args.common.clone();
    common.presence = true;
    let n = common.users;
    if n < 2 {
        anyhow::bail!("--users must be at least 2 (users query archives filled by their partners)");
    }
    let setup = Setup::new(&common).await?;
    let run = RunInfo::new("mam", setup.server().to_string());
    let (logins, sessions) = super::log_in_all(&setup, 0..n).await;
    if sessions.is_empty() {
        anyhow::bail!("no user logged in");
    }
    let partner = |index: u64| common.username(index ^ 1).map(|name| format!("{name}@{}", common.domain));

    let origin = Instant::now();
    let shared = Arc::new(Shared {
        origin,
        sent: AtomicU64::new(0),
        answered: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        results: AtomicU64::new(0),
        errors: Mutex::new(ErrorTally::default()),
    });
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<u64>();
    let mut readers = JoinSet::new();
    let mut users = Vec::new();
    let seed_started = Instant::now();
    let mut seeded = 0u64;
    for (index, session) in sessions {
        let writer = Arc::new(AsyncMutex::new(session.writer));
        let outstanding: Outstanding = Arc::default();
        readers.spawn(read_loop(session.reader, writer.clone(), outstanding.clone(), index, ready_tx.clone(), shared.clone(), shutdown_rx.clone()));
        let mut seed = Vec::new();
        if let Some(to) = partner(index) {
            for i in 0..args.seed_messages {
                seed.extend_from_slice(b"<message to='");
                escape_attr(&mut seed, &to);
                seed.extend_from_slice(format!("' type='chat'><body>starling-lt archive seed {index} {i}</body></message>").as_bytes());
            }
            seeded += args.seed_messages;
        }
        seed.extend_from_slice(format!("<iq type='get' id='seed-{index}'><ping xmlns='urn:xmpp:ping'/></iq>").as_bytes());
        if let Err(error) = xmpp::send(&mut *writer.lock().await, &seed).await {
            shared.error(format!("seed:send:{}", io_kind(&error)), || error.to_string());
        }
        users.push((index, writer, outstanding));
    }
    drop(ready_tx);
    let mut ready = 0u64;
    let setup_deadline = tokio::time::sleep(setup_timeout);
    tokio::pin!(setup_deadline);
    let timed_out = loop {
        if ready == users.len() as u64 {
            break false;
        }
        tokio::select! {
            got = ready_rx.recv() => match got {
                Some(_) => ready += 1,
                None => break true,
            },
            _ = &mut setup_deadline => break true,
        }
    };
    let setup_results = SetupResults { seconds: seed_started.elapsed().as_secs_f64(), messages_sent: seeded, users_ready: ready, timed_out };
    if !common.quiet {
        eprintln!("setup: {seeded} messages archived for {ready} users in {:.2}s", setup_results.seconds);
    }

    let active = users.len() as u64;
    let start = Instant::now() + SETTLE;
    let mut senders = JoinSet::new();
    for (slot, (_, writer, outstanding)) in users.iter().enumerate() {
        let pacer = Pacer::new(args.rate, active, slot as u64, duration).ok_or_else(|| anyhow::anyhow!("cannot pace {} queries/s", args.rate))?;
        senders.spawn(send_queries(writer.clone(), outstanding.clone(), pacer, args.page, start, shared.clone()));
    }
    tokio::time::sleep_until(start.into()).await;
    let window = Window::start(common.server_pid);
    while senders.join_next().await.is_some() {}
    let send_period = start.elapsed();
    let sent = shared.sent.load(Ordering::Relaxed);
    let drain_started = Instant::now();
    let done = || shared.answered.load(Ordering::Relaxed) + shared.refused.load(Ordering::Relaxed);
    while done() < sent && drain_started.elapsed() < drain {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained = drain_started.elapsed();
    let usage = window.finish();
    let _ = shutdown_tx.send(true);
    let mut latency = Latency::new();
    let joined = tokio::time::timeout(super::CLOSE_TIMEOUT, async {
        while let Some(result) = readers.join_next().await {
            match result {
                Ok(own) => latency.merge(&own),
                Err(error) => shared.error("harness:reader-task".into(), || error.to_string()),
            }
        }
    })
    .await;
    if joined.is_err() {
        readers.abort_all();
    }
    super::close_all(users.into_iter().map(|(_, writer, _)| writer)).await;

    let (answered, refused, results) = (shared.answered.load(Ordering::Relaxed), shared.refused.load(Ordering::Relaxed), shared.results.load(Ordering::Relaxed));
    let mam = MamResults {
        users_active: active,
        target_rate: args.rate,
        page: args.page,
        duration_seconds: duration.as_secs_f64(),
        queries_sent: sent,
        answered,
        refused,
        unanswered: sent.saturating_sub(answered + refused),
        results,
        results_per_answer: if answered == 0 { 0.0 } else { results as f64 / answered as f64 },
        queries_per_second: per_second(answered, send_period + drained),
        drain_seconds: drained.as_secs_f64(),
        latency: latency.summary(),
        errors: shared.errors.lock().unwrap_or_else(|p| p.into_inner()).clone(),
    };
    let mut options = args.clone();
    options.common.presence = true;
    let report = MamReport { run, options, logins, setup: setup_results, mam, usage };
    print_report(&report);
    if let Some(path) = &common.json_out {
        write_json(path, &report)?;
    }
    Ok(())
}

fn print_report(report: &MamReport) {
    let s = &report.setup;
    println!(
        "setup: {} messages sent, {} users ready in {:.2}s{}",
        s.messages_sent,
        s.users_ready,
        s.seconds,
        if s.timed_out { " (TIMED OUT)" } else { "" }
    );
    let m = &report.mam;
    println!("mam: {} users, {} queries/s target, pages of {}, for {:.1}s", m.users_active, m.target_rate, m.page, m.duration_seconds);
    println!(
        "  queries sent {}, answered {} ({:.1}/s), refused {}, unanswered {}; {} results ({:.1} per answer)",
        m.queries_sent, m.answered, m.queries_per_second, m.refused, m.unanswered, m.results, m.results_per_answer
    );
    println!("  query latency: {}", m.latency);
    print_errors("  session errors", &m.errors);
    report.usage.print("mam");
}

/// Sends one user's queries on its schedule; each newest-page query is remembered until answered.
async fn send_queries(writer: Arc<AsyncMutex<Writer>>, outstanding: Outstanding, pacer: Pacer, page: u32, start: Instant, shared: Arc<Shared>) {
    for seq in 0..pacer.count() {
        let Some(due) = pacer.due(seq) else { break };
        tokio::time::sleep_until((start + due).into()).await;
        let query = format!(
            "<iq type='set' id='{QUERY_ID}{seq}'><query xmlns='{NS_MAM}' queryid='q{seq}'><set xmlns='http://jabber.org/protocol/rsm'><max>{page}</max><before/></set></query></iq>"
        );
        outstanding.lock().unwrap_or_else(|p| p.into_inner()).insert(seq, shared.now());
        if let Err(error) = xmpp::send(&mut *writer.lock().await, query.as_bytes()).await {
            shared.error(format!("sender:send:{}", io_kind(&error)), || error.to_string());
            outstanding.lock().unwrap_or_else(|p| p.into_inner()).remove(&seq);
            break;
        }
        shared.sent.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads one user's stream until shutdown: counts result messages, times answers, answers the
/// server's IQs, reports the seed ping.
async fn read_loop(
    mut reader: Reader,
    writer: Arc<AsyncMutex<Writer>>,
    outstanding: Outstanding,
    index: u64,
    ready: mpsc::UnboundedSender<u64>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> Latency {
    let mut latency = Latency::new();
    let seed_id = format!("seed-{index}");
    let error = |kind: String, message: String| shared.error(kind, || message);
    while let Some(element) = xmpp::next_in_run(&mut reader, &mut shutdown, &error).await {
        match element.name.as_str() {
            "message" if contains(&element.bytes, NS_MAM.as_bytes()) => {
                shared.results.fetch_add(1, Ordering::Relaxed);
            }
            "iq" if element.attr("id") == Some(seed_id.as_str()) => {
                let _ = ready.send(index);
            }
            "iq" if matches!(element.attr("type"), Some("result" | "error")) => {
                let Some(seq) = element.attr("id").and_then(|id| id.strip_prefix(QUERY_ID)).and_then(|n| n.parse::<u64>().ok()) else { continue };
                let Some(sent) = outstanding.lock().unwrap_or_else(|p| p.into_inner()).remove(&seq) else { continue };
                if element.attr("type") == Some("result") {
                    latency.record_micros(shared.now().saturating_sub(sent) / 1000);
                    shared.answered.fetch_add(1, Ordering::Relaxed);
                } else {
                    shared.refused.fetch_add(1, Ordering::Relaxed);
                    error("query:error".into(), String::from_utf8_lossy(&element.bytes).into_owned());
                }
            }
            _ => {
                if !xmpp::handle_other(&writer, &element, &error).await {
                    break;
                }
            }
        }
    }
    latency
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}
