//! `devices`: many small device sessions, few owners. Users 0..K are owners; user i ≥ K is a
//! device of owner i mod K (online: it sent its presence) that publishes sensor readings to it — an XEP-0323 `<fields/>` message
//! with one momentary numeric value and no body, as a meter or sensor sends — at an aggregate
//! rate spread evenly over the devices. Each owner measures the latency of the readings it gets.
//!
//! Reported: the logins, the server's RSS per session (sampled before the logins and after
//! `--idle-seconds` of quiet with everyone logged in, over all sessions: nearly all are devices),
//! the readings delivered and their latency, and the server's CPU per reading.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use starling_xml::escape_attr;
use tokio::sync::{Mutex as AsyncMutex, watch};
use tokio::task::JoinSet;

use super::fanout::FanOut;
use super::presence::{parse_marker, send_marked, MARKER};
use crate::cli::DevicesArgs;
use crate::logins::{LoginReport, Setup, print_errors};
use crate::procstat::{raise_nofile_limit, sample};
use crate::rate::Pacer;
use crate::report::{RunInfo, Usage, Window, write_json};
use crate::stats::{ErrorTally, LatencySummary, per_second};
use crate::timeseries::Point;
use crate::xmpp::{self, NS_STREAMS, Reader, Writer};

const NS_SENSOR_DATA: &str = "urn:xmpp:iot:sensordata";
/// The harness's own child of a reading: its marker (run, device, sequence, time sent).
const NS_LOADTEST: &str = "urn:starling:loadtest";

#[derive(Debug, Serialize)]
struct DevicesReport {
    run: RunInfo,
    options: DevicesArgs,
    logins: LoginReport,
    memory: Memory,
    devices: DevicesResults,
    usage: Usage,
}

#[derive(Debug, Serialize)]
struct Memory {
    sessions: u64,
    server_rss_before_bytes: Option<u64>,
    server_rss_idle_bytes: Option<u64>,
    server_rss_per_session_bytes: Option<f64>,
}

#[derive(Debug, Serialize)]
struct DevicesResults {
    owners: u64,
    devices: u64,
    target_rate: f64,
    duration_seconds: f64,
    scheduled: u64,
    readings_sent: u64,
    readings_delivered: u64,
    /// sent − delivered (negative if the server duplicated).
    missing: i64,
    readings_per_second: f64,
    drain_seconds: f64,
    /// Server CPU microseconds per reading sent, over the measuring window.
    server_cpu_us_per_reading: Option<f64>,
    latency: LatencySummary,
    timeseries: Vec<Point>,
    errors: ErrorTally,
}

pub async fn run(args: DevicesArgs) -> anyhow::Result<()> {
    if let Err(error) = raise_nofile_limit() {
        eprintln!("warning: could not raise the fd limit: {error}");
    }
    let (n, owners) = (args.common.users, args.owners());
    if n < 2 {
        anyhow::bail!("--users must be at least 2 (an owner and a device)");
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        anyhow::bail!("--rate must be positive");
    }
    let duration = super::positive_seconds(args.duration, "--duration")?;
    let drain = super::seconds(args.drain_seconds, "--drain-seconds")?;
    let idle = super::seconds(args.idle_seconds, "--idle-seconds")?;
    let common = args.common.clone();
    let setup = Setup::new(&common).await?;
    let run = RunInfo::new("devices", setup.server().to_string());
    let owner_jid = |i: u64| common.username(i % owners).map(|name| format!("{name}@{}", common.domain)).unwrap_or_default();

    let rss = || common.server_pid.map(sample).and_then(|sampled| sampled.rss_bytes);
    let rss_before = rss();
    let (logins, logged_in) = super::log_in_all(&setup, 0..n).await;
    if logged_in.is_empty() {
        anyhow::bail!("nobody logged in");
    }
    let shared = Arc::new(FanOut::new(crate::scenario::chat::run_id(), ()));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut readers: JoinSet<()> = JoinSet::new();
    let mut writers: Vec<(u64, Arc<AsyncMutex<Writer>>)> = Vec::new();
    for (i, session) in logged_in {
        let writer = Arc::new(AsyncMutex::new(session.writer));
        readers.spawn(read_loop(session.reader, writer.clone(), i, shared.clone(), shutdown_rx.clone()));
        writers.push((i, writer));
    }
    let sessions = writers.len() as u64;
    // Owners are online (available): readings to their bare JIDs reach them.
    for (_, writer) in writers.iter().filter(|(i, _)| *i < owners) {
        if let Err(error) = xmpp::send(&mut *writer.lock().await, b"<presence/>").await {
            shared.error(format!("setup:presence:{}", xmpp::io_kind(&error)), || error.to_string());
        }
    }
    tokio::time::sleep(idle).await;
    let rss_idle = rss();
    let memory = Memory {
        sessions,
        server_rss_before_bytes: rss_before,
        server_rss_idle_bytes: rss_idle,
        server_rss_per_session_bytes: rss_before.zip(rss_idle).map(|(before, idle)| (idle as f64 - before as f64) / sessions as f64),
    };

    let devices: Vec<_> = writers.iter().filter(|(i, _)| *i >= owners).collect();
    let device_count = devices.len() as u64;
    if !common.quiet {
        eprintln!("{device_count} devices of {owners} owners, {} readings/s in total for {duration:?}", args.rate);
    }
    let start = Instant::now();
    shared.start_measuring(start);
    let window = Window::start(common.server_pid);
    let mut senders: JoinSet<u64> = JoinSet::new();
    let mut scheduled = 0u64;
    for (slot, (i, writer)) in (0u64..).zip(devices) {
        let pacer = Pacer::new(args.rate, device_count, slot, duration).ok_or_else(|| anyhow::anyhow!("cannot pace {} readings/s", args.rate))?;
        scheduled += pacer.count();
        let (writer, shared, device, owner) = (writer.clone(), shared.clone(), *i, owner_jid(*i));
        senders.spawn(async move {
            let reading = |seq: u64, sent: u64, buf: &mut Vec<u8>| {
                buf.extend_from_slice(b"<message to='");
                escape_attr(buf, &owner);
                buf.extend_from_slice(
                    format!(
                        "'><fields xmlns='{NS_SENSOR_DATA}' seqnr='{seq}' done='true'><node nodeId='meter'><timestamp value='2026-12-07T00:00:00Z'>\
                         <numeric name='Temperature' momentary='true' automaticReadout='true' value='{}.{}' unit='C'/></timestamp></node></fields>\
                         <lt xmlns='{NS_LOADTEST}'>{MARKER}{} {device} {seq} {sent}</lt></message>",
                        18 + seq % 8,
                        seq % 10,
                        shared.run
                    )
                    .as_bytes(),
                );
            };
            let failed = |kind: String, message: String| shared.error(kind, || message);
            send_marked(&writer, &pacer, start, || shared.now(), failed, reading).await
        });
    }
    let mut sent = 0u64;
    while let Some(joined) = senders.join_next().await {
        match joined {
            Ok(count) => sent += count,
            Err(error) => shared.error("harness:sender-task".into(), || error.to_string()),
        }
    }
    let send_period = start.elapsed();
    let failed = |message: String| shared.error("harness:reader-task".into(), || message);
    let running = super::Running { window, shutdown: shutdown_tx, readers, writers: writers.into_iter().map(|(_, writer)| writer).collect() };
    let (drained, usage, ()) = super::drain_and_collect(sent, || shared.deliveries.load(Ordering::Relaxed), drain, running, |(), ()| {}, failed).await;
    let received = shared.received();
    let per_second_sent = per_second(sent, send_period);
    let cpu_per_reading = usage.server.as_ref().and_then(|server| server.cpu_seconds).filter(|_| sent > 0).map(|cpu| cpu * 1e6 / sent as f64);
    let results = DevicesResults {
        owners,
        devices: device_count,
        target_rate: args.rate,
        duration_seconds: duration.as_secs_f64(),
        scheduled,
        readings_sent: sent,
        readings_delivered: received.count,
        missing: i64::try_from(sent).unwrap_or(i64::MAX) - i64::try_from(received.count).unwrap_or(i64::MAX),
        readings_per_second: per_second_sent,
        drain_seconds: drained.as_secs_f64(),
        server_cpu_us_per_reading: cpu_per_reading,
        latency: received.latency.summary(),
        timeseries: received.series.points(),
        errors: shared.errors(),
    };
    let report = DevicesReport { run, options: args.clone(), logins, memory, devices: results, usage };
    print_report(&report);
    if let Some(path) = &common.json_out {
        write_json(path, &report)?;
    }
    Ok(())
}

fn print_report(report: &DevicesReport) {
    let memory = &report.memory;
    if let Some(per_session) = memory.server_rss_per_session_bytes {
        println!("memory: {} sessions, server RSS {:.1} KiB per session", memory.sessions, per_session / 1024.0);
    }
    let d = &report.devices;
    println!("devices: {} devices of {} owners, {} readings/s target for {:.1}s", d.devices, d.owners, d.target_rate, d.duration_seconds);
    println!("  readings sent {} ({:.1}/s), delivered {}, missing {}", d.readings_sent, d.readings_per_second, d.readings_delivered, d.missing);
    if let Some(cpu) = d.server_cpu_us_per_reading {
        println!("  server CPU per reading: {cpu:.1} µs");
    }
    println!("  reading latency: {}", d.latency);
    print_errors("  session errors", &d.errors);
    report.usage.print("devices");
}

/// Owners record the readings they get; every session answers the server's IQs (pings).
async fn read_loop(mut reader: Reader, writer: Arc<AsyncMutex<Writer>>, user: u64, shared: Arc<FanOut<()>>, mut shutdown: watch::Receiver<bool>) {
    let error = |kind: String, message: String| shared.error(kind, || message);
    while let Some(element) = xmpp::next_in_run(&mut reader, &mut shutdown, &error).await {
        let reply = match (element.name.as_str(), element.attr("type")) {
            ("message", Some("error")) => {
                error("message-error".into(), format!("a reading to user {user} was refused"));
                None
            }
            ("message", _) => {
                if let Some((_, _device, _seq, sent)) = parse_marker(&element.bytes).filter(|(run, ..)| *run == shared.run) {
                    shared.delivered(user, sent);
                }
                None
            }
            ("iq", _) => xmpp::iq_reply(&element),
            ("error", _) if element.ns == NS_STREAMS => {
                let condition = xmpp::stream_error_condition(&element);
                error(format!("stream-error:{condition}"), format!("stream error {condition}"));
                break;
            }
            _ => None,
        };
        if let Some(reply) = reply
            && !super::answer(&writer, &reply, error).await
        {
            break;
        }
    }
}
