//! The bus record an actor is handling, in a cluster. Every stanza it causes takes the record's
//! [`Hold`] along (to the bus, the archive, a connection's queue), so the record's offset is
//! committed only once all of it is durable (`starling_cluster::hold`). In one process there is
//! none.

use std::future::Future;

use starling_cluster::hold::Hold;
use tracing::Instrument;

tokio::task_local! {
    /// The hold of the owner record being handled, while an actor handles it.
    pub(crate) static HOLD: Option<Hold>;
}

/// Runs `work` with `hold` as the task's [`HOLD`]; while a traced record is handled, log lines
/// carry its trace id.
pub(crate) fn holding<F: Future>(hold: Option<Hold>, work: F) -> impl Future<Output = F::Output> {
    let log = hold.as_ref().map_or_else(tracing::Span::none, |hold| hold.trace().log_scope());
    HOLD.scope(hold, work).instrument(log)
}

/// The hold of the record the current task handles, if any.
pub(crate) fn current_hold() -> Option<Hold> {
    HOLD.try_with(Clone::clone).ok().flatten()
}

/// The cause of the record the current task handles ([`Hold::cause`]), if any: in one process
/// there is none, and nothing is replayed.
pub(crate) fn current_cause() -> Option<u64> {
    HOLD.try_with(|hold| hold.as_ref().map(Hold::cause)).ok().flatten()
}
