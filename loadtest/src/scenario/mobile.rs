//! `mobile`: phones on flaky networks. `--pairs M` receivers (users S..S+M) each hear from one of
//! `--senders S` senders (receiver k from user k mod S; S defaults to M) at an even aggregate
//! rate, every session with XEP-0198 stream management and resumption. The
//! receivers' connections drop: every `--drop-every` seconds a `--drop-fraction` of them lose
//! their TCP connection without closing the stream, wait `--reconnect-delay-ms`, connect again
//! and resume with the count of stanzas they handled; `--storm` drops every receiver at once,
//! half-way through (a reconnect storm). Each receiver counts what it reads, answers the server's
//! `<r/>`, and checks the sequence numbers of its sender: a message seen twice is a duplicate,
//! one never seen is lost.
//!
//! Reports resumptions (done, failed), their latency from the new TCP connect to `<resumed/>`,
//! resumptions per second in a storm, messages sent/received/lost/duplicated, and with
//! `--server-pid` the server's RSS before the logins, with every session attached, and (storm)
//! with every receiver detached.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use starling_xml::StreamEvent;
use tokio::sync::{Mutex as AsyncMutex, watch};
use tokio::task::JoinSet;

use super::chat::{self, MessageTemplate, Shared};
use crate::cli::{Common, MobileArgs};
use crate::logins::{LoginReport, Setup, print_errors};
use crate::procstat::{raise_nofile_limit, sample};
use crate::rate::Pacer;
use crate::report::{RunInfo, Usage, Window, mib, write_json};
use crate::sm::{self, NS_SM};
use crate::stats::{ErrorTally, Latency, LatencySummary, per_second};
use crate::xmpp::{self, NS_STREAMS, Reader, Session, Writer};

const SETTLE: Duration = Duration::from_millis(300);

#[derive(Debug, Serialize)]
struct MobileReport {
    run: RunInfo,
    options: MobileArgs,
    logins: LoginReport,
    mobile: MobileResults,
    /// Harness and server usage from the first message to the end of the drain.
    usage: Usage,
}

#[derive(Debug, Serialize)]
struct MobileResults {
    pairs_active: u64,
    target_rate: f64,
    duration_seconds: f64,
    drops: u64,
    resumed: u64,
    /// Of them, through --resume-elsewhere-port.
    resumed_elsewhere: u64,
    resume_failed: u64,
    /// From the new TCP connect to `<resumed/>`.
    resume_latency: LatencySummary,
    /// Storm: from the moment every receiver reconnects (the drop plus the reconnect delay) to the
    /// last resumption, and resumptions per second over it.
    storm_seconds: Option<f64>,
    storm_resumptions_per_second: Option<f64>,
    sent: u64,
    received: u64,
    duplicates: u64,
    /// Sent and never received (negative never: duplicates are counted apart).
    lost: i64,
    bounced: u64,
    server_rss_before_logins: Option<u64>,
    server_rss_attached: Option<u64>,
    server_rss_detached: Option<u64>,
    errors: ErrorTally,
}

/// What the receivers share besides chat's counters.
#[derive(Default)]
struct Resumptions {
    drops: AtomicU64,
    resumed: AtomicU64,
    resumed_elsewhere: AtomicU64,
    failed: AtomicU64,
    latency: Mutex<Latency>,
    /// Nanoseconds since the run's origin of the last resumption.
    last: AtomicU64,
}

#[derive(Default)]
struct ReceiverResult {
    received: u64,
    duplicates: u64,
    /// Sequence numbers seen, one bit each.
    seen: Vec<u64>,
}

pub async fn run(args: MobileArgs) -> anyhow::Result<()> {
    if let Err(error) = raise_nofile_limit() {
        eprintln!("warning: could not raise the fd limit: {error}");
    }
    let pairs = args.pairs.unwrap_or(args.common.users / 2);
    if pairs == 0 {
        anyhow::bail!("no pairs: give --pairs or --users of at least 2");
    }
    let duration = super::positive_seconds(args.duration, "--duration")?;
    let drop_every = super::positive_seconds(args.drop_every, "--drop-every")?;
    if !(args.drop_fraction > 0.0 && args.drop_fraction <= 1.0) {
        anyhow::bail!("--drop-fraction must be in (0, 1]");
    }
    let drain = super::seconds(args.drain_seconds, "--drain-seconds")?;
    let mut common = args.common.clone();
    common.presence = true;
    let setup = Arc::new(Setup::with_stream_management(&common).await?);
    let elsewhere = match args.resume_elsewhere_port {
        Some(port) => Some(Arc::new(Setup::with_stream_management(&Common { port: Some(port), ..common.clone() }).await?)),
        None => None,
    };
    let run = RunInfo::new("mobile", setup.server().to_string());
    let rss_before_logins = common.server_pid.and_then(|pid| sample(pid).rss_bytes);

    // Users 0..S send, users S..S+M receive; receiver k hears from sender k mod S.
    let sender_count = args.senders.unwrap_or(pairs).clamp(1, pairs);
    let (logins, logged_in) = super::log_in_all(&setup, 0..sender_count + pairs).await;
    let mut by_index: Vec<Option<Session>> = (0..sender_count + pairs).map(|_| None).collect();
    for (index, session) in logged_in {
        if let Some(slot) = usize::try_from(index).ok().and_then(|i| by_index.get_mut(i)) {
            *slot = Some(session);
        }
    }
    let receivers = by_index.split_off(usize::try_from(sender_count)?);
    let origin = Instant::now();
    let start = origin + SETTLE;
    let shared = Arc::new(Shared::new(chat::run_id(), origin, SETTLE));
    let resumptions = Arc::new(Resumptions::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let period = (1.0 / args.drop_fraction).round().max(1.0) as u64;
    let storm_at = start + duration / 2;
    let reconnect_delay = Duration::from_millis(args.reconnect_delay_ms);
    let mut watchers = JoinSet::new();
    let mut writers = Vec::new();
    for sender in by_index {
        let Some(sender) = sender else {
            writers.push(None);
            continue;
        };
        let writer = Arc::new(AsyncMutex::new(sender.writer));
        watchers.spawn(chat::read_loop(sender.reader, writer.clone(), None, None, shared.clone(), shutdown_rx.clone()));
        writers.push(Some(writer));
    }
    let mut tasks: JoinSet<ReceiverResult> = JoinSet::new();
    let mut sender_tasks = JoinSet::new();
    let mut senders = 0u64;
    for (k, receiver) in (0u64..).zip(receivers) {
        let (Some(receiver), Some(Some(writer))) = (receiver, usize::try_from(k % sender_count).ok().and_then(|s| writers.get(s))) else { continue };
        let drops: Vec<Instant> = match args.storm {
            true => vec![storm_at],
            false => (1u64..).map(|round| (round, start + drop_every * round as u32)).take_while(|(_, at)| *at < start + duration).filter(|(round, _)| (k + round) % period == 0).map(|(_, at)| at).collect(),
        };
        let message = MessageTemplate::new(&receiver.jid, shared.run, k, 0);
        let index = sender_count + k;
        let user = common.username(index).unwrap_or_default();
        let receiver_task = Receiver { index, user, pair: k, setup: setup.clone(), elsewhere: elsewhere.clone(), shared: shared.clone(), resumptions: resumptions.clone(), reconnect_delay };
        tasks.spawn(receiver_task.run(receiver, drops, shutdown_rx.clone()));
        let pacer = Pacer::new(args.rate, pairs, k, duration).ok_or_else(|| anyhow::anyhow!("cannot pace {} msg/s", args.rate))?;
        sender_tasks.spawn(chat::send_open_loop(writer.clone(), message, pacer, start, shared.clone()));
        senders += 1;
    }
    if senders == 0 {
        anyhow::bail!("no receiver and its sender both logged in");
    }
    if !common.quiet {
        eprintln!("{senders} pairs, {} msg/s, receivers dropping {}", args.rate, if args.storm { "all at once half-way".to_owned() } else { format!("1 in {period} every {drop_every:?}") });
    }
    let sample_server = || common.server_pid.and_then(|pid| sample(pid).rss_bytes);
    tokio::time::sleep_until(start.into()).await;
    let window = Window::start(common.server_pid);
    let attached_at = if args.storm { storm_at - Duration::from_millis(50) } else { start + Duration::from_millis(50) };
    tokio::time::sleep_until(attached_at.into()).await;
    let rss_attached = sample_server();
    let mut rss_detached = None;
    if args.storm {
        // Every receiver is detached for the reconnect delay; sampled before most of them are back.
        tokio::time::sleep_until((storm_at + reconnect_delay.mul_f64(0.8)).into()).await;
        rss_detached = sample_server();
    }
    while sender_tasks.join_next().await.is_some() {}
    let sent = shared.sent.load(Ordering::Relaxed);
    let drain_started = Instant::now();
    while shared.received.load(Ordering::Relaxed) < sent && drain_started.elapsed() < drain {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let usage = window.finish();
    let _ = shutdown_tx.send(true);
    let mut results = ReceiverResult::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => {
                results.received += result.received;
                results.duplicates += result.duplicates;
            }
            Err(error) => shared.error("harness:receiver-task".into(), || error.to_string()),
        }
    }
    while watchers.join_next().await.is_some() {}
    super::close_all(writers.into_iter().flatten()).await;

    let resumed = resumptions.resumed.load(Ordering::Relaxed);
    let reconnect_at = storm_at + reconnect_delay - origin;
    let storm_seconds = args.storm.then(|| Duration::from_nanos(resumptions.last.load(Ordering::Relaxed)).saturating_sub(reconnect_at).as_secs_f64());
    // `received` counts each message once; duplicates apart.
    let unique = results.received;
    let mobile = MobileResults {
        pairs_active: senders,
        target_rate: args.rate,
        duration_seconds: duration.as_secs_f64(),
        drops: resumptions.drops.load(Ordering::Relaxed),
        resumed,
        resumed_elsewhere: resumptions.resumed_elsewhere.load(Ordering::Relaxed),
        resume_failed: resumptions.failed.load(Ordering::Relaxed),
        resume_latency: resumptions.latency.lock().unwrap_or_else(|p| p.into_inner()).summary(),
        storm_seconds,
        storm_resumptions_per_second: storm_seconds.map(|seconds| per_second(resumed, Duration::from_secs_f64(seconds))),
        sent,
        received: results.received,
        duplicates: results.duplicates,
        lost: i64::try_from(sent).unwrap_or(i64::MAX) - i64::try_from(unique).unwrap_or(i64::MAX),
        bounced: shared.bounced.load(Ordering::Relaxed),
        server_rss_before_logins: rss_before_logins,
        server_rss_attached: rss_attached,
        server_rss_detached: rss_detached,
        errors: shared.errors.lock().unwrap_or_else(|p| p.into_inner()).clone(),
    };
    let report = MobileReport { run, options: args.clone(), logins, mobile, usage };
    print_mobile(&report.mobile);
    report.usage.print("mobile");
    if let Some(path) = &common.json_out {
        write_json(path, &report)?;
        println!("report written to {}", path.display());
    }
    Ok(())
}

fn print_mobile(m: &MobileResults) {
    println!("mobile: {} pairs at {} msg/s for {:.1}s", m.pairs_active, m.target_rate, m.duration_seconds);
    println!(
        "  drops {}, resumed {} ({} elsewhere), resumption failed {}; resume latency {}",
        m.drops, m.resumed, m.resumed_elsewhere, m.resume_failed, m.resume_latency
    );
    if let (Some(seconds), Some(rate)) = (m.storm_seconds, m.storm_resumptions_per_second) {
        println!("  storm: every receiver resumed within {seconds:.2}s of reconnecting ({rate:.0} resumptions/s)");
    }
    println!("  sent {}, received {}, lost {}, duplicated {}, bounced {}", m.sent, m.received, m.lost, m.duplicates, m.bounced);
    let show = |bytes: Option<u64>| bytes.map_or_else(|| "-".to_owned(), mib);
    println!(
        "  server RSS: before logins {}, attached {}, detached {}",
        show(m.server_rss_before_logins),
        show(m.server_rss_attached),
        show(m.server_rss_detached)
    );
    print_errors("  errors", &m.errors);
}

/// One receiver: reads, acknowledges, drops its connection when planned and resumes.
struct Receiver {
    index: u64,
    user: String,
    pair: u64,
    setup: Arc<Setup>,
    /// --resume-elsewhere-port: every other resumption goes there.
    elsewhere: Option<Arc<Setup>>,
    shared: Arc<Shared>,
    resumptions: Arc<Resumptions>,
    reconnect_delay: Duration,
}

/// Why reading a connection stopped.
enum Stop {
    Shutdown,
    DropDue,
    Ended,
}

impl Receiver {
    async fn run(self, session: Session, drops: Vec<Instant>, mut shutdown: watch::Receiver<bool>) -> ReceiverResult {
        let mut result = ReceiverResult::default();
        let Session { mut reader, mut writer, sm_id, .. } = session;
        let Some(sm_id) = sm_id else {
            self.shared.error("receiver:no-stream-management".into(), || "logged in without <enabled/>".into());
            return result;
        };
        let mut handled = 0u32;
        let mut dropped = 0u64;
        let mut drops = drops.into_iter();
        let mut next_drop = drops.next();
        loop {
            match self.read(&mut reader, &mut writer, next_drop, &mut handled, &mut result, &mut shutdown).await {
                Stop::Shutdown => {
                    let _ = tokio::time::timeout(super::CLOSE_TIMEOUT, xmpp::close(&mut writer)).await;
                    break;
                }
                Stop::Ended => break,
                Stop::DropDue => {
                    // The network goes: no stream close, the sockets just disappear.
                    drop((reader, writer));
                    self.resumptions.drops.fetch_add(1, Ordering::Relaxed);
                    next_drop = drops.next();
                    tokio::time::sleep(self.reconnect_delay).await;
                    let attempt = Instant::now();
                    dropped += 1;
                    let through = self.elsewhere.as_ref().filter(|_| dropped % 2 == 1).unwrap_or(&self.setup);
                    match sm::resume(&through.login, &self.user, self.setup.source_for(self.index), &sm_id, handled).await {
                        Ok(resumed) => {
                            self.resumptions.latency.lock().unwrap_or_else(|p| p.into_inner()).record(attempt.elapsed());
                            self.resumptions.resumed.fetch_add(1, Ordering::Relaxed);
                            if !Arc::ptr_eq(through, &self.setup) {
                                self.resumptions.resumed_elsewhere.fetch_add(1, Ordering::Relaxed);
                            }
                            self.resumptions.last.fetch_max(self.shared.now(), Ordering::Relaxed);
                            (reader, writer) = (resumed.reader, resumed.writer);
                        }
                        Err(error) => {
                            self.resumptions.failed.fetch_add(1, Ordering::Relaxed);
                            self.shared.error(format!("resume:{}", error.kind()), || error.to_string());
                            break;
                        }
                    }
                }
            }
        }
        result
    }

    /// Reads until a drop is due, the run ends or the stream does; counts every stanza handled.
    async fn read(
        &self,
        reader: &mut Reader,
        writer: &mut Writer,
        drop_at: Option<Instant>,
        handled: &mut u32,
        result: &mut ReceiverResult,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Stop {
        loop {
            let event = tokio::select! {
                _ = shutdown.changed() => return Stop::Shutdown,
                _ = sleep_until(drop_at) => return Stop::DropDue,
                event = reader.next() => event,
            };
            let element = match event {
                Ok(StreamEvent::Element(element)) => element,
                Ok(_) => {
                    self.shared.error("receiver:stream-closed".into(), || "the server closed the stream".into());
                    return Stop::Ended;
                }
                Err(error) => {
                    self.shared.error("receiver:stream".into(), || error.to_string());
                    return Stop::Ended;
                }
            };
            let reply = match (element.name.as_str(), element.ns.as_str()) {
                ("r", NS_SM) => Some(format!("<a xmlns='{NS_SM}' h='{handled}'/>").into_bytes()),
                ("error", NS_STREAMS) => {
                    let condition = xmpp::stream_error_condition(&element);
                    self.shared.error(format!("receiver:stream-error:{condition}"), || format!("stream error {condition}"));
                    return Stop::Ended;
                }
                ("message" | "presence" | "iq", _) => {
                    *handled = handled.wrapping_add(1);
                    if element.name == "message" {
                        self.count_message(&element.bytes, result);
                    }
                    xmpp::iq_reply(&element)
                }
                _ => None,
            };
            if let Some(reply) = reply
                && let Err(error) = xmpp::send(writer, &reply).await
            {
                self.shared.error(format!("receiver:send:{}", xmpp::io_kind(&error)), || error.to_string());
                return Stop::DropDue;
            }
        }
    }

    fn count_message(&self, bytes: &[u8], result: &mut ReceiverResult) {
        let Some(marker) = chat::parse_marker(bytes) else { return };
        if marker.run != self.shared.run || marker.pair != self.pair {
            return;
        }
        let (word, bit) = (usize::try_from(marker.seq / 64).unwrap_or(usize::MAX), 1u64 << (marker.seq % 64));
        if word >= result.seen.len() {
            result.seen.resize(word + 1, 0);
        }
        if result.seen[word] & bit != 0 {
            result.duplicates += 1;
            return;
        }
        result.seen[word] |= bit;
        result.received += 1;
        self.shared.received.fetch_add(1, Ordering::Relaxed);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
