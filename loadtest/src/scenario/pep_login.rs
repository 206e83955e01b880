//! `pep-login`: what a login costs when the user's contacts publish on PEP (XEP-0163). User 0 and
//! N contacts (users 1..N) with mutual presence subscriptions, built in a setup phase (as `pep`);
//! every contact then publishes one item to the node all the harness's clients ask for (`+notify`
//! in their caps). Then user 0 logs in `--logins` times, one after another: each new session
//! announces its caps, and the server sends it the last item of every contact (§4.3.3: each
//! contact's actor hears the presence and its caps). Measured per login: the login (TCP to bound
//! resource), and the time from the caps presence to the last of the N items; and the server's
//! CPU over all logins, per login.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Mutex as AsyncMutex, watch};

use super::pep::{SetUp, SetupResults, WARM_UP, caps_presence, caps_ver, publish_item, read_loop, send, set_up};
use crate::cli::PepLoginArgs;
use crate::logins::{LoginReport, Setup};
use crate::procstat::raise_nofile_limit;
use crate::report::{RunInfo, Usage, Window, write_json};
use crate::stats::{Latency, LatencySummary};
use crate::xmpp;

#[derive(Debug, Serialize)]
struct PepLoginReport {
    run: RunInfo,
    options: PepLoginArgs,
    logins: LoginReport,
    setup: SetupResults,
    pep_login: PepLoginResults,
    usage: Usage,
}

#[derive(Debug, Serialize)]
struct PepLoginResults {
    contacts: u64,
    rounds: u64,
    /// Logins after which every contact's last item arrived.
    complete: u64,
    /// The others: `(round, items received)`.
    incomplete: Vec<(u64, u64)>,
    /// TCP connect to bound resource.
    login: LatencySummary,
    /// The caps presence to the last of the contacts' items.
    last_items: LatencySummary,
    /// Server CPU over the rounds (each login and its logout), divided by the rounds.
    server_cpu_ms_per_login: Option<f64>,
}

pub async fn run(args: PepLoginArgs) -> anyhow::Result<()> {
    if let Err(error) = raise_nofile_limit() {
        eprintln!("warning: could not raise the fd limit: {error}");
    }
    if args.common.users < 2 {
        anyhow::bail!("--users must be at least 2 (the user logging in, its contacts)");
    }
    let setup_timeout = super::seconds(args.setup_timeout, "--setup-timeout")?;
    let wait = super::seconds(args.wait_seconds, "--wait-seconds")?;
    let SetUp { common, logins, shared, shutdown, readers, writers, results: mut setup_results, server } = set_up(&args.common, setup_timeout, false).await?;
    let run = RunInfo::new("pep-login", server);
    let contacts = writers.len() as u64 - 1;
    let ver = caps_ver();

    // Every contact publishes its item; user 0's first session, asking for the node, counts
    // them, and so does each contact's own session (it asked too): 2 per contact.
    let setup_started = Instant::now();
    send(&writers[0].1, caps_presence(&ver).as_bytes(), &shared).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (_, writer) in &writers[1..] {
        send(writer, publish_item(WARM_UP, WARM_UP).as_bytes(), &shared).await;
    }
    setup_results.timed_out |= !shared.wait_for(&shared.counters.warm, 2 * contacts, setup_started, setup_timeout, "contacts' items published").await;
    setup_results.seconds += setup_started.elapsed().as_secs_f64();
    xmpp::close(&mut *writers[0].1.lock().await).await.ok();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let user = common.username(0).unwrap_or_default();
    let login = Setup::new(&common).await?;
    let (mut login_latency, mut last_items) = (Latency::new(), Latency::new());
    let (mut complete, mut incomplete) = (0, Vec::new());
    let window = Window::start(common.server_pid);
    for round in 0..args.logins {
        shared.counters.warm.store(0, Ordering::Relaxed);
        let begun = Instant::now();
        let session = login.login.login(&user, None).await.map_err(|error| anyhow::anyhow!("login {round} of user 0 failed: {error}"))?;
        login_latency.record(begun.elapsed());
        let writer = Arc::new(AsyncMutex::new(session.writer));
        let (stop, stopped) = watch::channel(false);
        let reader = tokio::spawn(read_loop(session.reader, writer.clone(), 0, ver.clone(), shared.clone(), stopped));
        let announced = Instant::now();
        send(&writer, caps_presence(&ver).as_bytes(), &shared).await;
        while shared.counters.warm.load(Ordering::Relaxed) < contacts && announced.elapsed() < wait {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        match shared.counters.warm.load(Ordering::Relaxed) {
            received if received >= contacts => {
                complete += 1;
                last_items.record(announced.elapsed());
            }
            received => incomplete.push((round, received)),
        }
        let _ = stop.send(true);
        xmpp::close(&mut *writer.lock().await).await.ok();
        let _ = reader.await;
        // Let the contacts hear the unavailable presence before the next login.
        tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
    }
    let usage = window.finish();
    let _ = shutdown.send(true);
    super::close_all(writers.into_iter().skip(1).map(|(_, writer)| writer)).await;
    drop(readers);
    let results = PepLoginResults {
        contacts,
        rounds: args.logins,
        complete,
        incomplete,
        login: login_latency.summary(),
        last_items: last_items.summary(),
        // Each login and its logout (the pauses between them are idle for the server).
        server_cpu_ms_per_login: usage.server.as_ref().and_then(|s| s.cpu_seconds).map(|cpu| cpu * 1000.0 / args.logins.max(1) as f64),
    };
    let report = PepLoginReport { run, options: args.clone(), logins, setup: setup_results, pep_login: results, usage };
    let r = &report.pep_login;
    println!("pep-login: {} contacts, {} logins, {} complete; incomplete (round, items): {:?}", r.contacts, r.rounds, r.complete, r.incomplete);
    println!("  login: {}", r.login);
    println!("  caps presence to the last contact's item: {}", r.last_items);
    if let Some(cpu) = r.server_cpu_ms_per_login {
        println!("  server CPU per login: {cpu:.1} ms");
    }
    report.usage.print("pep-login");
    if let Some(path) = &common.json_out {
        write_json(path, &report)?;
    }
    Ok(())
}
