//! `presence`: N users, each with K contacts among the test users, change their availability at an
//! aggregate rate; every contact measures the fan-out latency.
//!
//! Setup (measured separately): every user logs in with initial presence, adds its contacts with
//! roster sets (RFC 6121 §2.3) and sends each a `subscribe`; every user answers each `subscribe`
//! with `subscribed`. Setup is complete when every user has its roster sets acknowledged and a
//! `subscribed` from each contact (a server where the subscription already exists auto-replies,
//! RFC 6121 §3.1.3, so reruns work). The contact graph is symmetric: user i's contacts are
//! i±1 … i±⌊K/2⌋ (mod N) and, for odd K, i+N/2.
//!
//! Measured phase: each user broadcasts `<presence><status>starling-lt RUN USER SEQ SENT</status>`;
//! expected deliveries = Σ updates × online contacts of the sender.
//!
//! Over 400 lines: setup, run and report of one scenario read best in one place; its tests follow.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use starling_xml::escape_attr;
use tokio::sync::{Mutex as AsyncMutex, watch};
use tokio::task::JoinSet;

use super::fanout::FanOut;
use crate::cli::PresenceArgs;
use crate::logins::{LoginReport, Setup, print_errors};
use crate::procstat::raise_nofile_limit;
use crate::rate::Pacer;
use crate::report::{RunInfo, Usage, Window, write_json};
use crate::stats::{ErrorTally, LatencySummary, per_second};
use crate::timeseries::Point;
use crate::xmpp::{self, NS_STREAMS, Reader, Session, Writer, io_kind};

pub(super) const MARKER: &str = "starling-lt ";
const SETTLE: Duration = Duration::from_millis(500);
const NS_ROSTER: &str = "jabber:iq:roster";

#[derive(Debug, Serialize)]
struct PresenceReport {
    run: RunInfo,
    options: PresenceArgs,
    logins: LoginReport,
    setup: SetupResults,
    presence: PresenceResults,
    usage: Usage,
}

#[derive(Debug, Serialize)]
struct SetupResults {
    seconds: f64,
    roster_sets: u64,
    roster_acks: u64,
    subscriptions_requested: u64,
    subscriptions_confirmed: u64,
    users_complete: u64,
    timed_out: bool,
}

#[derive(Debug, Serialize)]
struct PresenceResults {
    users_requested: u64,
    users_active: u64,
    contacts_per_user: u64,
    target_rate: f64,
    duration_seconds: f64,
    scheduled: u64,
    updates_sent: u64,
    /// Σ over updates of the sender's online contacts.
    expected_deliveries: u64,
    deliveries: u64,
    /// expected − received (negative if the server duplicated).
    missing: i64,
    /// Updates that reached a user not a contact of the sender.
    misrouted: u64,
    /// The sender's own update echoed back to it (not counted as a delivery).
    self_echo: u64,
    /// Updates of another run, ignored.
    stale: u64,
    elapsed_seconds: f64,
    deliveries_per_second: f64,
    updates_per_second: f64,
    drain_seconds: f64,
    latency: LatencySummary,
    timeseries: Vec<Point>,
    errors: ErrorTally,
}

/// Contacts of each of `n` users, K each, symmetric.
pub fn contact_graph(n: u64, k: u64) -> anyhow::Result<Vec<Vec<u64>>> {
    if k >= n {
        anyhow::bail!("--contacts ({k}) must be smaller than --users ({n})");
    }
    if k % 2 == 1 && n % 2 == 1 {
        anyhow::bail!("an odd --contacts needs an even --users");
    }
    let mut graph = vec![Vec::new(); n as usize];
    for i in 0..n {
        for d in 1..=k / 2 {
            graph[i as usize].push((i + d) % n);
            graph[i as usize].push((i + n - d) % n);
        }
        if k % 2 == 1 {
            graph[i as usize].push((i + n / 2) % n);
        }
    }
    Ok(graph)
}

/// Setup progress.
struct Counters {
    roster_acks: AtomicU64,
    subscribed: AtomicU64,
    complete: AtomicU64,
}

type Shared = FanOut<Counters>;

#[derive(Default)]
struct ReaderResult {
    misrouted: u64,
    self_echo: u64,
    stale: u64,
}

fn bare(jid: &str) -> String {
    jid.split('/').next().unwrap_or(jid).to_ascii_lowercase()
}

pub async fn run(args: PresenceArgs) -> anyhow::Result<()> {
    if let Err(error) = raise_nofile_limit() {
        eprintln!("warning: could not raise the fd limit: {error}");
    }
    let n = args.common.users;
    let graph = contact_graph(n, args.contacts)?;
    if !(args.rate.is_finite() && args.rate > 0.0) {
        anyhow::bail!("--rate must be positive");
    }
    let duration = super::positive_seconds(args.duration, "--duration")?;
    let drain = super::seconds(args.drain_seconds, "--drain-seconds")?;
    let setup_timeout = super::seconds(args.setup_timeout, "--setup-timeout")?;
    let mut common = args.common.clone();
    common.presence = true;
    let setup = Setup::new(&common).await?;
    let run = RunInfo::new("presence", setup.server().to_string());

    let (logins, logged_in) = super::log_in_all(&setup, 0..n).await;
    let mut sessions: HashMap<u64, Session> = logged_in.into_iter().collect();
    if sessions.len() < 2 {
        anyhow::bail!("fewer than two users logged in");
    }
    let online: Vec<Vec<u64>> = (0..n).map(|i| graph[i as usize].iter().copied().filter(|c| sessions.contains_key(c)).collect()).collect();
    let bare_of = |i: u64| format!("{}@{}", common.username(i).unwrap_or_default(), common.domain).to_ascii_lowercase();
    let index_of: Arc<HashMap<String, u64>> = Arc::new((0..n).map(|i| (bare_of(i), i)).collect());

    let shared = Arc::new(FanOut::new(
        crate::scenario::chat::run_id(),
        Counters { roster_acks: AtomicU64::new(0), subscribed: AtomicU64::new(0), complete: AtomicU64::new(0) },
    ));
    let origin = shared.origin;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut readers: JoinSet<ReaderResult> = JoinSet::new();
    let mut writers: Vec<(u64, Arc<AsyncMutex<Writer>>)> = Vec::new();
    let mut indices: Vec<u64> = sessions.keys().copied().collect();
    indices.sort_unstable();
    for &i in &indices {
        let Some(session) = sessions.remove(&i) else { continue };
        let writer = Arc::new(AsyncMutex::new(session.writer));
        let contacts: HashSet<u64> = online[i as usize].iter().copied().collect();
        readers.spawn(read_loop(session.reader, writer.clone(), i, contacts, index_of.clone(), shared.clone(), shutdown_rx.clone()));
        writers.push((i, writer));
    }
    let active = writers.len() as u64;

    // Setup: roster sets, then subscription requests.
    let setup_started = Instant::now();
    let (mut roster_sets, mut requested) = (0u64, 0u64);
    let mut setup_tasks = JoinSet::new();
    for (i, writer) in &writers {
        let mut buf = Vec::new();
        for &c in &online[*i as usize] {
            let jid = bare_of(c);
            buf.extend_from_slice(format!("<iq type='set' id='lt-roster-{c}'><query xmlns='{NS_ROSTER}'><item jid='").as_bytes());
            escape_attr(&mut buf, &jid);
            buf.extend_from_slice(b"'/></query></iq><presence type='subscribe' to='");
            escape_attr(&mut buf, &jid);
            buf.extend_from_slice(b"'/>");
            roster_sets += 1;
            requested += 1;
        }
        let (writer, shared) = (writer.clone(), shared.clone());
        setup_tasks.spawn(async move {
            if let Err(error) = xmpp::send(&mut *writer.lock().await, &buf).await {
                shared.error(format!("setup:send:{}", io_kind(&error)), || error.to_string());
            }
        });
    }
    while setup_tasks.join_next().await.is_some() {}
    let mut timed_out = false;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        let (acks, subscribed) = (shared.counters.roster_acks.load(Ordering::Relaxed), shared.counters.subscribed.load(Ordering::Relaxed));
        if acks >= roster_sets && subscribed >= requested {
            break;
        }
        if setup_started.elapsed() >= setup_timeout {
            timed_out = true;
            shared.error("setup:timeout".into(), || format!("after {setup_timeout:?}: {acks}/{roster_sets} roster sets acknowledged, {subscribed}/{requested} subscriptions confirmed"));
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            _ = ticker.tick(), if !common.quiet => eprintln!("[setup {:>5.1}s] roster sets {acks}/{roster_sets}, subscriptions {subscribed}/{requested}", setup_started.elapsed().as_secs_f64()),
        }
    }
    let setup_results = SetupResults {
        seconds: setup_started.elapsed().as_secs_f64(),
        roster_sets,
        roster_acks: shared.counters.roster_acks.load(Ordering::Relaxed),
        subscriptions_requested: requested,
        subscriptions_confirmed: shared.counters.subscribed.load(Ordering::Relaxed),
        users_complete: shared.counters.complete.load(Ordering::Relaxed),
        timed_out,
    };
    // Presence the server sends once subscriptions are mutual (probes, initial broadcasts) passes.
    tokio::time::sleep(SETTLE).await;

    if !common.quiet {
        eprintln!("{active} users, {} contacts each, {} presence updates/s in total for {duration:?}", args.contacts, args.rate);
    }
    let start = Instant::now();
    shared.start_measuring(start);
    let window = Window::start(common.server_pid);
    let mut senders: JoinSet<(u64, u64)> = JoinSet::new();
    let mut scheduled = 0u64;
    for (slot, (i, writer)) in (0u64..).zip(&writers) {
        let pacer = Pacer::new(args.rate, active, slot, duration).ok_or_else(|| anyhow::anyhow!("cannot pace {} updates/s", args.rate))?;
        scheduled += pacer.count();
        senders.spawn(send_updates(writer.clone(), *i, pacer, start, shared.clone()));
    }
    let (mut sent, mut expected) = (0u64, 0u64);
    let stalled_after = start + duration + drain + Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(stalled_after.into()) => {
                shared.error("sender:stalled".into(), || "senders still blocked in a write after the run; stopped".into());
                senders.abort_all();
                while senders.join_next().await.is_some() {}
                break;
            }
            joined = senders.join_next() => match joined {
                Some(Ok((i, count))) => {
                    sent += count;
                    expected += count * online[i as usize].len() as u64;
                }
                Some(Err(error)) => shared.error("harness:sender-task".into(), || error.to_string()),
                None => break,
            },
            _ = ticker.tick(), if !common.quiet => {
                eprintln!("[{:>6.1}s] deliveries {}", start.elapsed().as_secs_f64(), shared.deliveries.load(Ordering::Relaxed));
            }
        }
    }
    let send_period = start.elapsed();
    let merge = |total: &mut ReaderResult, r: ReaderResult| {
        total.misrouted += r.misrouted;
        total.self_echo += r.self_echo;
        total.stale += r.stale;
    };
    let failed = |message: String| shared.error("harness:reader-task".into(), || message);
    let running = super::Running { window, shutdown: shutdown_tx, readers, writers: writers.into_iter().map(|(_, writer)| writer).collect() };
    let (drained, usage, total) = super::drain_and_collect(expected, || shared.deliveries.load(Ordering::Relaxed), drain, running, merge, failed).await;
    let received = shared.received();

    let last = Duration::from_nanos(shared.last_received.load(Ordering::Relaxed));
    let elapsed = last.saturating_sub(start - origin);
    let results = PresenceResults {
        users_requested: n,
        users_active: active,
        contacts_per_user: args.contacts,
        target_rate: args.rate,
        duration_seconds: duration.as_secs_f64(),
        scheduled,
        updates_sent: sent,
        expected_deliveries: expected,
        deliveries: received.count,
        missing: i64::try_from(expected).unwrap_or(i64::MAX) - i64::try_from(received.count).unwrap_or(i64::MAX),
        misrouted: total.misrouted,
        self_echo: total.self_echo,
        stale: total.stale,
        elapsed_seconds: elapsed.as_secs_f64(),
        deliveries_per_second: per_second(received.count, elapsed),
        updates_per_second: per_second(sent, send_period),
        drain_seconds: drained.as_secs_f64(),
        latency: received.latency.summary(),
        timeseries: received.series.points(),
        errors: shared.errors(),
    };
    let mut options = args.clone();
    options.common.presence = true;
    let report = PresenceReport { run, options, logins, setup: setup_results, presence: results, usage };
    print_report(&report);
    if let Some(path) = &common.json_out {
        write_json(path, &report)?;
    }
    Ok(())
}

fn print_report(report: &PresenceReport) {
    let s = &report.setup;
    println!(
        "setup: {:.2}s, roster sets {}/{} acknowledged, subscriptions {}/{} confirmed{}",
        s.seconds,
        s.roster_acks,
        s.roster_sets,
        s.subscriptions_confirmed,
        s.subscriptions_requested,
        if s.timed_out { " (TIMED OUT)" } else { "" }
    );
    let p = &report.presence;
    println!("presence: {} users x {} contacts, {} updates/s target for {:.1}s", p.users_active, p.contacts_per_user, p.target_rate, p.duration_seconds);
    println!(
        "  updates sent {} ({:.1}/s), deliveries {}/{} expected ({:.1}/s), missing {}, misrouted {}, self-echo {}, stale {}",
        p.updates_sent, p.updates_per_second, p.deliveries, p.expected_deliveries, p.deliveries_per_second, p.missing, p.misrouted, p.self_echo, p.stale
    );
    println!("  fan-out latency: {}", p.latency);
    print_errors("  session errors", &p.errors);
    report.usage.print("presence");
}

async fn send_updates(writer: Arc<AsyncMutex<Writer>>, user: u64, pacer: Pacer, start: Instant, shared: Arc<Shared>) -> (u64, u64) {
    let marked = |seq: u64, sent: u64, buf: &mut Vec<u8>| buf.extend_from_slice(format!("<presence><status>{MARKER}{} {user} {seq} {sent}</status></presence>", shared.run).as_bytes());
    let failed = |kind: String, message: String| shared.error(kind, || message);
    (user, send_marked(&writer, &pacer, start, || shared.now(), failed, marked).await)
}

/// Writes `pacer`'s stanzas on time (those that fell due together in one write), each made by
/// `marked` from its sequence number and the send time (`now`, in the run's clock). Returns how
/// many were sent.
pub(super) async fn send_marked(
    writer: &AsyncMutex<Writer>,
    pacer: &Pacer,
    start: Instant,
    now: impl Fn() -> u64,
    failed: impl Fn(String, String),
    marked: impl Fn(u64, u64, &mut Vec<u8>),
) -> u64 {
    let mut next = 0u64;
    let count = pacer.count();
    let mut buf = Vec::new();
    while next < count {
        let Some(due) = pacer.due(next) else { break };
        tokio::time::sleep_until((start + due).into()).await;
        let upto = pacer.due_by(start.elapsed()).clamp(next + 1, next + 64);
        buf.clear();
        let sent = now();
        for seq in next..upto {
            marked(seq, sent, &mut buf);
        }
        if let Err(error) = xmpp::send(&mut *writer.lock().await, &buf).await {
            failed(format!("sender:send:{}", io_kind(&error)), error.to_string());
            break;
        }
        next = upto;
    }
    next
}

/// (run, user, seq, sent) of a marked status or body: `starling-lt RUN USER SEQ SENT` up to the
/// next tag.
pub(super) fn parse_marker(bytes: &[u8]) -> Option<(u64, u64, u64, u64)> {
    let marker = MARKER.as_bytes();
    let at = bytes.windows(marker.len()).position(|w| w == marker)?;
    let rest = std::str::from_utf8(&bytes[at + marker.len()..]).ok()?;
    let rest = &rest[..rest.find('<')?];
    let mut numbers = rest.split(' ').map(|n| n.parse::<u64>().ok());
    let parsed = (numbers.next()??, numbers.next()??, numbers.next()??, numbers.next()??);
    numbers.next().is_none().then_some(parsed)
}

async fn read_loop(
    mut reader: Reader,
    writer: Arc<AsyncMutex<Writer>>,
    own: u64,
    contacts: HashSet<u64>,
    index_of: Arc<HashMap<String, u64>>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> ReaderResult {
    let mut result = ReaderResult::default();
    let mut confirmed: HashSet<u64> = HashSet::new();
    let mut acked: HashSet<String> = HashSet::new();
    let mut complete = false;
    let error = |kind: String, message: String| shared.error(kind, || message);
    while let Some(element) = xmpp::next_in_run(&mut reader, &mut shutdown, &error).await {
        let from = element.attr("from").map(bare);
        let from_index = from.as_ref().and_then(|f| index_of.get(f).copied());
        let mut reply: Option<Vec<u8>> = None;
        match (element.name.as_str(), element.attr("type")) {
            ("presence", Some("subscribe")) => {
                if let Some(from) = &from {
                    let mut out = b"<presence type='subscribed' to='".to_vec();
                    escape_attr(&mut out, from);
                    out.extend_from_slice(b"'/>");
                    reply = Some(out);
                }
            }
            ("presence", Some("subscribed")) => {
                if let Some(c) = from_index.filter(|c| contacts.contains(c))
                    && confirmed.insert(c)
                {
                    shared.counters.subscribed.fetch_add(1, Ordering::Relaxed);
                }
            }
            ("presence", None) => {
                let Some((run, user, _seq, sent)) = parse_marker(&element.bytes) else { continue };
                if run != shared.run {
                    result.stale += 1;
                    continue;
                }
                if user == own {
                    result.self_echo += 1;
                    continue;
                }
                shared.delivered(own, sent);
                if !contacts.contains(&user) || from_index != Some(user) {
                    result.misrouted += 1;
                }
            }
            ("iq", Some("result" | "error")) => {
                if let Some(id) = element.attr("id").filter(|id| id.starts_with("lt-roster-"))
                    && acked.insert(id.to_string())
                {
                    if element.attr("type") == Some("error") {
                        error("setup:roster-set-error".into(), format!("roster set {id} of user {own} failed"));
                    }
                    shared.counters.roster_acks.fetch_add(1, Ordering::Relaxed);
                }
            }
            ("iq", Some("set")) if xmpp::tree(&element).is_ok_and(|t| t.get_child("query", NS_ROSTER).is_some()) => {
                // Roster push (RFC 6121 §2.1.6): acknowledge.
                let mut out = b"<iq type='result' id='".to_vec();
                escape_attr(&mut out, element.attr("id").unwrap_or_default());
                out.extend_from_slice(b"'/>");
                reply = Some(out);
            }
            ("iq", _) => reply = xmpp::iq_reply(&element),
            ("error", _) if element.ns == NS_STREAMS => {
                let condition = xmpp::stream_error_condition(&element);
                error(format!("stream-error:{condition}"), format!("stream error {condition}"));
                break;
            }
            _ => {}
        }
        if !complete && confirmed.len() >= contacts.len() && acked.len() >= contacts.len() {
            complete = true;
            shared.counters.complete.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(reply) = reply
            && !super::answer(&writer, &reply, error).await
        {
            break;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_is_symmetric_with_k_contacts() {
        for (n, k) in [(10, 3), (10, 4), (7, 2), (200, 10), (2, 1)] {
            let g = contact_graph(n, k).expect("valid");
            for (i, contacts) in g.iter().enumerate() {
                let set: HashSet<u64> = contacts.iter().copied().collect();
                assert_eq!(set.len() as u64, k, "n={n} k={k} i={i}");
                assert!(!set.contains(&(i as u64)));
                for &c in contacts {
                    assert!(g[c as usize].contains(&(i as u64)));
                }
            }
        }
        assert!(contact_graph(5, 3).is_err());
        assert!(contact_graph(3, 3).is_err());
    }

    #[test]
    fn marker() {
        let status = b"<presence from='user1@localhost/x'><status xmlns='jabber:client'>starling-lt 9 1 2 345</status></presence>";
        assert_eq!(parse_marker(status), Some((9, 1, 2, 345)));
        assert_eq!(parse_marker(b"<presence><status>starling-lt 9 1 2</status></presence>"), None);
        assert_eq!(parse_marker(b"<presence/>"), None);
    }
}
