//! One module per subcommand, and what the scenarios that keep many sessions share: logging the
//! run's users in and ending their streams.

pub mod chat;
pub mod connect;
pub mod mam;
pub mod mobile;
pub mod muc;
pub mod presence;

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, mpsc};
use tokio::task::JoinSet;

use crate::logins::{LoginReport, Setup, login_many};
use crate::xmpp::{self, Session, Writer};

/// How long a run waits for a session's stream to close, or for its readers to finish.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

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
