//! `muc`: N users in R rooms (user i in room i mod R, so rooms of about N/R occupants) send
//! groupchat messages at an aggregate rate; every occupant measures the latency of each message
//! it gets — the sender's own reflection included (XEP-0045 §7.4) — so the deliveries expected are
//! Σ messages × occupants of the sender's room.
//!
//! Setup (measured separately): the first user of each room creates it and accepts the default
//! configuration (an instant room, XEP-0045 §10.1.2), then everyone else joins its room asking for
//! no history. Rooms are named by the run, so nothing of an earlier run is in them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use starling_xml::{escape_attr, escape_text};
use tokio::sync::{Mutex as AsyncMutex, watch};
use tokio::task::JoinSet;

use super::fanout::FanOut;
use super::presence::{parse_marker, send_marked, MARKER};
use crate::cli::MucArgs;
use crate::logins::{LoginReport, Setup, print_errors};
use crate::procstat::raise_nofile_limit;
use crate::rate::Pacer;
use crate::report::{RunInfo, Usage, Window, write_json};
use crate::stats::{ErrorTally, LatencySummary, per_second};
use crate::timeseries::Point;
use crate::xmpp::{self, NS_STREAMS, Reader, Writer, io_kind};

const NS_MUC: &str = "http://jabber.org/protocol/muc";
const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";

#[derive(Debug, Serialize)]
struct MucReport {
    run: RunInfo,
    options: MucArgs,
    logins: LoginReport,
    setup: SetupResults,
    muc: MucResults,
    usage: Usage,
}

#[derive(Debug, Serialize)]
struct SetupResults {
    seconds: f64,
    rooms: u64,
    rooms_configured: u64,
    occupants_joined: u64,
    timed_out: bool,
}

#[derive(Debug, Serialize)]
struct MucResults {
    users_active: u64,
    rooms: u64,
    target_rate: f64,
    duration_seconds: f64,
    scheduled: u64,
    messages_sent: u64,
    /// Σ over messages of the occupants of the sender's room.
    expected_deliveries: u64,
    deliveries: u64,
    /// expected − received (negative if the server duplicated).
    missing: i64,
    /// Messages of another run, ignored.
    stale: u64,
    elapsed_seconds: f64,
    deliveries_per_second: f64,
    messages_per_second: f64,
    drain_seconds: f64,
    latency: LatencySummary,
    timeseries: Vec<Point>,
    errors: ErrorTally,
}

/// Setup progress.
struct Counters {
    joined: AtomicU64,
    configured: AtomicU64,
}

type Shared = FanOut<Counters>;

#[derive(Default)]
struct ReaderResult {
    stale: u64,
}

/// One user's place: its room's JID and its nick there.
struct Seat {
    user: u64,
    room: String,
    nick: String,
}

pub async fn run(args: MucArgs) -> anyhow::Result<()> {
    if let Err(error) = raise_nofile_limit() {
        eprintln!("warning: could not raise the fd limit: {error}");
    }
    let (n, rooms) = (args.common.users, args.rooms);
    if rooms == 0 || rooms > n {
        anyhow::bail!("--rooms must be between 1 and --users");
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        anyhow::bail!("--rate must be positive");
    }
    let duration = super::positive_seconds(args.duration, "--duration")?;
    let drain = super::seconds(args.drain_seconds, "--drain-seconds")?;
    let setup_timeout = super::seconds(args.setup_timeout, "--setup-timeout")?;
    let common = args.common.clone();
    let setup = Setup::new(&common).await?;
    let run = RunInfo::new("muc", setup.server().to_string());
    let service = args.service.clone().unwrap_or_else(|| format!("conference.{}", common.domain));
    let run_id = crate::scenario::chat::run_id();
    let seat = |i: u64| Seat { user: i, room: format!("lt{run_id}-{}@{service}", i % rooms), nick: format!("u{i}") };

    let (logins, logged_in) = super::log_in_all(&setup, 0..n).await;
    if logged_in.is_empty() {
        anyhow::bail!("nobody logged in");
    }
    let shared = Arc::new(FanOut::new(run_id, Counters { joined: AtomicU64::new(0), configured: AtomicU64::new(0) }));
    let origin = shared.origin;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut readers: JoinSet<ReaderResult> = JoinSet::new();
    let mut writers: Vec<(u64, Arc<AsyncMutex<Writer>>)> = Vec::new();
    for (i, session) in logged_in {
        let writer = Arc::new(AsyncMutex::new(session.writer));
        readers.spawn(read_loop(session.reader, writer.clone(), seat(i), shared.clone(), shutdown_rx.clone()));
        writers.push((i, writer));
    }
    let active = writers.len() as u64;

    // Setup: creators (the first user of each room) join and configure, then everyone else joins.
    let setup_started = Instant::now();
    let (creators, others): (Vec<_>, Vec<_>) = writers.iter().partition(|(i, _)| *i < rooms);
    let join = |i: u64| {
        let seat = seat(i);
        let mut out = b"<presence to='".to_vec();
        escape_attr(&mut out, &format!("{}/{}", seat.room, seat.nick));
        out.extend_from_slice(format!("'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>").as_bytes());
        out
    };
    let mut fields = Vec::new();
    if !args.presence_broadcast.is_empty() {
        fields.extend_from_slice(b"<field var='muc#roomconfig_presencebroadcast'>");
        for role in &args.presence_broadcast {
            fields.extend_from_slice(b"<value>");
            escape_text(&mut fields, role);
            fields.extend_from_slice(b"</value>");
        }
        fields.extend_from_slice(b"</field>");
    }
    let configure = |i: u64| {
        let mut out = format!("<iq type='set' id='lt-muc-config-{i}' to='").into_bytes();
        escape_attr(&mut out, &seat(i).room);
        out.extend_from_slice(format!("'><query xmlns='{NS_MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'>").as_bytes());
        out.extend_from_slice(&fields);
        out.extend_from_slice(b"</x></query></iq>");
        out
    };
    let mut timed_out = false;
    let creator_count = creators.len() as u64;
    send_each(&creators, join, &shared).await;
    timed_out |= !shared.wait_for(&shared.counters.joined, creator_count, setup_started, setup_timeout, "creators joined").await;
    send_each(&creators, configure, &shared).await;
    timed_out |= !shared.wait_for(&shared.counters.configured, creator_count, setup_started, setup_timeout, "rooms configured").await;
    send_each(&others, join, &shared).await;
    timed_out |= !shared.wait_for(&shared.counters.joined, active, setup_started, setup_timeout, "occupants joined").await;
    let setup_results = SetupResults {
        seconds: setup_started.elapsed().as_secs_f64(),
        rooms,
        rooms_configured: shared.counters.configured.load(Ordering::Relaxed),
        occupants_joined: shared.counters.joined.load(Ordering::Relaxed),
        timed_out,
    };
    // Joins' presence broadcasts pass before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut occupants: HashMap<u64, u64> = HashMap::new();
    for (i, _) in &writers {
        *occupants.entry(i % rooms).or_default() += 1;
    }

    if !common.quiet {
        eprintln!("{active} users in {rooms} rooms, {} groupchat messages/s in total for {duration:?}", args.rate);
    }
    let start = Instant::now();
    shared.start_measuring(start);
    let window = Window::start(common.server_pid);
    let mut senders: JoinSet<(u64, u64)> = JoinSet::new();
    let mut scheduled = 0u64;
    for (slot, (i, writer)) in (0u64..).zip(&writers) {
        let pacer = Pacer::new(args.rate, active, slot, duration).ok_or_else(|| anyhow::anyhow!("cannot pace {} messages/s", args.rate))?;
        scheduled += pacer.count();
        let (writer, shared, user, room) = (writer.clone(), shared.clone(), *i, seat(*i).room);
        senders.spawn(async move {
            let marked = |seq: u64, sent: u64, buf: &mut Vec<u8>| {
                buf.extend_from_slice(b"<message type='groupchat' to='");
                escape_attr(buf, &room);
                buf.extend_from_slice(format!("'><body>{MARKER}{} {user} {seq} {sent}</body></message>", shared.run).as_bytes());
            };
            let failed = |kind: String, message: String| shared.error(kind, || message);
            (user, send_marked(&writer, &pacer, start, || shared.now(), failed, marked).await)
        });
    }
    let (mut sent, mut expected) = (0u64, 0u64);
    while let Some(joined) = senders.join_next().await {
        match joined {
            Ok((user, count)) => {
                sent += count;
                expected += count * occupants.get(&(user % rooms)).copied().unwrap_or(0);
            }
            Err(error) => shared.error("harness:sender-task".into(), || error.to_string()),
        }
    }
    let send_period = start.elapsed();
    let merge = |total: &mut ReaderResult, r: ReaderResult| total.stale += r.stale;
    let failed = |message: String| shared.error("harness:reader-task".into(), || message);
    let running = super::Running { window, shutdown: shutdown_tx, readers, writers: writers.into_iter().map(|(_, writer)| writer).collect() };
    let (drained, usage, total) = super::drain_and_collect(expected, || shared.deliveries.load(Ordering::Relaxed), drain, running, merge, failed).await;
    let received = shared.received();

    let last = Duration::from_nanos(shared.last_received.load(Ordering::Relaxed));
    let elapsed = last.saturating_sub(start - origin);
    let results = MucResults {
        users_active: active,
        rooms,
        target_rate: args.rate,
        duration_seconds: duration.as_secs_f64(),
        scheduled,
        messages_sent: sent,
        expected_deliveries: expected,
        deliveries: received.count,
        missing: i64::try_from(expected).unwrap_or(i64::MAX) - i64::try_from(received.count).unwrap_or(i64::MAX),
        stale: total.stale,
        elapsed_seconds: elapsed.as_secs_f64(),
        deliveries_per_second: per_second(received.count, elapsed),
        messages_per_second: per_second(sent, send_period),
        drain_seconds: drained.as_secs_f64(),
        latency: received.latency.summary(),
        timeseries: received.series.points(),
        errors: shared.errors(),
    };
    let report = MucReport { run, options: args.clone(), logins, setup: setup_results, muc: results, usage };
    print_report(&report);
    if let Some(path) = &common.json_out {
        write_json(path, &report)?;
    }
    Ok(())
}

/// Writes `stanza(i)` on each session, all at once.
async fn send_each(writers: &[&(u64, Arc<AsyncMutex<Writer>>)], stanza: impl Fn(u64) -> Vec<u8>, shared: &Arc<Shared>) {
    let mut tasks = JoinSet::new();
    for (i, writer) in writers {
        let (bytes, writer, shared) = (stanza(*i), writer.clone(), shared.clone());
        tasks.spawn(async move {
            if let Err(error) = xmpp::send(&mut *writer.lock().await, &bytes).await {
                shared.error(format!("setup:send:{}", io_kind(&error)), || error.to_string());
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

fn print_report(report: &MucReport) {
    let s = &report.setup;
    println!(
        "setup: {:.2}s, {}/{} rooms configured, {} occupants joined{}",
        s.seconds,
        s.rooms_configured,
        s.rooms,
        s.occupants_joined,
        if s.timed_out { " (TIMED OUT)" } else { "" }
    );
    let m = &report.muc;
    println!("muc: {} users in {} rooms, {} messages/s target for {:.1}s", m.users_active, m.rooms, m.target_rate, m.duration_seconds);
    println!(
        "  messages sent {} ({:.1}/s), deliveries {}/{} expected ({:.1}/s), missing {}, stale {}",
        m.messages_sent, m.messages_per_second, m.deliveries, m.expected_deliveries, m.deliveries_per_second, m.missing, m.stale
    );
    println!("  fan-out latency: {}", m.latency);
    print_errors("  session errors", &m.errors);
    report.usage.print("muc");
}

async fn read_loop(mut reader: Reader, writer: Arc<AsyncMutex<Writer>>, seat: Seat, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) -> ReaderResult {
    let mut result = ReaderResult::default();
    let own = format!("{}/{}", seat.room, seat.nick);
    let mut joined = false;
    let error = |kind: String, message: String| shared.error(kind, || message);
    while let Some(element) = xmpp::next_in_run(&mut reader, &mut shutdown, &error).await {
        let mut reply: Option<Vec<u8>> = None;
        match (element.name.as_str(), element.attr("type")) {
            ("presence", Some("error")) => {
                let condition = xmpp::tree(&element).ok().and_then(|tree| tree.children().find(|c| c.name() == "error").and_then(|e| e.children().next().map(|c| c.name().to_owned())));
                error(format!("setup:join-error:{}", condition.unwrap_or_default()), format!("{own} could not join"));
            }
            ("presence", None) if !joined && element.attr("from").is_some_and(|from| from.eq_ignore_ascii_case(&own)) => {
                joined = true;
                shared.counters.joined.fetch_add(1, Ordering::Relaxed);
            }
            ("message", Some("groupchat")) => {
                let Some((run, _user, _seq, sent)) = parse_marker(&element.bytes) else { continue };
                if run != shared.run {
                    result.stale += 1;
                    continue;
                }
                shared.delivered(seat.user, sent);
            }
            ("message", Some("error")) => error("message-error".into(), format!("a groupchat message of {own} was refused")),
            ("iq", Some("result")) if element.attr("id").is_some_and(|id| id.starts_with("lt-muc-config-")) => {
                shared.counters.configured.fetch_add(1, Ordering::Relaxed);
            }
            ("iq", Some("error")) if element.attr("id").is_some_and(|id| id.starts_with("lt-muc-config-")) => {
                error("setup:config-error".into(), format!("{} refused its configuration", seat.room));
            }
            ("iq", _) => reply = xmpp::iq_reply(&element),
            ("error", _) if element.ns == NS_STREAMS => {
                let condition = xmpp::stream_error_condition(&element);
                error(format!("stream-error:{condition}"), format!("stream error {condition}"));
                break;
            }
            _ => {}
        }
        if let Some(reply) = reply
            && !super::answer(&writer, &reply, error).await
        {
            break;
        }
    }
    result
}
