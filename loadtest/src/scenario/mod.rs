//! One module per subcommand, and what the scenarios that keep many sessions share: logging the
//! run's users in and ending their streams.

pub mod chat;
pub mod connect;
pub mod devices;
pub mod fanout;
pub mod mam;
pub mod mobile;
pub mod muc;
pub mod pep;
pub mod pep_login;
pub mod presence;

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex as AsyncMutex, mpsc, watch};
use tokio::task::JoinSet;

use crate::logins::{LoginReport, Setup, login_many};
use crate::report::{Usage, Window};
use crate::xmpp::{self, Session, Writer};

/// How long a run waits for a session's stream to close, or for its readers to finish.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// `value` seconds of the option `flag`, which must be more than zero.
pub fn positive_seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).ok().filter(|d| !d.is_zero()).ok_or_else(|| anyhow::anyhow!("{flag} must be positive"))
}

/// `value` seconds of the option `flag`, which may be zero.
pub fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| anyhow::anyhow!("{flag} must be non-negative"))
}

/// Logs in users `indices`, prints the login summary, and returns it with the sessions that came
/// up, in index order.
pub async fn log_in_all(setup: &Setup, indices: Range<u64>) -> (LoginReport, Vec<(u64, Session)>) {
    let (session_tx, mut session_rx) = mpsc::unbounded_channel();
    let (logins, mut login_tasks) = login_many(setup, indices, move |index, session| {
        let session_tx = session_tx.clone();
        async move {
            let _ = session_tx.send((index, session));
        }
    })
    .await;
    while login_tasks.join_next().await.is_some() {}
    logins.print();
    let mut sessions = Vec::new();
    while let Ok(session) = session_rx.try_recv() {
        sessions.push(session);
    }
    sessions.sort_by_key(|(index, _)| *index);
    (logins, sessions)
}

/// A reader's answer to what the server asked (an IQ): written at once; false when the stream
/// failed, told to `failed` (kind, message), and the reader stops.
pub async fn answer(writer: &AsyncMutex<Writer>, reply: &[u8], failed: impl Fn(String, String)) -> bool {
    match xmpp::send(&mut *writer.lock().await, reply).await {
        Ok(()) => true,
        Err(failure) => {
            failed(format!("io:{}", xmpp::io_kind(&failure)), failure.to_string());
            false
        }
    }
}

/// What a fan-out run stops when it ends: the measuring window, its readers (told through
/// `shutdown`) and its streams.
pub struct Running<R> {
    pub window: Window,
    pub shutdown: watch::Sender<bool>,
    pub readers: JoinSet<R>,
    pub writers: Vec<Arc<AsyncMutex<Writer>>>,
}

/// The end of a fan-out run, after its senders: waits up to `drain` until `delivered()` reaches
/// `expected`, closes the measuring window, stops the readers and folds their results with
/// `merge` (a reader that failed is reported to `failed`), and ends every stream. Returns how long
/// the drain took, the usage and the merged result.
pub async fn drain_and_collect<R: Default + Send + 'static>(
    expected: u64,
    delivered: impl Fn() -> u64,
    drain: Duration,
    running: Running<R>,
    mut merge: impl FnMut(&mut R, R),
    failed: impl Fn(String),
) -> (Duration, Usage, R) {
    let Running { window, shutdown, mut readers, writers } = running;
    let drain_started = Instant::now();
    while delivered() < expected && drain_started.elapsed() < drain {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained = drain_started.elapsed();
    let usage = window.finish();
    let _ = shutdown.send(true);
    let mut total = R::default();
    let joined = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Some(result) = readers.join_next().await {
            match result {
                Ok(result) => merge(&mut total, result),
                Err(error) => failed(error.to_string()),
            }
        }
    })
    .await;
    if joined.is_err() {
        readers.abort_all();
    }
    close_all(writers).await;
    (drained, usage, total)
}

/// Ends every stream of a run, all at once, each within [`CLOSE_TIMEOUT`].
pub async fn close_all(writers: impl IntoIterator<Item = Arc<AsyncMutex<Writer>>>) {
    let mut closing = JoinSet::new();
    for writer in writers {
        closing.spawn(async move {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, async move { xmpp::close(&mut *writer.lock().await).await }).await;
        });
    }
    while closing.join_next().await.is_some() {}
}
