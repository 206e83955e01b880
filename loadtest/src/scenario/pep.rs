//! `pep`: one publisher (user 0) and N contacts (users 1..N) with mutual presence subscriptions
//! (built in a measured setup phase), whose clients ask for the node (`NODE+notify` among the
//! features of their XEP-0115 capabilities, which they announce in their presence and describe
//! when the server asks with disco#info). The publisher publishes to its PEP node (XEP-0163) at a
//! rate; every contact measures the latency of each notification.
//!
//! Setup: the publisher adds every contact and asks for its subscription, every contact asks for
//! the publisher's; everyone approves what it is asked. Then the contacts announce their caps,
//! and one warm-up item is published: setup ends when every contact has its notification (so the
//! server knows everyone's interest before measuring).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use sha1::{Digest, Sha1};
use starling_xml::escape_attr;
use tokio::sync::{Mutex as AsyncMutex, watch};
use tokio::task::JoinSet;

use super::fanout::FanOut;
use super::presence::{MARKER, parse_marker, send_marked};
use crate::cli::PepArgs;
use crate::logins::{LoginReport, Setup, print_errors};
use crate::procstat::raise_nofile_limit;
use crate::rate::Pacer;
use crate::report::{RunInfo, Usage, Window, write_json};
use crate::stats::{ErrorTally, LatencySummary, per_second};
use crate::timeseries::Point;
use crate::xmpp::{self, NS_STREAMS, Reader, Writer, io_kind};

const NODE: &str = "urn:starling:loadtest";
const CAPS_NODE: &str = "https://starling.example/loadtest";
const FEATURES: [&str; 3] = ["http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#info", "urn:starling:loadtest+notify"];
const IDENTITY: (&str, &str, &str) = ("client", "bot", "starling-lt");
pub(super) const WARM_UP: &str = "warm-up";

#[derive(Debug, Serialize)]
struct PepReport {
    run: RunInfo,
    options: PepArgs,
    logins: LoginReport,
    setup: SetupResults,
    pep: PepResults,
    usage: Usage,
}

#[derive(Debug, Serialize)]
pub(super) struct SetupResults {
    pub seconds: f64,
    subscriptions_confirmed: u64,
    /// disco#info requests the contacts answered (one per contact unless the server shares a
    /// verified hash).
    caps_queries: u64,
    warm_up_notified: u64,
    pub timed_out: bool,
}

#[derive(Debug, Serialize)]
struct PepResults {
    contacts: u64,
    target_rate: f64,
    duration_seconds: f64,
    scheduled: u64,
    items_published: u64,
    expected_notifications: u64,
    notifications: u64,
    missing: i64,
    elapsed_seconds: f64,
    notifications_per_second: f64,
    items_per_second: f64,
    drain_seconds: f64,
    latency: LatencySummary,
    timeseries: Vec<Point>,
    errors: ErrorTally,
}

pub(super) struct Counters {
    pub subscribed: AtomicU64,
    pub caps_queries: AtomicU64,
    pub warm: AtomicU64,
}

pub(super) type Shared = FanOut<Counters>;

/// XEP-0115 §5.1 over the contacts' one identity and features.
pub(super) fn caps_ver() -> String {
    let mut input = format!("{}/{}//{}<", IDENTITY.0, IDENTITY.1, IDENTITY.2);
    let mut features = FEATURES;
    features.sort_unstable();
    for feature in features {
        input.push_str(feature);
        input.push('<');
    }
    BASE64.encode(Sha1::digest(input.as_bytes()))
}

pub async fn run(args: PepArgs) -> anyhow::Result<()> {
    if let Err(error) = raise_nofile_limit() {
        eprintln!("warning: could not raise the fd limit: {error}");
    }
    let n = args.common.users;
    if n < 2 {
        anyhow::bail!("--users must be at least 2 (one publisher, its contacts)");
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        anyhow::bail!("--rate must be positive");
    }
    let duration = super::positive_seconds(args.duration, "--duration")?;
    let drain = super::seconds(args.drain_seconds, "--drain-seconds")?;
    let setup_timeout = super::seconds(args.setup_timeout, "--setup-timeout")?;
    let SetUp { common, logins, shared, shutdown, readers, writers, results: setup_results, server } = set_up(&args.common, setup_timeout, true).await?;
    let run = RunInfo::new("pep", server);
    let origin = shared.origin;
    let contacts = writers.len() as u64 - 1;
    let publisher = writers[0].1.clone();

    if !common.quiet {
        eprintln!("1 publisher, {contacts} contacts interested, {} items/s for {duration:?}", args.rate);
    }
    let start = Instant::now();
    shared.start_measuring(start);
    let window = Window::start(common.server_pid);
    let pacer = Pacer::new(args.rate, 1, 0, duration).ok_or_else(|| anyhow::anyhow!("cannot pace {} items/s", args.rate))?;
    let scheduled = pacer.count();
    let run_id = shared.run;
    let marked = |seq: u64, sent: u64, buf: &mut Vec<u8>| buf.extend_from_slice(publish_item(&seq.to_string(), &format!("{MARKER}{run_id} 0 {seq} {sent}")).as_bytes());
    let failed = |kind: String, message: String| shared.error(kind, || message);
    let sent = send_marked(&publisher, &pacer, start, || shared.now(), failed, marked).await;
    let send_period = start.elapsed();
    let expected = sent * contacts;
    let failed = |message: String| shared.error("harness:reader-task".into(), || message);
    let running = super::Running { window, shutdown, readers, writers: writers.into_iter().map(|(_, writer)| writer).collect() };
    let (drained, usage, ()) = super::drain_and_collect(expected, || shared.deliveries.load(Ordering::Relaxed), drain, running, |_, ()| {}, failed).await;
    let received = shared.received();
    let last = Duration::from_nanos(shared.last_received.load(Ordering::Relaxed));
    let elapsed = last.saturating_sub(start - origin);
    let results = PepResults {
        contacts,
        target_rate: args.rate,
        duration_seconds: duration.as_secs_f64(),
        scheduled,
        items_published: sent,
        expected_notifications: expected,
        notifications: received.count,
        missing: i64::try_from(expected).unwrap_or(i64::MAX) - i64::try_from(received.count).unwrap_or(i64::MAX),
        elapsed_seconds: elapsed.as_secs_f64(),
        notifications_per_second: per_second(received.count, elapsed),
        items_per_second: per_second(sent, send_period),
        drain_seconds: drained.as_secs_f64(),
        latency: received.latency.summary(),
        timeseries: received.series.points(),
        errors: shared.errors(),
    };
    let report = PepReport { run, options: args.clone(), logins, setup: setup_results, pep: results, usage };
    print_report(&report);
    if let Some(path) = &common.json_out {
        write_json(path, &report)?;
    }
    Ok(())
}

/// Users 0..N logged in, user 0 and each other user contacts of each other (subscriptions both
/// ways, every request approved), the others' clients' caps announced; with `warm_up`, user 0
/// publishes a warm-up item every contact must get (so the server knows everyone's interest).
pub(super) struct SetUp {
    pub common: crate::cli::Common,
    pub logins: LoginReport,
    pub shared: Arc<Shared>,
    pub shutdown: watch::Sender<bool>,
    pub readers: JoinSet<()>,
    pub writers: Vec<(u64, Arc<AsyncMutex<Writer>>)>,
    pub results: SetupResults,
    /// The server's address, for the report.
    pub server: String,
}

pub(super) async fn set_up(common: &crate::cli::Common, setup_timeout: Duration, warm_up: bool) -> anyhow::Result<SetUp> {
    let mut common = common.clone();
    common.presence = true;
    let n = common.users;
    let setup = Setup::new(&common).await?;
    let bare_of = |i: u64| format!("{}@{}", common.username(i).unwrap_or_default(), common.domain).to_ascii_lowercase();

    let (logins, logged_in) = super::log_in_all(&setup, 0..n).await;
    if logged_in.first().is_none_or(|(i, _)| *i != 0) {
        anyhow::bail!("user 0 did not log in");
    }
    let shared = Arc::new(FanOut::new(
        crate::scenario::chat::run_id(),
        Counters { subscribed: AtomicU64::new(0), caps_queries: AtomicU64::new(0), warm: AtomicU64::new(0) },
    ));
    let ver = caps_ver();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut readers: JoinSet<()> = JoinSet::new();
    let mut writers: Vec<(u64, Arc<AsyncMutex<Writer>>)> = Vec::new();
    for (i, session) in logged_in {
        let writer = Arc::new(AsyncMutex::new(session.writer));
        readers.spawn(read_loop(session.reader, writer.clone(), i, ver.clone(), shared.clone(), shutdown_rx.clone()));
        writers.push((i, writer));
    }
    let contacts = writers.len() as u64 - 1;
    let publisher = writers[0].1.clone();

    let setup_started = Instant::now();
    let publisher_jid = bare_of(0);
    let mut asks = Vec::new();
    for (i, _) in &writers[1..] {
        asks.extend_from_slice(b"<iq type='set' id='lt-roster'><query xmlns='jabber:iq:roster'><item jid='");
        escape_attr(&mut asks, &bare_of(*i));
        asks.extend_from_slice(b"'/></query></iq><presence type='subscribe' to='");
        escape_attr(&mut asks, &bare_of(*i));
        asks.extend_from_slice(b"'/>");
    }
    send(&publisher, &asks, &shared).await;
    let mut ask_back = b"<presence type='subscribe' to='".to_vec();
    escape_attr(&mut ask_back, &publisher_jid);
    ask_back.extend_from_slice(b"'/>");
    for (_, writer) in &writers[1..] {
        send(writer, &ask_back, &shared).await;
    }
    let mut timed_out = !shared.wait_for(&shared.counters.subscribed, 2 * contacts, setup_started, setup_timeout, "subscriptions confirmed").await;
    for (_, writer) in &writers[1..] {
        send(writer, caps_presence(&ver).as_bytes(), &shared).await;
    }
    // The server asks each contact (or one, for a shared hash) for its features; then warm up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if warm_up {
        send(&publisher, publish_item(WARM_UP, WARM_UP).as_bytes(), &shared).await;
        timed_out |= !shared.wait_for(&shared.counters.warm, contacts, setup_started, setup_timeout, "contacts notified of the warm-up item").await;
    }
    let results = SetupResults {
        seconds: setup_started.elapsed().as_secs_f64(),
        subscriptions_confirmed: shared.counters.subscribed.load(Ordering::Relaxed),
        caps_queries: shared.counters.caps_queries.load(Ordering::Relaxed),
        warm_up_notified: shared.counters.warm.load(Ordering::Relaxed),
        timed_out,
    };
    Ok(SetUp { common, logins, shared, shutdown, readers, writers, results, server: setup.server().to_string() })
}

/// Presence announcing the harness clients' caps (their features ask for the node: `+notify`).
pub(super) fn caps_presence(ver: &str) -> String {
    format!("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{CAPS_NODE}' ver='{ver}'/></presence>")
}

/// A publish of one item with `id` whose payload's text is `text`.
pub(super) fn publish_item(id: &str, text: &str) -> String {
    format!(
        "<iq type='set' id='lt-pep-{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{NODE}'><item id='{id}'><x xmlns='{NODE}'>{text}</x></item></publish></pubsub></iq>"
    )
}

pub(super) async fn send(writer: &Arc<AsyncMutex<Writer>>, bytes: &[u8], shared: &Shared) {
    if let Err(error) = xmpp::send(&mut *writer.lock().await, bytes).await {
        shared.error(format!("setup:send:{}", io_kind(&error)), || error.to_string());
    }
}

fn print_report(report: &PepReport) {
    let s = &report.setup;
    println!(
        "setup: {:.2}s, {} subscriptions confirmed, {} caps queries answered, warm-up notified {}{}",
        s.seconds,
        s.subscriptions_confirmed,
        s.caps_queries,
        s.warm_up_notified,
        if s.timed_out { " (TIMED OUT)" } else { "" }
    );
    let p = &report.pep;
    println!("pep: 1 publisher, {} contacts, {} items/s target for {:.1}s", p.contacts, p.target_rate, p.duration_seconds);
    println!(
        "  items published {} ({:.1}/s), notifications {}/{} expected ({:.1}/s), missing {}",
        p.items_published, p.items_per_second, p.notifications, p.expected_notifications, p.notifications_per_second, p.missing
    );
    println!("  notification latency: {}", p.latency);
    print_errors("  session errors", &p.errors);
    report.usage.print("pep");
}

/// The disco#info answer describing the contacts' caps.
fn disco_answer(iq: &starling_xml::RawElement, ver: &str) -> Vec<u8> {
    let mut out = b"<iq type='result' id='".to_vec();
    escape_attr(&mut out, iq.attr("id").unwrap_or_default());
    out.extend_from_slice(b"' to='");
    escape_attr(&mut out, iq.attr("from").unwrap_or_default());
    out.extend_from_slice(format!("'><query xmlns='http://jabber.org/protocol/disco#info' node='{CAPS_NODE}#{ver}'>").as_bytes());
    out.extend_from_slice(format!("<identity category='{}' type='{}' name='{}'/>", IDENTITY.0, IDENTITY.1, IDENTITY.2).as_bytes());
    for feature in FEATURES {
        out.extend_from_slice(format!("<feature var='{feature}'/>").as_bytes());
    }
    out.extend_from_slice(b"</query></iq>");
    out
}

pub(super) async fn read_loop(mut reader: Reader, writer: Arc<AsyncMutex<Writer>>, user: u64, ver: String, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let error = |kind: String, message: String| shared.error(kind, || message);
    while let Some(element) = xmpp::next_in_run(&mut reader, &mut shutdown, &error).await {
        let mut reply: Option<Vec<u8>> = None;
        match (element.name.as_str(), element.attr("type")) {
            ("presence", Some("subscribe")) => {
                let mut out = b"<presence type='subscribed' to='".to_vec();
                escape_attr(&mut out, element.attr("from").unwrap_or_default());
                out.extend_from_slice(b"'/>");
                reply = Some(out);
            }
            ("presence", Some("subscribed")) => {
                shared.counters.subscribed.fetch_add(1, Ordering::Relaxed);
            }
            ("message", _) if element.bytes.windows(WARM_UP.len()).any(|w| w == WARM_UP.as_bytes()) => {
                shared.counters.warm.fetch_add(1, Ordering::Relaxed);
            }
            ("message", _) => {
                if let Some((_, _, _, sent)) = parse_marker(&element.bytes).filter(|(run, ..)| *run == shared.run) {
                    shared.delivered(user, sent);
                }
            }
            ("iq", Some("get")) if element.bytes.windows(8).any(|w| w == b"disco#in") => {
                shared.counters.caps_queries.fetch_add(1, Ordering::Relaxed);
                reply = Some(disco_answer(&element, &ver));
            }
            ("iq", Some("error")) if element.attr("id").is_some_and(|id| id.starts_with("lt-pep-")) => {
                error("publish-error".into(), "a publish was refused".into());
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contacts_caps_hash_is_xep_0115s() {
        // Computed apart (Python's hashlib) over
        // "client/bot//starling-lt<http://jabber.org/protocol/caps<…disco#info<urn:starling:loadtest+notify<".
        assert_eq!(caps_ver(), "KpX0d1W8YQFD5QFXf/TatreGkBg=");
    }
}
