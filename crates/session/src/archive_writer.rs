//! Archive writes off the message path. Actors queue entries and go on delivering; one writer
//! task takes whatever has queued up to a batch and stores it in one `append` (one transaction
//! on the embedded store, concurrent inserts on CQL), so the cost per message falls as load rises.
//!
//! The queue is bounded: when the store is slow or down it fills, and an actor queuing more waits
//! up to `submit_timeout` and then gets [`ArchiveBusy`], which it turns into an error to the
//! sender instead of delivering a message it could not archive. A failed batch is retried until
//! it is stored, so nothing queued is dropped while the process lives; only entries the store
//! rejects as invalid are dropped (and counted).
//!
//! Ordering: the writer stores batches in queue order, so a [`flush`](ArchiveWriter::flush)
//! marker queued after an actor's entries completes only once they are all durable. MAM queries
//! flush first, which gives a user's own queries read-your-writes without a per-message ack.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use starling_cluster::hold::Hold;
use starling_cluster::store::{Archive, ArchiveEntry, StoreError};
use starling_telemetry::traces::{KeyValue, StanzaSpan};
use starling_telemetry::Metrics;

use crate::config::ArchiveConfig;
use tokio::sync::{mpsc, oneshot};

/// How the writer batches and how long callers wait for room.
#[derive(Debug, Clone)]
pub struct ArchiveWriterConfig {
    /// Entries waiting at most; beyond it callers wait.
    pub queue: usize,
    /// Entries stored in one `append` at most.
    pub batch: usize,
    /// How long a caller waits for room (or a flush for its turn) before giving up.
    pub submit_timeout: Duration,
    /// How long a batch smaller than `batch` waits for more entries before it is stored (group
    /// commit): every store write has a fixed cost (a redb commit rewrites the touched B-tree
    /// paths and syncs), so under moderate load many small writes cost far more CPU than a few
    /// larger ones. Deliveries never wait for it; a flush (MAM query) cuts it short.
    pub linger: Duration,
}

impl From<&ArchiveConfig> for ArchiveWriterConfig {
    fn from(config: &ArchiveConfig) -> Self {
        ArchiveWriterConfig {
            queue: config.queue,
            batch: config.batch,
            submit_timeout: Duration::from_millis(config.submit_timeout_ms),
            linger: Duration::from_millis(config.linger_ms),
        }
    }
}

/// The `[archive]` defaults.
impl Default for ArchiveWriterConfig {
    fn default() -> Self {
        ArchiveWriterConfig::from(&ArchiveConfig::default())
    }
}

/// The archive did not take an entry (or confirm a flush) in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveBusy;

enum Job {
    /// An entry, and the hold of the bus record it came from (in a cluster), kept until stored.
    Append(ArchiveEntry, Option<Hold>),
    Flush(oneshot::Sender<()>),
}

pub struct ArchiveWriter {
    queue: mpsc::Sender<Job>,
    submit_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl ArchiveWriter {
    /// Starts the writer task on the current tokio runtime; it ends when the writer is dropped
    /// and the queue is drained.
    pub fn start(archive: Arc<dyn Archive>, config: &ArchiveWriterConfig, metrics: Arc<Metrics>) -> ArchiveWriter {
        let (queue, jobs) = mpsc::channel(config.queue.max(1));
        tokio::spawn(write_loop(archive, jobs, config.batch.max(1), config.linger, metrics.clone()));
        ArchiveWriter { queue, submit_timeout: config.submit_timeout, metrics }
    }

    /// Queues `entry`; `hold` (the bus record being handled, in a cluster) is dropped once the
    /// entry is stored.
    pub async fn submit(&self, entry: ArchiveEntry, hold: Option<Hold>) -> Result<(), ArchiveBusy> {
        self.enqueue(Job::Append(entry, hold)).await?;
        self.metrics.archive_queued.inc();
        Ok(())
    }

    /// Returns once everything queued before the call is stored.
    pub async fn flush(&self) -> Result<(), ArchiveBusy> {
        let (done, stored) = oneshot::channel();
        self.enqueue(Job::Flush(done)).await?;
        match tokio::time::timeout(self.submit_timeout, stored).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(ArchiveBusy),
        }
    }

    async fn enqueue(&self, job: Job) -> Result<(), ArchiveBusy> {
        // Try first: the common case needs no timer.
        match self.queue.try_send(job) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(job)) => self.queue.send_timeout(job, self.submit_timeout).await.map_err(|_| ArchiveBusy),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(ArchiveBusy),
        }
    }
}

const FIRST_RETRY: Duration = Duration::from_millis(50);
const LAST_RETRY: Duration = Duration::from_secs(5);

async fn write_loop(archive: Arc<dyn Archive>, mut jobs: mpsc::Receiver<Job>, batch_size: usize, linger: Duration, metrics: Arc<Metrics>) {
    let mut taken = Vec::with_capacity(batch_size);
    let mut batch = Vec::with_capacity(batch_size);
    let mut holds = Vec::new();
    let mut flushes = Vec::new();
    while jobs.recv_many(&mut taken, batch_size).await > 0 {
        if !linger.is_zero() {
            gather(&mut jobs, &mut taken, batch_size, linger).await;
        }
        for job in taken.drain(..) {
            match job {
                Job::Append(entry, hold) => {
                    batch.push(entry);
                    holds.extend(hold);
                }
                Job::Flush(done) => flushes.push(done),
            }
        }
        if !batch.is_empty() {
            let spans = traced_writes(&holds, batch.len());
            store_batch(archive.as_ref(), &batch, &metrics).await;
            drop(spans);
            metrics.archive_queued.sub(batch.len() as i64);
            metrics.archive_written.inc_by(batch.len() as u64);
            batch.clear();
            holds.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// A span for each traced record with an entry in a batch (usually none), ending when the batch
/// is stored.
fn traced_writes(holds: &[Hold], entries: usize) -> Vec<StanzaSpan> {
    let started = SystemTime::now();
    let traced = holds.iter().map(Hold::trace).filter(|trace| trace.is_traced());
    traced
        .map(|trace| {
            let mut span = trace.child("starling.archive.write", started);
            span.set_attribute(KeyValue::new("starling.batch_entries", entries as i64));
            span
        })
        .collect()
}

/// Adds to `taken` what arrives within `linger`, until it holds `batch_size` jobs, a flush, or the
/// queue closes.
async fn gather(jobs: &mut mpsc::Receiver<Job>, taken: &mut Vec<Job>, batch_size: usize, linger: Duration) {
    let deadline = tokio::time::Instant::now() + linger;
    let mut checked = 0;
    while taken.len() < batch_size {
        // Only what arrived since the last look: entries can trickle in one by one.
        if taken[checked..].iter().any(|job| matches!(job, Job::Flush(_))) {
            return;
        }
        checked = taken.len();
        match tokio::time::timeout_at(deadline, jobs.recv_many(taken, batch_size - taken.len())).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Stores `batch`, retrying with backoff while the store is unavailable. Entries the store calls
/// corrupt are retried one by one so that one bad entry does not hold up (or lose) the others.
async fn store_batch(archive: &dyn Archive, batch: &[ArchiveEntry], metrics: &Metrics) {
    let mut delay = FIRST_RETRY;
    loop {
        let timer = metrics.archive_write_seconds.start_timer();
        let result = archive.append(batch).await;
        timer.observe_duration();
        match result {
            Ok(()) => return,
            Err(StoreError::Unavailable(error)) => {
                metrics.archive_write_errors.inc();
                tracing::warn!(%error, retry_in = ?delay, entries = batch.len(), "archive write failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(LAST_RETRY);
            }
            Err(error) => {
                tracing::warn!(%error, entries = batch.len(), "archive rejected a batch; storing its entries one by one");
                for entry in batch {
                    if let Err(error) = store_one(archive, entry, metrics).await {
                        tracing::error!(user = %entry.user, id = entry.message.id, %error, "archive rejected a message; dropped");
                        metrics.archive_dropped.inc();
                    }
                }
                return;
            }
        }
    }
}

/// One entry, retried while the store is unavailable; `Err` only if the store rejects it.
async fn store_one(archive: &dyn Archive, entry: &ArchiveEntry, metrics: &Metrics) -> Result<(), StoreError> {
    let mut delay = FIRST_RETRY;
    loop {
        match archive.append(std::slice::from_ref(entry)).await {
            Err(StoreError::Unavailable(_)) => {
                metrics.archive_write_errors.inc();
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(LAST_RETRY);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use async_trait::async_trait;
    use starling_cluster::store::{ArchivePage, ArchivePrefs, ArchiveQuery, ArchivedMessage};

    use super::*;

    /// The embedded store's archive, with faults switched on from the test: unavailable while
    /// `down`, and the entry with id `poison` rejected as invalid.
    struct Faulty {
        inner: Arc<dyn Archive>,
        down: AtomicBool,
        poison: u64,
        appends: AtomicUsize,
    }

    #[async_trait]
    impl Archive for Faulty {
        async fn append(&self, entries: &[ArchiveEntry]) -> Result<(), StoreError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("switched off by the test".into()));
            }
            self.appends.fetch_add(1, Ordering::SeqCst);
            if entries.iter().any(|e| e.message.id == self.poison) {
                return Err(StoreError::Corrupt("poisoned entry".into()));
            }
            self.inner.append(entries).await
        }
        async fn query(&self, user: &str, query: &ArchiveQuery) -> Result<ArchivePage, StoreError> {
            self.inner.query(user, query).await
        }
        async fn get(&self, user: &str, ids: &[u64]) -> Result<Vec<ArchivedMessage>, StoreError> {
            self.inner.get(user, ids).await
        }
        async fn remove(&self, user: &str, ids: &[u64]) -> Result<(), StoreError> {
            self.inner.remove(user, ids).await
        }
        async fn prefs(&self, user: &str) -> Result<Option<ArchivePrefs>, StoreError> {
            self.inner.prefs(user).await
        }
        async fn set_prefs(&self, user: &str, prefs: ArchivePrefs) -> Result<(), StoreError> {
            self.inner.set_prefs(user, prefs).await
        }
        async fn remove_user(&self, user: &str) -> Result<(), StoreError> {
            self.inner.remove_user(user).await
        }
    }

    fn entry(id: u64) -> ArchiveEntry {
        ArchiveEntry { user: "alice@example.com".into(), message: ArchivedMessage { id, with: "bob@example.com".into(), stanza: b"<message/>".to_vec() } }
    }

    async fn stored_ids(archive: &dyn Archive) -> Vec<u64> {
        let page = archive.query("alice@example.com", &ArchiveQuery { limit: 1000, ..ArchiveQuery::default() }).await.expect("query");
        page.messages.iter().map(|m| m.id).collect()
    }

    fn setup(dir: &tempfile::TempDir, poison: u64) -> (Arc<Faulty>, ArchiveWriter) {
        let config = ArchiveWriterConfig { queue: 4, batch: 2, submit_timeout: Duration::from_millis(200), linger: Duration::from_millis(5) };
        setup_with(dir, poison, &config)
    }

    fn setup_with(dir: &tempfile::TempDir, poison: u64, config: &ArchiveWriterConfig) -> (Arc<Faulty>, ArchiveWriter) {
        let store = starling_store_embedded::EmbeddedStore::open(dir.path()).expect("open");
        let faulty = Arc::new(Faulty { inner: store.archive, down: AtomicBool::new(false), poison, appends: AtomicUsize::new(0) });
        let writer = ArchiveWriter::start(faulty.clone(), config, Metrics::global());
        (faulty, writer)
    }

    #[tokio::test]
    async fn entries_arriving_within_the_linger_are_stored_together_and_a_flush_cuts_it_short() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ArchiveWriterConfig { queue: 100, batch: 100, submit_timeout: Duration::from_secs(5), linger: Duration::from_millis(300) };
        let (faulty, writer) = setup_with(&dir, 0, &config);
        for id in 1..=3 {
            writer.submit(entry(id), None).await.expect("submit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(faulty.appends.load(Ordering::SeqCst), 1, "one store write for the three entries");
        assert_eq!(stored_ids(faulty.as_ref()).await, [1, 2, 3]);

        let long = ArchiveWriterConfig { linger: Duration::from_secs(30), ..config };
        let dir = tempfile::tempdir().expect("tempdir");
        let (faulty, writer) = setup_with(&dir, 0, &long);
        writer.submit(entry(7), None).await.expect("submit");
        tokio::time::timeout(Duration::from_secs(2), writer.flush()).await.expect("a flush does not wait out the linger").expect("flush");
        assert_eq!(stored_ids(faulty.as_ref()).await, [7]);
    }

    #[tokio::test]
    async fn an_unavailable_store_fills_the_queue_refuses_callers_and_loses_nothing_accepted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (faulty, writer) = setup(&dir, 0);
        faulty.down.store(true, Ordering::SeqCst);
        let mut accepted = Vec::new();
        for id in 1..=100 {
            match writer.submit(entry(id), None).await {
                Ok(()) => accepted.push(id),
                Err(ArchiveBusy) => break,
            }
        }
        // The queue (4) plus what the writer holds (a batch of 2, being retried) and no more.
        assert!((4..=6).contains(&accepted.len()), "accepted {accepted:?} while the store was down");
        assert_eq!(writer.flush().await, Err(ArchiveBusy), "nothing can be confirmed while the store is down");

        faulty.down.store(false, Ordering::SeqCst);
        // The writer is in its retry backoff (up to LAST_RETRY on a slow machine); a flush
        // succeeds once it has stored the held batch and drained the queue.
        let deadline = tokio::time::Instant::now() + 2 * LAST_RETRY;
        while writer.flush().await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "no flush succeeded after the store came back");
        }
        assert_eq!(stored_ids(faulty.as_ref()).await, accepted, "every accepted entry is stored, in order, once");
        writer.submit(entry(1000), None).await.expect("the queue takes entries again");
    }

    #[tokio::test]
    async fn an_entry_the_store_rejects_is_dropped_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (faulty, writer) = setup(&dir, 3);
        for id in 1..=5 {
            writer.submit(entry(id), None).await.expect("submit");
        }
        writer.flush().await.expect("flush");
        assert_eq!(stored_ids(faulty.as_ref()).await, [1, 2, 4, 5]);
    }
}
