//! `chat`: pairs of users exchange one-to-one messages; pair k's sender is user 2k, its receiver
//! user 2k+1, addressed by the full JID the server bound.
//!
//! Each body carries `starling-lt <run> <pair> <seq> <sent> <due>`, times in nanoseconds since the
//! harness started; `run` tells this run's messages from those of an earlier run (offline storage
//! delivers those at login); the receiver subtracts them from its own clock (same process, same monotonic
//! clock: no clock skew). `sent` is when the message was written, giving the latency the server
//! adds. In open loop `due` is when the schedule called for it: a harness or a socket that falls
//! behind then still shows up as latency instead of silently lowering the rate (coordinated
//! omission), at the price of the timer's ~1 ms granularity. In closed loop `due` equals `sent`
//! and each sender keeps a window of messages in flight, refilled by its receiver.
//!
//! Over 400 lines: setup, the open- and closed-loop senders and the report of one scenario; its tests follow.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use starling_xml::escape_attr;
use tokio::sync::{Mutex as AsyncMutex, Semaphore, watch};
use tokio::task::JoinSet;

use crate::cli::{ChatArgs, Common};
use crate::logins::{LoginReport, Setup, print_errors};
use crate::procstat::raise_nofile_limit;
use crate::rate::Pacer;
use crate::report::{RunInfo, Usage, Window, write_json};
use crate::stats::{ErrorTally, Latency, LatencySummary, ms, per_second};
use crate::timeseries::{Point, Series};
use crate::xmpp::{self, Reader, Session, Writer, io_kind};

const MARKER: &[u8] = b"starling-lt ";
/// Most messages written in one batch (one TLS write): bounds the buffer and a burst's size.
const MAX_BATCH: u64 = 64;
/// Time between the last login and the first message, for presence echoes and the like to pass.
const SETTLE: Duration = Duration::from_millis(300);

#[derive(Debug, Serialize)]
struct ChatReport {
    run: RunInfo,
    options: ChatArgs,
    logins: LoginReport,
    chat: ChatResults,
    /// Harness and server usage from the first message to the end of the drain.
    usage: Usage,
}

#[derive(Debug, Serialize)]
struct ChatResults {
    /// "open-loop" or "closed-loop".
    mode: &'static str,
    pairs_requested: u64,
    /// Pairs whose two users both logged in.
    pairs_active: u64,
    /// Aggregate target rate (open loop), messages/s.
    target_rate: Option<f64>,
    /// Messages in flight per sender (closed loop).
    window: Option<u32>,
    duration_seconds: f64,
    /// Messages the open-loop schedule called for.
    scheduled: Option<u64>,
    sent: u64,
    received: u64,
    /// sent − received after the drain (negative if the server duplicated messages).
    lost: i64,
    /// Error messages bounced back to senders.
    bounced: u64,
    /// Messages that arrived with another sequence number than the next expected one.
    out_of_order: u64,
    /// Messages that reached the wrong receiver.
    misrouted: u64,
    /// Test messages of another run (e.g. stored offline by an earlier run), ignored.
    stale: u64,
    /// From the first scheduled send to the last message received.
    elapsed_seconds: f64,
    /// Received messages per second over `elapsed_seconds`.
    throughput_per_second: f64,
    /// Sent messages per second over the sending period.
    send_rate_per_second: f64,
    drain_seconds: f64,
    /// From the moment the message was written to when the receiver read it.
    latency: LatencySummary,
    /// Per second since the first scheduled send: messages received and their latency.
    timeseries: Vec<Point>,
    /// Open loop: from when the message was due by the schedule to when it was read; includes
    /// the harness's own lateness (timer granularity, CPU starvation, backpressure).
    latency_from_schedule: LatencySummary,
    /// Open loop: how late batches left compared to their schedule. Large values mean the harness
    /// (or backpressure from the server) could not keep the rate.
    send_lag: LatencySummary,
    /// Sessions that failed during the run, by reason.
    errors: ErrorTally,
}

/// Counters every task of the run updates (the `mobile` scenario's too).
pub(super) struct Shared {
    /// Tags this run's messages.
    pub run: u64,
    origin: Instant,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub bounced: AtomicU64,
    /// Nanoseconds since `origin` of the last message received.
    last_received: AtomicU64,
    /// Messages sent before this (nanoseconds since `origin`) count, but not in the latency
    /// histograms: the server's first contact with each user (actors starting, caches filling).
    warm_until: u64,
    pub errors: Mutex<ErrorTally>,
}

impl Shared {
    /// For run `run` timed from `origin`, with messages sent in the first `warm` kept out of
    /// the latency histograms.
    pub fn new(run: u64, origin: Instant, warm: Duration) -> Shared {
        Shared {
            run,
            origin,
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            bounced: AtomicU64::new(0),
            last_received: AtomicU64::new(0),
            warm_until: nanos(warm),
            errors: Mutex::new(ErrorTally::default()),
        }
    }

    pub fn now(&self) -> u64 {
        nanos(self.origin.elapsed())
    }

    pub fn error(&self, kind: String, message: impl FnOnce() -> String) {
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).add(kind, message);
    }
}

/// A number unlikely to repeat across runs: wall-clock nanoseconds mixed with the pid.
pub fn run_id() -> u64 {
    let time = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    (time ^ (u64::from(std::process::id()) << 40)) % 1_000_000_000_000
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What a receiver saw.
#[derive(Default)]
pub(super) struct ReceiverResult {
    latency: Latency,
    series: Series,
    from_schedule: Latency,
    received: u64,
    out_of_order: u64,
    misrouted: u64,
    stale: u64,
}

#[derive(Default)]
pub(super) struct SenderResult {
    sent: u64,
    lag: Latency,
}

/// Where the receivers log in when they are on another server (`--receivers-at`).
fn receivers_common(args: &ChatArgs, senders: &Common) -> anyhow::Result<Option<Common>> {
    let (Some(at), Some(domain)) = (&args.receivers_at, &args.receivers_domain) else { return Ok(None) };
    let (host, port) = at.rsplit_once(':').ok_or_else(|| anyhow::anyhow!("--receivers-at takes HOST:PORT"))?;
    let port = port.parse().map_err(|_| anyhow::anyhow!("--receivers-at: {port:?} is not a port"))?;
    Ok(Some(Common { host: host.to_owned(), port: Some(port), domain: domain.clone(), ..senders.clone() }))
}

pub async fn run(args: ChatArgs) -> anyhow::Result<()> {
    if let Err(error) = raise_nofile_limit() {
        eprintln!("warning: could not raise the fd limit: {error}");
    }
    let pairs = args.pairs();
    if pairs == 0 {
        anyhow::bail!("no pairs: give --pairs or --users of at least 2");
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        anyhow::bail!("--rate must be a non-negative number");
    }
    let duration = super::positive_seconds(args.duration, "--duration")?;
    let drain = super::seconds(args.drain_seconds, "--drain-seconds")?;
    let open_loop = args.rate > 0.0;
    if !open_loop && args.window == 0 {
        anyhow::bail!("--window must be at least 1 in closed loop (--rate 0)");
    }
    // Some servers route to a full JID only once its resource is available (RFC 6121 §8.5.3.1).
    let mut common = args.common.clone();
    common.presence = true;
    let setup = Setup::new(&common).await?;
    let run = RunInfo::new("chat", setup.server().to_string());

    // Pair k is sessions 2k (its sender) and 2k+1 (its receiver).
    let (logins, logged_in) = match receivers_common(&args, &common)? {
        None => super::log_in_all(&setup, 0..2 * pairs).await,
        Some(receivers) => {
            let (logins, senders) = super::log_in_all(&setup, 0..pairs).await;
            let (_, receivers) = super::log_in_all(&Setup::new(&receivers).await?, 0..pairs).await;
            let senders = senders.into_iter().map(|(index, session)| (2 * index, session));
            (logins, senders.chain(receivers.into_iter().map(|(index, session)| (2 * index + 1, session))).collect())
        }
    };
    let mut sessions: Vec<Option<Session>> = (0..2 * pairs).map(|_| None).collect();
    for (index, session) in logged_in {
        if let Some(slot) = usize::try_from(index).ok().and_then(|i| sessions.get_mut(i)) {
            *slot = Some(session);
        }
    }
    let mut active = Vec::new();
    let mut sessions = sessions.into_iter();
    while let (Some(a), Some(b)) = (sessions.next(), sessions.next()) {
        match (a, b) {
            (Some(sender), Some(receiver)) => active.push((sender, receiver)),
            (Some(mut alone), None) | (None, Some(mut alone)) => {
                let _ = tokio::time::timeout(super::CLOSE_TIMEOUT, xmpp::close(&mut alone.writer)).await;
            }
            (None, None) => {}
        }
    }
    if active.is_empty() {
        anyhow::bail!("no pair has both users logged in");
    }
    let senders = active.len() as u64;

    let origin = Instant::now();
    let start = origin + SETTLE;
    let warmup = Duration::try_from_secs_f64(args.warmup_seconds).map_err(|_| anyhow::anyhow!("--warmup-seconds must be a non-negative number"))?;
    let shared = Arc::new(Shared::new(run_id(), origin, SETTLE + warmup));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut receivers: JoinSet<ReceiverResult> = JoinSet::new();
    let mut sender_tasks: JoinSet<SenderResult> = JoinSet::new();
    let mut watchers: JoinSet<ReceiverResult> = JoinSet::new();
    let mut writers = Vec::new();
    let mut scheduled = 0u64;
    for (pair, (sender, receiver)) in (0u64..).zip(active) {
        let window = (!open_loop).then(|| Arc::new(Semaphore::new(args.window as usize)));
        let receiver_writer = Arc::new(AsyncMutex::new(receiver.writer));
        let sender_writer = Arc::new(AsyncMutex::new(sender.writer));
        receivers.spawn(read_loop(receiver.reader, receiver_writer.clone(), Some(pair), window.clone(), shared.clone(), shutdown_rx.clone()));
        watchers.spawn(read_loop(sender.reader, sender_writer.clone(), None, None, shared.clone(), shutdown_rx.clone()));
        let message = MessageTemplate::new(&receiver.jid, shared.run, pair, args.payload_bytes);
        if let Some(window) = window {
            sender_tasks.spawn(send_closed_loop(sender_writer.clone(), message, window, start, start + duration, shared.clone()));
        } else {
            let pacer = Pacer::new(args.rate, senders, pair, duration).ok_or_else(|| anyhow::anyhow!("cannot pace {} msg/s", args.rate))?;
            scheduled += pacer.count();
            sender_tasks.spawn(send_open_loop(sender_writer.clone(), message, pacer, start, shared.clone()));
        }
        writers.push(receiver_writer);
        writers.push(sender_writer);
    }
    if !common.quiet {
        match open_loop {
            true => eprintln!("{senders} pairs sending {} msg/s in total for {duration:?}", args.rate),
            false => eprintln!("{senders} pairs sending closed-loop, window {}, for {duration:?}", args.window),
        }
    }

    tokio::time::sleep_until(start.into()).await;
    let window = Window::start(common.server_pid);
    let mut sent_results = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut last = (0u64, Instant::now());
    // A sender stuck in a write (a server that stopped reading) must not hold the run forever.
    let stalled_after = start + duration + drain + Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(stalled_after.into()) => {
                let stuck = sender_tasks.len();
                shared.error("sender:stalled".into(), || format!("{stuck} senders still blocked in a write after the run; stopped"));
                sender_tasks.abort_all();
                while sender_tasks.join_next().await.is_some() {}
                break;
            }
            joined = sender_tasks.join_next() => match joined {
                Some(Ok(result)) => sent_results.push(result),
                Some(Err(error)) => shared.error("harness:sender-task".into(), || error.to_string()),
                None => break,
            },
            _ = ticker.tick(), if !common.quiet => {
                let (sent, received) = (shared.sent.load(Ordering::Relaxed), shared.received.load(Ordering::Relaxed));
                let rate = per_second(received - last.0.min(received), last.1.elapsed());
                last = (received, Instant::now());
                eprintln!("[{:>6.1}s] sent {sent}, received {received} ({rate:.0}/s)", start.elapsed().as_secs_f64());
            }
        }
    }
    let send_period = start.elapsed();
    // The shared counter, not the task results: a stalled sender that was stopped has none.
    let sent = shared.sent.load(Ordering::Relaxed);

    // Drain: wait for what is still in flight.
    let drain_started = Instant::now();
    while shared.received.load(Ordering::Relaxed) < sent && drain_started.elapsed() < drain {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained = drain_started.elapsed();
    let usage = window.finish();

    let _ = shutdown_tx.send(true);
    let mut latency = Latency::new();
    let mut series = Series::default();
    let mut from_schedule = Latency::new();
    let (mut received, mut out_of_order, mut misrouted, mut stale) = (0u64, 0u64, 0u64, 0u64);
    let joined = tokio::time::timeout(super::CLOSE_TIMEOUT, async {
        while let Some(result) = receivers.join_next().await {
            match result {
                Ok(r) => {
                    latency.merge(&r.latency);
                    series.merge(&r.series);
                    from_schedule.merge(&r.from_schedule);
                    received += r.received;
                    out_of_order += r.out_of_order;
                    misrouted += r.misrouted;
                    stale += r.stale;
                }
                Err(error) => shared.error("harness:receiver-task".into(), || error.to_string()),
            }
        }
        while watchers.join_next().await.is_some() {}
    })
    .await;
    if joined.is_err() {
        receivers.abort_all();
        watchers.abort_all();
    }
    super::close_all(writers).await;

    let mut lag = Latency::new();
    for r in &sent_results {
        lag.merge(&r.lag);
    }
    let last_received = Duration::from_nanos(shared.last_received.load(Ordering::Relaxed));
    let elapsed = last_received.saturating_sub(start - origin);
    let results = ChatResults {
        mode: if open_loop { "open-loop" } else { "closed-loop" },
        pairs_requested: pairs,
        pairs_active: senders,
        target_rate: open_loop.then_some(args.rate),
        window: (!open_loop).then_some(args.window),
        duration_seconds: duration.as_secs_f64(),
        scheduled: open_loop.then_some(scheduled),
        sent,
        received,
        lost: i64::try_from(sent).unwrap_or(i64::MAX) - i64::try_from(received).unwrap_or(i64::MAX),
        bounced: shared.bounced.load(Ordering::Relaxed),
        out_of_order,
        misrouted,
        stale,
        elapsed_seconds: elapsed.as_secs_f64(),
        throughput_per_second: per_second(received, elapsed),
        send_rate_per_second: per_second(sent, send_period),
        drain_seconds: drained.as_secs_f64(),
        latency: latency.summary(),
        timeseries: series.points(),
        latency_from_schedule: if open_loop { from_schedule.summary() } else { LatencySummary::default() },
        send_lag: if open_loop { lag.summary() } else { LatencySummary::default() },
        errors: shared.errors.lock().unwrap_or_else(|p| p.into_inner()).clone(),
    };
    let mut options = args.clone();
    options.common.presence = true;
    let report = ChatReport { run, options, logins, chat: results, usage };
    print_chat(&report);
    if let Some(path) = &common.json_out {
        write_json(path, &report)?;
        println!("report written to {}", path.display());
    }
    Ok(())
}

fn print_chat(report: &ChatReport) {
    let c = &report.chat;
    match (c.target_rate, c.window) {
        (Some(rate), _) => println!("chat: {} pairs, open loop at {rate} msg/s for {:.1}s", c.pairs_active, c.duration_seconds),
        (None, window) => println!("chat: {} pairs, closed loop, window {} per sender, for {:.1}s", c.pairs_active, window.unwrap_or(0), c.duration_seconds),
    }
    let scheduled = c.scheduled.map(|s| format!(" (scheduled {s})")).unwrap_or_default();
    println!(
        "  sent {}{scheduled}, received {}, lost {}, bounced {}, out of order {}, misrouted {}, stale {}",
        c.sent, c.received, c.lost, c.bounced, c.out_of_order, c.misrouted, c.stale
    );
    println!(
        "  throughput: {:.1} msg/s received over {:.2}s (sent at {:.1} msg/s; drain took {:.2}s)",
        c.throughput_per_second, c.elapsed_seconds, c.send_rate_per_second, c.drain_seconds
    );
    println!("  latency: {}", c.latency);
    if c.target_rate.is_some() {
        println!("  latency from schedule: {}", c.latency_from_schedule);
        println!("  send lag behind schedule: p99 {} max {}", ms(c.send_lag.p99_us), ms(c.send_lag.max_us));
        if c.send_lag.p99_us > 10_000 {
            println!("  warning: senders fell behind the schedule (harness CPU, or the server not reading fast enough); latency from schedule includes that delay");
        }
    }
    print_errors("  session errors", &c.errors);
    report.usage.print("chat");
}

/// A message to one receiver, minus what changes per message.
pub(super) struct MessageTemplate {
    head: Vec<u8>,
    padding: usize,
}

impl MessageTemplate {
    pub fn new(to: &str, run: u64, pair: u64, padding: usize) -> MessageTemplate {
        let mut head = b"<message to='".to_vec();
        escape_attr(&mut head, to);
        head.extend_from_slice(b"' type='chat'><body>");
        head.extend_from_slice(MARKER);
        head.extend_from_slice(format!("{run} {pair} ").as_bytes());
        MessageTemplate { head, padding }
    }

    fn write(&self, out: &mut Vec<u8>, seq: u64, sent: u64, due: u64) {
        out.extend_from_slice(&self.head);
        out.extend_from_slice(format!("{seq} {sent} {due}").as_bytes());
        out.resize(out.len() + self.padding, b'x');
        out.extend_from_slice(b"</body></message>");
    }
}

/// What a test message's body says.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Marker {
    pub run: u64,
    pub pair: u64,
    pub seq: u64,
    sent: u64,
    due: u64,
}

/// The [`Marker`] of a body written by [`MessageTemplate::write`].
pub(super) fn parse_marker(bytes: &[u8]) -> Option<Marker> {
    let at = bytes.windows(MARKER.len()).position(|w| w == MARKER)?;
    let mut rest = &bytes[at + MARKER.len()..];
    let mut numbers = [0u64; 5];
    for (n, slot) in numbers.iter_mut().enumerate() {
        if n > 0 {
            rest = rest.strip_prefix(b" ")?;
        }
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        *slot = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
        rest = &rest[digits..];
    }
    let [run, pair, seq, sent, due] = numbers;
    Some(Marker { run, pair, seq, sent, due })
}

/// Sends on the open-loop schedule. A late wake-up sends everything already due in one batch, and
/// stamps each message with its due time.
pub(super) async fn send_open_loop(writer: Arc<AsyncMutex<Writer>>, message: MessageTemplate, pacer: Pacer, start: Instant, shared: Arc<Shared>) -> SenderResult {
    let mut result = SenderResult::default();
    let start_offset = nanos(start - shared.origin);
    let count = pacer.count();
    let mut next = 0u64;
    let mut buf = Vec::new();
    while next < count {
        let Some(due) = pacer.due(next) else { break };
        tokio::time::sleep_until((start + due).into()).await;
        let elapsed = start.elapsed();
        let upto = pacer.due_by(elapsed).clamp(next + 1, next + MAX_BATCH);
        result.lag.record(elapsed.saturating_sub(due));
        buf.clear();
        let sent = shared.now();
        for seq in next..upto {
            let due = pacer.due(seq).unwrap_or(due);
            message.write(&mut buf, seq, sent, start_offset + nanos(due));
        }
        if !write_batch(&writer, &buf, &shared).await {
            break;
        }
        shared.sent.fetch_add(upto - next, Ordering::Relaxed);
        result.sent += upto - next;
        next = upto;
    }
    result
}

/// Writes one batch of messages; false (after recording the error) when the connection failed.
async fn write_batch(writer: &AsyncMutex<Writer>, batch: &[u8], shared: &Shared) -> bool {
    let written = {
        let mut writer = writer.lock().await;
        xmpp::send(&mut *writer, batch).await
    };
    match written {
        Ok(()) => true,
        Err(error) => {
            shared.error(format!("sender:send:{}", io_kind(&error)), || error.to_string());
            false
        }
    }
}

/// Keeps `window` messages in flight until `deadline`; the receiver returns a permit per message.
async fn send_closed_loop(
    writer: Arc<AsyncMutex<Writer>>,
    message: MessageTemplate,
    window: Arc<Semaphore>,
    start: Instant,
    deadline: Instant,
    shared: Arc<Shared>,
) -> SenderResult {
    let mut result = SenderResult::default();
    let mut buf = Vec::new();
    tokio::time::sleep_until(start.into()).await;
    while Instant::now() < deadline {
        let permit = tokio::select! {
            permit = window.acquire() => permit,
            _ = tokio::time::sleep_until(deadline.into()) => break,
        };
        let Ok(permit) = permit else { break };
        permit.forget();
        let mut batch = 1;
        while batch < MAX_BATCH {
            let Ok(permit) = window.try_acquire() else { break };
            permit.forget();
            batch += 1;
        }
        let timestamp = shared.now();
        buf.clear();
        for seq in result.sent..result.sent + batch {
            message.write(&mut buf, seq, timestamp, timestamp);
        }
        if !write_batch(&writer, &buf, &shared).await {
            break;
        }
        shared.sent.fetch_add(batch, Ordering::Relaxed);
        result.sent += batch;
    }
    result
}

/// Reads one session until shutdown. A receiver (`pair` set) measures the test messages; a
/// sender's reader counts bounces. Both answer the server's IQs.
pub(super) async fn read_loop(
    mut reader: Reader,
    writer: Arc<AsyncMutex<Writer>>,
    pair: Option<u64>,
    window: Option<Arc<Semaphore>>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> ReceiverResult {
    let mut result = ReceiverResult::default();
    let mut expected = 0u64;
    let role = if pair.is_some() { "receiver" } else { "sender" };
    let error = |kind: String, message: String| shared.error(format!("{role}:{kind}"), || message);
    while let Some(element) = xmpp::next_in_run(&mut reader, &mut shutdown, &error).await {
        match element.name.as_str() {
            "message" if element.attr("type") == Some("error") => {
                shared.bounced.fetch_add(1, Ordering::Relaxed);
            }
            "message" => {
                let (Some(own), Some(marker)) = (pair, parse_marker(&element.bytes)) else { continue };
                if marker.run != shared.run {
                    result.stale += 1;
                    continue;
                }
                let now = shared.now();
                if marker.sent >= shared.warm_until {
                    result.latency.record_micros(now.saturating_sub(marker.sent) / 1000);
                    result.from_schedule.record_micros(now.saturating_sub(marker.due) / 1000);
                }
                result.series.record(now.saturating_sub(nanos(SETTLE)) / 1_000_000_000, now.saturating_sub(marker.sent) / 1000);
                result.received += 1;
                shared.received.fetch_add(1, Ordering::Relaxed);
                shared.last_received.fetch_max(now, Ordering::Relaxed);
                if marker.pair != own {
                    result.misrouted += 1;
                }
                if marker.seq != expected {
                    result.out_of_order += 1;
                }
                expected = expected.max(marker.seq.saturating_add(1));
                if let Some(window) = &window {
                    window.add_permits(1);
                }
            }
            _ => {
                if !xmpp::handle_other(&writer, &element, &error).await {
                    break;
                }
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trip() {
        let template = MessageTemplate::new("user2@localhost/a'b", 99, 7, 5);
        let mut buf = Vec::new();
        template.write(&mut buf, 42, 123_456_789, 123_000_000);
        let text = String::from_utf8(buf.clone()).expect("utf8");
        assert_eq!(text, "<message to='user2@localhost/a&apos;b' type='chat'><body>starling-lt 99 7 42 123456789 123000000xxxxx</body></message>");
        assert_eq!(parse_marker(&buf), Some(Marker { run: 99, pair: 7, seq: 42, sent: 123_456_789, due: 123_000_000 }));
    }

    #[test]
    fn marker_survives_reserialisation_and_rejects_garbage() {
        let forwarded = b"<message xmlns='jabber:client' from='a@b/c' to='d@e/f' type='chat'><body xmlns='jabber:client'>starling-lt 5 1 2 3 4</body></message>";
        assert_eq!(parse_marker(forwarded), Some(Marker { run: 5, pair: 1, seq: 2, sent: 3, due: 4 }));
        assert_eq!(parse_marker(b"<message><body>hello</body></message>"), None);
        assert_eq!(parse_marker(b"<body>starling-lt 5 1 x 3 4</body>"), None);
        assert_eq!(parse_marker(b"<body>starling-lt 5 1 2 3</body>"), None);
        assert_eq!(parse_marker(b"<body>starling-lt 5 1 99999999999999999999999 3 4</body>"), None);
    }
}
