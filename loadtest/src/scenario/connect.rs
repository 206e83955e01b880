//! `connect`: log N users in, then hold the sessions idle and watch the server's memory.
//!
//! Bytes per session = (server RSS at the end of the hold − RSS before the first login) /
//! sessions alive at the end. The hold lets allocator caches and lazily-built state settle, so
//! the figure is the steady-state cost of an idle session, not the transient cost of logging in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use starling_xml::StreamEvent;
use tokio::sync::watch;

use crate::cli::{ConnectArgs, LoginMethod};
use crate::logins::{LoginReport, Setup, login_many, print_errors};
use crate::procstat::{raise_nofile_limit, sample};
use crate::report::{RunInfo, Usage, Window, mib, write_json};
use crate::stats::ErrorTally;
use crate::xmpp::{self, NS_STREAMS, Session, io_kind};

/// Time allowed for all sessions to send their stream close once the hold ends.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Serialize)]
struct ConnectReport {
    run: RunInfo,
    options: ConnectArgs,
    fd_limit: Option<u64>,
    /// `--login fast`: the logins before the measured ones, each session closed at once — SASL2
    /// with --mechanism asking for a token, then a first login with it (which makes the token
    /// current: a store write) — so that the measured logins are the usual reconnect.
    warmup: Vec<Warmup>,
    logins: LoginReport,
    /// Harness and server usage while logging in.
    login_usage: Usage,
    hold: HoldReport,
    /// Harness and server usage while holding idle sessions.
    hold_usage: Usage,
}

#[derive(Debug, Serialize)]
struct Warmup {
    what: &'static str,
    logins: LoginReport,
    usage: Usage,
}

#[derive(Debug, Serialize)]
struct HoldReport {
    seconds: f64,
    sessions_at_start: u64,
    sessions_at_end: u64,
    /// Sessions that ended during the hold, by reason.
    dropped: ErrorTally,
    /// Server RSS before the first login.
    server_rss_baseline_bytes: Option<u64>,
    server_rss_after_logins_bytes: Option<u64>,
    server_rss_end_bytes: Option<u64>,
    /// (end − baseline) / sessions at end.
    server_rss_per_session_bytes: Option<f64>,
    /// Server CPU time per successful login during the login phase.
    server_cpu_per_login_ms: Option<f64>,
    samples: Vec<HoldSample>,
}

#[derive(Debug, Serialize)]
struct HoldSample {
    t_seconds: f64,
    sessions: u64,
    server_rss_bytes: Option<u64>,
}

pub async fn run(args: ConnectArgs) -> anyhow::Result<()> {
    let fd_limit = match raise_nofile_limit() {
        Ok(limit) => Some(limit),
        Err(error) => {
            eprintln!("warning: could not raise the fd limit: {error}");
            None
        }
    };
    let common = &args.common;
    if let Some(limit) = fd_limit
        && common.users + 64 > limit
    {
        eprintln!("warning: {} sessions need about as many fds but the limit is {limit}; expect connect:EMFILE errors", common.users);
    }
    let setup = Setup::new(common).await?;
    let run = RunInfo::new("connect", setup.server().to_string());

    let mut warmup = Vec::new();
    if common.login == LoginMethod::Fast {
        for what in ["a FAST token from a SASL2 login with --mechanism", "the token's first use"] {
            let window = Window::start(common.server_pid);
            let (logins, mut tasks) = login_many(&setup, 0..common.users, |_, mut session| async move {
                let _ = xmpp::close(&mut session.writer).await;
            })
            .await;
            while tasks.join_next().await.is_some() {}
            let usage = window.finish();
            println!("warm-up, {what}:");
            logins.print();
            usage.print("warm-up");
            warmup.push(Warmup { what, logins, usage });
        }
    }

    let baseline = common.server_pid.map(sample).and_then(|s| s.rss_bytes);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // Sessions that ended; alive = logged in − ended (counting up from the handler would race
    // with the login count).
    let ended = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(Mutex::new(ErrorTally::default()));

    let window = Window::start(common.server_pid);
    let (logins, mut tasks) = {
        let (ended, dropped) = (ended.clone(), dropped.clone());
        login_many(&setup, 0..common.users, move |_, session| idle(session, shutdown_rx.clone(), ended.clone(), dropped.clone())).await
    };
    let login_usage = window.finish();
    logins.print();
    login_usage.print("logins");

    // Hold.
    let after_logins = common.server_pid.map(sample).and_then(|s| s.rss_bytes);
    let alive = |ended: &AtomicU64| logins.succeeded.saturating_sub(ended.load(Ordering::Relaxed));
    let sessions_at_start = alive(&ended);
    let window = Window::start(common.server_pid);
    let hold = Duration::from_secs(args.hold_seconds);
    let interval = Duration::from_millis(args.sample_interval_ms.max(10));
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut last_progress = Instant::now();
    loop {
        let elapsed = started.elapsed();
        let rss = common.server_pid.map(sample).and_then(|s| s.rss_bytes);
        let sessions = alive(&ended);
        samples.push(HoldSample { t_seconds: elapsed.as_secs_f64(), sessions, server_rss_bytes: rss });
        if !common.quiet && last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            eprintln!("[hold {:>5.1}s/{}s] {} sessions, server RSS {}", elapsed.as_secs_f64(), hold.as_secs(), sessions, rss.map(mib).unwrap_or_else(|| "n/a".into()));
        }
        if elapsed >= hold {
            break;
        }
        tokio::time::sleep(interval.min(hold - elapsed)).await;
    }
    let sessions_at_end = alive(&ended);
    let hold_usage = window.finish();
    let end_rss = samples.last().and_then(|s| s.server_rss_bytes);

    // Close every session politely, then wait (bounded) for the tasks.
    let _ = shutdown_tx.send(true);
    let closing = tokio::time::timeout(CLOSE_TIMEOUT, async { while tasks.join_next().await.is_some() {} }).await;
    if closing.is_err() {
        eprintln!("warning: {} sessions did not close within {CLOSE_TIMEOUT:?}", tasks.len());
        tasks.abort_all();
    }

    let per_session = match (baseline, end_rss) {
        (Some(base), Some(end)) if sessions_at_end > 0 => Some((end as f64 - base as f64) / sessions_at_end as f64),
        _ => None,
    };
    let cpu_per_login = login_usage
        .server
        .as_ref()
        .and_then(|s| s.cpu_seconds)
        .filter(|_| logins.succeeded > 0)
        .map(|cpu| cpu * 1000.0 / logins.succeeded as f64);
    let dropped = dropped.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let report = ConnectReport {
        run,
        options: args.clone(),
        fd_limit,
        warmup,
        logins,
        login_usage,
        hold: HoldReport {
            seconds: hold.as_secs_f64(),
            sessions_at_start,
            sessions_at_end,
            dropped,
            server_rss_baseline_bytes: baseline,
            server_rss_after_logins_bytes: after_logins,
            server_rss_end_bytes: end_rss,
            server_rss_per_session_bytes: per_session,
            server_cpu_per_login_ms: cpu_per_login,
            samples,
        },
        hold_usage,
    };

    let h = &report.hold;
    println!("hold: {:.0}s, sessions {} at start, {} at end", h.seconds, h.sessions_at_start, h.sessions_at_end);
    print_errors("  dropped during hold", &h.dropped);
    if let (Some(base), Some(end)) = (h.server_rss_baseline_bytes, h.server_rss_end_bytes) {
        println!(
            "  server RSS: {} before logins, {} after logins, {} at end of hold",
            mib(base),
            h.server_rss_after_logins_bytes.map(mib).unwrap_or_else(|| "n/a".into()),
            mib(end)
        );
    }
    if let Some(bytes) = h.server_rss_per_session_bytes {
        println!("  server memory per idle session: {:.0} bytes ({:.1} KiB)", bytes, bytes / 1024.0);
    }
    if let Some(ms) = h.server_cpu_per_login_ms {
        println!("  server CPU per login: {ms:.2} ms");
    }
    report.hold_usage.print("hold");
    if let Some(path) = &common.json_out {
        write_json(path, &report)?;
        println!("report written to {}", path.display());
    }
    Ok(())
}

/// Keeps a session open: answers the server's IQs (pings, RFC 6120 §8.2.3), ignores everything
/// else, and closes the stream when told to.
async fn idle(session: Session, mut shutdown: watch::Receiver<bool>, ended_count: Arc<AtomicU64>, dropped: Arc<Mutex<ErrorTally>>) {
    let Session { jid, mut reader, mut writer, .. } = session;
    let ended: Option<(String, String)> = loop {
        if *shutdown.borrow() {
            break None;
        }
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break None;
                }
            }
            // Dropping this read mid-element on shutdown is fine: the stream is not read again.
            event = reader.next() => match event {
                Ok(StreamEvent::Element(element)) => {
                    if element.name == "error" && element.ns == NS_STREAMS {
                        let condition = xmpp::stream_error_condition(&element);
                        break Some((format!("stream-error:{condition}"), format!("stream error {condition}")));
                    }
                    if element.name == "iq"
                        && let Err(error) = xmpp::answer_iq(&mut writer, &element).await
                    {
                        break Some((format!("io:{}", io_kind(&error)), error.to_string()));
                    }
                }
                Ok(StreamEvent::Close) => break Some(("stream-closed".into(), "server closed the stream".into())),
                Ok(StreamEvent::Open(_)) => break Some(("unexpected".into(), "second stream header".into())),
                Err(error) => {
                    let error = xmpp::LoginError::from(error);
                    break Some((error.kind(), error.to_string()));
                }
            }
        }
    };
    ended_count.fetch_add(1, Ordering::Relaxed);
    match ended {
        None => {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, xmpp::close(&mut writer)).await;
        }
        Some((kind, message)) => {
            dropped.lock().unwrap_or_else(|p| p.into_inner()).add(kind, || format!("{jid}: {message}"));
        }
    }
}
